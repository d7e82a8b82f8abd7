//! System tables: TimeFusion's own state as SQL relations (`timefusion_cache`).

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
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}
