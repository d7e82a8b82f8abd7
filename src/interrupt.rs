//! Stopping a running statement: cancel requests and `statement_timeout`.
//!
//! pgwire races a cancel request only against a handler's `do_query`, which for DataFusion
//! returns as soon as the statement is planned: the work happens afterwards, while pgwire pulls
//! the result's row stream to the socket. datafusion-postgres's `statement_timeout` has the
//! same reach. So each statement here runs under a [`Statement`]: its own cancellation token,
//! installed on the connection so that a cancel request (matched by the process id and secret
//! key the connection got at start-up) fires it, and the deadline of the session's
//! `statement_timeout`. Both bound the handler's work and every poll of the result stream
//! (rows, or `COPY … TO STDOUT` data). An interrupted stream ends with SQLSTATE 57014 and drops
//! the DataFusion stream under it, which stops the execution.
//!
//! The timeout counts from the start of the query message: a simple query with several
//! statements shares one deadline (PostgreSQL restarts it per statement). A portal read in
//! several `Execute`s (a driver's fetch size) gets a new [`Statement`] for each: a result
//! stream is bounded by whichever statement its connection runs when it is polled, so each
//! `Execute` has its own deadline and a cancel request stops the one running, as in
//! PostgreSQL when each `Execute` is followed by `Sync`, as drivers send them. (PostgreSQL
//! keeps one deadline for `Execute`s pipelined without a `Sync` between them.)

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    ContextModifier, DiscardObject, Expr, Ident, ObjectName, Reset, Set, Statement as Sql, Value,
};
use datafusion_postgres::hooks::{HookClient, QueryHook};
use futures::Stream;
use pgwire::api::ClientInfo;
use pgwire::api::Type;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::error::PgWireResult;
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::startup::ParameterStatus;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::pgwire::{no_rows_plan, user_error};

/// Client-metadata key of the session's statement timeout in milliseconds, absent when there
/// is none. datafusion-postgres reads the same key to bound planning.
const TIMEOUT_KEY: &str = "statement_timeout_ms";

/// The connections that can be interrupted, by the process id and secret key each was given at
/// start-up; also the server's default `statement_timeout`. It answers cancel requests.
pub struct Registry {
    connections: parking_lot::Mutex<HashMap<(i32, Bytes), Weak<Running>>>,
    default_timeout: Option<Duration>,
}

/// One connection's interrupt point: the statement it runs now (or ran last). A cancel
/// request fires its token; result streams follow it from statement to statement.
#[derive(Default)]
struct Running {
    now: parking_lot::Mutex<Limits>,
    /// Counts the statements started, so that a stream notices a new one without a lock.
    started: AtomicU64,
}

/// What interrupts one statement.
#[derive(Clone, Default)]
struct Limits {
    token: CancellationToken,
    deadline: Option<Instant>,
}

impl Running {
    /// Makes `limits` the connection's running statement; returns its number.
    fn start(&self, limits: Limits) -> u64 {
        let mut now = self.now.lock();
        *now = limits;
        self.started.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The running statement and its number.
    fn current(&self) -> (Limits, u64) {
        let now = self.now.lock();
        (now.clone(), self.started.load(Ordering::Acquire))
    }
}

/// Removes a connection from the [`Registry`] when its session ends.
struct Registration {
    registry: Arc<Registry>,
    key: (i32, Bytes),
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.connections.lock().remove(&self.key);
    }
}

/// The session settings as they were at start-up, which `RESET` returns to.
struct StartupSettings(HashMap<String, String>);

impl Registry {
    /// `default_timeout` of zero means no timeout, as in PostgreSQL.
    pub fn new(default_timeout: Duration) -> Self {
        Registry {
            connections: Default::default(),
            default_timeout: (!default_timeout.is_zero()).then_some(default_timeout),
        }
    }

    /// Makes an authenticated connection interruptible and gives it the server's default
    /// `statement_timeout`. Called once, when start-up has finished.
    pub fn register<C: ClientInfo + ?Sized>(self: &Arc<Self>, client: &mut C) {
        if client.session_extensions().get::<Registration>().is_some() {
            return;
        }
        let (pid, secret) = client.pid_and_secret_key();
        let key = (pid, secret.to_bytes());
        let running = client
            .session_extensions()
            .get_or_insert_with(Running::default);
        self.connections
            .lock()
            .insert(key.clone(), Arc::downgrade(&running));
        client.session_extensions().insert(Registration {
            registry: self.clone(),
            key,
        });
        set_timeout(client, self.default_timeout);
        let settings = StartupSettings(client.metadata().clone());
        client.session_extensions().insert(settings);
    }
}

#[async_trait]
impl CancelHandler for Registry {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let key = (request.pid, request.secret_key.to_bytes());
        let running = self.connections.lock().get(&key).and_then(Weak::upgrade);
        match running {
            Some(running) => running.now.lock().token.cancel(),
            None => tracing::debug!(pid = request.pid, "cancel request for no known connection"),
        }
    }
}

/// The session's statement timeout.
fn timeout<C: ClientInfo + ?Sized>(client: &C) -> Option<Duration> {
    client
        .metadata()
        .get(TIMEOUT_KEY)
        .and_then(|ms| ms.parse().ok())
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
}

fn set_timeout<C: ClientInfo + ?Sized>(client: &mut C, timeout: Option<Duration>) {
    let metadata = client.metadata_mut();
    match timeout {
        Some(t) => metadata.insert(TIMEOUT_KEY.into(), t.as_millis().to_string()),
        None => metadata.remove(TIMEOUT_KEY),
    };
}

fn canceled() -> pgwire::error::PgWireError {
    user_error("57014", "canceling statement due to user request")
}

fn timed_out() -> pgwire::error::PgWireError {
    user_error("57014", "canceling statement due to statement timeout")
}

/// Whether a query message may write (`INSERT`, `VACUUM`): its work is then never
/// interrupted, because a write cannot be undone once its rows reach the WAL, and answering
/// 57014 for rows that were stored would make a retrying client write them twice. Erring
/// towards "writes" only costs interruptibility.
pub fn may_write(query: &str) -> bool {
    // Without copying the text: an extended-protocol INSERT can be megabytes.
    let mentions = |word: &str| {
        query
            .as_bytes()
            .windows(word.len())
            .any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
    };
    mentions("insert") || mentions("vacuum")
}

/// One query message being answered (a simple query, or one `Execute`): interrupted by a
/// cancel request or its deadline.
pub struct Statement {
    limits: Limits,
    /// The connection's interrupt point, and this statement's number there.
    running: Arc<Running>,
    number: u64,
    /// The handler's work is left to finish: see [`may_write`].
    writes: bool,
}

impl Statement {
    /// Starts a statement on `client`'s connection, with a deadline `statement_timeout` from
    /// now: a cancel request from now on interrupts it (for `query` that [`may_write`], only
    /// its result rows), and so do they for every result stream the connection polls — also
    /// one of an earlier statement, such as a portal's rows read by a later `Execute`.
    pub fn start<C: ClientInfo + ?Sized>(client: &C, query: &str) -> Statement {
        let limits = Limits {
            token: CancellationToken::new(),
            deadline: timeout(client).map(|t| Instant::now() + t),
        };
        let running = client
            .session_extensions()
            .get::<Running>()
            .unwrap_or_default();
        Statement::on(running, limits, may_write(query))
    }

    fn on(running: Arc<Running>, limits: Limits, writes: bool) -> Statement {
        let number = running.start(limits.clone());
        Statement {
            limits,
            running,
            number,
            writes,
        }
    }

    /// Runs `work` (planning, and whatever a handler does before it returns its result)
    /// unless the statement is interrupted first.
    pub async fn run<T>(&self, work: impl Future<Output = PgWireResult<T>>) -> PgWireResult<T> {
        if self.writes {
            return work.await;
        }
        let deadline = async {
            match self.limits.deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = self.limits.token.cancelled() => Err(canceled()),
            _ = deadline => Err(timed_out()),
            result = work => result,
        }
    }

    /// `response` with its result rows or `COPY … TO STDOUT` data, if it has any, ended by an
    /// interrupt.
    pub fn bound(&self, response: Response) -> Response {
        match response {
            Response::Query(mut query) => {
                query.data_rows = Box::pin(self.bounded(query.data_rows));
                Response::Query(query)
            }
            Response::CopyOut(mut copy) => {
                copy.data_stream = Box::pin(self.bounded(copy.data_stream));
                Response::CopyOut(copy)
            }
            other => other,
        }
    }

    fn bounded<S>(&self, stream: S) -> Bounded<S> {
        Bounded {
            stream: Some(stream),
            running: self.running.clone(),
            statement: self.number,
            cancelled: Box::pin(self.limits.token.clone().cancelled_owned()),
            deadline: self
                .limits
                .deadline
                .map(|deadline| Box::pin(tokio::time::sleep_until(deadline))),
        }
    }
}

/// A result stream that ends with a 57014 error once the statement its connection runs is
/// interrupted, dropping the stream under it.
struct Bounded<S> {
    stream: Option<S>,
    running: Arc<Running>,
    /// The number of the statement `cancelled` and `deadline` are of.
    statement: u64,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> Bounded<S> {
    /// Follows the connection to the statement it runs now, if that is a new one.
    fn follow(&mut self) {
        if self.running.started.load(Ordering::Acquire) == self.statement {
            return;
        }
        let (limits, statement) = self.running.current();
        self.statement = statement;
        self.cancelled = Box::pin(limits.token.cancelled_owned());
        self.deadline = limits
            .deadline
            .map(|deadline| Box::pin(tokio::time::sleep_until(deadline)));
    }
}

impl<S, T> Stream for Bounded<S>
where
    S: Stream<Item = PgWireResult<T>> + Unpin,
{
    type Item = PgWireResult<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.follow();
        let Some(stream) = this.stream.as_mut() else {
            return Poll::Ready(None);
        };
        let interrupt = if this.cancelled.as_mut().poll(cx).is_ready() {
            Some(canceled())
        } else if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            Some(timed_out())
        } else {
            None
        };
        if let Some(error) = interrupt {
            this.stream = None;
            return Poll::Ready(Some(Err(error)));
        }
        let next = Pin::new(stream).poll_next(cx);
        if let Poll::Ready(None) = next {
            this.stream = None;
        }
        next
    }
}

/// `SET statement_timeout`, `SHOW statement_timeout` and `RESET` (of it, of any setting, or
/// `ALL`), in PostgreSQL's units and formats. datafusion-postgres's own handling of the setting
/// reads only whole numbers with one unit and turns anything else into "no timeout".
///
/// `SET`, `RESET` and `SHOW` take the names PostgreSQL 15 has ([`check_settable`]): any other
/// name is 42704, as in PostgreSQL, where datafusion-postgres would accept and ignore it.
///
/// `DISCARD ALL`, which connection poolers send before handing a connection to the next
/// client, is `RESET ALL` and `CLOSE ALL` (cursors and portals); outside a transaction block
/// only, as in PostgreSQL. `DISCARD PLANS`, `TEMP` and `SEQUENCES` have nothing to discard:
/// there are no cached plans, temporary tables or sequences.
pub struct SettingsHook {
    pub registry: Arc<Registry>,
}

/// What a statement asks of the settings, when this hook answers it.
enum Action {
    /// `SET [LOCAL] statement_timeout` (`LOCAL`: until the transaction ends).
    SetTimeout {
        timeout: Option<Duration>,
        local: bool,
    },
    /// `COMMIT` / `ROLLBACK`: a `SET LOCAL` ends; the statement itself goes on to the next hook.
    EndTransaction,
    ShowTimeout,
    /// `SHOW` of a parameter no session can change (`server_version`): the server's value.
    ShowFixed(String, &'static str),
    /// `SHOW name`: the session's value, else PostgreSQL 15's default; `None` from `run` (to
    /// datafusion-postgres) when neither is known (`catalogs`).
    Show(String),
    /// `SHOW ALL`.
    ShowAll,
    /// `SET [LOCAL] name` of a parameter kept per session as text (`value` `None`: `DEFAULT`).
    SetSession {
        name: String,
        value: Option<String>,
        local: bool,
    },
    Reset(Option<String>),
    Discard(DiscardObject),
}

/// Parameters this hook keeps that PostgreSQL reports with `ParameterStatus` when they
/// change (`GUC_REPORT`); datafusion-postgres reports those it keeps itself.
const REPORTED: [&str; 1] = ["timezone"];

fn is_timeout(name: &str) -> bool {
    name.eq_ignore_ascii_case("statement_timeout")
}

/// Parameters datafusion-postgres's `SetShowHook` keeps in the session and reports with
/// `ParameterStatus`. It sends every other `SET` to DataFusion, whose one configuration all
/// sessions share: `SET timezone = 'Europe/Berlin'` on one connection changed `now()` on
/// every other. [`Action::SetSession`] keeps those in the session instead.
const UPSTREAM_SESSION_SETTINGS: [&str; 6] = [
    "datestyle",
    "bytea_output",
    "intervalstyle",
    "application_name",
    "extra_float_digits",
    "search_path",
];

/// `SHOW TIME ZONE`.
fn is_time_zone(variable: &[Ident]) -> bool {
    matches!(variable, [time, zone] if time.value.eq_ignore_ascii_case("time") && zone.value.eq_ignore_ascii_case("zone"))
}

/// The text a `SET` stores, as `SHOW` answers it: strings unquoted, lists joined with ", ";
/// `None` for `DEFAULT` (and `SET TIME ZONE LOCAL`), which reset the parameter.
fn session_value(values: &[Expr]) -> Option<String> {
    let text = |value: &Expr| match value {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            Value::Number(n, _) => n.clone(),
            Value::Boolean(b) => if *b { "on" } else { "off" }.into(),
            other => other.to_string(),
        },
        Expr::Identifier(ident) => ident.value.clone(),
        other => other.to_string(),
    };
    match values {
        [Expr::Identifier(ident)]
            if ident.value.eq_ignore_ascii_case("default")
                || ident.value.eq_ignore_ascii_case("local") =>
        {
            None
        }
        values => Some(values.iter().map(text).collect::<Vec<_>>().join(", ")),
    }
}

/// The session's value of `name` (set in the session or given at start-up, in any case),
/// else PostgreSQL 15's default.
fn shown_value<C: ClientInfo + ?Sized>(client: &C, name: &str) -> Option<String> {
    client
        .metadata()
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.clone())
        .or_else(|| crate::pg_compat::setting(name).map(str::to_string))
}

/// `SHOW`'s column name: PostgreSQL's spelling of the parameter.
fn display_name(name: &str) -> &str {
    match name {
        "timezone" => "TimeZone",
        "datestyle" => "DateStyle",
        "intervalstyle" => "IntervalStyle",
        name => name,
    }
}

/// PostgreSQL 15's run-time parameters, one `name context` a line (`pg_settings.context`).
const PG_PARAMETERS: &str = include_str!("interrupt/pg15_parameters.txt");

/// The `pg_settings.context` of PostgreSQL 15's parameter `name` (lower case), `None` if
/// PostgreSQL has no such parameter.
fn parameter_context(name: &str) -> Option<&'static str> {
    PG_PARAMETERS
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (parameter, context) = line.split_once(' ')?;
            (parameter == name).then_some(context)
        })
}

/// A parameter name as PostgreSQL looks it up: its parts joined by dots, in lower case
/// (parameter names are case-insensitive, quoted or not).
fn parameter_name(name: &ObjectName) -> String {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| match part.as_ident() {
            Some(ident) => ident.value.to_lowercase(),
            None => part.to_string().to_lowercase(),
        })
        .collect();
    parts.join(".")
}

fn unrecognized(name: &str) -> pgwire::error::PgWireError {
    user_error(
        "42704",
        format!("unrecognized configuration parameter \"{name}\""),
    )
}

/// Whether a session may `SET` or `RESET` parameter `name` (lower case), with PostgreSQL's
/// answer when it may not: 42704 for a name PostgreSQL 15 does not have, 55P02 for one a
/// session cannot change. A name with a dot is a custom parameter (PostgreSQL's placeholders,
/// DataFusion's `datafusion.*` options) and is always accepted.
fn check_settable(name: &str) -> PgWireResult<()> {
    if name.contains('.') {
        return Ok(());
    }
    let cannot = |why: &str| {
        Err(user_error(
            "55P02",
            format!("parameter \"{name}\" cannot be {why}"),
        ))
    };
    match parameter_context(name) {
        None => Err(unrecognized(name)),
        Some("user" | "superuser") => Ok(()),
        Some("internal") => cannot("changed"),
        Some("postmaster") => cannot("changed without restarting the server"),
        Some("sighup") => cannot("changed now"),
        // backend, superuser-backend
        Some(_) => cannot("set after connection start"),
    }
}

/// Whether `SHOW name` (lower case) names something to show: a PostgreSQL 15 parameter, a
/// custom parameter, `ALL`, or datafusion-postgres's `catalogs`.
fn showable(name: &str) -> bool {
    name.contains('.') || matches!(name, "all" | "catalogs") || parameter_context(name).is_some()
}

impl SettingsHook {
    fn action(&self, statement: &Sql) -> Option<PgWireResult<Action>> {
        match statement {
            Sql::Set(Set::SingleAssignment {
                scope,
                variable,
                values,
                ..
            }) if is_timeout(&parameter_name(variable)) => Some(
                match values.as_slice() {
                    [value] => match value {
                        Expr::Identifier(ident) if ident.value.eq_ignore_ascii_case("default") => {
                            Ok(self.registry.default_timeout)
                        }
                        Expr::Value(v) => match &v.value {
                            Value::Number(text, _)
                            | Value::SingleQuotedString(text)
                            | Value::DoubleQuotedString(text) => parse_timeout(text),
                            _ => Err(bad_timeout(&value.to_string())),
                        },
                        other => Err(bad_timeout(&other.to_string())),
                    },
                    _ => Err(user_error(
                        "22023",
                        "SET statement_timeout takes only one argument",
                    )),
                }
                .map(|timeout| Action::SetTimeout {
                    timeout,
                    local: matches!(scope, Some(ContextModifier::Local)),
                }),
            ),
            Sql::Set(Set::SingleAssignment {
                scope,
                variable,
                values,
                ..
            }) => {
                let name = parameter_name(variable);
                match check_settable(&name) {
                    Err(e) => Some(Err(e)),
                    // datafusion-postgres keeps these per session and reports them; it sends
                    // `SET LOCAL` of them to DataFusion, so that stays here.
                    Ok(())
                        if scope.is_none()
                            && UPSTREAM_SESSION_SETTINGS.contains(&name.as_str()) =>
                    {
                        None
                    }
                    Ok(()) => Some(Ok(Action::SetSession {
                        name,
                        value: session_value(values),
                        local: matches!(scope, Some(ContextModifier::Local)),
                    })),
                }
            }
            Sql::Set(Set::SetTimeZone { local, value }) => Some(Ok(Action::SetSession {
                name: "timezone".into(),
                value: session_value(std::slice::from_ref(value)),
                local: *local,
            })),
            Sql::Commit { .. }
            | Sql::Rollback {
                savepoint: None, ..
            } => Some(Ok(Action::EndTransaction)),
            Sql::ShowVariable { variable } if is_time_zone(variable) => {
                Some(Ok(Action::Show("timezone".into())))
            }
            Sql::ShowVariable { variable } if !variable.is_empty() => {
                // A custom parameter's name comes as its dotted parts.
                let parts: Vec<String> = variable.iter().map(|v| v.value.to_lowercase()).collect();
                let name = parts.join(".");
                if is_timeout(&name) {
                    Some(Ok(Action::ShowTimeout))
                } else if matches!(name.as_str(), "server_version" | "server_version_num")
                    && let Some(value) = crate::pg_compat::setting(&name)
                {
                    Some(Ok(Action::ShowFixed(name, value)))
                } else if name == "all" {
                    Some(Ok(Action::ShowAll))
                } else if showable(&name) {
                    Some(Ok(Action::Show(name)))
                } else {
                    Some(Err(unrecognized(&name)))
                }
            }
            Sql::Discard { object_type } => Some(Ok(Action::Discard(*object_type))),
            Sql::Reset(reset) => Some(match &reset.reset {
                Reset::ALL => Ok(Action::Reset(None)),
                Reset::ConfigurationParameter(name) => {
                    let name = parameter_name(name);
                    check_settable(&name).map(|()| Action::Reset(Some(name)))
                }
            }),
            _ => None,
        }
    }

    /// The answer to `statement`, `None` when it is for another hook. A change to a
    /// [`REPORTED`] parameter (by `SET`, `RESET`, `DISCARD` or the end of a `SET LOCAL`) is
    /// sent to the client as `ParameterStatus`, as PostgreSQL does: psycopg, for one, shows
    /// `timestamptz` values in the zone it last heard.
    async fn answer(
        &self,
        statement: &Sql,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let action = match self.action(statement)? {
            Ok(action) => action,
            Err(e) => return Some(Err(e)),
        };
        let before: Vec<Option<String>> = REPORTED
            .iter()
            .map(|name| shown_value(&*client, name))
            .collect();
        let answer = self.run(action, client);
        for (name, before) in REPORTED.iter().zip(before) {
            let after = shown_value(&*client, name);
            if after != before
                && let Some(value) = after
            {
                let status = ParameterStatus::new(display_name(name).to_string(), value);
                if let Err(e) = client
                    .send_message(PgWireBackendMessage::ParameterStatus(status))
                    .await
                {
                    return Some(Err(e));
                }
            }
        }
        answer
    }

    /// Runs `action`; `None` when the statement is for the next hook (`EndTransaction`, and a
    /// `DISCARD` in an aborted transaction, which the transaction hook refuses).
    fn run(&self, action: Action, client: &mut dyn HookClient) -> Option<PgWireResult<Response>> {
        Some(match action {
            Action::SetTimeout { timeout, local } => {
                if scope_setting(client, TIMEOUT_KEY, local) {
                    set_timeout(client, timeout);
                }
                Ok(Response::Execution(Tag::new("SET")))
            }
            Action::EndTransaction => {
                let saved = client
                    .session_extensions()
                    .insert(LocalSettings(HashMap::new()));
                let metadata = client.metadata_mut();
                for (key, before) in saved.iter().flat_map(|saved| saved.0.iter()) {
                    match before {
                        Some(value) => metadata.insert(key.clone(), value.clone()),
                        None => metadata.remove(key),
                    };
                }
                return None;
            }
            Action::ShowTimeout => {
                show_response("statement_timeout", &format_timeout(timeout(client)))
            }
            Action::ShowFixed(name, value) => show_response(&name, value),
            Action::ShowAll => show_all(client),
            Action::Show(name) => {
                let value = shown_value(client, &name)?;
                show_response(display_name(&name), &value)
            }
            Action::SetSession { name, value, local } => {
                if scope_setting(client, &name, local) {
                    match value {
                        Some(value) => {
                            client.metadata_mut().insert(name, value);
                        }
                        None => restore_startup(client, Some(name)),
                    }
                }
                Ok(Response::Execution(Tag::new("SET")))
            }
            Action::Reset(name) => {
                reset(client, name);
                Ok(Response::Execution(Tag::new("RESET")))
            }
            Action::Discard(object) => {
                match client.transaction_status() {
                    // TransactionStatementHook answers that the transaction is aborted.
                    TransactionStatus::Error => return None,
                    TransactionStatus::Transaction if object == DiscardObject::ALL => {
                        return Some(Err(user_error(
                            "25001",
                            "DISCARD ALL cannot run inside a transaction block",
                        )));
                    }
                    _ => {}
                }
                if object == DiscardObject::ALL {
                    reset(client, None);
                    client.portal_store().clear_portals();
                    for name in PreparedStatements::take(&*client) {
                        client.portal_store().rm_statement(&name);
                    }
                }
                // PostgreSQL's tags: `DISCARD TEMPORARY` answers `DISCARD TEMP` too.
                Ok(Response::Execution(Tag::new(&format!("DISCARD {object}"))))
            }
        })
    }
}

/// Where a `SET` of metadata key `key` lasts, before it is made; `false` when it is to be
/// ignored. `SET LOCAL` records the value from before the transaction's first `SET LOCAL` of
/// `key`, which `COMMIT` / `ROLLBACK` restore; outside a transaction block PostgreSQL ignores it
/// (with a warning). A plain `SET` or `RESET` outlives the transaction, so a value recorded by
/// an earlier `SET LOCAL` is dropped.
fn scope_setting(client: &mut dyn HookClient, key: &str, local: bool) -> bool {
    if local && client.transaction_status() == TransactionStatus::Idle {
        return false;
    }
    let mut saved = client
        .session_extensions()
        .get::<LocalSettings>()
        .map(|l| l.0.clone())
        .unwrap_or_default();
    if local {
        let before = client.metadata().get(key).cloned();
        saved.entry(key.to_string()).or_insert(before);
    } else {
        saved.remove(key);
    }
    client.session_extensions().insert(LocalSettings(saved));
    true
}

/// `RESET name`, or `RESET ALL` with `None`: back to the settings the session started with.
fn reset(client: &mut dyn HookClient, name: Option<String>) {
    match &name {
        Some(name) => {
            scope_setting(
                client,
                if is_timeout(name) { TIMEOUT_KEY } else { name },
                false,
            );
        }
        None => {
            client
                .session_extensions()
                .insert(LocalSettings(HashMap::new()));
        }
    }
    restore_startup(client, name);
}

/// Sets `name` (all with `None`) back to its start-up value.
fn restore_startup(client: &mut dyn HookClient, name: Option<String>) {
    let startup = client
        .session_extensions()
        .get::<StartupSettings>()
        .map(|s| s.0.clone())
        .unwrap_or_default();
    let metadata = client.metadata_mut();
    let names: Vec<String> = match name {
        Some(name) if is_timeout(&name) => vec![TIMEOUT_KEY.into()],
        Some(name) => vec![name],
        None => metadata.keys().chain(startup.keys()).cloned().collect(),
    };
    for name in names {
        match startup.get(&name) {
            Some(value) => metadata.insert(name, value.clone()),
            None => metadata.remove(&name),
        };
    }
}

/// The names of a connection's prepared statements, kept by `pgwire::ExtendedQueries` on
/// Parse and Close, because pgwire's statement store cannot list them: `DISCARD ALL`
/// (`DEALLOCATE ALL`, what connection poolers send between clients) drops them all.
#[derive(Default)]
pub(crate) struct PreparedStatements(parking_lot::Mutex<std::collections::BTreeSet<String>>);

impl PreparedStatements {
    pub(crate) fn parsed<C: ClientInfo + ?Sized>(client: &C, name: &str) {
        if !name.is_empty() {
            let names = client
                .session_extensions()
                .get_or_insert_with(Self::default);
            names.0.lock().insert(name.to_string());
        }
    }

    pub(crate) fn closed<C: ClientInfo + ?Sized>(client: &C, name: &str) {
        if let Some(names) = client.session_extensions().get::<Self>() {
            names.0.lock().remove(name);
        }
    }

    fn take<C: ClientInfo + ?Sized>(client: &C) -> Vec<String> {
        client
            .session_extensions()
            .get::<Self>()
            .map(|names| std::mem::take(&mut *names.0.lock()).into_iter().collect())
            .unwrap_or_default()
    }
}

/// The metadata values settings had before this transaction's first `SET LOCAL` of them
/// (`None`: not set), restored when it ends: a setting made for one transaction must not reach
/// the next, which behind a transaction-pooling proxy may be another client's.
struct LocalSettings(HashMap<String, Option<String>>);

/// `SHOW ALL`'s columns, as PostgreSQL names them.
const SHOW_ALL_COLUMNS: [&str; 3] = ["name", "setting", "description"];

/// `SHOW ALL`: each PostgreSQL 15 parameter this server has a value for (set in the session
/// or at start-up, else PostgreSQL's default), then custom parameters set in the session,
/// sorted by name as PostgreSQL sorts them. Descriptions are empty: PostgreSQL's are its own
/// documentation, not this server's.
fn show_all<C: ClientInfo + ?Sized>(client: &C) -> PgWireResult<Response> {
    let mut settings: Vec<(String, String)> = PG_PARAMETERS
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|name| {
            let value = if is_timeout(name) {
                format_timeout(timeout(client))
            } else {
                shown_value(client, name)?
            };
            Some((display_name(name).to_string(), value))
        })
        .collect();
    settings.extend(
        client
            .metadata()
            .iter()
            .filter(|(key, _)| key.contains('.'))
            .map(|(key, value)| (key.clone(), value.clone())),
    );
    settings.sort_by_key(|(name, _)| name.to_lowercase());
    let fields: Arc<Vec<FieldInfo>> = Arc::new(
        SHOW_ALL_COLUMNS
            .iter()
            .map(|name| FieldInfo::new(name.to_string(), None, None, Type::TEXT, FieldFormat::Text))
            .collect(),
    );
    let mut rows = Vec::with_capacity(settings.len());
    for (name, value) in &settings {
        let mut encoder = DataRowEncoder::new(fields.clone());
        encoder.encode_field(&Some(name.as_str()))?;
        encoder.encode_field(&Some(value.as_str()))?;
        encoder.encode_field(&Some(""))?;
        rows.push(Ok(encoder.take_row()));
    }
    Ok(Response::Query(QueryResponse::new(
        fields,
        futures::stream::iter(rows),
    )))
}

/// A one-row, one-column text result, as `SHOW` answers.
fn show_response(name: &str, value: &str) -> PgWireResult<Response> {
    let fields = Arc::new(vec![FieldInfo::new(
        name.to_string(),
        None,
        None,
        Type::TEXT,
        FieldFormat::Text,
    )]);
    let mut encoder = DataRowEncoder::new(fields.clone());
    encoder.encode_field(&Some(value))?;
    let row = encoder.take_row();
    Ok(Response::Query(QueryResponse::new(
        fields,
        futures::stream::iter([Ok(row)]),
    )))
}

fn bad_timeout(value: &str) -> pgwire::error::PgWireError {
    user_error(
        "22023",
        format!("invalid value for parameter \"statement_timeout\": \"{value}\""),
    )
}

/// A `statement_timeout` value as PostgreSQL reads it: a number, in milliseconds unless it has
/// one of the units `us`, `ms`, `s`, `min`, `h`, `d`; zero turns the timeout off.
fn parse_timeout(text: &str) -> PgWireResult<Option<Duration>> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad_timeout(text))?;
    let ms_per_unit = match unit.trim() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return Err(bad_timeout(text)),
    };
    let ms = (number * ms_per_unit).round();
    if !ms.is_finite() || ms > i32::MAX as f64 {
        return Err(bad_timeout(text));
    }
    Ok((ms >= 1.0).then(|| Duration::from_millis(ms as u64)))
}

/// A timeout as `SHOW` prints it in PostgreSQL: `0`, or the largest unit that divides it.
fn format_timeout(timeout: Option<Duration>) -> String {
    let Some(ms) = timeout.map(|t| t.as_millis()) else {
        return "0".into();
    };
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("min", 60_000),
        ("s", 1_000),
    ] {
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// The plan Parse gets for a `SHOW` this hook answers: one text column, no rows.
fn show_plan(name: &str) -> PgWireResult<LogicalPlan> {
    rows_plan(&[name])
}

/// The plan Parse describes for a result of text columns named `columns`, which the hook
/// answers itself at Execute.
fn rows_plan(columns: &[&str]) -> PgWireResult<LogicalPlan> {
    let schema = arrow::datatypes::Schema::new(
        columns
            .iter()
            .map(|name| {
                arrow::datatypes::Field::new(*name, arrow::datatypes::DataType::Utf8, false)
            })
            .collect::<Vec<_>>(),
    );
    let schema = datafusion::common::DFSchema::try_from(schema)
        .map_err(|e| user_error("XX000", e.to_string()))?;
    Ok(LogicalPlan::EmptyRelation(
        datafusion::logical_expr::EmptyRelation {
            produce_one_row: false,
            schema: Arc::new(schema),
        },
    ))
}

#[async_trait]
impl QueryHook for SettingsHook {
    async fn handle_simple_query(
        &self,
        statement: &Sql,
        _context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.answer(statement, client).await
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Sql,
        _context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        Some(match self.action(statement)? {
            Ok(Action::ShowTimeout) => show_plan("statement_timeout"),
            Ok(Action::ShowFixed(name, _)) => show_plan(&name),
            Ok(Action::ShowAll) => rows_plan(&SHOW_ALL_COLUMNS),
            Ok(Action::Show(name)) => {
                shown_value(client, &name)?;
                show_plan(display_name(&name))
            }
            Ok(Action::EndTransaction) => return None,
            Ok(_) => Ok(no_rows_plan()),
            Err(e) => Err(e),
        })
    }

    async fn handle_extended_query(
        &self,
        statement: &Sql,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.answer(statement, client).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_read_and_print_like_postgres() {
        let ms = |text: &str| parse_timeout(text).map(|t| t.map(|d| d.as_millis()));
        assert_eq!(ms("0").ok(), Some(None));
        assert_eq!(ms("250").ok(), Some(Some(250)));
        assert_eq!(ms("1.5s").ok(), Some(Some(1500)));
        assert_eq!(ms("5 s").ok(), Some(Some(5000)));
        assert_eq!(ms("2min").ok(), Some(Some(120_000)));
        assert_eq!(ms("1h").ok(), Some(Some(3_600_000)));
        assert_eq!(ms("1d").ok(), Some(Some(86_400_000)));
        assert_eq!(ms("1500us").ok(), Some(Some(2)));
        assert_eq!(ms("100us").ok(), Some(None));
        for bad in ["", "s", "-5", "5 sec", "abc", "99999999999999"] {
            assert!(ms(bad).is_err(), "{bad:?} was accepted");
        }
        let shown = |ms: u64| format_timeout(Some(Duration::from_millis(ms)));
        assert_eq!(format_timeout(None), "0");
        assert_eq!(shown(1500), "1500ms");
        assert_eq!(shown(5000), "5s");
        assert_eq!(shown(120_000), "2min");
        assert_eq!(shown(7_200_000), "2h");
        assert_eq!(shown(86_400_000), "1d");
    }

    #[test]
    fn parameter_names_are_postgres_15s() {
        let code = |name: &str| {
            check_settable(name).err().map(|e| match e {
                pgwire::error::PgWireError::UserError(info) => info.code,
                other => other.to_string(),
            })
        };
        for settable in [
            "statement_timeout",
            "application_name",
            "timezone",
            "datestyle",
            "search_path",
            "work_mem",
            "role",
            "datafusion.execution.batch_size",
            "myapp.tenant",
        ] {
            assert_eq!(code(settable), None, "{settable}");
        }
        assert_eq!(code("some_unknown_name").as_deref(), Some("42704"));
        for fixed in [
            "server_version",
            "shared_buffers",
            "archive_command",
            "log_connections",
        ] {
            assert_eq!(code(fixed).as_deref(), Some("55P02"), "{fixed}");
        }
        assert!(showable("server_version") && showable("all") && !showable("nope"));

        let name = |sql: &str| {
            let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
            match datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, sql)
                .ok()
                .and_then(|mut s| s.pop())
            {
                Some(Sql::Reset(reset)) => match reset.reset {
                    Reset::ConfigurationParameter(name) => parameter_name(&name),
                    Reset::ALL => "ALL".into(),
                },
                other => panic!("not a RESET: {other:?}"),
            }
        };
        assert_eq!(name("RESET \"TimeZone\""), "timezone");
        assert_eq!(name("RESET Statement_Timeout"), "statement_timeout");
        assert_eq!(name("RESET MyApp.\"Tenant\""), "myapp.tenant");
    }

    /// A statement on a connection of its own, interrupted by nothing but `deadline`.
    /// The stream's next item is an error whose message contains `expected`.
    async fn assert_next_error<S>(rows: &mut S, expected: &str)
    where
        S: futures::Stream<Item = PgWireResult<i32>> + Unpin,
    {
        use futures::StreamExt;
        let error = rows
            .next()
            .await
            .and_then(|r| r.err())
            .map(|e| e.to_string());
        assert!(
            error.as_deref().is_some_and(|e| e.contains(expected)),
            "expected an error containing {expected:?}, got {error:?}"
        );
    }

    fn statement(deadline: Option<Instant>) -> Statement {
        let limits = Limits {
            token: CancellationToken::new(),
            deadline,
        };
        Statement::on(Arc::default(), limits, false)
    }

    #[tokio::test]
    async fn an_interrupted_stream_ends_with_57014_and_drops_its_source() {
        let statement = statement(None);
        let (dropped_tx, mut dropped) = tokio::sync::oneshot::channel::<()>();
        let source = futures::stream::unfold(dropped_tx, |guard| async move {
            tokio::task::yield_now().await;
            Some((Ok::<_, pgwire::error::PgWireError>(1), guard))
        });
        let mut rows = statement.bounded(Box::pin(source));
        use futures::StreamExt;
        assert_eq!(rows.next().await.map(|r| r.ok()), Some(Some(1)));
        statement.limits.token.cancel();
        assert_next_error(&mut rows, "user request").await;
        assert!(rows.next().await.is_none());
        assert!(
            dropped
                .try_recv()
                .is_err_and(|e| e == tokio::sync::oneshot::error::TryRecvError::Closed)
        );
    }

    #[tokio::test]
    async fn a_deadline_interrupts_work_that_has_not_returned() {
        let statement = statement(Some(Instant::now() + Duration::from_millis(50)));
        let result = statement
            .run(std::future::pending::<PgWireResult<()>>())
            .await
            .map_err(|e| e.to_string());
        assert!(
            result
                .as_ref()
                .is_err_and(|e| e.contains("statement timeout")),
            "{result:?}"
        );
    }

    /// A portal's rows read by later `Execute`s: each new statement on the connection bounds
    /// the stream from then on, with its own deadline and cancel token.
    #[tokio::test]
    async fn a_stream_follows_its_connection_to_the_next_statement() {
        use futures::StreamExt;
        let first = statement(Some(Instant::now() + Duration::from_millis(20)));
        let mut rows = first.bounded(Box::pin(futures::stream::repeat_with(|| {
            Ok::<_, pgwire::error::PgWireError>(1)
        })));
        assert_eq!(rows.next().await.map(|r| r.ok()), Some(Some(1)));
        tokio::time::sleep(Duration::from_millis(30)).await;
        // Past the first deadline, but a later Execute started a statement with a new one.
        let later = Limits {
            token: CancellationToken::new(),
            deadline: Some(Instant::now() + Duration::from_secs(60)),
        };
        let second = Statement::on(first.running.clone(), later, false);
        assert_eq!(rows.next().await.map(|r| r.ok()), Some(Some(1)));
        first.limits.token.cancel();
        assert_eq!(
            rows.next().await.map(|r| r.ok()),
            Some(Some(1)),
            "an ended statement's cancel is not the running one's"
        );
        second.limits.token.cancel();
        assert_next_error(&mut rows, "user request").await;

        // Without a later statement, the first deadline ends the stream.
        let alone = statement(Some(Instant::now() + Duration::from_millis(20)));
        let mut rows = alone.bounded(Box::pin(futures::stream::repeat_with(|| {
            Ok::<_, pgwire::error::PgWireError>(1)
        })));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_next_error(&mut rows, "statement timeout").await;
    }
}
