//! Write-ahead log: append-only segment files of checksummed Arrow IPC records.
//!
//! Every acknowledged write is one record. A record is a 24-byte header followed by its
//! payload, all little endian:
//!
//! ```text
//! magic u32 "TFWA" | version u8 | 3 reserved bytes | seq u64 | payload length u32 | crc32c u32
//! payload: table name length u16 | table name (UTF-8) | Arrow IPC stream of one batch
//! ```
//!
//! Version 1 records hold acknowledged rows. Version 2 records hold *carried* rows: the rows
//! of a partition a flush could not write, appended again above the flush's prefix before
//! it commits without them ([`Wal::append_carried`]); replay applies one only if that flush
//! landed (`engine::delta::carried_app_id`). Version 3 records hold a *change* to buffered
//! rows (`DELETE` / `UPDATE`, `engine::change`) instead of rows: it applies to every row of
//! its table with a lower sequence still in the buffer ([`Wal::append_checked`]). Builds
//! before a version take its records for corruption (and, as the last record of the WAL, for
//! a torn tail they truncate): do not downgrade past a version with such a record in the WAL.
//!
//! The payload is compressed as [`WalCompression`] says and says so itself, so replay needs no
//! setting: with zstd (the default) the IPC stream is one zstd frame, recognised by the frame's
//! magic number (an IPC stream starts with `0xFFFFFFFF`); with lz4 the stream's own buffers are
//! lz4 frames, as the IPC stream records. Records written before whole-payload zstd hold an IPC
//! stream with zstd-compressed buffers, and replay reads them the same way.
//!
//! The CRC32C covers everything in the header after the magic except the CRC itself, and the
//! payload. Segment files are named by the zero-padded sequence number of their first record,
//! so listing order is sequence order; a segment's last sequence is one less than the next
//! segment's first.
//!
//! Guarantees:
//! - [`Wal::append`] returns only after its record is written and `fdatasync`ed. One writer
//!   thread commits in groups: every record queued while an fsync runs shares the next one.
//!   A record appended while no other is under way is committed by its own task instead, under
//!   the same lock, when the disk is fast ([`Wal::commit_in_place`]).
//! - Records are applied (the caller's `apply` callback, which inserts into the buffer) in
//!   sequence order, after they are durable and before the append is acknowledged. So at any
//!   instant the buffer holds every acknowledged record that has not been flushed. A checked
//!   record ([`Wal::append_checked`]) is first checked against the buffer as every record
//!   before it left it, by the writer thread, and written only if the check passes. Sequence
//!   numbers are given, records written and applied only under the writer's lock.
//! - Replay detects a torn tail in the last segment (a partial or unchecksummed record with no
//!   valid record after it) and truncates it; any other invalid record is an error that stops
//!   start-up, because skipping it would silently lose acknowledged rows.
//! - The writer writes zeros ahead of small groups, 1 MiB at a time, so that a commit's
//!   `fdatasync` does not also have to record a new file size ([`Writer::zero_ahead`]). Only the
//!   last segment can end in them (a segment is cut back to its records before the next one is
//!   created, and on a clean stop); replay takes an all-zero rest of the last segment for its
//!   end and cuts it off. Builds before this read such a tail as a torn one and truncate it.
//! - A lock file keeps a second process off the same WAL directory.
//! - After an fsync failure the WAL refuses further appends: the page cache can no longer be
//!   trusted to hold what was written.

pub use crate::config::WalCompression;
use crate::error::SqlState;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::ipc::{CompressionType, MetadataVersion};
use fs2::FileExt;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

const MAGIC: u32 = u32::from_le_bytes(*b"TFWA");
const VERSION: u8 = 1;
/// The version of a record holding carried rows.
const VERSION_CARRIED: u8 = 2;
/// The version of a record holding a change to buffered rows.
const VERSION_CHANGE: u8 = 3;
const HEADER_LEN: usize = 24;
const SEGMENT_SUFFIX: &str = ".wal";

/// Position of a record in the WAL. Strictly increasing, never reused by one WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Seq(pub u64);

impl Seq {
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl std::fmt::Display for Seq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("WAL I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "the WAL at {0} is locked by another TimeFusion process; stop it or point TIMEFUSION_DATA_DIR elsewhere"
    )]
    Locked(PathBuf),
    #[error(
        "WAL segment {path} is corrupt at byte {offset}: {reason}. Valid records follow it, so it is not a torn tail; \
         refusing to start rather than skip acknowledged rows. Move the segment aside only if losing its records is acceptable"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error(
        "WAL record {seq} cannot be replayed: {reason}. Refusing to start rather than drop acknowledged rows"
    )]
    Replay { seq: Seq, reason: String },
    #[error("cannot encode or decode an Arrow IPC WAL payload: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("cannot compress or decompress a zstd WAL payload: {0}")]
    Zstd(String),
    #[error("the WAL failed to sync earlier ({0}); it refuses writes until the server restarts")]
    Poisoned(String),
    #[error("the WAL is closed: the server is shutting down")]
    Closed,
    /// A checked record's check declined it ([`Wal::append_checked`]); nothing was written.
    #[error("the record was declined by its check")]
    Declined,
}

impl Error {
    /// The SQLSTATE a writer whose append failed is answered with: 57P01 once the WAL is
    /// closed for shutdown, an I/O error otherwise.
    pub fn sqlstate(&self) -> SqlState {
        match self {
            Error::Closed => SqlState::ADMIN_SHUTDOWN,
            _ => SqlState::IO_ERROR,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// zstd's frame magic number as it starts a frame. A payload starting with it is one zstd
/// frame holding the IPC stream; an IPC stream starts with `0xFFFFFFFF` (or, before Arrow 0.15,
/// a metadata length, which is positive), so neither is taken for the other.
const ZSTD_MAGIC: [u8; 4] = 0xFD2F_B528u32.to_le_bytes();

/// zstd level of WAL payloads: the fastest, since the WAL is read only on recovery.
const ZSTD_LEVEL: i32 = 1;

/// Zeros written ahead of small groups at a time ([`Writer::zero_ahead`]).
const ZERO_AHEAD_BYTES: u64 = 1 << 20;

/// Groups of fewer bytes get zeros written ahead of them ([`Writer::zero_ahead`]).
const ZERO_AHEAD_BELOW: u64 = 64 << 10;

/// IPC streams shorter than this are written as they are under zstd: a single-row insert's
/// stream is mostly Arrow's metadata, a few KiB that zstd would shrink for more CPU than the
/// rest of the record's encoding (zstd builds its tables per frame; it was a tenth of the
/// server's CPU under 32 single-row writers), and the bytes saved are a few pages of a group
/// at most. Replay tells the two apart by [`ZSTD_MAGIC`].
const ZSTD_MIN_BYTES: usize = 16 << 10;

/// Unused capacity a payload gives back before it waits for its group commit.
const SHRINK_ABOVE: usize = 64 << 10;

/// The longest a commit's write and `fdatasync` may have taken for the next lone append to be
/// committed on its own task ([`Wal::commit_in_place`]): local disks take 0.1-0.5 ms, so this
/// sends appends to the writer thread only while the disk is slow.
pub const IN_PLACE_SYNC_MAX: std::time::Duration = std::time::Duration::from_millis(2);

/// What a thread keeps between the zstd payloads it encodes: the start of an IPC stream held
/// until it is known to reach [`ZSTD_MIN_BYTES`] (never more than that), and a compression
/// context, whose tables zstd would otherwise build again for every payload.
struct Scratch {
    held: Vec<u8>,
    zstd: Option<zstd::zstd_safe::CCtx<'static>>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = const {
        std::cell::RefCell::new(Scratch { held: Vec::new(), zstd: None })
    };
}

/// Encodes one batch as a WAL payload body: an Arrow IPC stream (schema message, one batch,
/// end marker), compressed as `compression` says.
pub fn encode_batch(batch: &RecordBatch, compression: WalCompression) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_into(&mut out, batch, compression)?;
    Ok(out)
}

/// Appends the payload body of `batch` to `out`.
fn encode_into(out: &mut Vec<u8>, batch: &RecordBatch, compression: WalCompression) -> Result<()> {
    let lz4 = || {
        ipc_options()
            .try_with_compression(Some(CompressionType::LZ4_FRAME))
            .expect("arrow is built with the ipc_compression feature")
    };
    match compression {
        WalCompression::None => write_ipc(out, batch, &ipc_options()),
        WalCompression::Lz4 => write_ipc(out, batch, &lz4()),
        WalCompression::Zstd => SCRATCH.with_borrow_mut(|scratch| {
            let cctx = match &mut scratch.zstd {
                Some(cctx) => cctx,
                None => scratch.zstd.insert(compression_context()?),
            };
            scratch.held.clear();
            let spill = Spill {
                held: &mut scratch.held,
                state: SpillState::Holding { out, cctx },
            };
            let mut writer =
                StreamWriter::try_new_with_options(spill, batch.schema_ref(), ipc_options())?;
            writer.write(batch)?;
            writer.into_inner()?.finish().map_err(zstd_error)
        }),
    }
}

/// A zstd context at [`ZSTD_LEVEL`].
fn compression_context() -> Result<zstd::zstd_safe::CCtx<'static>> {
    let mut cctx = zstd::zstd_safe::CCtx::try_create()
        .ok_or_else(|| Error::Zstd("cannot allocate a compression context".into()))?;
    cctx.set_parameter(zstd::zstd_safe::CParameter::CompressionLevel(ZSTD_LEVEL))
        .map_err(|code| Error::Zstd(zstd::zstd_safe::get_error_name(code).into()))?;
    Ok(cctx)
}

/// A payload's IPC stream on its way in under zstd: held until it reaches [`ZSTD_MIN_BYTES`]
/// (a shorter stream is written as it is), then compressed as arrow writes it, straight into
/// the payload. The whole stream never exists uncompressed: for an 8,192-row otel batch that
/// copy was tens of MiB, allocated afresh per batch, and under a memory budget the largest
/// transient of the ingest path (BENCHMARKS.md, "WAL payloads compressed as they are written").
struct Spill<'a> {
    held: &'a mut Vec<u8>,
    state: SpillState<'a>,
}

enum SpillState<'a> {
    Holding {
        out: &'a mut Vec<u8>,
        cctx: &'a mut zstd::zstd_safe::CCtx<'static>,
    },
    Compressing(zstd::stream::write::Encoder<'a, &'a mut Vec<u8>>),
    /// Between the two, and after a failed switch: nothing more can be written.
    Switching,
}

/// A [`Spill`] whose switch to zstd failed: the payload cannot be completed.
fn frame_failed() -> io::Error {
    io::Error::other("the WAL payload's zstd frame failed")
}

impl Spill<'_> {
    /// Ends the payload: the held stream appended as it is, or the zstd frame closed.
    fn finish(self) -> io::Result<()> {
        match self.state {
            SpillState::Holding { out, .. } => {
                out.extend_from_slice(self.held);
                Ok(())
            }
            SpillState::Compressing(zstd) => zstd.finish().map(drop),
            SpillState::Switching => Err(frame_failed()),
        }
    }
}

impl Write for Spill<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if matches!(self.state, SpillState::Holding { .. }) {
            if self.held.len() + buf.len() < ZSTD_MIN_BYTES {
                self.held.extend_from_slice(buf);
                return Ok(buf.len());
            }
            if let SpillState::Holding { out, cctx } =
                std::mem::replace(&mut self.state, SpillState::Switching)
            {
                let mut zstd = zstd::stream::write::Encoder::with_context(out, cctx);
                zstd.write_all(self.held)?;
                self.held.clear();
                self.state = SpillState::Compressing(zstd);
            }
        }
        match &mut self.state {
            SpillState::Compressing(zstd) => zstd.write(buf),
            _ => Err(frame_failed()),
        }
    }

    /// Nothing to do: the payload is memory, complete at [`Spill::finish`]. (Passing a flush
    /// on would end a zstd block at each of arrow's flushes.)
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// IPC options of WAL records: buffers padded to 8 bytes, the least the format allows, instead
/// of Arrow's default 64. A single-row record of 16 otel columns is then a few KiB instead of
/// twice that, most of it padding; replay's reader realigns a buffer a type needs aligned wider.
fn ipc_options() -> IpcWriteOptions {
    IpcWriteOptions::try_new(8, false, MetadataVersion::V5).expect("8 is a valid IPC alignment")
}

/// Appends the IPC stream of `batch` to `out`.
fn write_ipc(out: &mut Vec<u8>, batch: &RecordBatch, options: &IpcWriteOptions) -> Result<()> {
    let mut writer = StreamWriter::try_new_with_options(out, batch.schema_ref(), options.clone())?;
    writer.write(batch)?;
    writer.finish()?;
    Ok(())
}

fn zstd_error(e: io::Error) -> Error {
    Error::Zstd(e.to_string())
}

/// Decodes a payload body written by [`encode_batch`] with any [`WalCompression`].
pub fn decode_batch(payload: &[u8]) -> Result<RecordBatch> {
    let decompressed;
    let ipc = if payload.starts_with(&ZSTD_MAGIC) {
        decompressed = zstd::stream::decode_all(payload).map_err(zstd_error)?;
        &decompressed[..]
    } else {
        payload
    };
    let reader = StreamReader::try_new(ipc, None)?;
    let schema = reader.schema();
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(match batches.len() {
        1 => batches
            .into_iter()
            .next()
            .unwrap_or_else(|| RecordBatch::new_empty(schema)),
        _ => arrow::compute::concat_batches(&schema, &batches)?,
    })
}

/// Options of a WAL directory.
#[derive(Debug, Clone)]
pub struct WalOptions {
    pub segment_bytes: u64,
    pub group_max_bytes: usize,
    pub compression: WalCompression,
    /// The longest a commit's write and sync may have taken for the next lone append to be
    /// committed in place ([`Wal::commit_in_place`]); [`IN_PLACE_SYNC_MAX`] in the server.
    pub in_place_sync_max: std::time::Duration,
}

/// One record read back during replay.
pub struct ReplayRecord<'a> {
    pub seq: Seq,
    pub table: &'a str,
    pub kind: Kind,
    /// Rows: the batch as [`encode_batch`] wrote it; decode with [`decode_batch`] only if the
    /// record is needed. A change: the bytes its caller appended.
    pub ipc: &'a [u8],
}

struct Segment {
    first: Seq,
    path: PathBuf,
}

/// Segment files, oldest first; the last one is the active segment.
struct Segments {
    dir: PathBuf,
    list: Vec<Segment>,
}

impl Segments {
    fn path_for(dir: &Path, first: Seq) -> PathBuf {
        dir.join(format!("{:020}{SEGMENT_SUFFIX}", first.0))
    }
}

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Acknowledged rows ([`Wal::append`]).
    Rows,
    /// Rows a flush left out and appended again ([`Wal::append_carried`]): they belong to
    /// the table only if that flush landed.
    Carried,
    /// A change to the table's buffered rows ([`Wal::append_checked`]).
    Change,
}

/// What the writer thread runs once a record is durable, in sequence order.
pub type Apply = Box<dyn FnOnce(Seq) + Send>;

/// The check of a record [`Wal::append_checked`] appends: run by the writer thread with the
/// record's sequence once every earlier record is applied, it returns what to apply once the
/// record is durable, or `None` to write nothing (the caller keeps its reason).
pub type Check = Box<dyn FnOnce(Seq) -> Option<Apply> + Send>;

/// When a request is applied: after the disk, or checked first.
enum Then {
    Apply(Apply),
    Check(Check),
}

/// Who may commit an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Committer {
    /// The appending task itself when no other append is under way and the disk is fast
    /// ([`Wal::commit_in_place`]), the writer thread otherwise.
    Any,
    /// The writer thread: for a caller with more to do while its record syncs (the ingest
    /// combiner takes its next round meanwhile), which a commit in place would hold up.
    Thread,
}

/// A write request handed to the writer thread.
struct Append {
    payload: Vec<u8>,
    kind: Kind,
    then: Then,
    done: oneshot::Sender<Result<Seq>>,
}

enum Command {
    Append(Append),
    Stop,
}

/// Counts an append under way until it is answered (or its future dropped).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The write-ahead log of one server.
pub struct Wal {
    dir: PathBuf,
    id: String,
    options: WalOptions,
    segments: Arc<Mutex<Segments>>,
    sender: Mutex<Option<mpsc::Sender<Command>>>,
    /// The writer's state, shared by its thread and by appends that commit in place
    /// ([`Wal::commit_in_place`]); set by [`Wal::start`].
    state: Mutex<Option<Arc<Mutex<Writer>>>>,
    /// Appends under way: from the request until its answer.
    in_flight: AtomicUsize,
    writer: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
    poisoned: Arc<Mutex<Option<String>>>,
    _lock: File,
}

impl Wal {
    /// Whether the WAL was closed for shutdown (appends are refused).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Why the WAL refuses writes, if it does: a failed write or `fdatasync` poisons it.
    pub fn failure(&self) -> Option<String> {
        self.poisoned.lock().clone()
    }

    /// Opens (creating if needed) the WAL in `dir` and takes its lock. Call [`Wal::replay`]
    /// next, then [`Wal::start`].
    pub fn open(dir: &Path, options: WalOptions) -> Result<Wal> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        lock.try_lock_exclusive()
            .map_err(|_| Error::Locked(dir.to_path_buf()))?;

        let id_path = dir.join("ID");
        let id = match fs::read_to_string(&id_path) {
            Ok(id) => id.trim().to_string(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let id = format!("timefusion-wal-{}", uuid::Uuid::new_v4());
                let tmp = dir.join("ID.tmp");
                let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
                file.write_all(id.as_bytes()).map_err(io_err(&tmp))?;
                file.sync_all().map_err(io_err(&tmp))?;
                fs::rename(&tmp, &id_path).map_err(io_err(&id_path))?;
                sync_dir(dir)?;
                id
            }
            Err(e) => return Err(io_err(&id_path)(e)),
        };

        let mut list = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let path = entry.map_err(io_err(dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some(first) = name
                .strip_suffix(SEGMENT_SUFFIX)
                .and_then(|n| n.parse().ok())
            {
                list.push(Segment {
                    first: Seq(first),
                    path,
                });
            }
        }
        list.sort_by_key(|s| s.first);
        Ok(Wal {
            dir: dir.to_path_buf(),
            id,
            options,
            segments: Arc::new(Mutex::new(Segments {
                dir: dir.to_path_buf(),
                list,
            })),
            sender: Mutex::new(None),
            state: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            writer: Mutex::new(None),
            closed: AtomicBool::new(false),
            poisoned: Arc::new(Mutex::new(None)),
            _lock: lock,
        })
    }

    /// This WAL's stable identity; flush commits record it as the Delta `txn` app id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Reads every record in sequence order and hands it to `each`, truncating a torn tail.
    /// Returns the highest sequence found (or the sequence before the first segment's start).
    pub fn replay(
        &self,
        mut each: impl FnMut(ReplayRecord<'_>) -> Result<()>,
    ) -> Result<Option<Seq>> {
        let segments = self.segments.lock();
        let mut last: Option<Seq> = None;
        let count = segments.list.len();
        for (i, segment) in segments.list.iter().enumerate() {
            let is_last = i + 1 == count;
            let mut data = Vec::new();
            File::open(&segment.path)
                .and_then(|mut f| f.read_to_end(&mut data))
                .map_err(io_err(&segment.path))?;
            let mut offset = 0usize;
            while offset < data.len() {
                match parse_record(&data[offset..]) {
                    Ok(Record {
                        seq,
                        payload,
                        len,
                        kind,
                    }) => {
                        if last.is_some_and(|l| seq <= l) || seq < segment.first {
                            return Err(Error::Corrupt {
                                path: segment.path.clone(),
                                offset: offset as u64,
                                reason: format!("sequence {seq} out of order"),
                            });
                        }
                        let (table, ipc) =
                            split_payload(payload).map_err(|reason| Error::Corrupt {
                                path: segment.path.clone(),
                                offset: offset as u64,
                                reason,
                            })?;
                        each(ReplayRecord {
                            seq,
                            table,
                            ipc,
                            kind,
                        })?;
                        last = Some(seq);
                        offset += len;
                    }
                    Err(_) if is_last && data[offset..].iter().all(|&b| b == 0) => {
                        // The zeros a crashed writer wrote ahead of its records.
                        tracing::debug!(
                            segment = %segment.path.display(),
                            offset,
                            "the WAL's last segment ends in {} zero bytes written ahead",
                            data.len() - offset
                        );
                        truncate(&segment.path, offset as u64)?;
                        break;
                    }
                    Err(reason) => {
                        let valid_after =
                            (offset + 1..data.len()).any(|o| parse_record(&data[o..]).is_ok());
                        if !is_last || valid_after {
                            return Err(Error::Corrupt {
                                path: segment.path.clone(),
                                offset: offset as u64,
                                reason,
                            });
                        }
                        tracing::warn!(
                            segment = %segment.path.display(),
                            offset,
                            dropped_bytes = data.len() - offset,
                            "truncating torn WAL tail ({reason}); it held no acknowledged record"
                        );
                        truncate(&segment.path, offset as u64)?;
                        break;
                    }
                }
            }
            if last.is_none() && segment.first.0 > 0 {
                last = Some(Seq(segment.first.0 - 1));
            }
        }
        Ok(last)
    }

    /// Starts the group-commit writer; the first new record gets `next`.
    pub fn start(&self, next: Seq) -> Result<()> {
        let path = Segments::path_for(&self.dir, next);
        let (file, written) = open_segment(&path)?;
        sync_dir(&self.dir)?;
        {
            let mut segments = self.segments.lock();
            if segments.list.last().is_none_or(|s| s.path != path) {
                segments.list.push(Segment {
                    first: next,
                    path: path.clone(),
                });
            }
        }
        let (sender, receiver) = mpsc::channel(4096);
        let writer = Arc::new(Mutex::new(Writer {
            file,
            path,
            written,
            zeroed: written,
            next,
            options: self.options.clone(),
            segments: self.segments.clone(),
            poisoned: self.poisoned.clone(),
            last_sync: std::time::Duration::ZERO,
        }));
        let state = writer.clone();
        let handle = std::thread::Builder::new()
            .name("timefusion-wal".into())
            .spawn(move || Writer::run(writer, receiver))
            .map_err(io_err(&self.dir))?;
        *self.sender.lock() = Some(sender);
        *self.state.lock() = Some(state);
        *self.writer.lock() = Some(handle);
        Ok(())
    }

    /// Appends one batch for `table`.
    ///
    /// When this returns `Ok(seq)`, the record is durable on disk and `apply(seq)` has run
    /// (records are applied in sequence order). On error nothing was acknowledged and `apply`
    /// did not run. `batch` is dropped once encoded, before the wait for the disk: a writer
    /// waiting for its group commit holds its record, not also the rows as the client sent
    /// them.
    pub async fn append(
        &self,
        table: &str,
        batch: RecordBatch,
        apply: Box<dyn FnOnce(Seq) + Send>,
    ) -> Result<Seq> {
        self.append_by(Committer::Any, table, batch, apply).await
    }

    /// [`Wal::append`], committed by `committer`.
    pub async fn append_by(
        &self,
        committer: Committer,
        table: &str,
        batch: RecordBatch,
        apply: Box<dyn FnOnce(Seq) + Send>,
    ) -> Result<Seq> {
        let payload = self.encode(table, &batch)?;
        drop(batch);
        let then = Then::Apply(apply);
        self.submit(payload, Kind::Rows, then, committer).await
    }

    /// Appends `batch`, rows of `table` a flush is about to leave out of its commit, as a
    /// carried record (version 2) above every sequence so far, with the same guarantees as
    /// [`Wal::append`]. Replay applies it only when that flush landed.
    pub async fn append_carried(
        &self,
        table: &str,
        batch: &RecordBatch,
        apply: Box<dyn FnOnce(Seq) + Send>,
    ) -> Result<Seq> {
        let payload = self.encode(table, batch)?;
        self.submit(payload, Kind::Carried, Then::Apply(apply), Committer::Any)
            .await
    }

    /// Appends `body`, a change to `table`'s buffered rows, as a change record (version 3)
    /// if `check` passes. The writer thread runs `check` with the record's sequence once every
    /// earlier record is applied and before any later one is, so it sees the buffer exactly
    /// as replay will have built it when it reaches this record; then the record is written
    /// and synced on its own, and what `check` returned is applied before the next record.
    /// Returns `Ok(Some(seq))` as [`Wal::append`] does, `Ok(None)` when `check` declined
    /// (nothing written).
    pub async fn append_checked(
        &self,
        table: &str,
        body: &[u8],
        check: Check,
    ) -> Result<Option<Seq>> {
        let payload = self.payload(table, |payload| {
            payload.extend_from_slice(body);
            Ok(())
        })?;
        match self
            .submit(payload, Kind::Change, Then::Check(check), Committer::Thread)
            .await
        {
            Ok(seq) => Ok(Some(seq)),
            Err(Error::Declined) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A record's payload: the table's name and the batch, encoded in place (a batch is
    /// copied once on its way to the file). Refused once the WAL is closed or poisoned.
    fn encode(&self, table: &str, batch: &RecordBatch) -> Result<Vec<u8>> {
        self.payload(table, |payload| {
            encode_into(payload, batch, self.options.compression)
        })
    }

    /// A record's payload: the table's name, then what `body` writes.
    fn payload(
        &self,
        table: &str,
        body: impl FnOnce(&mut Vec<u8>) -> Result<()>,
    ) -> Result<Vec<u8>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if let Some(reason) = self.poisoned.lock().clone() {
            return Err(Error::Poisoned(reason));
        }
        let name = table.as_bytes();
        let mut payload = Vec::new();
        payload.extend_from_slice(&(name.len() as u16).to_le_bytes());
        payload.extend_from_slice(name);
        body(&mut payload)?;
        // A payload compressed as it was written grew by doubling; it waits in the queue
        // for its group commit, so it gives back what it does not use. (A small one, a
        // single row's, is left as it is: not worth a reallocation per record.)
        let unused = payload.capacity() - payload.len();
        if unused > (payload.len() / 8).max(SHRINK_ABOVE) {
            payload.shrink_to_fit();
        }
        Ok(payload)
    }

    /// Hands `payload` to the writer and waits until it is durable and applied. A record
    /// appended while no other is under way is committed by this task itself
    /// ([`Wal::commit_in_place`]).
    async fn submit(
        &self,
        payload: Vec<u8>,
        kind: Kind,
        then: Then,
        committer: Committer,
    ) -> Result<Seq> {
        let alone = self.in_flight.fetch_add(1, Ordering::AcqRel) == 0;
        let _in_flight = InFlight(&self.in_flight);
        let (done, wait) = oneshot::channel();
        let mut append = Append {
            payload,
            kind,
            then,
            done,
        };
        if alone && committer == Committer::Any && matches!(append.then, Then::Apply(_)) {
            match self.commit_in_place(append) {
                Ok(()) => return wait.await.map_err(|_| Error::Closed)?,
                Err(back) => append = back,
            }
        }
        let sender = self.sender.lock().clone().ok_or(Error::Closed)?;
        sender
            .send(Command::Append(append))
            .await
            .map_err(|_| Error::Closed)?;
        wait.await.map_err(|_| Error::Closed)?
    }

    /// Commits `append` as a group of its own on the calling thread when the writer is idle
    /// and the disk answered the last sync within `in_place_sync_max`. A lone writer (one
    /// connection sending single-row `INSERT`s) then pays no hand-off to the writer thread
    /// and back: on a VM those two wake-ups cost about as much CPU as the `fdatasync`
    /// (BENCHMARKS.md, "Lone writes committed in place"). Only on a multi-thread runtime,
    /// whose other workers take this one's queued tasks while it waits for the disk; a slow
    /// disk (a flush's writeback in the way) sends appends back to the thread, so a worker is
    /// never held for long. Gives `append` back when it cannot be committed here.
    fn commit_in_place(&self, append: Append) -> std::result::Result<(), Append> {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if !multi_thread {
            return Err(append);
        }
        let Some(state) = self.state.lock().clone() else {
            return Err(append);
        };
        let Some(mut writer) = state.try_lock() else {
            return Err(append);
        };
        // `close` marks the WAL closed before it stops the thread, and the thread trims the
        // last segment under this lock: a record committed here after that is refused.
        if self.closed.load(Ordering::Acquire) || writer.last_sync > self.options.in_place_sync_max
        {
            return Err(append);
        }
        writer.commit(&mut vec![append]);
        Ok(())
    }

    /// Deletes every closed segment whose records all have a sequence `<= upto`.
    /// Call only once the Delta commits covering those records are durable.
    pub fn trim(&self, upto: Seq) -> Result<usize> {
        let mut segments = self.segments.lock();
        let mut removed = 0;
        while segments.list.len() > 1 {
            let last_in_first = Seq(segments.list[1].first.0.saturating_sub(1));
            if last_in_first > upto {
                break;
            }
            let segment = segments.list.remove(0);
            fs::remove_file(&segment.path).map_err(io_err(&segment.path))?;
            removed += 1;
        }
        if removed > 0 {
            sync_dir(&segments.dir)?;
        }
        Ok(removed)
    }

    /// Number of segment files on disk.
    pub fn segment_count(&self) -> usize {
        self.segments.lock().list.len()
    }

    /// Refuses new appends, lets the writer commit everything already queued, and stops it.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let sender = self.sender.lock().take();
        if let Some(sender) = sender {
            let _ = sender.send(Command::Stop).await;
        }
        let handle = self.writer.lock().take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

struct Writer {
    file: File,
    path: PathBuf,
    /// Bytes of records in the current segment: where the next group is written.
    written: u64,
    /// The segment's length on disk, `written` plus the zeros written ahead of it.
    zeroed: u64,
    next: Seq,
    options: WalOptions,
    segments: Arc<Mutex<Segments>>,
    poisoned: Arc<Mutex<Option<String>>>,
    /// How long the last commit's write and sync took.
    last_sync: std::time::Duration,
}

impl Writer {
    /// The writer thread: commits what is queued, in groups, holding `state` for each.
    fn run(state: Arc<Mutex<Writer>>, mut receiver: mpsc::Receiver<Command>) {
        let mut group: Vec<Append> = Vec::new();
        // A checked request that came in behind a group: it runs once the group is applied.
        let mut held: Option<Append> = None;
        let mut stopping = false;
        loop {
            let first = match held.take() {
                Some(append) => append,
                None if stopping => break,
                None => match receiver.blocking_recv() {
                    Some(Command::Append(append)) => append,
                    Some(Command::Stop) | None => break,
                },
            };
            let mut writer = state.lock();
            if matches!(first.then, Then::Check(_)) {
                writer.commit_checked(first);
                continue;
            }
            let mut bytes = first.payload.len();
            group.push(first);
            while bytes < writer.options.group_max_bytes && !stopping {
                match receiver.try_recv() {
                    Ok(Command::Append(append)) if matches!(append.then, Then::Check(_)) => {
                        held = Some(append);
                        break;
                    }
                    Ok(Command::Append(append)) => {
                        bytes += append.payload.len();
                        group.push(append);
                    }
                    Ok(Command::Stop) => stopping = true,
                    Err(_) => break,
                }
            }
            writer.commit(&mut group);
        }
        // A stopped WAL leaves its last segment without the zeros written ahead, as a build
        // that does not write them would; a crash leaves them for replay to recognise.
        let mut writer = state.lock();
        if let Err(e) = writer.drop_zeros() {
            tracing::warn!(segment = %writer.path.display(), "cannot trim the WAL segment's zeros: {e}");
        }
    }

    /// Writes zeros ahead of a small group so that the segment does not grow with each
    /// commit: on ext4 and XFS an `fdatasync` after a write that extends the file must also
    /// write the inode (or commit the journal) to record the new size, a second synchronous
    /// I/O per commit; into zeros already on disk it writes the data alone. PostgreSQL
    /// zero-fills its WAL segments for the same reason. Groups of [`ZERO_AHEAD_BELOW`] or
    /// more (bulk loads, or many writers at once) are not preceded by zeros: the size update
    /// is then a small share of their write, and zeros would double the bytes written at the
    /// rates where disk bandwidth counts.
    fn zero_ahead(&mut self, len: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        static ZEROS: [u8; ZERO_AHEAD_BYTES as usize] = [0; ZERO_AHEAD_BYTES as usize];
        let end = self.written + len;
        if end <= self.zeroed || len >= ZERO_AHEAD_BELOW {
            return Ok(());
        }
        let from = self.zeroed.max(self.written);
        let to = end.next_multiple_of(ZERO_AHEAD_BYTES);
        let mut at = from;
        while at < to {
            let n = (to - at).min(ZERO_AHEAD_BYTES) as usize;
            self.file.write_all_at(&ZEROS[..n], at)?;
            at += n as u64;
        }
        self.zeroed = to;
        Ok(())
    }

    /// Cuts the current segment back to its records, durably.
    fn drop_zeros(&mut self) -> io::Result<()> {
        if self.zeroed > self.written {
            self.file.set_len(self.written)?;
            self.file.sync_all()?;
            self.zeroed = self.written;
        }
        Ok(())
    }

    /// Runs a checked request's check against the buffer as every record before it left it,
    /// then commits it as a group of its own, or answers [`Error::Declined`].
    fn commit_checked(&mut self, append: Append) {
        let Append {
            payload,
            kind,
            then,
            done,
        } = append;
        let apply = match then {
            Then::Apply(apply) => Some(apply),
            Then::Check(check) => {
                if let Some(reason) = self.poisoned.lock().clone() {
                    let _ = done.send(Err(Error::Poisoned(reason)));
                    return;
                }
                check(self.next)
            }
        };
        match apply {
            Some(apply) => self.commit(&mut vec![Append {
                payload,
                kind,
                then: Then::Apply(apply),
                done,
            }]),
            None => {
                let _ = done.send(Err(Error::Declined));
            }
        }
    }

    /// Writes and syncs a group, then applies and acknowledges each record in order.
    fn commit(&mut self, group: &mut Vec<Append>) {
        if let Some(reason) = self.poisoned.lock().clone() {
            for append in group.drain(..) {
                let _ = append.done.send(Err(Error::Poisoned(reason.clone())));
            }
            return;
        }
        let first = self.next;
        let mut seq = first;
        let headers: Vec<[u8; HEADER_LEN]> = group
            .iter()
            .map(|append| {
                let header = record_header(seq, &append.payload, append.kind);
                seq = seq.next();
                header
            })
            .collect();
        let mut slices: Vec<IoSlice> = headers
            .iter()
            .zip(group.iter())
            .flat_map(|(header, append)| [IoSlice::new(header), IoSlice::new(&append.payload)])
            .collect();
        let len: usize = slices.iter().map(|s| s.len()).sum();
        let started = std::time::Instant::now();
        let result = self
            .zero_ahead(len as u64)
            .and_then(|()| write_all_vectored(&mut self.file, &mut slices))
            .and_then(|()| self.file.sync_data())
            .map_err(|e| e.to_string());
        match result {
            Ok(()) => {
                self.last_sync = started.elapsed();
                let metrics = crate::metrics::get();
                metrics.wal_bytes.inc_by(len as u64);
                metrics
                    .wal_sync_seconds
                    .observe(self.last_sync.as_secs_f64());
                self.written += len as u64;
                self.zeroed = self.zeroed.max(self.written);
                self.next = seq;
                // Rotate before acknowledging so the segment list is settled when writers resume.
                // The group is durable either way; a failed rotation stops later writes.
                if self.written >= self.options.segment_bytes
                    && let Err(e) = self.rotate()
                {
                    tracing::error!("cannot start a new WAL segment: {e}");
                    *self.poisoned.lock() = Some(e.to_string());
                }
                // Apply the whole group in sequence order, then acknowledge it.
                let mut acks = Vec::with_capacity(group.len());
                let mut seq = first;
                for append in group.drain(..) {
                    if let Then::Apply(apply) = append.then {
                        apply(seq);
                    }
                    acks.push((append.done, seq));
                    seq = seq.next();
                }
                for (done, seq) in acks {
                    let _ = done.send(Ok(seq));
                }
            }
            Err(reason) => {
                tracing::error!(segment = %self.path.display(), "WAL write or fsync failed: {reason}");
                *self.poisoned.lock() = Some(reason.clone());
                for append in group.drain(..) {
                    let _ = append.done.send(Err(Error::Poisoned(reason.clone())));
                }
            }
        }
    }

    fn rotate(&mut self) -> Result<()> {
        // Before the next segment exists: only the last segment may end in zeros.
        self.drop_zeros().map_err(io_err(&self.path))?;
        let dir = self.segments.lock().dir.clone();
        let path = Segments::path_for(&dir, self.next);
        let (file, written) = open_segment(&path)?;
        sync_dir(&dir)?;
        self.segments.lock().list.push(Segment {
            first: self.next,
            path: path.clone(),
        });
        self.file = file;
        self.path = path;
        self.written = written;
        self.zeroed = written;
        Ok(())
    }
}

/// The header of record `seq` of `kind` holding `payload`.
fn record_header(seq: Seq, payload: &[u8], kind: Kind) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    header[4] = match kind {
        Kind::Rows => VERSION,
        Kind::Carried => VERSION_CARRIED,
        Kind::Change => VERSION_CHANGE,
    };
    header[8..16].copy_from_slice(&seq.0.to_le_bytes());
    header[16..20].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[4..20]), payload);
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Appends one record to `buf` (tests build segments by hand with it).
#[cfg(test)]
fn write_record(buf: &mut Vec<u8>, seq: Seq, payload: &[u8]) {
    buf.extend_from_slice(&record_header(seq, payload, Kind::Rows));
    buf.extend_from_slice(payload);
}

/// Opens (or creates) a segment for writing after its last byte; returns it and its length.
fn open_segment(path: &Path) -> Result<(File, u64)> {
    use std::io::{Seek, SeekFrom};
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    let len = file.seek(SeekFrom::End(0)).map_err(io_err(path))?;
    Ok((file, len))
}

/// `Write::write_all_vectored`, which is not stable yet: writes every slice, in order.
fn write_all_vectored(file: &mut File, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One record as parsed from a segment.
pub(crate) struct Record<'a> {
    pub seq: Seq,
    pub payload: &'a [u8],
    /// The record's length in the segment, header included.
    pub len: usize,
    pub kind: Kind,
}

/// Parses the record at the start of `data`, or says why it is invalid.
pub(crate) fn parse_record(data: &[u8]) -> std::result::Result<Record<'_>, String> {
    if data.len() < HEADER_LEN {
        return Err(format!(
            "{} bytes left, shorter than a record header",
            data.len()
        ));
    }
    let u32_at = |o: usize| u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
    if u32_at(0) != MAGIC {
        return Err("bad magic".into());
    }
    let kind = match data[4] {
        VERSION => Kind::Rows,
        VERSION_CARRIED => Kind::Carried,
        VERSION_CHANGE => Kind::Change,
        version => return Err(format!("unknown record version {version}")),
    };
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&data[8..16]);
    let len = u32_at(16) as usize;
    let total = HEADER_LEN + len;
    if data.len() < total {
        return Err(format!(
            "record of {len} payload bytes runs past the end of the segment"
        ));
    }
    let payload = &data[HEADER_LEN..total];
    let crc = crc32c::crc32c_append(crc32c::crc32c(&data[4..20]), payload);
    if crc != u32_at(20) {
        return Err("CRC32C mismatch".into());
    }
    Ok(Record {
        seq: Seq(u64::from_le_bytes(seq)),
        payload,
        len: total,
        kind,
    })
}

fn split_payload(payload: &[u8]) -> std::result::Result<(&str, &[u8]), String> {
    if payload.len() < 2 {
        return Err("payload too short for a table name".into());
    }
    let n = u16::from_le_bytes([payload[0], payload[1]]) as usize;
    let name = payload
        .get(2..2 + n)
        .ok_or("table name runs past the payload")?;
    let name = std::str::from_utf8(name).map_err(|_| "table name is not UTF-8".to_string())?;
    Ok((name, &payload[2 + n..]))
}

/// Cuts the segment at `path` to `len` bytes, durably.
fn truncate(path: &Path, len: u64) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    file.set_len(len).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Corrupts one byte of a segment in place.
#[cfg(test)]
fn flip_byte(path: &Path, offset: u64) {
    use std::io::{Seek, SeekFrom};
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut byte = [0u8];
    file.seek(SeekFrom::Start(offset)).expect("seek");
    file.read_exact(&mut byte).expect("read");
    file.seek(SeekFrom::Start(offset)).expect("seek");
    file.write_all(&[byte[0] ^ 0xff]).expect("write");
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::atomic::AtomicU64;

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let strings: Vec<Option<String>> =
            values.iter().map(|v| Some(format!("row {v}"))).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(values.to_vec())),
                Arc::new(StringArray::from(strings)),
            ],
        )
        .expect("batch")
    }

    fn options() -> WalOptions {
        WalOptions {
            segment_bytes: 1 << 20,
            group_max_bytes: 1 << 20,
            compression: WalCompression::Zstd,
            // A test asserts where records were committed, whatever this disk's sync takes.
            in_place_sync_max: std::time::Duration::MAX,
        }
    }

    fn replay_all(wal: &Wal) -> Result<Vec<(Seq, String, RecordBatch)>> {
        let mut out = Vec::new();
        wal.replay(|r| {
            out.push((r.seq, r.table.to_string(), decode_batch(r.ipc)?));
            Ok(())
        })?;
        Ok(out)
    }

    async fn append_n(wal: &Wal, n: i64) -> Vec<Seq> {
        let mut seqs = Vec::new();
        for i in 0..n {
            seqs.push(
                wal.append("t", batch(&[i, i + 100]), Box::new(|_| {}))
                    .await
                    .expect("append"),
            );
        }
        seqs
    }

    /// Every setting writes records that every setting replays, so the knob can change
    /// between restarts; compressed records of repetitive rows are smaller.
    #[tokio::test]
    async fn records_of_every_compression_replay_after_a_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rows: Vec<i64> = (0..2_000).collect();
        let mut next = Seq(1);
        let mut sizes = Vec::new();
        for compression in [
            WalCompression::None,
            WalCompression::Lz4,
            WalCompression::Zstd,
        ] {
            let wal = Wal::open(
                dir.path(),
                WalOptions {
                    compression,
                    ..options()
                },
            )
            .expect("open");
            let before = wal.replay(|_| Ok(())).expect("replay");
            assert_eq!(before, (next.0 > 1).then(|| Seq(next.0 - 1)));
            wal.start(next).expect("start");
            let size = |wal: &Wal| -> u64 {
                let list = &wal.segments.lock().list;
                list.iter()
                    .map(|s| fs::metadata(&s.path).map(|m| m.len()).unwrap_or(0))
                    .sum()
            };
            let start = size(&wal);
            wal.append("t", batch(&rows), Box::new(|_| {}))
                .await
                .expect("append");
            // Closing cuts the zeros written ahead of the record.
            wal.close().await;
            sizes.push(size(&wal) - start);
            next = next.next();
        }
        let wal = Wal::open(dir.path(), options()).expect("reopen");
        let records = replay_all(&wal).expect("replay");
        assert_eq!(records.len(), 3);
        for (_, table, replayed) in records {
            assert_eq!(table, "t");
            assert_eq!(replayed, batch(&rows));
        }
        let [none, lz4, zstd] = sizes[..] else {
            panic!("three sizes")
        };
        assert!(lz4 < none, "lz4 {lz4} bytes vs uncompressed {none}");
        assert!(zstd < lz4, "zstd {zstd} bytes vs lz4 {lz4}");
    }

    #[test]
    fn zstd_leaves_short_streams_as_they_are_and_both_decode() {
        let short = batch(&[1, 2, 3]);
        let long = batch(&(0..2_000).collect::<Vec<i64>>());
        let short_payload = encode_batch(&short, WalCompression::Zstd).expect("encode");
        let long_payload = encode_batch(&long, WalCompression::Zstd).expect("encode");
        assert!(short_payload.len() < ZSTD_MIN_BYTES);
        assert!(!short_payload.starts_with(&ZSTD_MAGIC));
        assert!(long_payload.starts_with(&ZSTD_MAGIC));
        assert_eq!(decode_batch(&short_payload).expect("decode"), short);
        assert_eq!(decode_batch(&long_payload).expect("decode"), long);
    }

    /// A writer waiting for its group commit holds the encoded record only: the batch it
    /// appended (a client's message, under DoPut) is released before the wait.
    #[tokio::test]
    async fn an_appended_batch_is_released_before_the_wait_for_the_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Wal::open(dir.path(), options()).expect("open");
        wal.start(Seq(1)).expect("start");
        let sent = batch(&[1, 2, 3]);
        let strings = sent.column(1).to_data().buffers()[1].clone();
        assert_eq!(strings.strong_count(), 2);
        let append = wal.append("t", sent, Box::new(|_| {}));
        tokio::pin!(append);
        // One poll encodes and hands the record over; the future then waits for the disk
        // (it is not polled again, so it holds whatever it held at that point).
        assert!(futures::poll!(&mut append).is_pending());
        assert_eq!(strings.strong_count(), 1, "the batch outlived its encoding");
        append.await.expect("append");
        wal.close().await;
    }

    /// Records from before whole-payload zstd: an IPC stream whose buffers arrow-ipc compressed
    /// with zstd, in a segment written by hand. Replay must still read them, next to new ones.
    #[tokio::test]
    async fn records_with_zstd_compressed_ipc_buffers_still_replay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old_rows: Vec<i64> = (0..2_000).collect();
        let per_buffer_zstd = IpcWriteOptions::default()
            .try_with_compression(Some(CompressionType::ZSTD))
            .expect("zstd");
        let mut payload = vec![1, 0, b't'];
        write_ipc(&mut payload, &batch(&old_rows), &per_buffer_zstd).expect("encode");
        assert!(!payload[3..].starts_with(&ZSTD_MAGIC));
        let mut segment = Vec::new();
        write_record(&mut segment, Seq(1), &payload);
        fs::write(Segments::path_for(dir.path(), Seq(1)), segment).expect("write segment");

        let wal = Wal::open(dir.path(), options()).expect("open");
        assert_eq!(wal.replay(|_| Ok(())).expect("replay"), Some(Seq(1)));
        wal.start(Seq(2)).expect("start");
        wal.append("t", batch(&[7, 8]), Box::new(|_| {}))
            .await
            .expect("append");
        wal.close().await;
        drop(wal);

        let wal = Wal::open(dir.path(), options()).expect("reopen");
        let records = replay_all(&wal).expect("replay");
        let replayed: Vec<(Seq, RecordBatch)> =
            records.into_iter().map(|(s, _, b)| (s, b)).collect();
        assert_eq!(
            replayed,
            vec![(Seq(1), batch(&old_rows)), (Seq(2), batch(&[7, 8]))]
        );
    }

    #[test]
    fn zstd_payloads_are_one_frame_and_the_held_stream_is_bounded() {
        let rows: Vec<i64> = (0..100_000).collect();
        let encoded = encode_batch(&batch(&rows), WalCompression::Zstd).expect("encode");
        assert!(encoded.starts_with(&ZSTD_MAGIC));
        assert_eq!(decode_batch(&encoded).expect("decode"), batch(&rows));
        let held = SCRATCH.with_borrow(|s| s.held.capacity());
        assert!(held <= 2 * ZSTD_MIN_BYTES, "held {held} bytes");
        // Streams on either side of the threshold: shorter ones as they are, the rest one
        // frame, and every one decodes to its batch.
        let (mut plain, mut framed) = (0, 0);
        for n in (200..1_200).step_by(7) {
            let b = batch(&(0..n).collect::<Vec<i64>>());
            let mut ipc = Vec::new();
            write_ipc(&mut ipc, &b, &ipc_options()).expect("ipc");
            let encoded = encode_batch(&b, WalCompression::Zstd).expect("encode");
            if ipc.len() < ZSTD_MIN_BYTES {
                assert_eq!(encoded, ipc, "{n} rows");
                plain += 1;
            } else {
                assert!(encoded.starts_with(&ZSTD_MAGIC), "{n} rows");
                framed += 1;
            }
            assert_eq!(decode_batch(&encoded).expect("decode"), b, "{n} rows");
        }
        assert!(plain > 0 && framed > 0, "{plain} plain, {framed} framed");
    }

    #[tokio::test]
    async fn round_trip_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Wal::open(dir.path(), options()).expect("open");
        let id = wal.id().to_string();
        assert_eq!(wal.replay(|_| Ok(())).expect("replay"), None);
        wal.start(Seq(1)).expect("start");
        let seqs = append_n(&wal, 5).await;
        assert_eq!(seqs, (1..=5).map(Seq).collect::<Vec<_>>());
        wal.close().await;
        drop(wal);

        let wal = Wal::open(dir.path(), options()).expect("reopen");
        assert_eq!(wal.id(), id, "the WAL id is stable across restarts");
        let records = replay_all(&wal).expect("replay");
        assert_eq!(records.len(), 5);
        assert_eq!(records[2].0, Seq(3));
        assert_eq!(records[2].1, "t");
        assert_eq!(records[2].2, batch(&[2, 102]));
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_a_locked_wal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _wal = Wal::open(dir.path(), options()).expect("open");
        assert!(matches!(
            Wal::open(dir.path(), options()),
            Err(Error::Locked(_))
        ));
    }

    #[tokio::test]
    async fn torn_tail_is_truncated_and_writing_resumes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Wal::open(dir.path(), options()).expect("open");
        wal.start(Seq(1)).expect("start");
        append_n(&wal, 3).await;
        wal.close().await;
        drop(wal);
        let segment = dir.path().join(format!("{:020}.wal", 1));
        let full = fs::metadata(&segment).expect("meta").len();
        // A crash mid-write leaves half a record at the end.
        let mut file = OpenOptions::new()
            .append(true)
            .open(&segment)
            .expect("open");
        let mut partial = Vec::new();
        write_record(&mut partial, Seq(4), b"\x01\x00tpartial payload");
        file.write_all(&partial[..partial.len() - 5])
            .expect("write");
        drop(file);

        let wal = Wal::open(dir.path(), options()).expect("reopen");
        let records = replay_all(&wal).expect("replay truncates the torn tail");
        assert_eq!(records.len(), 3);
        assert_eq!(fs::metadata(&segment).expect("meta").len(), full);
        wal.start(Seq(4)).expect("start");
        assert_eq!(append_n(&wal, 1).await, vec![Seq(4)]);
        wal.close().await;
        drop(wal);
        let wal = Wal::open(dir.path(), options()).expect("reopen");
        assert_eq!(replay_all(&wal).expect("replay").len(), 4);
    }

    #[tokio::test]
    async fn zeros_written_ahead_are_cut_on_close_and_after_a_crash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let segment = dir.path().join(format!("{:020}.wal", 1));
        let wal = Wal::open(dir.path(), options()).expect("open");
        wal.start(Seq(1)).expect("start");
        append_n(&wal, 3).await;
        // Small records land in zeros written ahead: the file is longer than its records.
        assert_eq!(
            fs::metadata(&segment).expect("meta").len(),
            ZERO_AHEAD_BYTES
        );
        wal.close().await;
        drop(wal);
        let records = fs::metadata(&segment).expect("meta").len();
        assert!(records > 0 && records < ZERO_AHEAD_BYTES, "{records} bytes");

        // What a crash leaves: the zeros after the records, then also a torn record in them.
        for torn in [false, true] {
            let mut data = fs::read(&segment).expect("read");
            data.truncate(records as usize);
            if torn {
                let mut partial = Vec::new();
                write_record(&mut partial, Seq(4), b"\x01\x00tpartial payload");
                data.extend_from_slice(&partial[..partial.len() - 5]);
            }
            data.resize(ZERO_AHEAD_BYTES as usize, 0);
            fs::write(&segment, &data).expect("write");
            let wal = Wal::open(dir.path(), options()).expect("reopen");
            let replayed = replay_all(&wal).expect("replay cuts the zeros off");
            assert_eq!(replayed.len(), 3, "torn: {torn}");
            assert_eq!(fs::metadata(&segment).expect("meta").len(), records);
        }

        // Writing resumes in a new segment; zeros left in a segment before the last one are
        // not a clean end (the writer cuts them before it rotates), so they stop replay.
        let wal = Wal::open(dir.path(), options()).expect("reopen");
        wal.start(Seq(4)).expect("start");
        assert_eq!(append_n(&wal, 1).await, vec![Seq(4)]);
        wal.close().await;
        drop(wal);
        let mut data = fs::read(&segment).expect("read");
        data.resize(ZERO_AHEAD_BYTES as usize, 0);
        fs::write(&segment, &data).expect("write");
        let wal = Wal::open(dir.path(), options()).expect("reopen");
        assert!(matches!(replay_all(&wal), Err(Error::Corrupt { .. })));
    }

    #[tokio::test]
    async fn a_large_group_is_written_without_zeros_ahead() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Wal::open(
            dir.path(),
            WalOptions {
                compression: WalCompression::None,
                ..options()
            },
        )
        .expect("open");
        wal.start(Seq(1)).expect("start");
        let rows: Vec<i64> = (0..10_000).collect();
        wal.append("t", batch(&rows), Box::new(|_| {}))
            .await
            .expect("append");
        let segment = dir.path().join(format!("{:020}.wal", 1));
        let len = fs::metadata(&segment).expect("meta").len();
        assert!(len >= ZERO_AHEAD_BELOW, "{len} bytes");
        assert_ne!(
            len % ZERO_AHEAD_BYTES,
            0,
            "{len} bytes: zeros were written ahead"
        );
        wal.close().await;
        assert_eq!(fs::metadata(&segment).expect("meta").len(), len);
    }

    #[tokio::test]
    async fn crc_failure_in_the_middle_is_reported_not_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Wal::open(dir.path(), options()).expect("open");
        wal.start(Seq(1)).expect("start");
        append_n(&wal, 3).await;
        wal.close().await;
        drop(wal);
        let segment = dir.path().join(format!("{:020}.wal", 1));
        flip_byte(&segment, HEADER_LEN as u64 + 10); // inside the first record's payload

        let wal = Wal::open(dir.path(), options()).expect("reopen");
        match replay_all(&wal) {
            Err(Error::Corrupt { offset, reason, .. }) => {
                assert_eq!(offset, 0);
                assert!(reason.contains("CRC32C"), "{reason}");
            }
            other => panic!("expected corruption, got {:?}", other.map(|r| r.len())),
        }
    }

    #[tokio::test]
    async fn crc_failure_of_the_last_record_is_a_torn_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Wal::open(dir.path(), options()).expect("open");
        wal.start(Seq(1)).expect("start");
        append_n(&wal, 2).await;
        wal.close().await;
        drop(wal);
        let segment = dir.path().join(format!("{:020}.wal", 1));
        let len = fs::metadata(&segment).expect("meta").len();
        flip_byte(&segment, len - 1);
        let wal = Wal::open(dir.path(), options()).expect("reopen");
        assert_eq!(replay_all(&wal).expect("replay").len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_share_fsyncs_and_apply_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Arc::new(Wal::open(dir.path(), options()).expect("open"));
        wal.start(Seq(1)).expect("start");
        let applied = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for w in 0..16 {
            let wal = wal.clone();
            let applied = applied.clone();
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..50 {
                    let applied = applied.clone();
                    let seq = wal
                        .append(
                            "t",
                            batch(&[w * 1000 + i]),
                            Box::new(move |s| applied.lock().push(s)),
                        )
                        .await
                        .expect("append");
                    // Acknowledged means applied already.
                    seqs.push(seq);
                }
                seqs
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("task"));
        }
        all.sort();
        assert_eq!(all, (1..=800).map(Seq).collect::<Vec<_>>());
        let applied = applied.lock().clone();
        assert_eq!(
            applied,
            (1..=800).map(Seq).collect::<Vec<_>>(),
            "applied in sequence order"
        );
        wal.close().await;
    }

    /// A lone append on a multi-thread runtime is written, synced and applied by its own task,
    /// not by the writer thread, unless it asks for the thread; appends made while another
    /// holds the writer go to the thread; all of them replay.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_append_commits_in_place_and_others_queue_for_the_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Arc::new(Wal::open(dir.path(), options()).expect("open"));
        wal.start(Seq(1)).expect("start");
        let thread_name = || {
            std::thread::current()
                .name()
                .unwrap_or_default()
                .to_string()
        };
        let applied_on = Arc::new(Mutex::new(Vec::new()));
        for i in 0..3 {
            let applied_on = applied_on.clone();
            let seq = wal
                .append(
                    "t",
                    batch(&[i]),
                    Box::new(move |s| applied_on.lock().push((s, thread_name()))),
                )
                .await
                .expect("append");
            assert_eq!(seq, Seq(i as u64 + 1));
        }
        for (seq, thread) in applied_on.lock().iter() {
            assert_ne!(
                thread, "timefusion-wal",
                "record {seq} went to the writer thread"
            );
        }
        // An append for the thread goes there even when alone.
        let on_thread = applied_on.clone();
        wal.append_by(
            Committer::Thread,
            "t",
            batch(&[3]),
            Box::new(move |s| on_thread.lock().push((s, thread_name()))),
        )
        .await
        .expect("append");
        assert_eq!(
            applied_on.lock().last(),
            Some(&(Seq(4), "timefusion-wal".to_string()))
        );
        // While one append holds the writer (its apply waits for a signal), another is under
        // way: it cannot commit in place, so the thread commits it once the writer is free.
        let (entered, wait_entered) = std::sync::mpsc::channel();
        let (release, wait_release) = std::sync::mpsc::channel::<()>();
        let holder = {
            let wal = wal.clone();
            tokio::spawn(async move {
                wal.append(
                    "t",
                    batch(&[10]),
                    Box::new(move |_| {
                        entered.send(()).expect("signal");
                        wait_release.recv().expect("release");
                    }),
                )
                .await
            })
        };
        tokio::task::spawn_blocking(move || wait_entered.recv().expect("entered"))
            .await
            .expect("join");
        let queued = {
            let (wal, applied_on) = (wal.clone(), applied_on.clone());
            tokio::spawn(async move {
                wal.append(
                    "t",
                    batch(&[11]),
                    Box::new(move |s| applied_on.lock().push((s, thread_name()))),
                )
                .await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!queued.is_finished(), "committed while the writer was held");
        release.send(()).expect("release");
        assert_eq!(holder.await.expect("join").expect("append"), Seq(5));
        assert_eq!(queued.await.expect("join").expect("append"), Seq(6));
        assert_eq!(
            applied_on.lock().last(),
            Some(&(Seq(6), "timefusion-wal".to_string()))
        );
        wal.close().await;
        drop(wal);
        let wal = Wal::open(dir.path(), options()).expect("reopen");
        let values: Vec<Seq> = replay_all(&wal)
            .expect("replay")
            .into_iter()
            .map(|(seq, _, _)| seq)
            .collect();
        assert_eq!(values, (1..=6).map(Seq).collect::<Vec<_>>());
    }

    /// A checked record's check runs once every record before it is applied and before any
    /// after it is; a declined one writes nothing and takes no sequence; a passed one replays
    /// as a change record with its body.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn checked_records_see_every_earlier_record_applied_and_decline_without_a_trace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Arc::new(Wal::open(dir.path(), options()).expect("open"));
        wal.start(Seq(1)).expect("start");
        // Every sequence applied, rows and changes alike, in the order applied.
        let applied = Arc::new(Mutex::new(Vec::new()));
        let mut writers = Vec::new();
        for w in 0..8 {
            let (wal, applied) = (wal.clone(), applied.clone());
            writers.push(tokio::spawn(async move {
                for i in 0..40 {
                    let applied = applied.clone();
                    let apply = Box::new(move |s| applied.lock().push(s));
                    wal.append("t", batch(&[w * 100 + i]), apply)
                        .await
                        .expect("append");
                }
            }));
        }
        let mut logged = Vec::new();
        for round in 0..20u8 {
            let seen = applied.clone();
            let check: Check = Box::new(move |seq| {
                {
                    let seen = seen.lock();
                    // Everything below the record is applied, nothing above it.
                    assert_eq!(seen.len() as u64, seq.0 - 1, "at {seq}");
                    assert!(seen.iter().all(|s| *s < seq));
                }
                (round % 2 == 0).then(|| -> Apply { Box::new(move |s| seen.lock().push(s)) })
            });
            match wal
                .append_checked("t", &[round], check)
                .await
                .expect("append")
            {
                Some(seq) => {
                    assert_eq!(round % 2, 0);
                    logged.push((seq, round));
                }
                None => assert_eq!(round % 2, 1, "declined"),
            }
        }
        for writer in writers {
            writer.await.expect("writer");
        }
        wal.close().await;
        assert_eq!(logged.len(), 10);
        let applied = applied.lock().clone();
        assert_eq!(
            applied,
            (1..=330).map(Seq).collect::<Vec<_>>(),
            "applied in order, no gap where a check declined"
        );
        drop(wal);
        let wal = Wal::open(dir.path(), options()).expect("reopen");
        let mut changes = Vec::new();
        let last = wal
            .replay(|r| {
                if r.kind == Kind::Change {
                    changes.push((r.seq, r.ipc[0]));
                }
                Ok(())
            })
            .expect("replay");
        assert_eq!(last, Some(Seq(330)));
        assert_eq!(changes, logged);
    }

    #[tokio::test]
    async fn group_commit_batches_queued_records_into_one_sync() {
        // Records queued before the writer starts are committed as one group: the writer
        // applies them all before acknowledging any, which the counter observes.
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Arc::new(Wal::open(dir.path(), options()).expect("open"));
        let applied = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel(4096);
        let mut waits = Vec::new();
        for i in 0..10 {
            let (done, wait) = oneshot::channel();
            let applied = applied.clone();
            let payload = {
                let mut p = vec![1u8, 0, b't'];
                p.extend(encode_batch(&batch(&[i]), WalCompression::None).expect("encode"));
                p
            };
            tx.try_send(Command::Append(Append {
                payload,
                kind: Kind::Rows,
                then: Then::Apply(Box::new(move |_| {
                    applied.fetch_add(1, Ordering::SeqCst);
                })),
                done,
            }))
            .map_err(|_| "queue full")
            .expect("queue");
            waits.push(wait);
        }
        let path = Segments::path_for(dir.path(), Seq(1));
        let (file, written) = open_segment(&path).expect("file");
        let writer = Writer {
            file,
            path,
            written,
            zeroed: written,
            next: Seq(1),
            options: options(),
            segments: wal.segments.clone(),
            poisoned: wal.poisoned.clone(),
            last_sync: std::time::Duration::ZERO,
        };
        tx.try_send(Command::Stop)
            .map_err(|_| "queue full")
            .expect("stop");
        let handle = std::thread::spawn(move || Writer::run(Arc::new(Mutex::new(writer)), rx));
        let first = waits.remove(0).await.expect("ack").expect("ok");
        assert_eq!(first, Seq(1));
        assert_eq!(
            applied.load(Ordering::SeqCst),
            10,
            "all ten applied in the first group"
        );
        handle.join().expect("join");
    }

    #[tokio::test]
    async fn trim_removes_only_covered_closed_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let small = WalOptions {
            segment_bytes: 1,
            group_max_bytes: 1,
            compression: WalCompression::None,
            ..options()
        };
        let wal = Wal::open(dir.path(), small).expect("open");
        wal.start(Seq(1)).expect("start");
        append_n(&wal, 4).await; // every record rotates: segments 1,2,3,4 and active 5
        assert_eq!(wal.segment_count(), 5);
        assert_eq!(wal.trim(Seq(2)).expect("trim"), 2);
        assert_eq!(wal.segment_count(), 3);
        assert_eq!(
            wal.trim(Seq(100)).expect("trim"),
            2,
            "the active segment stays"
        );
        assert_eq!(wal.segment_count(), 1);
        wal.close().await;
        drop(wal);
        let wal = Wal::open(dir.path(), options()).expect("reopen");
        assert_eq!(
            wal.replay(|_| Ok(())).expect("replay"),
            Some(Seq(4)),
            "sequence survives trimming"
        );
    }
}
