//! Where a parallel restore keeps the proven archive while `pg_restore --jobs` reads it.
//!
//! `pg_restore --jobs` needs a file it can seek in, so a parallel restore stages the whole archive
//! locally first. On disk, that file is a freshly written one: the kernel writes it back while the
//! target server writes the restored tables, and both fight for the same disk and, on a virtual
//! machine, for the CPU that drives it. On two cores that cost about 2 s of a 20 s restore of a
//! 1.75 GB archive (BENCHMARKS.md). An archive that fits comfortably in memory is therefore staged
//! in an anonymous memory file (`memfd_create`) instead: never written back, and gone with the
//! process however it ends, so a crash leaves no file behind either.
//!
//! "Comfortably" is a quarter of the memory the kernel reports available, within the room under the
//! cgroup's limits (v2 `memory.max` and `memory.high`, v1 `memory.limit_in_bytes`) when there are
//! any, less what this process already holds staged for other restores and drills running at the
//! same time: a memory file is not swapped out where there is no swap, and the server being restored
//! into needs the rest. Anything bigger is staged on disk, in the work directory, and so is
//! everything when the kernel refuses `memfd_create`.
//!
//! A memory file is given its full size up front and sealed against shrinking and growing
//! (`F_SEAL_SHRINK`, `F_SEAL_GROW`): a reader may then map it without risking a `SIGBUS` from a
//! page that a truncation took away, and the pipelined restore reads it through small mappings
//! instead of copying every byte out with `pread` (see `engine::postgres::pipeline`).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::OpsError;
use super::restore::{lock_snapshot, unlock};
use crate::repo::{Manifest, Progress, Repository};

/// Where to stage. The default: in memory when the archive fits, else in the system temp dir.
#[derive(Debug, Clone, Default)]
pub struct Staging {
    /// Directory for an archive staged on disk; the system temp dir when `None`.
    pub dir: Option<PathBuf>,
    /// Stage on disk even when the archive would fit in memory.
    pub disk_only: bool,
}

/// A snapshot's archive, fetched and proven into local storage that is freed when this is dropped.
pub struct StagedArchive {
    holder: Holder,
    /// How long fetching and proving took.
    pub seconds: f64,
}

enum Holder {
    /// Open for as long as `pg_restore` may read it through `/proc/<pid>/fd/<fd>`.
    Memory {
        file: std::fs::File,
        /// Held while staged: counts against the shared budget.
        _reserved: Reservation,
    },
    Disk(tempfile::NamedTempFile),
}

impl Holder {
    fn path(&self) -> PathBuf {
        match self {
            Holder::Memory { file, .. } => {
                PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), file.as_raw_fd()))
            }
            Holder::Disk(file) => file.path().to_path_buf(),
        }
    }
}

/// Bytes this process holds staged in memory right now, so that restores and drills staging at the
/// same time (the daemon runs jobs side by side) share one budget instead of each taking it whole.
static STAGED_IN_MEMORY: AtomicU64 = AtomicU64::new(0);

/// A share of [`STAGED_IN_MEMORY`], given back on drop.
struct Reservation(u64);

impl Reservation {
    /// `size` more bytes, if what is staged then still fits in `budget`.
    fn take(size: u64, budget: u64) -> Option<Self> {
        STAGED_IN_MEMORY
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |staged| {
                staged.checked_add(size).filter(|&total| total <= budget)
            })
            .ok()
            .map(|_| Reservation(size))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        STAGED_IN_MEMORY.fetch_sub(self.0, Ordering::SeqCst);
    }
}

impl StagedArchive {
    /// A path `pg_restore` (a child of this process, as this user) can open, and reopen in its
    /// workers, for as long as this value lives.
    pub fn path(&self) -> PathBuf {
        self.holder.path()
    }

    /// "memory" or "disk", for reports.
    pub fn medium(&self) -> &'static str {
        match self.holder {
            Holder::Memory { .. } => "memory",
            Holder::Disk(_) => "disk",
        }
    }
}

/// Fetches the snapshot's whole archive into memory or a new file (see the module documentation),
/// proving every chunk on the way (see [`Repository::read_stream_to_file`]). Touches no database.
/// Holds a shared lock naming `purpose` ("restore", "drill nightly") and the snapshot while it reads
/// (see [`lock_snapshot`]).
pub async fn stage(
    repo: &Repository,
    manifest: &Manifest,
    staging: &Staging,
    purpose: &str,
    progress: &dyn Progress,
) -> Result<StagedArchive, OpsError> {
    let mut staged = StagedArchive::allocate(manifest.stream.size, staging)?;
    staged.fill(repo, manifest, purpose, progress, &|_| {}).await?;
    Ok(staged)
}

impl StagedArchive {
    /// Room for an archive of `size` bytes, still empty: in memory when it fits, else on disk (see
    /// the module documentation). [`StagedArchive::fill`] fetches into it.
    pub fn allocate(size: u64, staging: &Staging) -> Result<StagedArchive, OpsError> {
        let clock = Instant::now();
        // Not even looked up when the caller wants disk.
        let budget = if staging.disk_only { None } else { memory_budget() };
        let in_memory =
            budget
                .and_then(|budget| Reservation::take(size, budget))
                .and_then(|reserved| match memory_file(size) {
                    Ok(file) => Some(Holder::Memory {
                        file,
                        _reserved: reserved,
                    }),
                    Err(e) => {
                        tracing::warn!("cannot stage the archive in memory ({e}); staging it on disk");
                        None
                    }
                });
        let holder = match in_memory {
            Some(holder) => {
                tracing::debug!("staging the {size}-byte archive in memory (budget {budget:?} bytes)");
                holder
            }
            None => {
                let dir = staging.dir.clone().unwrap_or_else(std::env::temp_dir);
                tracing::debug!(
                    "staging the {size}-byte archive on disk in {} (memory budget {budget:?} bytes)",
                    dir.display()
                );
                Holder::Disk(
                    tempfile::Builder::new()
                        .prefix("lifeboat-restore-")
                        .tempfile_in(&dir)
                        .map_err(|e| io(&dir, e))?,
                )
            }
        };
        Ok(StagedArchive {
            holder,
            seconds: clock.elapsed().as_secs_f64(),
        })
    }

    /// Another handle on the staged bytes, for reading them while [`StagedArchive::fill`] writes.
    pub fn handle(&self) -> Result<std::fs::File, OpsError> {
        match &self.holder {
            Holder::Memory { file, .. } => file.try_clone(),
            Holder::Disk(file) => file.reopen(),
        }
        .map_err(|e| io(&self.holder.path(), e))
    }

    /// Fetches the snapshot's archive into this room, proving every chunk, under a shared lock
    /// naming `purpose` and the snapshot (see [`stage`]). `proven` hears how far from the start the
    /// bytes are proven, as that grows (see [`Repository::read_stream_to_file`]).
    pub async fn fill(
        &mut self,
        repo: &Repository,
        manifest: &Manifest,
        purpose: &str,
        progress: &dyn Progress,
        proven: &(dyn Fn(u64) + Sync),
    ) -> Result<(), OpsError> {
        let clock = Instant::now();
        let handle = self.handle()?;
        let lock = lock_snapshot(repo, manifest, purpose).await?;
        let read = repo.read_stream_to_file(manifest, handle, progress, proven).await;
        unlock(lock).await;
        read?;
        self.seconds += clock.elapsed().as_secs_f64();
        Ok(())
    }
}

fn io(path: &Path, e: std::io::Error) -> OpsError {
    OpsError::Io {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

/// A memory file of `size` bytes, none written yet, sealed at that size.
fn memory_file(size: u64) -> std::io::Result<std::fs::File> {
    use nix::fcntl::{FcntlArg, SealFlag, fcntl};
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let file = std::fs::File::from(memfd_create(
        c"lifeboat-restore",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )?);
    // Sparse: a page takes memory once it is written.
    file.set_len(size)?;
    fcntl(
        &file,
        FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL),
    )?;
    Ok(file)
}

/// How many bytes may be staged in memory in all: a quarter of `MemAvailable`, and of the room left
/// under this process's cgroup limits. `None` where the kernel does not say: stage on disk.
fn memory_budget() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let available = meminfo_kib(&meminfo, "MemAvailable:")? * 1024;
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let room = cgroup_room(Path::new("/sys/fs/cgroup"), &cgroups).map_or(available, |room| room.min(available));
    Some(room / 4)
}

fn meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
    let line = meminfo.lines().find_map(|l| l.strip_prefix(key))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

/// The room under the tightest memory limit on the way from this process's cgroup up to the root
/// of the hierarchy mounted under `sys` (`/sys/fs/cgroup`); `cgroups` is `/proc/self/cgroup`.
///
/// cgroup v2 (a `0::` line): `memory.max` and `memory.high` against `memory.current`. cgroup v1 (a
/// line naming the `memory` controller): `memory.limit_in_bytes` against `memory.usage_in_bytes`
/// under `sys/memory`. In a container the path named in `/proc/self/cgroup` may not exist in its
/// view of the hierarchy; the walk up then ends at the root it does see, which is the container's
/// own cgroup.
fn cgroup_room(sys: &Path, cgroups: &str) -> Option<u64> {
    let v2 = cgroups.lines().find_map(|l| l.strip_prefix("0::"));
    let v1 = cgroups.lines().find_map(|l| {
        let mut fields = l.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers.split(',').any(|c| c == "memory").then_some(path)
    });
    let rooms = [
        v2.and_then(|path| tightest_room(sys, path, &["memory.max", "memory.high"], "memory.current")),
        v1.and_then(|path| {
            tightest_room(
                &sys.join("memory"),
                path,
                &["memory.limit_in_bytes"],
                "memory.usage_in_bytes",
            )
        }),
    ];
    rooms.into_iter().flatten().min()
}

fn tightest_room(root: &Path, relative: &str, limits: &[&str], usage: &str) -> Option<u64> {
    // Above this, a v1 limit means "none" (the kernel writes a page-rounded i64::MAX).
    const UNLIMITED: u64 = 1 << 62;
    let read = |dir: &Path, name: &str| {
        std::fs::read_to_string(dir.join(name))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let mut dir = root.join(relative.trim().trim_start_matches('/'));
    let mut tightest: Option<u64> = None;
    loop {
        // "max" (no limit) does not parse, and is skipped.
        let limit = limits
            .iter()
            .filter_map(|name| read(&dir, name))
            .filter(|&l| l < UNLIMITED)
            .min();
        if let (Some(limit), Some(used)) = (limit, read(&dir, usage)) {
            let room = limit.saturating_sub(used);
            tightest = Some(tightest.map_or(room, |t| t.min(room)));
        }
        if dir == root || !dir.pop() || !dir.starts_with(root) {
            return tightest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_available_memory_in_bytes() {
        let meminfo = "MemTotal:       24683620 kB\nMemFree:        12813636 kB\nMemAvailable:   20823116 kB\n";
        assert_eq!(meminfo_kib(meminfo, "MemAvailable:"), Some(20_823_116));
        assert_eq!(meminfo_kib(meminfo, "SwapTotal:"), None);
    }

    #[test]
    fn staged_bytes_share_one_budget_and_are_given_back() {
        // Other tests in this process may stage too: measure against what is staged now.
        let base = STAGED_IN_MEMORY.load(Ordering::SeqCst);
        let budget = base + 100;
        let first = Reservation::take(60, budget).expect("60 of 100 fits");
        assert!(Reservation::take(60, budget).is_none(), "120 of 100 does not");
        let second = Reservation::take(40, budget).expect("the last 40 fits");
        drop(first);
        assert!(Reservation::take(60, budget).is_some(), "given back on drop");
        drop(second);
    }

    #[test]
    fn the_tightest_cgroup_limit_on_the_way_up_counts() {
        let sys = tempfile::tempdir().unwrap();
        let write = |dir: &str, name: &str, value: &str| {
            let dir = sys.path().join(dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), value).unwrap();
        };
        // v2: the service's own limit is "max"; its slice allows 8 GiB of which 6 are used.
        write("system.slice/lifeboat.service", "memory.max", "max\n");
        write("system.slice/lifeboat.service", "memory.current", "1000\n");
        write("system.slice", "memory.max", "8589934592\n");
        write("system.slice", "memory.high", "max\n");
        write("system.slice", "memory.current", "6442450944\n");
        let v2 = "0::/system.slice/lifeboat.service\n";
        assert_eq!(cgroup_room(sys.path(), v2), Some(2 << 30));
        // memory.high below memory.max is the limit that throttles.
        write("system.slice", "memory.high", "7516192768\n");
        assert_eq!(cgroup_room(sys.path(), v2), Some(1 << 30));

        // v1 in a container: the host's path is not in the container's view; its root is.
        write("memory", "memory.limit_in_bytes", "2147483648\n");
        write("memory", "memory.usage_in_bytes", "1073741824\n");
        let v1 = "12:memory:/docker/0123abcd\n11:cpu,cpuacct:/docker/0123abcd\n";
        assert_eq!(cgroup_room(sys.path(), v1), Some(1 << 30));
        // "No limit" in v1 is a huge number, not a limit.
        write("memory", "memory.limit_in_bytes", "9223372036854771712\n");
        assert_eq!(cgroup_room(sys.path(), v1), None);
        assert_eq!(cgroup_room(sys.path(), ""), None);
    }

    #[test]
    fn a_memory_file_has_its_size_from_the_start_and_keeps_it() {
        use std::os::unix::fs::FileExt;
        let file = memory_file(1 << 20).unwrap();
        assert_eq!(file.metadata().unwrap().len(), 1 << 20);
        file.write_all_at(b"written in place", 4096).unwrap();
        assert!(file.set_len(10).is_err(), "sealed against shrinking");
        assert!(file.write_all_at(b"x", 1 << 20).is_err(), "sealed against growing");
        assert_eq!(file.metadata().unwrap().len(), 1 << 20);
    }

    #[test]
    fn a_memory_file_can_be_reopened_by_its_proc_path() {
        use std::io::{Read, Write};
        let mut file = memory_file(19).unwrap();
        file.write_all(b"PGDMP archive bytes").unwrap();
        let staged = StagedArchive {
            holder: Holder::Memory {
                file,
                _reserved: Reservation::take(0, u64::MAX).unwrap(),
            },
            seconds: 0.0,
        };
        let mut read = String::new();
        std::fs::File::open(staged.path())
            .unwrap()
            .read_to_string(&mut read)
            .unwrap();
        assert_eq!(read, "PGDMP archive bytes");
        assert_eq!(staged.medium(), "memory");
    }
}
