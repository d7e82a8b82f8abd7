//! The flusher's core: moving buffered rows into Delta, settling failed flushes, and table
//! maintenance, with the background loops that drive them.
//!
//! [`Core::flush`] commits a WAL prefix of a table's buffered rows to Delta with the `txn`
//! version of its last record, then drops those rows from the buffer and publishes the new
//! Delta version in one step ([`Buffer::complete_flush`]), then trims the WAL. A flush that
//! fails stays *unresolved*: its chunks stay frozen in the buffer until [`Core::resolve`] has
//! re-read the log and either found the commit there or committed the same plan again.
//! Commits and publications of flushes and maintenance are serialised by one lock, so no
//! reader ever pairs a buffer state with the wrong Delta version.
//!
//! Each (project, date) partition is written on its own; one that fails while others are
//! written is left out of the commit ([`Core::leave_out_failures`]): its rows are appended to
//! the WAL again as a carried record the commit names, so they stay buffered and survive a
//! crash, and are retried at the next flush, or after `partition_attempts` such flushes moved
//! to the quarantine. A failure of every partition commits nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use datafusion::execution::{SessionState, TaskContext};
use datafusion::physical_expr::execution_props::ExecutionProps;
use deltalake::kernel::Add;
use tokio_util::sync::CancellationToken;

use crate::config::MaintenancePolicy;
use crate::engine::buffer::{Buffer, FlushPlan, FlushReason};
use crate::engine::change;
use crate::engine::delta::PartitionKey;
use crate::engine::quarantine;
use crate::engine::storage::Storage;
use crate::engine::wal::{self, Seq, Wal};
use crate::engine::{Clock, Committed, delta};
use crate::error::SqlState;

/// A flush or maintenance pass that failed; the rows it concerned stay in the buffer and WAL.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Wal(#[from] wal::Error),
    #[error(transparent)]
    Delta(Box<delta::Error>),
    /// A mutation's predicate could not be evaluated over the buffered rows.
    #[error(transparent)]
    Evaluate(datafusion::error::DataFusionError),
    #[error("table \"{0}\" does not exist")]
    UnknownTable(String),
    /// No partition of a flush could be written (the first one's error); nothing committed.
    #[error("no partition could be written: {0}")]
    Unwritten(String),
    /// A mutation matched rows of a partition no flush could write yet.
    #[error(
        "{0} matching rows are in a partition that cannot be written to Delta yet (see the flush errors in the log); nothing was changed, try again once it flushes"
    )]
    Unflushed(usize),
    /// Rows that must leave the table could not be written to the quarantine.
    #[error("cannot quarantine rows: {0}")]
    Quarantine(String),
    /// A bug: the work panicked (logged where it happened); its outcome is unknown.
    #[error("internal error: {0} panicked: {1}")]
    Panicked(&'static str, String),
}

impl From<delta::Error> for Error {
    fn from(error: delta::Error) -> Self {
        Error::Delta(Box::new(error))
    }
}

impl Error {
    /// The SQLSTATE a client that asked for this work (`VACUUM`) is answered with.
    pub fn sqlstate(&self) -> SqlState {
        match self {
            Error::Wal(e) => e.sqlstate(),
            Error::Delta(e) => e.sqlstate(),
            Error::Panicked(..) => SqlState::INTERNAL_ERROR,
            Error::Evaluate(_) => SqlState::INTERNAL_ERROR,
            Error::UnknownTable(_) => SqlState::UNDEFINED_TABLE,
            Error::Unwritten(_) | Error::Quarantine(_) | Error::Unflushed(_) => SqlState::IO_ERROR,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Table maintenance on demand (`VACUUM` over SQL): implemented by [`Core`], used by the
/// protocol front ends, which never touch storage themselves.
#[async_trait::async_trait]
pub trait Maintenance: Send + Sync {
    /// Runs one maintenance pass over `table`, or over every table when `None`. When it
    /// returns `Ok`, each pass is committed and published to readers.
    async fn maintain(&self, table: Option<&str>) -> Result<Vec<delta::MaintenanceReport>>;
}

/// How much each table stores: implemented by [`Core`], read by the SQL layer's
/// `pg_relation_size` and kin.
pub trait Sizes: Send + Sync {
    /// Bytes of the Parquet files `table`'s published Delta version references (rows still
    /// in the buffer are not counted until they flush); `None` for no such table.
    fn stored_bytes(&self, table: &str) -> Option<u64>;
}

impl Sizes for Core {
    fn stored_bytes(&self, table: &str) -> Option<u64> {
        self.tables.get(table).map(|t| t.stored_bytes())
    }
}

/// Row changes over SQL (`DELETE`, `UPDATE`): implemented by [`Core`], used by the SQL layer's
/// table provider.
#[async_trait::async_trait]
pub trait Mutations: Send + Sync {
    /// Applies `mutation` to `table`'s buffered and committed rows; `scope` bounds where in
    /// the buffer its rows can be (the statement's `project_id` and `timestamp` filters).
    /// When it returns `Ok(rows)`, the change is durable and every later query sees it.
    async fn mutate(
        &self,
        table: &str,
        mutation: &delta::Mutation,
        scope: &Scope,
        session: &SessionState,
    ) -> Result<u64>;
}

/// Where in the buffer a mutation's rows can be: its projects and time range (`None`: any).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub projects: Option<std::collections::HashSet<String>>,
    pub time_range: Option<(i64, i64)>,
}

/// When the flusher and maintenance run, and what maintenance may do.
#[derive(Debug, Clone)]
pub struct CoreOptions {
    /// Sealed buckets are flushed this often.
    pub flush_interval: Duration,
    /// Rows older than this are flushed even if their bucket is still open.
    pub buffer_retention: Duration,
    /// A maintenance pass runs this often.
    pub maintenance_interval: Duration,
    pub maintenance: MaintenancePolicy,
    /// Flushes in a row that may fail to write a partition while others are written before
    /// its rows are quarantined (`TIMEFUSION_FLUSH_PARTITION_ATTEMPTS`).
    pub partition_attempts: u32,
    /// Where quarantined rows go.
    pub quarantine_dir: std::path::PathBuf,
}

/// A flush whose files are written: what its commit holds, and the partitions it leaves out,
/// whose rows are carried in WAL records above its prefix (`(project, day) → record`).
#[derive(Debug)]
struct Pending {
    plan: FlushPlan,
    commit: delta::FlushCommit,
    carried: HashMap<(String, i64), Seq>,
    /// Rows of each file in `commit.quarantined`.
    quarantined: Vec<usize>,
    /// Rows the commit holds.
    rows: usize,
}

/// The parts the flusher, maintenance and shutdown work on.
pub struct Core {
    options: CoreOptions,
    wal: Arc<Wal>,
    buffer: Arc<Buffer<Committed>>,
    tables: HashMap<String, Arc<delta::DeltaTable>>,
    storage: Arc<Storage>,
    clock: Arc<dyn Clock>,
    /// Held across "commit to Delta, then publish the new version to the buffer" by flushes
    /// and maintenance, so readers never see a version paired with the wrong buffer state.
    commits: tokio::sync::Mutex<()>,
    /// Held by a background merge from its read to its publication, and taken before
    /// `commits` by maintenance and mutations, which rewrite or delete files a merge may be
    /// rewriting. Needed for exactly-once, not only to avoid a conflict: a merge's removes
    /// are `dataChange: false`, which deltalake's conflict check ignores, so a second
    /// rewrite of the same files would commit too and their rows would count twice.
    merging: tokio::sync::Mutex<()>,
    /// Woken by each flush that wrote files, for [`run_merger`].
    merge_wanted: tokio::sync::Notify,
    /// Per table, the last flush that failed. Its commit may be in the log even so (the store
    /// kept it, the response was lost and the re-read failed, or the request lands later).
    /// Its chunks stay in the buffer, frozen, until [`Core::resolve`] settles it: a flush
    /// planned before that would write them a second time with newer rows.
    unresolved: parking_lot::Mutex<HashMap<String, Pending>>,
    /// Per (table, partition), flushes in a row that failed to write it while writing others.
    failing: parking_lot::Mutex<HashMap<(String, delta::PartitionKey), u32>>,
    /// The functions a change record's expressions are decoded with at start-up: a mutation
    /// is logged only if its expressions read back through them ([`change::encode`]).
    functions: Arc<TaskContext>,
}

impl Core {
    /// The core over recovered state: `tables` opened, `buffer` holding the replayed rows.
    pub fn new(
        options: CoreOptions,
        wal: Arc<Wal>,
        buffer: Arc<Buffer<Committed>>,
        tables: HashMap<String, Arc<delta::DeltaTable>>,
        storage: Arc<Storage>,
        clock: Arc<dyn Clock>,
        functions: Arc<TaskContext>,
    ) -> Core {
        Core {
            options,
            wal,
            buffer,
            tables,
            storage,
            clock,
            commits: tokio::sync::Mutex::new(()),
            merging: tokio::sync::Mutex::new(()),
            merge_wanted: tokio::sync::Notify::new(),
            unresolved: Default::default(),
            failing: Default::default(),
            functions,
        }
    }

    /// Stops at shutdown, after the listeners and loops have stopped: closes the WAL (queued
    /// writes commit, new ones are refused), flushes everything, closes the store. Returns the
    /// rows flushed; rows a failed flush left stay in the WAL for the next start.
    ///
    /// A final flush that still fails after its retries (the store is down, a partition cannot
    /// be written) loses nothing: the rows stay in the WAL, which the next start replays. That
    /// is reported, with what is left, and the shutdown completes; the rows flushed are
    /// returned.
    pub async fn close(&self) -> Result<usize> {
        self.wal.close().await;
        let flushed = self.final_flush().await;
        self.storage.close().await;
        let segments = self.wal.segment_count();
        match flushed {
            Ok(rows) => {
                tracing::info!(rows, "final flush done; WAL segments left: {segments}");
                Ok(rows)
            }
            Err(e) => {
                let (rows_left, _) = self.buffer.waiting();
                tracing::error!(
                    rows_left,
                    wal_segments = segments,
                    "final flush failed; the rows left stay in the WAL and are replayed at the next start: {e}"
                );
                Ok(0)
            }
        }
    }

    /// Flushes what `reason` selects in every table; a table that fails does not stop the
    /// others. Returns the rows flushed, or the first table's error; what was not flushed
    /// stays buffered (and in the WAL) for the next attempt.
    pub async fn flush(&self, reason: FlushReason) -> Result<usize> {
        let _commits = self.commits.lock().await;
        let mut rows = 0;
        let mut failed = None;
        for (name, table) in &self.tables {
            match self.flush_table(name, table, reason, true).await {
                Ok(flushed) => rows += flushed,
                Err(e) if failed.is_none() => failed = Some(e),
                Err(e) => tracing::error!(table = %name, "flush failed: {e}"),
            }
        }
        failed.map_or(Ok(rows), Err)
    }

    /// Flushes what `reason` selects of one table, after settling its last failed flush.
    /// A partition that fails counts towards its quarantine only when `counted` (the
    /// flusher's flushes, not the ones a mutation asks for, which a client may retry at will).
    /// The caller holds `commits`.
    async fn flush_table(
        &self,
        name: &str,
        table: &delta::DeltaTable,
        reason: FlushReason,
        counted: bool,
    ) -> Result<usize> {
        let now = self.clock.now_micros();
        let cutoff = now - self.options.buffer_retention.as_micros() as i64;
        let mut rows = self.resolve(name, table).await?;
        let Some(plan) = self.buffer.plan_flush(name, reason, now, cutoff) else {
            return Ok(rows);
        };
        let started = std::time::Instant::now();
        let metrics = crate::metrics::get();
        let count = |outcome: &'static str| {
            metrics
                .flushes
                .get_or_create(&vec![("outcome", outcome.into())])
                .inc();
            metrics
                .flush_seconds
                .observe(started.elapsed().as_secs_f64());
        };
        // Under a memory squeeze the flush is what holds writers back: the cheaper codec.
        let squeezed = self.buffer.squeezed();
        let codec = if squeezed {
            delta::FlushCodec::Fast
        } else {
            delta::FlushCodec::Table
        };
        let written = match table.write_partitions(&plan, codec).await {
            Ok(written) => self.leave_out_failures(name, plan, written, counted).await,
            Err(e) => Err(e.into()),
        };
        let pending = match written {
            Ok(pending) => pending,
            Err(e) => {
                count("error");
                return Err(e);
            }
        };
        let committed = commit(table.commit_flush(&pending.commit, self.wal.id())).await;
        count(if committed.is_ok() { "ok" } else { "error" });
        match committed {
            Ok(reader) => {
                let trim_to = self.complete(name, &pending, reader);
                let removed = self.wal.trim(trim_to)?;
                let version = table.version().await;
                metrics.flushed_rows.inc_by(pending.rows as u64);
                if let Some(version) = version {
                    metrics
                        .delta_version
                        .get_or_create(&vec![("table", name.to_string())])
                        .set(version);
                }
                tracing::info!(
                    table = %name, rows = pending.rows, upto = %pending.plan.upto, version = ?version,
                    partitions_carried = pending.carried.len(), squeezed,
                    wal_segments_removed = removed, elapsed_ms = started.elapsed().as_millis() as u64,
                    "flushed to Delta"
                );
                rows += pending.rows;
                if !pending.commit.adds.is_empty() {
                    self.merge_wanted.notify_one();
                }
                Ok(rows)
            }
            Err(e) => {
                self.unresolved.lock().insert(name.to_string(), pending);
                Err(e)
            }
        }
    }

    /// Turns a plan's written partitions into what its commit holds. Partitions that failed
    /// while others were written are left out of the commit: each failure counts (when
    /// `counted`), and a partition that reached `partition_attempts` has its rows staged for
    /// the quarantine, published once the commit lands; otherwise its rows are appended to the
    /// WAL again, above the plan's prefix, so they survive the commit that skips them and
    /// flush later. Nothing is committed (the error is returned with the plan dropped, every
    /// row still buffered under its own WAL record, nothing counted) when every partition
    /// failed (the store is down), or when the WAL is closed (shutdown: the rows wait for the
    /// next start).
    async fn leave_out_failures(
        &self,
        name: &str,
        plan: FlushPlan,
        written: Vec<(PartitionKey, delta::Result<Vec<Add>>)>,
        counted: bool,
    ) -> Result<Pending> {
        let partitions = written.len();
        let mut adds = Vec::new();
        let mut failed = Vec::new();
        {
            let mut failing = self.failing.lock();
            for (key, outcome) in written {
                match outcome {
                    Ok(files) => {
                        adds.extend(files);
                        failing.remove(&(name.to_string(), key));
                    }
                    Err(e) => failed.push((key, e)),
                }
            }
        }
        crate::metrics::get()
            .flush_partition_failures
            .get_or_create(&vec![("table", name.to_string())])
            .inc_by(failed.len() as u64);
        if let Some((key, error)) = failed.first() {
            if partitions == failed.len() {
                return Err(Error::Unwritten(format!("partition {key}: {error}")));
            }
            if self.wal.is_closed() {
                return Err(Error::Unwritten(format!(
                    "partition {key} ({error}), and the WAL is closed for shutdown, so the others cannot be committed without it"
                )));
            }
        }
        let mut pending = Pending {
            commit: delta::FlushCommit {
                upto: plan.upto,
                adds,
                carried: Vec::new(),
                quarantined: Vec::new(),
            },
            carried: HashMap::new(),
            quarantined: Vec::new(),
            rows: plan.rows,
            plan,
        };
        // Decide for every partition first; then append the carried rows, and only after
        // those stage the quarantine files, so an error leaves no file staged for rows that
        // stay in the table.
        let mut carry = Vec::new();
        let mut give_up = Vec::new();
        for (key, error) in failed {
            let attempts = {
                let mut failing = self.failing.lock();
                let attempts = failing.entry((name.to_string(), key.clone())).or_insert(0);
                if counted {
                    *attempts += 1;
                }
                *attempts
            };
            let rows = rows_of(&pending.plan, &key).map_err(|source| {
                Error::from(delta::Error::Arrow {
                    table: name.to_string(),
                    source,
                })
            })?;
            pending.rows -= rows.num_rows();
            if counted && attempts >= self.options.partition_attempts {
                give_up.push((key, error, attempts, rows));
            } else {
                carry.push((key, error, attempts, rows));
            }
        }
        for (key, error, attempts, rows) in carry {
            let buffer = self.buffer.clone();
            let seq = self
                .wal
                .append_carried(
                    name,
                    &rows,
                    Box::new(move |seq| buffer.advance_applied(seq)),
                )
                .await?;
            tracing::error!(
                table = %name, partition = %key, rows = rows.num_rows(), attempts,
                limit = self.options.partition_attempts, carried_in = %seq,
                "a partition failed to flush; the others are committed without it and it is retried at the next flush: {error}"
            );
            pending.commit.carried.push(seq);
            pending.carried.insert((key.project, key.day), seq);
        }
        let dir = &self.options.quarantine_dir;
        for (i, (key, error, attempts, rows)) in give_up.into_iter().enumerate() {
            let file = format!("{name}-{}-{i}", pending.plan.upto);
            if let Err(e) = quarantine::stage(dir, &file, &rows) {
                for staged in &pending.commit.quarantined {
                    let _ = quarantine::discard(dir, staged);
                }
                return Err(Error::Quarantine(format!("partition {key}: {e}")));
            }
            tracing::error!(
                table = %name, partition = %key, rows = rows.num_rows(), attempts, file = %file,
                "a partition failed to flush {attempts} times while others flushed; its rows go to the quarantine with this flush: {error}"
            );
            self.failing.lock().remove(&(name.to_string(), key));
            pending.commit.quarantined.push(file);
            pending.quarantined.push(rows.num_rows());
        }
        Ok(pending)
    }

    /// Completes a flush whose commit landed: the buffer drops its rows (keeping the carried
    /// partitions') and publishes the new version, and its staged quarantine files are
    /// published. Returns the sequence up to which the WAL may be trimmed.
    fn complete(&self, name: &str, pending: &Pending, reader: Committed) -> Seq {
        let trim_to = self
            .buffer
            .complete_flush(&pending.plan, &pending.carried, reader);
        let dir = &self.options.quarantine_dir;
        for (file, rows) in pending.commit.quarantined.iter().zip(&pending.quarantined) {
            match quarantine::publish(dir, file, *rows) {
                Ok(path) => tracing::error!(
                    table = %name, rows, file = %path.display(),
                    "a partition's rows were moved to the quarantine"
                ),
                // Published at the next start, which finds the commit in the log.
                Err(e) => {
                    tracing::error!(table = %name, file, "cannot publish a quarantine file: {e}")
                }
            }
        }
        trim_to
    }

    /// Merges the small files of each partition where a merge is due
    /// ([`delta::DeltaTable::merges_due`]), one partition at a time, and publishes each
    /// merged version. A merge does not hold `commits` while it reads and writes, so flushes
    /// go on; only its publication waits for them. No merge starts while the memory governor
    /// holds the buffer below half its share ([`Buffer::squeezed`]): under a tight budget
    /// ingest and the budget come first, and the next flush after the squeeze eases wakes
    /// the merger again. Once `shutdown` is cancelled no merge starts; the one in progress
    /// finishes. A partition whose merge fails is logged and skipped: the others are merged.
    /// Returns the files merged away, or the first error when a merge failed and none merged.
    pub async fn merge_small_files(&self, shutdown: &CancellationToken) -> Result<u64> {
        let policy = &self.options.maintenance;
        let metrics = crate::metrics::get();
        let mut merged = 0;
        let mut failed = None;
        for (name, table) in &self.tables {
            if self.buffer.squeezed() {
                // Not even the files are listed: under a squeeze the CPU is ingest's.
                return Ok(merged);
            }
            for merge in table.merges_due(policy).await {
                if shutdown.is_cancelled() {
                    return Ok(merged);
                }
                if self.buffer.squeezed() {
                    // A merge's working memory would come out of the buffer's admission, and
                    // a smaller buffer flushes smaller files still: merge once there is room.
                    tracing::debug!(table = %name, "merges wait: the memory budget holds the buffer below half its share");
                    return Ok(merged);
                }
                let _merging = self.merging.lock().await;
                let started = std::time::Instant::now();
                let outcome = match crate::panics::catch(table.merge(&merge)).await {
                    Ok(outcome) => outcome.map_err(Error::from),
                    Err(message) => Err(Error::Panicked("a merge", message)),
                };
                let labels = |outcome: &'static str| {
                    vec![("table", name.to_string()), ("outcome", outcome.into())]
                };
                let published = match outcome {
                    // Nothing to merge after all (deltalake bins neighbouring files).
                    Ok((0, _)) => continue,
                    Ok(files) => {
                        let _commits = self.commits.lock().await;
                        // A failed flush may be in the log this reads: settle it first, or
                        // the published version would hold rows the buffer still serves.
                        match self.resolve(name, table).await {
                            Ok(_) => table.refreshed_reader().await.map_err(Error::from),
                            Err(e) => Err(e),
                        }
                        .map(|reader| {
                            self.buffer.replace_committed(name, reader);
                            files
                        })
                    }
                    Err(e) => Err(e),
                };
                match published {
                    Ok((removed, added)) => {
                        metrics.merges.get_or_create(&labels("ok")).inc();
                        metrics
                            .merged_files
                            .get_or_create(&vec![("table", name.to_string())])
                            .inc_by(removed);
                        tracing::info!(
                            table = %name, partition = %merge, tier_bytes = merge.target_bytes,
                            small_files = merge.small_files, files_removed = removed,
                            files_added = added, elapsed_ms = started.elapsed().as_millis() as u64,
                            "merged small files"
                        );
                        merged += removed;
                    }
                    Err(e) => {
                        metrics.merges.get_or_create(&labels("error")).inc();
                        tracing::error!(
                            table = %name, partition = %merge,
                            "merging small files failed; the others are merged, this one is tried again later: {e}"
                        );
                        failed.get_or_insert(e);
                    }
                }
            }
        }
        match failed {
            Some(e) if merged == 0 => Err(e),
            _ => Ok(merged),
        }
    }

    /// Why the WAL refuses writes, if it does (for `/ready`).
    pub fn wal_failure(&self) -> Option<String> {
        self.wal.failure()
    }

    /// Settles `table`'s last failed flush, if any, before anything else of the table is
    /// flushed or published: when the re-read log holds it, its rows leave the buffer;
    /// otherwise the same plan is committed again, never a larger one, so an earlier attempt
    /// that lands late is recognised by its `txn` version instead of being taken for another
    /// writer's commit. Returns the rows settled; on error the plan stays unresolved.
    async fn resolve(&self, name: &str, table: &delta::DeltaTable) -> Result<usize> {
        let Some(pending) = self.unresolved.lock().remove(name) else {
            return Ok(0);
        };
        let upto = pending.commit.upto;
        let settled = match table.landed(self.wal.id(), upto).await {
            Ok(true) => {
                tracing::warn!(
                    table = %name, rows = pending.rows, %upto,
                    "a flush that reported an error is in the Delta log; its rows leave the buffer"
                );
                table.reader().await.map_err(Error::from)
            }
            Ok(false) => commit(table.commit_flush(&pending.commit, self.wal.id())).await,
            Err(e) => Err(e.into()),
        };
        match settled {
            Ok(reader) => {
                let trim_to = self.complete(name, &pending, reader);
                self.wal.trim(trim_to)?;
                Ok(pending.rows)
            }
            Err(e) => {
                self.unresolved.lock().insert(name.to_string(), pending);
                Err(e)
            }
        }
    }

    /// How many buffered rows of `table` (within `scope`) `mutation` would change.
    fn buffered_matches(
        &self,
        table: &str,
        mutation: &delta::Mutation,
        scope: &Scope,
        session: &SessionState,
    ) -> Result<usize> {
        let Some(delta_table) = self.tables.get(table) else {
            return Err(Error::UnknownTable(table.to_string()));
        };
        let compiled = change::Compiled::new(
            mutation,
            delta_table.schema().schema.clone(),
            session.execution_props(),
        )
        .map_err(Error::Evaluate)?;
        let chunks = self
            .buffer
            .chunks(table, scope.projects.as_ref(), scope.time_range);
        chunks.iter().try_fold(0, |matches, chunk| {
            let selected = compiled.matches(&chunk.batch).map_err(Error::Evaluate)?;
            Ok(matches + selected.true_count())
        })
    }

    /// Applies `mutation` to buffered rows alone, as a change record in the WAL
    /// ([`change`]), when its expressions can be logged, its scope reaches at most
    /// [`change::MAX_ROWS`] buffered rows, and no committed row matches it:
    /// returns the rows changed once the record is durable and applied, or `None` when the
    /// mutation must take the Delta path. The caller holds `commits`, so no flush takes rows
    /// out of the buffer, and no commit adds any to Delta, until the record is applied.
    async fn change_buffered(
        &self,
        table: &str,
        delta_table: &delta::DeltaTable,
        mutation: &delta::Mutation,
        scope: &Scope,
        session: &SessionState,
    ) -> Result<Option<u64>> {
        let reached = self
            .buffer
            .rows_in(table, scope.projects.as_ref(), scope.time_range);
        if reached > change::MAX_ROWS {
            return Ok(None);
        }
        let Some(body) = change::encode(mutation, scope, &self.functions) else {
            return Ok(None);
        };
        let Some(committed) = self.buffer.committed(table) else {
            return Err(Error::UnknownTable(table.to_string()));
        };
        let checking = std::time::Instant::now();
        let in_delta = delta::any_row(&committed, mutation.predicate(), session)
            .await
            .map_err(Error::Evaluate)?;
        tracing::debug!(
            table,
            in_delta,
            elapsed_us = checking.elapsed().as_micros() as u64,
            "committed rows checked for a mutation"
        );
        if in_delta {
            return Ok(None);
        }
        let compiled = change::Compiled::new(
            mutation,
            delta_table.schema().schema.clone(),
            &ExecutionProps::new(),
        )
        .map_err(Error::Evaluate)?;
        // What the writer thread's check found: the rows changed, or the statement's error.
        let outcome = Arc::new(parking_lot::Mutex::new(Ok(0)));
        let check = {
            let (buffer, outcome) = (self.buffer.clone(), outcome.clone());
            let (table, scope) = (table.to_string(), scope.clone());
            Box::new(move |_seq: Seq| -> Option<wal::Apply> {
                // On the WAL's writer thread: a panic in the statement's expressions must end
                // the statement, not the thread every writer waits on.
                let found = crate::panics::catch_now(|| {
                    let chunks = buffer.chunks(&table, scope.projects.as_ref(), scope.time_range);
                    change::changes(&compiled, chunks)
                });
                match found {
                    Ok(Ok((rows, changed))) => {
                        *outcome.lock() = Ok(rows);
                        (rows > 0).then(|| -> wal::Apply {
                            Box::new(move |seq| buffer.change(&table, seq, changed))
                        })
                    }
                    Ok(Err(e)) => {
                        *outcome.lock() = Err(Error::Evaluate(e));
                        None
                    }
                    Err(message) => {
                        *outcome.lock() = Err(Error::Panicked("a mutation", message));
                        None
                    }
                }
            })
        };
        let logged = self.wal.append_checked(table, &body, check).await?;
        let rows = std::mem::replace(&mut *outcome.lock(), Ok(0))?;
        tracing::debug!(table, operation = mutation.verb(), rows, record = ?logged, "mutation of buffered rows logged");
        Ok(Some(rows))
    }

    /// Flushes everything at shutdown, retrying a failed flush a few times with backoff (a
    /// store hiccup, a commit race with another writer). What still fails stays in the WAL
    /// and is replayed at the next start.
    pub async fn final_flush(&self) -> Result<usize> {
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

#[async_trait::async_trait]
impl Mutations for Core {
    /// Buffered rows the mutation would change are flushed first (the whole table's buffer, a
    /// WAL prefix as always), so the mutation itself is one Delta commit over rows that are all
    /// in Delta: durable when it returns, applied exactly once (a retried commit conflicts
    /// with its own earlier success, since the files it rewrites are gone), never replayed. The
    /// flush and the mutation each publish their version atomically, so a reader sees the
    /// table before or after the statement, never half of it.
    async fn mutate(
        &self,
        table: &str,
        mutation: &delta::Mutation,
        scope: &Scope,
        session: &SessionState,
    ) -> Result<u64> {
        let Some(delta_table) = self.tables.get(table) else {
            return Err(Error::UnknownTable(table.to_string()));
        };
        let started = std::time::Instant::now();
        let _merging = self.merging.lock().await;
        let _commits = self.commits.lock().await;
        self.resolve(table, delta_table).await?;
        if let Some(rows) = self
            .change_buffered(table, delta_table, mutation, scope, session)
            .await?
        {
            count_mutated(mutation, "buffer", rows);
            return Ok(rows);
        }
        let buffered = self.buffered_matches(table, mutation, scope, session)?;
        if buffered > 0 {
            self.flush_table(table, delta_table, FlushReason::All, false)
                .await?;
            // A partition the flush could not write stays buffered (carried): the mutation
            // would miss its rows, so it waits until that partition can be written.
            let left = self.buffered_matches(table, mutation, scope, session)?;
            if left > 0 {
                return Err(Error::Unflushed(left));
            }
        }
        let mutated = match crate::panics::catch(delta_table.mutate(mutation, session)).await {
            Ok(mutated) => mutated.map_err(Error::from),
            Err(message) => Err(Error::Panicked("a mutation", message)),
        };
        match mutated {
            Ok((rows, reader)) => {
                self.buffer.replace_committed(table, reader);
                count_mutated(mutation, "delta", rows);
                let version = delta_table.version().await;
                tracing::info!(
                    table = %table, operation = mutation.verb(), rows, buffered_rows = buffered, ?version,
                    elapsed_ms = started.elapsed().as_millis() as u64, "mutation committed"
                );
                Ok(rows)
            }
            Err(e) => {
                // The commit may have landed with its response lost: serve what the log holds.
                match delta_table.refreshed_reader().await {
                    Ok(reader) => self.buffer.replace_committed(table, reader),
                    Err(e) => tracing::warn!(table = %table, "cannot re-read the log: {e}"),
                }
                Err(e)
            }
        }
    }
}

/// Counts `rows` changed by `mutation` on `path` (`buffer` or `delta`) in `/metrics`.
fn count_mutated(mutation: &delta::Mutation, path: &str, rows: u64) {
    crate::metrics::get()
        .mutated_rows
        .get_or_create(&vec![
            ("operation", mutation.verb().into()),
            ("path", path.into()),
        ])
        .inc_by(rows);
}

/// The rows `plan` holds for partition `key`, as one batch.
fn rows_of(plan: &FlushPlan, key: &PartitionKey) -> arrow::error::Result<RecordBatch> {
    let batches = delta::partitions(plan)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, batches)| batches)
        .unwrap_or_default();
    let schema = batches
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| Arc::new(arrow::datatypes::Schema::empty()));
    arrow::compute::concat_batches(&schema, &batches)
}

/// Attempts of the shutdown flush before the server exits with the rows left in the WAL.
const FINAL_FLUSH_ATTEMPTS: u32 = 5;

#[async_trait::async_trait]
impl Maintenance for Core {
    async fn maintain(&self, table: Option<&str>) -> Result<Vec<delta::MaintenanceReport>> {
        let policy = &self.options.maintenance;
        let mut reports = Vec::new();
        for (name, delta_table) in &self.tables {
            if table.is_some_and(|t| t != name) {
                continue;
            }
            let _merging = self.merging.lock().await;
            let _commits = self.commits.lock().await;
            // A failed flush may be in the log this pass reads: settle it first, or the
            // published version would hold rows the buffer still serves.
            self.resolve(name, delta_table).await?;
            let started = std::time::Instant::now();
            let (report, reader) = delta_table.maintain(policy).await?;
            self.buffer.replace_committed(name, reader);
            tracing::info!(
                table = %name, compacted_files = report.files_removed, written_files = report.files_added,
                retention_files_removed = report.retention_files_removed,
                vacuumed_files = report.files_vacuumed, version = ?report.version,
                elapsed_ms = started.elapsed().as_millis() as u64, "maintenance done"
            );
            reports.push(report);
        }
        Ok(reports)
    }
}

/// Flushes sealed buckets every interval, everything under memory pressure; retries failed
/// flushes with exponential backoff (the rows stay buffered and in the WAL meanwhile).
pub async fn run_flusher(core: Arc<Core>, shutdown: CancellationToken) {
    let interval = core.options.flush_interval;
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
        let flushed = crate::panics::catch(core.flush(reason))
            .await
            .unwrap_or_else(|m| Err(Error::Panicked("the flusher", m)));
        match flushed {
            Ok(_) => backoff = Duration::ZERO,
            Err(e) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(500), Duration::from_secs(60));
                tracing::error!("flush failed, retrying in {backoff:?}: {e}");
            }
        }
    }
}

/// Merges small files ([`Core::merge_small_files`]) after each flush that wrote files, pass
/// after pass while merges are due (a merge can make the next tier due); nothing when
/// background merges are off. Runs on a thread of its own at a lower CPU priority
/// ([`MERGE_NICE`]), with a runtime of its own: a merge's Parquet decoding and encoding give
/// way to ingest and queries, and deltalake writes a checkpoint synchronously, blocking the
/// thread the commit that reaches one runs on, which must not be one of the server's. A
/// failed pass is logged and retried after the next flush, at the soonest after a backoff
/// (the files stay as they are meanwhile; nothing is lost). Returns once `shutdown` is
/// cancelled and the merge in progress has finished.
pub async fn run_merger(core: Arc<Core>, shutdown: CancellationToken) {
    if core.options.maintenance.merge_tiers().is_empty() {
        return;
    }
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("timefusion-merge".into())
        .stack_size(MERGE_STACK_BYTES)
        .spawn(move || {
            lower_priority();
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(merge_loop(core, shutdown)),
                Err(e) => tracing::error!(
                    "cannot start the merger's runtime; small files wait for the maintenance pass: {e}"
                ),
            }
            let _ = done.send(());
        });
    match spawned {
        Ok(_) => {
            let _ = finished.await;
        }
        Err(e) => tracing::error!(
            "cannot start the merger's thread; small files wait for the maintenance pass: {e}"
        ),
    }
}

/// The merger thread's nice value: above the server's threads (0), so merges use the CPU
/// ingest and queries leave.
const MERGE_NICE: i32 = 10;

/// The merger thread's stack: deltalake plans each merge's scan with DataFusion.
const MERGE_STACK_BYTES: usize = 16 << 20;

/// Gives the calling thread (and the threads it starts) [`MERGE_NICE`].
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority takes integer arguments and touches no memory of ours; on Linux
        // the nice value is per thread, and `gettid` names the calling one.
        let set = unsafe {
            libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, MERGE_NICE)
        };
        if set != 0 {
            tracing::warn!(
                "cannot lower the merger's priority; merges run at the server's: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// The merger's loop, on its own thread ([`run_merger`]).
async fn merge_loop(core: Arc<Core>, shutdown: CancellationToken) {
    let mut backoff = Duration::ZERO;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = core.merge_wanted.notified() => {}
        }
        if !backoff.is_zero() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
        }
        loop {
            let merged = crate::panics::catch(core.merge_small_files(&shutdown))
                .await
                .unwrap_or_else(|m| Err(Error::Panicked("the merger", m)));
            match merged {
                Ok(0) => {
                    backoff = Duration::ZERO;
                    break;
                }
                Ok(_) if shutdown.is_cancelled() => return,
                Ok(_) => backoff = Duration::ZERO,
                Err(e) => {
                    backoff = (backoff * 2).clamp(Duration::from_secs(1), Duration::from_secs(300));
                    tracing::error!(
                        "merging small files failed, retrying after {backoff:?} and the next flush: {e}"
                    );
                    break;
                }
            }
        }
    }
}

/// A flush's Delta commit, with a panic in it (a bug, ours or delta-rs's) taken as a commit
/// whose outcome is unknown: the caller keeps the plan unresolved, and [`Core::resolve`]
/// re-reads the log before anything else of the table is flushed, as after a lost response.
async fn commit(
    flush: impl std::future::Future<Output = delta::Result<Committed>>,
) -> Result<Committed> {
    match crate::panics::catch(flush).await {
        Ok(flushed) => flushed.map_err(Error::from),
        Err(message) => Err(Error::Panicked("a flush", message)),
    }
}

/// Runs a maintenance pass over every table each interval. Failures are logged and retried at
/// the next interval; a pass never changes which rows a query sees (except retention).
pub async fn run_maintenance(core: Arc<Core>, shutdown: CancellationToken) {
    let interval = core.options.maintenance_interval;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        // A pass runs to completion even when shutdown begins: the final flush waits for it
        // rather than racing a half-finished commit.
        let maintained = crate::panics::catch(core.maintain(None))
            .await
            .unwrap_or_else(|m| Err(Error::Panicked("maintenance", m)));
        if let Err(e) = maintained {
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
    use crate::engine::buffer::BufferOptions;
    use crate::engine::ingest::Ingest;
    use crate::engine::schema::Catalog;
    use crate::engine::storage::{CachedStore, FoyerCache};
    use crate::engine::wal::{Seq, WalOptions};
    use datafusion::prelude::SessionContext;

    /// A store that can keep a Delta commit and then lose its response and go down, as S3 may
    /// mid-outage: the commit is in the log, the writer sees an error and cannot re-read.
    #[derive(Debug, Default)]
    struct Faults {
        /// The next commit is stored, then its response is lost and the store goes down.
        lose_next_commit: AtomicBool,
        /// The next commit is refused before it is stored, and the store goes down.
        refuse_next_commit: AtomicBool,
        /// The next commit is stored, then the store panics (a bug in a library).
        panic_after_next_commit: AtomicBool,
        down: AtomicBool,
        /// Writes of data files under this partition folder fail (`project_id=…`).
        refuse_partition: parking_lot::Mutex<Option<String>>,
        /// The next `OPTIMIZE` commit waits, once it is about to be stored, until the second
        /// notify; the first is notified when it gets there.
        hold_optimize:
            parking_lot::Mutex<Option<(Arc<tokio::sync::Notify>, Arc<tokio::sync::Notify>)>>,
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

        fn check_partition(&self, location: &Path) -> object_store::Result<()> {
            match &*self.faults.refuse_partition.lock() {
                Some(folder) if location.as_ref().contains(folder.as_str()) => {
                    Err(object_store::Error::Generic {
                        store: "flaky",
                        source: format!("cannot write under {folder}").into(),
                    })
                }
                _ => Ok(()),
            }
        }

        fn is_commit(location: &Path) -> bool {
            location.as_ref().contains("_delta_log/") && location.as_ref().ends_with(".json")
        }

        /// Before a write to `location`: a refused commit takes the store down.
        fn before_write(&self, location: &Path) -> object_store::Result<()> {
            self.check()?;
            self.check_partition(location)?;
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
                && self
                    .faults
                    .panic_after_next_commit
                    .swap(false, Ordering::SeqCst)
            {
                panic!("the store panicked after storing {location}");
            }
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
            let optimize = Self::is_commit(location)
                && payload
                    .iter()
                    .any(|chunk| chunk.windows(8).any(|w| w == b"OPTIMIZE"));
            let gate = if optimize {
                self.faults.hold_optimize.lock().take()
            } else {
                None
            };
            if let Some((reached, release)) = gate {
                reached.notify_one();
                release.notified().await;
            }
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
            self.check_partition(location)?;
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

    fn spans_of(project: &str, prefix: &str, rows: usize) -> RecordBatch {
        let hour_ago = NOW - 3_600_000_000;
        let columns: Vec<(&str, ArrayRef)> = vec![
            (
                "project_id",
                Arc::new(StringArray::from(vec![project; rows])),
            ),
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
        dir: tempfile::TempDir,
    }

    /// The fixture's WAL settings.
    fn wal_options() -> WalOptions {
        WalOptions {
            segment_bytes: 1 << 20,
            group_max_bytes: 1 << 20,
            compression: Default::default(),
            in_place_sync_max: crate::engine::wal::IN_PLACE_SYNC_MAX,
        }
    }

    impl Fixture {
        /// Ends the fixture's process: everything that holds the WAL's lock goes, the folder
        /// stays.
        fn end(self) -> tempfile::TempDir {
            let Fixture {
                core,
                ingest,
                table,
                faults,
                dir,
            } = self;
            drop((core, ingest, table, faults));
            dir
        }

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
                delta::DeltaTable::open_or_create(
                    &storage,
                    schema,
                    deltalake::parquet::basic::Compression::ZSTD(Default::default()),
                    crate::config::DEFAULT_CHECKPOINT_INTERVAL,
                )
                .await
                .expect("table"),
            );
            let wal = Arc::new(Wal::open(&dir.path().join("wal"), wal_options()).expect("wal"));
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
            let config = crate::config::Config::parse_from(["timefusion"]);
            let options = CoreOptions {
                flush_interval: config.flush_interval(),
                buffer_retention: config.buffer_retention(),
                maintenance_interval: Duration::from_secs(config.maintenance_interval_secs),
                maintenance: config.maintenance_policy(),
                partition_attempts: config.flush_partition_attempts,
                quarantine_dir: dir.path().join("quarantine"),
            };
            let core = Core::new(
                options,
                wal,
                buffer,
                HashMap::from([(TABLE.to_string(), table.clone())]),
                storage,
                clock,
                Arc::new(TaskContext::default()),
            );
            Fixture {
                core,
                ingest,
                table,
                faults,
                dir,
            }
        }

        async fn write(&self, prefix: &str, rows: usize) {
            self.write_to("p", prefix, rows).await
        }

        async fn write_to(&self, project: &str, prefix: &str, rows: usize) {
            self.ingest
                .write(
                    TABLE,
                    spans_of(project, prefix, rows),
                    crate::engine::ingest::Via::Insert,
                )
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

        /// The table's buffered chunks with the Delta version published with them.
        fn snapshot(&self) -> crate::engine::buffer::Snapshot<Committed> {
            self.core
                .buffer
                .snapshot(TABLE, None, None, None)
                .expect("snapshot")
                .expect("no projection")
        }

        /// Rows a query sees: the buffer's chunks with the Delta version published with them.
        async fn visible_rows(&self) -> usize {
            let snapshot = self.snapshot();
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

    /// A batch that declares more rows than any client sends is refused before the table's
    /// columns are built at its length (a forged Arrow header declared billions of rows with
    /// no data, and the allocations aborted the process).
    #[tokio::test]
    async fn a_batch_too_large_for_the_buffer_is_refused_before_it_is_built() {
        let f = Fixture::new().await;
        // 100 M rows of about 500 bytes: past the 16 GiB ceiling.
        let rows = 100_000_000;
        let forged = RecordBatch::try_new_with_options(
            Arc::new(arrow::datatypes::Schema::empty()),
            vec![],
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .expect("batch");
        let refused = f
            .ingest
            .write(TABLE, forged, crate::engine::ingest::Via::Flight)
            .await
            .expect_err("refused");
        assert_eq!(refused.sqlstate(), SqlState::PROGRAM_LIMIT_EXCEEDED);
        assert!(refused.to_string().contains("100000000 rows"), "{refused}");
    }

    /// A shutdown while the store is down completes, and the rows it could not flush are in
    /// the WAL for the next start.
    #[tokio::test]
    async fn a_shutdown_that_cannot_flush_keeps_the_rows_in_the_wal() {
        let f = Fixture::new().await;
        f.write("a", 10).await;
        f.faults.down.store(true, Ordering::SeqCst);
        assert_eq!(f.core.close().await.expect("a clean shutdown"), 0);
        let dir = f.end();
        assert_eq!(records_in_wal(&dir).iter().sum::<usize>(), 10);
    }

    /// Reopens the WAL of a fixture whose process has ended and returns the rows of each
    /// record, in order.
    fn records_in_wal(dir: &tempfile::TempDir) -> Vec<usize> {
        let wal = Wal::open(&dir.path().join("wal"), wal_options()).expect("the WAL reopens");
        let mut records = Vec::new();
        wal.replay(|record| {
            records.push(crate::engine::wal::decode_batch(record.ipc)?.num_rows());
            Ok(())
        })
        .expect("replay");
        records
    }

    /// Small writes waiting at the same time, once enough are under way, go to the WAL as one
    /// record and to the buffer as one insert per project; each writer is answered with its
    /// own rows, and every row is there once, live and after a restart.
    #[tokio::test]
    async fn small_writes_waiting_together_share_one_wal_record() {
        let f = Fixture::new().await;
        let writes = (0..100).map(|i| {
            f.ingest.write(
                TABLE,
                spans_of(&format!("p{}", i % 4), &format!("w{i}-"), 1 + i % 3),
                crate::engine::ingest::Via::Insert,
            )
        });
        let answers = futures::future::join_all(writes).await;
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.expect("written"), 1 + i % 3);
        }
        let expected: usize = (0..100).map(|i| 1 + i % 3).sum();
        assert_eq!(f.visible_rows().await, expected);
        // The first writes went alone; the rest went in as one chunk per project.
        let alone = crate::engine::ingest::COMBINE_AFTER;
        assert_eq!(f.snapshot().batches.len(), alone + 4);

        f.faults.down.store(true, Ordering::SeqCst);
        f.core.close().await.expect("a clean shutdown");
        let dir = f.end();
        // The first writes went alone, the other ones were all queued before the combining
        // task's first round.
        let mut records: Vec<usize> = (0..alone).map(|i| 1 + i % 3).collect();
        records.push(expected - records.iter().sum::<usize>());
        assert_eq!(records_in_wal(&dir), records);
    }

    /// A write that its checks refuse, combined with others, fails alone: the others are
    /// stored, each answered as if it had been written on its own.
    #[tokio::test]
    async fn a_refused_write_among_combined_ones_fails_alone() {
        let f = Fixture::new().await;
        let far_future = {
            let good = spans_of("p", "bad", 1);
            let mut columns = good.columns().to_vec();
            columns[1] = Arc::new(
                TimestampMicrosecondArray::from(vec![300_000_000_000_000_000]).with_timezone("UTC"),
            );
            RecordBatch::try_new(good.schema(), columns).expect("batch")
        };
        let batches = (0..20)
            .map(|i| spans_of("p", &format!("w{i}-"), 1))
            .chain([far_future])
            .chain((20..40).map(|i| spans_of("p", &format!("w{i}-"), 1)));
        let writes = batches.map(|batch| {
            f.ingest
                .write(TABLE, batch, crate::engine::ingest::Via::Insert)
        });
        let answers = futures::future::join_all(writes).await;
        for (i, answer) in answers.into_iter().enumerate() {
            match answer {
                Ok(rows) => assert!(i != 20 && rows == 1, "write {i}"),
                Err(e) => {
                    assert_eq!(i, 20, "{e}");
                    assert_eq!(e.sqlstate(), SqlState::DATETIME_FIELD_OVERFLOW, "{e}");
                }
            }
        }
        assert_eq!(f.visible_rows().await, 40);
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

    /// A panic inside a flush (here the store's, after the commit is stored) leaves the
    /// flusher running and the outcome unknown: the next flush re-reads the log, finds the
    /// commit and does not write its rows again.
    #[tokio::test]
    async fn a_flush_that_panicked_is_settled_as_one_whose_response_was_lost() {
        let f = Fixture::new().await;
        f.write("a", 10).await;
        f.faults
            .panic_after_next_commit
            .store(true, Ordering::SeqCst);
        let error = f.core.flush(FlushReason::All).await.expect_err("panicked");
        assert!(matches!(error, Error::Panicked(..)), "{error}");
        assert_eq!(error.sqlstate(), SqlState::INTERNAL_ERROR);
        f.write("b", 5).await;
        assert_eq!(f.core.flush(FlushReason::All).await.expect("flush"), 15);
        assert_eq!(f.delta_rows().await, 15, "every row once in Delta");
        assert_eq!(f.visible_rows().await, 15);
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
        Maintenance::maintain(&f.core, None)
            .await
            .expect("maintenance");
        assert_eq!(f.visible_rows().await, 10, "no row counted twice");
        assert_eq!(f.delta_rows().await, 10);
    }

    /// Flushes `flushes` sets of 10 rows of project `p`, one file each.
    async fn small_files(f: &Fixture, flushes: usize) {
        for i in 0..flushes {
            f.write(&format!("s{i}-"), 10).await;
            assert_eq!(f.core.flush(FlushReason::All).await.expect("flush"), 10);
        }
    }

    /// A partition past `TIMEFUSION_MERGE_MIN_FILES` small files is merged into one file in
    /// the background, and every row is still seen once, in Delta and by queries.
    #[tokio::test]
    async fn small_files_are_merged_and_every_row_stays_once() {
        let f = Fixture::new().await;
        let policy = &f.core.options.maintenance;
        small_files(&f, policy.merge_min_files - 1).await;
        assert!(f.table.merges_due(policy).await.is_empty(), "not yet due");
        small_files(&f, 1).await;
        let due = f.table.merges_due(policy).await;
        assert_eq!(due.len(), 1, "{due:?}");
        assert_eq!(due[0].small_files, policy.merge_min_files);
        assert_eq!(due[0].to_string(), format!("date=2025-11-24/project_id=p"));
        assert_eq!(f.table.file_count().await, policy.merge_min_files);
        let shutdown = CancellationToken::new();
        let merged = f.core.merge_small_files(&shutdown).await.expect("merge");
        assert_eq!(merged, policy.merge_min_files as u64);
        assert_eq!(f.table.file_count().await, 1);
        assert!(f.table.merges_due(policy).await.is_empty());
        let rows = 10 * policy.merge_min_files;
        assert_eq!(f.delta_rows().await, rows);
        assert_eq!(f.visible_rows().await, rows);
        assert_eq!(
            f.core.merge_small_files(&shutdown).await.expect("nothing"),
            0
        );
    }

    /// Flushes commit while a merge is writing, between its read and its commit: the merge
    /// commits after them (Delta's conflict check passes: it only rewrote files), the version
    /// it publishes holds their rows, and nothing is counted twice or lost. On two worker
    /// threads, as the server runs: on a one-thread runtime the third flush, which writes the
    /// table's second checkpoint, never finished (deltalake writes checkpoints synchronously,
    /// blocking the thread, and the read it then waits for needs the runtime, likely the
    /// Foyer cache's).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flushes_commit_while_a_merge_writes_and_every_row_stays_once() {
        let f = Fixture::new().await;
        let min_files = f.core.options.maintenance.merge_min_files;
        small_files(&f, min_files).await;
        let reached = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(tokio::sync::Notify::new());
        *f.faults.hold_optimize.lock() = Some((reached.clone(), release.clone()));
        let shutdown = CancellationToken::new();
        let before = f.table.version().await.expect("version");
        let both = tokio::time::timeout(Duration::from_secs(60), async {
            tokio::join!(f.core.merge_small_files(&shutdown), async {
                reached.notified().await;
                small_files(&f, 3).await;
                assert_eq!(
                    f.table.version().await,
                    Some(before + 3),
                    "the flushes committed while the merge waited"
                );
                release.notify_one();
            })
        });
        let (merged, ()) = both.await.expect("the merge reaches its commit");
        assert_eq!(
            merged.expect("the merge commits after the flushes"),
            min_files as u64
        );
        assert_eq!(f.table.version().await, Some(before + 4));
        let rows = 10 * (min_files + 3);
        assert_eq!(f.delta_rows().await, rows);
        assert_eq!(
            f.visible_rows().await,
            rows,
            "the published version has every flush"
        );
        assert_eq!(f.table.file_count().await, 1 + 3);
    }

    /// No merge starts while the memory governor holds the buffer's admission below half its
    /// share; once it is raised, the due merge runs.
    #[tokio::test]
    async fn merges_wait_while_the_memory_budget_squeezes_the_buffer() {
        let f = Fixture::new().await;
        let min_files = f.core.options.maintenance.merge_min_files;
        small_files(&f, min_files).await;
        let shutdown = CancellationToken::new();
        let share = f.core.buffer.budget();
        f.core.buffer.admit_up_to(share / 2 - 1);
        assert_eq!(f.core.merge_small_files(&shutdown).await.expect("pass"), 0);
        assert_eq!(f.table.file_count().await, min_files, "nothing merged");
        f.core.buffer.admit_up_to(share / 2);
        assert_eq!(
            f.core.merge_small_files(&shutdown).await.expect("merge"),
            min_files as u64
        );
        assert_eq!(f.table.file_count().await, 1);
        assert_eq!(f.visible_rows().await, 10 * min_files);
    }

    /// A flush while the memory budget squeezes the buffer writes LZ4_RAW files, one after
    /// it the table's zstd, and the merge of those small files rewrites them all in zstd.
    #[tokio::test]
    async fn squeezed_flushes_write_lz4_and_merges_rewrite_them_in_the_tables_codec() {
        use deltalake::parquet::basic::Compression;
        use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
        let f = Fixture::new().await;
        let codecs = || async {
            let mut codecs = Vec::new();
            for path in f.table.file_paths().await {
                let file = std::fs::File::open(f.dir.path().join("tables").join(TABLE).join(&path))
                    .expect("data file");
                let reader = SerializedFileReader::new(file).expect("parquet footer");
                let mut used: Vec<Compression> = reader
                    .metadata()
                    .row_groups()
                    .iter()
                    .flat_map(|g| g.columns().iter().map(|c| c.compression()))
                    .collect();
                used.dedup();
                codecs.push(used);
            }
            codecs.sort_by_key(|c| format!("{c:?}"));
            codecs
        };
        let zstd = Compression::ZSTD(Default::default());
        let share = f.core.buffer.budget();
        let min_files = f.core.options.maintenance.merge_min_files;
        f.core.buffer.admit_up_to(share / 2 - 1);
        small_files(&f, min_files - 1).await;
        assert_eq!(
            codecs().await,
            vec![vec![Compression::LZ4_RAW]; min_files - 1],
            "every column of every file flushed under the squeeze"
        );
        f.core.buffer.admit_up_to(share);
        small_files(&f, 1).await;
        let mut expected = vec![vec![Compression::LZ4_RAW]; min_files - 1];
        expected.push(vec![zstd]);
        expected.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(codecs().await, expected, "the flush after it");
        let shutdown = CancellationToken::new();
        assert_eq!(
            f.core.merge_small_files(&shutdown).await.expect("merge"),
            min_files as u64
        );
        assert_eq!(codecs().await, vec![vec![zstd]], "one merged file");
        assert_eq!(f.visible_rows().await, 10 * min_files);
    }

    /// A merge that committed but was never published (its publication failed) leaves the
    /// table's state behind the log. Its removes do not conflict with another rewrite of the
    /// same files, so the next merge and a `DELETE` must read the log first: otherwise the
    /// merge commits the files' rows a second time, and the delete leaves the merged file.
    /// On two worker threads: its flushes write a second checkpoint (see above).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_merge_that_was_not_published_is_neither_merged_again_nor_undone() {
        use datafusion::prelude::{col, lit};
        let f = Fixture::new().await;
        let min_files = f.core.options.maintenance.merge_min_files;
        small_files(&f, min_files).await;
        let rows = 10 * min_files;
        let due = f.table.merges_due(&f.core.options.maintenance).await;
        let (removed, added) = f.table.merge(&due[0]).await.expect("merge");
        assert_eq!((removed, added), (min_files as u64, 1));
        assert_eq!(
            f.table.merges_due(&f.core.options.maintenance).await,
            due,
            "the table's state has not read the merge"
        );
        assert_eq!(f.table.merge(&due[0]).await.expect("again"), (0, 0));
        let committed = || async {
            SessionContext::new()
                .read_table(f.table.refreshed_reader().await.expect("reader"))
                .expect("scan")
                .count()
                .await
                .expect("count")
        };
        assert_eq!(committed().await, rows, "no row merged twice");
        // More small files, merged again without publication: the table's state lists the
        // files the merge replaced.
        small_files(&f, min_files).await;
        let due = f.table.merges_due(&f.core.options.maintenance).await;
        let (removed, _) = f.table.merge(&due[0]).await.expect("merge");
        assert_eq!(
            removed,
            min_files as u64 + 1,
            "the new files and the merged one"
        );
        let everything = delta::Mutation::Delete {
            predicate: Some(
                datafusion::functions::string::expr_fn::upper(col("project_id")).eq(lit("P")),
            ),
        };
        let deleted = Mutations::mutate(
            &f.core,
            TABLE,
            &everything,
            &Scope::default(),
            &SessionContext::new().state(),
        )
        .await
        .expect("delete");
        assert_eq!(deleted, 2 * rows as u64);
        assert_eq!(
            committed().await,
            0,
            "the merged file's rows are deleted too"
        );
        assert_eq!(f.visible_rows().await, 0);
    }

    /// A merge publishes the version it read after settling a flush whose commit landed
    /// unseen, as maintenance does: otherwise those rows would be counted twice.
    #[tokio::test]
    async fn a_merge_settles_a_lost_commit_before_publishing() {
        let f = Fixture::new().await;
        let min_files = f.core.options.maintenance.merge_min_files;
        small_files(&f, min_files).await;
        f.outage(&f.faults.lose_next_commit).await;
        let shutdown = CancellationToken::new();
        f.core.merge_small_files(&shutdown).await.expect("merge");
        let rows = 10 * min_files + 10;
        assert_eq!(f.visible_rows().await, rows, "no row counted twice");
        assert_eq!(f.delta_rows().await, rows);
    }

    /// The WAL's records as (sequence, carried, rows).
    fn records(wal: &Wal) -> Vec<(Seq, bool, usize)> {
        let mut records = Vec::new();
        wal.replay(|record| {
            let rows = crate::engine::wal::decode_batch(record.ipc)?.num_rows();
            records.push((record.seq, record.kind == wal::Kind::Carried, rows));
            Ok(())
        })
        .expect("replay");
        records
    }

    /// A partition the store refuses is left out of the commit, its rows carried in a WAL
    /// record the commit names; the others are committed; every row stays visible once, and
    /// the partition flushes when the store takes it again.
    #[tokio::test]
    async fn a_partition_that_cannot_be_written_is_carried_and_the_others_commit() {
        let f = Fixture::new().await;
        f.write_to("bad", "b", 7).await;
        f.write_to("good", "g", 10).await;
        *f.faults.refuse_partition.lock() = Some("project_id=bad/".into());
        assert_eq!(f.core.flush(FlushReason::All).await.expect("flush"), 10);
        assert_eq!(f.delta_rows().await, 10);
        assert_eq!(f.visible_rows().await, 17);
        let carried: Vec<Seq> = records(&f.core.wal)
            .into_iter()
            .filter(|(_, carried, _)| *carried)
            .map(|(seq, _, rows)| {
                assert_eq!(rows, 7);
                seq
            })
            .collect();
        assert_eq!(carried.len(), 1);
        assert!(
            f.table
                .holds(&delta::carried_app_id(f.core.wal.id(), carried[0]))
                .await
                .expect("log"),
            "the commit names the carried record, so replay applies it"
        );
        // Alone in a flush, the partition's failure is not counted: nothing else was written.
        let alone = f.core.flush(FlushReason::All).await.expect_err("alone");
        assert!(matches!(alone, Error::Unwritten(_)), "{alone}");
        assert_eq!(f.visible_rows().await, 17);

        *f.faults.refuse_partition.lock() = None;
        assert_eq!(f.core.flush(FlushReason::All).await.expect("flush"), 7);
        assert_eq!(f.delta_rows().await, 17, "each row once");
        assert_eq!(f.visible_rows().await, 17);
        assert!(f.core.failing.lock().is_empty());
    }

    /// A carried record whose commit never landed is not applied by replay: the rows' own
    /// records, which that commit would have covered, are still in the WAL.
    #[tokio::test]
    async fn a_carried_record_counts_only_if_its_commit_landed() {
        let f = Fixture::new().await;
        f.write_to("bad", "b", 3).await;
        f.write_to("good", "g", 4).await;
        *f.faults.refuse_partition.lock() = Some("project_id=bad/".into());
        f.faults.refuse_next_commit.store(true, Ordering::SeqCst);
        f.core.flush(FlushReason::All).await.expect_err("refused");
        let records = records(&f.core.wal);
        let (carried, originals): (Vec<&(Seq, bool, usize)>, Vec<_>) =
            records.iter().partition(|r| r.1);
        assert_eq!(carried.len(), 1);
        assert_eq!(originals.iter().map(|r| r.2).sum::<usize>(), 7);
        f.faults.down.store(false, Ordering::SeqCst);
        assert!(
            !f.table
                .holds(&delta::carried_app_id(f.core.wal.id(), carried[0].0))
                .await
                .expect("log")
        );
        // The same plan is committed when the store is back, and then the record counts.
        *f.faults.refuse_partition.lock() = None;
        f.write_to("good", "g2", 2).await;
        f.core.flush(FlushReason::All).await.expect("flush");
        assert!(
            f.table
                .holds(&delta::carried_app_id(f.core.wal.id(), carried[0].0))
                .await
                .expect("log")
        );
        assert_eq!(f.delta_rows().await, 9);
        assert_eq!(f.visible_rows().await, 9);
    }

    /// After `partition_attempts` flushes that wrote others but not it, a partition's rows
    /// go to the quarantine, and the commit covers their records.
    #[tokio::test]
    async fn a_partition_failing_its_attempts_is_quarantined() {
        let mut f = Fixture::new().await;
        f.core.options.partition_attempts = 2;
        *f.faults.refuse_partition.lock() = Some("project_id=bad/".into());
        f.write_to("bad", "b", 5).await;
        for round in 0..2 {
            f.write_to("good", &format!("g{round}"), 10).await;
            f.core.flush(FlushReason::All).await.expect("flush");
        }
        assert_eq!(f.delta_rows().await, 20);
        assert_eq!(f.visible_rows().await, 20, "the bad rows left the table");
        let files: Vec<_> = std::fs::read_dir(&f.core.options.quarantine_dir)
            .expect("quarantine")
            .collect();
        assert_eq!(files.len(), 1);
        assert!(f.core.failing.lock().is_empty());
        assert_eq!(f.core.flush(FlushReason::All).await.expect("nothing"), 0);
    }

    /// A mutation that must take the Delta path and matches rows of a partition the flush
    /// cannot write changes nothing and says so, instead of applying to Delta while those rows
    /// stay buffered unchanged; one logged as a change of buffered rows needs no flush.
    #[tokio::test]
    async fn a_mutation_matching_rows_that_cannot_be_flushed_changes_nothing() {
        use datafusion::prelude::{col, lit};
        let f = Fixture::new().await;
        f.write_to("bad", "b", 3).await;
        f.write_to("good", "g", 4).await;
        *f.faults.refuse_partition.lock() = Some("project_id=bad/".into());
        let session = SessionContext::new().state();
        let delete = |project: &str| delta::Mutation::Delete {
            predicate: Some(col("project_id").eq(lit(project))),
        };
        // The fixture's core decodes no function, so a call is not logged: the Delta path.
        let unlogged = delta::Mutation::Delete {
            predicate: Some(
                datafusion::functions::string::expr_fn::upper(col("project_id")).eq(lit("BAD")),
            ),
        };
        let refused = Mutations::mutate(&f.core, TABLE, &unlogged, &Scope::default(), &session)
            .await
            .expect_err("refused");
        assert!(matches!(refused, Error::Unflushed(3)), "{refused}");
        assert_eq!(f.visible_rows().await, 7, "nothing deleted");
        let logged = Mutations::mutate(&f.core, TABLE, &delete("bad"), &Scope::default(), &session)
            .await
            .expect("a change of buffered rows");
        assert_eq!(logged, 3);
        assert_eq!(f.visible_rows().await, 4);
        let kinds: Vec<wal::Kind> = {
            let mut kinds = Vec::new();
            f.core
                .wal
                .replay(|record| {
                    kinds.push(record.kind);
                    Ok(())
                })
                .expect("replay");
            kinds
        };
        assert_eq!(kinds.last(), Some(&wal::Kind::Change), "{kinds:?}");
        *f.faults.refuse_partition.lock() = None;
        // Rows elsewhere are changed as usual.
        let deleted =
            Mutations::mutate(&f.core, TABLE, &delete("good"), &Scope::default(), &session)
                .await
                .expect("delete");
        assert_eq!(deleted, 4);
        assert_eq!(f.visible_rows().await, 0);
    }

    /// A panic while the WAL writer checks a change (in the statement's own expressions) ends
    /// that statement with an internal error; the writer thread goes on serving every writer.
    #[tokio::test]
    async fn a_change_that_panics_on_the_wal_writer_fails_alone() {
        use datafusion::logical_expr::{
            ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
        };
        use datafusion::prelude::{col, lit};
        #[derive(Debug, PartialEq, Eq, Hash)]
        struct Panics {
            signature: Signature,
        }
        impl ScalarUDFImpl for Panics {
            fn name(&self) -> &str {
                "panics"
            }
            fn signature(&self) -> &Signature {
                &self.signature
            }
            fn return_type(
                &self,
                _: &[arrow::datatypes::DataType],
            ) -> datafusion::error::Result<arrow::datatypes::DataType> {
                Ok(arrow::datatypes::DataType::Boolean)
            }
            fn invoke_with_args(
                &self,
                _: ScalarFunctionArgs,
            ) -> datafusion::error::Result<ColumnarValue> {
                panic!("a bug in a function")
            }
        }
        let panics = Arc::new(ScalarUDF::from(Panics {
            signature: Signature::any(1, Volatility::Immutable),
        }));
        let mut f = Fixture::new().await;
        let context = SessionContext::new();
        context.register_udf(ScalarUDF::clone(&panics));
        f.core.functions = context.task_ctx();
        f.write_to("p", "a", 3).await;
        let delete = delta::Mutation::Delete {
            predicate: Some(
                col("project_id")
                    .eq(lit("p"))
                    .and(panics.call(vec![col("id")])),
            ),
        };
        let failed =
            Mutations::mutate(&f.core, TABLE, &delete, &Scope::default(), &context.state())
                .await
                .expect_err("the check panicked");
        assert!(matches!(failed, Error::Panicked(..)), "{failed}");
        // The writer thread is alive: the next write is acknowledged and seen.
        f.write_to("p", "b", 2).await;
        assert_eq!(f.visible_rows().await, 5);
    }

    /// A quarantine file is staged before the commit that leaves its rows out and published
    /// only once that commit landed; while the commit's outcome is unknown the file is still
    /// staged (a restart would discard it, the log not naming it, and replay the rows).
    #[tokio::test]
    async fn a_quarantine_file_is_published_only_with_its_commit() {
        let mut f = Fixture::new().await;
        f.core.options.partition_attempts = 1;
        *f.faults.refuse_partition.lock() = Some("project_id=bad/".into());
        f.write_to("bad", "b", 5).await;
        f.write_to("good", "g", 10).await;
        f.faults.refuse_next_commit.store(true, Ordering::SeqCst);
        f.core.flush(FlushReason::All).await.expect_err("refused");
        let dir = f.core.options.quarantine_dir.clone();
        let staged = quarantine::staged(&dir).expect("staged");
        assert_eq!(staged.len(), 1);
        assert!(
            !f.table
                .holds(&delta::quarantined_app_id(f.core.wal.id(), &staged[0]))
                .await
                .expect("log")
        );
        assert_eq!(f.visible_rows().await, 15, "nothing left the table yet");
        f.faults.down.store(false, Ordering::SeqCst);
        f.core.flush(FlushReason::All).await.expect("resolved");
        assert!(quarantine::staged(&dir).expect("staged").is_empty());
        assert!(
            f.table
                .holds(&delta::quarantined_app_id(f.core.wal.id(), &staged[0]))
                .await
                .expect("log")
        );
        assert!(dir.join(format!("{}.arrow", staged[0])).exists());
        assert_eq!(f.visible_rows().await, 10);
        assert_eq!(f.delta_rows().await, 10);
    }

    /// At shutdown the WAL is closed: a partition that fails cannot be carried, so nothing of
    /// the table is committed and nothing counts towards the quarantine; the rows wait in the
    /// WAL for the next start.
    #[tokio::test]
    async fn a_partition_failing_at_shutdown_leaves_the_table_in_the_wal() {
        let mut f = Fixture::new().await;
        f.core.options.partition_attempts = 1;
        *f.faults.refuse_partition.lock() = Some("project_id=bad/".into());
        f.write_to("bad", "b", 5).await;
        f.write_to("good", "g", 10).await;
        assert_eq!(f.core.close().await.expect("a clean shutdown"), 0);
        assert_eq!(f.delta_rows().await, 0);
        assert!(!f.core.options.quarantine_dir.exists());
        assert!(f.core.failing.lock().is_empty());
    }
}
