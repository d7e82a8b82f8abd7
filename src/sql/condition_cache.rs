//! Where a filter matched in each data file, so the next scan with the same filter reads only
//! those rows: ClickHouse's query condition cache, for TimeFusion's Parquet scans.
//!
//! A trace reopened, a log search repeated, a dashboard whose time range does not move: each
//! runs the same filter over the same immutable files again, and each time the Parquet reader
//! loads bloom filters, decodes the filter columns of every row group the statistics keep, and
//! finds the same few rows. [`ConditionCache`] remembers, per (data file, predicate), which
//! blocks of [`BLOCK_ROWS`] rows held a row the scan returned: none (the file is left out of
//! the next scan), a few (the next scan of the file reads those blocks alone, through
//! DataFusion's file-level row selection: pages outside them are neither fetched nor
//! decoded), or so many that a selection would not pay ([`Matches::Dense`], kept so the file
//! is not recorded again).
//!
//! [`ConditionCacheRule`] runs last among the physical optimizer's rules, once every filter
//! has been pushed into the scans. For each Parquet scan whose predicate is a pure function
//! of a row ([`canonical`]: columns, literals, operators and immutable functions; no dynamic
//! filter such as a top-k's threshold, which changes while the query runs) it applies what
//! the cache holds for each file, and when some files have no entry and the scan reads every
//! row the predicate keeps (no `LIMIT` pushed into it), wraps it in a [`RecordExec`]: the
//! scan also returns each row's position in its file (DataFusion's `file_row_index()`
//! virtual column) beside deltalake's file id column, and the wrapper records the blocks of
//! the rows that come out, strips the position and, once every partition of the scan has
//! been read to its end without an error, stores an entry for each file. A scan cut short (a
//! limit above it, an error, a cancelled query) stores nothing.
//!
//! Why an entry is never wrong: data files are immutable and uniquely named (the key holds
//! the path and the size); the predicate's [`canonical`] text names what it computes (two
//! predicates that may keep different rows never share it), and the key holds 128 bits of
//! its BLAKE3 hash (ClickHouse keys its cache by a 128-bit hash of the condition too); the
//! rows a completed scan returns are a superset of the rows matching the predicate in the
//! files it read (the scan prunes only what the predicate rules out; where it does not
//! filter rows itself, a `FilterExec` above does), so a later scan restricted to those
//! blocks loses no match, and it still evaluates the whole predicate on them. A scan whose
//! every file has an entry reads no bloom filter: it would only repeat what the entries
//! know. A file whose rows a Delta deletion vector hides is not
//! recorded (its scan carries a virtual column of its own). UPDATE and DELETE plan without
//! this rule (`engine::delta`): a rewrite must read every row of a file.
//!
//! The cache is `TIMEFUSION_CONDITION_CACHE_MB` of memory (least recently used entries
//! evicted; 0 turns it off). An entry is a few hundred bytes: the key's path and one
//! selector per run of blocks (the key counted twice: DataFusion's LRU keeps two copies). `SELECT * FROM timefusion_memory` shows its use
//! (`condition_cache`); EXPLAIN shows `ConditionCacheRecordExec` above a scan being recorded.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result, ScalarValue, TableReference};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::ParquetRowSelection;
use datafusion::datasource::physical_plan::parquet::metadata::CachedParquetMetaData;
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfig, FileScanConfigBuilder, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::cache::{Cache, CacheKey, CacheValue};
use datafusion::logical_expr::Volatility;
use datafusion::parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use datafusion::physical_expr::expressions::{
    BinaryExpr, CaseExpr, CastExpr, Column, InListExpr, IsNotNullExpr, IsNullExpr, LikeExpr,
    Literal, NegativeExpr, NotExpr, TryCastExpr,
};
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;

use crate::sql::MetadataCache;

/// Rows a recorded block covers: a matching row makes its whole block part of the next scan.
/// A Parquet page holds some thousands of rows, so a block rarely costs more than the page
/// its match is in.
pub const BLOCK_ROWS: usize = 1024;

/// Past this share of a file's rows a selection saves too little to be worth its selectors.
const DENSE_SHARE: f64 = 0.5;

/// Predicates whose canonical text is longer than this (a long `IN` list) are not cached:
/// naming and hashing them costs more than a lookup saves.
const MAX_PREDICATE_BYTES: usize = 64 << 10;

/// What one file held for one predicate.
#[derive(Clone, Debug)]
pub enum Matches {
    /// No row: the file is left out of the scan.
    None,
    /// The blocks with a match, as a selection over the whole file.
    Rows(Arc<ParquetRowSelection>),
    /// Too many blocks to select: read as if nothing were cached.
    Dense,
}

impl CacheValue for Matches {
    fn size(&self) -> usize {
        // The value's own size is at least one byte: DefaultCache keeps nothing of size 0.
        std::mem::size_of::<Self>()
            + match self {
                Matches::Rows(rows) => {
                    rows.selection().iter().count() * std::mem::size_of::<RowSelector>()
                }
                Matches::None | Matches::Dense => 0,
            }
    }
}

/// A data file (path and size: files are immutable and uniquely named) and a predicate (128
/// bits of the BLAKE3 hash of its text).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    file: Arc<str>,
    size: u64,
    predicate: Digest,
}

/// 128 bits of a predicate text's BLAKE3 hash.
type Digest = [u8; 16];

impl CacheKey for Key {
    fn size(&self) -> usize {
        // DataFusion's LRU holds each key twice (its queue and its hit counts).
        2 * (std::mem::size_of::<Self>() + self.file.len())
    }

    fn table_ref(&self) -> Option<&TableReference> {
        None
    }
}

/// Where each predicate matched in each data file ([module documentation](self)).
pub struct ConditionCache {
    entries: DefaultCache<Key, Matches>,
}

impl fmt::Debug for ConditionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionCache")
            .field("limit", &self.entries.cache_limit())
            .field("used", &self.entries.memory_used())
            .finish()
    }
}

impl ConditionCache {
    /// A cache of `bytes`; 0 keeps nothing.
    pub fn new(bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            entries: DefaultCache::new(bytes).with_name("condition_cache"),
        })
    }

    pub fn memory_used(&self) -> usize {
        self.entries.memory_used()
    }

    pub fn limit(&self) -> usize {
        self.entries.cache_limit()
    }

    fn get(&self, key: &Key) -> Option<Matches> {
        self.entries.get(key)
    }

    fn put(&self, key: Key, matches: Matches) {
        self.entries.put(&key, matches);
    }
}

/// The physical optimizer rule that applies and records [`ConditionCache`] entries.
pub struct ConditionCacheRule {
    cache: Arc<ConditionCache>,
    /// Where a recorded file's row count is read (the scan has just read its footer).
    metadata: Arc<MetadataCache>,
}

impl fmt::Debug for ConditionCacheRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionCacheRule")
            .field("cache", &self.cache)
            .finish()
    }
}

impl ConditionCacheRule {
    pub const NAME: &'static str = "ConditionCache";

    pub fn new(cache: Arc<ConditionCache>, metadata: Arc<MetadataCache>) -> Self {
        Self { cache, metadata }
    }
}

impl PhysicalOptimizerRule for ConditionCacheRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if self.cache.limit() == 0 {
            return Ok(plan);
        }
        plan.transform_up(|node| {
            let Some((config, predicate)) = cacheable_scan(&node) else {
                return Ok(Transformed::no(node));
            };
            self.rewrite(&node, config, predicate)
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        Self::NAME
    }

    fn schema_check(&self) -> bool {
        true
    }
}

impl ConditionCacheRule {
    /// `scan` with each file's entry applied, and wrapped to record the files without one.
    fn rewrite(
        &self,
        scan: &Arc<dyn ExecutionPlan>,
        config: &FileScanConfig,
        predicate: Digest,
    ) -> Result<Transformed<Arc<dyn ExecutionPlan>>> {
        let mut changed = false;
        let mut hits = 0;
        let mut unknown: Vec<&PartitionedFile> = Vec::new();
        let mut groups = Vec::with_capacity(config.file_groups.len());
        for group in &config.file_groups {
            let mut files = Vec::with_capacity(group.len());
            for file in group.iter() {
                let key = key_of(file, &predicate);
                match self.cache.get(&key) {
                    Some(Matches::None) => {
                        hits += 1;
                        changed = true;
                    }
                    Some(Matches::Rows(rows)) if !has_access_plan(file) => {
                        hits += 1;
                        let mut file = file.clone();
                        file.extensions.insert_arc(rows);
                        files.push(file);
                        changed = true;
                    }
                    Some(_) => files.push(file.clone()),
                    // Read as someone else's selection says: not all of the file.
                    None if has_access_plan(file) => files.push(file.clone()),
                    None => {
                        unknown.push(file);
                        files.push(file.clone());
                    }
                }
            }
            // Emptied groups stay: the scan's partitions are what the plan above expects.
            groups.push(FileGroup::new(files));
        }
        let files = &crate::metrics::get().condition_cache_files;
        files
            .get_or_create(&vec![("outcome", "hit".to_string())])
            .inc_by(hits);
        files
            .get_or_create(&vec![("outcome", "miss".to_string())])
            .inc_by(unknown.len() as u64);
        let mut plan = scan.clone();
        if changed {
            let mut builder = FileScanConfigBuilder::from(config.clone()).with_file_groups(groups);
            // Every file is read where an entry says: a bloom filter would only repeat what
            // the entry knows, at the cost of reading it (a few hundred KiB per row group).
            if unknown.is_empty()
                && let Some(source) = config.file_source().downcast_ref::<ParquetSource>()
                && source.table_parquet_options().global.bloom_filter_on_read
            {
                builder =
                    builder.with_source(Arc::new(source.clone().with_bloom_filter_on_read(false)));
            }
            plan = DataSourceExec::from_data_source(builder.build());
        }
        if !unknown.is_empty()
            && let Some(recording) = self.recording(&plan, &unknown, predicate)?
        {
            return Ok(Transformed::yes(recording));
        }
        Ok(if changed {
            Transformed::yes(plan)
        } else {
            Transformed::no(plan)
        })
    }

    /// `scan` wrapped in a [`RecordExec`] that records `files`, when the scan reads every row
    /// its predicate keeps and its output names each row's file.
    fn recording(
        &self,
        scan: &Arc<dyn ExecutionPlan>,
        files: &[&PartitionedFile],
        predicate: Digest,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(exec) = scan.downcast_ref::<DataSourceExec>() else {
            return Ok(None);
        };
        let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>() else {
            return Ok(None);
        };
        if config.limit.is_some()
            || !config
                .file_source()
                .table_schema()
                .virtual_columns()
                .is_empty()
        {
            return Ok(None);
        }
        // A file split into byte ranges is recorded once, from all of them.
        let mut seen = std::collections::HashSet::new();
        let files: Vec<&PartitionedFile> = files
            .iter()
            .copied()
            .filter(|file| seen.insert(&file.object_meta.location))
            .collect();
        let files = files.as_slice();
        let Some((identity, slots)) = file_identity(config, files) else {
            return Ok(None);
        };
        // The scan's own columns, then each row's position in its file.
        let schema = scan.schema();
        let mut exprs: Vec<ProjectionExpr> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| {
                ProjectionExpr::new(Arc::new(Column::new(field.name(), i)), field.name())
            })
            .collect();
        let position = call(
            datafusion::functions::core::file_row_index(),
            vec![],
            DataType::Int64,
        );
        exprs.push(ProjectionExpr::new(position, "__timefusion_row_position"));
        let projection = ProjectionExec::try_new(exprs, scan.clone())?;
        let Some(positioned) = scan.try_swapping_with_projection(&projection)? else {
            return Ok(None);
        };
        let width = schema.fields().len();
        let with_position = positioned.schema();
        let same_columns = with_position.fields().len() == width + 1
            && schema
                .fields()
                .iter()
                .zip(with_position.fields())
                .all(|(a, b)| a.data_type() == b.data_type());
        if !same_columns || with_position.field(width).data_type() != &DataType::Int64 {
            return Ok(None);
        }
        let targets = files
            .iter()
            .map(|file| Target {
                location: file.object_meta.location.clone(),
                key: key_of(file, &predicate),
            })
            .collect();
        let partitions = positioned.properties().partitioning.partition_count();
        let run = Arc::new(Run {
            cache: self.cache.clone(),
            metadata: self.metadata.clone(),
            targets,
            slots,
            identity,
            position: width,
            progress: Mutex::new(Progress {
                started: vec![false; partitions],
                finished: 0,
                spoiled: false,
                blocks: vec![Vec::new(); files.len()],
            }),
        });
        Ok(Some(Arc::new(RecordExec {
            input: positioned,
            schema,
            properties: scan.properties().clone(),
            predicate,
            run,
        })))
    }
}

/// The scan's configuration and its predicate's digest, for a Parquet scan whose predicate
/// has a [`canonical`] text.
fn cacheable_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<(&FileScanConfig, Digest)> {
    let (config, source) = crate::sql::topk_seed::parquet_source(plan)?;
    let predicate = datafusion::datasource::physical_plan::FileSource::filter(source)?;
    let text = canonical(&predicate)?;
    Some((config, digest(&text)))
}

/// Whether `predicate` is a function of a row's values alone that [`canonical`] can name.
pub fn cacheable(predicate: &Arc<dyn PhysicalExpr>) -> bool {
    canonical(predicate).is_some()
}

/// A text that names what `predicate` computes, different for any two predicates that may
/// keep different rows; `None` when the predicate is not a function of a row's values alone
/// (a dynamic filter such as a top-k's threshold or a join's build side changes while the
/// query runs; a volatile or stable function may answer differently next time), holds a
/// node or literal this does not know how to name, or would name it in more than
/// [`MAX_PREDICATE_BYTES`].
///
/// Each node is written as its label and number of children, then the children: with every
/// label's length written before it, no two trees give the same text. Columns are named by
/// name alone (their index depends on which columns the query reads); string and binary
/// literals by their length and bytes, floats by their bits; list, struct and map literals
/// are not named (their display does not tell `['a, b']` from `['a', 'b']`).
pub fn canonical(predicate: &Arc<dyn PhysicalExpr>) -> Option<String> {
    let mut text = String::new();
    write_canonical(predicate.as_ref(), &mut text)?;
    Some(text)
}

fn write_canonical(expr: &dyn PhysicalExpr, text: &mut String) -> Option<()> {
    use std::fmt::Write;
    let label = if let Some(column) = expr.downcast_ref::<Column>() {
        format!("column {}", column.name())
    } else if let Some(literal) = expr.downcast_ref::<Literal>() {
        format!("literal {}", literal_text(literal.value())?)
    } else if let Some(binary) = expr.downcast_ref::<BinaryExpr>() {
        // Whether arithmetic fails on overflow or wraps: the flag has no getter, but equality
        // compares it (and the same children by pointer first, so this does not walk them).
        let overflow = binary.op().is_numerical_operators()
            && *binary
                == BinaryExpr::new(binary.left().clone(), *binary.op(), binary.right().clone())
                    .with_fail_on_overflow(true);
        format!("binary {:?} {overflow}", binary.op())
    } else if let Some(cast) = expr.downcast_ref::<CastExpr>() {
        format!("cast {:?} {:?}", cast.cast_type(), cast.cast_options())
    } else if let Some(cast) = expr.downcast_ref::<TryCastExpr>() {
        format!("try_cast {:?}", cast.cast_type())
    } else if expr.is::<NotExpr>() {
        "not".into()
    } else if expr.is::<IsNullExpr>() {
        "is_null".into()
    } else if expr.is::<IsNotNullExpr>() {
        "is_not_null".into()
    } else if expr.is::<NegativeExpr>() {
        "negative".into()
    } else if let Some(list) = expr.downcast_ref::<InListExpr>() {
        format!("in_list {}", list.negated())
    } else if let Some(like) = expr.downcast_ref::<LikeExpr>() {
        format!("like {} {}", like.negated(), like.case_insensitive())
    } else if let Some(case) = expr.downcast_ref::<CaseExpr>() {
        format!(
            "case {} {}",
            case.expr().is_some(),
            case.else_expr().is_some()
        )
    } else if let Some(function) = expr.downcast_ref::<ScalarFunctionExpr>() {
        if function.fun().signature().volatility != Volatility::Immutable {
            return None;
        }
        format!("function {} {:?}", function.name(), function.return_type())
    } else {
        return None;
    };
    let children = expr.children();
    let _ = write!(text, "{}:{label}/{};", label.len(), children.len());
    if text.len() > MAX_PREDICATE_BYTES {
        return None;
    }
    for child in children {
        write_canonical(child.as_ref(), text)?;
    }
    Some(())
}

/// A literal's type and value, unambiguous: `None` for a value whose display could be
/// another's (lists, structs, maps, unions).
fn literal_text(value: &ScalarValue) -> Option<String> {
    Some(match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => {
            format!("{:?} {}:{s}", value.data_type(), s.len())
        }
        ScalarValue::Binary(Some(b))
        | ScalarValue::LargeBinary(Some(b))
        | ScalarValue::BinaryView(Some(b))
        | ScalarValue::FixedSizeBinary(_, Some(b)) => {
            format!("{:?} {}:{b:?}", value.data_type(), b.len())
        }
        ScalarValue::Float16(Some(f)) => format!("Float16 {}", f.to_bits()),
        ScalarValue::Float32(Some(f)) => format!("Float32 {}", f.to_bits()),
        ScalarValue::Float64(Some(f)) => format!("Float64 {}", f.to_bits()),
        ScalarValue::Dictionary(key, inner) => {
            format!("Dictionary {key:?} {}", literal_text(inner)?)
        }
        ScalarValue::List(_)
        | ScalarValue::LargeList(_)
        | ScalarValue::FixedSizeList(_)
        | ScalarValue::ListView(_)
        | ScalarValue::LargeListView(_)
        | ScalarValue::Struct(_)
        | ScalarValue::Map(_)
        | ScalarValue::Union(..) => return None,
        // Numbers, booleans, dates, times, timestamps, intervals, decimals and NULLs of any
        // of these: `Debug` writes the type and the value, with no text a client chose.
        other => format!("{other:?}"),
    })
}

/// `udf` called on `args`, returning `returns`, as the physical planner builds it.
fn call(
    udf: Arc<datafusion::logical_expr::ScalarUDF>,
    args: Vec<Arc<dyn PhysicalExpr>>,
    returns: DataType,
) -> Arc<dyn PhysicalExpr> {
    let name = udf.name().to_string();
    Arc::new(ScalarFunctionExpr::new(
        &name,
        udf,
        args,
        Arc::new(arrow::datatypes::Field::new(&name, returns, true)),
        Arc::new(ConfigOptions::default()),
    ))
}

fn digest(text: &str) -> Digest {
    let mut digest = [0; 16];
    digest.copy_from_slice(&blake3::hash(text.as_bytes()).as_bytes()[..16]);
    digest
}

fn key_of(file: &PartitionedFile, predicate: &Digest) -> Key {
    Key {
        file: Arc::from(file.object_meta.location.as_ref()),
        size: file.object_meta.size,
        predicate: *predicate,
    }
}

/// Whether the file already carries a row-group or row selection of someone else's.
fn has_access_plan(file: &PartitionedFile) -> bool {
    use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
    file.extensions.contains::<ParquetAccessPlan>()
        || file.extensions.contains::<ParquetRowSelection>()
}

/// The output column of the scan that names each row's file (deltalake's file id: a
/// partition column with one value per file), and which of `files` each value names.
fn file_identity(
    config: &FileScanConfig,
    files: &[&PartitionedFile],
) -> Option<(usize, HashMap<ScalarValue, usize>)> {
    let table = config.file_source().table_schema();
    let file_columns = table.file_schema().fields().len();
    let projection = config.file_source().projection()?;
    'columns: for (output, expr) in projection.iter().enumerate() {
        let Some(column) = expr.expr.downcast_ref::<Column>() else {
            continue;
        };
        let Some(partition) = column.index().checked_sub(file_columns) else {
            continue;
        };
        if partition >= table.table_partition_cols().len() {
            continue;
        }
        // Every file of the scan, not only those recorded: a value shared with a file read
        // from an entry would credit its rows to the wrong file.
        let mut owners: HashMap<ScalarValue, &str> = HashMap::new();
        for file in config.file_groups.iter().flat_map(|g| g.iter()) {
            let value = plain(file.partition_values.get(partition)?.clone());
            let path = file.object_meta.location.as_ref();
            if value.is_null() || owners.insert(value, path).is_some_and(|p| p != path) {
                continue 'columns;
            }
        }
        let mut slots = HashMap::new();
        for (slot, file) in files.iter().enumerate() {
            slots.insert(plain(file.partition_values.get(partition)?.clone()), slot);
        }
        return Some((output, slots));
    }
    None
}

/// A dictionary-encoded value as its plain value: partition values and the column's arrays
/// may differ in that alone.
fn plain(value: ScalarValue) -> ScalarValue {
    match value {
        ScalarValue::Dictionary(_, inner) => *inner,
        other => other,
    }
}

/// A file being recorded, by the scan that reads it.
#[derive(Clone)]
struct Target {
    location: object_store::path::Path,
    key: Key,
}

/// One execution of a [`RecordExec`]: what its partitions found, stored once all of them have
/// been read to the end.
struct Run {
    cache: Arc<ConditionCache>,
    metadata: Arc<MetadataCache>,
    targets: Vec<Target>,
    /// Each file id value's index in `targets`.
    slots: HashMap<ScalarValue, usize>,
    /// The file id column and the position column in the input's batches.
    identity: usize,
    position: usize,
    progress: Mutex<Progress>,
}

struct Progress {
    started: Vec<bool>,
    finished: usize,
    /// An error, a partition run twice: nothing is stored.
    spoiled: bool,
    /// Per target, a bit per block of [`BLOCK_ROWS`] rows that held a returned row.
    blocks: Vec<Vec<u64>>,
}

impl Run {
    /// The same files to record, nothing found yet.
    fn fresh(&self) -> Self {
        let progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        Run {
            cache: self.cache.clone(),
            metadata: self.metadata.clone(),
            targets: self.targets.clone(),
            slots: self.slots.clone(),
            identity: self.identity,
            position: self.position,
            progress: Mutex::new(Progress {
                started: vec![false; progress.started.len()],
                finished: 0,
                spoiled: false,
                blocks: vec![Vec::new(); self.targets.len()],
            }),
        }
    }

    fn start(&self, partition: usize) {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        match progress.started.get_mut(partition) {
            Some(started) if !*started => *started = true,
            _ => progress.spoiled = true,
        }
    }

    fn spoil(&self) {
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .spoiled = true;
    }

    /// A partition read to its end, with the blocks it found; the last one stores the run.
    fn finish(&self, found: Vec<Vec<u64>>) {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        for (into, from) in progress.blocks.iter_mut().zip(found) {
            if into.len() < from.len() {
                into.resize(from.len(), 0);
            }
            for (a, b) in into.iter_mut().zip(from) {
                *a |= b;
            }
        }
        progress.finished += 1;
        if progress.spoiled || progress.finished != progress.started.len() {
            return;
        }
        // Stored once.
        progress.spoiled = true;
        let blocks = std::mem::take(&mut progress.blocks);
        drop(progress);
        for (target, blocks) in self.targets.iter().zip(blocks) {
            if let Some(rows) = self.rows_of(&target.location) {
                self.cache.put(target.key.clone(), matches(&blocks, rows));
            }
        }
    }

    /// The file's row count, from the footer the scan read (not there: the file is not
    /// stored).
    fn rows_of(&self, location: &object_store::path::Path) -> Option<usize> {
        let entry = self.metadata.get(location)?;
        let footer = entry
            .file_metadata
            .as_any()
            .downcast_ref::<CachedParquetMetaData>()?;
        Some(footer.parquet_metadata().file_metadata().num_rows() as usize)
    }

    /// Marks the blocks of `batch`'s rows in `found`, and returns the batch without the
    /// position column.
    fn observe(
        &self,
        batch: RecordBatch,
        schema: &SchemaRef,
        found: &mut [Vec<u64>],
    ) -> Result<RecordBatch> {
        let rows = batch.num_rows();
        if rows > 0 {
            let identity = batch.column(self.identity);
            let positions = batch.column(self.position).as_primitive::<Int64Type>();
            // A batch comes from one file; checked at its ends, and row by row if they differ.
            let first = plain(ScalarValue::try_from_array(identity, 0)?);
            let last = plain(ScalarValue::try_from_array(identity, rows - 1)?);
            if first == last {
                if let Some(&slot) = self.slots.get(&first) {
                    mark(&mut found[slot], positions.values().iter().copied());
                }
            } else {
                for row in 0..rows {
                    let value = plain(ScalarValue::try_from_array(identity, row)?);
                    if let Some(&slot) = self.slots.get(&value) {
                        mark(&mut found[slot], std::iter::once(positions.value(row)));
                    }
                }
            }
            if positions.null_count() > 0 {
                return Err(DataFusionError::Internal(
                    "a row without its position in the file".into(),
                ));
            }
        }
        let mut columns = batch.columns().to_vec();
        columns.truncate(self.position);
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

/// Sets the bit of each position's block.
fn mark(bits: &mut Vec<u64>, positions: impl Iterator<Item = i64>) {
    for position in positions {
        let block = position.max(0) as usize / BLOCK_ROWS;
        let word = block / 64;
        if word >= bits.len() {
            bits.resize(word + 1, 0);
        }
        bits[word] |= 1 << (block % 64);
    }
}

/// The entry for a file of `rows` rows whose marked blocks are `bits`.
pub fn matches(bits: &[u64], rows: usize) -> Matches {
    let mut selectors: Vec<RowSelector> = Vec::new();
    let mut selected = 0;
    let mut push = |select: bool, count: usize| {
        if count == 0 {
            return;
        }
        match selectors.last_mut() {
            Some(last) if last.skip != select => last.row_count += count,
            _ => selectors.push(if select {
                RowSelector::select(count)
            } else {
                RowSelector::skip(count)
            }),
        }
    };
    let blocks = rows.div_ceil(BLOCK_ROWS);
    for block in 0..blocks {
        let set = bits
            .get(block / 64)
            .is_some_and(|word| word & (1 << (block % 64)) != 0);
        let count = BLOCK_ROWS.min(rows - block * BLOCK_ROWS);
        if set {
            selected += count;
        }
        push(set, count);
    }
    if selected == 0 {
        Matches::None
    } else if selected as f64 > rows as f64 * DENSE_SHARE {
        Matches::Dense
    } else {
        Matches::Rows(Arc::new(ParquetRowSelection::new(RowSelection::from(
            selectors,
        ))))
    }
}

/// A Parquet scan that also returns each row's position in its file, recording which blocks
/// of each file held a row ([module documentation](self)); its output is the scan's as
/// planned, without the position.
pub struct RecordExec {
    input: Arc<dyn ExecutionPlan>,
    /// The scan's schema as planned.
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    /// What the entries are keyed by: the scan's predicate.
    predicate: Digest,
    run: Arc<Run>,
}

impl fmt::Debug for RecordExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordExec")
            .field("files", &self.run.targets.len())
            .finish()
    }
}

impl DisplayAs for RecordExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ConditionCacheRecordExec: files={}",
            self.run.targets.len()
        )
    }
}

impl ExecutionPlan for RecordExec {
    fn name(&self) -> &str {
        "ConditionCacheRecordExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // The same scan anew (a plan's state reset for another execution): a run of its own.
        let [input] = <[_; 1]>::try_from(children).map_err(|_| {
            DataFusionError::Internal("ConditionCacheRecordExec has one child".into())
        })?;
        if input.schema() != self.input.schema() {
            return Err(DataFusionError::Internal(
                "ConditionCacheRecordExec's scan was replaced by another".into(),
            ));
        }
        let run = self.run.fresh();
        // A scan with another predicate would store its rows under this one's key.
        if cacheable_scan(&input).is_none_or(|(_, predicate)| predicate != self.predicate) {
            run.spoil();
        }
        Ok(Arc::new(RecordExec {
            input,
            schema: self.schema.clone(),
            properties: self.properties.clone(),
            predicate: self.predicate,
            run: Arc::new(run),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.run.start(partition);
        let input = self.input.execute(partition, context)?;
        let run = self.run.clone();
        let schema = self.schema.clone();
        let mut found = vec![Vec::new(); run.targets.len()];
        let mut input = Some(input);
        let stream = futures::stream::poll_fn(move |cx| {
            let Some(stream) = input.as_mut() else {
                return std::task::Poll::Ready(None);
            };
            match futures::ready!(stream.poll_next_unpin(cx)) {
                Some(Ok(batch)) => {
                    let out = run.observe(batch, &schema, &mut found);
                    if out.is_err() {
                        run.spoil();
                    }
                    std::task::Poll::Ready(Some(out))
                }
                Some(Err(e)) => {
                    run.spoil();
                    std::task::Poll::Ready(Some(Err(e)))
                }
                None => {
                    input = None;
                    run.finish(std::mem::take(&mut found));
                    std::task::Poll::Ready(None)
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{DynamicFilterPhysicalExpr, binary, lit};

    use super::*;

    fn selectors(matches: &Matches) -> Vec<RowSelector> {
        match matches {
            Matches::Rows(rows) => rows.selection().iter().copied().collect(),
            other => panic!("not a selection: {other:?}"),
        }
    }

    #[test]
    fn marked_blocks_become_a_selection_of_the_whole_file() {
        let mut bits = Vec::new();
        // Rows 5 and 1,000 share block 0; row 5,000 is in block 4; 9,999 in the last block.
        mark(&mut bits, [5, 1_000, 5_000, 9_999].into_iter());
        let rows = 9_999 + 1;
        assert_eq!(
            selectors(&matches(&bits, rows)),
            [
                RowSelector::select(1_024),
                RowSelector::skip(3 * 1_024),
                RowSelector::select(1_024),
                RowSelector::skip(4 * 1_024),
                // The last block holds the file's last 784 rows.
                RowSelector::select(rows - 9 * 1_024),
            ]
        );
        let total: usize = selectors(&matches(&bits, rows))
            .iter()
            .map(|s| s.row_count)
            .sum();
        assert_eq!(total, rows, "a file-level selection covers every row");
    }

    #[test]
    fn no_block_is_no_match_and_most_blocks_are_dense() {
        assert!(matches!(matches(&[], 5_000), Matches::None));
        assert!(matches!(matches(&[0, 0], 5_000), Matches::None));
        let mut bits = Vec::new();
        mark(&mut bits, (0..3).map(|b| b * 1_024));
        // Three of five blocks: more than half the rows.
        assert!(matches!(matches(&bits, 5_000), Matches::Dense));
        // Two of five: a selection.
        let mut bits = Vec::new();
        mark(&mut bits, [0, 4_999].into_iter());
        assert_eq!(
            selectors(&matches(&bits, 5_000)),
            [
                RowSelector::select(1_024),
                RowSelector::skip(3 * 1_024),
                RowSelector::select(5_000 - 4 * 1_024),
            ]
        );
    }

    #[test]
    fn canonical_texts_tell_predicates_apart() {
        let schema = arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("s", DataType::Utf8, true),
            arrow::datatypes::Field::new("f", DataType::Float64, true),
        ]);
        let s: Arc<dyn PhysicalExpr> = Arc::new(Column::new("s", 0));
        let equal = |value: &str| {
            binary(s.clone(), Operator::Eq, lit(value), &schema).expect("s = literal")
        };
        let text = |e: &Arc<dyn PhysicalExpr>| canonical(e).expect("canonical");
        // A string that spells the rest of another predicate's text is still one literal.
        let crafted = text(&equal("a\") }, op: Eq"));
        assert_ne!(crafted, text(&equal("a")));
        assert_ne!(text(&equal("x")), text(&equal("y")));
        // The column's index is not part of it: another projection, the same filter.
        let moved = binary(
            Arc::new(Column::new("s", 7)),
            Operator::Eq,
            lit("x"),
            &arrow::datatypes::Schema::new(
                (0..8)
                    .map(|i| arrow::datatypes::Field::new(format!("c{i}"), DataType::Utf8, true))
                    .collect::<Vec<_>>(),
            ),
        )
        .expect("s@7 = 'x'");
        assert_eq!(text(&moved), text(&equal("x")));
        // Floats by their bits: -0.0 and 0.0, NaNs of either sign.
        let f: Arc<dyn PhysicalExpr> = Arc::new(Column::new("f", 1));
        let float = |v: f64| binary(f.clone(), Operator::Eq, lit(v), &schema).expect("f = v");
        assert_ne!(text(&float(0.0)), text(&float(-0.0)));
        assert_ne!(text(&float(f64::NAN)), text(&float(-f64::NAN)));
        // List literals display `['a, b']` and `['a', 'b']` alike: not named at all.
        let list = Arc::new(Literal::new(ScalarValue::List(
            ScalarValue::new_list_nullable(&[ScalarValue::from("a, b")], &DataType::Utf8),
        ))) as Arc<dyn PhysicalExpr>;
        assert!(canonical(&list).is_none());
        // An IN list names every value.
        let in_list = |values: &[&str]| {
            datafusion::physical_expr::expressions::in_list(
                s.clone(),
                values.iter().map(|v| lit(*v)).collect(),
                &false,
                &schema,
            )
            .expect("in list")
        };
        assert_ne!(text(&in_list(&["a", "b"])), text(&in_list(&["a", "c"])));
        // Arithmetic that fails on overflow is another predicate than arithmetic that wraps.
        let v: Arc<dyn PhysicalExpr> = Arc::new(Column::new("f", 1));
        let sum = |checked: bool| -> Arc<dyn PhysicalExpr> {
            let plus = BinaryExpr::new(v.clone(), Operator::Plus, lit(1.0f64))
                .with_fail_on_overflow(checked);
            binary(Arc::new(plus), Operator::Gt, lit(2.0f64), &schema).expect("f + 1 > 2")
        };
        assert_ne!(text(&sum(true)), text(&sum(false)));
        assert_eq!(text(&sum(false)), text(&sum(false)));
        assert_ne!(text(&in_list(&["a", "b"])), text(&in_list(&["a"])));
    }

    #[test]
    fn only_a_predicate_of_the_row_alone_is_cacheable() {
        let schema = arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
            "v",
            DataType::Int64,
            true,
        )]);
        let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new("v", 0));
        let equal = binary(column.clone(), Operator::Eq, lit(5i64), &schema).expect("v = 5");
        assert!(cacheable(&equal));
        let dynamic: Arc<dyn PhysicalExpr> = Arc::new(DynamicFilterPhysicalExpr::new(
            vec![column.clone()],
            lit(true),
        ));
        let both = binary(equal.clone(), Operator::And, dynamic.clone(), &schema).expect("and");
        assert!(!cacheable(&dynamic));
        assert!(
            !cacheable(&both),
            "a top-k's threshold changes as the query runs"
        );
        let random = call(
            datafusion::functions::math::random(),
            vec![],
            DataType::Float64,
        );
        let volatile = binary(random, Operator::Lt, lit(0.5f64), &schema).expect("random() < 0.5");
        assert!(!cacheable(&volatile));
        let abs = call(
            datafusion::functions::math::abs(),
            vec![column],
            DataType::Int64,
        );
        let immutable = binary(abs, Operator::Eq, lit(5i64), &schema).expect("abs(v) = 5");
        assert!(cacheable(&immutable));
    }
}
