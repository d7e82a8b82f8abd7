//! OTLP ingest benchmark: the rows/s a running TimeFusion takes as OpenTelemetry exports
//! (gRPC traces, gRPC logs, OTLP/HTTP protobuf traces), side by side with Arrow Flight DoPut
//! of the same rows, then a check over pgwire that every acknowledged row is there.
//!
//! `cargo run --release --example otlp_ingest -- --grpc http://127.0.0.1:50051 --http
//! 127.0.0.1:8080 --timefusion "host=127.0.0.1 port=5432 user=postgres password=postgres
//! dbname=postgres" [--clients 4 --requests 25 --batch-rows 1000] [--server-pid PID]`;
//! `bench/run_otlp.sh` starts a throwaway server and runs it. See `bench/README.md`.

#[path = "common.rs"]
mod common;
#[path = "gen.rs"]
mod generator;

use std::collections::HashMap;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch, StringArray};
use arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType};
use bytes::{Buf, BufMut, Bytes};
use clap::Parser;
use common::{connect, flight_client, percentile, put};
use generator::Generator;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;

#[derive(Parser, Debug)]
struct Args {
    /// TimeFusion gRPC endpoint (OTLP collector services and Arrow Flight), e.g.
    /// http://127.0.0.1:50051.
    #[arg(long)]
    grpc: String,
    /// TimeFusion HTTP endpoint (OTLP/HTTP), host:port, e.g. 127.0.0.1:8080.
    #[arg(long)]
    http: String,
    /// TimeFusion Postgres connection string, for the row count check.
    #[arg(long)]
    timefusion: String,
    /// Concurrent clients per phase, each with its own connection (a gRPC channel, a
    /// keep-alive HTTP/1.1 connection, a DoPut stream).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Timed export requests (DoPut batches) per client.
    #[arg(long, default_value_t = 25)]
    requests: usize,
    /// Spans or log records per export request, rows per DoPut batch.
    #[arg(long, default_value_t = 1000)]
    batch_rows: usize,
    /// Untimed requests per client before each phase's clock starts (its first ones, sent
    /// once more in the timed part): connections, server buffers and page faults warm.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Generator seed; every phase sends the rows of this seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Timestamps are spread over this many minutes before now: 5 is live telemetry, what
    /// exporters send; 10080 (7 days) is a backfill.
    #[arg(long, default_value_t = 5)]
    span_minutes: i64,
    /// Compress requests with gzip, as the OpenTelemetry Collector's exporters do by default
    /// (HTTP bodies compressed before the clock starts; gRPC messages by tonic as they are sent,
    /// so that time is in the figures).
    #[arg(long)]
    gzip: bool,
    /// Cores of the server's machine, for rows/s per core (default: this machine's).
    #[arg(long)]
    server_cores: Option<usize>,
    /// The server's process id, when on this machine: each phase then also reports the
    /// server's CPU seconds (user + system, from /proc) and rows per server CPU second.
    #[arg(long)]
    server_pid: Option<u32>,
    /// End of the generated timestamps: when the tool started, so that every phase gets
    /// exactly the same rows.
    #[arg(skip = chrono::Utc::now().timestamp_micros())]
    end_micros: i64,
}

const TABLE: &str = "otel_logs_and_spans";
const TRACES_GRPC: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const LOGS_GRPC: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
const TRACES_HTTP: &str = "/v1/traces";
const DOPUT: &str = "Flight DoPut";

/// One phase's result.
#[derive(Debug, serde::Serialize)]
struct Figure {
    phase: String,
    /// Timed requests (DoPut batches) and their rows.
    requests: usize,
    rows: usize,
    secs: f64,
    rows_per_sec: f64,
    rows_per_sec_per_core: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    /// Mean request body on the wire (gzipped with `--gzip`; DoPut: the batch as Arrow IPC).
    bytes_per_request: usize,
    /// The server's user + system CPU seconds over the timed part, with `--server-pid`.
    server_cpu_secs: Option<f64>,
    /// Rows sent untimed before the clock started.
    warmup_rows: usize,
}

/// What every phase sends: per client, the rows of each of its requests.
struct Work {
    batches: Vec<Vec<RecordBatch>>,
    rows_per_request: usize,
}

impl Work {
    fn new(args: &Args) -> Work {
        let mut g = Generator::new(args.seed, args.end_micros, args.span_minutes);
        let batches = (0..args.clients)
            .map(|_| {
                (0..args.requests)
                    .map(|_| generator::batch_of(&g.rows(args.batch_rows)))
                    .collect()
            })
            .collect();
        Work {
            batches,
            rows_per_request: args.batch_rows,
        }
    }

    /// Every request encoded by `encode`, per client.
    fn bodies(&self, encode: impl Fn(&RecordBatch) -> Vec<u8>) -> Vec<Vec<Bytes>> {
        self.batches
            .iter()
            .map(|client| client.iter().map(|b| Bytes::from(encode(b))).collect())
            .collect()
    }
}

/// The generated columns of one batch (`generator::COLUMNS`), typed.
struct Columns<'a> {
    project: &'a StringArray,
    timestamp: &'a [i64],
    parent_id: &'a StringArray,
    name: &'a StringArray,
    status_code: &'a StringArray,
    level: &'a StringArray,
    severity: &'a [i32],
    body: &'a StringArray,
    duration: &'a [i64],
    trace_id: &'a StringArray,
    span_id: &'a StringArray,
    attributes: &'a StringArray,
    method: &'a StringArray,
    http_status: &'a [i32],
    path: &'a StringArray,
    service: &'a StringArray,
    version: &'a StringArray,
    environment: &'a StringArray,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a RecordBatch) -> Columns<'a> {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap_or_else(|| panic!("generated column {name}"))
        };
        let text = |name: &str| column(name).as_string::<i32>();
        Columns {
            project: text("project_id"),
            timestamp: column("timestamp")
                .as_primitive::<TimestampMicrosecondType>()
                .values(),
            parent_id: text("parent_id"),
            name: text("name"),
            status_code: text("status_code"),
            level: text("level"),
            severity: column("severity___severity_number")
                .as_primitive::<Int32Type>()
                .values(),
            body: text("body"),
            duration: column("duration").as_primitive::<Int64Type>().values(),
            trace_id: text("context___trace_id"),
            span_id: text("context___span_id"),
            attributes: text("attributes"),
            method: text("attributes___http___request___method"),
            http_status: column("attributes___http___response___status_code")
                .as_primitive::<Int32Type>()
                .values(),
            path: text("attributes___url___path"),
            service: text("resource___service___name"),
            version: text("resource___service___version"),
            environment: text("resource___deployment___environment___name"),
        }
    }

    /// Row `i`'s tenant and service: one resource of an export.
    fn resource_key(&self, i: usize) -> (&'a str, &'a str) {
        (self.project.value(i), self.service.value(i))
    }

    /// The resource attributes an SDK sends for row `i`'s service, with the tenant.
    fn resource(&self, i: usize) -> Resource {
        let service = self.service.value(i);
        let host: u32 = service.trim_start_matches("service-").parse().unwrap_or(0);
        Resource {
            attributes: vec![
                text("service.name", service),
                text("service.version", self.version.value(i)),
                text("service.instance.id", &format!("{service}-7f9c4b6d5-x2k8p")),
                text("deployment.environment.name", self.environment.value(i)),
                text(
                    "host.name",
                    &format!("ip-10-0-{}-{}.ec2.internal", host / 64, host % 64),
                ),
                text("telemetry.sdk.name", "opentelemetry"),
                text("telemetry.sdk.language", "rust"),
                text("telemetry.sdk.version", "0.31.0"),
                text("timefusion.project_id", self.project.value(i)),
            ],
            ..Default::default()
        }
    }

    /// Row `i`'s message and request id, from its JSON body.
    fn message(&self, i: usize) -> (String, String) {
        let body: serde_json::Value =
            serde_json::from_str(self.body.value(i)).expect("generated body is JSON");
        let field = |k: &str| body[k].as_str().unwrap_or_default().to_string();
        (field("message"), field("request_id"))
    }

    /// The HTTP server attributes of row `i`, as an instrumented service records them.
    fn http_attributes(&self, i: usize, request_id: &str) -> Vec<KeyValue> {
        let attributes: serde_json::Value =
            serde_json::from_str(self.attributes.value(i)).expect("generated attributes");
        let span_id = self.span_id.value(i);
        let pick = u8::from_str_radix(&span_id[14..], 16).unwrap_or(0);
        let path = self.path.value(i);
        vec![
            text("http.request.method", self.method.value(i)),
            int("http.response.status_code", self.http_status[i].into()),
            text("url.path", path),
            text("http.route", &path.replace("/items", "/{id}")),
            text("url.scheme", "https"),
            text(
                "server.address",
                &format!("{}.svc.cluster.local", self.service.value(i)),
            ),
            int("server.port", 8443),
            text(
                "user_agent.original",
                USER_AGENTS[usize::from(pick) % USER_AGENTS.len()],
            ),
            text("client.address", &format!("10.0.{}.{}", pick / 16, pick)),
            text(
                "user.id",
                attributes["user.id"].as_str().unwrap_or_default(),
            ),
            text("app.request_id", request_id),
        ]
    }

    fn start_nanos(&self, i: usize) -> u64 {
        self.timestamp[i] as u64 * 1_000
    }

    /// Row `i` as a server span: an `exception` event when it failed, a `log` event when it
    /// warned.
    fn span(&self, i: usize) -> Span {
        let (message, request_id) = self.message(i);
        let start = self.start_nanos(i);
        let end = start + self.duration[i] as u64;
        let failed = self.status_code.value(i) == "ERROR";
        let event = match self.level.value(i) {
            _ if failed => Some(Event {
                time_unix_nano: end,
                name: "exception".into(),
                attributes: vec![
                    text("exception.type", "HttpServerError"),
                    text("exception.message", &message),
                ],
                ..Default::default()
            }),
            "WARN" => Some(Event {
                time_unix_nano: end,
                name: "log".into(),
                attributes: vec![text("log.severity", "WARN"), text("log.message", &message)],
                ..Default::default()
            }),
            _ => None,
        };
        Span {
            trace_id: hex(self.trace_id.value(i)),
            span_id: hex(self.span_id.value(i)),
            parent_span_id: hex(self.parent_id.value(i)),
            // Sampled; the parent's remoteness known (and local).
            flags: 0x101,
            name: self.name.value(i).into(),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes: self.http_attributes(i, &request_id),
            events: event.into_iter().collect(),
            status: Some(Status {
                code: if failed {
                    StatusCode::Error
                } else {
                    StatusCode::Ok
                } as i32,
                message: if failed {
                    format!("HTTP {}", self.http_status[i])
                } else {
                    String::new()
                },
            }),
            ..Default::default()
        }
    }

    /// Row `i` as the log record the request handler writes, in the span's trace context.
    fn log(&self, i: usize) -> LogRecord {
        let (message, request_id) = self.message(i);
        let time = self.start_nanos(i) + self.duration[i] as u64;
        let mut attributes = self.http_attributes(i, &request_id);
        attributes.push(text("code.function.name", "handle_request"));
        LogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: time + 1_000_000,
            severity_number: self.severity[i],
            severity_text: self.level.value(i).into(),
            body: Some(AnyValue {
                value: Some(Value::StringValue(message)),
            }),
            attributes,
            flags: 1,
            trace_id: hex(self.trace_id.value(i)),
            span_id: hex(self.span_id.value(i)),
            ..Default::default()
        }
    }
}

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "okhttp/4.12.0",
    "python-requests/2.32.3",
    "Go-http-client/2.0",
];

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// The bytes of a hex id.
fn hex(id: &str) -> Vec<u8> {
    (0..id.len() / 2)
        .map(|i| u8::from_str_radix(&id[2 * i..2 * i + 2], 16).expect("hex id"))
        .collect()
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "opentelemetry-instrumentation-http".into(),
        version: "0.31.0".into(),
        ..Default::default()
    })
}

/// The rows of `batch` grouped as an SDK or collector sends them: one resource per
/// (tenant, service), in order of first appearance, each with the indices of its rows.
fn by_resource(columns: &Columns) -> Vec<Vec<usize>> {
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for i in 0..columns.timestamp.len() {
        let g = *index.entry(columns.resource_key(i)).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    groups
}

/// The batch's rows as one traces export.
fn traces_of(batch: &RecordBatch) -> ExportTraceServiceRequest {
    let c = Columns::of(batch);
    let resource_spans = by_resource(&c)
        .into_iter()
        .map(|rows| ResourceSpans {
            resource: Some(c.resource(rows[0])),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans: rows.iter().map(|&i| c.span(i)).collect(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// The batch's rows as one logs export.
fn logs_of(batch: &RecordBatch) -> ExportLogsServiceRequest {
    let c = Columns::of(batch);
    let resource_logs = by_resource(&c)
        .into_iter()
        .map(|rows| ResourceLogs {
            resource: Some(c.resource(rows[0])),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: rows.iter().map(|&i| c.log(i)).collect(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest { resource_logs }
}

fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body).expect("gzip");
    encoder.finish().expect("gzip")
}

fn rejected_spans(response: ExportTraceServiceResponse) -> i64 {
    response.partial_success.map_or(0, |p| p.rejected_spans)
}

fn rejected_logs(response: ExportLogsServiceResponse) -> i64 {
    response
        .partial_success
        .map_or(0, |p| p.rejected_log_records)
}

/// A gRPC codec that sends request bodies encoded beforehand, so the timed part does not
/// encode, and decodes the (empty) export response `R`.
struct Raw<R>(PhantomData<R>);

impl<R> Raw<R> {
    fn new() -> Self {
        Raw(PhantomData)
    }
}

impl<R: Message + Default + Send + 'static> Codec for Raw<R> {
    type Encode = Bytes;
    type Decode = R;
    type Encoder = Raw<R>;
    type Decoder = Raw<R>;

    fn encoder(&mut self) -> Raw<R> {
        Raw::new()
    }

    fn decoder(&mut self) -> Raw<R> {
        Raw::new()
    }
}

impl<R> Encoder for Raw<R> {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl<R: Message + Default> Decoder for Raw<R> {
    type Item = R;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<R>, tonic::Status> {
        let message = R::decode(src.copy_to_bytes(src.remaining()))
            .map_err(|e| tonic::Status::internal(format!("export response: {e}")))?;
        Ok(Some(message))
    }
}

/// One keep-alive HTTP/1.1 connection that POSTs OTLP/HTTP protobuf bodies.
struct HttpClient {
    stream: BufReader<TcpStream>,
    host: String,
    gzip: bool,
}

impl HttpClient {
    async fn connect(host: &str, gzip: bool) -> HttpClient {
        let stream = TcpStream::connect(host)
            .await
            .unwrap_or_else(|e| panic!("connect to {host}: {e}"));
        stream.set_nodelay(true).expect("TCP_NODELAY");
        HttpClient {
            stream: BufReader::new(stream),
            host: host.into(),
            gzip,
        }
    }

    /// POSTs `body` to `path`, returning once the response is read; panics unless it is 200.
    async fn post(&mut self, path: &str, body: &[u8]) {
        let encoding = if self.gzip {
            "Content-Encoding: gzip\r\n"
        } else {
            ""
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-protobuf\r\n{encoding}Content-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let stream = self.stream.get_mut();
        stream.write_all(head.as_bytes()).await.expect("send head");
        stream.write_all(body).await.expect("send body");
        let mut line = String::new();
        self.stream
            .read_line(&mut line)
            .await
            .expect("response status");
        let status = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut length = 0;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.expect("header");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().expect("Content-Length");
                }
                assert!(
                    !(name.eq_ignore_ascii_case("connection") && value.trim() == "close"),
                    "the server closed the keep-alive connection"
                );
            }
        }
        let mut response = vec![0; length];
        self.stream
            .read_exact(&mut response)
            .await
            .expect("response body");
        assert_eq!(
            status,
            "200",
            "POST {path}: HTTP {status}: {}",
            String::from_utf8_lossy(&response)
        );
    }
}

/// The server's user + system CPU time so far, from /proc/<pid>/stat (in clock ticks of
/// 1/100 s, Linux's USER_HZ).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/stat: {e}"));
    // Fields after the command name, which may hold spaces: state is field 3, utime 14.
    let after = stat.rsplit_once(')').expect("stat").1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields[i - 3].parse::<u64>().expect("ticks");
    (ticks(14) + ticks(15)) as f64 / 100.0
}

/// The wall clock of one phase's timed part, and the server's CPU time at its start.
struct Clock {
    started: Instant,
    cpu: Option<f64>,
}

impl Clock {
    fn start(args: &Args) -> Clock {
        Clock {
            cpu: args.server_pid.map(cpu_secs),
            started: Instant::now(),
        }
    }

    /// The phase's figure, from the ack latencies of its requests.
    fn figure(
        self,
        phase: &str,
        args: &Args,
        mut latencies: Vec<Duration>,
        bytes: usize,
    ) -> Figure {
        let secs = self.started.elapsed().as_secs_f64();
        let server_cpu_secs = args
            .server_pid
            .zip(self.cpu)
            .map(|(pid, before)| cpu_secs(pid) - before);
        let rows = args.clients * args.requests * args.batch_rows;
        let rows_per_sec = rows as f64 / secs;
        latencies.sort();
        let quantile = |p| (!latencies.is_empty()).then(|| percentile(&latencies, p));
        Figure {
            phase: phase.into(),
            requests: args.clients * args.requests,
            rows,
            secs,
            rows_per_sec,
            rows_per_sec_per_core: rows_per_sec / server_cores(args) as f64,
            p50_ms: quantile(0.5),
            p99_ms: quantile(0.99),
            bytes_per_request: bytes,
            server_cpu_secs,
            warmup_rows: args.clients * args.warmup.min(args.requests) * args.batch_rows,
        }
    }
}

fn server_cores(args: &Args) -> usize {
    args.server_cores.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
    })
}

/// The mean size of `bodies` on the wire, gzipped first when `gzipped` (as tonic sends them
/// with `--gzip`; about: tonic's compression level may differ).
fn wire_len(bodies: &[Vec<Bytes>], gzipped: bool) -> usize {
    let (sum, n) = bodies.iter().flatten().fold((0, 0), |(sum, n), b| {
        let len = if gzipped { gzip(b).len() } else { b.len() };
        (sum + len, n + 1)
    });
    sum / n.max(1)
}

type GrpcClient = tonic::client::Grpc<tonic::transport::Channel>;

/// One OTLP gRPC export of `body` (encoded beforehand) to `path`, awaited; panics unless the
/// server acknowledged every record (`rejected` reads the response's partial success).
async fn export<R: Message + Default + Send + Sync + 'static>(
    client: &mut GrpcClient,
    path: &'static str,
    body: Bytes,
    rejected: fn(R) -> i64,
) {
    client.ready().await.expect("gRPC channel");
    let response = client
        .unary(
            tonic::Request::new(body),
            PathAndQuery::from_static(path),
            Raw::<R>::new(),
        )
        .await
        .unwrap_or_else(|status| panic!("{path}: {status}"));
    let rejected = rejected(response.into_inner());
    assert_eq!(rejected, 0, "{path}: {rejected} records rejected");
}

/// OTLP gRPC: every client, on its own channel (HTTP/2 connection), exports its requests one
/// after the other, each awaited (acknowledged once durable).
async fn grpc<R: Message + Default + Send + Sync + 'static>(
    phase: &str,
    path: &'static str,
    rejected: fn(R) -> i64,
    bodies: &[Vec<Bytes>],
    args: &Args,
) -> Figure {
    let mut clients = Vec::new();
    for requests in bodies {
        let channel = tonic::transport::Channel::from_shared(args.grpc.clone())
            .expect("gRPC URI")
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", args.grpc));
        let mut client = GrpcClient::new(channel);
        if args.gzip {
            client = client.send_compressed(tonic::codec::CompressionEncoding::Gzip);
        }
        for body in requests.iter().take(args.warmup) {
            export(&mut client, path, body.clone(), rejected).await;
        }
        clients.push(client);
    }
    let bytes = wire_len(bodies, args.gzip);
    let clock = Clock::start(args);
    let tasks: Vec<_> = clients
        .into_iter()
        .zip(bodies.to_vec())
        .map(|(mut client, requests)| {
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(requests.len());
                for body in requests {
                    let t = Instant::now();
                    export(&mut client, path, body, rejected).await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let latencies = join(tasks).await;
    clock.figure(phase, args, latencies, bytes)
}

/// OTLP/HTTP: every client, on its own keep-alive connection, POSTs its requests one after
/// the other, each awaited.
async fn http(phase: &str, path: &'static str, bodies: &[Vec<Bytes>], args: &Args) -> Figure {
    let mut clients = Vec::new();
    for requests in bodies {
        let mut client = HttpClient::connect(&args.http, args.gzip).await;
        for body in requests.iter().take(args.warmup) {
            client.post(path, body).await;
        }
        clients.push(client);
    }
    // Already gzipped with `--gzip`.
    let bytes = wire_len(bodies, false);
    let clock = Clock::start(args);
    let tasks: Vec<_> = clients
        .into_iter()
        .zip(bodies.to_vec())
        .map(|(mut client, requests)| {
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(requests.len());
                for body in requests {
                    let t = Instant::now();
                    client.post(path, &body).await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let latencies = join(tasks).await;
    clock.figure(phase, args, latencies, bytes)
}

/// Arrow Flight DoPut of the same rows: every client one DoPut stream of its batches, each
/// acknowledged once durable.
async fn flight(work: &Work, args: &Args) -> Figure {
    let mut clients = Vec::new();
    for batches in &work.batches {
        let mut client = flight_client(&args.grpc).await;
        let warmup: Vec<_> = batches.iter().take(args.warmup).cloned().collect();
        if !warmup.is_empty() {
            put(&mut client, TABLE, futures::stream::iter(warmup)).await;
        }
        clients.push(client);
    }
    let bytes = ipc_len(&work.batches[0][0]);
    let clock = Clock::start(args);
    let tasks: Vec<_> = clients
        .into_iter()
        .zip(work.batches.clone())
        .map(|(mut client, batches)| {
            tokio::spawn(async move {
                let count = batches.len();
                let put = put(&mut client, TABLE, futures::stream::iter(batches)).await;
                assert_eq!(put.sent, count, "every batch sent");
                put.latencies
            })
        })
        .collect();
    let latencies = join(tasks).await;
    clock.figure(DOPUT, args, latencies, bytes)
}

/// The size of `batch` as one Arrow IPC stream (schema and batch), about what DoPut sends.
fn ipc_len(batch: &RecordBatch) -> usize {
    let mut out = Vec::new();
    let mut writer =
        arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).expect("IPC writer");
    writer.write(batch).expect("IPC write");
    writer.finish().expect("IPC finish");
    drop(writer);
    out.len()
}

/// Every client task's latencies.
async fn join(tasks: Vec<tokio::task::JoinHandle<Vec<Duration>>>) -> Vec<Duration> {
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("client"));
    }
    latencies
}

/// `count(*)` of the table over pgwire.
async fn count(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {TABLE}"), &[])
        .await
        .expect("count rows")
        .get(0)
}

/// Checks that the table grew by exactly the rows of `figure` (warm-up included).
async fn verify(client: &tokio_postgres::Client, expected: &mut i64, figure: &Figure) {
    *expected += (figure.rows + figure.warmup_rows) as i64;
    let found = count(client).await;
    assert_eq!(
        found, *expected,
        "after {}: {TABLE} has {found} rows, {expected} were acknowledged: rows were lost (or \
         another writer is using this server)",
        figure.phase
    );
}

fn report(figures: &[Figure], args: &Args, total: i64) {
    let cores = server_cores(args);
    let doput = figures.iter().find(|f| f.phase == DOPUT);
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
    println!();
    println!(
        "| phase | rows | secs | rows/s | rows/s per core ({cores}) | p50 ms | p99 ms | KiB / request | server CPU s | rows / server CPU s | rows/s vs DoPut |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for f in figures {
        let cpu = f.server_cpu_secs;
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} |",
            f.phase,
            f.rows,
            f.secs,
            f.rows_per_sec,
            f.rows_per_sec_per_core,
            ms(f.p50_ms),
            ms(f.p99_ms),
            f.bytes_per_request / 1024,
            cpu.map_or("-".into(), |c| format!("{c:.2}")),
            cpu.map_or("-".into(), |c| format!("{:.0}", f.rows as f64 / c)),
            doput.map_or("-".into(), |d| format!(
                "{:.2}x",
                f.rows_per_sec / d.rows_per_sec
            )),
        );
    }
    println!();
    println!(
        "rows/s per core: rows/s / {cores} cores of the server's machine; client and server share this machine, so the client's CPU is in it too{}.",
        if args.server_pid.is_some() {
            "; server CPU s: the server process's user + system time over the timed part"
        } else {
            ""
        }
    );
    println!(
        "p50 / p99: acknowledgement latency of one request, once durable (WAL fsync); OTLP clients wait for each ack before the next request, \
         a DoPut stream does not: a batch's latency runs from the moment the encoder takes it, queueing behind the stream's earlier batches included."
    );
    println!(
        "verified: SELECT count(*) FROM {TABLE} grew by {total} rows, every row acknowledged (warm-up included)."
    );
    println!(
        "{}",
        serde_json::json!({ "figures": figures, "server_cores": cores, "gzip": args.gzip })
    );
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    assert!(
        args.clients > 0 && args.requests > 0 && args.batch_rows > 0,
        "nothing to send"
    );
    let prepared = Instant::now();
    let work = Work::new(&args);
    let traces = work.bodies(|b| traces_of(b).encode_to_vec());
    let logs = work.bodies(|b| logs_of(b).encode_to_vec());
    let http_traces = if args.gzip {
        work.bodies(|b| gzip(&traces_of(b).encode_to_vec()))
    } else {
        traces.clone()
    };
    let resources: usize = work
        .batches
        .iter()
        .flatten()
        .map(|b| by_resource(&Columns::of(b)).len())
        .sum();
    println!(
        "otlp_ingest: {c} clients x {m} requests x {b} rows per phase ({w} untimed warm-up request(s) per client first), seed {seed}, timestamps over the {s} minutes before {end}, gzip {gz}; \
         {r:.0} resources (tenant x service) per export on average; {rows} rows per request: bodies built in {p:.1} s (not timed)",
        c = args.clients,
        m = args.requests,
        b = args.batch_rows,
        w = args.warmup.min(args.requests),
        seed = args.seed,
        s = args.span_minutes,
        end = chrono::DateTime::from_timestamp_micros(args.end_micros).unwrap_or_default(),
        gz = if args.gzip { "on" } else { "off" },
        r = resources as f64 / (args.clients * args.requests) as f64,
        rows = work.rows_per_request,
        p = prepared.elapsed().as_secs_f64(),
    );

    let pg = connect(&args.timefusion).await;
    let before = count(&pg).await;
    let mut expected = before;
    let mut figures = Vec::new();
    for phase in 0..4 {
        let figure = match phase {
            0 => {
                grpc(
                    "OTLP gRPC traces",
                    TRACES_GRPC,
                    rejected_spans,
                    &traces,
                    &args,
                )
                .await
            }
            1 => grpc("OTLP gRPC logs", LOGS_GRPC, rejected_logs, &logs, &args).await,
            2 => {
                http(
                    "OTLP/HTTP protobuf traces",
                    TRACES_HTTP,
                    &http_traces,
                    &args,
                )
                .await
            }
            _ => flight(&work, &args).await,
        };
        println!(
            "{}: {} rows in {:.2} s, {:.0} rows/s, p50 {} ms, p99 {} ms",
            figure.phase,
            figure.rows,
            figure.secs,
            figure.rows_per_sec,
            figure.p50_ms.map_or("-".into(), |v| format!("{v:.1}")),
            figure.p99_ms.map_or("-".into(), |v| format!("{v:.1}")),
        );
        verify(&pg, &mut expected, &figure).await;
        figures.push(figure);
    }
    let total = count(&pg).await - before;
    assert_eq!(total, expected - before, "rows lost");
    report(&figures, &args, total);
}
