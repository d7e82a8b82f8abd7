//! Parquet page indexes kept in DataFusion's file metadata cache ([`with_cached_page_indexes`]).
//!
//! DataFusion caches each file's parsed footer, but its Parquet opener asks for the footer
//! without the page index and, when the query's predicate can prune pages, loads and parses
//! the page index into a copy of its own that the cache never sees. A one-hour query over a
//! daily file re-read and re-parsed that file's whole column and offset index on every run
//! (6% of `trace_by_id`'s CPU). The cache does keep a page index handed to it, and the opener
//! uses one it finds there. So a Parquet scan whose predicate, as planned, can prune pages
//! gets a reader factory that asks the scan's own (caching) factory for each file it opens
//! with the page index wanted: a file cached with its index costs one cache lookup; any other
//! has its index read when the scan opens it (two partitions opening the same file at once
//! may both read it) and cached for the next query.
//!
//! The decision is made when the scan is planned, from its static predicate: a dynamic filter
//! pushed into the scan later (a hash join's, an unseeded top-k's) is not seen, and such a
//! scan's opener still loads a page index of its own. What this reads that the opener would
//! not: the page index of an opened file whose row groups the statistics all rule out, or all
//! fully match (the opener then skips page pruning). Nothing is read at planning (`EXPLAIN`
//! reads no data file), nor for a file the scan never opens (pruned by its Delta statistics
//! or a top-k's threshold, or past a `LIMIT`). Data files are immutable and uniquely named,
//! so a cached index is never stale. The cache's size is `TIMEFUSION_METADATA_CACHE_MB` (50 MiB,
//! or 5% of a process budget; least recently used evicted, [`crate::sql::metadata_cache`]); an entry
//! larger than all of it is not kept, and the file's footer-only entry goes with it. Page
//! index bytes read through the cache are not counted in the scan's `bytes_scanned`.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::PagePruningAccessPlanFilter;
use datafusion::datasource::physical_plan::{
    FileScanConfig, FileSource, ParquetFileReaderFactory, ParquetSource,
};
use datafusion::error::Result;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::future::BoxFuture;

/// `plan` with every Parquet scan whose predicate can prune pages reading its files' metadata
/// with the page index, through its own reader factory (see the module documentation).
pub fn with_cached_page_indexes(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some((config, source, factory)) = page_pruning_scan(&node) else {
            return Ok(Transformed::no(node));
        };
        let factory = Arc::new(PageIndexFactory { inner: factory });
        let source = source.clone().with_parquet_file_reader_factory(factory);
        Ok(Transformed::yes(
            crate::sql::topk_seed::with_parquet_source(config, source),
        ))
    })
    .map(|t| t.data)
}

/// A Parquet scan whose page index the opener would use: the page index is enabled and its
/// predicate as planned has a part a page's min/max can rule out (not `true`, not only
/// multi-column terms), the test the opener makes per file; with its reader factory.
fn page_pruning_scan(
    plan: &Arc<dyn ExecutionPlan>,
) -> Option<(
    &FileScanConfig,
    &ParquetSource,
    Arc<dyn ParquetFileReaderFactory>,
)> {
    let (config, source) = crate::sql::topk_seed::parquet_source(plan)?;
    if !source.table_parquet_options().global.enable_page_index {
        return None;
    }
    let predicate = FileSource::filter(source)?;
    let pages = PagePruningAccessPlanFilter::new(&predicate, config.file_schema().clone());
    if pages.filter_number() == 0 {
        return None;
    }
    let factory = source.parquet_file_reader_factory()?;
    Some((config, source, factory.clone()))
}

/// Readers that ask `inner`'s for metadata with the page index.
#[derive(Debug)]
struct PageIndexFactory {
    inner: Arc<dyn ParquetFileReaderFactory>,
}

impl ParquetFileReaderFactory for PageIndexFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> Result<Box<dyn AsyncFileReader + Send>> {
        let inner = self
            .inner
            .create_reader(partition_index, file, metadata_size_hint, metrics)?;
        Ok(Box::new(PageIndexReader { inner }))
    }
}

struct PageIndexReader {
    inner: Box<dyn AsyncFileReader + Send>,
}

impl AsyncFileReader for PageIndexReader {
    fn get_bytes(
        &mut self,
        range: Range<u64>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Bytes>> {
        self.inner.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Vec<Bytes>>> {
        self.inner.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, datafusion::parquet::errors::Result<Arc<ParquetMetaData>>> {
        let options = options
            .cloned()
            .unwrap_or_default()
            .with_page_index_policy(PageIndexPolicy::Optional);
        Box::pin(async move { self.inner.get_metadata(Some(&options)).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use datafusion::datasource::physical_plan::FileScanConfigBuilder;
    use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
    use datafusion::datasource::source::DataSourceExec;
    // What `DFParquetMetadata` caches (`reader` has a type of the same name).
    use datafusion::datasource::physical_plan::parquet::metadata::CachedParquetMetaData;
    use datafusion::execution::cache::cache_manager::FileMetadataCache;
    use datafusion::execution::cache::default_cache::DefaultCache;
    use datafusion::execution::object_store::ObjectStoreUrl;
    use datafusion::logical_expr::Operator;
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::WriterProperties;
    use datafusion::physical_expr::PhysicalExpr;
    use datafusion::physical_expr::expressions::{Column, binary, lit};
    use datafusion::prelude::SessionContext;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;
    use object_store::path::Path;

    /// A Parquet file of 1,000 rows in pages of 100, in an in-memory store.
    async fn file(store: &InMemory) -> (Arc<Schema>, object_store::ObjectMeta) {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(0..1_000))],
        )
        .expect("batch");
        let properties = WriterProperties::builder()
            .set_data_page_row_count_limit(100)
            .set_write_batch_size(100)
            .build();
        let mut bytes = Vec::new();
        let mut writer =
            ArrowWriter::try_new(&mut bytes, schema.clone(), Some(properties)).expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
        let path = Path::from("f.parquet");
        store.put(&path, bytes.into()).await.expect("put");
        (schema, store.head(&path).await.expect("head"))
    }

    /// The rows of a scan of the file with `predicate` pushed into it (as deltalake's scan
    /// does), wrapped by [`with_cached_page_indexes`] or not, and what the metadata cache of
    /// its reader factory holds for the file afterwards: nothing, the footer alone (`false`)
    /// or the footer with the page index (`true`).
    async fn scan(
        wrapped: bool,
        predicate: Arc<dyn PhysicalExpr>,
        execute: bool,
    ) -> (usize, Option<bool>) {
        let store = Arc::new(InMemory::new());
        let (schema, meta) = file(&store).await;
        let cache: Arc<FileMetadataCache> = Arc::new(DefaultCache::new(1 << 20));
        let factory = Arc::new(CachedParquetFileReaderFactory::new(
            store.clone(),
            cache.clone(),
        ));
        let source = ParquetSource::new(schema)
            .with_parquet_file_reader_factory(factory)
            .with_predicate(predicate)
            .with_pushdown_filters(true);
        let url = ObjectStoreUrl::parse("memory://").expect("url");
        let config = FileScanConfigBuilder::new(url.clone(), Arc::new(source))
            .with_file(PartitionedFile::from(meta))
            .build();
        let mut plan: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
        if wrapped {
            plan = with_cached_page_indexes(plan).expect("wrapped");
        }
        let mut rows = 0;
        if execute {
            let context = SessionContext::new();
            context.register_object_store(url.as_ref(), store);
            let batches = datafusion::physical_plan::collect(plan, context.task_ctx())
                .await
                .expect("scan");
            rows = batches.iter().map(RecordBatch::num_rows).sum();
        }
        let cached = cache.get(&Path::from("f.parquet")).map(|entry| {
            let metadata = entry
                .file_metadata
                .as_any()
                .downcast_ref::<CachedParquetMetaData>()
                .expect("Parquet metadata")
                .parquet_metadata()
                .clone();
            metadata.column_index().is_some() && metadata.offset_index().is_some()
        });
        (rows, cached)
    }

    fn above(v: i64) -> Arc<dyn PhysicalExpr> {
        let schema = Schema::new(vec![Field::new("v", DataType::Int64, false)]);
        binary(Arc::new(Column::new("v", 0)), Operator::Gt, lit(v), &schema).expect("v > x")
    }

    #[tokio::test]
    async fn a_page_pruning_scan_leaves_its_files_page_indexes_in_the_cache() {
        // DataFusion alone caches the footer and keeps the page index it loads to itself.
        assert_eq!(scan(false, above(900), true).await, (99, Some(false)));
        // Wrapped, the page index is cached with the footer; the rows are the same.
        assert_eq!(scan(true, above(900), true).await, (99, Some(true)));
        // Planning reads nothing.
        assert_eq!(scan(true, above(900), false).await, (0, None));
        // A predicate no page can rule out (`true`, as the Delta scan's is when the time
        // column's statistics hint was all of it): the opener never wants the page index.
        assert_eq!(scan(true, lit(true), true).await, (1_000, Some(false)));
    }
}
