//! The process's memory: one budget (`TIMEFUSION_MEMORY_LIMIT_MB`, by default three quarters
//! of the container's limit, [`cgroup_limit`]), what each large consumer holds, and the
//! governor that keeps the resident set under the budget.
//!
//! Each consumer has its own bound, a share of the budget (`config::Config::shares`): the
//! buffer, DataFusion's query pool, the Parquet metadata cache, Arrow bytes in flight on DoPut,
//! the Foyer memory tier.
//! What no bound covers (a flush's slices and Parquet writers, WAL group buffers, COPY's parsed
//! rows, the allocator's free pages, the libraries) is measured instead: every
//! [`TICK`] the governor reads the process's resident set from `/proc/self/status` and sets
//! the buffer's admission limit to what is left of the budget's [`TARGET_PERCENT`] once
//! everything but the buffer is counted ([`allowance`]). Writers then wait for a flush, and
//! the flusher runs early, before the process passes its budget, as ClickHouse corrects its
//! memory tracker with the resident set. Over the budget's target the allocator keeps freed
//! pages only briefly, and the governor has it return what it still keeps every tick
//! ([`set_allocator_control`]).
//!
//! `SELECT * FROM timefusion_memory` and `/metrics` (`timefusion_memory_*`) show it all.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How often the governor reads the resident set.
pub const TICK: Duration = Duration::from_millis(100);

/// The share of the budget the governor keeps the resident set under; the rest absorbs what
/// grows between two ticks.
pub const TARGET_PERCENT: usize = 90;

/// The least the buffer is allowed, as a fraction of its share: ingest goes on (in smaller
/// flushes) even when the rest of the process holds more than it should.
const FLOOR_DIVISOR: usize = 8;

/// Bytes the ingest front ends (Flight DoPut, OTLP) hold in flight together, decoded and not
/// yet in the buffer, in KiB permits: a batch waits for its permits, which backpressures its
/// sender (HTTP/2 flow control on a DoPut stream, a slower acknowledgement of an export).
#[derive(Clone)]
pub struct InFlight {
    permits: Arc<Semaphore>,
    kib: usize,
}

impl InFlight {
    /// At most `bytes` in flight.
    pub fn new(bytes: usize) -> Self {
        let kib = (bytes / 1024).clamp(1, Semaphore::MAX_PERMITS);
        InFlight {
            permits: Arc::new(Semaphore::new(kib)),
            kib,
        }
    }

    /// Bytes held in flight now.
    pub fn held_bytes(&self) -> usize {
        self.kib.saturating_sub(self.permits.available_permits()) << 10
    }

    /// The whole budget, in bytes: the most one batch may hold.
    pub fn budget_bytes(&self) -> usize {
        self.kib << 10
    }

    /// Waits until `kib` more fit (at least one, at most the whole budget, so an oversized
    /// batch waits for every other, never forever); the permit holds them until dropped.
    /// `None` if the budget's semaphore was closed.
    pub async fn admit_kib(&self, kib: usize) -> Option<OwnedSemaphorePermit> {
        let kib = self.permits_for(kib) as u32;
        self.permits.clone().acquire_many_owned(kib).await.ok()
    }

    /// The permits `kib` takes: at least one, at most the whole budget.
    fn permits_for(&self, kib: usize) -> usize {
        kib.clamp(1, self.kib.min(u32::MAX as usize))
    }

    /// [`InFlight::admit_kib`], counting `early`, room reserved before the batch was read:
    /// what `early` holds beyond `kib` is returned at once. If it holds less, it is all
    /// returned and `kib` waited for whole: never some held while waiting for more, which
    /// could leave two streams each holding part of what the other waits for.
    pub async fn admit_kib_with(
        &self,
        early: Option<OwnedSemaphorePermit>,
        kib: usize,
    ) -> Option<OwnedSemaphorePermit> {
        let want = self.permits_for(kib);
        if let Some(mut early) = early {
            if early.num_permits() >= want {
                drop(early.split(early.num_permits() - want));
                return Some(early);
            }
            drop(early);
        }
        self.admit_kib(kib).await
    }
}

/// A large consumer of memory: its name, its bound (`None`: bounded by others) and how much
/// it holds now.
pub struct Consumer {
    pub name: &'static str,
    pub limit: Option<usize>,
    pub used: Box<dyn Fn() -> usize + Send + Sync>,
}

/// One line of `timefusion_memory`.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    pub consumer: &'static str,
    pub used_bytes: u64,
    pub limit_bytes: Option<u64>,
    /// Writers that waited for this consumer to free memory, and how long they waited.
    pub waits: u64,
    pub wait_seconds: f64,
}

/// The buffer, as the governor sees it: what it holds, its share, and the limit writers are
/// admitted against.
pub trait Admission: Send + Sync {
    fn held(&self) -> usize;
    fn share(&self) -> usize;
    fn admit_up_to(&self, bytes: usize);
    /// The limit writers are admitted against now.
    fn admitted(&self) -> usize;
    /// Writers that had to wait for space, and how long they waited in all.
    fn waits(&self) -> (u64, Duration);
}

/// The budget and its consumers.
pub struct Memory {
    limit: Option<usize>,
    buffer: Arc<dyn Admission>,
    consumers: Vec<Consumer>,
}

impl Memory {
    pub fn new(limit: Option<usize>, buffer: Arc<dyn Admission>, consumers: Vec<Consumer>) -> Self {
        Memory {
            limit,
            buffer,
            consumers,
        }
    }

    /// The process budget in bytes, if there is one.
    pub fn limit(&self) -> Option<usize> {
        self.limit
    }

    /// What is held now: the process (its resident set, against the budget), the buffer
    /// (against the limit writers are admitted against), each consumer, and `other`, the
    /// resident set none of them accounts for.
    pub fn usage(&self) -> Vec<Usage> {
        let rss = resident_bytes().unwrap_or(0);
        let buffer = self.buffer.held();
        let (waits, waited) = self.buffer.waits();
        let mut lines = vec![
            Usage {
                consumer: "process",
                used_bytes: rss as u64,
                limit_bytes: self.limit.map(|l| l as u64),
                waits: 0,
                wait_seconds: 0.0,
            },
            Usage {
                consumer: "buffer",
                used_bytes: buffer as u64,
                limit_bytes: Some(self.buffer.admitted() as u64),
                waits,
                wait_seconds: waited.as_secs_f64(),
            },
        ];
        let mut accounted = buffer;
        for c in &self.consumers {
            let used = (c.used)();
            accounted += used;
            lines.push(Usage {
                consumer: c.name,
                used_bytes: used as u64,
                limit_bytes: c.limit.map(|l| l as u64),
                waits: 0,
                wait_seconds: 0.0,
            });
        }
        lines.push(Usage {
            consumer: "other",
            used_bytes: rss.saturating_sub(accounted) as u64,
            limit_bytes: None,
            waits: 0,
            wait_seconds: 0.0,
        });
        lines
    }
}

/// The limit the buffer admits writers against, given the process budget, its resident
/// bytes, the bytes the buffer holds and the buffer's share: what is left of
/// [`TARGET_PERCENT`] of the budget once the rest of the process is counted, between an
/// eighth of the share and the share.
pub fn allowance(limit: usize, resident: usize, held: usize, share: usize) -> usize {
    let target = limit / 100 * TARGET_PERCENT;
    let others = resident.saturating_sub(held);
    target
        .saturating_sub(others)
        .clamp(share / FLOOR_DIVISOR, share)
}

/// Runs the governor until `shutdown`: every [`TICK`], sets the buffer's admission limit from
/// the resident set, and asks the allocator to return free pages while the process is over
/// its target. Does nothing without a budget.
pub async fn govern(memory: Arc<Memory>, shutdown: CancellationToken) {
    let Some(limit) = memory.limit else {
        return;
    };
    let target = limit / 100 * TARGET_PERCENT;
    let mut tight = false;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(resident) = resident_bytes() else {
            tracing::warn!("cannot read /proc/self/status: the memory budget is not enforced");
            return;
        };
        let buffer = &memory.buffer;
        buffer.admit_up_to(allowance(limit, resident, buffer.held(), buffer.share()));
        let Some(allocator) = ALLOCATOR.get() else {
            continue;
        };
        // Over the target, the allocator keeps freed pages only briefly, and what it keeps
        // goes back to the OS every tick; well under it, it keeps them a while again.
        let now_tight = resident > target || (tight && resident > target / 10 * 8);
        if now_tight != tight {
            (allocator.near_budget)(now_tight);
        }
        tight = now_tight;
        if tight {
            // Off the runtime's threads: a purge is one madvise per free extent.
            let _ = tokio::task::spawn_blocking(allocator.purge).await;
        }
    }
}

/// What the binary's allocator does under pressure ([`set_allocator_control`]).
#[derive(Clone, Copy, Debug)]
pub struct AllocatorControl {
    /// `near_budget(true)`: freed pages are kept only briefly; `near_budget(false)`: as long
    /// as the allocator usually keeps them.
    pub near_budget: fn(bool),
    /// Returns every free page the allocator keeps to the OS now.
    pub purge: fn(),
}

static ALLOCATOR: OnceLock<AllocatorControl> = OnceLock::new();

/// Registers the binary's allocator with the governor. Over the budget's target the governor
/// calls `near_budget(true)` and then `purge` every [`TICK`], and `near_budget(false)` once
/// the process is back well under it. A purge every tick, rather than on every free, lets
/// the pages freed within a tick serve the next allocations without a fault, and returns
/// the rest in fewer, larger pieces (BENCHMARKS.md, "Free pages returned every tick").
/// The `timefusion` binary registers jemalloc's; without one the governor only throttles.
pub fn set_allocator_control(control: AllocatorControl) {
    let _ = ALLOCATOR.set(control);
}

/// The process's resident set in bytes (`VmRSS`), or `None` where there is no `/proc`.
pub fn resident_bytes() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib << 10)
}

/// The memory limit of the cgroup this process runs in, in bytes, if it has one: the least
/// of cgroup v2's `memory.max` (or v1's `memory.limit_in_bytes`) over the process's own group
/// (from `/proc/self/cgroup`) and each group above it, since a parent's limit bounds its
/// children; in a container the namespace's root is the container's group.
pub fn cgroup_limit() -> Option<usize> {
    let groups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    limit_files(&groups)
        .into_iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .filter_map(|text| parse_cgroup_limit(&text))
        .min()
}

/// The limit files of the groups named in `/proc/self/cgroup`'s text, from the process's own
/// group up to the root: v2's unified line (`0::/path`) and v1's `memory` controller line.
fn limit_files(groups: &str) -> Vec<String> {
    let mut files = Vec::new();
    for line in groups.lines() {
        let mut fields = line.splitn(3, ':');
        let (id, controllers, path) = (fields.next(), fields.next(), fields.next());
        let (root, file) = match (id, controllers, path) {
            (Some("0"), Some(""), Some(_)) => ("/sys/fs/cgroup", "memory.max"),
            (_, Some(c), Some(_)) if c.split(',').any(|c| c == "memory") => {
                ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
            }
            _ => continue,
        };
        let mut group = path.unwrap_or("/").trim_end_matches('/');
        loop {
            files.push(format!("{root}{group}/{file}"));
            match group.rfind('/') {
                Some(parent) => group = &group[..parent],
                None => break,
            }
        }
    }
    files
}

/// A cgroup memory limit file's value: `None` for `max` (v2) or the near-`i64::MAX` value v1
/// writes for no limit.
fn parse_cgroup_limit(text: &str) -> Option<usize> {
    let value: u64 = text.trim().parse().ok()?;
    (value < 1 << 60).then_some(value as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[tokio::test]
    async fn early_room_is_trimmed_to_the_batch_or_given_back_before_a_wait() {
        let inflight = InFlight::new(10 << 10);
        let early = inflight.admit_kib(6).await;
        let held = inflight.admit_kib_with(early, 4).await.expect("admitted");
        assert_eq!((held.num_permits(), inflight.held_bytes()), (4, 4 << 10));
        // Too little reserved: all of it is returned, and the whole batch waits for room.
        let early = inflight.admit_kib(2).await;
        let other = inflight.admit_kib(3).await.expect("admitted");
        let waiting = inflight.admit_kib_with(early, 5);
        tokio::pin!(waiting);
        assert!(futures::poll!(&mut waiting).is_pending());
        drop(other);
        // 4 + 5 fit in 10 only if the 2 reserved early went back.
        let second = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the early room was given back")
            .expect("admitted");
        assert_eq!(second.num_permits(), 5);
        assert_eq!(inflight.held_bytes(), 9 << 10);
        drop((held, second));
        assert_eq!(inflight.held_bytes(), 0);
    }

    #[test]
    fn the_buffer_gets_what_the_rest_of_the_process_leaves() {
        // 512 MiB budget, target 460.8 MiB; share 200 MiB.
        let limit = 512 * MIB;
        let target = limit / 100 * TARGET_PERCENT;
        // The rest holds 100 MiB: the whole share fits.
        assert_eq!(allowance(limit, 250 * MIB, 150 * MIB, 200 * MIB), 200 * MIB);
        // The rest holds 300 MiB: the buffer gets the difference to the target.
        assert_eq!(
            allowance(limit, 450 * MIB, 150 * MIB, 200 * MIB),
            target - 300 * MIB
        );
        // The rest holds more than the target: the floor, an eighth of the share.
        assert_eq!(allowance(limit, 700 * MIB, 100 * MIB, 200 * MIB), 25 * MIB);
    }

    #[test]
    fn cgroup_files_say_no_limit_in_two_ways() {
        assert_eq!(parse_cgroup_limit("max\n"), None);
        assert_eq!(parse_cgroup_limit("9223372036854771712\n"), None);
        assert_eq!(parse_cgroup_limit("536870912\n"), Some(512 * MIB));
    }

    #[test]
    fn the_limit_files_go_from_the_own_group_up_to_the_root() {
        let v1 = "4:memory:/process_api/abc/tf\n1:cpu:/\n";
        assert_eq!(
            limit_files(v1),
            [
                "/sys/fs/cgroup/memory/process_api/abc/tf/memory.limit_in_bytes",
                "/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes",
                "/sys/fs/cgroup/memory/process_api/memory.limit_in_bytes",
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            ]
        );
        // A container's namespace: its group is the root.
        assert_eq!(limit_files("0::/\n"), ["/sys/fs/cgroup/memory.max"]);
        assert_eq!(
            limit_files("0::/system.slice/tf.service\n"),
            [
                "/sys/fs/cgroup/system.slice/tf.service/memory.max",
                "/sys/fs/cgroup/system.slice/memory.max",
                "/sys/fs/cgroup/memory.max",
            ]
        );
        assert!(limit_files("1:cpu,cpuacct:/\n").is_empty());
    }

    #[test]
    fn the_resident_set_is_read_from_proc() {
        let rss = resident_bytes().expect("/proc/self/status");
        assert!(rss > MIB, "{rss}");
    }
}
