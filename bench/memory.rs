//! Memory benchmark (issue 26): ingest at the machine's maximum from Arrow Flight DoPut streams
//! and COPY connections at once, plus a tenant-wide query every second, while the server's
//! resident memory is sampled from `/proc/<pid>/status` every 100 ms. Reports the peak RSS,
//! rows acknowledged, acknowledgement latency (p50 / p99 / max, per batch or COPY statement)
//! and query latency, as one JSON line.
//!
//! `cargo run --release --example memory -- --timefusion CONN --flight URL --pid PID [--secs N]`
//! runs the load; `memory --timefusion CONN --expect N` checks that the table holds exactly N
//! rows (after a restart: nothing acknowledged lost, nothing doubled). `bench/run_memory.sh`
//! runs the whole scenario against a fresh server.

#[path = "common.rs"]
mod common;
#[path = "gen.rs"]
mod generator;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow_flight::FlightDescriptor;
use arrow_flight::encode::FlightDataEncoderBuilder;
use clap::Parser;
use common::{connect, flight_client, percentile};
use futures::{SinkExt, StreamExt};
use generator::Generator;

#[derive(Parser, Debug)]
struct Args {
    /// TimeFusion Postgres connection string.
    #[arg(long)]
    timefusion: String,
    /// TimeFusion Arrow Flight endpoint, e.g. http://127.0.0.1:50051.
    #[arg(long)]
    flight: Option<String>,
    /// The server's process id, whose resident memory is sampled.
    #[arg(long)]
    pid: Option<u32>,
    /// How long the load runs, in seconds.
    #[arg(long, default_value_t = 300)]
    secs: u64,
    /// Concurrent DoPut streams.
    #[arg(long, default_value_t = 8)]
    streams: usize,
    /// Concurrent COPY connections.
    #[arg(long, default_value_t = 4)]
    copies: usize,
    /// Rows per Flight batch and per COPY statement.
    #[arg(long, default_value_t = 8192)]
    batch_rows: usize,
    /// Batches per DoPut call (each acknowledged on its own).
    #[arg(long, default_value_t = 16)]
    batches_per_put: usize,
    /// Timestamps are spread over this many minutes before now: 2880 is two days of
    /// out-of-order telemetry, 10080 a 7-day backfill.
    #[arg(long, default_value_t = 2880)]
    span_minutes: i64,
    /// Only check that the table holds exactly this many rows, then exit.
    #[arg(long)]
    expect: Option<u64>,
}

const TABLE: &str = "otel_logs_and_spans";
/// The tenant the once-a-second query reads: the generator's largest.
const QUERY: &str =
    "SELECT count(*), max(duration) FROM otel_logs_and_spans WHERE project_id = 'project-0'";

/// Acknowledged rows and latencies of one kind of writer.
#[derive(Default)]
struct Acks {
    rows: u64,
    latencies: Vec<Duration>,
    errors: u64,
    last_error: Option<String>,
}

impl Acks {
    fn merge(&mut self, other: Acks) {
        self.rows += other.rows;
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        if other.last_error.is_some() {
            self.last_error = other.last_error;
        }
    }

    fn failed(&mut self, error: String) {
        self.errors += 1;
        self.last_error = Some(error);
    }

    fn summary(mut self, secs: f64) -> serde_json::Value {
        self.latencies.sort();
        let (p50, p99, max) = if self.latencies.is_empty() {
            (0.0, 0.0, 0.0)
        } else {
            (
                percentile(&self.latencies, 0.5),
                percentile(&self.latencies, 0.99),
                percentile(&self.latencies, 1.0),
            )
        };
        serde_json::json!({
            "rows": self.rows,
            "rows_per_sec": (self.rows as f64 / secs).round(),
            "ack_p50_ms": p50, "ack_p99_ms": p99, "ack_max_ms": max,
            "errors": self.errors,
            "last_error": self.last_error,
        })
    }
}

/// One DoPut stream until `deadline`: calls of `per_put` batches, each batch's ack timed from
/// the moment the encoder took it.
async fn put_until(url: String, batch: RecordBatch, per_put: usize, deadline: Instant) -> Acks {
    let mut client = flight_client(&url).await;
    let mut acks = Acks::default();
    let rows = batch.num_rows() as u64;
    while Instant::now() < deadline {
        let taken = Arc::new(Mutex::new(VecDeque::new()));
        let stamps = taken.clone();
        let batches =
            futures::stream::iter(std::iter::repeat_n(batch.clone(), per_put)).map(move |b| {
                stamps.lock().expect("stamps").push_back(Instant::now());
                Ok(b)
            });
        let data = FlightDataEncoderBuilder::new()
            .with_max_flight_data_size(32 << 20)
            .with_flight_descriptor(Some(FlightDescriptor::new_path(vec![TABLE.into()])))
            .build(batches);
        let mut results = match client.do_put(data).await {
            Ok(results) => results,
            Err(e) => {
                acks.failed(e.to_string());
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while let Some(result) = results.next().await {
            match result {
                Ok(_) => {
                    acks.rows += rows;
                    if let Some(t) = taken.lock().expect("stamps").pop_front() {
                        acks.latencies.push(t.elapsed());
                    }
                }
                Err(e) => {
                    acks.failed(e.to_string());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    break;
                }
            }
        }
    }
    acks
}

/// One COPY connection until `deadline`: one `COPY … FROM STDIN` of `chunk` after another.
async fn copy_until(url: String, chunk: bytes::Bytes, rows: u64, deadline: Instant) -> Acks {
    let client = connect(&url).await;
    let sql = format!(
        "COPY {TABLE} ({}) FROM STDIN (FORMAT csv)",
        generator::COLUMNS.join(", ")
    );
    let mut acks = Acks::default();
    while Instant::now() < deadline {
        let t = Instant::now();
        let copied = async {
            let sink = client.copy_in::<_, bytes::Bytes>(&sql).await?;
            futures::pin_mut!(sink);
            sink.send(chunk.clone()).await?;
            sink.finish().await
        }
        .await;
        match copied {
            Ok(n) => {
                assert_eq!(n, rows, "COPY reports the rows it took");
                acks.rows += n;
                acks.latencies.push(t.elapsed());
            }
            Err(e) => {
                acks.failed(format!("{e:?}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    acks
}

/// The tenant-wide query once a second until `deadline`.
async fn query_until(url: String, deadline: Instant) -> Acks {
    let client = connect(&url).await;
    let mut acks = Acks::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < deadline {
        tick.tick().await;
        let t = Instant::now();
        match client.query_one(QUERY, &[]).await {
            Ok(_) => {
                acks.rows += 1;
                acks.latencies.push(t.elapsed());
            }
            Err(e) => acks.failed(format!("{e:?}")),
        }
    }
    acks
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Some(expected) = args.expect {
        let client = connect(&args.timefusion).await;
        let row = client
            .query_one(&format!("SELECT count(*) FROM {TABLE}"), &[])
            .await
            .expect("count");
        let count: i64 = row.get(0);
        println!("{{\"expected\": {expected}, \"counted\": {count}}}");
        if count as u64 != expected {
            eprintln!("the table holds {count} rows, {expected} were acknowledged");
            std::process::exit(1);
        }
        return;
    }
    let flight = args.flight.clone().expect("--flight");
    let pid = args.pid.expect("--pid");
    let end = chrono::Utc::now().timestamp_micros();
    // Distinct rows per writer, generated before the clock starts: the client's CPU goes to
    // sending, not generating (the machine's cores are shared with the server).
    let mut g = Generator::new(7, end, args.span_minutes);
    let batches: Vec<RecordBatch> = (0..args.streams)
        .map(|_| generator::batch_of(&g.rows(args.batch_rows)))
        .collect();
    let chunks: Vec<bytes::Bytes> = (0..args.copies)
        .map(|_| bytes::Bytes::from(generator::csv_of(&g.rows(args.batch_rows))))
        .collect();

    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.secs);
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = 0u64;
            let mut every_10s = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut n = 0u64;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                let Some(rss) = status_kib(pid, "VmRSS:") else {
                    break;
                };
                peak = peak.max(rss);
                if n.is_multiple_of(100) {
                    every_10s.push(rss / 1024);
                }
                n += 1;
            }
            (peak, every_10s)
        })
    };
    let puts: Vec<_> = batches
        .into_iter()
        .map(|b| tokio::spawn(put_until(flight.clone(), b, args.batches_per_put, deadline)))
        .collect();
    let copies: Vec<_> = chunks
        .into_iter()
        .map(|c| {
            tokio::spawn(copy_until(
                args.timefusion.clone(),
                c,
                args.batch_rows as u64,
                deadline,
            ))
        })
        .collect();
    let queries = tokio::spawn(query_until(args.timefusion.clone(), deadline));

    let mut flight_acks = Acks::default();
    for t in puts {
        flight_acks.merge(t.await.expect("DoPut task"));
    }
    let mut copy_acks = Acks::default();
    for t in copies {
        copy_acks.merge(t.await.expect("COPY task"));
    }
    let query_acks = queries.await.expect("query task");
    let secs = started.elapsed().as_secs_f64();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let (peak_kib, every_10s) = sampler.await.expect("sampler");
    let hwm_kib = status_kib(pid, "VmHWM:").unwrap_or(0);
    let total = flight_acks.rows + copy_acks.rows;
    let report = serde_json::json!({
        "secs": secs.round(),
        "streams": args.streams,
        "copies": args.copies,
        "span_minutes": args.span_minutes,
        "rows_acknowledged": total,
        "rows_per_sec": (total as f64 / secs).round(),
        "peak_rss_mb": peak_kib / 1024,
        "vm_hwm_mb": hwm_kib / 1024,
        "rss_mb_every_10s": every_10s,
        "flight": flight_acks.summary(secs),
        "copy": copy_acks.summary(secs),
        "query": query_acks.summary(secs),
    });
    println!("{report}");
}
