//! OTLP log records and spans as rows of `otel_logs_and_spans`.
//!
//! One row per log record or span. What goes where (README "OpenTelemetry (OTLP)"):
//!
//! | column | log record | span |
//! | --- | --- | --- |
//! | `timestamp` | `time_unix_nano`, else `observed_time_unix_nano`, else the time received | `start_time_unix_nano` (required) |
//! | `id` | a new UUID | a new UUID |
//! | `parent_id` | | `parent_span_id` (hex) |
//! | `name` | `event_name` | `name` |
//! | `kind` | `LOG` | `SERVER`, `CLIENT`, `INTERNAL`, `PRODUCER`, `CONSUMER` |
//! | `status_code`, `status_message` | | `UNSET` / `OK` / `ERROR`, the message |
//! | `level` | `severity_text`, else the name of `severity_number`'s range (`INFO`…) | |
//! | `severity` (JSON), `severity___…` | text and number | |
//! | `body` (JSON) | the body as JSON | |
//! | `start_time`, `end_time`, `duration` (ns) | | from the span |
//! | `context` (JSON), `context___…` | trace and span id (hex), flags | and trace state, `is_remote` |
//! | `events`, `links` (JSON arrays) | | name, time, attributes; trace and span id, state, attributes |
//! | `attributes` (JSON) | every attribute by its key as sent, plus `otel.scope.name`/`otel.scope.version` | same |
//! | `attributes___…` | the attribute the column names (`http.request.method`), converted to its type | same |
//! | `resource` (JSON), `resource___…` | the resource's attributes, the same way | same |
//! | `project_id` | the tenant ([`super::TENANT_ATTRIBUTE`] or [`super::TENANT_HEADER`]) | same |
//! | `message_size_bytes` | the record's size in protobuf | the span's |

use std::sync::Arc;

use arrow::array::RecordBatch;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use super::rows::{
    Fixed, Flattened, Kind, Rows, hex_id, micros, rfc3339, value_of, write_attributes,
    write_string, write_value,
};
use crate::engine::schema::TableSchema;

/// The table OTLP logs and traces land in.
pub const LOGS_AND_SPANS: &str = "otel_logs_and_spans";

/// The columns every record may fill, in slot order ([`C`]).
const FIXED: &[(&str, Kind)] = &[
    ("timestamp", Kind::Time),
    ("observed_timestamp", Kind::Time),
    ("id", Kind::Text),
    ("parent_id", Kind::Text),
    ("name", Kind::Text),
    ("kind", Kind::Text),
    ("status_code", Kind::Text),
    ("status_message", Kind::Text),
    ("level", Kind::Text),
    ("severity", Kind::Text),
    ("severity___severity_text", Kind::Text),
    ("severity___severity_number", Kind::Int32),
    ("body", Kind::Text),
    ("duration", Kind::Int64),
    ("start_time", Kind::Time),
    ("end_time", Kind::Time),
    ("context", Kind::Text),
    ("context___trace_id", Kind::Text),
    ("context___span_id", Kind::Text),
    ("context___trace_state", Kind::Text),
    ("context___trace_flags", Kind::Text),
    ("context___is_remote", Kind::Bool),
    ("events", Kind::Text),
    ("links", Kind::Text),
    ("attributes", Kind::Text),
    ("resource", Kind::Text),
    ("project_id", Kind::Text),
    ("message_size_bytes", Kind::Int64),
];

/// The slot of each [`FIXED`] column.
#[derive(Clone, Copy)]
enum C {
    Timestamp,
    ObservedTimestamp,
    Id,
    ParentId,
    Name,
    Kind,
    StatusCode,
    StatusMessage,
    Level,
    Severity,
    SeverityText,
    SeverityNumber,
    Body,
    Duration,
    StartTime,
    EndTime,
    Context,
    TraceId,
    SpanId,
    TraceState,
    TraceFlags,
    IsRemote,
    Events,
    Links,
    Attributes,
    Resource,
    ProjectId,
    MessageSize,
}

// Every slot has its column.
const _: () = assert!(FIXED.len() == C::MessageSize as usize + 1);

pub use super::rows::Invalid;

/// How OTLP records become rows of `otel_logs_and_spans`: its columns, checked once.
pub struct LogsAndSpans {
    /// The [`FIXED`] columns.
    fixed: Fixed,
    attributes: Flattened,
    resource: Flattened,
}

/// What one resource gives each of its rows: its tenant, its attributes as JSON and the
/// flattened columns they fill.
pub(crate) struct ResourceRow<'a> {
    tenant: &'a str,
    json: String,
    attributes: &'a [KeyValue],
}

impl<'a> ResourceRow<'a> {
    pub(crate) fn new(
        resource: Option<&'a opentelemetry_proto::tonic::resource::v1::Resource>,
        header_tenant: Option<&'a str>,
    ) -> Result<ResourceRow<'a>, Invalid> {
        let attributes = resource.map_or(&[][..], |r| r.attributes.as_slice());
        let tenant = super::tenant(attributes, header_tenant)?;
        let mut json = String::new();
        write_attributes(&mut json, attributes, &[]);
        Ok(ResourceRow {
            tenant,
            json,
            attributes,
        })
    }

    /// Sets the tenant, the resource JSON and the flattened resource columns of a row.
    pub(crate) fn fill(&self, rows: &mut Rows, tenant: usize, json: usize, flat: &Flattened) {
        rows.text(tenant, self.tenant);
        rows.text(json, &self.json);
        for kv in self.attributes {
            rows.attribute(flat, &kv.key, value_of(kv.value.as_ref()));
        }
    }
}

impl LogsAndSpans {
    /// The mapping onto `table`, or why the table cannot take OTLP records (a column
    /// missing or of another type).
    pub fn new(table: Arc<TableSchema>) -> Result<LogsAndSpans, String> {
        Ok(LogsAndSpans {
            attributes: Flattened::new(&table, "attributes___"),
            resource: Flattened::new(&table, "resource___"),
            fixed: Fixed::new(table, FIXED, "OTLP records")?,
        })
    }

    /// Refuses a request whose rows would hold more than `max_bytes`.
    pub fn limited(self, max_bytes: usize) -> LogsAndSpans {
        LogsAndSpans {
            fixed: self.fixed.limited(max_bytes),
            ..self
        }
    }

    pub fn table(&self) -> &str {
        &self.fixed.table().name
    }

    fn rows(&self) -> Rows {
        self.fixed.rows()
    }

    /// Fills what every row of `resource` shares, and the record's own attributes.
    fn common(
        &self,
        rows: &mut Rows,
        resource: &ResourceRow,
        scope: Option<&InstrumentationScope>,
        attributes: &[KeyValue],
        size: usize,
    ) {
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        rows.text(
            C::Id as usize,
            uuid::Uuid::new_v4().hyphenated().encode_lower(&mut id),
        );
        resource.fill(
            rows,
            C::ProjectId as usize,
            C::Resource as usize,
            &self.resource,
        );
        let (scope_name, scope_version) =
            scope.map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
        let mut json = String::new();
        write_attributes(
            &mut json,
            attributes,
            &[
                ("otel.scope.name", scope_name),
                ("otel.scope.version", scope_version),
            ],
        );
        rows.text(C::Attributes as usize, &json);
        for kv in attributes {
            rows.attribute(&self.attributes, &kv.key, value_of(kv.value.as_ref()));
        }
        rows.int(C::MessageSize as usize, size as i64);
    }

    /// The rows of a logs export; `now_micros` stamps records without any time.
    pub fn logs(
        &self,
        request: &ExportLogsServiceRequest,
        header_tenant: Option<&str>,
        now_micros: i64,
    ) -> Result<RecordBatch, Invalid> {
        let mut rows = self.rows();
        for resource_logs in &request.resource_logs {
            let resource = ResourceRow::new(resource_logs.resource.as_ref(), header_tenant)?;
            for scope_logs in &resource_logs.scope_logs {
                for record in &scope_logs.log_records {
                    self.common(
                        &mut rows,
                        &resource,
                        scope_logs.scope.as_ref(),
                        &record.attributes,
                        record.encoded_len(),
                    );
                    let time = [record.time_unix_nano, record.observed_time_unix_nano]
                        .into_iter()
                        .find(|&t| t != 0)
                        .map_or(now_micros, micros);
                    rows.time(C::Timestamp as usize, time);
                    if record.observed_time_unix_nano != 0 {
                        rows.time(
                            C::ObservedTimestamp as usize,
                            micros(record.observed_time_unix_nano),
                        );
                    }
                    if !record.event_name.is_empty() {
                        rows.text(C::Name as usize, &record.event_name);
                    }
                    rows.text(C::Kind as usize, "LOG");
                    let level = Some(record.severity_text.as_str())
                        .filter(|t| !t.is_empty())
                        .or_else(|| level_of(record.severity_number));
                    if let Some(level) = level {
                        rows.text(C::Level as usize, level);
                    }
                    write_severity(&mut rows, &record.severity_text, record.severity_number);
                    if let Some(body) = value_of(record.body.as_ref()) {
                        let mut json = String::new();
                        write_value(&mut json, Some(body));
                        rows.text(C::Body as usize, &json);
                    }
                    write_context(
                        &mut rows,
                        &record.trace_id,
                        &record.span_id,
                        "",
                        record.flags,
                    );
                    rows.end_row()?;
                }
            }
        }
        rows.finish().map_err(|e| Invalid(e.to_string()))
    }

    /// The rows of a traces export. A span without a start time is refused.
    pub fn spans(
        &self,
        request: &ExportTraceServiceRequest,
        header_tenant: Option<&str>,
    ) -> Result<RecordBatch, Invalid> {
        let mut rows = self.rows();
        for resource_spans in &request.resource_spans {
            let resource = ResourceRow::new(resource_spans.resource.as_ref(), header_tenant)?;
            for scope_spans in &resource_spans.scope_spans {
                for span in &scope_spans.spans {
                    if span.start_time_unix_nano == 0 {
                        return Err(Invalid(format!(
                            "span \"{}\" has no start_time_unix_nano",
                            span.name
                        )));
                    }
                    self.common(
                        &mut rows,
                        &resource,
                        scope_spans.scope.as_ref(),
                        &span.attributes,
                        span.encoded_len(),
                    );
                    self.span(&mut rows, span);
                    rows.end_row()?;
                }
            }
        }
        rows.finish().map_err(|e| Invalid(e.to_string()))
    }

    fn span(&self, rows: &mut Rows, span: &Span) {
        let start = micros(span.start_time_unix_nano);
        rows.time(C::Timestamp as usize, start);
        rows.time(C::StartTime as usize, start);
        if span.end_time_unix_nano != 0 {
            rows.time(C::EndTime as usize, micros(span.end_time_unix_nano));
            if let Some(nanos) = span
                .end_time_unix_nano
                .checked_sub(span.start_time_unix_nano)
            {
                rows.int(
                    C::Duration as usize,
                    i64::try_from(nanos).unwrap_or(i64::MAX),
                );
            }
        }
        rows.text(C::Name as usize, &span.name);
        let kind = match span.kind {
            1 => Some("INTERNAL"),
            2 => Some("SERVER"),
            3 => Some("CLIENT"),
            4 => Some("PRODUCER"),
            5 => Some("CONSUMER"),
            _ => None,
        };
        if let Some(kind) = kind {
            rows.text(C::Kind as usize, kind);
        }
        let status = span.status.as_ref();
        rows.text(
            C::StatusCode as usize,
            match status.map_or(0, |s| s.code) {
                1 => "OK",
                2 => "ERROR",
                _ => "UNSET",
            },
        );
        if let Some(message) = status.map(|s| s.message.as_str()).filter(|m| !m.is_empty()) {
            rows.text(C::StatusMessage as usize, message);
        }
        if let Some(parent) = hex_id(&span.parent_span_id) {
            rows.text(C::ParentId as usize, &parent);
        }
        write_context(
            rows,
            &span.trace_id,
            &span.span_id,
            &span.trace_state,
            span.flags,
        );
        if !span.events.is_empty() {
            let mut json = String::from("[");
            for (i, event) in span.events.iter().enumerate() {
                if i > 0 {
                    json.push(',');
                }
                json.push_str("{\"name\":");
                write_string(&mut json, &event.name);
                json.push_str(",\"timestamp\":");
                write_string(&mut json, &rfc3339(event.time_unix_nano));
                json.push_str(",\"attributes\":");
                write_attributes(&mut json, &event.attributes, &[]);
                json.push('}');
            }
            json.push(']');
            rows.text(C::Events as usize, &json);
        }
        if !span.links.is_empty() {
            let mut json = String::from("[");
            for (i, link) in span.links.iter().enumerate() {
                if i > 0 {
                    json.push(',');
                }
                json.push_str("{\"trace_id\":");
                write_string(&mut json, &hex_id(&link.trace_id).unwrap_or_default());
                json.push_str(",\"span_id\":");
                write_string(&mut json, &hex_id(&link.span_id).unwrap_or_default());
                json.push_str(",\"trace_state\":");
                write_string(&mut json, &link.trace_state);
                json.push_str(",\"attributes\":");
                write_attributes(&mut json, &link.attributes, &[]);
                json.push('}');
            }
            json.push(']');
            rows.text(C::Links as usize, &json);
        }
    }
}

/// The level a severity number's range names (OpenTelemetry's log data model).
fn level_of(number: i32) -> Option<&'static str> {
    Some(match number {
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        21..=24 => "FATAL",
        _ => return None,
    })
}

fn write_severity(rows: &mut Rows, text: &str, number: i32) {
    if text.is_empty() && number == 0 {
        return;
    }
    let mut json = String::from("{");
    if !text.is_empty() {
        rows.text(C::SeverityText as usize, text);
        json.push_str("\"severity_text\":");
        write_string(&mut json, text);
    }
    if number != 0 {
        rows.int(C::SeverityNumber as usize, i64::from(number));
        if json.len() > 1 {
            json.push(',');
        }
        json.push_str("\"severity_number\":");
        json.push_str(&number.to_string());
    }
    json.push('}');
    rows.text(C::Severity as usize, &json);
}

/// The trace context columns, when the record has a trace id. `flags` are OTLP's: the W3C
/// trace flags in the low byte, and whether the parent was remote in bits 8 and 9.
fn write_context(rows: &mut Rows, trace_id: &[u8], span_id: &[u8], state: &str, flags: u32) {
    let Some(trace_id) = hex_id(trace_id) else {
        return;
    };
    let span_id = hex_id(span_id);
    let trace_flags = format!("{:02x}", flags & 0xff);
    let is_remote = (flags & 0x100 != 0).then_some(flags & 0x200 != 0);
    let mut json = String::from("{\"trace_id\":");
    write_string(&mut json, &trace_id);
    rows.text(C::TraceId as usize, &trace_id);
    if let Some(span_id) = &span_id {
        json.push_str(",\"span_id\":");
        write_string(&mut json, span_id);
        rows.text(C::SpanId as usize, span_id);
    }
    if !state.is_empty() {
        json.push_str(",\"trace_state\":");
        write_string(&mut json, state);
        rows.text(C::TraceState as usize, state);
    }
    json.push_str(",\"trace_flags\":");
    write_string(&mut json, &trace_flags);
    rows.text(C::TraceFlags as usize, &trace_flags);
    if let Some(remote) = is_remote {
        json.push_str(if remote {
            ",\"is_remote\":true"
        } else {
            ",\"is_remote\":false"
        });
        rows.bool(C::IsRemote as usize, remote);
    }
    json.push('}');
    rows.text(C::Context as usize, &json);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::schema::Catalog;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType};
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status, span};

    fn mapping() -> LogsAndSpans {
        let catalog = Catalog::load(None).expect("schemas");
        LogsAndSpans::new(catalog.get(LOGS_AND_SPANS).expect("table").clone()).expect("mapping")
    }

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn text(batch: &RecordBatch, column: &str, row: usize) -> Option<String> {
        let array = batch.column_by_name(column)?.as_string::<i32>();
        array.is_valid(row).then(|| array.value(row).to_string())
    }

    fn resource(attributes: Vec<KeyValue>) -> Option<Resource> {
        Some(Resource {
            attributes,
            ..Default::default()
        })
    }

    #[test]
    fn log_records_fill_their_columns_and_flattened_attributes() {
        let record = |time: u64, observed: u64, severity_number: i32, text: &str| LogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: observed,
            severity_number,
            severity_text: text.into(),
            body: Some(AnyValue {
                value: Some(Value::StringValue("disk full".into())),
            }),
            attributes: vec![
                kv(
                    "http.response.status_code",
                    Value::StringValue("404".into()),
                ),
                kv(
                    "network.local.address",
                    Value::StringValue("10.0.0.1".into()),
                ),
                kv("client.port", Value::IntValue(1 << 40)),
                kv("http.response.status_code", Value::IntValue(500)),
            ],
            trace_id: vec![0xab; 16],
            span_id: vec![0xcd; 8],
            flags: 1,
            ..Default::default()
        };
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource(vec![kv("service.name", Value::StringValue("api".into()))]),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        record(1_700_000_000_123_456_789, 0, 17, ""),
                        record(0, 1_700_000_001_000_000_000, 0, "notice"),
                        record(0, 0, 0, ""),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let batch = mapping().logs(&request, Some("p1"), 42).expect("converted");
        assert_eq!(batch.num_rows(), 3);
        let times = batch
            .column_by_name("timestamp")
            .expect("timestamp")
            .as_primitive::<TimestampMicrosecondType>();
        // The event time, else the observed time, else the time received; truncated to µs.
        assert_eq!(
            times.values(),
            &[1_700_000_000_123_456, 1_700_000_001_000_000, 42]
        );
        assert_eq!(text(&batch, "level", 0).as_deref(), Some("ERROR"));
        assert_eq!(text(&batch, "level", 1).as_deref(), Some("notice"));
        assert_eq!(text(&batch, "level", 2), None);
        assert_eq!(
            text(&batch, "severity", 0).as_deref(),
            Some(r#"{"severity_number":17}"#)
        );
        assert_eq!(text(&batch, "body", 0).as_deref(), Some(r#""disk full""#));
        assert_eq!(text(&batch, "kind", 2).as_deref(), Some("LOG"));
        assert_eq!(text(&batch, "project_id", 1).as_deref(), Some("p1"));
        assert_eq!(
            text(&batch, "resource___service___name", 2).as_deref(),
            Some("api")
        );
        assert_eq!(
            text(&batch, "context___trace_id", 0).as_deref(),
            Some("abababababababababababababababab")
        );
        assert_eq!(
            text(&batch, "context___trace_flags", 0).as_deref(),
            Some("01")
        );
        // A string holding an integer fills an integer column; the first of two equal keys
        // wins; a value out of the column's range is null (and kept in the JSON).
        let status = batch
            .column_by_name("attributes___http___response___status_code")
            .expect("flattened")
            .as_primitive::<Int32Type>();
        assert_eq!(status.value(0), 404);
        assert!(
            batch
                .column_by_name("attributes___client___port")
                .expect("port")
                .is_null(0)
        );
        assert_eq!(
            text(&batch, "attributes___network___local__address", 0).as_deref(),
            Some("10.0.0.1")
        );
        let attributes: serde_json::Value =
            serde_json::from_str(&text(&batch, "attributes", 0).expect("json")).expect("JSON");
        assert_eq!(attributes["client.port"], 1u64 << 40);
        let sizes = batch
            .column_by_name("message_size_bytes")
            .expect("size")
            .as_primitive::<Int64Type>();
        assert!(sizes.value(0) > 50, "{}", sizes.value(0));
        // Three different ids.
        let ids: std::collections::HashSet<_> = (0..3).map(|i| text(&batch, "id", i)).collect();
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn the_tenant_is_the_resource_attribute_else_the_header_else_refused() {
        let request = |attributes| ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource(attributes),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord::default()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let own = request(vec![kv(
            super::super::TENANT_ATTRIBUTE,
            Value::StringValue("own".into()),
        )]);
        let mapping = mapping();
        let batch = mapping.logs(&own, Some("header"), 1).expect("own tenant");
        assert_eq!(text(&batch, "project_id", 0).as_deref(), Some("own"));
        let batch = mapping
            .logs(&request(vec![]), Some("header"), 1)
            .expect("header");
        assert_eq!(text(&batch, "project_id", 0).as_deref(), Some("header"));
        // An empty attribute names no tenant: the header's is taken.
        let empty = request(vec![kv(
            super::super::TENANT_ATTRIBUTE,
            Value::StringValue(String::new()),
        )]);
        let batch = mapping.logs(&empty, Some("header"), 1).expect("header");
        assert_eq!(text(&batch, "project_id", 0).as_deref(), Some("header"));
        let refused = mapping
            .logs(&request(vec![]), None, 1)
            .expect_err("no tenant");
        assert!(refused.0.contains("timefusion-project-id"), "{}", refused.0);
        assert!(mapping.logs(&request(vec![]), Some(""), 1).is_err());
    }

    #[test]
    fn spans_fill_kind_status_times_context_events_and_links() {
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            parent_span_id: vec![3; 8],
            trace_state: "k=v".into(),
            flags: 0x301,
            name: "GET /".into(),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_001_000,
            end_time_unix_nano: 1_700_000_000_250_001_000,
            status: Some(Status {
                code: 2,
                message: "boom".into(),
            }),
            events: vec![span::Event {
                time_unix_nano: 1_700_000_000_100_000_000,
                name: "exception".into(),
                attributes: vec![kv("exception.type", Value::StringValue("E".into()))],
                ..Default::default()
            }],
            links: vec![span::Link {
                trace_id: vec![4; 16],
                span_id: vec![5; 8],
                ..Default::default()
            }],
            ..Default::default()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource(vec![]),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span.clone()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let mapping = mapping();
        let batch = mapping.spans(&request, Some("p")).expect("converted");
        assert_eq!(text(&batch, "kind", 0).as_deref(), Some("SERVER"));
        assert_eq!(text(&batch, "status_code", 0).as_deref(), Some("ERROR"));
        assert_eq!(text(&batch, "status_message", 0).as_deref(), Some("boom"));
        assert_eq!(
            text(&batch, "parent_id", 0).as_deref(),
            Some("0303030303030303")
        );
        let duration = batch.column_by_name("duration").expect("duration");
        assert_eq!(duration.as_primitive::<Int64Type>().value(0), 250_000_000);
        let context: serde_json::Value =
            serde_json::from_str(&text(&batch, "context", 0).expect("context")).expect("JSON");
        assert_eq!(
            context,
            serde_json::json!({
                "trace_id": "01010101010101010101010101010101",
                "span_id": "0202020202020202",
                "trace_state": "k=v", "trace_flags": "01", "is_remote": true
            })
        );
        let events: serde_json::Value =
            serde_json::from_str(&text(&batch, "events", 0).expect("events")).expect("JSON");
        assert_eq!(events[0]["timestamp"], "2023-11-14T22:13:20.100Z");
        assert_eq!(events[0]["attributes"]["exception.type"], "E");
        let links: serde_json::Value =
            serde_json::from_str(&text(&batch, "links", 0).expect("links")).expect("JSON");
        assert_eq!(links[0]["span_id"], "0505050505050505");

        let mut unstarted = span;
        unstarted.start_time_unix_nano = 0;
        let mut request = request;
        request.resource_spans[0].scope_spans[0]
            .spans
            .push(unstarted);
        let refused = mapping
            .spans(&request, Some("p"))
            .expect_err("no start time");
        assert!(
            refused.0.contains("no start_time_unix_nano"),
            "{}",
            refused.0
        );
    }

    #[test]
    fn a_request_that_expands_past_the_limit_is_refused() {
        // A large resource repeated into many empty records: 60 bytes on the wire each.
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource(vec![kv("big", Value::StringValue("x".repeat(10_000)))]),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord::default(); 200],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let limited = mapping().limited(1 << 20);
        let refused = limited
            .logs(&request, Some("p"), 1)
            .expect_err("over the limit");
        assert!(refused.0.contains("send smaller batches"), "{}", refused.0);
        let mut fits = request;
        fits.resource_logs[0].scope_logs[0].log_records.truncate(50);
        assert_eq!(
            limited.logs(&fits, Some("p"), 1).expect("fits").num_rows(),
            50
        );
    }

    #[test]
    fn a_table_without_the_columns_is_refused_at_startup() {
        let catalog = Catalog::load(None).expect("schemas");
        let mut table = TableSchema::clone(catalog.get(LOGS_AND_SPANS).expect("table"));
        let fields: Vec<_> = table
            .schema
            .fields()
            .iter()
            .filter(|f| f.name() != "context___span_id")
            .cloned()
            .collect();
        table.schema = Arc::new(arrow::datatypes::Schema::new(fields));
        let refused = LogsAndSpans::new(Arc::new(table)).err().expect("refused");
        assert!(refused.contains("context___span_id"), "{refused}");
    }
}
