//! `INSERT … SELECT` and `INSERT` with expressions: the data sink DataFusion writes into,
//! which hands the rows to the engine's one write path.

use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::datasource::sink::DataSink;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::StreamExt;

use crate::engine::ingest::{Ingest, Via};

/// An `INSERT … SELECT` is written to the WAL in records of at most this many bytes.
const INSERT_RECORD_BYTES: usize = 64 << 20;

/// Where `INSERT` rows go: [`Ingest::write`]. Its schema is all-nullable because constraints
/// (required columns, derived `date`) are checked by the ingest path with proper SQLSTATEs.
pub struct IngestSink {
    table: String,
    schema: SchemaRef,
    ingest: Arc<Ingest>,
}

impl fmt::Debug for IngestSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IngestSink")
            .field("table", &self.table)
            .finish()
    }
}

impl DisplayAs for IngestSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "TimeFusionIngest: table={}", self.table)
    }
}

impl IngestSink {
    /// A sink into `table`, taking rows of `schema`.
    pub fn new(table: String, schema: SchemaRef, ingest: Arc<Ingest>) -> IngestSink {
        IngestSink {
            table,
            schema,
            ingest,
        }
    }

    async fn write(&self, pending: &mut Vec<RecordBatch>) -> Result<u64> {
        if pending.is_empty() {
            return Ok(0);
        }
        let batch = concat_batches(&pending[0].schema(), pending.iter())?;
        pending.clear();
        let rows = self
            .ingest
            .write(&self.table, batch, Via::Insert)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(rows as u64)
    }
}

#[async_trait]
impl DataSink for IngestSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> Result<u64> {
        // One WAL record per statement when it fits, so a typical INSERT is all-or-nothing;
        // a huge INSERT … SELECT is written in records of INSERT_RECORD_BYTES.
        let mut pending = Vec::new();
        let mut pending_bytes = 0;
        let mut rows = 0;
        while let Some(batch) = data.next().await {
            let batch = batch?;
            pending_bytes += batch.get_array_memory_size();
            pending.push(batch);
            if pending_bytes >= INSERT_RECORD_BYTES {
                rows += self.write(&mut pending).await?;
                pending_bytes = 0;
            }
        }
        rows += self.write(&mut pending).await?;
        Ok(rows)
    }
}
