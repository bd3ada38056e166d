"""The request path against the HTTP stack's own ceiling. Run by hand (needs `wrk`):

    .venv/bin/python benchmarks/bench_ceiling.py                  # 3 rounds of 10 s, ~3 min
    .venv/bin/python benchmarks/bench_ceiling.py --rounds 5 --profile /tmp/profiles

One node (`artemis server`, default settings but the rate limits raised and leases of 600 s)
holds a 20-instance service and 1,000 instances of another. Its answers to a lookup of the
first and to a heartbeat of one instance are captured, bytes and headers, and handed to
`bare_rsgi.py`: a bare granian RSGI application served the way the node is served (embedded
server, RSGI, HTTP/1.1, uvloop), which reads each request's body and answers those bytes. wrk
then sends the same requests to both, alternating node and bare app round by round so that
drift of the machine hits both alike (64 connections, 2 threads):

  lookup      POST /api/discovery/lookup.json of the 20-instance service (6.2 KB answer)
  heartbeat   POST /api/registry/heartbeat.json, one instance per request, rotating over 1,000,
              each sent as registered (the node renews it without decoding it)

Reported: requests/s of each round, the medians, and the node's share of the bare app's rate,
two ways: the ratio of the two medians (`share`), and the median of each round's ratio, the node's
run over the bare app's run right after it (`share_of_pairs`): the machine's speed drifts by 10-20 %
between runs a minute apart, and a pair sees the same drift. Each run's steal (CPU time the
hypervisor took from this virtual machine, benchmarks/steal.py) is recorded with its rate: a rate
loses the share of its run that was taken.
`--profile DIR` also records the node under each load with py-spy (`--native`-free, 250 Hz,
`raw` format), in a run of its own before the rounds (not counted: sampling slows the node), and
prints the functions with the most samples, by own time and with callees.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_node import REGION, ZONE, free_port, lua_rotating, node, stop, wrk
from bench_scale import instance_json
from steal import StealWatch

HERE = Path(__file__).resolve().parent
LOOKUP = "/api/discovery/lookup.json"
HEARTBEAT = "/api/registry/heartbeat.json"
DROPPED = {"content-length", "date", "server", "connection"}  # the stack's own


@contextlib.contextmanager
def bare(answers: dict[str, Any]) -> Iterator[str]:
    """Start bare_rsgi.py with these answers; yield its base url; stop it by its pid."""
    port = free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(answers, handle)
    proc = subprocess.Popen([sys.executable, str(HERE / "bare_rsgi.py"), str(port), handle.name],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.post(base + HEARTBEAT, content=b"{}", timeout=0.5).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"bare app did not start: {proc.stderr.read().decode()}")
            time.sleep(0.05)
        yield base
    finally:
        stop(proc)
        os.unlink(handle.name)


def captured(answer: httpx.Response) -> dict[str, Any]:
    return {"body": answer.text,
            "headers": [[k, v] for k, v in answer.headers.items() if k.lower() not in DROPPED]}


def profile(pid: int, out: Path, seconds: int) -> subprocess.Popen[bytes]:
    """py-spy recording the node for `seconds` (it stops by itself)."""
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen([str(spy) if spy.exists() else "py-spy", "record", "-p", str(pid),
                             "-r", "250", "-d", str(seconds), "-f", "raw", "-o", str(out),
                             "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def top(raw: Path, count: int = 15) -> dict[str, list[tuple[str, float]]]:
    """The functions with the most samples in a py-spy raw (collapsed stacks) file: by own
    samples and by samples with callees, as percentages of all samples."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = [f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].rstrip(")")
                  for f in stack.split(";")]
        weight = int(n)
        samples += weight
        own[frames[-1]] += weight
        for frame in set(frames):
            total[frame] += weight
    return {kind: [(name, round(100 * n / samples, 1)) for name, n in counter.most_common(count)]
            for kind, counter in (("own", own), ("with_callees", total))}


STEAL = StealWatch()  # what the hypervisor took from each run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the node, into DIR")
    parser.add_argument("--node-arg", dest="node_args", action="append", default=[])
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    STEAL.start()

    lookup_body = json.dumps({"discoveryConfigs": [{"discoveryData": None, "regionId": None,
                                                    "serviceId": "lookup.service",
                                                    "zoneId": None}],
                              "regionId": REGION, "zoneId": ZONE}, separators=(",", ":"))
    # Instances as the Java SDK writes them (keys in order, nulls written, no spaces): what a
    # client's heartbeat sends back is then exactly what the node holds.
    fleet = [instance_json("heartbeat.service", i) for i in range(1000)]
    heartbeat_bodies = ['{"instances":[' + one + "]}" for one in fleet]
    scripts = {"lookup": (LOOKUP, lua_rotating(LOOKUP, [lookup_body])),
               "heartbeat": (HEARTBEAT, lua_rotating(HEARTBEAT, heartbeat_bodies))}
    results: dict[str, dict[str, list[float]]] = {
        name: {"node": [], "bare": [], "steal_ms_node": [], "steal_ms_bare": []}
        for name in scripts}
    profiles: dict[str, Any] = {}
    # leases of 600 s: the heartbeat's instances outlive the lookup's rounds between its own
    with node("--lease-ttl", "600", "--max-lease-ttl", "600", *args.node_args) as (base, proc,
                                                                                   cmd):
        with httpx.Client() as client:
            for instances in ([instance_json("lookup.service", 5000 + i) for i in range(20)],
                              fleet):
                done = client.post(base + "/api/registry/register.json",
                                   content='{"instances":[' + ",".join(instances) + "]}").json()
                assert done["responseStatus"]["errorCode"] == "success", done
            answers = {LOOKUP: captured(client.post(base + LOOKUP, content=lookup_body)),
                       HEARTBEAT: captured(client.post(base + HEARTBEAT,
                                                       content=heartbeat_bodies[0]))}
        if args.profile is not None:  # a run of its own: the sampling slows the node down
            args.profile.mkdir(parents=True, exist_ok=True)
            for name, (path, script) in scripts.items():
                spy = profile(proc.pid, args.profile / f"{name}.txt", args.duration)
                wrk(base + path, args.duration, args.connections, script, proc)
                spy.wait(args.duration + 30)
                profiles[name] = top(args.profile / f"{name}.txt")
        with bare(answers) as bare_base:
            for round_ in range(args.rounds):
                for name, (path, script) in scripts.items():
                    since = time.monotonic()
                    ran = wrk(base + path, args.duration, args.connections, script, proc)
                    results[name]["node"].append(ran["requests_per_s"])
                    results[name]["steal_ms_node"].append(STEAL.span(since)["stolen_ms"])
                    since = time.monotonic()
                    ran = wrk(bare_base + path, args.duration, args.connections, script)
                    results[name]["bare"].append(ran["requests_per_s"])
                    results[name]["steal_ms_bare"].append(STEAL.span(since)["stolen_ms"])
                print(json.dumps({"round": round_ + 1, **results}), file=sys.stderr)
        with httpx.Client() as client:  # the node's heartbeats were renewals, not failures
            held = [client.post(base + HEARTBEAT, content=body).content == answers[HEARTBEAT][
                "body"].encode() for body in heartbeat_bodies]
        assert all(held), f"{held.count(False)} heartbeats were not renewed"
    summary: dict[str, Any] = {"command": cmd, "answer_bytes": len(answers[LOOKUP]["body"])}
    for name, runs in results.items():
        mine, ceiling = statistics.median(runs["node"]), statistics.median(runs["bare"])
        pairs = [node / bare for node, bare in zip(runs["node"], runs["bare"], strict=True)]
        summary[name] = {"node_req_s": round(mine), "bare_req_s": round(ceiling),
                         "share": round(mine / ceiling, 3),
                         "share_of_pairs": round(statistics.median(pairs), 3),
                         "pairs": [round(pair, 3) for pair in pairs], "rounds": runs}
    if profiles:
        summary["profiles"] = profiles
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
