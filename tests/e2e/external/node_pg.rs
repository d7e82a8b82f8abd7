//! Node `pg` (node-postgres, the driver of most Node.js tools) against the real server:
//! parameterized inserts and queries, typed results, SQLSTATEs.

use std::process::Command;

use crate::common::*;

#[tokio::test]
async fn node_pg_inserts_and_queries_with_parameters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/pg_client.js");
    let out = Command::new("node")
        .args([script, &server.url()])
        .output()
        .expect("run node (scripts/test-deps.sh installs pg into tests/node)");
    assert!(
        out.status.success(),
        "node pg client failed (run the tests with scripts/test-deps.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert_eq!(seen["count"], 20, "{seen}");
    assert_eq!(seen["total"], "1900", "{seen}");
    assert_eq!(
        seen["latest_ms"], seen["now_ms"],
        "timestamps round-trip: {seen}"
    );
    assert_eq!(
        seen["fields"],
        serde_json::json!(["n", "total", "latest"]),
        "{seen}"
    );
    assert!(
        seen["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("PostgreSQL ")),
        "{seen}"
    );
    assert_eq!(seen["unknown_table"], "42P01", "{seen}");
    // Integer literals are int8 here (DataFusion's Int64; PostgreSQL says int4), which
    // node-postgres returns as a string.
    assert_eq!(seen["still_works"], "1", "{seen}");
    let pg = server.client().await;
    assert_eq!(count(&pg, "WHERE project_id = 'node'").await, 20);
}
