//! Helpers the benchmark tools share: client connections, Arrow Flight DoPut, the PostgreSQL
//! table, Arrow IPC files for ClickHouse, percentiles.

#![allow(dead_code)] // each benchmark tool uses its own part of this module

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::{FlightClient, FlightDescriptor};
use futures::{Stream, StreamExt};

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

/// What one DoPut stream did: the batches it sent, and each batch's ack latency (from the
/// moment the encoder took the batch to its `PutResult`) when every batch was one message.
pub struct Put {
    pub sent: usize,
    pub latencies: Vec<Duration>,
}

/// Sends `batches` to `table` over one DoPut stream, after checking there is an
/// acknowledgement for every batch (one per message: the encoder splits a batch above 32 MiB,
/// so a batch may have two, and then latencies are not attributed).
pub async fn put(
    client: &mut FlightClient,
    table: &str,
    batches: impl Stream<Item = RecordBatch> + Send + 'static,
) -> Put {
    let sent = Arc::new(AtomicUsize::new(0));
    let taken = Arc::new(Mutex::new(VecDeque::new()));
    let (counter, stamps) = (sent.clone(), taken.clone());
    let counted = batches.map(move |batch| {
        counter.fetch_add(1, Ordering::Relaxed);
        stamps.lock().expect("stamps").push_back(Instant::now());
        Ok(batch)
    });
    // Whole 8,192-row batches in one message (the encoder splits at 2 MiB by default).
    let data = FlightDataEncoderBuilder::new()
        .with_max_flight_data_size(32 << 20)
        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec![table.into()])))
        .build(counted);
    let mut acks = client.do_put(data).await.expect("do_put");
    let mut latencies = Vec::new();
    let mut ack_count = 0;
    while let Some(ack) = acks.next().await {
        ack.expect("ack");
        ack_count += 1;
        if let Some(taken) = taken.lock().expect("stamps").pop_front() {
            latencies.push(taken.elapsed());
        }
    }
    let sent = sent.load(Ordering::Relaxed);
    assert!(
        ack_count >= sent,
        "{ack_count} PutResults for {sent} batches"
    );
    if ack_count > sent {
        // A batch went out as two messages: acks no longer pair with batches.
        latencies.clear();
    }
    Put { sent, latencies }
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
    let catalog = timefusion::engine::schema::Catalog::load(None).expect("schemas");
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
