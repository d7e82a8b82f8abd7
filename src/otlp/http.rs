//! OTLP/HTTP: `POST /v1/logs`, `/v1/traces` and `/v1/metrics` on the HTTP port, as the OTLP
//! specification describes them, Prometheus remote write (`POST /api/v1/write`) and InfluxDB
//! line protocol (`POST /api/v2/write`, `POST /write`).
//!
//! - The body is an `Export…ServiceRequest` in protobuf (`Content-Type:
//!   application/x-protobuf`) or OTLP/JSON (`application/json`); the answer is in the same
//!   encoding. `Content-Encoding: gzip` is accepted. Another content type is 415.
//! - A body (compressed, and again decompressed) larger than `TIMEFUSION_GRPC_MAX_MESSAGE_MB`
//!   is 413.
//! - 200 with an empty `Export…ServiceResponse` once every record is durable. A refusal is a
//!   `google.rpc.Status` in the request's encoding: 400 when the request is at fault (not
//!   to be retried), 503 with `Retry-After` when the server cannot store now, 500 otherwise;
//!   401 without the `GRPC_TOKEN` bearer when one is set.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Request, Response, StatusCode};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use super::remote_write::WriteRequest;
use super::{Receiver, Refusal, TENANT_HEADER};

/// Seconds a client is asked to wait before retrying a 503.
const RETRY_AFTER_SECONDS: &str = "1";

/// Prometheus remote write's path.
pub const REMOTE_WRITE: &str = "/api/v1/write";

/// InfluxDB line protocol's paths: v2's and v1's.
pub const LINE_PROTOCOL: [&str; 2] = ["/api/v2/write", "/write"];

/// The paths this endpoint answers: OTLP/HTTP's, remote write's and line protocol's.
pub const PATHS: [&str; 6] = [
    "/v1/logs",
    "/v1/traces",
    "/v1/metrics",
    REMOTE_WRITE,
    LINE_PROTOCOL[0],
    LINE_PROTOCOL[1],
];

/// What an export holds, by its path.
#[derive(Clone, Copy, PartialEq)]
enum Signal {
    Logs,
    Traces,
    Metrics,
}

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// A refusal before the request reached the receiver, with its HTTP status.
struct Failed {
    status: StatusCode,
    message: String,
}

fn failed(status: StatusCode, message: impl Into<String>) -> Failed {
    Failed {
        status,
        message: message.into(),
    }
}

/// The OTLP/HTTP endpoint.
pub struct Endpoint {
    receiver: Arc<Receiver>,
    token: Option<Arc<str>>,
    max_bytes: usize,
}

impl Endpoint {
    pub fn new(receiver: Arc<Receiver>, token: Option<String>, max_bytes: usize) -> Endpoint {
        Endpoint {
            receiver,
            token: token.map(Into::into),
            max_bytes,
        }
    }

    /// Answers a `POST` to one of [`PATHS`].
    pub async fn export(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if request.uri().path() == REMOTE_WRITE {
            return self.remote_write(request).await;
        }
        if LINE_PROTOCOL.contains(&request.uri().path()) {
            return self.line_protocol(request).await;
        }
        // Errors are answered in the request's encoding when it has a known one.
        let encoding = encoding_of(&request).unwrap_or(Encoding::Protobuf);
        match self.handle(request).await {
            Ok(body) => respond(StatusCode::OK, encoding.content_type(), body),
            Err(Failed { status, message }) => {
                let code = match status {
                    StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => {
                        tonic::Code::InvalidArgument
                    }
                    StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
                    StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => tonic::Code::Unimplemented,
                    _ => tonic::Code::Internal,
                };
                respond(
                    status,
                    encoding.content_type(),
                    status_body(encoding, code, &message),
                )
            }
        }
    }

    async fn handle(&self, request: Request<Incoming>) -> Result<Vec<u8>, Failed> {
        self.check_token(&request)?;
        let encoding = encoding_of(&request).ok_or_else(|| {
            failed(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/x-protobuf or application/json",
            )
        })?;
        let gzip = gzip_of(&request)?;
        let tenant = tenant_of(&request);
        let signal = match request.uri().path() {
            "/v1/logs" => Signal::Logs,
            "/v1/traces" => Signal::Traces,
            _ => Signal::Metrics,
        };
        let body = self.body(request.into_body(), gzip).await?;
        let tenant = tenant.as_deref();
        let outcome = match signal {
            Signal::Logs => {
                let export: ExportLogsServiceRequest = decode(encoding, &body)?;
                drop(body);
                self.receiver.logs(&export, tenant).await
            }
            Signal::Traces => {
                let export: ExportTraceServiceRequest = decode(encoding, &body)?;
                drop(body);
                self.receiver.traces(&export, tenant).await
            }
            Signal::Metrics => {
                let export: ExportMetricsServiceRequest = decode(encoding, &body)?;
                drop(body);
                self.receiver.metrics(&export, tenant).await
            }
        };
        outcome.map_err(refused)?;
        Ok(match (signal, encoding) {
            (_, Encoding::Json) => b"{}".to_vec(),
            (Signal::Logs, _) => ExportLogsServiceResponse::default().encode_to_vec(),
            (Signal::Traces, _) => ExportTraceServiceResponse::default().encode_to_vec(),
            (Signal::Metrics, _) => ExportMetricsServiceResponse::default().encode_to_vec(),
        })
    }

    /// A Prometheus remote write: 204 once stored; a refusal as plain text, 400 (Prometheus
    /// drops the batch) or 503 / 500 (it retries).
    async fn remote_write(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let outcome = async {
            self.check_token(&request)?;
            let content_type = request
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_ascii_lowercase();
            if !content_type.starts_with("application/x-protobuf")
                || content_type.contains("io.prometheus.write.v2")
            {
                return Err(failed(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "remote write 1.0 only: Content-Type application/x-protobuf \
                     (prometheus.WriteRequest)",
                ));
            }
            let snappy = request
                .headers()
                .get(CONTENT_ENCODING)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("snappy"));
            if !snappy {
                return Err(failed(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "remote write bodies are snappy-compressed: Content-Encoding: snappy",
                ));
            }
            let tenant = tenant_of(&request);
            let compressed = self.body(request.into_body(), false).await?;
            let length = snap::raw::decompress_len(&compressed).map_err(|e| {
                failed(StatusCode::BAD_REQUEST, format!("invalid snappy body: {e}"))
            })?;
            if length > self.max_bytes {
                return Err(self.too_large());
            }
            let body = snap::raw::Decoder::new()
                .decompress_vec(&compressed)
                .map_err(|e| {
                    failed(StatusCode::BAD_REQUEST, format!("invalid snappy body: {e}"))
                })?;
            drop(compressed);
            let write = WriteRequest::decode(&body[..]).map_err(|e| {
                failed(
                    StatusCode::BAD_REQUEST,
                    format!("invalid remote-write protobuf: {e}"),
                )
            })?;
            drop(body);
            self.receiver
                .remote_write(&write, tenant.as_deref())
                .await
                .map_err(refused)
        }
        .await;
        match outcome {
            Ok(_) => respond(
                StatusCode::NO_CONTENT,
                "text/plain; charset=utf-8",
                Vec::new(),
            ),
            Err(Failed { status, message }) => respond(
                status,
                "text/plain; charset=utf-8",
                (message + "\n").into_bytes(),
            ),
        }
    }

    /// InfluxDB line protocol: 204 once stored; a refusal as InfluxDB's JSON error, 400 for
    /// a bad line (naming it) or 503 / 500.
    async fn line_protocol(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let outcome = async {
            self.check_token(&request)?;
            let mut precision = super::line_protocol::Precision::Nanos;
            let mut bucket = None;
            for (key, value) in
                url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            {
                match key.as_ref() {
                    "precision" => {
                        precision =
                            super::line_protocol::Precision::parse(&value).ok_or_else(|| {
                                failed(
                                    StatusCode::BAD_REQUEST,
                                    format!("precision {value:?}: use ns, us, ms or s"),
                                )
                            })?;
                    }
                    "bucket" | "db" => bucket = Some(value.into_owned()),
                    _ => {}
                }
            }
            let gzip = gzip_of(&request)?;
            let tenant = tenant_of(&request);
            let body = self.body(request.into_body(), gzip).await?;
            let text = std::str::from_utf8(&body).map_err(|e| {
                failed(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not UTF-8: {e}"),
                )
            })?;
            self.receiver
                .line_protocol(text, precision, tenant.as_deref(), bucket.as_deref())
                .await
                .map_err(refused)
        }
        .await;
        match outcome {
            Ok(_) => respond(StatusCode::NO_CONTENT, "application/json", Vec::new()),
            Err(Failed { status, message }) => {
                let code = match status {
                    StatusCode::UNAUTHORIZED => "unauthorized",
                    StatusCode::PAYLOAD_TOO_LARGE => "request too large",
                    StatusCode::SERVICE_UNAVAILABLE => "unavailable",
                    StatusCode::INTERNAL_SERVER_ERROR => "internal error",
                    _ => "invalid",
                };
                let body = serde_json::json!({ "code": code, "message": message }).to_string();
                respond(status, "application/json", body.into_bytes())
            }
        }
    }

    /// Checks `Authorization: Bearer <GRPC_TOKEN>` (or `Token <GRPC_TOKEN>`, as InfluxDB
    /// clients send it) when a token is set.
    fn check_token(&self, request: &Request<Incoming>) -> Result<(), Failed> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let given = request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::grpc::bearer(v).or_else(|| v.strip_prefix("Token ")));
        match given {
            Some(token) if crate::grpc::constant_time_eq(token.as_bytes(), expected.as_bytes()) => {
                Ok(())
            }
            Some(_) => Err(failed(StatusCode::UNAUTHORIZED, "invalid bearer token")),
            None => Err(failed(
                StatusCode::UNAUTHORIZED,
                "missing `Authorization: Bearer <GRPC_TOKEN>` header",
            )),
        }
    }

    fn too_large(&self) -> Failed {
        failed(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than TIMEFUSION_GRPC_MAX_MESSAGE_MB ({} MiB)",
                self.max_bytes >> 20
            ),
        )
    }

    /// The request body, decompressed, at most `max_bytes` either way.
    async fn body(&self, body: Incoming, gzip: bool) -> Result<Bytes, Failed> {
        let too_large = || self.too_large();
        let raw = Limited::new(body, self.max_bytes)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    too_large()
                } else {
                    failed(
                        StatusCode::BAD_REQUEST,
                        format!("cannot read the request body: {e}"),
                    )
                }
            })?
            .to_bytes();
        if !gzip {
            return Ok(raw);
        }
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .take(self.max_bytes as u64 + 1)
            .read_to_end(&mut decoded)
            .map_err(|e| failed(StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}")))?;
        if decoded.len() > self.max_bytes {
            return Err(too_large());
        }
        Ok(decoded.into())
    }
}

/// Whether the body is gzip-compressed (else not compressed); another encoding is 415.
fn gzip_of(request: &Request<Incoming>) -> Result<bool, Failed> {
    let Some(value) = request.headers().get(CONTENT_ENCODING) else {
        return Ok(false);
    };
    match value
        .to_str()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "" | "identity" => Ok(false),
        "gzip" => Ok(true),
        other => Err(failed(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding {other} is not supported: send gzip or none"),
        )),
    }
}

/// The request's tenant header.
fn tenant_of(request: &Request<Incoming>) -> Option<String> {
    request
        .headers()
        .get(TENANT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The HTTP status of a receiver's refusal.
fn refused(refusal: Refusal) -> Failed {
    match refusal {
        Refusal::Invalid(m) => failed(StatusCode::BAD_REQUEST, m),
        Refusal::Unavailable(m) => failed(StatusCode::SERVICE_UNAVAILABLE, m),
        Refusal::Internal(m) => failed(StatusCode::INTERNAL_SERVER_ERROR, m),
    }
}

fn encoding_of(request: &Request<Incoming>) -> Option<Encoding> {
    let value = request.headers().get(CONTENT_TYPE)?.to_str().ok()?;
    let media = value.split(';').next()?.trim();
    if media.eq_ignore_ascii_case("application/x-protobuf") {
        Some(Encoding::Protobuf)
    } else if media.eq_ignore_ascii_case("application/json") {
        Some(Encoding::Json)
    } else {
        None
    }
}

fn decode<T: Message + Default + serde::de::DeserializeOwned>(
    encoding: Encoding,
    body: &[u8],
) -> Result<T, Failed> {
    match encoding {
        Encoding::Protobuf => T::decode(body).map_err(|e| {
            failed(
                StatusCode::BAD_REQUEST,
                format!("invalid OTLP protobuf: {e}"),
            )
        }),
        Encoding::Json => serde_json::from_slice(body)
            .map_err(|e| failed(StatusCode::BAD_REQUEST, format!("invalid OTLP/JSON: {e}"))),
    }
}

/// A `google.rpc.Status` in `encoding`.
fn status_body(encoding: Encoding, code: tonic::Code, message: &str) -> Vec<u8> {
    match encoding {
        Encoding::Json => serde_json::json!({ "code": code as i32, "message": message })
            .to_string()
            .into_bytes(),
        Encoding::Protobuf => {
            let mut out = Vec::new();
            prost::encoding::int32::encode(1, &(code as i32), &mut out);
            prost::encoding::string::encode(2, &message.to_string(), &mut out);
            out
        }
    }
}

/// A response with `body`; a 503 asks the client to retry after [`RETRY_AFTER_SECONDS`].
fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_google_rpc_status_messages() {
        let encoded = status_body(
            Encoding::Protobuf,
            tonic::Code::InvalidArgument,
            "no tenant",
        );
        // google.rpc.Status: code (1, varint), message (2, string).
        assert_eq!(encoded, [&[0x08, 3, 0x12, 9][..], b"no tenant"].concat());
        let json = status_body(Encoding::Json, tonic::Code::Unavailable, "full");
        let parsed: serde_json::Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(parsed, serde_json::json!({"code": 14, "message": "full"}));
    }

    #[test]
    fn deeply_nested_json_and_protobuf_values_are_refused_not_a_stack_overflow() {
        // An attribute value nested 100,000 arrays deep, in OTLP/JSON and in protobuf.
        let depth = 100_000;
        let value = format!(
            "{}{{\"stringValue\":\"x\"}}{}",
            "{\"arrayValue\":{\"values\":[".repeat(depth),
            "]}}".repeat(depth)
        );
        let json = format!(
            r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"attributes":[{{"key":"k","value":{value}}}]}}]}}]}}]}}"#
        );
        let refused = decode::<ExportLogsServiceRequest>(Encoding::Json, json.as_bytes());
        assert!(refused.is_err_and(|f| f.status == StatusCode::BAD_REQUEST));
        // AnyValue { array_value (5) { values (1) { … } } }, innermost empty.
        let mut nested: Vec<u8> = Vec::new();
        for _ in 0..depth {
            let mut array = vec![0x0a];
            prost::encoding::encode_varint(nested.len() as u64, &mut array);
            array.extend_from_slice(&nested);
            let mut any = vec![0x2a];
            prost::encoding::encode_varint(array.len() as u64, &mut any);
            any.extend_from_slice(&array);
            nested = any;
        }
        let decoded = opentelemetry_proto::tonic::common::v1::AnyValue::decode(&nested[..]);
        assert!(decoded.is_err(), "prost's recursion limit refuses it");
    }
}
