//! Prometheus remote write from Prometheus itself (the Debian package `scripts/test-deps.sh`
//! installs): it scrapes TimeFusion's own `/metrics` every second and remote-writes the
//! samples back to `/api/v1/write`, with the bearer token and the tenant as an external label
//! (Prometheus 2.42 does not send `headers:`); the points are then read over pgwire. Bad requests get remote write's errors and store nothing.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

const TOKEN: &str = "prom-t0ken";

#[tokio::test]
async fn prometheus_remote_writes_its_scrapes_of_timefusion_into_otel_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[("GRPC_TOKEN", TOKEN)]);
    let http = server.http_port;
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  external_labels:\n    timefusion_project_id: prom\n\
             scrape_configs:\n  - job_name: timefusion\n    static_configs:\n      - targets: ['127.0.0.1:{http}']\n\
             remote_write:\n  - url: http://127.0.0.1:{http}/api/v1/write\n    authorization:\n      credentials: {TOKEN}\n    queue_config:\n      batch_send_deadline: 1s\n      max_shards: 1\n"
        ),
    )
    .expect("write prometheus.yml");
    let prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus (scripts/test-deps.sh installs the Debian package)");
    let _prometheus = Killed(prometheus);

    let pg = server.client().await;
    let points = |sql: &'static str| {
        let pg = &pg;
        async move {
            pg.query_one(sql, &[])
                .await
                .map_or(0, |row| row.get::<_, i64>(0))
        }
    };
    // `up` from the first scrape; the ingest counter once the first write was acknowledged
    // (TimeFusion then counts its own remote-written rows, and the next scrape sees them).
    eventually(
        Duration::from_secs(60),
        "remote-written samples",
        || async {
            points(
                "SELECT count(*) FROM otel_metrics WHERE project_id = 'prom' \
             AND metric_name = 'timefusion_ingested_rows_total' \
             AND attributes LIKE '%\"path\":\"remote_write\"%'",
            )
            .await
                > 0
        },
    )
    .await;

    let up = pg
        .query_one(
            "SELECT metric_type, value, attributes, resource___service___name, \
                    resource___service___instance___id, aggregation_temporality \
             FROM otel_metrics WHERE project_id = 'prom' AND metric_name = 'up' \
             ORDER BY timestamp LIMIT 1",
            &[],
        )
        .await
        .expect("up");
    assert_eq!(up.get::<_, String>(0), "gauge");
    assert_eq!(up.get::<_, Option<f64>>(1), Some(1.0));
    let instance = format!("127.0.0.1:{http}");
    assert_eq!(
        up.get::<_, Option<String>>(2),
        Some(format!(r#"{{"instance":"{instance}","job":"timefusion"}}"#))
    );
    assert_eq!(
        up.get::<_, Option<String>>(3).as_deref(),
        Some("timefusion")
    );
    assert_eq!(up.get::<_, Option<String>>(4), Some(instance));
    assert_eq!(up.get::<_, Option<String>>(5), None);

    let counter = pg
        .query_one(
            "SELECT metric_type, is_monotonic, aggregation_temporality, value > 0 \
             FROM otel_metrics WHERE project_id = 'prom' \
               AND metric_name = 'timefusion_ingested_rows_total' \
             ORDER BY timestamp DESC LIMIT 1",
            &[],
        )
        .await
        .expect("counter");
    assert_eq!(counter.get::<_, String>(0), "sum");
    assert_eq!(counter.get::<_, Option<bool>>(1), Some(true));
    assert_eq!(
        counter.get::<_, Option<String>>(2).as_deref(),
        Some("cumulative")
    );
    assert_eq!(counter.get::<_, Option<bool>>(3), Some(true));

    // Refusals: each stores nothing.
    let before = points("SELECT count(*) FROM otel_metrics").await;
    let auth = format!("Bearer {TOKEN}");
    let protobuf = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "snappy"),
    ];
    let (status, body) = http_post(http, "/api/v1/write", &protobuf, b"not snappy");
    assert_eq!(status, 400, "{body}");
    // A WriteRequest as prompb encodes it: one series (field 1, 26 bytes) with the label
    // `__name__="x"` (field 1: name 1, value 2) and the sample 1.0 at 0 ms (field 2: a double
    // in field 1, the zero timestamp left out); sent first without a tenant.
    let series = [
        &[0x0a, 0x1a, 0x0a, 0x0d, 0x0a, 0x08][..],
        b"__name__",
        &[0x12, 0x01, b'x'],
        &[0x12, 0x09, 0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f],
    ]
    .concat();
    let compressed = snap::raw::Encoder::new()
        .compress_vec(&series)
        .expect("snappy");
    let (status, body) = http_post(http, "/api/v1/write", &protobuf, &compressed);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no tenant"), "{body}");
    let with_tenant = [&protobuf[..], &[("timefusion-project-id", "raw")]].concat();
    let uncompressed = [&with_tenant[..2], &with_tenant[3..]].concat();
    let (status, body) = http_post(http, "/api/v1/write", &uncompressed, &series);
    assert_eq!(status, 415, "{body}");
    let (status, body) = http_post(http, "/api/v1/write", &with_tenant[1..], &compressed);
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        points("SELECT count(*) FROM otel_metrics WHERE project_id = 'raw'").await,
        0
    );
    // The same series with the tenant: stored, one point of 1.0 at the epoch.
    let (status, body) = http_post(http, "/api/v1/write", &with_tenant, &compressed);
    assert_eq!((status, body.as_str()), (204, ""));
    let raw = pg
        .query_one(
            "SELECT metric_type, value, attributes, CAST(timestamp AS text) \
             FROM otel_metrics WHERE project_id = 'raw'",
            &[],
        )
        .await
        .expect("the raw point");
    assert_eq!(raw.get::<_, String>(0), "gauge");
    assert_eq!(raw.get::<_, Option<f64>>(1), Some(1.0));
    assert_eq!(raw.get::<_, Option<String>>(2).as_deref(), Some("{}"));
    assert_eq!(raw.get::<_, String>(3), "1970-01-01 00:00:00+00");
    assert!(points("SELECT count(*) FROM otel_metrics").await > before);
}

/// A child process killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
