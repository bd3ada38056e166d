"""What metrics and sampled tracing cost on the hot paths. Run by hand (needs wrk):

    .venv/bin/python benchmarks/bench_overhead.py                # 3 rounds, about 2 minutes

Runs the `lookup` and `heartbeat` scenarios of bench_node.py against a node with metrics off
(`--no-metrics`, no OTEL_* variables) and against one with metrics on and traces sampled at 1 %
(`OTEL_TRACES_EXPORTER=otlp`, exported by OTLP/HTTP to a local sink, otlp_sink.py), alternating
the two so that drift of the machine hits both alike; reports the median of the rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_node import free_port, scenario_heartbeat, scenario_lookup

HERE = Path(__file__).resolve().parent


def run(args: argparse.Namespace, node_args: list[str], env: dict[str, str]) -> dict[str, Any]:
    options = argparse.Namespace(duration=args.duration, connections=64, node_args=node_args,
                                 node_env=env)
    return {"lookup": scenario_lookup(options)["requests_per_s"],
            "heartbeat": scenario_heartbeat(options)["requests_per_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8)
    args = parser.parse_args()
    port = free_port()
    sink = subprocess.Popen([sys.executable, str(HERE / "otlp_sink.py"), str(port)],
                            stdout=subprocess.PIPE, text=True)
    traced_env = {"OTEL_TRACES_EXPORTER": "otlp",
                  "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                  "OTEL_TRACES_SAMPLER_ARG": "0.01"}
    results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    try:
        for _ in range(args.rounds):
            results["off"].append(run(args, ["--no-metrics"], {}))
            results["on"].append(run(args, [], traced_env))
    finally:
        sink.terminate()
        received = sink.communicate(timeout=10)[0].strip()
    summary: dict[str, Any] = {"rounds": results, "sink_received": received}
    for path in ("lookup", "heartbeat"):
        off = statistics.median(r[path] for r in results["off"])
        on = statistics.median(r[path] for r in results["on"])
        summary[path] = {"metrics_off_rps": round(off), "metrics_and_tracing_on_rps": round(on),
                         "change_percent": round(100 * (on - off) / off, 1)}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
