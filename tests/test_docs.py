"""The documentation states what the code does: the settings table is the settings."""

from __future__ import annotations

from pathlib import Path

from artemis.server.settings import settings_table

ROOT = Path(__file__).resolve().parents[1]


def test_configuration_doc_lists_every_setting_as_the_code_describes_it() -> None:
    """docs/configuration.md ends with exactly the table generated from the settings."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    assert settings_table() == text[text.index("| setting | flag |"):]
