"""Log lines: console and JSON formats, granian's loggers in the same format, the request id of
a request that failed, and secrets masked wherever they appear."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from granian.log import LogLevels, configure_logging

from artemis.server.http import App, Request, Route
from artemis.server.observability.logs import REQUEST_ID, logging_config, request_id, setup_logging
from artemis.server.settings import Settings

TOKEN = "s3cret-admin-token"  # noqa: S105 - the secret the tests check is never written
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
FAILED = {"failedInstances": None, "responseStatus": {
    "errorCode": "internal-service-error",
    "message": "the node failed on this request; it is logged", "status": "fail"}}

Lines = Callable[..., list[Any]]


@pytest.fixture
def logs() -> Iterator[Lines]:
    """`logs(**settings)` sets the process's logging up as a node does, into a buffer, and
    returns a reader of the lines written so far (parsed when JSON); logging is restored after
    the test."""
    root = logging.getLogger()
    saved = [(log, log.handlers[:], log.level, log.propagate) for log in (
        root, logging.getLogger("_granian"), logging.getLogger("granian.access"))]
    buffer = io.StringIO()
    fmt = "console"

    def start(**settings: Any) -> Lines:
        nonlocal fmt
        chosen = Settings(**settings)
        fmt = chosen.log_format
        setup_logging(chosen, buffer)
        return read

    def read(**_: Any) -> list[Any]:
        lines = buffer.getvalue().splitlines()
        return [json.loads(line) for line in lines] if fmt == "json" else lines

    yield start
    for log, handlers, level, propagate in saved:
        log.handlers[:] = handlers
        log.setLevel(level)
        log.propagate = propagate


def test_json_lines_have_time_level_logger_message(logs: Lines) -> None:
    """In json format each line is one object: ISO 8601 UTC time, level, logger, message
    (arguments filled in); nothing else when there is no request or exception."""
    read = logs(log_format="json")
    logging.getLogger("artemis.test").warning("%d instances in %s", 3, "demo")
    [line] = read()

    assert {"level": "warning", "logger": "artemis.test",
            "message": "3 instances in demo"} == {k: v for k, v in line.items() if k != "time"}
    assert ISO_UTC.fullmatch(line["time"])


def test_console_lines_are_one_readable_line(logs: Lines) -> None:
    """In console format a line is `time LEVEL logger: message`; below the level, nothing."""
    read = logs(log_level="warning")
    logging.getLogger("artemis.test").info("not shown")
    logging.getLogger("artemis.test").error("disk %s", "full")
    [line] = read()

    time, rest = line.split(" ", 1)
    assert (True, "ERROR artemis.test: disk full") == (bool(ISO_UTC.fullmatch(time)), rest)


def test_an_exception_is_logged_with_its_traceback(logs: Lines) -> None:
    """A line logged with an exception carries the traceback text in `exception`."""
    read = logs(log_format="json")
    try:
        raise ValueError("bad value")
    except ValueError:
        logging.getLogger("artemis.test").exception("it failed")
    [line] = read()

    assert ("it failed", True, True) == (
        line["message"], line["exception"].startswith("Traceback"),
        line["exception"].endswith("ValueError: bad value"))


def test_granian_logs_in_the_same_format(logs: Lines) -> None:
    """granian applies the node's logging config again (as the embedded server does when it
    starts): its lines, and its Rust side's (`_granian.serve`), come out as the node's JSON."""
    settings = Settings(log_format="json")
    read = logs(log_format="json")
    stream = logging.getLogger().handlers[0].stream  # type: ignore[attr-defined]
    configure_logging(LogLevels.info, logging_config(settings, stream))
    logging.getLogger("_granian").info("Starting granian (embedded)")
    logging.getLogger("_granian.serve").info("Started worker-1")

    assert [("_granian", "Starting granian (embedded)"), ("_granian.serve", "Started worker-1")
            ] == [(line["logger"], line["message"]) for line in read()]


def test_secrets_are_masked_in_messages_arguments_and_tracebacks(logs: Lines) -> None:
    """The admin token and credentials (`Authorization` values, anything after `Bearer`) are
    written as *** wherever they appear: message, arguments, exception text."""
    read = logs(log_format="json", admin_token=TOKEN)
    log = logging.getLogger("artemis.test")
    log.info(f"token {TOKEN} in the message")
    log.info("token %s in an argument", TOKEN)
    log.info("headers %s", {"authorization": "Bearer abc.def", "accept": "*/*"})
    log.info("Authorization: Basic dXNlcjpwYXNz")
    try:
        raise PermissionError(f"refused Bearer {TOKEN}")
    except PermissionError:
        log.exception("refused")
    lines = read()

    assert ["token *** in the message",
            "token *** in an argument",
            "headers {'authorization': 'Bearer ***', 'accept': '*/*'}",
            "Authorization: Basic ***",
            "refused"] == [line["message"] for line in lines]
    assert lines[-1]["exception"].endswith("PermissionError: refused Bearer ***")
    assert [] == [line for line in lines if TOKEN in json.dumps(line) or "abc.def" in
                  json.dumps(line) or "dXNlcjpwYXNz" in json.dumps(line)]


def test_the_console_format_masks_too(logs: Lines) -> None:
    """The console format goes through the same filter."""
    read = logs(admin_token=TOKEN)
    logging.getLogger("artemis.test").warning("called with %s", TOKEN)

    assert [True] == [line.endswith("artemis.test: called with ***") for line in read()]


def test_request_id_is_only_set_inside_its_block() -> None:
    """request_id keeps a plausible incoming id, replaces an implausible one (spaces, too long)
    with a new 16-hex one, and is unset again after its block."""
    with request_id("abc-123") as kept:
        inside = REQUEST_ID.get()
    with request_id("two words") as spaced, request_id("x" * 200) as long_one:
        pass

    assert ("abc-123", "abc-123", None) == (kept, inside, REQUEST_ID.get())
    assert [True, True] == [bool(re.fullmatch(r"[0-9a-f]{16}", i)) for i in (spaced, long_one)]


# --- the request id of a failed request ---------------------------------------------------------

def boom(request: Request) -> bytes:
    raise RuntimeError(f"handler failed on {request.path}")


def failing_app() -> App:
    return App({"/boom": Route(frozenset({"POST"}), handler=boom,
                               null_fields={"failedInstances": None})})


async def post_asgi(app: App, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://testserver") as client:
        return await client.post("/boom", content=b"{}", headers=headers)


async def test_a_failed_request_logs_its_request_id(logs: Lines) -> None:
    """An internal error (ASGI) is answered internal-service-error with the request's own
    X-Request-Id, and logged as one line with that id and the traceback."""
    read = logs(log_format="json", log_level="warning")  # not httpx's info lines
    answer = await post_asgi(failing_app(), {"X-Request-Id": "req-42"})
    [line] = read()

    assert (FAILED, "req-42") == (answer.json(), answer.headers["x-request-id"])
    assert ("artemis.http", "internal error on POST /boom", "req-42", True) == (
        line["logger"], line["message"], line["requestId"],
        line["exception"].endswith("RuntimeError: handler failed on /boom"))


async def test_a_request_without_an_id_gets_one(logs: Lines) -> None:
    """Without X-Request-Id, a new id is made: the same in the answer and in the log line, and
    in the console format too."""
    read = logs(log_level="warning")
    answer = await post_asgi(failing_app(), {})
    rid = answer.headers["x-request-id"]
    lines = read()

    assert re.fullmatch(r"[0-9a-f]{16}", rid)
    assert lines[0].endswith(f"artemis.http: internal error on POST /boom [requestId={rid}]")
    assert "Traceback (most recent call last):" == lines[1]


class _RsgiScope:
    proto = "http"
    method = "POST"
    path = "/boom"
    query_string = ""
    client = "127.0.0.1:5000"

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers


class _RsgiProto:
    def __init__(self, body: bytes) -> None:
        self.body = body
        self.answers: list[tuple[int, dict[str, str], bytes]] = []

    async def __call__(self) -> bytes:
        return self.body

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.answers.append((status, dict(headers), body))


async def test_the_rsgi_fast_path_logs_the_request_id(logs: Lines) -> None:
    """The RSGI fast path (a sync endpoint, a small body of known length) answers an internal
    error the same way: the request's id in the answer and in the log line."""
    read = logs(log_format="json")
    proto = _RsgiProto(b"{}")
    await failing_app().__rsgi__(
        _RsgiScope({"content-length": "2", "x-request-id": "rsgi-7"}), proto)
    [(status, headers, body)] = proto.answers
    [line] = read()

    assert (200, "rsgi-7", FAILED) == (status, headers["x-request-id"], json.loads(body))
    assert ("internal error on POST /boom", "rsgi-7") == (line["message"], line["requestId"])


async def test_a_request_that_logs_nothing_gets_no_id(logs: Lines) -> None:
    """A request answered normally makes no id and sends no X-Request-Id; lines logged outside
    any request carry none."""
    read = logs(log_format="json", log_level="warning")
    app = App({"/ok": Route(frozenset({"POST"}), handler=lambda request: b"{}")})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://testserver") as client:
        answer = await client.post("/ok", content=b"{}", headers={"X-Request-Id": "r-1"})
    logging.getLogger("artemis.test").warning("after")

    assert (None, None) == (answer.headers.get("x-request-id"), REQUEST_ID.get())
    assert [{"level": "warning", "logger": "artemis.test", "message": "after"}] == [
        {k: v for k, v in line.items() if k != "time"} for line in read()]


DB_PASSWORD = "p@ss/w?rd#hunter2"  # noqa: S105 - a test secret: @, /, ? and # unencoded
ENCODED = "p%40ss%2Fw%3Frd%23hunter2"  # the same, percent-encoded


@pytest.mark.parametrize("database", [
    f"mysql://app:{DB_PASSWORD}@db:3306/artemis",
    f"postgresql://app:{ENCODED}@db/artemis",
    f"postgresql://db/artemis?user=app&password={ENCODED}",
    f"postgresql://app@db/artemis?sslpassword={ENCODED}",
])
def test_the_database_password_is_masked_in_every_spelling(logs: Lines, database: str) -> None:
    """Whatever form the database URL takes, its password never reaches a log line: not as
    configured, not decoded, not encoded, not in a traceback; other secrets neither."""
    tokens = f"ci:read:{'t' * 20}"
    read = logs(log_format="json", database=database, tokens=tokens, admin_token=TOKEN,
                cluster_secret="c" * 24)
    log = logging.getLogger("artemis.test")
    log.warning("store: %s", database)
    log.warning("decoded %s, encoded %s, sqlalchemy form %s", DB_PASSWORD, ENCODED,
                "postgresql+asyncpg://app:" + ENCODED + "@db/artemis")
    log.warning("tokens %s %s %s", "t" * 20, TOKEN, "c" * 24)
    try:
        raise ConnectionError(f"cannot connect to {database}")
    except ConnectionError:
        log.exception("store failed")

    text = json.dumps(read())
    for secret in (DB_PASSWORD, ENCODED, "hunter2", "t" * 20, TOKEN, "c" * 24):
        assert secret not in text
    assert text.count("***") >= 7


def test_any_url_credentials_are_masked_without_configuration(logs: Lines) -> None:
    """A URL with a password in any line is masked even when no setting names it (a peer's
    URL, a URL in a driver's message)."""
    read = logs()
    logging.getLogger("artemis.test").warning(
        "peer http://node:secret-one@10.0.0.2:8080/x failed; dsn mysql://u:a@b@db/x?token=zz9")

    assert ["peer http://node:***@10.0.0.2:8080/x failed; dsn mysql://u:***@db/x?token=***"] == [
        line.split(": ", 1)[1] for line in read()]
