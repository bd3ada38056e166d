"""Keep instances registered: register, heartbeat, register again whatever happens, unregister.

Rules
  * `register()` registers at once (register.json) and keeps the instances; `unregister()` removes
    them from the node and from the set; `close()` unregisters every kept instance.
  * Every `heartbeat_interval` seconds the kept instances heartbeat, in frames of at most
    `frame_size`, over the heartbeat WebSocket of the current node; when the WebSocket cannot be
    had, over heartbeat.json. Frames are encoded once and rebuilt only when the set changes.
  * Any instance a heartbeat answer calls `data-not-found` or `unknown` (the node lost it: it
    restarted, or its lease expired while the network was down) is registered again at once.
  * A node that fails is left for another (see servers.py); the heartbeats go on, and the instances
    are registered on the new node by the rule above. Errors never stop the loop; they are logged
    and counted in `stats`.
  * `token` is sent as a bearer token (HTTP and the WebSocket upgrade). A write the node refuses
    (`no-permission`: outside the token's scope, another writer's live instance) raises from
    `register()` and `unregister()`, and is logged from the heartbeat rounds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from artemis import wire
from artemis.client.errors import ArtemisError, ClientClosed, TransportError, server_error
from artemis.client.lifecycle import BackgroundClient
from artemis.client.transport import ClientWebSocket, Transport
from artemis.clock import Clock
from artemis.wire import ErrorCode, Instance

__all__ = ["RegistryClient"]

log = logging.getLogger("artemis.client.registry")
_REREGISTER: Final = frozenset({ErrorCode.DATA_NOT_FOUND, ErrorCode.UNKNOWN})


def _key(instance: Instance) -> str:
    return f"{instance.service_id or ''}\0{instance.instance_id or ''}".lower()


class RegistryClient(BackgroundClient):
    """Registers instances with an Artemis cluster and keeps them alive (rules above).

        async with RegistryClient("http://127.0.0.1:8080", region="SHA") as registry:
            await registry.register(Instance(service_id="demo", instance_id="a", url="http://a"))
            ...  # heartbeats run in the background until the block ends
    """

    def __init__(self, servers: str | Sequence[str], *, region: str | None = None,
                 zone: str | None = None, transport: Transport | None = None,
                 heartbeat_interval: float = 5.0, frame_size: int = 500, retries: int = 5,
                 use_websocket: bool = True, clock: Clock | None = None,
                 token: str | None = None) -> None:
        """`token`: a bearer token (with the register role for the instances' services) sent
        with every call and the heartbeat WebSocket's upgrade; needed by a node whose
        registration_mode is token, and naming the client as the owner of its instances in
        open mode (else its address does)."""
        super().__init__(servers, region=region, zone=zone, transport=transport, retries=retries,
                         clock=clock, token=token)
        self.heartbeat_interval = heartbeat_interval
        self.frame_size = max(1, frame_size)
        self.use_websocket = use_websocket
        self._instances: dict[str, Instance] = {}
        self._encoded: dict[str, bytes] = {}
        self._frames: list[bytes] | None = None
        self._ws: ClientWebSocket | None = None
        self._ws_url: str | None = None
        self.stats = {"heartbeats": 0, "frames": 0, "reregistered": 0, "errors": 0,
                      "websocket_failures": 0}

    # --- lifecycle -----------------------------------------------------------------------

    _asks_registry_nodes = True
    _task_name = "artemis heartbeats"

    async def _finish(self) -> None:
        """Unregister every kept instance (best effort) and close the heartbeat WebSocket."""
        if self._instances:
            try:
                await self._send("/api/registry/unregister.json", list(self._instances.values()))
            except ArtemisError as exc:
                log.warning("could not unregister on close: %s", exc)
        self._instances.clear()
        await self._drop_ws()

    # --- operations ----------------------------------------------------------------------

    @property
    def instances(self) -> list[Instance]:
        return list(self._instances.values())

    async def register(self, *instances: Instance) -> None:
        """Register now and keep alive. Raises ServerError if the node refuses an instance
        (for example `bad-request` for an instance without url) — then nothing is kept."""
        prepared = [self._prepare(i) for i in instances]
        await self.start()
        await self._send("/api/registry/register.json", prepared)
        for instance in prepared:
            key = _key(instance)
            self._instances[key] = instance
            self._encoded[key] = wire.encode(instance)
        self._frames = None

    async def unregister(self, *instances: Instance) -> None:
        """Unregister now and stop keeping them alive."""
        prepared = [self._prepare(i) for i in instances]
        for instance in prepared:
            self._instances.pop(_key(instance), None)
            self._encoded.pop(_key(instance), None)
        self._frames = None
        await self._send("/api/registry/unregister.json", prepared)

    def _prepare(self, instance: Instance) -> Instance:
        if self._closed:
            raise ClientClosed("this RegistryClient is closed")
        changes: dict[str, Any] = {}
        if instance.region_id is None and self.region is not None:
            changes["region_id"] = self.region
        if instance.zone_id is None and self.zone is not None:
            changes["zone_id"] = self.zone
        return msgspec.structs.replace(instance, **changes) if changes else instance

    async def _send(self, path: str, instances: Sequence[Instance]) -> wire.InstancesResponse:
        body = wire.encode(wire.InstancesRequest(instances=list(instances)))
        answer = await self.caller.call(path, body, wire.InstancesResponse)
        status = answer.response_status
        if status.status == "fail":
            raise server_error(status.error_code, status.message)
        if answer.failed_instances and not path.endswith("/heartbeat.json"):
            first = answer.failed_instances[0]
            raise server_error(first.error_code, first.error_message)
        return answer

    # --- heartbeats ----------------------------------------------------------------------

    def frames(self) -> list[bytes]:
        """The heartbeat frames of the kept instances, encoded once per change of the set."""
        if self._frames is None:
            encoded = list(self._encoded.values())
            self._frames = [b'{"instances":[' + b",".join(encoded[i:i + self.frame_size]) + b"]}"
                            for i in range(0, len(encoded), self.frame_size)]
        return self._frames

    async def heartbeat_once(self) -> None:
        """Send one round of heartbeats and register again what the node lost."""
        frames = self.frames()
        if not frames:
            return
        lost: list[Instance] = []
        for frame in frames:
            answer = await self._heartbeat(frame)
            self.stats["frames"] += 1
            for failed in answer.failed_instances or ():
                if failed.error_code == ErrorCode.NO_PERMISSION:
                    log.warning("heartbeat refused: %s", failed.error_message)
                if failed.error_code in _REREGISTER and failed.instance is not None:
                    kept = self._instances.get(_key(failed.instance))
                    if kept is not None:
                        lost.append(kept)
        self.stats["heartbeats"] += len(self._encoded)
        if lost:
            self.stats["reregistered"] += len(lost)
            log.info("registering %d instances again: the node did not know them", len(lost))
            await self._send("/api/registry/register.json", lost)

    async def _heartbeat(self, frame: bytes) -> wire.InstancesResponse:
        if self.use_websocket:
            try:
                ws = await self._websocket()
                await ws.send(frame.decode())
                answer = wire.decode((await ws.recv()).encode(), wire.InstancesResponse,
                                     unique_keys=False)
            except (TransportError, wire.DecodeError) as exc:
                self.stats["websocket_failures"] += 1
                log.debug("heartbeat WebSocket failed (%s); using heartbeat.json", exc)
                if self._ws_url is not None:
                    self.caller.servers.failed(self._ws_url)
                await self._drop_ws()
            else:
                status = answer.response_status
                if not (status.status == "fail" and status.error_code in wire.SERVICE_DOWN):
                    return answer
                # the node cannot serve: leave it, and send this frame elsewhere over HTTP
                if self._ws_url is not None:
                    self.caller.servers.failed(self._ws_url)
                await self._drop_ws()
        return await self.caller.call("/api/registry/heartbeat.json", frame,
                                      wire.InstancesResponse)

    async def _websocket(self) -> ClientWebSocket:
        url = self.caller.servers.current()
        if self._ws is not None and self._ws_url != url:
            await self._drop_ws()  # the client moved to another node
        if self._ws is None:
            self._ws = await self.transport.connect(url, "/ws/registry/heartbeat")
            self._ws_url = url
        return self._ws

    async def _drop_ws(self) -> None:
        ws, self._ws, self._ws_url = self._ws, None, None
        if ws is not None:
            await ws.close()

    async def _run(self) -> None:
        clock = self.clock
        next_round = clock.monotonic() + self.heartbeat_interval
        while True:
            await clock.sleep(next_round - clock.monotonic())
            next_round += self.heartbeat_interval
            try:
                await self.heartbeat_once()
            except ArtemisError as exc:
                self.stats["errors"] += 1
                log.warning("heartbeat round failed: %s", exc)
            if clock.monotonic() > next_round:  # fell behind: do not burst to catch up
                next_round = clock.monotonic() + self.heartbeat_interval

    def __repr__(self) -> str:
        return (f"RegistryClient(instances={len(self._instances)}, "
                f"server={self.caller.servers!r}, stats={self.stats})")

