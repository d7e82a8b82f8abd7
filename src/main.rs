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

/// `mi_option_purge_delay` in mimalloc.h (v2 and v3; the Rust bindings name no constant for
/// it): how long freed memory stays mapped before it is returned to the OS.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory is returned to the OS after this many milliseconds of disuse. mimalloc's 10 ms
/// default made every ingest batch fault in and zero fresh pages for the Arrow buffers the
/// previous batch had just freed: over half the server's CPU under Flight DoPut load went to
/// the kernel's page clearing. The buffer's byte budget still bounds what is held.
const PURGE_DELAY_MS: std::ffi::c_long = 1000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // SAFETY: sets a process-wide allocator option; mimalloc allows it at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
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
