//! Stopping a running statement: cancel requests, `statement_timeout`, and panics (a panic in
//! a statement's work or its result stream is that statement's XX000, [`crate::panics`]).
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
//!
//! The [`Registry`] of connections is also the list of sessions `pg_stat_activity` shows
//! ([`crate::sql::activity`]): each connection's row is updated as a statement starts
//! ([`Statement::start`]: `active`, its text and start time) and as the connection waits for
//! the client ([`waiting`]: `idle`, `idle in transaction`). `pg_cancel_backend(pid)` fires the
//! running statement's token, as a cancel request does; `pg_terminate_backend(pid)` does too
//! and fires the session's terminate signal, on which the connection loop
//! ([`crate::pgwire::connection`]) ends the session with FATAL 57P01 once the statement is done.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use pgwire::api::ClientInfo;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::results::Response;
use pgwire::error::PgWireResult;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::response::TransactionStatus;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::error::SqlState;
use crate::pgwire::errors::user_error;
use crate::sql::activity::{self, Backend, Backends, Signal, truncated};
use crate::sql::slots::{Slot, Slots};

/// `pg_stat_activity.state` of a session running a statement.
const ACTIVE: &str = "active";

/// Client-metadata key of the session's statement timeout in milliseconds, absent when there
/// is none. datafusion-postgres reads the same key to bound planning.
pub(crate) const TIMEOUT_KEY: &str = "statement_timeout_ms";

/// The connections that can be interrupted, by the process id and secret key each was given at
/// start-up; also the server's default `statement_timeout`. It answers cancel requests.
pub struct Registry {
    connections: parking_lot::Mutex<HashMap<(i32, Bytes), Weak<Running>>>,
    pub(crate) default_timeout: Option<Duration>,
}

/// One connection's interrupt point: the statement it runs now (or ran last). A cancel
/// request fires its token; result streams follow it from statement to statement. It also
/// holds what `pg_stat_activity` shows of the session, and the signal that ends it.
#[derive(Default)]
struct Running {
    now: parking_lot::Mutex<Limits>,
    /// Counts the statements started, so that a stream notices a new one without a lock.
    started: AtomicU64,
    activity: parking_lot::Mutex<Option<Backend>>,
    /// Fired by `pg_terminate_backend`: the connection ends once its statement is done.
    terminate: CancellationToken,
}

/// What interrupts one statement.
#[derive(Clone, Default)]
struct Limits {
    token: CancellationToken,
    deadline: Option<Instant>,
}

impl Running {
    /// The session's activity as a statement `query` starts on it.
    fn began<C: ClientInfo + ?Sized>(&self, client: &C, query: &str) {
        let mut activity = self.activity.lock();
        let Some(backend) = activity.as_mut() else {
            return;
        };
        let now = SystemTime::now();
        // A statement outside a transaction block is a transaction of its own; `BEGIN` starts
        // one that goes on after it.
        if client.transaction_status() == TransactionStatus::Idle || backend.xact_start.is_none() {
            backend.xact_start = Some(now);
        }
        if backend.state != ACTIVE {
            backend.state = ACTIVE;
            backend.state_change = now;
        }
        backend.query_start = Some(now);
        backend.query.clear();
        backend
            .query
            .push_str(truncated(query, activity::QUERY_TEXT_BYTES));
        if let Some(name) = client.metadata().get("application_name")
            && *name != backend.application_name
        {
            backend.application_name.clone_from(name);
        }
    }

    /// The session's activity once it waits for the client's next message.
    fn waits(&self, status: TransactionStatus) {
        let mut activity = self.activity.lock();
        let Some(backend) = activity.as_mut() else {
            return;
        };
        let state = match status {
            TransactionStatus::Idle => "idle",
            TransactionStatus::Transaction => "idle in transaction",
            TransactionStatus::Error => "idle in transaction (aborted)",
        };
        if backend.state != state {
            backend.state = state;
            backend.state_change = SystemTime::now();
        }
        if status == TransactionStatus::Idle {
            backend.xact_start = None;
        }
    }

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
pub(crate) struct StartupSettings(pub(crate) HashMap<String, String>);

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
        let metadata = client.metadata();
        let text = |key: &str| metadata.get(key).cloned().unwrap_or_default();
        let now = SystemTime::now();
        *running.activity.lock() = Some(Backend {
            pid,
            user: text("user"),
            database: text("database"),
            application_name: text("application_name"),
            client: client.socket_addr(),
            backend_start: now,
            xact_start: None,
            query_start: None,
            state_change: now,
            state: "idle",
            query: String::new(),
        });
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

impl Backends for Registry {
    fn backends(&self) -> Vec<Backend> {
        let running: Vec<Arc<Running>> = self
            .connections
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        running
            .iter()
            .filter_map(|running| running.activity.lock().clone())
            .collect()
    }

    fn signal(&self, pid: i32, signal: Signal) -> bool {
        let running = self
            .connections
            .lock()
            .iter()
            .find(|((key, _), _)| *key == pid)
            .and_then(|(_, running)| running.upgrade());
        let Some(running) = running else {
            return false;
        };
        if signal == Signal::Terminate {
            running.terminate.cancel();
        }
        running.now.lock().token.cancel();
        true
    }
}

/// Records that `client`'s session now waits for its next message (`pg_stat_activity.state`
/// `idle`, or `idle in transaction`); returns the signal that ends the session, once it is
/// registered.
pub(crate) fn waiting<C: ClientInfo + ?Sized>(client: &C) -> Option<CancellationToken> {
    let running = client.session_extensions().get::<Running>()?;
    running.waits(client.transaction_status());
    Some(running.terminate.clone())
}

/// Records that `client`'s session runs `query` (`pg_stat_activity.state` `active`), for a
/// statement that runs without a [`Statement`] (the literal `INSERT` path).
pub(crate) fn began<C: ClientInfo + ?Sized>(client: &C, query: &str) {
    if let Some(running) = client.session_extensions().get::<Running>() {
        running.began(client, query);
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
pub(crate) fn timeout<C: ClientInfo + ?Sized>(client: &C) -> Option<Duration> {
    client
        .metadata()
        .get(TIMEOUT_KEY)
        .and_then(|ms| ms.parse().ok())
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
}

pub(crate) fn set_timeout<C: ClientInfo + ?Sized>(client: &mut C, timeout: Option<Duration>) {
    let metadata = client.metadata_mut();
    match timeout {
        Some(t) => metadata.insert(TIMEOUT_KEY.into(), t.as_millis().to_string()),
        None => metadata.remove(TIMEOUT_KEY),
    };
}

/// The error of a statement a panic ended (the panic is logged where it happened).
pub(crate) fn panicked(message: &str) -> pgwire::error::PgWireError {
    user_error(
        SqlState::INTERNAL_ERROR,
        format!("internal error: the statement panicked: {message}"),
    )
}

fn canceled() -> pgwire::error::PgWireError {
    user_error(
        SqlState::QUERY_CANCELED,
        "canceling statement due to user request",
    )
}

fn timed_out() -> pgwire::error::PgWireError {
    user_error(
        SqlState::QUERY_CANCELED,
        "canceling statement due to statement timeout",
    )
}

/// Whether a query message may write (`INSERT`, `UPDATE`, `DELETE`, `VACUUM`): its work is
/// then never interrupted, because a write cannot be undone once its rows reach the WAL (or
/// its Delta commit is made), and answering 57014 for a change that was stored would make a
/// retrying client apply it twice. Erring towards "writes" only costs interruptibility.
pub fn may_write(query: &str) -> bool {
    // Without copying the text: an extended-protocol INSERT can be megabytes.
    let mentions = |word: &str| {
        query
            .as_bytes()
            .windows(word.len())
            .any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
    };
    ["insert", "update", "delete", "vacuum"]
        .iter()
        .any(|word| mentions(word))
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
    slots: Arc<Slots>,
    /// The slot [`Statement::run`] took; its result stream keeps it ([`Statement::bound`]).
    slot: parking_lot::Mutex<Option<Slot>>,
}

impl Statement {
    /// Starts a statement on `client`'s connection, with a deadline `statement_timeout` from
    /// now: a cancel request from now on interrupts it (for `query` that [`may_write`], only
    /// its result rows), and so do they for every result stream the connection polls — also
    /// one of an earlier statement, such as a portal's rows read by a later `Execute`.
    pub fn start<C: ClientInfo + ?Sized>(client: &C, query: &str, slots: &Arc<Slots>) -> Statement {
        let limits = Limits {
            token: CancellationToken::new(),
            deadline: timeout(client).map(|t| Instant::now() + t),
        };
        let running = client
            .session_extensions()
            .get::<Running>()
            .unwrap_or_default();
        running.began(client, query);
        Statement::on(running, limits, may_write(query), slots.clone())
    }

    fn on(running: Arc<Running>, limits: Limits, writes: bool, slots: Arc<Slots>) -> Statement {
        let number = running.start(limits.clone());
        Statement {
            limits,
            running,
            number,
            writes,
            slots,
            slot: Default::default(),
        }
    }

    /// Runs `work` (planning, and whatever a handler does before it returns its result) in a
    /// statement slot ([`Slots`]), unless the statement is interrupted first, also while it
    /// waits for the slot. A panic in it is this statement's XX000.
    pub async fn run<T>(&self, work: impl Future<Output = PgWireResult<T>>) -> PgWireResult<T> {
        let slot = self
            .interruptible(async {
                self.slots
                    .acquire()
                    .await
                    .map_err(|e| user_error(e.state, e.message))
            })
            .await?;
        *self.slot.lock() = Some(slot);
        let work = async {
            crate::panics::catch(work)
                .await
                .unwrap_or_else(|m| Err(panicked(&m)))
        };
        if self.writes {
            return work.await;
        }
        self.interruptible(work).await
    }

    /// `work`, or the error of the interrupt that comes first.
    async fn interruptible<T>(
        &self,
        work: impl Future<Output = PgWireResult<T>>,
    ) -> PgWireResult<T> {
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
            slot: self.slot.lock().take(),
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
    /// The statement's slot, given back when the stream ends.
    slot: Option<Slot>,
    running: Arc<Running>,
    /// The number of the statement `cancelled` and `deadline` are of.
    statement: u64,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> Bounded<S> {
    /// Drops the stream (stopping its execution) and gives its slot back.
    fn end(&mut self) {
        self.stream = None;
        self.slot = None;
    }

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
            this.end();
            return Poll::Ready(Some(Err(error)));
        }
        let next = match crate::panics::catch_now(|| Pin::new(stream).poll_next(cx)) {
            Ok(next) => next,
            Err(message) => {
                this.end();
                return Poll::Ready(Some(Err(panicked(&message))));
            }
        };
        if let Poll::Ready(None) = next {
            this.end();
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        Statement::on(Arc::default(), limits, false, test_slots())
    }

    fn test_slots() -> Arc<Slots> {
        Arc::new(Slots::new(64, Duration::from_secs(1)))
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
        // The first statement's deadline has passed (no sleep: it was a second ago, before the
        // runtime's timer started, so it fires at its first poll), but a later Execute started
        // a statement with a new one.
        let first = statement(Some(Instant::now() - Duration::from_secs(1)));
        let mut rows = first.bounded(Box::pin(futures::stream::repeat_with(|| {
            Ok::<_, pgwire::error::PgWireError>(1)
        })));
        let later = Limits {
            token: CancellationToken::new(),
            deadline: Some(Instant::now() + Duration::from_secs(60)),
        };
        let second = Statement::on(first.running.clone(), later, false, test_slots());
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
        let alone = statement(Some(Instant::now() - Duration::from_secs(1)));
        let mut rows = alone.bounded(Box::pin(futures::stream::repeat_with(|| {
            Ok::<_, pgwire::error::PgWireError>(1)
        })));
        assert_next_error(&mut rows, "statement timeout").await;
    }
}
