//! DoPut: Arrow IPC batches streamed into the engine's write path, each acknowledged with a
//! `PutResult` once durable, a few in flight per stream; [`PutDecoder`] decodes each message's
//! arrays as views into the received body.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::ipc::{self, MessageHeader};
use arrow_flight::FlightData;
use arrow_flight::sql::server::PeekableFlightDataStream;
use futures::{Stream, StreamExt};
use tokio::sync::OwnedSemaphorePermit;
use tonic::Status;

use crate::flight::{TimeFusionFlight, kib};

/// Batches of one DoPut stream that may be on their way into the WAL at once. Several per
/// stream let one group commit carry more rows; acknowledgements still come in stream order.
pub(crate) const PUT_PIPELINE: usize = 4;

/// How long a stream keeps room reserved for its next message while none arrives: an idle
/// stream then holds none of the in-flight budget.
const EARLY_ROOM_IDLE: Duration = Duration::from_millis(100);

/// Stores the decoded batches of a DoPut in `table`, yielding each batch's row count once
/// it is durable, in stream order. After an error, later batches of the stream that were
/// already on their way may be stored without having been acknowledged (as with any
/// unacknowledged write, the client cannot assume either way).
pub(crate) fn store_stream(
    service: TimeFusionFlight,
    table: String,
    data: PeekableFlightDataStream,
) -> impl Stream<Item = Result<usize, Status>> + Send + 'static {
    let admitting = Admitting {
        decoder: PutDecoder::new(service.max_decoded_bytes()),
        service: service.clone(),
        data,
        last_kib: 0,
    };
    futures::stream::unfold(admitting, |mut admitting| async move {
        let admitted = admitting.next().await?;
        Some((admitted, admitting))
    })
    .map(move |admitted| {
        let (service, table) = (service.clone(), table.clone());
        async move {
            let (batch, permit) = admitted?;
            service.store(&table, batch, permit).await
        }
    })
    .buffered(PUT_PIPELINE)
}

/// One DoPut stream's batches, each with its share of the in-flight budget.
struct Admitting {
    data: PeekableFlightDataStream,
    decoder: PutDecoder,
    service: TimeFusionFlight,
    /// The in-flight KiB of the stream's last batch: the room reserved for its next.
    last_kib: usize,
}

impl Admitting {
    /// The next batch and its permit; `None` at the stream's end.
    ///
    /// Room for a batch like the last one is reserved before the next message is read:
    /// tonic receives a whole message before it yields it, so a stream that read first and
    /// waited for room after held one message beyond the budget (8 streams of 8,192-row otel
    /// batches: ~110 MiB of a 512 MiB budget's heap, in a jemalloc profile). Waiting first,
    /// the message stays with the client, held back by HTTP/2 flow control. The room is
    /// let go if no message comes within [`EARLY_ROOM_IDLE`], and trimmed to the batch (or
    /// given back and the batch waited for whole) once it is decoded.
    async fn next(&mut self) -> Option<Result<(RecordBatch, OwnedSemaphorePermit), Status>> {
        let inflight = self.service.inflight();
        let shutting_down = || Status::unavailable("server shutting down");
        loop {
            let mut early = match self.last_kib {
                0 => None,
                kib => match inflight.admit_kib(kib).await {
                    Some(permit) => Some(permit),
                    None => return Some(Err(shutting_down())),
                },
            };
            let message = {
                let next = self.data.next();
                tokio::pin!(next);
                if early.is_some() {
                    tokio::select! {
                        message = &mut next => message,
                        () = tokio::time::sleep(EARLY_ROOM_IDLE) => {
                            early = None;
                            next.await
                        }
                    }
                } else {
                    next.await
                }
            };
            let batch = match message?.and_then(|message| self.decoder.decode(message)) {
                Ok(Some(batch)) => batch,
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            };
            self.last_kib = kib(&batch);
            return match inflight.admit_kib_with(early, self.last_kib).await {
                Some(permit) => Some(Ok((batch, permit))),
                None => Some(Err(shutting_down())),
            };
        }
    }
}

/// Decodes a DoPut's messages into record batches whose arrays point into the received
/// message bodies.
///
/// arrow-flight's `FlightRecordBatchStream` copies every body that does not start on a
/// 64-byte boundary, which inside a gRPC frame is nearly every body: one whole extra copy of
/// each batch, into freshly faulted memory, before `ingest` sees it (BENCHMARKS.md, "Profiles
/// behind the code"). Here only a buffer misaligned for its own type is copied
/// (an offsets or 64-bit values buffer), never the string bytes that make up most of an otel
/// batch. `ingest` charges the shared body to the buffer once (`owned_bytes`).
/// Rows a batch may declare whatever its size (see [`PutDecoder::check_sizes`]).
const MIN_ROWS: u64 = 4096;

pub(crate) struct PutDecoder {
    pub(crate) schema: Option<SchemaRef>,
    pub(crate) dictionaries: HashMap<i64, ArrayRef>,
    /// Most bytes one message's compressed buffers may decompress to.
    max_decoded_bytes: u64,
}

impl PutDecoder {
    pub(crate) fn new(max_decoded_bytes: u64) -> PutDecoder {
        PutDecoder {
            schema: None,
            dictionaries: HashMap::new(),
            max_decoded_bytes,
        }
    }

    /// Refuses a batch whose header asks arrow for more memory than its data can fill, before
    /// arrow allocates it (an allocation failure aborts the process; both found by
    /// `fuzz::flight_put`):
    /// - compressed buffers declare their decompressed length, which arrow-ipc allocates
    ///   first: a 100-byte message asked for 64 PiB. Their sum must stay within
    ///   `max_decoded_bytes`;
    /// - the row count: columns without buffers (none, `Null`, run-end encoded) take any
    ///   length, and `ingest::coerce` then builds the table's missing columns at that length.
    ///   A row must come with at least one byte of data, as every real row does (its
    ///   timestamp alone is 8 bytes; a dictionary key at least one); `Ingest::write` bounds
    ///   what the table's columns then take.
    fn check_sizes(&self, batch: ipc::RecordBatch, body: &[u8]) -> Result<(), Status> {
        let mut data_bytes = body.len() as u64;
        if batch.compression().is_some() {
            // Each compressed buffer starts with its decompressed length (-1: stored as is).
            let declared = |buffer: &ipc::Buffer| {
                let start = usize::try_from(buffer.offset()).ok()?;
                let prefix = body.get(start..start.checked_add(8)?)?;
                let length = i64::from_le_bytes(prefix.try_into().ok()?);
                u64::try_from(length).ok()
            };
            let total = batch
                .buffers()
                .into_iter()
                .flatten()
                .filter_map(declared)
                .fold(0u64, u64::saturating_add);
            if total > self.max_decoded_bytes {
                return Err(Status::invalid_argument(format!(
                    "invalid Arrow IPC data: a compressed batch declares {total} bytes decompressed, \
                     more than the {} bytes of TIMEFUSION_GRPC_MAX_INFLIGHT_MB",
                    self.max_decoded_bytes
                )));
            }
            data_bytes = data_bytes.max(total);
        }
        let rows = u64::try_from(batch.length()).unwrap_or(u64::MAX);
        if rows > data_bytes.saturating_add(MIN_ROWS) {
            return Err(Status::invalid_argument(format!(
                "invalid Arrow IPC data: a batch of {rows} rows in {data_bytes} bytes of data \
                 (a row needs at least one byte)"
            )));
        }
        Ok(())
    }

    /// The batch `data` carries, if any: schema and dictionary messages only update the state.
    ///
    /// arrow-ipc panics on some malformed messages instead of returning an error (a schema
    /// without fields, field types with impossible widths: `ipc::convert::fb_to_schema`,
    /// found by `fuzz::flight_put`); such a panic is this message's `INVALID_ARGUMENT`.
    pub(crate) fn decode(&mut self, data: FlightData) -> Result<Option<RecordBatch>, Status> {
        crate::panics::catch_now(|| self.read(data)).unwrap_or_else(|message| {
            // The state the panic interrupted is unknown: the stream must start over.
            self.schema = None;
            self.dictionaries.clear();
            Err(Status::invalid_argument(format!(
                "invalid Arrow IPC data: the decoder failed: {message}"
            )))
        })
    }

    fn read(&mut self, data: FlightData) -> Result<Option<RecordBatch>, Status> {
        let invalid = |e: &dyn std::fmt::Display| {
            Status::invalid_argument(format!("invalid Arrow IPC data: {e}"))
        };
        let message = ipc::root_as_message(&data.data_header).map_err(|e| invalid(&e))?;
        let schema = || {
            self.schema
                .clone()
                .ok_or_else(|| Status::invalid_argument("DoPut sent data before its schema"))
        };
        match message.header_type() {
            MessageHeader::Schema => {
                let schema = message
                    .header_as_schema()
                    .ok_or_else(|| invalid(&"schema message without a schema"))?;
                self.schema = Some(Arc::new(ipc::convert::fb_to_schema(schema)));
                self.dictionaries.clear();
                Ok(None)
            }
            MessageHeader::DictionaryBatch => {
                let schema = schema()?;
                let dictionary = message
                    .header_as_dictionary_batch()
                    .ok_or_else(|| invalid(&"dictionary message without a dictionary"))?;
                if let Some(batch) = dictionary.data() {
                    self.check_sizes(batch, &data.data_body)?;
                }
                ipc::reader::read_dictionary(
                    &Buffer::from(data.data_body),
                    dictionary,
                    &schema,
                    &mut self.dictionaries,
                    &message.version(),
                )
                .map_err(|e| invalid(&e))?;
                Ok(None)
            }
            MessageHeader::RecordBatch => {
                let schema = schema()?;
                let batch = message
                    .header_as_record_batch()
                    .ok_or_else(|| invalid(&"record batch message without a batch"))?;
                self.check_sizes(batch, &data.data_body)?;
                ipc::reader::read_record_batch(
                    &Buffer::from(data.data_body),
                    batch,
                    schema,
                    &self.dictionaries,
                    None,
                    &message.version(),
                )
                .map(Some)
                .map_err(|e| invalid(&e))
            }
            MessageHeader::NONE => Ok(None),
            other => Err(invalid(&format!("unexpected {other:?} message"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::StringArray;
    use arrow::ipc::CompressionType;
    use arrow::ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteOptions};
    use arrow_flight::SchemaAsIpc;

    use super::*;

    /// The schema message and the batch message of `batch`, as a DoPut client sends them.
    fn messages(batch: &RecordBatch, options: &IpcWriteOptions) -> (FlightData, FlightData) {
        let schema = FlightData::from(SchemaAsIpc::new(&batch.schema(), options));
        let (_, encoded) = IpcDataGenerator::default()
            .encode(
                batch,
                &mut DictionaryTracker::new(false),
                options,
                &mut Default::default(),
            )
            .expect("encode");
        (schema, FlightData::from(encoded))
    }

    /// The messages of one zstd-compressed batch of 100 strings.
    fn compressed() -> (FlightData, FlightData) {
        let ids: ArrayRef = Arc::new(StringArray::from(vec!["an id"; 100]));
        let batch = RecordBatch::try_from_iter([("id", ids)]).expect("batch");
        let options = IpcWriteOptions::default()
            .try_with_compression(Some(CompressionType::ZSTD))
            .expect("zstd");
        messages(&batch, &options)
    }

    #[test]
    fn a_compressed_buffer_that_declares_petabytes_is_refused_not_allocated() {
        let (schema, data) = compressed();
        let mut decoder = PutDecoder::new(64 << 20);
        assert!(decoder.decode(schema.clone()).expect("schema").is_none());
        let batch = decoder.decode(data.clone()).expect("the batch as sent");
        assert_eq!(batch.map(|b| b.num_rows()), Some(100));

        // The first buffer (the offsets) now says it decompresses to 2^56 bytes: arrow-ipc
        // would allocate that before decompressing, and the process would abort.
        let mut body = data.data_body.to_vec();
        body[..8].copy_from_slice(&(1i64 << 56).to_le_bytes());
        let forged = FlightData {
            data_body: body.into(),
            ..data
        };
        let refused = decoder.decode(forged).expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains("decompressed"), "{refused}");
    }

    #[test]
    fn a_batch_that_declares_more_rows_than_its_data_holds_is_refused() {
        // No column but a row count of 2^52: arrow would accept it, and the table's missing
        // columns would then be built at that length.
        let empty = RecordBatch::try_new_with_options(
            Arc::new(arrow::datatypes::Schema::empty()),
            vec![],
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(3)),
        )
        .expect("batch");
        let (schema, data) = messages(&empty, &IpcWriteOptions::default());
        let mut decoder = PutDecoder::new(64 << 20);
        decoder.decode(schema).expect("schema");
        assert_eq!(
            decoder
                .decode(data.clone())
                .expect("3 rows")
                .map(|b| b.num_rows()),
            Some(3)
        );
        let header = data.data_header.to_vec();
        let at = header
            .windows(8)
            .position(|w| w == 3i64.to_le_bytes())
            .expect("the row count in the header");
        let mut forged = header.clone();
        forged[at..at + 8].copy_from_slice(&(1i64 << 52).to_le_bytes());
        let forged = FlightData {
            data_header: forged.into(),
            ..data
        };
        let refused = decoder.decode(forged).expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains("rows"), "{refused}");
    }

    #[test]
    fn a_schema_arrow_ipc_panics_on_is_an_invalid_argument() {
        // A schema message whose `fields` are absent: arrow-ipc's `fb_to_schema` unwraps them.
        let mut builder = flatbuffers::FlatBufferBuilder::new();
        let schema = ipc::SchemaBuilder::new(&mut builder).finish();
        let mut message = ipc::MessageBuilder::new(&mut builder);
        message.add_version(ipc::MetadataVersion::V5);
        message.add_header_type(MessageHeader::Schema);
        message.add_header(schema.as_union_value());
        let message = message.finish();
        builder.finish(message, None);
        let data = FlightData {
            data_header: builder.finished_data().to_vec().into(),
            ..Default::default()
        };
        let mut decoder = PutDecoder::new(64 << 20);
        let refused = decoder.decode(data).expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains("decoder failed"), "{refused}");
        assert!(decoder.schema.is_none());
    }
}
