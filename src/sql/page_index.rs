//! Parquet page indexes kept in DataFusion's file metadata cache ([`cache_page_indexes`]).
//!
//! DataFusion caches each file's parsed footer, but its Parquet opener asks for the footer
//! without the page index and, when the query's predicate can prune pages, loads and parses
//! the page index into a copy of its own that the cache never sees. A one-hour query over a
//! daily file re-read and re-parsed that file's whole column and offset index on every run
//! (6% of `trace_by_id`'s CPU). The cache does keep a page index handed to it, and the opener
//! uses one it finds there: so before a Delta scan runs, each of its files whose predicate can
//! use the page index is asked for through the scan's own reader factory with the page index
//! wanted. A file already cached with its index costs one cache lookup; any other is read once
//! (the read the opener would have made) and cached for the next query.
//!
//! Data files are immutable and the cache checks each entry against the file's size and
//! modification time, so a cached index is never stale. The cache's size is DataFusion's
//! (`datafusion.runtime.metadata_cache_limit`, 50 MiB, least recently used evicted).

use std::sync::Arc;

use datafusion::datasource::physical_plan::{
    FileScanConfig, ParquetFileReaderFactory, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::file::metadata::PageIndexPolicy;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::StreamExt;

/// Files whose indexes are read at once when none is cached yet (a first query on S3).
const CONCURRENT_READS: usize = 8;

/// Puts the page index of each Parquet file `plan` scans with a predicate into the metadata
/// cache its reader factory uses, where it is not there yet. A file that cannot be read is
/// left to the scan, which reports the error to the query.
pub async fn cache_page_indexes(plan: &Arc<dyn ExecutionPlan>) {
    let mut reads = Vec::new();
    collect(plan, &mut reads);
    if reads.is_empty() {
        return;
    }
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    // The reader's own file metrics go to a set nobody shows.
    let metrics = ExecutionPlanMetricsSet::new();
    futures::stream::iter(reads)
        .for_each_concurrent(CONCURRENT_READS, |(factory, file)| {
            let (options, metrics) = (&options, &metrics);
            async move {
                let location = file.object_meta.location.clone();
                let read = match factory.create_reader(0, file, None, metrics) {
                    Ok(mut reader) => reader.get_metadata(Some(options)).await.map(|_| ()),
                    Err(e) => Err(datafusion::parquet::errors::ParquetError::External(
                        Box::new(e),
                    )),
                };
                if let Err(e) = read {
                    tracing::debug!(file = %location, error = %e, "page index not cached");
                }
            }
        })
        .await;
}

type Read = (
    Arc<dyn ParquetFileReaderFactory>,
    datafusion::datasource::listing::PartitionedFile,
);

/// The files of every Parquet scan below `plan` that prunes pages: it has a predicate, the
/// page index is enabled, and its reader factory caches (deltalake's always does).
fn collect(plan: &Arc<dyn ExecutionPlan>, reads: &mut Vec<Read>) {
    if let Some((config, factory)) = page_pruning_scan(plan) {
        for group in &config.file_groups {
            reads.extend(group.iter().map(|file| (factory.clone(), file.clone())));
        }
        return;
    }
    for child in plan.children() {
        collect(child, reads);
    }
}

fn page_pruning_scan(
    plan: &Arc<dyn ExecutionPlan>,
) -> Option<(&FileScanConfig, &Arc<dyn ParquetFileReaderFactory>)> {
    let exec = plan.downcast_ref::<DataSourceExec>()?;
    let config = exec.data_source().downcast_ref::<FileScanConfig>()?;
    let source = config.file_source().downcast_ref::<ParquetSource>()?;
    let prunes = datafusion::datasource::physical_plan::FileSource::filter(source).is_some()
        && source.table_parquet_options().global.enable_page_index;
    let factory = source.parquet_file_reader_factory()?;
    prunes.then_some((config, factory))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use datafusion::datasource::listing::PartitionedFile;
    use datafusion::datasource::physical_plan::FileScanConfigBuilder;
    use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
    // What `DFParquetMetadata` caches (`reader` has a type of the same name).
    use datafusion::datasource::physical_plan::parquet::metadata::CachedParquetMetaData;
    use datafusion::execution::cache::cache_manager::FileMetadataCache;
    use datafusion::execution::cache::default_cache::DefaultCache;
    use datafusion::execution::object_store::ObjectStoreUrl;
    use datafusion::logical_expr::Operator;
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::WriterProperties;
    use datafusion::physical_expr::expressions::{Column, binary, lit};
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

    /// A scan of the file, with `v > 900` as its predicate or none, and the cache its reader
    /// factory uses.
    fn scan(
        store: Arc<InMemory>,
        schema: Arc<Schema>,
        meta: object_store::ObjectMeta,
        predicate: bool,
    ) -> (Arc<dyn ExecutionPlan>, Arc<FileMetadataCache>) {
        let cache: Arc<FileMetadataCache> = Arc::new(DefaultCache::new(1 << 20));
        let factory = Arc::new(CachedParquetFileReaderFactory::new(store, cache.clone()));
        let mut source =
            ParquetSource::new(schema.clone()).with_parquet_file_reader_factory(factory);
        if predicate {
            let expr = binary(
                Arc::new(Column::new("v", 0)),
                Operator::Gt,
                lit(900i64),
                &schema,
            )
            .expect("predicate");
            source = source.with_predicate(expr);
        }
        let config = FileScanConfigBuilder::new(
            ObjectStoreUrl::parse("memory://").expect("url"),
            Arc::new(source),
        )
        .with_file(PartitionedFile::from(meta))
        .build();
        (DataSourceExec::from_data_source(config), cache)
    }

    fn cached_page_index(cache: &FileMetadataCache) -> Option<bool> {
        let entry = cache.get(&Path::from("f.parquet"))?;
        let metadata = entry
            .file_metadata
            .as_any()
            .downcast_ref::<CachedParquetMetaData>()
            .expect("Parquet metadata")
            .parquet_metadata()
            .clone();
        Some(metadata.column_index().is_some() && metadata.offset_index().is_some())
    }

    #[tokio::test]
    async fn a_pruning_scan_leaves_its_files_page_indexes_in_the_cache() {
        let store = Arc::new(InMemory::new());
        let (schema, meta) = file(&store).await;

        let (plan, cache) = scan(store.clone(), schema.clone(), meta.clone(), true);
        assert_eq!(cached_page_index(cache.as_ref()), None);
        cache_page_indexes(&plan).await;
        assert_eq!(cached_page_index(cache.as_ref()), Some(true));
        // Cached already: the second call finds it (and reads nothing).
        cache_page_indexes(&plan).await;
        assert_eq!(cached_page_index(cache.as_ref()), Some(true));

        // Without a predicate the opener never wants the page index: nothing is read.
        let (plan, cache) = scan(store.clone(), schema.clone(), meta.clone(), false);
        cache_page_indexes(&plan).await;
        assert_eq!(cached_page_index(cache.as_ref()), None);

        // A file that is gone is the scan's error to report, not this.
        store.delete(&meta.location).await.expect("delete");
        let (plan, cache) = scan(store, schema, meta, true);
        cache_page_indexes(&plan).await;
        assert_eq!(cached_page_index(cache.as_ref()), None);
    }
}
