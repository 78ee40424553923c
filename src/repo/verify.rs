//! Verification: does every snapshot have every chunk it needs, and (with `read_data`) does every chunk
//! still hold exactly the bytes it is named after?

use std::collections::{BTreeMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use serde::Serialize;

use super::chunk::{self, ChunkId};
use super::{Manifest, Progress, RepoError, Repository, Result};

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    MissingChunk,
    CorruptChunk,
    CorruptManifest,
}

/// One damaged or missing object, and the snapshots it breaks.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub object: String,
    pub kind: ProblemKind,
    pub detail: String,
    pub snapshots: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct VerifyReport {
    pub snapshots_checked: u64,
    pub chunks_checked: u64,
    pub bytes_read: u64,
    pub read_data: bool,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Repository {
    /// Verifies one snapshot (by id or prefix) or, with `None`, every snapshot in the repository.
    pub async fn verify(&self, only: Option<&str>, read_data: bool, progress: &dyn Progress) -> Result<VerifyReport> {
        if read_data && self.is_encrypted() && self.keys.identity.is_none() {
            return Err(RepoError::IdentityRequired {
                what: "verify --read-data".into(),
            });
        }
        let mut report = VerifyReport {
            read_data,
            ..Default::default()
        };
        let manifests: Vec<Manifest> = match only {
            Some(id) => match self.find_manifest(id).await {
                Ok(m) => vec![m],
                Err(RepoError::Corrupt { object, detail }) => {
                    report.problems.push(Problem {
                        object,
                        kind: ProblemKind::CorruptManifest,
                        detail,
                        snapshots: vec![id.into()],
                    });
                    return Ok(report);
                }
                Err(e) => return Err(e),
            },
            None => {
                let (good, bad) = self.manifests(None).await?;
                for e in bad {
                    let (object, detail) = match e {
                        RepoError::Corrupt { object, detail } => (object, detail),
                        RepoError::Missing { object } => (object, "vanished while listing".into()),
                        other => return Err(other),
                    };
                    let snapshot = object
                        .rsplit('/')
                        .next()
                        .unwrap_or("")
                        .trim_end_matches(".json")
                        .to_string();
                    report.problems.push(Problem {
                        object,
                        kind: ProblemKind::CorruptManifest,
                        detail,
                        snapshots: vec![snapshot],
                    });
                }
                good
            }
        };
        report.snapshots_checked = manifests.len() as u64;

        // Which snapshots need which chunk, so each problem names every snapshot it breaks.
        let mut needed: BTreeMap<ChunkId, (u32, Vec<String>)> = BTreeMap::new();
        for m in &manifests {
            for c in &m.stream.chunks {
                let entry = needed.entry(c.chunk_id()?).or_insert_with(|| (c.size, Vec::new()));
                if entry.1.last() != Some(&m.id) {
                    entry.1.push(m.id.clone());
                }
            }
        }
        report.chunks_checked = needed.len() as u64;

        // One listing instead of a request per chunk.
        let present: HashSet<String> = self
            .store
            .list(Some(&StorePath::from("chunks")))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .map_err(|e| RepoError::storage("chunks/", e))?;

        let mut to_read = Vec::new();
        for (id, (size, snapshots)) in needed {
            let path = id.object_path();
            if !present.contains(&path) {
                report.problems.push(Problem {
                    object: path,
                    kind: ProblemKind::MissingChunk,
                    detail: "not in the repository".into(),
                    snapshots,
                });
            } else if read_data {
                to_read.push((id, size, snapshots));
            } else {
                progress.advance(size as u64);
            }
        }

        let mut checks = futures::stream::iter(to_read)
            .map(|(id, size, snapshots)| {
                let repo = self.clone();
                async move {
                    let path = id.object_path();
                    let stored = match repo.get(&path).await {
                        Ok(b) => b,
                        Err(RepoError::Missing { .. }) => {
                            return Ok((
                                size,
                                Some(Problem {
                                    object: path,
                                    kind: ProblemKind::MissingChunk,
                                    detail: "vanished during verify".into(),
                                    snapshots,
                                }),
                            ));
                        }
                        Err(e) => return Err(e),
                    };
                    let addressing = repo.addressing.clone();
                    let identity = repo.keys.identity.clone();
                    let outcome = super::cpu::on_a_core(move || {
                        Ok(
                            chunk::decode(&path, &stored, &id, Some(size as usize), &addressing, identity.as_ref())
                                .map(|_| ()),
                        )
                    })
                    .await?;
                    match outcome {
                        Ok(()) => Ok((size, None)),
                        Err(RepoError::Corrupt { object, detail }) => Ok((
                            size,
                            Some(Problem {
                                object,
                                kind: ProblemKind::CorruptChunk,
                                detail,
                                snapshots,
                            }),
                        )),
                        Err(e) => Err(e),
                    }
                }
            })
            .buffer_unordered(4);
        while let Some((size, problem)) = checks.try_next().await? {
            report.bytes_read += size as u64;
            progress.advance(size as u64);
            report.problems.extend(problem);
        }
        report.problems.sort_by(|a, b| a.object.cmp(&b.object));
        Ok(report)
    }

    /// Total logical bytes a verify of these snapshots walks over (for progress bars).
    pub fn verify_size(manifests: &[Manifest]) -> u64 {
        let mut seen = HashSet::new();
        manifests
            .iter()
            .flat_map(|m| m.stream.chunks.iter())
            .filter(|c| seen.insert(c.id.clone()))
            .map(|c| c.size as u64)
            .sum()
    }
}
