//! Fuzzing, as tests: every decoder of outside input gets mutated inputs grown from a corpus
//! (`tests/fuzz/<target>/`, real inputs) for a time budget, and must never panic, overflow
//! its stack or hang. `cargo test fuzz::` runs each target for `TIMEFUSION_FUZZ_SECS` (default
//! 2; `.ci/run` gives each 20), from the seed `TIMEFUSION_TEST_SEED` or a random one, printed
//! with the number of inputs run on stderr (past the harness's capture, so CI's log has it).
//! A failure prints the seed and the input, which becomes a regression case in the target's
//! corpus.
//!
//! Targets: the statement lexer (`sql::statement_text`), SQL → plan through DataFusion's
//! planner with TimeFusion's functions, the Postgres frontend message decoder (pgwire), COPY
//! text / CSV / binary parsing, WAL record framing with the payload decoding behind it,
//! Flight DoPut's Arrow IPC decoding into a batch coerced to the table's schema, and OTLP
//! exports and Prometheus remote writes decoded and converted to rows (`otlp`). A panic
//! inside planning is contained by the server (`panics`), so the SQL target counts those and
//! fails only on what would take the process down.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The corpus of `target`: every file under `tests/fuzz/<target>/`.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read(f).expect("corpus file"))
        .collect()
}

/// A mutation of `input`: byte flips, insertions, deletions, a repeated slice (deep nesting,
/// long lists), or a splice with another corpus entry.
fn mutate(rng: &mut StdRng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let at = rng.random_range(0..=out.len());
        match rng.random_range(0..6) {
            0 if !out.is_empty() => {
                let i = rng.random_range(0..out.len());
                out[i] ^= 1 << rng.random_range(0..8);
            }
            1 => out.insert(at, rng.random()),
            2 if at < out.len() => {
                let end = rng.random_range(at..=out.len().min(at + 16));
                out.drain(at..end);
            }
            3 if at < out.len() => {
                let end = rng.random_range(at..=out.len().min(at + 12));
                let piece = out[at..end].to_vec();
                for _ in 0..rng.random_range(1..64) {
                    out.splice(at..at, piece.iter().copied());
                }
            }
            4 => {
                let other = &corpus[rng.random_range(0..corpus.len())];
                let from = rng.random_range(0..=other.len());
                out.splice(at..at, other[from..].iter().copied());
            }
            _ => out.truncate(at),
        }
    }
    out
}

/// A line of the fuzz summary on the process's stderr: `eprintln!` output is captured by the
/// test harness unless `--nocapture`, and CI's log should show what each target ran.
macro_rules! report {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

std::thread_local! {
    /// Whether this thread runs fuzz inputs: its panics are then not printed, only kept.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The report of this thread's last quiet panic (message and location).
    static LAST_PANIC: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Makes the calling thread's panics quiet. The panics a target contains (each an error in
/// the server) would otherwise print a report each, hundreds of megabytes of CI log; a finding
/// is reported by [`fuzz`] itself, with the report kept here.
fn quiet_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.get() {
                LAST_PANIC.set(info.to_string());
            } else {
                default(info);
            }
        }));
    });
    QUIET.set(true);
}

/// Runs `check` on the corpus and then on mutations of it until the budget is spent.
/// Returns the inputs run.
fn fuzz(target: &str, mut check: impl FnMut(&[u8])) -> usize {
    quiet_panics();
    let budget = std::env::var("TIMEFUSION_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(2), Duration::from_secs_f64);
    let seed = std::env::var("TIMEFUSION_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let corpus = corpus(target);
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut runs = 0;
    // For finding an input that hangs: each one is written here before it runs.
    let last = std::env::var_os("TIMEFUSION_FUZZ_LAST");
    let mut run = |input: &[u8]| {
        if let Some(path) = &last {
            std::fs::write(path, input).expect("TIMEFUSION_FUZZ_LAST");
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(input)));
        if outcome.is_err() {
            QUIET.set(false);
            panic!(
                "fuzz {target} failed (TIMEFUSION_TEST_SEED={seed}): {} on input {:?}",
                LAST_PANIC.take(),
                String::from_utf8_lossy(input)
            );
        }
    };
    for input in &corpus {
        run(input);
        runs += 1;
    }
    while started.elapsed() < budget {
        let pick = rng.random_range(0..corpus.len());
        let input = mutate(&mut rng, &corpus[pick], &corpus);
        run(&input);
        runs += 1;
    }
    report!(
        "fuzz {target}: {runs} inputs in {:?} (TIMEFUSION_TEST_SEED={seed})",
        started.elapsed()
    );
    runs
}

#[test]
fn statement_text() {
    use crate::sql::statement_text::{check_depth, rewrite, statements};
    let runs = fuzz("statement_text", |input| {
        let text = String::from_utf8_lossy(input);
        let _ = check_depth(&text, 1000);
        let _ = rewrite(&text);
        // Statements come out in order, as pieces of the text.
        let mut from = text.as_ptr() as usize;
        for piece in statements(&text) {
            let at = piece.as_ptr() as usize;
            assert!(at >= from && at + piece.len() <= text.as_ptr() as usize + text.len());
            from = at + piece.len();
        }
    });
    assert!(runs > 0);
}

/// Each input is planned on its own thread with the server's statement stack
/// (`TIMEFUSION_STACK_MB`'s default), so a stack the server would not overflow does not fail
/// here either. A panic there is counted (the server answers it with XX000); an input whose
/// planning does not finish in 10 s is a finding (in the server it would hold a worker
/// thread), kept in `$TMPDIR/timefusion-fuzz-sql_plan-stuck.sql`; it ends the target, whose
/// thread is left to the process's exit. (One was found: an unfinished 40-part dotted name,
/// now refused by `check_depth`; corpus `dotted_name.sql`.)
#[test]
fn sql_plan() {
    use std::sync::Arc;
    // TimeFusion's functions and its table (empty: planning is what is fuzzed).
    let mut context = datafusion::prelude::SessionContext::new();
    crate::sql::functions::register(&mut context).expect("functions");
    let catalog = crate::engine::schema::Catalog::load(None).expect("built-in schemas");
    for table in catalog.tables() {
        let schema = table.schema.clone();
        let empty = datafusion::datasource::MemTable::try_new(schema, vec![vec![]]);
        context
            .register_table(table.name.as_str(), Arc::new(empty.expect("table")))
            .expect("register");
    }
    let context = Arc::new(context);
    let mut contained = 0usize;
    // The first input whose planning panicked, and the panic.
    let mut first_panic: Option<(String, String)> = None;
    let mut stuck: Option<String> = None;
    // Inputs refused with XX000 (an error no class was found for), and the first few.
    let mut internal = 0usize;
    let mut internal_examples: Vec<(String, String)> = Vec::new();
    let runs = fuzz("sql_plan", |input| {
        let text = String::from_utf8_lossy(input).into_owned();
        if stuck.is_some() || crate::sql::statement_text::check_depth(&text, 1000).is_err() {
            return;
        }
        let (done, finished) = std::sync::mpsc::channel();
        let (context, sql) = (context.clone(), text.clone());
        std::thread::Builder::new()
            .stack_size(16 << 20)
            .spawn(move || {
                quiet_panics();
                let planned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    futures::executor::block_on(context.state().create_logical_plan(&sql))
                }));
                let outcome = match planned {
                    Err(_) => Err(LAST_PANIC.take()),
                    Ok(Err(e)) => {
                        let (state, message) = crate::sql::error::sqlstate_of(&e);
                        Ok((state == crate::error::SqlState::INTERNAL_ERROR).then_some(message))
                    }
                    Ok(Ok(_)) => Ok(None),
                };
                let _ = done.send(outcome);
            })
            .expect("thread");
        match finished.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(message))) => {
                internal += 1;
                if internal_examples.len() < 3 {
                    internal_examples.push((text, message));
                }
            }
            Ok(Err(panic)) => {
                contained += 1;
                first_panic.get_or_insert((text, panic));
            }
            Err(_) => stuck = Some(text),
        }
    });
    report!("fuzz sql_plan: {contained} panics contained (each an XX000 in the server)");
    report!("fuzz sql_plan: {internal} of {runs} inputs refused with XX000 at planning");
    for (text, message) in &internal_examples {
        report!("fuzz sql_plan: XX000 {message:?} on {text:?}");
    }
    if let Some((text, panic)) = first_panic {
        report!("fuzz sql_plan: the first was {panic} on {text:?}");
    }
    if let Some(text) = stuck {
        // Kept where the next run of the suite does not erase it (test output is captured).
        let kept = std::env::temp_dir().join("timefusion-fuzz-sql_plan-stuck.sql");
        let _ = std::fs::write(&kept, &text);
        report!(
            "fuzz sql_plan: FINDING: planning did not finish in 10 s ({}): {text:?}",
            kept.display()
        );
    }
    assert!(runs > 0);
}

/// pgwire 0.41's decoder panics on some malformed frames (`split_to out of bounds` in
/// `bytes`, found here). In the server that panic ends the one connection's task, which tokio
/// contains: `tests/e2e/limits.rs::garbage_on_the_wire_closes_only_its_connection` holds that.
/// Here such panics are counted; a hang or a stack overflow still fails the target.
#[test]
fn pgwire_messages() {
    use bytes::BytesMut;
    use pgwire::messages::{DecodeContext, PgWireFrontendMessage};
    let mut contained = 0usize;
    let runs = fuzz("pgwire_messages", |input| {
        for startup in [true, false] {
            let mut context = DecodeContext::default();
            context.awaiting_frontend_ssl = startup;
            context.awaiting_frontend_startup = startup;
            let mut buffer = BytesMut::from(input);
            // Decode messages until the buffer runs out or one is refused.
            let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                while let Ok(Some(_)) = PgWireFrontendMessage::decode(&mut buffer, &context) {
                    context.awaiting_frontend_ssl = false;
                    context.awaiting_frontend_startup = false;
                }
            }));
            contained += usize::from(decoded.is_err());
        }
    });
    report!("fuzz pgwire_messages: {contained} decoder panics (each ends one connection)");
    assert!(runs > 0);
}

fn copy(target: &str, options: &str) -> usize {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let catalog = crate::engine::schema::Catalog::load(None).expect("built-in schemas");
    let sql = format!(
        "COPY otel_logs_and_spans (project_id, timestamp, id, name, duration, hashes, body) \
         FROM STDIN {options}"
    );
    let statement = Parser::parse_sql(&PostgreSqlDialect {}, &sql)
        .expect("parse")
        .remove(0);
    fuzz(target, |input| {
        let mut copy = crate::pgwire::copy::CopyIn::from_statement(&statement, &catalog)
            .expect("a COPY")
            .expect("valid options");
        // In two pieces, as a client's CopyData messages cut rows anywhere.
        let (first, second) = input.split_at(input.len() / 3);
        if copy.push(first).is_ok() && copy.push(second).is_ok() {
            let _ = copy.finish();
        }
    })
}

#[test]
fn copy_text() {
    assert!(copy("copy_text", "") > 0);
}

#[test]
fn copy_csv() {
    assert!(copy("copy_csv", "WITH (FORMAT csv)") > 0);
}

#[test]
fn copy_binary() {
    assert!(copy("copy_binary", "WITH (FORMAT binary)") > 0);
}

#[test]
fn wal_records() {
    use crate::engine::wal::{decode_batch, parse_record};
    let runs = fuzz("wal_records", |input| {
        let mut rest = input;
        while let Ok(crate::engine::wal::Record {
            payload, len: used, ..
        }) = parse_record(rest)
        {
            let _ = decode_batch(payload);
            rest = &rest[used..];
        }
    });
    assert!(runs > 0);
}

#[test]
fn flight_put() {
    use arrow::ipc;
    use arrow_flight::FlightData;
    let catalog = crate::engine::schema::Catalog::load(None).expect("built-in schemas");
    let table = catalog.get("otel_logs_and_spans").expect("the table");
    let contained = crate::panics::caught();
    let runs = fuzz("flight_put", |input| {
        // An Arrow IPC stream: per message a continuation marker, the header's length, the
        // header, then the body the header declares. Each becomes one DoPut message.
        let mut decoder = crate::flight::put::PutDecoder::new(64 << 20);
        let mut rest = input;
        while rest.len() >= 8 {
            let length = i32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
            let Ok(length) = usize::try_from(length) else {
                break;
            };
            let Some(header) = rest.get(8..8 + length) else {
                break;
            };
            let body_length = ipc::root_as_message(header)
                .map_or(0, |m| usize::try_from(m.bodyLength()).unwrap_or(0));
            let body = &rest[8 + length..(8 + length + body_length).min(rest.len())];
            let data = FlightData {
                data_header: header.to_vec().into(),
                data_body: body.to_vec().into(),
                ..Default::default()
            };
            if let Ok(Some(batch)) = decoder.decode(data) {
                let _ = crate::engine::ingest::coerce(table, &batch);
            }
            rest = &rest[8 + length + body.len()..];
        }
    });
    report!(
        "fuzz flight_put: {} arrow-ipc decoder panics contained (each an INVALID_ARGUMENT)",
        crate::panics::caught() - contained
    );
    assert!(runs > 0);
}

#[test]
fn otlp() {
    use crate::engine::ingest::coerce;
    use crate::otlp::convert::{LOGS_AND_SPANS, LogsAndSpans};
    use crate::otlp::metrics::{METRICS, Metrics};
    use prost::Message;
    let catalog = crate::engine::schema::Catalog::load(None).expect("built-in schemas");
    let spans_table = catalog.get(LOGS_AND_SPANS).expect("otel_logs_and_spans");
    let metrics_table = catalog.get(METRICS).expect("otel_metrics");
    let logs_and_spans = LogsAndSpans::new(spans_table.clone()).expect("mapping");
    let metrics = Metrics::new(metrics_table.clone()).expect("mapping");
    // The first byte says what the protobuf after it is: 0 logs, 1 traces, 2 metrics (OTLP
    // exports, from the OpenTelemetry Python SDK's encoders), 3 a remote-write request (as
    // Prometheus sent it, decompressed).
    let runs = fuzz("otlp", |input| {
        let Some((&kind, body)) = input.split_first() else {
            return;
        };
        let converted = match kind % 4 {
            0 => opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest::decode(body)
                .ok()
                .map(|r| (spans_table, logs_and_spans.logs(&r, Some("h"), 0))),
            1 => opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(body)
                .ok()
                .map(|r| (spans_table, logs_and_spans.spans(&r, Some("h")))),
            2 => opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest::decode(body)
                .ok()
                .map(|r| (metrics_table, metrics.points(&r, Some("h")))),
            _ => crate::otlp::remote_write::WriteRequest::decode(body)
                .ok()
                .map(|r| (metrics_table, metrics.samples(&r, Some("h")))),
        };
        if let Some((table, Ok(batch))) = converted {
            let _ = coerce(table, &batch);
        }
    });
    assert!(runs > 0);
}
