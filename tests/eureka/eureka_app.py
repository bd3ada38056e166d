"""A service that uses py-eureka-client, unmodified, as its own process (the tests run it).

    python tests/eureka/eureka_app.py EUREKA_URL APP PORT [--discover]

It registers APP (127.0.0.1:PORT, renewing every second, a 4 s lease) and prints `started`.
Then it reads commands from standard input, one a line:
    call APP PATH   calls APP through the client's discovery: `ok <answer>` or `error <what>`
    stop            stops the client (which marks the instance DOWN, then cancels it), prints
                    `stopped` and exits; so does the end of input
A process of its own because py-eureka-client's heartbeat thread never ends once it has begun:
only the end of the process stops it after `stop()`.
"""

from __future__ import annotations

import asyncio
import sys

from py_eureka_client import eureka_client


async def main(server: str, app: str, port: int, discover: bool) -> None:
    client = eureka_client.EurekaClient(
        eureka_server=server, app_name=app, instance_host="127.0.0.1",
        instance_ip="127.0.0.1", instance_port=port, zone="zone-1",
        renewal_interval_in_secs=1, duration_in_secs=4, should_discover=discover,
        metadata={"team": "tests"})
    await client.start()
    print("started", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "stop":
            break
        try:
            answer = await client.do_service(line[1], line[2])
            print("ok", answer, flush=True)
        except Exception as exc:
            print("error", type(exc).__name__, exc, flush=True)
    await client.stop()
    print("stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), "--discover" in sys.argv))
