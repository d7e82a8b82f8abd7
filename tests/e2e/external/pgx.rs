//! pgx, the Go driver (Debian's `golang-github-jackc-pgx-v4-dev`, 4.15; its newest release
//! needs the Go module proxy, which this machine cannot reach), against the real server:
//! binary parameters and results, a `SendBatch` of parameterized INSERTs in one round trip,
//! binary `COPY` (`CopyFrom`), array parameters of text and int8 (`= ANY($n)`), a prepared
//! statement and a SQLSTATE. The client is `tests/go/pgx_client.go`, built in GOPATH mode
//! against the packaged sources.

use std::process::Command;

use crate::common::*;

#[tokio::test]
async fn pgx_batches_copies_and_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let build = tempfile::tempdir().expect("build dir");
    let binary = build.path().join("pgx_client");
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/go/pgx_client.go");
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(source)
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOFLAGS", "")
        // Kept between runs (the packaged sources build in seconds; cached, in less).
        .env("GOCACHE", std::env::temp_dir().join("timefusion-go-build"))
        .output()
        .expect("run go (scripts/test-deps.sh installs golang-go and pgx)");
    assert!(
        built.status.success(),
        "pgx_client.go builds: {}",
        String::from_utf8_lossy(&built.stderr)
    );

    let server = TestServer::start(dir.path(), &[]);
    let out = Command::new(&binary)
        .arg(server.url())
        .output()
        .expect("run the pgx client");
    assert!(
        out.status.success(),
        "pgx client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert_eq!(seen["copied"], 30, "{seen}");
    assert_eq!(seen["count"], 50, "{seen}");
    assert_eq!(
        seen["row"],
        serde_json::json!(["pgx-3", ["h3", "x"], "2026-11-23T10:00:03Z", 3]),
        "{seen}"
    );
    assert_eq!(seen["any_text"], 2, "{seen}");
    assert_eq!(seen["any_int"], 2, "{seen}");
    assert_eq!(seen["prepared"], serde_json::json!([10, 5]), "{seen}");
    assert_eq!(seen["missing_table"], "42P01", "{seen}");
    let pg = server.client().await;
    assert_eq!(count(&pg, "WHERE project_id = 'pgx'").await, 50);
}
