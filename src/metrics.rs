//! The server's own figures, as Prometheus series (`prometheus-client`, the Prometheus
//! project's Rust client): one registry for the process, updated where the work happens and
//! rendered by the HTTP endpoint (`crate::http`, `/metrics`). Gauges of state (buffer, cache,
//! panics) are read at scrape time by the endpoint, not kept up to date on every write.
//!
//! A leaf like `error` and `panics`: any layer records into [`get`] without knowing who reads.
//! Series (all prefixed `timefusion_`) are listed in DELTA_CONFIG.md ("Health and metrics").
//! Tests: `tests/e2e/health.rs`.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label sets: a list of `(name, value)`.
pub type Labels = Vec<(&'static str, String)>;

/// Every series the server exports.
pub struct Metrics {
    registry: Registry,
    /// Rows and bytes (Arrow, as received) acknowledged, by table.
    pub ingested_rows: Family<Labels, Counter>,
    pub ingested_bytes: Family<Labels, Counter>,
    /// Bytes written to the WAL and the duration of each group's write + `fdatasync`.
    pub wal_bytes: Counter,
    pub wal_sync_seconds: Histogram,
    /// Flushes to Delta by outcome (`ok`, `error`), rows flushed, and each flush's duration.
    pub flushes: Family<Labels, Counter>,
    /// Data files a cacheable scan planned, by what the query condition cache did with them
    /// (`crate::sql::condition_cache`): `hit` (left out or read in part), `miss`.
    pub condition_cache_files: Family<Labels, Counter>,
    /// Lookups of queries' optimized plans by text (`crate::sql::plan_cache`; simple queries
    /// and extended `Execute`s without parameters), by outcome
    /// (`hit`, `miss`); a query that can never be kept misses on every run.
    pub plan_cache_lookups: Family<Labels, Counter>,
    /// Runs of a kept plan by what its physical plan was: `reused` (a kept one over a new
    /// buffer snapshot) or `made` (none kept yet, or a Delta commit since the kept one).
    pub plan_cache_physical: Family<Labels, Counter>,
    /// Simple queries whose text led straight to a kept plan (`plan_cache::Shortcut`),
    /// neither parsed nor rewritten.
    pub plan_cache_shortcuts: Counter,
    /// Small writes stored in a WAL record they shared with other writes
    /// (`engine::ingest::combine`).
    pub combined_writes: Counter,
    /// Rows that could never be flushed, moved to `<data>/quarantine`: replayed from the WAL
    /// out of range, or in a partition that failed `TIMEFUSION_FLUSH_PARTITION_ATTEMPTS` times.
    pub quarantined_rows: Counter,
    /// Partitions a flush could not write (each is retried at the next flush), by table.
    pub flush_partition_failures: Family<Labels, Counter>,
    /// Background merges of small files by table and outcome (`ok`, `error`), and the files
    /// they merged away.
    pub merges: Family<Labels, Counter>,
    pub merged_files: Family<Labels, Counter>,
    pub flushed_rows: Counter,
    pub flush_seconds: Histogram,
    /// Rows changed by `DELETE` / `UPDATE`, by operation and path (`buffer`: logged as a
    /// change of buffered rows; `delta`: rewritten in Delta).
    pub mutated_rows: Family<Labels, Counter>,
    /// The Delta version each table's readers see, by table.
    pub delta_version: Family<Labels, Gauge>,
    /// Statements answered, by protocol (`simple`, `extended`, `flight`) and outcome (`ok`,
    /// `error`), and their durations by protocol (from the message to the last row sent;
    /// Flight SQL from its `DoGet` to the end of its stream).
    pub statements: Family<Labels, Counter>,
    pub statement_seconds: Family<Labels, Histogram>,
    /// Open Postgres connections.
    pub connections: Gauge,
    /// Statements holding a slot ([`crate::sql::slots`]).
    pub statements_running: Gauge,
    /// Read at scrape time ([`Metrics::observe`]).
    buffer_bytes: Gauge,
    buffer_budget_bytes: Gauge,
    buffer_rows: Gauge,
    buffer_oldest_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// [`crate::memory::Memory::usage`], by consumer.
    memory_bytes: Family<Labels, Gauge>,
    memory_limit_bytes: Family<Labels, Gauge>,
    memory_waits: Family<Labels, Counter>,
    memory_wait_seconds: Family<Labels, Counter<f64, std::sync::atomic::AtomicU64>>,
    cache_hits: Counter,
    cache_misses: Counter,
    store_gets: Counter,
    read_bytes: Family<Labels, Counter>,
    panics: Counter,
}

/// State the endpoint reads at each scrape.
#[derive(Debug, Default, Clone, Copy)]
pub struct Observed {
    pub buffer_bytes: u64,
    pub buffer_budget_bytes: u64,
    pub buffer_rows: u64,
    /// Age of the oldest row waiting to flush (zero when none waits).
    pub buffer_oldest: Duration,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub store_gets: u64,
    /// Bytes of cacheable reads answered by the cache, and fetched from the store.
    pub bytes_from_cache: u64,
    pub bytes_from_store: u64,
    pub panics: u64,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

fn latency_histogram() -> Histogram {
    // 0.1 ms … ~52 s, doubling.
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("timefusion");
        let metrics = Metrics {
            ingested_rows: Family::default(),
            ingested_bytes: Family::default(),
            wal_bytes: Counter::default(),
            wal_sync_seconds: latency_histogram(),
            flushes: Family::default(),
            condition_cache_files: Family::default(),
            plan_cache_lookups: Family::default(),
            plan_cache_physical: Family::default(),
            plan_cache_shortcuts: Counter::default(),
            combined_writes: Counter::default(),
            quarantined_rows: Counter::default(),
            flush_partition_failures: Family::default(),
            merges: Family::default(),
            merged_files: Family::default(),
            flushed_rows: Counter::default(),
            flush_seconds: latency_histogram(),
            mutated_rows: Family::default(),
            delta_version: Family::default(),
            statements: Family::default(),
            statement_seconds: Family::new_with_constructor(latency_histogram),
            connections: Gauge::default(),
            statements_running: Gauge::default(),
            buffer_bytes: Gauge::default(),
            buffer_budget_bytes: Gauge::default(),
            buffer_rows: Gauge::default(),
            buffer_oldest_seconds: Gauge::default(),
            memory_bytes: Family::default(),
            memory_limit_bytes: Family::default(),
            memory_waits: Family::default(),
            memory_wait_seconds: Family::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            store_gets: Counter::default(),
            read_bytes: Family::default(),
            panics: Counter::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "ingested_rows",
            "Rows acknowledged",
            metrics.ingested_rows.clone(),
        );
        r.register(
            "ingested_bytes",
            "Arrow bytes acknowledged",
            metrics.ingested_bytes.clone(),
        );
        r.register(
            "wal_written_bytes",
            "Bytes written to the WAL",
            metrics.wal_bytes.clone(),
        );
        r.register(
            "wal_sync_seconds",
            "Write and fdatasync of one WAL group",
            metrics.wal_sync_seconds.clone(),
        );
        r.register(
            "flushes",
            "Flushes to Delta by outcome",
            metrics.flushes.clone(),
        );
        r.register(
            "condition_cache_files",
            "Data files of cacheable scans by what the query condition cache did (hit, miss)",
            metrics.condition_cache_files.clone(),
        );
        r.register(
            "plan_cache_lookups",
            "Lookups of optimized plans of repeated queries by outcome (hit, miss)",
            metrics.plan_cache_lookups.clone(),
        );
        r.register(
            "plan_cache_physical",
            "Runs of kept plans by what their physical plan was (reused, made)",
            metrics.plan_cache_physical.clone(),
        );
        r.register(
            "plan_cache_shortcuts",
            "Simple queries whose text led straight to a kept plan, neither parsed nor rewritten",
            metrics.plan_cache_shortcuts.clone(),
        );
        r.register(
            "ingest_combined_writes",
            "Small writes stored in a WAL record they shared with other writes",
            metrics.combined_writes.clone(),
        );
        r.register(
            "quarantined_rows",
            "Rows that can never be flushed, moved to <data>/quarantine",
            metrics.quarantined_rows.clone(),
        );
        r.register(
            "flush_partition_failures",
            "Partitions a flush could not write, retried at the next flush",
            metrics.flush_partition_failures.clone(),
        );
        r.register(
            "merges",
            "Background merges of a partition's small files, by table and outcome",
            metrics.merges.clone(),
        );
        r.register(
            "merged_files",
            "Parquet files background merges replaced, by table",
            metrics.merged_files.clone(),
        );
        r.register(
            "flushed_rows",
            "Rows flushed to Delta",
            metrics.flushed_rows.clone(),
        );
        r.register(
            "flush_seconds",
            "Duration of one flush",
            metrics.flush_seconds.clone(),
        );
        r.register(
            "mutated_rows",
            "Rows changed by DELETE and UPDATE, by operation and path (buffer: a WAL change record; delta: a Delta rewrite)",
            metrics.mutated_rows.clone(),
        );
        r.register(
            "delta_version",
            "Delta version readers see, by table",
            metrics.delta_version.clone(),
        );
        r.register(
            "statements",
            "Statements answered, by protocol and outcome",
            metrics.statements.clone(),
        );
        r.register(
            "statement_seconds",
            "Statement durations, by protocol and outcome",
            metrics.statement_seconds.clone(),
        );
        r.register(
            "connections",
            "Open Postgres connections",
            metrics.connections.clone(),
        );
        r.register(
            "statements_running",
            "Statements holding a slot (TIMEFUSION_MAX_CONCURRENT_STATEMENTS)",
            metrics.statements_running.clone(),
        );
        r.register(
            "buffer_bytes",
            "Bytes held in the buffer",
            metrics.buffer_bytes.clone(),
        );
        r.register(
            "buffer_budget_bytes",
            "The buffer's budget (TIMEFUSION_BUFFER_MAX_MEMORY_MB)",
            metrics.buffer_budget_bytes.clone(),
        );
        r.register(
            "buffer_rows",
            "Rows waiting to flush",
            metrics.buffer_rows.clone(),
        );
        r.register(
            "buffer_oldest_row_age_seconds",
            "Age of the oldest row waiting to flush",
            metrics.buffer_oldest_seconds.clone(),
        );
        r.register(
            "memory_bytes",
            "Memory held, by consumer (process: the resident set; other: what no consumer accounts for)",
            metrics.memory_bytes.clone(),
        );
        r.register(
            "memory_limit_bytes",
            "Each consumer's bound (process: TIMEFUSION_MEMORY_LIMIT_MB; buffer: the limit writers are admitted against now)",
            metrics.memory_limit_bytes.clone(),
        );
        r.register(
            "memory_waits",
            "Writers that waited for a consumer to free memory (backpressure)",
            metrics.memory_waits.clone(),
        );
        r.register(
            "memory_wait_seconds",
            "Time writers spent waiting for a consumer to free memory",
            metrics.memory_wait_seconds.clone(),
        );
        r.register(
            "cache_hits",
            "Object reads served by the cache",
            metrics.cache_hits.clone(),
        );
        r.register(
            "cache_misses",
            "Cacheable object reads that went to the store",
            metrics.cache_misses.clone(),
        );
        r.register(
            "read_bytes",
            "Bytes of cacheable object reads, by source (cache, store)",
            metrics.read_bytes.clone(),
        );
        r.register(
            "store_gets",
            "GET requests sent to the object store",
            metrics.store_gets.clone(),
        );
        r.register(
            "panics_caught",
            "Panics contained (see the log)",
            metrics.panics.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Records one statement of `protocol` that took `elapsed`.
    pub fn statement(&self, protocol: &'static str, ok: bool, elapsed: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.statements
            .get_or_create(&vec![
                ("protocol", protocol.into()),
                ("outcome", outcome.into()),
            ])
            .inc();
        self.statement_seconds
            .get_or_create(&vec![
                ("protocol", protocol.into()),
                ("outcome", outcome.into()),
            ])
            .observe(elapsed.as_secs_f64());
    }

    /// Takes in the state read at a scrape.
    pub fn observe(&self, observed: &Observed) {
        let gauge = |g: &Gauge, v: u64| g.set(i64::try_from(v).unwrap_or(i64::MAX));
        gauge(&self.buffer_bytes, observed.buffer_bytes);
        gauge(&self.buffer_budget_bytes, observed.buffer_budget_bytes);
        gauge(&self.buffer_rows, observed.buffer_rows);
        self.buffer_oldest_seconds
            .set(observed.buffer_oldest.as_secs_f64());
        // Counters kept elsewhere: move each up to the value read.
        let catch_up = |c: &Counter, v: u64| c.inc_by(v.saturating_sub(c.get()));
        catch_up(&self.cache_hits, observed.cache_hits);
        catch_up(&self.cache_misses, observed.cache_misses);
        catch_up(&self.store_gets, observed.store_gets);
        for (source, bytes) in [
            ("cache", observed.bytes_from_cache),
            ("store", observed.bytes_from_store),
        ] {
            catch_up(
                &self
                    .read_bytes
                    .get_or_create(&vec![("source", source.into())]),
                bytes,
            );
        }
        catch_up(&self.panics, observed.panics);
    }

    /// Takes in the process's memory, read at a scrape.
    pub fn observe_memory(&self, usage: &[crate::memory::Usage]) {
        let gauge = |g: &Gauge, v: u64| g.set(i64::try_from(v).unwrap_or(i64::MAX));
        for u in usage {
            let labels = vec![("consumer", u.consumer.into())];
            gauge(&self.memory_bytes.get_or_create(&labels), u.used_bytes);
            if let Some(limit) = u.limit_bytes {
                gauge(&self.memory_limit_bytes.get_or_create(&labels), limit);
            }
            if u.waits > 0 {
                let waits = self.memory_waits.get_or_create(&labels);
                waits.inc_by(u.waits.saturating_sub(waits.get()));
                let seconds = self.memory_wait_seconds.get_or_create(&labels);
                seconds.inc_by((u.wait_seconds - seconds.get()).max(0.0));
            }
        }
    }

    /// Every series in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// Records a statement that ended: its count and duration in these metrics, and one
/// log line when it took at least `log_min_duration` (PostgreSQL's
/// `log_min_duration_statement`), with its text cut to 1,000 characters.
pub fn finished(
    protocol: &'static str,
    ok: bool,
    started: std::time::Instant,
    text: &str,
    log_min_duration: Option<std::time::Duration>,
) {
    let elapsed = started.elapsed();
    get().statement(protocol, ok, elapsed);
    if log_min_duration.is_some_and(|min| elapsed >= min) {
        let text = text.trim();
        let cut = text.char_indices().nth(1000).map_or(text.len(), |(i, _)| i);
        let more = if cut < text.len() { " …" } else { "" };
        tracing::info!(
            target: "timefusion::slow",
            duration_ms = elapsed.as_millis() as u64,
            protocol,
            ok,
            "statement: {}{more}",
            &text[..cut]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_render_with_prefix_labels_and_observed_state() {
        let metrics = Metrics::new();
        metrics
            .ingested_rows
            .get_or_create(&vec![("table", "t".into())])
            .inc_by(5);
        metrics.statement("simple", true, Duration::from_millis(3));
        metrics.observe(&Observed {
            buffer_rows: 7,
            cache_hits: 2,
            ..Observed::default()
        });
        metrics.observe(&Observed {
            buffer_rows: 7,
            cache_hits: 3,
            bytes_from_store: 4096,
            ..Observed::default()
        });
        let text = metrics.render();
        for line in [
            "timefusion_ingested_rows_total{table=\"t\"} 5",
            "timefusion_statements_total{protocol=\"simple\",outcome=\"ok\"} 1",
            "timefusion_statement_seconds_count{protocol=\"simple\",outcome=\"ok\"} 1",
            "timefusion_buffer_rows 7",
            "timefusion_read_bytes_total{source=\"store\"} 4096",
            "timefusion_read_bytes_total{source=\"cache\"} 0",
            "timefusion_cache_hits_total 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
