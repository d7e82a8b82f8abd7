//! The Parquet layout a table's schema asks for (`layout:` in `schemas/*.yaml`): what flush and
//! compaction leave on disk (sorted rows, row groups and pages of the configured size, page
//! indexes, bloom filters), and that queries use it to skip row groups.

use std::path::{Path, PathBuf};

use deltalake::parquet::file::properties::ReaderProperties;
use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
use deltalake::parquet::file::serialized_reader::ReadOptionsBuilder;

use crate::common::*;

const ROW_GROUP_ROWS: usize = 1_000;
const PAGE_ROWS: usize = 100;
const DICTIONARY_PAGE_BYTES: usize = 1_024;

/// The built-in schema with small row groups and pages, so a few thousand rows show them, and
/// `layout_extra` added to its layout section.
pub(crate) fn small_layout_schemas(layout_extra: &str) -> tempfile::TempDir {
    let built_in = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/otel_logs_and_spans.yaml"),
    )
    .expect("built-in schema");
    let small = built_in
        .replace(
            "row_group_rows: 131072",
            &format!("row_group_rows: {ROW_GROUP_ROWS}"),
        )
        .replace(
            "page_rows: 8192",
            &format!(
                "page_rows: {PAGE_ROWS}\n  dictionary_page_bytes: {DICTIONARY_PAGE_BYTES}\n{layout_extra}"
            ),
        );
    assert_ne!(small, built_in, "the schema's layout section changed");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("otel_logs_and_spans.yaml"), small).expect("schema");
    dir
}

/// What one Parquet file holds, read with the parquet crate itself.
struct FileLayout {
    row_groups: Vec<usize>,
    /// Data pages of the `timestamp` column per row group (from the offset index).
    timestamp_pages: Vec<usize>,
    /// The file's timestamps in file order.
    timestamps: Vec<i64>,
    /// Per row group: whether `id` has a bloom filter that holds `probe`, and whether `name`
    /// has any bloom filter.
    id_bloom_holds: Vec<Option<bool>>,
    name_has_bloom: bool,
    /// Per row group: whether `timestamp` and `id` have a dictionary page, and the size of
    /// `name`'s (uncompressed bytes), if it has one.
    timestamp_dictionary: Vec<bool>,
    /// Per row group: whether `timestamp`'s data pages are `DELTA_BINARY_PACKED`.
    timestamp_delta_packed: Vec<bool>,
    id_dictionary: Vec<bool>,
    name_dictionary_bytes: Vec<Option<usize>>,
}

fn read_layout(path: &Path, probe: &str) -> FileLayout {
    use arrow::array::AsArray;
    use arrow::datatypes::TimestampMicrosecondType;
    let file = std::fs::File::open(path).expect("open");
    let options = ReadOptionsBuilder::new()
        .with_page_index()
        .with_reader_properties(
            ReaderProperties::builder()
                .set_read_bloom_filter(true)
                .build(),
        )
        .build();
    let reader = SerializedFileReader::new_with_options(file, options).expect("parquet");
    let metadata = reader.metadata();
    let column = |name: &str| {
        metadata
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .position(|c| c.name() == name)
            .expect("column")
    };
    let (ts, id, name) = (column("timestamp"), column("id"), column("name"));
    let offsets = metadata.offset_index().expect("an offset index");
    assert!(metadata.column_index().is_some(), "a column index");
    let mut layout = FileLayout {
        row_groups: Vec::new(),
        timestamp_pages: Vec::new(),
        timestamps: Vec::new(),
        id_bloom_holds: Vec::new(),
        name_has_bloom: false,
        timestamp_dictionary: Vec::new(),
        timestamp_delta_packed: Vec::new(),
        id_dictionary: Vec::new(),
        name_dictionary_bytes: Vec::new(),
    };
    for (i, group) in metadata.row_groups().iter().enumerate() {
        layout.row_groups.push(group.num_rows() as usize);
        layout
            .timestamp_pages
            .push(offsets[i][ts].page_locations().len());
        let row_group = reader.get_row_group(i).expect("row group");
        layout.id_bloom_holds.push(
            row_group
                .get_column_bloom_filter(id)
                .map(|bloom| bloom.check(&probe)),
        );
        layout.name_has_bloom |= row_group.get_column_bloom_filter(name).is_some();
        let has_dictionary = |c: usize| group.column(c).dictionary_page_offset().is_some();
        layout.timestamp_dictionary.push(has_dictionary(ts));
        layout.timestamp_delta_packed.push(
            group
                .column(ts)
                .encodings()
                .any(|e| e == deltalake::parquet::basic::Encoding::DELTA_BINARY_PACKED),
        );
        layout.id_dictionary.push(has_dictionary(id));
        let first_page = row_group
            .get_column_page_reader(name)
            .expect("pages")
            .get_next_page()
            .expect("page");
        layout.name_dictionary_bytes.push(match first_page {
            Some(deltalake::parquet::column::page::Page::DictionaryPage { buf, .. }) => {
                Some(buf.len())
            }
            _ => None,
        });
    }
    let batches =
        deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(path).expect("open"),
        )
        .expect("arrow reader")
        .build()
        .expect("batches");
    for batch in batches {
        let batch = batch.expect("batch");
        let column = batch.column_by_name("timestamp").expect("timestamp");
        let values = column.as_primitive::<TimestampMicrosecondType>();
        layout
            .timestamps
            .extend((0..values.len()).map(|i| values.value(i)));
    }
    layout
}

/// The columns (sorted) with min values in the statistics of every file the Delta log adds, in
/// commit order: what each flush or compaction wrote to the log for its files.
fn delta_stats_columns(table_dir: &Path) -> Vec<Vec<String>> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(table_dir.join("_delta_log"))
        .expect("delta log")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    logs.sort();
    let mut columns = Vec::new();
    for log in logs {
        for line in std::fs::read_to_string(&log).expect("log").lines() {
            let action: serde_json::Value = serde_json::from_str(line).expect("action");
            let Some(stats) = action["add"]["stats"].as_str() else {
                continue;
            };
            let stats: serde_json::Value = serde_json::from_str(stats).expect("stats");
            assert!(stats["numRecords"].as_u64().is_some(), "{stats}");
            let names = stats["minValues"].as_object().expect("minValues");
            let mut names: Vec<String> = names.keys().cloned().collect();
            names.sort();
            columns.push(names);
        }
    }
    columns
}

fn only_file(table_dir: &Path) -> PathBuf {
    let files = parquet_files(table_dir);
    assert_eq!(files.len(), 1, "one data file: {files:?}");
    files.into_iter().next().expect("a file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_and_compaction_write_the_schemas_layout_and_lookups_skip_row_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let schemas = small_layout_schemas("");
    let schema_dir = schemas.path().to_str().expect("utf-8 path");
    let table_dir = dir.path().join("tables").join(TABLE);
    // 01:00 UTC yesterday: both batches below fall in one date partition.
    let yesterday = past_micros(1);
    let day_start = yesterday - yesterday.rem_euclid(DAY_MICROS) + 3_600_000_000;

    // Rows arrive out of time order: `late` are newer than `early` but come first.
    let server = TestServer::start(dir.path(), &[("TIMEFUSION_SCHEMA_DIR", schema_dir)]);
    let client = server.client().await;
    client
        .batch_execute(&insert_sql(
            "p1",
            &ids("late", 3_000),
            day_start + 1_000_000,
        ))
        .await
        .expect("insert late");
    client
        .batch_execute(&insert_sql("p1", &ids("early", 2_000), day_start))
        .await
        .expect("insert early");
    drop(client);
    // A clean stop flushes everything in one flush: one file for the partition.
    assert!(server.terminate().success());

    let flushed = read_layout(&only_file(&table_dir), "early-1500");
    // The Delta log's statistics cover the schema's stats columns only (the time column),
    // though the file's own row group statistics cover every column (used below).
    assert_eq!(delta_stats_columns(&table_dir), [["timestamp"]]);
    assert_eq!(flushed.row_groups, vec![ROW_GROUP_ROWS; 5]);
    assert_eq!(flushed.timestamp_pages, vec![ROW_GROUP_ROWS / PAGE_ROWS; 5]);
    assert!(
        flushed.timestamps.is_sorted(),
        "rows sorted by the time column"
    );
    assert_eq!(flushed.timestamps.len(), 5_000);
    // `early-1500` is the 1,501st row in time order: row group 1.
    assert_eq!(
        flushed.id_bloom_holds,
        vec![
            Some(false),
            Some(true),
            Some(false),
            Some(false),
            Some(false)
        ],
        "a bloom filter on id in every row group, holding exactly its ids (no false positive here)"
    );
    assert!(
        !flushed.name_has_bloom,
        "no bloom filter where none is asked for"
    );
    // The time column and the bloom filter columns are plain; another column's dictionary
    // stops growing at the layout's limit (`name` is distinct per row: about 17 KiB of
    // dictionary per row group without it), overshooting by at most one write batch.
    assert_eq!(flushed.timestamp_dictionary, vec![false; 5]);
    assert_eq!(
        flushed.timestamp_delta_packed,
        vec![true; 5],
        "the time column is stored as differences"
    );
    assert_eq!(flushed.id_dictionary, vec![false; 5]);
    for bytes in &flushed.name_dictionary_bytes {
        let bytes = bytes.expect("a dictionary on name");
        assert!(
            (DICTIONARY_PAGE_BYTES..DICTIONARY_PAGE_BYTES + PAGE_ROWS * 20).contains(&bytes),
            "name's dictionary page is cut at the limit: {:?}",
            flushed.name_dictionary_bytes
        );
    }

    // The second start lists `name` among the statistics' columns too: the existing table gets
    // the new `delta.dataSkippingStatsColumns`, and files written from now on carry both.
    let schemas = small_layout_schemas("  stats_columns: [timestamp, name]\n");
    let schema_dir = schemas.path().to_str().expect("utf-8 path");
    // The condition cache off: the lookup's second run would read only where its first found
    // the row (tests/e2e/condition_cache.rs), and this one is about what the layout prunes.
    let server = TestServer::start(
        dir.path(),
        &[
            ("TIMEFUSION_SCHEMA_DIR", schema_dir),
            ("TIMEFUSION_FLUSH_INTERVAL_SECS", "1"),
            ("TIMEFUSION_CONDITION_CACHE_MB", "0"),
        ],
    );
    let client = server.client().await;
    // The lookup reads one row group: statistics rule out the `late` ones (their ids sort
    // after every `early` id), the bloom filter the other `early` one.
    let lookup = format!("SELECT name FROM {TABLE} WHERE project_id = 'p1' AND id = 'early-1500'");
    let rows = client.query(&lookup, &[]).await.expect("lookup");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "GET /api/1500");
    let explained = explain_analyze(&client, &lookup).await;
    for pruned in [
        "row_groups_pruned_statistics=5 total \u{2192} 2 matched",
        "row_groups_pruned_bloom_filter=2 total \u{2192} 1 matched",
        "page_index_pages_pruned=10 total \u{2192} 1 matched",
    ] {
        assert!(explained.contains(pruned), "{pruned}: {explained}");
    }

    // A top-k reads only the newest page: its threshold is seeded from the page index
    // (`sql::topk_seed`), so the older row groups and pages are skipped when the file opens.
    let newest =
        format!("SELECT id FROM {TABLE} WHERE project_id = 'p1' ORDER BY timestamp DESC LIMIT 5");
    let newest_five = [
        "late-2999",
        "late-2998",
        "late-2997",
        "late-2996",
        "late-2995",
    ];
    assert_eq!(ids_of(&client, &newest).await, newest_five);
    let explained = explain_analyze(&client, &newest).await;
    for read in [
        "seeded=1",
        "row_groups_pruned_statistics=5 total \u{2192} 1 matched",
        "page_index_pages_pruned=10 total \u{2192} ",
    ] {
        assert!(explained.contains(read), "{read}: {explained}");
    }
    // The last page may hold fewer than five rows: then the one before it is read too.
    let pages_read = metric(&explained, "page_index_pages_pruned=10 total \u{2192} ");
    assert!((1..=2).contains(&pages_read), "{explained}");
    // Oldest first, the same from the other end.
    let oldest =
        format!("SELECT id FROM {TABLE} WHERE project_id = 'p1' ORDER BY timestamp LIMIT 3");
    assert_eq!(
        ids_of(&client, &oldest).await,
        ["early-0", "early-1", "early-2"]
    );
    assert!(explain_analyze(&client, &oldest).await.contains("seeded=1"));

    // Every top-k shape answers as it does with sort pushdown (and so the seed) turned off.
    let plain = server.client().await;
    plain
        .batch_execute("SET datafusion.optimizer.enable_sort_pushdown = false")
        .await
        .expect("SET");
    for tail in [
        "WHERE project_id = 'p1' ORDER BY timestamp DESC LIMIT 1",
        "WHERE project_id = 'p1' ORDER BY timestamp DESC LIMIT 150",
        "WHERE project_id = 'p1' ORDER BY timestamp DESC LIMIT 1001",
        "WHERE project_id = 'p1' ORDER BY timestamp DESC NULLS LAST LIMIT 7",
        "WHERE project_id = 'p1' ORDER BY timestamp LIMIT 250",
        "WHERE project_id = 'p1' ORDER BY timestamp DESC LIMIT 5 OFFSET 2990",
        "WHERE project_id IN ('p1', 'p2') ORDER BY timestamp DESC LIMIT 333",
        "WHERE project_id = 'p1' ORDER BY timestamp DESC LIMIT 6000",
    ] {
        let sql = format!("SELECT id FROM {TABLE} {tail}");
        let (seeded, expected) = (ids_of(&client, &sql).await, ids_of(&plain, &sql).await);
        assert_eq!(seeded, expected, "{sql}");
    }

    // A filter on a data column may drop any row: no seed. The top-k can still skip older
    // row groups as it runs (with row groups this small the reader is past them before the
    // top-k has a threshold): the statistics hint deltalake needs is not left in the Parquet
    // predicate, where its page selection turned that pruning off.
    let filtered = format!(
        "SELECT id FROM {TABLE} WHERE project_id = 'p1' AND level = 'INFO' ORDER BY timestamp DESC LIMIT 5"
    );
    assert_eq!(ids_of(&client, &filtered).await, newest_five);
    let explained = explain_analyze(&client, &filtered).await;
    assert!(!explained.contains("TopKSeedExec"), "{explained}");
    assert!(!explained.contains("IS NOT NULL"), "{explained}");

    // Compaction writes the same layout: a second file in the partition, then VACUUM.
    client
        .batch_execute(&insert_sql("p1", &ids("more", 500), day_start + 2_000_000))
        .await
        .expect("insert more");
    eventually(
        std::time::Duration::from_secs(30),
        "a second file",
        || async { parquet_files(&table_dir).len() == 2 },
    )
    .await;
    client
        .batch_execute(&format!("VACUUM {TABLE}"))
        .await
        .expect("VACUUM");
    assert_eq!(count(&client, "").await, 5_500);
    drop(client);
    assert!(server.terminate().success());
    // VACUUM keeps removed files for the retention period: the compacted file is the newest.
    let compacted = parquet_files(&table_dir)
        .into_iter()
        .max_by_key(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .expect("files");
    let compacted = read_layout(&compacted, "more-1");
    // The first flush, the second (after the schema named `name` too) and the compaction.
    assert_eq!(
        delta_stats_columns(&table_dir),
        [
            vec!["timestamp"],
            vec!["name", "timestamp"],
            vec!["name", "timestamp"]
        ]
    );
    assert_eq!(compacted.row_groups.iter().sum::<usize>(), 5_500);
    assert!(
        compacted.row_groups.iter().all(|&n| n <= ROW_GROUP_ROWS),
        "{:?}",
        compacted.row_groups
    );
    assert!(compacted.id_bloom_holds.iter().all(Option::is_some));
    assert!(
        compacted
            .timestamp_delta_packed
            .iter()
            .all(|&packed| packed),
        "compaction writes the time column as differences too"
    );
    assert_eq!(
        compacted
            .id_bloom_holds
            .iter()
            .filter(|holds| **holds == Some(true))
            .count(),
        1,
        "one row group may hold more-1"
    );
}

/// The number right after `prefix` in `plan`.
pub(crate) fn metric(plan: &str, prefix: &str) -> usize {
    plan.split(prefix)
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix}: {plan}"))
}

/// The `id` column of `sql`'s rows.
async fn ids_of(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .await
        .expect(sql)
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// `EXPLAIN ANALYZE` of `sql`, its plan lines joined.
pub(crate) async fn explain_analyze(client: &tokio_postgres::Client, sql: &str) -> String {
    client
        .simple_query(&format!("EXPLAIN ANALYZE {sql}"))
        .await
        .expect("explain analyze")
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(1).map(str::to_string),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_k_reads_both_sides_newest_first_and_skips_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table_dir = dir.path().join("tables").join(TABLE);
    let server = TestServer::start(dir.path(), &[("TIMEFUSION_FLUSH_INTERVAL_SECS", "1")]);
    let client = server.client().await;
    // Three flushed days, then three buffered hours ahead of now (open buckets stay buffered).
    for days in 1..=3 {
        client
            .batch_execute(&insert_sql(
                "p1",
                &ids(&format!("d{days}"), 100),
                past_micros(days),
            ))
            .await
            .expect("insert a past day");
    }
    eventually(
        std::time::Duration::from_secs(30),
        "three files",
        || async { parquet_files(&table_dir).len() == 3 },
    )
    .await;
    // The files are on disk a moment before the server publishes the commit: wait until its
    // plans read them (and the buffer no longer holds the days).
    let days = format!("EXPLAIN SELECT id FROM {TABLE} WHERE project_id = 'p1'");
    eventually(
        std::time::Duration::from_secs(30),
        "the server to read the three files",
        || async {
            let plan: Vec<String> = client
                .query(&days, &[])
                .await
                .expect("explain")
                .iter()
                .map(|r| r.get::<_, String>(1))
                .collect();
            plan.join("\n").matches(".parquet").count() >= 3
        },
    )
    .await;
    let hour = 3_600_000_000;
    for hours in 1..=3 {
        client
            .batch_execute(&insert_sql(
                "p1",
                &ids(&format!("h{hours}"), 10),
                past_micros(0) + hours * hour,
            ))
            .await
            .expect("insert a future hour");
    }
    let ids_of = |rows: Vec<tokio_postgres::Row>| -> Vec<String> {
        rows.iter().map(|r| r.get::<_, String>(0)).collect()
    };

    let newest =
        format!("SELECT id FROM {TABLE} WHERE project_id = 'p1' ORDER BY timestamp DESC LIMIT 3");
    let rows = client.query(&newest, &[]).await.expect("newest");
    assert_eq!(ids_of(rows), ["h3-9", "h3-8", "h3-7"]);
    let plan = explain_analyze(&client, &newest).await;
    assert!(
        plan.contains("BufferScanExec: partitions=2, batches=3, newest_first"),
        "{plan}"
    );
    // The top-k's filter reached the buffer scan. Whether a batch is skipped depends on
    // when the filter above it pulls the next one (it gathers small batches before passing
    // them on); `sql::buffer_scan`'s unit tests count the skips.
    assert!(
        plan.contains("newest_first, skip_by=DynamicFilter"),
        "{plan}"
    );
    assert!(plan.contains("reverse_row_groups=true"), "{plan}");
    // Delta's strings arrive as the table's `Utf8`: no cast copies them again above the scan.
    assert!(!plan.contains("AS Utf8)"), "{plan}");
    // The Delta files are read newest day first; all are older than the buffered rows.
    let day = |days| {
        chrono::DateTime::from_timestamp_micros(past_micros(days))
            .expect("day")
            .format("date=%Y-%m-%d")
            .to_string()
    };
    let (d1, d3) = (plan.find(&day(1)), plan.find(&day(3)));
    assert!(d1.is_some() && d1 < d3, "newest file first: {plan}");

    // Ascending: the oldest day's file first, the others and the buffer skipped once full.
    let oldest =
        format!("SELECT id FROM {TABLE} WHERE project_id = 'p1' ORDER BY timestamp LIMIT 3");
    let rows = client.query(&oldest, &[]).await.expect("oldest");
    assert_eq!(ids_of(rows), ["d3-0", "d3-1", "d3-2"]);
    let plan = explain_analyze(&client, &oldest).await;
    assert!(plan.contains("oldest_first"), "{plan}");
    let (d1, d3) = (plan.find(&day(1)), plan.find(&day(3)));
    assert!(d3.is_some() && d3 < d1, "oldest file first: {plan}");

    // Other orders and plain scans answer as before.
    let by_id = format!("SELECT id FROM {TABLE} WHERE project_id = 'p1' ORDER BY id DESC LIMIT 2");
    let rows = client.query(&by_id, &[]).await.expect("by id");
    assert_eq!(ids_of(rows), ["h3-9", "h3-8"]);
    assert_eq!(count(&client, "").await, 330);
}

/// Buffered rows: a lookup of an id column (the schema's `bloom_filter_columns`) reads only
/// the chunks whose bloom filter may hold the id, and a chunk's rows changing (an UPDATE, a
/// merge of small chunks) gives it filters built from its new rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_id_lookups_skip_chunks_by_their_bloom_filters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[("TIMEFUSION_FLUSH_INTERVAL_SECS", "86400")]);
    let client = server.client().await;
    let now = past_micros(0);
    // Twenty statements of 50 rows: twenty chunks of one bucket (each under the size a merge
    // takes, and fewer than a merge waits for).
    for chunk in 0..20 {
        client
            .batch_execute(&insert_sql(
                "p1",
                &ids(&format!("c{chunk}"), 50),
                now + chunk,
            ))
            .await
            .expect("insert");
    }
    let lookup = |filter: &str| {
        format!("SELECT id FROM {TABLE} WHERE project_id = 'p1' AND {filter} ORDER BY id")
    };
    let found = ids_of(&client, &lookup("id = 'c7-3'")).await;
    assert_eq!(found, ["c7-3"]);
    let plan = explain_analyze(&client, &lookup("id = 'c7-3'")).await;
    let skipped = metric(&plan, "id_filter_skipped=");
    assert!(
        skipped >= 17,
        "{skipped} of 19 chunks without c7-3 skipped: {plan}"
    );
    assert_eq!(
        ids_of(&client, &lookup("id IN ('c2-1', 'c15-49', 'nowhere')")).await,
        ["c15-49", "c2-1"]
    );
    let plan = explain_analyze(&client, &lookup("id IN ('c2-1', 'c15-49')")).await;
    assert!(metric(&plan, "id_filter_skipped=") >= 16, "{plan}");
    assert!(ids_of(&client, &lookup("id = 'nowhere'")).await.is_empty());
    // Not a lookup (another column): no filter is consulted.
    let plan = explain_analyze(&client, &lookup("name = 'GET /api/3'")).await;
    assert!(!plan.contains("id_filter_skipped"), "{plan}");

    // An UPDATE rewrites the chunk: its new id is found, the old one is gone.
    client
        .batch_execute(&format!(
            "UPDATE {TABLE} SET id = 'renamed' WHERE project_id = 'p1' AND id = 'c7-3'"
        ))
        .await
        .expect("update");
    assert_eq!(
        ids_of(&client, &lookup("id = 'renamed'")).await,
        ["renamed"]
    );
    assert!(ids_of(&client, &lookup("id = 'c7-3'")).await.is_empty());
    assert_eq!(ids_of(&client, &lookup("id = 'c7-4'")).await, ["c7-4"]);

    // Single-row inserts into another project: 31 chunks, looked up (their filters built),
    // then the 32nd, which merges the 32 into one chunk whose filter holds all of them.
    let single = |i: i64| insert_sql("p2", &[format!("s{i}")], now + i);
    for i in 0..31 {
        client.batch_execute(&single(i)).await.expect("insert one");
    }
    let p2 = |id: &str| format!("SELECT id FROM {TABLE} WHERE project_id = 'p2' AND id = '{id}'");
    assert_eq!(ids_of(&client, &p2("s30")).await, ["s30"]);
    client
        .batch_execute(&single(31))
        .await
        .expect("insert the 32nd");
    for id in ["s31", "s0", "s30"] {
        assert_eq!(ids_of(&client, &p2(id)).await, [id], "after the merge");
    }
    assert_eq!(count(&client, "WHERE project_id = 'p2'").await, 32);
}
