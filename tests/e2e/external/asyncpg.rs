//! asyncpg against the real server, at the version `tests/requirements.txt` pins and at its
//! newest release (`tests/requirements-latest.txt`): binary parameters and results, arrays (text and numbers, which asyncpg introspects),
//! executemany, binary COPY of records, prepared statements, a transaction, a SQLSTATE.

use std::path::Path;
use std::process::Command;

use crate::common::*;

#[tokio::test]
async fn asyncpg_writes_copies_and_reads() {
    writes_copies_and_reads(&python());
}

#[tokio::test]
async fn asyncpg_at_its_newest_release() {
    writes_copies_and_reads(&python_latest());
}

fn writes_copies_and_reads(python: &Path) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/asyncpg_client.py"
    );
    let out = Command::new(python)
        .args([script, &server.url()])
        .output()
        .expect("run python (scripts/test-deps.sh installs asyncpg)");
    assert!(
        out.status.success(),
        "asyncpg client failed (run the tests with scripts/test-deps.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert_eq!(seen["server_major"], 15, "{seen}");
    assert_eq!(seen["count"], 50, "{seen}");
    assert_eq!(
        seen["row"],
        serde_json::json!(["apg-3", ["h3", "x"], "2026-11-23T10:00:03+00:00", 3]),
        "{seen}"
    );
    assert_eq!(seen["prepared"], serde_json::json!([10, 5]), "{seen}");
    assert_eq!(seen["subquery"], 20, "{seen}");
    assert_eq!(seen["int_any"], 2, "{seen}");
    assert_eq!(seen["int_array"], serde_json::json!([1, null, 3]), "{seen}");
    assert_eq!(seen["float_array"], serde_json::json!([1.5, 2.5]), "{seen}");
    assert_eq!(seen["missing_table"], "42P01", "{seen}");
    assert_eq!(seen["in_transaction"], 1, "{seen}");
}
