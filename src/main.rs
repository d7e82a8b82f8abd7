//! The `timefusion` binary: read the configuration, run the server until SIGINT or SIGTERM,
//! then shut down in order (stop accepting, flush to Delta, exit 0).

use anyhow::Context;
use clap::Parser;
use timefusion::config::Config;
use timefusion::server::Server;

/// mimalloc instead of glibc malloc: ingest allocates and frees multi-MiB Arrow buffers per
/// batch, which glibc serves with fresh mmaps (page faults and zeroing dominated the profile).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log))
        .with_writer(std::io::stderr)
        .init();
    let server = Server::start(config)
        .await
        .context("TimeFusion failed to start")?;
    // Tests and scripts read this line to find the port (PGWIRE_PORT=0 picks a free one).
    println!(
        "timefusion listening: pgwire={} grpc={}",
        server.pg_addr(),
        server.grpc_addr()
    );
    tracing::info!(pgwire = %server.pg_addr(), grpc = %server.grpc_addr(), "ready");

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
    }
    server.shutdown().await.context("shutdown failed")?;
    tracing::info!("stopped");
    Ok(())
}
