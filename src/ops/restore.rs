use std::time::{Duration, Instant};

use super::OpsError;
use super::staging::{StagedArchive, Staging, stage};
use crate::engine::{Engine, RestoreInput, RestoreOptions};
use crate::repo::{LockOptions, Manifest, Progress, RepoError, RepoLock, Repository};

pub struct RestoreRequest<'a> {
    pub manifest: &'a Manifest,
    pub repo: &'a Repository,
    pub target: &'a dyn Engine,
    pub options: RestoreOptions,
    /// Where a parallel restore stages the verified archive (see [`Staging`]).
    pub staging: Staging,
    /// An archive already fetched and proven by [`stage`] (a drill fetches while its scratch
    /// cluster starts); a parallel restore fetches its own when `None`.
    pub staged: Option<StagedArchive>,
}

/// Takes a shared repository lock naming the snapshot, for as long as it is read: prune refuses to
/// run while one is held, and its refusal names `purpose` and the snapshot. Then checks that the
/// snapshot is still stored (a prune may have deleted it between the caller finding it and this
/// lock). A credential that may not write (read-only, as for restoring from an off-site copy) cannot
/// lock: the read goes ahead without one, with a warning, because a restore must not depend on it.
pub async fn lock_snapshot(
    repo: &Repository,
    manifest: &Manifest,
    purpose: &str,
) -> Result<Option<RepoLock>, OpsError> {
    let operation = format!(
        "{purpose} reading snapshot {} of source {}",
        manifest.id, manifest.source
    );
    let lock = match repo
        .lock_snapshot(&operation, &manifest.id, &LockOptions::default())
        .await
    {
        Ok(lock) => lock,
        Err(e) if e.is_permission_denied() => {
            tracing::warn!(
                "{operation}: cannot take a repository lock ({e}); reading without one, so a prune run at the same time could delete this snapshot"
            );
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    match repo.has_manifest(&manifest.source, &manifest.id).await {
        Ok(true) => Ok(Some(lock)),
        Ok(false) => {
            unlock(Some(lock)).await;
            Err(RepoError::Missing {
                object: format!(
                    "snapshots/{}/{}.json (pruned after it was chosen)",
                    manifest.source, manifest.id
                ),
            }
            .into())
        }
        Err(e) => {
            unlock(Some(lock)).await;
            Err(e.into())
        }
    }
}

/// Releases a lock from [`lock_snapshot`]; a failure only leaves a lock that turns stale.
pub async fn unlock(lock: Option<RepoLock>) {
    if let Some(lock) = lock
        && let Err(e) = lock.release().await
    {
        tracing::warn!("could not remove repository lock: {e}; it is ignored once stale");
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreReport {
    pub snapshot: String,
    pub database: String,
    pub bytes: u64,
    pub tables: usize,
    pub rows: u64,
    /// Per-table row counts of the target equal those recorded at backup time.
    pub fingerprint_match: bool,
    pub fetch_seconds: f64,
    /// Where a parallel restore staged the archive: "memory" or "disk"; `None` when it streamed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staged_in: Option<&'static str>,
    pub restore_seconds: f64,
    #[serde(skip)]
    pub duration: Duration,
}

/// Restores a snapshot into an empty database that is not the source itself.
///
/// With `jobs > 1` the whole stream is fetched and every chunk proven into local memory or a local
/// file (see [`Staging`]) *before* the target is touched, then restored in parallel. With `jobs == 1`
/// it streams into a single transaction, so a damaged chunk found midway rolls back to an empty
/// database. Either way a shared repository lock names the snapshot while it is read from the
/// repository (see [`lock_snapshot`]); an archive staged beforehand needs none.
pub async fn restore(req: RestoreRequest<'_>, progress: &dyn Progress) -> Result<RestoreReport, OpsError> {
    let clock = Instant::now();
    let m = req.manifest;
    let state = req.target.target_state().await?;
    // An approved request may restore over data (`replace`); nothing else may.
    if !req.options.replace
        && let (Some(src), Some(dst)) = (&m.facts.system_identifier, &state.identity.system_identifier)
        && src == dst
        && m.facts.database == state.identity.database
    {
        return Err(OpsError::Refused {
            reason: format!(
                "the target is the source database itself (system identifier {dst}, database {})",
                state.identity.database
            ),
            fix: "restore into a new, empty database (createdb ...) and switch over after checking it".into(),
        });
    }
    if !state.is_empty() && !req.options.replace {
        return Err(OpsError::Refused {
            reason: format!(
                "the target database {} is not empty: it holds {} objects (e.g. {})",
                state.identity.database,
                state.existing_objects,
                state.examples.join(", ")
            ),
            fix: "restore into a new, empty database; overwriting data needs an approved request".into(),
        });
    }

    let note = format!("lifeboat: INCOMPLETE restore of snapshot {} - do not use", m.id);
    let (fetch_seconds, staged_in, restore_clock) = if req.options.jobs > 1 {
        let staged = match req.staged {
            Some(s) => s,
            None => stage(req.repo, m, &req.staging, "restore", progress).await?,
        };
        let restore_clock = Instant::now();
        let running = req
            .target
            .start_restore(&m.stream.format, RestoreInput::File(staged.path()), &req.options)
            .await?;
        if let Err(e) = running.handle.finish().await {
            let _ = req.target.mark_incomplete(&note).await;
            return Err(e.into());
        }
        (staged.seconds, Some(staged.medium()), restore_clock)
    } else {
        let fetch_clock = Instant::now();
        // Locked before the target is touched: a refusal (a prune is running) leaves it as it was.
        let lock = lock_snapshot(req.repo, m, "restore").await?;
        let mut running = match req
            .target
            .start_restore(&m.stream.format, RestoreInput::Stdin, &req.options)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                unlock(lock).await;
                return Err(e.into());
            }
        };
        let mut stdin = running.stdin.take().expect("stdin restore has a pipe");
        let fed = req.repo.read_stream(m, &mut stdin, progress).await;
        unlock(lock).await;
        drop(stdin);
        if let Err(e) = fed {
            // Killing pg_restore before it commits rolls its single transaction back.
            running.handle.abort().await;
            return Err(e.into());
        }
        running.handle.finish().await?;
        (fetch_clock.elapsed().as_secs_f64(), None, Instant::now())
    };
    let restore_seconds = restore_clock.elapsed().as_secs_f64();

    let now = req.target.fingerprint().await?;
    let mut expected = m.facts.fingerprint.tables.clone();
    expected.sort();
    let mut actual = now.tables.clone();
    if req.options.replace {
        // Tables the target had beside the backup's are not the backup's to judge.
        actual.retain(|t| expected.iter().any(|e| e.schema == t.schema && e.table == t.table));
    }
    actual.sort();
    if expected != actual {
        let _ = req.target.mark_incomplete(&note).await;
        let diff: Vec<String> = expected
            .iter()
            .filter(|t| !actual.contains(t))
            .map(|t| format!("{}.{} expected {} rows", t.schema, t.table, t.rows))
            .take(5)
            .collect();
        return Err(OpsError::Mismatch {
            snapshot: m.id.clone(),
            detail: diff.join("; "),
        });
    }
    Ok(RestoreReport {
        snapshot: m.id.clone(),
        database: state.identity.database,
        bytes: m.stream.size,
        tables: actual.len(),
        rows: now.total_rows(),
        fingerprint_match: true,
        fetch_seconds,
        staged_in,
        restore_seconds,
        duration: clock.elapsed(),
    })
}
