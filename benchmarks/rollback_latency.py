"""Rollback latency: from the alarm event entering the handler to the weights call returning.

Runs the real handler (lambda/rollback/handler.py, Powertools decorators and
all) against moto's HTTP server on localhost, so every AWS call pays a real
HTTP round trip through botocore. Each iteration deploys a fresh canary (new
run id, so no lock is shared) and sends one "CloudWatch Alarm State Change"
event. The moment the weights changed is taken from botocore's own
``after-call`` event of UpdateEndpointWeightsAndCapacities on the function's
cached client, so nothing inside the function is instrumented for this.

    .venv/bin/python benchmarks/rollback_latency.py [--iterations 40]

Writes benchmarks/results/rollback-latency.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import platform
import socket
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "rollback-latency.json"
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _summary(values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    return {
        "min": round(ordered[0], 1),
        "p50": round(statistics.median(ordered), 1),
        "p95": round(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)], 1),
        "max": round(ordered[-1], 1),
        "mean": round(statistics.fmean(ordered), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args()

    from moto import __version__ as moto_version
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto server's access log
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        POWERTOOLS_SERVICE_NAME="rollback",
        POWERTOOLS_METRICS_NAMESPACE="LLMQ/Rollback",
        POWERTOOLS_TRACE_DISABLED="true",
        POWERTOOLS_LOG_LEVEL="ERROR",  # the logic logs every rollback at WARNING
    )
    from tests.function_path import LambdaContext
    from tests.unit.rollback_world import CANDIDATE, ENDPOINT, SERVING, alarm_event, build_world, load_handler_module

    world = build_world()
    os.environ.update(world.environ)
    import_started = time.perf_counter()
    module = load_handler_module()
    import_ms = (time.perf_counter() - import_started) * 1000

    from rollback_settings import aws_client  # type: ignore[import-not-found]  # lambda/rollback, on sys.path

    shifted: list[float] = []

    def _mark(**_: Any) -> None:
        shifted.append(time.perf_counter())

    event_to_weights, handler_total, outcomes = [], [], []
    for i in range(args.iterations + 1):
        run_id = f"bench-{i:03d}"
        if i:
            world.sagemaker.delete_endpoint(EndpointName=ENDPOINT)
        world.deploy(phase="canary", run_id=run_id)
        event = alarm_event(
            f"{ENDPOINT}-candidate-5xx", timestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
        )
        shifted.clear()
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the metrics (EMF) the handler prints
            result = module.handler(
                event, LambdaContext("llmq-dev-rollback", memory_limit_in_mb=512, aws_request_id=run_id)
            )
        ended = time.perf_counter()
        if i == 0:
            # The first call builds the cached clients; hook the weights call on the real one.
            aws_client("sagemaker").meta.events.register(
                "after-call.sagemaker.UpdateEndpointWeightsAndCapacities", _mark
            )
            first_call_ms = (ended - started) * 1000
            continue
        assert result["outcome"] == "rolled-back", result
        assert world.weights() == {SERVING: 100.0, CANDIDATE: 0.0}
        outcomes.append(result["outcome"])
        event_to_weights.append((shifted[0] - started) * 1000)
        handler_total.append((ended - started) * 1000)
    server.stop()

    report = {
        "what": "rollback handler, event in -> UpdateEndpointWeightsAndCapacities returned (canary phase)",
        "emulator": f"moto {moto_version} ThreadedMotoServer over HTTP on localhost",
        "iterations": args.iterations,
        "event_to_weights_updated_ms": _summary(event_to_weights),
        "handler_total_ms": _summary(handler_total),
        "first_invocation_ms": round(first_call_ms, 1),
        "handler_import_ms": round(import_ms, 1),
        "calls_before_weights": [
            "DescribeEndpoint",
            "ListTags",
            "PutObject If-None-Match (claim)",
            "AddTags (rolling-back)",
            "DescribeEndpoint (InService?)",
        ],
        "calls_after_weights": [
            "DescribeEndpoint (InService, CurrentWeight)",
            "AddTags (rolled-back)",
            "UpdateModelPackage",
            "PutObject (record)",
            "Publish",
        ],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), {platform.python_version()}",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
