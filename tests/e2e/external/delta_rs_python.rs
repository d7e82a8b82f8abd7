//! delta-rs Python (`deltalake`, what most Python data tools read Delta with) reads the local
//! Delta table TimeFusion wrote: every row, and the `(project_id, date)` partitioning.

use std::process::Command;

use crate::common::*;

#[tokio::test]
async fn delta_rs_python_reads_the_table() {
    let python = python();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    client
        .execute(&insert_sql("p1", &ids("py", 30), past_micros(1)), &[])
        .await
        .expect("insert");
    client
        .execute(&insert_sql("p2", &ids("py2", 12), past_micros(2)), &[])
        .await
        .expect("insert");
    drop(client);
    assert!(server.terminate().success());

    let table = dir.path().join("tables").join(TABLE);
    // os._exit skips interpreter teardown, where pyarrow's and delta-rs' native thread pools
    // occasionally race into `terminate called without an active exception`.
    let script = "import os, sys\nfrom deltalake import DeltaTable\nt = DeltaTable(sys.argv[1])\nprint(t.to_pyarrow_table().num_rows)\nprint(sorted(t.metadata().partition_columns), flush=True)\nos._exit(0)\n";
    let out = Command::new(&python)
        .args(["-c", script, table.to_str().expect("utf-8 path")])
        .output()
        .expect("run python (scripts/test-deps.sh installs deltalake into .venv)");
    assert!(
        out.status.success(),
        "python deltalake failed (run the tests with scripts/test-deps.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("42"));
    assert_eq!(lines.next(), Some("['date', 'project_id']"));
}
