use std::sync::Arc;
use std::time::{Duration, Instant};

use super::OpsError;
use crate::engine::Engine;
use crate::repo::{
    LockKind, LockOptions, MANIFEST_VERSION, Manifest, Progress, Repository, StreamInfo, WriteOptions, new_snapshot_id,
};

#[derive(Debug, Clone)]
pub struct BackupReport {
    pub manifest: Manifest,
    pub object: String,
    pub duration: Duration,
}

/// Takes one backup of `source` into `repo` and commits it. Either a complete snapshot is committed or
/// nothing is: chunks written by a failed run are orphans that no manifest names.
///
/// It holds a shared repository lock from before the first chunk is looked up until the end, and
/// refuses to start while prune holds the repository: a chunk this backup finds already stored (and
/// so does not upload) may be one that nothing else references, which a concurrent prune would delete.
pub async fn backup(
    source: &str,
    engine: &dyn Engine,
    repo: &Repository,
    opts: &WriteOptions,
    progress: Arc<dyn Progress>,
) -> Result<BackupReport, OpsError> {
    let lock = repo
        .lock(LockKind::Shared, &format!("backup {source}"), &LockOptions::default())
        .await?;
    let result = backup_locked(source, engine, repo, opts, progress, &lock).await;
    if let Err(e) = lock.release().await {
        tracing::warn!("backup of {source}: could not release the repository lock: {e}");
    }
    result
}

async fn backup_locked(
    source: &str,
    engine: &dyn Engine,
    repo: &Repository,
    opts: &WriteOptions,
    progress: Arc<dyn Progress>,
    lock: &crate::repo::RepoLock,
) -> Result<BackupReport, OpsError> {
    let clock = Instant::now();
    let started_at = jiff::Timestamp::now();
    let running = engine.start_backup().await?;
    let (format, method, handle) = (running.format, running.method, running.handle);
    let summary = match repo.write_stream(running.stream, opts, progress).await {
        Ok(s) => s,
        Err(e) => {
            handle.abort().await;
            return Err(e.into());
        }
    };
    // The producer's exit status decides: a dump that failed midway ends its stream early and cleanly.
    let facts = handle.finish().await?;
    let finished_at = jiff::Timestamp::now();
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        id: new_snapshot_id(started_at),
        source: source.to_string(),
        engine: engine.kind().to_string(),
        method,
        started_at,
        finished_at,
        host: hostname(),
        lifeboat_version: env!("CARGO_PKG_VERSION").to_string(),
        stream: StreamInfo {
            format,
            size: summary.size,
            sha256: summary.sha256,
            chunks: summary.chunks,
            new_chunks: summary.new_chunks,
            new_bytes: summary.new_bytes,
        },
        facts,
    };
    // A lost lock means a prune may have run meanwhile and deleted chunks this manifest names.
    lock.confirm().await?;
    let object = repo.commit(&manifest).await?;
    Ok(BackupReport {
        manifest,
        object,
        duration: clock.elapsed(),
    })
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}
