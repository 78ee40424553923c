//! The repository format (version 1): immutable, content-addressed objects in an object store.
//!
//! ```text
//! lifeboat.repo.json                 format version, id, chunker parameters, encryption
//! chunks/<aa>/<address>              zstd (then age) encoded chunk; address = SHA-256 or HMAC
//! snapshots/<source>/<id>.json       a manifest: the commit point, written last, create-only
//! evidence/<source>/<run-id>.json    a drill's result, naming the snapshot and manifest digest it tested
//! tombstones/<source>/<id>.json      prune forgot this snapshot: hidden, deleted after a grace period
//! locks/<random>.json                who is using the repository: backups, restores and drills (shared),
//!                                    prune (exclusive)
//! ```
//!
//! Every object is written once and never rewritten, so a repository works on object-locked (WORM)
//! buckets, and a crash leaves at most orphan chunks, never half a snapshot. Lock objects are the one
//! exception: their holder rewrites them to show it is alive, and removes them when done.
//!
//! `tombstones/` came after the first version-1 repositories. It is optional and additive: a reader
//! that does not know it sees tombstoned snapshots as ordinary ones, which they still are until prune
//! deletes them, so the format version did not change. See `tombstone.rs`.

pub mod audit;
mod chunk;
mod copy;
mod cpu;
mod error;
mod evidence;
mod format;
mod lock;
mod manifest;
mod prune;
mod reader;
pub mod retention;
mod sealed;
mod tombstone;
mod verify;
mod writer;

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, path::Path as StorePath};

pub use chunk::{Addressing, ChunkId};
pub use copy::{ChunkCheck, ChunkVerifier, Put, naming_mismatch};
pub use error::{RepoError, Result};
pub use format::{CONFIG_OBJECT, ChunkerParams, FORMAT_VERSION, RepoConfig};
pub(crate) use lock::hostname;
pub use lock::{FoundLock, LockInfo, LockKind, LockOptions, RepoLock};
pub use manifest::object_path as manifest_object_path;
pub use manifest::{
    BackupFacts, ChunkRef, Fingerprint, MANIFEST_VERSION, Manifest, StreamInfo, TableRows, new_snapshot_id,
};
pub use prune::{StoredChunk, Swept, referenced_chunks};
pub use tombstone::{FoundTombstone, Tombstone};
pub use verify::{Problem, ProblemKind, VerifyReport};
pub use writer::{StreamSummary, WriteOptions};

/// Receives progress as bytes move; the CLI draws bars from it, tests ignore it.
pub trait Progress: Send + Sync {
    fn advance(&self, bytes: u64);
}

/// A progress sink that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {
    fn advance(&self, _: u64) {}
}

/// Key material for an encrypted repository. Backups need `recipients` and the address key only;
/// reading data needs the identity.
#[derive(Default, Clone)]
pub struct Keys {
    pub recipients: Vec<age::x25519::Recipient>,
    pub identity: Option<age::x25519::Identity>,
    /// The 32-byte address key, when the caller holds a copy of it.
    pub address_key: Option<[u8; 32]>,
}

/// An opened repository.
#[derive(Clone)]
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    location: String,
    config: RepoConfig,
    addressing: Addressing,
    keys: Keys,
}

/// What `init` created. The address key must be kept by whoever takes backups.
pub struct Created {
    pub repository: Repository,
    pub address_key: Option<[u8; 32]>,
}

impl Repository {
    /// Creates a repository at an empty location. Refuses, without writing anything, when the
    /// location already holds a repository (or anything that claims to be one).
    pub async fn init(
        store: Arc<dyn ObjectStore>,
        location: &str,
        recipients: &[age::x25519::Recipient],
    ) -> Result<Created> {
        let id = hex::encode(rand::random::<[u8; 16]>());
        let (encryption, address_key) = if recipients.is_empty() {
            (None, None)
        } else {
            let key: [u8; 32] = rand::random();
            let wrapped = chunk::encode(&key, 1, recipients)?;
            let info = format::EncryptionInfo {
                scheme: "age-x25519".into(),
                recipients: recipients.iter().map(|r| r.to_string()).collect(),
                address_key_wrapped: hex::encode(wrapped),
                address_key_check: key_check(&key),
            };
            (Some(info), Some(key))
        };
        let config = RepoConfig::new(id, encryption);
        write_new_config(&store, location, &config).await?;
        let keys = Keys {
            recipients: recipients.to_vec(),
            identity: None,
            address_key,
        };
        let repository = Repository::from_parts(store, location, config, keys)?;
        Ok(Created {
            repository,
            address_key,
        })
    }

    /// Opens an existing repository, checking its format version.
    pub async fn open(store: Arc<dyn ObjectStore>, location: &str, name: &str, keys: Keys) -> Result<Repository> {
        let config_path = StorePath::from(CONFIG_OBJECT);
        let bytes = match store.get(&config_path).await {
            Ok(r) => r.bytes().await.map_err(|e| RepoError::storage(CONFIG_OBJECT, e))?,
            Err(object_store::Error::NotFound { source, .. }) => {
                return Err(RepoError::NotFound {
                    location: location.into(),
                    name: name.into(),
                    detail: source.to_string(),
                });
            }
            Err(e) => return Err(RepoError::storage(CONFIG_OBJECT, e)),
        };
        let config = RepoConfig::parse(&bytes, location)?;
        Repository::from_parts(store, location, config, keys)
    }

    fn from_parts(
        store: Arc<dyn ObjectStore>,
        location: &str,
        config: RepoConfig,
        mut keys: Keys,
    ) -> Result<Repository> {
        let addressing = match &config.encryption {
            None => Addressing::Sha256,
            Some(info) => {
                if keys.address_key.is_none()
                    && let Some(identity) = &keys.identity
                {
                    keys.address_key = Some(unwrap_address_key(info, identity)?);
                }
                match keys.address_key {
                    Some(key) if key_check(&key) == info.address_key_check => Addressing::Hmac(key),
                    Some(_) => {
                        return Err(RepoError::Encryption {
                            detail: format!("the address key given does not belong to repository {}", config.id),
                            fix: "use the key file `lifeboat init` wrote for this repository id".into(),
                        });
                    }
                    // Listing and presence checks work without it; writing and reading chunks refuse.
                    None => Addressing::Sha256,
                }
            }
        };
        Ok(Repository {
            store,
            location: location.into(),
            config,
            addressing,
            keys,
        })
    }

    pub fn config(&self) -> &RepoConfig {
        &self.config
    }
    pub fn id(&self) -> &str {
        &self.config.id
    }
    pub fn location(&self) -> &str {
        &self.location
    }
    pub fn is_encrypted(&self) -> bool {
        self.config.encryption.is_some()
    }

    /// What writing chunks into this repository needs: for an encrypted one, its address key and
    /// recipients. Without recipients the chunks would be stored unencrypted under keyed names, and
    /// dedup would keep reusing them.
    fn require_keys_to_write(&self) -> Result<()> {
        let Some(encryption) = &self.config.encryption else {
            return Ok(());
        };
        if self.keys.address_key.is_none() {
            return Err(RepoError::AddressKeyRequired {
                hint: format!("keys/{}.address-key", self.config.id),
            });
        }
        if self.keys.recipients.is_empty() {
            return Err(RepoError::Encryption {
                detail: format!(
                    "the repository at {} is encrypted, but the config names no recipients for it, so its \
                     chunks would be written unencrypted",
                    self.location
                ),
                fix: format!(
                    "add `encryption: {{ recipients: [...] }}` to the repository in the config; it was created \
                     for {}",
                    encryption.recipients.join(", ")
                ),
            });
        }
        Ok(())
    }

    /// Lists every snapshot manifest path (not parsed), tombstoned snapshots' too.
    pub async fn manifest_paths(&self, source: Option<&str>) -> Result<Vec<String>> {
        match source {
            Some(s) => self.list_json(&format!("snapshots/{s}")).await,
            None => self.list_json("snapshots").await,
        }
    }

    /// The `.json` objects under a prefix, sorted.
    async fn list_json(&self, prefix: &str) -> Result<Vec<String>> {
        let mut paths: Vec<String> = self
            .store
            .list(Some(&StorePath::from(prefix)))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .map_err(|e| RepoError::storage(format!("{prefix}/"), e))?;
        paths.retain(|p| p.ends_with(".json"));
        paths.sort();
        Ok(paths)
    }

    /// Loads and checks one manifest by its object path.
    pub async fn load_manifest(&self, path: &str) -> Result<Manifest> {
        let bytes = self.get(path).await?;
        Manifest::from_bytes(path, &bytes)
    }

    /// Loads the manifest of every live snapshot: the restorable points. Tombstoned snapshots (forgotten
    /// by prune, awaiting deletion) are left out. Damaged manifests come back as errors beside the good
    /// ones. Sorted by finish time.
    pub async fn manifests(&self, source: Option<&str>) -> Result<(Vec<Manifest>, Vec<RepoError>)> {
        let tombstoned = self.tombstoned(source).await?;
        self.load_manifests(source, |path| {
            tombstone::split_object("snapshots", path).is_none_or(|key| !tombstoned.contains(&key))
        })
        .await
    }

    /// Like [`Repository::manifests`], tombstoned snapshots included: every manifest still stored, as
    /// prune needs them (their chunks stay until their manifests are deleted).
    pub async fn manifests_with_tombstoned(&self, source: Option<&str>) -> Result<(Vec<Manifest>, Vec<RepoError>)> {
        self.load_manifests(source, |_| true).await
    }

    async fn load_manifests(
        &self,
        source: Option<&str>,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<(Vec<Manifest>, Vec<RepoError>)> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for p in self.manifest_paths(source).await?.into_iter().filter(|p| wanted(p)) {
            match self.load_manifest(&p).await {
                Ok(m) => good.push(m),
                Err(e) => bad.push(e),
            }
        }
        good.sort_by(|a, b| (a.finished_at, &a.id).cmp(&(b.finished_at, &b.id)));
        Ok((good, bad))
    }

    /// True when the snapshot's manifest is stored (tombstoned or not).
    pub async fn has_manifest(&self, source: &str, id: &str) -> Result<bool> {
        let object = manifest::object_path(source, id);
        match self.store.head(&StorePath::from(object.as_str())).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(RepoError::storage(object, e)),
        }
    }

    /// Finds a snapshot by full id or unique prefix, reading the repository. An explicit id reaches a
    /// tombstoned snapshot too: within its grace period it is still whole.
    pub async fn find_manifest(&self, id_or_prefix: &str) -> Result<Manifest> {
        let matches: Vec<String> = self
            .manifest_paths(None)
            .await?
            .into_iter()
            .filter(|p| p.rsplit('/').next().is_some_and(|f| f.starts_with(id_or_prefix)))
            .collect();
        match matches.as_slice() {
            [one] => self.load_manifest(one).await,
            [] => Err(RepoError::Missing {
                object: format!("snapshot {id_or_prefix}"),
            }),
            many => Err(RepoError::Ambiguous {
                prefix: id_or_prefix.to_string(),
                candidates: many.join(", "),
            }),
        }
    }

    /// Commits a snapshot: create-only, so an existing manifest is never replaced.
    ///
    /// An existing manifest with exactly these bytes is this commit's own: object stores retry a
    /// PUT whose answer was lost (a 5xx or a dropped connection after the write landed), and the
    /// retry then finds the object it wrote. That is a success, not a clash.
    pub async fn commit(&self, manifest: &Manifest) -> Result<String> {
        let path = manifest::object_path(&manifest.source, &manifest.id);
        let bytes = manifest.to_bytes();
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&StorePath::from(path.as_str()), PutPayload::from(bytes.clone()), opts)
            .await
        {
            Ok(_) => Ok(path),
            Err(object_store::Error::AlreadyExists { .. }) => match self.get(&path).await {
                Ok(stored) if stored.as_ref() == bytes.as_slice() => Ok(path),
                _ => Err(RepoError::SnapshotExists {
                    id: manifest.id.clone(),
                }),
            },
            Err(e) => Err(RepoError::storage(path, e)),
        }
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let r = self
            .store
            .get(&StorePath::from(path))
            .await
            .map_err(|e| RepoError::storage(path, e))?;
        r.bytes().await.map_err(|e| RepoError::storage(path, e))
    }
}

/// Writes the config object of a new repository. Refuses, without writing anything, when the location
/// already holds a repository (or anything that claims to be one).
async fn write_new_config(store: &Arc<dyn ObjectStore>, location: &str, config: &RepoConfig) -> Result<()> {
    let config_path = StorePath::from(CONFIG_OBJECT);
    match store.get(&config_path).await {
        Ok(existing) => {
            let bytes = existing.bytes().await.unwrap_or_default();
            let id = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_owned))
                .unwrap_or_else(|| "unknown".into());
            return Err(RepoError::AlreadyExists {
                location: location.into(),
                id,
            });
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(RepoError::storage(CONFIG_OBJECT, e)),
    }
    let bytes = serde_json::to_vec_pretty(config).expect("config serializes");
    // Create-only: two concurrent `init`s cannot both win.
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store.put_opts(&config_path, PutPayload::from(bytes), opts).await {
        Ok(_) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. }) => Err(RepoError::AlreadyExists {
            location: location.into(),
            id: "unknown".into(),
        }),
        Err(e) => Err(RepoError::storage(CONFIG_OBJECT, e)),
    }
}

fn key_check(key: &[u8; 32]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(key))
}

fn unwrap_address_key(info: &format::EncryptionInfo, identity: &age::x25519::Identity) -> Result<[u8; 32]> {
    let wrapped = hex::decode(&info.address_key_wrapped).map_err(|e| RepoError::Corrupt {
        object: CONFIG_OBJECT.into(),
        detail: format!("address_key_wrapped: {e}"),
    })?;
    // The wrapped key uses the chunk codec; its "address" check is done by key_check instead.
    let plain = chunk::decode_unchecked(CONFIG_OBJECT, &wrapped, Some(identity))?;
    plain.try_into().map_err(|_| RepoError::Corrupt {
        object: CONFIG_OBJECT.into(),
        detail: "address key is not 32 bytes".into(),
    })
}

/// Address keys live in the state directory as hex, one file per repository id.
pub fn address_key_file_name(repo_id: &str) -> String {
    format!("{repo_id}.address-key")
}
