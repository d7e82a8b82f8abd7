//! Java pgjdbc (Debian's `libpostgresql-jdbc-java`; DBeaver, Metabase and JVM tools use it)
//! against the real server: prepared statements and the `DatabaseMetaData` calls schema
//! browsers make (`getTables`, `getColumns`).

use std::collections::HashMap;
use std::process::Command;

use crate::common::*;

const JAR: &str = "/usr/share/java/postgresql.jar";

#[tokio::test]
async fn pgjdbc_prepared_statements_and_metadata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let classes = tempfile::tempdir().expect("classes");
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/java/JdbcClient.java");
    let status = Command::new("javac")
        .args(["-cp", JAR, "-d"])
        .arg(classes.path())
        .arg(source)
        .status()
        .expect("run javac (the JDK; scripts/test-deps.sh installs libpostgresql-jdbc-java)");
    assert!(status.success(), "JdbcClient.java compiles");

    let server = TestServer::start(dir.path(), &[]);
    let url = format!("jdbc:postgresql://127.0.0.1:{}/postgres", server.port);
    let out = Command::new("java")
        .arg("-cp")
        .arg(format!("{JAR}:{}", classes.path().display()))
        .args(["JdbcClient", &url, USER, PASSWORD])
        .output()
        .expect("run java");
    assert!(
        out.status.success(),
        "pgjdbc client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let seen: HashMap<&str, &str> = stdout.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(seen.get("product"), Some(&"PostgreSQL"), "{stdout}");
    assert_eq!(seen.get("count"), Some(&"10"), "{stdout}");
    assert_eq!(seen.get("sum"), Some(&"4500"), "{stdout}");
    assert_eq!(
        seen.get("tables"),
        Some(&"1"),
        "getTables lists the table: {stdout}"
    );
    let columns: usize = seen
        .get("columns")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    assert!(columns > 50, "getColumns lists the columns: {stdout}");
    assert_eq!(
        seen.get("first_columns"),
        Some(&"date;timestamp;"),
        "{stdout}"
    );
    assert_eq!(seen.get("unknown_table"), Some(&"42P01"), "{stdout}");
    let pg = server.client().await;
    assert_eq!(count(&pg, "WHERE project_id = 'jdbc'").await, 10);
}
