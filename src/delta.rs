//! Delta Lake tables: open or create them, and commit flushes with their WAL position.
//!
//! A flush writes one table's planned rows as zstd Parquet, sorted by the schema's sort
//! columns within each (project, bucket), partitioned by `[project_id, date]`, and commits it
//! with a Delta `txn` action (app id = the WAL id, version = the highest WAL sequence the
//! flush covers) in the same commit. Delta commits are atomic (put-if-absent of the next
//! `_delta_log/NNN.json`), so after a crash the `txn` version says exactly which WAL records
//! are already in the table. This module never deletes WAL; the caller trims it once
//! [`DeltaTable::flush`] has returned.

use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{StructType, Transaction};
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::SaveMode;
use tokio::sync::Mutex;

use crate::Committed;
use crate::buffer::FlushPlan;
use crate::schema::TableSchema;

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
    #[error("cannot use table location {0}: {1}")]
    Location(String, String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One Delta table and the writer state TimeFusion keeps for it.
pub struct DeltaTable {
    schema: Arc<TableSchema>,
    table: Mutex<deltalake::DeltaTable>,
    writer_properties: WriterProperties,
}

impl DeltaTable {
    /// Opens the table under `root`, creating it (version 0, no files) if it does not exist.
    pub async fn open_or_create(
        root: &Path,
        schema: Arc<TableSchema>,
        zstd_level: i32,
    ) -> Result<Self> {
        let name = schema.name.clone();
        let delta = |source: deltalake::DeltaTableError| Error::Delta {
            table: name.clone(),
            source,
        };
        let dir = root.join(&schema.name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Location(dir.display().to_string(), e.to_string()))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| Error::Location(dir.display().to_string(), e.to_string()))?;
        let url = url::Url::from_directory_path(&dir).map_err(|()| {
            Error::Location(dir.display().to_string(), "not an absolute path".into())
        })?;
        // Open only an existing log; a missing one means "create", not an error to log.
        let mut table = if dir.join("_delta_log").is_dir() {
            deltalake::open_table(url).await.map_err(delta)?
        } else {
            deltalake::DeltaTableBuilder::from_url(url)
                .map_err(delta)?
                .build()
                .map_err(delta)?
        };
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
                .with_save_mode(SaveMode::Ignore)
                .await
                .map_err(delta)?;
            tracing::info!(table = %name, location = %dir.display(), "created Delta table");
        }
        let level = ZstdLevel::try_new(zstd_level)
            .map_err(|e| Error::Location(name.clone(), format!("zstd level: {e}")))?;
        let writer_properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .build();
        Ok(DeltaTable {
            schema,
            table: Mutex::new(table),
            writer_properties,
        })
    }

    /// The highest WAL sequence of `wal_id` already committed to this table, if any.
    pub async fn committed_wal_seq(&self, wal_id: &str) -> Result<Option<u64>> {
        let table = self.table.lock().await;
        let version = table
            .snapshot()
            .map_err(|source: deltalake::DeltaTableError| Error::Delta {
                table: self.schema.name.clone(),
                source,
            })?
            .transaction_version(table.log_store().as_ref(), wal_id)
            .await
            .map_err(|source: deltalake::DeltaTableError| Error::Delta {
                table: self.schema.name.clone(),
                source,
            })?;
        Ok(version.map(|v| v.max(0) as u64))
    }

    /// A scan of the table pinned at its current version.
    pub async fn reader(&self) -> Result<Committed> {
        let table = self.table.lock().await;
        self.reader_of(&table).await
    }

    async fn reader_of(&self, table: &deltalake::DeltaTable) -> Result<Committed> {
        let scan = table
            .table_provider()
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

    /// Writes `plan` as one Delta commit carrying `txn(wal_id, plan.upto)`, and returns a
    /// reader pinned at the new version. When this returns, the commit is durable.
    pub async fn flush(&self, plan: &FlushPlan, wal_id: &str) -> Result<Committed> {
        let name = &self.schema.name;
        let arrow = |source| Error::Arrow {
            table: name.clone(),
            source,
        };
        let mut batches = Vec::with_capacity(plan.groups.len());
        for (_, _, group) in &plan.groups {
            let batch = concat_batches(&self.schema.schema, group).map_err(arrow)?;
            batches.push(self.sorted(batch).map_err(arrow)?);
        }
        let mut table = self.table.lock().await;
        let commit = CommitProperties::default()
            .with_application_transaction(Transaction::new(wal_id, plan.upto.0 as i64));
        let written = table
            .clone()
            .write(batches)
            .with_save_mode(SaveMode::Append)
            .with_partition_columns(self.schema.partition_columns.clone())
            .with_writer_properties(self.writer_properties.clone())
            .with_commit_properties(commit)
            .await
            .map_err(|source: deltalake::DeltaTableError| Error::Delta {
                table: name.clone(),
                source,
            })?;
        *table = written;
        self.reader_of(&table).await
    }

    fn sorted(&self, batch: RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
        if self.schema.sort_columns.is_empty() || batch.num_rows() < 2 {
            return Ok(batch);
        }
        let columns: Vec<SortColumn> = self
            .schema
            .sort_columns
            .iter()
            .filter_map(|c| self.schema.index_of(c))
            .map(|i| SortColumn {
                values: batch.column(i).clone(),
                options: None,
            })
            .collect();
        let indices = lexsort_to_indices(&columns, None)?;
        take_record_batch(&batch, &indices)
    }
}
