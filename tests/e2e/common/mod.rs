//! Helpers for end-to-end tests: spawn the real `timefusion` binary on port 0 against a
//! temporary data directory and talk to it with real clients.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::prelude::SessionContext;

mod raw;
pub use raw::{Raw, Reply};

pub const USER: &str = "postgres";
pub const PASSWORD: &str = "postgres";
pub const TABLE: &str = "otel_logs_and_spans";
pub const DAY_MICROS: i64 = 86_400_000_000;

pub struct TestServer {
    child: Child,
    pub port: u16,
    pub grpc_port: u16,
    pub http_port: u16,
    pub data_dir: PathBuf,
    /// Every line the server has written to stderr (its log), for [`TestServer::logged`].
    log: Arc<parking_lot::Mutex<Vec<String>>>,
}

impl TestServer {
    /// Starts the binary with `TIMEFUSION_DATA_DIR=data_dir`, `PGWIRE_PORT=0` and `env`.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> TestServer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_timefusion"));
        command
            .env("TIMEFUSION_DATA_DIR", data_dir)
            .env("PGWIRE_HOST", "127.0.0.1")
            .env("PGWIRE_PORT", "0")
            .env("GRPC_HOST", "127.0.0.1")
            .env("GRPC_PORT", "0")
            .env("TIMEFUSION_HTTP_HOST", "127.0.0.1")
            .env("TIMEFUSION_HTTP_PORT", "0")
            .env("TIMEFUSION_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn timefusion");
        let log = shared(Vec::new());
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let lines_of_log = log.clone();
        // Passed on to this process's stderr as it comes (as if inherited), and kept.
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = writeln!(std::io::stderr(), "{line}");
                lines_of_log.lock().push(line);
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (port, grpc_port, http_port) = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                other => {
                    let status = child.wait().expect("wait");
                    panic!("timefusion exited before listening ({status}): {other:?}");
                }
            };
            if let Some(rest) = line.strip_prefix("timefusion listening: pgwire=") {
                let (pg, rest) = rest
                    .split_once(" grpc=")
                    .expect("pgwire and grpc addresses");
                let (grpc, http) = rest.split_once(" http=").expect("an http address");
                let http: std::net::SocketAddr = http.parse().expect("http address");
                let pg: std::net::SocketAddr = pg.parse().expect("pgwire address");
                let grpc: std::net::SocketAddr = grpc.parse().expect("grpc address");
                break (pg.port(), grpc.port(), http.port());
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        TestServer {
            child,
            port,
            grpc_port,
            http_port,
            data_dir: data_dir.to_path_buf(),
            log,
        }
    }

    /// Every line of the server's log so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().clone()
    }

    /// How many lines the server has logged so far that contain `text`.
    pub fn logged(&self, text: &str) -> usize {
        self.log.lock().iter().filter(|l| l.contains(text)).count()
    }

    pub fn url(&self) -> String {
        format!(
            "postgresql://{USER}:{PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(self.port).await
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop within 120 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `psql URL -X -v ON_ERROR_STOP=1 ARGS…`, ready to run (callers add stdin or take output).
pub fn psql_command(url: &str, args: &[&str]) -> Command {
    let mut command = Command::new("psql");
    command
        .args([url, "-X", "-v", "ON_ERROR_STOP=1"])
        .args(args);
    command
}

/// The tokio-postgres connection string of the test login on `port`.
pub fn pg_config(port: u16) -> String {
    format!("host=127.0.0.1 port={port} user={USER} password={PASSWORD} dbname=postgres")
}

pub async fn connect(port: u16) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&pg_config(port), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A multi-row INSERT of `ids` for `project` at `timestamp_micros + i`.
pub fn insert_sql(project: &str, ids: &[String], timestamp_micros: i64) -> String {
    let rows: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let ts = chrono::DateTime::from_timestamp_micros(timestamp_micros + i as i64)
                .expect("timestamp")
                .format("%Y-%m-%dT%H:%M:%S%.6fZ");
            format!(
                "('{project}', '{ts}', '{id}', 'GET /api/{i}', 'INFO', '{{\"message\":\"hello {id}\"}}', {i}, 'svc-{}')",
                i % 3
            )
        })
        .collect();
    format!(
        "INSERT INTO {TABLE} (project_id, timestamp, id, name, level, body, duration, resource___service___name) VALUES {}",
        rows.join(", ")
    )
}

pub async fn count(client: &tokio_postgres::Client, filter: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {TABLE} {filter}");
    client.query_one(&sql, &[]).await.expect("count").get(0)
}

/// Rows committed to the Delta table on disk, read with delta-rs directly (not the server).
pub async fn delta_rows(data_dir: &Path) -> usize {
    delta_count(data_dir, "").await
}

/// Rows committed to the Delta table on disk that pass `filter` (a `WHERE …` clause, or
/// nothing), read with delta-rs directly (not the server).
pub async fn delta_count(data_dir: &Path, filter: &str) -> usize {
    let dir = data_dir
        .join("tables")
        .join(TABLE)
        .canonicalize()
        .expect("table dir");
    let url = url::Url::from_directory_path(dir).expect("url");
    let table = deltalake::open_table(url).await.expect("open delta table");
    let ctx = SessionContext::new();
    let provider = table.table_provider().await.expect("provider");
    ctx.register_table("t", provider).expect("register");
    let batches = ctx
        .sql(&format!("SELECT count(*) FROM t {filter}"))
        .await
        .expect("sql")
        .collect()
        .await
        .expect("collect");
    let counts = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .expect("count column")
        .value(0);
    counts as usize
}

/// The Parquet data files under `dir` (a table's folder), not the Delta log's checkpoints.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                if !path.ends_with("_delta_log") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "parquet") {
                files.push(path);
            }
        }
    }
    files
}

/// A statement that takes minutes: DataFusion counts ten billion generated rows.
pub const ENDLESS: &str = "SELECT count(*) FROM generate_series(1, 10000000000)";

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Microseconds of a time well in the past (its buckets are sealed, so the flusher takes them).
pub fn past_micros(days_ago: i64) -> i64 {
    chrono::Utc::now().timestamp_micros() - days_ago * DAY_MICROS
}

pub fn shared<T>(value: T) -> Arc<parking_lot::Mutex<T>> {
    Arc::new(parking_lot::Mutex::new(value))
}
pub mod seaweed;

/// A program of the test virtualenv that `scripts/test-deps.sh` fills: `$TIMEFUSION_VENV`
/// (default `.venv` in the repository), else `name` on PATH.
pub fn venv_bin(name: &str) -> PathBuf {
    let venv = std::env::var_os("TIMEFUSION_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let path = venv.join("bin").join(name);
    if path.exists() {
        path
    } else {
        PathBuf::from(name)
    }
}

/// The Python with the test packages: `TIMEFUSION_TEST_PYTHON`, else the test virtualenv's.
pub fn python() -> PathBuf {
    std::env::var_os("TIMEFUSION_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| venv_bin("python3"))
}

/// The Python with the newest release of each client (`tests/requirements-latest.txt`),
/// which `scripts/test-deps.sh` installs into `$TIMEFUSION_VENV_LATEST` (default: the test
/// virtualenv's path with `-latest` appended).
pub fn python_latest() -> PathBuf {
    let venv = std::env::var_os("TIMEFUSION_VENV_LATEST")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let mut venv = std::env::var_os("TIMEFUSION_VENV").unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join(".venv")
                    .into_os_string()
            });
            venv.push("-latest");
            PathBuf::from(venv)
        });
    venv.join("bin").join("python3")
}

/// `GET path` on `127.0.0.1:port` over HTTP/1.1: the status code and the body, or `None` when
/// nothing listens there (yet).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// `POST path` on `127.0.0.1:port` over HTTP/1.1 with `headers` and `body`: the status code
/// and the body.
pub fn http_post(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write head");
    stream.write_all(body).expect("write body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// A port nothing listens on now (bound and released), for a server that must be told its
/// port before it prints it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The SQLSTATE of `result`'s error, or `"ok"`.
pub fn outcome<T>(result: Result<T, tokio_postgres::Error>) -> String {
    result.map_or_else(|e| sqlstate(&e), |_| "ok".into())
}

/// The SQLSTATE of a statement's error, or what happened instead (a lost connection …).
pub fn sqlstate(error: &tokio_postgres::Error) -> String {
    error
        .as_db_error()
        .map(|e| e.code().code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {error}"))
}

/// The rows of a simple query's answer, each value as text (`None` for NULL).
pub fn rows(messages: &[tokio_postgres::SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}
