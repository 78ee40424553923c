//! Chunk work that keeps a core busy (compressing, decompressing, hashing) runs here: on a blocking
//! thread, at most one per core across the whole process, however many transfers are in flight.
//!
//! Transfers wait on the network or the disk, so many are in flight at once; the work on their
//! chunks does not wait. More of it than cores only takes turns on them, and each turn evicts the
//! other's working set from the core's cache: a 2 MiB chunk and, when compressing at level 3, about
//! 768 KiB of match tables, against 1 MiB of L2 per core on the machines measured. On two cores, a
//! scale-100 backup with four uploads in flight used about 1.5 core-seconds more when all four
//! compressed at once (BENCHMARKS.md). One limit for the process also holds when a daemon runs a
//! backup and a drill side by side.

use std::sync::LazyLock;

use tokio::sync::Semaphore;

use super::{RepoError, Result};

static CORES: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(1, usize::from)));

/// Runs `work` on a blocking thread once a core is free for it.
pub(super) async fn on_a_core<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let _core = CORES.acquire().await.expect("never closed");
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| RepoError::Task(e.to_string()))?
}
