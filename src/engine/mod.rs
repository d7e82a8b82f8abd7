//! The storage engine: the one write path, the WAL, the in-memory buffer, Delta tables on
//! object storage, the flusher's core and maintenance.
//!
//! A write ([`ingest::Ingest::write`]) is coerced to its table's schema, appended to the
//! [`wal`] (acknowledged once its group's `fdatasync` returns) and inserted into the
//! [`buffer`]; the flusher ([`core::Core`]) moves sealed time buckets into [`delta`] tables on
//! [`storage`] with one commit that records the WAL sequence it covers, so recovery replays
//! exactly the records not yet in Delta. Readers take a [`buffer::Snapshot`]: the buffered rows
//! and the Delta read handle they complement, so each acknowledged row is seen exactly once.
//!
//! The engine knows no protocol and no SQL front end: nothing here imports the `pgwire`,
//! `flight`, `sql` or `server` modules.

use std::sync::Arc;

pub mod batch;
pub mod buffer;
pub mod change;
pub mod core;
pub mod delta;
pub mod id_filter;
pub mod ingest;
pub mod quarantine;
pub mod schema;
pub mod startup;
pub mod storage;
pub mod wal;

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
