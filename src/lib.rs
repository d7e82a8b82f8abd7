//! TimeFusion: a Postgres-wire analytical time-series database over Delta Lake.
//!
//! Writes go through [`ingest`] into the [`wal`] and the [`buffer`]; the flusher in [`server`]
//! moves sealed time buckets into Delta tables ([`delta`]); queries ([`query`]) union a buffer
//! snapshot with the Delta table at the version that snapshot complements; [`pgwire`] speaks
//! the Postgres protocol. `ARCHITECTURE.md` maps the modules, the data flow and the invariants.

use std::sync::Arc;

pub mod buffer;
pub mod colname;
pub mod config;
pub mod copy;
pub mod delta;
pub mod flight;
pub mod functions;
pub mod ingest;
pub mod interrupt;
pub mod pg_compat;
pub mod pgwire;
pub mod query;
pub mod schema;
pub mod server;
pub mod sql_text;
pub mod sqlstate;
pub mod srf;
pub mod storage;
pub mod text_cast;
pub mod values;
pub mod wal;
pub mod wire_text;

/// The Delta read handle a table's buffer contents complement: a scan of the table pinned at
/// the version committed together with the last buffer change.
pub type Committed = Arc<dyn datafusion::catalog::TableProvider>;

/// Microseconds in a day: `date` is `timestamp` (µs since the epoch, UTC) divided by this.
pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Source of the current time, injected so tests can control bucket sealing.
pub trait Clock: Send + Sync {
    /// Microseconds since the Unix epoch.
    fn now_micros(&self) -> i64;
}

/// The wall clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> i64 {
        chrono::Utc::now().timestamp_micros()
    }
}

/// Table maintenance on demand (`VACUUM` over SQL): implemented by the server, used by the
/// protocol front ends, which never touch storage themselves.
#[async_trait::async_trait]
pub trait Maintenance: Send + Sync {
    /// Runs one maintenance pass over `table`, or over every table when `None`.
    async fn maintain(&self, table: Option<&str>) -> Result<Vec<delta::MaintenanceReport>, String>;
}
