//! OTLP from the OpenTelemetry Python SDK: spans, log records and metric points exported over
//! gRPC (gzip, the tenant in a header) and HTTP (protobuf, the tenant as a resource
//! attribute), OTLP/JSON and bad requests over HTTP (tests/python/otlp_clients.py); then the
//! rows are read back over pgwire, column by column. Run with the SDK `tests/requirements.txt`
//! pins and with its newest release (`tests/requirements-latest.txt`).

use std::path::Path;
use std::process::Command;

use crate::common::*;

#[tokio::test]
async fn python_sdk_exports_over_grpc_and_http_read_back_over_pgwire() {
    exports_read_back(&python()).await;
}

#[tokio::test]
async fn python_sdk_at_its_newest_release() {
    exports_read_back(&python_latest()).await;
}

async fn exports_read_back(python: &Path) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[("GRPC_TOKEN", "otlp-t0ken")]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/otlp_clients.py");
    let out = Command::new(python)
        .args([
            script,
            &server.grpc_port.to_string(),
            &server.http_port.to_string(),
            "otlp-t0ken",
        ])
        .output()
        .expect("run python (scripts/test-deps.sh installs the OpenTelemetry SDK into .venv)");
    assert!(
        out.status.success(),
        "python OTLP clients failed (run the tests with scripts/test-deps.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json output");
    for export in [
        "grpc_spans",
        "grpc_logs",
        "grpc_metrics",
        "http_spans",
        "http_logs",
        "http_metrics",
    ] {
        assert_eq!(seen[export], "SUCCESS", "{export}: {seen}");
    }
    for refused in [
        "grpc_no_tenant",
        "http_no_tenant",
        "metrics_no_tenant",
        "grpc_wrong_token",
    ] {
        assert_eq!(seen[refused], "FAILURE", "{refused}: {seen}");
    }
    for accepted in ["json_logs", "json_gzip"] {
        assert_eq!(seen[accepted]["status"], 200, "{accepted}: {seen}");
        assert_eq!(seen[accepted]["body"], "{}", "{accepted}: {seen}");
    }
    assert_eq!(seen["bad_protobuf"]["status"], 400, "{seen}");
    assert_eq!(seen["bad_json"]["status"], 400, "{seen}");
    assert_eq!(seen["bad_type"]["status"], 415, "{seen}");
    assert_eq!(seen["half_bad"]["status"], 400, "{seen}");
    let half_bad: serde_json::Value =
        serde_json::from_str(seen["half_bad"]["body"].as_str().expect("body")).expect("status");
    assert_eq!(half_bad["code"], 3, "INVALID_ARGUMENT: {half_bad}");
    assert!(
        half_bad["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"no start\" has no start_time_unix_nano")),
        "{half_bad}"
    );

    let pg = server.client().await;
    // Two spans and two log records per SDK export pair; the JSON log twice; nothing of the
    // refused requests (the good span next to the bad one included).
    assert_eq!(count(&pg, "WHERE project_id = 'otlp-grpc'").await, 4);
    assert_eq!(count(&pg, "WHERE project_id = 'otlp-http'").await, 4);
    assert_eq!(count(&pg, "WHERE project_id = 'otlp-json'").await, 2);
    assert_eq!(count(&pg, "").await, 10);
    let trace_id = seen["trace_id"].as_str().expect("trace id");

    for tenant in ["otlp-grpc", "otlp-http"] {
        let root = pg
            .query_one(
                "SELECT kind, status_code, parent_id, context___span_id, context___trace_id, \
                        attributes___http___request___method, \
                        attributes___http___response___status_code, attributes___url___path, \
                        resource___service___name, resource___service___version, \
                        resource___deployment___environment___name, \
                        attributes->>'cart.items', attributes->>'otel.scope.name', \
                        duration >= 0, end_time >= start_time, timestamp = start_time \
                 FROM otel_logs_and_spans WHERE project_id = $1 AND name = 'GET /cart'",
                &[&tenant],
            )
            .await
            .expect("root span");
        assert_eq!(root.get::<_, Option<String>>(0).as_deref(), Some("SERVER"));
        assert_eq!(root.get::<_, Option<String>>(1).as_deref(), Some("UNSET"));
        assert_eq!(
            root.get::<_, Option<String>>(2),
            None,
            "a root has no parent"
        );
        let root_span: String = root.get(3);
        assert_eq!(root_span.len(), 16, "{root_span}");
        if tenant == "otlp-grpc" {
            assert_eq!(root.get::<_, String>(4), trace_id);
        }
        assert_eq!(root.get::<_, Option<String>>(5).as_deref(), Some("GET"));
        assert_eq!(root.get::<_, Option<i32>>(6), Some(200));
        assert_eq!(root.get::<_, Option<String>>(7).as_deref(), Some("/cart"));
        assert_eq!(
            root.get::<_, Option<String>>(8).as_deref(),
            Some("checkout")
        );
        assert_eq!(root.get::<_, Option<String>>(9).as_deref(), Some("1.2.3"));
        assert_eq!(root.get::<_, Option<String>>(10).as_deref(), Some("test"));
        assert_eq!(root.get::<_, Option<String>>(11).as_deref(), Some("3"));
        assert_eq!(
            root.get::<_, Option<String>>(12).as_deref(),
            Some("shop.cart")
        );
        for check in 13..16 {
            assert_eq!(
                root.get::<_, Option<bool>>(check),
                Some(true),
                "column {check}"
            );
        }

        let child = pg
            .query_one(
                "SELECT kind, status_code, status_message, parent_id, \
                        attributes___db___system___name, events \
                 FROM otel_logs_and_spans WHERE project_id = $1 AND name = 'SELECT carts'",
                &[&tenant],
            )
            .await
            .expect("child span");
        assert_eq!(child.get::<_, Option<String>>(0).as_deref(), Some("CLIENT"));
        assert_eq!(child.get::<_, Option<String>>(1).as_deref(), Some("ERROR"));
        assert_eq!(
            child.get::<_, Option<String>>(2).as_deref(),
            Some("timeout")
        );
        assert_eq!(child.get::<_, Option<String>>(3), Some(root_span.clone()));
        assert_eq!(
            child.get::<_, Option<String>>(4).as_deref(),
            Some("postgresql")
        );
        let events: serde_json::Value =
            serde_json::from_str(&child.get::<_, String>(5)).expect("events are JSON");
        assert_eq!(events[0]["name"], "retry", "{events}");
        assert_eq!(events[0]["attributes"]["attempt"], 2, "{events}");

        let warn = pg
            .query_one(
                "SELECT level, severity___severity_number, body, context___trace_id, \
                        attributes___db___query___text, attributes->>'elapsed_ms', \
                        observed_timestamp IS NOT NULL \
                 FROM otel_logs_and_spans WHERE project_id = $1 AND kind = 'LOG' \
                   AND level = 'WARN'",
                &[&tenant],
            )
            .await
            .expect("log record inside the span");
        assert_eq!(warn.get::<_, Option<i32>>(1), Some(13));
        assert_eq!(
            warn.get::<_, Option<String>>(2).as_deref(),
            Some("\"slow query\"")
        );
        let in_trace: Option<String> = warn.get(3);
        assert_eq!(in_trace.map(|t| t.len()), Some(32));
        assert_eq!(
            warn.get::<_, Option<String>>(4).as_deref(),
            Some("SELECT 1")
        );
        assert_eq!(warn.get::<_, Option<String>>(5).as_deref(), Some("1500.5"));
        assert_eq!(warn.get::<_, Option<bool>>(6), Some(true));

        let error = pg
            .query_one(
                "SELECT level, body, attributes___user___id, context___trace_id \
                 FROM otel_logs_and_spans WHERE project_id = $1 AND kind = 'LOG' \
                   AND level <> 'WARN'",
                &[&tenant],
            )
            .await
            .expect("log record outside any span");
        assert_eq!(error.get::<_, Option<String>>(0).as_deref(), Some("ERROR"));
        let body: serde_json::Value =
            serde_json::from_str(&error.get::<_, String>(1)).expect("body is JSON");
        assert_eq!(
            body,
            serde_json::json!({"event": "checkout failed", "codes": [1, 2]})
        );
        assert_eq!(error.get::<_, Option<String>>(2).as_deref(), Some("u-42"));
        assert_eq!(error.get::<_, Option<String>>(3), None);
    }

    let json = pg
        .query(
            "SELECT level, body, attributes___http___response___status_code, \
                    context___trace_id, context___span_id, resource___service___name, \
                    attributes->>'ratio', date = CAST(timestamp AS date) \
             FROM otel_logs_and_spans WHERE project_id = 'otlp-json'",
            &[],
        )
        .await
        .expect("JSON log records");
    assert_eq!(json.len(), 2);
    for row in json {
        assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("INFO"));
        assert_eq!(
            row.get::<_, Option<String>>(1).as_deref(),
            Some("\"hello from json\"")
        );
        assert_eq!(row.get::<_, Option<i32>>(2), Some(503));
        assert_eq!(
            row.get::<_, Option<String>>(3).as_deref(),
            Some("5b8efff798038103d269b633813fc60c")
        );
        assert_eq!(
            row.get::<_, Option<String>>(4).as_deref(),
            Some("eee19b7ec3c1b174")
        );
        assert_eq!(row.get::<_, Option<String>>(5).as_deref(), Some("json-svc"));
        assert_eq!(row.get::<_, Option<String>>(6).as_deref(), Some("0.25"));
        assert_eq!(row.get::<_, Option<bool>>(7), Some(true));
    }

    // Metric points: six per export, of every kind.
    for tenant in ["otlp-grpc", "otlp-http"] {
        let points = pg
            .query(
                "SELECT metric_name, metric_type, aggregation_temporality, is_monotonic, value, \
                        count, sum, min, max, attributes, \
                        CAST(cardinality(bucket_counts) AS bigint), \
                        CAST(cardinality(explicit_bounds) AS bigint), exp_scale IS NOT NULL, \
                        cardinality(exp_positive_bucket_counts) > 0, metric_unit, \
                        resource___service___name, scope_name, date = CAST(timestamp AS date) \
                 FROM otel_metrics WHERE project_id = $1 ORDER BY metric_name, attributes",
                &[&tenant],
            )
            .await
            .expect("metric points");
        let summary: Vec<String> = points
            .iter()
            .map(|row| {
                format!(
                    "{} {} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {}",
                    row.get::<_, String>(0),
                    row.get::<_, String>(1),
                    row.get::<_, Option<String>>(2),
                    row.get::<_, Option<bool>>(3),
                    row.get::<_, Option<f64>>(4),
                    row.get::<_, Option<i64>>(5),
                    row.get::<_, Option<f64>>(6),
                    row.get::<_, Option<f64>>(7),
                    row.get::<_, Option<f64>>(8),
                    row.get::<_, Option<String>>(9).unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                r#"http.server.duration histogram Some("cumulative") None None Some(4) Some(1045.0) Some(5.0) Some(900.0) {"route":"/cart"}"#,
                r#"http.server.requests sum Some("cumulative") Some(true) Some(3.0) None None None None {"http.request.method":"GET","http.response.status_code":200}"#,
                r#"http.server.requests sum Some("cumulative") Some(true) Some(1.0) None None None None {"http.request.method":"GET","http.response.status_code":500}"#,
                r#"payload.size exponential_histogram Some("cumulative") None None Some(3) Some(11100.0) Some(100.0) Some(10000.0) {}"#,
                r#"queue.depth gauge None None Some(7.0) None None None None {"queue":"emails"}"#,
                r#"requests.inflight sum Some("cumulative") Some(false) Some(3.0) None None None None {}"#,
            ],
            "{tenant}"
        );
        let histogram = &points[0];
        // Explicit buckets: one more count than bounds.
        let (counts, bounds) = (histogram.get::<_, i64>(10), histogram.get::<_, i64>(11));
        assert!(
            bounds > 0 && counts == bounds + 1,
            "{counts} counts, {bounds} bounds"
        );
        let exponential = &points[3];
        assert_eq!(exponential.get::<_, Option<bool>>(12), Some(true));
        assert_eq!(exponential.get::<_, Option<bool>>(13), Some(true));
        assert_eq!(points[1].get::<_, Option<String>>(14).as_deref(), Some("1"));
        for row in &points {
            assert_eq!(
                row.get::<_, Option<String>>(15).as_deref(),
                Some("checkout")
            );
            assert_eq!(
                row.get::<_, Option<String>>(16).as_deref(),
                Some("shop.metrics")
            );
            assert_eq!(row.get::<_, Option<bool>>(17), Some(true));
        }
    }
    assert_eq!(
        pg.query_one(
            "SELECT count(*) FROM otel_metrics WHERE project_id LIKE 'otlp-%'",
            &[]
        )
        .await
        .expect("count")
        .get::<_, i64>(0),
        12,
        "nothing of the export without a tenant"
    );

    // InfluxDB line protocol from InfluxDB's client: a point per numeric field, the bucket as
    // the tenant; the bad line stored nothing.
    assert_eq!(seen["influx"], "written", "{seen}");
    assert_eq!(seen["influx_bad"]["status"], 400, "{seen}");
    assert!(
        seen["influx_bad"]["body"]
            .as_str()
            .is_some_and(|b| b.contains("line 1: the field value") && b.contains("oops")),
        "{seen}"
    );
    let influx: Vec<String> = pg
        .query(
            "SELECT metric_name, value, attributes, resource___host___name, \
                    CAST(timestamp AS text) \
             FROM otel_metrics WHERE project_id = 'influx' ORDER BY metric_name, attributes",
            &[],
        )
        .await
        .expect("influx points")
        .iter()
        .map(|row| {
            format!(
                "{} {} {} {:?} {}",
                row.get::<_, String>(0),
                row.get::<_, f64>(1),
                row.get::<_, String>(2),
                row.get::<_, Option<String>>(3),
                row.get::<_, String>(4),
            )
        })
        .collect();
    assert_eq!(
        influx,
        [
            r#"cpu_steal 2 {"core":"0","host":"web 1"} Some("web 1") 2023-11-14 22:13:20+00"#,
            r#"cpu_usage 0.5 {"core":"0","host":"web 1"} Some("web 1") 2023-11-14 22:13:20+00"#,
            r#"cpu_usage 0.25 {"core":"1","host":"web 1"} Some("web 1") 2023-11-14 22:13:20+00"#,
            r#"temperature 21.5 {} None 2023-11-14 22:13:21+00"#,
            r#"temperature_ok 1 {} None 2023-11-14 22:13:21+00"#,
        ]
    );
}
