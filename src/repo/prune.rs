//! The deleting half of the repository: deleting manifests and sweeping chunks no manifest names.
//! Only prune calls these, under an exclusive lock (see `lock.rs` for why), and only for snapshots
//! whose tombstone has outlived its grace period (see `tombstone.rs`).
//!
//! Order matters for safety: manifests go first, then their tombstones, chunks last. A chunk without a
//! manifest is harmless garbage that the next prune removes; a tombstone without its manifest is
//! removed by the next prune too; a manifest without its chunks is a snapshot that cannot be restored.

use std::collections::HashSet;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path as StorePath;

use super::{Manifest, Progress, RepoError, Repository, Result, manifest};

/// A stored chunk object and its size on storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChunk {
    pub object: String,
    pub size: u64,
}

/// Chunks deleted by a sweep, and their stored bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub chunks: u64,
    pub bytes: u64,
}

/// What deleting needs the deleting credential for, in errors.
const PRUNING: &str = "pruning";

/// Deletes at once while sweeping; object stores batch them further (S3 sends up to 1000 a request).
const SWEEP_BATCH: usize = 256;

/// True when storage refused because the credential may not do this (rather than a fault).
pub(crate) fn is_permission_error(e: &object_store::Error) -> bool {
    match e {
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => true,
        other => {
            // S3's bulk delete reports per-key refusals in its body, and local files report the OS's
            // errno; neither reaches a dedicated variant.
            let text = other.to_string();
            [
                "AccessDenied",
                "Access Denied",
                "Permission denied",
                "Operation not permitted",
            ]
            .iter()
            .any(|needle| text.contains(needle))
        }
    }
}

/// Every chunk object the manifests reference, as object paths.
pub fn referenced_chunks<'a>(manifests: impl IntoIterator<Item = &'a Manifest>) -> Result<HashSet<String>> {
    let mut set = HashSet::new();
    for m in manifests {
        for c in &m.stream.chunks {
            set.insert(c.chunk_id()?.object_path());
        }
    }
    Ok(set)
}

impl Repository {
    /// Every chunk object in the repository with its stored size (one listing).
    pub async fn stored_chunks(&self) -> Result<Vec<StoredChunk>> {
        let mut chunks: Vec<StoredChunk> = self
            .store
            .list(Some(&StorePath::from("chunks")))
            .map_ok(|m| StoredChunk {
                object: m.location.to_string(),
                size: m.size,
            })
            .try_collect()
            .await
            .map_err(|e| RepoError::storage("chunks/", e))?;
        chunks.sort_by(|a, b| a.object.cmp(&b.object));
        Ok(chunks)
    }

    /// Deletes one snapshot's manifest: the snapshot no longer exists once this returns. Prune calls it
    /// only for snapshots tombstoned longer than the grace period.
    pub async fn delete_manifest(&self, source: &str, id: &str) -> Result<()> {
        let object = manifest::object_path(source, id);
        match self.store.delete(&StorePath::from(object.as_str())).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(delete_error(object, e, PRUNING)),
        }
    }

    /// Deletes the given chunks, several at once, stopping at the first failure. Returns what was
    /// deleted; on failure the error says how far it got. A chunk already gone counts as deleted.
    pub async fn delete_chunks(&self, chunks: &[StoredChunk], progress: &dyn Progress) -> Result<Swept> {
        let mut swept = Swept::default();
        for batch in chunks.chunks(SWEEP_BATCH) {
            let sizes: std::collections::HashMap<String, u64> =
                batch.iter().map(|c| (c.object.clone(), c.size)).collect();
            let paths: Vec<object_store::Result<StorePath>> =
                batch.iter().map(|c| Ok(StorePath::from(c.object.as_str()))).collect();
            let mut results = self.store.delete_stream(futures::stream::iter(paths).boxed());
            let mut done_in_batch: HashSet<String> = HashSet::new();
            while let Some(result) = results.next().await {
                match result {
                    Ok(path) => {
                        let object = path.to_string();
                        let size = sizes.get(&object).copied().unwrap_or(0);
                        done_in_batch.insert(object);
                        swept.chunks += 1;
                        swept.bytes += size;
                        progress.advance(size);
                    }
                    Err(object_store::Error::NotFound { path, .. }) => {
                        swept.chunks += 1;
                        done_in_batch.insert(path);
                    }
                    Err(e) => {
                        let object = batch
                            .iter()
                            .find(|c| !done_in_batch.contains(&c.object) && e.to_string().contains(&c.object))
                            .map(|c| c.object.clone())
                            .unwrap_or_else(|| "a chunk under chunks/".into());
                        return Err(RepoError::SweepIncomplete {
                            deleted: swept.chunks,
                            total: chunks.len() as u64,
                            cause: Box::new(delete_error(object, e, PRUNING)),
                        });
                    }
                }
            }
        }
        Ok(swept)
    }
}

/// A refused delete names the credential it needs; any other failure is a storage error.
pub(crate) fn delete_error(object: String, e: object_store::Error, action: &str) -> RepoError {
    if is_permission_error(&e) {
        RepoError::DeleteDenied {
            object,
            detail: e.to_string(),
            action: action.to_string(),
        }
    } else {
        RepoError::storage(object, e)
    }
}
