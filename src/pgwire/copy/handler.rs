//! `COPY` on the wire: starting `COPY … FROM STDIN` (its state kept in the connection's
//! session extensions) and feeding the client's `CopyData` to the parser
//! ([`crate::pgwire::copy::CopyIn`]), and sending `COPY … TO STDOUT` results, one row per
//! `CopyData`, bounded by the running statement's cancel and deadline. `COPY … TO STDOUT` is
//! sent here (from the simple-query handler, pgwire's `_on_query` otherwise, and the extended
//! handler's `do_query`), not by pgwire 0.41, whose `COPY n` tag counts the CSV or binary header
//! of an empty result as a row and which ends a failed stream with a backend `CopyFail`
//! PostgreSQL never sends (here: an `ErrorResponse`). Tests: `tests/e2e/copy.rs`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::hooks::HookClient;
use pgwire::api::ClientInfo;
use pgwire::api::copy::CopyHandler;
use pgwire::api::results::{CopyResponse, Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};

use crate::engine::ingest::{Ingest, Via};
use crate::engine::schema::Catalog;
use crate::error::SqlState;
use crate::pgwire::copy::{CopyIn, CopyOut};
use crate::pgwire::errors::{no_rows_plan, user_error};
use crate::pgwire::hooks::Answer;

/// The `COPY … FROM STDIN` running on a connection, kept in its session extensions between
/// the statement and the client's `CopyData` / `CopyDone` messages.
#[derive(Default)]
pub(crate) struct CopySlot(pub(crate) parking_lot::Mutex<Option<ActiveCopy>>);

pub(crate) struct ActiveCopy {
    pub(crate) copy: CopyIn,
    pub(crate) rows: usize,
    /// The first error: later data is ignored and `CopyDone` reports it, as PostgreSQL does.
    pub(crate) error: Option<PgWireError>,
}

/// Starts `COPY … FROM STDIN` and runs `COPY … TO STDOUT` (text, CSV and binary) in both
/// protocols.
pub(crate) struct CopyHook {
    pub(crate) catalog: Arc<Catalog>,
    /// Parsed bytes a `COPY FROM STDIN` holds before writing them (all-or-nothing up to this).
    pub(crate) atomic_bytes: usize,
}

impl CopyHook {
    async fn start(
        &self,
        statement: &Statement,
        context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<Response>> {
        if let Some(out) = CopyOut::from_statement(statement) {
            return Some(match out {
                Err(e) => Err(PgWireError::ApiError(Box::new(e))),
                Ok(out) => copy_out(out, context).await,
            });
        }
        Some(match CopyIn::from_statement(statement, &self.catalog)? {
            Err(e) => Err(PgWireError::ApiError(Box::new(e))),
            Ok(copy) => {
                let copy = copy.with_max_held(self.atomic_bytes);
                let columns = copy.column_count();
                // Binary: overall format 1 and every column 1 (`CopyResponse::column_formats`).
                let format = i8::from(copy.is_binary());
                *client
                    .session_extensions()
                    .get_or_insert_with(CopySlot::default)
                    .0
                    .lock() = Some(ActiveCopy {
                    copy,
                    rows: 0,
                    error: None,
                });
                Ok(Response::CopyIn(CopyResponse::new(
                    format,
                    columns,
                    futures::stream::empty(),
                )))
            }
        })
    }
}

/// Runs the query of a `COPY … TO STDOUT` and streams its rows as `CopyData`, one per row (the
/// head — CSV header line, binary header — goes with the first row), for [`send_copy_out`] to
/// send and count. With no rows the head goes alone, followed by [`HEAD_END`].
pub(crate) async fn copy_out(mut out: CopyOut, context: &SessionContext) -> PgWireResult<Response> {
    use futures::StreamExt;
    let api = |e: datafusion::error::DataFusionError| PgWireError::ApiError(Box::new(e));
    let copy_error = |e: crate::pgwire::copy::Error| PgWireError::ApiError(Box::new(e));
    let frame = context.sql(&out.sql).await.map_err(api)?;
    let schema = frame.schema().as_arrow().clone();
    let columns = schema.fields().len();
    out.begin(&schema).map_err(copy_error)?;
    let format = out.format_code();
    let batches = frame.execute_stream().await.map_err(api)?;
    // Each step renders one batch; after the last, what `finish` leaves (the head of an
    // empty result) goes out, marked as no row.
    let rows = futures::stream::unfold(Some((batches, out)), move |state| async move {
        let (mut batches, mut out) = state?;
        let lines: Vec<PgWireResult<Vec<u8>>> = match batches.next().await {
            None => {
                let head = out.finish().map(|head| [head, HEAD_END.to_vec()]);
                return Some((head.into_iter().flatten().map(Ok).collect(), None));
            }
            Some(Err(e)) => vec![Err(api(e))],
            Some(Ok(batch)) => match out.render(&batch) {
                Ok(lines) => lines.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(copy_error(e))],
            },
        };
        Some((lines, Some((batches, out))))
    })
    .flat_map(futures::stream::iter)
    .map(|line| line.map(|line| CopyData::new(bytes::Bytes::from(line))));
    Ok(Response::CopyOut(CopyResponse::new(format, columns, rows)))
}

/// In a copy-out stream, an empty `CopyData` (never sent) says that what came before it was
/// not rows but the head of an empty result.
pub(crate) const HEAD_END: &[u8] = &[];

/// The trailer pgwire appends to a binary copy-out stream (`CopyResponse::new`): not a row.
pub(crate) const BINARY_TRAILER: &[u8] = &[0xFF, 0xFF];

/// Sends a `COPY … TO STDOUT` result as PostgreSQL does: `CopyOutResponse`, the data,
/// `CopyDone`; returns the `COPY n` tag to send next, `n` counting data rows only.
///
/// pgwire 0.41's `send_copy_out_response` counts every message but the binary trailer, so an
/// empty result with a CSV or binary header said `COPY 1`; and it answers an error in the
/// stream with a backend `CopyFail`, which PostgreSQL never sends. Here the error is returned,
/// to go out as an `ErrorResponse` (what PostgreSQL sends when a `COPY TO` fails midway).
pub(crate) async fn send_copy_out<C>(client: &mut C, mut copy: CopyResponse) -> PgWireResult<Tag>
where
    C: futures::Sink<PgWireBackendMessage> + Unpin,
    C::Error: std::fmt::Debug,
    PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
{
    use futures::{SinkExt, StreamExt};
    let formats = copy.column_formats();
    let columns = i16::try_from(copy.columns).map_err(|_| {
        let wide = copy.columns;
        user_error(
            SqlState::TOO_MANY_COLUMNS,
            format!("a COPY of {wide} columns is too wide"),
        )
    })?;
    client
        .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
            copy.format,
            columns,
            formats,
        )))
        .await?;
    let mut rows = 0;
    while let Some(data) = copy.data_stream.next().await {
        let data = data?;
        match data.data.as_ref() {
            HEAD_END => rows = 0,
            BINARY_TRAILER => client.feed(PgWireBackendMessage::CopyData(data)).await?,
            _ => {
                rows += 1;
                client.feed(PgWireBackendMessage::CopyData(data)).await?;
            }
        }
    }
    client
        .feed(PgWireBackendMessage::CopyDone(CopyDone::new()))
        .await?;
    Ok(Tag::new("COPY").with_rows(rows))
}

#[async_trait]
impl Answer for CopyHook {
    async fn answer(
        &self,
        statement: &Statement,
        context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.start(statement, context, client).await
    }

    async fn plan(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        if let Some(out) = CopyOut::from_statement(statement) {
            return Some(
                out.map_err(|e| PgWireError::ApiError(Box::new(e)))
                    .map(|_| no_rows_plan()),
            );
        }
        // Unknown tables, columns and options are reported at Parse, as PostgreSQL does.
        Some(match CopyIn::from_statement(statement, &self.catalog)? {
            Err(e) => Err(PgWireError::ApiError(Box::new(e))),
            Ok(_) => Ok(no_rows_plan()),
        })
    }
}

/// Receives the rows of a `COPY … FROM STDIN` and writes them through the ingest path.
pub(crate) struct CopyRows {
    pub(crate) ingest: Arc<Ingest>,
}

impl CopyRows {
    fn take<C: ClientInfo>(client: &C) -> Option<ActiveCopy> {
        client
            .session_extensions()
            .get::<CopySlot>()?
            .0
            .lock()
            .take()
    }

    fn put_back<C: ClientInfo>(client: &C, active: ActiveCopy) {
        if let Some(slot) = client.session_extensions().get::<CopySlot>() {
            *slot.0.lock() = Some(active);
        }
    }

    /// Writes `batches`; the first failure becomes the copy's error.
    async fn write(&self, active: &mut ActiveCopy, batches: Vec<arrow::array::RecordBatch>) {
        for batch in batches {
            match self
                .ingest
                .write(&active.copy.table.name, batch, Via::Copy)
                .await
            {
                Ok(rows) => active.rows += rows,
                Err(e) => {
                    active.error = Some(PgWireError::ApiError(Box::new(e)));
                    return;
                }
            }
        }
    }
}

pub(crate) fn no_copy_in_progress() -> PgWireError {
    user_error(
        SqlState::PROTOCOL_VIOLATION,
        "COPY data received with no COPY FROM STDIN in progress",
    )
}

#[async_trait]
impl CopyHandler for CopyRows {
    async fn on_copy_data<C>(&self, client: &mut C, data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + futures::Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(mut active) = Self::take(client) else {
            return Err(no_copy_in_progress());
        };
        if active.error.is_none() {
            match active.copy.push(&data.data) {
                Ok(batches) => self.write(&mut active, batches).await,
                Err(e) => active.error = Some(PgWireError::ApiError(Box::new(e))),
            }
        }
        Self::put_back(client, active);
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + futures::Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        let Some(mut active) = Self::take(client) else {
            return Err(no_copy_in_progress());
        };
        if active.error.is_none() {
            match active.copy.finish() {
                Ok(batches) => self.write(&mut active, batches).await,
                Err(e) => active.error = Some(PgWireError::ApiError(Box::new(e))),
            }
        }
        if let Some(error) = active.error {
            return Err(error);
        }
        let tag = Tag::new("COPY").with_rows(active.rows);
        client
            .send(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(
        &self,
        client: &mut C,
        fail: pgwire::messages::copy::CopyFail,
    ) -> PgWireError
    where
        C: ClientInfo + futures::Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        let written = Self::take(client).map_or(0, |a| a.rows);
        let kept = if written > 0 {
            format!(" ({written} rows written before it stay stored)")
        } else {
            String::new()
        };
        user_error(
            SqlState::QUERY_CANCELED,
            format!("COPY from stdin failed: {}{kept}", fail.message),
        )
    }
}
