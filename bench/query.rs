//! Query benchmark: loads the same generated `otel_logs_and_spans` rows into TimeFusion (Arrow
//! Flight DoPut), PostgreSQL (`COPY`) and a CSV file (for ClickHouse), then times the dashboard
//! queries of `bench/queries.sql` over the Postgres protocol, cold and warm.
//!
//! `query load …` writes the parameters every system's queries use (tenant, hour window, a trace
//! id) to a JSON file; `query run …` reads it. `bench/run_query.sh` runs the whole scenario,
//! `bench/baselines.py` the DuckDB and ClickHouse (chdb) side. See `bench/README.md`.

#[path = "common.rs"]
mod common;
#[path = "gen.rs"]
mod generator;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use common::{connect, flight_client, percentile, put};
use futures::{SinkExt, StreamExt};
use generator::Generator;
use serde::{Deserialize, Serialize};

const TABLE: &str = "otel_logs_and_spans";
const MICROS_PER_HOUR: i64 = 3_600_000_000;

#[derive(Parser, Debug)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate the rows and send them to the given systems.
    Load(LoadArgs),
    /// Time the queries of `bench/queries.sql` against one system over the Postgres protocol.
    Run(RunArgs),
}

#[derive(clap::Args, Debug)]
struct LoadArgs {
    /// Rows to generate.
    #[arg(long, default_value_t = 10_000_000)]
    rows: usize,
    /// Days the timestamps span, ending at `--end`.
    #[arg(long, default_value_t = 7)]
    days: i64,
    /// End of the data (RFC 3339); default: the start of the current hour.
    #[arg(long)]
    end: Option<String>,
    /// Generator seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Rows per Arrow batch / COPY statement.
    #[arg(long, default_value_t = 8192)]
    batch_rows: usize,
    /// Concurrent DoPut streams / COPY connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// TimeFusion Arrow Flight endpoint, e.g. http://127.0.0.1:50051.
    #[arg(long)]
    flight: Option<String>,
    /// PostgreSQL connection string; the table is (re)created there.
    #[arg(long)]
    postgres: Option<String>,
    /// Also write the rows as CSV (`COLUMNS` order, no header) to this file.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Where to write the query parameters (JSON).
    #[arg(long)]
    params: PathBuf,
    /// Instead of the bulk load: live telemetry for `--live-seconds`, this many rows per
    /// second with timestamps of the last second, over one DoPut stream to `--flight`.
    #[arg(long)]
    live_rate: Option<usize>,
    /// How long the live load runs.
    #[arg(long, default_value_t = 60)]
    live_seconds: u64,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Name of the system in the report (`timefusion`, `postgresql`); also selects the dialect.
    #[arg(long)]
    system: String,
    /// What the data looks like for this run, e.g. `buffer`, `delta`.
    #[arg(long)]
    phase: String,
    /// Postgres connection string.
    #[arg(long)]
    conn: String,
    /// The parameters file `load` wrote.
    #[arg(long)]
    params: PathBuf,
    /// The query file.
    #[arg(long, default_value = "bench/queries.sql")]
    queries: PathBuf,
    /// Warm runs per query after the first (cold) one.
    #[arg(long, default_value_t = 10)]
    runs: usize,
}

/// What every system's queries are filled with; written by `load`.
#[derive(Debug, Serialize, Deserialize)]
struct Params {
    rows: usize,
    seed: u64,
    start: String,
    end: String,
    table: String,
    project: String,
    hour_start: String,
    hour_end: String,
    trace_id: String,
    needle: String,
}

/// One query's timings on one system in one phase.
#[derive(Debug, Serialize)]
struct Timing {
    system: String,
    phase: String,
    query: String,
    rows: usize,
    cold_ms: f64,
    p50_ms: f64,
    p90_ms: f64,
}

fn timestamp_text(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .expect("timestamp in range")
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The rows of batch `i`: its own seed and its own slice of the time range, so batches can be
/// generated in parallel and in time order, and every system gets the same rows.
struct Plan {
    seed: u64,
    start: i64,
    end: i64,
    rows: usize,
    batch_rows: usize,
}

impl Plan {
    fn batches(&self) -> usize {
        self.rows.div_ceil(self.batch_rows)
    }

    fn rows_of(&self, i: usize) -> Vec<generator::Row> {
        let n = self.batch_rows.min(self.rows - i * self.batch_rows);
        let span = (self.end - self.start) as i128;
        let from = self.start + (span * (i * self.batch_rows) as i128 / self.rows as i128) as i64;
        let to = self.start + (span * (i * self.batch_rows + n) as i128 / self.rows as i128) as i64;
        let mut g = Generator::between(self.seed.wrapping_mul(1_000_003) + i as u64, from, to);
        g.rows(n)
    }

    /// Batches in order, generated `ahead` at a time on the blocking pool.
    fn stream<T: Send + 'static>(
        self: &std::sync::Arc<Self>,
        ahead: usize,
        render: fn(&[generator::Row]) -> T,
    ) -> impl futures::Stream<Item = T> + use<T> {
        let plan = self.clone();
        futures::stream::iter(0..plan.batches())
            .map(move |i| {
                let plan = plan.clone();
                async move {
                    tokio::task::spawn_blocking(move || render(&plan.rows_of(i)))
                        .await
                        .expect("generator")
                }
            })
            .buffered(ahead)
    }
}

/// The hour window in the middle of the data, and a trace of `project` inside it.
fn params(plan: &Plan, project: &str) -> Params {
    let middle = plan.start + (plan.end - plan.start) / 2;
    let hour_start = middle - middle.rem_euclid(MICROS_PER_HOUR);
    let hour_end = hour_start + MICROS_PER_HOUR;
    let first = ((hour_start - plan.start) as i128 * plan.rows as i128
        / (plan.end - plan.start) as i128) as usize
        / plan.batch_rows;
    let trace_id = (first..plan.batches())
        .flat_map(|i| plan.rows_of(i))
        .find_map(|row| {
            let (p, ts, trace) = row.key();
            (p == project && ts >= hour_start + MICROS_PER_HOUR / 2 && ts < hour_end)
                .then(|| trace.to_string())
        })
        .expect("a trace in the hour window");
    Params {
        rows: plan.rows,
        seed: plan.seed,
        start: timestamp_text(plan.start),
        end: timestamp_text(plan.end),
        table: TABLE.into(),
        project: project.into(),
        hour_start: timestamp_text(hour_start),
        hour_end: timestamp_text(hour_end),
        trace_id,
        needle: "resource42/items completed with 500".into(),
    }
}

fn rate_line(what: &str, rows: usize, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "load {what}: {rows} rows in {secs:.1} s = {:.0} rows/s (generation included)",
        rows as f64 / secs
    );
}

async fn load(args: LoadArgs) {
    let end = match &args.end {
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .expect("--end is RFC 3339")
            .timestamp_micros(),
        None => {
            let now = chrono::Utc::now().timestamp_micros();
            now - now.rem_euclid(MICROS_PER_HOUR)
        }
    };
    let plan = std::sync::Arc::new(Plan {
        seed: args.seed,
        start: end - args.days * 24 * MICROS_PER_HOUR,
        end,
        rows: args.rows,
        batch_rows: args.batch_rows,
    });
    if let (Some(rate), Some(url)) = (args.live_rate, &args.flight) {
        return live_load(url, rate, &args).await;
    }
    let params = params(&plan, "project-0");
    std::fs::write(
        &args.params,
        serde_json::to_string_pretty(&params).expect("json"),
    )
    .expect("write params");
    println!(
        "data: {} rows, {} .. {} UTC, seed {}; params in {}",
        plan.rows,
        params.start,
        params.end,
        plan.seed,
        args.params.display()
    );

    if let Some(url) = &args.flight {
        let started = Instant::now();
        let batches = plan.stream(4, generator::batch_of);
        let (tx, rx) = queue(args.connections * 2);
        let mut tasks = Vec::new();
        for _ in 0..args.connections {
            let mut client = flight_client(url).await;
            let rx = rx.consumer();
            tasks.push(tokio::spawn(async move {
                put(&mut client, TABLE, rx).await.sent
            }));
        }
        drop(rx);
        futures::pin_mut!(batches);
        while let Some(batch) = batches.next().await {
            tx.send(batch).await.expect("DoPut stream");
        }
        drop(tx);
        let mut sent = 0;
        for task in tasks {
            sent += task.await.expect("DoPut");
        }
        assert_eq!(sent, plan.batches(), "every batch sent and acknowledged");
        rate_line("TimeFusion (Flight DoPut)", plan.rows, started);
    }

    if let Some(url) = &args.postgres {
        connect(url)
            .await
            .batch_execute(&common::postgres_ddl(TABLE))
            .await
            .expect("create the PostgreSQL table");
        let started = Instant::now();
        let chunks = plan.stream(4, generator::csv_of);
        let (tx, rx) = queue(args.connections * 2);
        let sql = format!(
            "COPY {TABLE} ({}) FROM STDIN (FORMAT csv)",
            generator::COLUMNS.join(", ")
        );
        let mut tasks = Vec::new();
        for _ in 0..args.connections {
            let client = connect(url).await;
            let (rx, sql) = (rx.consumer(), sql.clone());
            tasks.push(tokio::spawn(async move {
                futures::pin_mut!(rx);
                while let Some(chunk) = rx.next().await {
                    let sink = client.copy_in::<_, bytes::Bytes>(&sql).await.expect("COPY");
                    futures::pin_mut!(sink);
                    sink.send(bytes::Bytes::from(chunk))
                        .await
                        .expect("COPY data");
                    sink.finish().await.expect("COPY finish");
                }
            }));
        }
        drop(rx);
        futures::pin_mut!(chunks);
        while let Some(chunk) = chunks.next().await {
            tx.send(chunk).await.expect("COPY worker");
        }
        drop(tx);
        for task in tasks {
            task.await.expect("COPY");
        }
        rate_line("PostgreSQL (COPY csv)", plan.rows, started);
        let started = Instant::now();
        connect(url)
            .await
            .batch_execute(&format!("VACUUM ANALYZE {TABLE}"))
            .await
            .expect("VACUUM ANALYZE");
        println!(
            "PostgreSQL VACUUM ANALYZE: {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }

    if let Some(path) = &args.csv {
        let started = Instant::now();
        let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create CSV"));
        let chunks = plan.stream(4, generator::csv_of);
        futures::pin_mut!(chunks);
        while let Some(chunk) = chunks.next().await {
            file.write_all(chunk.as_bytes()).expect("write CSV");
        }
        file.flush().expect("write CSV");
        rate_line(&format!("CSV file {}", path.display()), plan.rows, started);
    }
}

/// `rate` rows per second, stamped with the current time, in batches of `--batch-rows` sent
/// at even intervals over one DoPut stream, for `--live-seconds`.
async fn live_load(url: &str, rate: usize, args: &LoadArgs) {
    let mut client = flight_client(url).await;
    let batch_rows = args.batch_rows.min(rate.max(1));
    let period = Duration::from_secs_f64(batch_rows as f64 / rate as f64);
    let batches = args.live_seconds as usize * rate / batch_rows;
    let seed = args.seed;
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let sender = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        for i in 0..batches {
            ticks.tick().await;
            let now = chrono::Utc::now().timestamp_micros();
            let batch = tokio::task::spawn_blocking(move || {
                let mut g = Generator::between(seed + 1_000_000 + i as u64, now - 1_000_000, now);
                generator::batch_of(&g.rows(batch_rows))
            })
            .await
            .expect("generator");
            if tx.send(batch).await.is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let batches =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    let sent = put(&mut client, TABLE, batches).await.sent;
    sender.await.expect("live sender");
    rate_line(
        &format!("live TimeFusion (Flight DoPut, target {rate} rows/s)"),
        sent * batch_rows,
        started,
    );
}

/// A multi-consumer queue: each item goes to whichever consumer asks first. `consumer()`
/// makes one more consumer stream.
struct Queue<T>(std::sync::Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<T>>>);

fn queue<T: Send + 'static>(capacity: usize) -> (tokio::sync::mpsc::Sender<T>, Queue<T>) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity);
    (tx, Queue(std::sync::Arc::new(tokio::sync::Mutex::new(rx))))
}

impl<T: Send + 'static> Queue<T> {
    fn consumer(&self) -> impl futures::Stream<Item = T> + Send + 'static + use<T> {
        futures::stream::unfold(self.0.clone(), |rx| async move {
            let item = rx.lock().await.recv().await?;
            Some((item, rx))
        })
    }
}

/// One query of `bench/queries.sql`: its name and its SQL per dialect (`""` is the default).
struct Query {
    name: String,
    sql: Vec<(String, String)>,
}

impl Query {
    fn sql_for(&self, system: &str) -> &str {
        self.sql
            .iter()
            .find(|(s, _)| s == system)
            .or_else(|| self.sql.iter().find(|(s, _)| s.is_empty()))
            .map(|(_, sql)| sql.as_str())
            .expect("every query has a default SQL text")
    }
}

/// Parses `bench/queries.sql`; `bench/baselines.py` reads the same format.
fn parse_queries(text: &str) -> Vec<Query> {
    let mut queries: Vec<Query> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("-- name:") {
            queries.push(Query {
                name: name.trim().into(),
                sql: vec![(String::new(), String::new())],
            });
        } else if let Some(query) = queries.last_mut() {
            if let Some(system) = trimmed
                .strip_prefix("-- ")
                .and_then(|rest| rest.strip_suffix(':'))
                .filter(|s| !s.contains(' '))
            {
                query.sql.push((system.into(), String::new()));
            } else if !trimmed.starts_with("--") && !trimmed.is_empty() {
                let sql = &mut query.sql.last_mut().expect("a SQL text").1;
                sql.push_str(line);
                sql.push('\n');
            }
        }
    }
    queries
}

fn fill(sql: &str, p: &Params) -> String {
    sql.replace("{table}", &p.table)
        .replace("{project}", &p.project)
        .replace("{hour_start}", &p.hour_start)
        .replace("{hour_end}", &p.hour_end)
        .replace("{trace_id}", &p.trace_id)
        .replace("{needle}", &p.needle)
}

/// Rows a simple-query response carried.
fn rows_of(messages: &[tokio_postgres::SimpleQueryMessage]) -> usize {
    messages
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count()
}

async fn run(args: RunArgs) {
    let params: Params =
        serde_json::from_slice(&std::fs::read(&args.params).expect("params")).expect("params JSON");
    let queries = parse_queries(&std::fs::read_to_string(&args.queries).expect("queries"));
    let client = connect(&args.conn).await;
    client
        .batch_execute("SET TimeZone = 'UTC'")
        .await
        .expect("SET TimeZone");
    let mut timings = Vec::new();
    for query in &queries {
        let sql = fill(query.sql_for(&args.system), &params);
        let t = Instant::now();
        let first = client
            .simple_query(&sql)
            .await
            .unwrap_or_else(|e| panic!("{} on {}: {e}\n{sql}", query.name, args.system));
        let cold = t.elapsed();
        let mut warm = Vec::with_capacity(args.runs);
        for _ in 0..args.runs {
            let t = Instant::now();
            client.simple_query(&sql).await.expect("query");
            warm.push(t.elapsed());
        }
        warm.sort();
        timings.push(Timing {
            system: args.system.clone(),
            phase: args.phase.clone(),
            query: query.name.clone(),
            rows: rows_of(&first),
            cold_ms: cold.as_secs_f64() * 1000.0,
            p50_ms: percentile(&warm, 0.5),
            p90_ms: percentile(&warm, 0.9),
        });
    }
    println!(
        "{:<11} {:<8} {:<20} {:>6} {:>10} {:>10} {:>10}",
        "system", "phase", "query", "rows", "cold ms", "p50 ms", "p90 ms"
    );
    for t in &timings {
        println!(
            "{:<11} {:<8} {:<20} {:>6} {:>10.1} {:>10.1} {:>10.1}",
            t.system, t.phase, t.query, t.rows, t.cold_ms, t.p50_ms, t.p90_ms
        );
    }
    println!("{}", serde_json::to_string(&timings).expect("json"));
}

#[tokio::main]
async fn main() {
    match Args::parse().command {
        Command::Load(args) => load(args).await,
        Command::Run(args) => run(args).await,
    }
}
