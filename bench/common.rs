//! Helpers the benchmark tools share: client connections, Arrow Flight DoPut, the PostgreSQL
//! table, Arrow IPC files for ClickHouse, percentiles.

#![allow(dead_code)] // each benchmark tool uses its own part of this module

use std::path::Path;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::{FlightClient, FlightDescriptor};
use futures::{Stream, StreamExt, TryStreamExt};

/// A Postgres-protocol client; its connection runs on its own task.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// An Arrow Flight client connected to `url`, e.g. http://127.0.0.1:50051.
pub async fn flight_client(url: &str) -> FlightClient {
    let channel = tonic::transport::Channel::from_shared(url.to_string())
        .expect("Flight URI")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    FlightClient::new(channel)
}

/// Sends `batches` to `table` over one DoPut stream and returns how many it sent, after
/// checking there is an acknowledgement for every one (one per message: the encoder splits a
/// batch above 32 MiB, so a batch may have two).
pub async fn put(
    client: &mut FlightClient,
    table: &str,
    batches: impl Stream<Item = RecordBatch> + Send + 'static,
) -> usize {
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    let counted = batches.map(move |batch| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(batch)
    });
    // Whole 8,192-row batches in one message (the encoder splits at 2 MiB by default).
    let data = FlightDataEncoderBuilder::new()
        .with_max_flight_data_size(32 << 20)
        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec![table.into()])))
        .build(counted);
    let acks = client
        .do_put(data)
        .await
        .expect("do_put")
        .try_collect::<Vec<_>>()
        .await
        .expect("acks")
        .len();
    let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(acks >= sent, "{acks} PutResults for {sent} batches");
    sent
}

/// Writes `batches` to `path` as one Arrow IPC file, the input ClickHouse reads with
/// `file(path, 'Arrow')` (`bench/baselines.py`).
pub fn write_arrow_file(path: &Path, batches: &[RecordBatch]) {
    let schema = batches.first().expect("at least one batch").schema();
    let file =
        std::fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut writer =
        arrow::ipc::writer::FileWriter::try_new(std::io::BufWriter::new(file), &schema)
            .expect("Arrow IPC writer");
    for batch in batches {
        writer.write(batch).expect("write Arrow IPC");
    }
    writer.finish().expect("finish Arrow IPC file");
}

/// The value at quantile `p` of `sorted`, in milliseconds.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// The PostgreSQL table: same columns and order as TimeFusion's schema, JSON as text, an
/// index on (project_id, timestamp) as a time-series user would create.
pub fn postgres_ddl(table_name: &str) -> String {
    let catalog = timefusion::schema::Catalog::load(None).expect("schemas");
    let table = catalog.get(table_name).expect("table");
    let columns: Vec<String> = table
        .schema
        .fields()
        .iter()
        .map(|f| {
            use arrow::datatypes::DataType::*;
            let ty = match f.data_type() {
                Utf8 => "text",
                Int32 => "integer",
                Int64 => "bigint",
                Float64 => "double precision",
                Boolean => "boolean",
                Date32 => "date",
                Timestamp(..) => "timestamptz",
                List(_) => "text[]",
                other => panic!("no PostgreSQL type for {other}"),
            };
            let not_null = if f.is_nullable() { "" } else { " NOT NULL" };
            let default = match (f.name().as_str(), f.data_type()) {
                ("date", _) => " DEFAULT CURRENT_DATE",
                (_, List(_)) if !f.is_nullable() => " DEFAULT '{}'",
                _ => "",
            };
            format!("{} {ty}{not_null}{default}", f.name())
        })
        .collect();
    format!(
        "DROP TABLE IF EXISTS {table_name}; CREATE TABLE {table_name} ({}); CREATE INDEX ON {table_name} (project_id, timestamp);",
        columns.join(", ")
    )
}
