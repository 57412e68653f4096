"""A daemon written in Python that reports through the official OpenTelemetry SDK and its
OTLP/HTTP exporter (tests/integration/otlp.rs runs it as a daemon managed by perfvisor).

It waits until perfvisor watches its pid, then exports twice over OTLP/HTTP (protobuf):
a gauge, a counter and a histogram with a route attribute. Its service.name is on purpose
not the daemon's name: perfvisor must find the daemon by process.pid. After the exports
it prints "exported" and stays up, as a daemon does.
"""

import argparse
import json
import os
import sys
import time
import urllib.request

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource


def watched(api: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/api/v1/daemons", timeout=5) as answer:
            return any(d.get("pid") == os.getpid() for d in json.load(answer))
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--token", required=True)
    args = parser.parse_args()

    deadline = time.monotonic() + 60
    while not watched(args.api):
        if time.monotonic() > deadline:
            print("perfvisor never listed this pid", file=sys.stderr)
            return 1
        time.sleep(0.2)

    reader = InMemoryMetricReader()
    provider = MeterProvider(
        resource=Resource.create(
            {"service.name": "not-the-daemon-name", "process.pid": os.getpid()}
        ),
        metric_readers=[reader],
        views=[
            View(
                instrument_name="app.latency_seconds",
                aggregation=ExplicitBucketHistogramAggregation(
                    boundaries=[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]
                ),
            )
        ],
    )
    meter = provider.get_meter("perfvisor-otlp-test")
    requests = meter.create_counter("app.requests", unit="1")
    latency = meter.create_histogram("app.latency_seconds", unit="s")
    meter.create_observable_gauge(
        "app.queue_length", callbacks=[lambda _options: [Observation(7.0)]]
    )
    exporter = OTLPMetricExporter(
        endpoint=f"{args.api}/v1/metrics",
        headers={"Authorization": f"Bearer {args.token}"},
    )
    route = {"route": "/search"}

    requests.add(5, route)
    requests.add(3, route)
    for seconds in (0.003, 0.012, 0.012, 0.2, 0.8):
        latency.record(seconds, route)
    if exporter.export(reader.get_metrics_data()) != MetricExportResult.SUCCESS:
        print("the first export failed", file=sys.stderr)
        return 1
    # Cumulative temporality: the second export carries the total 10, perfvisor adds 2. A
    # second apart, as an SDK's periodic reader would (a report shows a counter as a rate,
    # which two points a few milliseconds apart do not give).
    time.sleep(1.0)
    requests.add(2, route)
    if exporter.export(reader.get_metrics_data()) != MetricExportResult.SUCCESS:
        print("the second export failed", file=sys.stderr)
        return 1
    print("exported", flush=True)
    time.sleep(600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
