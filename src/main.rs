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

/// mimalloc's `mi_option_purge_delay` in its v3 `mimalloc.h`, which libmimalloc-sys 0.1.49's
/// bindings leave out; `tests::the_allocator_options_set_are_the_ones_named` checks it still
/// holds that option's default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays mapped before mimalloc returns it to the OS, unless
/// `MIMALLOC_PURGE_DELAY` says otherwise: 10 s, jemalloc's default dirty-page decay, instead
/// of mimalloc's 1 s. Ingest frees and allocates multi-MiB buffers for every batch; memory
/// given back comes back as fresh pages the kernel zeroes, 2 MiB at a time with transparent
/// huge pages; the measurement is in BENCHMARKS.md ("Profiles behind the code").
const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// mimalloc's `mi_option_allow_thp` in its v3 `mimalloc.h` (index 43, also left out of the
/// bindings); `tests::the_allocator_options_set_are_the_ones_named` checks its default.
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 43;

/// Transparent huge pages off for this process unless `MIMALLOC_ALLOW_THP` is set. mimalloc
/// asks for huge pages on its arenas, so the first touch of any byte of a fresh 2 MiB region
/// faults in the whole of it, zeroed, also where a builder reserved capacity it never writes:
/// with them, page zeroing was 56% of the server's CPU for `COPY`. Without them the server
/// used 47% less CPU and 15-19% less RSS for the same `COPY`, took literal `INSERT`s 1.5x as
/// fast and DoPut 1.4-1.5x as fast, and queries ran the same (BENCHMARKS.md, "Transparent
/// huge pages off"). mimalloc disables them with `prctl(PR_SET_THP_DISABLE)` only when the
/// option is off as it starts, before `main`, so the process does it here; the kernel then
/// maps every later fault, in any region, with 4 KiB pages.
fn disable_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    // SAFETY: sets one integer option, read atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ALLOW_THP, 0) };
    // SAFETY: prctl with PR_SET_THP_DISABLE takes integer arguments and touches no memory of
    // ours; on a kernel without it the call fails and nothing changes.
    #[cfg(target_os = "linux")]
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

fn tune_allocator() {
    disable_transparent_huge_pages();
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option; mimalloc reads options atomically.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
        timefusion::memory::set_allocator_control(near_the_budget);
    }
}

/// Near the process's memory budget (`timefusion::memory::govern`), freed memory goes back
/// to the OS at once: the purge delay drops to 0 and what waits for its delay is purged now.
/// Back under it, the delay is `PURGE_DELAY_MS` again.
fn near_the_budget(tight: bool) {
    // SAFETY: sets one integer option, read atomically; mi_collect may run on any thread.
    unsafe {
        if tight {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
            libmimalloc_sys::mi_collect(true);
        } else {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
        }
    }
}

fn main() -> anyhow::Result<()> {
    tune_allocator();
    let config = Config::parse();
    // Statements are parsed, planned and run on these threads; their stack bounds how deep
    // an expression can be (`TIMEFUSION_STACK_MB`, `sql::limits`). Untouched stack pages
    // cost no memory.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(config.stack_mb << 20)
        .build()
        .context("cannot start the tokio runtime")?
        .block_on(run(config))
}

async fn run(config: Config) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log))
        // Colour codes only for a person at a terminal, never into a file or a log collector.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    timefusion::panics::install_hook();
    // Before the listening line: a SIGTERM sent as soon as a client got an answer must find
    // the handler installed (under load the line and the first answers can come before the
    // next statement here runs, and an unhandled SIGTERM kills the process).
    let signal = |kind| {
        tokio::signal::unix::signal(kind).context("cannot install the SIGTERM and SIGINT handlers")
    };
    let mut terminate = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = signal(tokio::signal::unix::SignalKind::interrupt())?;
    let server = Server::start(config)
        .await
        .context("TimeFusion failed to start")?;
    // Tests and scripts read this line to find the port (PGWIRE_PORT=0 picks a free one).
    println!(
        "timefusion listening: pgwire={} grpc={} http={}",
        server.pg_addr(),
        server.grpc_addr(),
        server.http_addr()
    );
    tracing::info!(pgwire = %server.pg_addr(), grpc = %server.grpc_addr(), http = %server.http_addr(), "ready");

    tokio::select! {
        _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
    }
    server.shutdown().await.context("shutdown failed")?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allocator_options_set_are_the_ones_named() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some()
            || std::env::var_os("MIMALLOC_ALLOW_THP").is_some()
        {
            return;
        }
        // mimalloc v3's defaults for the two options: another option at either index would
        // not hold them.
        // SAFETY: reads integer options.
        let get = |option| unsafe { libmimalloc_sys::mi_option_get(option) };
        assert_eq!(get(MI_OPTION_PURGE_DELAY), 1000);
        assert_eq!(get(MI_OPTION_ALLOW_THP), 1);
        tune_allocator();
        assert_eq!(get(MI_OPTION_PURGE_DELAY), PURGE_DELAY_MS);
        assert_eq!(get(MI_OPTION_ALLOW_THP), 0);
        #[cfg(target_os = "linux")]
        {
            // SAFETY: reads the process's flag.
            let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
            assert_eq!(disabled, 1, "transparent huge pages off for the process");
        }
    }
}
