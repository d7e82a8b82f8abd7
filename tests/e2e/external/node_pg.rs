//! Node `pg` (node-postgres, the driver of most Node.js tools) against the real server:
//! parameterized inserts and queries, typed results, SQLSTATEs; the pinned release
//! (tests/node/package-lock.json) and the newest (scripts/test-deps.sh installs it under
//! `$TIMEFUSION_NODE_LATEST`, default tests/node-latest, on every run).

use std::path::PathBuf;
use std::process::Command;

use crate::common::*;

#[tokio::test]
async fn node_pg_inserts_and_queries_with_parameters() {
    let seen = node_pg(None).await;
    assert_eq!(seen["driver"], "8.16.3", "the pinned release: {seen}");
}

#[tokio::test]
async fn node_pg_newest_release_inserts_and_queries_with_parameters() {
    let latest = std::env::var_os("TIMEFUSION_NODE_LATEST")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node-latest"))
        });
    let module = latest.join("node_modules").join("pg");
    assert!(
        module.join("package.json").exists(),
        "{} is missing: run scripts/test-deps.sh",
        module.display()
    );
    let seen = node_pg(Some(module)).await;
    println!("node-postgres newest release: {}", seen["driver"]);
}

/// Runs tests/node/pg_client.js with `module` as its `pg` (the pinned one when `None`), checks
/// what it saw, and returns it.
async fn node_pg(module: Option<PathBuf>) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/pg_client.js");
    let mut node = Command::new("node");
    node.args([script, &server.url()]);
    if let Some(module) = &module {
        node.env("PG_MODULE", module);
    }
    let out = node
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
    seen
}
