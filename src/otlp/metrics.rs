//! OTLP metric points as rows of `otel_metrics`: one row per data point, of every kind.
//!
//! | column | from |
//! | --- | --- |
//! | `timestamp`, `start_timestamp` | the point's `time_unix_nano` (required), `start_time_unix_nano` |
//! | `metric_name`, `metric_description`, `metric_unit` | the metric |
//! | `metric_type` | `gauge`, `sum`, `histogram`, `exponential_histogram`, `summary` |
//! | `aggregation_temporality`, `is_monotonic` | `delta` / `cumulative`; a sum's monotonicity |
//! | `value` | a gauge's or sum's value (an integer one as float8) |
//! | `count`, `sum`, `min`, `max` | histograms and summaries |
//! | `bucket_counts`, `explicit_bounds` | a histogram's buckets |
//! | `exp_scale`, `exp_zero_count`, `exp_zero_threshold`, `exp_{positive,negative}_{offset,bucket_counts}` | an exponential histogram's buckets |
//! | `quantiles`, `quantile_values` | a summary's quantiles |
//! | `flags` | the point's `DataPointFlags` |
//! | `attributes` (JSON) | the point's attributes, keys sorted: one series, one text |
//! | `exemplars` (JSON) | time, value, trace and span id, filtered attributes |
//! | `scope_name`, `scope_version` | the instrumentation scope |
//! | `resource` (JSON), `resource___…` | as in `otel_logs_and_spans` |
//! | `project_id` | the tenant ([`super::TENANT_ATTRIBUTE`] or [`super::TENANT_HEADER`]) |

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, exemplar, metric::Data, number_data_point,
};

use super::convert::{Invalid, ResourceRow};
use super::line_protocol::{Field as LineField, Line};
use super::remote_write::{self, MetricMetadata, WriteRequest};
use super::rows::{
    Fixed, Flattened, Kind, Rows, hex_id, micros, rfc3339, value_of, write_attributes,
    write_sorted_attributes, write_string,
};
use crate::engine::schema::TableSchema;

/// The table OTLP metrics land in.
pub const METRICS: &str = "otel_metrics";

/// The Prometheus label (or Influx tag) naming a series' tenant (else the request's header).
pub const REMOTE_WRITE_TENANT_LABEL: &str = "timefusion_project_id";

/// The columns points fill, in slot order ([`M`]).
const FIXED: &[(&str, Kind)] = &[
    ("timestamp", Kind::Time),
    ("start_timestamp", Kind::Time),
    ("project_id", Kind::Text),
    ("metric_name", Kind::Text),
    ("metric_description", Kind::Text),
    ("metric_unit", Kind::Text),
    ("metric_type", Kind::Text),
    ("aggregation_temporality", Kind::Text),
    ("is_monotonic", Kind::Bool),
    ("value", Kind::Float64),
    ("count", Kind::Int64),
    ("sum", Kind::Float64),
    ("min", Kind::Float64),
    ("max", Kind::Float64),
    ("bucket_counts", Kind::Int64List),
    ("explicit_bounds", Kind::Float64List),
    ("exp_scale", Kind::Int32),
    ("exp_zero_count", Kind::Int64),
    ("exp_zero_threshold", Kind::Float64),
    ("exp_positive_offset", Kind::Int32),
    ("exp_positive_bucket_counts", Kind::Int64List),
    ("exp_negative_offset", Kind::Int32),
    ("exp_negative_bucket_counts", Kind::Int64List),
    ("quantiles", Kind::Float64List),
    ("quantile_values", Kind::Float64List),
    ("flags", Kind::Int32),
    ("attributes", Kind::Text),
    ("exemplars", Kind::Text),
    ("scope_name", Kind::Text),
    ("scope_version", Kind::Text),
    ("resource", Kind::Text),
];

/// The slot of each [`FIXED`] column.
#[derive(Clone, Copy)]
enum M {
    Timestamp,
    StartTimestamp,
    ProjectId,
    Name,
    Description,
    Unit,
    Type,
    Temporality,
    IsMonotonic,
    Value,
    Count,
    Sum,
    Min,
    Max,
    BucketCounts,
    ExplicitBounds,
    ExpScale,
    ExpZeroCount,
    ExpZeroThreshold,
    ExpPositiveOffset,
    ExpPositiveCounts,
    ExpNegativeOffset,
    ExpNegativeCounts,
    Quantiles,
    QuantileValues,
    Flags,
    Attributes,
    Exemplars,
    ScopeName,
    ScopeVersion,
    Resource,
}

// Every slot has its column.
const _: () = assert!(FIXED.len() == M::Resource as usize + 1);

/// What every data point has, whatever its kind.
struct Point<'a> {
    attributes: &'a [KeyValue],
    start: u64,
    time: u64,
    flags: u32,
    exemplars: &'a [Exemplar],
}

/// The metadata of a Prometheus series' family: its own name's, else that of the name
/// without a `_bucket`, `_count`, `_sum` or `_total` suffix (`false`: found by a suffix).
fn prometheus_family<'a>(
    name: &str,
    metadata: &HashMap<&str, &'a MetricMetadata>,
) -> Option<(&'a MetricMetadata, bool)> {
    if let Some(own) = metadata.get(name) {
        return Some((own, true));
    }
    ["_bucket", "_count", "_sum", "_total"]
        .iter()
        .find_map(|suffix| metadata.get(name.strip_suffix(suffix)?))
        .map(|family| (*family, false))
}

/// Whether a Prometheus series is a monotonic cumulative counter (stored as `sum` points),
/// else a gauge.
fn prometheus_counter(name: &str, family: Option<(&MetricMetadata, bool)>) -> bool {
    match family {
        Some((family, true)) => family.r#type == remote_write::COUNTER,
        // A histogram's or summary's `_bucket`, `_count` and `_sum` series count up.
        Some((family, false)) => matches!(
            family.r#type,
            remote_write::COUNTER | remote_write::HISTOGRAM | remote_write::SUMMARY
        ),
        // So does a counter without metadata, named `…_total` by Prometheus' convention.
        None => name.ends_with("_total"),
    }
}

/// The [`Point`] of a data point (a summary's has no exemplars: `point!(p, [])`).
macro_rules! point {
    ($p:expr) => {
        Point {
            attributes: &$p.attributes,
            start: $p.start_time_unix_nano,
            time: $p.time_unix_nano,
            flags: $p.flags,
            exemplars: &$p.exemplars,
        }
    };
    ($p:expr, []) => {
        Point {
            attributes: &$p.attributes,
            start: $p.start_time_unix_nano,
            time: $p.time_unix_nano,
            flags: $p.flags,
            exemplars: &[],
        }
    };
}

/// A label set (a Prometheus series' labels, an Influx line's tags) as the rows of its points
/// hold it: the attributes JSON with sorted keys, and the resource some labels also make.
struct LabelSet {
    json: String,
    resource: Vec<KeyValue>,
    resource_json: String,
}

impl LabelSet {
    /// `labels`, the ones named in `resource` also as the resource attribute given there.
    fn new<'a>(
        labels: impl Iterator<Item = (&'a str, &'a str)>,
        resource: &[(&str, &str)],
    ) -> LabelSet {
        let text = |key: &str, value: &str| KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(value.into())),
            }),
            ..Default::default()
        };
        let labels: Vec<KeyValue> = labels.map(|(k, v)| text(k, v)).collect();
        let mut json = String::new();
        write_sorted_attributes(&mut json, &labels);
        let resource: Vec<KeyValue> = resource
            .iter()
            .filter_map(|&(label, key)| {
                let kv = labels.iter().find(|kv| kv.key == label)?;
                Some(KeyValue {
                    key: key.into(),
                    ..kv.clone()
                })
            })
            .collect();
        let mut resource_json = String::new();
        write_attributes(&mut resource_json, &resource, &[]);
        LabelSet {
            json,
            resource,
            resource_json,
        }
    }
}

/// One number point of a label set: a Prometheus sample, an Influx field.
struct NumberPoint<'a> {
    tenant: &'a str,
    name: &'a str,
    /// A monotonic cumulative counter (`sum`), else a `gauge`.
    counter: bool,
    family: Option<&'a MetricMetadata>,
    micros: i64,
    value: f64,
}

/// How OTLP metric points become rows of `otel_metrics`.
pub struct Metrics {
    /// The [`FIXED`] columns.
    fixed: Fixed,
    resource: Flattened,
}

impl Metrics {
    /// The mapping onto `table`, or why the table cannot take metric points.
    pub fn new(table: Arc<TableSchema>) -> Result<Metrics, String> {
        Ok(Metrics {
            resource: Flattened::new(&table, "resource___"),
            fixed: Fixed::new(table, FIXED, "OTLP metrics")?,
        })
    }

    /// Refuses a request whose rows would hold more than `max_bytes`.
    pub fn limited(self, max_bytes: usize) -> Metrics {
        Metrics {
            fixed: self.fixed.limited(max_bytes),
            ..self
        }
    }

    pub fn table(&self) -> &str {
        &self.fixed.table().name
    }

    /// The points of a Prometheus remote-write request: each sample of a series is a `sum`
    /// point (monotonic, cumulative: counters, and the `_bucket` / `_count` / `_sum` series of
    /// histograms and summaries, by the request's metadata or a `_total` name) or a `gauge`
    /// point; its labels but `__name__` are the attributes, `job` and `instance` are also the
    /// resource's `service.name` and `service.instance.id` (as OpenTelemetry's Prometheus
    /// receiver maps them), the family's help and unit the description and unit. The tenant is
    /// the label `timefusion_project_id` (left out of the attributes), else the header.
    /// Staleness markers are not samples and are skipped; native histograms are refused.
    pub fn samples(
        &self,
        request: &WriteRequest,
        header_tenant: Option<&str>,
    ) -> Result<RecordBatch, Invalid> {
        let mut rows = self.rows();
        let metadata: HashMap<&str, &MetricMetadata> = request
            .metadata
            .iter()
            .map(|m| (m.metric_family_name.as_str(), m))
            .collect();
        for series in &request.timeseries {
            let label = |name: &str| {
                series
                    .labels
                    .iter()
                    .find(|l| l.name == name)
                    .map(|l| l.value.as_str())
            };
            let name = label("__name__")
                .filter(|n| !n.is_empty())
                .ok_or_else(|| Invalid("a series has no __name__ label".into()))?;
            if !series.histograms.is_empty() {
                return Err(Invalid(format!(
                    "series {name} holds native histograms, which are not stored: set \
                     send_native_histograms: false in remote_write"
                )));
            }
            let given = |t: &&str| !t.is_empty();
            let tenant = label(REMOTE_WRITE_TENANT_LABEL)
                .filter(given)
                .or(header_tenant.filter(given))
                .ok_or_else(|| {
                    Invalid(format!(
                        "no tenant: set the `{}` header or the label `{REMOTE_WRITE_TENANT_LABEL}`",
                        super::TENANT_HEADER
                    ))
                })?;
            let found = prometheus_family(name, &metadata);
            let counter = prometheus_counter(name, found);
            let labels = LabelSet::new(
                series
                    .labels
                    .iter()
                    .filter(|l| l.name != "__name__" && l.name != REMOTE_WRITE_TENANT_LABEL)
                    .map(|l| (l.name.as_str(), l.value.as_str())),
                &[("job", "service.name"), ("instance", "service.instance.id")],
            );
            for sample in &series.samples {
                if sample.value.to_bits() == remote_write::STALE_NAN {
                    continue;
                }
                let point = NumberPoint {
                    tenant,
                    name,
                    counter,
                    family: found.map(|(family, _)| family),
                    micros: sample.timestamp.saturating_mul(1_000),
                    value: sample.value,
                };
                self.number_row(&mut rows, &point, &labels)?;
            }
        }
        rows.finish().map_err(|e| Invalid(e.to_string()))
    }

    /// The points of InfluxDB line protocol: each numeric or boolean field of a line is a
    /// `gauge` point named `<measurement>_<field>` (the measurement alone for a field named
    /// `value`, as Telegraf's Prometheus output names them), booleans as 1 and 0; string
    /// fields are not stored. Tags are the attributes, `host` also the resource's
    /// `host.name`. The tenant is the tag `timefusion_project_id`, else the header, else
    /// `default_tenant` (the request's bucket or database). A line without a timestamp
    /// takes `now_micros`.
    pub fn lines(
        &self,
        lines: &[Line],
        header_tenant: Option<&str>,
        default_tenant: Option<&str>,
        now_micros: i64,
    ) -> Result<RecordBatch, Invalid> {
        let mut rows = self.rows();
        for line in lines {
            let tag = |name: &str| {
                line.tags
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            };
            let given = |t: &&str| !t.is_empty();
            let tenant = tag(REMOTE_WRITE_TENANT_LABEL)
                .filter(given)
                .or(header_tenant.filter(given))
                .or(default_tenant.filter(given))
                .ok_or_else(|| {
                    Invalid(format!(
                        "no tenant: set the `{}` header, the tag `{REMOTE_WRITE_TENANT_LABEL}` \
                         or the bucket",
                        super::TENANT_HEADER
                    ))
                })?;
            let labels = LabelSet::new(
                line.tags
                    .iter()
                    .filter(|(k, _)| k != REMOTE_WRITE_TENANT_LABEL)
                    .map(|(k, v)| (k.as_str(), v.as_str())),
                &[("host", "host.name")],
            );
            let micros = line
                .time_nanos
                .map_or(now_micros, |nanos| nanos.div_euclid(1_000));
            for (field, value) in &line.fields {
                let value = match value {
                    LineField::Float(f) => *f,
                    LineField::Int(i) => *i as f64,
                    LineField::UInt(u) => *u as f64,
                    LineField::Bool(b) => f64::from(u8::from(*b)),
                    LineField::Text(_) => continue,
                };
                let name = if field == "value" {
                    line.measurement.clone()
                } else {
                    format!("{}_{field}", line.measurement)
                };
                let point = NumberPoint {
                    tenant,
                    name: &name,
                    counter: false,
                    family: None,
                    micros,
                    value,
                };
                self.number_row(&mut rows, &point, &labels)?;
            }
        }
        rows.finish().map_err(|e| Invalid(e.to_string()))
    }

    fn number_row(
        &self,
        rows: &mut Rows,
        point: &NumberPoint,
        labels: &LabelSet,
    ) -> Result<(), Invalid> {
        rows.text(M::ProjectId as usize, point.tenant);
        rows.text(M::Name as usize, point.name);
        if point.counter {
            rows.text(M::Type as usize, "sum");
            rows.text(M::Temporality as usize, "cumulative");
            rows.bool(M::IsMonotonic as usize, true);
        } else {
            rows.text(M::Type as usize, "gauge");
        }
        if let Some(family) = point.family {
            for (slot, text) in [(M::Description, &family.help), (M::Unit, &family.unit)] {
                if !text.is_empty() {
                    rows.text(slot as usize, text);
                }
            }
        }
        rows.time(M::Timestamp as usize, point.micros);
        rows.float(M::Value as usize, point.value);
        rows.text(M::Attributes as usize, &labels.json);
        rows.text(M::Resource as usize, &labels.resource_json);
        for kv in &labels.resource {
            rows.attribute(&self.resource, &kv.key, value_of(kv.value.as_ref()));
        }
        rows.end_row()
    }

    fn rows(&self) -> Rows {
        self.fixed.rows()
    }

    /// The rows of a metrics export. A point without a time is refused.
    pub fn points(
        &self,
        request: &ExportMetricsServiceRequest,
        header_tenant: Option<&str>,
    ) -> Result<RecordBatch, Invalid> {
        let mut rows = self.rows();
        for resource_metrics in &request.resource_metrics {
            let resource = ResourceRow::new(resource_metrics.resource.as_ref(), header_tenant)?;
            for scope_metrics in &resource_metrics.scope_metrics {
                let scope = scope_metrics.scope.as_ref();
                for metric in &scope_metrics.metrics {
                    // Each point: the metric's and the resource's columns, then its own.
                    let start_row = |rows: &mut Rows, kind: &str, point: &Point| {
                        if point.time == 0 {
                            return Err(Invalid(format!(
                                "metric \"{}\": a data point has no time_unix_nano",
                                metric.name
                            )));
                        }
                        resource.fill(
                            rows,
                            M::ProjectId as usize,
                            M::Resource as usize,
                            &self.resource,
                        );
                        rows.text(M::Name as usize, &metric.name);
                        for (slot, text) in [
                            (M::Description, metric.description.as_str()),
                            (M::Unit, metric.unit.as_str()),
                            (M::ScopeName, scope.map_or("", |s| s.name.as_str())),
                            (M::ScopeVersion, scope.map_or("", |s| s.version.as_str())),
                        ] {
                            if !text.is_empty() {
                                rows.text(slot as usize, text);
                            }
                        }
                        rows.text(M::Type as usize, kind);
                        rows.time(M::Timestamp as usize, micros(point.time));
                        if point.start != 0 {
                            rows.time(M::StartTimestamp as usize, micros(point.start));
                        }
                        rows.int(M::Flags as usize, i64::from(point.flags));
                        let mut json = String::new();
                        write_sorted_attributes(&mut json, point.attributes);
                        rows.text(M::Attributes as usize, &json);
                        if !point.exemplars.is_empty() {
                            rows.text(M::Exemplars as usize, &exemplars_json(point.exemplars));
                        }
                        Ok(())
                    };
                    let temporality = |rows: &mut Rows, value: i32| {
                        let name = match value {
                            1 => "delta",
                            2 => "cumulative",
                            _ => return,
                        };
                        rows.text(M::Temporality as usize, name);
                    };
                    match &metric.data {
                        None => {}
                        Some(Data::Gauge(gauge)) => {
                            for p in &gauge.data_points {
                                start_row(&mut rows, "gauge", &point!(p))?;
                                number(&mut rows, p.value.as_ref());
                                rows.end_row()?;
                            }
                        }
                        Some(Data::Sum(sum)) => {
                            for p in &sum.data_points {
                                start_row(&mut rows, "sum", &point!(p))?;
                                temporality(&mut rows, sum.aggregation_temporality);
                                rows.bool(M::IsMonotonic as usize, sum.is_monotonic);
                                number(&mut rows, p.value.as_ref());
                                rows.end_row()?;
                            }
                        }
                        Some(Data::Histogram(histogram)) => {
                            for p in &histogram.data_points {
                                start_row(&mut rows, "histogram", &point!(p))?;
                                temporality(&mut rows, histogram.aggregation_temporality);
                                summary_fields(&mut rows, p.count, p.sum, p.min, p.max);
                                rows.counts(M::BucketCounts as usize, &p.bucket_counts);
                                rows.floats(
                                    M::ExplicitBounds as usize,
                                    p.explicit_bounds.iter().copied(),
                                );
                                rows.end_row()?;
                            }
                        }
                        Some(Data::ExponentialHistogram(histogram)) => {
                            for p in &histogram.data_points {
                                start_row(&mut rows, "exponential_histogram", &point!(p))?;
                                temporality(&mut rows, histogram.aggregation_temporality);
                                summary_fields(&mut rows, p.count, p.sum, p.min, p.max);
                                rows.int(M::ExpScale as usize, i64::from(p.scale));
                                rows.int(
                                    M::ExpZeroCount as usize,
                                    i64::try_from(p.zero_count).unwrap_or(i64::MAX),
                                );
                                rows.float(M::ExpZeroThreshold as usize, p.zero_threshold);
                                for (buckets, offset, counts) in [
                                    (&p.positive, M::ExpPositiveOffset, M::ExpPositiveCounts),
                                    (&p.negative, M::ExpNegativeOffset, M::ExpNegativeCounts),
                                ] {
                                    if let Some(buckets) = buckets {
                                        rows.int(offset as usize, i64::from(buckets.offset));
                                        rows.counts(counts as usize, &buckets.bucket_counts);
                                    }
                                }
                                rows.end_row()?;
                            }
                        }
                        Some(Data::Summary(summary)) => {
                            for p in &summary.data_points {
                                start_row(&mut rows, "summary", &point!(p, []))?;
                                summary_fields(&mut rows, p.count, Some(p.sum), None, None);
                                rows.floats(
                                    M::Quantiles as usize,
                                    p.quantile_values.iter().map(|q| q.quantile),
                                );
                                rows.floats(
                                    M::QuantileValues as usize,
                                    p.quantile_values.iter().map(|q| q.value),
                                );
                                rows.end_row()?;
                            }
                        }
                    }
                }
            }
        }
        rows.finish().map_err(|e| Invalid(e.to_string()))
    }
}

fn number(rows: &mut Rows, value: Option<&number_data_point::Value>) {
    match value {
        Some(number_data_point::Value::AsDouble(d)) => rows.float(M::Value as usize, *d),
        Some(number_data_point::Value::AsInt(i)) => rows.float(M::Value as usize, *i as f64),
        None => {}
    }
}

fn summary_fields(
    rows: &mut Rows,
    count: u64,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
) {
    rows.int(M::Count as usize, i64::try_from(count).unwrap_or(i64::MAX));
    for (slot, value) in [(M::Sum, sum), (M::Min, min), (M::Max, max)] {
        if let Some(value) = value {
            rows.float(slot as usize, value);
        }
    }
}

fn exemplars_json(exemplars: &[Exemplar]) -> String {
    let mut json = String::from("[");
    for (i, e) in exemplars.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str("{\"timestamp\":");
        write_string(&mut json, &rfc3339(e.time_unix_nano));
        json.push_str(",\"value\":");
        match e.value {
            Some(exemplar::Value::AsDouble(d)) if d.is_finite() => json.push_str(&d.to_string()),
            Some(exemplar::Value::AsInt(i)) => json.push_str(&i.to_string()),
            _ => json.push_str("null"),
        }
        if let Some(trace_id) = hex_id(&e.trace_id) {
            json.push_str(",\"trace_id\":");
            write_string(&mut json, &trace_id);
        }
        if let Some(span_id) = hex_id(&e.span_id) {
            json.push_str(",\"span_id\":");
            write_string(&mut json, &span_id);
        }
        json.push_str(",\"attributes\":");
        write_attributes(&mut json, &e.filtered_attributes, &[]);
        json.push('}');
    }
    json.push(']');
    json
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::schema::Catalog;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int64Type};
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
        Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
        exponential_histogram_data_point::Buckets, summary_data_point::ValueAtQuantile,
    };

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    fn metric(name: &str, data: Data) -> Metric {
        Metric {
            name: name.into(),
            data: Some(data),
            ..Default::default()
        }
    }

    fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    const T: u64 = 1_700_000_000_000_000_000;

    #[test]
    fn every_kind_of_point_is_one_row_with_its_fields() {
        let catalog = Catalog::load(None).expect("schemas");
        let mapping = Metrics::new(catalog.get(METRICS).expect("table").clone()).expect("mapping");
        let number = |value| NumberDataPoint {
            time_unix_nano: T,
            attributes: vec![kv("b", "2"), kv("a", "1"), kv("a", "later")],
            value: Some(value),
            ..Default::default()
        };
        let batch = mapping
            .points(
                &request(vec![
                    metric(
                        "g",
                        Data::Gauge(Gauge {
                            data_points: vec![number(number_data_point::Value::AsDouble(1.5))],
                        }),
                    ),
                    metric(
                        "s",
                        Data::Sum(Sum {
                            data_points: vec![number(number_data_point::Value::AsInt(7))],
                            aggregation_temporality: 1,
                            is_monotonic: true,
                        }),
                    ),
                    metric(
                        "h",
                        Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                time_unix_nano: T,
                                count: 3,
                                sum: Some(6.0),
                                bucket_counts: vec![1, 2],
                                explicit_bounds: vec![2.5],
                                ..Default::default()
                            }],
                            aggregation_temporality: 2,
                        }),
                    ),
                    metric(
                        "e",
                        Data::ExponentialHistogram(ExponentialHistogram {
                            data_points: vec![ExponentialHistogramDataPoint {
                                time_unix_nano: T,
                                count: 2,
                                scale: 3,
                                positive: Some(Buckets {
                                    offset: -1,
                                    bucket_counts: vec![1, 1],
                                }),
                                ..Default::default()
                            }],
                            aggregation_temporality: 2,
                        }),
                    ),
                    metric(
                        "q",
                        Data::Summary(Summary {
                            data_points: vec![SummaryDataPoint {
                                time_unix_nano: T,
                                count: 4,
                                sum: 10.0,
                                quantile_values: vec![ValueAtQuantile {
                                    quantile: 0.5,
                                    value: 2.0,
                                }],
                                ..Default::default()
                            }],
                        }),
                    ),
                ]),
                Some("p"),
            )
            .expect("converted");
        assert_eq!(batch.num_rows(), 5);
        let text = |column: &str, row: usize| {
            let array = batch
                .column_by_name(column)
                .expect(column)
                .as_string::<i32>();
            array.is_valid(row).then(|| array.value(row).to_string())
        };
        let types: Vec<_> = (0..5)
            .map(|r| text("metric_type", r).expect("type"))
            .collect();
        assert_eq!(
            types,
            [
                "gauge",
                "sum",
                "histogram",
                "exponential_histogram",
                "summary"
            ]
        );
        // Keys sorted, the first of two equal keys kept.
        assert_eq!(
            text("attributes", 0).as_deref(),
            Some(r#"{"a":"1","b":"2"}"#)
        );
        assert_eq!(text("aggregation_temporality", 1).as_deref(), Some("delta"));
        let value = batch
            .column_by_name("value")
            .expect("value")
            .as_primitive::<Float64Type>();
        assert_eq!((value.value(0), value.value(1)), (1.5, 7.0));
        assert!(value.is_null(2));
        let counts = batch
            .column_by_name("bucket_counts")
            .expect("counts")
            .as_list::<i32>();
        assert_eq!(
            counts.value(2).as_primitive::<Int64Type>().values(),
            &[1, 2]
        );
        assert!(counts.is_null(0));
        let positive = batch
            .column_by_name("exp_positive_bucket_counts")
            .expect("positive")
            .as_list::<i32>();
        assert_eq!(positive.value(3).len(), 2);
        let quantiles = batch
            .column_by_name("quantile_values")
            .expect("q")
            .as_list::<i32>();
        assert_eq!(
            quantiles.value(4).as_primitive::<Float64Type>().values(),
            &[2.0]
        );

        let timeless = request(vec![metric(
            "g",
            Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint::default()],
            }),
        )]);
        let refused = mapping.points(&timeless, Some("p")).expect_err("no time");
        assert!(refused.0.contains("no time_unix_nano"), "{}", refused.0);
    }

    #[test]
    fn prometheus_samples_are_gauges_or_counters_and_carry_their_labels() {
        use super::remote_write::{Label, Sample, TimeSeries};
        let catalog = Catalog::load(None).expect("schemas");
        let mapping = Metrics::new(catalog.get(METRICS).expect("table").clone()).expect("mapping");
        let series = |name: &str, extra: &[(&str, &str)], values: &[f64]| TimeSeries {
            labels: [("__name__", name), ("job", "api"), ("instance", "h:9")]
                .iter()
                .chain(extra)
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: values
                .iter()
                .map(|&value| Sample {
                    value,
                    timestamp: 1_700_000_000_123,
                })
                .collect(),
            histograms: vec![],
        };
        let request = WriteRequest {
            timeseries: vec![
                series("up", &[("timefusion_project_id", "t")], &[1.0]),
                series(
                    "requests_total",
                    &[],
                    &[5.0, f64::from_bits(remote_write::STALE_NAN)],
                ),
                series("latency_bucket", &[("le", "0.5")], &[2.0]),
                series("temperature", &[], &[f64::NAN]),
            ],
            metadata: vec![MetricMetadata {
                r#type: remote_write::HISTOGRAM,
                metric_family_name: "latency".into(),
                help: "request latency".into(),
                unit: "seconds".into(),
            }],
        };
        let batch = mapping.samples(&request, Some("h")).expect("converted");
        // The staleness marker is not a sample; a plain NaN is.
        assert_eq!(batch.num_rows(), 4);
        let text = |column: &str, row: usize| {
            let array = batch
                .column_by_name(column)
                .expect(column)
                .as_string::<i32>();
            array.is_valid(row).then(|| array.value(row).to_string())
        };
        let types: Vec<_> = (0..4)
            .map(|r| text("metric_type", r).expect("type"))
            .collect();
        assert_eq!(types, ["gauge", "sum", "sum", "gauge"]);
        assert_eq!(text("project_id", 0).as_deref(), Some("t"));
        assert_eq!(text("project_id", 1).as_deref(), Some("h"));
        assert_eq!(
            text("attributes", 0).as_deref(),
            Some(r#"{"instance":"h:9","job":"api"}"#)
        );
        assert_eq!(
            text("attributes", 2).as_deref(),
            Some(r#"{"instance":"h:9","job":"api","le":"0.5"}"#)
        );
        assert_eq!(
            text("metric_description", 2).as_deref(),
            Some("request latency")
        );
        assert_eq!(text("resource___service___name", 0).as_deref(), Some("api"));
        assert_eq!(
            text("resource___service___instance___id", 0).as_deref(),
            Some("h:9")
        );
        let times = batch
            .column_by_name("timestamp")
            .expect("timestamp")
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        assert_eq!(times.value(0), 1_700_000_000_123_000);

        let mut native = request.clone();
        native.timeseries[0].histograms.push(vec![1]);
        let refused = mapping
            .samples(&native, Some("h"))
            .expect_err("native histogram");
        assert!(refused.0.contains("native histograms"), "{}", refused.0);
        let refused = mapping
            .samples(
                &WriteRequest {
                    timeseries: vec![series("x", &[], &[1.0])],
                    metadata: vec![],
                },
                None,
            )
            .expect_err("no tenant");
        assert!(refused.0.contains("no tenant"), "{}", refused.0);
    }
}
