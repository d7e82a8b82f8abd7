//! The composition root: start-up and ordered shutdown of a TimeFusion server.
//!
//! Start-up: validate the configuration, serve HTTP health (`/ready` says 503 until the end of
//! start-up), open the engine (recovery: [`Engine::open`]), build the SQL session over it,
//! start the flusher and maintenance loops, then listen for Postgres and gRPC connections.
//! Shutdown: stop accepting, stop the loops, close the WAL (queued writes commit, new ones get
//! 57P01), flush every buffered row to Delta, trim the WAL, return.
//!
//! This is the only module that sees every layer; nothing imports it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::engine::core::{Core, run_flusher, run_maintenance, run_merger};
use crate::engine::startup::Engine;
use crate::engine::{Clock, SystemClock};

/// Why the server did not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Engine(#[from] crate::engine::startup::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot prepare the spill directory {path}: {source}")]
    Spill {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set up the SQL session: {0}")]
    Session(#[from] datafusion::error::DataFusionError),
    #[error("cannot set up the Flight SQL service: {0}")]
    Flight(#[from] arrow_flight::error::FlightError),
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    #[error("the final flush failed; its rows stay in the WAL for the next start: {0}")]
    Flush(#[from] crate::engine::core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A running server.
pub struct Server {
    pg_addr: SocketAddr,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    core: Arc<Core>,
    shutdown: CancellationToken,
    accept: JoinHandle<()>,
    grpc: JoinHandle<()>,
    http: JoinHandle<()>,
    flusher: JoinHandle<()>,
    maintenance: JoinHandle<()>,
    merger: JoinHandle<()>,
    governor: JoinHandle<()>,
}

impl Server {
    /// Recovers state and starts serving. Returns once the Postgres port accepts connections.
    pub async fn start(config: Config) -> Result<Server> {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn start_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Server> {
        config.validate()?;
        let shutdown = CancellationToken::new();
        let health = Arc::new(crate::http::Health::default());
        let (http_listener, http_addr) =
            bind(SocketAddr::new(config.http_host, config.http_port)).await?;
        tracing::info!(%http_addr, "HTTP health and metrics endpoint listening");
        let http = tokio::spawn(crate::http::serve(
            http_listener,
            health.clone(),
            shutdown.clone(),
        ));
        let engine = Engine::open(&config, clock.clone(), crate::sql::change_functions()?).await?;
        health.opened(crate::http::EngineView {
            buffer: engine.buffer.clone(),
            core: engine.core.clone(),
            storage: engine.storage.clone(),
            clock: clock.clone(),
        });
        // Spill files of queries a crash interrupted are garbage: start empty.
        let spill_dir = config.data_dir.join("spill");
        let _ = std::fs::remove_dir_all(&spill_dir);
        std::fs::create_dir_all(&spill_dir).map_err(|source| Error::Spill {
            path: spill_dir.clone(),
            source,
        })?;
        let shares = config.shares();
        let query_pool = crate::sql::query_pool(shares.query);
        let metadata_cache = crate::sql::metadata_cache(shares.metadata);
        let condition_cache = crate::sql::condition_cache::ConditionCache::new(shares.condition);
        let inflight = crate::memory::InFlight::new(shares.inflight);
        let memory = Arc::new(memory_of(
            &config,
            &engine,
            &query_pool,
            &metadata_cache,
            &condition_cache,
            &inflight,
        ));
        health.memory(memory.clone());
        let mutations: Arc<dyn crate::engine::core::Mutations> = engine.core.clone();
        let sessions = Arc::new(crate::pgwire::cancel::Registry::new(
            config.statement_timeout(),
        ));
        let context = Arc::new(
            crate::sql::session_context(
                &engine.catalog,
                &engine.buffer,
                &engine.ingest,
                &mutations,
                crate::sql::Observed {
                    storage: engine.storage.clone(),
                    memory: memory.clone(),
                    sessions: sessions.clone(),
                    sizes: engine.core.clone(),
                },
                &crate::sql::QueryLimits {
                    pool: query_pool,
                    spill_dir,
                    metadata_cache,
                    condition_cache,
                },
            )
            .await?,
        );
        let slots = Arc::new(crate::sql::slots::Slots::new(
            config.max_concurrent_statements,
            std::time::Duration::from_millis(config.statement_queue_timeout_ms),
        ));
        let flusher = tokio::spawn(run_flusher(engine.core.clone(), shutdown.clone()));
        let maintenance = tokio::spawn(run_maintenance(engine.core.clone(), shutdown.clone()));
        let merger = tokio::spawn(run_merger(engine.core.clone(), shutdown.clone()));
        let governor = tokio::spawn(crate::memory::govern(memory, shutdown.clone()));

        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                Some(crate::pgwire::auth::tls_acceptor(cert, key).map_err(Error::Tls)?)
            }
            _ => None,
        };
        let (listener, pg_addr) =
            bind(SocketAddr::new(config.pgwire_host, config.pgwire_port)).await?;
        let handlers = Arc::new(crate::pgwire::Handlers::new(
            context.clone(),
            engine.catalog.clone(),
            engine.ingest.clone(),
            crate::pgwire::Access {
                user: config.pgwire_user.clone(),
                password: config.pgwire_password.clone(),
                trust: config.pgwire_insecure_no_password,
                method: config.pgwire_auth_method,
                tls,
            },
            crate::pgwire::Limits {
                copy_atomic_bytes: config.copy_atomic_mb << 20,
                max_expression_depth: config.max_expression_depth,
                log_min_duration: config.log_min_duration(),
                slots: slots.clone(),
                plan_cache: Arc::new(
                    crate::sql::plan_cache::PlanCache::new(config.plan_cache_entries)
                        .with_physical(config.plan_cache_physical),
                ),
            },
            engine.core.clone(),
            sessions,
        ));
        let (grpc_listener, grpc_addr) =
            bind(SocketAddr::new(config.grpc_host, config.grpc_port)).await?;
        warn_about_open_access(&config);
        let flight = crate::flight::TimeFusionFlight::new(
            context.clone(),
            engine.catalog.clone(),
            engine.ingest.clone(),
            inflight.clone(),
            config.max_expression_depth,
            slots,
            config.log_min_duration(),
        )?;
        let otlp = Arc::new(crate::otlp::Receiver::new(
            &engine.catalog,
            engine.ingest.clone(),
            clock,
            inflight,
        ));
        let max_message_bytes = config.grpc_max_message_mb << 20;
        let routes = tonic::service::Routes::new(
            flight.into_service(config.grpc_token.clone(), max_message_bytes),
        );
        let routes = otlp.routes(routes, config.grpc_token.clone(), max_message_bytes);
        health.otlp(crate::otlp::http::Endpoint::new(
            otlp,
            config.grpc_token.clone(),
            max_message_bytes,
        ));
        let grpc = tokio::spawn(crate::grpc::serve(grpc_listener, routes, shutdown.clone()));
        let accept = tokio::spawn(crate::pgwire::serve(
            listener,
            handlers,
            config.max_connections,
            crate::pgwire::connection::ConnectionLimits {
                max_message_bytes: config.max_message_mb << 20,
                idle_timeout: config.idle_session_timeout(),
            },
            shutdown.clone(),
        ));
        health.set_ready();
        Ok(Server {
            pg_addr,
            grpc_addr,
            http_addr,
            grpc,
            http,
            core: engine.core,
            shutdown,
            accept,
            flusher,
            maintenance,
            merger,
            governor,
        })
    }

    /// Where the Postgres protocol listens.
    pub fn pg_addr(&self) -> SocketAddr {
        self.pg_addr
    }

    /// Where the Arrow Flight gRPC service listens.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Where the HTTP health and metrics endpoint listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Stops accepting, flushes everything to Delta and stops. Connections still open get
    /// 57P01 for further writes.
    pub async fn shutdown(self) -> Result<()> {
        self.shutdown.cancel();
        let _ = self.accept.await;
        let _ = self.grpc.await;
        let _ = self.flusher.await;
        let _ = self.maintenance.await;
        let _ = self.merger.await;
        let _ = self.governor.await;
        let _ = self.http.await;
        self.core.close().await?;
        Ok(())
    }
}

/// The process budget and its consumers: the buffer, the query pool, the Parquet metadata
/// cache, the condition cache, DoPut's bytes in flight, and the cache's memory tier when
/// tables are on S3.
fn memory_of(
    config: &Config,
    engine: &Engine,
    query_pool: &Arc<dyn datafusion::execution::memory_pool::MemoryPool>,
    metadata_cache: &Arc<crate::sql::MetadataCache>,
    condition_cache: &Arc<crate::sql::condition_cache::ConditionCache>,
    inflight: &crate::memory::InFlight,
) -> crate::memory::Memory {
    let shares = config.shares();
    let pool = query_pool.clone();
    let metadata = metadata_cache.clone();
    let condition = condition_cache.clone();
    let held = inflight.clone();
    let mut consumers = vec![
        crate::memory::Consumer {
            name: "query",
            limit: Some(shares.query),
            used: Box::new(move || pool.reserved()),
        },
        crate::memory::Consumer {
            name: "parquet_metadata",
            limit: Some(shares.metadata),
            used: Box::new(move || metadata.memory_used()),
        },
        crate::memory::Consumer {
            name: "condition_cache",
            limit: Some(shares.condition),
            used: Box::new(move || condition.memory_used()),
        },
        crate::memory::Consumer {
            name: "doput_in_flight",
            limit: Some(shares.inflight),
            used: Box::new(move || held.held_bytes()),
        },
    ];
    if config.s3_bucket.is_some() {
        let storage = engine.storage.clone();
        consumers.push(crate::memory::Consumer {
            name: "cache",
            limit: Some(shares.cache),
            used: Box::new(move || storage.cache_memory_bytes()),
        });
    }
    if let Some(limit) = shares.process {
        tracing::info!(
            limit_mb = limit >> 20,
            buffer_mb = shares.buffer >> 20,
            query_mb = shares.query >> 20,
            parquet_metadata_mb = shares.metadata >> 20,
            condition_cache_mb = shares.condition >> 20,
            doput_in_flight_mb = shares.inflight >> 20,
            container_limit_mb = config.container_limit_bytes.map(|bytes| bytes >> 20),
            "process memory budget"
        );
    } else {
        tracing::info!(
            buffer_mb = shares.buffer >> 20,
            "no process memory budget (no container memory limit, or TIMEFUSION_MEMORY_LIMIT_MB=0)"
        );
    }
    crate::memory::Memory::new(shares.process, engine.buffer.clone(), consumers)
}

/// Binds `addr` and returns the listener with the address it got (port 0 picks one).
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr)> {
    let listen = |source| Error::Listen { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(listen)?;
    let bound = listener.local_addr().map_err(listen)?;
    Ok((listener, bound))
}

/// Logs, at every start, each way anyone who reaches a port gets in.
fn warn_about_open_access(config: &Config) {
    if config.pgwire_insecure_no_password {
        tracing::warn!(
            user = %config.pgwire_user,
            "PGWIRE_INSECURE_NO_PASSWORD is set: anyone who can reach the Postgres port can connect without a password"
        );
    }
    if config.grpc_token.is_none() {
        tracing::warn!(
            "GRPC_TOKEN is not set: anyone who can reach the gRPC port can write and query, and the HTTP port's write endpoints (OTLP, remote write, line protocol) take any write; set GRPC_TOKEN"
        );
    }
}
