"""What a node treats as a secret, and how a secret is masked wherever the node prints text.

Rules
  * A URL's password is everything between `user:` and the last `@`, whatever it holds (`@`,
    `/`, `?`, percent-encoding): `mysql://app:p@ss/w?rd@db/x` shows as `mysql://app:***@db/x`.
    The user name stays readable.
  * A query parameter whose name holds `pass`, `pwd`, `secret` or `token` (`?password=`,
    postgres' `sslpassword=`, `?auth_token=`) has its value masked: `?password=***`.
  * In free text (log lines, tracebacks, error messages) both rules apply to anything shaped like
    a URL, and every configured secret value (`secret_values`) is replaced wherever it appears:
    the admin token, every token's secret, the cluster secret, and the database password as
    written, percent-decoded and percent-encoded. Values shorter than `MIN_VALUE` are masked
    only by the URL rules (masking every `ab` of a log would destroy the log and tell the
    password away).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final
from urllib.parse import quote, unquote

if TYPE_CHECKING:
    from artemis.server.settings import Settings

__all__ = ["MASK", "MIN_VALUE", "mask_text", "mask_url", "secret_values", "url_password"]

MASK: Final = "***"
MIN_VALUE: Final = 6
# scheme://user:PASSWORD@ in free text: the password runs to the last @ before any whitespace
_URL_CREDENTIALS: Final = re.compile(
    r"""(?ix) \b ( [a-z][a-z0-9+.\-]* :// [^\s:/@'"<>]* : ) [^\s'"<>]* @""")
# ?password=…, &sslpassword=…, ;pwd=… (any name holding pass, pwd, secret or token)
_SECRET_PARAMS: Final = re.compile(
    r"""(?ix) ( [?&;] [a-z0-9_.\-]* (?:pass|pwd|secret|token) [a-z0-9_.\-]* = ) [^&;\s'"#<>]*""")


def _authority_at(rest: str) -> int:
    """Where the `@` that ends a URL's credentials is in `rest` (after `scheme://`), or -1: the
    last one, since a password may hold `@`, `/`, `?` or `#` unencoded (an `@` in the query
    masks more than needed, never less)."""
    return rest.rfind("@")


def mask_url(url: str) -> str:
    """`url` with its password and its secret query parameters masked (see the rules)."""
    scheme, sep, rest = url.partition("://")
    if sep:
        at = _authority_at(rest)
        if at != -1:
            user, colon, _ = rest[:at].partition(":")
            if colon:
                rest = f"{user}:{MASK}@{rest[at + 1:]}"
        url = f"{scheme}://{rest}"
    return _SECRET_PARAMS.sub(lambda m: m.group(1) + MASK, url)


def url_password(url: str) -> str:
    """The password a URL holds (as written, not decoded), or ''."""
    _, sep, rest = url.partition("://")
    if not sep:
        return ""
    at = _authority_at(rest)
    if at == -1:
        return ""
    return rest[:at].partition(":")[2]


def mask_text(text: str) -> str:
    """Free text with every URL's credentials and secret query parameters masked."""
    if "://" in text:
        text = _URL_CREDENTIALS.sub(lambda m: m.group(1) + MASK + "@", text)
    if "=" in text:
        text = _SECRET_PARAMS.sub(lambda m: m.group(1) + MASK, text)
    return text


def _query_secrets(url: str) -> list[str]:
    return [m.group(0)[len(m.group(1)):] for m in _SECRET_PARAMS.finditer(url)]


def secret_values(settings: Settings) -> list[str]:
    """Every secret value of `settings` worth masking in free text, longest first."""
    values = {settings.admin_token, settings.cluster_secret}
    values.update(secret for _, secret in settings.api_tokens().values())
    if settings.database:
        for raw in (url_password(settings.database), *_query_secrets(settings.database)):
            values.update({raw, unquote(raw), quote(unquote(raw), safe="")})
    return sorted((v for v in values if len(v) >= MIN_VALUE), key=len, reverse=True)
