"""Masking secrets: a URL's password whatever its form, secret query parameters, and the secret
values a node's settings hold (server/masking.py)."""

from __future__ import annotations

import pytest

from artemis.server.masking import mask_text, mask_url, secret_values, url_password
from artemis.server.settings import Settings


@pytest.mark.parametrize(("url", "masked"), [
    ("mysql://app:hunter2@db/x", "mysql://app:***@db/x"),
    ("mysql://app:p@ss@db/x", "mysql://app:***@db/x"),  # @ inside the password
    ("mysql://app:p/ss?w#rd@db:3306/x", "mysql://app:***@db:3306/x"),
    ("postgresql://us%40er:p%40ss%3A@db/x", "postgresql://us%40er:***@db/x"),
    ("postgresql://:onlypass@db/x", "postgresql://:***@db/x"),
    ("postgresql://db/x?password=hunter2&sslmode=require",
     "postgresql://db/x?password=***&sslmode=require"),
    ("postgresql://app@db/x?sslmode=verify-full&sslpassword=key-pass",
     "postgresql://app@db/x?sslmode=verify-full&sslpassword=***"),
    ("mysql+asyncmy://app:pw@db/x?charset=utf8mb4&PASSWORD=again",
     "mysql+asyncmy://app:***@db/x?charset=utf8mb4&PASSWORD=***"),
    ("postgresql://app@db/x", "postgresql://app@db/x"),  # a user alone is not secret
    ("sqlite:///var/lib/artemis/management.db", "sqlite:///var/lib/artemis/management.db"),
    ("sqlite:////tmp/a@b.db", "sqlite:////tmp/a@b.db"),
])
def test_mask_url(url: str, masked: str) -> None:
    """The password and secret parameters are masked; everything else stays readable."""
    assert masked == mask_url(url)


def test_mask_text_masks_every_url_in_a_message() -> None:
    """Free text: each URL with credentials, each secret parameter."""
    text = ("connect mysql://a:b@c@h1/x failed, then postgresql://u:v@h2/y?password=z; "
            "http://10.0.0.5:8080/api is fine")
    assert ("connect mysql://a:***@h1/x failed, then postgresql://u:***@h2/y?password=***; "
            "http://10.0.0.5:8080/api is fine") == mask_text(text)


def test_secret_values_hold_every_spelling_of_the_database_password() -> None:
    """As written, decoded and encoded; tokens, admin token and cluster secret too; short
    values are left to the URL rules."""
    settings = Settings(database="postgresql://app:p%40ss-w0rd@db/x?sslpassword=tiny",
                        admin_token="a" * 16, tokens=f"ci:read:{'t' * 16}",
                        cluster_secret="c" * 16)
    assert "p%40ss-w0rd" == url_password(settings.database)
    values = secret_values(settings)
    assert {"p%40ss-w0rd", "p@ss-w0rd", "a" * 16, "t" * 16, "c" * 16} == set(values)
    assert sorted(values, key=len, reverse=True) == values  # longest first
