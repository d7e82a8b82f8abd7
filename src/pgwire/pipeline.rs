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

/// The most parsed rows a connection holds before writing them ahead of its `Sync`.
pub const HELD_BYTES: usize = 16 << 20;

/// A connection's held rows, in arrival order.
#[derive(Default)]
struct Held(Mutex<Rows>);

#[derive(Default)]
struct Rows {
    batches: Vec<(Arc<TableSchema>, RecordBatch)>,
    bytes: usize,
}

/// Holds `batch` (checked by [`ingest::prepare`]) for `table` until the connection's next
/// `Sync`; `true` when the connection now holds more than [`HELD_BYTES`] and should
/// [`commit`] at once.
pub(crate) fn hold<C: ClientInfo + ?Sized>(
    client: &C,
    table: Arc<TableSchema>,
    batch: RecordBatch,
) -> bool {
    let held = client
        .session_extensions()
        .get_or_insert_with(Held::default);
    let mut rows = held.0.lock();
    rows.bytes += batch.get_array_memory_size();
    rows.batches.push((table, batch));
    rows.bytes > HELD_BYTES
}

/// Whether the connection holds rows not yet written.
pub(crate) fn holds<C: ClientInfo + ?Sized>(client: &C) -> bool {
    client
        .session_extensions()
        .get::<Held>()
        .is_some_and(|held| !held.0.lock().batches.is_empty())
}

/// Drops the held rows: their pipeline failed before its `Sync`.
pub(crate) fn discard<C: ClientInfo + ?Sized>(client: &C) {
    if let Some(held) = client.session_extensions().get::<Held>() {
        *held.0.lock() = Rows::default();
    }
}

/// Writes every held row, durably: consecutive batches of one table and column set as one
/// [`Ingest::write`]. On error the rows of the failed write and every later one are dropped,
/// and none of them is stored.
pub(crate) async fn commit<C: ClientInfo + ?Sized>(
    client: &C,
    ingest: &Ingest,
) -> ingest::Result<usize> {
    let Some(held) = client.session_extensions().get::<Held>() else {
        return Ok(0);
    };
    let batches = std::mem::take(&mut *held.0.lock()).batches;
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
