//! Delta Lake tables: open or create them, and commit flushes with their WAL position.
//!
//! A flush writes one table's planned rows as zstd Parquet, one sorted batch per
//! `[project_id, date]` partition, each partition on its own ([`DeltaTable::write_partitions`]),
//! and commits the files written with a Delta `txn` action (app id = the WAL id, version = the
//! highest WAL sequence the flush covers) in the same commit ([`DeltaTable::commit_flush`]),
//! plus one `txn` per WAL record carrying the rows of a partition it left out
//! ([`carried_app_id`]). Delta commits are atomic (put-if-absent of the next
//! `_delta_log/NNN.json`), so after a crash the `txn` version says exactly which WAL records
//! are already in the table. This module never deletes WAL; the caller trims it once
//! [`DeltaTable::flush`] has returned.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::Arc;

use arrow::array::Array;
use arrow::array::RecordBatch;
use arrow::compute::{SortColumn, concat, interleave, lexsort_to_indices};
use datafusion::common::Column;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::Expr;
use deltalake::TableProperty;
use deltalake::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake::delta_datafusion::planner::DeltaPlanner;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TableReference};
use deltalake::kernel::{Action, Add, StructType, Transaction};
use deltalake::operations::write::configs::WriterStatsConfig;
use deltalake::parquet::basic::{Compression, Encoding};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::DeltaOperation;
use deltalake::protocol::SaveMode;
use deltalake::table::config::TablePropertiesExt as _;
use futures::StreamExt as _;
use tokio::sync::Mutex;

pub use crate::config::MaintenancePolicy;
use crate::engine::Committed;
use crate::engine::MICROS_PER_DAY;
use crate::engine::batch;
use crate::engine::buffer::FlushPlan;
use crate::engine::schema::TableSchema;
use crate::engine::storage::Storage;
use crate::engine::wal::Seq;
use crate::error::SqlState;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Delta table {table}: {source}")]
    Delta {
        table: String,
        source: deltalake::DeltaTableError,
    },
    #[error("Delta table {table}: {source}")]
    Arrow {
        table: String,
        source: arrow::error::ArrowError,
    },
    #[error("Delta table {table}: cannot build a scan: {source}")]
    Scan {
        table: String,
        source: datafusion::error::DataFusionError,
    },
    #[error("Delta table {table}: cannot write partition {partition}: {message}")]
    Write {
        table: String,
        partition: String,
        message: String,
    },
    #[error("cannot use table location {0}: {1}")]
    Location(String, String),
    #[error("Delta table {table}: {verb} failed: {source}")]
    Mutation {
        table: String,
        verb: &'static str,
        source: deltalake::DeltaTableError,
    },
}

impl Error {
    /// The SQLSTATE of a failed flush, mutation or maintenance pass: the store or the log
    /// could not be read or written (58030), a mutation lost a race with another writer
    /// (40001), or the data could not be turned into Parquet (XX000).
    pub fn sqlstate(&self) -> SqlState {
        match self {
            Error::Delta { .. } | Error::Location(..) => SqlState::IO_ERROR,
            Error::Arrow { .. } | Error::Scan { .. } | Error::Write { .. } => {
                SqlState::INTERNAL_ERROR
            }
            // Another writer changed the files a mutation rewrites: try again, as after
            // PostgreSQL's serialization failure.
            Error::Mutation {
                source: deltalake::DeltaTableError::Transaction { .. },
                ..
            } => SqlState::SERIALIZATION_FAILURE,
            Error::Mutation {
                source:
                    deltalake::DeltaTableError::ObjectStore { .. }
                    | deltalake::DeltaTableError::Io { .. },
                ..
            } => SqlState::IO_ERROR,
            Error::Mutation { .. } => SqlState::INTERNAL_ERROR,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attempts at one flush commit when other writers keep taking the next version first.
const MAX_COMMIT_ATTEMPTS: u32 = 8;

/// Partitions of one flush written at once: each encodes on a thread of its own, and each
/// holds its rows' Parquet in memory until its file is closed.
const WRITE_CONCURRENCY: usize = 4;

/// One Delta partition of a table: the rows of one project on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub project: String,
    /// Days since 1970-01-01.
    pub day: i64,
}

impl std::fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let date = chrono::DateTime::from_timestamp_micros(self.day * MICROS_PER_DAY)
            .map(|d| d.date_naive().to_string())
            .unwrap_or_else(|| format!("day {}", self.day));
        write!(f, "(project_id {:?}, date {date})", self.project)
    }
}

/// What one flush commits: the files written for its partitions, the WAL prefix it covers,
/// the records holding the rows of partitions it left out (see [`carried_app_id`]), and the
/// quarantine files staged with the rows of partitions it gave up on (see
/// [`quarantined_app_id`]).
#[derive(Debug, Clone)]
pub struct FlushCommit {
    pub upto: Seq,
    pub adds: Vec<Add>,
    pub carried: Vec<Seq>,
    pub quarantined: Vec<String>,
}

/// The `txn` app id a flush commits for each WAL record that carries rows it left out: the
/// rows of a partition that could not be written, appended again to the WAL above the
/// flush's prefix. Replay applies such a record only when the log holds this id, that is,
/// when the flush that skipped its rows landed; otherwise their original records are
/// replayed and the carried copy is not.
pub fn carried_app_id(wal_id: &str, seq: Seq) -> String {
    format!("{wal_id}/carried/{seq}")
}

/// The `txn` app id a flush commits for each quarantine file it staged (`name`): the rows in
/// it left the table only if the log holds this id; otherwise the file is discarded at
/// start-up and the rows are replayed from the WAL.
pub fn quarantined_app_id(wal_id: &str, name: &str) -> String {
    format!("{wal_id}/quarantined/{name}")
}

/// A plan's rows by Delta partition, in the plan's order: buckets never straddle a date, so
/// a partition's chunks are the plan's consecutive groups of one project and day.
pub(crate) fn partitions(plan: &FlushPlan) -> Vec<(PartitionKey, Vec<RecordBatch>)> {
    let mut partitions: Vec<(PartitionKey, Vec<RecordBatch>)> = Vec::new();
    for (project, start, chunks) in &plan.groups {
        let key = PartitionKey {
            project: project.clone(),
            day: start.div_euclid(MICROS_PER_DAY),
        };
        match partitions.last_mut() {
            Some((last, batches)) if *last == key => batches.extend(chunks.iter().cloned()),
            _ => partitions.push((key, chunks.clone())),
        }
    }
    partitions
}

/// A change to rows already written, as DataFusion expressions over the table's columns:
/// `DELETE` (every row when there is no predicate) or `UPDATE` (`SET column = expression`).
#[derive(Debug, Clone)]
pub enum Mutation {
    Delete {
        predicate: Option<Expr>,
    },
    Update {
        predicate: Option<Expr>,
        assignments: Vec<(String, Expr)>,
    },
}

impl Mutation {
    /// The rows the mutation changes; `None`: all of them.
    pub fn predicate(&self) -> Option<&Expr> {
        match self {
            Mutation::Delete { predicate } | Mutation::Update { predicate, .. } => {
                predicate.as_ref()
            }
        }
    }

    /// `DELETE` or `UPDATE`, as PostgreSQL's command tag names it.
    pub fn verb(&self) -> &'static str {
        match self {
            Mutation::Delete { .. } => "DELETE",
            Mutation::Update { .. } => "UPDATE",
        }
    }
}

/// Whether `committed` holds a row `predicate` selects (any row when `None`): the table's own
/// scan of the predicate's columns, given the filters it takes (pruned by partition, file
/// statistics, row-group statistics and bloom filters), under the predicate, read until its
/// first row. No query is planned: over a table this wide, planning one cost more than the
/// scan.
pub async fn any_row(
    committed: &Committed,
    predicate: Option<&Expr>,
    session: &SessionState,
) -> datafusion::error::Result<bool> {
    use datafusion::logical_expr::TableProviderFilterPushDown;
    use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, filter::FilterExec};
    let schema = committed.schema();
    let mut projection: Vec<usize> = match predicate {
        Some(predicate) => predicate
            .column_refs()
            .iter()
            .map(|c| schema.index_of(&c.name))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    projection.sort_unstable();
    projection.dedup();
    if projection.is_empty() {
        projection.push(0);
    }
    let filters: Vec<Expr> = predicate
        .map(|p| {
            datafusion::logical_expr::utils::split_conjunction(p)
                .into_iter()
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let taken: Vec<&Expr> = filters.iter().collect();
    let pushdown = committed.supports_filters_pushdown(&taken)?;
    let pushed: Vec<Expr> = filters
        .iter()
        .zip(pushdown)
        .filter(|(_, how)| *how != TableProviderFilterPushDown::Unsupported)
        .map(|(f, _)| f.clone())
        .collect();
    let mut plan: Arc<dyn ExecutionPlan> = committed
        .scan(session, Some(&projection), &pushed, None)
        .await?;
    if let Some(predicate) = predicate {
        let scanned = datafusion::common::DFSchema::try_from(plan.schema().as_ref().clone())?;
        let predicate = session.create_physical_expr(predicate.clone(), &scanned)?;
        plan = Arc::new(FilterExec::try_new(predicate, plan)?);
    }
    let task = session.task_ctx();
    for partition in 0..plan.output_partitioning().partition_count() {
        let mut batches = plan.execute(partition, task.clone())?;
        while let Some(batch) = batches.next().await {
            if batch?.num_rows() > 0 {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// What one maintenance pass did to one table.
#[derive(Debug, Clone, Default)]
pub struct MaintenanceReport {
    pub table: String,
    pub files_removed: u64,
    pub files_added: u64,
    pub retention_files_removed: usize,
    pub files_vacuumed: usize,
    pub version: Option<i64>,
}

/// One Delta table and the writer state TimeFusion keeps for it.
pub struct DeltaTable {
    schema: Arc<TableSchema>,
    table: Mutex<deltalake::DeltaTable>,
    writer_properties: WriterProperties,
    /// The same with LZ4_RAW, for flushes under a memory squeeze ([`FlushCodec::Fast`]).
    fast_writer_properties: WriterProperties,
    /// Bytes of the data files the last published version references ([`Self::stored_bytes`]).
    stored_bytes: std::sync::atomic::AtomicU64,
    /// Set while a background merge may have committed through a copy of the table that
    /// `table` has not read yet ([`Self::merge`]); cleared when `table` re-reads the log.
    stale: std::sync::atomic::AtomicBool,
}

impl DeltaTable {
    /// Opens the table in `storage`, creating it (version 0, no files) if it does not exist,
    /// with `delta.checkpointInterval` set to `checkpoint_interval` (deltalake then writes a
    /// checkpoint after each commit whose version + 1 is a multiple of it: flushes,
    /// compaction, retention and mutations alike) and `delta.dataSkippingStatsColumns` to the
    /// schema's [`TableSchema::stats_columns`] (files written from then on carry statistics of
    /// those columns only, and file skipping reads only those). An existing table whose
    /// properties differ gets a metadata commit setting them.
    pub async fn open_or_create(
        storage: &Storage,
        schema: Arc<TableSchema>,
        compression: Compression,
        checkpoint_interval: NonZeroU64,
    ) -> Result<Self> {
        let name = schema.name.clone();
        let delta = |source: deltalake::DeltaTableError| Error::Delta {
            table: name.clone(),
            source,
        };
        let location = storage
            .table_url(&schema.name)
            .map_err(|e| Error::Location(schema.name.clone(), e.to_string()))?;
        let mut table = storage
            .table_builder(&schema.name)
            .map_err(|e| Error::Location(location.to_string(), e.to_string()))?
            .build()
            .map_err(delta)?;
        // A location without a Delta log is a table to create, not an error. Asking first keeps
        // a new server's first start free of delta-kernel's "No files in log segment" error.
        let exists = table
            .log_store()
            .is_delta_table_location()
            .await
            .map_err(delta)?;
        if exists {
            match table.load().await {
                Ok(()) | Err(deltalake::DeltaTableError::NotATable(_)) => {}
                Err(e) => return Err(delta(e)),
            }
        }
        // The table properties TimeFusion sets: on a new table at creation, on an existing one
        // that differs by a metadata commit.
        let wanted = HashMap::from([
            (
                TableProperty::CheckpointInterval.as_ref().to_string(),
                checkpoint_interval.to_string(),
            ),
            (
                TableProperty::DataSkippingStatsColumns.as_ref().to_string(),
                schema.stats_columns().join(","),
            ),
        ]);
        if table.version().is_none() {
            let columns: StructType =
                schema
                    .schema
                    .as_ref()
                    .try_into_kernel()
                    .map_err(|source| Error::Arrow {
                        table: name.clone(),
                        source,
                    })?;
            table = table
                .create()
                .with_table_name(&schema.name)
                .with_columns(columns.fields().cloned())
                .with_partition_columns(schema.partition_columns.clone())
                .with_configuration(
                    wanted
                        .iter()
                        .map(|(key, value)| (key.clone(), Some(value.clone()))),
                )
                .with_save_mode(SaveMode::Ignore)
                .await
                .map_err(delta)?;
            tracing::info!(table = %name, %location, "created Delta table");
        }
        let configuration = table.snapshot().map_err(delta)?.metadata().configuration();
        let differ: HashMap<String, String> = wanted
            .into_iter()
            .filter(|(key, value)| configuration.get(key) != Some(value))
            .collect();
        if !differ.is_empty() {
            tracing::info!(table = %name, properties = ?differ, "setting table properties");
            table = table
                .set_tbl_properties()
                .with_properties(differ)
                .await
                .map_err(delta)?;
        }
        Ok(DeltaTable {
            writer_properties: writer_properties(&schema, compression),
            fast_writer_properties: writer_properties(&schema, Compression::LZ4_RAW),
            schema,
            table: Mutex::new(table),
            stored_bytes: std::sync::atomic::AtomicU64::new(0),
            stale: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Bytes of the Parquet files the version last handed to readers references (what the
    /// table holds in object storage, before compaction's old files are vacuumed).
    pub fn stored_bytes(&self) -> u64 {
        self.stored_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The highest WAL sequence of `wal_id` already committed to this table, if any.
    pub async fn committed_wal_seq(&self, wal_id: &str) -> Result<Option<u64>> {
        let mut table = self.table.lock().await;
        let version = wal_version(&mut table, wal_id, false)
            .await
            .map_err(|source| Error::Delta {
                table: self.schema.name.clone(),
                source,
            })?;
        Ok(version.map(|v| v.max(0) as u64))
    }

    /// Whether the Delta log, re-read now, holds `wal_id`'s rows up to `upto`: the answer for
    /// a flush whose commit failed without saying whether the store kept it.
    pub async fn landed(&self, wal_id: &str, upto: crate::engine::wal::Seq) -> Result<bool> {
        let mut table = self.table.lock().await;
        let version = wal_version(&mut table, wal_id, true)
            .await
            .map_err(|source| Error::Delta {
                table: self.schema.name.clone(),
                source,
            })?;
        Ok(version.is_some_and(|v| v >= upto.0 as i64))
    }

    /// The table's schema and column roles.
    pub fn schema(&self) -> &Arc<TableSchema> {
        &self.schema
    }

    /// A scan of the table pinned at its current version.
    pub async fn reader(&self) -> Result<Committed> {
        let table = self.table.lock().await;
        self.reader_of(&table).await
    }

    async fn reader_of(&self, table: &deltalake::DeltaTable) -> Result<Committed> {
        if let Ok(snapshot) = table.snapshot() {
            let bytes: i64 = snapshot.log_data().iter().map(|file| file.size()).sum();
            self.stored_bytes
                .store(bytes.max(0) as u64, std::sync::atomic::Ordering::Relaxed);
        }
        let scan = table
            .table_provider()
            .with_session(reader_session())
            .build()
            .await
            .map_err(|source| Error::Scan {
                table: self.schema.name.clone(),
                source,
            })?;
        Ok(Arc::new(scan))
    }

    /// Current Delta version.
    pub async fn version(&self) -> Option<i64> {
        self.table.lock().await.version().map(|v| v as i64)
    }

    /// Writes each (project, date) partition of `plan` as Parquet files of its own, a few
    /// partitions at a time, and commits nothing. Each partition's outcome is its own: the
    /// files of one that fails (the store refused them, the writer panicked) are never part
    /// of the commit, and the others are written regardless ([`DeltaTable::commit_flush`]
    /// commits what was written). Rows are sorted by the schema's sort columns, and the
    /// files compressed as `codec` says. The outer error is the table's: its writer settings
    /// could not be read.
    pub async fn write_partitions(
        &self,
        plan: &FlushPlan,
        codec: FlushCodec,
    ) -> Result<Vec<(PartitionKey, Result<Vec<Add>>)>> {
        let name = &self.schema.name;
        let properties = match codec {
            FlushCodec::Table => &self.writer_properties,
            FlushCodec::Fast => &self.fast_writer_properties,
        };
        let (config, store) = {
            let table = self.table.lock().await;
            let config = self
                .writer_config(&table, properties)
                .map_err(|source| Error::Delta {
                    table: name.clone(),
                    source,
                })?;
            (config, table.object_store())
        };
        let writes = partitions(plan).into_iter().map(|(key, parts)| {
            let schema = self.schema.clone();
            let (config, store) = (config.clone(), store.clone());
            let described = key.to_string();
            let table = name.clone();
            let task = tokio::spawn(crate::panics::catch(async move {
                let name = table;
                let parts: Vec<&RecordBatch> = parts.iter().collect();
                let arrow = |source| Error::Arrow {
                    table: name.clone(),
                    source,
                };
                let rows = Sorted::new(&schema, &parts).map_err(arrow)?;
                let mut writer = DeltaWriter::new(store, config);
                let mut written = Ok(());
                for range in rows.slices(FLUSH_SLICE_BYTES) {
                    let slice = match rows.gather(range) {
                        Ok(slice) => slice,
                        Err(e) => {
                            let _ = writer.abort().await;
                            return Err(arrow(e));
                        }
                    };
                    written = writer.write(&slice).await;
                    if written.is_err() {
                        break;
                    }
                }
                let written = match written {
                    Ok(()) => writer.close().await,
                    Err(e) => {
                        let _ = writer.abort().await;
                        Err(e)
                    }
                };
                written.map_err(|source| Error::Delta {
                    table: name.clone(),
                    source,
                })
            }));
            let name = name.clone();
            async move {
                // A panic in the writer (ours or a library's) is this partition's error;
                // the hook has logged it with its location.
                let outcome = match task.await {
                    Ok(Ok(written)) => written,
                    Ok(Err(message)) => Err(Error::Write {
                        table: name,
                        partition: described,
                        message: format!("the writer panicked: {message}"),
                    }),
                    Err(e) => Err(Error::Write {
                        table: name,
                        partition: described,
                        message: e.to_string(),
                    }),
                };
                (key, outcome)
            }
        });
        Ok(futures::stream::iter(writes)
            .buffered(WRITE_CONCURRENCY)
            .collect()
            .await)
    }

    /// How this table's data files are written: TimeFusion's Parquet `properties`, and the
    /// file size and statistics the table's own properties ask for, as deltalake's writes do.
    fn writer_config(
        &self,
        table: &deltalake::DeltaTable,
        properties: &WriterProperties,
    ) -> deltalake::DeltaResult<WriterConfig> {
        let snapshot = table.snapshot()?;
        let configuration = snapshot.snapshot().table_configuration();
        let stats = WriterStatsConfig::from_config(configuration);
        Ok(WriterConfig::new(
            self.schema.schema.clone(),
            self.schema.partition_columns.clone(),
            Some(properties.clone()),
            Some(configuration.table_properties().target_file_size()),
            None,
            stats.num_indexed_cols,
            stats.stats_columns,
        ))
    }

    /// Commits `commit` as one Delta commit carrying `txn(wal_id, upto)`, and a
    /// [`carried_app_id`] `txn` for each carried record, and returns a reader pinned at the new
    /// version. When this returns, the commit is durable.
    pub async fn commit_flush(&self, commit: &FlushCommit, wal_id: &str) -> Result<Committed> {
        let name = &self.schema.name;
        let mut table = self.table.lock().await;
        let delta = |source| Error::Delta {
            table: name.clone(),
            source,
        };
        let mut transactions = vec![Transaction::new(wal_id, commit.upto.0 as i64)];
        let named = commit
            .carried
            .iter()
            .map(|seq| carried_app_id(wal_id, *seq))
            .chain(
                commit
                    .quarantined
                    .iter()
                    .map(|name| quarantined_app_id(wal_id, name)),
            );
        transactions.extend(named.map(|app| Transaction::new(app, commit.upto.0 as i64)));
        let actions: Vec<Action> = commit.adds.iter().cloned().map(Action::Add).collect();
        // No blind retries inside deltalake: if a commit's response is lost after the store
        // accepted it, a retry at the next version would commit the same rows twice. Instead
        // every failure re-reads the log and asks whether our `txn` version is in it; only a
        // commit that lost the race for its version to another writer is tried again, at the
        // new version, with the same files.
        let mut attempt = 1;
        loop {
            let read_version = table.version();
            let properties = CommitProperties::default()
                .with_max_retries(0)
                .with_application_transactions(transactions.clone());
            let operation = DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: Some(self.schema.partition_columns.clone()),
                predicate: None,
            };
            let committed = CommitBuilder::from(properties)
                .with_actions(actions.clone())
                .build(
                    Some(table.snapshot().map_err(delta)? as &dyn TableReference),
                    table.log_store(),
                    operation,
                )
                .await;
            let source = match committed {
                Ok(committed) => {
                    table.state = Some(committed.snapshot);
                    break;
                }
                Err(source) => source,
            };
            // The log may have moved (our own lost commit, another writer's commit): refresh
            // before deciding, so the next attempt starts from the latest version.
            let landed = wal_version(&mut table, wal_id, true)
                .await
                .map_err(delta)?
                .is_some_and(|v| v >= commit.upto.0 as i64);
            if landed {
                tracing::warn!(
                    table = %name, upto = %commit.upto,
                    "the flush commit reported an error but is in the Delta log; not writing it again: {source}"
                );
                break;
            }
            let raced = table.version() > read_version;
            if !raced || attempt >= MAX_COMMIT_ATTEMPTS {
                return Err(delta(source));
            }
            tracing::info!(
                table = %name, upto = %commit.upto, attempt, version = ?table.version(),
                "another writer committed first; committing the flush again at the new version"
            );
            attempt += 1;
        }
        self.reader_of(&table).await
    }

    /// Whether the log, as last read, holds a `txn` for `app_id`: [`carried_app_id`] (replay
    /// applies that record only then) or [`quarantined_app_id`].
    pub async fn holds(&self, app_id: &str) -> Result<bool> {
        let mut table = self.table.lock().await;
        let version = wal_version(&mut table, app_id, false)
            .await
            .map_err(|source| Error::Delta {
                table: self.schema.name.clone(),
                source,
            })?;
        Ok(version.is_some())
    }

    /// Applies `mutation` to the committed rows as one Delta commit, with deltalake's own
    /// operations so every Delta reader sees the result: the files holding a matching row (in
    /// the partitions the predicate selects) are rewritten without it (`DELETE`) or with the
    /// new values (`UPDATE`), and removed from the log; a predicate on partition columns only
    /// removes whole files. `session` plans the rewrite (it holds TimeFusion's functions).
    /// Returns the rows changed and a reader at the new version. After an error the caller
    /// re-reads the log ([`DeltaTable::refreshed_reader`]): a commit whose response was lost
    /// may have landed.
    pub async fn mutate(
        &self,
        mutation: &Mutation,
        session: &SessionState,
    ) -> Result<(u64, Committed)> {
        let name = &self.schema.name;
        // The table's state is current: this process's commits go through `self.table`, but
        // for a background merge's, which is read here first, and deltalake checks a commit
        // against any other writer's that came first (no log listing per statement, which
        // grew with every version). A merge's commit must be read: its removes do not
        // conflict (`dataChange: false`), so a rewrite of the files it replaced would bring
        // their rows back beside the merged file.
        let mut table = self.table.lock().await;
        if self.stale.load(std::sync::atomic::Ordering::Acquire) {
            table.update_state().await.map_err(|source| Error::Delta {
                table: name.clone(),
                source,
            })?;
            self.stale
                .store(false, std::sync::atomic::Ordering::Release);
        }
        // deltalake plans its rewrite with extension nodes only its own planner knows. A
        // rewrite reads every row of a file, so no scan of it may be narrowed to where an
        // earlier query's filter matched.
        let rules = session
            .physical_optimizers()
            .iter()
            .filter(|r| r.name() != crate::sql::condition_cache::ConditionCacheRule::NAME)
            .cloned()
            .collect();
        let session: Arc<dyn datafusion::catalog::Session> = Arc::new(
            SessionStateBuilder::new_from_existing(session.clone())
                .with_query_planner(DeltaPlanner::new())
                .with_physical_optimizer_rules(rules)
                .build(),
        );
        let outcome = match mutation {
            Mutation::Delete { predicate } => {
                let mut delete = table
                    .clone()
                    .delete()
                    .with_session_state(session)
                    .with_writer_properties(self.writer_properties.clone());
                if let Some(predicate) = predicate {
                    delete = delete.with_predicate(predicate.clone());
                }
                delete.await.map(|(table, metrics)| {
                    // Known for every file this server wrote (they carry row counts); a whole
                    // file of another writer's without statistics is not counted.
                    (table, metrics.num_deleted_rows.unwrap_or(0) as u64)
                })
            }
            Mutation::Update {
                predicate,
                assignments,
            } => {
                let mut update = table
                    .clone()
                    .update()
                    .with_session_state(session)
                    .with_writer_properties(self.writer_properties.clone())
                    .with_safe_cast(false);
                if let Some(predicate) = predicate {
                    update = update.with_predicate(predicate.clone());
                }
                for (column, value) in assignments {
                    update = update.with_update(Column::new_unqualified(column), value.clone());
                }
                update
                    .await
                    .map(|(table, metrics)| (table, metrics.num_updated_rows as u64))
            }
        };
        match outcome {
            Ok((mutated, rows)) => {
                *table = mutated;
                Ok((rows, self.reader_of(&table).await?))
            }
            Err(source) => Err(Error::Mutation {
                table: name.clone(),
                verb: mutation.verb(),
                source,
            }),
        }
    }

    /// A reader at the version the log holds now, re-read from the store.
    pub async fn refreshed_reader(&self) -> Result<Committed> {
        let mut table = self.table.lock().await;
        table.update_state().await.map_err(|source| Error::Delta {
            table: self.schema.name.clone(),
            source,
        })?;
        self.stale
            .store(false, std::sync::atomic::Ordering::Release);
        self.reader_of(&table).await
    }

    /// One maintenance pass: compact small files, drop partitions past the retention, vacuum
    /// unreferenced files (checkpoints follow commits, [`Self::open_or_create`]). Holds the table for the whole pass,
    /// so it never interleaves with a flush commit (flushes wait; ingestion does not).
    /// Returns what it did and a reader at the resulting version.
    pub async fn maintain(
        &self,
        policy: &MaintenancePolicy,
    ) -> Result<(MaintenanceReport, Committed)> {
        let name = &self.schema.name;
        let delta = |source| Error::Delta {
            table: name.clone(),
            source,
        };
        let mut table = self.table.lock().await;
        table.update_state().await.map_err(delta)?;
        let mut report = MaintenanceReport {
            table: name.clone(),
            ..MaintenanceReport::default()
        };
        if table.version().unwrap_or(0) == 0 {
            // Nothing written yet.
            let reader = self.reader_of(&table).await?;
            return Ok((report, reader));
        }

        let (compacted, metrics) = table
            .clone()
            .optimize()
            .with_target_size(policy.target_file_bytes)
            .with_max_concurrent_tasks(1)
            .with_writer_properties(self.writer_properties.clone())
            .await
            .map_err(delta)?;
        *table = compacted;
        report.files_removed = metrics.num_files_removed;
        report.files_added = metrics.num_files_added;

        if let Some(days) = policy.retention_days {
            let cutoff = (chrono::Utc::now() - chrono::Duration::days(days as i64))
                .date_naive()
                .format("%Y-%m-%d");
            let before = table.version();
            // A predicate on the `date` partition column only: whole files are removed from
            // the log, nothing is rewritten.
            let (pruned, metrics) = table
                .clone()
                .delete()
                .with_predicate(format!("{} < '{cutoff}'", self.schema.date_column))
                .await
                .map_err(delta)?;
            *table = pruned;
            if table.version() != before {
                report.retention_files_removed = metrics.num_removed_files;
            }
        }

        let retention = chrono::Duration::from_std(policy.vacuum_retention)
            .unwrap_or(chrono::Duration::days(7));
        let (vacuumed, metrics) = table
            .clone()
            .vacuum()
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .await
            .map_err(delta)?;
        *table = vacuumed;
        report.files_vacuumed = metrics.files_deleted.len();
        report.version = table.version().map(|v| v as i64);
        let reader = self.reader_of(&table).await?;
        Ok((report, reader))
    }
}

/// A partition whose small files are due to be merged ([`DeltaTable::merges_due`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    /// The partition's values, column by column, as the log writes them.
    pub partition: Vec<(String, String)>,
    /// The merge tier: the partition's files smaller than this are merged into files of
    /// about this size.
    pub target_bytes: u64,
    /// The files smaller than half the tier, which made the merge due.
    pub small_files: usize,
}

impl std::fmt::Display for Merge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut separator = "";
        for (column, value) in &self.partition {
            write!(f, "{separator}{column}={value}")?;
            separator = "/";
        }
        Ok(())
    }
}

/// The merges due among `files` (each file's partition values and size): per partition, the
/// smallest of `tiers` under which at least `min_files` files are smaller than half the
/// tier, partitions with the most such files first. Half, because a merge's output is at
/// most one tier in size and usually more than half of it: files under half a tier are the
/// unfinished ones. (deltalake bins neighbouring files, newest first, so a larger file
/// between small ones splits them; a merge that merges nothing ends the pass.)
fn due_merges(
    files: impl IntoIterator<Item = (Vec<(String, String)>, u64)>,
    tiers: &[u64],
    min_files: usize,
) -> Vec<Merge> {
    if min_files < 2 {
        return Vec::new();
    }
    let mut partitions: HashMap<Vec<(String, String)>, Vec<u64>> = HashMap::new();
    for (partition, size) in files {
        partitions.entry(partition).or_default().push(size);
    }
    let mut due: Vec<Merge> = partitions
        .into_iter()
        .filter_map(|(partition, sizes)| {
            tiers.iter().find_map(|&tier| {
                let small_files = sizes.iter().filter(|&&size| size < tier / 2).count();
                (small_files >= min_files).then(|| Merge {
                    partition: partition.clone(),
                    target_bytes: tier,
                    small_files,
                })
            })
        })
        .collect();
    due.sort_by(|a, b| {
        b.small_files
            .cmp(&a.small_files)
            .then_with(|| a.partition.cmp(&b.partition))
    });
    due
}

impl DeltaTable {
    /// Data files in the version last read.
    #[cfg(test)]
    pub(crate) async fn file_count(&self) -> usize {
        let table = self.table.lock().await;
        table.snapshot().map_or(0, |s| s.log_data().iter().count())
    }

    /// Paths (relative to the table) of the data files in the version last read.
    #[cfg(test)]
    pub(crate) async fn file_paths(&self) -> Vec<String> {
        let table = self.table.lock().await;
        table.snapshot().map_or_else(
            |_| Vec::new(),
            |s| s.log_data().iter().map(|f| f.path().into_owned()).collect(),
        )
    }

    /// The partitions whose small files are due to be merged under `policy`
    /// ([`MaintenancePolicy::merge_tiers`]), in the version last read.
    pub async fn merges_due(&self, policy: &MaintenancePolicy) -> Vec<Merge> {
        let tiers = policy.merge_tiers();
        if tiers.is_empty() {
            return Vec::new();
        }
        // A copy of the state (its file list is shared, not copied), so the listing below
        // does not hold the table: a flush's commit waits for that lock.
        let Ok(snapshot) = self.table.lock().await.snapshot().cloned() else {
            return Vec::new();
        };
        let log = snapshot.log_data();
        let files = log.iter().filter_map(|file| {
            let mut partition: Vec<(String, String)> = file
                .partition_values_map()
                .into_iter()
                .map(|(column, value)| value.map(|value| (column, value)))
                .collect::<Option<_>>()?;
            partition.sort();
            Some((partition, file.size().max(0) as u64))
        });
        due_merges(files, &tiers, policy.merge_min_files)
    }

    /// Merges one partition's files smaller than `merge`'s tier into files of about that
    /// size: one Delta `OPTIMIZE` commit (files removed and added with `dataChange: false`),
    /// written from the log as it is now without holding the table, so flushes commit
    /// meanwhile (a flush that loses its version re-reads and retries; the optimize passes
    /// deltalake's conflict check, since it only rewrites files; mutations and maintenance
    /// must not run beside it, `Core::merging`). The merged rows are
    /// the same rows, so a reader at any version sees each once. Returns (files removed,
    /// files added); the caller publishes the new version.
    pub async fn merge(&self, merge: &Merge) -> Result<(u64, u64)> {
        let delta = |source| Error::Delta {
            table: self.schema.name.clone(),
            source,
        };
        // From the log as it is now, not as `self.table` last read it: an earlier merge whose
        // publication failed may have committed, and optimize's removes do not conflict
        // with another optimize's, so the same files would be merged twice.
        let mut table = self.table.lock().await.clone();
        table.update_state().await.map_err(delta)?;
        self.stale.store(true, std::sync::atomic::Ordering::Release);
        let filters: Vec<deltalake::FilterLiteral<'_>> = merge
            .partition
            .iter()
            .map(|(column, value)| {
                (
                    column.as_str(),
                    deltalake::FilterOp::Eq,
                    deltalake::FilterValue::Scalar(value.as_str()),
                )
            })
            .collect();
        let target = NonZeroU64::new(merge.target_bytes).unwrap_or(NonZeroU64::MIN);
        let (_, metrics) = table
            .optimize()
            .with_filters(&filters)
            .with_target_size(target)
            .with_max_concurrent_tasks(1)
            .with_writer_properties(self.writer_properties.clone())
            .await
            .map_err(delta)?;
        Ok((metrics.num_files_removed, metrics.num_files_added))
    }
}

/// How a flush compresses the files it writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushCodec {
    /// The table's codec (`TIMEFUSION_PARQUET_COMPRESSION`).
    Table,
    /// LZ4_RAW, whatever the table's codec: for a flush while the memory budget squeezes the
    /// buffer ([`crate::engine::buffer::Buffer::squeezed`]), when the flush's CPU is what
    /// holds writers back and the buffer it drains is small, so its files are small too
    /// (BENCHMARKS.md, "LZ4 flushes under a squeeze"). Background merges and compaction
    /// rewrite small files with the table's codec; a file no merge takes keeps LZ4, which
    /// every reader decodes like any other.
    Fast,
}

/// The Parquet properties every data file of a table is written with (flush and
/// compaction): its [`Layout`](crate::engine::schema::Layout)'s row groups, pages, bloom
/// filters and dictionary pages, page-level statistics (the column index), and
/// `compression`. The time column and the bloom filter columns are written without a
/// dictionary: their values are nearly all distinct, so the dictionary grew to the writer's
/// limit (1 MiB) before it gave up, and a one-hour lookup decompressed and decoded each of
/// those pages to read a page or two. The time column (always `Timestamp(µs, UTC)`, an
/// `INT64`) is `DELTA_BINARY_PACKED`: the rows of a file are in time order (or, where the
/// sort columns start with another, in time order within each run of it, as `otel_metrics`'
/// metrics), so it stores the small differences between neighbours in a few bits each rather
/// than eight bytes a value for zstd to compress again, and every query that reads the
/// column decompresses less.
fn writer_properties(schema: &TableSchema, compression: Compression) -> WriterProperties {
    let layout = &schema.layout;
    let time = ColumnPath::from(schema.time_column.as_str());
    let mut builder = WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(layout.row_group_rows))
        .set_data_page_row_count_limit(layout.page_rows)
        // The page limit is checked between write batches (1,024 rows by default).
        .set_write_batch_size(layout.page_rows.min(1024))
        .set_dictionary_page_size_limit(layout.dictionary_page_bytes)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_column_dictionary_enabled(time.clone(), false)
        .set_column_encoding(time, Encoding::DELTA_BINARY_PACKED);
    for column in &layout.bloom_filter_columns {
        let path = ColumnPath::from(column.as_str());
        builder = builder
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_fpp(path.clone(), layout.bloom_filter_fpp)
            // Sized for a row group of distinct ids, then folded to what it holds.
            .set_column_bloom_filter_max_ndv(path, layout.row_group_rows as u64);
    }
    builder.build()
}

/// Bytes of rows a flush gathers into sorted order at a time, per partition being written:
/// a partition is handed to the Parquet writer in slices of about this size, so the copy a
/// flush makes of its rows is bounded by this times the partitions written at once, not the
/// size of the largest partition. The files are the same: the writer cuts row groups by row
/// count, whatever the slices.
const FLUSH_SLICE_BYTES: usize = 8 << 20;

/// A partition's rows in the order of the schema's sort columns, gathered a slice at a time:
/// the sort keys are concatenated and sorted once, then each slice's columns are gathered
/// from the parts straight into place. A column left out of every part (see
/// [`batch::default_column`]) stays a slice of the shared default array: most of an otel
/// table's columns, which would otherwise be materialised as millions of nulls.
struct Sorted<'a> {
    table: &'a TableSchema,
    parts: &'a [&'a RecordBatch],
    /// (part, row in part) of each row, in sorted order.
    order: Vec<(usize, usize)>,
}

impl<'a> Sorted<'a> {
    fn new(
        table: &'a TableSchema,
        parts: &'a [&'a RecordBatch],
    ) -> Result<Self, arrow::error::ArrowError> {
        let rows: usize = parts.iter().map(|b| b.num_rows()).sum();
        let keys = table
            .sort_columns
            .iter()
            .filter_map(|c| table.index_of(c))
            .map(|i| {
                let column: Vec<&dyn Array> = parts.iter().map(|b| b.column(i).as_ref()).collect();
                Ok(SortColumn {
                    values: concat(&column)?,
                    options: None,
                })
            })
            .collect::<Result<Vec<_>, arrow::error::ArrowError>>()?;
        // Row `r` of the concatenation is row `r - starts[p]` of part `p`.
        let starts: Vec<usize> = parts
            .iter()
            .scan(0, |start, b| {
                let first = *start;
                *start += b.num_rows();
                Some(first)
            })
            .collect();
        let locate = |r: usize| {
            let part = starts.partition_point(|&s| s <= r) - 1;
            (part, r - starts[part])
        };
        let order = if keys.is_empty() {
            (0..rows).map(locate).collect()
        } else {
            let order = lexsort_to_indices(&keys, None)?;
            order.values().iter().map(|&r| locate(r as usize)).collect()
        };
        Ok(Sorted {
            table,
            parts,
            order,
        })
    }

    /// Ranges of sorted rows of about `bytes` each (at least 1,024 rows), covering them all.
    fn slices(&self, bytes: usize) -> impl Iterator<Item = std::ops::Range<usize>> + use<> {
        let rows = self.order.len();
        let held: usize = self.parts.iter().map(|b| batch::owned_bytes(b)).sum();
        let step = (rows as u128 * bytes as u128 / held.max(1) as u128).max(1024);
        let step = step.min(rows.max(1) as u128) as usize;
        (0..rows)
            .step_by(step)
            .map(move |start| start..(start + step).min(rows))
    }

    /// The sorted rows in `range`, as one batch of the table's schema.
    fn gather(
        &self,
        range: std::ops::Range<usize>,
    ) -> Result<RecordBatch, arrow::error::ArrowError> {
        let schema = &self.table.schema;
        let indices = &self.order[range];
        let columns = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| {
                if self
                    .parts
                    .iter()
                    .all(|b| batch::is_default(field, b.column(i)))
                {
                    return Ok(batch::default_column(field, indices.len()));
                }
                let column: Vec<&dyn Array> =
                    self.parts.iter().map(|b| b.column(i).as_ref()).collect();
                interleave(&column, indices)
            })
            .collect::<Result<Vec<_>, arrow::error::ArrowError>>()?;
        RecordBatch::try_new_with_options(
            schema.clone(),
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(indices.len())),
        )
    }
}

/// The `txn` version `wal_id` last committed to `table` (the highest WAL sequence it holds),
/// after re-reading the log when `refresh`.
async fn wal_version(
    table: &mut deltalake::DeltaTable,
    wal_id: &str,
    refresh: bool,
) -> deltalake::DeltaResult<Option<i64>> {
    if refresh {
        table.update_state().await?;
    }
    table
        .snapshot()?
        .transaction_version(table.log_store().as_ref(), wal_id)
        .await
}

/// The session deltalake takes its scan settings from: Parquet filter pushdown on (its
/// default without one) and strings read as `Utf8`, the table's type, rather than
/// `Utf8View`: `sql::table::align` cast every string of a Delta scan back to `Utf8`, copying
/// each value a second time (10% of a tenant-wide aggregation's CPU).
fn reader_session() -> Arc<SessionState> {
    static SESSION: std::sync::OnceLock<Arc<SessionState>> = std::sync::OnceLock::new();
    SESSION
        .get_or_init(|| {
            let mut config = datafusion::prelude::SessionConfig::new();
            let parquet = &mut config.options_mut().execution.parquet;
            parquet.pushdown_filters = true;
            parquet.schema_force_view_types = false;
            Arc::new(SessionStateBuilder::new().with_config(config).build())
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, AsArray, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema, TimestampMicrosecondType};

    use super::*;
    use crate::engine::ingest;
    use crate::engine::schema::Catalog;

    const MIB: u64 = 1 << 20;

    fn partition(project: &str) -> Vec<(String, String)> {
        vec![
            ("date".to_string(), "2026-12-06".to_string()),
            ("project_id".to_string(), project.to_string()),
        ]
    }

    /// Each partition's merge is its smallest tier under which enough files are below half
    /// the tier; partitions with more such files come first; finished files are left alone.
    #[test]
    fn merges_are_due_per_partition_at_the_smallest_tier_with_enough_small_files() {
        let tiers = [4 * MIB, 64 * MIB, 128 * MIB];
        let files = [
            // Five flush files: due at the first tier.
            vec![("a", 100_000); 5],
            // Three: not yet.
            vec![("b", 100_000); 3],
            // Four merged files of 3 MiB (past half the first tier) and one small one: the
            // second tier, which takes the small one too.
            vec![("c", 3 * MIB); 4],
            vec![("c", 1_000)],
            // Finished files, whatever their number.
            vec![("d", 100 * MIB); 20],
            // Files of exactly half a tier are finished for it.
            vec![("e", 2 * MIB); 6],
        ]
        .concat();
        let due = due_merges(
            files.iter().map(|&(p, size)| (partition(p), size)),
            &tiers,
            4,
        );
        let summary: Vec<_> = due
            .iter()
            .map(|m| (m.to_string(), m.target_bytes, m.small_files))
            .collect();
        assert_eq!(
            summary,
            [
                ("date=2026-12-06/project_id=e".to_string(), 64 * MIB, 6),
                ("date=2026-12-06/project_id=a".to_string(), 4 * MIB, 5),
                ("date=2026-12-06/project_id=c".to_string(), 64 * MIB, 5),
            ]
        );
        assert!(due_merges(files.iter().map(|&(p, s)| (partition(p), s)), &tiers, 0).is_empty());
        assert!(due_merges(files.iter().map(|&(p, s)| (partition(p), s)), &[], 4).is_empty());
    }

    fn part(table: &TableSchema, ts: &[i64]) -> RecordBatch {
        let columns: Vec<(&str, ArrayRef)> = vec![
            (
                "project_id",
                Arc::new(StringArray::from(vec!["p"; ts.len()])),
            ),
            (
                "timestamp",
                Arc::new(TimestampMicrosecondArray::from(ts.to_vec()).with_timezone("UTC")),
            ),
            (
                "id",
                Arc::new(StringArray::from_iter_values(
                    ts.iter().map(|t| format!("id{t}")),
                )),
            ),
        ];
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .expect("batch");
        ingest::coerce(table, &batch).expect("coerce")
    }

    #[test]
    fn a_partition_is_sorted_across_its_parts_and_left_out_columns_stay_shared() {
        let catalog = Catalog::load(None).expect("schemas");
        let table = catalog.get("otel_logs_and_spans").expect("otel");
        let a = part(table, &[30, 10, 50]);
        let b = part(table, &[20, 60, 40, 0]);
        let parts = [&a, &b];
        let rows = Sorted::new(table, &parts).expect("sorted");
        // Fewer rows than the least a slice holds: one slice.
        assert_eq!(
            rows.slices(1).map(|r| (r.start, r.end)).collect::<Vec<_>>(),
            [(0, 7)]
        );
        let out = rows.gather(0..7).expect("gathered");
        assert_eq!(out.num_rows(), 7);
        let ts = out
            .column(table.index_of("timestamp").expect("timestamp"))
            .as_primitive::<TimestampMicrosecondType>();
        assert_eq!(ts.values().to_vec(), vec![0, 10, 20, 30, 40, 50, 60]);
        let ids = out
            .column(table.index_of("id").expect("id"))
            .as_string::<i32>();
        let ids: Vec<&str> = ids.iter().map(|v| v.expect("id")).collect();
        assert_eq!(ids, ["id0", "id10", "id20", "id30", "id40", "id50", "id60"]);
        let name = table.index_of("name").expect("name");
        let field = table.schema.field(name);
        assert!(batch::is_default(field, out.column(name)));
        assert_eq!(
            out.column(name).to_data().buffers()[0].as_ptr(),
            a.column(name).to_data().buffers()[0].as_ptr(),
            "a left-out column is a slice of the shared default array, not a copy"
        );
    }

    #[test]
    fn a_partition_is_gathered_in_slices_that_together_are_its_sorted_rows() {
        let catalog = Catalog::load(None).expect("schemas");
        let table = catalog.get("otel_logs_and_spans").expect("otel");
        let a = part(table, &(0..1500).rev().map(|t| t * 2).collect::<Vec<_>>());
        let b = part(table, &(0..1500).map(|t| t * 2 + 1).collect::<Vec<_>>());
        let parts = [&a, &b];
        let rows = Sorted::new(table, &parts).expect("sorted");
        // One byte a slice asks for the fewest rows a slice holds: 1,024.
        let ranges: Vec<_> = rows.slices(1).collect();
        assert_eq!(ranges, [0..1024, 1024..2048, 2048..3000]);
        let ts_index = table.index_of("timestamp").expect("timestamp");
        let mut ts = Vec::new();
        for range in ranges {
            let slice = rows.gather(range).expect("slice");
            ts.extend(
                slice
                    .column(ts_index)
                    .as_primitive::<TimestampMicrosecondType>()
                    .values()
                    .iter()
                    .copied(),
            );
        }
        assert_eq!(ts, (0..3000).collect::<Vec<_>>());
        // Enough bytes a slice for the whole partition: one slice.
        assert_eq!(
            rows.slices(1 << 30)
                .map(|r| (r.start, r.end))
                .collect::<Vec<_>>(),
            [(0, 3000)]
        );
    }
}
