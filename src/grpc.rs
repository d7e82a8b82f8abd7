//! The gRPC port (`GRPC_PORT`): one tonic server for Arrow Flight ([`crate::flight`]) and the
//! OTLP collector services ([`crate::otlp`]), the bearer-token check they share
//! (`GRPC_TOKEN`, required on every call as `authorization: Bearer <token>` when set), and
//! the HTTP/2 windows.

use std::sync::Arc;

use tonic::{Request, Status};

/// Serves `routes` (each service with its [`TokenCheck`] and message size limit) on
/// `listener` until `shutdown` fires, with the HTTP/2 windows below.
pub async fn serve(
    listener: tokio::net::TcpListener,
    routes: tonic::service::Routes,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let served = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(HTTP2_WINDOW_BYTES)
        .initial_connection_window_size(HTTP2_CONNECTION_WINDOW_BYTES)
        .max_frame_size(HTTP2_MAX_FRAME_BYTES)
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown.cancelled_owned(),
        )
        .await;
    if let Err(e) = served {
        tracing::error!("gRPC server stopped: {e}");
    }
}

/// Checks the bearer token of every call.
#[derive(Clone)]
pub struct TokenCheck {
    expected: Option<Arc<str>>,
}

impl TokenCheck {
    /// Requires `token` when there is one.
    pub fn new(token: Option<String>) -> TokenCheck {
        TokenCheck {
            expected: token.map(Into::into),
        }
    }
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(request);
        };
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(bearer);
        match given {
            Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(request),
            Some(_) => Err(Status::unauthenticated("invalid bearer token")),
            None => Err(Status::unauthenticated(
                "missing `authorization: Bearer <GRPC_TOKEN>` header",
            )),
        }
    }
}

/// The token of an `authorization: Bearer <token>` header value.
pub(crate) fn bearer(value: &str) -> Option<&str> {
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HTTP/2 flow-control window of each gRPC stream, in bytes. With hyper's 1 MiB default, a
/// client sending an 8,192-row otel batch (about 4 MiB of Arrow) stopped every megabyte to wait
/// for the server's window update (BENCHMARKS.md, "Profiles behind the code"). It bounds what a stream may have in
/// flight before the server reads it; a message is bounded by `TIMEFUSION_GRPC_MAX_MESSAGE_MB`
/// and the decoded batches by `TIMEFUSION_GRPC_MAX_INFLIGHT_MB`.
pub const HTTP2_WINDOW_BYTES: u32 = 8 << 20;

/// HTTP/2 flow-control window of a whole gRPC connection: two streams' worth, so one busy
/// DoPut stream cannot hold back the others a client multiplexes on the same connection.
pub const HTTP2_CONNECTION_WINDOW_BYTES: u32 = 2 * HTTP2_WINDOW_BYTES;

/// Largest HTTP/2 frame the server accepts (hyper's default is 16 KiB): a batch arrives in
/// a few frames instead of hundreds.
pub const HTTP2_MAX_FRAME_BYTES: u32 = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    fn call(check: &mut TokenCheck, header: Option<&str>) -> Result<(), tonic::Code> {
        let mut request = Request::new(());
        if let Some(value) = header {
            request
                .metadata_mut()
                .insert("authorization", value.parse().expect("header"));
        }
        check.call(request).map(|_| ()).map_err(|s| s.code())
    }

    #[test]
    fn bearer_token_is_required_when_configured() {
        let mut open = TokenCheck { expected: None };
        assert_eq!(call(&mut open, None), Ok(()));
        let mut locked = TokenCheck {
            expected: Some("s3cret".into()),
        };
        assert_eq!(call(&mut locked, Some("Bearer s3cret")), Ok(()));
        assert_eq!(
            call(&mut locked, Some("Bearer wrong")),
            Err(tonic::Code::Unauthenticated)
        );
        assert_eq!(
            call(&mut locked, Some("s3cret")),
            Err(tonic::Code::Unauthenticated)
        );
        assert_eq!(call(&mut locked, None), Err(tonic::Code::Unauthenticated));
    }
}
