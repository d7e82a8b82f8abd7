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
    let mut decoder = PutDecoder::default();
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
#[derive(Default)]
pub(crate) struct PutDecoder {
    pub(crate) schema: Option<SchemaRef>,
    pub(crate) dictionaries: HashMap<i64, ArrayRef>,
}

impl PutDecoder {
    /// The batch `data` carries, if any: schema and dictionary messages only update the state.
    fn decode(&mut self, data: FlightData) -> Result<Option<RecordBatch>, Status> {
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
