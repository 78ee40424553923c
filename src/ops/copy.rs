//! Copy: put snapshots of one repository into a second one, so that a backup outlives the repository it
//! was taken into. This is how the `single-copy` and `same-provider-region` findings are fixed.
//!
//! Objects move byte for byte (see `repo::copy` for why the two repositories must name chunks alike). Per
//! snapshot the order is a backup's own: every chunk first, each read back and checked before it is
//! written; then the manifest, create-only, as the commit point; then the drill evidence that cites the
//! snapshot. An interrupted copy leaves at most chunks without a manifest in the destination, and a rerun
//! skips what is there and finishes. A damaged source object fails its snapshot, naming the object, and
//! the other snapshots go on. The destination holds a shared lock throughout, so that a prune there
//! cannot delete a chunk this copy found present and therefore did not send. The source is only read and
//! takes no lock (a read-only credential suffices there): its manifests are listed before its chunks, so
//! every listed snapshot's chunks are in the chunk listing, and a prune of the source meanwhile can only
//! make a snapshot fail (its objects missing), never commit half of one.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

use super::OpsError;
use crate::catalog::Catalog;
use crate::repo::{
    ChunkCheck, ChunkId, ChunkVerifier, LockKind, LockOptions, Manifest, Progress, Put, RepoError, RepoLock,
    Repository, naming_mismatch,
};

/// What to copy, from where to where.
pub struct CopyRequest<'a> {
    pub from: &'a Repository,
    /// The repositories' names in the config: reports, messages and the catalog use them.
    pub from_name: &'a str,
    pub to: &'a Repository,
    pub to_name: &'a str,
    /// One source, or `None` for every source with snapshots in `from`.
    pub source: Option<&'a str>,
    /// Snapshot ids or unique prefixes; empty for every snapshot (of `source`).
    pub snapshots: &'a [String],
    /// Plan and measure only: nothing is written, no lock is taken, no chunk is read.
    pub dry_run: bool,
    /// Chunks being read, checked and written at once; each holds about two chunk sizes of memory.
    pub uploads_in_flight: usize,
    pub locks: LockOptions,
    /// Copied snapshots are recorded in it under `to_name`; `None` when it is unavailable.
    pub catalog: Option<&'a dyn Catalog>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CopyOutcome {
    /// Committed to the destination by this run (in a dry run: would be).
    Copied,
    /// The destination already held the same manifest (missing chunks or evidence are still copied).
    AlreadyPresent,
    /// Not committed, or committed without all of its evidence; `failure` says why.
    Failed,
}

/// Why a snapshot could not be copied.
#[derive(Debug, Clone, Serialize)]
pub struct CopyFailure {
    /// The object at fault, e.g. `chunks/ab/ab12…`, when there is one.
    pub object: Option<String>,
    /// The configured name of the repository holding that object.
    pub repository: Option<String>,
    /// The object is missing or damaged (rather than unreachable, or in conflict).
    pub damage: bool,
    /// What went wrong and what to do.
    pub error: String,
}

/// One selected snapshot and what happened to it.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotCopy {
    pub source: String,
    pub id: String,
    pub outcome: CopyOutcome,
    /// Chunks this snapshot needed that were written for it (in a dry run: would be), and their stored bytes.
    pub chunks_copied: u64,
    pub bytes_copied: u64,
    /// Chunks this snapshot needed that the destination already held.
    pub chunks_skipped: u64,
    /// Drill runs whose evidence was copied along.
    pub evidence_copied: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<CopyFailure>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    pub from: String,
    pub to: String,
    pub dry_run: bool,
    /// How chunks were checked before being written.
    pub chunk_check: ChunkCheck,
    /// In the order they were copied: by source, oldest first.
    pub snapshots: Vec<SnapshotCopy>,
    pub snapshots_copied: u64,
    pub snapshots_already_present: u64,
    pub snapshots_failed: u64,
    /// Distinct chunk objects written (in a dry run: that would be), and their stored bytes.
    pub chunks_copied: u64,
    pub bytes_copied: u64,
    /// Distinct chunks the selected snapshots need that the destination already held.
    pub chunks_skipped: u64,
    pub evidence_copied: u64,
    /// Set when snapshots were copied but the catalog could not record them.
    pub catalog_warning: Option<String>,
    #[serde(rename = "duration_seconds", serialize_with = "seconds")]
    pub duration: Duration,
}

impl CopyReport {
    /// Every selected snapshot is in the destination with its evidence.
    pub fn is_complete(&self) -> bool {
        self.snapshots_failed == 0
    }

    /// Some snapshot failed because an object is missing or damaged.
    pub fn found_damage(&self) -> bool {
        self.snapshots
            .iter()
            .any(|s| s.failure.as_ref().is_some_and(|f| f.damage))
    }
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Copies the selected snapshots; see the module doc. Refuses (writing nothing) when the two are the
/// same repository, when they name or encrypt chunks differently, and when a `--snapshot` matches
/// nothing. Snapshots that fail are reported, not returned as an error; an error means the copy could
/// not go on at all (a repository unreachable, the destination's lock held by a prune, or lost).
pub async fn copy(req: CopyRequest<'_>, progress: &dyn Progress) -> Result<CopyReport, OpsError> {
    let clock = Instant::now();
    let (from, to) = (req.from_name, req.to_name);
    if req.from.id() == req.to.id() {
        return Err(OpsError::Refused {
            reason: if from == to {
                format!("--from and --to name the same repository, `{from}`, so a copy would add nothing")
            } else {
                format!(
                    "`{from}` and `{to}` are the same repository (id {}), so a copy would add nothing",
                    req.from.id()
                )
            },
            fix: format!(
                "copy to a repository in another place (another bucket, provider or region), created with `lifeboat init NAME --like {from}`"
            ),
        });
    }
    if let Some(why) = naming_mismatch(from, req.from.config(), to, req.to.config()) {
        return Err(OpsError::Refused {
            reason: why,
            fix: format!(
                "create the destination with `{from}`'s encryption settings: point `{to}`'s url at an empty location and run `lifeboat init {to} --like {from}` (it takes `{from}`'s chunker parameters, recipients and address key), then copy again"
            ),
        });
    }
    let selected = select(&req).await?;
    if req.dry_run {
        return run(&req, &selected, None, clock, progress).await;
    }
    let lock = req
        .to
        .lock(LockKind::Shared, &format!("copy from {from}"), &req.locks)
        .await?;
    let result = run(&req, &selected, Some(&lock), clock, progress).await;
    if let Err(e) = lock.release().await {
        tracing::warn!("copy to {to} finished but could not remove its lock: {e}; it is ignored once stale");
    }
    result
}

/// A snapshot named by its manifest's path in the source repository.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Selected {
    source: String,
    id: String,
}

/// The snapshots to copy, sorted by source and id (ids sort by time).
async fn select(req: &CopyRequest<'_>) -> Result<Vec<Selected>, OpsError> {
    let all: Vec<Selected> = req
        .from
        .manifest_paths(req.source)
        .await?
        .iter()
        .filter_map(|p| {
            let (source, file) = p.strip_prefix("snapshots/")?.split_once('/')?;
            Some(Selected {
                source: source.to_string(),
                id: file.strip_suffix(".json")?.to_string(),
            })
        })
        .collect();
    if req.snapshots.is_empty() {
        return Ok(all);
    }
    let mut chosen = BTreeSet::new();
    for wanted in req.snapshots {
        let matches: Vec<&Selected> = all.iter().filter(|s| s.id.starts_with(wanted.as_str())).collect();
        match matches.as_slice() {
            [one] => {
                chosen.insert((*one).clone());
            }
            [] => {
                return Err(OpsError::Refused {
                    reason: format!(
                        "no snapshot `{wanted}` in repository `{}`{}",
                        req.from_name,
                        req.source.map(|s| format!(" for source `{s}`")).unwrap_or_default()
                    ),
                    fix: format!(
                        "list them with `lifeboat snapshots --from-repository{}`",
                        req.source.map(|s| format!(" --source {s}")).unwrap_or_default()
                    ),
                });
            }
            many => {
                return Err(RepoError::Ambiguous {
                    prefix: wanted.clone(),
                    candidates: many.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(", "),
                }
                .into());
            }
        }
    }
    Ok(chosen.into_iter().collect())
}

/// What the run knows about chunks and evidence across snapshots.
struct State {
    verifier: ChunkVerifier,
    /// Chunk objects in the source, with their stored sizes (one listing).
    in_source: HashMap<String, u64>,
    /// Chunk objects the destination held when the copy started (one listing).
    in_destination: HashSet<String>,
    /// Written by this run (in a dry run: would be).
    written: HashSet<String>,
    /// Needed, and already in the destination.
    skipped: HashSet<String>,
    /// Source chunks found missing or damaged: later snapshots needing them fail without reading again.
    damaged: HashMap<String, CopyFailure>,
    /// Per source: evidence objects by the snapshot they cite, loaded when first needed.
    evidence: HashMap<String, HashMap<String, Vec<Evidence>>>,
    catalog_warnings: Vec<String>,
}

struct Evidence {
    path: String,
    run_id: String,
    bytes: Bytes,
}

async fn run(
    req: &CopyRequest<'_>,
    selected: &[Selected],
    lock: Option<&RepoLock>,
    clock: Instant,
    progress: &dyn Progress,
) -> Result<CopyReport, OpsError> {
    let mut st = State {
        verifier: ChunkVerifier::new(req.from, req.to),
        in_source: req
            .from
            .stored_chunks()
            .await?
            .into_iter()
            .map(|c| (c.object, c.size))
            .collect(),
        // Listed under the lock: from now on no prune can remove what this listing shows.
        in_destination: req.to.stored_chunks().await?.into_iter().map(|c| c.object).collect(),
        written: HashSet::new(),
        skipped: HashSet::new(),
        damaged: HashMap::new(),
        evidence: HashMap::new(),
        catalog_warnings: Vec::new(),
    };
    let mut snapshots = Vec::new();
    for sel in selected {
        let mut done = SnapshotCopy {
            source: sel.source.clone(),
            id: sel.id.clone(),
            outcome: CopyOutcome::Failed,
            chunks_copied: 0,
            bytes_copied: 0,
            chunks_skipped: 0,
            evidence_copied: Vec::new(),
            failure: None,
        };
        if let Err(failure) = copy_snapshot(req, &mut st, lock, sel, &mut done, progress).await? {
            done.outcome = CopyOutcome::Failed;
            done.failure = Some(failure);
        }
        snapshots.push(done);
    }
    let count = |o: CopyOutcome| snapshots.iter().filter(|s| s.outcome == o).count() as u64;
    Ok(CopyReport {
        from: req.from_name.to_string(),
        to: req.to_name.to_string(),
        dry_run: req.dry_run,
        chunk_check: st.verifier.level(),
        snapshots_copied: count(CopyOutcome::Copied),
        snapshots_already_present: count(CopyOutcome::AlreadyPresent),
        snapshots_failed: count(CopyOutcome::Failed),
        // Each chunk is written for the first snapshot that needs it only, so these sums are distinct.
        chunks_copied: snapshots.iter().map(|s| s.chunks_copied).sum(),
        bytes_copied: snapshots.iter().map(|s| s.bytes_copied).sum(),
        chunks_skipped: st.skipped.len() as u64,
        evidence_copied: snapshots.iter().map(|s| s.evidence_copied.len() as u64).sum(),
        catalog_warning: (!st.catalog_warnings.is_empty()).then(|| st.catalog_warnings.join("; ")),
        snapshots,
        duration: clock.elapsed(),
    })
}

/// Copies one snapshot: chunks, manifest, evidence. The outer error stops the whole copy (the lock was
/// lost); the inner one fails this snapshot only.
async fn copy_snapshot(
    req: &CopyRequest<'_>,
    st: &mut State,
    lock: Option<&RepoLock>,
    sel: &Selected,
    done: &mut SnapshotCopy,
    progress: &dyn Progress,
) -> Result<Result<(), CopyFailure>, OpsError> {
    let (manifest, bytes, already) = match read_manifests(req, sel).await {
        Ok(found) => found,
        Err(f) => return Ok(Err(f)),
    };
    if let Err(f) = copy_chunks(req, st, &manifest, done, progress).await {
        return Ok(Err(f));
    }
    done.outcome = if already {
        CopyOutcome::AlreadyPresent
    } else if let Some(lock) = lock {
        // A lost lock means a prune may have run meanwhile and deleted chunks this manifest names.
        lock.confirm().await?;
        match req.to.put_manifest_object(&sel.source, &sel.id, bytes.clone()).await {
            Ok(Put::Written) => CopyOutcome::Copied,
            Ok(Put::Exists(there)) if there == bytes => CopyOutcome::AlreadyPresent,
            Ok(Put::Exists(_)) => return Ok(Err(conflict(req, sel))),
            Err(e) => return Ok(Err(failure(e, req.to_name))),
        }
    } else {
        CopyOutcome::Copied
    };
    if !req.dry_run
        && let Some(catalog) = req.catalog
        && let Err(e) = catalog
            .record_snapshot(&super::snapshot_record(req.to_name, &manifest))
            .await
    {
        st.catalog_warnings.push(format!(
            "snapshot {} is in `{}` but the catalog could not record it: {e}; fix: run `lifeboat catalog rebuild`",
            sel.id, req.to_name
        ));
    }
    Ok(copy_evidence(req, st, sel, done).await)
}

/// The source's manifest (parsed and as stored), and whether the destination already has the same one.
async fn read_manifests(req: &CopyRequest<'_>, sel: &Selected) -> Result<(Manifest, Bytes, bool), CopyFailure> {
    let path = format!("snapshots/{}/{}.json", sel.source, sel.id);
    let bytes = match req.from.manifest_object(&sel.source, &sel.id).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            return Err(CopyFailure {
                object: Some(path.clone()),
                repository: Some(req.from_name.to_string()),
                damage: false,
                error: format!(
                    "{path} disappeared from `{}` while copying (pruned meanwhile?); fix: nothing to copy for it; rerun the copy to pick up the rest",
                    req.from_name
                ),
            });
        }
        Err(e) => return Err(failure(e, req.from_name)),
    };
    let manifest = Manifest::from_bytes(&path, &bytes).map_err(|e| failure(e, req.from_name))?;
    let already = match req.to.manifest_object(&sel.source, &sel.id).await {
        Ok(None) => false,
        Ok(Some(there)) if there == bytes => true,
        Ok(Some(_)) => return Err(conflict(req, sel)),
        Err(e) => return Err(failure(e, req.to_name)),
    };
    Ok((manifest, bytes, already))
}

/// Writes the chunks of `manifest` that the destination lacks, several at once, each checked first.
async fn copy_chunks(
    req: &CopyRequest<'_>,
    st: &mut State,
    manifest: &Manifest,
    done: &mut SnapshotCopy,
    progress: &dyn Progress,
) -> Result<(), CopyFailure> {
    let mut seen = HashSet::new();
    let mut to_copy: Vec<(ChunkId, u32, String)> = Vec::new();
    for c in &manifest.stream.chunks {
        let id = c.chunk_id().map_err(|_| {
            let manifest_path = format!("snapshots/{}/{}.json", manifest.source, manifest.id);
            failure(
                RepoError::Corrupt {
                    detail: format!("`{}` is not a chunk id", c.id),
                    object: manifest_path,
                },
                req.from_name,
            )
        })?;
        let path = id.object_path();
        if !seen.insert(path.clone()) {
            continue;
        }
        if let Some(f) = st.damaged.get(&path) {
            return Err(f.clone());
        }
        if st.in_destination.contains(&path) {
            st.skipped.insert(path);
            done.chunks_skipped += 1;
        } else if st.written.contains(&path) {
            done.chunks_skipped += 1;
        } else if !st.in_source.contains_key(&path) {
            let f = failure(RepoError::Missing { object: path.clone() }, req.from_name);
            st.damaged.insert(path, f.clone());
            return Err(f);
        } else {
            to_copy.push((id, c.size, path));
        }
    }
    if req.dry_run {
        for (_, _, path) in to_copy {
            done.chunks_copied += 1;
            done.bytes_copied += st.in_source.get(&path).copied().unwrap_or(0);
            st.written.insert(path);
        }
        return Ok(());
    }
    let verifier = &st.verifier;
    let mut copies = futures::stream::iter(to_copy)
        .map(|(id, size, path)| async move { (path, req.from.copy_chunk(req.to, id, size, verifier).await) })
        .buffer_unordered(req.uploads_in_flight.max(1));
    let mut outcomes = Vec::new();
    let mut first_failure = None;
    while let Some((path, result)) = copies.next().await {
        match result {
            Ok(written) => outcomes.push((path, written)),
            Err(e) => {
                let damage = matches!(e, RepoError::Corrupt { .. } | RepoError::Missing { .. });
                let f = if damage {
                    failure(e, req.from_name)
                } else {
                    CopyFailure {
                        object: Some(path.clone()),
                        repository: None,
                        damage: false,
                        error: format!("copying {path} from `{}` to `{}`: {e}", req.from_name, req.to_name),
                    }
                };
                first_failure = Some((path, f));
                // Stop sending: the snapshot cannot be committed now. What was written is harmless.
                break;
            }
        }
    }
    drop(copies);
    for (path, written) in outcomes {
        match written {
            Some(len) => {
                done.chunks_copied += 1;
                done.bytes_copied += len;
                progress.advance(len);
            }
            None => {
                done.chunks_skipped += 1;
                st.skipped.insert(path.clone());
            }
        }
        st.written.insert(path);
    }
    match first_failure {
        None => Ok(()),
        Some((path, f)) => {
            if f.damage {
                st.damaged.insert(path, f.clone());
            }
            Err(f)
        }
    }
}

/// Copies the drill evidence citing this snapshot, once its manifest is in the destination.
async fn copy_evidence(
    req: &CopyRequest<'_>,
    st: &mut State,
    sel: &Selected,
    done: &mut SnapshotCopy,
) -> Result<(), CopyFailure> {
    if !st.evidence.contains_key(&sel.source) {
        let index = evidence_index(req.from, &sel.source)
            .await
            .map_err(|e| failure(e, req.from_name))?;
        st.evidence.insert(sel.source.clone(), index);
    }
    let Some(found) = st.evidence.get(&sel.source).and_then(|by| by.get(&sel.id)) else {
        return Ok(());
    };
    for ev in found {
        let there = if req.dry_run {
            match req.to.evidence_object(&ev.path).await {
                Ok(None) => Put::Written,
                Ok(Some(b)) => Put::Exists(b),
                Err(e) => return Err(failure(e, req.to_name)),
            }
        } else {
            req.to
                .put_evidence_object(&ev.path, ev.bytes.clone())
                .await
                .map_err(|e| failure(e, req.to_name))?
        };
        match there {
            Put::Written => done.evidence_copied.push(ev.run_id.clone()),
            Put::Exists(b) if b == ev.bytes => {}
            Put::Exists(_) => {
                return Err(CopyFailure {
                    object: Some(ev.path.clone()),
                    repository: Some(req.to_name.to_string()),
                    damage: false,
                    error: format!(
                        "{} differs between `{}` and `{}` although a drill run writes its evidence once; the snapshot itself is copied; fix: check both with `lifeboat catalog rebuild` (it names damaged evidence), and keep the one whose seal holds",
                        ev.path, req.from_name, req.to_name
                    ),
                });
            }
        }
    }
    Ok(())
}

/// A source's evidence objects by the snapshot each cites. Damaged evidence cannot be attributed and is
/// left out here: `catalog rebuild` is the one that reports it.
async fn evidence_index(repo: &Repository, source: &str) -> Result<HashMap<String, Vec<Evidence>>, RepoError> {
    let mut index: HashMap<String, Vec<Evidence>> = HashMap::new();
    for path in repo.evidence_objects(source).await? {
        let (bytes, doc) = match repo.read_evidence_object(&path).await {
            Ok(found) => found,
            Err(RepoError::Corrupt { .. } | RepoError::Missing { .. }) => {
                tracing::warn!("{path} is unreadable and is not copied; `lifeboat catalog rebuild` names it");
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some(result) = crate::drill::record::from_evidence(&doc)
            && let Some(snapshot) = result.snapshot
        {
            index.entry(snapshot.id).or_default().push(Evidence {
                path,
                run_id: result.run_id,
                bytes,
            });
        }
    }
    Ok(index)
}

/// A repository error as a snapshot's failure, naming the object and the repository holding it.
fn failure(e: RepoError, repository: &str) -> CopyFailure {
    let (object, damage) = match &e {
        RepoError::Corrupt { object, .. } | RepoError::Missing { object } => (Some(object.clone()), true),
        RepoError::Storage { object, .. } => (Some(object.clone()), false),
        _ => (None, false),
    };
    CopyFailure {
        object,
        repository: Some(repository.to_string()),
        damage,
        error: format!("in repository `{repository}`: {e}"),
    }
}

fn conflict(req: &CopyRequest<'_>, sel: &Selected) -> CopyFailure {
    let path = format!("snapshots/{}/{}.json", sel.source, sel.id);
    CopyFailure {
        object: Some(path.clone()),
        repository: Some(req.to_name.to_string()),
        damage: false,
        error: format!(
            "snapshot {} exists in both repositories with different content (`{}`: {path}, `{}`: {path}); a snapshot id names one backup, so one of them is not what it claims, and copy never replaces a manifest; fix: run `lifeboat verify {} --read-data --repository NAME` on each and keep the one that verifies",
            sel.id, req.from_name, req.to_name, sel.id
        ),
    }
}
