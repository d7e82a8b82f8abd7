//! The HTTP endpoint that says how the server is (`TIMEFUSION_HTTP_PORT`), for orchestrators
//! and Prometheus:
//!
//! - `GET /health`: 200 while the process serves HTTP at all (liveness).
//! - `GET /ready`: 200 once recovery has replayed the WAL and the ports accept connections,
//!   and only while the WAL takes writes and the tables' store answers; 503 with the reason
//!   otherwise (readiness: send traffic here or not).
//! - `GET /metrics`: every series of [`crate::metrics`] in Prometheus' text format.
//! - `POST /v1/logs`, `/v1/traces`, `/v1/metrics`: OTLP/HTTP exports; `POST /api/v1/write`:
//!   Prometheus remote write; `POST /api/v2/write`, `/write`: InfluxDB line protocol
//!   ([`crate::otlp::http`]); 503 while the WAL is being replayed.
//!
//! It binds before recovery starts, so `/health` answers (and `/ready` says 503) while a long
//! WAL replays. HTTP/1.1 only, one short response per request. Tests: `tests/e2e/health.rs`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::engine::buffer::Buffer;
use crate::engine::core::Core;
use crate::engine::storage::Storage;
use crate::engine::{Clock, Committed};
use crate::metrics::Observed;

/// How long `/ready` waits for the object store.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the endpoint reports on; filled in as the server starts.
#[derive(Default)]
pub struct Health {
    /// Recovery is done and the ports accept connections.
    ready: AtomicBool,
    engine: OnceLock<EngineView>,
    memory: OnceLock<Arc<crate::memory::Memory>>,
    otlp: OnceLock<crate::otlp::http::Endpoint>,
}

/// The parts of the engine the endpoint reads.
pub struct EngineView {
    pub buffer: Arc<Buffer<Committed>>,
    pub core: Arc<Core>,
    pub storage: Arc<Storage>,
    pub clock: Arc<dyn Clock>,
}

impl Health {
    /// The engine is open (recovery done); what `/ready` and `/metrics` read from now on.
    pub fn opened(&self, engine: EngineView) {
        let _ = self.engine.set(engine);
    }

    /// The process's memory is accounted: `/metrics` shows it.
    pub fn memory(&self, memory: Arc<crate::memory::Memory>) {
        let _ = self.memory.set(memory);
    }

    /// OTLP/HTTP exports are taken from now on.
    pub fn otlp(&self, endpoint: crate::otlp::http::Endpoint) {
        let _ = self.otlp.set(endpoint);
    }

    /// Every port accepts connections: `/ready` may answer 200.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Why the server is not ready, or `None`.
    async fn not_ready(&self) -> Option<String> {
        let engine = match self.engine.get() {
            Some(engine) if self.ready.load(Ordering::Acquire) => engine,
            _ => return Some("starting: the WAL is being replayed".into()),
        };
        if let Some(failure) = engine.core.wal_failure() {
            return Some(format!("the WAL refuses writes: {failure}"));
        }
        engine.storage.reachable(STORE_TIMEOUT).await.err()
    }

    /// The metrics text, with the state read now.
    fn metrics(&self) -> String {
        let metrics = crate::metrics::get();
        let mut observed = Observed {
            panics: crate::panics::caught(),
            ..Observed::default()
        };
        if let Some(engine) = self.engine.get() {
            let (rows, oldest) = engine.buffer.waiting();
            let cache = engine.storage.cache_stats();
            let now = engine.clock.now_micros();
            observed.buffer_bytes = engine.buffer.bytes() as u64;
            observed.buffer_budget_bytes = engine.buffer.budget() as u64;
            observed.buffer_rows = rows as u64;
            observed.buffer_oldest = oldest.map_or(Duration::ZERO, |inserted| {
                Duration::from_micros(now.saturating_sub(inserted).max(0) as u64)
            });
            observed.cache_hits = cache.hits;
            observed.cache_misses = cache.misses;
            observed.store_gets = cache.store_gets;
            observed.bytes_from_cache = cache.bytes_from_cache;
            observed.bytes_from_store = cache.bytes_from_store;
        }
        metrics.observe(&observed);
        if let Some(memory) = self.memory.get() {
            metrics.observe_memory(&memory.usage());
        }
        metrics.render()
    }

    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let reply = |status: StatusCode, content_type: &'static str, body: String| {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = status;
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(content_type),
            );
            response
        };
        let text = "text/plain; charset=utf-8";
        if crate::otlp::http::PATHS.contains(&request.uri().path()) {
            if request.method() != Method::POST {
                return reply(StatusCode::METHOD_NOT_ALLOWED, text, "POST only\n".into());
            }
            return match self.otlp.get() {
                Some(endpoint) => endpoint.export(request).await,
                None => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    text,
                    "starting: the WAL is being replayed\n".into(),
                ),
            };
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return reply(StatusCode::METHOD_NOT_ALLOWED, text, "GET only\n".into());
        }
        match request.uri().path() {
            "/health" => reply(StatusCode::OK, text, "ok\n".into()),
            "/ready" => match self.not_ready().await {
                None => reply(StatusCode::OK, text, "ready\n".into()),
                Some(reason) => reply(StatusCode::SERVICE_UNAVAILABLE, text, reason + "\n"),
            },
            "/metrics" => reply(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.metrics(),
            ),
            _ => reply(
                StatusCode::NOT_FOUND,
                text,
                "not found: /health, /ready, /metrics, /v1/logs, /v1/traces, /v1/metrics, /api/v1/write, /api/v2/write or /write\n"
                    .into(),
            ),
        }
    }
}

/// Serves `health` on `listener` until `shutdown` fires.
pub async fn serve(listener: TcpListener, health: Arc<Health>, shutdown: CancellationToken) {
    loop {
        let socket = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(e) => {
                    tracing::warn!("HTTP accept failed: {e}");
                    continue;
                }
            },
        };
        let health = health.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let health = health.clone();
                async move { Ok::<_, Infallible>(health.answer(request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(socket), service);
            if let Err(e) = connection.await {
                tracing::debug!("HTTP connection ended with error: {e}");
            }
        });
    }
}
