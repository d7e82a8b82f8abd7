//! Table maintenance (`VACUUM` over SQL and the background pass): compaction, checkpoints,
//! vacuum and retention change file counts, never query results, and lose no concurrent row.

use std::path::Path;
use std::time::Duration;

use crate::common::*;

/// Parquet data files on disk under `dir` (not the Delta log).
fn data_files(dir: &Path) -> usize {
    parquet_files(dir).len()
}

/// The versions of the Delta checkpoints in the table at `dir`, ascending.
fn checkpoints(dir: &Path) -> Vec<u64> {
    let mut versions: Vec<u64> = std::fs::read_dir(dir.join("_delta_log"))
        .expect("log")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".checkpoint.parquet")?.parse().ok()
        })
        .collect();
    versions.sort_unstable();
    versions
}

/// `delta.checkpointInterval` as the newest commit carrying table metadata sets it.
fn checkpoint_interval(dir: &Path) -> String {
    let mut commits: Vec<_> = std::fs::read_dir(dir.join("_delta_log"))
        .expect("log")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    commits.sort();
    commits
        .iter()
        .rev()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).expect("commit");
            text.lines()
                .filter_map(|line| {
                    let action: serde_json::Value = serde_json::from_str(line).ok()?;
                    let interval = &action["metaData"]["configuration"]["delta.checkpointInterval"];
                    interval.as_str().map(str::to_string)
                })
                .collect::<Vec<_>>()
        })
        .next()
        .expect("a metaData action with delta.checkpointInterval")
}

async fn summary(client: &tokio_postgres::Client) -> Vec<(String, i64, i64)> {
    client
        .query(
            &format!(
                "SELECT project_id, count(*), sum(duration) FROM {TABLE} GROUP BY project_id ORDER BY project_id"
            ),
            &[],
        )
        .await
        .expect("summary")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_compacts_checkpoints_and_applies_retention_without_changing_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table_dir = dir.path().join("tables").join(TABLE);
    let env = [
        ("TIMEFUSION_FLUSH_INTERVAL_SECS", "1"),
        ("TIMEFUSION_VACUUM_RETENTION_HOURS", "0"),
        ("TIMEFUSION_CHECKPOINT_INTERVAL", "3"),
    ];
    let server = TestServer::start(dir.path(), &env);
    let client = server.client().await;
    // Six flushes of one partition make six small files; one old partition.
    let mut total = 0i64;
    for round in 0..6 {
        client
            .execute(
                &insert_sql("p1", &ids(&format!("r{round}"), 20), past_micros(1)),
                &[],
            )
            .await
            .expect("insert");
        total += 20;
        let files = round + 1;
        eventually(Duration::from_secs(30), "a flush", || async {
            data_files(&table_dir) >= files
        })
        .await;
    }
    client
        .execute(&insert_sql("p2", &ids("old", 10), past_micros(40)), &[])
        .await
        .expect("insert old");
    total += 10;
    eventually(Duration::from_secs(30), "the old rows flushed", || async {
        data_files(&table_dir) >= 7
    })
    .await;
    // Seven flush commits after the create: deltalake wrote a checkpoint after every third
    // (the table's delta.checkpointInterval), before any maintenance ran.
    let written = checkpoints(&table_dir);
    assert!(
        !written.is_empty() && written.iter().all(|v| (v + 1) % 3 == 0),
        "checkpoints follow flush commits: {written:?}"
    );
    // Before any compaction, the files on disk are the ones the log references: their bytes
    // are the table's size, as pg_relation_size and kin report it.
    let on_disk: u64 = parquet_files(&table_dir)
        .iter()
        .map(|f| std::fs::metadata(f).expect("file").len())
        .sum();
    let sizes = client
        .query_one(
            &format!(
                "SELECT pg_relation_size('{TABLE}'::regclass), pg_total_relation_size('{TABLE}'::regclass), \
                 pg_table_size('{TABLE}'::regclass), pg_indexes_size('{TABLE}'::regclass), \
                 pg_database_size(current_database())"
            ),
            &[],
        )
        .await
        .expect("sizes");
    let sizes: Vec<i64> = (0..5).map(|i| sizes.get(i)).collect();
    let bytes = i64::try_from(on_disk).expect("size");
    assert!(bytes > 0);
    assert_eq!(
        sizes,
        [bytes, bytes, bytes, 0, bytes],
        "sizes of the stored files"
    );
    let before = summary(&client).await;
    let files_before = data_files(&table_dir);

    // Compaction while another connection keeps inserting.
    let writer = {
        let port = server.port;
        tokio::spawn(async move {
            let client = connect(port).await;
            for i in 0..15 {
                client
                    .execute(
                        &insert_sql("p3", &ids(&format!("c{i}"), 4), past_micros(1)),
                        &[],
                    )
                    .await
                    .expect("insert during compaction");
            }
        })
    };
    client
        .batch_execute(&format!("VACUUM {TABLE}"))
        .await
        .expect("VACUUM");
    writer.await.expect("writer");
    total += 60;
    client
        .batch_execute("VACUUM")
        .await
        .expect("VACUUM of every table");

    let mut after = summary(&client).await;
    let concurrent = after
        .iter()
        .position(|(p, _, _)| p == "p3")
        .expect("p3 rows");
    assert_eq!(after.remove(concurrent).1, 60, "no concurrent row lost");
    assert_eq!(after, before, "compaction changes no result");
    assert_eq!(count(&client, "").await, total);
    let files_after = data_files(&table_dir);
    assert!(
        files_after < files_before,
        "compaction and vacuum reduce the files on disk ({files_before} -> {files_after})"
    );
    let err = client
        .batch_execute("VACUUM no_such_table")
        .await
        .expect_err("unknown table");
    assert_eq!(err.code().map(|c| c.code()), Some("42P01"));
    drop(client);
    assert!(server.terminate().success());

    // Retention: partitions older than 30 days are dropped from the log, then vacuumed.
    let env = [
        ("TIMEFUSION_VACUUM_RETENTION_HOURS", "0"),
        ("TIMEFUSION_RETENTION_DAYS", "30"),
    ];
    let server = TestServer::start(dir.path(), &env);
    let client = server.client().await;
    assert_eq!(
        checkpoint_interval(&table_dir),
        "10",
        "a restart with the default interval sets it on the table"
    );
    assert_eq!(count(&client, "").await, total);
    client.batch_execute("VACUUM").await.expect("VACUUM");
    assert_eq!(
        count(&client, "").await,
        total - 10,
        "the 40-day-old rows are gone"
    );
    assert_eq!(count(&client, "WHERE project_id = 'p2'").await, 0);
    assert_eq!(count(&client, "WHERE project_id = 'p1'").await, 120);
    assert_eq!(
        data_files(&table_dir.join("project_id=p2")),
        0,
        "their files are vacuumed"
    );
}

/// Commits in the table's Delta log that are `OPTIMIZE` (compactions and merges).
fn optimize_commits(table_dir: &Path) -> usize {
    std::fs::read_dir(table_dir.join("_delta_log"))
        .expect("log")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter(|e| {
            std::fs::read_to_string(e.path())
                .is_ok_and(|text| text.contains(r#""operation":"OPTIMIZE""#))
        })
        .count()
}

/// Data files the table's latest Delta version references, read with delta-rs directly.
async fn live_files(table_dir: &Path) -> usize {
    let url =
        url::Url::from_directory_path(table_dir.canonicalize().expect("table dir")).expect("url");
    let table = deltalake::open_table(url).await.expect("open delta table");
    table
        .snapshot()
        .expect("snapshot")
        .log_data()
        .iter()
        .count()
}

/// A partition's small files are merged in the background (`TIMEFUSION_MERGE_MIN_FILES`)
/// while another connection keeps inserting into it: the log gains `OPTIMIZE` commits, the
/// files the table references drop, and every row is counted once, before and after a
/// restart, by the server and by delta-rs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_are_merged_in_the_background_while_rows_arrive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table_dir = dir.path().join("tables").join(TABLE);
    let env = [
        ("TIMEFUSION_FLUSH_INTERVAL_SECS", "1"),
        ("TIMEFUSION_MERGE_MIN_FILES", "3"),
    ];
    let server = TestServer::start(dir.path(), &env);
    let client = server.client().await;
    // One date for every row, so they make one partition even across midnight.
    let at = past_micros(1);
    let mut total = 0i64;
    for round in 0..2 {
        client
            .execute(&insert_sql("p1", &ids(&format!("r{round}"), 20), at), &[])
            .await
            .expect("insert");
        total += 20;
        eventually(Duration::from_secs(30), "a flush", || async {
            data_files(&table_dir) > round
        })
        .await;
    }
    assert_eq!(optimize_commits(&table_dir), 0, "two files: not due");
    let writer = {
        let port = server.port;
        tokio::spawn(async move {
            let client = connect(port).await;
            for i in 0..40 {
                client
                    .execute(&insert_sql("p1", &ids(&format!("c{i}"), 5), at), &[])
                    .await
                    .expect("insert while merging");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    eventually(Duration::from_secs(60), "a merge", || async {
        optimize_commits(&table_dir) > 0
    })
    .await;
    writer.await.expect("writer");
    total += 200;
    assert_eq!(count(&client, "").await, total, "no row lost or doubled");
    eventually(Duration::from_secs(30), "everything flushed", || async {
        delta_rows(dir.path()).await == total as usize
    })
    .await;
    eventually(Duration::from_secs(30), "the last merge", || async {
        live_files(&table_dir).await < 3
    })
    .await;
    assert!(
        data_files(&table_dir) > live_files(&table_dir).await,
        "merged files stay on disk until vacuum"
    );
    assert_eq!(count(&client, "").await, total);
    drop(client);
    assert!(server.terminate().success());

    let server = TestServer::start(dir.path(), &env);
    let client = server.client().await;
    assert_eq!(count(&client, "").await, total, "after a restart");
    assert_eq!(delta_rows(dir.path()).await, total as usize);
}
