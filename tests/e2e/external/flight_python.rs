//! Arrow Flight with the Python clients users have: `pyarrow.flight` for DoPut (many batches,
//! a wrong token, a wrong schema) and the ADBC Flight SQL driver for queries. Rows sent over
//! gRPC are counted over pgwire with the same result.

use std::process::Command;

use crate::common::*;

#[tokio::test]
async fn pyarrow_flight_and_adbc_clients() {
    let python = python();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[("GRPC_TOKEN", "py-t0ken")]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/flight_clients.py"
    );
    let out = Command::new(&python)
        .args([script, &server.grpc_port.to_string(), "py-t0ken"])
        .output()
        .expect("run python (scripts/test-deps.sh installs pyarrow and adbc into .venv)");
    assert!(
        out.status.success(),
        "python flight clients failed (run the tests with scripts/test-deps.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json output");
    let acks = seen["acks"].as_array().expect("acks");
    assert_eq!(acks.len(), 25, "{seen}");
    assert!(acks.iter().all(|a| a == "1000"), "{seen}");
    assert_eq!(seen["wrong_token"], "unauthenticated", "{seen}");
    let wrong_schema = seen["wrong_schema"].as_str().expect("wrong_schema");
    assert!(
        wrong_schema.contains("duration"),
        "the error names the column: {wrong_schema}"
    );
    assert!(
        wrong_schema.starts_with("ArrowInvalid"),
        "INVALID_ARGUMENT expected: {wrong_schema}"
    );
    assert_eq!(seen["adbc_count"], 25_000, "{seen}");
    assert_eq!(seen["adbc_row"][0]["name"], "span 7", "{seen}");

    let pg = server.client().await;
    assert_eq!(count(&pg, "WHERE project_id = 'py'").await, 25_000);
    assert_eq!(count(&pg, "WHERE id = 'bad'").await, 0);
}
