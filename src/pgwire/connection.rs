//! One Postgres connection from its first byte to its last: TLS negotiation and pgwire's
//! message dispatch, as `pgwire::tokio::process_socket` runs them, with the limits pgwire has
//! no hook for:
//!
//! - start-up (TLS, authentication) must finish within [`STARTUP_TIMEOUT`], PostgreSQL's
//!   `authentication_timeout`;
//! - a message longer than `TIMEFUSION_MAX_MESSAGE_MB` is refused as soon as its header is in,
//!   before its body is buffered: FATAL 54000, and the connection closes (its remaining bytes
//!   cannot be skipped safely). pgwire alone buffers up to 1 GiB per message and connection;
//! - a connection past `TIMEFUSION_MAX_CONNECTIONS` is answered FATAL 53300 ("sorry, too many
//!   clients already") after its start-up message, as PostgreSQL answers it; a cancel request
//!   on such a connection is still served, so a full server can still stop its statements;
//! - a session that keeps the server waiting for its next message longer than
//!   `TIMEFUSION_IDLE_SESSION_TIMEOUT_SECS` is ended with FATAL 57P05 (PostgreSQL's
//!   `idle_session_timeout`, here in and out of a transaction and within a `COPY`).
//!
//! Replies go out as PostgreSQL sends them: while the client's next message is already in the
//! read buffer (a pipeline: Bind/Execute after Bind/Execute before one Sync; a single statement's
//! Bind, Execute and Sync, which drivers send in one packet), replies collect in [`Batched`] and
//! leave in one write once the pipeline is processed, instead of one `send` syscall per
//! `BindComplete` and `CommandComplete` (pgwire flushes after every message). Replies to the
//! extended protocol's Parse, Bind, Describe, Execute and Close also wait for the Sync or Flush
//! that ends their exchange, as PostgreSQL holds them ("without Flush, messages returned by the
//! backend will be combined into the minimum possible number of packets"): a pipeline that
//! arrives in many packets is answered in few writes, 8 KiB at a time as PostgreSQL sends them
//! (`HELD_ACROSS_READS`). Errors and a COPY's start go out at once, as PostgreSQL flushes them;
//! otherwise the loop flushes before it waits for input, and more than [`BATCHED_BYTES`] held
//! go out at once (a large result inside a pipeline).
//!
//! Tests: `tests/e2e/limits.rs`, `tests/e2e/pipeline.rs`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{
    PgWireMessageServerCodec, negotiate_tls, process_error, process_message,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::error::SqlState;
use crate::pgwire::Handlers;

/// How long a client may take from connecting to being authenticated (PostgreSQL's
/// `authentication_timeout` default).
pub(crate) const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Limits on one connection's messages and waits.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Longest message a client may send, in bytes.
    pub max_message_bytes: usize,
    /// How long the server waits for a session's next message; `None` is forever.
    pub idle_timeout: Option<Duration>,
}

/// Whether a connection was let in under `TIMEFUSION_MAX_CONNECTIONS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Admitted,
    /// Past the limit: only a cancel request is served; a start-up gets 53300.
    Full {
        max_connections: usize,
    },
}

type Socket<S, ST> = Framed<S, PgWireMessageServerCodec<ST>>;

/// Serves one TCP connection until the client leaves or a limit ends it.
pub(crate) async fn serve(
    tcp: TcpStream,
    handlers: Arc<Handlers>,
    admission: Admission,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    let startup_deadline = Instant::now() + STARTUP_TIMEOUT;
    let tls = handlers.tls.as_ref().map(|tls| tls.acceptor());
    let Ok(negotiated) = tokio::time::timeout_at(startup_deadline, negotiate_tls(tcp, tls)).await
    else {
        return Ok(());
    };
    // `None`: the client began TLS directly on a server without TLS.
    let Some(socket) = negotiated? else {
        return Ok(());
    };
    let mut socket = batched(socket);

    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    // `pg_terminate_backend`'s signal, once the session is registered.
    let mut terminate = None;
    // The last message was one whose replies wait for the next Sync or Flush.
    let mut until_sync = false;
    loop {
        if terminate
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
        {
            return terminated(&mut socket).await;
        }
        // Replies wait while the next message is already here, and until the Sync or Flush
        // that ends an extended-protocol exchange, but no more than PostgreSQL's 8 KiB of
        // them across a wait for input: a long pipeline's client gets them as it goes.
        let pipelined = has_message(socket.read_buffer(), !in_startup(socket.state()));
        let waits = until_sync && socket.get_ref().held.len() < HELD_ACROSS_READS;
        socket.get_mut().hold = pipelined || waits;
        if !pipelined {
            if !in_startup(socket.state()) {
                terminate = crate::pgwire::cancel::waiting(&socket).or(terminate);
            }
            if !waits {
                socket.flush().await?;
            }
        }
        let deadline = if in_startup(socket.state()) {
            Some(startup_deadline)
        } else {
            limits.idle_timeout.map(|idle| Instant::now() + idle)
        };
        let next = NextMessage {
            socket: &mut socket,
            max_bytes: limits.max_message_bytes,
        };
        let next = async {
            match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, next).await.ok(),
                None => Some(next.await),
            }
        };
        let signal = async {
            match &terminate {
                Some(terminate) => terminate.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let waited = tokio::select! {
            biased;
            () = signal => None,
            waited = next => Some(waited),
        };
        let Some(waited) = waited else {
            return terminated(&mut socket).await;
        };
        let next = match waited {
            Some(next) => next,
            None if in_startup(socket.state()) => return Ok(()),
            None => {
                let idle = limits.idle_timeout.unwrap_or_default();
                tracing::debug!(?idle, "closing an idle session");
                return fatal(
                    &mut socket,
                    SqlState::IDLE_SESSION_TIMEOUT,
                    format!(
                        "terminating connection due to idle-session timeout \
                             (TIMEFUSION_IDLE_SESSION_TIMEOUT_SECS={})",
                        idle.as_secs()
                    ),
                )
                .await;
            }
        };
        let message = match next {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(e))) => {
                tracing::debug!("undecodable message, closing the connection: {e}");
                return Ok(());
            }
            Ok(None) => return Ok(()),
            Err(length) => {
                tracing::warn!(
                    length,
                    max = limits.max_message_bytes,
                    "message longer than TIMEFUSION_MAX_MESSAGE_MB, closing the connection"
                );
                return fatal(
                    &mut socket,
                    SqlState::PROGRAM_LIMIT_EXCEEDED,
                    format!(
                        "message of {length} bytes exceeds the limit of {} bytes \
                         (TIMEFUSION_MAX_MESSAGE_MB)",
                        limits.max_message_bytes
                    ),
                )
                .await;
            }
        };
        match (&message, admission) {
            // The client is leaving: close (asyncpg waits for the socket to drop).
            (PgWireFrontendMessage::Terminate(_), _) => return Ok(()),
            (PgWireFrontendMessage::Startup(_), Admission::Full { max_connections }) => {
                tracing::warn!(
                    max_connections,
                    "connection refused: TIMEFUSION_MAX_CONNECTIONS reached"
                );
                return fatal(
                    &mut socket,
                    SqlState::TOO_MANY_CONNECTIONS,
                    format!(
                        "sorry, too many clients already \
                         (TIMEFUSION_MAX_CONNECTIONS={max_connections})"
                    ),
                )
                .await;
            }
            _ => {}
        }
        // Messages that arrived with this one (Describe, Execute, Sync after a Bind) are
        // answered in the same write as its reply: hold it while more are buffered, and
        // until the exchange's Sync or Flush.
        let defers = defers_replies(&message);
        socket.get_mut().hold =
            defers || has_message(socket.read_buffer(), !in_startup(socket.state()));
        let extended_protocol = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let processed = process_message(
            message,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await;
        // An error goes out at once, as PostgreSQL flushes it; so does a COPY's start, which
        // the client waits for before it sends data.
        until_sync = defers
            && processed.is_ok()
            && !matches!(socket.state(), PgWireConnectionState::CopyInProgress(_));
        if let Err(mut e) = processed {
            errors.on_error(&socket, &mut e);
            process_error(&mut socket, e, extended_protocol).await?;
        }
    }
}

/// Whether the replies to `message` wait for the Sync or Flush that ends its exchange, as
/// PostgreSQL holds them: the extended protocol's messages but those two. A driver's pipeline
/// (psycopg's `executemany`: Bind, Describe, Execute per row, one Sync) then gets its replies
/// in a few large writes instead of one per row, each of which the client would read and
/// parse on its own.
fn defers_replies(message: &PgWireFrontendMessage) -> bool {
    matches!(
        message,
        PgWireFrontendMessage::Parse(_)
            | PgWireFrontendMessage::Bind(_)
            | PgWireFrontendMessage::Describe(_)
            | PgWireFrontendMessage::Execute(_)
            | PgWireFrontendMessage::Close(_)
    )
}

/// `socket` with its replies sent through [`Batched`]; the read buffer and codec state carry
/// over.
fn batched<S, ST>(socket: Socket<S, ST>) -> Socket<Batched<S>, ST>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let parts = socket.into_parts();
    let mut batched = tokio_util::codec::FramedParts::new::<PgWireBackendMessage>(
        Batched {
            inner: parts.io,
            held: Vec::new(),
            hold: false,
        },
        parts.codec,
    );
    batched.read_buf = parts.read_buf;
    batched.write_buf = parts.write_buf;
    Framed::from_parts(batched)
}

/// Whether `buffer` (at a message boundary) holds one whole message.
fn has_message(buffer: &[u8], typed: bool) -> bool {
    declared_length(buffer, typed).is_some_and(|length| buffer.len() >= length + usize::from(typed))
}

/// Replies held before they are written, past which they go out at once.
pub(crate) const BATCHED_BYTES: usize = 64 << 10;

/// Replies held across a wait for the client's next message (an exchange not yet ended by a
/// Sync or Flush), past which they go out: PostgreSQL's send buffer. psycopg's `executemany`
/// spends less CPU a row on replies that come in these pieces than in [`BATCHED_BYTES`] ones
/// (14.5-15 µs against 16-17), while a large result keeps its larger writes.
const HELD_ACROSS_READS: usize = 8 << 10;

/// The connection's stream, holding written replies while [`Batched::hold`] is set: a flush
/// then succeeds without a syscall, and the bytes go out with the next flush that is not held
/// (or once more than [`BATCHED_BYTES`] are held).
pub(crate) struct Batched<S> {
    inner: S,
    held: Vec<u8>,
    hold: bool,
}

impl<S: AsyncWrite + Unpin> Batched<S> {
    /// Writes out everything held.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.held.is_empty() {
            let written = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held))?;
            if written == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..written);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Batched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Batched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.held.len() >= BATCHED_BYTES {
            std::task::ready!(this.poll_drain(cx))?;
        }
        this.held.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.hold && this.held.len() < BATCHED_BYTES {
            return Poll::Ready(Ok(()));
        }
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

fn in_startup(state: PgWireConnectionState) -> bool {
    matches!(
        state,
        PgWireConnectionState::AwaitingSslRequest
            | PgWireConnectionState::AwaitingStartup
            | PgWireConnectionState::AuthenticationInProgress
    )
}

/// Ends a session `pg_terminate_backend` signalled, as PostgreSQL ends it.
async fn terminated<S, ST>(socket: &mut Socket<Batched<S>, ST>) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fatal(
        socket,
        SqlState::ADMIN_SHUTDOWN,
        "terminating connection due to administrator command".into(),
    )
    .await
}

/// Sends a FATAL error and closes the connection.
async fn fatal<S, ST>(
    socket: &mut Socket<Batched<S>, ST>,
    code: SqlState,
    message: String,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    socket.get_mut().hold = false;
    let info = ErrorInfo::new("FATAL".into(), code.code().into(), message);
    let sent = socket
        .send(PgWireBackendMessage::ErrorResponse(info.into()))
        .await;
    let _ = socket.close().await;
    sent
}

/// The socket's next message, or `Err(length)` for one longer than `max_bytes`: as soon as
/// its header is in the read buffer (the codec would buffer its whole body first), or once it
/// is decoded when it arrived whole within one read.
struct NextMessage<'a, S, ST> {
    socket: &'a mut Socket<S, ST>,
    max_bytes: usize,
}

impl<S, ST> Future for NextMessage<'_, S, ST>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    type Output = Result<Option<Result<PgWireFrontendMessage, PgWireError>>, usize>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match this.socket.poll_next_unpin(cx) {
            // Arrived whole within one poll: buffered already, but refused all the same.
            Poll::Ready(Some(Ok(message))) if length_of(&message) > this.max_bytes => {
                Poll::Ready(Err(length_of(&message)))
            }
            Poll::Ready(next) => Poll::Ready(Ok(next)),
            Poll::Pending => {
                let typed = !matches!(
                    this.socket.state(),
                    PgWireConnectionState::AwaitingSslRequest
                        | PgWireConnectionState::AwaitingStartup
                );
                match declared_length(this.socket.read_buffer(), typed) {
                    Some(length) if length > this.max_bytes => Poll::Ready(Err(length)),
                    _ => Poll::Pending,
                }
            }
        }
    }
}

/// The length of a message of a kind pgwire lets reach 1 GiB; the others it limits to 10 kB.
fn length_of(message: &PgWireFrontendMessage) -> usize {
    use pgwire::messages::Message;
    match message {
        PgWireFrontendMessage::Query(m) => m.message_length(),
        PgWireFrontendMessage::Parse(m) => m.message_length(),
        PgWireFrontendMessage::Bind(m) => m.message_length(),
        PgWireFrontendMessage::CopyData(m) => m.message_length(),
        _ => 0,
    }
}

/// The length a message's header declares, once the header is in `buffer` (which always
/// starts at a message boundary): a type byte then a 4-byte length counting itself, or for
/// start-up messages only the length.
fn declared_length(buffer: &[u8], typed: bool) -> Option<usize> {
    let at = usize::from(typed);
    let bytes: [u8; 4] = buffer.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_message_is_told_from_a_partial_one() {
        assert!(has_message(b"S\0\0\0\x04", true));
        assert!(has_message(b"S\0\0\0\x04E\0", true));
        assert!(!has_message(b"Q\0\0\0\x09SELE", true));
        assert!(!has_message(b"", true));
        assert!(has_message(b"\0\0\0\x08\x04\xd2\x16\x2f", false));
    }

    #[tokio::test]
    async fn held_replies_leave_with_the_first_flush_not_held() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, server) = tokio::io::duplex(1 << 20);
        let mut batched = Batched {
            inner: server,
            held: Vec::new(),
            hold: true,
        };
        let mut client = client;
        batched.write_all(b"one").await.expect("write");
        batched.flush().await.expect("held flush");
        assert_eq!(batched.held, b"one", "a held flush writes nothing");
        batched.hold = false;
        batched.write_all(b"two").await.expect("write");
        batched.flush().await.expect("flush");
        let mut read = [0; 6];
        client.read_exact(&mut read).await.expect("read");
        assert_eq!(&read, b"onetwo");
        // Past the bound, replies go out even while held.
        batched.hold = true;
        let big = vec![7u8; BATCHED_BYTES + 1];
        batched.write_all(&big).await.expect("write");
        batched.flush().await.expect("flush");
        assert!(batched.held.is_empty());
    }

    #[test]
    fn the_declared_length_is_read_once_the_header_is_in() {
        assert_eq!(declared_length(b"Q\0\0", true), None);
        assert_eq!(declared_length(b"Q\0\0\x01\0", true), Some(256));
        assert_eq!(declared_length(b"Q\x40\0\0\0rest", true), Some(1 << 30));
        assert_eq!(
            declared_length(b"\0\0\0\x08\x04\xd2\x16\x2f", false),
            Some(8)
        );
    }
}
