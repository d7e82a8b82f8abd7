//! Values are checked at the door: a timestamp or date outside years 0001–9999 is refused with
//! SQLSTATE 22008, and a project id too long to name its partition folder with 22001, on every
//! write path, before the WAL, since such a row could never be flushed (one stopped every
//! flush after it). A WAL written before the check replays without such
//! rows, which are moved to `<data>/quarantine`, and everything else flushes.

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray, TimestampMicrosecondArray};
use futures::SinkExt;
use timefusion::engine::wal::{Seq, Wal, WalOptions};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use crate::common::*;

async fn copy_text(client: &tokio_postgres::Client, options: &str, data: &str) -> String {
    let sql = format!("COPY {TABLE} (project_id, timestamp, id) FROM STDIN {options}");
    let result = async {
        let sink = client.copy_in(&sql).await?;
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from(data.to_string())).await?;
        sink.finish().await
    }
    .await;
    outcome(result)
}

#[tokio::test]
async fn out_of_range_timestamps_and_dates_get_22008_on_every_write_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    let insert =
        |values: &str| format!("INSERT INTO {TABLE} (project_id, timestamp, id) VALUES {values}");
    let refused = [
        // The literal fast path.
        insert("('p1', '10000-01-01 00:00:00+00', 'a')"),
        // DataFusion's plan (a function call), far past and far before.
        insert("('p1', to_timestamp_micros(9223372036854775807), 'b')"),
        insert("('p1', to_timestamp_micros(-4611686018427387904), 'c')"),
        format!(
            "INSERT INTO {TABLE} (project_id, timestamp, id) \
             SELECT 'p1', to_timestamp_micros(9223372036854775807), 'd'"
        ),
        // A date given beyond year 9999.
        format!(
            "INSERT INTO {TABLE} (project_id, timestamp, id, date) \
             VALUES ('p1', '2026-01-01 00:00:00+00', 'e', '10000-01-01')"
        ),
    ];
    for sql in &refused {
        assert_eq!(outcome(client.simple_query(sql).await), "22008", "{sql}");
    }
    // Parameters, binary timestamps.
    let far = chrono::NaiveDate::from_ymd_opt(10_000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("date")
        .and_utc();
    let parameterized = client
        .execute(
            &format!("INSERT INTO {TABLE} (project_id, timestamp, id) VALUES ($1, $2, $3)"),
            &[&"p1", &far, &"f"],
        )
        .await;
    assert_eq!(outcome(parameterized), "22008");
    // COPY text, CSV and binary.
    assert_eq!(
        copy_text(&client, "", "p1\t10000-01-01 00:00:00+00\tg\n").await,
        "22008"
    );
    assert_eq!(
        copy_text(
            &client,
            "WITH (FORMAT csv)",
            "p1,10000-01-01 00:00:00+00,h\n"
        )
        .await,
        "22008"
    );
    let binary = async {
        let sink = client
            .copy_in(&format!(
                "COPY {TABLE} (project_id, timestamp, id) FROM STDIN WITH (FORMAT binary)"
            ))
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::TIMESTAMPTZ, Type::TEXT]);
        futures::pin_mut!(writer);
        writer.as_mut().write(&[&"p1", &far, &"i"]).await?;
        writer.finish().await
    }
    .await;
    assert_eq!(outcome(binary), "22008");
    // A NULL in a required column is 23502 whichever path the statement takes.
    for values in [
        "('p1', now(), NULL)",
        "('p1', '2026-01-01 00:00:00+00', NULL)",
    ] {
        assert_eq!(
            outcome(client.simple_query(&insert(values)).await),
            "23502",
            "{values}"
        );
    }
    // A project id too long to name its partition folder ("project_id=" and the value,
    // percent-encoded, past 255 bytes): every flush of the table would fail on it.
    let long = "x".repeat(300);
    assert_eq!(
        outcome(
            client
                .simple_query(&insert(&format!("('{long}', now(), 'j')")))
                .await
        ),
        "22001"
    );
    let parameterized = client
        .execute(
            &format!("INSERT INTO {TABLE} (project_id, timestamp, id) VALUES ($1, now(), $2)"),
            &[&long, &"k"],
        )
        .await;
    assert_eq!(outcome(parameterized), "22001");
    assert_eq!(
        copy_text(&client, "", &format!("{long}\t2026-01-01 00:00:00+00\tl\n")).await,
        "22001"
    );
    assert_eq!(count(&client, "").await, 0, "nothing refused was stored");

    // The first and last instants stored are accepted.
    client
        .batch_execute(&insert(
            "('p1', '0001-01-01 00:00:00+00', 'first'), \
             ('p1', '9999-12-31 23:59:59.999999+00', 'last')",
        ))
        .await
        .expect("the range's ends");
    let ends = client
        .query(
            &format!("SELECT id, date::text FROM {TABLE} ORDER BY timestamp"),
            &[],
        )
        .await
        .expect("ends");
    let ends: Vec<(String, String)> = ends.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        ends,
        [
            ("first".to_string(), "0001-01-01".to_string()),
            ("last".to_string(), "9999-12-31".to_string())
        ]
    );
}

/// A WAL record an older build acknowledged, with rows the range check would refuse.
async fn write_old_wal(data_dir: &std::path::Path) {
    let wal = Wal::open(
        &data_dir.join("wal"),
        WalOptions {
            segment_bytes: 64 << 20,
            group_max_bytes: 1 << 20,
            compression: timefusion::config::WalCompression::None,
            in_place_sync_max: timefusion::engine::wal::IN_PLACE_SYNC_MAX,
        },
    )
    .expect("wal");
    wal.start(Seq(1)).expect("start");
    let yesterday = past_micros(1);
    let batch = RecordBatch::try_from_iter([
        (
            "project_id",
            Arc::new(StringArray::from(vec![
                "p1".to_string(),
                "p1".into(),
                "p1".into(),
                "p1".into(),
                "y".repeat(300),
            ])) as _,
        ),
        (
            "timestamp",
            Arc::new(
                TimestampMicrosecondArray::from(vec![
                    yesterday,
                    i64::MAX,
                    -(1 << 62),
                    yesterday + 1,
                    yesterday + 2,
                ])
                .with_timezone("UTC"),
            ) as _,
        ),
        (
            "id",
            Arc::new(StringArray::from(vec![
                "ok-1", "far", "before", "ok-2", "long",
            ])) as _,
        ),
    ])
    .expect("batch");
    wal.append(TABLE, batch, Box::new(|_| {}))
        .await
        .expect("append");
    wal.close().await;
}

#[tokio::test]
async fn a_wal_with_unflushable_rows_replays_them_into_quarantine_and_flushes_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_old_wal(dir.path()).await;
    let server = TestServer::start(dir.path(), &[("TIMEFUSION_FLUSH_INTERVAL_SECS", "1")]);
    let client = server.client().await;
    let ids = client
        .query(&format!("SELECT id FROM {TABLE} ORDER BY id"), &[])
        .await
        .expect("query");
    let ids: Vec<String> = ids.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, ["ok-1", "ok-2"]);
    assert_eq!(server.logged("were moved aside"), 1);

    let kept = dir
        .path()
        .join("quarantine")
        .join(format!("{TABLE}-1.arrow"));
    let file = std::fs::File::open(&kept).expect("the quarantine file");
    let reader = arrow::ipc::reader::FileReader::try_new(file, None).expect("Arrow IPC");
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
    let quarantined =
        arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("concat");
    let id = quarantined.column_by_name("id").expect("id");
    let id = id.as_any().downcast_ref::<StringArray>().expect("utf8");
    assert_eq!(
        id.iter().flatten().collect::<Vec<_>>(),
        ["far", "before", "long"]
    );

    // Everything else reaches Delta: the flush is no longer stopped by those rows.
    eventually(std::time::Duration::from_secs(30), "the flush", || async {
        delta_rows(dir.path()).await == 2
    })
    .await;
    let (_, metrics) = http_get(server.http_port, "/metrics").expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l == "timefusion_quarantined_rows_total 3"),
        "{metrics}"
    );
}

/// Bad arguments are the client's mistake, answered with PostgreSQL's class, never XX000.
/// (These hold the upstream error texts `sql::error` matches: a change there fails here.)
#[tokio::test]
async fn bad_function_arguments_get_their_own_sqlstate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    let cases = [
        ("SELECT regexp_like('a', '(')", "2201B"),
        ("SELECT 'a' ~ '('", "2201B"),
        ("SELECT date_trunc('fortnight', now())", "22023"),
        ("SELECT time_bucket(INTERVAL '0 minutes', now())", "22023"),
        (
            "SELECT time_bucket(INTERVAL '5 minutes', now(), 'Mars/Olympus')",
            "22023",
        ),
        (
            "SELECT time_bucket(INTERVAL '1 month 1 day', now())",
            "22023",
        ),
        ("SELECT regexp_replace('a', '(', 'b')", "2201B"),
        ("SELECT make_date(2020, 13, 1)", "22008"),
        ("SELECT now() + INTERVAL '100000 years'", "22008"),
        ("SELECT substr('abc', 1, -1)", "22011"),
        ("SELECT date_part('fortnight', now())", "22023"),
        ("SELECT extract(fortnight FROM now())", "22023"),
        ("SELECT generate_series(1, 10, 0)", "22023"),
        ("SELECT sqrt(-1)", "2201F"),
        ("SELECT power(0, -1)", "2201F"),
        ("SELECT to_timestamp('not a date', 'YYYY-MM-DD')", "22007"),
        ("SELECT date_bin(INTERVAL '0 minutes', now())", "22023"),
        ("SELECT split_part('a,b', ',', 0)", "22023"),
        ("SELECT decode('zz', 'hex')", "22023"),
        ("SELECT chr(-1)", "22023"),
        ("SELECT arrow_cast(1, 'Nope')", "22023"),
        ("SELECT array_element(ARRAY[1], 100000000000)", "22003"),
        ("SELECT factorial(100)", "22003"),
        ("SELECT gcd(-9223372036854775808, 0)", "22003"),
        ("SELECT abs(-9223372036854775808)", "22003"),
        ("SELECT overlay('abc' placing 'x' from -1)", "22011"),
        ("SELECT lpad('a', 100000000000)", "54000"),
        ("SELECT repeat('a', 100000000000)", "54000"),
        ("SELECT ntile(0) OVER () FROM (VALUES (1)) v(x)", "22014"),
        // A result type the protocol has no type for: not supported, not internal.
        ("SELECT json_get('{', 'a')", "0A000"),
    ];
    for (sql, expected) in cases {
        assert_eq!(outcome(client.simple_query(sql).await), expected, "{sql}");
    }
    // The pattern's own error, not the optimizer rule that compiled it.
    let error = client
        .simple_query("SELECT 'a' ~ '('")
        .await
        .expect_err("refused");
    let message = error.as_db_error().expect("a server error").message();
    assert!(
        message.starts_with("invalid regular expression: "),
        "{message}"
    );
}
