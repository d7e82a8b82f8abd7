//! Start-up and ordered shutdown of a TimeFusion server, and the background flusher.
//!
//! Start-up: load schemas, lock and open the WAL, open (or create) each Delta table and read
//! the WAL sequence its last flush covered (its `txn` version), replay only newer WAL records
//! into the buffer, start the WAL writer and the flusher, then accept Postgres and gRPC
//! connections.
//!
//! Shutdown: stop accepting, stop the flusher, close the WAL (queued writes commit, new ones
//! get 57P01), flush every buffered row to Delta, trim the WAL, return.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_postgres::auth::AuthManager;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::buffer::{Buffer, BufferOptions, FlushPlan, FlushReason};
use crate::config::Config;
use crate::ingest::Ingest;
use crate::query::TimeFusionTable;
use crate::schema::Catalog;
use crate::wal::{self, Seq, Wal, WalOptions};
use crate::{Clock, Committed, SystemClock, delta};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Schema(#[from] crate::schema::Error),
    #[error(transparent)]
    Wal(#[from] wal::Error),
    #[error(transparent)]
    Delta(Box<delta::Error>),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] crate::storage::Error),
    #[error("cannot set up the SQL session: {0}")]
    Session(String),
    #[error("cannot set up TLS: {0}")]
    Tls(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<delta::Error> for Error {
    fn from(error: delta::Error) -> Self {
        Error::Delta(Box::new(error))
    }
}

/// The parts the flusher and shutdown work on.
struct Core {
    config: Config,
    wal: Arc<Wal>,
    buffer: Arc<Buffer<Committed>>,
    tables: HashMap<String, Arc<delta::DeltaTable>>,
    storage: Arc<crate::storage::Storage>,
    clock: Arc<dyn Clock>,
    /// Held across "commit to Delta, then publish the new version to the buffer" by flushes
    /// and maintenance, so readers never see a version paired with the wrong buffer state.
    commits: tokio::sync::Mutex<()>,
    /// Per table, the last flush that failed. Its commit may be in the log even so (the store
    /// kept it, the response was lost and the re-read failed, or the request lands later).
    /// Its chunks stay in the buffer, frozen, until [`Core::resolve`] settles it: a flush
    /// planned before that would write them a second time with newer rows.
    unresolved: parking_lot::Mutex<HashMap<String, FlushPlan>>,
}

impl Core {
    /// Flushes what `reason` selects in every table. Stops at the first failure; what was
    /// not flushed stays buffered (and in the WAL) for the next attempt.
    async fn flush(&self, reason: FlushReason) -> Result<usize> {
        let _commits = self.commits.lock().await;
        let mut rows = 0;
        let now = self.clock.now_micros();
        let cutoff = now - self.config.buffer_retention().as_micros() as i64;
        for (name, table) in &self.tables {
            rows += self.resolve(name, table).await?;
            let Some(plan) = self.buffer.plan_flush(name, reason, now, cutoff) else {
                continue;
            };
            let started = std::time::Instant::now();
            match table.flush(&plan, self.wal.id()).await {
                Ok(reader) => {
                    let trim_to = self.buffer.complete_flush(&plan, reader);
                    let removed = self.wal.trim(trim_to)?;
                    let version = table.version().await;
                    tracing::info!(
                        table = %name, rows = plan.rows, upto = %plan.upto, version = ?version,
                        wal_segments_removed = removed, elapsed_ms = started.elapsed().as_millis() as u64,
                        "flushed to Delta"
                    );
                    rows += plan.rows;
                }
                Err(e) => {
                    self.unresolved.lock().insert(name.clone(), plan);
                    return Err(e.into());
                }
            }
        }
        Ok(rows)
    }

    /// Settles `table`'s last failed flush, if any, before anything else of the table is
    /// flushed or published: when the re-read log holds it, its rows leave the buffer;
    /// otherwise the same plan is committed again, never a larger one, so an earlier attempt
    /// that lands late is recognised by its `txn` version instead of being taken for another
    /// writer's commit. Returns the rows settled; on error the plan stays unresolved.
    async fn resolve(&self, name: &str, table: &delta::DeltaTable) -> Result<usize> {
        let Some(plan) = self.unresolved.lock().remove(name) else {
            return Ok(0);
        };
        let settled = match table.landed(self.wal.id(), plan.upto).await {
            Ok(true) => {
                tracing::warn!(
                    table = %name, rows = plan.rows, upto = %plan.upto,
                    "a flush that reported an error is in the Delta log; its rows leave the buffer"
                );
                table.reader().await
            }
            Ok(false) => table.flush(&plan, self.wal.id()).await,
            Err(e) => Err(e),
        };
        match settled {
            Ok(reader) => {
                let trim_to = self.buffer.complete_flush(&plan, reader);
                self.wal.trim(trim_to)?;
                Ok(plan.rows)
            }
            Err(e) => {
                self.unresolved.lock().insert(name.to_string(), plan);
                Err(e.into())
            }
        }
    }

    /// Flushes everything at shutdown, retrying a failed flush a few times with backoff (a
    /// store hiccup, a commit race with another writer). What still fails stays in the WAL
    /// and is replayed at the next start.
    async fn final_flush(&self) -> Result<usize> {
        let mut backoff = Duration::from_millis(250);
        let mut attempt = 1;
        loop {
            match self.flush(FlushReason::All).await {
                Err(e) if attempt < FINAL_FLUSH_ATTEMPTS => {
                    tracing::warn!(
                        "final flush failed (attempt {attempt}), retrying in {backoff:?}: {e}"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                done => return done,
            }
        }
    }
}

/// Attempts of the shutdown flush before the server exits with the rows left in the WAL.
const FINAL_FLUSH_ATTEMPTS: u32 = 5;

#[async_trait::async_trait]
impl crate::Maintenance for Core {
    async fn maintain(&self, table: Option<&str>) -> Result<Vec<delta::MaintenanceReport>, String> {
        let policy = self.config.maintenance_policy();
        let mut reports = Vec::new();
        for (name, delta_table) in &self.tables {
            if table.is_some_and(|t| t != name) {
                continue;
            }
            let _commits = self.commits.lock().await;
            // A failed flush may be in the log this pass reads: settle it first, or the
            // published version would hold rows the buffer still serves.
            self.resolve(name, delta_table)
                .await
                .map_err(|e| e.to_string())?;
            let started = std::time::Instant::now();
            let (report, reader) = delta_table
                .maintain(&policy)
                .await
                .map_err(|e| e.to_string())?;
            self.buffer.replace_committed(name, reader);
            tracing::info!(
                table = %name, compacted_files = report.files_removed, written_files = report.files_added,
                retention_files_removed = report.retention_files_removed, checkpoint = ?report.checkpoint_version,
                vacuumed_files = report.files_vacuumed, version = ?report.version,
                elapsed_ms = started.elapsed().as_millis() as u64, "maintenance done"
            );
            reports.push(report);
        }
        Ok(reports)
    }
}

/// The one database TimeFusion serves, as `current_database()`, `pg_database`, `\l`,
/// `information_schema`'s `table_catalog` and Flight SQL's catalog name it. PostgreSQL's
/// default database name, so a tool that connects to `postgres` (the usual `dbname`) finds
/// itself in the database it asked for. A connection naming another database is served
/// the same one.
pub const DATABASE: &str = "postgres";

/// A running server.
pub struct Server {
    pg_addr: SocketAddr,
    grpc_addr: SocketAddr,
    core: Arc<Core>,
    context: Arc<SessionContext>,
    shutdown: CancellationToken,
    accept: JoinHandle<()>,
    grpc: JoinHandle<()>,
    flusher: JoinHandle<()>,
    maintenance: JoinHandle<()>,
}

impl Server {
    /// Recovers state and starts serving. Returns once the Postgres port accepts connections.
    pub async fn start(config: Config) -> Result<Server> {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn start_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Server> {
        config.validate()?;
        let catalog = Arc::new(Catalog::load(config.schema_dir.as_deref())?);
        let wal = Arc::new(Wal::open(
            &config.wal_dir(),
            WalOptions {
                segment_bytes: config.wal_segment_mb << 20,
                group_max_bytes: (config.wal_group_max_mb << 20) as usize,
                compression: config.wal_compression,
            },
        )?);
        let buffer = Arc::new(Buffer::new(BufferOptions {
            max_bytes: config.buffer_max_bytes(),
            bucket_micros: config.bucket_length().as_micros() as i64,
        }));
        let storage = Arc::new(crate::storage::Storage::open(&config).await?);
        tracing::info!(location = %storage.describe(), "table storage");
        let mut tables = HashMap::new();
        let mut committed_seq: HashMap<String, Seq> = HashMap::new();
        for schema in catalog.tables() {
            let table = delta::DeltaTable::open_or_create(
                &storage,
                schema.clone(),
                config.parquet_zstd_level,
            )
            .await?;
            let seq = table
                .committed_wal_seq(wal.id())
                .await?
                .map(Seq)
                .unwrap_or_default();
            committed_seq.insert(schema.name.clone(), seq);
            buffer.add_table(&schema.name, table.reader().await?);
            tables.insert(schema.name.clone(), Arc::new(table));
        }
        let ingest = Arc::new(Ingest::new(
            catalog.clone(),
            wal.clone(),
            buffer.clone(),
            clock.clone(),
            Duration::from_secs(config.buffer_full_timeout_secs),
            config.buffer_max_bytes(),
        ));

        let (mut replayed, mut skipped) = (0usize, 0usize);
        let last = wal.replay(|record| {
            match committed_seq.get(record.table) {
                None => {
                    return Err(wal::Error::Replay {
                        seq: record.seq,
                        reason: format!(
                            "it holds unflushed rows for table {}, which no schema defines; restore its schema file",
                            record.table
                        ),
                    });
                }
                Some(done) if record.seq <= *done => skipped += 1,
                Some(_) => {
                    let batch = wal::decode_batch(record.ipc)?;
                    replayed += batch.num_rows();
                    ingest
                        .replay(record.table, record.seq, batch)
                        .map_err(|e| wal::Error::Replay { seq: record.seq, reason: e.to_string() })?;
                }
            }
            Ok(())
        })?;
        let last = committed_seq
            .values()
            .copied()
            .chain(last)
            .max()
            .unwrap_or_default();
        buffer.advance_applied(last);
        wal.start(last.next())?;
        tracing::info!(replayed_rows = replayed, skipped_records = skipped, next_seq = %last.next(), wal_id = wal.id(), "recovered");

        let context = Arc::new(session_context(&catalog, &buffer, &ingest, &storage)?);
        let core = Arc::new(Core {
            config: config.clone(),
            wal,
            buffer,
            tables,
            storage: storage.clone(),
            clock,
            commits: tokio::sync::Mutex::new(()),
            unresolved: Default::default(),
        });
        let shutdown = CancellationToken::new();
        let flusher = tokio::spawn(run_flusher(core.clone(), shutdown.clone()));
        let maintenance = tokio::spawn(run_maintenance(core.clone(), shutdown.clone()));

        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                Some(crate::pgwire::tls_acceptor(cert, key).map_err(Error::Tls)?)
            }
            _ => None,
        };
        let addr = SocketAddr::new(config.pgwire_host, config.pgwire_port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Listen { addr, source })?;
        let pg_addr = listener
            .local_addr()
            .map_err(|source| Error::Listen { addr, source })?;
        let handlers = Arc::new(crate::pgwire::Handlers::new(
            context.clone(),
            catalog.clone(),
            ingest.clone(),
            crate::pgwire::Access {
                user: config.pgwire_user.clone(),
                password: config.pgwire_password.clone(),
                trust: config.pgwire_insecure_no_password,
                method: config.pgwire_auth_method,
                tls,
            },
            crate::pgwire::Limits {
                statement_timeout: config.statement_timeout(),
                copy_atomic_bytes: config.copy_atomic_mb << 20,
            },
            core.clone(),
        ));
        let grpc_addr = SocketAddr::new(config.grpc_host, config.grpc_port);
        let grpc_listener = TcpListener::bind(grpc_addr)
            .await
            .map_err(|source| Error::Listen {
                addr: grpc_addr,
                source,
            })?;
        let grpc_addr = grpc_listener.local_addr().map_err(|source| Error::Listen {
            addr: grpc_addr,
            source,
        })?;
        if config.pgwire_insecure_no_password {
            tracing::warn!(
                user = %config.pgwire_user,
                "PGWIRE_INSECURE_NO_PASSWORD is set: anyone who can reach the Postgres port can connect without a password"
            );
        }
        if config.grpc_token.is_none() {
            tracing::warn!(
                "GRPC_TOKEN is not set: anyone who can reach the gRPC port can write and query; set GRPC_TOKEN"
            );
        }
        let flight = crate::flight::TimeFusionFlight::new(
            context.clone(),
            catalog.clone(),
            ingest.clone(),
            config.grpc_max_inflight_mb << 20,
        )
        .map_err(|e| Error::Session(format!("Flight SQL service: {e}")))?
        .into_service(config.grpc_token.clone(), config.grpc_max_message_mb << 20);
        let grpc_shutdown = shutdown.clone();
        let grpc = tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .initial_stream_window_size(crate::flight::HTTP2_WINDOW_BYTES)
                .initial_connection_window_size(crate::flight::HTTP2_CONNECTION_WINDOW_BYTES)
                .max_frame_size(crate::flight::HTTP2_MAX_FRAME_BYTES)
                .add_service(flight)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(grpc_listener),
                    grpc_shutdown.cancelled_owned(),
                )
                .await;
            if let Err(e) = served {
                tracing::error!("gRPC server stopped: {e}");
            }
        });
        let accept = tokio::spawn(crate::pgwire::serve(
            listener,
            handlers,
            config.max_connections,
            shutdown.clone(),
        ));
        Ok(Server {
            pg_addr,
            grpc_addr,
            grpc,
            core,
            context,
            shutdown,
            accept,
            flusher,
            maintenance,
        })
    }

    /// Where the Postgres protocol listens.
    pub fn pg_addr(&self) -> SocketAddr {
        self.pg_addr
    }

    /// Where the Arrow Flight gRPC service listens.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The SQL session queries run in.
    pub fn context(&self) -> &Arc<SessionContext> {
        &self.context
    }

    /// Stops accepting, flushes everything to Delta and stops. Connections still open get
    /// 57P01 for further writes.
    pub async fn shutdown(self) -> Result<()> {
        self.shutdown.cancel();
        let _ = self.accept.await;
        let _ = self.grpc.await;
        let _ = self.flusher.await;
        let _ = self.maintenance.await;
        self.core.wal.close().await;
        let flushed = self.core.final_flush().await;
        self.core.storage.close().await;
        let rows = flushed?;
        tracing::info!(
            rows,
            "final flush done; WAL segments left: {}",
            self.core.wal.segment_count()
        );
        Ok(())
    }
}

fn session_context(
    catalog: &Catalog,
    buffer: &Arc<Buffer<Committed>>,
    ingest: &Arc<Ingest>,
    storage: &Arc<crate::storage::Storage>,
) -> Result<SessionContext> {
    let mut config = SessionConfig::new()
        // `pg_compat` serves information_schema, in PostgreSQL's shape.
        .with_information_schema(false)
        .with_default_catalog_and_schema(DATABASE, "public");
    // `now()` and `::timestamptz` are `timestamp with time zone` in UTC, as in PostgreSQL with
    // the UTC session time zone that queries compute in; DataFusion's default (no zone) made
    // them `timestamp without time zone`.
    config.options_mut().execution.time_zone = Some("UTC".to_string());
    let mut context = SessionContext::new_with_config(config);
    for schema in catalog.tables() {
        let table = TimeFusionTable::new(schema.clone(), buffer.clone(), ingest.clone());
        context
            .register_table(schema.name.as_str(), Arc::new(table))
            .map_err(|e| Error::Session(e.to_string()))?;
    }
    context
        .register_table(
            "timefusion_cache",
            Arc::new(crate::query::CacheStatsTable::new(storage.clone())),
        )
        .map_err(|e| Error::Session(e.to_string()))?;
    setup_pg_catalog(&context, DATABASE, Arc::new(AuthManager::default()))
        .map_err(|e| Error::Session(e.to_string()))?;
    crate::pg_compat::register(&context, DATABASE).map_err(|e| Error::Session(e.to_string()))?;
    // After the catalog set-up, so TimeFusion's functions win over any of the same name.
    crate::functions::register(&mut context).map_err(|e| Error::Session(e.to_string()))?;
    crate::srf::register(&context);
    crate::text_cast::register(&context);
    crate::colname::register(&context);
    Ok(context)
}

/// Flushes sealed buckets every interval, everything under memory pressure; retries failed
/// flushes with exponential backoff (the rows stay buffered and in the WAL meanwhile).
async fn run_flusher(core: Arc<Core>, shutdown: CancellationToken) {
    let interval = core.config.flush_interval();
    let mut backoff = Duration::ZERO;
    loop {
        let wait = if backoff.is_zero() { interval } else { backoff };
        let reason = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => FlushReason::Scheduled,
            _ = core.buffer.pressure() => FlushReason::All,
        };
        let reason = if core.buffer.over_high_water() {
            FlushReason::All
        } else {
            reason
        };
        match core.flush(reason).await {
            Ok(_) => backoff = Duration::ZERO,
            Err(e) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(500), Duration::from_secs(60));
                tracing::error!("flush failed, retrying in {backoff:?}: {e}");
            }
        }
    }
}

/// Runs a maintenance pass over every table each interval. Failures are logged and retried at
/// the next interval; a pass never changes which rows a query sees (except retention).
async fn run_maintenance(core: Arc<Core>, shutdown: CancellationToken) {
    use crate::Maintenance;
    let interval = Duration::from_secs(core.config.maintenance_interval_secs);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        // A pass runs to completion even when shutdown begins: the final flush waits for it
        // rather than racing a half-finished commit.
        if let Err(e) = core.maintain(None).await {
            tracing::error!("maintenance failed, retrying at the next interval: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fmt;
    use std::sync::atomic::{AtomicBool, Ordering};

    use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
    use async_trait::async_trait;
    use clap::Parser;
    use futures::stream::BoxStream;
    use object_store::local::LocalFileSystem;
    use object_store::path::Path;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
        PutMultipartOptions, PutOptions, PutPayload, PutResult,
    };

    use super::*;
    use crate::storage::{CachedStore, FoyerCache, Storage};

    /// A store that can keep a Delta commit and then lose its response and go down, as S3 may
    /// mid-outage: the commit is in the log, the writer sees an error and cannot re-read.
    #[derive(Debug, Default)]
    struct Faults {
        /// The next commit is stored, then its response is lost and the store goes down.
        lose_next_commit: AtomicBool,
        /// The next commit is refused before it is stored, and the store goes down.
        refuse_next_commit: AtomicBool,
        down: AtomicBool,
    }

    #[derive(Debug)]
    struct FlakyStore {
        inner: Arc<dyn ObjectStore>,
        faults: Arc<Faults>,
    }

    impl fmt::Display for FlakyStore {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "FlakyStore({})", self.inner)
        }
    }

    impl FlakyStore {
        fn check(&self) -> object_store::Result<()> {
            if self.faults.down.load(Ordering::SeqCst) {
                return Err(object_store::Error::Generic {
                    store: "flaky",
                    source: "the store is down".into(),
                });
            }
            Ok(())
        }

        fn is_commit(location: &Path) -> bool {
            location.as_ref().contains("_delta_log/") && location.as_ref().ends_with(".json")
        }

        /// Before a write to `location`: a refused commit takes the store down.
        fn before_write(&self, location: &Path) -> object_store::Result<()> {
            self.check()?;
            if Self::is_commit(location)
                && self.faults.refuse_next_commit.swap(false, Ordering::SeqCst)
            {
                self.faults.down.store(true, Ordering::SeqCst);
                return Err(object_store::Error::Generic {
                    store: "flaky",
                    source: "connection reset before the commit was stored".into(),
                });
            }
            Ok(())
        }

        /// After a write to `location`: a commit's response is lost and the store goes down.
        fn after_write(&self, location: &Path) -> object_store::Result<()> {
            if Self::is_commit(location)
                && self.faults.lose_next_commit.swap(false, Ordering::SeqCst)
            {
                self.faults.down.store(true, Ordering::SeqCst);
                return Err(object_store::Error::Generic {
                    store: "flaky",
                    source: "connection reset after the commit was stored".into(),
                });
            }
            Ok(())
        }
    }

    #[async_trait]
    impl ObjectStore for FlakyStore {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.before_write(location)?;
            let result = self.inner.put_opts(location, payload, opts).await?;
            self.after_write(location)?;
            Ok(result)
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.check()?;
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.check()?;
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            if let Err(e) = self.check() {
                return Box::pin(futures::stream::once(async { Err(e) }));
            }
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.check()?;
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.before_write(to)?;
            self.inner.copy_opts(from, to, options).await?;
            self.after_write(to)
        }
    }

    /// A fixed time: buckets an hour before it are sealed.
    struct FixedClock(i64);

    impl Clock for FixedClock {
        fn now_micros(&self) -> i64 {
            self.0
        }
    }

    const NOW: i64 = 1_764_000_000_000_000;
    const TABLE: &str = "otel_logs_and_spans";

    fn spans(prefix: &str, rows: usize) -> RecordBatch {
        let hour_ago = NOW - 3_600_000_000;
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("project_id", Arc::new(StringArray::from(vec!["p"; rows]))),
            (
                "timestamp",
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(
                        (0..rows as i64).map(|i| hour_ago + i),
                    )
                    .with_timezone("UTC"),
                ),
            ),
            (
                "id",
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("{prefix}{i}")),
                )),
            ),
        ];
        RecordBatch::try_from_iter(columns).expect("batch")
    }

    /// A flusher's `Core` over a local table behind a [`FlakyStore`], and the write path.
    struct Fixture {
        core: Core,
        ingest: Ingest,
        table: Arc<delta::DeltaTable>,
        faults: Arc<Faults>,
        _dir: tempfile::TempDir,
    }

    impl Fixture {
        async fn new() -> Fixture {
            let dir = tempfile::tempdir().expect("tempdir");
            let faults = Arc::new(Faults::default());
            let flaky = Arc::new(FlakyStore {
                inner: Arc::new(LocalFileSystem::new()),
                faults: faults.clone(),
            });
            let cache = FoyerCache::open(
                &dir.path().join("cache"),
                16 << 20,
                64 << 20,
                Duration::from_secs(60),
            )
            .await
            .expect("cache");
            let tables_dir = dir.path().join("tables");
            std::fs::create_dir_all(&tables_dir).expect("tables dir");
            let base = url::Url::from_directory_path(&tables_dir).expect("url");
            let storage = Arc::new(Storage::with_store(
                base,
                Arc::new(CachedStore::new(flaky, cache)),
            ));
            let catalog = Arc::new(Catalog::load(None).expect("catalog"));
            let schema = catalog.get(TABLE).expect("schema").clone();
            let table = Arc::new(
                delta::DeltaTable::open_or_create(&storage, schema, 1)
                    .await
                    .expect("table"),
            );
            let wal = Arc::new(
                Wal::open(
                    &dir.path().join("wal"),
                    WalOptions {
                        segment_bytes: 1 << 20,
                        group_max_bytes: 1 << 20,
                        compression: Default::default(),
                    },
                )
                .expect("wal"),
            );
            wal.start(Seq(1)).expect("wal start");
            let buffer = Arc::new(Buffer::new(BufferOptions {
                max_bytes: 1 << 30,
                bucket_micros: 600_000_000,
            }));
            buffer.add_table(TABLE, table.reader().await.expect("reader"));
            let clock: Arc<dyn Clock> = Arc::new(FixedClock(NOW));
            let ingest = Ingest::new(
                catalog,
                wal.clone(),
                buffer.clone(),
                clock.clone(),
                Duration::from_secs(1),
                1 << 30,
            );
            let core = Core {
                config: Config::parse_from(["timefusion"]),
                wal,
                buffer,
                tables: HashMap::from([(TABLE.to_string(), table.clone())]),
                storage,
                clock,
                commits: tokio::sync::Mutex::new(()),
                unresolved: Default::default(),
            };
            Fixture {
                core,
                ingest,
                table,
                faults,
                _dir: dir,
            }
        }

        async fn write(&self, prefix: &str, rows: usize) {
            self.ingest
                .write(TABLE, spans(prefix, rows))
                .await
                .expect("write");
        }

        /// Writes 10 rows, has the next commit fail by `fault` with the store going down,
        /// tries to flush while it is down, and brings the store back.
        async fn outage(&self, fault: &AtomicBool) {
            self.write("a", 10).await;
            fault.store(true, Ordering::SeqCst);
            assert!(
                self.core.flush(FlushReason::All).await.is_err(),
                "the commit fails"
            );
            assert!(
                self.core.flush(FlushReason::All).await.is_err(),
                "the log cannot be read while down"
            );
            self.faults.down.store(false, Ordering::SeqCst);
        }

        /// Rows in the Delta table at its latest version.
        async fn delta_rows(&self) -> usize {
            SessionContext::new()
                .read_table(self.table.reader().await.expect("reader"))
                .expect("scan")
                .count()
                .await
                .expect("count")
        }

        /// Rows a query sees: the buffer's chunks with the Delta version published with them.
        async fn visible_rows(&self) -> usize {
            let snapshot = self
                .core
                .buffer
                .snapshot(TABLE, None, None)
                .expect("snapshot");
            let buffered: usize = snapshot.batches.iter().map(|b| b.num_rows()).sum();
            let delta = SessionContext::new()
                .read_table(snapshot.committed)
                .expect("scan")
                .count()
                .await
                .expect("count");
            buffered + delta
        }
    }

    /// The S3-outage case behind a doubled count: flush A's commit reaches the log, its
    /// response is lost and the store goes down before the log can be re-read. Before the fix
    /// the next flush planned A's rows again with newer ones, saw "another writer" at A's
    /// version and committed all of them: A's rows twice.
    #[tokio::test]
    async fn a_flush_that_landed_unseen_is_not_written_again() {
        let f = Fixture::new().await;
        f.outage(&f.faults.lose_next_commit).await;
        f.write("b", 5).await;
        assert_eq!(
            f.core.flush(FlushReason::All).await.expect("flush"),
            15,
            "a's 10 rows are settled as flushed, b's 5 written"
        );
        assert_eq!(f.delta_rows().await, 15, "every row once in Delta");
        assert_eq!(f.visible_rows().await, 15);
        assert_eq!(
            f.core.flush(FlushReason::All).await.expect("nothing left"),
            0
        );
    }

    /// A commit refused before it was stored is written once, when the store is back.
    #[tokio::test]
    async fn a_flush_that_did_not_land_is_written_once() {
        let f = Fixture::new().await;
        f.outage(&f.faults.refuse_next_commit).await;
        f.write("b", 5).await;
        assert_eq!(f.core.flush(FlushReason::All).await.expect("flush"), 15);
        assert_eq!(f.delta_rows().await, 15);
        assert_eq!(f.visible_rows().await, 15);
    }

    /// Maintenance publishes the version it read: a lost commit in that version must leave
    /// the buffer first, or a query counts its rows twice.
    #[tokio::test]
    async fn maintenance_settles_a_lost_commit_before_publishing() {
        let f = Fixture::new().await;
        f.outage(&f.faults.lose_next_commit).await;
        crate::Maintenance::maintain(&f.core, None)
            .await
            .expect("maintenance");
        assert_eq!(f.visible_rows().await, 10, "no row counted twice");
        assert_eq!(f.delta_rows().await, 10);
    }
}
