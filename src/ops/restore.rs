use std::time::{Duration, Instant};

use super::OpsError;
use super::staging::{StagedArchive, Staging};
use crate::engine::{Engine, GrowingArchive, Proven, RestoreInput, RestoreOptions};
use crate::repo::{Fingerprint, LockOptions, Manifest, Progress, RepoError, RepoLock, Repository, TableRows};

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

/// Stages the archive and, where the engine can, restores it at the same time (see
/// [`Engine::restore_growing`]): the data of each table stays uncommitted until every chunk is
/// proven. Returns the staged archive and, when it is restored already, the rows the engine loaded
/// into each table; when it is not, the target is untouched and the archive whole.
async fn restore_while_fetching(
    req: &RestoreRequest<'_>,
    progress: &dyn Progress,
    note: &str,
) -> Result<(StagedArchive, Option<Vec<TableRows>>), OpsError> {
    let m = req.manifest;
    let mut staged = StagedArchive::allocate(m.stream.size, &req.staging)?;
    let (proven, watched) = tokio::sync::watch::channel(Proven::Upto(0));
    let archive = GrowingArchive {
        path: staged.path(),
        file: staged.handle()?,
        proven: watched,
    };
    let fetch = async {
        let fetched = staged
            .fill(req.repo, m, "restore", progress, &|n| {
                proven.send_replace(Proven::Upto(n));
            })
            .await;
        proven.send_replace(match fetched {
            Ok(()) => Proven::Whole(m.stream.size),
            Err(_) => Proven::Failed,
        });
        fetched
    };
    let restore = req.target.restore_growing(&m.stream.format, archive, &req.options);
    let (fetched, restored) = tokio::join!(fetch, restore);
    let failure = match (fetched, restored) {
        (Ok(()), Ok(restored)) => return Ok((staged, restored)),
        // The fetch's error names the damaged object; the engine only saw the archive stop.
        (Err(e), _) => e,
        (Ok(()), Err(e)) => e.into(),
    };
    // Declining leaves the target untouched; anything else may have left part of the snapshot.
    tracing::warn!("{}", leave_marked(req, note).await);
    Err(failure)
}

/// Marks the target of a restore that failed or was stopped, unless it is still empty, and says
/// what it left, in words fit for the operator.
async fn leave_marked(req: &RestoreRequest<'_>, note: &str) -> String {
    if !req.options.replace && req.target.target_state().await.is_ok_and(|s| s.is_empty()) {
        return "the target database was left empty".into();
    }
    match req.target.mark_incomplete(note).await {
        Ok(()) => "the target database holds part of the snapshot and is marked INCOMPLETE (its comment): \
                   drop and recreate it before restoring again"
            .into(),
        Err(e) => format!(
            "the target database holds part of the snapshot and could NOT be marked INCOMPLETE ({e}): \
             drop and recreate it before anyone uses it"
        ),
    }
}

/// Whether `counted` names every table of `expected`.
fn covers(counted: &[TableRows], expected: &[TableRows]) -> bool {
    let named: std::collections::HashSet<(&str, &str)> =
        counted.iter().map(|t| (t.schema.as_str(), t.table.as_str())).collect();
    expected
        .iter()
        .all(|e| named.contains(&(e.schema.as_str(), e.table.as_str())))
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
/// With `jobs > 1` the stream is fetched into local memory or a local file (see [`Staging`]) and,
/// where the engine can, restored while it arrives (see [`Engine::restore_growing`]): no data is
/// committed before every chunk is proven, but a damaged chunk found late leaves the schema behind,
/// marked incomplete. Otherwise the whole stream is proven before the target is touched, then
/// restored in parallel. With `jobs == 1`
/// it streams into a single transaction, so a damaged chunk found midway rolls back to an empty
/// database. Either way a shared repository lock names the snapshot while it is read from the
/// repository (see [`lock_snapshot`]); an archive staged beforehand needs none.
///
/// A stop [`requested`](super::interrupt::requested) while it runs ends it with
/// [`OpsError::Interrupted`], the target marked as for a failure.
pub async fn restore(mut req: RestoreRequest<'_>, progress: &dyn Progress) -> Result<RestoreReport, OpsError> {
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
    let database = state.identity.database;
    tokio::select! {
        done = restore_checked(&mut req, progress, &note, clock, &database) => done,
        why = super::interrupt::requested() => {
            // The work is dropped by now: `pg_restore`'s process group is killed and the loading
            // connections are closed, so what they had not committed rolls back.
            let left = leave_marked(&req, &note).await;
            Err(OpsError::Interrupted { why, detail: left })
        }
    }
}

/// The part of [`restore`] that touches the target, once it may.
async fn restore_checked(
    req: &mut RestoreRequest<'_>,
    progress: &dyn Progress,
    note: &str,
    clock: Instant,
    database: &str,
) -> Result<RestoreReport, OpsError> {
    let m = req.manifest;
    // Rows per table as the server counted them while loading, where the engine loaded the data
    // itself; otherwise they are counted afterwards.
    let mut loaded = None;
    let (fetch_seconds, staged_in, restore_clock) = if req.options.jobs > 1 {
        let mut restore_clock = Instant::now();
        let staged = match req.staged.take() {
            Some(s) => s,
            None => {
                let (staged, rows) = restore_while_fetching(req, progress, note).await?;
                loaded = rows;
                staged
            }
        };
        if loaded.is_none() {
            restore_clock = Instant::now();
            let running = req
                .target
                .start_restore(&m.stream.format, RestoreInput::File(staged.path()), &req.options)
                .await?;
            if let Err(e) = running.handle.finish().await {
                tracing::warn!("{}", leave_marked(req, note).await);
                return Err(e.into());
            }
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
            if matches!(e, RepoError::Sink { .. }) {
                // The tool stopped reading: its own error says why (a role the target lacks, say),
                // the broken pipe does not. Its single transaction is rolled back either way.
                running.handle.finish().await?;
                return Err(e.into());
            }
            // Killing pg_restore before it commits rolls its single transaction back.
            running.handle.abort().await;
            return Err(e.into());
        }
        running.handle.finish().await?;
        (fetch_clock.elapsed().as_secs_f64(), None, Instant::now())
    };
    let restore_seconds = restore_clock.elapsed().as_secs_f64();
    tracing::debug!("restored in {restore_seconds:.2}s");

    let mut expected = m.facts.fingerprint.tables.clone();
    expected.sort();
    let now = match loaded {
        // The server's own count of the rows each committed COPY stored is as good as counting
        // them again, and spares a scan of every table. If those counts miss any table the
        // backup recorded, every table is counted instead.
        Some(tables) if covers(&tables, &expected) => Fingerprint { tables },
        _ => req.target.fingerprint().await?,
    };
    let mut actual = now.tables.clone();
    if req.options.replace {
        // Tables the target had beside the backup's are not the backup's to judge.
        actual.retain(|t| expected.iter().any(|e| e.schema == t.schema && e.table == t.table));
    }
    actual.sort();
    if expected != actual {
        if let Err(e) = req.target.mark_incomplete(note).await {
            tracing::warn!("the target database could NOT be marked INCOMPLETE ({e}): drop it before anyone uses it");
        }
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
        database: database.to_string(),
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
