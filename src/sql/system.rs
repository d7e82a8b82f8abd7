//! System tables: TimeFusion's own state as SQL relations (`timefusion_cache`,
//! `timefusion_memory`).

use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

/// `timefusion_cache`: one row with the object-store cache counters at the time of the scan.
pub struct CacheStatsTable {
    storage: Arc<crate::engine::storage::Storage>,
    schema: SchemaRef,
}

impl CacheStatsTable {
    pub fn new(storage: Arc<crate::engine::storage::Storage>) -> Self {
        let columns = [
            "hits",
            "misses",
            "store_gets",
            "store_lists",
            "store_writes",
            "bytes_from_cache",
            "bytes_from_store",
        ];
        let fields: Vec<Field> = columns
            .iter()
            .map(|name| Field::new(*name, DataType::Int64, false))
            .collect();
        CacheStatsTable {
            storage,
            schema: Arc::new(arrow::datatypes::Schema::new(fields)),
        }
    }
}

impl fmt::Debug for CacheStatsTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CacheStatsTable")
    }
}

#[async_trait]
impl TableProvider for CacheStatsTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let s = self.storage.cache_stats();
        let values = [
            s.hits,
            s.misses,
            s.store_gets,
            s.store_lists,
            s.store_writes,
            s.bytes_from_cache,
            s.bytes_from_store,
        ];
        let columns: Vec<arrow::array::ArrayRef> = values
            .iter()
            .map(|v| {
                Arc::new(arrow::array::Int64Array::from(vec![*v as i64])) as arrow::array::ArrayRef
            })
            .collect();
        one_batch(&self.schema, columns, projection)
    }
}

/// `timefusion_memory`: one row per consumer of the process's memory at the time of the scan
/// ([`crate::memory::Memory::usage`]): `process` (the resident set against the budget),
/// `buffer` (against the limit writers are admitted against now), `query`, `parquet_metadata`,
/// `condition_cache`, `doput_in_flight`, `cache`, and `other`, the resident memory none of them accounts for.
pub struct MemoryTable {
    memory: Arc<crate::memory::Memory>,
    schema: SchemaRef,
}

impl MemoryTable {
    pub fn new(memory: Arc<crate::memory::Memory>) -> Self {
        let schema = arrow::datatypes::Schema::new(vec![
            Field::new("consumer", DataType::Utf8, false),
            Field::new("used_bytes", DataType::Int64, false),
            Field::new("limit_bytes", DataType::Int64, true),
            Field::new("waits", DataType::Int64, false),
            Field::new("wait_seconds", DataType::Float64, false),
        ]);
        MemoryTable {
            memory,
            schema: Arc::new(schema),
        }
    }
}

impl fmt::Debug for MemoryTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemoryTable")
    }
}

#[async_trait]
impl TableProvider for MemoryTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
        let usage = self.memory.usage();
        let int = |f: &dyn Fn(&crate::memory::Usage) -> Option<u64>| -> ArrayRef {
            Arc::new(Int64Array::from_iter(
                usage.iter().map(|u| f(u).map(|v| v as i64)),
            ))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                usage.iter().map(|u| u.consumer),
            )),
            int(&|u| Some(u.used_bytes)),
            int(&|u| u.limit_bytes),
            int(&|u| Some(u.waits)),
            Arc::new(Float64Array::from_iter_values(
                usage.iter().map(|u| u.wait_seconds),
            )),
        ];
        one_batch(&self.schema, columns, projection)
    }
}

/// A scan of one batch of `columns` in `schema`, with `projection` applied.
pub(crate) fn one_batch(
    schema: &SchemaRef,
    columns: Vec<arrow::array::ArrayRef>,
    projection: Option<&Vec<usize>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(MemorySourceConfig::try_new_exec(
        &[vec![batch]],
        schema.clone(),
        projection.cloned(),
    )?)
}
