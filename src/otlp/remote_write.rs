//! Prometheus remote write (protocol 1.0): `POST /api/v1/write` with a snappy-compressed
//! protobuf `prometheus.WriteRequest`, stored as points of `otel_metrics`
//! ([`super::metrics::Metrics::samples`] says how).
//!
//! The messages are declared here with the fields the receiver reads (prost skips the
//! rest); their tags are those of Prometheus' `prompb/remote.proto` and `prompb/types.proto`.

/// A remote-write request: series with their samples, and the metric families' metadata
/// (Prometheus sends it when `send_metadata` is on, its default).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// One series: its labels (`__name__` among them) and samples.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Native histograms, which are not stored: a request with any is refused.
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub histograms: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    /// UNKNOWN 0, COUNTER 1, GAUGE 2, HISTOGRAM 3, GAUGEHISTOGRAM 4, SUMMARY 5, INFO 6,
    /// STATESET 7.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// The metadata type of a counter.
pub const COUNTER: i32 = 1;
/// Histograms and summaries: their `_bucket`, `_count` and `_sum` series are counters.
pub const HISTOGRAM: i32 = 3;
pub const SUMMARY: i32 = 5;

/// The bit pattern of Prometheus' staleness marker, a NaN that says a series ended: not a
/// sample, so not stored.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;
