//! The one typed configuration of a TimeFusion server.
//!
//! Every knob is read here and nowhere else: each field is a clap argument backed by an
//! environment variable, and its doc comment is the `--help` text (kept identical to the table
//! in `DELTA_CONFIG.md`). Values are validated once, at start-up, by [`Config::validate`].

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

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

    /// Password clients authenticate with (MD5 password authentication).
    #[arg(
        long,
        env = "PGWIRE_PASSWORD",
        default_value = "postgres",
        hide_env_values = true
    )]
    pub pgwire_password: String,

    /// Maximum number of concurrent client connections; further connections are refused.
    #[arg(long, env = "TIMEFUSION_MAX_CONNECTIONS", default_value_t = 256)]
    pub max_connections: usize,

    /// Address the Arrow Flight gRPC service listens on.
    #[arg(long, env = "GRPC_HOST", default_value = "0.0.0.0")]
    pub grpc_host: IpAddr,

    /// Port of the Arrow Flight gRPC service (DoPut ingestion, Flight SQL queries); 0 picks a
    /// free port and logs it.
    #[arg(long, env = "GRPC_PORT", default_value_t = 50051)]
    pub grpc_port: u16,

    /// Bearer token every gRPC call must present (`authorization: Bearer <token>`). Unset
    /// leaves gRPC open, with a warning at start-up.
    #[arg(long, env = "GRPC_TOKEN", hide_env_values = true)]
    pub grpc_token: Option<String>,

    /// Largest gRPC message (one Arrow IPC batch) the server accepts, in MiB.
    #[arg(long, env = "TIMEFUSION_GRPC_MAX_MESSAGE_MB", default_value_t = 64)]
    pub grpc_max_message_mb: usize,

    /// Arrow bytes that DoPut streams may hold in flight together, in MiB; further batches
    /// wait (backpressure on the client's stream).
    #[arg(long, env = "TIMEFUSION_GRPC_MAX_INFLIGHT_MB", default_value_t = 512)]
    pub grpc_max_inflight_mb: usize,

    /// Local data directory: the WAL, and the Delta tables when no S3 bucket is configured.
    #[arg(long, env = "TIMEFUSION_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Directory of `*.yaml` table schemas; unset uses the schemas built into the binary.
    #[arg(long, env = "TIMEFUSION_SCHEMA_DIR")]
    pub schema_dir: Option<PathBuf>,

    /// Byte budget of the in-memory buffer, in MiB. Past 80% the flusher runs early; at the
    /// limit writers wait for a flush, then fail with SQLSTATE 53200.
    #[arg(long, env = "TIMEFUSION_BUFFER_MAX_MEMORY_MB", default_value_t = 4096)]
    pub buffer_max_memory_mb: u64,

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

    /// Length of a buffer time bucket, in minutes; must divide a day (1440). A bucket is sealed,
    /// and flushed at the next flush tick, once its window has ended.
    #[arg(long, env = "TIMEFUSION_BUCKET_MINS", default_value_t = 10)]
    pub bucket_mins: u64,

    /// Size at which the WAL starts a new segment file, in MiB.
    #[arg(long, env = "TIMEFUSION_WAL_SEGMENT_MB", default_value_t = 64)]
    pub wal_segment_mb: u64,

    /// Most bytes of records one WAL group commit writes before its fsync, in MiB.
    #[arg(long, env = "TIMEFUSION_WAL_GROUP_MAX_MB", default_value_t = 16)]
    pub wal_group_max_mb: u64,

    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `timefusion=debug,info`.
    #[arg(long, env = "TIMEFUSION_LOG", default_value = "info")]
    pub log: String,

    /// zstd level of the Parquet files written to Delta (1-22).
    #[arg(long, env = "TIMEFUSION_PARQUET_ZSTD_LEVEL", default_value_t = 3)]
    pub parquet_zstd_level: i32,
}

/// A configuration value that cannot work, with what to change.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Checks the values that clap's types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bucket_mins == 0 || 1440 % self.bucket_mins != 0 {
            return Err(ConfigError(format!(
                "TIMEFUSION_BUCKET_MINS={} must be a positive divisor of 1440 so buckets never straddle a date",
                self.bucket_mins
            )));
        }
        if self.buffer_max_memory_mb == 0 {
            return Err(ConfigError(
                "TIMEFUSION_BUFFER_MAX_MEMORY_MB must be positive".into(),
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
        if self.grpc_max_message_mb == 0 || self.grpc_max_inflight_mb < self.grpc_max_message_mb {
            return Err(ConfigError(format!(
                "TIMEFUSION_GRPC_MAX_INFLIGHT_MB={} must be at least TIMEFUSION_GRPC_MAX_MESSAGE_MB={} (and both positive)",
                self.grpc_max_inflight_mb, self.grpc_max_message_mb
            )));
        }
        if self.grpc_token.as_deref() == Some("") {
            return Err(ConfigError(
                "GRPC_TOKEN is set but empty: unset it or set a token".into(),
            ));
        }
        if self.pgwire_password.is_empty() {
            return Err(ConfigError(
                "PGWIRE_PASSWORD is empty: set a password clients must present".into(),
            ));
        }
        Ok(())
    }

    pub fn buffer_max_bytes(&self) -> usize {
        (self.buffer_max_memory_mb as usize).saturating_mul(1 << 20)
    }

    pub fn bucket_length(&self) -> Duration {
        Duration::from_secs(self.bucket_mins * 60)
    }

    pub fn flush_interval(&self) -> Duration {
        Duration::from_secs(self.flush_interval_secs)
    }

    pub fn buffer_retention(&self) -> Duration {
        Duration::from_secs(self.buffer_retention_mins * 60)
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.data_dir.join("wal")
    }

    pub fn tables_dir(&self) -> PathBuf {
        self.data_dir.join("tables")
    }

    /// A configuration for tests: everything default except the data directory and port 0.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = Config::parse_from(["timefusion"]);
        config.data_dir = data_dir.into();
        config.pgwire_port = 0;
        config.pgwire_host = IpAddr::from([127, 0, 0, 1]);
        config.grpc_port = 0;
        config.grpc_host = IpAddr::from([127, 0, 0, 1]);
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let config = Config::parse_from(["timefusion"]);
        config.validate().expect("defaults validate");
        assert_eq!(config.pgwire_port, 5432);
        assert_eq!(config.buffer_max_memory_mb, 4096);
        assert_eq!(config.flush_interval_secs, 300);
        assert_eq!(config.buffer_retention_mins, 70);
    }

    #[test]
    fn bucket_must_divide_a_day() {
        let mut config = Config::parse_from(["timefusion"]);
        config.bucket_mins = 7;
        assert!(config.validate().is_err());
        config.bucket_mins = 15;
        assert!(config.validate().is_ok());
    }
}
