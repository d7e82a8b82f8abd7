//! Ingest benchmark: multi-row INSERT throughput, single-row INSERT acknowledgement latency,
//! bulk paths (`COPY … FROM STDIN` on both, TimeFusion Arrow Flight `DoPut`), against TimeFusion and
//! PostgreSQL with the same generated rows, which it also writes as Arrow IPC files for the
//! ClickHouse side (`bench/baselines.py --ingest`).
//!
//! `cargo run --release --example ingest -- --timefusion CONN --flight URL --postgres CONN
//! [--clickhouse-dir DIR] [--results R.jsonl]`; `ingest --report R.jsonl` prints the report of
//! every system's figures in R.jsonl. `bench/run_ingest.sh` runs the whole scenario. See
//! `bench/README.md`.

#[path = "common.rs"]
mod common;
#[path = "gen.rs"]
mod generator;

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use common::{connect, flight_client, percentile, put};
use futures::SinkExt;
use generator::{Generator, Row};

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
    /// Also write each phase's rows to this directory as Arrow IPC files, for ClickHouse:
    /// `multi-row/`, `bulk/` (the COPY and DoPut rows) and `single-row/`, each with one
    /// subdirectory per connection (`c0`, `c1`, …) holding one file per statement or batch.
    #[arg(long)]
    clickhouse_dir: Option<PathBuf>,
    /// Append the figures to this file (one JSON line) instead of printing the report.
    #[arg(long)]
    results: Option<PathBuf>,
    /// Only print the report of the figures in this JSON-lines file (this tool's and
    /// `bench/baselines.py --ingest`'s), then exit.
    #[arg(long)]
    report: Option<PathBuf>,
    /// End of the generated timestamps: when the tool started, so that every phase and system,
    /// and the files for ClickHouse, get exactly the same rows.
    #[arg(skip = chrono::Utc::now().timestamp_micros())]
    end_micros: i64,
}

const TABLE: &str = "otel_logs_and_spans";

/// One phase's result on one system; `bench/baselines.py --ingest` writes the same fields.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Figure {
    system: String,
    phase: String,
    rows: usize,
    secs: f64,
    rows_per_sec: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    /// Rows per statement, COPY chunk or batch.
    batch_rows: usize,
    /// Connections (streams, threads) sending at once.
    concurrency: usize,
    /// ClickHouse: active parts of the MergeTree at the end of the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    active_parts: Option<usize>,
}

/// What one phase sends: `connections` connections each send `chunks` statements or batches
/// of `rows` rows, generated with seed `seed`.
#[derive(Debug, Clone, Copy)]
struct Shape {
    seed: u64,
    connections: usize,
    chunks: usize,
    rows: usize,
}

impl Shape {
    fn multi_row(args: &Args) -> Self {
        Shape {
            seed: args.seed + 1,
            connections: args.connections,
            chunks: args.statements,
            rows: args.rows_per_statement,
        }
    }

    fn single_row(args: &Args) -> Self {
        Shape {
            seed: args.seed + 2,
            connections: 1,
            chunks: args.single,
            rows: 1,
        }
    }

    /// COPY and DoPut: the same rows.
    fn bulk(args: &Args) -> Self {
        Shape {
            seed: args.seed + 3,
            connections: args.connections,
            chunks: args.batches,
            rows: args.batch_rows,
        }
    }

    fn total_rows(&self) -> usize {
        self.connections * self.chunks * self.rows
    }

    /// The phase's rows, per connection its chunks, each rendered by `render`. Seed, time span
    /// and order are fixed, so every call returns the same rows.
    fn work<T>(&self, args: &Args, render: impl Fn(&[Row]) -> T) -> Vec<Vec<T>> {
        let mut g = Generator::new(self.seed, args.end_micros, args.span_minutes);
        (0..self.connections)
            .map(|_| {
                (0..self.chunks)
                    .map(|_| render(&g.rows(self.rows)))
                    .collect()
            })
            .collect()
    }
}

fn throughput(system: &str, phase: &str, shape: &Shape, started: Instant) -> Figure {
    let secs = started.elapsed().as_secs_f64();
    let rows = shape.total_rows();
    Figure {
        system: system.into(),
        phase: phase.into(),
        rows,
        secs,
        rows_per_sec: rows as f64 / secs,
        p50_ms: None,
        p99_ms: None,
        batch_rows: shape.rows,
        concurrency: shape.connections,
        active_parts: None,
    }
}

/// `connections` connections each sending `statements` multi-row INSERTs.
async fn multi_row(system: &str, url: &str, args: &Args) -> Figure {
    let shape = Shape::multi_row(args);
    let work = shape.work(args, |rows| generator::insert_of(TABLE, rows));
    let clients = futures::future::join_all((0..shape.connections).map(|_| connect(url))).await;
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .zip(work)
        .map(|(client, statements)| {
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(statements.len());
                for sql in statements {
                    let t = Instant::now();
                    client.batch_execute(&sql).await.expect("multi-row insert");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("writer"));
    }
    with_latencies(
        throughput(system, "multi-row INSERT", &shape, started),
        latencies,
    )
}

/// One connection sending single-row INSERTs back to back.
async fn single_row(system: &str, url: &str, args: &Args) -> Figure {
    let shape = Shape::single_row(args);
    let statements = shape
        .work(args, |rows| generator::insert_of(TABLE, rows))
        .remove(0);
    let client = connect(url).await;
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(statements.len());
    for sql in &statements {
        let t = Instant::now();
        client.batch_execute(sql).await.expect("single-row insert");
        latencies.push(t.elapsed());
    }
    with_latencies(
        throughput(system, "single-row INSERT", &shape, started),
        latencies,
    )
}

/// `figure` with the p50 / p99 of per-statement (or per-batch) ack latencies.
fn with_latencies(mut figure: Figure, mut latencies: Vec<std::time::Duration>) -> Figure {
    if latencies.is_empty() {
        return figure;
    }
    latencies.sort();
    figure.p50_ms = Some(percentile(&latencies, 0.5));
    figure.p99_ms = Some(percentile(&latencies, 0.99));
    figure
}

/// `COPY … FROM STDIN (FORMAT csv)`, one chunk per statement, on either system.
async fn copy(system: &str, url: &str, args: &Args) -> Figure {
    let shape = Shape::bulk(args);
    let work = shape.work(args, generator::csv_of);
    let clients = futures::future::join_all((0..shape.connections).map(|_| connect(url))).await;
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
                let mut latencies = Vec::with_capacity(chunks.len());
                for chunk in chunks {
                    let t = Instant::now();
                    let sink = client
                        .copy_in::<_, bytes::Bytes>(&sql)
                        .await
                        .expect("copy in");
                    futures::pin_mut!(sink);
                    sink.send(bytes::Bytes::from(chunk))
                        .await
                        .expect("copy data");
                    sink.finish().await.expect("copy finish");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("copy"));
    }
    with_latencies(throughput(system, "COPY (csv)", &shape, started), latencies)
}

/// TimeFusion Arrow Flight DoPut: one stream per connection, acknowledged batch by batch.
async fn flight(url: &str, args: &Args) -> Figure {
    let shape = Shape::bulk(args);
    let work = shape.work(args, generator::batch_of);
    let clients =
        futures::future::join_all((0..shape.connections).map(|_| flight_client(url))).await;
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
    let mut latencies = Vec::new();
    for task in tasks {
        let put = task.await.expect("flight");
        assert_eq!(put.sent, shape.chunks, "every batch sent");
        latencies.extend(put.latencies);
    }
    with_latencies(
        throughput("timefusion", "Flight DoPut", &shape, started),
        latencies,
    )
}

/// Writes every phase's rows (the same the servers got) as Arrow IPC files under `dir`, for
/// `bench/baselines.py --ingest`: `dir/<phase>/c<connection>/<statement or batch>.arrow`.
fn write_clickhouse_files(dir: &Path, args: &Args) {
    let started = Instant::now();
    let phases = [
        ("multi-row", Shape::multi_row(args)),
        ("bulk", Shape::bulk(args)),
        ("single-row", Shape::single_row(args)),
    ];
    for (name, shape) in phases {
        if shape.total_rows() == 0 {
            continue;
        }
        for (c, batches) in shape.work(args, generator::batch_of).iter().enumerate() {
            let connection = dir.join(name).join(format!("c{c}"));
            std::fs::create_dir_all(&connection)
                .unwrap_or_else(|e| panic!("create {}: {e}", connection.display()));
            for (i, batch) in batches.iter().enumerate() {
                common::write_arrow_file(
                    &connection.join(format!("{i:06}.arrow")),
                    std::slice::from_ref(batch),
                );
            }
        }
    }
    println!(
        "rows for ClickHouse written to {} as Arrow IPC files in {:.1} s (not timed)",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
}

const HEADER: &str = "system             phase                   rows     secs       rows/s    p50 ms    p99 ms  rows/insert  conc";

fn print_figure(f: &Figure) {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    println!(
        "{:<18} {:<18} {:>9} {:>8.2} {:>12.0} {:>9} {:>9} {:>12} {:>5}",
        f.system,
        f.phase,
        f.rows,
        f.secs,
        f.rows_per_sec,
        ms(f.p50_ms),
        ms(f.p99_ms),
        f.batch_rows,
        f.concurrency
    );
}

/// One of the targets: a ratio of two figures and whether it reaches the target's.
#[derive(Debug, serde::Serialize)]
struct Target {
    target: String,
    ratio: f64,
    met: bool,
}

/// A figure's `(system, phase)`.
type Key = (&'static str, &'static str);
const TF_MULTI: Key = ("timefusion", "multi-row INSERT");
const TF_DOPUT: Key = ("timefusion", "Flight DoPut");
const TF_SINGLE: Key = ("timefusion", "single-row INSERT");
const PG_COPY: Key = ("postgresql", "COPY (csv)");

/// The ratios the report prints, each when both figures are there: `(what, numerator,
/// denominator)`; of rows/s, except p50 latency for single-row INSERTs.
const RATIOS: &[(&str, Key, Key)] = &[
    (
        "multi-row INSERT, TimeFusion / PostgreSQL",
        TF_MULTI,
        ("postgresql", "multi-row INSERT"),
    ),
    (
        "COPY, TimeFusion / PostgreSQL",
        ("timefusion", "COPY (csv)"),
        PG_COPY,
    ),
    ("Flight DoPut / PostgreSQL COPY", TF_DOPUT, PG_COPY),
    (
        "Flight DoPut / TimeFusion multi-row INSERT",
        TF_DOPUT,
        TF_MULTI,
    ),
    (
        "single-row INSERT p50 latency, TimeFusion / PostgreSQL",
        TF_SINGLE,
        ("postgresql", "single-row INSERT"),
    ),
    (
        "Flight DoPut / ClickHouse bulk INSERT, fsync on",
        TF_DOPUT,
        ("clickhouse", "bulk INSERT"),
    ),
    (
        "Flight DoPut / ClickHouse bulk INSERT, no fsync",
        TF_DOPUT,
        ("clickhouse-nofsync", "bulk INSERT"),
    ),
    (
        "Flight DoPut / ClickHouse INSERT of the same batches, fsync on",
        TF_DOPUT,
        ("clickhouse", "batch INSERT"),
    ),
    (
        "Flight DoPut / ClickHouse INSERT of the same batches, no fsync",
        TF_DOPUT,
        ("clickhouse-nofsync", "batch INSERT"),
    ),
    (
        "multi-row INSERT, TimeFusion / ClickHouse INSERT of the same statements, fsync on",
        TF_MULTI,
        ("clickhouse", "statement INSERT"),
    ),
    (
        "multi-row INSERT, TimeFusion / ClickHouse INSERT of the same statements, no fsync",
        TF_MULTI,
        ("clickhouse-nofsync", "statement INSERT"),
    ),
    (
        "single-row INSERT p50 latency, TimeFusion / ClickHouse, fsync on",
        TF_SINGLE,
        ("clickhouse", "single-row INSERT"),
    ),
    (
        "single-row INSERT p50 latency, TimeFusion / ClickHouse, no fsync",
        TF_SINGLE,
        ("clickhouse-nofsync", "single-row INSERT"),
    ),
];

/// The table of every figure, the ratios between systems, the targets, and one JSON
/// line with all of it.
fn report(figures: &[Figure]) {
    println!("{HEADER}");
    figures.iter().for_each(print_figure);
    if figures.iter().any(|f| f.system.starts_with("clickhouse")) {
        println!(
            "clickhouse: MergeTree with fsync_after_insert = 1 and fsync_part_directory = 1: an INSERT returns once its part is fsynced, as TimeFusion and PostgreSQL ack;\n\
             clickhouse-nofsync: ClickHouse's defaults, which do not fsync: an acknowledged INSERT can be lost on power failure.\n\
             ClickHouse (chdb, in process) reads the rows from Arrow IPC files: 'bulk INSERT' is one INSERT of all the COPY / DoPut rows; 'batch INSERT' the same rows in \
             their batches and 'statement INSERT' the multi-row INSERT rows in their statements, from as many threads as connections; each INSERT writes a new part."
        );
    }
    let find = |s: &str, p: &str| figures.iter().find(|f| f.system == s && f.phase == p);
    let ratio = |a: Option<&Figure>, b: Option<&Figure>| {
        a.zip(b).map(|(a, b)| a.rows_per_sec / b.rows_per_sec)
    };
    let latency = |a: Option<&Figure>, b: Option<&Figure>| {
        a.zip(b).and_then(|(a, b)| Some(a.p50_ms? / b.p50_ms?))
    };
    for (what, a, b) in RATIOS {
        let r = if a.1 == "single-row INSERT" {
            latency(find(a.0, a.1), find(b.0, b.1))
        } else {
            ratio(find(a.0, a.1), find(b.0, b.1))
        };
        if let Some(r) = r {
            println!("{what}: {r:.2}x");
        }
    }

    // The targets, each checked when both of its figures are here.
    let fastest = |system: &str, phases: &[&str]| {
        figures
            .iter()
            .filter(|f| f.system == system && phases.contains(&f.phase.as_str()))
            .max_by(|a, b| a.rows_per_sec.total_cmp(&b.rows_per_sec))
    };
    let tf_fastest = fastest("timefusion", &["COPY (csv)", "Flight DoPut"]);
    let mut targets = Vec::new();
    let mut check = |what: String, r: Option<f64>, at_least: f64| {
        if let Some(ratio) = r {
            targets.push(Target {
                target: what,
                ratio,
                met: ratio >= at_least,
            });
        }
    };
    let tf_name = tf_fastest.map_or(String::new(), |f| f.phase.clone());
    check(
        format!("fastest TimeFusion path ({tf_name}) >= 3x PostgreSQL COPY"),
        ratio(tf_fastest, find("postgresql", "COPY (csv)")),
        3.0,
    );
    for system in ["clickhouse", "clickhouse-nofsync"] {
        let ch = fastest(system, &["bulk INSERT", "batch INSERT"]);
        let ch_name = ch.map_or(String::new(), |f| f.phase.clone());
        check(
            format!(
                "fastest TimeFusion path ({tf_name}) >= ClickHouse INSERT of the same rows ({system}, {ch_name})"
            ),
            ratio(tf_fastest, ch),
            1.0,
        );
    }
    check(
        "multi-row INSERT >= PostgreSQL multi-row INSERT".into(),
        ratio(
            find("timefusion", "multi-row INSERT"),
            find("postgresql", "multi-row INSERT"),
        ),
        1.0,
    );
    if !targets.is_empty() {
        println!("targets (issue 6):");
        for t in &targets {
            println!(
                "  {}: {:.2}x {}",
                t.target,
                t.ratio,
                if t.met { "met" } else { "MISSED" }
            );
        }
    }
    println!(
        "{}",
        serde_json::json!({ "figures": figures, "targets": targets })
    );
}

fn read_figures(path: &Path) -> Vec<Figure> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .flat_map(|line| {
            serde_json::from_str::<Vec<Figure>>(line)
                .unwrap_or_else(|e| panic!("{}: not a JSON list of figures: {e}", path.display()))
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Some(path) = &args.report {
        return report(&read_figures(path));
    }
    println!(
        "ingest: {c} connections; multi-row INSERT {s} x {r} rows each; COPY / DoPut {b} x {br} rows each; {n} single-row INSERTs; seed {seed}; timestamps over the {m} minutes before {end}",
        c = args.connections,
        s = args.statements,
        r = args.rows_per_statement,
        b = args.batches,
        br = args.batch_rows,
        n = args.single,
        m = args.span_minutes,
        seed = args.seed,
        end = chrono::DateTime::from_timestamp_micros(args.end_micros).unwrap_or_default(),
    );
    println!("{HEADER}");
    let mut figures = Vec::new();
    let mut done = |figure: Figure| {
        print_figure(&figure);
        figures.push(figure);
    };
    if let Some(url) = &args.postgres {
        connect(url)
            .await
            .batch_execute(&common::postgres_ddl(TABLE))
            .await
            .expect("create PostgreSQL table");
        done(multi_row("postgresql", url, &args).await);
        done(copy("postgresql", url, &args).await);
        done(single_row("postgresql", url, &args).await);
    }
    if let Some(url) = &args.timefusion {
        done(multi_row("timefusion", url, &args).await);
        done(copy("timefusion", url, &args).await);
    }
    if let Some(url) = &args.flight {
        done(flight(url, &args).await);
    }
    if let Some(url) = &args.timefusion {
        done(single_row("timefusion", url, &args).await);
    }
    if let Some(dir) = &args.clickhouse_dir {
        write_clickhouse_files(dir, &args);
    }
    match &args.results {
        Some(path) => {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            writeln!(file, "{}", serde_json::to_string(&figures).expect("json"))
                .expect("write figures");
        }
        None => report(&figures),
    }
}
