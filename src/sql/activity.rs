//! The server's sessions as PostgreSQL's monitoring relations and functions, which admin tools
//! (pgAdmin's and DBeaver's dashboards, `pg_activity`) and operators read:
//!
//! - `pg_stat_activity`: one row per Postgres-wire session, from the front end's own state
//!   ([`Backends`]): process id, user, database, `application_name`, client address and port,
//!   `state` (`active`, `idle`, `idle in transaction`, `idle in transaction (aborted)`), the
//!   running or last statement in `query` (its first [`QUERY_TEXT_BYTES`] bytes, as
//!   PostgreSQL's `track_activity_query_size`), and `backend_start` / `xact_start` /
//!   `query_start` / `state_change` (a session turns `idle` as it waits for its next message,
//!   a moment after its reply went out, where PostgreSQL does so just before). `datid` and
//!   `usesysid` are the oids `pg_database` and
//!   `pg_roles` give the names. Flight SQL and gRPC requests are not sessions and are not listed;
//!   `wait_event*`, `backend_xid`, `backend_xmin`, `query_id` and `leader_pid` are NULL.
//! - `pg_cancel_backend(pid)` stops the session's running statement as a cancel request would
//!   (57014 for it; a write's rows are never interrupted: the pgwire front end's `cancel` module);
//!   `pg_terminate_backend(pid [, timeout])` also ends the session once its statement is done,
//!   with FATAL 57P01. Both answer false for a pid that is no session here. Any user may signal
//!   any session: all sessions are the one configured user's (`PGWIRE_USER`).
//! - `pg_stat_database`: one row per database, with `numbackends` counted from the sessions;
//!   the counters PostgreSQL keeps per database (transactions, tuples, blocks) are NULL, not
//!   zero: TimeFusion does not count them (its own metrics are on the HTTP port).
//! - `pg_locks`, `pg_prepared_xacts`, `pg_stat_replication`, `pg_available_extensions`: empty,
//!   in PostgreSQL 15's columns. Sessions take no locks a client can see, there are no prepared
//!   (two-phase) transactions, replicas or extensions. `pg_blocking_pids(pid)` is `{}`.
//! - `pg_user`: the login roles of `pg_roles`, in PostgreSQL's columns (`passwd` masked).
//!
//! The relations live in `pg_catalog` ([`crate::sql::catalog`]); an unqualified name is
//! qualified by [`crate::sql::pg_forms`]. Tests: `tests/slt/activity.slt`,
//! `tests/e2e/activity.rs` (sessions seen and signalled over pgwire).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use arrow::array::{
    ArrayRef, AsArray, BooleanArray, Int32Array, ListArray, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{MemTable, Session, TableProvider};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarUDF, Signature, SimpleScalarUDF, TableType, TypeSignature,
    Volatility,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

use crate::sql::functions::shaped;

/// How much of a statement's text `pg_stat_activity.query` shows: PostgreSQL's default
/// `track_activity_query_size`. A multi-megabyte `INSERT` is not copied for it.
pub const QUERY_TEXT_BYTES: usize = 1024;

/// One session as `pg_stat_activity` shows it.
#[derive(Debug, Clone)]
pub struct Backend {
    pub pid: i32,
    pub user: String,
    pub database: String,
    pub application_name: String,
    pub client: SocketAddr,
    pub backend_start: SystemTime,
    /// When the transaction (a block, or the one statement outside of one) began.
    pub xact_start: Option<SystemTime>,
    pub query_start: Option<SystemTime>,
    pub state_change: SystemTime,
    /// `active`, `idle`, `idle in transaction` or `idle in transaction (aborted)`.
    pub state: &'static str,
    /// The running or last statement (at most [`QUERY_TEXT_BYTES`] of it).
    pub query: String,
}

/// What `pg_cancel_backend` and `pg_terminate_backend` ask of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Stop the running statement.
    Cancel,
    /// Stop the running statement, then end the session.
    Terminate,
}

/// The front end's sessions (the pgwire front end's cancel registry implements it; this layer
/// does not name that one).
pub trait Backends: Send + Sync {
    /// Every session, in no particular order.
    fn backends(&self) -> Vec<Backend>;
    /// Sends `signal` to the session `pid`; false if there is none.
    fn signal(&self, pid: i32, signal: Signal) -> bool;
}

/// The relations this module adds to `pg_catalog`, for [`crate::sql::pg_forms`] to qualify.
pub const RELATIONS: [&str; 7] = [
    "pg_stat_activity",
    "pg_stat_database",
    "pg_locks",
    "pg_prepared_xacts",
    "pg_stat_replication",
    "pg_available_extensions",
    "pg_user",
];

/// `text` at most `max` bytes long, cut at a character boundary.
pub fn truncated(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Registers the functions above and returns the relations, by name, for `pg_catalog`.
/// `context` must already have `pg_catalog`'s `pg_database` and `pg_roles`.
pub async fn register(
    context: &SessionContext,
    backends: Arc<dyn Backends>,
) -> Result<HashMap<&'static str, Arc<dyn TableProvider>>> {
    context.register_udf(signal_function(
        "pg_cancel_backend",
        Signal::Cancel,
        backends.clone(),
    ));
    context.register_udf(signal_function(
        "pg_terminate_backend",
        Signal::Terminate,
        backends.clone(),
    ));
    context.register_udf(blocking_pids());

    let sessions = Arc::new(SessionsTable::new(backends));
    let mut relations: HashMap<&'static str, Arc<dyn TableProvider>> = HashMap::new();
    relations.insert(
        "pg_stat_activity",
        view_over(context, sessions.clone(), PG_STAT_ACTIVITY).await?,
    );
    relations.insert(
        "pg_stat_database",
        view_over(context, sessions, PG_STAT_DATABASE).await?,
    );
    relations.insert("pg_user", view(context, PG_USER).await?);
    for (name, columns) in EMPTY_RELATIONS {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(column, data_type)| match data_type {
                // `timestamptz`: a zone cannot be written in a constant.
                DataType::Timestamp(unit, None) => Field::new(
                    *column,
                    DataType::Timestamp(*unit, Some("UTC".into())),
                    true,
                ),
                other => Field::new(*column, other.clone(), true),
            })
            .collect();
        let table = MemTable::try_new(Arc::new(Schema::new(fields)), vec![vec![]])?;
        relations.insert(name, Arc::new(table));
    }
    Ok(relations)
}

/// The name the sessions' raw rows have while a view over them is planned.
const SESSIONS: &str = "timefusion_sessions_while_planning";

/// PostgreSQL 15's `pg_stat_activity` columns, in its order.
const PG_STAT_ACTIVITY: &str = "SELECT d.oid AS datid, a.datname, a.pid, \
     CAST(NULL AS INT) AS leader_pid, r.oid AS usesysid, a.usename, a.application_name, \
     a.client_addr, CAST(NULL AS TEXT) AS client_hostname, a.client_port, a.backend_start, \
     a.xact_start, a.query_start, a.state_change, CAST(NULL AS TEXT) AS wait_event_type, \
     CAST(NULL AS TEXT) AS wait_event, a.state, CAST(NULL AS TEXT) AS backend_xid, \
     CAST(NULL AS TEXT) AS backend_xmin, CAST(NULL AS BIGINT) AS query_id, a.query, \
     'client backend' AS backend_type \
     FROM timefusion_sessions_while_planning a \
     LEFT JOIN pg_catalog.pg_database d ON d.datname = a.datname \
     LEFT JOIN pg_catalog.pg_roles r ON r.rolname = a.usename";

/// PostgreSQL 15's `pg_stat_database` columns; only `numbackends` is kept.
const PG_STAT_DATABASE: &str = "SELECT d.oid AS datid, d.datname, \
     CAST(count(a.pid) AS INT) AS numbackends, \
     CAST(NULL AS BIGINT) AS xact_commit, CAST(NULL AS BIGINT) AS xact_rollback, \
     CAST(NULL AS BIGINT) AS blks_read, CAST(NULL AS BIGINT) AS blks_hit, \
     CAST(NULL AS BIGINT) AS tup_returned, CAST(NULL AS BIGINT) AS tup_fetched, \
     CAST(NULL AS BIGINT) AS tup_inserted, CAST(NULL AS BIGINT) AS tup_updated, \
     CAST(NULL AS BIGINT) AS tup_deleted, CAST(NULL AS BIGINT) AS conflicts, \
     CAST(NULL AS BIGINT) AS temp_files, CAST(NULL AS BIGINT) AS temp_bytes, \
     CAST(NULL AS BIGINT) AS deadlocks, CAST(NULL AS BIGINT) AS checksum_failures, \
     CAST(NULL AS TIMESTAMPTZ) AS checksum_last_failure, \
     CAST(NULL AS DOUBLE) AS blk_read_time, CAST(NULL AS DOUBLE) AS blk_write_time, \
     CAST(NULL AS DOUBLE) AS session_time, CAST(NULL AS DOUBLE) AS active_time, \
     CAST(NULL AS DOUBLE) AS idle_in_transaction_time, CAST(NULL AS BIGINT) AS sessions, \
     CAST(NULL AS BIGINT) AS sessions_abandoned, CAST(NULL AS BIGINT) AS sessions_fatal, \
     CAST(NULL AS BIGINT) AS sessions_killed, CAST(NULL AS TIMESTAMPTZ) AS stats_reset \
     FROM pg_catalog.pg_database d \
     LEFT JOIN timefusion_sessions_while_planning a ON a.datname = d.datname \
     GROUP BY d.oid, d.datname";

/// PostgreSQL 15's `pg_user` over `pg_roles`.
const PG_USER: &str = "SELECT rolname AS usename, oid AS usesysid, rolcreatedb AS usecreatedb, \
     rolsuper AS usesuper, rolreplication AS userepl, rolbypassrls AS usebypassrls, \
     '********' AS passwd, rolvaliduntil AS valuntil, CAST(NULL AS TEXT[]) AS useconfig \
     FROM pg_catalog.pg_roles WHERE rolcanlogin";

fn timestamptz() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// PostgreSQL 15's columns of the relations that have no rows here.
const EMPTY_RELATIONS: [(&str, &[(&str, DataType)]); 4] = [
    (
        "pg_locks",
        &[
            ("locktype", DataType::Utf8),
            ("database", DataType::Int32),
            ("relation", DataType::Int32),
            ("page", DataType::Int32),
            ("tuple", DataType::Int16),
            ("virtualxid", DataType::Utf8),
            ("transactionid", DataType::Utf8),
            ("classid", DataType::Int32),
            ("objid", DataType::Int32),
            ("objsubid", DataType::Int16),
            ("virtualtransaction", DataType::Utf8),
            ("pid", DataType::Int32),
            ("mode", DataType::Utf8),
            ("granted", DataType::Boolean),
            ("fastpath", DataType::Boolean),
            (
                "waitstart",
                DataType::Timestamp(TimeUnit::Microsecond, None),
            ),
        ],
    ),
    (
        "pg_prepared_xacts",
        &[
            ("transaction", DataType::Utf8),
            ("gid", DataType::Utf8),
            ("prepared", DataType::Timestamp(TimeUnit::Microsecond, None)),
            ("owner", DataType::Utf8),
            ("database", DataType::Utf8),
        ],
    ),
    (
        "pg_stat_replication",
        &[
            ("pid", DataType::Int32),
            ("usesysid", DataType::Int32),
            ("usename", DataType::Utf8),
            ("application_name", DataType::Utf8),
            ("client_addr", DataType::Utf8),
            ("client_hostname", DataType::Utf8),
            ("client_port", DataType::Int32),
            (
                "backend_start",
                DataType::Timestamp(TimeUnit::Microsecond, None),
            ),
            ("backend_xmin", DataType::Utf8),
            ("state", DataType::Utf8),
            ("sent_lsn", DataType::Utf8),
            ("write_lsn", DataType::Utf8),
            ("flush_lsn", DataType::Utf8),
            ("replay_lsn", DataType::Utf8),
            ("write_lag", DataType::Utf8),
            ("flush_lag", DataType::Utf8),
            ("replay_lag", DataType::Utf8),
            ("sync_priority", DataType::Int32),
            ("sync_state", DataType::Utf8),
            (
                "reply_time",
                DataType::Timestamp(TimeUnit::Microsecond, None),
            ),
        ],
    ),
    (
        "pg_available_extensions",
        &[
            ("name", DataType::Utf8),
            ("default_version", DataType::Utf8),
            ("installed_version", DataType::Utf8),
            ("comment", DataType::Utf8),
        ],
    ),
];

/// A view planned from `sql`, which reads [`SESSIONS`]: the name is registered only while the
/// view is planned (the plan holds the table itself), so no catalog lists it.
async fn view_over(
    context: &SessionContext,
    sessions: Arc<SessionsTable>,
    sql: &str,
) -> Result<Arc<dyn TableProvider>> {
    context.register_table(SESSIONS, sessions)?;
    let planned = view(context, sql).await;
    context.deregister_table(SESSIONS)?;
    planned
}

async fn view(context: &SessionContext, sql: &str) -> Result<Arc<dyn TableProvider>> {
    let plan = context.sql(sql).await?.into_unoptimized_plan();
    Ok(Arc::new(ViewTable::new(plan, Some(sql.to_string()))))
}

/// The sessions' rows at the time of the scan, in the columns the views read.
struct SessionsTable {
    backends: Arc<dyn Backends>,
    schema: SchemaRef,
}

impl SessionsTable {
    fn new(backends: Arc<dyn Backends>) -> Self {
        let schema = Schema::new(vec![
            Field::new("pid", DataType::Int32, false),
            Field::new("datname", DataType::Utf8, false),
            Field::new("usename", DataType::Utf8, false),
            Field::new("application_name", DataType::Utf8, false),
            Field::new("client_addr", DataType::Utf8, false),
            Field::new("client_port", DataType::Int32, false),
            Field::new("backend_start", timestamptz(), false),
            Field::new("xact_start", timestamptz(), true),
            Field::new("query_start", timestamptz(), true),
            Field::new("state_change", timestamptz(), false),
            Field::new("state", DataType::Utf8, false),
            Field::new("query", DataType::Utf8, false),
        ]);
        SessionsTable {
            backends,
            schema: Arc::new(schema),
        }
    }

    fn columns(&self) -> Vec<ArrayRef> {
        let mut backends = self.backends.backends();
        backends.sort_by_key(|b| b.pid);
        let micros = |t: SystemTime| match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(since) => since.as_micros() as i64,
            Err(before) => -(before.duration().as_micros() as i64),
        };
        let times = |f: &dyn Fn(&Backend) -> Option<SystemTime>| -> ArrayRef {
            Arc::new(
                TimestampMicrosecondArray::from_iter(backends.iter().map(|b| f(b).map(micros)))
                    .with_timezone("UTC"),
            )
        };
        let texts = |f: &dyn Fn(&Backend) -> Option<&str>| -> ArrayRef {
            Arc::new(StringArray::from_iter(backends.iter().map(f)))
        };
        vec![
            Arc::new(Int32Array::from_iter_values(backends.iter().map(|b| b.pid))),
            texts(&|b| Some(&b.database)),
            texts(&|b| Some(&b.user)),
            texts(&|b| Some(&b.application_name)),
            Arc::new(StringArray::from_iter_values(
                backends.iter().map(|b| b.client.ip().to_string()),
            )),
            Arc::new(Int32Array::from_iter_values(
                backends.iter().map(|b| i32::from(b.client.port())),
            )),
            times(&|b| Some(b.backend_start)),
            times(&|b| b.xact_start),
            times(&|b| b.query_start),
            times(&|b| Some(b.state_change)),
            texts(&|b| Some(b.state)),
            texts(&|b| Some(&b.query)),
        ]
    }
}

impl fmt::Debug for SessionsTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionsTable")
    }
}

#[async_trait]
impl TableProvider for SessionsTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        crate::sql::system::one_batch(&self.schema, self.columns(), projection)
    }
}

/// `pg_cancel_backend(pid)` / `pg_terminate_backend(pid [, timeout])`: true once the session
/// is signalled, false if `pid` is none; NULL for a NULL pid. The timeout (milliseconds to
/// wait for the session to end) is accepted and not waited for: the session ends once its
/// running statement is done.
fn signal_function(name: &str, signal: Signal, backends: Arc<dyn Backends>) -> ScalarUDF {
    let mut forms = vec![TypeSignature::Exact(vec![DataType::Int32])];
    forms.push(TypeSignature::Exact(vec![DataType::Int64]));
    if signal == Signal::Terminate {
        forms.push(TypeSignature::Exact(vec![DataType::Int32, DataType::Int64]));
        forms.push(TypeSignature::Exact(vec![DataType::Int64, DataType::Int64]));
    }
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        name,
        Signature::one_of(forms, Volatility::Volatile),
        DataType::Boolean,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(&args[..1])?;
            let pids = arrow::compute::cast(&arrays[0], &DataType::Int64)?;
            let signalled: BooleanArray = pids
                .as_primitive::<Int64Type>()
                .iter()
                .map(|pid| {
                    pid.map(|pid| i32::try_from(pid).is_ok_and(|pid| backends.signal(pid, signal)))
                })
                .collect();
            shaped(&args[..1], Arc::new(signalled))
        }),
    ))
}

/// `pg_blocking_pids(pid)`: the sessions holding locks `pid` waits for, always `{}`.
fn blocking_pids() -> ScalarUDF {
    let item = Arc::new(Field::new_list_field(DataType::Int32, true));
    let returns = DataType::List(item.clone());
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "pg_blocking_pids",
        Signature::one_of(
            vec![
                TypeSignature::Exact(vec![DataType::Int32]),
                TypeSignature::Exact(vec![DataType::Int64]),
            ],
            Volatility::Volatile,
        ),
        returns,
        Arc::new(move |args: &[ColumnarValue]| {
            let rows = ColumnarValue::values_to_arrays(args)?[0].len();
            let offsets = arrow::buffer::OffsetBuffer::new_zeroed(rows);
            let empty = ListArray::try_new(
                item.clone(),
                offsets,
                Arc::new(Int32Array::from(Vec::<i32>::new())),
                None,
            )?;
            shaped(args, Arc::new(empty))
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_text_is_cut_at_a_character_boundary() {
        assert_eq!(truncated("abc", 5), "abc");
        assert_eq!(truncated("abcdef", 3), "abc");
        // 'é' is two bytes: a cut inside it keeps the bytes before.
        assert_eq!(truncated("aé", 2), "a");
        assert_eq!(truncated("aé", 3), "aé");
    }
}
