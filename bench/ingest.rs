//! Ingest benchmark over the Postgres protocol: multi-row INSERT throughput and single-row
//! INSERT acknowledgement latency, against TimeFusion and (optionally) PostgreSQL, with the
//! same generated rows and the same SQL text.
//!
//! `cargo run --release --example ingest -- --timefusion URL [--postgres URL] …`; see
//! `bench/README.md` and `bench/run_ingest.sh`, which starts both servers.

#[path = "gen.rs"]
mod generator;

use std::time::{Duration, Instant};

use clap::Parser;
use generator::Generator;

#[derive(Parser, Debug)]
struct Args {
    /// TimeFusion connection string (key=value form).
    #[arg(long)]
    timefusion: Option<String>,
    /// PostgreSQL connection string; the table is (re)created there.
    #[arg(long)]
    postgres: Option<String>,
    /// Rows per multi-row INSERT.
    #[arg(long, default_value_t = 1000)]
    rows_per_statement: usize,
    /// Concurrent connections for the multi-row phase.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Multi-row statements per connection.
    #[arg(long, default_value_t = 25)]
    statements: usize,
    /// Single-row INSERTs (one connection, sequential) for the latency phase.
    #[arg(long, default_value_t = 2000)]
    single: usize,
    /// Generator seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

const TABLE: &str = "otel_logs_and_spans";

#[derive(Debug, serde::Serialize)]
struct Result {
    system: String,
    multi_rows: usize,
    multi_secs: f64,
    multi_rows_per_sec: f64,
    single_count: usize,
    single_p50_ms: f64,
    single_p99_ms: f64,
    single_mean_ms: f64,
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// The PostgreSQL table: same columns and order as TimeFusion's schema, JSON as text, an
/// index on (project_id, timestamp) as a time-series user would create.
fn postgres_ddl() -> String {
    let catalog = timefusion::schema::Catalog::load(None).expect("schemas");
    let table = catalog.get(TABLE).expect("table");
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
        "DROP TABLE IF EXISTS {TABLE}; CREATE TABLE {TABLE} ({}); CREATE INDEX ON {TABLE} (project_id, timestamp);",
        columns.join(", ")
    )
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn run(system: &str, url: &str, args: &Args) -> Result {
    // Generate every statement before timing, so only the server's work is measured.
    let mut generator = Generator::new(args.seed, chrono::Utc::now().timestamp_micros(), 7);
    let multi: Vec<Vec<String>> = (0..args.connections)
        .map(|_| {
            (0..args.statements)
                .map(|_| generator.insert(TABLE, args.rows_per_statement))
                .collect()
        })
        .collect();
    let single: Vec<String> = (0..args.single)
        .map(|_| generator.insert(TABLE, 1))
        .collect();

    let clients: Vec<_> =
        futures::future::join_all((0..args.connections).map(|_| connect(url))).await;
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .zip(multi)
        .map(|(client, statements)| {
            tokio::spawn(async move {
                for sql in statements {
                    client.batch_execute(&sql).await.expect("multi-row insert");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer");
    }
    let multi_secs = started.elapsed().as_secs_f64();
    let multi_rows = args.connections * args.statements * args.rows_per_statement;

    let client = connect(url).await;
    let mut latencies = Vec::with_capacity(single.len());
    for sql in &single {
        let t = Instant::now();
        client.batch_execute(sql).await.expect("single-row insert");
        latencies.push(t.elapsed());
    }
    let mean =
        latencies.iter().sum::<Duration>().as_secs_f64() * 1000.0 / latencies.len().max(1) as f64;
    latencies.sort();
    Result {
        system: system.to_string(),
        multi_rows,
        multi_secs,
        multi_rows_per_sec: multi_rows as f64 / multi_secs,
        single_count: latencies.len(),
        single_p50_ms: percentile(&latencies, 0.5),
        single_p99_ms: percentile(&latencies, 0.99),
        single_mean_ms: mean,
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    println!(
        "ingest: {} connections x {} statements x {} rows (multi-row INSERT), then {} single-row INSERTs on one connection; seed {}",
        args.connections, args.statements, args.rows_per_statement, args.single, args.seed
    );
    let mut results = Vec::new();
    if let Some(url) = &args.postgres {
        connect(url)
            .await
            .batch_execute(&postgres_ddl())
            .await
            .expect("create PostgreSQL table");
        results.push(run("postgresql", url, &args).await);
    }
    if let Some(url) = &args.timefusion {
        results.push(run("timefusion", url, &args).await);
    }
    println!(
        "{:<12} {:>14} {:>10} {:>10} {:>10}",
        "system", "multi rows/s", "1-row p50", "1-row p99", "1-row mean"
    );
    for r in &results {
        println!(
            "{:<12} {:>14.0} {:>8.2}ms {:>8.2}ms {:>8.2}ms",
            r.system, r.multi_rows_per_sec, r.single_p50_ms, r.single_p99_ms, r.single_mean_ms
        );
    }
    if let [pg, tf] = &results[..] {
        println!(
            "ratio timefusion/postgresql: multi-row throughput {:.2}x, single-row p50 latency {:.2}x",
            tf.multi_rows_per_sec / pg.multi_rows_per_sec,
            tf.single_p50_ms / pg.single_p50_ms
        );
    }
    println!("{}", serde_json::to_string(&results).expect("json"));
}
