//! The one write path: coerce a batch to its table's schema, append it to the WAL, insert it
//! into the buffer, acknowledge.
//!
//! Every front end (pgwire `INSERT` and `COPY`, Arrow Flight `DoPut`) calls [`Ingest::write`].
//! When it returns `Ok`, every row of the batch is durable in the WAL and visible to queries;
//! when it returns an error, no row of the batch was stored. Values are checked before the
//! WAL: a timestamp or date outside years 0001–9999 ([`MIN_MICROS`], [`MAX_MICROS`]) gets
//! SQLSTATE 22008, and a tenant whose partition folder name (`project_id=` and the value,
//! percent-encoded) would pass [`MAX_PARTITION_NAME_BYTES`] gets 22001, since such a row
//! could never be written to Delta (or read by other Delta readers) and would stop every
//! flush after it. A WAL record written before these checks is replayed without such rows,
//! which [`Ingest::replay`] hands back to be kept aside. It moves Arrow arrays, never rows: the
//! batch is cast column by column, split by (project, time bucket) with one `take` per group,
//! and the batch as received (before the cast) is written to the WAL as one Arrow IPC record.
//! Small batches (a single-row `INSERT`, a small DoPut batch) that come while many others are
//! under way share their record: a task of their own ([`combine`]) writes those waiting at
//! the same time, per table and set of columns, as one record and one buffer insert, and
//! answers each writer as it would have been answered alone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

use arrow::array::{Array, ArrayRef, AsArray, Date32Array, RecordBatch, RecordBatchOptions};
use arrow::compute::{CastOptions, cast_with_options, take};
use arrow::datatypes::{DataType, TimestampMicrosecondType};
use arrow::util::display::FormatOptions;

use crate::engine::MICROS_PER_DAY;
use crate::engine::batch::{
    default_column, is_default, owned_bytes, parse_array_literal, parse_array_literals,
};
use crate::engine::buffer::{Buffer, Piece, Place};
use crate::engine::schema::{Catalog, TableSchema};
use crate::engine::wal::{self, Committer, Wal};
use crate::engine::{Clock, Committed};
use crate::error::SqlState;

/// The first instant TimeFusion stores, 0001-01-01 00:00:00 UTC, in microseconds since the
/// epoch: PostgreSQL's `timestamp` starts earlier (4713 BC), but a date before year 1 has no
/// ISO 8601 form, and Delta readers fail on the partition value (deltalake for Python:
/// "Invalid isoformat string").
pub const MIN_MICROS: i64 = -62_135_596_800_000_000;
/// The last instant TimeFusion stores, 9999-12-31 23:59:59.999999 UTC: the last a four-digit
/// year prints, where the Delta writer's partition values end (a later one panicked it).
pub const MAX_MICROS: i64 = 253_402_300_799_999_999;
/// [`MIN_MICROS`] and [`MAX_MICROS`] as days since the epoch, for `Date32` columns.
const MIN_DAYS: i32 = -719_162;
/// 1970-01-01 counted from 0001-01-01 as day 1 (chrono's `num_days_from_ce`).
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;
const MAX_DAYS: i32 = 2_932_896;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("relation \"{0}\" does not exist")]
    UnknownTable(String),
    #[error("column \"{column}\" of relation \"{table}\" does not exist")]
    UnknownColumn { table: String, column: String },
    #[error(
        "null value in column \"{column}\" of relation \"{table}\" violates not-null constraint"
    )]
    NotNull { table: String, column: String },
    #[error("invalid value for column \"{column}\" of type {target}: {message}")]
    BadValue {
        column: String,
        target: DataType,
        message: String,
    },
    #[error(
        "column \"{date}\" must equal the UTC date of \"{time}\" ({given} given for {time} {timestamp}); leave it out to derive it"
    )]
    DateMismatch {
        date: String,
        time: String,
        given: String,
        timestamp: String,
    },
    #[error(
        "value too long for column \"{column}\" in row {row}: as a partition folder name (\"{column}=\" and the value, percent-encoded) it takes {bytes} bytes, and file systems and object stores allow {MAX_PARTITION_NAME_BYTES}"
    )]
    TooLongForPartition {
        column: String,
        row: usize,
        bytes: usize,
    },
    #[error(
        "{kind} out of range in column \"{column}\" (row {row}): {value}; TimeFusion stores years 0001 to 9999 (UTC)"
    )]
    OutOfRange {
        column: String,
        /// Zero-based, within the batch (a statement's rows, a COPY piece, a DoPut batch).
        row: usize,
        kind: &'static str,
        value: String,
    },
    #[error(
        "a batch of {rows} rows takes at least {needed_mb} MiB once every column of \"{table}\" is filled in, more than the {limit_mb} MiB one batch may take (TIMEFUSION_BUFFER_MAX_MEMORY_MB, at least 16 GiB); send it in smaller batches"
    )]
    BatchTooLarge {
        table: String,
        rows: usize,
        needed_mb: usize,
        limit_mb: usize,
    },
    #[error(
        "the write buffer is full ({used_mb} MiB of the {limit_mb} MiB it admits now) and no flush freed space in time; retry later, or raise TIMEFUSION_BUFFER_MAX_MEMORY_MB or TIMEFUSION_MEMORY_LIMIT_MB"
    )]
    BufferFull { used_mb: usize, limit_mb: usize },
    #[error(transparent)]
    Wal(#[from] wal::Error),
    #[error("cannot rebuild the batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The answer of every write combined into one WAL record ([`combine`]).
    #[error(transparent)]
    Shared(Arc<Error>),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The SQLSTATE a Postgres client sees for this error.
    pub fn sqlstate(&self) -> SqlState {
        match self {
            Error::UnknownTable(_) => SqlState::UNDEFINED_TABLE,
            Error::UnknownColumn { .. } => SqlState::UNDEFINED_COLUMN,
            Error::NotNull { .. } => SqlState::NOT_NULL_VIOLATION,
            Error::BadValue { target, .. } if target.is_temporal() => {
                SqlState::INVALID_DATETIME_FORMAT
            }
            Error::BadValue { .. } => SqlState::INVALID_TEXT_REPRESENTATION,
            Error::DateMismatch { .. } => SqlState::CHECK_VIOLATION,
            Error::OutOfRange { .. } => SqlState::DATETIME_FIELD_OVERFLOW,
            Error::TooLongForPartition { .. } => SqlState::STRING_DATA_RIGHT_TRUNCATION,
            Error::BufferFull { .. } => SqlState::OUT_OF_MEMORY,
            Error::BatchTooLarge { .. } => SqlState::PROGRAM_LIMIT_EXCEEDED,
            Error::Wal(e) => e.sqlstate(),
            Error::Arrow(_) | Error::Internal(_) => SqlState::INTERNAL_ERROR,
            Error::Shared(e) => e.sqlstate(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub struct Ingest {
    shared: Arc<Shared>,
    max_bytes: usize,
    /// Small writes on their way to [`combine`], started by the first one.
    combiner: OnceLock<mpsc::UnboundedSender<Waiting>>,
}

/// What a write needs, shared with the task that combines small writes.
struct Shared {
    catalog: Arc<Catalog>,
    wal: Arc<Wal>,
    buffer: Arc<Buffer<Committed>>,
    clock: Arc<dyn Clock>,
    buffer_full_timeout: Duration,
    /// Small writes under way, written alone or combined ([`COMBINE_AFTER`]).
    small_writes: AtomicUsize,
}

/// A small write under way, counted in [`Shared::small_writes`] until it is answered (or
/// its writer goes away).
struct SmallWrite<'a> {
    count: &'a AtomicUsize,
    /// Small writes under way when this one came.
    ahead: usize,
}

impl<'a> SmallWrite<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        let ahead = count.fetch_add(1, Ordering::Relaxed);
        SmallWrite { count, ahead }
    }
}

impl Drop for SmallWrite<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The way rows arrived, a label of the ingest metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `INSERT` over pgwire (the literal fast path or DataFusion's sink).
    Insert,
    /// `COPY … FROM STDIN`.
    Copy,
    /// Arrow Flight `DoPut`.
    Flight,
    /// An OTLP export (gRPC or HTTP).
    Otlp,
    /// A Prometheus remote-write request.
    RemoteWrite,
    /// InfluxDB line protocol.
    LineProtocol,
}

impl Via {
    pub fn name(self) -> &'static str {
        match self {
            Via::Insert => "insert",
            Via::Copy => "copy",
            Via::Flight => "flight",
            Via::Otlp => "otlp",
            Via::RemoteWrite => "remote_write",
            Via::LineProtocol => "line_protocol",
        }
    }
}

impl Ingest {
    pub fn new(
        catalog: Arc<Catalog>,
        wal: Arc<Wal>,
        buffer: Arc<Buffer<Committed>>,
        clock: Arc<dyn Clock>,
        buffer_full_timeout: Duration,
        max_bytes: usize,
    ) -> Self {
        Ingest {
            shared: Arc::new(Shared {
                catalog,
                wal,
                buffer,
                clock,
                buffer_full_timeout,
                small_writes: AtomicUsize::new(0),
            }),
            max_bytes,
            combiner: OnceLock::new(),
        }
    }

    /// Stores `batch` in `table`; `via` names the front end it came through, for the
    /// metrics.
    ///
    /// When this returns `Ok(rows)` every row is durable (its WAL record is fsynced) and
    /// visible to every query started afterwards. On error no row was stored.
    pub async fn write(&self, table: &str, batch: RecordBatch, via: Via) -> Result<usize> {
        let schema = self
            .shared
            .catalog
            .get(table)
            .ok_or_else(|| Error::UnknownTable(table.to_string()))?;
        // Before the table's missing columns are built at the batch's length: one that
        // declares billions of rows (a forged Arrow header) would make those allocations
        // abort the process. No client's batch comes near the ceiling: the largest message
        // any front end takes holds a few million rows.
        // A row takes at most 8 bytes a column here, so the columns are walked only for a
        // batch long enough to pass the ceiling at all: never for a real one.
        let ceiling = self.max_bytes.max(MIN_BATCH_CEILING);
        let widest = schema.schema.fields().len().saturating_mul(8).max(1);
        let needed = if batch.num_rows() > ceiling / widest {
            batch.num_rows().saturating_mul(min_row_bytes(schema))
        } else {
            0
        };
        if needed > ceiling {
            return Err(Error::BatchTooLarge {
                table: schema.name.clone(),
                rows: batch.num_rows(),
                needed_mb: needed >> 20,
                limit_mb: ceiling >> 20,
            });
        }
        if !(1..=COMBINE_MAX_ROWS).contains(&batch.num_rows())
            || batch.get_array_memory_size() > COMBINE_MAX_BYTES
        {
            return self.shared.write_one(schema, batch, via).await;
        }
        let small = SmallWrite::enter(&self.shared.small_writes);
        if small.ahead < COMBINE_AFTER {
            self.shared.write_one(schema, batch, via).await
        } else {
            self.write_combined(schema.clone(), batch, via).await
        }
    }

    /// A small write, handed to the task that combines the small writes waiting at the same
    /// time into one WAL record per table and set of columns ([`combine`]).
    async fn write_combined(
        &self,
        table: Arc<TableSchema>,
        sent: RecordBatch,
        via: Via,
    ) -> Result<usize> {
        let queue = self.combiner.get_or_init(|| {
            let (queue, waiting) = mpsc::unbounded_channel();
            tokio::spawn(combine(Arc::downgrade(&self.shared), waiting));
            queue
        });
        let (done, answer) = oneshot::channel();
        queue
            .send(Waiting {
                table,
                sent,
                via,
                done,
            })
            .map_err(|_| Error::Internal("the task combining small writes has stopped".into()))?;
        answer.await.map_err(|_| {
            Error::Internal("the combined write failed before it was answered".into())
        })?
    }

    /// Splits and inserts a replayed WAL record (already durable) into the buffer. Rows a
    /// build without the range check acknowledged, with a timestamp or date outside
    /// [`MIN_MICROS`]..=[`MAX_MICROS`], are left out and returned (coerced to the table's
    /// schema): they could never be flushed, and would stop every flush after them.
    pub fn replay(
        &self,
        table: &str,
        seq: wal::Seq,
        batch: RecordBatch,
    ) -> Result<Option<RecordBatch>> {
        let schema = self
            .shared
            .catalog
            .get(table)
            .ok_or_else(|| Error::UnknownTable(table.to_string()))?;
        let batch = coerce_with(schema, &batch, false)?;
        let storable = in_range(schema, &batch);
        let (batch, rejected) = if storable.true_count() == batch.num_rows() {
            (batch, None)
        } else {
            let outside = arrow::compute::not(&storable)?;
            (
                arrow::compute::filter_record_batch(&batch, &storable)?,
                Some(arrow::compute::filter_record_batch(&batch, &outside)?),
            )
        };
        let now = self.shared.clock.now_micros();
        let pieces = split(schema, &batch, owned_bytes(&batch), |micros| {
            self.shared.buffer.place(micros, now)
        })?;
        self.shared.buffer.insert(table, seq, pieces, now);
        Ok(rejected)
    }
}

/// Writes of at most this many rows, and of [`COMBINE_MAX_BYTES`] as sent, are small: once
/// [`COMBINE_AFTER`] of them are under way, the next is combined with the small writes
/// waiting at the same time ([`combine`]). Single-row `INSERT`s from many connections, small
/// DoPut batches and OTLP exports.
const COMBINE_MAX_ROWS: usize = 64;
/// Small writes under way before the next one is combined rather than written alone. Below
/// it, a round would hold few writes, and the hand-offs to the combining task and back cost
/// more than the shared record saves: with 8 connections of single-row `INSERT`s, combining
/// every write cost about 15% of their rate; with 32, combining past this many gained about
/// 25% (BENCHMARKS.md, "Small writes combined").
pub(crate) const COMBINE_AFTER: usize = 12;
/// See [`COMBINE_MAX_ROWS`].
const COMBINE_MAX_BYTES: usize = 256 << 10;
/// The rows [`combine`] takes into one round at most.
const COMBINE_ROUND_ROWS: usize = 8192;
/// Rounds [`combine`] has in the WAL at once: while one waits for the disk, the next is
/// already queued behind it, so the WAL writer never waits for a round to be formed.
const COMBINE_ROUNDS_IN_FLIGHT: usize = 2;

/// A small write waiting for [`combine`].
struct Waiting {
    table: Arc<TableSchema>,
    sent: RecordBatch,
    via: Via,
    done: oneshot::Sender<Result<usize>>,
}

/// Combines small writes: each round takes every write waiting (up to
/// [`COMBINE_ROUND_ROWS`] rows), and stores those of one table with the same columns as one
/// WAL record and one buffer insert ([`Shared::write_group`]), each round's records in one
/// group commit. While a round waits for the disk the next writes queue, so under many
/// concurrent writers a record holds many of their rows: the record's Arrow IPC schema and
/// column headers, its bytes on disk, the buffer's chunk and its merges are paid once per
/// round instead of once per row (a single-row `INSERT` as its own record was most of its
/// server CPU; BENCHMARKS.md, "Small writes combined"). A lone writer's round holds its own
/// write only. The rounds run in a task of their own, so a writer that goes away does not
/// abandon the others' rows; the task holds the write path only during a round, so the WAL
/// (and its lock) goes with the last [`Ingest`].
async fn combine(shared: Weak<Shared>, mut queue: mpsc::UnboundedReceiver<Waiting>) {
    let mut rounds = futures::stream::FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            Some(()) = rounds.next(), if !rounds.is_empty() => {}
            first = queue.recv(), if rounds.len() < COMBINE_ROUNDS_IN_FLIGHT => {
                let (Some(first), Some(shared)) = (first, shared.upgrade()) else {
                    break;
                };
                let groups = take_round(first, &mut queue);
                rounds.push(async move {
                    // A panic drops its group's senders: those writers get an error, and the
                    // task goes on.
                    let writes = groups.into_iter().map(|group| {
                        std::panic::AssertUnwindSafe(shared.write_group(group)).catch_unwind()
                    });
                    futures::future::join_all(writes).await;
                });
            }
        }
    }
    while rounds.next().await.is_some() {}
}

/// `first` and the writes queued behind it, up to [`COMBINE_ROUND_ROWS`] rows, grouped by
/// table and columns in the order they came.
fn take_round(first: Waiting, queue: &mut mpsc::UnboundedReceiver<Waiting>) -> Vec<Vec<Waiting>> {
    let mut rows = first.sent.num_rows();
    let mut groups: Vec<Vec<Waiting>> = vec![vec![first]];
    while rows < COMBINE_ROUND_ROWS {
        let Ok(waiting) = queue.try_recv() else {
            break;
        };
        rows += waiting.sent.num_rows();
        let same = groups.iter_mut().find(|group| {
            let other = &group[0];
            other.table.name == waiting.table.name
                && (Arc::ptr_eq(other.sent.schema_ref(), waiting.sent.schema_ref())
                    || other.sent.schema_ref() == waiting.sent.schema_ref())
        });
        match same {
            Some(group) => group.push(waiting),
            None => groups.push(vec![waiting]),
        }
    }
    groups
}

impl Shared {
    /// [`Ingest::write`] of one batch on its own.
    async fn write_one(&self, schema: &TableSchema, batch: RecordBatch, via: Via) -> Result<usize> {
        let coerced = coerce(schema, &batch)?;
        let rows = coerced.num_rows();
        if rows == 0 {
            return Ok(0);
        }
        // Wait before splitting: a waiting writer holds the batch as sent, not also its copy.
        // The room is what the split's copy will hold in the buffer, reserved until the rows
        // are in it (the end of this function).
        let bytes = owned_bytes(&coerced);
        let Some(_room) = self.buffer.reserve(bytes, self.buffer_full_timeout).await else {
            return Err(self.buffer_full());
        };
        let pieces = self.split(schema, &coerced, bytes)?;
        // From here the pieces hold the rows; the batch as sent only has to reach the WAL,
        // which drops it once encoded, before the wait for the disk (and the client's
        // message with it, unless a piece is a view into it).
        drop(coerced);
        let sent_bytes = batch.get_array_memory_size() as u64;
        self.append(Committer::Any, schema, batch, pieces).await?;
        count(schema, via, rows, sent_bytes);
        Ok(rows)
    }

    /// Stores a group of small writes to one table with the same columns as one WAL record
    /// (their batches concatenated as sent) and answers each writer. A batch that its
    /// checks refuse makes every write of the group go alone, so each writer gets its own
    /// answer, as it would have without the others; a full buffer or a failed WAL append is
    /// the answer of all.
    async fn write_group(&self, mut group: Vec<Waiting>) {
        if group.len() == 1 {
            let Waiting {
                table,
                sent,
                via,
                done,
            } = group.remove(0);
            let _ = done.send(self.write_one(&table, sent, via).await);
            return;
        }
        let table = group[0].table.clone();
        // Each tenant's rows together, so that the buffer's pieces are slices of one batch.
        group.sort_by_cached_key(|w| first_tenant(&table, &w.sent));
        let stored = match self.prepare_group(&table, &group) {
            Some(prepared) => prepared,
            None => {
                let alone = group.into_iter().map(|w| async move {
                    let _ = w.done.send(self.write_one(&w.table, w.sent, w.via).await);
                });
                futures::future::join_all(alone).await;
                return;
            }
        };
        let (sent, coerced) = stored;
        let answers: Vec<_> = group
            .into_iter()
            .map(|w| {
                (
                    w.done,
                    w.via,
                    w.sent.num_rows(),
                    w.sent.get_array_memory_size(),
                )
            })
            .collect();
        let result = async {
            let bytes = owned_bytes(&coerced);
            let Some(_room) = self.buffer.reserve(bytes, self.buffer_full_timeout).await else {
                return Err(self.buffer_full());
            };
            let pieces = self.split(&table, &coerced, bytes)?;
            drop(coerced);
            // The task goes on taking the next round while this one syncs.
            self.append(Committer::Thread, &table, sent, pieces).await
        }
        .await;
        match result {
            Ok(()) => {
                crate::metrics::get()
                    .combined_writes
                    .inc_by(answers.len() as u64);
                for (done, via, rows, sent_bytes) in answers {
                    count(&table, via, rows, sent_bytes as u64);
                    let _ = done.send(Ok(rows));
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for (done, ..) in answers {
                    let _ = done.send(Err(Error::Shared(e.clone())));
                }
            }
        }
    }

    /// The group's batches as one, as sent and coerced, or `None` when the checks refuse
    /// one of them (or the batches do not concatenate).
    fn prepare_group(
        &self,
        table: &TableSchema,
        group: &[Waiting],
    ) -> Option<(RecordBatch, RecordBatch)> {
        let sent = arrow::compute::concat_batches(
            group[0].sent.schema_ref(),
            group.iter().map(|w| &w.sent),
        )
        .ok()?;
        let coerced = coerce(table, &sent).ok()?;
        Some((sent, coerced))
    }

    fn buffer_full(&self) -> Error {
        Error::BufferFull {
            used_mb: self.buffer.bytes() >> 20,
            limit_mb: self.buffer.admitted() >> 20,
        }
    }

    fn split(
        &self,
        schema: &TableSchema,
        coerced: &RecordBatch,
        bytes: usize,
    ) -> Result<Vec<Piece>> {
        let now = self.clock.now_micros();
        split(schema, coerced, bytes, |micros| {
            self.buffer.place(micros, now)
        })
    }

    /// Appends `batch` (as sent) to the WAL, committed by `committer`; once it is durable its
    /// `pieces` go into the buffer.
    async fn append(
        &self,
        committer: Committer,
        schema: &TableSchema,
        batch: RecordBatch,
        pieces: Vec<Piece>,
    ) -> Result<()> {
        let buffer = self.buffer.clone();
        let clock = self.clock.clone();
        let name = schema.name.clone();
        // The WAL keeps the batch as the client sent it, usually a few of the table's columns;
        // replay coerces it again, which gives the same rows (`coerce` is deterministic).
        self.wal
            .append_by(
                committer,
                &schema.name,
                batch,
                Box::new(move |seq| buffer.insert(&name, seq, pieces, clock.now_micros())),
            )
            .await?;
        Ok(())
    }
}

/// The tenant of a batch's first row as sent, if its tenant column is text (a sort key only).
fn first_tenant(table: &TableSchema, sent: &RecordBatch) -> Option<String> {
    let column = sent.column_by_name(&table.tenant_column)?;
    if column.is_null(0) {
        return None;
    }
    match column.data_type() {
        DataType::Utf8 => Some(column.as_string::<i32>().value(0).to_string()),
        DataType::LargeUtf8 => Some(column.as_string::<i64>().value(0).to_string()),
        DataType::Utf8View => Some(column.as_string_view().value(0).to_string()),
        _ => None,
    }
}

/// Counts a write's rows and bytes as sent in the ingest metrics.
fn count(schema: &TableSchema, via: Via, rows: usize, sent_bytes: u64) {
    let metrics = crate::metrics::get();
    let labels = vec![("table", schema.name.clone()), ("path", via.name().into())];
    metrics
        .ingested_rows
        .get_or_create(&labels)
        .inc_by(rows as u64);
    metrics
        .ingested_bytes
        .get_or_create(&labels)
        .inc_by(sent_bytes);
}

/// What one batch may take once its table's columns are filled in, when the buffer's budget
/// is smaller: far above any real batch, far below an allocation that cannot succeed.
const MIN_BATCH_CEILING: usize = 16 << 30;

/// The fewest bytes a row of `table` takes in the buffer: each column's fixed width, or its
/// offset for variable-width ones.
fn min_row_bytes(table: &TableSchema) -> usize {
    table
        .schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::LargeUtf8 | DataType::LargeBinary | DataType::LargeList(_) => 8,
            DataType::Boolean | DataType::Null => 1,
            other => other.primitive_width().unwrap_or(4),
        })
        .sum()
}

/// Returns `batch` with exactly the table's columns, types and constraints: missing nullable
/// columns become null, missing non-nullable lists become empty lists, `date` is derived from
/// the event time, compatible types are cast, and anything else is an error naming the column.
pub fn coerce(table: &TableSchema, batch: &RecordBatch) -> Result<RecordBatch> {
    coerce_with(table, batch, true)
}

/// [`coerce`], checking each timestamp and date against the stored range when `check_range`
/// (off for WAL replay, which must take back every record it once acknowledged).
fn coerce_with(table: &TableSchema, batch: &RecordBatch, check_range: bool) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let input = batch.schema();
    known_columns(table, &input)?;
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(table.schema.fields().len());
    let mut date_index = None;
    for (i, field) in table.schema.fields().iter().enumerate() {
        // `column_with_name`, not `index_of`: a miss from `index_of` formats every field name
        // into its error, for each left-out column of each insert.
        let column = match input.column_with_name(field.name()) {
            Some((j, _)) => {
                let array = cast_to(field, batch.column(j), !check_range)?;
                if is_default(field, &array) {
                    default_column(field, rows)
                } else {
                    array
                }
            }
            None => default_column(field, rows),
        };
        if check_range {
            check_stored(table, field.name(), &column)?;
        }
        if field.name() == &table.date_column {
            date_index = Some(i);
        } else if !field.is_nullable() && column.null_count() > 0 {
            return Err(Error::NotNull {
                table: table.name.clone(),
                column: field.name().clone(),
            });
        }
        columns.push(column);
    }
    let tenant = &columns[table.index_of(&table.tenant_column).unwrap_or_default()];
    if tenant.null_count() > 0 {
        return Err(Error::NotNull {
            table: table.name.clone(),
            column: table.tenant_column.clone(),
        });
    }
    if let Some(d) = date_index {
        let time = columns[table.index_of(&table.time_column).unwrap_or_default()].clone();
        columns[d] = derive_date(table, &time, &columns[d])?;
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        table.schema.clone(),
        columns,
        &options,
    )?)
}

/// `batch` with each of its columns cast to the table's type and checked as [`coerce`] checks
/// it (stored range, required values), and an error for a required column it leaves out; the
/// left-out columns are not built. What a pipelined `INSERT` holds until its `Sync`: every
/// error a row can raise is raised here, for the statement that sent it, and [`Ingest::write`]
/// of the held batches later casts nothing again.
pub fn prepare(table: &TableSchema, batch: &RecordBatch) -> Result<RecordBatch> {
    let input = batch.schema();
    known_columns(table, &input)?;
    let mut fields = Vec::with_capacity(input.fields().len());
    let mut columns = Vec::with_capacity(input.fields().len());
    for (j, given) in input.fields().iter().enumerate() {
        let Some(i) = table.index_of(given.name()) else {
            continue;
        };
        let field = table.schema.field(i);
        let column = cast_to(field, batch.column(j), false)?;
        check_stored(table, field.name(), &column)?;
        if requires_value(table, field) && column.null_count() > 0 {
            return Err(Error::NotNull {
                table: table.name.clone(),
                column: field.name().clone(),
            });
        }
        fields.push(field);
        columns.push(column);
    }
    if let Some(column) = missing_required(table, |name| input.column_with_name(name).is_some()) {
        return Err(Error::NotNull {
            table: table.name.clone(),
            column,
        });
    }
    // The batch's own schema when it already has the table's fields (no cast was needed).
    let schema = if input
        .fields()
        .iter()
        .zip(&fields)
        .all(|(a, b)| a.as_ref() == *b)
    {
        input.clone()
    } else {
        Arc::new(arrow::datatypes::Schema::new(
            fields.into_iter().cloned().collect::<Vec<_>>(),
        ))
    };
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        schema, columns, &options,
    )?)
}

/// Whether every row needs a value in `field`: a non-nullable column or the tenant, but not
/// the date, which is derived from the time when left null.
fn requires_value(table: &TableSchema, field: &arrow::datatypes::Field) -> bool {
    (!field.is_nullable() || field.name() == &table.tenant_column)
        && field.name() != &table.date_column
}

/// The first column a row must have a value for (not null, no default, not derived) that
/// `given` says the row leaves out.
pub fn missing_required(table: &TableSchema, given: impl Fn(&str) -> bool) -> Option<String> {
    table
        .schema
        .fields()
        .iter()
        .find(|field| {
            // A left-out required list is filled with empty lists.
            let filled = !field.is_nullable()
                && matches!(field.data_type(), DataType::List(_))
                && field.name() != &table.tenant_column;
            requires_value(table, field) && !filled && !given(field.name())
        })
        .map(|field| field.name().clone())
}

/// A value checked for its column by [`prepare_value`] or [`prepare_text`].
#[derive(Debug, Clone, PartialEq)]
pub enum Checked<'a> {
    /// Text for a `Utf8` column, as the client sent it.
    Text(&'a str),
    /// The items of an array literal for a `List<Utf8>` column.
    Texts(Vec<Option<String>>),
    /// Any other value, of the column's type.
    Value(datafusion::common::ScalarValue),
}

/// Text for a column of `field` in `table`, checked as [`prepare_value`] checks it as a
/// `Utf8` value, with the same result and errors: text for a text column, an array literal
/// for a list of text, and a timestamp are read here without building arrays (the values of
/// a driver's parameterized `INSERT`); anything else, or text these refuse, goes through
/// [`prepare_value`].
pub fn prepare_text<'a>(
    table: &TableSchema,
    field: &arrow::datatypes::Field,
    text: &'a str,
) -> Result<Checked<'a>> {
    use datafusion::common::ScalarValue;
    match field.data_type() {
        DataType::Utf8
            if field.name() != &table.tenant_column || tenant_fits(field.name(), text) =>
        {
            return Ok(Checked::Text(text));
        }
        DataType::List(item) if item.data_type() == &DataType::Utf8 => {
            let mut items = Vec::new();
            let parsed = parse_array_literal(text, |v| items.push(v.map(str::to_string)));
            if parsed.is_ok() && (item.is_nullable() || items.iter().all(Option::is_some)) {
                return Ok(Checked::Texts(items));
            }
        }
        DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, zone) => {
            if let Some(micros) = text_micros(text, zone.as_deref())
                && (MIN_MICROS..=MAX_MICROS).contains(&micros)
            {
                return Ok(Checked::Value(ScalarValue::TimestampMicrosecond(
                    Some(micros),
                    zone.clone(),
                )));
            }
        }
        _ => {}
    }
    prepare_value(table, field, ScalarValue::Utf8(Some(text.to_string()))).map(Checked::Value)
}

/// `text` as Arrow's cast reads a string into microseconds in time zone `zone` (UTC without
/// one), or `None` where that cast fails or needs [`with_full_time`].
fn text_micros(text: &str, zone: Option<&str>) -> Option<i64> {
    use arrow::compute::kernels::cast_utils::string_to_datetime;
    use arrow::datatypes::ArrowTimestampType;
    let naive = match zone {
        Some("UTC" | "+00:00") | None => string_to_datetime(&chrono::Utc, text).ok()?.naive_utc(),
        Some(zone) => {
            let zone: arrow::array::timezone::Tz = zone.parse().ok()?;
            string_to_datetime(&zone, text).ok()?.naive_utc()
        }
    };
    TimestampMicrosecondType::from_naive_datetime(naive, None)
}

/// One value for a column of `field` in `table`, as [`prepare`] checks a column: cast to the
/// field's type, inside the stored range, and not null where the column requires a value.
pub fn prepare_value(
    table: &TableSchema,
    field: &arrow::datatypes::Field,
    value: datafusion::common::ScalarValue,
) -> Result<datafusion::common::ScalarValue> {
    use datafusion::common::ScalarValue;
    if value.is_null() {
        if requires_value(table, field) {
            return Err(Error::NotNull {
                table: table.name.clone(),
                column: field.name().clone(),
            });
        }
        return Ok(ScalarValue::try_from(field.data_type()).unwrap_or(value));
    }
    let inside = match &value {
        ScalarValue::TimestampMicrosecond(Some(micros), _) => {
            (MIN_MICROS..=MAX_MICROS).contains(micros)
        }
        ScalarValue::Date32(Some(days)) => (MIN_DAYS..=MAX_DAYS).contains(days),
        ScalarValue::Utf8(Some(tenant)) if field.name() == &table.tenant_column => {
            tenant_fits(field.name(), tenant)
        }
        _ => true,
    };
    if value.data_type() == *field.data_type() && inside {
        return Ok(value);
    }
    // A narrower integer into a wider column, as the cast below would, without its arrays.
    let widened = match (&value, field.data_type()) {
        (ScalarValue::Int16(Some(v)), DataType::Int32) => {
            Some(ScalarValue::Int32(Some((*v).into())))
        }
        (ScalarValue::Int16(Some(v)), DataType::Int64) => {
            Some(ScalarValue::Int64(Some((*v).into())))
        }
        (ScalarValue::Int32(Some(v)), DataType::Int64) => {
            Some(ScalarValue::Int64(Some((*v).into())))
        }
        _ => None,
    };
    if let Some(widened) = widened {
        return Ok(widened);
    }
    let as_array = |v: &ScalarValue| {
        v.to_array().map_err(|e| Error::BadValue {
            column: field.name().clone(),
            target: field.data_type().clone(),
            message: e.to_string(),
        })
    };
    let column = cast_to(field, &as_array(&value)?, false)?;
    check_stored(table, field.name(), &column)?;
    ScalarValue::try_from_array(&column, 0).map_err(|e| Error::BadValue {
        column: field.name().clone(),
        target: field.data_type().clone(),
        message: e.to_string(),
    })
}

/// An error for the first column of `input` the table does not have.
fn known_columns(table: &TableSchema, input: &arrow::datatypes::Schema) -> Result<()> {
    match input
        .fields()
        .iter()
        .find(|f| table.index_of(f.name()).is_none())
    {
        Some(unknown) => Err(Error::UnknownColumn {
            table: table.name.clone(),
            column: unknown.name().clone(),
        }),
        None => Ok(()),
    }
}

/// `array` as a column of `field`'s type, cast as every write path casts: text into a list
/// column is read as PostgreSQL array literals (`{a,"b c"}`), where Arrow's own cast would
/// wrap each string in a one-element list; a value that does not convert is an error naming
/// the column.
pub fn cast_column(field: &arrow::datatypes::Field, array: &ArrayRef) -> Result<ArrayRef> {
    cast_to(field, array, false)
}

/// [`cast_column`]; `replay` keeps Arrow's reading of text into a list column for text that is
/// not an array literal, so a WAL record a build before array literals acknowledged replays.
fn cast_to(field: &arrow::datatypes::Field, array: &ArrayRef, replay: bool) -> Result<ArrayRef> {
    if array.data_type() == field.data_type() {
        return Ok(array.clone());
    }
    let bad = |message: String| Error::BadValue {
        column: field.name().clone(),
        target: field.data_type().clone(),
        message,
    };
    if let DataType::List(item) = field.data_type()
        && item.data_type() == &DataType::Utf8
    {
        let literals = match array.data_type() {
            DataType::Utf8 => Some(parse_array_literals(array.as_string::<i32>().iter())),
            DataType::LargeUtf8 => Some(parse_array_literals(array.as_string::<i64>().iter())),
            DataType::Utf8View => Some(parse_array_literals(array.as_string_view().iter())),
            _ => None,
        };
        match literals {
            Some(Ok(lists)) => {
                let lists: ArrayRef = Arc::new(lists);
                return if lists.data_type() == field.data_type() {
                    Ok(lists)
                } else {
                    cast_with_options(&lists, field.data_type(), &CAST_OPTIONS)
                        .map_err(|e| bad(e.to_string()))
                };
            }
            Some(Err(message)) if !replay => return Err(bad(message)),
            _ => {}
        }
    }
    cast_with_options(array, field.data_type(), &CAST_OPTIONS).or_else(|e| {
        // PostgreSQL's timestamp input forms Arrow refuses (`10:00`, `9:05:00`), read again.
        if let (DataType::Timestamp(..), DataType::Utf8) = (field.data_type(), array.data_type()) {
            let texts = array.as_string::<i32>();
            if texts.iter().flatten().any(|t| with_full_time(t).is_some()) {
                let fixed: arrow::array::StringArray = texts
                    .iter()
                    .map(|t| t.map(|t| with_full_time(t).unwrap_or_else(|| t.to_string())))
                    .collect();
                if let Ok(cast) = cast_with_options(&fixed, field.data_type(), &CAST_OPTIONS) {
                    return Ok(cast);
                }
            }
        }
        Err(out_of_range_text(field, array).unwrap_or_else(|| bad(e.to_string())))
    })
}

/// `2026-01-01 10:00[rest]` as `2026-01-01 10:00:00[rest]`, `… 9:05…` as `… 09:05…`; `None`
/// when the text has no such time (already whole, or not a timestamp: left to the parser).
pub fn with_full_time(text: &str) -> Option<String> {
    let trimmed = text.trim();
    let date = trimmed.get(..10)?;
    let date_shaped = date.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        _ => b.is_ascii_digit(),
    });
    let rest = trimmed.get(10..)?;
    let time = rest.strip_prefix(' ').or_else(|| rest.strip_prefix('T'))?;
    if !date_shaped {
        return None;
    }
    let hour_digits = time.bytes().take_while(u8::is_ascii_digit).count();
    if !(1..=2).contains(&hour_digits) || time.as_bytes().get(hour_digits) != Some(&b':') {
        return None;
    }
    let minutes = time.get(hour_digits + 1..hour_digits + 3)?;
    if !minutes.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let after = &time[hour_digits + 3..];
    let has_seconds = after.starts_with(':');
    if has_seconds && hour_digits == 2 {
        return None;
    }
    let seconds = if has_seconds { "" } else { ":00" };
    Some(format!(
        "{date}{sep}{hour:0>2}:{minutes}{seconds}{after}",
        sep = &rest[..1],
        hour = &time[..hour_digits],
    ))
}

/// Casts fail on a value they cannot convert instead of making it null.
const CAST_OPTIONS: CastOptions<'static> = CastOptions {
    safe: false,
    format_options: FormatOptions::new(),
};

/// The stored range of a timestamp or date column's values (microseconds or days since the
/// epoch), and how a value prints; `None` for other columns.
fn stored_range(column: &ArrayRef) -> Option<(&'static str, i64, i64)> {
    match column.data_type() {
        DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, _) => {
            Some(("timestamp", MIN_MICROS, MAX_MICROS))
        }
        DataType::Date32 => Some(("date", MIN_DAYS.into(), MAX_DAYS.into())),
        _ => None,
    }
}

/// The value at `row` of a column [`stored_range`] knows, widened to i64.
fn value_at(column: &ArrayRef, row: usize) -> i64 {
    match column.data_type() {
        DataType::Date32 => column
            .as_primitive::<arrow::datatypes::Date32Type>()
            .value(row)
            .into(),
        _ => column.as_primitive::<TimestampMicrosecondType>().value(row),
    }
}

/// The longest folder name a partition value may make: the file-name limit of Linux file
/// systems, and far inside S3's 1,024-byte keys.
pub const MAX_PARTITION_NAME_BYTES: usize = 255;

/// Bytes the folder name `column=value` of a Delta partition takes, percent-encoded as
/// deltalake writes it.
fn partition_name_bytes(column: &str, value: &str) -> usize {
    use deltalake::kernel::scalars::ScalarExt as _;
    let encoded = delta_kernel::expressions::Scalar::String(value.to_string()).serialize_encoded();
    column.len() + 1 + encoded.len()
}

/// An error for the first value of `column` that could not be stored: a timestamp or date
/// outside the stored range, or a tenant too long to name its partition folder.
fn check_stored(table: &TableSchema, name: &str, column: &ArrayRef) -> Result<()> {
    check_in_range(name, column)?;
    if name != table.tenant_column {
        return Ok(());
    }
    match tenant_too_long(name, column) {
        Some((row, bytes)) => Err(Error::TooLongForPartition {
            column: name.to_string(),
            row,
            bytes,
        }),
        None => Ok(()),
    }
}

/// Whether tenant `value` of column `name` names a partition folder short enough. A value
/// short enough even if every byte were encoded (three bytes each) is not encoded.
fn tenant_fits(name: &str, value: &str) -> bool {
    value.len() <= (MAX_PARTITION_NAME_BYTES - name.len() - 1) / 3
        || partition_name_bytes(name, value) <= MAX_PARTITION_NAME_BYTES
}

/// The first row of the tenant `column` whose partition folder name would be too long, with
/// that name's length.
fn tenant_too_long(name: &str, column: &ArrayRef) -> Option<(usize, usize)> {
    let values = column.as_string_opt::<i32>()?;
    (0..values.len())
        .find(|&row| values.is_valid(row) && !tenant_fits(name, values.value(row)))
        .map(|row| (row, partition_name_bytes(name, values.value(row))))
}

/// An error for the first value of `column` outside the stored range, if any (a timestamp or
/// date column; others are not checked). Two aggregate passes when every value is inside.
fn check_in_range(name: &str, column: &ArrayRef) -> Result<()> {
    use arrow::compute::{max, min};
    let Some((kind, low, high)) = stored_range(column) else {
        return Ok(());
    };
    let (least, most) = match column.data_type() {
        DataType::Date32 => {
            let days = column.as_primitive::<arrow::datatypes::Date32Type>();
            (min(days).map(i64::from), max(days).map(i64::from))
        }
        _ => {
            let micros = column.as_primitive::<TimestampMicrosecondType>();
            (min(micros), max(micros))
        }
    };
    let inside = |v: i64| (low..=high).contains(&v);
    if least.is_none_or(inside) && most.is_none_or(inside) {
        return Ok(());
    }
    let row = (0..column.len())
        .find(|&i| column.is_valid(i) && !inside(value_at(column, i)))
        .unwrap_or_default();
    // As a date or time where chrono can hold it; past that, the raw number.
    let at = value_at(column, row);
    let value = if kind == "date" {
        i32::try_from(at)
            .ok()
            .and_then(|days| days.checked_add(UNIX_EPOCH_DAYS_FROM_CE))
            .and_then(chrono::NaiveDate::from_num_days_from_ce_opt)
            .map(|d| d.to_string())
    } else {
        chrono::DateTime::from_timestamp_micros(at).map(|t| t.to_string())
    };
    let unit = if kind == "date" { "days" } else { "µs" };
    let value = value.unwrap_or_else(|| format!("{at} {unit} from 1970-01-01"));
    Err(Error::OutOfRange {
        column: name.to_string(),
        row,
        kind,
        value,
    })
}

/// For text that failed to cast to a timestamp or date: [`Error::OutOfRange`] for the first
/// value that is a well-formed date outside years 0001–9999 (a five-digit year, or BC), which
/// arrow's parser does not read; PostgreSQL reads them, so "out of range" is the true answer.
fn out_of_range_text(field: &arrow::datatypes::Field, array: &ArrayRef) -> Option<Error> {
    let kind = match field.data_type() {
        DataType::Timestamp(..) => "timestamp",
        DataType::Date32 => "date",
        _ => return None,
    };
    let beyond = |text: &str| {
        let text = text.trim();
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let bc = text
            .get(text.len().saturating_sub(3)..)
            .is_some_and(|end| end.eq_ignore_ascii_case(" bc"));
        (digits >= 5 && text.as_bytes().get(digits) == Some(&b'-')) || bc
    };
    let found = match array.data_type() {
        DataType::Utf8 => array
            .as_string::<i32>()
            .iter()
            .position(|v| v.is_some_and(beyond)),
        DataType::LargeUtf8 => array
            .as_string::<i64>()
            .iter()
            .position(|v| v.is_some_and(beyond)),
        DataType::Utf8View => array
            .as_string_view()
            .iter()
            .position(|v| v.is_some_and(beyond)),
        _ => None,
    }?;
    let value = arrow::util::display::array_value_to_string(array, found).ok()?;
    Some(Error::OutOfRange {
        column: field.name().clone(),
        row: found,
        kind,
        value,
    })
}

/// Which rows of a coerced batch could be stored: every timestamp and date inside the stored
/// range, and a tenant short enough to name its partition folder.
fn in_range(table: &TableSchema, batch: &RecordBatch) -> arrow::array::BooleanArray {
    let tenant = batch
        .column_by_name(&table.tenant_column)
        .and_then(|c| c.as_string_opt::<i32>());
    let checked: Vec<(&ArrayRef, i64, i64)> = batch
        .columns()
        .iter()
        .filter_map(|c| stored_range(c).map(|(_, low, high)| (c, low, high)))
        .collect();
    (0..batch.num_rows())
        .map(|row| {
            let short = tenant
                .is_none_or(|t| t.is_null(row) || tenant_fits(&table.tenant_column, t.value(row)));
            Some(
                short
                    && checked.iter().all(|(column, low, high)| {
                        column.is_null(row) || (*low..=*high).contains(&value_at(column, row))
                    }),
            )
        })
        .collect()
}

/// The date column: given dates are checked against the event time, missing ones derived.
fn derive_date(table: &TableSchema, time: &ArrayRef, given: &ArrayRef) -> Result<ArrayRef> {
    let time = time.as_primitive::<TimestampMicrosecondType>();
    let derived: Date32Array = time.unary(|micros| micros.div_euclid(MICROS_PER_DAY) as i32);
    if given.null_count() == given.len() {
        return Ok(Arc::new(derived));
    }
    let given = given.as_primitive::<arrow::datatypes::Date32Type>();
    for i in 0..given.len() {
        if given.is_valid(i) && given.value(i) != derived.value(i) {
            return Err(Error::DateMismatch {
                date: table.date_column.clone(),
                time: table.time_column.clone(),
                given: given
                    .value_as_date(i)
                    .map_or_else(|| given.value(i).to_string(), |d| d.to_string()),
                timestamp: time
                    .value_as_datetime(i)
                    .map_or_else(|| time.value(i).to_string(), |t| t.to_string()),
            });
        }
    }
    Ok(Arc::new(derived))
}

/// Splits a coerced batch by (project, time bucket) for the buffer.
///
/// The pieces are zero-copy slices of one reordered copy of the batch (a batch spread over
/// many buckets costs one copy, not one per piece and column) — one copy per *lifetime*: the
/// pieces bound for late buckets leave at the next flush while an open window's stay until it
/// ends, and a slice keeps its whole allocation alive. Sharing one copy, a backfill batch's
/// few rows in the open window held all its late rows' memory for up to a window after they
/// were flushed, uncounted. `owned` is the batch's [`owned_bytes`], which a batch of one
/// piece is charged (the writer has it already, for its reservation).
fn split(
    table: &TableSchema,
    batch: &RecordBatch,
    owned: usize,
    place: impl Fn(i64) -> Place,
) -> Result<Vec<Piece>> {
    let projects = batch
        .column(table.index_of(&table.tenant_column).unwrap_or_default())
        .as_string::<i32>();
    let times = batch
        .column(table.index_of(&table.time_column).unwrap_or_default())
        .as_primitive::<TimestampMicrosecondType>();
    if batch.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let first_project = projects.value(0);
    let first = place(times.value(0));
    let uniform = (0..batch.num_rows())
        .all(|i| projects.value(i) == first_project && place(times.value(i)) == first);
    if uniform {
        let (min_micros, max_micros) = times
            .values()
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));
        return Ok(vec![Piece {
            project: first_project.to_string(),
            bucket_start: first.bucket,
            min_micros,
            max_micros,
            bytes: owned,
            batch: batch.clone(),
        }]);
    }
    struct Group<'a> {
        project: &'a str,
        place: Place,
        rows: Vec<u32>,
        min_micros: i64,
        max_micros: i64,
    }
    let mut group_of: HashMap<(&str, Place), usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for i in 0..batch.num_rows() {
        let time = times.value(i);
        let key = (projects.value(i), place(time));
        let group = *group_of.entry(key).or_insert_with(|| {
            groups.push(Group {
                project: key.0,
                place: key.1,
                rows: Vec::new(),
                min_micros: time,
                max_micros: time,
            });
            groups.len() - 1
        });
        let group = &mut groups[group];
        group.rows.push(i as u32);
        group.min_micros = group.min_micros.min(time);
        group.max_micros = group.max_micros.max(time);
    }
    let mut pieces = Vec::with_capacity(groups.len());
    for late in [true, false] {
        let class: Vec<&Group> = groups.iter().filter(|g| g.place.late == late).collect();
        if class.is_empty() {
            continue;
        }
        let order = arrow::array::UInt32Array::from_iter_values(
            class.iter().flat_map(|g| &g.rows).copied(),
        );
        // Rows already grouped (a combined write's, ordered by tenant: `Shared::write_group`)
        // and all of one lifetime: the pieces are slices of the batch, as a uniform batch's
        // one piece is the batch itself. Otherwise one reordered copy.
        let in_order = order.len() == batch.num_rows()
            && order
                .values()
                .iter()
                .enumerate()
                .all(|(i, &row)| row as usize == i);
        let (sorted, total_bytes) = if in_order {
            (batch.clone(), owned)
        } else {
            // Default columns hold the same value in every row: reordering them is the
            // identity, and a subset of their rows is a slice.
            let columns = batch
                .schema()
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(f, c)| {
                    if is_default(f, c) {
                        Ok(c.slice(0, order.len()))
                    } else {
                        take(c, &order, None)
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            let sorted = RecordBatch::try_new(batch.schema(), columns)?;
            let bytes = owned_bytes(&sorted);
            (sorted, bytes)
        };
        let mut offset = 0;
        for group in class {
            let rows = group.rows.len();
            pieces.push(Piece {
                project: group.project.to_string(),
                bucket_start: group.place.bucket,
                min_micros: group.min_micros,
                max_micros: group.max_micros,
                batch: sorted.slice(offset, rows),
                bytes: total_bytes * rows / order.len(),
            });
            offset += rows;
        }
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema};

    /// An open window's bucket.
    fn open(bucket: i64) -> Place {
        Place {
            bucket,
            late: false,
        }
    }

    /// A buffer with 10-minute windows, for where rows go.
    fn ten_minute_windows() -> Buffer<()> {
        Buffer::new(crate::engine::buffer::BufferOptions {
            max_bytes: 1 << 30,
            bucket_micros: 600_000_000,
        })
    }

    fn otel() -> Arc<TableSchema> {
        Catalog::load(None)
            .expect("schemas")
            .get("otel_logs_and_spans")
            .expect("otel")
            .clone()
    }

    fn input(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .expect("batch")
    }

    fn minimal(ts: &[i64]) -> Vec<(&'static str, ArrayRef)> {
        vec![
            (
                "timestamp",
                Arc::new(TimestampMicrosecondArray::from(ts.to_vec()).with_timezone("UTC"))
                    as ArrayRef,
            ),
            (
                "id",
                Arc::new(StringArray::from_iter_values(
                    ts.iter().map(|t| format!("id{t}")),
                )),
            ),
            (
                "project_id",
                Arc::new(StringArray::from_iter_values(ts.iter().map(|_| "p1"))),
            ),
        ]
    }

    /// A project id becomes the folder name `project_id=<value, percent-encoded>`: one that
    /// would pass 255 bytes (no file system or store could hold the partition, and every
    /// flush of the table would fail) is refused with 22001, on the batch path, the prepared
    /// path and the single-value path alike.
    #[test]
    fn project_ids_too_long_for_a_folder_name_are_refused_with_22001() {
        let table = otel();
        let with_project = |project: &str| {
            let mut columns = minimal(&[0, 1]);
            columns[2].1 = Arc::new(StringArray::from(vec!["p1", project]));
            input(columns)
        };
        let longest = "x".repeat(255 - "project_id=".len());
        // 27 three-byte characters, each encoded as nine bytes: 243 + 11.
        let encoded = "日".repeat(27);
        for fits in [&longest, &encoded, &"a/b c".repeat(20)] {
            coerce(&table, &with_project(fits)).expect(fits);
            prepare(&table, &with_project(fits)).expect(fits);
        }
        for too_long in [format!("{longest}x"), "日".repeat(28), "%".repeat(82)] {
            let error = coerce(&table, &with_project(&too_long)).expect_err("refused");
            assert_eq!(error.sqlstate(), SqlState::STRING_DATA_RIGHT_TRUNCATION);
            assert!(error.to_string().contains("in row 1"), "{error}");
            let error = prepare(&table, &with_project(&too_long)).expect_err("refused");
            assert_eq!(error.sqlstate(), SqlState::STRING_DATA_RIGHT_TRUNCATION);
            let field = table.schema.field_with_name("project_id").expect("field");
            let value = datafusion::common::ScalarValue::Utf8(Some(too_long.clone()));
            let error = prepare_value(&table, field, value).expect_err("refused");
            assert_eq!(error.sqlstate(), SqlState::STRING_DATA_RIGHT_TRUNCATION);
        }
    }

    #[test]
    fn timestamps_and_dates_outside_years_1_to_9999_are_refused_with_22008() {
        let table = otel();
        let ends = coerce(&table, &input(minimal(&[MIN_MICROS, MAX_MICROS]))).expect("the ends");
        let date = ends
            .column(0)
            .as_primitive::<arrow::datatypes::Date32Type>();
        assert_eq!(date.values().to_vec(), vec![MIN_DAYS, MAX_DAYS]);
        for (micros, shown) in [
            (MAX_MICROS + 1, "+10000-01-01 00:00:00"),
            (MIN_MICROS - 1, "0000-12-31 23:59:59.999999"),
            (i64::MAX, "9223372036854775807 µs from 1970-01-01"),
            (-(1 << 62), "-144169-"),
        ] {
            let error = coerce(&table, &input(minimal(&[0, micros]))).expect_err("refused");
            assert_eq!(error.sqlstate(), SqlState::DATETIME_FIELD_OVERFLOW);
            let message = error.to_string();
            assert!(
                message.contains("column \"timestamp\" (row 1)"),
                "{message}"
            );
            assert!(message.contains(shown), "{message}");
        }
        // A date given past 9999, and the same as text, which arrow's parser does not read.
        let mut columns = minimal(&[0]);
        columns.push(("date", Arc::new(Date32Array::from(vec![MAX_DAYS + 1]))));
        let error = coerce(&table, &input(columns)).expect_err("refused");
        assert_eq!(error.sqlstate(), SqlState::DATETIME_FIELD_OVERFLOW);
        assert!(
            error
                .to_string()
                .contains("date out of range in column \"date\" (row 0): +10000-01-01"),
            "{error}"
        );
        let mut columns = minimal(&[0]);
        columns[0].1 = Arc::new(StringArray::from(vec!["12000-01-01 00:00:00+00"]));
        let error = coerce(&table, &input(columns)).expect_err("refused");
        assert_eq!(error.sqlstate(), SqlState::DATETIME_FIELD_OVERFLOW);
        assert!(error.to_string().contains("12000-01-01"), "{error}");
        // Not a date: 22007. (The second's last three bytes are inside a character.)
        let mut columns = minimal(&[0, 1]);
        columns[0].1 = Arc::new(StringArray::from(vec!["yesterday at noon", "a日b"]));
        let error = coerce(&table, &input(columns)).expect_err("refused");
        assert_eq!(error.sqlstate(), SqlState::INVALID_DATETIME_FORMAT);
    }

    #[test]
    fn a_row_of_the_otel_table_takes_at_least_its_columns_widths() {
        let table = otel();
        let floor = min_row_bytes(&table);
        // About a hundred columns, most text (4-byte offsets), a few timestamps (8 bytes).
        assert!((300..1000).contains(&floor), "{floor}");
    }

    #[test]
    fn fills_defaults_and_derives_the_date() {
        let table = otel();
        let day = MICROS_PER_DAY;
        let out = coerce(&table, &input(minimal(&[day * 3 + 5, -1]))).expect("coerce");
        assert_eq!(out.schema(), table.schema);
        let date = out.column(0).as_primitive::<arrow::datatypes::Date32Type>();
        assert_eq!(
            date.values().to_vec(),
            vec![3, -1],
            "UTC date, negative times floor"
        );
        let summary = out.column(table.index_of("summary").expect("summary"));
        assert_eq!(summary.null_count(), 0);
        assert_eq!(
            summary.as_list::<i32>().value_length(0),
            0,
            "empty list default"
        );
        assert_eq!(
            out.column(table.index_of("name").expect("name"))
                .null_count(),
            2
        );
    }

    #[test]
    fn missing_required_and_null_tenant_are_23502() {
        let table = otel();
        let mut cols = minimal(&[1]);
        cols.remove(1); // id
        let err = coerce(&table, &input(cols)).unwrap_err();
        assert!(
            matches!(&err, Error::NotNull { column, .. } if column == "id"),
            "{err}"
        );
        assert_eq!(err.sqlstate(), SqlState::NOT_NULL_VIOLATION);
        let mut cols = minimal(&[1]);
        cols[2].1 = Arc::new(StringArray::from(vec![None::<&str>]));
        let err = coerce(&table, &input(cols)).unwrap_err();
        assert!(
            matches!(&err, Error::NotNull { column, .. } if column == "project_id"),
            "{err}"
        );
    }

    #[test]
    fn casts_compatible_types_and_names_bad_values() {
        let table = otel();
        let mut cols = minimal(&[1]);
        cols.push(("duration", Arc::new(StringArray::from(vec!["42"]))));
        let out = coerce(&table, &input(cols)).expect("string to int64 casts");
        let duration = out.column(table.index_of("duration").expect("duration"));
        assert_eq!(
            duration
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0),
            42
        );

        let mut cols = minimal(&[1]);
        cols.push(("duration", Arc::new(StringArray::from(vec!["forty-two"]))));
        let err = coerce(&table, &input(cols)).unwrap_err();
        assert_eq!(err.sqlstate(), SqlState::INVALID_TEXT_REPRESENTATION);
        assert!(err.to_string().contains("duration"), "{err}");

        let mut cols = minimal(&[1]);
        cols[0].1 = Arc::new(StringArray::from(vec!["not a time"]));
        assert_eq!(
            coerce(&table, &input(cols)).unwrap_err().sqlstate(),
            SqlState::INVALID_DATETIME_FORMAT
        );

        let mut cols = minimal(&[1]);
        cols.push(("nope", Arc::new(Int64Array::from(vec![1]))));
        assert_eq!(
            coerce(&table, &input(cols)).unwrap_err().sqlstate(),
            SqlState::UNDEFINED_COLUMN
        );
    }

    #[test]
    fn a_date_that_disagrees_with_the_timestamp_is_rejected() {
        let table = otel();
        let mut cols = minimal(&[MICROS_PER_DAY * 10]);
        cols.push(("date", Arc::new(Date32Array::from(vec![10]))));
        assert!(coerce(&table, &input(cols)).is_ok());
        let mut cols = minimal(&[MICROS_PER_DAY * 10]);
        cols.push(("date", Arc::new(Date32Array::from(vec![11]))));
        let err = coerce(&table, &input(cols)).unwrap_err();
        assert_eq!(err.sqlstate(), SqlState::CHECK_VIOLATION);
    }

    #[test]
    fn columns_viewing_one_allocation_are_charged_it_once() {
        // As a DoPut body decodes: every column a view into the one received allocation.
        let body = arrow::buffer::Buffer::from_vec(vec![7i64; 128]);
        let column = |offset| -> ArrayRef {
            Arc::new(Int64Array::new(
                arrow::buffer::ScalarBuffer::new(body.clone(), offset, 64),
                None,
            ))
        };
        let schema = Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
        ]);
        let batch =
            RecordBatch::try_new(Arc::new(schema), vec![column(0), column(64)]).expect("batch");
        assert_eq!(owned_bytes(&batch), body.capacity());
    }

    #[test]
    fn left_out_columns_share_one_array_and_cost_no_memory() {
        let table = otel();
        let a = coerce(&table, &input(minimal(&[1, 2]))).expect("coerce");
        let mut cols = minimal(&[3, 4, 5]);
        cols.push(("name", Arc::new(StringArray::from(vec![None::<&str>; 3]))));
        let b = coerce(&table, &input(cols)).expect("coerce");
        let name = table.index_of("name").expect("name");
        let summary = table.index_of("summary").expect("summary");
        for c in [name, summary] {
            assert_eq!(
                a.column(c).to_data().buffers()[0].as_ptr(),
                b.column(c).to_data().buffers()[0].as_ptr(),
                "column {c} is one shared array, also when sent all-null"
            );
        }
        assert_eq!(b.column(name).null_count(), 3);
        assert_eq!(b.column(summary).as_list::<i32>().value_length(2), 0);
        let own: usize = [
            0,
            table.index_of("timestamp").expect("ts"),
            table.index_of("id").expect("id"),
            table.index_of("project_id").expect("p"),
        ]
        .iter()
        .map(|&i| b.column(i).get_buffer_memory_size())
        .sum();
        assert_eq!(
            owned_bytes(&b),
            own,
            "only the given columns and the date are charged"
        );
        // Splitting keeps the shared columns shared.
        let pieces = split(&table, &b, owned_bytes(&b), open).expect("split");
        assert_eq!(pieces.len(), 3);
        let base = a.column(name).to_data().buffers()[0].as_ptr() as usize;
        let sliced = pieces[2].batch.column(name).to_data().buffers()[0].as_ptr() as usize;
        assert!(
            (base..base + 8192 * 4).contains(&sliced),
            "a piece's left-out column is a slice of the shared array, not a copy"
        );
    }

    #[test]
    fn the_wal_form_replays_to_the_same_rows() {
        // The WAL keeps the batch as sent; replay decodes and coerces it again.
        let table = otel();
        let mut cols = minimal(&[MICROS_PER_DAY * 2 + 7, 3]);
        cols.push(("duration", Arc::new(StringArray::from(vec!["42", "7"]))));
        let sent = input(cols);
        let written = coerce(&table, &sent).expect("coerce");
        let replayed = crate::engine::wal::decode_batch(
            &crate::engine::wal::encode_batch(&sent, crate::engine::wal::WalCompression::Zstd)
                .expect("encode"),
        )
        .expect("decode");
        assert_eq!(coerce(&table, &replayed).expect("coerce replay"), written);
    }

    #[test]
    fn splits_by_project_and_bucket() {
        let table = otel();
        let mut cols = minimal(&[0, 5, 700, 705]);
        cols[2].1 = Arc::new(StringArray::from(vec!["a", "b", "a", "a"]));
        let batch = coerce(&table, &input(cols)).expect("coerce");
        let mut pieces =
            split(&table, &batch, owned_bytes(&batch), |t| open(t / 600 * 600)).expect("split");
        pieces.sort_by_key(|p| (p.project.clone(), p.bucket_start));
        let shape: Vec<(String, i64, usize)> = pieces
            .iter()
            .map(|p| (p.project.clone(), p.bucket_start, p.batch.num_rows()))
            .collect();
        assert_eq!(
            shape,
            vec![("a".into(), 0, 1), ("a".into(), 600, 2), ("b".into(), 0, 1)]
        );
        let uniform = coerce(&table, &input(minimal(&[1, 2]))).expect("coerce");
        assert_eq!(
            split(&table, &uniform, owned_bytes(&uniform), |t| open(
                t / 600 * 600
            ))
            .expect("split")
            .len(),
            1
        );
    }

    #[test]
    fn a_backfill_batch_splits_by_day_and_a_live_one_by_window() {
        let table = otel();
        let buffer = ten_minute_windows();
        let minute = 60_000_000;
        let now = 7 * MICROS_PER_DAY;
        // One row a minute over the 7 days before `now`: 10,080 rows in 1,008 ended windows.
        let ts: Vec<i64> = (1..=7 * 1440).map(|m| now - m * minute).collect();
        let batch = coerce(&table, &input(minimal(&ts))).expect("coerce");
        let pieces = split(&table, &batch, owned_bytes(&batch), |t| {
            buffer.place(t, now)
        })
        .expect("split");
        let mut shape: Vec<(i64, i64, usize)> = pieces
            .iter()
            .map(|p| (p.bucket_start, p.max_micros, p.batch.num_rows()))
            .collect();
        shape.sort_unstable();
        let expected: Vec<(i64, i64, usize)> = (0..7)
            .map(|d| (d * MICROS_PER_DAY, (d + 1) * MICROS_PER_DAY - minute, 1440))
            .collect();
        assert_eq!(shape, expected);
        // Rows in the open window keep it as their bucket.
        let live =
            coerce(&table, &input(minimal(&[now + minute, now + 2 * minute]))).expect("coerce");
        let pieces = split(&table, &live, owned_bytes(&live), |t| {
            buffer.place(t, now + 3 * minute)
        })
        .expect("split");
        let shape: Vec<(i64, i64)> = pieces
            .iter()
            .map(|p| (p.bucket_start, p.max_micros))
            .collect();
        assert_eq!(shape, vec![(now, now + 2 * minute)]);
    }

    #[test]
    fn late_pieces_do_not_share_memory_with_open_ones() {
        // A backfill batch with a few rows in the open window: once its late pieces are
        // flushed, the open window's rows must not keep their memory alive.
        let table = otel();
        let buffer = ten_minute_windows();
        let minute = 60_000_000;
        let now = 7 * MICROS_PER_DAY;
        let mut ts: Vec<i64> = (1..=2000).map(|m| now - m * minute).collect();
        ts.extend([now + minute, now + 2 * minute]);
        let batch = coerce(&table, &input(minimal(&ts))).expect("coerce");
        let pieces = split(&table, &batch, owned_bytes(&batch), |t| {
            buffer.place(t, now + 3 * minute)
        })
        .expect("split");
        let id = table.index_of("id").expect("id");
        let allocation = |p: &Piece| p.batch.column(id).to_data().buffers()[1].data_ptr();
        let (open, late): (Vec<&Piece>, Vec<&Piece>) =
            pieces.iter().partition(|p| p.bucket_start == now);
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].batch.num_rows(), 2);
        assert!(late.len() > 1);
        assert!(late.iter().all(|p| allocation(p) == allocation(late[0])));
        assert_ne!(allocation(open[0]), allocation(late[0]));
        let late_rows: usize = late.iter().map(|p| p.batch.num_rows()).sum();
        assert_eq!(late_rows, 2000);
        // The open piece is charged for its own copy: two rows, not a share of the late ones.
        assert!(open[0].bytes < late.iter().map(|p| p.bytes).sum::<usize>() / 100);
    }

    #[test]
    fn times_get_their_seconds_and_two_digit_hours() {
        for (text, fixed) in [
            ("2026-01-01 10:00", Some("2026-01-01 10:00:00")),
            ("2026-01-01T10:00Z", Some("2026-01-01T10:00:00Z")),
            ("2026-01-01 10:00+02", Some("2026-01-01 10:00:00+02")),
            ("2026-01-01 9:05:07.5", Some("2026-01-01 09:05:07.5")),
            ("2026-01-01 9:05", Some("2026-01-01 09:05:00")),
            ("2026-01-01 10:00:00", None),
            ("2026-01-01", None),
            ("2026-01-01 1x:00", None),
            ("yesterday", None),
            ("2026-01-01 10:0", None),
        ] {
            assert_eq!(with_full_time(text).as_deref(), fixed, "{text}");
        }
    }
}
