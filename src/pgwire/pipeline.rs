//! Rows of pipelined `INSERT`s, held until the `Sync` that ends their pipeline.
//!
//! PostgreSQL runs the extended-protocol messages between two `Sync`s as one implicit
//! transaction: each `Execute` answers `CommandComplete`, the transaction commits (durably) at
//! the `Sync`, before its `ReadyForQuery`, and an error anywhere rolls back the whole pipeline.
//! Drivers' batch APIs are built on it (psycopg's `executemany`, pgjdbc's `executeBatch`, pgx's
//! `SendBatch`) and return only after `ReadyForQuery`. TimeFusion does the same for `INSERT`s
//! on the fast path ([`crate::sql::values`]): each `Execute` checks its rows, so every error a
//! row can raise answers the statement that sent it, and holds them ([`hold`]); the `Sync`
//! writes all that is held ([`commit`]) as one WAL record per table and column set, one fsync
//! for the pipeline and all-or-nothing on a crash, and answers `ReadyForQuery` once it is
//! durable. An error before the `Sync` discards the held rows, as PostgreSQL rolls back; a
//! failed write at the `Sync` is an error response before `ReadyForQuery`, as a failed commit.
//!
//! Any other statement on the connection first writes what is held, so it sees the pipeline's
//! rows (a `SELECT` after the `INSERT`s of one pipeline counts them); so does an `Execute` that
//! brings the held rows past [`HELD_BYTES`], so a pipeline of any length holds bounded memory
//! (and is then durable in pieces, like a long `COPY`). Rows held by a connection that closes
//! before its `Sync` were never acknowledged and are dropped.
//! Tests: `tests/e2e/pipeline.rs`.

use std::sync::Arc;

use arrow::array::RecordBatch;
use parking_lot::Mutex;
use pgwire::api::ClientInfo;

use crate::engine::ingest::{self, Ingest, Via};
use crate::engine::schema::TableSchema;
use crate::sql::values::{HeldRows, InsertTemplate};

/// The most parsed rows a connection holds before writing them ahead of its `Sync`.
pub const HELD_BYTES: usize = 16 << 20;

/// A connection's held rows, in arrival order.
#[derive(Default)]
struct Held(Mutex<Rows>);

#[derive(Default)]
struct Rows {
    batches: Vec<(Arc<TableSchema>, RecordBatch)>,
    /// Checked rows of the latest single-row statement, one batch once another statement
    /// comes or the pipeline is written: a driver's batch is one statement executed per row,
    /// and one array per column beats one batch per row.
    rows: Option<HeldRows>,
    bytes: usize,
}

impl Rows {
    /// Turns the held single-row statements' rows into a batch.
    fn seal(&mut self) -> ingest::Result<()> {
        if let Some(rows) = self.rows.take() {
            let table = rows.template().table.clone();
            self.batches.push((table, rows.finish()?));
        }
        Ok(())
    }
}

/// Holds `batch` (checked by [`ingest::prepare`]) for `table` until the connection's next
/// `Sync`; `true` when the connection now holds more than [`HELD_BYTES`] and should
/// [`commit`] at once. An error drops what the connection held: its pipeline failed.
pub(crate) fn hold<C: ClientInfo + ?Sized>(
    client: &C,
    table: Arc<TableSchema>,
    batch: RecordBatch,
) -> ingest::Result<bool> {
    let held = client
        .session_extensions()
        .get_or_insert_with(Held::default);
    let mut rows = held.0.lock();
    rows.bytes += batch.get_array_memory_size();
    // Rows of a single-row statement held before it keep their place, ahead of this batch.
    rows.seal()?;
    rows.batches.push((table, batch));
    Ok(rows.bytes > HELD_BYTES)
}

/// Holds one checked row of a single-row `template` ([`InsertTemplate::bind_row`]) until the
/// connection's next `Sync`; `true` when the connection now holds more than [`HELD_BYTES`].
pub(crate) fn hold_row<C: ClientInfo + ?Sized>(
    client: &C,
    template: &Arc<InsertTemplate>,
    row: Vec<ingest::Checked<'_>>,
) -> ingest::Result<bool> {
    let held = client
        .session_extensions()
        .get_or_insert_with(Held::default);
    let mut rows = held.0.lock();
    // Drivers prepare one statement per set of parameter types (psycopg's `executemany`
    // alternates between several as its integers change width): rows of any of them that
    // fill the same columns go into one batch.
    if !rows.rows.as_ref().is_some_and(|same| same.fits(template)) {
        rows.seal()?;
    }
    let bytes = rows
        .rows
        .get_or_insert_with(|| HeldRows::new(template.clone()))
        .push(row)?;
    rows.bytes += bytes;
    Ok(rows.bytes > HELD_BYTES)
}

/// Whether the connection holds rows not yet written.
pub(crate) fn holds<C: ClientInfo + ?Sized>(client: &C) -> bool {
    client
        .session_extensions()
        .get::<Held>()
        .is_some_and(|held| {
            let rows = held.0.lock();
            !rows.batches.is_empty() || rows.rows.is_some()
        })
}

/// Drops the held rows: their pipeline failed before its `Sync`.
pub(crate) fn discard<C: ClientInfo + ?Sized>(client: &C) {
    if let Some(held) = client.session_extensions().get::<Held>() {
        *held.0.lock() = Rows::default();
    }
}

/// Writes every held row, durably: consecutive batches of one table and column set as one
/// [`Ingest::write`] (for a driver's batch: one). On error the rows of the failed write and of
/// every later one are dropped unstored; earlier writes of the same pipeline stay.
pub(crate) async fn commit<C: ClientInfo + ?Sized>(
    client: &C,
    ingest: &Ingest,
) -> ingest::Result<usize> {
    let Some(held) = client.session_extensions().get::<Held>() else {
        return Ok(0);
    };
    let batches = {
        let mut rows = held.0.lock();
        let sealed = rows.seal();
        let taken = std::mem::take(&mut *rows);
        sealed?;
        taken.batches
    };
    let mut written = 0;
    let mut rest = batches.as_slice();
    while let Some((table, first)) = rest.first() {
        let run = rest
            .iter()
            .take_while(|(t, b)| t.name == table.name && b.schema() == first.schema())
            .count();
        let (group, later) = rest.split_at(run);
        rest = later;
        let batch = if run == 1 {
            first.clone()
        } else {
            arrow::compute::concat_batches(&first.schema(), group.iter().map(|(_, b)| b))?
        };
        written += ingest.write(&table.name, batch, Via::Insert).await?;
    }
    Ok(written)
}
