//! The query condition cache (`sql::condition_cache`): a filter run again reads only the
//! blocks of each file where it matched the first time and skips files where it matched
//! nothing, with the same answer; files written since (a flush, a DELETE's rewrite) are read
//! whole.

use crate::common::*;
use crate::layout::{explain_analyze, metric, small_layout_schemas};

/// The `id`s of `sql`'s rows, sorted.
async fn sorted_ids(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let mut ids: Vec<String> = client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|row| row.get(0))
        .collect();
    ids.sort();
    ids
}

/// A count metric right after `prefix` in `plan`, as EXPLAIN ANALYZE writes it (`7`,
/// `6.00 K`, `1.20 M`).
fn count_metric(plan: &str, prefix: &str) -> f64 {
    let rest = plan
        .split(prefix)
        .nth(1)
        .unwrap_or_else(|| panic!("no {prefix}: {plan}"));
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let value: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("{prefix}: {plan}"));
    match rest[number.len()..]
        .strip_prefix(' ')
        .and_then(|r| r.chars().next())
    {
        Some('K') => value * 1e3,
        Some('M') => value * 1e6,
        _ => value,
    }
}

async fn condition_cache_bytes(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT used_bytes FROM timefusion_memory WHERE consumer = 'condition_cache'",
            &[],
        )
        .await
        .expect("timefusion_memory")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_filter_reads_where_it_matched_and_new_files_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Row groups of 1,000 rows in pages of 100: a block of 1,024 rows is a few pages.
    let schemas = small_layout_schemas("");
    let schema_dir = schemas.path().to_str().expect("utf-8 path");
    let yesterday = past_micros(1);
    let yesterday = yesterday - yesterday.rem_euclid(DAY_MICROS) + 3_600_000_000;
    let before = yesterday - DAY_MICROS;

    // Two date partitions, one file each.
    let server = TestServer::start(dir.path(), &[("TIMEFUSION_SCHEMA_DIR", schema_dir)]);
    let client = server.client().await;
    for (prefix, at) in [("a", yesterday), ("b", before)] {
        client
            .batch_execute(&insert_sql("p1", &ids(prefix, 3_000), at))
            .await
            .expect("insert");
    }
    drop(client);
    assert!(server.terminate().success());
    let table_dir = dir.path().join("tables").join(TABLE);
    assert_eq!(parquet_files(&table_dir).len(), 2);

    let server = TestServer::start(
        dir.path(),
        &[
            ("TIMEFUSION_SCHEMA_DIR", schema_dir),
            ("TIMEFUSION_FLUSH_INTERVAL_SECS", "1"),
        ],
    );
    let client = server.client().await;
    assert_eq!(condition_cache_bytes(&client).await, 0);
    let select =
        |filter: &str| format!("SELECT id FROM {TABLE} WHERE project_id = 'p1' AND {filter}");
    // `name` is `GET /api/<i>` for the i-th row of each insert: 12, 120-129 and 1200-1299.
    let names: Vec<String> = [12]
        .into_iter()
        .chain(120..130)
        .chain(1200..1300)
        .flat_map(|i| [format!("a-{i}"), format!("b-{i}")])
        .collect();
    let cases: Vec<(String, Vec<String>)> = vec![
        (select("id = 'a-1500'"), vec!["a-1500".into()]),
        (
            select("id IN ('a-10', 'b-2990')"),
            vec!["a-10".into(), "b-2990".into()],
        ),
        (select("id = 'nowhere'"), vec![]),
        (select("name LIKE 'GET /api/12%'"), {
            let mut names = names.clone();
            names.sort();
            names
        }),
        // Every row: an entry that selects nothing less than the whole file.
        (select("level = 'INFO'"), {
            let mut all: Vec<String> = ids("a", 3_000).into_iter().chain(ids("b", 3_000)).collect();
            all.sort();
            all
        }),
    ];
    // The first run records; the second and third read from the entries. Same answers.
    for (sql, expected) in &cases {
        for run in 0..3 {
            assert_eq!(
                &sorted_ids(&client, sql).await,
                expected,
                "run {run}: {sql}"
            );
        }
    }
    assert!(condition_cache_bytes(&client).await > 0);

    // The lookup again: only the file that held the row is opened, and in it only the block
    // around the row is read; nothing is left to record.
    let lookup = &cases[0].0;
    let explained = explain_analyze(&client, lookup).await;
    assert!(explained.contains("files_opened=1,"), "{explained}");
    assert!(
        !explained.contains("ConditionCacheRecordExec"),
        "{explained}"
    );
    assert!(
        metric(&explained, "page_index_rows_pruned=") <= 2_000,
        "{explained}"
    );
    // A search no statistic or bloom filter helps: the first run evaluates every row of both
    // files; a repeat only the block of 1,024 rows the match is in.
    let search = select("body LIKE '%hello a-1500\"%'");
    let evaluated = |plan: &str| {
        count_metric(plan, "pushdown_rows_pruned=") + count_metric(plan, "pushdown_rows_matched=")
    };
    let first = explain_analyze(&client, &search).await;
    // (Counts past 1,000 are shown rounded: `6.00 K`.)
    assert!(evaluated(&first) >= 5_990.0, "{first}");
    let repeat = explain_analyze(&client, &search).await;
    assert!(evaluated(&repeat) <= 1_024.0, "{repeat}");
    assert_eq!(sorted_ids(&client, &search).await, ["a-1500"]);
    // A filter no query ran yet is recorded.
    let fresh = select("id = 'b-7'");
    let explained = explain_analyze(&client, &fresh).await;
    assert!(
        explained.contains("ConditionCacheRecordExec"),
        "{explained}"
    );
    assert!(explained.contains("files_opened=2,"), "{explained}");
    let explained = explain_analyze(&client, &fresh).await;
    assert!(explained.contains("files_opened=1,"), "{explained}");
    // A filter that changes as the query runs (a top-k's threshold) is neither read nor
    // recorded; nor is a statement with a volatile function.
    let topk = format!(
        "{} ORDER BY timestamp DESC LIMIT 3",
        select("level = 'INFO'")
    );
    assert_eq!(
        sorted_ids(&client, &topk).await,
        ["a-2997", "a-2998", "a-2999"]
    );
    let explained = explain_analyze(&client, &topk).await;
    assert!(
        !explained.contains("ConditionCacheRecordExec"),
        "{explained}"
    );

    // A scan a LIMIT stops early stores nothing: the same filter without it finds every row
    // (`GET /api/2…`: 2, 20-29, 200-299 and 2000-2999 in each file).
    let twos = select("name LIKE 'GET /api/2%'");
    for _ in 0..3 {
        assert_eq!(
            sorted_ids(&client, &format!("{twos} LIMIT 3")).await.len(),
            3
        );
    }
    for _ in 0..2 {
        assert_eq!(sorted_ids(&client, &twos).await.len(), 2 * 1_111);
    }

    // A new file with another `a-1500` row: the entry of the old file stands, the new file is
    // read whole.
    client
        .batch_execute(&insert_sql(
            "p1",
            &["a-1500".to_string()],
            yesterday + 5_000_000,
        ))
        .await
        .expect("insert");
    eventually(
        std::time::Duration::from_secs(30),
        "a third file",
        || async { parquet_files(&table_dir).len() == 3 },
    )
    .await;
    assert_eq!(sorted_ids(&client, lookup).await, ["a-1500", "a-1500"]);
    assert_eq!(sorted_ids(&client, lookup).await, ["a-1500", "a-1500"]);

    // DELETE rewrites the files that held the rows: every other row stays (the rewrite reads
    // whole files, whatever the cache holds for the delete's filter), and the lookups over
    // the new files answer from them.
    assert_eq!(count(&client, "WHERE project_id = 'p1'").await, 6_001);
    client
        .batch_execute(&format!(
            "DELETE FROM {TABLE} WHERE project_id = 'p1' AND id = 'a-1500'"
        ))
        .await
        .expect("DELETE");
    assert_eq!(count(&client, "WHERE project_id = 'p1'").await, 5_999);
    for _ in 0..2 {
        assert!(sorted_ids(&client, lookup).await.is_empty());
        assert_eq!(
            sorted_ids(&client, &cases[1].0).await,
            ["a-10", "b-2990"],
            "a lookup over the rewritten file"
        );
        assert_eq!(sorted_ids(&client, &cases[3].0).await, cases[3].1);
    }
    drop(client);
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_condition_cache_nothing_is_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    client
        .batch_execute(&insert_sql("p1", &ids("a", 100), past_micros(1)))
        .await
        .expect("insert");
    drop(client);
    assert!(server.terminate().success());
    let server = TestServer::start(dir.path(), &[("TIMEFUSION_CONDITION_CACHE_MB", "0")]);
    let client = server.client().await;
    let lookup = format!("SELECT id FROM {TABLE} WHERE project_id = 'p1' AND id = 'a-5'");
    for _ in 0..2 {
        assert_eq!(sorted_ids(&client, &lookup).await, ["a-5"]);
    }
    let explained = explain_analyze(&client, &lookup).await;
    assert!(
        !explained.contains("ConditionCacheRecordExec"),
        "{explained}"
    );
    assert_eq!(condition_cache_bytes(&client).await, 0);
    let limit: Option<i64> = client
        .query_one(
            "SELECT limit_bytes FROM timefusion_memory WHERE consumer = 'condition_cache'",
            &[],
        )
        .await
        .expect("timefusion_memory")
        .get(0);
    assert_eq!(limit, Some(0));
    drop(client);
    assert!(server.terminate().success());
}
