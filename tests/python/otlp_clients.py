"""OTLP the way applications send it: the OpenTelemetry Python SDK's spans and log records,
exported by its OTLP exporters over gRPC (gzip) and HTTP (protobuf), plus hand-made OTLP/JSON,
a gzip body and bad requests over HTTP. Prints what each export answered as JSON; the Rust
test (tests/e2e/external/otlp_python.rs) reads the rows back over pgwire.

Usage: otlp_clients.py GRPC_PORT HTTP_PORT TOKEN
"""

import gzip
import json
import sys
import time
import urllib.error
import urllib.request

import grpc
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetrics
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.metrics import Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

grpc_port, http_port, token = sys.argv[1], sys.argv[2], sys.argv[3]
auth = {"authorization": f"Bearer {token}"}
out = {}


def spans_and_logs(resource_attributes):
    """Records two spans (a server span and its failing client child with an event) and two log
    records (one inside the child span) with the SDK, kept in memory for the exporters."""
    resource = Resource.create(
        {
            "service.name": "checkout",
            "service.version": "1.2.3",
            "deployment.environment.name": "test",
            **resource_attributes,
        }
    )
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = tracer_provider.get_tracer("shop.cart", "0.9")
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    logger = logger_provider.get_logger("shop.log")
    with tracer.start_as_current_span(
        "GET /cart",
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": "GET",
            "http.response.status_code": 200,
            "url.path": "/cart",
            "cart.items": 3,
        },
    ):
        with tracer.start_as_current_span("SELECT carts", kind=SpanKind.CLIENT) as child:
            child.set_attribute("db.system.name", "postgresql")
            child.add_event("retry", {"attempt": 2})
            child.set_status(Status(StatusCode.ERROR, "timeout"))
            logger.emit(
                severity_number=SeverityNumber.WARN,
                severity_text="WARN",
                body="slow query",
                attributes={"db.query.text": "SELECT 1", "elapsed_ms": 1500.5},
            )
    logger.emit(
        severity_number=SeverityNumber.ERROR,
        body={"event": "checkout failed", "codes": [1, 2]},
        attributes={"user.id": "u-42"},
    )
    return spans.get_finished_spans(), logs.get_finished_logs()


def metrics(resource_attributes):
    """Records one instrument of every kind with the SDK and collects its points: a counter with
    two label sets (the second with its keys in the other order), a histogram, an exponential
    histogram, an observable gauge and an up-down counter: six points."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        resource=Resource.create({"service.name": "checkout", **resource_attributes}),
        metric_readers=[reader],
        views=[View(instrument_name="payload.size", aggregation=ExponentialBucketHistogramAggregation())],
    )
    meter = provider.get_meter("shop.metrics", "0.9")
    requests = meter.create_counter("http.server.requests", unit="1", description="requests served")
    requests.add(3, {"http.request.method": "GET", "http.response.status_code": 200})
    requests.add(1, {"http.response.status_code": 500, "http.request.method": "GET"})
    latency = meter.create_histogram("http.server.duration", unit="ms")
    for value in [5, 20, 120, 900]:
        latency.record(value, {"route": "/cart"})
    meter.create_observable_gauge(
        "queue.depth", callbacks=[lambda options: [Observation(7, {"queue": "emails"})]]
    )
    size = meter.create_histogram("payload.size", unit="By")
    for value in [100, 1000, 10000]:
        size.record(value)
    inflight = meter.create_up_down_counter("requests.inflight")
    inflight.add(5)
    inflight.add(-2)
    return reader.get_metrics_data()


# gRPC, gzip, the tenant in a header.
spans, logs = spans_and_logs({})
headers = {**auth, "timefusion-project-id": "otlp-grpc"}
endpoint = f"http://127.0.0.1:{grpc_port}"
out["grpc_spans"] = GrpcSpans(
    endpoint=endpoint, insecure=True, headers=headers, compression=grpc.Compression.Gzip
).export(spans).name
out["grpc_logs"] = GrpcLogs(
    endpoint=endpoint, insecure=True, headers=headers, compression=grpc.Compression.Gzip
).export(logs).name
out["trace_id"] = format(spans[0].context.trace_id, "032x")
out["grpc_metrics"] = GrpcMetrics(
    endpoint=endpoint, insecure=True, headers=headers, compression=grpc.Compression.Gzip
).export(metrics({})).name

# HTTP protobuf, the tenant in a resource attribute.
spans, logs = spans_and_logs({"timefusion.project_id": "otlp-http"})
base = f"http://127.0.0.1:{http_port}"
out["http_spans"] = HttpSpans(endpoint=f"{base}/v1/traces", headers=auth).export(spans).name
out["http_logs"] = HttpLogs(
    endpoint=f"{base}/v1/logs", headers=auth, compression=Compression.Gzip
).export(logs).name
out["http_metrics"] = HttpMetrics(endpoint=f"{base}/v1/metrics", headers=auth).export(
    metrics({"timefusion.project_id": "otlp-http"})
).name

# No tenant anywhere: refused, not retried, nothing stored.
spans, logs = spans_and_logs({})
out["grpc_no_tenant"] = GrpcSpans(endpoint=endpoint, insecure=True, headers=auth).export(spans).name
out["http_no_tenant"] = HttpLogs(endpoint=f"{base}/v1/logs", headers=auth).export(logs).name
out["metrics_no_tenant"] = HttpMetrics(endpoint=f"{base}/v1/metrics", headers=auth).export(metrics({})).name
# A wrong token.
out["grpc_wrong_token"] = GrpcSpans(
    endpoint=endpoint, insecure=True, headers={"authorization": "Bearer nope", "timefusion-project-id": "x"}
).export(spans).name


def post(path, body, content_type, extra_headers=None):
    request = urllib.request.Request(
        f"{base}{path}",
        data=body,
        method="POST",
        headers={"Content-Type": content_type, **auth, **(extra_headers or {})},
    )
    try:
        with urllib.request.urlopen(request) as response:
            return {"status": response.status, "body": response.read().decode()}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": e.read().decode(errors="replace")}


# OTLP/JSON as the specification writes it: hex ids, int64 as strings, enums as numbers.
now = time.time_ns()
json_logs = {
    "resourceLogs": [
        {
            "resource": {
                "attributes": [
                    {"key": "service.name", "value": {"stringValue": "json-svc"}},
                    {"key": "timefusion.project_id", "value": {"stringValue": "otlp-json"}},
                ]
            },
            "scopeLogs": [
                {
                    "scope": {"name": "json.scope"},
                    "logRecords": [
                        {
                            "timeUnixNano": str(now),
                            "severityNumber": 9,
                            "body": {"stringValue": "hello from json"},
                            "traceId": "5b8efff798038103d269b633813fc60c",
                            "spanId": "eee19b7ec3c1b174",
                            "attributes": [
                                {"key": "http.response.status_code", "value": {"intValue": "503"}},
                                {"key": "ratio", "value": {"doubleValue": 0.25}},
                            ],
                        }
                    ],
                }
            ],
        }
    ]
}
out["json_logs"] = post("/v1/logs", json.dumps(json_logs).encode(), "application/json")
out["json_gzip"] = post(
    "/v1/logs",
    gzip.compress(json.dumps(json_logs).encode()),
    "application/json",
    {"Content-Encoding": "gzip"},
)
# Bad requests: garbage protobuf, broken JSON, an unknown content type, a span without a start
# time next to a good one (the whole request is refused).
out["bad_protobuf"] = post("/v1/traces", b"\xff\xff\xff\xff", "application/x-protobuf")
out["bad_json"] = post("/v1/logs", b'{"resourceLogs": [', "application/json")
out["bad_type"] = post("/v1/logs", b"hello", "text/plain")
half_bad = {
    "resourceSpans": [
        {
            "resource": {"attributes": [{"key": "timefusion.project_id", "value": {"stringValue": "otlp-json"}}]},
            "scopeSpans": [
                {
                    "spans": [
                        {
                            "traceId": "5b8efff798038103d269b633813fc60c",
                            "spanId": "eee19b7ec3c1b175",
                            "name": "good",
                            "startTimeUnixNano": str(now),
                            "endTimeUnixNano": str(now + 1000),
                        },
                        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b176", "name": "no start"},
                    ]
                }
            ],
        }
    ]
}
out["half_bad"] = post("/v1/traces", json.dumps(half_bad).encode(), "application/json")
# InfluxDB line protocol with InfluxDB's own client: the bucket is the tenant, the token sent
# as `Authorization: Token …`; points at millisecond precision.
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

with InfluxDBClient(url=base, token=token, org="any") as influx:
    write = influx.write_api(write_options=SYNCHRONOUS)
    write.write(
        bucket="influx",
        write_precision=WritePrecision.MS,
        record=[
            Point("cpu").tag("host", "web 1").tag("core", "0").field("usage", 0.5).field("steal", 2).time(1_700_000_000_000, WritePrecision.MS),
            Point("cpu").tag("host", "web 1").tag("core", "1").field("usage", 0.25).field("note", "hot").time(1_700_000_000_000, WritePrecision.MS),
            Point("temperature").field("value", 21.5).field("ok", True).time(1_700_000_001_000, WritePrecision.MS),
        ],
    )
    try:
        write.write(bucket="influx", record="cpu usage=oops")
        out["influx_bad"] = "accepted"
    except Exception as e:  # influxdb_client.rest.ApiException
        out["influx_bad"] = {"status": getattr(e, "status", None), "body": str(getattr(e, "body", e))}
out["influx"] = "written"
print(json.dumps(out))
