//! Prune: apply a retention policy to a repository's snapshots. One run, under an exclusive lock:
//!
//! 1. tombstones the live snapshots the policy forgets (see `repo::tombstone`): they are hidden at
//!    once, but stay whole and can be undeleted ([`undelete`]) for the grace period;
//! 2. deletes the manifests whose tombstones are older than the grace period, then those tombstones;
//! 3. sweeps the chunks that no remaining manifest references. Tombstoned manifests still remain, so
//!    a snapshot's chunks go only once its manifest is deleted.
//!
//! Besides the policy's rules, prune keeps every snapshot younger than `min_age`, the newest snapshot
//! that passed a drill (`last-drilled`; known from the repository's evidence, and from the catalog
//! for runs whose evidence the repository lacks), and never runs while a restore or drill reads a
//! snapshot (they hold shared locks; a dry run shows those snapshots as `in-use`).
//!
//! The repository is the truth and the catalog follows: the plan is made from the repository, and
//! tombstoned snapshots leave the catalog at once, since they are no restorable points any more
//! (undeleted ones come back). Drill evidence is history and stays; the report names the forgotten
//! snapshots that had some.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

use super::OpsError;
use super::restore::unlock;
use crate::catalog::{Catalog, DrillRunFilter, DrillVerdict};
use crate::drill::result::Verdict;
use crate::repo::retention::{self, Guards, KeepReason, RetentionPolicy, SnapshotTime};
use crate::repo::{
    FoundTombstone, LockKind, LockOptions, Manifest, Progress, RepoError, RepoLock, Repository, StoredChunk, Tombstone,
};

/// What to prune. The policy is passed in, so the caller decides where it comes from (flags, config).
pub struct PruneRequest<'a> {
    pub repo: &'a Repository,
    /// The repository's name in the config: the catalog keys snapshots by it.
    pub repository: &'a str,
    /// One source, or `None` for every source with snapshots in the repository.
    pub source: Option<&'a str>,
    /// The rules, `min_age`, and the grace period (`policy.grace()`).
    pub policy: &'a RetentionPolicy,
    /// The zone whose hours, days, weeks... the policy counts (the operator's).
    pub tz: TimeZone,
    /// Plan and measure only: nothing is written or deleted, no lock is taken.
    pub dry_run: bool,
    pub locks: LockOptions,
    /// Tombstoned snapshots are removed from it, and it adds drill history the repository lacks;
    /// `None` when it is unavailable.
    pub catalog: Option<&'a dyn Catalog>,
    /// Who runs the prune, for the tombstones, e.g. "lifeboat prune" or "daemon".
    pub initiator: &'a str,
    /// Which deletions this run may make. Tombstoning is always allowed: it hides a snapshot but
    /// loses nothing, and `--undelete` takes it back.
    pub deletions: Deletions,
}

/// What a prune may delete: deleting is what an approval is for (see `crate::control`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletions {
    /// Everything due: tombstoned snapshots past their grace period, and unreferenced chunks. For
    /// dry runs, which show what a prune would delete, and for tests.
    All,
    /// Nothing: due snapshots are listed in `awaiting_approval`, and the sweep is left out.
    Withheld,
    /// These due snapshots (an approved request's list), and then the sweep.
    Approved(BTreeSet<String>),
}

/// A kept snapshot and every rule that keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct KeptSnapshot {
    pub id: String,
    pub started_at: Timestamp,
    pub reasons: Vec<KeepReason>,
}

/// A snapshot the policy forgets: this run tombstones it (a dry run would). Lists the drill runs whose
/// evidence cites it (the evidence is kept).
#[derive(Debug, Clone, Serialize)]
pub struct ForgottenSnapshot {
    pub id: String,
    pub started_at: Timestamp,
    pub drill_evidence: Vec<String>,
}

/// A snapshot tombstoned by an earlier prune.
#[derive(Debug, Clone, Serialize)]
pub struct TombstonedSnapshot {
    pub source: String,
    pub id: String,
    /// `None` when its manifest is already gone (a prune stopped between the two deletes).
    pub started_at: Option<Timestamp>,
    /// When it was tombstoned; `None` for a damaged tombstone.
    pub tombstoned_at: Option<Timestamp>,
    pub tombstone_age_seconds: Option<u64>,
    /// When its grace period ends.
    pub deletable_at: Option<Timestamp>,
    /// Deleted by this run (in a dry run: would be).
    pub deleted: bool,
    pub reason: Option<String>,
    pub by: Option<String>,
    /// Why the tombstone cannot be read; such a snapshot is never deleted until it is undeleted.
    pub damage: Option<String>,
}

/// Where a passing drill run is known from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EvidenceOrigin {
    /// Drill evidence stored in the repository: the truth.
    Repository,
    /// The catalog only (the run's evidence is not in the repository).
    Catalog,
}

/// The newest live snapshot that passed a drill, which prune keeps whatever the policy says.
#[derive(Debug, Clone, Serialize)]
pub struct LastDrilled {
    pub id: String,
    /// The passing runs that tested it.
    pub runs: Vec<String>,
    /// Repository when any of those runs has evidence in the repository.
    pub evidence: EvidenceOrigin,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourcePrune {
    pub source: String,
    /// Newest first.
    pub kept: Vec<KeptSnapshot>,
    /// Tombstoned by this run, newest first.
    pub forgotten: Vec<ForgottenSnapshot>,
    /// Tombstoned before this run: deleted now when their grace period is over, else pending.
    pub tombstoned: Vec<TombstonedSnapshot>,
    pub last_drilled: Option<LastDrilled>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub repository: String,
    pub dry_run: bool,
    /// The policy applied, e.g. "keep_last 7, keep_daily 14, min_age 2d".
    pub policy: String,
    #[serde(rename = "grace_seconds", serialize_with = "whole_seconds")]
    pub grace: Duration,
    pub sources: Vec<SourcePrune>,
    pub snapshots_kept: u64,
    /// Tombstoned by this run.
    pub snapshots_forgotten: u64,
    /// Manifests deleted because their grace period was over.
    pub snapshots_deleted: u64,
    /// Tombstoned snapshots still within their grace period after this run: they can be undeleted.
    pub tombstones_pending: u64,
    /// Chunk objects in the repository before the sweep.
    pub chunks_before: u64,
    /// Deleted (or, in a dry run, that would be).
    pub chunks_deleted: u64,
    /// Stored bytes of the deleted chunks.
    pub bytes_freed: u64,
    /// Live locks that make a real prune refuse now (dry runs only; a real prune fails instead).
    pub blocked_by: Vec<String>,
    /// Locks of dead processes that were removed.
    pub stale_locks_removed: Vec<String>,
    /// Snapshots due for deletion that this run did not delete because deleting needs an approval
    /// ([`Deletions::Withheld`]).
    pub awaiting_approval: Vec<String>,
    /// Unreferenced chunks the sweep would delete, when deletions are withheld.
    pub chunks_awaiting_approval: u64,
    /// Set when the repository was pruned but the catalog could not follow.
    pub catalog_warning: Option<String>,
    /// Damaged tombstones, drill history that could not be read.
    pub warnings: Vec<String>,
    #[serde(rename = "duration_seconds", serialize_with = "seconds")]
    pub duration: Duration,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn whole_seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// Prunes one source or every source of a repository; see the module doc. Refuses a policy without
/// rules, a repository with an unreadable manifest (its chunks are unknown, so sweeping could destroy
/// them), and a repository another process is using (see `repo::lock`). If a step fails, the later
/// ones do not run: no manifest is deleted when a tombstone could not be written, and nothing is swept
/// when a manifest could not be deleted.
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

/// What a run decided for one source, before anything is written.
struct SourcePlan<'m> {
    report: SourcePrune,
    tombstone: Vec<(&'m Manifest, String)>,
}

async fn run(
    req: &PruneRequest<'_>,
    lock: Option<&RepoLock>,
    clock: Instant,
    progress: &dyn Progress,
) -> Result<PruneReport, OpsError> {
    let repo = req.repo;
    let now = Timestamp::now();
    let grace = req.policy.grace();
    let (manifests, damaged) = repo.manifests_with_tombstoned(None).await?;
    if let Some(first) = damaged.first() {
        return Err(OpsError::Refused {
            reason: format!(
                "{} snapshot manifest(s) cannot be read, so the chunks they need are unknown and a sweep could delete them (first: {first})",
                damaged.len()
            ),
            fix: "run `lifeboat verify --all` to list them; repair them, or move them out of snapshots/ once you have given them up, then prune again".into(),
        });
    }
    let tombstones = repo.tombstones(None).await?;
    let mut warnings: Vec<String> = tombstones
        .iter()
        .filter_map(|t| {
            t.damage.as_ref().map(|d| {
                format!(
                    "tombstone {} cannot be read ({d}), so it is never due; fix: `lifeboat prune --undelete {}` removes it, and the next prune decides about the snapshot afresh",
                    t.object, t.snapshot
                )
            })
        })
        .collect();
    // A real prune holds the repository alone; a dry run shows what would stop one.
    let (in_use, blocked_by) = match lock {
        Some(_) => (HashSet::new(), Vec::new()),
        None => live_locks(repo, &req.locks).await?,
    };

    let mut sources: BTreeSet<&str> = manifests
        .iter()
        .map(|m| m.source.as_str())
        .chain(tombstones.iter().map(|t| t.source.as_str()))
        .collect();
    if let Some(only) = req.source {
        sources.retain(|s| *s == only);
        sources.insert(only);
    }
    let tombstone_of: HashMap<(&str, &str), &FoundTombstone> = tombstones
        .iter()
        .map(|t| ((t.source.as_str(), t.snapshot.as_str()), t))
        .collect();
    let mut plans = Vec::new();
    for source in sources {
        let list: Vec<&Manifest> = manifests.iter().filter(|m| m.source == source).collect();
        let source_tombstones: Vec<&FoundTombstone> = tombstones.iter().filter(|t| t.source == source).collect();
        let history = drill_history(repo, req.catalog, req.repository, source, &mut warnings).await?;
        plans.push(plan_source(
            req,
            source,
            &list,
            &source_tombstones,
            &tombstone_of,
            &history,
            &in_use,
            now,
            grace,
        ));
    }

    // Deleting is allowed only as far as `req.deletions` says.
    let mut awaiting_approval = Vec::new();
    for plan in &mut plans {
        for t in plan.report.tombstoned.iter_mut().filter(|t| t.deleted) {
            let allowed = match &req.deletions {
                Deletions::All => true,
                Deletions::Withheld => false,
                Deletions::Approved(ids) => ids.contains(&t.id),
            };
            if !allowed {
                t.deleted = false;
                if req.deletions == Deletions::Withheld {
                    awaiting_approval.push(t.id.clone());
                }
            }
        }
    }
    let sweep = req.deletions != Deletions::Withheld;

    // Mark from every manifest that stays (live and tombstoned alike), sweep what nothing marks.
    let deleting: HashSet<(&str, &str)> = plans
        .iter()
        .flat_map(|p| p.report.tombstoned.iter().filter(|t| t.deleted))
        .map(|t| (t.source.as_str(), t.id.as_str()))
        .collect();
    let referenced = crate::repo::referenced_chunks(
        manifests
            .iter()
            .filter(|m| !deleting.contains(&(m.source.as_str(), m.id.as_str()))),
    )?;
    let stored = repo.stored_chunks().await?;
    let chunks_before = stored.len() as u64;
    let garbage: Vec<StoredChunk> = stored.into_iter().filter(|c| !referenced.contains(&c.object)).collect();

    let sources: Vec<SourcePrune> = plans.iter().map(|p| p.report.clone()).collect();
    let deleted_manifests = sources
        .iter()
        .flat_map(|s| &s.tombstoned)
        .filter(|t| t.deleted && t.started_at.is_some())
        .count() as u64;
    let mut report = PruneReport {
        repository: req.repository.to_string(),
        dry_run: req.dry_run,
        policy: req.policy.describe(),
        grace,
        snapshots_kept: sources.iter().map(|s| s.kept.len() as u64).sum(),
        snapshots_forgotten: sources.iter().map(|s| s.forgotten.len() as u64).sum(),
        snapshots_deleted: deleted_manifests,
        tombstones_pending: sources
            .iter()
            .map(|s| (s.forgotten.len() + s.tombstoned.iter().filter(|t| !t.deleted).count()) as u64)
            .sum(),
        sources,
        chunks_before,
        chunks_deleted: if sweep { garbage.len() as u64 } else { 0 },
        bytes_freed: if sweep { garbage.iter().map(|c| c.size).sum() } else { 0 },
        awaiting_approval,
        chunks_awaiting_approval: if sweep { 0 } else { garbage.len() as u64 },
        blocked_by,
        stale_locks_removed: lock.map(|l| l.removed_stale.clone()).unwrap_or_default(),
        catalog_warning: None,
        warnings,
        duration: Duration::ZERO,
    };
    let Some(lock) = lock else {
        report.duration = clock.elapsed();
        return Ok(report);
    };

    // 1. Tombstones: from here on the forgotten snapshots are hidden, but nothing is lost.
    lock.confirm().await?;
    let by = who(req.initiator);
    let mut hidden: Vec<String> = Vec::new();
    let mut failure = None;
    'tombstoning: for plan in &plans {
        for (m, reason) in &plan.tombstone {
            let tombstone = Tombstone {
                source: m.source.clone(),
                snapshot: m.id.clone(),
                manifest_sha256: m.digest(),
                taken_at: m.started_at,
                created: Timestamp::now(),
                reason: reason.clone(),
                by: by.clone(),
                lifeboat_version: env!("CARGO_PKG_VERSION").to_string(),
            };
            match repo.put_tombstone(&tombstone).await {
                Ok(_) => hidden.push(m.id.clone()),
                Err(e) => {
                    failure = Some(e);
                    break 'tombstoning;
                }
            }
        }
    }
    // 2. Manifests whose grace period is over, each followed by its tombstone.
    let mut deleted: Vec<String> = Vec::new();
    if failure.is_none() && !deleting.is_empty() {
        lock.confirm().await?;
        for t in report.sources.iter().flat_map(|s| &s.tombstoned).filter(|t| t.deleted) {
            match delete_tombstoned(repo, t).await {
                Ok(()) => deleted.push(t.id.clone()),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
    }
    hidden.extend(deleted);
    report.catalog_warning = forget_in_catalog(req, &hidden).await;
    if let Some(e) = failure {
        // No sweep: the manifests still present keep every chunk they name.
        if let Some(w) = &report.catalog_warning {
            tracing::warn!("{w}");
        }
        return Err(e.into());
    }

    // 3. The sweep.
    if !sweep {
        report.duration = clock.elapsed();
        return Ok(report);
    }
    lock.confirm().await?;
    let swept = repo.delete_chunks(&garbage, progress).await?;
    report.chunks_deleted = swept.chunks;
    report.bytes_freed = swept.bytes;
    report.duration = clock.elapsed();
    Ok(report)
}

/// Deletes a snapshot whose grace period is over: its manifest first, then its tombstone (a tombstone
/// left by a crash in between is removed by the next prune; the other order could bring the snapshot
/// back to life).
async fn delete_tombstoned(repo: &Repository, t: &TombstonedSnapshot) -> Result<(), RepoError> {
    if t.started_at.is_some() {
        repo.delete_manifest(&t.source, &t.id).await?;
    }
    repo.delete_tombstone(&t.source, &t.id, "pruning").await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn plan_source<'m>(
    req: &PruneRequest<'_>,
    source: &str,
    manifests: &[&'m Manifest],
    tombstones: &[&FoundTombstone],
    tombstone_of: &HashMap<(&str, &str), &FoundTombstone>,
    history: &DrillHistory,
    in_use: &HashSet<String>,
    now: Timestamp,
    grace: Duration,
) -> SourcePlan<'m> {
    let mut live: Vec<&Manifest> = manifests
        .iter()
        .copied()
        .filter(|m| !tombstone_of.contains_key(&(m.source.as_str(), m.id.as_str())))
        .collect();
    live.sort_by(|a, b| (b.started_at, &b.id).cmp(&(a.started_at, &a.id)));
    let last_drilled = history.newest_passed(&live);
    let mut guards = Guards::at(now);
    if let Some(d) = &last_drilled {
        guards.pinned.push((d.id.clone(), KeepReason::LastDrilled));
    }
    for m in &live {
        if in_use.contains(&m.id) {
            guards.pinned.push((m.id.clone(), KeepReason::InUse));
        }
    }
    let times: Vec<SnapshotTime> = live
        .iter()
        .map(|m| SnapshotTime {
            id: m.id.clone(),
            time: m.started_at,
        })
        .collect();
    let plan = retention::plan(&times, req.policy, &req.tz, &guards);
    let by_id: HashMap<&str, &Manifest> = manifests.iter().map(|m| (m.id.as_str(), *m)).collect();
    let reason = format!("no rule of `{}` keeps it", req.policy.describe());
    let mut tombstoned: Vec<TombstonedSnapshot> = tombstones
        .iter()
        .map(|t| describe_tombstone(t, by_id.get(t.snapshot.as_str()).copied(), now, grace))
        .collect();
    tombstoned.sort_by(|a, b| (b.started_at, &b.id).cmp(&(a.started_at, &a.id)));
    SourcePlan {
        report: SourcePrune {
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
                    drill_evidence: history.evidence.get(id).cloned().unwrap_or_default(),
                })
                .collect(),
            tombstoned,
            last_drilled,
        },
        tombstone: plan
            .forget
            .iter()
            .map(|id| (by_id[id.as_str()], reason.clone()))
            .collect(),
    }
}

fn describe_tombstone(
    t: &FoundTombstone,
    manifest: Option<&Manifest>,
    now: Timestamp,
    grace: Duration,
) -> TombstonedSnapshot {
    let info = t.tombstone.as_ref();
    TombstonedSnapshot {
        source: t.source.clone(),
        id: t.snapshot.clone(),
        started_at: manifest.map(|m| m.started_at),
        tombstoned_at: t.created(),
        tombstone_age_seconds: t.created().map(|c| now.duration_since(c).as_secs().max(0) as u64),
        deletable_at: t.deletable_at(grace),
        // A tombstone whose manifest is gone guards nothing and is always removed.
        deleted: t.is_due(now, grace) || manifest.is_none(),
        reason: info.map(|i| i.reason.clone()),
        by: info.map(|i| i.by.clone()),
        damage: t.damage.clone(),
    }
}

/// "lifeboat prune by alice on db1 (pid 4242)".
fn who(initiator: &str) -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "an unknown user".into());
    format!(
        "{initiator} by {user} on {} (pid {})",
        crate::repo::hostname(),
        std::process::id()
    )
}

/// The snapshots live locks say are being read, and a description of every live lock.
async fn live_locks(repo: &Repository, options: &LockOptions) -> Result<(HashSet<String>, Vec<String>), RepoError> {
    let now = Timestamp::now();
    let live: Vec<_> = repo
        .locks()
        .await?
        .into_iter()
        .filter(|l| !l.is_stale(now, options.stale_after))
        .collect();
    Ok((
        live.iter().filter_map(|l| l.snapshot().map(str::to_string)).collect(),
        live.iter().map(|l| l.describe(now)).collect(),
    ))
}

/// A source's drill runs, from the repository's evidence and the catalog.
#[derive(Default)]
struct DrillHistory {
    /// Every run (any verdict) whose evidence in the repository cites a snapshot, by snapshot id.
    evidence: HashMap<String, Vec<String>>,
    /// Passing runs by snapshot id, and where each is known from.
    passed: HashMap<String, Vec<(String, EvidenceOrigin)>>,
}

impl DrillHistory {
    /// The first of `newest_first` that passed a drill.
    fn newest_passed(&self, newest_first: &[&Manifest]) -> Option<LastDrilled> {
        newest_first.iter().find_map(|m| {
            let runs = self.passed.get(&m.id)?;
            let mut ids: Vec<String> = runs.iter().map(|(run, _)| run.clone()).collect();
            ids.sort();
            Some(LastDrilled {
                id: m.id.clone(),
                runs: ids,
                evidence: if runs.iter().any(|(_, o)| *o == EvidenceOrigin::Repository) {
                    EvidenceOrigin::Repository
                } else {
                    EvidenceOrigin::Catalog
                },
            })
        })
    }
}

/// Reads a source's drill runs. The repository's evidence is the truth: a run found there is taken
/// from there, and the catalog adds only runs the repository lacks (evidence that could not be
/// stored). Unreadable evidence is skipped here (`verify` and `catalog rebuild` report it). A
/// negative-control run proves the checks can fail, not that the snapshot restores: it never counts.
async fn drill_history(
    repo: &Repository,
    catalog: Option<&dyn Catalog>,
    repository: &str,
    source: &str,
    warnings: &mut Vec<String>,
) -> Result<DrillHistory, RepoError> {
    let mut history = DrillHistory::default();
    let (docs, _damaged) = repo.evidence(Some(source)).await?;
    let mut in_repository: HashSet<String> = HashSet::new();
    for doc in docs {
        let Some(result) = crate::drill::record::from_evidence(&doc) else {
            continue;
        };
        in_repository.insert(result.run_id.clone());
        let Some(snapshot) = result.snapshot else { continue };
        history
            .evidence
            .entry(snapshot.id.clone())
            .or_default()
            .push(result.run_id.clone());
        if result.verdict == Verdict::Pass && !result.negative_control {
            history
                .passed
                .entry(snapshot.id)
                .or_default()
                .push((result.run_id, EvidenceOrigin::Repository));
        }
    }
    for runs in history.evidence.values_mut() {
        runs.sort();
    }
    let Some(catalog) = catalog else {
        return Ok(history);
    };
    let filter = DrillRunFilter {
        drill: None,
        source: Some(source.to_string()),
        limit: None,
    };
    match catalog.drill_runs(&filter).await {
        Ok(runs) => {
            for run in runs {
                let negative = crate::drill::record::from_evidence(&run.evidence).is_some_and(|r| r.negative_control);
                if run.repository != repository
                    || in_repository.contains(&run.id)
                    || run.verdict != DrillVerdict::Pass
                    || negative
                {
                    continue;
                }
                if let Some(snapshot) = run.snapshot_id {
                    history
                        .passed
                        .entry(snapshot)
                        .or_default()
                        .push((run.id, EvidenceOrigin::Catalog));
                }
            }
        }
        Err(e) => warnings.push(format!(
            "the catalog's drill history of `{source}` could not be read ({e}); the newest snapshot that passed a drill was chosen from the repository's evidence alone"
        )),
    }
    Ok(history)
}

/// Removes tombstoned and deleted snapshots from the catalog; returns a warning when it could not.
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

/// The tombstoned snapshots of a repository (of one source), newest first, with when each becomes
/// deletable under `grace`. Reads only.
pub async fn tombstoned(
    repo: &Repository,
    source: Option<&str>,
    grace: Duration,
) -> Result<Vec<TombstonedSnapshot>, OpsError> {
    let now = Timestamp::now();
    let (manifests, _damaged) = repo.manifests_with_tombstoned(source).await?;
    let by_key: HashMap<(&str, &str), &Manifest> = manifests
        .iter()
        .map(|m| ((m.source.as_str(), m.id.as_str()), m))
        .collect();
    let mut out: Vec<TombstonedSnapshot> = repo
        .tombstones(source)
        .await?
        .iter()
        .map(|t| {
            let manifest = by_key.get(&(t.source.as_str(), t.snapshot.as_str())).copied();
            let mut d = describe_tombstone(t, manifest, now, grace);
            d.deleted = false;
            d
        })
        .collect();
    out.sort_by(|a, b| (b.started_at, &b.id).cmp(&(a.started_at, &a.id)));
    Ok(out)
}

/// What to undelete.
pub struct UndeleteRequest<'a> {
    pub repo: &'a Repository,
    /// The repository's name in the config, for the catalog.
    pub repository: &'a str,
    /// The snapshot's id, or a unique prefix of it.
    pub snapshot: &'a str,
    /// The snapshot goes back into it; `None` when it is unavailable.
    pub catalog: Option<&'a dyn Catalog>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UndeleteReport {
    pub repository: String,
    pub source: String,
    pub snapshot: String,
    pub started_at: Timestamp,
    /// When prune had tombstoned it, and why (unknown for a damaged tombstone).
    pub tombstoned_at: Option<Timestamp>,
    pub reason: Option<String>,
    pub catalog_warning: Option<String>,
}

/// Takes a snapshot back from prune within its grace period: removes its tombstone, so it is a live,
/// restorable snapshot again (listings, drills, the catalog). Removing the tombstone needs the
/// repository's deleting credential. Holds a shared lock meanwhile, so no prune can delete the
/// snapshot halfway. Once prune has deleted the manifest it is too late, and this says so.
pub async fn undelete(req: UndeleteRequest<'_>) -> Result<UndeleteReport, OpsError> {
    let repo = req.repo;
    let tombstones = repo.tombstones(None).await?;
    let matches: Vec<&FoundTombstone> = tombstones
        .iter()
        .filter(|t| t.snapshot.starts_with(req.snapshot))
        .collect();
    let t = match matches.as_slice() {
        [one] => *one,
        [] => {
            return Err(match repo.find_manifest(req.snapshot).await {
                Ok(m) => OpsError::Refused {
                    reason: format!("snapshot {} is not tombstoned: it is live", m.id),
                    fix: "nothing to undo; `lifeboat snapshots` lists it".into(),
                },
                Err(RepoError::Missing { .. }) => OpsError::Refused {
                    reason: format!(
                        "no tombstoned snapshot `{}` in repository {}",
                        req.snapshot, req.repository
                    ),
                    fix: "`lifeboat prune --tombstoned` lists the snapshots that can still be undeleted; one whose grace period is over has been deleted and cannot be brought back".into(),
                },
                Err(e) => OpsError::Repo(e),
            });
        }
        many => {
            return Err(OpsError::Refused {
                reason: format!(
                    "snapshot prefix `{}` matches {} tombstoned snapshots ({})",
                    req.snapshot,
                    many.len(),
                    many.iter().map(|t| t.snapshot.as_str()).collect::<Vec<_>>().join(", ")
                ),
                fix: "give more of the snapshot id".into(),
            });
        }
    };
    let operation = format!("undelete of snapshot {} of source {}", t.snapshot, t.source);
    let lock = repo
        .lock_snapshot(&operation, &t.snapshot, &LockOptions::default())
        .await?;
    let result = remove_tombstone(repo, t).await;
    unlock(Some(lock)).await;
    let manifest = result?;
    let catalog_warning = match req.catalog {
        None => Some(
            "the catalog was unavailable, so it does not list the snapshot again yet; fix: run `lifeboat catalog rebuild`"
                .to_string(),
        ),
        Some(c) => c
            .record_snapshot(&super::snapshot_record(req.repository, &manifest))
            .await
            .err()
            .map(|e| format!("the catalog could not list the snapshot again: {e}; fix: run `lifeboat catalog rebuild`")),
    };
    Ok(UndeleteReport {
        repository: req.repository.to_string(),
        source: t.source.clone(),
        snapshot: t.snapshot.clone(),
        started_at: manifest.started_at,
        tombstoned_at: t.created(),
        reason: t.tombstone.as_ref().map(|i| i.reason.clone()),
        catalog_warning,
    })
}

/// Removes the tombstone of a snapshot whose manifest is still there; returns the manifest.
async fn remove_tombstone(repo: &Repository, t: &FoundTombstone) -> Result<Manifest, OpsError> {
    let object = crate::repo::manifest_object_path(&t.source, &t.snapshot);
    let manifest = match repo.load_manifest(&object).await {
        Ok(m) => m,
        Err(RepoError::Missing { .. }) => {
            return Err(OpsError::Refused {
                reason: format!(
                    "snapshot {} was already deleted by prune (its grace period was over); only its tombstone is left, which the next prune removes",
                    t.snapshot
                ),
                fix: "it cannot be brought back; restore another snapshot (`lifeboat snapshots`)".into(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    repo.delete_tombstone(&t.source, &t.snapshot, UNDELETING).await?;
    Ok(manifest)
}

/// What removing a tombstone needs the deleting credential for, in errors.
const UNDELETING: &str = "undeleting a snapshot (removing its tombstone)";

/// Deletes one snapshot from a repository, as an approved request asked: its manifest (and its
/// tombstone, if prune had forgotten it) and its catalog record. Its chunks stay until a prune sweeps
/// them. Holds the repository alone meanwhile, like prune.
pub async fn delete_snapshot(
    repo: &Repository,
    repository: &str,
    source: &str,
    id: &str,
    catalog: Option<&dyn Catalog>,
) -> Result<(), OpsError> {
    let lock = repo
        .lock(LockKind::Exclusive, "delete snapshot", &LockOptions::default())
        .await?;
    let result = async {
        let tombstoned = repo
            .tombstones(Some(source))
            .await?
            .into_iter()
            .any(|t| t.snapshot == id);
        if !repo.has_manifest(source, id).await? && !tombstoned {
            return Err(RepoError::Missing {
                object: format!("snapshot {id} of source {source} in repository {repository}"),
            });
        }
        lock.confirm().await?;
        repo.delete_manifest(source, id).await?;
        if tombstoned {
            repo.delete_tombstone(source, id, "deleting a snapshot").await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = lock.release().await {
        tracing::warn!("could not remove the repository lock: {e}; it is ignored once stale");
    }
    result?;
    if let Some(c) = catalog
        && let Err(e) = c.delete_snapshots(repository, &[id.to_string()]).await
    {
        tracing::warn!("snapshot {id} is deleted but the catalog still lists it: {e}; fix: `lifeboat catalog rebuild`");
    }
    Ok(())
}
