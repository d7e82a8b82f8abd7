//! Crash recovery: insert from several connections (Arrow Flight, literal INSERTs, and
//! pipelines of parameterized INSERTs answered at one Sync) while one more connection deletes
//! and updates acknowledged rows, `kill -9` the server at random points (several rounds,
//! flushes running), restart, and check that every acknowledged row is there exactly once
//! unless an acknowledged `DELETE` removed it, that no deleted row comes back in any later
//! round, that every acknowledged `UPDATE` holds, and that no row at all is duplicated. The kill instants come from a
//! seeded RNG whose seed the test prints; `TIMEFUSION_TEST_SEED=<seed>` replays them.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::*;
use arrow::array::{RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::{FlightClient, FlightDescriptor};
use futures::TryStreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

async fn flight_client(port: u16) -> FlightClient {
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect gRPC");
    FlightClient::new(channel)
}

/// DoPut of one batch; `Some(rows)` once acknowledged, `None` if the call failed.
async fn flight_put(
    client: &mut FlightClient,
    project: &str,
    ids: &[String],
    when: i64,
) -> Option<usize> {
    let schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("project_id", DataType::Utf8, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("id", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            std::sync::Arc::new(StringArray::from_iter_values(ids.iter().map(|_| project))),
            std::sync::Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    (0..ids.len() as i64).map(|i| when + i),
                )
                .with_timezone("UTC"),
            ),
            std::sync::Arc::new(StringArray::from_iter_values(ids)),
        ],
    )
    .expect("batch");
    let data = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec![TABLE.to_string()])))
        .build(futures::stream::iter([Ok(batch)]));
    let acks: Vec<_> = client.do_put(data).await.ok()?.try_collect().await.ok()?;
    let [ack] = acks.as_slice() else { return None };
    std::str::from_utf8(&ack.app_metadata).ok()?.parse().ok()
}

/// A pipeline of one parameterized INSERT per id, answered at one Sync; `Some(rows)` once
/// acknowledged (the Sync's ReadyForQuery), `None` if the connection died first.
async fn pipeline_put(raw: &mut Raw, project: &str, ids: &[String], when: i64) -> Option<usize> {
    for (i, id) in ids.iter().enumerate() {
        let at = chrono::DateTime::from_timestamp_micros(when + i as i64)
            .expect("time")
            .to_rfc3339();
        raw.execute("ins", &[Some(project), Some(&at), Some(id)]);
    }
    raw.sync();
    let replies = raw.round_trip().await.ok()?;
    let done = replies
        .iter()
        .filter(|r| **r == Reply::Complete("INSERT 0 1".into()))
        .count();
    assert_eq!(
        replies.last(),
        Some(&Reply::Ready('I')),
        "a pipeline was refused: {replies:?}"
    );
    Some(done)
}

/// What the mutating connection had acknowledged: ids deleted, ids updated, and ids whose
/// mutation was in flight when the server died (either outcome is right for those).
#[derive(Default)]
struct Mutated {
    deleted: HashSet<String>,
    updated: HashSet<String>,
    uncertain: HashSet<String>,
}

/// Deletes writer 1's acknowledged batches with an even number and renames writer 2's with an
/// odd one, each batch once it is acknowledged, until the server dies.
async fn mutate(
    port: u16,
    round: usize,
    acked: std::sync::Arc<parking_lot::Mutex<HashSet<String>>>,
    mutated: std::sync::Arc<parking_lot::Mutex<Mutated>>,
) {
    let Ok(client) = tokio_postgres::connect(&pg_config(port), tokio_postgres::NoTls).await else {
        return;
    };
    let (client, connection) = client;
    tokio::spawn(connection);
    for s in 0.. {
        let (writer, project) = if s % 2 == 0 { (1, "p1") } else { (2, "p2") };
        let prefix = format!("r{round}-w{writer}-s{s}");
        let batch = ids(&prefix, 10);
        // Wait until the writer's batch is acknowledged (or the server is gone).
        loop {
            if acked.lock().contains(&batch[9]) {
                break;
            }
            if client.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let sql = if s % 2 == 0 {
            format!("DELETE FROM {TABLE} WHERE project_id = '{project}' AND id LIKE '{prefix}-%'")
        } else {
            format!(
                "UPDATE {TABLE} SET name = 'updated' WHERE project_id = '{project}' AND id LIKE '{prefix}-%'"
            )
        };
        mutated.lock().uncertain.extend(batch.iter().cloned());
        match client.execute(&sql, &[]).await {
            Ok(10) => {
                let mut mutated = mutated.lock();
                for id in &batch {
                    mutated.uncertain.remove(id);
                }
                if s % 2 == 0 {
                    mutated.deleted.extend(batch);
                } else {
                    mutated.updated.extend(batch);
                }
            }
            Ok(n) => panic!("{sql} changed {n} rows, not 10"),
            Err(_) => return, // the server died under us: not acknowledged
        }
    }
}

/// The single-row writers of the kill test: more than the server writes alone at once.
const SINGLE_ROW_WRITERS: std::ops::Range<usize> = 4..20;

/// The seed of the kill instants: `TIMEFUSION_TEST_SEED` to replay a run, else a fresh one. It
/// fixes when each round's kill comes, not how far the writers got by then.
fn seed() -> u64 {
    match std::env::var("TIMEFUSION_TEST_SEED") {
        Ok(seed) => seed
            .parse()
            .unwrap_or_else(|e| panic!("TIMEFUSION_TEST_SEED={seed:?}: not a u64: {e}")),
        Err(_) => rand::random(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_no_acknowledged_row_and_duplicates_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("TIMEFUSION_FLUSH_INTERVAL_SECS", "1"),
        ("TIMEFUSION_WAL_SEGMENT_MB", "1"),
        // The pipeline writer's raw connection logs in without a password.
        ("PGWIRE_PASSWORD", ""),
        ("PGWIRE_INSECURE_NO_PASSWORD", "true"),
    ];
    let acked = shared(HashSet::<String>::new());
    let mutated = shared(Mutated::default());
    let seed = seed();
    eprintln!("kill instants from seed {seed}; replay with TIMEFUSION_TEST_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    const ROUNDS: usize = 4;
    // Writes that shared a WAL record with others, counted just before each kill.
    let mut combined = 0;
    for round in 0..ROUNDS {
        let server = TestServer::start(dir.path(), &env);
        let port = server.port;
        let mut writers = Vec::new();
        for w in 0..4 {
            let acked = acked.clone();
            let grpc_port = server.grpc_port;
            writers.push(tokio::spawn(async move {
                // Writer 0 sends Arrow over Flight DoPut, writer 3 pipelines of parameterized
                // INSERTs, the others literal INSERTs: every front end shares the write path
                // and must keep the same promise.
                let mut flight = if w == 0 {
                    Some(flight_client(grpc_port).await)
                } else {
                    None
                };
                let mut pipeline = if w == 3 {
                    let Ok(mut raw) = Raw::connect(port).await else {
                        return;
                    };
                    raw.parse(
                        "ins",
                        "INSERT INTO otel_logs_and_spans (project_id, timestamp, id) VALUES ($1, $2, $3)",
                    );
                    Some(raw)
                } else {
                    None
                };
                let client = connect(port).await;
                for s in 0.. {
                    let batch = ids(&format!("r{round}-w{w}-s{s}"), 10);
                    let when = if s % 2 == 0 {
                        chrono::Utc::now().timestamp_micros()
                    } else {
                        past_micros(1 + s % 3)
                    };
                    let stored = match (flight.as_mut(), pipeline.as_mut()) {
                        (Some(flight), _) => {
                            flight_put(flight, &format!("p{w}"), &batch, when).await
                        }
                        (_, Some(raw)) => pipeline_put(raw, &format!("p{w}"), &batch, when).await,
                        (None, None) => client
                            .execute(&insert_sql(&format!("p{w}"), &batch, when), &[])
                            .await
                            .ok()
                            .map(|n| n as usize),
                    };
                    match stored {
                        Some(10) => acked.lock().extend(batch),
                        Some(n) => panic!("write acknowledged {n} of 10 rows"),
                        None => return, // the server died under us: not acknowledged
                    }
                }
            }));
        }
        // Single-row parameterized INSERTs from many connections at once: past
        // `COMBINE_AFTER` small writes under way, the server writes those waiting together as
        // one WAL record (`engine::ingest::combine`), and a kill must find each of them whole
        // or absent.
        for w in SINGLE_ROW_WRITERS {
            let acked = acked.clone();
            writers.push(tokio::spawn(async move {
                let client = connect(port).await;
                let Ok(insert) = client
                    .prepare(
                        "INSERT INTO otel_logs_and_spans (project_id, timestamp, id) VALUES ($1, $2, $3)",
                    )
                    .await
                else {
                    return;
                };
                let project = format!("p{}", w % 4);
                for s in 0.. {
                    let id = format!("r{round}-w{w}-s{s}");
                    let when = chrono::DateTime::from_timestamp_micros(if s % 2 == 0 {
                        chrono::Utc::now().timestamp_micros()
                    } else {
                        past_micros(1 + s % 3)
                    })
                    .expect("timestamp");
                    match client.execute(&insert, &[&project, &when, &id]).await {
                        Ok(1) => {
                            acked.lock().insert(id);
                        }
                        Ok(n) => panic!("a single-row INSERT acknowledged {n} rows"),
                        Err(_) => return, // the server died under us: not acknowledged
                    }
                }
            }));
        }
        writers.push(tokio::spawn(mutate(
            port,
            round,
            acked.clone(),
            mutated.clone(),
        )));
        // The sleep is the test: the kill lands at a random instant of the writes, mutations
        // and flushes.
        let delay = rng.random_range(500..3000);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        combined += combined_writes(&server);
        server.kill9();
        for w in writers {
            w.await.expect("writer");
        }

        let server = TestServer::start(dir.path(), &env);
        let client = server.client().await;
        let rows = client
            .query(&format!("SELECT id, name FROM {TABLE}"), &[])
            .await
            .expect("select ids");
        let mut seen = HashSet::with_capacity(rows.len());
        let mut renamed = HashSet::new();
        for row in &rows {
            let id: String = row.get(0);
            if row.get::<_, Option<String>>(1).as_deref() == Some("updated") {
                renamed.insert(id.clone());
            }
            assert!(
                seen.insert(id.clone()),
                "round {round} (seed {seed}): row {id} is duplicated after recovery"
            );
        }
        let acked = {
            let changes = mutated.lock();
            let resurrected: Vec<_> = changes.deleted.intersection(&seen).take(5).collect();
            assert!(
                resurrected.is_empty(),
                "round {round} (seed {seed}): deleted rows came back: {resurrected:?}"
            );
            let lost: Vec<_> = changes.updated.difference(&renamed).take(5).collect();
            assert!(
                lost.is_empty(),
                "round {round} (seed {seed}): acknowledged updates lost: {lost:?}"
            );
            eprintln!(
                "round {round} (seed {seed}): {} rows deleted and {} updated so far, {} in flight at a kill",
                changes.deleted.len(),
                changes.updated.len(),
                changes.uncertain.len()
            );
            let mut acked = acked.lock().clone();
            acked.retain(|id| !changes.deleted.contains(id) && !changes.uncertain.contains(id));
            acked
        };
        let in_delta = delta_rows(dir.path()).await;
        eprintln!(
            "round {round} (seed {seed}): killed after {delay} ms; {} rows acknowledged so far, {} recovered, {in_delta} in Delta",
            acked.len(),
            seen.len()
        );
        let missing: Vec<_> = acked.difference(&seen).take(5).collect();
        assert!(
            missing.is_empty(),
            "round {round} (seed {seed}): acknowledged rows lost: {missing:?} (of {})",
            acked.len()
        );
        assert!(
            !acked.is_empty(),
            "round {round}: nothing was acknowledged; the test proves nothing"
        );
        assert!(
            round == 0 || acked.iter().any(|id| id.contains("-w3-")),
            "no pipeline was acknowledged in rounds up to {round}; the test proves nothing for them"
        );
        let single_row = format!("-w{}-", SINGLE_ROW_WRITERS.start);
        assert!(
            round == 0 || acked.iter().any(|id| id.contains(&single_row)),
            "no single-row INSERT was acknowledged in rounds up to {round}; the test proves nothing for them"
        );
        let changes = mutated.lock();
        assert!(
            round == 0 || (!changes.deleted.is_empty() && !changes.updated.is_empty()),
            "no DELETE or no UPDATE was acknowledged in rounds up to {round}; the test proves nothing for them"
        );
        drop(changes);
        drop(client);
        server.kill9();
    }
    eprintln!("{combined} writes were combined with others before the kills");
    assert!(
        combined > 0,
        "no write was combined with others in any round; the test proves nothing for them"
    );
}

/// `timefusion_ingest_combined_writes_total` of `server` now (0 if `/metrics` cannot be read).
fn combined_writes(server: &TestServer) -> u64 {
    let Some((_, metrics)) = http_get(server.http_port, "/metrics") else {
        return 0;
    };
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("timefusion_ingest_combined_writes_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn unflushed_rows_of_a_table_without_schema_stop_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    let now = chrono::Utc::now().timestamp_micros();
    client
        .execute(&insert_sql("p1", &ids("keep", 3), now), &[])
        .await
        .expect("insert");
    drop(client);
    server.kill9();

    // Restart with a schema directory that no longer defines the table.
    let schemas = tempfile::tempdir().expect("schemas");
    let other = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/otel_logs_and_spans.yaml"
    ))
    .expect("schema")
    .replace("name: otel_logs_and_spans", "name: other_table");
    std::fs::write(schemas.path().join("other.yaml"), other).expect("write schema");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_timefusion"))
        .env("TIMEFUSION_DATA_DIR", dir.path())
        .env("TIMEFUSION_SCHEMA_DIR", schemas.path())
        .env("PGWIRE_PORT", "0")
        .env("GRPC_PORT", "0")
        .env("TIMEFUSION_HTTP_PORT", "0")
        .env("PGWIRE_HOST", "127.0.0.1")
        .env("GRPC_HOST", "127.0.0.1")
        .output()
        .expect("run timefusion");
    assert!(
        !out.status.success(),
        "start-up must fail rather than drop acknowledged rows"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("otel_logs_and_spans") && stderr.contains("no schema defines"),
        "{stderr}"
    );

    // With its schema back, the rows are there.
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    assert_eq!(count(&client, "").await, 3);
}
