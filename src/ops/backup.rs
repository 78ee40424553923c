use std::sync::Arc;
use std::time::{Duration, Instant};

use super::OpsError;
use crate::engine::Engine;
use crate::repo::{MANIFEST_VERSION, Manifest, Progress, Repository, StreamInfo, WriteOptions, new_snapshot_id};

#[derive(Debug, Clone)]
pub struct BackupReport {
    pub manifest: Manifest,
    pub object: String,
    pub duration: Duration,
}

/// Takes one backup of `source` into `repo` and commits it. Either a complete snapshot is committed or
/// nothing is: chunks written by a failed run are orphans that no manifest names.
pub async fn backup(
    source: &str,
    engine: &dyn Engine,
    repo: &Repository,
    opts: &WriteOptions,
    progress: Arc<dyn Progress>,
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
