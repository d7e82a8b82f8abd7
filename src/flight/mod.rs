//! The Arrow Flight front end: DoPut ingestion and Flight SQL queries on one gRPC port.
//!
//! - **DoPut** with a `PATH` descriptor naming a table (`["otel_logs_and_spans"]`) streams
//!   Arrow IPC batches into [`Ingest::write`], the same path as pgwire `INSERT`: batches may
//!   carry a subset of the columns and castable types; anything else is `INVALID_ARGUMENT`
//!   naming the column. Each batch gets one `PutResult` (app metadata: the row count as
//!   decimal text) once it is durable in the WAL. Flight SQL `CommandStatementIngest` (ADBC
//!   bulk ingest) takes the same path and answers with the total.
//! - **Flight SQL** `CommandStatementQuery`, prepared statements, `GetTables`, `GetSqlInfo`:
//!   queries run on the same DataFusion session as pgwire and stream Arrow back unconverted.
//! - `GRPC_TOKEN`, when set, is required on every call as `authorization: Bearer <token>`.
//! - In-flight DoPut bytes across all streams are bounded by a semaphore: a client that sends
//!   faster than the server stores waits on its own stream (HTTP/2 flow control).

pub mod put;

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetSqlInfo, CommandGetTables,
    CommandPreparedStatementQuery, CommandStatementIngest, CommandStatementQuery, ProstMessageExt,
    SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, PutResult,
    SchemaAsIpc, Ticket,
};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use futures::{Stream, TryStreamExt};
use prost::Message;
use tokio::sync::OwnedSemaphorePermit;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::engine::batch::owned_bytes;
use crate::engine::ingest::{Ingest, Via};
use crate::engine::schema::Catalog;
use crate::error::{SqlError, SqlState};
use crate::grpc::TokenCheck;
use crate::memory::InFlight;
use crate::sql::error::sqlstate_of;
use crate::sql::slots::Slots;
use put::store_stream;

type DoGetStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;
type DoPutStream = Pin<Box<dyn Stream<Item = Result<PutResult, Status>> + Send + 'static>>;

/// Maps any error with a SQLSTATE classification to a gRPC status.
fn status(error: &(dyn std::error::Error + 'static)) -> Status {
    let (code, message) = sqlstate_of(error);
    Status::new(grpc_code(code), message)
}

/// A Flight SQL query in `timefusion_statements_total{protocol="flight"}` and its latency,
/// and in the slow-statement log, recorded when dropped: when its result stream ends, or the
/// call fails before it has one.
struct Recorded {
    started: std::time::Instant,
    ok: bool,
    sql: String,
    log_min_duration: Option<std::time::Duration>,
}

impl Drop for Recorded {
    fn drop(&mut self) {
        crate::metrics::finished(
            "flight",
            self.ok,
            self.started,
            &self.sql,
            self.log_min_duration,
        );
    }
}

/// The status of a call a panic ended (the panic is logged where it happened).
fn panicked(message: &str) -> Status {
    Status::internal(format!("internal error: the call panicked: {message}"))
}

/// The gRPC status code for a SQLSTATE: the one mapping of SQL errors to gRPC.
pub fn grpc_code(state: SqlState) -> tonic::Code {
    match state {
        SqlState::UNDEFINED_TABLE => tonic::Code::NotFound,
        SqlState::OUT_OF_MEMORY | SqlState::INSUFFICIENT_RESOURCES => {
            tonic::Code::ResourceExhausted
        }
        SqlState::ADMIN_SHUTDOWN => tonic::Code::Unavailable,
        SqlState::FEATURE_NOT_SUPPORTED => tonic::Code::Unimplemented,
        SqlState::IO_ERROR | SqlState::INTERNAL_ERROR => tonic::Code::Internal,
        state if matches!(state.class(), "22" | "23" | "42" | "54") => tonic::Code::InvalidArgument,
        _ => tonic::Code::Internal,
    }
}

fn flight_status(error: FlightError) -> Status {
    match error {
        FlightError::Tonic(status) => *status,
        FlightError::Arrow(e) => Status::invalid_argument(format!("invalid Arrow IPC data: {e}")),
        other => Status::invalid_argument(other.to_string()),
    }
}

/// The Flight SQL service.
#[derive(Clone)]
pub struct TimeFusionFlight {
    context: Arc<SessionContext>,
    catalog: Arc<Catalog>,
    ingest: Arc<Ingest>,
    inflight: InFlight,
    sql_info: Arc<SqlInfoData>,
    /// `TIMEFUSION_MAX_EXPRESSION_DEPTH`: deeper statements are refused before parsing.
    max_expression_depth: usize,
    /// The slots queries run in, shared with pgwire.
    slots: Arc<Slots>,
    /// `TIMEFUSION_LOG_MIN_DURATION_MS`.
    log_min_duration: Option<std::time::Duration>,
}

/// Kibibytes a batch holds, the unit of the in-flight budget. Counted by allocation: a
/// decoded message's arrays are views into one, which Arrow's `get_array_memory_size` counts
/// once per buffer — a 4 MiB message weighed 80 MiB, took the whole in-flight share, and
/// DoPut streams took turns instead of running together.
pub(crate) fn kib(batch: &RecordBatch) -> usize {
    owned_bytes(batch) / 1024
}

impl TimeFusionFlight {
    pub fn new(
        context: Arc<SessionContext>,
        catalog: Arc<Catalog>,
        ingest: Arc<Ingest>,
        inflight: InFlight,
        max_expression_depth: usize,
        slots: Arc<Slots>,
        log_min_duration: Option<std::time::Duration>,
    ) -> Result<Self, FlightError> {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "TimeFusion");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
        info.append(SqlInfo::FlightSqlServerReadOnly, false);
        Ok(TimeFusionFlight {
            context,
            catalog,
            ingest,
            inflight,
            sql_info: Arc::new(info.build()?),
            max_expression_depth,
            slots,
            log_min_duration,
        })
    }

    /// The tonic service, with the token check and message size limit applied.
    pub fn into_service(
        self,
        token: Option<String>,
        max_message_bytes: usize,
    ) -> InterceptedService<FlightServiceServer<Self>, TokenCheck> {
        let server = FlightServiceServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes);
        InterceptedService::new(server, TokenCheck::new(token))
    }

    /// Most bytes one DoPut message may decode to: what all streams may hold in flight.
    pub(crate) fn max_decoded_bytes(&self) -> u64 {
        self.inflight.budget_bytes() as u64
    }

    /// The in-flight budget DoPut batches wait for (`put`).
    pub(crate) fn inflight(&self) -> &InFlight {
        &self.inflight
    }

    /// Stores one admitted batch; its share of the in-flight budget is returned once it is in
    /// the buffer (or refused).
    async fn store(
        &self,
        table: &str,
        batch: RecordBatch,
        permit: OwnedSemaphorePermit,
    ) -> Result<usize, Status> {
        let rows = self
            .ingest
            .write(table, batch, Via::Flight)
            .await
            .map_err(|e| status(&e))?;
        drop(permit);
        Ok(rows)
    }

    fn table_for(&self, name: &str) -> Result<String, Status> {
        self.catalog
            .get(name)
            .map(|t| t.name.clone())
            .ok_or_else(|| Status::not_found(format!("relation \"{name}\" does not exist")))
    }

    /// Refuses a statement too deep to parse and plan safely
    /// ([`crate::sql::statement_text::check_depth`]).
    fn check_depth(&self, sql: &str) -> Result<(), Status> {
        crate::sql::statement_text::check_depth(sql, self.max_expression_depth)
            .map_err(|e| Status::new(grpc_code(e.state), e.message))
    }

    async fn schema_of(&self, sql: &str) -> Result<Schema, Status> {
        self.check_depth(sql)?;
        let state = self.context.state();
        let plan = crate::panics::catch(state.create_logical_plan(sql))
            .await
            .map_err(|m| panicked(&m))?
            .map_err(|e| status(&e))?;
        Ok(plan.schema().as_arrow().clone())
    }

    /// Plans and runs `sql`; a panic in either is the call's `INTERNAL` status.
    async fn run(&self, sql: &str) -> Result<Response<DoGetStream>, Status> {
        // Counted when its stream ends (or the client drops it); a failure before is an error.
        let mut recorded = Recorded {
            started: std::time::Instant::now(),
            ok: false,
            sql: sql.to_string(),
            log_min_duration: self.log_min_duration,
        };
        self.check_depth(sql)?;
        let slot = self.slots.acquire().await.map_err(|e| status(&e))?;
        let planned = crate::panics::catch(async {
            let frame = self.context.sql(sql).await?;
            let schema = Arc::new(frame.schema().as_arrow().clone());
            Ok::<_, DataFusionError>((schema, frame.execute_stream().await?))
        });
        let (schema, batches) = planned
            .await
            .map_err(|m| panicked(&m))?
            .map_err(|e| status(&e))?;
        recorded.ok = true;
        let batches = crate::panics::catch_stream(batches, |m| {
            DataFusionError::External(Box::new(SqlError::new(
                SqlState::INTERNAL_ERROR,
                format!("internal error: the query panicked: {m}"),
            )))
        });
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches.map_err(|e| FlightError::ExternalError(Box::new(e))))
            .map_err(move |e| {
                // The whole guard and the slot move into the stream (not just `ok`): they
                // drop with it.
                let _slot = &slot;
                let recorded = &mut recorded;
                recorded.ok = false;
                match e {
                    FlightError::ExternalError(inner) => status(inner.as_ref()),
                    other => flight_status(other),
                }
            });
        Ok(Response::new(Box::pin(stream)))
    }

    fn info(
        &self,
        schema: &Schema,
        ticket: Vec<u8>,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        Ok(FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(format!("cannot encode the result schema: {e}")))?
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket {
                ticket: ticket.into(),
            }))
            .with_descriptor(descriptor))
    }
}

#[tonic::async_trait]
impl FlightSqlService for TimeFusionFlight {
    type FlightService = TimeFusionFlight;

    async fn do_put_fallback(
        &self,
        mut request: Request<PeekableFlightDataStream>,
        _message: Any,
    ) -> Result<Response<<Self as FlightService>::DoPutStream>, Status> {
        let first = request.get_mut().peek().await.cloned();
        let descriptor = first
            .and_then(|m| m.ok())
            .and_then(|m| m.flight_descriptor)
            .ok_or_else(|| {
                Status::invalid_argument("DoPut needs a flight descriptor naming the table")
            })?;
        if descriptor.r#type != DescriptorType::Path as i32 || descriptor.path.len() != 1 {
            return Err(Status::invalid_argument(
                "DoPut descriptor must be a PATH with one element: the table name",
            ));
        }
        let table = self.table_for(&descriptor.path[0])?;
        let acks =
            store_stream(self.clone(), table, request.into_inner()).map_ok(|rows| PutResult {
                app_metadata: rows.to_string().into_bytes().into(),
            });
        Ok(Response::new(Box::pin(acks) as DoPutStream))
    }

    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        if command.schema.as_deref().is_some_and(|s| s != "public") || command.catalog.is_some() {
            return Err(Status::not_found("tables live in schema public"));
        }
        let table = self.table_for(&command.table)?;
        let rows = store_stream(self.clone(), table, request.into_inner())
            .try_fold(0i64, |total, rows| async move { Ok(total + rows as i64) })
            .await?;
        Ok(rows)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = self.schema_of(&query.query).await?;
        let ticket = TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        };
        Ok(Response::new(self.info(
            &schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let sql = std::str::from_utf8(&ticket.statement_handle)
            .map_err(|_| Status::invalid_argument("statement handle is not UTF-8"))?;
        self.run(sql).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        // The handle is the SQL text itself: prepared statements need no server state.
        let schema = self.schema_of(&query.query).await?;
        let IpcMessage(dataset_schema) = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: query.query.into_bytes().into(),
            dataset_schema,
            parameter_schema: Default::default(),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Ok(())
    }

    async fn get_flight_info_prepared_statement(
        &self,
        command: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let sql = std::str::from_utf8(&command.prepared_statement_handle)
            .map_err(|_| Status::invalid_argument("prepared statement handle is not UTF-8"))?;
        let schema = self.schema_of(sql).await?;
        Ok(Response::new(self.info(
            &schema,
            command.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_prepared_statement(
        &self,
        command: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let sql = std::str::from_utf8(&command.prepared_statement_handle)
            .map_err(|_| Status::invalid_argument("prepared statement handle is not UTF-8"))?;
        self.run(sql).await
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(self.info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        for table in self.catalog.tables() {
            builder
                .append(
                    crate::sql::DATABASE,
                    "public",
                    &table.name,
                    "TABLE",
                    &table.schema,
                )
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        let schema = builder.schema();
        let batch = builder.build();
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::once(async { batch }))
            .map_err(flight_status);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        Ok(Response::new(self.info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )?))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let builder = query.into_builder(&self.sql_info);
        let schema = builder.schema();
        let batch = builder.build();
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::once(async { batch }))
            .map_err(flight_status);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstate_classes_map_to_grpc_codes() {
        assert_eq!(
            grpc_code(SqlState::NOT_NULL_VIOLATION),
            tonic::Code::InvalidArgument
        );
        assert_eq!(grpc_code(SqlState::UNDEFINED_TABLE), tonic::Code::NotFound);
        assert_eq!(
            grpc_code(SqlState::OUT_OF_MEMORY),
            tonic::Code::ResourceExhausted
        );
        assert_eq!(grpc_code(SqlState::INTERNAL_ERROR), tonic::Code::Internal);
    }

    #[test]
    fn a_decoded_message_weighs_its_size_not_once_per_column() {
        use arrow::array::{ArrayRef, Int64Array, StringArray};
        use arrow::datatypes::{Field, Schema};
        let columns: Vec<(String, ArrayRef)> = (0..20)
            .map(|i| {
                let column: ArrayRef = if i % 2 == 0 {
                    Arc::new(Int64Array::from_iter_values(0..8192))
                } else {
                    Arc::new(StringArray::from_iter_values(
                        (0..8192).map(|r| format!("v{r}")),
                    ))
                };
                (format!("c{i}"), column)
            })
            .collect();
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(name, c)| Field::new(name, c.data_type().clone(), false))
                .collect::<Vec<_>>(),
        ));
        let sent = RecordBatch::try_new(
            schema.clone(),
            columns.into_iter().map(|(_, c)| c).collect(),
        )
        .expect("batch");
        let messages =
            arrow_flight::utils::batches_to_flight_data(&schema, vec![sent]).expect("encode");
        let body = messages[1].data_body.len();
        let decoded = arrow_flight::utils::flight_data_to_arrow_batch(
            &messages[1],
            schema,
            &Default::default(),
        )
        .expect("decode");
        assert!(decoded.get_array_memory_size() > 10 * body, "Arrow's count");
        let weighed = kib(&decoded);
        assert!(
            (body / 1024..=body / 1024 + 1).contains(&weighed),
            "{weighed} KiB for a {body}-byte message"
        );
    }
}
