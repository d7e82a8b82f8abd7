//! The `timefusion` binary: read the configuration, run the server until SIGINT or SIGTERM,
//! then shut down in order (stop accepting, flush to Delta, exit 0).

use anyhow::Context;
use clap::Parser;
use std::sync::OnceLock;
use tikv_jemalloc_ctl::{Access, AsName};
use timefusion::config::Config;
use timefusion::server::Server;

/// jemalloc instead of glibc malloc or mimalloc. Ingest allocates and frees multi-MiB Arrow
/// buffers per batch, which glibc serves with fresh mmaps (page faults and zeroing dominated
/// the profile). Under a 512 MiB process budget mimalloc kept memory nothing used: the
/// resident set no consumer accounts for grew by 230 MB in 45 s, where jemalloc returning
/// freed pages at once held it flat; after five minutes mimalloc's process peaked at 2.2x the
/// budget and jemalloc's at 1.5x, with more throughput; the other paths ran the same or faster,
/// DoPut alone 1-9% slower (BENCHMARKS.md, "jemalloc instead of mimalloc"). A likely reason,
/// not profiled: batches are built on one thread and freed on another, which mimalloc
/// reclaims only when the owning thread next collects.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Options jemalloc reads before `main` (its `malloc_conf` symbol; `_RJEM_MALLOC_CONF` is read
/// after it and wins). `oversize_threshold:0`: allocations of 8 MiB and more (a DoPut
/// message, a large column) stay in the usual arenas, where freed pages wait out the decay
/// and serve the next batch, instead of an arena of their own that returns them at once.
/// DoPut without a budget: 24% fewer page faults, 15% less system time and 2-10% more rows a
/// second, for 22 MB more resident (BENCHMARKS.md, "Free pages returned every tick").
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: Option<&'static std::ffi::c_char> =
    // SAFETY: a pointer to the first byte of a static NUL-terminated string, as jemalloc reads it.
    Some(unsafe { &*c"oversize_threshold:0".as_ptr() });

/// jemalloc's default dirty-page decay: freed pages stay mapped for about this long before
/// they go back to the OS, so the next batch reuses them instead of faulting in fresh pages
/// the kernel must zero. `_RJEM_MALLOC_CONF=dirty_decay_ms:N` sets another.
const DIRTY_DECAY_MS: isize = 10_000;

/// Transparent huge pages off for this process unless `TIMEFUSION_ALLOW_THP` is set. With
/// them, the first touch of any byte of a fresh 2 MiB region faults in the whole of it,
/// zeroed, also where a builder reserved capacity it never writes: page zeroing was 56% of
/// the server's CPU for `COPY`. Without them the server used 47% less CPU and 15-19% less
/// RSS for the same `COPY`, took literal `INSERT`s 1.5x as fast and DoPut 1.4-1.5x as fast,
/// and queries ran the same (BENCHMARKS.md, "Transparent huge pages off"). The kernel then
/// maps every later fault, in any region, with 4 KiB pages.
fn disable_transparent_huge_pages() {
    if std::env::var_os("TIMEFUSION_ALLOW_THP").is_some() {
        return;
    }
    // SAFETY: prctl with PR_SET_THP_DISABLE takes integer arguments and touches no memory of
    // ours; on a kernel without it the call fails and nothing changes.
    #[cfg(target_os = "linux")]
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

/// The dirty and muzzy decays jemalloc started with (`DIRTY_DECAY_MS` and 0 unless
/// `_RJEM_MALLOC_CONF` set others), restored when the process is back under its budget.
static STARTING_DECAYS_MS: OnceLock<(isize, isize)> = OnceLock::new();

/// The allocator's setup: huge pages off, jemalloc's background threads on unless
/// `_RJEM_MALLOC_CONF` says otherwise (they return decayed pages to the OS, so writers do
/// not), and its control registered with the memory governor.
fn tune_allocator() {
    disable_transparent_huge_pages();
    let configured = std::env::var("_RJEM_MALLOC_CONF").unwrap_or_default();
    if !configured.contains("background_thread")
        && let Err(e) = tikv_jemalloc_ctl::background_thread::write(true)
    {
        eprintln!("jemalloc background threads not started: {e}");
    }
    let dirty = b"arenas.dirty_decay_ms\0".name().read();
    let muzzy = b"arenas.muzzy_decay_ms\0".name().read();
    STARTING_DECAYS_MS.get_or_init(|| (dirty.unwrap_or(DIRTY_DECAY_MS), muzzy.unwrap_or(0)));
    timefusion::memory::set_allocator_control(timefusion::memory::AllocatorControl {
        near_budget: near_the_budget,
        purge: purge_free_pages,
    });
}

/// The dirty decay near the budget. The governor also purges every tick there, so this
/// only bounds how long a freed page waits when ticks are late. A decay of 0 instead
/// purged on every free, in the freeing thread: under a 512 MiB budget, madvise's TLB
/// shootdowns and the page faults that followed took 40% of the server's CPU, and the
/// purge every tick with this decay took 21-30% more rows a second at the same peak
/// (BENCHMARKS.md, "Free pages returned every tick").
const TIGHT_DIRTY_DECAY_MS: isize = 200;

/// Near the process's memory budget (`timefusion::memory::govern`), freed pages are kept only
/// briefly: the dirty decays of every arena, and of arenas created later, drop to
/// [`TIGHT_DIRTY_DECAY_MS`] and the muzzy decays to 0. Back under it, they are what they
/// were at start.
fn near_the_budget(tight: bool) {
    let (dirty, muzzy) = match tight {
        true => (TIGHT_DIRTY_DECAY_MS, 0),
        false => STARTING_DECAYS_MS
            .get()
            .copied()
            .unwrap_or((DIRTY_DECAY_MS, 0)),
    };
    let _ = b"arenas.dirty_decay_ms\0".name().write(dirty);
    let _ = b"arenas.muzzy_decay_ms\0".name().write(muzzy);
    let Ok(arenas) = tikv_jemalloc_ctl::opt::narenas::read() else {
        return;
    };
    for (name, ms) in [
        (b"arena.0.dirty_decay_ms\0".as_slice(), dirty),
        (b"arena.0.muzzy_decay_ms\0".as_slice(), muzzy),
    ] {
        let Ok(mut mib) = name.name().mib::<[usize; 3]>() else {
            continue;
        };
        // An index jemalloc has not used yet answers an error; it gets the new default.
        for arena in 0..arenas as usize {
            mib[1] = arena;
            let _ = mib.write(ms);
        }
    }
}

/// Returns every free page of every arena to the OS: jemalloc's `arena.<i>.purge` with
/// `i` = `MALLCTL_ARENAS_ALL` (4096 in `jemalloc.h`).
fn purge_free_pages() {
    // SAFETY: the name is NUL-terminated, and the purge control reads and writes nothing,
    // so all four value pointers are null. An error only means nothing was purged.
    let _ = unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
}

fn main() -> anyhow::Result<()> {
    tune_allocator();
    // Unless TIMEFUSION_MEMORY_LIMIT_MB says otherwise, the container's memory limit sets the
    // process budget.
    let config = Config::parse().with_container_budget(timefusion::memory::cgroup_limit());
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

    /// The tests set the process's decays: one at a time.
    static ALLOCATOR_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn the_allocator_is_tuned_and_follows_the_governor() {
        let _alone = ALLOCATOR_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        if std::env::var_os("_RJEM_MALLOC_CONF").is_some()
            || std::env::var_os("TIMEFUSION_ALLOW_THP").is_some()
        {
            return;
        }
        let decay = |name: &str| -> isize { name.as_bytes().name().read().unwrap() };
        let arena = |i: u32, kind: &str| decay(&format!("arena.{i}.{kind}_decay_ms\0"));
        // SAFETY: reads a size_t option.
        let oversize: usize =
            unsafe { tikv_jemalloc_ctl::raw::read(b"opt.oversize_threshold\0") }.unwrap();
        assert_eq!(oversize, 0, "no arena of its own for large allocations");
        assert_eq!(
            arena(0, "dirty"),
            DIRTY_DECAY_MS,
            "jemalloc's default decay"
        );
        tune_allocator();
        assert!(tikv_jemalloc_ctl::background_thread::read().unwrap());
        #[cfg(target_os = "linux")]
        {
            // SAFETY: reads the process's flag.
            let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
            assert_eq!(disabled, 1, "transparent huge pages off for the process");
        }
        near_the_budget(true);
        assert_eq!(arena(0, "dirty"), TIGHT_DIRTY_DECAY_MS);
        assert_eq!(
            decay("arenas.dirty_decay_ms\0"),
            TIGHT_DIRTY_DECAY_MS,
            "arenas created later"
        );
        assert_eq!(arena(0, "muzzy"), 0);
        near_the_budget(false);
        assert_eq!(arena(0, "dirty"), DIRTY_DECAY_MS);
        assert_eq!(decay("arenas.dirty_decay_ms\0"), DIRTY_DECAY_MS);
        assert_eq!(arena(0, "muzzy"), 0);
    }

    #[test]
    fn a_purge_returns_the_free_pages_the_decay_would_keep() {
        use timefusion::memory::resident_bytes;
        if std::env::var_os("_RJEM_MALLOC_CONF").is_some() {
            return;
        }
        // 64 MiB in 1 MiB pieces, each page written, then freed: with the usual 10 s decay
        // jemalloc keeps pages of them mapped, which the purge returns.
        let _alone = ALLOCATOR_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        near_the_budget(false);
        let pieces: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8 | 1; 1 << 20]).collect();
        let written = resident_bytes().unwrap();
        assert_eq!(std::hint::black_box(pieces).len(), 64);
        let freed = resident_bytes().unwrap();
        purge_free_pages();
        let purged = resident_bytes().unwrap();
        let kept = freed.saturating_sub(purged);
        assert!(kept >= 16 << 20, "the purge returned {kept} bytes");
        let returned = written.saturating_sub(purged);
        assert!(returned >= 56 << 20, "{returned} of the 64 MiB went back");
    }
}
