"""The node's log lines: one line for people or one JSON object a line, secrets masked.

Every line goes through one handler on the root logger (standard error), granian's own loggers
(`_granian`, `granian.access`) included, so a collector reads one format.

  console  `2024-05-01T12:00:00.123Z INFO artemis.http: message [requestId=…]`
  json     `{"time": "2024-05-01T12:00:00.123Z", "level": "info", "logger": "artemis.http",
            "message": "…", "requestId": "…", "exception": "Traceback …"}`

Request id: a line written while a request is being handled carries the request's id (its
`X-Request-Id` header, or one made up), taken from the `REQUEST_ID` context variable. Only the
code paths that log set it (see `request_id`): a request that logs nothing costs nothing.

Secrets: a filter on the handler rewrites each line before it is formatted, message, arguments
and traceback alike: the value of an `Authorization` header, anything after `Bearer`, every
configured secret (admin token, tokens' secrets, cluster secret, the database password in each of
its spellings) and the password of any URL or secret query parameter (`server/masking.py`) become
`***`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.config
import re
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from secrets import token_hex
from typing import IO, TYPE_CHECKING, Any, Final

from artemis.server.masking import MASK, mask_text, secret_values

if TYPE_CHECKING:
    from artemis.server.settings import Settings

__all__ = [
    "REQUEST_ID",
    "ConsoleFormatter",
    "JsonFormatter",
    "RedactSecrets",
    "logging_config",
    "request_id",
    "setup_logging",
]

REQUEST_ID: Final[ContextVar[str | None]] = ContextVar("artemis_request_id", default=None)
# An incoming X-Request-Id is kept when it looks like an id; anything else (too long, spaces,
# line breaks that would forge log lines) is replaced by a new one.
_PLAUSIBLE_ID: Final = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
_AUTHORIZATION: Final = re.compile(
    r"""(?ix)
    ( authorization ["']? \s* [:=] \s* ["']?    # Authorization: …   "authorization": "…
    | authorization ["'] \s* , \s* ["']          # ('authorization', '…')
    )
    ( (?:bearer|basic|digest|token) \s+ )?       # the scheme stays readable
    [^\s"',;}\])]+                               # the credential goes
    """)
_BEARER: Final = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;}\])]+")
_TRACEBACKS: Final = logging.Formatter()


@contextlib.contextmanager
def request_id(incoming: str | None) -> Iterator[str]:
    """Lines logged inside carry a request id: `incoming` (an X-Request-Id header) when it looks
    like one, else a new random one; yields the id (to send back in the answer)."""
    value = incoming if incoming and _PLAUSIBLE_ID.fullmatch(incoming) else token_hex(8)
    token = REQUEST_ID.set(value)
    try:
        yield value
    finally:
        REQUEST_ID.reset(token)


def _request_id_of(record: logging.LogRecord) -> str | None:
    given = record.__dict__.get("requestId")
    return str(given) if given is not None else REQUEST_ID.get()


def _utc(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class RedactSecrets(logging.Filter):
    """Masks credentials in a record's message, arguments and traceback (see the module doc).

    The message is formatted with its arguments here, once, and the record keeps the masked
    text without arguments, so no handler or formatter after this one can see a secret.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # longest first, so that a token containing another is masked whole
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        text = _AUTHORIZATION.sub(lambda m: m.group(1) + (m.group(2) or "") + MASK, text)
        return mask_text(_BEARER.sub(lambda m: m.group(1) + MASK, text))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the message: keep both, masked
            message = f"{record.msg!s} % {record.args!r}"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True

    def __repr__(self) -> str:
        return f"RedactSecrets({len(self._secrets)} secrets)"


class ConsoleFormatter(logging.Formatter):
    """One line for people: UTC time, level, logger, message, then the request id if any."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc(record.created)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        rid = _request_id_of(record)
        return line if rid is None else f"{line} [requestId={rid}]"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (ISO 8601, UTC), level, logger, message, and requestId,
    exception and stack when there are."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = _request_id_of(record)
        if rid is not None:
            entry["requestId"] = rid
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


FORMATTERS: Final[dict[str, type[logging.Formatter]]] = {
    "console": ConsoleFormatter,
    "json": JsonFormatter,
}


def logging_config(settings: Settings, stream: IO[str] | None = None) -> dict[str, Any]:
    """The `logging.config.dictConfig` of a node: one handler on the root logger (standard
    error, or `stream`) in `settings.log_format`, masking the node's secrets and credentials;
    granian's loggers hand their lines to it.

    A new dict each call: dictConfig consumes parts of the dict it is given.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"secrets": {"()": RedactSecrets, "secrets": secret_values(settings)}},
        "formatters": {"line": {"()": FORMATTERS[settings.log_format]}},
        "handlers": {"stderr": {
            "class": "logging.StreamHandler",
            "stream": stream if stream is not None else "ext://sys.stderr",
            "formatter": "line",
            "filters": ["secrets"],
        }},
        "root": {"level": settings.log_level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "_granian": {"handlers": [], "propagate": True},
            "granian.access": {"handlers": [], "propagate": True},
        },
    }


def setup_logging(settings: Settings, stream: IO[str] | None = None) -> None:
    """Send every log line of this process to standard error (or `stream`) as
    `settings.log_format` and `settings.log_level` ask."""
    logging.config.dictConfig(logging_config(settings, stream))
