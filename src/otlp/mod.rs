//! OpenTelemetry (OTLP) receivers: logs and traces, exported by SDKs and collectors, stored as
//! rows of `otel_logs_and_spans` ([`convert`] says which column holds what), and metric points
//! of every kind as rows of `otel_metrics` ([`metrics`]).
//!
//! - **gRPC** on the gRPC port (`GRPC_PORT`, beside Arrow Flight): the collector's service
//!   names (`opentelemetry.proto.collector.logs.v1.LogsService/Export`, `…trace.v1.TraceService/
//!   Export`, `…metrics.v1.MetricsService/Export`), gzip accepted.
//! - **HTTP** on the HTTP port (`TIMEFUSION_HTTP_PORT`): `POST /v1/logs`, `/v1/traces`,
//!   `/v1/metrics`,
//!   protobuf (`application/x-protobuf`) or JSON (`application/json`), optionally
//!   `Content-Encoding: gzip` ([`http`]).
//! - **Tenant:** each resource's `timefusion.project_id` attribute, else the request's
//!   `timefusion-project-id` header (gRPC metadata); a request with a resource that has
//!   neither is refused whole.
//! - **Durable, whole or nothing:** an export is one [`Ingest::write`], the path INSERT
//!   takes: acknowledged once its WAL record is fsynced, and on any error nothing of it is
//!   stored. Refusals carry OTLP's retry semantics ([`Refusal`]): a client's bad request is
//!   not retryable (`INVALID_ARGUMENT`, HTTP 400); a full buffer, a failing WAL or a shutdown
//!   is (`UNAVAILABLE`, HTTP 503), and the retry stores the records once, since nothing of
//!   the failed attempt was kept.
//! - **Prometheus remote write** (1.0) on the HTTP port: `POST /api/v1/write`, snappy
//!   protobuf, into `otel_metrics` ([`remote_write`], [`metrics::Metrics::samples`]).
//! - **InfluxDB line protocol** on the HTTP port: `POST /api/v2/write` and `POST /write`, into
//!   `otel_metrics` ([`line_protocol`], [`metrics::Metrics::lines`]).
//! - `GRPC_TOKEN`, when set, is required on all of them as `authorization: Bearer <token>`.
//!
//! Tests: `tests/e2e/external/otlp_python.rs` (the OpenTelemetry Python SDK over gRPC and
//! HTTP, OTLP/JSON, InfluxDB's client), `tests/e2e/external/prometheus.rs` (Prometheus' remote
//! write), `fuzz::otlp`.

pub mod convert;
pub mod http;
pub mod line_protocol;
pub mod metrics;
pub mod remote_write;
mod rows;

use std::sync::Arc;

use arrow::array::RecordBatch;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tonic::codec::CompressionEncoding;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;

use crate::engine::Clock;
use crate::engine::batch::owned_bytes;
use crate::engine::ingest::{Ingest, Via};
use crate::engine::schema::Catalog;
use crate::grpc::TokenCheck;
use crate::memory::InFlight;
use convert::{Invalid, LOGS_AND_SPANS, LogsAndSpans};
use metrics::{METRICS, Metrics};

/// The request header (gRPC metadata key) naming the tenant of every resource that does not
/// name its own.
pub const TENANT_HEADER: &str = "timefusion-project-id";

/// The resource attribute naming the tenant of the resource's records.
pub const TENANT_ATTRIBUTE: &str = "timefusion.project_id";

/// The tenant of a resource's records: its [`TENANT_ATTRIBUTE`], else the request's
/// [`TENANT_HEADER`].
fn tenant<'a>(resource: &'a [KeyValue], header: Option<&'a str>) -> Result<&'a str, Invalid> {
    let own = resource
        .iter()
        .find(|kv| kv.key == TENANT_ATTRIBUTE)
        .and_then(|kv| match rows::value_of(kv.value.as_ref()) {
            Some(Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        });
    let given = |t: &&str| !t.is_empty();
    own.filter(given).or(header.filter(given)).ok_or_else(|| {
        Invalid(format!(
            "no tenant: set the `{TENANT_HEADER}` header or the resource attribute \
             `{TENANT_ATTRIBUTE}`"
        ))
    })
}

/// Why an export was not stored; nothing of it was.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// The request's fault; sending it again cannot succeed (`INVALID_ARGUMENT`, HTTP 400).
    Invalid(String),
    /// The server cannot store now (the buffer is full, the WAL refuses writes, shutting
    /// down); retry later (`UNAVAILABLE`, HTTP 503).
    Unavailable(String),
    /// The server cannot store OTLP records at all (its table is missing or lacks a column
    /// they need) or hit a bug (`INTERNAL`, HTTP 500).
    Internal(String),
}

impl From<Invalid> for Refusal {
    fn from(Invalid(message): Invalid) -> Refusal {
        Refusal::Invalid(message)
    }
}

impl Refusal {
    fn status(self) -> tonic::Status {
        match self {
            Refusal::Invalid(m) => tonic::Status::invalid_argument(m),
            Refusal::Unavailable(m) => tonic::Status::unavailable(m),
            Refusal::Internal(m) => tonic::Status::internal(m),
        }
    }
}

/// Stores OTLP exports, remote writes and line protocol through the engine's write path.
pub struct Receiver {
    ingest: Arc<Ingest>,
    clock: Arc<dyn Clock>,
    inflight: InFlight,
    logs_and_spans: Result<LogsAndSpans, String>,
    metrics: Result<Metrics, String>,
}

impl Receiver {
    pub fn new(
        catalog: &Catalog,
        ingest: Arc<Ingest>,
        clock: Arc<dyn Clock>,
        inflight: InFlight,
    ) -> Receiver {
        let logs_and_spans = catalog
            .get(LOGS_AND_SPANS)
            .ok_or_else(|| {
                format!("there is no table {LOGS_AND_SPANS} to store OTLP logs and traces in")
            })
            .and_then(|table| LogsAndSpans::new(table.clone()))
            .map(|mapping| mapping.limited(inflight.budget_bytes()));
        if let Err(why) = &logs_and_spans {
            tracing::warn!("OTLP logs and traces are refused: {why}");
        }
        let metrics = catalog
            .get(METRICS)
            .ok_or_else(|| format!("there is no table {METRICS} to store OTLP metrics in"))
            .and_then(|table| Metrics::new(table.clone()))
            .map(|mapping| mapping.limited(inflight.budget_bytes()));
        if let Err(why) = &metrics {
            tracing::warn!("OTLP metrics are refused: {why}");
        }
        Receiver {
            ingest,
            clock,
            inflight,
            logs_and_spans,
            metrics,
        }
    }

    fn logs_and_spans(&self) -> Result<&LogsAndSpans, Refusal> {
        self.logs_and_spans
            .as_ref()
            .map_err(|why| Refusal::Internal(why.clone()))
    }

    fn metrics_table(&self) -> Result<&Metrics, Refusal> {
        self.metrics
            .as_ref()
            .map_err(|why| Refusal::Internal(why.clone()))
    }

    /// Stores a logs export; the rows stored.
    pub async fn logs(
        &self,
        request: &ExportLogsServiceRequest,
        tenant: Option<&str>,
    ) -> Result<usize, Refusal> {
        let mapping = self.logs_and_spans()?;
        let batch = mapping.logs(request, tenant, self.clock.now_micros())?;
        self.store(mapping.table(), batch, Via::Otlp).await
    }

    /// Stores a traces export; the rows stored.
    pub async fn traces(
        &self,
        request: &ExportTraceServiceRequest,
        tenant: Option<&str>,
    ) -> Result<usize, Refusal> {
        let mapping = self.logs_and_spans()?;
        let batch = mapping.spans(request, tenant)?;
        self.store(mapping.table(), batch, Via::Otlp).await
    }

    /// Stores a metrics export; the rows (data points) stored.
    pub async fn metrics(
        &self,
        request: &ExportMetricsServiceRequest,
        tenant: Option<&str>,
    ) -> Result<usize, Refusal> {
        let mapping = self.metrics_table()?;
        let batch = mapping.points(request, tenant)?;
        self.store(mapping.table(), batch, Via::Otlp).await
    }

    /// Stores a Prometheus remote-write request's samples; the rows stored.
    pub async fn remote_write(
        &self,
        request: &remote_write::WriteRequest,
        tenant: Option<&str>,
    ) -> Result<usize, Refusal> {
        let mapping = self.metrics_table()?;
        let batch = mapping.samples(request, tenant)?;
        self.store(mapping.table(), batch, Via::RemoteWrite).await
    }

    /// Stores InfluxDB line protocol; the rows stored. `bucket` is the request's bucket (v2)
    /// or database (v1), the tenant of lines that name none otherwise.
    pub async fn line_protocol(
        &self,
        text: &str,
        precision: line_protocol::Precision,
        tenant: Option<&str>,
        bucket: Option<&str>,
    ) -> Result<usize, Refusal> {
        let mapping = self.metrics_table()?;
        let lines = line_protocol::parse(text, precision).map_err(Refusal::Invalid)?;
        let batch = mapping.lines(&lines, tenant, bucket, self.clock.now_micros())?;
        self.store(mapping.table(), batch, Via::LineProtocol).await
    }

    async fn store(&self, table: &str, batch: RecordBatch, via: Via) -> Result<usize, Refusal> {
        if batch.num_rows() == 0 {
            return Ok(0);
        }
        let _permit = self
            .inflight
            .admit_kib(owned_bytes(&batch) / 1024)
            .await
            .ok_or_else(|| Refusal::Unavailable("the server is shutting down".into()))?;
        self.ingest.write(table, batch, via).await.map_err(|e| {
            let message = e.to_string();
            match e.sqlstate().class() {
                // Out of room, the WAL, shutting down: another attempt may succeed.
                "53" | "57" | "58" => Refusal::Unavailable(message),
                "XX" => Refusal::Internal(message),
                _ => Refusal::Invalid(message),
            }
        })
    }

    /// The gRPC collector services, each with the token check and message size limit.
    pub fn routes(
        self: &Arc<Self>,
        routes: Routes,
        token: Option<String>,
        max_message_bytes: usize,
    ) -> Routes {
        let logs = LogsServiceServer::new(Grpc(self.clone()))
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(max_message_bytes);
        let traces = TraceServiceServer::new(Grpc(self.clone()))
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(max_message_bytes);
        let metrics = MetricsServiceServer::new(Grpc(self.clone()))
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(max_message_bytes);
        let checked = || TokenCheck::new(token.clone());
        routes
            .add_service(InterceptedService::new(logs, checked()))
            .add_service(InterceptedService::new(traces, checked()))
            .add_service(InterceptedService::new(metrics, checked()))
    }
}

/// The gRPC services over a [`Receiver`].
struct Grpc(Arc<Receiver>);

/// The tenant header of a gRPC call.
fn header_tenant(metadata: &tonic::metadata::MetadataMap) -> Option<&str> {
    metadata.get(TENANT_HEADER).and_then(|v| v.to_str().ok())
}

/// The gRPC `Export` of one signal: the tenant header, the receiver's `$store`, and an empty
/// response (no partial success: an export is stored whole or refused).
macro_rules! export {
    ($service:path, $request:ty, $response:ty, $store:ident) => {
        #[tonic::async_trait]
        impl $service for Grpc {
            async fn export(
                &self,
                request: tonic::Request<$request>,
            ) -> Result<tonic::Response<$response>, tonic::Status> {
                let tenant = header_tenant(request.metadata()).map(str::to_owned);
                self.0
                    .$store(request.get_ref(), tenant.as_deref())
                    .await
                    .map_err(Refusal::status)?;
                Ok(tonic::Response::new(<$response>::default()))
            }
        }
    };
}

export!(
    LogsService,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
    logs
);
export!(
    TraceService,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
    traces
);
export!(
    MetricsService,
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
    metrics
);
