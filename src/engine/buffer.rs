//! The in-memory buffer: Arrow batches per table → project → time bucket.
//!
//! Every acknowledged row that is not yet in Delta lives here, as a chunk of one or more WAL
//! records (a sequence range) inside the bucket of its event time. The buffer also holds, per
//! table, the read handle of the Delta version that the buffered rows complement (`C`), and
//! swaps chunks out and the new Delta version in under one lock, so a reader's
//! [`Buffer::snapshot`] always pairs a set of chunks with the Delta version that excludes them:
//! every row is seen exactly once, including while a flush commits.
//!
//! Flushes cover a *prefix of the WAL* per table: [`Buffer::plan_flush`] picks a sequence `V`
//! and selects every chunk whose records are all `<= V`, extending `V` until no chunk straddles
//! it. A flush commit can then record `V` as "every row of this table with a sequence `<= V` is
//! in Delta", which is what crash recovery needs. Memory is counted in Arrow bytes against a
//! budget; a writer reserves room for its rows ([`Buffer::reserve`]) before appending to the WAL.
//!
//! Rows whose window had already ended when they arrived (backfill, lagging agents) share
//! their UTC day's *late* bucket, sealed at once and pruned by its latest row, so a 7-day batch
//! splits into one piece per (project, day), not per window. A bucket's trailing small chunks
//! (single-row inserts) are merged a few dozen at a time, in levels, keeping left-out columns
//! shared ([`crate::engine::batch`]); the pieces a bulk batch splits into stay as inserted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arrow::array::{Array, RecordBatch, RecordBatchOptions};
use arrow::compute::concat;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use parking_lot::RwLock;
use tokio::sync::Notify;

use crate::engine::MICROS_PER_DAY;
use crate::engine::batch::{default_column, is_default, owned_bytes};
use crate::engine::id_filter::IdFilters;
use crate::engine::wal::Seq;

/// Chunks holding less than this are merged once enough of them pile up in a bucket: a chunk
/// costs a few KiB of array headers whatever its size, and a query pays a little per batch.
/// A bound in bytes rather than rows leaves alone the pieces a bulk batch splits into (an
/// 8,192-row otel batch over 8 tenants gives pieces of 64 to 4,096 rows, 32 KiB to 2 MiB):
/// with a bound of 4,096 rows, half of those rows were copied a second time, on the WAL
/// thread, under the buffer's write lock.
const SMALL_CHUNK_BYTES: usize = 64 << 10;
/// How many small chunks of one merge level a bucket collects before they are merged into
/// one chunk of the next level. Levels keep the copying per row logarithmic: a chunk is merged
/// again only together with chunks of its own size class.
const MERGE_AFTER: usize = 32;

/// Rows of one WAL record (or several merged records) for one project and bucket.
#[derive(Debug, Clone)]
struct Chunk {
    min_seq: Seq,
    max_seq: Seq,
    batch: RecordBatch,
    bytes: usize,
    /// How many merges built this chunk (0: as inserted).
    level: u8,
    /// When the oldest record in this chunk was inserted (microseconds since the epoch).
    inserted_micros: i64,
    /// Bounds of the chunk's event times (microseconds, inclusive). A change keeps them (it
    /// removes rows or rewrites columns other than the time column), so they stay bounds.
    min_micros: i64,
    max_micros: i64,
    /// Bloom filters of its id columns, built by the first lookups ([`IdFilters`]).
    ids: Arc<IdFilters>,
}

#[derive(Debug)]
struct Bucket {
    chunks: Vec<Chunk>,
    /// At least the latest event time of any row in the bucket (a flush that takes some of its
    /// chunks leaves it as it was): a late bucket (see [`Buffer::bucket_of`]) reaches past its
    /// key's window, up to the end of its day, and snapshots skip it only before this.
    max_micros: i64,
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket {
            chunks: Vec::new(),
            max_micros: i64::MIN,
        }
    }
}

#[derive(Debug)]
struct TableBuffer<C> {
    /// project → bucket start (microseconds since the epoch) → bucket
    projects: HashMap<String, BTreeMap<i64, Bucket>>,
    /// Chunks with `min_seq <= frozen_upto` belong to a running flush and are never merged.
    frozen_upto: Seq,
    committed: C,
}

#[derive(Debug)]
struct State<C> {
    tables: HashMap<String, TableBuffer<C>>,
    bytes: usize,
    /// Highest sequence inserted; every record up to it is in the buffer or flushed.
    applied: Seq,
}

/// One piece of an incoming batch: all its rows share a project and a bucket.
#[derive(Debug, Clone)]
pub struct Piece {
    pub project: String,
    /// The bucket's key, from [`Buffer::bucket_of`].
    pub bucket_start: i64,
    /// Earliest and latest event time among the piece's rows.
    pub min_micros: i64,
    pub max_micros: i64,
    pub batch: RecordBatch,
    /// Memory charged for the piece: its share of the batch it was sliced from.
    pub bytes: usize,
}

/// A buffered chunk, where it is and what it holds ([`Buffer::chunks`]).
#[derive(Debug, Clone)]
pub struct ChunkRef {
    pub project: String,
    pub bucket: i64,
    pub min_seq: Seq,
    pub batch: RecordBatch,
    /// Memory charged for the chunk.
    pub bytes: usize,
}

/// A chunk's rows after a change ([`Buffer::change`]).
#[derive(Debug)]
pub struct Changed {
    pub at: ChunkRef,
    /// The rows left (`None` or empty: the chunk leaves the buffer) and the memory they hold.
    pub rows: Option<RecordBatch>,
    pub bytes: usize,
}

/// Where a row goes in the buffer ([`Buffer::place`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Place {
    /// The bucket's key.
    pub bucket: i64,
    /// The bucket is sealed on arrival: a late row, flushed at the next scheduled flush, while
    /// an open window's rows wait until it ends.
    pub late: bool,
}

/// A consistent read view of one table.
#[derive(Debug, Clone)]
pub struct Snapshot<C> {
    pub batches: Vec<RecordBatch>,
    /// For each of `batches`, bounds of its rows' event times (microseconds, inclusive). Top-k
    /// scans read the newest first and skip by them.
    pub times: Vec<(i64, i64)>,
    /// For each of `batches`, its chunk's id filters (built on a lookup's first use).
    pub ids: Vec<Arc<IdFilters>>,
    pub committed: C,
}

/// Why a flush is being planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushReason {
    /// Sealed buckets and rows older than the retention.
    Scheduled,
    /// Everything: memory pressure or shutdown.
    All,
}

/// The rows one flush writes for one table.
#[derive(Debug)]
pub struct FlushPlan {
    pub table: String,
    /// Every row of the table with a sequence `<= upto` is in this plan or already in Delta.
    pub upto: Seq,
    /// (project, bucket start, batches in sequence order), buckets ascending per project.
    pub groups: Vec<(String, i64, Vec<RecordBatch>)>,
    ids: Vec<(String, i64, Seq)>,
    pub rows: usize,
}

/// Buffer limits and clock-free parameters.
#[derive(Debug, Clone)]
pub struct BufferOptions {
    pub max_bytes: usize,
    pub bucket_micros: i64,
}

pub struct Buffer<C> {
    state: RwLock<State<C>>,
    options: BufferOptions,
    /// The bytes writers are admitted up to: the budget, or less while the rest of the
    /// process holds more than the memory budget leaves it ([`crate::memory::govern`]).
    admitted: AtomicUsize,
    /// Bytes writers were let in with and have not inserted yet ([`Buffer::reserve`]).
    reserved: AtomicUsize,
    /// Writers that had to wait for space, and the microseconds they waited in all.
    waits: AtomicU64,
    waited_micros: AtomicU64,
    space_freed: Notify,
    pressure: Notify,
    /// Bytes of the chunks' built id filters ([`IdFilters`]), part of [`Buffer::bytes`].
    id_filter_bytes: Arc<AtomicUsize>,
}

impl<C: Clone> Buffer<C> {
    pub fn new(options: BufferOptions) -> Self {
        Buffer {
            state: RwLock::new(State {
                tables: HashMap::new(),
                bytes: 0,
                applied: Seq(0),
            }),
            admitted: AtomicUsize::new(options.max_bytes),
            reserved: AtomicUsize::new(0),
            options,
            waits: AtomicU64::new(0),
            waited_micros: AtomicU64::new(0),
            space_freed: Notify::new(),
            pressure: Notify::new(),
            id_filter_bytes: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Registers a table and the Delta read handle its (empty) buffer complements.
    pub fn add_table(&self, table: &str, committed: C) {
        self.state.write().tables.insert(
            table.to_string(),
            TableBuffer {
                projects: HashMap::new(),
                frozen_upto: Seq(0),
                committed,
            },
        );
    }

    /// Publishes a new Delta read handle for `table` whose rows are the same set the old one
    /// had, or fewer by design (compaction, retention): the buffer is untouched.
    pub fn replace_committed(&self, table: &str, committed: C) {
        if let Some(tb) = self.state.write().tables.get_mut(table) {
            tb.committed = committed;
        }
    }

    /// The Delta read handle `table`'s buffered rows complement now.
    pub fn committed(&self, table: &str) -> Option<C> {
        self.state
            .read()
            .tables
            .get(table)
            .map(|tb| tb.committed.clone())
    }

    /// Start of the bucket holding `micros` (saturating at the ends of the i64 range).
    pub fn bucket_start(&self, micros: i64) -> i64 {
        micros
            .div_euclid(self.options.bucket_micros)
            .checked_mul(self.options.bucket_micros)
            .unwrap_or(i64::MIN)
    }

    /// The bucket a row with event time `micros` goes to when it arrives at `now_micros`: the
    /// start of its window while that window is open, and once the window has ended, the start
    /// of its UTC day. Late rows (backfill, a lagging agent) are due at the next flush however
    /// they are grouped, and the flush writes one batch per (project, date); keyed by window, a
    /// 7-day backfill batch of 8,192 rows split into thousands of few-row pieces, each with its
    /// own slice of every column: 4 GB of array headers and a sixth of PostgreSQL's COPY rate.
    /// A late bucket is sealed at once (its key's window ended before its first row came) and
    /// records its rows' latest time for [`Buffer::snapshot`]'s pruning.
    pub fn bucket_of(&self, micros: i64, now_micros: i64) -> i64 {
        self.place(micros, now_micros).bucket
    }

    /// [`Buffer::bucket_of`], and whether that bucket is late (sealed on arrival, so due at the
    /// next flush) rather than an open window.
    pub fn place(&self, micros: i64, now_micros: i64) -> Place {
        let start = self.bucket_start(micros);
        if start.saturating_add(self.options.bucket_micros) <= now_micros {
            Place {
                bucket: micros.div_euclid(MICROS_PER_DAY) * MICROS_PER_DAY,
                late: true,
            }
        } else {
            Place {
                bucket: start,
                late: false,
            }
        }
    }

    /// Bytes held: the chunks' Arrow data and their built id filters.
    pub fn bytes(&self) -> usize {
        self.state.read().bytes + self.id_filter_bytes.load(Ordering::Relaxed)
    }

    /// Rows held (waiting to flush) and when the oldest of them was inserted, for `/metrics`:
    /// one pass over the chunks, under the read lock.
    pub fn waiting(&self) -> (usize, Option<i64>) {
        let state = self.state.read();
        let chunks = state
            .tables
            .values()
            .flat_map(|t| t.projects.values())
            .flat_map(|buckets| buckets.values())
            .flat_map(|bucket| &bucket.chunks);
        chunks.fold((0, None), |(rows, oldest), chunk| {
            let oldest =
                oldest.map_or(chunk.inserted_micros, |o: i64| o.min(chunk.inserted_micros));
            (rows + chunk.batch.num_rows(), Some(oldest))
        })
    }

    /// The budget (`TIMEFUSION_BUFFER_MAX_MEMORY_MB`) in bytes.
    pub fn budget(&self) -> usize {
        self.options.max_bytes
    }

    /// Highest WAL sequence inserted so far.
    pub fn applied(&self) -> Seq {
        self.state.read().applied
    }

    /// Marks sequences up to `seq` as handled (used after replay skips flushed records).
    pub fn advance_applied(&self, seq: Seq) {
        let mut state = self.state.write();
        state.applied = state.applied.max(seq);
    }

    /// Inserts the pieces of WAL record `seq`. Called by the WAL writer in sequence order.
    pub fn insert(&self, table: &str, seq: Seq, pieces: Vec<Piece>, now_micros: i64) {
        let mut state = self.state.write();
        let mut added = 0usize;
        let mut removed = 0usize;
        if let Some(tb) = state.tables.get_mut(table) {
            let frozen_upto = tb.frozen_upto;
            for piece in pieces {
                let bytes = piece.bytes;
                added += bytes;
                let bucket = tb
                    .projects
                    .entry(piece.project)
                    .or_default()
                    .entry(piece.bucket_start)
                    .or_default();
                bucket.max_micros = bucket.max_micros.max(piece.max_micros);
                bucket.chunks.push(Chunk {
                    min_seq: seq,
                    max_seq: seq,
                    batch: piece.batch,
                    bytes,
                    level: 0,
                    inserted_micros: now_micros,
                    min_micros: piece.min_micros,
                    max_micros: piece.max_micros,
                    ids: Arc::new(IdFilters::new(&self.id_filter_bytes)),
                });
                while let Some((a, r)) =
                    merge_small_tail(bucket, frozen_upto, &self.id_filter_bytes)
                {
                    added += a;
                    removed += r;
                }
            }
        } else {
            tracing::error!(table, %seq, "record for a table the buffer does not know; dropped from memory only");
        }
        state.bytes = state.bytes + added - removed;
        state.applied = state.applied.max(seq);
        if state.bytes > self.high_water() {
            self.pressure.notify_one();
        }
    }

    fn high_water(&self) -> usize {
        self.admitted() / 10 * 8
    }

    /// The bytes writers are admitted up to now.
    pub fn admitted(&self) -> usize {
        self.admitted.load(Ordering::Relaxed)
    }

    /// Whether the memory governor holds the admission limit below half the budget: the rest
    /// of the process takes so much of the memory budget that work which can wait (background
    /// merges) should.
    pub fn squeezed(&self) -> bool {
        self.admitted() < self.budget() / 2
    }

    /// Sets the bytes writers are admitted up to (at most the budget): lowering it under what
    /// is held asks the flusher to run, raising it lets waiting writers in.
    pub fn admit_up_to(&self, bytes: usize) {
        let bytes = bytes.min(self.options.max_bytes);
        let before = self.admitted.swap(bytes, Ordering::Relaxed);
        if bytes > before {
            self.space_freed.notify_waiters();
        }
        if self.bytes() > self.high_water() {
            self.pressure.notify_one();
        }
    }

    /// Writers that had to wait for space, and how long they waited in all.
    pub fn waits(&self) -> (u64, Duration) {
        (
            self.waits.load(Ordering::Relaxed),
            Duration::from_micros(self.waited_micros.load(Ordering::Relaxed)),
        )
    }

    /// Waits until `bytes` more fit under the admission limit, counted with what the buffer
    /// holds and what writers let in before are about to insert, and reserves them until the
    /// returned [`Room`] is dropped (after the insert). Writers let in together so stay within
    /// the limit: when only "below the limit" was checked, every writer a flush woke went in
    /// at once, and their copies overshot a 25 MiB limit several times over. A batch larger
    /// than the room left goes in alone, once no other reservation is open and the buffer is
    /// under its limit, so every batch gets in eventually. `None` after `timeout`.
    pub async fn reserve(&self, bytes: usize, timeout: Duration) -> Option<Room<'_, C>> {
        if let Some(room) = self.try_reserve(bytes) {
            return Some(room);
        }
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        let room = loop {
            let freed = self.space_freed.notified();
            if let Some(room) = self.try_reserve(bytes) {
                break Some(room);
            }
            self.pressure.notify_one();
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                break self.try_reserve(bytes);
            }
        };
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.waited_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        room
    }

    fn try_reserve(&self, bytes: usize) -> Option<Room<'_, C>> {
        let limit = self.admitted();
        let held = self.bytes();
        let mut reserved = self.reserved.load(Ordering::Acquire);
        loop {
            let fits = held + reserved + bytes <= limit || (reserved == 0 && held < limit);
            if !fits {
                return None;
            }
            match self.reserved.compare_exchange_weak(
                reserved,
                reserved + bytes,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(Room {
                        buffer: self,
                        bytes,
                    });
                }
                Err(now) => reserved = now,
            }
        }
    }

    /// Resolves when memory passed the high-water mark (the flusher should run early).
    pub async fn pressure(&self) {
        self.pressure.notified().await
    }

    pub fn over_high_water(&self) -> bool {
        self.bytes() > self.high_water()
    }

    /// The table's buffered batches (restricted to `projects` and to buckets overlapping
    /// `[from, to]` microseconds when given) and the Delta handle they complement. A bucket
    /// starts at or after its day's start, so the buckets overlapping `[from, to]` are those
    /// keyed in `[day of from, to]` whose latest row is at or after `from`.
    ///
    /// With a `projection` the batches hold only those columns (of the table's schema): a
    /// query over a thousand chunks of an 80-column table otherwise spent most of its planning
    /// cloning and dropping column handles it never reads. An index outside the table's
    /// columns is an error.
    pub fn snapshot(
        &self,
        table: &str,
        projects: Option<&HashSet<String>>,
        time_range: Option<(i64, i64)>,
        projection: Option<&[usize]>,
    ) -> Option<Result<Snapshot<C>, ArrowError>> {
        let state = self.state.read();
        let tb = state.tables.get(table)?;
        let mut batches = Vec::new();
        let mut times = Vec::new();
        let mut ids = Vec::new();
        let (from, to) = time_range.unwrap_or((i64::MIN, i64::MAX));
        let mut projected_schema: Option<SchemaRef> = None;
        let mut take = |batch: &RecordBatch| -> Result<RecordBatch, ArrowError> {
            let Some(columns) = projection else {
                return Ok(batch.clone());
            };
            let schema = match &projected_schema {
                Some(schema) => schema.clone(),
                None => projected_schema
                    .insert(Arc::new(batch.schema().project(columns)?))
                    .clone(),
            };
            let arrays = columns
                .iter()
                .map(|&i| {
                    batch.columns().get(i).cloned().ok_or_else(|| {
                        ArrowError::SchemaError(format!("no column {i} in the buffer"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            RecordBatch::try_new_with_options(schema, arrays, &options)
        };
        let mut failed = None;
        in_range(tb, projects, time_range, |_, _, bucket| {
            // A late bucket holds a whole day: its chunks outside the range are skipped here.
            for chunk in &bucket.chunks {
                if chunk.max_micros >= from && chunk.min_micros <= to {
                    match take(&chunk.batch) {
                        Ok(batch) => batches.push(batch),
                        Err(e) => failed = Some(e),
                    }
                    times.push((chunk.min_micros, chunk.max_micros));
                    ids.push(chunk.ids.clone());
                }
            }
        });
        if let Some(e) = failed {
            return Some(Err(e));
        }
        Some(Ok(Snapshot {
            batches,
            times,
            ids,
            committed: tb.committed.clone(),
        }))
    }

    /// The chunks of `table` in the buckets a [`Buffer::snapshot`] with the same arguments
    /// reads (every chunk of them: the snapshot also skips chunks by their own times, which a
    /// change's predicate rules out anyway), each with where it is, for a change to rewrite
    /// ([`Buffer::change`]).
    pub fn chunks(
        &self,
        table: &str,
        projects: Option<&HashSet<String>>,
        time_range: Option<(i64, i64)>,
    ) -> Vec<ChunkRef> {
        let state = self.state.read();
        let Some(tb) = state.tables.get(table) else {
            return Vec::new();
        };
        let mut chunks = Vec::new();
        in_range(tb, projects, time_range, |project, key, bucket| {
            chunks.extend(bucket.chunks.iter().map(|c| ChunkRef {
                project: project.to_string(),
                bucket: key,
                min_seq: c.min_seq,
                batch: c.batch.clone(),
                bytes: c.bytes,
            }));
        });
        chunks
    }

    /// Rows of `table` a [`Buffer::snapshot`] with the same arguments reads.
    pub fn rows_in(
        &self,
        table: &str,
        projects: Option<&HashSet<String>>,
        time_range: Option<(i64, i64)>,
    ) -> usize {
        let state = self.state.read();
        let Some(tb) = state.tables.get(table) else {
            return 0;
        };
        let mut rows = 0;
        in_range(tb, projects, time_range, |_, _, bucket| {
            rows += bucket
                .chunks
                .iter()
                .map(|c| c.batch.num_rows())
                .sum::<usize>();
        });
        rows
    }

    /// Applies WAL record `seq`, a change to `table`'s buffered rows: each chunk in `changed`
    /// (from [`Buffer::chunks`], which nothing has replaced since: the WAL writer applies
    /// records one at a time, and flushes wait for the change) takes its new rows, or leaves
    /// when none are left; atomically for readers.
    pub fn change(&self, table: &str, seq: Seq, changed: Vec<Changed>) {
        let mut state = self.state.write();
        let (mut added, mut removed) = (0usize, 0usize);
        if let Some(tb) = state.tables.get_mut(table) {
            for change in changed {
                let at = &change.at;
                let Some(buckets) = tb.projects.get_mut(&at.project) else {
                    lost_chunk(table, seq, at);
                    continue;
                };
                let Some(bucket) = buckets.get_mut(&at.bucket) else {
                    lost_chunk(table, seq, at);
                    continue;
                };
                let Some(i) = bucket.chunks.iter().position(|c| c.min_seq == at.min_seq) else {
                    lost_chunk(table, seq, at);
                    continue;
                };
                removed += bucket.chunks[i].bytes;
                match change.rows {
                    Some(batch) if batch.num_rows() > 0 => {
                        added += change.bytes;
                        let chunk = &mut bucket.chunks[i];
                        chunk.batch = batch;
                        chunk.bytes = change.bytes;
                        chunk.ids = Arc::new(IdFilters::new(&self.id_filter_bytes));
                    }
                    _ => {
                        bucket.chunks.remove(i);
                        if bucket.chunks.is_empty() {
                            buckets.remove(&at.bucket);
                        }
                    }
                }
            }
            tb.projects.retain(|_, buckets| !buckets.is_empty());
        }
        state.bytes = state.bytes + added - removed;
        state.applied = state.applied.max(seq);
        drop(state);
        if removed > added {
            self.space_freed.notify_waiters();
        }
    }

    /// Chooses what the next flush of `table` writes, or `None` when nothing is due.
    ///
    /// Scheduled flushes take every bucket whose window ended by `now_micros` and every chunk
    /// inserted before `retention_cutoff_micros`; then, to keep the flushed set a WAL prefix,
    /// every other chunk holding a sequence at or below the highest one chosen.
    pub fn plan_flush(
        &self,
        table: &str,
        reason: FlushReason,
        now_micros: i64,
        retention_cutoff_micros: i64,
    ) -> Option<FlushPlan> {
        let mut state = self.state.write();
        let bucket_micros = self.options.bucket_micros;
        let tb = state.tables.get_mut(table)?;
        let mut upto: Option<Seq> = None;
        for buckets in tb.projects.values() {
            for (start, bucket) in buckets {
                let sealed = start + bucket_micros <= now_micros;
                for chunk in &bucket.chunks {
                    if reason == FlushReason::All
                        || sealed
                        || chunk.inserted_micros <= retention_cutoff_micros
                    {
                        upto = upto.max(Some(chunk.max_seq));
                    }
                }
            }
        }
        let mut upto = upto?;
        // Extend to a fixed point so no chosen chunk straddles `upto`.
        loop {
            let mut extended = upto;
            for buckets in tb.projects.values() {
                for bucket in buckets.values() {
                    for chunk in &bucket.chunks {
                        if chunk.min_seq <= upto {
                            extended = extended.max(chunk.max_seq);
                        }
                    }
                }
            }
            if extended == upto {
                break;
            }
            upto = extended;
        }
        let mut groups = Vec::new();
        let mut ids = Vec::new();
        let mut rows = 0;
        let mut projects: Vec<_> = tb.projects.iter().collect();
        projects.sort_by(|a, b| a.0.cmp(b.0));
        for (project, buckets) in projects {
            for (start, bucket) in buckets {
                let chosen: Vec<&Chunk> =
                    bucket.chunks.iter().filter(|c| c.max_seq <= upto).collect();
                if chosen.is_empty() {
                    continue;
                }
                rows += chosen.iter().map(|c| c.batch.num_rows()).sum::<usize>();
                ids.extend(chosen.iter().map(|c| (project.clone(), *start, c.min_seq)));
                groups.push((
                    project.clone(),
                    *start,
                    chosen.iter().map(|c| c.batch.clone()).collect(),
                ));
            }
        }
        tb.frozen_upto = upto;
        Some(FlushPlan {
            table: table.to_string(),
            upto,
            groups,
            ids,
            rows,
        })
    }

    /// Removes a committed plan's chunks and publishes the Delta handle that now holds them,
    /// atomically for readers. Returns the sequence up to which the WAL may be trimmed.
    ///
    /// The chunks of a `carried` partition (project, day since the epoch) stay: the commit
    /// left them out, and their rows are now in WAL record `seq` (above the plan's prefix),
    /// which they are renumbered to, so the WAL keeps it until a later flush commits them.
    pub fn complete_flush(
        &self,
        plan: &FlushPlan,
        carried: &HashMap<(String, i64), Seq>,
        committed: C,
    ) -> Seq {
        let mut state = self.state.write();
        let mut freed = 0;
        if let Some(tb) = state.tables.get_mut(&plan.table) {
            let chosen: HashSet<(&str, i64, Seq)> = plan
                .ids
                .iter()
                .map(|(p, b, s)| (p.as_str(), *b, *s))
                .collect();
            for (project, buckets) in tb.projects.iter_mut() {
                buckets.retain(|start, bucket| {
                    let kept = if carried.is_empty() {
                        None
                    } else {
                        let day = start.div_euclid(MICROS_PER_DAY);
                        carried.get(&(project.clone(), day)).copied()
                    };
                    bucket.chunks.retain_mut(|c| {
                        if !chosen.contains(&(project.as_str(), *start, c.min_seq)) {
                            return true;
                        }
                        if let Some(seq) = kept {
                            (c.min_seq, c.max_seq) = (seq, seq);
                            return true;
                        }
                        freed += c.bytes;
                        false
                    });
                    !bucket.chunks.is_empty()
                });
            }
            tb.projects.retain(|_, buckets| !buckets.is_empty());
            tb.committed = committed;
        }
        state.bytes -= freed;
        let trim = state
            .tables
            .values()
            .flat_map(|tb| tb.projects.values())
            .flat_map(|b| b.values())
            .flat_map(|b| b.chunks.iter().map(|c| c.min_seq))
            .min()
            .map_or(state.applied, |min| Seq(min.0 - 1));
        drop(state);
        self.space_freed.notify_waiters();
        trim
    }
}

/// Room reserved in the buffer for one writer's rows ([`Buffer::reserve`]); dropping it
/// returns the reservation (the rows are in the buffer by then, or were refused).
#[must_use]
pub struct Room<'a, C> {
    buffer: &'a Buffer<C>,
    bytes: usize,
}

impl<C> Drop for Room<'_, C> {
    fn drop(&mut self) {
        self.buffer.reserved.fetch_sub(self.bytes, Ordering::AcqRel);
        self.buffer.space_freed.notify_waiters();
    }
}

impl<C: Clone + Send + Sync> crate::memory::Admission for Buffer<C> {
    fn held(&self) -> usize {
        self.bytes()
    }

    fn share(&self) -> usize {
        self.budget()
    }

    fn admit_up_to(&self, bytes: usize) {
        Buffer::admit_up_to(self, bytes)
    }

    fn admitted(&self) -> usize {
        Buffer::admitted(self)
    }

    fn waits(&self) -> (u64, Duration) {
        Buffer::waits(self)
    }
}

/// A change's chunk that is no longer in the buffer: it cannot be (the WAL writer applies
/// records one at a time, flushes wait for the change), so it is said loudly if it ever is.
fn lost_chunk(table: &str, seq: Seq, at: &ChunkRef) {
    tracing::error!(
        table, %seq, project = %at.project, chunk = %at.min_seq,
        "a change's chunk left the buffer before the change applied; that chunk is not changed"
    );
    debug_assert!(false, "a changed chunk left the buffer");
}

/// Calls `each` with every bucket of `tb` in `projects` (all when `None`) overlapping
/// `[from, to]` microseconds (any when `None`). A bucket starts at or after its day's start,
/// so those are the buckets keyed in `[day of from, to]` whose latest row is at or after `from`.
fn in_range<C>(
    tb: &TableBuffer<C>,
    projects: Option<&HashSet<String>>,
    time_range: Option<(i64, i64)>,
    mut each: impl FnMut(&str, i64, &Bucket),
) {
    let (from, to) = time_range.unwrap_or((i64::MIN, i64::MAX));
    let lo = from
        .div_euclid(MICROS_PER_DAY)
        .saturating_mul(MICROS_PER_DAY);
    if lo > to {
        return;
    }
    let mut take = |project: &str, buckets: &BTreeMap<i64, Bucket>| {
        let overlapping = buckets.range(lo..=to);
        for (key, bucket) in overlapping.filter(|(_, b)| b.max_micros >= from) {
            each(project, *key, bucket);
        }
    };
    match projects {
        Some(projects) => {
            for project in projects {
                if let Some(buckets) = tb.projects.get(project) {
                    take(project, buckets);
                }
            }
        }
        None => tb.projects.iter().for_each(|(p, b)| take(p, b)),
    }
}

/// Merges the bucket's trailing small, unfrozen chunks of the last chunk's level once there
/// are [`MERGE_AFTER`] of them, so a stream of single-row inserts does not leave the bucket
/// with one batch per row. Returns (bytes added, bytes removed), or `None` if nothing merged.
fn merge_small_tail(
    bucket: &mut Bucket,
    frozen_upto: Seq,
    id_filter_bytes: &Arc<AtomicUsize>,
) -> Option<(usize, usize)> {
    let level = bucket.chunks.last()?.level;
    let tail = bucket
        .chunks
        .iter()
        .rev()
        .take_while(|c| c.level == level && c.bytes < SMALL_CHUNK_BYTES && c.min_seq > frozen_upto)
        .count();
    if tail < MERGE_AFTER {
        return None;
    }
    let start = bucket.chunks.len() - tail;
    let parts = &bucket.chunks[start..];
    let merged = concat_keeping_defaults(parts)?;
    let removed = parts.iter().map(|c| c.bytes).sum();
    let bytes = owned_bytes(&merged);
    let chunk = Chunk {
        min_seq: parts.iter().map(|c| c.min_seq).min()?,
        max_seq: parts.iter().map(|c| c.max_seq).max()?,
        inserted_micros: parts.iter().map(|c| c.inserted_micros).min()?,
        min_micros: parts.iter().map(|c| c.min_micros).min()?,
        max_micros: parts.iter().map(|c| c.max_micros).max()?,
        batch: merged,
        bytes,
        level: level.saturating_add(1),
        ids: Arc::new(IdFilters::new(id_filter_bytes)),
    };
    bucket.chunks.truncate(start);
    bucket.chunks.push(chunk);
    Some((bytes, removed))
}

/// The chunks' rows as one batch. A column that every chunk left out stays a slice of
/// ingest's shared default array instead of becoming a null array of its own.
fn concat_keeping_defaults(parts: &[Chunk]) -> Option<RecordBatch> {
    let schema = parts[0].batch.schema();
    let rows = parts.iter().map(|c| c.batch.num_rows()).sum();
    let columns = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            if parts.iter().all(|c| is_default(field, c.batch.column(i))) {
                Ok(default_column(field, rows))
            } else {
                let arrays: Vec<&dyn Array> =
                    parts.iter().map(|c| c.batch.column(i).as_ref()).collect();
                concat(&arrays)
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(schema, columns, &options).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    const MIN: i64 = 60_000_000;

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))])
            .expect("batch")
    }

    fn piece(project: &str, bucket_start: i64, values: &[i64]) -> Vec<Piece> {
        vec![Piece {
            project: project.into(),
            bucket_start,
            // Rows anywhere in the 10-minute window.
            min_micros: bucket_start,
            max_micros: bucket_start + 10 * MIN - 1,
            bytes: batch(values).get_array_memory_size(),
            batch: batch(values),
        }]
    }

    /// `b`'s snapshot of table `t` with these arguments, which must succeed.
    fn snapshot_of(
        b: &Buffer<u64>,
        table: &str,
        projects: Option<&HashSet<String>>,
        time_range: Option<(i64, i64)>,
        projection: Option<&[usize]>,
    ) -> Snapshot<u64> {
        b.snapshot(table, projects, time_range, projection)
            .expect("a loaded table")
            .expect("a projection of its columns")
    }

    /// `batch` as one piece of project `p` in bucket 0, at time 0.
    fn piece_at_zero(batch: RecordBatch) -> Piece {
        Piece {
            project: "p".into(),
            bucket_start: 0,
            min_micros: 0,
            max_micros: 0,
            bytes: owned_bytes(&batch),
            batch,
        }
    }

    fn buffer(max_bytes: usize) -> Buffer<u64> {
        let b = Buffer::new(BufferOptions {
            max_bytes,
            bucket_micros: 10 * MIN,
        });
        b.add_table("t", 0);
        b
    }

    fn rows(snapshot: &Snapshot<u64>) -> usize {
        snapshot.batches.iter().map(|b| b.num_rows()).sum()
    }

    /// A change replaces the chunks it names, drops those it empties (and their buckets),
    /// keeps the byte count and the applied sequence, and leaves a later flush a WAL prefix.
    #[test]
    fn a_change_replaces_its_chunks_and_drops_the_emptied_ones() {
        let b = buffer(1 << 30);
        b.insert("t", Seq(1), piece("p1", 0, &[1, 2, 3]), 0);
        b.insert("t", Seq(2), piece("p1", 10 * MIN, &[4]), 0);
        b.insert("t", Seq(3), piece("p2", 0, &[5]), 0);
        let p1: HashSet<String> = ["p1".to_string()].into();
        assert_eq!(b.rows_in("t", Some(&p1), None), 4);
        assert_eq!(b.rows_in("t", Some(&p1), Some((10 * MIN, i64::MAX))), 1);
        let chunks = b.chunks("t", Some(&p1), None);
        assert_eq!(chunks.len(), 2);
        let changed = chunks
            .into_iter()
            .map(|at| {
                let rows = (at.min_seq == Seq(1)).then(|| batch(&[1, 3]));
                let bytes = rows.as_ref().map_or(0, |r| r.get_array_memory_size());
                Changed { at, rows, bytes }
            })
            .collect();
        b.change("t", Seq(4), changed);
        assert_eq!(b.applied(), Seq(4));
        let snap = snapshot_of(&b, "t", None, None, None);
        assert_eq!(rows(&snap), 3, "p1: 1 and 3 left, p2's row untouched");
        assert_eq!(
            b.bytes(),
            batch(&[1, 3]).get_array_memory_size() + batch(&[5]).get_array_memory_size()
        );
        assert_eq!(b.rows_in("t", Some(&p1), Some((10 * MIN, i64::MAX))), 0);
        let plan = b.plan_flush("t", FlushReason::All, 0, 0).expect("plan");
        assert_eq!((plan.rows, plan.upto), (3, Seq(3)));
        assert_eq!(b.complete_flush(&plan, &HashMap::new(), 1), Seq(4));
    }

    #[test]
    fn accounting_tracks_inserts_and_flushes() {
        let b = buffer(1 << 30);
        b.insert("t", Seq(1), piece("p1", 0, &[1, 2, 3]), 0);
        b.insert("t", Seq(2), piece("p2", 0, &[4]), 0);
        let expected =
            batch(&[1, 2, 3]).get_array_memory_size() + batch(&[4]).get_array_memory_size();
        assert_eq!(b.bytes(), expected);
        let plan = b.plan_flush("t", FlushReason::All, 0, 0).expect("plan");
        assert_eq!(plan.rows, 4);
        assert_eq!(plan.upto, Seq(2));
        assert_eq!(b.complete_flush(&plan, &HashMap::new(), 1), Seq(2));
        assert_eq!(b.bytes(), 0);
        let snap = snapshot_of(&b, "t", None, None, None);
        assert_eq!(rows(&snap), 0);
        assert_eq!(
            snap.committed, 1,
            "the new Delta handle is published with the removal"
        );
    }

    #[test]
    fn snapshot_prunes_by_project_and_time() {
        let b = buffer(1 << 30);
        b.insert("t", Seq(1), piece("p1", 0, &[1, 2]), 0);
        b.insert("t", Seq(2), piece("p2", 0, &[3]), 0);
        b.insert("t", Seq(3), piece("p1", 20 * MIN, &[4]), 0);
        let only_p1: HashSet<String> = ["p1".to_string()].into();
        assert_eq!(rows(&snapshot_of(&b, "t", Some(&only_p1), None, None)), 3);
        let first_window = Some((MIN, 5 * MIN));
        assert_eq!(
            rows(&snapshot_of(&b, "t", Some(&only_p1), first_window, None)),
            2
        );
        let late_window = Some((25 * MIN, 26 * MIN));
        assert_eq!(rows(&snapshot_of(&b, "t", None, late_window, None)), 1);
        let only_upper_bound = Some((i64::MIN, 5 * MIN));
        assert_eq!(rows(&snapshot_of(&b, "t", None, only_upper_bound, None)), 3);
        let only_lower_bound = Some((15 * MIN, i64::MAX));
        assert_eq!(rows(&snapshot_of(&b, "t", None, only_lower_bound, None)), 1);
        let nobody: HashSet<String> = ["p9".to_string()].into();
        assert_eq!(rows(&snapshot_of(&b, "t", Some(&nobody), None, None)), 0);
    }

    #[test]
    fn scheduled_flush_takes_sealed_buckets_as_a_wal_prefix() {
        let b = buffer(1 << 30);
        // seq 1: open bucket; seq 2: sealed bucket; seq 3: open bucket.
        b.insert("t", Seq(1), piece("p", 20 * MIN, &[1]), 0);
        b.insert("t", Seq(2), piece("p", 0, &[2]), 0);
        b.insert("t", Seq(3), piece("p", 20 * MIN, &[3]), 0);
        let now = 25 * MIN;
        let plan = b
            .plan_flush("t", FlushReason::Scheduled, now, -1)
            .expect("plan");
        // The sealed bucket holds seq 2, so seq 1 (older, open bucket) must go too; seq 3 stays.
        assert_eq!(plan.upto, Seq(2));
        assert_eq!(plan.rows, 2);
        assert_eq!(
            b.complete_flush(&plan, &HashMap::new(), 1),
            Seq(2),
            "WAL trimmable up to seq 2"
        );
        assert_eq!(rows(&snapshot_of(&b, "t", None, None, None)), 1);
        // Nothing sealed and nothing past retention: no flush.
        assert!(b.plan_flush("t", FlushReason::Scheduled, now, -1).is_none());
        // Past retention it goes.
        let plan = b
            .plan_flush("t", FlushReason::Scheduled, now, 0)
            .expect("retention");
        assert_eq!(plan.upto, Seq(3));
    }

    #[test]
    fn late_rows_share_their_days_bucket_which_is_sealed_and_pruned_by_its_latest_row() {
        let b = buffer(1 << 30);
        let day = MICROS_PER_DAY;
        let now = 3 * day + 12 * 60 * MIN + 5 * MIN; // 12:05 on day 3
        // The open window keeps its own bucket; ended windows go to their day's bucket.
        assert_eq!(b.bucket_of(now - MIN, now), now - 5 * MIN);
        assert_eq!(b.bucket_of(now - 11 * MIN, now), 3 * day);
        assert_eq!(b.bucket_of(3 * day + 5 * MIN, now), 3 * day);
        assert_eq!(b.bucket_of(day + 23 * 60 * MIN, now), day);
        // Late rows of day 3 from 00:05 to 01:00, and one row in the open window.
        let late = Piece {
            project: "p".into(),
            bucket_start: 3 * day,
            min_micros: 3 * day + 5 * MIN,
            max_micros: 3 * day + 60 * MIN,
            bytes: 8,
            batch: batch(&[1, 2]),
        };
        b.insert("t", Seq(1), vec![late], now);
        b.insert("t", Seq(2), piece("p", now - 5 * MIN, &[3]), now);
        let window = |from: i64, to: i64| rows(&snapshot_of(&b, "t", None, Some((from, to)), None));
        assert_eq!(window(3 * day + 30 * MIN, 3 * day + 40 * MIN), 2);
        assert_eq!(
            window(3 * day + 2 * 60 * MIN, now - 11 * MIN),
            0,
            "after its latest row"
        );
        assert_eq!(window(3 * day + 2 * 60 * MIN, now), 1);
        assert_eq!(window(2 * day, 3 * day - 1), 0, "the day before");
        // Sealed at the next scheduled flush; the open window stays.
        let plan = b
            .plan_flush("t", FlushReason::Scheduled, now, -1)
            .expect("plan");
        assert_eq!((plan.upto, plan.rows), (Seq(1), 2));
    }

    #[test]
    fn a_projected_snapshot_holds_only_the_asked_columns() {
        let b = buffer(1 << 30);
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, true),
            Field::new("c", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("x"), None])),
                Arc::new(Int64Array::from(vec![3, 4])),
            ],
        )
        .expect("batch");
        b.insert("t", Seq(1), vec![piece_at_zero(batch)], 0);
        let snapshot = snapshot_of(&b, "t", None, None, Some(&[2, 0]));
        let projected = &snapshot.batches[0];
        let names: Vec<_> = projected
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["c", "a"]);
        assert_eq!(projected.num_rows(), 2);
        assert_eq!(
            projected.column(0).as_ref(),
            &Int64Array::from(vec![3, 4]) as &dyn Array
        );
        // No columns at all (`count(*)`) still counts the rows.
        let none = snapshot_of(&b, "t", None, None, Some(&[]));
        assert_eq!(
            (none.batches[0].num_columns(), none.batches[0].num_rows()),
            (0, 2)
        );
        assert!(
            matches!(b.snapshot("t", None, None, Some(&[3])), Some(Err(_))),
            "a column the table does not have is an error, not a wider batch"
        );
    }

    /// A late bucket holds a whole day: a snapshot keeps only the chunks whose own event
    /// times reach the range, and reports each chunk's bounds (a merge keeps their union).
    #[test]
    fn snapshots_bound_each_chunk_by_its_own_times() {
        let b = buffer(1 << 30);
        let day = 24 * 60 * MIN;
        let now = 3 * day;
        let late = |seq: u64, from: i64, to: i64| {
            let piece = Piece {
                project: "p".into(),
                bucket_start: day,
                min_micros: day + from * MIN,
                max_micros: day + to * MIN,
                bytes: 8,
                batch: batch(&[seq as i64]),
            };
            b.insert("t", Seq(seq), vec![piece], now);
        };
        late(1, 60, 120);
        late(2, 600, 660);
        let snap = |from: i64, to: i64| {
            snapshot_of(
                &b,
                "t",
                None,
                Some((day + from * MIN, day + to * MIN)),
                None,
            )
        };
        assert_eq!(snap(90, 100).times, vec![(day + 60 * MIN, day + 120 * MIN)]);
        assert_eq!(
            snap(650, 700).times,
            vec![(day + 600 * MIN, day + 660 * MIN)]
        );
        assert!(snap(200, 500).batches.is_empty(), "between the chunks");
        assert_eq!(snap(0, 24 * 60).batches.len(), 2);
        // Small chunks merge: the merged chunk is bounded by all of them.
        for seq in 3..=MERGE_AFTER as u64 {
            late(seq, 300 + seq as i64, 300 + seq as i64);
        }
        let all = snapshot_of(&b, "t", None, None, None);
        assert_eq!(all.times, vec![(day + 60 * MIN, day + 660 * MIN)]);
    }

    #[test]
    fn merged_chunks_extend_the_prefix_instead_of_splitting() {
        let b = buffer(1 << 30);
        for seq in 1..=MERGE_AFTER as u64 {
            // Alternate buckets so the open bucket's merged chunk straddles sealed seqs.
            b.insert("t", Seq(seq), piece("p", 20 * MIN, &[seq as i64]), 0);
        }
        b.insert("t", Seq(100), piece("p", 0, &[100]), 0);
        b.insert("t", Seq(101), piece("p", 20 * MIN, &[101]), 0);
        // The open bucket merged seqs 1..=32 into one chunk: the prefix ends at 100.
        let plan = b
            .plan_flush("t", FlushReason::Scheduled, 25 * MIN, -1)
            .expect("plan");
        assert_eq!(plan.upto, Seq(100));
        assert_eq!(plan.rows, MERGE_AFTER + 1);
    }

    #[test]
    fn single_row_inserts_merge_in_levels() {
        let b = buffer(1 << 30);
        let n = MERGE_AFTER * MERGE_AFTER;
        for seq in 1..=n as u64 {
            b.insert("t", Seq(seq), piece("p", 0, &[seq as i64]), 0);
        }
        let snapshot = snapshot_of(&b, "t", None, None, None);
        // 32 level-0 chunks make a level-1 chunk; 32 of those make one level-2 chunk.
        assert_eq!(snapshot.batches.len(), 1);
        assert_eq!(rows(&snapshot), n);
        b.insert("t", Seq(n as u64 + 1), piece("p", 0, &[0]), 0);
        assert_eq!(snapshot_of(&b, "t", None, None, None).batches.len(), 2);
    }

    #[test]
    fn pieces_of_bulk_batches_stay_as_inserted() {
        // 100 rows of 1 KiB strings: few rows, but past SMALL_CHUNK_BYTES, so never copied.
        let b = buffer(1 << 30);
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
        let big = StringArray::from(vec!["x".repeat(1024); 100]);
        let batch = RecordBatch::try_new(schema, vec![Arc::new(big)]).expect("batch");
        let bytes = batch.get_array_memory_size();
        assert!(bytes >= SMALL_CHUNK_BYTES);
        for seq in 1..=MERGE_AFTER as u64 {
            let piece = Piece {
                project: "p".into(),
                bucket_start: 0,
                min_micros: 0,
                max_micros: 0,
                bytes,
                batch: batch.clone(),
            };
            b.insert("t", Seq(seq), vec![piece], 0);
        }
        let snapshot = snapshot_of(&b, "t", None, None, None);
        assert_eq!(snapshot.batches.len(), MERGE_AFTER);
        assert_eq!(rows(&snapshot), 100 * MERGE_AFTER);
    }

    #[test]
    fn merged_chunks_keep_left_out_columns_shared() {
        let b = buffer(1 << 30);
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int64, false),
            Field::new("left_out", DataType::Utf8, true),
        ]));
        for seq in 1..=MERGE_AFTER as u64 {
            let field = schema.field(1);
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(vec![seq as i64])),
                    crate::engine::batch::default_column(field, 1),
                ],
            )
            .expect("batch");
            b.insert("t", Seq(seq), vec![piece_at_zero(batch)], 0);
        }
        let snapshot = snapshot_of(&b, "t", None, None, None);
        assert_eq!(snapshot.batches.len(), 1, "merged");
        let merged = &snapshot.batches[0];
        assert_eq!(merged.num_rows(), MERGE_AFTER);
        let shared = crate::engine::batch::default_column(schema.field(1), MERGE_AFTER);
        assert_eq!(
            merged.column(1).to_data().buffers()[0].as_ptr(),
            shared.to_data().buffers()[0].as_ptr(),
            "the merged chunk's left-out column is the shared default, not a new null array"
        );
        assert_eq!(b.bytes(), owned_bytes(merged));
    }

    #[test]
    fn rows_inserted_during_a_flush_survive_it() {
        let b = buffer(1 << 30);
        b.insert("t", Seq(1), piece("p", 0, &[1]), 0);
        let plan = b.plan_flush("t", FlushReason::All, 0, 0).expect("plan");
        for seq in 2..=(MERGE_AFTER as u64 + 2) {
            b.insert("t", Seq(seq), piece("p", 0, &[seq as i64]), 0);
        }
        b.complete_flush(&plan, &HashMap::new(), 1);
        assert_eq!(
            rows(&snapshot_of(&b, "t", None, None, None)),
            MERGE_AFTER + 1
        );
    }

    /// Writers let in together stay within the limit: each reserves what it is about to
    /// insert, and a writer that does not fit beside them waits until a reservation is
    /// returned; a batch larger than the whole limit goes in alone.
    #[tokio::test]
    async fn reservations_keep_writers_let_in_together_within_the_limit() {
        let b = Arc::new(buffer(100));
        let first = b.reserve(60, Duration::from_millis(1)).await.expect("room");
        assert!(
            b.reserve(60, Duration::from_millis(20)).await.is_none(),
            "60 more beside 60 of 100: waits"
        );
        let beside = b.reserve(40, Duration::from_millis(1)).await;
        assert!(beside.is_some(), "40 fits beside 60");
        drop(beside);
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.reserve(60, Duration::from_secs(30)).await.is_some() })
        };
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "waits while the first holds its room"
        );
        drop(first);
        assert!(waiter.await.expect("join"), "a returned room lets it in");
        let alone = b.reserve(500, Duration::from_millis(1)).await;
        assert!(alone.is_some(), "larger than the limit: in alone");
        assert!(
            b.reserve(1, Duration::from_millis(20)).await.is_none(),
            "nothing beside it"
        );
    }

    #[tokio::test]
    async fn writers_wait_for_space_and_time_out() {
        let b = Arc::new(buffer(64));
        b.insert("t", Seq(1), piece("p", 0, &[1, 2, 3, 4, 5, 6, 7, 8]), 0);
        assert!(b.bytes() >= 64);
        assert!(
            b.reserve(1, Duration::from_millis(20)).await.is_none(),
            "full: times out"
        );
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.reserve(1, Duration::from_secs(30)).await.is_some() })
        };
        tokio::task::yield_now().await;
        let plan = b.plan_flush("t", FlushReason::All, 0, 0).expect("plan");
        b.complete_flush(&plan, &HashMap::new(), 1);
        assert!(
            waiter.await.expect("join"),
            "space freed by the flush wakes the writer"
        );
    }

    #[tokio::test]
    async fn a_lowered_admission_holds_writers_until_it_is_raised_and_counts_their_wait() {
        let b = Arc::new(buffer(1 << 20));
        b.insert("t", Seq(1), piece("p", 0, &[1, 2, 3, 4, 5, 6, 7, 8]), 0);
        let held = b.bytes();
        assert!(b.reserve(1, Duration::from_millis(1)).await.is_some());
        assert_eq!(b.waits().0, 0, "a writer that found room did not wait");
        b.admit_up_to(held);
        assert_eq!(b.admitted(), held);
        assert!(
            b.over_high_water(),
            "lowered under what is held: flush early"
        );
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.reserve(1, Duration::from_secs(30)).await.is_some() })
        };
        tokio::task::yield_now().await;
        b.admit_up_to(usize::MAX);
        assert_eq!(b.admitted(), 1 << 20, "never above the budget");
        assert!(waiter.await.expect("join"), "raising it lets the writer in");
        assert_eq!(b.waits().0, 1);
    }
}
