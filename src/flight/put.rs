//! DoPut: Arrow IPC batches streamed into the engine's write path, each acknowledged with a
//! `PutResult` once durable, a few in flight per stream; [`PutDecoder`] decodes each message's
//! arrays as views into the received body.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::ipc::{self, MessageHeader};
use arrow_flight::FlightData;
use arrow_flight::sql::server::PeekableFlightDataStream;
use futures::{Stream, StreamExt};
use tonic::Status;

use crate::flight::TimeFusionFlight;

/// Batches of one DoPut stream that may be on their way into the WAL at once. Several per
/// stream let one group commit carry more rows; acknowledgements still come in stream order.
pub(crate) const PUT_PIPELINE: usize = 4;

/// Stores the decoded batches of a DoPut in `table`, yielding each batch's row count once
/// it is durable, in stream order. After an error, later batches of the stream that were
/// already on their way may be stored without having been acknowledged (as with any
/// unacknowledged write, the client cannot assume either way).
pub(crate) fn store_stream(
    service: TimeFusionFlight,
    table: String,
    data: PeekableFlightDataStream,
) -> impl Stream<Item = Result<usize, Status>> + Send + 'static {
    let mut decoder = PutDecoder::new(service.max_decoded_bytes());
    data.map(move |message| decoder.decode(message?))
        .filter_map(|decoded| std::future::ready(decoded.transpose()))
        .map(move |batch| {
            let (service, table) = (service.clone(), table.clone());
            async move { service.store(&table, batch?).await }
        })
        .buffered(PUT_PIPELINE)
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

    /// Refuses a batch whose compressed buffers declare more than `max_decoded_bytes`
    /// decompressed: arrow-ipc allocates what a buffer declares before it decompresses it,
    /// so a message of 100 bytes could make the process abort on a 64 PiB allocation (found
    /// by `fuzz::flight_put`).
    fn check_decompressed(&self, batch: ipc::RecordBatch, body: &[u8]) -> Result<(), Status> {
        if batch.compression().is_none() {
            return Ok(());
        }
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
                    self.check_decompressed(batch, &data.data_body)?;
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
                self.check_decompressed(batch, &data.data_body)?;
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

    /// The schema message and one zstd-compressed batch message of 100 strings.
    fn compressed() -> (FlightData, FlightData) {
        let ids: ArrayRef = Arc::new(StringArray::from(vec!["an id"; 100]));
        let batch = RecordBatch::try_from_iter([("id", ids)]).expect("batch");
        let options = IpcWriteOptions::default()
            .try_with_compression(Some(CompressionType::ZSTD))
            .expect("zstd");
        let schema = FlightData::from(SchemaAsIpc::new(&batch.schema(), &options));
        let (_, encoded) = IpcDataGenerator::default()
            .encode(
                &batch,
                &mut DictionaryTracker::new(false),
                &options,
                &mut Default::default(),
            )
            .expect("encode");
        (schema, FlightData::from(encoded))
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
