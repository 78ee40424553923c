//! Snapshot manifests: the commit point of a backup.
//!
//! A manifest is written once, create-only, after every chunk it names is durable. On storage it is an
//! envelope `{"sha256": H, "manifest": M}` where H is the SHA-256 of M's exact bytes, so that a
//! truncated or altered manifest is detected even when it still parses as JSON.

use serde::{Deserialize, Serialize};

use super::chunk::ChunkId;
use super::sealed;
use super::{RepoError, Result};

pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    pub id: String,
    pub source: String,
    /// Engine that made the stream ("postgres") and how ("logical").
    pub engine: String,
    pub method: String,
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    pub host: String,
    pub lifeboat_version: String,
    pub stream: StreamInfo,
    pub facts: BackupFacts,
}

/// The backup stream, in order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StreamInfo {
    /// What the bytes are, e.g. "pg_dump-custom": tells restore which tool reads them.
    pub format: String,
    pub size: u64,
    pub sha256: String,
    pub chunks: Vec<ChunkRef>,
    /// Chunks and (stored, compressed) bytes this backup added to the repository.
    pub new_chunks: u64,
    pub new_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChunkRef {
    pub id: String,
    pub size: u32,
}

impl ChunkRef {
    pub fn chunk_id(&self) -> Result<ChunkId> {
        ChunkId::parse(&self.id).ok_or_else(|| RepoError::Corrupt {
            object: self.id.clone(),
            detail: "not a chunk id".into(),
        })
    }
}

/// What the engine knew about the database at the consistent point. Engine-neutral by design: the
/// repository format must not change when MySQL or SQLite engines arrive.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct BackupFacts {
    pub server_version: String,
    pub tool: String,
    pub tool_version: String,
    /// The cluster's identity (PostgreSQL system identifier), so restore can refuse the source itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<String>,
    pub database: String,
    /// Where in the server's history the backup stands (LSN for PostgreSQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_point: Option<String>,
    pub fingerprint: Fingerprint,
}

/// Row counts per table, taken inside the same snapshot as the dump.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Fingerprint {
    pub tables: Vec<TableRows>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct TableRows {
    pub schema: String,
    pub table: String,
    pub rows: u64,
}

impl Fingerprint {
    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

pub fn object_path(source: &str, id: &str) -> String {
    format!("snapshots/{source}/{id}.json")
}

/// A new snapshot id: sortable by time, unique by a random tail.
pub fn new_snapshot_id(at: jiff::Timestamp) -> String {
    let tail: u32 = rand::random();
    format!("{}-{:08x}", at.strftime("%Y%m%dT%H%M%SZ"), tail)
}

impl Manifest {
    /// The SHA-256 of this manifest's stored body: what drill evidence cites as the manifest it tested.
    pub fn digest(&self) -> String {
        sealed::digest(&serde_json::to_string(self).expect("manifest serializes"))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        sealed::seal("manifest", &serde_json::to_string(self).expect("manifest serializes"))
    }

    /// Parses and checks a stored manifest; `object` names it in errors.
    pub fn from_bytes(object: &str, bytes: &[u8]) -> Result<Manifest> {
        let corrupt = |detail: String| RepoError::Corrupt {
            object: object.to_string(),
            detail,
        };
        let body = sealed::unseal(object, bytes, "manifest")?;
        let version = serde_json::from_str::<serde_json::Value>(body.get())
            .ok()
            .and_then(|v| v.get("version").and_then(|v| v.as_u64()));
        if version != Some(MANIFEST_VERSION as u64) {
            return Err(corrupt(format!(
                "manifest version {version:?} is not {MANIFEST_VERSION}; a newer lifeboat may have written it"
            )));
        }
        let m: Manifest = serde_json::from_str(body.get()).map_err(|e| corrupt(e.to_string()))?;
        // `object` may carry the store's prefix; the manifest's own path must end it whole. (Not a
        // split at the last "snapshots/": a source may be named `order-snapshots`.)
        let expected = object_path(&m.source, &m.id);
        if !(object == expected || object.ends_with(&format!("/{expected}"))) {
            return Err(corrupt(format!(
                "manifest says it is {}/{}, but it is stored elsewhere",
                m.source, m.id
            )));
        }
        let sum: u64 = m.stream.chunks.iter().map(|c| c.size as u64).sum();
        if sum != m.stream.size {
            return Err(corrupt(format!(
                "chunk sizes add up to {sum}, the stream is {} bytes",
                m.stream.size
            )));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            id: "20261124T000000Z-00000001".into(),
            source: "orders".into(),
            engine: "postgres".into(),
            method: "logical".into(),
            started_at: jiff::Timestamp::UNIX_EPOCH,
            finished_at: jiff::Timestamp::UNIX_EPOCH,
            host: "h".into(),
            lifeboat_version: "0".into(),
            stream: StreamInfo {
                format: "pg_dump-custom".into(),
                size: 3,
                sha256: "00".into(),
                chunks: vec![ChunkRef {
                    id: "ab".repeat(32),
                    size: 3,
                }],
                new_chunks: 1,
                new_bytes: 10,
            },
            facts: BackupFacts::default(),
        }
    }

    #[test]
    fn round_trip_and_tamper_detection() {
        let m = sample();
        let path = object_path(&m.source, &m.id);
        let bytes = m.to_bytes();
        assert_eq!(Manifest::from_bytes(&path, &bytes).unwrap(), m);
        let truncated = &bytes[..bytes.len() / 2];
        assert!(
            Manifest::from_bytes(&path, truncated)
                .unwrap_err()
                .to_string()
                .contains(&path)
        );
        let altered = String::from_utf8(bytes.clone())
            .unwrap()
            .replace("\"size\":3", "\"size\":4");
        assert!(matches!(
            Manifest::from_bytes(&path, altered.as_bytes()),
            Err(RepoError::Corrupt { .. })
        ));
        // A manifest copied under another name is refused too.
        assert!(Manifest::from_bytes("snapshots/orders/other.json", &bytes).is_err());
        assert!(Manifest::from_bytes(&format!("x{path}"), &bytes).is_err());
        assert!(Manifest::from_bytes(&format!("prefix/{path}"), &bytes).is_ok());
    }

    #[tokio::test]
    async fn a_commit_that_finds_its_own_manifest_succeeds_and_any_other_is_refused() {
        use object_store::ObjectStoreExt;
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let repo = crate::repo::Repository::init(store.clone(), "test", &[])
            .await
            .unwrap()
            .repository;
        let m = sample();
        let path = object_path(&m.source, &m.id);
        // As if a first attempt landed and its answer was lost.
        store.put(&path.as_str().into(), m.to_bytes().into()).await.unwrap();
        assert_eq!(repo.commit(&m).await.unwrap(), path);
        // Another manifest under the same id is never taken for it, nor replaces it.
        let other = Manifest {
            host: "another".into(),
            ..sample()
        };
        assert!(matches!(
            repo.commit(&other).await,
            Err(RepoError::SnapshotExists { .. })
        ));
        let stored = store.get(&path.as_str().into()).await.unwrap().bytes().await.unwrap();
        assert_eq!(stored.as_ref(), m.to_bytes().as_slice());
    }

    #[test]
    fn a_source_named_like_the_snapshots_directory_is_found_where_it_is_stored() {
        for source in ["snapshots", "order-snapshots", "db_snapshots"] {
            let m = Manifest {
                source: source.into(),
                ..sample()
            };
            let path = object_path(&m.source, &m.id);
            let bytes = m.to_bytes();
            assert_eq!(Manifest::from_bytes(&path, &bytes).unwrap(), m, "{path}");
            assert_eq!(Manifest::from_bytes(&format!("lifeboat/{path}"), &bytes).unwrap(), m);
        }
    }
}
