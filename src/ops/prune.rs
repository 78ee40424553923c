//! Prune: apply a retention policy to a repository's snapshots, delete the manifests it forgets, then
//! sweep the chunks no remaining manifest references.
//!
//! The repository is the truth and the catalog follows: the plan is made from the manifests stored in
//! the repository, and the catalog loses the forgotten snapshots afterwards. Drill evidence is history
//! and stays; the report names the forgotten snapshots that had some.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use jiff::tz::TimeZone;
use serde::Serialize;

use super::OpsError;
use crate::catalog::Catalog;
use crate::repo::retention::{self, Guards, KeepReason, RetentionPolicy, SnapshotTime};
use crate::repo::{LockKind, LockOptions, Manifest, Progress, RepoError, RepoLock, Repository, StoredChunk};

/// What to prune. The policy is passed in, so the caller decides where it comes from (flags, config).
pub struct PruneRequest<'a> {
    pub repo: &'a Repository,
    /// The repository's name in the config: the catalog keys snapshots by it.
    pub repository: &'a str,
    /// One source, or `None` for every source with snapshots in the repository.
    pub source: Option<&'a str>,
    pub policy: &'a RetentionPolicy,
    /// The zone whose hours, days, weeks... the policy counts (the operator's).
    pub tz: TimeZone,
    /// Plan and measure only: nothing is written or deleted, no lock is taken.
    pub dry_run: bool,
    pub locks: LockOptions,
    /// Forgotten snapshots are removed from it; `None` when it is unavailable.
    pub catalog: Option<&'a dyn Catalog>,
}

/// A kept snapshot and every rule that keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct KeptSnapshot {
    pub id: String,
    pub started_at: jiff::Timestamp,
    pub reasons: Vec<KeepReason>,
}

/// A forgotten snapshot, with the drill runs whose evidence cites it (the evidence is kept).
#[derive(Debug, Clone, Serialize)]
pub struct ForgottenSnapshot {
    pub id: String,
    pub started_at: jiff::Timestamp,
    pub drill_evidence: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourcePrune {
    pub source: String,
    /// Newest first.
    pub kept: Vec<KeptSnapshot>,
    /// Newest first.
    pub forgotten: Vec<ForgottenSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub repository: String,
    pub dry_run: bool,
    /// The policy applied, e.g. "keep_last 7, keep_daily 14".
    pub policy: String,
    pub sources: Vec<SourcePrune>,
    pub snapshots_kept: u64,
    pub snapshots_forgotten: u64,
    /// Chunk objects in the repository before the sweep.
    pub chunks_before: u64,
    /// Deleted (or, in a dry run, that would be).
    pub chunks_deleted: u64,
    /// Stored bytes of the deleted chunks.
    pub bytes_freed: u64,
    /// Locks of dead processes that were removed.
    pub stale_locks_removed: Vec<String>,
    /// Set when the repository was pruned but the catalog could not follow.
    pub catalog_warning: Option<String>,
    #[serde(rename = "duration_seconds", serialize_with = "seconds")]
    pub duration: Duration,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Prunes one source or every source of a repository; see the module doc. Refuses a policy without
/// rules, a repository with an unreadable manifest (its chunks are unknown, so sweeping could destroy
/// them), and a repository another process is using (see `repo::lock`). Manifests are deleted first;
/// if one cannot be, nothing is swept.
pub async fn prune(req: PruneRequest<'_>, progress: &dyn Progress) -> Result<PruneReport, OpsError> {
    let clock = Instant::now();
    if req.policy.is_empty() {
        return Err(OpsError::Refused {
            reason: "the retention policy has no rule, so it would keep every snapshot".into(),
            fix: HOW_TO_SET_A_POLICY.into(),
        });
    }
    if req.dry_run {
        return run(&req, None, clock, progress).await;
    }
    let lock = req
        .repo
        .lock(LockKind::Exclusive, "prune", &req.locks)
        .await
        .map_err(OpsError::from)?;
    let result = run(&req, Some(&lock), clock, progress).await;
    let released = lock.release().await;
    let report = result?;
    if let Err(e) = released {
        tracing::warn!("prune finished but could not remove its lock: {e}; it is ignored once stale");
    }
    Ok(report)
}

/// How to give prune a policy: for refusals and the CLI.
pub const HOW_TO_SET_A_POLICY: &str = "give at least one rule, e.g. `lifeboat prune --keep-last 7 --keep-daily 14 --keep-weekly 8 --keep-monthly 12` (or keep_hourly, keep_yearly, keep_within); a count of 0 is no rule";

async fn run(
    req: &PruneRequest<'_>,
    lock: Option<&RepoLock>,
    clock: Instant,
    progress: &dyn Progress,
) -> Result<PruneReport, OpsError> {
    let repo = req.repo;
    let (manifests, damaged) = repo.manifests(None).await?;
    if let Some(first) = damaged.first() {
        return Err(OpsError::Refused {
            reason: format!(
                "{} snapshot manifest(s) cannot be read, so the chunks they need are unknown and a sweep could delete them (first: {first})",
                damaged.len()
            ),
            fix: "run `lifeboat verify --all` to list them; repair them, or move them out of snapshots/ once you have given them up, then prune again".into(),
        });
    }

    // Plan each source on its own: retention counts a source's backups, not the repository's.
    let mut by_source: BTreeMap<&str, Vec<&Manifest>> = BTreeMap::new();
    for m in &manifests {
        by_source.entry(m.source.as_str()).or_default().push(m);
    }
    if let Some(only) = req.source {
        by_source.retain(|source, _| *source == only);
        by_source.entry(only).or_default();
    }
    let mut sources = Vec::new();
    let mut forgotten: Vec<&Manifest> = Vec::new();
    for (source, list) in &by_source {
        let times: Vec<SnapshotTime> = list
            .iter()
            .map(|m| SnapshotTime {
                id: m.id.clone(),
                time: m.started_at,
            })
            .collect();
        let plan = retention::plan(&times, req.policy, &req.tz, &Guards::at(jiff::Timestamp::now()));
        let by_id: HashMap<&str, &Manifest> = list.iter().map(|m| (m.id.as_str(), *m)).collect();
        let evidence = if plan.forget.is_empty() {
            HashMap::new()
        } else {
            evidence_by_snapshot(repo, source).await?
        };
        sources.push(SourcePrune {
            source: source.to_string(),
            kept: plan
                .keep
                .iter()
                .map(|k| KeptSnapshot {
                    id: k.id.clone(),
                    started_at: by_id[k.id.as_str()].started_at,
                    reasons: k.reasons.clone(),
                })
                .collect(),
            forgotten: plan
                .forget
                .iter()
                .map(|id| ForgottenSnapshot {
                    id: id.clone(),
                    started_at: by_id[id.as_str()].started_at,
                    drill_evidence: evidence.get(id.as_str()).cloned().unwrap_or_default(),
                })
                .collect(),
        });
        forgotten.extend(plan.forget.iter().map(|id| by_id[id.as_str()]));
    }

    // Mark from every manifest of every source that stays, then sweep what nothing marks.
    let forgotten_ids: std::collections::HashSet<(&str, &str)> =
        forgotten.iter().map(|m| (m.source.as_str(), m.id.as_str())).collect();
    let referenced = crate::repo::referenced_chunks(
        manifests
            .iter()
            .filter(|m| !forgotten_ids.contains(&(m.source.as_str(), m.id.as_str()))),
    )?;
    let stored = repo.stored_chunks().await?;
    let chunks_before = stored.len() as u64;
    let garbage: Vec<StoredChunk> = stored.into_iter().filter(|c| !referenced.contains(&c.object)).collect();

    let mut report = PruneReport {
        repository: req.repository.to_string(),
        dry_run: req.dry_run,
        policy: req.policy.describe(),
        snapshots_kept: sources.iter().map(|s| s.kept.len() as u64).sum(),
        snapshots_forgotten: forgotten.len() as u64,
        sources,
        chunks_before,
        chunks_deleted: garbage.len() as u64,
        bytes_freed: garbage.iter().map(|c| c.size).sum(),
        stale_locks_removed: lock.map(|l| l.removed_stale.clone()).unwrap_or_default(),
        catalog_warning: None,
        duration: Duration::ZERO,
    };
    let Some(lock) = lock else {
        report.duration = clock.elapsed();
        return Ok(report);
    };

    // Manifests first: once one is gone its snapshot no longer exists, whatever happens next.
    lock.confirm().await?;
    let mut deleted_ids = Vec::new();
    let mut failure = None;
    for m in &forgotten {
        match repo.delete_manifest(&m.source, &m.id).await {
            Ok(()) => deleted_ids.push(m.id.clone()),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    report.catalog_warning = forget_in_catalog(req, &deleted_ids).await;
    if let Some(e) = failure {
        // No sweep: the manifests still present keep every chunk they name.
        if let Some(w) = &report.catalog_warning {
            tracing::warn!("{w}");
        }
        return Err(e.into());
    }

    lock.confirm().await?;
    let swept = repo.delete_chunks(&garbage, progress).await?;
    report.chunks_deleted = swept.chunks;
    report.bytes_freed = swept.bytes;
    report.duration = clock.elapsed();
    Ok(report)
}

/// Drill run ids per snapshot id, from the source's evidence objects. Unreadable evidence is skipped
/// here: `verify` and `catalog rebuild` are the ones that report it.
async fn evidence_by_snapshot(repo: &Repository, source: &str) -> Result<HashMap<String, Vec<String>>, RepoError> {
    let (docs, _damaged) = repo.evidence(Some(source)).await?;
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for doc in docs {
        if let Some(result) = crate::drill::record::from_evidence(&doc)
            && let Some(snapshot) = result.snapshot
        {
            out.entry(snapshot.id).or_default().push(result.run_id);
        }
    }
    for runs in out.values_mut() {
        runs.sort();
    }
    Ok(out)
}

/// Removes the deleted snapshots from the catalog; returns a warning when it could not.
async fn forget_in_catalog(req: &PruneRequest<'_>, ids: &[String]) -> Option<String> {
    if ids.is_empty() {
        return None;
    }
    let Some(catalog) = req.catalog else {
        return Some(format!(
            "the catalog was unavailable and still lists {} pruned snapshot(s); fix: run `lifeboat catalog rebuild`",
            ids.len()
        ));
    };
    match catalog.delete_snapshots(req.repository, ids).await {
        Ok(_) => None,
        Err(e) => Some(format!(
            "the catalog could not drop {} pruned snapshot(s): {e}; fix: run `lifeboat catalog rebuild`",
            ids.len()
        )),
    }
}
