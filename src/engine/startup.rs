//! Opening the engine: load the schemas, lock and open the WAL, open (or create) each Delta
//! table and read the WAL sequence its last flush covered (its `txn` version), replay only
//! newer WAL records into the buffer, then start the WAL writer above every sequence seen.
//!
//! After [`Engine::open`] returns, every acknowledged row is in exactly one place: in a Delta
//! table at the version the buffer publishes, or in the buffer (and the WAL).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use datafusion::execution::TaskContext;

use crate::config::Config;
use crate::engine::buffer::{Buffer, BufferOptions};
use crate::engine::change;
use crate::engine::core::{Core, CoreOptions};
use crate::engine::ingest::Ingest;
use crate::engine::quarantine;
use crate::engine::schema::Catalog;
use crate::engine::storage::Storage;
use crate::engine::wal::{self, Seq, Wal, WalOptions};
use crate::engine::{Clock, Committed, delta};

/// Why the engine could not open; the server does not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Schema(#[from] crate::engine::schema::Error),
    #[error(transparent)]
    Wal(#[from] wal::Error),
    #[error(transparent)]
    Delta(Box<delta::Error>),
    #[error(transparent)]
    Storage(#[from] crate::engine::storage::Error),
}

impl From<delta::Error> for Error {
    fn from(error: delta::Error) -> Self {
        Error::Delta(Box::new(error))
    }
}

/// The engine's parts after recovery, ready for the front ends and the background loops.
pub struct Engine {
    pub catalog: Arc<Catalog>,
    pub buffer: Arc<Buffer<Committed>>,
    pub ingest: Arc<Ingest>,
    pub storage: Arc<Storage>,
    pub core: Arc<Core>,
}

impl Engine {
    /// Recovers the state `config` names and starts the WAL writer. `config` must have been
    /// validated. `functions` decode the expressions of change records (`DELETE` / `UPDATE`
    /// of buffered rows, [`change`]): the functions SQL statements can call.
    pub async fn open(
        config: &Config,
        clock: Arc<dyn Clock>,
        functions: Arc<TaskContext>,
    ) -> Result<Engine, Error> {
        let catalog = Arc::new(Catalog::load(config.schema_dir.as_deref())?);
        let wal = Arc::new(Wal::open(
            &config.wal_dir(),
            WalOptions {
                segment_bytes: config.wal_segment_mb << 20,
                group_max_bytes: (config.wal_group_max_mb << 20) as usize,
                compression: config.wal_compression,
                in_place_sync_max: crate::engine::wal::IN_PLACE_SYNC_MAX,
            },
        )?);
        let buffer = Arc::new(Buffer::new(BufferOptions {
            max_bytes: config.buffer_max_bytes(),
            bucket_micros: config.bucket_length().as_micros() as i64,
        }));
        let storage = Arc::new(Storage::open(&config.storage()).await?);
        tracing::info!(location = %storage.describe(), "table storage");
        let mut tables = HashMap::new();
        let mut committed_seq: HashMap<String, Seq> = HashMap::new();
        for schema in catalog.tables() {
            let table = delta::DeltaTable::open_or_create(
                &storage,
                schema.clone(),
                config.parquet_codec(),
                config.checkpoint_interval,
            )
            .await?;
            let seq = table
                .committed_wal_seq(wal.id())
                .await?
                .map(Seq)
                .unwrap_or_default();
            committed_seq.insert(schema.name.clone(), seq);
            buffer.add_table(&schema.name, table.reader().await?);
            tables.insert(schema.name.clone(), Arc::new(table));
        }
        let ingest = Arc::new(Ingest::new(
            catalog.clone(),
            wal.clone(),
            buffer.clone(),
            clock.clone(),
            Duration::from_secs(config.buffer_full_timeout_secs),
            config.buffer_max_bytes(),
        ));
        let quarantine = config.quarantine_dir();
        settle_staged(&wal, &tables, &quarantine).await?;
        let last = replay(
            &wal,
            &ingest,
            &buffer,
            &functions,
            &tables,
            &committed_seq,
            &quarantine,
        )
        .await?;
        buffer.advance_applied(last);
        wal.start(last.next())?;

        let options = CoreOptions {
            flush_interval: config.flush_interval(),
            buffer_retention: config.buffer_retention(),
            maintenance_interval: Duration::from_secs(config.maintenance_interval_secs),
            maintenance: config.maintenance_policy(),
            partition_attempts: config.flush_partition_attempts,
            quarantine_dir: quarantine,
        };
        let core = Arc::new(Core::new(
            options,
            wal,
            buffer.clone(),
            tables,
            storage.clone(),
            clock,
            functions,
        ));
        Ok(Engine {
            catalog,
            buffer,
            ingest,
            storage,
            core,
        })
    }
}

/// Replays the WAL records newer than each table's `committed_seq` into the buffer and
/// returns the highest sequence seen in the WAL or any table's `txn` version: new records are
/// numbered above it. Records apply in sequence order. A carried record (rows a flush left
/// out, appended again before its commit) is applied only if `tables` holds that flush's
/// commit; otherwise the rows' original records, which the flush did not cover, were
/// replayed. A change record rewrites the buffered rows below it as it did when it was
/// written ([`change`]). Rows that can never be flushed
/// (acknowledged by a build without the range check, [`Ingest::replay`]) are written to
/// `quarantine` before they leave the buffer.
async fn replay(
    wal: &Wal,
    ingest: &Ingest,
    buffer: &Buffer<Committed>,
    functions: &TaskContext,
    tables: &HashMap<String, Arc<delta::DeltaTable>>,
    committed_seq: &HashMap<String, Seq>,
    quarantine: &Path,
) -> Result<Seq, Error> {
    let (mut replayed, mut skipped, mut changes) = (0usize, 0usize, 0usize);
    let unknown = |record: &wal::ReplayRecord<'_>| wal::Error::Replay {
        seq: record.seq,
        reason: format!(
            "it holds unflushed rows for table {}, which no schema defines; restore its schema file",
            record.table
        ),
    };
    // First the carried records the log holds (asking the log is asynchronous), so that the
    // second pass applies every record in sequence order: a change applies to the rows of
    // the records below it, carried ones included.
    let mut carried = Vec::new();
    wal.replay(|record| {
        match committed_seq.get(record.table) {
            None => return Err(unknown(&record)),
            Some(done) if record.seq > *done && record.kind == wal::Kind::Carried => {
                carried.push((record.seq, record.table.to_string()));
            }
            Some(_) => {}
        }
        Ok(())
    })?;
    let mut landed = HashSet::new();
    for (seq, table) in carried {
        if let Some(delta_table) = tables.get(&table)
            && delta_table
                .holds(&delta::carried_app_id(wal.id(), seq))
                .await?
        {
            landed.insert(seq);
        } else {
            tracing::info!(
                table, %seq,
                "carried rows not replayed: the flush that left them out did not land, so their original records were"
            );
        }
    }
    let last = wal.replay(|record| {
        let replay_error = |reason: String| wal::Error::Replay {
            seq: record.seq,
            reason,
        };
        match committed_seq.get(record.table) {
            None => return Err(unknown(&record)),
            Some(done) if record.seq <= *done => skipped += 1,
            Some(_) if record.kind == wal::Kind::Carried && !landed.contains(&record.seq) => {
                skipped += 1
            }
            Some(_) if record.kind == wal::Kind::Change => {
                let table = tables.get(record.table).ok_or_else(|| unknown(&record))?;
                let (mutation, scope) = change::decode(record.ipc, functions)
                    .map_err(|e| replay_error(format!("change record: {e}")))?;
                let props = datafusion::physical_expr::execution_props::ExecutionProps::new();
                let compiled =
                    change::Compiled::new(&mutation, table.schema().schema.clone(), &props)
                        .and_then(|compiled| {
                            let chunks = buffer.chunks(
                                record.table,
                                scope.projects.as_ref(),
                                scope.time_range,
                            );
                            change::changes(&compiled, chunks)
                        })
                        .map_err(|e| {
                            replay_error(format!("{} of buffered rows: {e}", mutation.verb()))
                        })?;
                let (_, changed) = compiled;
                buffer.change(record.table, record.seq, changed);
                changes += 1;
            }
            Some(_) => {
                let batch = wal::decode_batch(record.ipc)?;
                replayed += batch.num_rows();
                apply(ingest, quarantine, record.table, record.seq, batch)?;
            }
        }
        Ok(())
    })?;
    let last = committed_seq
        .values()
        .copied()
        .chain(last)
        .max()
        .unwrap_or_default();
    tracing::info!(replayed_rows = replayed, replayed_changes = changes, skipped_records = skipped, next_seq = %last.next(), wal_id = wal.id(), "recovered");
    Ok(last)
}

/// Settles the quarantine files a flush staged before the process stopped: each is named
/// `<table>-<upto>-<n>`, and published when its table's log holds the commit that left its
/// rows out, discarded otherwise (the rows are then still in the WAL, and replayed).
async fn settle_staged(
    wal: &Wal,
    tables: &HashMap<String, Arc<delta::DeltaTable>>,
    dir: &Path,
) -> Result<(), Error> {
    let io = |source| wal::Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    for name in quarantine::staged(dir).map_err(io)? {
        let table = name.rsplitn(3, '-').nth(2).unwrap_or_default();
        let Some(delta_table) = tables.get(table) else {
            tracing::warn!(file = %name, "a staged quarantine file of no known table is left as it is");
            continue;
        };
        if delta_table
            .holds(&delta::quarantined_app_id(wal.id(), &name))
            .await?
        {
            let path = quarantine::publish(dir, &name, 0).map_err(io)?;
            tracing::error!(file = %path.display(), "a partition's rows, moved to the quarantine by a flush that landed before the stop");
        } else {
            quarantine::discard(dir, &name).map_err(io)?;
            tracing::info!(file = %name, "a staged quarantine file was discarded: its flush did not land, so its rows are replayed");
        }
    }
    Ok(())
}

/// Inserts replayed record `seq` into the buffer, moving rows that can never be flushed to
/// `quarantine` first.
fn apply(
    ingest: &Ingest,
    quarantine: &Path,
    table: &str,
    seq: Seq,
    batch: RecordBatch,
) -> Result<(), wal::Error> {
    let replay_error = |reason: String| wal::Error::Replay { seq, reason };
    let rejected = ingest
        .replay(table, seq, batch)
        .map_err(|e| replay_error(e.to_string()))?;
    if let Some(rows) = rejected {
        // Replaying the same record again rewrites the same file.
        let kept = quarantine::keep_aside(quarantine, &format!("{table}-{seq}"), &rows)
            .map_err(|e| replay_error(format!("cannot quarantine rows: {e}")))?;
        tracing::error!(
            table, %seq, rows = rows.num_rows(), file = %kept.display(),
            "rows with a timestamp or date outside years 0001-9999, or a project id too long for a folder name, were moved aside: they can never be flushed"
        );
    }
    Ok(())
}
