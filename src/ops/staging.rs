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
//! "Comfortably" is a quarter of the memory the kernel reports available, within the cgroup's limit
//! when there is one: there is no swap to fall back on, and the server being restored into needs
//! the rest. Anything bigger is staged on disk, in the work directory.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
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
    Memory(std::fs::File),
    Disk(tempfile::NamedTempFile),
}

impl StagedArchive {
    /// A path `pg_restore` (a child of this process, as this user) can open, and reopen in its
    /// workers, for as long as this value lives.
    pub fn path(&self) -> PathBuf {
        match &self.holder {
            Holder::Memory(file) => PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), file.as_raw_fd())),
            Holder::Disk(file) => file.path().to_path_buf(),
        }
    }

    /// "memory" or "disk", for reports.
    pub fn medium(&self) -> &'static str {
        match self.holder {
            Holder::Memory(_) => "memory",
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
    let clock = Instant::now();
    let size = manifest.stream.size;
    let budget = memory_budget();
    let holder = match budget {
        Some(budget) if !staging.disk_only && size <= budget => {
            tracing::debug!("staging the {size}-byte archive in memory (budget {budget} bytes)");
            Holder::Memory(memory_file()?)
        }
        _ => {
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
    let handle = match &holder {
        Holder::Memory(file) => file.try_clone(),
        Holder::Disk(file) => file.reopen(),
    }
    .map_err(|e| io(Path::new("the staged archive"), e))?;
    let lock = lock_snapshot(repo, manifest, purpose).await?;
    let read = repo.read_stream_to_file(manifest, handle, progress).await;
    unlock(lock).await;
    read?;
    Ok(StagedArchive {
        holder,
        seconds: clock.elapsed().as_secs_f64(),
    })
}

fn io(path: &Path, e: std::io::Error) -> OpsError {
    OpsError::Io {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

fn memory_file() -> Result<std::fs::File, OpsError> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    memfd_create(c"lifeboat-restore", MFdFlags::MFD_CLOEXEC)
        .map(std::fs::File::from)
        .map_err(|e| io(Path::new("memfd_create"), e.into()))
}

/// How many bytes may be staged in memory: a quarter of `MemAvailable`, and of the room left under
/// the tightest memory limit of this process's cgroup and its ancestors. `None` where the kernel
/// does not say (not Linux): stage on disk.
fn memory_budget() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let available = meminfo_kib(&meminfo, "MemAvailable:")? * 1024;
    let room = cgroup_room().map_or(available, |room| room.min(available));
    Some(room / 4)
}

fn meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
    let line = meminfo.lines().find_map(|l| l.strip_prefix(key))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

/// The room under the tightest `memory.max` from this process's cgroup (v2) up to the root.
fn cgroup_room() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let relative = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let root = Path::new("/sys/fs/cgroup");
    let mut dir = root.join(relative.trim().trim_start_matches('/'));
    let mut tightest: Option<u64> = None;
    loop {
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
        // "max" (no limit) does not parse, and is skipped.
        if let (Some(max), Some(current)) = (
            read("memory.max").and_then(|s| s.trim().parse::<u64>().ok()),
            read("memory.current").and_then(|s| s.trim().parse::<u64>().ok()),
        ) {
            let room = max.saturating_sub(current);
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
    fn a_memory_file_can_be_reopened_by_its_proc_path() {
        use std::io::{Read, Write};
        let mut file = memory_file().unwrap();
        file.write_all(b"PGDMP archive bytes").unwrap();
        let staged = StagedArchive {
            holder: Holder::Memory(file),
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
