//! Arrow Flight end to end with the Rust `arrow-flight` client: DoPut of many batches with a
//! subset of columns and other-but-castable types, per-batch acknowledgements, rows counted
//! over pgwire; token and schema errors; Flight SQL queries, prepared statements and metadata.

use std::sync::Arc;

use crate::common::*;
use arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, Int64Array, RecordBatch, StringViewArray,
    StructArray, TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema};
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::error::FlightError;
use arrow_flight::sql::CommandGetTables;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{FlightClient, FlightDescriptor};
use futures::TryStreamExt;
use tonic::transport::Channel;

async fn channel(port: u16) -> Channel {
    Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect gRPC")
}

/// A batch with only a few columns: project as a string view, time in nanoseconds (no zone).
fn batch(project: &str, start: usize, rows: usize, base_nanos: i64) -> RecordBatch {
    let ids: Vec<String> = (start..start + rows)
        .map(|i| format!("flight-{i}"))
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("project_id", DataType::Utf8View, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, None),
            false,
        ),
        Field::new("id", DataType::Utf8View, false),
        Field::new("duration", DataType::Int64, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringViewArray::from_iter_values(
                (0..rows).map(|_| project),
            )),
            Arc::new(TimestampNanosecondArray::from_iter_values(
                (0..rows).map(|i| base_nanos + i as i64 * 1000),
            )),
            Arc::new(StringViewArray::from_iter_values(ids)),
            Arc::new(Int64Array::from_iter_values((0..rows).map(|i| i as i64))),
        ],
    )
    .expect("batch")
}

async fn put(
    client: &mut FlightClient,
    table: &str,
    batches: Vec<RecordBatch>,
) -> Result<Vec<arrow_flight::PutResult>, FlightError> {
    let stream = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec![table.to_string()])))
        .build(futures::stream::iter(batches.into_iter().map(Ok)));
    client.do_put(stream).await?.try_collect().await
}

fn code(error: FlightError) -> tonic::Code {
    match error {
        FlightError::Tonic(status) => status.code(),
        other => panic!("expected a gRPC status, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_put_many_batches_then_query_over_pgwire_and_flight_sql() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(
        dir.path(),
        &[
            ("GRPC_TOKEN", "t0ken"),
            ("TIMEFUSION_LOG", "timefusion::slow=info,warn"),
            ("TIMEFUSION_LOG_MIN_DURATION_MS", "0"),
        ],
    );
    let mut client = FlightClient::new(channel(server.grpc_port).await);
    client
        .add_header("authorization", "Bearer t0ken")
        .expect("header");

    let now_nanos = chrono::Utc::now().timestamp_micros() * 1000;
    let batches: Vec<RecordBatch> = (0..20)
        .map(|b| batch("p1", b * 500, 500, now_nanos))
        .collect();
    let results = put(&mut client, TABLE, batches).await.expect("do_put");
    assert_eq!(results.len(), 20, "one PutResult per batch");
    assert!(results.iter().all(|r| r.app_metadata.as_ref() == b"500"));

    let pg = server.client().await;
    assert_eq!(
        count(&pg, "WHERE project_id = 'p1'").await,
        10_000,
        "rows sent over gRPC are counted over pgwire"
    );
    let row = pg
        .query_one(
            &format!("SELECT duration, date FROM {TABLE} WHERE id = 'flight-501'"),
            &[],
        )
        .await
        .expect("row");
    assert_eq!(row.get::<_, i64>(0), 1);

    // A dictionary-encoded column sent as dictionary messages (pyarrow sends categoricals
    // this way) is decoded against the stream's dictionaries and cast to the table's type.
    let dictionary_batch = |levels: Vec<&'static str>| {
        let plain = batch("p2", 0, levels.len(), now_nanos);
        let level: DictionaryArray<Int32Type> = levels.into_iter().collect();
        let mut fields = plain.schema().fields().to_vec();
        fields.push(Arc::new(Field::new(
            "level",
            level.data_type().clone(),
            true,
        )));
        let mut columns = plain.columns().to_vec();
        columns.push(Arc::new(level));
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("batch")
    };
    let stream = FlightDataEncoderBuilder::new()
        .with_dictionary_handling(DictionaryHandling::Resend)
        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec![TABLE.to_string()])))
        .build(futures::stream::iter([
            Ok(dictionary_batch(vec!["INFO", "WARN", "INFO"])),
            Ok(dictionary_batch(vec!["ERROR", "ERROR"])),
        ]));
    let results: Vec<_> = client
        .do_put(stream)
        .await
        .expect("do_put")
        .try_collect()
        .await
        .expect("dictionary batches");
    assert_eq!(results.len(), 2);
    let levels = pg
        .query(
            &format!(
                "SELECT level, count(*) FROM {TABLE} WHERE project_id = 'p2' GROUP BY level ORDER BY level"
            ),
            &[],
        )
        .await
        .expect("levels");
    let levels: Vec<(String, i64)> = levels.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        levels,
        [("ERROR".into(), 2), ("INFO".into(), 2), ("WARN".into(), 1)]
    );

    // Flight SQL: a statement query returns Arrow.
    let mut sql = FlightSqlServiceClient::new(channel(server.grpc_port).await);
    sql.set_header("authorization", "Bearer t0ken");
    let info = sql
        .execute(format!("SELECT count(*) AS n FROM {TABLE}"), None)
        .await
        .expect("execute");
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let batches: Vec<RecordBatch> = sql
        .do_get(ticket)
        .await
        .expect("do_get")
        .try_collect()
        .await
        .expect("batches");
    assert_eq!(
        batches[0]
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0),
        10_005
    );

    // Flight SQL queries are counted by the HTTP endpoint.
    let (_, metrics) = http_get(server.http_port, "/metrics").expect("metrics");
    let flight_ok = "timefusion_statements_total{protocol=\"flight\",outcome=\"ok\"} ";
    assert!(
        metrics.lines().any(|l| l.starts_with(flight_ok)),
        "{metrics}"
    );
    assert!(
        server.logged("protocol=\"flight\"") >= 1,
        "Flight SQL queries are in the slow-statement log"
    );
    let flight_rows =
        format!("timefusion_ingested_rows_total{{table=\"{TABLE}\",path=\"flight\"}} ");
    assert!(
        metrics.lines().any(|l| l.starts_with(&flight_rows)),
        "{metrics}"
    );

    // A statement too deep to parse safely is refused, and the service goes on.
    let deep = format!("SELECT {}1{}", "ARRAY[".repeat(1000), "]".repeat(1000));
    let refused = sql.execute(deep, None).await.expect_err("too deep");
    assert!(
        refused.to_string().contains("nested too deeply"),
        "{refused}"
    );

    // Prepared statement.
    let mut prepared = sql
        .prepare(
            format!("SELECT id FROM {TABLE} WHERE id = 'flight-7'"),
            None,
        )
        .await
        .expect("prepare");
    let info = prepared.execute().await.expect("execute prepared");
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let batches: Vec<RecordBatch> = sql
        .do_get(ticket)
        .await
        .expect("do_get")
        .try_collect()
        .await
        .expect("batches");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);

    // Metadata: GetTables lists the table.
    let info = sql
        .get_tables(CommandGetTables {
            include_schema: false,
            ..Default::default()
        })
        .await
        .expect("get_tables");
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let tables: Vec<RecordBatch> = sql
        .do_get(ticket)
        .await
        .expect("do_get")
        .try_collect()
        .await
        .expect("tables");
    let names = tables[0]
        .column_by_name("table_name")
        .expect("table_name column");
    assert_eq!(names.as_string::<i32>().value(0), TABLE);
}

#[tokio::test]
async fn wrong_token_and_bad_batches_are_rejected_and_store_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[("GRPC_TOKEN", "t0ken")]);
    let now_nanos = chrono::Utc::now().timestamp_micros() * 1000;

    let mut anonymous = FlightClient::new(channel(server.grpc_port).await);
    let err = put(&mut anonymous, TABLE, vec![batch("p1", 0, 10, now_nanos)])
        .await
        .expect_err("no token");
    assert_eq!(code(err), tonic::Code::Unauthenticated);
    let mut wrong = FlightClient::new(channel(server.grpc_port).await);
    wrong
        .add_header("authorization", "Bearer nope")
        .expect("header");
    let err = put(&mut wrong, TABLE, vec![batch("p1", 0, 10, now_nanos)])
        .await
        .expect_err("bad token");
    assert_eq!(code(err), tonic::Code::Unauthenticated);

    let mut client = FlightClient::new(channel(server.grpc_port).await);
    client
        .add_header("authorization", "Bearer t0ken")
        .expect("header");
    let err = put(
        &mut client,
        "no_such_table",
        vec![batch("p1", 0, 10, now_nanos)],
    )
    .await
    .expect_err("table");
    assert_eq!(code(err), tonic::Code::NotFound);

    // A struct column cannot become the table's Utf8 `name`: the error names the column.
    let good = batch("p1", 0, 3, now_nanos);
    let inner: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
    let nested = StructArray::from(vec![(
        Arc::new(Field::new("x", DataType::Int64, true)),
        inner,
    )]);
    let mut fields: Vec<Field> = good
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("name", nested.data_type().clone(), true));
    let mut columns = good.columns().to_vec();
    columns.push(Arc::new(nested));
    let bad = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("bad batch");
    match put(&mut client, TABLE, vec![bad])
        .await
        .expect_err("bad type")
    {
        FlightError::Tonic(status) => {
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(status.message().contains("name"), "{}", status.message());
        }
        other => panic!("expected a status, got {other}"),
    }

    // A timestamp past year 9999 (i64::MAX µs) is refused before the WAL, naming the row:
    // such a row could never be flushed, and once stopped every flush after it.
    let far = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("project_id", DataType::Utf8, false),
            Field::new(
                "timestamp",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("id", DataType::Utf8, false),
        ])),
        vec![
            Arc::new(arrow::array::StringArray::from(vec!["p1", "p1"])),
            Arc::new(
                arrow::array::TimestampMicrosecondArray::from(vec![0, i64::MAX])
                    .with_timezone("UTC"),
            ),
            Arc::new(arrow::array::StringArray::from(vec!["near", "far"])),
        ],
    )
    .expect("batch");
    match put(&mut client, TABLE, vec![far])
        .await
        .expect_err("out of range")
    {
        FlightError::Tonic(status) => {
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            let message = status.message();
            assert!(message.contains("out of range"), "{message}");
            assert!(message.contains("(row 1)"), "{message}");
        }
        other => panic!("expected a status, got {other}"),
    }

    // Missing required id.
    let no_id = good.project(&[0, 1, 3]).expect("project");
    let err = put(&mut client, TABLE, vec![no_id])
        .await
        .expect_err("missing id");
    assert_eq!(code(err), tonic::Code::InvalidArgument);

    let pg = server.client().await;
    assert_eq!(
        count(&pg, "").await,
        0,
        "nothing was stored by rejected calls"
    );
    // The server still serves good batches.
    let ok = put(&mut client, TABLE, vec![good])
        .await
        .expect("good batch");
    assert_eq!(ok.len(), 1);
    assert_eq!(count(&pg, "").await, 3);
}
