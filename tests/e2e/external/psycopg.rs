//! Python psycopg 3 (the driver of SQLAlchemy, Superset and most Python tools) against the real
//! server: server-side binding, executemany, COPY FROM STDIN (text, CSV, binary), typed
//! results, SQLSTATEs; then
//! SQLAlchemy's connect-time probes (savepoints, `to_regtype`), table listing and inspector
//! (`get_columns`). Run twice: with the versions `tests/requirements.txt` pins, and with the
//! newest releases (`tests/requirements-latest.txt`), so a driver release that breaks on
//! TimeFusion shows up here.

use std::path::Path;
use std::process::Command;

use crate::common::*;

#[tokio::test]
async fn psycopg_binds_copies_and_reads() {
    binds_copies_and_reads(&python()).await;
}

#[tokio::test]
async fn psycopg_and_sqlalchemy_at_their_newest_releases() {
    binds_copies_and_reads(&python_latest()).await;
}

async fn binds_copies_and_reads(python: &Path) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/pg_clients.py");
    let out = Command::new(python)
        .args([script, &server.url()])
        .output()
        .expect("run python (scripts/test-deps.sh installs psycopg into .venv)");
    assert!(
        out.status.success(),
        "psycopg client failed (run the tests with scripts/test-deps.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert!(
        seen["server_version"].as_i64().unwrap_or(0) >= 150000,
        "{seen}"
    );
    assert_eq!(seen["count"], 551, "{seen}");
    assert_eq!(seen["sum"], 1500 + (1..50).sum::<i64>(), "{seen}");
    assert_eq!(seen["latest_matches"], true, "{seen}");
    assert_eq!(seen["csv_body"], "{\"a\": \"x,y\"}", "{seen}");
    assert_eq!(
        seen["timestamp_texts"],
        serde_json::json!([
            "2026-11-23 10:00:00+00",
            "2026-11-23 10:00:00.25+00",
            "2026-11-23 10:00:00.000001",
            "7"
        ]),
        "timestamps and floats in text format as PostgreSQL writes them: {seen}"
    );
    assert_eq!(seen["binary_rowcount"], 300, "{seen}");
    assert_eq!(seen["binary_count"], 300, "{seen}");
    assert_eq!(seen["binary_mismatches"], serde_json::json!([]), "{seen}");
    assert_eq!(
        seen["binary_row_1"],
        serde_json::json!([
            "bin-1",
            "name 1 ✓",
            {"i": 1, "s": "x,y"},
            ["h1", null, "a b"],
            1_000_000_007
        ]),
        "{seen}"
    );
    assert_eq!(
        seen["names"],
        serde_json::json!([
            ["GET /many", 49],
            ["GET /one", 1],
            ["copied", 500],
            [null, 1]
        ]),
        "{seen}"
    );
    assert_eq!(seen["columns"], serde_json::json!(["name", "n"]), "{seen}");
    assert_eq!(seen["unknown_table"], "42P01", "{seen}");
    assert_eq!(seen["bad_value"], "22P02", "{seen}");
    assert_eq!(seen["still_works"], 1, "{seen}");
    assert_eq!(seen["sa_count"], 551, "{seen}");
    let mut tables: Vec<&str> = seen["sa_tables"]
        .as_array()
        .expect("sa_tables")
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    tables.sort_unstable();
    assert_eq!(tables, ["otel_logs_and_spans", "otel_metrics"], "{seen}");
    assert_eq!(seen["sa_has_table"], true, "{seen}");
    assert_eq!(seen["tz_after_set"], "Asia/Tokyo", "{seen}");
    assert_eq!(seen["tz_after_reset"], "UTC", "{seen}");
    // SQLAlchemy's get_columns (Superset's column list).
    assert_eq!(seen["sa_column_count"], 92, "{seen}");
    assert_eq!(
        seen["sa_columns"],
        serde_json::json!([
            ["date", "DATE", false],
            ["timestamp", "TIMESTAMP", false],
            ["observed_timestamp", "TIMESTAMP", true]
        ]),
        "{seen}"
    );

    let pg = server.client().await;
    assert_eq!(count(&pg, "WHERE project_id = 'psy'").await, 551);
    assert_eq!(count(&pg, "WHERE project_id = 'psy-bin'").await, 300);
}
