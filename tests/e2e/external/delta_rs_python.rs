//! delta-rs Python (`deltalake`, what most Python data tools read Delta with) reads the local
//! Delta table TimeFusion wrote: every row, the `(project_id, date)` partitioning, and what
//! `DELETE` and `UPDATE` changed.

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
    // Mutations of flushed rows and of rows still buffered at the second stop.
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    client
        .execute(&insert_sql("p2", &ids("late", 2), past_micros(2)), &[])
        .await
        .expect("insert");
    let deleted = client
        .execute(
            &format!("DELETE FROM {TABLE} WHERE project_id = 'p1' AND duration < 5"),
            &[],
        )
        .await
        .expect("delete");
    assert_eq!(deleted, 5);
    let updated = client
        .execute(
            &format!(
                "UPDATE {TABLE} SET name = 'changed' WHERE project_id = 'p2' AND duration = 1"
            ),
            &[],
        )
        .await
        .expect("update");
    assert_eq!(updated, 2, "py2-1 and late-1");
    drop(client);
    assert!(server.terminate().success());

    let table = dir.path().join("tables").join(TABLE);
    // os._exit skips interpreter teardown, where pyarrow's and delta-rs' native thread pools
    // occasionally race into `terminate called without an active exception`.
    let script = "import os, sys\nfrom deltalake import DeltaTable\nt = DeltaTable(sys.argv[1])\nrows = t.to_pyarrow_table()\nprint(rows.num_rows)\nprint(rows.column('name').to_pylist().count('changed'))\nprint(sorted(t.metadata().partition_columns), flush=True)\nos._exit(0)\n";
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
    assert_eq!(lines.next(), Some("39"), "42 + 2 inserted - 5 deleted");
    assert_eq!(lines.next(), Some("2"), "the updated rows");
    assert_eq!(lines.next(), Some("['date', 'project_id']"));
}

/// A table flushed around a partition that could not be written for a while (its rows
/// carried in the WAL, then written by a later flush, across a kill -9) opens in delta-rs
/// Python with every row once.
#[tokio::test]
async fn delta_rs_python_reads_a_table_flushed_around_a_failing_partition() {
    let dir = crate::partition_failure::carried_then_recovered().await;
    let table = dir.path().join("tables").join(TABLE);
    let script = "import os, sys\nfrom deltalake import DeltaTable\nrows = DeltaTable(sys.argv[1]).to_pyarrow_table()\nprint(rows.num_rows)\nprint(len(set(rows.column('id').to_pylist())), flush=True)\nos._exit(0)\n";
    let out = Command::new(python())
        .args(["-c", script, table.to_str().expect("utf-8 path")])
        .output()
        .expect("run python (scripts/test-deps.sh installs deltalake into .venv)");
    assert!(
        out.status.success(),
        "python deltalake failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["110", "110"]);
}
