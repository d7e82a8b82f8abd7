//! Ingest benchmark: multi-row INSERT throughput, single-row INSERT acknowledgement latency,
//! bulk paths (`COPY … FROM STDIN` on both, TimeFusion Arrow Flight `DoPut`), against TimeFusion and
//! PostgreSQL with the same generated rows.
//!
//! `cargo run --release --example ingest -- --timefusion CONN --flight URL --postgres CONN`;
//! `bench/run_ingest.sh` starts both servers and runs it. See `bench/README.md`.

#[path = "common.rs"]
mod common;
#[path = "gen.rs"]
mod generator;

use std::time::Instant;

use clap::Parser;
use common::{connect, flight_client, percentile, put};
use futures::SinkExt;
use generator::Generator;

#[derive(Parser, Debug)]
struct Args {
    /// TimeFusion Postgres connection string.
    #[arg(long)]
    timefusion: Option<String>,
    /// TimeFusion Arrow Flight endpoint, e.g. http://127.0.0.1:50051.
    #[arg(long)]
    flight: Option<String>,
    /// PostgreSQL connection string; the table is (re)created there.
    #[arg(long)]
    postgres: Option<String>,
    /// Rows per multi-row INSERT.
    #[arg(long, default_value_t = 1000)]
    rows_per_statement: usize,
    /// Concurrent connections (or Flight streams) for the throughput phases.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Multi-row statements per connection.
    #[arg(long, default_value_t = 25)]
    statements: usize,
    /// Rows per COPY chunk / Flight batch.
    #[arg(long, default_value_t = 8192)]
    batch_rows: usize,
    /// COPY chunks / Flight batches per connection.
    #[arg(long, default_value_t = 12)]
    batches: usize,
    /// Single-row INSERTs (one connection, sequential) for the latency phase.
    #[arg(long, default_value_t = 2000)]
    single: usize,
    /// Generator seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Timestamps are spread over this many minutes before now: 10080 (7 days) is a backfill
    /// that touches ~1000 time buckets per batch; 5 is live telemetry (one or two buckets).
    #[arg(long, default_value_t = 10080)]
    span_minutes: i64,
}

const TABLE: &str = "otel_logs_and_spans";

#[derive(Debug, serde::Serialize)]
struct Figure {
    system: String,
    phase: String,
    rows: usize,
    secs: f64,
    rows_per_sec: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

fn generator(args: &Args, phase: u64) -> Generator {
    Generator::new(
        args.seed + phase,
        chrono::Utc::now().timestamp_micros(),
        args.span_minutes,
    )
}

fn throughput(system: &str, phase: &str, rows: usize, started: Instant) -> Figure {
    let secs = started.elapsed().as_secs_f64();
    Figure {
        system: system.into(),
        phase: phase.into(),
        rows,
        secs,
        rows_per_sec: rows as f64 / secs,
        p50_ms: None,
        p99_ms: None,
    }
}

/// `connections` connections each sending `statements` multi-row INSERTs.
async fn multi_row(system: &str, url: &str, args: &Args) -> Figure {
    let mut g = generator(args, 1);
    let work: Vec<Vec<String>> = (0..args.connections)
        .map(|_| {
            (0..args.statements)
                .map(|_| g.insert(TABLE, args.rows_per_statement))
                .collect()
        })
        .collect();
    let clients = futures::future::join_all((0..args.connections).map(|_| connect(url))).await;
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .zip(work)
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
    throughput(
        system,
        "multi-row INSERT",
        args.connections * args.statements * args.rows_per_statement,
        started,
    )
}

/// One connection sending single-row INSERTs back to back.
async fn single_row(system: &str, url: &str, args: &Args) -> Figure {
    let mut g = generator(args, 2);
    let statements: Vec<String> = (0..args.single).map(|_| g.insert(TABLE, 1)).collect();
    let client = connect(url).await;
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(statements.len());
    for sql in &statements {
        let t = Instant::now();
        client.batch_execute(sql).await.expect("single-row insert");
        latencies.push(t.elapsed());
    }
    let mut figure = throughput(system, "single-row INSERT", statements.len(), started);
    latencies.sort();
    figure.p50_ms = Some(percentile(&latencies, 0.5));
    figure.p99_ms = Some(percentile(&latencies, 0.99));
    figure
}

/// `COPY … FROM STDIN (FORMAT csv)`, one chunk per statement, on either system.
async fn copy(system: &str, url: &str, args: &Args) -> Figure {
    let mut g = generator(args, 3);
    let work: Vec<Vec<String>> = (0..args.connections)
        .map(|_| (0..args.batches).map(|_| g.csv(args.batch_rows)).collect())
        .collect();
    let clients = futures::future::join_all((0..args.connections).map(|_| connect(url))).await;
    let sql = format!(
        "COPY {TABLE} ({}) FROM STDIN (FORMAT csv)",
        generator::COLUMNS.join(", ")
    );
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .zip(work)
        .map(|(client, chunks)| {
            let sql = sql.clone();
            tokio::spawn(async move {
                for chunk in chunks {
                    let sink = client
                        .copy_in::<_, bytes::Bytes>(&sql)
                        .await
                        .expect("copy in");
                    futures::pin_mut!(sink);
                    sink.send(bytes::Bytes::from(chunk))
                        .await
                        .expect("copy data");
                    sink.finish().await.expect("copy finish");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("copy");
    }
    throughput(
        system,
        "COPY (csv)",
        args.connections * args.batches * args.batch_rows,
        started,
    )
}

/// TimeFusion Arrow Flight DoPut: one stream per connection, acknowledged batch by batch.
async fn flight(url: &str, args: &Args) -> Figure {
    let mut g = generator(args, 3);
    let work: Vec<Vec<_>> = (0..args.connections)
        .map(|_| {
            (0..args.batches)
                .map(|_| g.batch(args.batch_rows))
                .collect()
        })
        .collect();
    let clients =
        futures::future::join_all((0..args.connections).map(|_| flight_client(url))).await;
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .zip(work)
        .map(|(mut client, batches)| {
            tokio::spawn(
                async move { put(&mut client, TABLE, futures::stream::iter(batches)).await },
            )
        })
        .collect();
    for task in tasks {
        assert_eq!(
            task.await.expect("flight"),
            args.batches,
            "every batch sent"
        );
    }
    throughput(
        "timefusion",
        "Flight DoPut",
        args.connections * args.batches * args.batch_rows,
        started,
    )
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    println!(
        "ingest: {c} connections; multi-row INSERT {s} x {r} rows each; COPY / DoPut {b} x {br} rows each; {n} single-row INSERTs; seed {seed}; timestamps over the last {m} minutes",
        c = args.connections,
        s = args.statements,
        r = args.rows_per_statement,
        b = args.batches,
        br = args.batch_rows,
        n = args.single,
        m = args.span_minutes,
        seed = args.seed
    );
    let mut figures = Vec::new();
    if let Some(url) = &args.postgres {
        connect(url)
            .await
            .batch_execute(&common::postgres_ddl(TABLE))
            .await
            .expect("create PostgreSQL table");
        figures.push(multi_row("postgresql", url, &args).await);
        figures.push(copy("postgresql", url, &args).await);
        figures.push(single_row("postgresql", url, &args).await);
    }
    if let Some(url) = &args.timefusion {
        figures.push(multi_row("timefusion", url, &args).await);
        figures.push(copy("timefusion", url, &args).await);
    }
    if let Some(url) = &args.flight {
        figures.push(flight(url, &args).await);
    }
    if let Some(url) = &args.timefusion {
        figures.push(single_row("timefusion", url, &args).await);
    }
    println!(
        "{:<11} {:<18} {:>9} {:>8} {:>12} {:>9} {:>9}",
        "system", "phase", "rows", "secs", "rows/s", "p50 ms", "p99 ms"
    );
    for f in &figures {
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        println!(
            "{:<11} {:<18} {:>9} {:>8.2} {:>12.0} {:>9} {:>9}",
            f.system,
            f.phase,
            f.rows,
            f.secs,
            f.rows_per_sec,
            ms(f.p50_ms),
            ms(f.p99_ms)
        );
    }
    let find = |s: &str, p: &str| figures.iter().find(|f| f.system == s && f.phase == p);
    let ratio = |a: Option<&Figure>, b: Option<&Figure>, what: &str| {
        if let (Some(a), Some(b)) = (a, b) {
            println!("{what}: {:.2}x", a.rows_per_sec / b.rows_per_sec);
        }
    };
    ratio(
        find("timefusion", "multi-row INSERT"),
        find("postgresql", "multi-row INSERT"),
        "multi-row INSERT, TimeFusion / PostgreSQL",
    );
    ratio(
        find("timefusion", "COPY (csv)"),
        find("postgresql", "COPY (csv)"),
        "COPY, TimeFusion / PostgreSQL",
    );
    ratio(
        find("timefusion", "Flight DoPut"),
        find("postgresql", "COPY (csv)"),
        "Flight DoPut / PostgreSQL COPY",
    );
    ratio(
        find("timefusion", "Flight DoPut"),
        find("timefusion", "multi-row INSERT"),
        "Flight DoPut / TimeFusion multi-row INSERT",
    );
    if let (Some(tf), Some(pg)) = (
        find("timefusion", "single-row INSERT"),
        find("postgresql", "single-row INSERT"),
    ) {
        println!(
            "single-row INSERT p50 latency, TimeFusion / PostgreSQL: {:.2}x",
            tf.p50_ms.unwrap_or(0.0) / pg.p50_ms.unwrap_or(1.0)
        );
    }
    println!("{}", serde_json::to_string(&figures).expect("json"));
}
