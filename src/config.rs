//! The one typed configuration of a TimeFusion server.
//!
//! Every knob is read here and nowhere else: each field is a clap argument backed by an
//! environment variable, and its doc comment is the `--help` text (kept identical to the table
//! in `DELTA_CONFIG.md`). Values are validated once, at start-up, by [`Config::validate`].

use std::net::IpAddr;
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Expression depth one MiB of statement stack holds, with room: a 1,000-deep `1+1+…` runs in
/// an 8 MiB stack on a debug build and overflows 2 MiB (`tests/e2e/limits.rs`).
const STACK_DEPTH_PER_MB: usize = 100;

/// TimeFusion: a Postgres-wire analytical time-series database over Delta Lake.
#[derive(Debug, Clone, Parser)]
#[command(name = "timefusion", version, about, long_about = None)]
pub struct Config {
    /// Address the Postgres wire protocol listens on.
    #[arg(long, env = "PGWIRE_HOST", default_value = "0.0.0.0")]
    pub pgwire_host: IpAddr,

    /// Port of the Postgres wire protocol (0 picks a free port and logs it).
    #[arg(long, env = "PGWIRE_PORT", default_value_t = 5432)]
    pub pgwire_port: u16,

    /// User name clients authenticate as.
    #[arg(long, env = "PGWIRE_USER", default_value = "postgres")]
    pub pgwire_user: String,

    /// Password clients authenticate with (see `PGWIRE_AUTH_METHOD`); must not be empty unless
    /// `PGWIRE_INSECURE_NO_PASSWORD` is set.
    #[arg(
        long,
        env = "PGWIRE_PASSWORD",
        default_value = "postgres",
        hide_env_values = true
    )]
    pub pgwire_password: String,

    /// Let `PGWIRE_USER` connect without any password (PostgreSQL's `trust`): anyone who can
    /// reach the port can read and write every tenant. Only with `PGWIRE_PASSWORD` set empty;
    /// for local development.
    #[arg(long, env = "PGWIRE_INSECURE_NO_PASSWORD", default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    pub pgwire_insecure_no_password: bool,

    /// How Postgres clients authenticate: `scram-sha-256`, `md5` (old clients) or `password`
    /// (clear text; only with TLS).
    #[arg(
        long,
        env = "PGWIRE_AUTH_METHOD",
        value_enum,
        default_value = "scram-sha-256"
    )]
    pub pgwire_auth_method: AuthMethod,

    /// PEM certificate chain for TLS on the Postgres port (with `TIMEFUSION_TLS_KEY`); unset
    /// serves plaintext only. A certificate that cannot be loaded stops the server.
    #[arg(long, env = "TIMEFUSION_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `TIMEFUSION_TLS_CERT`.
    #[arg(long, env = "TIMEFUSION_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Default `statement_timeout` of every Postgres session, in milliseconds: a statement
    /// running longer is stopped with SQLSTATE 57014. 0 is no limit (PostgreSQL's default);
    /// a session can `SET statement_timeout` itself.
    #[arg(long, env = "TIMEFUSION_STATEMENT_TIMEOUT_MS", default_value_t = 0)]
    pub statement_timeout_ms: u64,

    /// Parsed rows a `COPY … FROM STDIN` holds before writing them, in MiB: a COPY up to this
    /// size is all-or-nothing; a longer one is written in pieces of this size, and an error
    /// keeps the pieces already written.
    #[arg(long, env = "TIMEFUSION_COPY_ATOMIC_MB", default_value_t = 64)]
    pub copy_atomic_mb: usize,

    /// Maximum number of concurrent Postgres sessions; a further client gets FATAL 53300
    /// ("sorry, too many clients already") after its start-up message, as from PostgreSQL.
    /// Cancel requests are served even when the server is full.
    #[arg(long, env = "TIMEFUSION_MAX_CONNECTIONS", default_value_t = 256)]
    pub max_connections: usize,

    /// Longest message a Postgres client may send (one query text, one `Bind` with its
    /// parameters, one `CopyData`), in MiB: a longer one gets FATAL 54000 as soon as its
    /// header arrives, before its body is read, and the connection closes. PostgreSQL's own
    /// limit is 1 GiB; at most 1023.
    #[arg(long, env = "TIMEFUSION_MAX_MESSAGE_MB", default_value_t = 128)]
    pub max_message_mb: usize,

    /// Statements (queries, and `INSERT`s DataFusion plans) that may run at once over pgwire
    /// and Flight SQL together, each from its start to its last row sent; a further one waits
    /// for a slot. Literal `INSERT`s and `COPY` data take none: the buffer's budget bounds
    /// them.
    #[arg(
        long,
        env = "TIMEFUSION_MAX_CONCURRENT_STATEMENTS",
        default_value_t = 64
    )]
    pub max_concurrent_statements: usize,

    /// How long a statement waits for a slot (`TIMEFUSION_MAX_CONCURRENT_STATEMENTS`) before
    /// it gets SQLSTATE 53000 (Flight: `RESOURCE_EXHAUSTED`), in milliseconds. A cancel
    /// request or the statement timeout ends the wait sooner.
    #[arg(
        long,
        env = "TIMEFUSION_STATEMENT_QUEUE_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub statement_queue_timeout_ms: u64,

    /// Seconds a Postgres session may keep the server waiting for its next message (between
    /// statements, inside a transaction, or within a `COPY`) before it is ended with FATAL
    /// 57P05, like PostgreSQL's `idle_session_timeout`. 0 (the default, as in PostgreSQL)
    /// waits forever.
    #[arg(
        long,
        env = "TIMEFUSION_IDLE_SESSION_TIMEOUT_SECS",
        default_value_t = 0
    )]
    pub idle_session_timeout_secs: u64,

    /// How deep an expression may be: levels of parentheses plus operators chained on each
    /// (`1+1+…` is as deep as it has terms). Deeper statements get SQLSTATE 54001 before they
    /// are parsed (like ClickHouse's `max_ast_depth`, whose default this is). Lists (`IN`,
    /// `VALUES`) do not add depth. Needs `TIMEFUSION_STACK_MB` of at least one per 100.
    #[arg(long, env = "TIMEFUSION_MAX_EXPRESSION_DEPTH", default_value_t = 1000)]
    pub max_expression_depth: usize,

    /// Memory the whole process may use, in MiB: every large consumer below takes a share of
    /// it, and the buffer admits writers only while the resident set leaves room (see
    /// DELTA_CONFIG.md, "Memory"). Unset: three quarters of the memory limit of the cgroup
    /// (container) the process runs in, or no budget when it has none; 0: no budget, each
    /// consumer its own default.
    #[arg(long, env = "TIMEFUSION_MEMORY_LIMIT_MB")]
    pub memory_limit_mb: Option<u64>,

    /// The container's memory limit, in bytes, when `memory_limit_mb` was derived from it
    /// ([`Config::with_container_budget`]); not a knob.
    #[arg(skip)]
    pub container_limit_bytes: Option<u64>,

    /// Memory every running query together may use for its working state (sorts, hash
    /// tables, aggregation), in MiB. Sorts and aggregations spill to `<data dir>/spill` past
    /// their share; a query that still cannot fit gets SQLSTATE 53200 (`RESOURCE_EXHAUSTED`
    /// on Flight) and the others go on. Default: 20% of the process budget, or 2048 without one.
    #[arg(long, env = "TIMEFUSION_QUERY_MEMORY_MB")]
    pub query_memory_mb: Option<u64>,

    /// Memory for the decoded footers and page indexes of Parquet files queries read (the
    /// file metadata cache), in MiB; the least recently used are evicted past it. Default: 5%
    /// of the process budget, or 50 (DataFusion's default) without one.
    #[arg(long, env = "TIMEFUSION_METADATA_CACHE_MB")]
    pub metadata_cache_mb: Option<u64>,

    /// Memory for the query condition cache, in MiB: for each data file and filter a query
    /// ran, which blocks of 1,024 rows held a match, so the same filter again (a trace
    /// reopened, a search repeated, a dashboard over a fixed range) reads only those blocks
    /// and skips files with none. Least recently used entries are evicted past it; 0 turns
    /// the cache off. Default: 1% of the process budget, or 16 without one.
    #[arg(long, env = "TIMEFUSION_CONDITION_CACHE_MB")]
    pub condition_cache_mb: Option<u64>,

    /// How many optimized plans of repeated queries are kept, by statement text (simple
    /// queries, and extended `Execute`s without parameters): the same text again (a
    /// dashboard refreshing) skips parsing, planning and optimizing, and reads the tables as
    /// they are now. Only queries over TimeFusion's
    /// tables that call no function whose result can change between runs (`now()`,
    /// `random()`) are kept; the least recently used are evicted past this; 0 turns it off.
    #[arg(long, env = "TIMEFUSION_PLAN_CACHE_ENTRIES", default_value_t = 256)]
    pub plan_cache_entries: usize,

    /// Whether a kept query also keeps its physical plan, run again over a new snapshot of
    /// the buffer until a Delta commit (a flush, merge or mutation) changes the table: a
    /// repeated query then skips physical planning too (made again every 64 runs). Only
    /// plans of plain operators (no join, window or top-k over the scans) over at most 64
    /// data files are kept.
    #[arg(long, env = "TIMEFUSION_PLAN_CACHE_PHYSICAL", default_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub plan_cache_physical: bool,

    /// Stack of each thread that parses, plans and runs statements, in MiB: at least one per
    /// 100 of `TIMEFUSION_MAX_EXPRESSION_DEPTH` (a 1,000-deep expression needs 2–8 MiB). Pages
    /// never touched cost no memory.
    #[arg(long, env = "TIMEFUSION_STACK_MB", default_value_t = 16)]
    pub stack_mb: usize,

    /// Address the HTTP endpoint (`/health`, `/ready`, `/metrics`, OTLP/HTTP) listens on.
    #[arg(long, env = "TIMEFUSION_HTTP_HOST", default_value = "0.0.0.0")]
    pub http_host: IpAddr,

    /// Port of the HTTP endpoint: `/health` (liveness), `/ready` (recovery done, WAL writable,
    /// store reachable), `/metrics` (Prometheus), OTLP/HTTP (`POST /v1/logs`, `/v1/traces`,
    /// `/v1/metrics`), Prometheus remote write (`POST /api/v1/write`) and InfluxDB line
    /// protocol (`POST /api/v2/write`, `/write`). 0 picks a free port and logs it.
    #[arg(long, env = "TIMEFUSION_HTTP_PORT", default_value_t = 8080)]
    pub http_port: u16,

    /// Statements that run at least this long are logged, one line each with their duration
    /// and text (PostgreSQL's `log_min_duration_statement`): 0 logs every statement, -1 none.
    #[arg(
        long,
        env = "TIMEFUSION_LOG_MIN_DURATION_MS",
        default_value_t = 1000,
        allow_negative_numbers = true
    )]
    pub log_min_duration_ms: i64,

    /// Address the gRPC services (Arrow Flight, OTLP) listen on.
    #[arg(long, env = "GRPC_HOST", default_value = "0.0.0.0")]
    pub grpc_host: IpAddr,

    /// Port of the gRPC services: Arrow Flight (DoPut ingestion, Flight SQL queries) and the
    /// OTLP logs, traces and metrics collector services; 0 picks a free port and logs it.
    #[arg(long, env = "GRPC_PORT", default_value_t = 50051)]
    pub grpc_port: u16,

    /// Bearer token every gRPC call and HTTP write (OTLP, remote write, line protocol) must
    /// present (`authorization: Bearer <token>`). Unset leaves them open, with a warning at start-up.
    #[arg(long, env = "GRPC_TOKEN", hide_env_values = true)]
    pub grpc_token: Option<String>,

    /// Largest gRPC message (one Arrow IPC batch, one OTLP export) or HTTP write body (OTLP,
    /// remote write, line protocol; compressed, and again decompressed) accepted, in MiB.
    #[arg(long, env = "TIMEFUSION_GRPC_MAX_MESSAGE_MB", default_value_t = 64)]
    pub grpc_max_message_mb: usize,

    /// Arrow bytes that DoPut streams and OTLP exports may hold in flight together (decoded,
    /// not yet in the buffer), in MiB; further batches wait (backpressure on the client). A
    /// DoPut stream reserves room for its next batch (the size of its last) before it reads
    /// the message, so a waiting stream's next message stays with the client. Default: 10%
    /// of the process budget (at least `TIMEFUSION_GRPC_MAX_MESSAGE_MB`), or 512 without one.
    #[arg(long, env = "TIMEFUSION_GRPC_MAX_INFLIGHT_MB")]
    pub grpc_max_inflight_mb: Option<u64>,

    /// Local data directory: the WAL, and the Delta tables when no S3 bucket is configured.
    #[arg(long, env = "TIMEFUSION_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Directory of `*.yaml` table schemas; unset uses the schemas built into the binary.
    #[arg(long, env = "TIMEFUSION_SCHEMA_DIR")]
    pub schema_dir: Option<PathBuf>,

    /// Byte budget of the in-memory buffer, in MiB. Past 80% the flusher runs early; at the
    /// limit writers wait for a flush, then fail with SQLSTATE 53200. With a process budget
    /// the limit is lower while the rest of the process holds more than the budget leaves
    /// it. Default: 40% of the process budget, or 4096 without one.
    #[arg(long, env = "TIMEFUSION_BUFFER_MAX_MEMORY_MB")]
    pub buffer_max_memory_mb: Option<u64>,

    /// How long a writer waits for buffer space before its insert fails, in seconds.
    #[arg(
        long,
        env = "TIMEFUSION_BUFFER_FULL_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub buffer_full_timeout_secs: u64,

    /// How often the flusher writes sealed time buckets to Delta, in seconds.
    #[arg(long, env = "TIMEFUSION_FLUSH_INTERVAL_SECS", default_value_t = 300)]
    pub flush_interval_secs: u64,

    /// Longest time an acknowledged row stays in the buffer, in minutes: rows older than this
    /// are flushed even when their time bucket is still open (e.g. future timestamps).
    #[arg(long, env = "TIMEFUSION_BUFFER_RETENTION_MINS", default_value_t = 70)]
    pub buffer_retention_mins: u64,

    /// Flushes in a row that may fail to write one (project, date) partition while other
    /// partitions of the same flush are written, before that partition's rows are moved to
    /// `<data>/quarantine/` and out of the table. Until then they stay buffered and readable,
    /// carried in the WAL, and every other partition keeps flushing. A failure shared by
    /// every partition (the store is down) never counts.
    #[arg(long, env = "TIMEFUSION_FLUSH_PARTITION_ATTEMPTS", default_value_t = 5)]
    pub flush_partition_attempts: u32,

    /// Length of a buffer time bucket, in minutes; must divide a day (1440). A bucket is sealed,
    /// and flushed at the next flush tick, once its window has ended. Rows that arrive after
    /// their window has ended (backfill) share one bucket per day, flushed at the next tick.
    #[arg(long, env = "TIMEFUSION_BUCKET_MINS", default_value_t = 10)]
    pub bucket_mins: u64,

    /// Size at which the WAL starts a new segment file, in MiB.
    #[arg(long, env = "TIMEFUSION_WAL_SEGMENT_MB", default_value_t = 64)]
    pub wal_segment_mb: u64,

    /// Most bytes of records one WAL group commit writes before its fsync, in MiB.
    #[arg(long, env = "TIMEFUSION_WAL_GROUP_MAX_MB", default_value_t = 16)]
    pub wal_group_max_mb: u64,

    /// How WAL records are compressed: `zstd` (level 1; records under 16 KiB are left as they
    /// are), `lz4` or `none`. Records say how they were written, so replay reads any mix
    /// after a change.
    #[arg(long, env = "TIMEFUSION_WAL_COMPRESSION", value_enum, default_value_t = WalCompression::Zstd)]
    pub wal_compression: WalCompression,

    /// S3 bucket holding the Delta tables; unset keeps them under the data directory.
    #[arg(long, env = "AWS_S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// Key prefix of the tables inside the bucket (`s3://<bucket>/<prefix>/<table>/`).
    #[arg(long, env = "TIMEFUSION_TABLE_PREFIX", default_value = "")]
    pub table_prefix: String,

    /// S3 endpoint URL for S3-compatible stores (MinIO, SeaweedFS); unset uses AWS.
    #[arg(long, env = "AWS_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// Allow a plain-HTTP S3 endpoint (local MinIO); HTTPS is required otherwise.
    #[arg(long, env = "AWS_ALLOW_HTTP", default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    pub s3_allow_http: bool,

    /// S3 region.
    #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// S3 access key id; unset uses the AWS default credential chain (instance profile, web identity, ...).
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key_id: Option<String>,

    /// S3 secret access key, with `AWS_ACCESS_KEY_ID`.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,

    /// Memory tier of the object-store cache (S3 only), in MiB. Default: 10% of the process
    /// budget, or 1024 without one.
    #[arg(long, env = "TIMEFUSION_FOYER_MEMORY_MB")]
    pub foyer_memory_mb: Option<u64>,

    /// Disk tier of the object-store cache (S3 only), in GiB, under `<data dir>/cache/`;
    /// capped at 80% of the free disk space at start-up.
    #[arg(long, env = "TIMEFUSION_FOYER_DISK_GB", default_value_t = 500)]
    pub foyer_disk_gb: u64,

    /// Age after which a cached object is read from the store again, in seconds.
    #[arg(long, env = "TIMEFUSION_FOYER_TTL_SECONDS", default_value_t = 604800)]
    pub foyer_ttl_seconds: u64,

    /// How often the background maintenance pass runs (compaction, retention, vacuum), in
    /// seconds. `VACUUM [table]` over SQL runs one at once.
    #[arg(
        long,
        env = "TIMEFUSION_MAINTENANCE_INTERVAL_SECS",
        default_value_t = 3600
    )]
    pub maintenance_interval_secs: u64,

    /// Compaction target: a partition's smaller Parquet files are merged into files of about
    /// this size, in MiB.
    #[arg(long, env = "TIMEFUSION_COMPACT_TARGET_MB", default_value_t = 128)]
    pub compact_target_mb: u64,

    /// Merge a partition's small Parquet files in the background once this many have
    /// accumulated, between maintenance passes (as ClickHouse merges parts); 0 leaves them to
    /// the maintenance pass. A flush writes one file per partition it holds, so under a small
    /// memory budget or a busy ingest a partition gains several files a second.
    #[arg(long, env = "TIMEFUSION_MERGE_MIN_FILES", default_value_t = 16)]
    pub merge_min_files: usize,

    /// Size of the first merge tier, in MiB: files are merged into files of about this size,
    /// those into files this many times `TIMEFUSION_MERGE_MIN_FILES` larger, and so on up to
    /// `TIMEFUSION_COMPACT_TARGET_MB`, so each row is rewritten a few times, not once per
    /// merge.
    #[arg(long, env = "TIMEFUSION_MERGE_SMALL_MB", default_value_t = 4)]
    pub merge_small_mb: u64,

    /// Write a Delta checkpoint every this many commits: each table's
    /// `delta.checkpointInterval`, set when the server opens it; deltalake writes the
    /// checkpoint after the commit (flush, compaction, retention, mutation) that reaches it.
    #[arg(long, env = "TIMEFUSION_CHECKPOINT_INTERVAL", default_value_t = DEFAULT_CHECKPOINT_INTERVAL)]
    pub checkpoint_interval: NonZeroU64,

    /// Vacuum deletes Parquet files the log stopped referencing this many hours ago; it must
    /// exceed the longest query (a query reads the files of the version it started on).
    #[arg(long, env = "TIMEFUSION_VACUUM_RETENTION_HOURS", default_value_t = 168)]
    pub vacuum_retention_hours: u64,

    /// Drop `date` partitions older than this many days (a metadata-only Delta delete);
    /// 0 keeps all data.
    #[arg(long, env = "TIMEFUSION_RETENTION_DAYS", default_value_t = 0)]
    pub retention_days: u64,

    /// Log filter (tracing `EnvFilter` syntax). The default shows TimeFusion's own events
    /// (start-up and recovery, flushes, maintenance, errors) and only warnings and errors of the
    /// libraries, whose per-query INFO lines (delta-kernel's one per scan) drown them; e.g.
    /// `info` for everything, `timefusion=debug,warn` for more of TimeFusion's own.
    #[arg(long, env = "TIMEFUSION_LOG", default_value = "timefusion=info,warn")]
    pub log: String,

    /// zstd level of the Parquet files written to Delta (1-22).
    #[arg(long, env = "TIMEFUSION_PARQUET_ZSTD_LEVEL", default_value_t = 3)]
    pub parquet_zstd_level: i32,

    /// How the Parquet files written to Delta are compressed: `zstd` (at
    /// TIMEFUSION_PARQUET_ZSTD_LEVEL) or `lz4` (LZ4_RAW: larger files whose pages decompress
    /// several times faster). Each file keeps the codec it was written with. A flush while the
    /// memory budget squeezes the buffer writes LZ4_RAW whatever this says; the merges after
    /// the squeeze rewrite those files in this codec.
    #[arg(long, env = "TIMEFUSION_PARQUET_COMPRESSION", value_enum, default_value_t = ParquetCompression::Zstd)]
    pub parquet_compression: ParquetCompression,
}

/// A configuration value that cannot work, with what to change.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// The codec of the Parquet files written to Delta, from `parquet_compression` and
    /// `parquet_zstd_level` (which [`Config::validate`] keeps within zstd's 1-22).
    pub fn parquet_codec(&self) -> deltalake::parquet::basic::Compression {
        use deltalake::parquet::basic::{Compression, ZstdLevel};
        match self.parquet_compression {
            ParquetCompression::Zstd => {
                Compression::ZSTD(ZstdLevel::try_new(self.parquet_zstd_level).unwrap_or_default())
            }
            ParquetCompression::Lz4 => Compression::LZ4_RAW,
        }
    }

    /// Checks the values that clap's types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bucket_mins == 0 || 1440 % self.bucket_mins != 0 {
            return Err(ConfigError(format!(
                "TIMEFUSION_BUCKET_MINS={} must be a positive divisor of 1440 so buckets never straddle a date",
                self.bucket_mins
            )));
        }
        for (name, value) in [
            ("TIMEFUSION_BUFFER_MAX_MEMORY_MB", self.buffer_max_memory_mb),
            ("TIMEFUSION_QUERY_MEMORY_MB", self.query_memory_mb),
            ("TIMEFUSION_METADATA_CACHE_MB", self.metadata_cache_mb),
            ("TIMEFUSION_FOYER_MEMORY_MB", self.foyer_memory_mb),
        ] {
            if value == Some(0) {
                return Err(ConfigError(format!("{name} must be positive")));
            }
        }
        let shares = self.shares();
        if let Some(limit) = shares.process {
            let cache = if self.s3_bucket.is_some() {
                shares.cache
            } else {
                0
            };
            let claimed = shares.buffer
                + shares.query
                + shares.metadata
                + shares.condition
                + shares.inflight
                + cache;
            if claimed > limit {
                let origin = match self.container_limit_bytes {
                    Some(container) => format!(
                        "three quarters of the container's memory limit of {} MiB; set TIMEFUSION_MEMORY_LIMIT_MB, or 0 for no budget",
                        container >> 20
                    ),
                    None => "TIMEFUSION_MEMORY_LIMIT_MB".into(),
                };
                return Err(ConfigError(format!(
                    "the buffer ({} MiB), queries ({} MiB), the Parquet metadata cache ({} MiB), the condition cache ({} MiB), DoPut in flight ({} MiB) and the cache's memory tier ({} MiB) take {} MiB, more than the process budget of {} MiB ({origin}): lower them or raise the budget",
                    shares.buffer >> 20,
                    shares.query >> 20,
                    shares.metadata >> 20,
                    shares.condition >> 20,
                    shares.inflight >> 20,
                    cache >> 20,
                    claimed >> 20,
                    limit >> 20
                )));
            }
        }
        if self.flush_partition_attempts == 0 {
            return Err(ConfigError(
                "TIMEFUSION_FLUSH_PARTITION_ATTEMPTS must be positive".into(),
            ));
        }
        if self.flush_interval_secs == 0 {
            return Err(ConfigError(
                "TIMEFUSION_FLUSH_INTERVAL_SECS must be positive".into(),
            ));
        }
        if !(1..=22).contains(&self.parquet_zstd_level) {
            return Err(ConfigError(format!(
                "TIMEFUSION_PARQUET_ZSTD_LEVEL={} must be between 1 and 22",
                self.parquet_zstd_level
            )));
        }
        if self.wal_segment_mb == 0 || self.wal_group_max_mb == 0 {
            return Err(ConfigError("WAL sizes must be positive".into()));
        }
        if self.grpc_max_message_mb == 0 || shares.inflight < self.grpc_max_message_mb << 20 {
            return Err(ConfigError(format!(
                "TIMEFUSION_GRPC_MAX_INFLIGHT_MB={} must be at least TIMEFUSION_GRPC_MAX_MESSAGE_MB={} (and both positive)",
                shares.inflight >> 20,
                self.grpc_max_message_mb
            )));
        }
        if self.max_connections == 0 || self.max_concurrent_statements == 0 {
            return Err(ConfigError(
                "TIMEFUSION_MAX_CONNECTIONS and TIMEFUSION_MAX_CONCURRENT_STATEMENTS must be positive"
                    .into(),
            ));
        }
        if !(1..=1023).contains(&self.max_message_mb) {
            return Err(ConfigError(format!(
                "TIMEFUSION_MAX_MESSAGE_MB={} must be between 1 and 1023",
                self.max_message_mb
            )));
        }
        if self.grpc_token.as_deref() == Some("") {
            return Err(ConfigError(
                "GRPC_TOKEN is set but empty: unset it or set a token".into(),
            ));
        }
        if self.s3_bucket.as_deref() == Some("") {
            return Err(ConfigError(
                "AWS_S3_BUCKET is set but empty: unset it to use the local data directory".into(),
            ));
        }
        if self.s3_access_key_id.is_some() != self.s3_secret_access_key.is_some() {
            return Err(ConfigError(
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together".into(),
            ));
        }
        if self.maintenance_interval_secs == 0 || self.compact_target_mb == 0 {
            return Err(ConfigError(
                "TIMEFUSION_MAINTENANCE_INTERVAL_SECS and TIMEFUSION_COMPACT_TARGET_MB must be positive".into(),
            ));
        }
        if self.merge_min_files == 1 {
            return Err(ConfigError(
                "TIMEFUSION_MERGE_MIN_FILES must be 0 (no background merges) or at least 2".into(),
            ));
        }
        if self.merge_small_mb == 0 {
            return Err(ConfigError(
                "TIMEFUSION_MERGE_SMALL_MB must be positive".into(),
            ));
        }
        if self.stack_mb.saturating_mul(STACK_DEPTH_PER_MB) < self.max_expression_depth {
            return Err(ConfigError(format!(
                "TIMEFUSION_MAX_EXPRESSION_DEPTH {} needs TIMEFUSION_STACK_MB of at least {}",
                self.max_expression_depth,
                self.max_expression_depth.div_ceil(STACK_DEPTH_PER_MB)
            )));
        }
        if self.statement_timeout_ms > i32::MAX as u64 {
            return Err(ConfigError(format!(
                "TIMEFUSION_STATEMENT_TIMEOUT_MS must be at most {} (PostgreSQL's limit)",
                i32::MAX
            )));
        }
        if self.copy_atomic_mb == 0 {
            return Err(ConfigError(
                "TIMEFUSION_COPY_ATOMIC_MB must be positive".into(),
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError(
                "TIMEFUSION_TLS_CERT and TIMEFUSION_TLS_KEY must be set together".into(),
            ));
        }
        match (
            self.pgwire_password.is_empty(),
            self.pgwire_insecure_no_password,
        ) {
            (true, false) => {
                return Err(ConfigError(
                    "PGWIRE_PASSWORD is empty: set a password clients must present (or set PGWIRE_INSECURE_NO_PASSWORD=true to accept connections without one)".into(),
                ));
            }
            (false, true) => {
                return Err(ConfigError(
                    "PGWIRE_INSECURE_NO_PASSWORD is set but PGWIRE_PASSWORD is not empty: set PGWIRE_PASSWORD= to run without a password, or unset the flag".into(),
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// The budget a container's memory limit (`limit_bytes`, the cgroup's) gives when
    /// `TIMEFUSION_MEMORY_LIMIT_MB` is unset: three quarters of it. The governor keeps the
    /// resident set near the budget, not under it at every instant: five-minute runs of
    /// `bench/run_memory.sh` peaked at 1.09–1.22× a 1 GiB budget and 1.34–1.49× a 512 MiB one
    /// (BENCHMARKS.md, "Memory under a process budget"), so the budget leaves a quarter of the
    /// limit for that before the kernel's OOM killer would end the process.
    pub fn with_container_budget(mut self, limit_bytes: Option<usize>) -> Config {
        if self.memory_limit_mb.is_none()
            && let Some(limit) = limit_bytes
        {
            self.memory_limit_mb = Some(((limit as u64 / 4 * 3) >> 20).max(1));
            self.container_limit_bytes = Some(limit as u64);
        }
        self
    }

    /// The process budget and each consumer's share of it, in bytes: a knob that is set wins,
    /// the others take their part of the budget (`TIMEFUSION_MEMORY_LIMIT_MB`), or their own
    /// default without one.
    pub fn shares(&self) -> MemoryShares {
        let process = self.memory_limit_mb.filter(|&mb| mb > 0).map(|mb| mb << 20);
        let share = |set: Option<u64>, percent: u64, default_mb: u64| -> usize {
            let bytes = match (set, process) {
                (Some(mb), _) => mb << 20,
                (None, Some(limit)) => limit / 100 * percent,
                (None, None) => default_mb << 20,
            };
            bytes as usize
        };
        let inflight = match self.grpc_max_inflight_mb {
            Some(mb) => (mb << 20) as usize,
            // A share, but never less than one whole message.
            None => share(None, 10, 512).max(self.grpc_max_message_mb << 20),
        };
        MemoryShares {
            process: process.map(|bytes| bytes as usize),
            buffer: share(self.buffer_max_memory_mb, 40, 4096),
            query: share(self.query_memory_mb, 20, 2048),
            metadata: share(self.metadata_cache_mb, 5, 50),
            condition: share(self.condition_cache_mb, 1, 16),
            inflight,
            cache: share(self.foyer_memory_mb, 10, 1024),
        }
    }

    pub fn buffer_max_bytes(&self) -> usize {
        self.shares().buffer
    }

    pub fn bucket_length(&self) -> Duration {
        Duration::from_secs(self.bucket_mins * 60)
    }

    /// `TIMEFUSION_LOG_MIN_DURATION_MS` as a threshold; `None` logs no statement.
    pub fn log_min_duration(&self) -> Option<Duration> {
        u64::try_from(self.log_min_duration_ms)
            .ok()
            .map(Duration::from_millis)
    }

    /// `TIMEFUSION_IDLE_SESSION_TIMEOUT_SECS`; `None` waits forever.
    pub fn idle_session_timeout(&self) -> Option<Duration> {
        (self.idle_session_timeout_secs > 0)
            .then(|| Duration::from_secs(self.idle_session_timeout_secs))
    }

    pub fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms)
    }

    pub fn flush_interval(&self) -> Duration {
        Duration::from_secs(self.flush_interval_secs)
    }

    pub fn buffer_retention(&self) -> Duration {
        Duration::from_secs(self.buffer_retention_mins * 60)
    }

    pub fn maintenance_policy(&self) -> MaintenancePolicy {
        MaintenancePolicy {
            target_file_bytes: NonZeroU64::new(self.compact_target_mb << 20)
                .unwrap_or(NonZeroU64::MIN),
            vacuum_retention: Duration::from_secs(self.vacuum_retention_hours * 3600),
            retention_days: (self.retention_days > 0).then_some(self.retention_days),
            merge_min_files: self.merge_min_files,
            merge_small_file_bytes: self.merge_small_mb.saturating_mul(1 << 20),
        }
    }

    /// Where rows that can never be flushed are moved, one Arrow IPC file per set.
    pub fn quarantine_dir(&self) -> PathBuf {
        self.data_dir.join("quarantine")
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.data_dir.join("wal")
    }

    pub fn tables_dir(&self) -> PathBuf {
        self.data_dir.join("tables")
    }

    /// Where tables live and how reads of them are cached.
    pub fn storage(&self) -> StorageSettings {
        StorageSettings {
            tables_dir: self.tables_dir(),
            s3: self.s3_bucket.clone().map(|bucket| S3Settings {
                bucket,
                region: self.s3_region.clone(),
                allow_http: self.s3_allow_http,
                credentials: self
                    .s3_access_key_id
                    .clone()
                    .zip(self.s3_secret_access_key.clone()),
                endpoint: self.s3_endpoint.clone(),
                prefix: self.table_prefix.clone(),
            }),
            cache: CacheSettings {
                dir: self.data_dir.join("cache"),
                memory_bytes: self.shares().cache as u64,
                disk_bytes: self.foyer_disk_gb << 30,
                ttl: Duration::from_secs(self.foyer_ttl_seconds),
            },
        }
    }
}

/// The process's memory budget and the bytes each large consumer may take of it
/// ([`Config::shares`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryShares {
    /// The whole process's budget; `None`: no budget, each consumer bounded on its own.
    pub process: Option<usize>,
    pub buffer: usize,
    pub query: usize,
    /// Decoded Parquet footers and page indexes (the file metadata cache).
    pub metadata: usize,
    /// Where repeated filters matched in each data file (the query condition cache).
    pub condition: usize,
    /// Arrow bytes in flight on DoPut.
    pub inflight: usize,
    /// The Foyer cache's memory tier (S3 only).
    pub cache: usize,
}

/// Where tables live: a local folder, or an S3 bucket read through a cache.
#[derive(Debug, Clone)]
pub struct StorageSettings {
    /// The local tables folder, used when `s3` is `None`.
    pub tables_dir: PathBuf,
    pub s3: Option<S3Settings>,
    /// The Foyer cache in front of S3.
    pub cache: CacheSettings,
}

/// An S3 (or S3-compatible) bucket holding the tables under `prefix`.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    pub region: String,
    pub allow_http: bool,
    /// Access key id and secret; `None` leaves credentials to the environment's chain.
    pub credentials: Option<(String, String)>,
    pub endpoint: Option<String>,
    pub prefix: String,
}

/// The Foyer hybrid cache of immutable objects: memory, plus a disk tier under `dir`.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub dir: PathBuf,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub ttl: Duration,
}

/// How clients prove they know the password (`PGWIRE_AUTH_METHOD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMethod {
    /// SCRAM-SHA-256 (PostgreSQL's default since 14): the password never crosses the wire.
    #[value(name = "scram-sha-256")]
    ScramSha256,
    /// MD5 challenge-response, for old clients.
    Md5,
    /// The password in clear text, for clients that support nothing else; use with TLS.
    Password,
}

/// How WAL payloads are compressed (`TIMEFUSION_WAL_COMPRESSION`).
///
/// Compression uses Arrow IPC's own buffer compression, so a record says how it was written
/// and replay reads records of any setting: the knob can change between restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum WalCompression {
    /// Raw Arrow buffers: the most bytes written and synced, no CPU spent compressing.
    None,
    /// LZ4 frames: fast, a smaller ratio than zstd.
    Lz4,
    /// zstd level 1: telemetry shrinks several-fold for about the CPU it saves in writing.
    /// A record under 16 KiB (a few rows) is written as it is.
    #[default]
    Zstd,
}

/// How the Parquet files written to Delta are compressed (`TIMEFUSION_PARQUET_COMPRESSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ParquetCompression {
    /// zstd at `TIMEFUSION_PARQUET_ZSTD_LEVEL`: the smallest files.
    #[default]
    Zstd,
    /// LZ4_RAW (Parquet's raw LZ4 blocks): larger files, cheaper to decompress.
    Lz4,
}

/// `TIMEFUSION_CHECKPOINT_INTERVAL`'s default: a checkpoint every ten commits keeps a cold
/// reader's log replay short (deltalake's own default is 100).
pub const DEFAULT_CHECKPOINT_INTERVAL: NonZeroU64 = NonZeroU64::new(10).expect("positive");

/// What a maintenance pass may do to a table.
#[derive(Debug, Clone)]
pub struct MaintenancePolicy {
    /// Compaction merges a partition's smaller files into files of about this size.
    pub target_file_bytes: NonZeroU64,
    /// Files no longer referenced by the log are deleted once they are this old.
    pub vacuum_retention: std::time::Duration,
    /// Drop `date` partitions older than this many days (`None`: keep everything).
    pub retention_days: Option<u64>,
    /// A partition's small files are merged in the background once this many have
    /// accumulated (0: never; the maintenance pass compacts them).
    pub merge_min_files: usize,
    /// The first merge tier's file size; each next tier is `merge_min_files` times larger,
    /// up to `target_file_bytes`.
    pub merge_small_file_bytes: u64,
}

impl MaintenancePolicy {
    /// The file sizes background merges produce, smallest first: the first tier, each next
    /// one `merge_min_files` times larger, and the compaction target last. Empty when
    /// background merges are off.
    pub fn merge_tiers(&self) -> Vec<u64> {
        let target = self.target_file_bytes.get();
        if self.merge_min_files < 2 {
            return Vec::new();
        }
        let mut tiers = Vec::new();
        let mut tier = self.merge_small_file_bytes.max(1);
        while tier < target {
            tiers.push(tier);
            tier = tier.saturating_mul(self.merge_min_files as u64);
        }
        tiers.push(target);
        tiers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unset, the budget is three quarters of a container's memory limit; a budget that is
    /// set wins, 0 is no budget, and a container too small for the shares is refused with
    /// the way out.
    #[test]
    fn a_container_limit_gives_the_default_budget() {
        const MIB: usize = 1 << 20;
        let config = |args: &[&str], container_mb: Option<usize>| {
            Config::parse_from([&["timefusion"], args].concat())
                .with_container_budget(container_mb.map(|mb| mb * MIB))
        };
        let contained = config(&[], Some(2048));
        assert_eq!(contained.memory_limit_mb, Some(1536));
        contained.validate().expect("valid");
        let shares = contained.shares();
        assert_eq!(shares.process, Some(1536 * MIB));
        assert_eq!(shares.buffer, 1536 * MIB / 100 * 40);

        let set = config(&["--memory-limit-mb", "1000"], Some(2048));
        assert_eq!(set.shares().process, Some(1000 * MIB));
        assert_eq!(set.container_limit_bytes, None);

        for off in [
            config(&["--memory-limit-mb", "0"], Some(2048)),
            config(&[], None),
        ] {
            off.validate().expect("valid");
            let shares = off.shares();
            assert_eq!(shares.process, None);
            assert_eq!(shares.buffer, 4096 * MIB, "the buffer's own default");
        }

        let refused = config(&[], Some(200)).validate().expect_err("too small");
        assert!(
            refused
                .0
                .contains("three quarters of the container's memory limit of 200 MiB"),
            "{}",
            refused.0
        );
        assert_eq!(config(&[], Some(1)).memory_limit_mb, Some(1), "never 0");

        // The smallest containers DELTA_CONFIG.md names: 252 MiB on a folder, 356 MiB with
        // the tables on S3 (whose cache takes a share too).
        let s3 = ["--s3-bucket", "b"];
        for (args, smallest) in [(&[][..], 252), (&s3[..], 356)] {
            config(args, Some(smallest)).validate().expect("fits");
            let refused = config(args, Some(smallest - 1)).validate();
            assert!(
                refused
                    .as_ref()
                    .is_err_and(|e| e.0.contains("more than the process budget")),
                "{args:?} {refused:?}"
            );
        }
    }

    /// Merge tiers grow by `TIMEFUSION_MERGE_MIN_FILES` from `TIMEFUSION_MERGE_SMALL_MB` and
    /// end at the compaction target; 0 turns merging off, and 1 is refused.
    #[test]
    fn merge_tiers_grow_by_the_file_count_up_to_the_compaction_target() {
        let tiers = |args: &[&str]| {
            let config = Config::parse_from([&["timefusion"], args].concat());
            config
                .validate()
                .map(|()| config.maintenance_policy().merge_tiers())
        };
        const MIB: u64 = 1 << 20;
        assert_eq!(
            tiers(&[]).expect("defaults"),
            [4 * MIB, 64 * MIB, 128 * MIB]
        );
        assert_eq!(
            tiers(&["--merge-min-files", "4", "--merge-small-mb", "8"]).expect("valid"),
            [8 * MIB, 32 * MIB, 128 * MIB]
        );
        assert_eq!(
            tiers(&["--merge-small-mb", "512"]).expect("valid"),
            [128 * MIB],
            "a first tier past the target is the target"
        );
        assert!(tiers(&["--merge-min-files", "0"]).expect("off").is_empty());
        let refused = tiers(&["--merge-min-files", "1"]).expect_err("refused");
        assert!(
            refused.to_string().contains("TIMEFUSION_MERGE_MIN_FILES"),
            "{refused}"
        );
        assert!(tiers(&["--merge-small-mb", "0"]).is_err());
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let config = Config::parse_from(["timefusion"]);
        config.validate().expect("defaults validate");
        assert_eq!(config.pgwire_port, 5432);
        let shares = config.shares();
        assert_eq!(shares.process, None);
        assert_eq!(shares.buffer, 4096 << 20);
        assert_eq!(shares.query, 2048 << 20);
        assert_eq!(shares.metadata, 50 << 20, "DataFusion's default");
        assert_eq!(shares.inflight, 512 << 20);
        assert_eq!(shares.cache, 1024 << 20);
        assert_eq!(config.flush_interval_secs, 300);
        assert_eq!(config.buffer_retention_mins, 70);
    }

    #[test]
    fn expression_depth_needs_its_stack() {
        let mut config = Config::parse_from(["timefusion"]);
        config.max_expression_depth = 5_000;
        let refused = config.validate().unwrap_err().to_string();
        assert!(
            refused.contains("TIMEFUSION_STACK_MB of at least 50"),
            "{refused}"
        );
        config.stack_mb = 50;
        assert!(config.validate().is_ok());
    }

    #[test]
    fn parquet_files_are_zstd_at_the_level_or_lz4() {
        use deltalake::parquet::basic::{Compression, ZstdLevel};
        let config = Config::parse_from(["timefusion", "--parquet-zstd-level", "7"]);
        assert_eq!(
            config.parquet_codec(),
            Compression::ZSTD(ZstdLevel::try_new(7).expect("a level"))
        );
        let config = Config::parse_from(["timefusion", "--parquet-compression", "lz4"]);
        assert_eq!(config.parquet_codec(), Compression::LZ4_RAW);
    }

    #[test]
    fn bucket_must_divide_a_day() {
        let mut config = Config::parse_from(["timefusion"]);
        config.bucket_mins = 7;
        assert!(config.validate().is_err());
        config.bucket_mins = 15;
        assert!(config.validate().is_ok());
    }

    #[test]
    fn a_process_budget_is_shared_and_set_knobs_win() {
        let mut config = Config::parse_from(["timefusion", "--memory-limit-mb", "1000"]);
        let shares = config.shares();
        let mib = |n: u64| (n << 20) as usize;
        assert_eq!(shares.process, Some(mib(1000)));
        assert_eq!(shares.buffer, mib(1000) / 100 * 40);
        assert_eq!(shares.query, mib(1000) / 100 * 20);
        assert_eq!(shares.inflight, mib(1000) / 100 * 10);
        assert_eq!(shares.metadata, mib(1000) / 100 * 5);
        config.validate().expect("the shares fit");
        config.metadata_cache_mb = Some(8);
        assert_eq!(config.shares().metadata, mib(8));
        // 40 + 20 + 10 + 35 = 105% of the budget.
        config.metadata_cache_mb = Some(350);
        let refused = config.validate().unwrap_err().to_string();
        assert!(
            refused.contains("Parquet metadata cache (350 MiB)"),
            "{refused}"
        );
        config.metadata_cache_mb = None;
        config.buffer_max_memory_mb = Some(900);
        let refused = config.validate().unwrap_err().to_string();
        assert!(
            refused.contains("more than the process budget of 1000 MiB"),
            "{refused}"
        );
        // A small budget still admits one whole DoPut message.
        let small = Config::parse_from(["timefusion", "--memory-limit-mb", "256"]);
        assert_eq!(small.shares().inflight, mib(64));
        small.validate().expect("256 MiB is a budget");
    }
}
