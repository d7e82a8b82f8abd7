//! Authentication and TLS on the Postgres port, with real clients: SCRAM-SHA-256 (the
//! default), MD5 and clear text; wrong passwords get 28P01; `sslmode=require` encrypts; a TLS
//! set-up that fails stops the server instead of serving plaintext; an empty password needs
//! `PGWIRE_INSECURE_NO_PASSWORD`.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;

/// A self-signed certificate and key for 127.0.0.1 / localhost, made with openssl.
fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl (scripts/test-deps.sh installs it)");
    assert!(status.success(), "openssl made a certificate");
    (cert, key)
}

fn psql(url: &str, sql: &str) -> std::process::Output {
    psql_command(url, &["-A", "-t", "-c", sql])
        .output()
        .expect("run psql (install postgresql-client)")
}

async fn connect_error(port: u16, password: &str) -> String {
    let config =
        format!("host=127.0.0.1 port={port} user={USER} password={password} dbname=postgres");
    match tokio_postgres::connect(&config, tokio_postgres::NoTls).await {
        Ok(_) => "connected".into(),
        Err(e) => e
            .as_db_error()
            .map(|d| d.code().code().to_string())
            .unwrap_or_else(|| e.to_string()),
    }
}

#[tokio::test]
async fn scram_is_the_default_and_wrong_passwords_get_28p01() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    assert_eq!(
        count(&client, "").await,
        0,
        "tokio-postgres logs in with SCRAM"
    );
    let out = psql(&server.url(), "SELECT 1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(connect_error(server.port, "wrong").await, "28P01");
    let wrong_user = format!(
        "postgresql://intruder:{PASSWORD}@127.0.0.1:{}/postgres",
        server.port
    );
    let out = psql(&wrong_user, "SELECT 1");
    assert!(!out.status.success(), "an unknown user is refused");
}

#[tokio::test]
async fn md5_and_clear_text_methods_for_old_clients() {
    for method in ["md5", "password"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = TestServer::start(dir.path(), &[("PGWIRE_AUTH_METHOD", method)]);
        let out = psql(&server.url(), "SELECT 1");
        assert!(
            out.status.success(),
            "{method}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            connect_error(server.port, "wrong").await,
            "28P01",
            "{method}"
        );
    }
}

#[tokio::test]
async fn sslmode_require_encrypts_the_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = tempfile::tempdir().expect("certs");
    let (cert, key) = self_signed(certs.path());
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let server = TestServer::start(
        dir.path(),
        &[
            ("TIMEFUSION_TLS_CERT", cert.as_str()),
            ("TIMEFUSION_TLS_KEY", key.as_str()),
        ],
    );
    let url = format!("{}?sslmode=require", server.url());
    let out = psql(
        &url,
        "INSERT INTO otel_logs_and_spans (project_id, timestamp, id) VALUES ('tls', now(), 't1')",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = psql_command(&url, &["-c", "\\conninfo"])
        .output()
        .expect("psql");
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(info.contains("SSL connection"), "psql reports TLS: {info}");
    let out = psql(&url, "SELECT count(*) FROM otel_logs_and_spans");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
}

#[test]
fn a_broken_tls_setup_stops_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.pem");
    let out = Command::new(env!("CARGO_BIN_EXE_timefusion"))
        .env("TIMEFUSION_DATA_DIR", dir.path())
        .env("PGWIRE_HOST", "127.0.0.1")
        .env("PGWIRE_PORT", "0")
        .env("GRPC_HOST", "127.0.0.1")
        .env("GRPC_PORT", "0")
        .env("TIMEFUSION_HTTP_PORT", "0")
        .env("TIMEFUSION_TLS_CERT", &missing)
        .env("TIMEFUSION_TLS_KEY", &missing)
        .output()
        .expect("run timefusion");
    assert!(!out.status.success(), "the server must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TIMEFUSION_TLS_CERT"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "it never listened"
    );
}

#[tokio::test]
async fn an_empty_password_needs_the_insecure_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let start = |env: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_timefusion"));
        command
            .env("TIMEFUSION_DATA_DIR", dir.path())
            .env("PGWIRE_HOST", "127.0.0.1")
            .env("PGWIRE_PORT", "0")
            .env("GRPC_HOST", "127.0.0.1")
            .env("GRPC_PORT", "0")
            .env("TIMEFUSION_HTTP_PORT", "0");
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().expect("run timefusion")
    };
    let out = start(&[("PGWIRE_PASSWORD", "")]);
    assert!(!out.status.success(), "an empty password must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PGWIRE_INSECURE_NO_PASSWORD"), "{stderr}");
    let out = start(&[("PGWIRE_INSECURE_NO_PASSWORD", "true")]);
    assert!(
        !out.status.success(),
        "the flag with a password is ambiguous"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not empty"), "{stderr}");

    // With both, the configured user connects without a password; another user does not.
    let server = TestServer::start(
        dir.path(),
        &[
            ("PGWIRE_PASSWORD", ""),
            ("PGWIRE_INSECURE_NO_PASSWORD", "true"),
        ],
    );
    let config = format!(
        "host=127.0.0.1 port={} user={USER} dbname=postgres",
        server.port
    );
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
        .await
        .expect("connect without a password");
    tokio::spawn(connection);
    let one: i64 = client
        .query_one("SELECT count(*) FROM otel_logs_and_spans", &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(one, 0);
    let other = format!(
        "host=127.0.0.1 port={} user=intruder dbname=postgres",
        server.port
    );
    let error = tokio_postgres::connect(&other, tokio_postgres::NoTls)
        .await
        .err()
        .and_then(|e| e.as_db_error().map(|d| d.code().code().to_string()));
    assert_eq!(error.as_deref(), Some("28000"));
    let out = psql_command(
        &format!("postgresql://{USER}@127.0.0.1:{}/postgres", server.port),
        &["-A", "-t", "-w", "-c", "SELECT 41 + 1"],
    )
    .env_remove("PGPASSWORD")
    .output()
    .expect("run psql");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42", "{out:?}");
}
