//! Tombstones: how prune forgets a snapshot without destroying it at once.
//!
//! Prune does not delete the manifest of a snapshot its policy forgets. It writes
//! `tombstones/<source>/<id>.json` (create-only, sealed like manifests) saying when, why and by whom,
//! and from then on the snapshot is hidden: [`Repository::manifests`] leaves it out, so `latest` and
//! `random` drills, `snapshots --from-repository`, `catalog rebuild` and the RPO no longer count it as a
//! restorable point. Its manifest and chunks stay whole, so an explicit id still restores it, and
//! within the grace period removing the tombstone (`lifeboat prune --undelete ID`) brings it back.
//! A later prune deletes the manifest once its tombstone is older than the grace period, then the
//! tombstone; until then the manifest keeps protecting its chunks from the sweep.
//!
//! Writing a tombstone is a create-only put, which the everyday write-only credential may do; removing
//! one (undelete, or after the deletion) needs the deleting credential.
//!
//! Compatibility: the prefix is optional and version 1 readers that do not know it ignore it; they
//! see a tombstoned snapshot as an ordinary one, which it still is until its manifest is deleted. The
//! format version stays 1.

use std::collections::HashSet;
use std::time::Duration;

use jiff::Timestamp;
use object_store::ObjectStoreExt;
use object_store::path::Path as StorePath;
use object_store::{PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::{RepoError, Repository, Result, sealed};

pub(crate) const PREFIX: &str = "tombstones";

/// The content of a tombstone object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub source: String,
    pub snapshot: String,
    /// SHA-256 of the manifest's body (as drill evidence names it): exactly which backup this forgets.
    pub manifest_sha256: String,
    /// When the snapshot's backup started: the point in time it holds.
    pub taken_at: Timestamp,
    /// When the tombstone was written; the grace period counts from here.
    pub created: Timestamp,
    /// Why, e.g. "no rule of `keep_last 7, keep_daily 14` keeps it".
    pub reason: String,
    /// Who, e.g. "lifeboat prune by alice on db1 (pid 4242)".
    pub by: String,
    pub lifeboat_version: String,
}

/// The object path of a snapshot's tombstone.
pub fn object_path(source: &str, snapshot: &str) -> String {
    format!("{PREFIX}/{source}/{snapshot}.json")
}

/// A tombstone found in the repository.
#[derive(Debug, Clone)]
pub struct FoundTombstone {
    pub object: String,
    pub source: String,
    pub snapshot: String,
    /// `None` when the object cannot be read; `damage` says why.
    pub tombstone: Option<Tombstone>,
    pub damage: Option<String>,
}

impl FoundTombstone {
    /// When the tombstone was written; unknown for a damaged one.
    pub fn created(&self) -> Option<Timestamp> {
        self.tombstone.as_ref().map(|t| t.created)
    }

    /// When its grace period ends: from then on prune deletes the snapshot.
    pub fn deletable_at(&self, grace: Duration) -> Option<Timestamp> {
        let grace = jiff::SignedDuration::try_from(grace).unwrap_or(jiff::SignedDuration::MAX);
        self.created().map(|c| c.checked_add(grace).unwrap_or(Timestamp::MAX))
    }

    /// True once the grace period has passed. A damaged tombstone is never due: how old it is, is
    /// unknown. Undelete it (the snapshot becomes live again) and let the next prune decide afresh.
    pub fn is_due(&self, now: Timestamp, grace: Duration) -> bool {
        self.deletable_at(grace).is_some_and(|at| now >= at)
    }
}

/// `(source, id)` from `<prefix>/<source>/<id>.json`.
pub(crate) fn split_object(prefix: &str, object: &str) -> Option<(String, String)> {
    let rest = object.strip_prefix(prefix)?.strip_prefix('/')?;
    let (source, file) = rest.rsplit_once('/')?;
    let id = file.strip_suffix(".json")?;
    Some((source.to_string(), id.to_string()))
}

impl Repository {
    /// Writes a tombstone, create-only. A snapshot already tombstoned keeps its first tombstone (its
    /// grace period is not restarted). Returns the object path.
    pub async fn put_tombstone(&self, tombstone: &Tombstone) -> Result<String> {
        let path = object_path(&tombstone.source, &tombstone.snapshot);
        let body = serde_json::to_string(tombstone).expect("tombstone serializes");
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(
                &StorePath::from(path.as_str()),
                PutPayload::from(sealed::seal("tombstone", &body)),
                opts,
            )
            .await
        {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(path),
            Err(e) => Err(RepoError::storage(path, e)),
        }
    }

    /// The `(source, id)` of every tombstoned snapshot (of one source): one listing, nothing read.
    pub async fn tombstoned(&self, source: Option<&str>) -> Result<HashSet<(String, String)>> {
        let prefix = match source {
            Some(s) => format!("{PREFIX}/{s}"),
            None => PREFIX.to_string(),
        };
        Ok(self
            .list_json(&prefix)
            .await?
            .iter()
            .filter_map(|p| split_object(PREFIX, p))
            .collect())
    }

    /// Every tombstone (of one source), read. Damaged ones are returned with `damage` set.
    pub async fn tombstones(&self, source: Option<&str>) -> Result<Vec<FoundTombstone>> {
        let prefix = match source {
            Some(s) => format!("{PREFIX}/{s}"),
            None => PREFIX.to_string(),
        };
        let mut found = Vec::new();
        for object in self.list_json(&prefix).await? {
            let Some((source, snapshot)) = split_object(PREFIX, &object) else {
                continue;
            };
            let bytes = match self.get(&object).await {
                Ok(b) => b,
                // Removed between the listing and now (an undelete, another prune).
                Err(RepoError::Missing { .. }) => continue,
                Err(e) => return Err(e),
            };
            let read = sealed::unseal(&object, &bytes, "tombstone").and_then(|raw| {
                serde_json::from_str::<Tombstone>(raw.get()).map_err(|e| RepoError::Corrupt {
                    object: object.clone(),
                    detail: e.to_string(),
                })
            });
            let (tombstone, damage) = match read {
                Ok(t) => (Some(t), None),
                Err(e) => (None, Some(e.to_string())),
            };
            found.push(FoundTombstone {
                object,
                source,
                snapshot,
                tombstone,
                damage,
            });
        }
        Ok(found)
    }

    /// Removes a snapshot's tombstone; false when there was none. `action` names what needed it, for
    /// the error when the credential may not delete.
    pub async fn delete_tombstone(&self, source: &str, snapshot: &str, action: &str) -> Result<bool> {
        let object = object_path(source, snapshot);
        let path = StorePath::from(object.as_str());
        match self.store.head(&path).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(RepoError::storage(object, e)),
        }
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(super::prune::delete_error(object, e, action)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::ObjectStore;
    use object_store::local::LocalFileSystem;

    use super::*;
    use crate::repo::{BackupFacts, MANIFEST_VERSION, Manifest, NoProgress, StreamInfo, WriteOptions};

    async fn snapshot(repo: &Repository, source: &str, id: &str) -> Manifest {
        let summary = repo
            .write_stream(
                std::io::Cursor::new(id.as_bytes().to_vec()),
                &WriteOptions::default(),
                Arc::new(NoProgress),
            )
            .await
            .unwrap();
        let now = Timestamp::now();
        let m = Manifest {
            version: MANIFEST_VERSION,
            id: id.into(),
            source: source.into(),
            engine: "postgres".into(),
            method: "logical".into(),
            started_at: now,
            finished_at: now,
            host: "test".into(),
            lifeboat_version: "test".into(),
            stream: StreamInfo {
                format: "pg_dump-custom".into(),
                size: summary.size,
                sha256: summary.sha256,
                chunks: summary.chunks,
                new_chunks: summary.new_chunks,
                new_bytes: summary.new_bytes,
            },
            facts: BackupFacts::default(),
        };
        repo.commit(&m).await.unwrap();
        m
    }

    fn tombstone_for(m: &Manifest, created: Timestamp) -> Tombstone {
        Tombstone {
            source: m.source.clone(),
            snapshot: m.id.clone(),
            manifest_sha256: m.digest(),
            taken_at: m.started_at,
            created,
            reason: "no rule of `keep_last 1` keeps it".into(),
            by: "test".into(),
            lifeboat_version: "test".into(),
        }
    }

    #[tokio::test]
    async fn a_tombstoned_snapshot_is_hidden_from_listings_but_still_found_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let repo = Repository::init(store, "test", &[]).await.unwrap().repository;
        let old = snapshot(&repo, "orders", "s1").await;
        snapshot(&repo, "orders", "s2").await;
        snapshot(&repo, "rental", "s1").await;
        let created: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let path = repo.put_tombstone(&tombstone_for(&old, created)).await.unwrap();
        assert_eq!(path, "tombstones/orders/s1.json");
        // Create-only: tombstoning again keeps the first tombstone and its time.
        repo.put_tombstone(&tombstone_for(&old, Timestamp::now()))
            .await
            .unwrap();

        let ids =
            |list: Vec<Manifest>| -> Vec<(String, String)> { list.into_iter().map(|m| (m.source, m.id)).collect() };
        let (live, bad) = repo.manifests(None).await.unwrap();
        assert!(bad.is_empty());
        let mut live = ids(live);
        live.sort();
        // Same id in another source is another snapshot, and stays live.
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(live, [pair("orders", "s2"), pair("rental", "s1")]);
        assert_eq!(
            ids(repo.manifests(Some("orders")).await.unwrap().0),
            [pair("orders", "s2")]
        );
        assert_eq!(repo.manifests_with_tombstoned(None).await.unwrap().0.len(), 3);
        assert_eq!(repo.find_manifest("s2").await.unwrap().id, "s2");

        let found = repo.tombstones(None).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].created(), Some(created));
        assert_eq!(found[0].tombstone.as_ref().unwrap().manifest_sha256, old.digest());
        assert_eq!(
            repo.tombstoned(Some("orders")).await.unwrap(),
            HashSet::from([pair("orders", "s1")])
        );

        // A damaged tombstone still hides its snapshot, and says why it cannot be read.
        std::fs::write(dir.path().join("tombstones/orders/s1.json"), b"{\"sha256\": \"00\"}").unwrap();
        let found = repo.tombstones(None).await.unwrap();
        assert!(found[0].tombstone.is_none() && found[0].damage.is_some(), "{found:?}");
        assert_eq!(repo.manifests(Some("orders")).await.unwrap().0.len(), 1);

        assert!(repo.delete_tombstone("orders", "s1", "undeleting").await.unwrap());
        assert!(!repo.delete_tombstone("orders", "s1", "undeleting").await.unwrap());
        assert_eq!(repo.manifests(Some("orders")).await.unwrap().0.len(), 2);
    }

    #[test]
    fn object_paths_split_back() {
        assert_eq!(object_path("orders", "abc"), "tombstones/orders/abc.json");
        assert_eq!(
            split_object(PREFIX, "tombstones/orders/abc.json"),
            Some(("orders".into(), "abc".into()))
        );
        assert_eq!(split_object(PREFIX, "tombstones/orders/abc.txt"), None);
        assert_eq!(split_object(PREFIX, "tombstonesx/orders/abc.json"), None);
        assert_eq!(
            split_object("snapshots", "snapshots/a/b.json"),
            Some(("a".into(), "b".into()))
        );
    }

    #[test]
    fn due_after_grace_and_never_when_damaged() {
        let created: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let mut found = FoundTombstone {
            object: object_path("s", "x"),
            source: "s".into(),
            snapshot: "x".into(),
            tombstone: Some(Tombstone {
                source: "s".into(),
                snapshot: "x".into(),
                manifest_sha256: "00".into(),
                taken_at: created,
                created,
                reason: "test".into(),
                by: "test".into(),
                lifeboat_version: "test".into(),
            }),
            damage: None,
        };
        let day = Duration::from_secs(86_400);
        let just_before: Timestamp = "2024-01-01T23:59:59Z".parse().unwrap();
        let on_time: Timestamp = "2024-01-02T00:00:00Z".parse().unwrap();
        assert!(!found.is_due(just_before, day));
        assert!(found.is_due(on_time, day));
        assert!(found.is_due(created, Duration::ZERO));
        assert!(!found.is_due(on_time, Duration::MAX), "an endless grace never ends");
        found.tombstone = None;
        found.damage = Some("unreadable".into());
        assert!(!found.is_due(Timestamp::MAX, Duration::ZERO));
    }
}
