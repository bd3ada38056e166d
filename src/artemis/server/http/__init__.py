"""The HTTP shell: requests in, routes, Artemis error answers, gzip, and the RSGI and ASGI faces.

One `App` serves both interfaces: RSGI under granian in production (the fastest stack measured on
this machine kind), ASGI for in-process tests and for any ASGI server. Handlers see a `Request` and
return a `Response` (or bytes, or `Pieces`); they never touch the interface.

  messages.py   Request, Response, Pieces, BadRequest, the error answer, the WebSocket protocol
  body.py       request bodies within their limit, gzip in and out
  cors.py       CORS header lists per allowed origin (none unless configured)
  routing.py    Route and Router: the common path and the error answers (described there)
  rsgi.py       the RSGI face, its hot path and its WebSocket
  asgi.py       the ASGI face, its lifespan and its WebSocket
"""

from __future__ import annotations

from artemis.server.http.asgi import AsgiFace
from artemis.server.http.messages import (
    JSON,
    BadRequest,
    Pieces,
    Request,
    Response,
    SendFuture,
    WebSocket,
    WsHandler,
    fail_body,
    status_bytes,
)
from artemis.server.http.routing import AsyncHandler, Handler, Route
from artemis.server.http.rsgi import RsgiFace

__all__ = [
    "JSON",
    "App",
    "AsyncHandler",
    "BadRequest",
    "Handler",
    "Pieces",
    "Request",
    "Response",
    "Route",
    "SendFuture",
    "WebSocket",
    "WsHandler",
    "fail_body",
    "status_bytes",
]


class App(RsgiFace, AsgiFace):
    """Routes requests under a context path to handlers; RSGI and ASGI callable."""
