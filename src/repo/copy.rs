//! The repository half of `lifeboat copy`: moving objects from one repository to another byte for byte.
//!
//! A chunk's name is computed from its content (SHA-256, or HMAC-SHA-256 under the address key), and its
//! payload is encrypted to the repository's recipients. Copying the stored bytes unchanged is therefore
//! only right between repositories that name and encrypt alike ([`naming_mismatch`]); then a copied
//! chunk is exactly the object a backup into the destination would have written, and deduplicates with
//! it. Every chunk is checked before it is written ([`ChunkVerifier`]), so damage in the source is
//! never propagated. Manifests and evidence are copied create-only, as everywhere else.

use std::collections::BTreeSet;

use bytes::Bytes;
use object_store::{PutMode, PutOptions, PutPayload, path::Path as StorePath};
use serde::Serialize;

use super::chunk::{self, ChunkId};
use super::{Addressing, Created, Manifest, RepoConfig, RepoError, Repository, Result, evidence, manifest, sealed};

/// How thoroughly chunks are checked before they are copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChunkCheck {
    /// Decompressed (and decrypted) and hashed again against its name and size: damage is never copied.
    Content,
    /// The repositories are encrypted and neither one's config gives the age identity: only the object's
    /// header is checked, and damage inside the encrypted payload would be copied unnoticed.
    HeaderOnly,
}

/// What a create-only write found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    Written,
    /// The object already existed; these are its bytes, for the caller to compare.
    Exists(Bytes),
}

/// Why objects of `from` cannot be stored in `to` under the same names, or `None` when they can: both
/// unencrypted (names are plain SHA-256), or both encrypted under the same address key and to the same
/// recipients. Chunker parameters may differ: they decide where a stream is cut, not what a chunk is
/// called.
pub fn naming_mismatch(from_name: &str, from: &RepoConfig, to_name: &str, to: &RepoConfig) -> Option<String> {
    match (&from.encryption, &to.encryption) {
        (None, None) => None,
        (Some(_), None) => Some(format!(
            "`{from_name}` is encrypted (chunks named by HMAC-SHA-256 under its address key, payloads encrypted to \
             its recipients) and `{to_name}` is not (chunks named by plain SHA-256): copied byte for byte, the \
             chunks would sit in `{to_name}` under names it never computes for their content, so its backups \
             would not share them and verify would call each one corrupt"
        )),
        (None, Some(_)) => Some(format!(
            "`{from_name}` is not encrypted (chunks named by plain SHA-256, stored in the clear) and `{to_name}` is \
             (chunks named by HMAC-SHA-256 under its address key): copied byte for byte, the chunks would be \
             wrongly named in `{to_name}`, and unencrypted"
        )),
        (Some(f), Some(t)) if f.address_key_check != t.address_key_check => Some(format!(
            "`{from_name}` and `{to_name}` are encrypted under different address keys, and a chunk's name is the \
             HMAC-SHA-256 of its content under the address key: copied byte for byte, every chunk would be \
             wrongly named in `{to_name}` (verify and restore there would call it corrupt)"
        )),
        (Some(f), Some(t)) => {
            let (fr, tr): (BTreeSet<&String>, BTreeSet<&String>) =
                (f.recipients.iter().collect(), t.recipients.iter().collect());
            (fr != tr).then(|| {
                format!(
                    "`{from_name}` encrypts chunks to recipients {} and `{to_name}` to {}: copied byte for byte, the \
                     chunks would stay encrypted to `{from_name}`'s recipients, which `{to_name}`'s identity may not \
                     be able to read",
                    join(&fr),
                    join(&tr)
                )
            })
        }
    }
}

fn join(set: &BTreeSet<&String>) -> String {
    set.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

/// Checks chunks read from one repository before they are written to another of the same naming.
#[derive(Clone)]
pub struct ChunkVerifier {
    encrypted: bool,
    addressing: Addressing,
    identity: Option<age::x25519::Identity>,
}

impl ChunkVerifier {
    /// Uses whichever of the two repositories' keys can read the chunks: with the same naming, either
    /// identity decrypts them and either address key names them.
    pub fn new(from: &Repository, to: &Repository) -> ChunkVerifier {
        let encrypted = from.is_encrypted();
        let identity = from.keys.identity.clone().or_else(|| to.keys.identity.clone());
        let addressing = match from.keys.address_key.or(to.keys.address_key) {
            Some(key) if encrypted => Addressing::Hmac(key),
            _ => Addressing::Sha256,
        };
        ChunkVerifier {
            encrypted,
            addressing,
            identity,
        }
    }

    pub fn level(&self) -> ChunkCheck {
        let can_read = !self.encrypted || (self.identity.is_some() && matches!(self.addressing, Addressing::Hmac(_)));
        if can_read {
            ChunkCheck::Content
        } else {
            ChunkCheck::HeaderOnly
        }
    }

    /// Proves `stored` is the chunk `id` of `size` bytes (or, at [`ChunkCheck::HeaderOnly`], that it
    /// has the right header). CPU-bound: call it from a blocking thread.
    pub fn check(&self, object: &str, stored: &[u8], id: &ChunkId, size: u32) -> Result<()> {
        match self.level() {
            ChunkCheck::Content => chunk::decode(
                object,
                stored,
                id,
                Some(size as usize),
                &self.addressing,
                self.identity.as_ref(),
            )
            .map(|_| ()),
            ChunkCheck::HeaderOnly => chunk::check_header(object, stored, self.encrypted),
        }
    }
}

impl Repository {
    /// Creates a repository at an empty location that names, encrypts and chunks like `template`, so that
    /// `lifeboat copy` can move snapshots between the two byte for byte. It gets an id of its own; the
    /// wrapped address key is the template's, so the template's identity still unwraps it.
    pub async fn init_like(
        store: std::sync::Arc<dyn object_store::ObjectStore>,
        location: &str,
        template: &Repository,
    ) -> Result<Created> {
        let mut config = RepoConfig::new(
            hex::encode(rand::random::<[u8; 16]>()),
            template.config.encryption.clone(),
        );
        config.chunker = template.config.chunker;
        config.compression = template.config.compression.clone();
        super::write_new_config(&store, location, &config).await?;
        let keys = super::Keys {
            recipients: template.keys.recipients.clone(),
            identity: template.keys.identity.clone(),
            address_key: template.keys.address_key,
        };
        let address_key = if config.encryption.is_some() {
            template.keys.address_key
        } else {
            None
        };
        let repository = Repository::from_parts(store, location, config, keys)?;
        Ok(Created {
            repository,
            address_key,
        })
    }

    /// Copies one chunk into `to` unless it appeared there meanwhile: reads it, checks it, writes it
    /// create-only. Returns the bytes written, or `None` when `to` already had it. A missing or damaged
    /// source chunk is an error naming it, and nothing is written.
    pub async fn copy_chunk(
        &self,
        to: &Repository,
        id: ChunkId,
        size: u32,
        verifier: &ChunkVerifier,
    ) -> Result<Option<u64>> {
        let path = id.object_path();
        let stored = self.get(&path).await?;
        let (checker, object, bytes) = (verifier.clone(), path.clone(), stored.clone());
        super::cpu::on_a_core(move || checker.check(&object, &bytes, &id, size)).await?;
        let len = stored.len() as u64;
        match to.put_create(&path, stored).await? {
            Put::Written => Ok(Some(len)),
            Put::Exists(_) => Ok(None),
        }
    }

    /// A snapshot's stored manifest, exactly as stored, or `None` when there is none.
    pub async fn manifest_object(&self, source: &str, id: &str) -> Result<Option<Bytes>> {
        self.get_optional(&manifest::object_path(source, id)).await
    }

    /// Commits a manifest copied from another repository, byte for byte and create-only. The bytes
    /// must be a valid manifest of `source`/`id`: nothing damaged is ever committed.
    pub async fn put_manifest_object(&self, source: &str, id: &str, bytes: Bytes) -> Result<Put> {
        let path = manifest::object_path(source, id);
        Manifest::from_bytes(&path, &bytes)?;
        self.put_create(&path, bytes).await
    }

    /// The evidence objects of one source (paths), sorted.
    pub async fn evidence_objects(&self, source: &str) -> Result<Vec<String>> {
        self.list_json(&format!("evidence/{source}")).await
    }

    /// One evidence object: its stored bytes and the document it seals. Damage is `Corrupt`.
    pub async fn read_evidence_object(&self, path: &str) -> Result<(Bytes, serde_json::Value)> {
        let bytes = self.get(path).await?;
        let doc = evidence::parse(path, &bytes)?;
        Ok((bytes, doc))
    }

    /// One evidence object exactly as stored, or `None` when there is none.
    pub async fn evidence_object(&self, path: &str) -> Result<Option<Bytes>> {
        self.get_optional(path).await
    }

    /// Stores evidence copied from another repository, byte for byte and create-only, after checking
    /// its seal.
    pub async fn put_evidence_object(&self, path: &str, bytes: Bytes) -> Result<Put> {
        sealed::unseal(path, &bytes, "evidence")?;
        self.put_create(path, bytes).await
    }

    async fn get_optional(&self, path: &str) -> Result<Option<Bytes>> {
        match self.get(path).await {
            Ok(b) => Ok(Some(b)),
            Err(RepoError::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `bytes` at `path` unless an object is there; then returns that object's bytes.
    pub(super) async fn put_create(&self, path: &str, bytes: Bytes) -> Result<Put> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&StorePath::from(path), PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(Put::Written),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Put::Exists(self.get(path).await?)),
            Err(e) => Err(RepoError::storage(path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    async fn repo(dir: &std::path::Path, recipients: &[age::x25519::Recipient]) -> Created {
        let store = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir).unwrap());
        Repository::init(store, "test", recipients).await.unwrap()
    }

    #[tokio::test]
    async fn naming_must_match_and_init_like_makes_it_match() {
        let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        let plain = repo(dirs[0].path(), &[]).await.repository;
        let identity = age::x25519::Identity::generate();
        let encrypted = repo(dirs[1].path(), &[identity.to_public()]).await.repository;
        let other_key = repo(dirs[2].path(), &[identity.to_public()]).await.repository;
        let (p, e, o) = (plain.config(), encrypted.config(), other_key.config());
        assert_eq!(naming_mismatch("a", p, "b", p), None);
        assert!(naming_mismatch("a", e, "b", p).unwrap().contains("plain SHA-256"));
        assert!(naming_mismatch("a", p, "b", e).unwrap().contains("wrongly named"));
        assert!(
            naming_mismatch("a", e, "b", o)
                .unwrap()
                .contains("different address keys")
        );
        let mut other_recipients = e.clone();
        other_recipients.encryption.as_mut().unwrap().recipients = vec!["age1other".into()];
        assert!(
            naming_mismatch("a", e, "b", &other_recipients)
                .unwrap()
                .contains("age1other")
        );

        let store = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dirs[3].path()).unwrap());
        let like = Repository::init_like(store, "like", &encrypted).await.unwrap();
        assert_ne!(
            like.repository.id(),
            encrypted.id(),
            "a copy target is a repository of its own"
        );
        assert_eq!(naming_mismatch("a", e, "b", like.repository.config()), None);
        assert_eq!(like.address_key, encrypted.keys.address_key);
        assert_eq!(like.repository.config().chunker, e.chunker);
        // The template's identity unwraps the new repository's address key.
        let store = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dirs[3].path()).unwrap());
        let keys = super::super::Keys {
            identity: Some(identity),
            ..Default::default()
        };
        let reopened = Repository::open(store, "like", "like", keys).await.unwrap();
        assert_eq!(reopened.keys.address_key, encrypted.keys.address_key);
    }

    #[tokio::test]
    async fn a_damaged_chunk_is_not_copied_and_a_good_one_is_copied_once() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let from = repo(a.path(), &[]).await.repository;
        let to = repo(b.path(), &[]).await.repository;
        let data = b"copy me".repeat(10_000);
        let id = Addressing::Sha256.id_of(&data);
        let path = id.object_path();
        let encoded = chunk::encode(&data, 3, &[]).unwrap();
        std::fs::create_dir_all(a.path().join(&path).parent().unwrap()).unwrap();
        std::fs::write(a.path().join(&path), &encoded).unwrap();
        let verifier = ChunkVerifier::new(&from, &to);
        assert_eq!(verifier.level(), ChunkCheck::Content);
        let size = data.len() as u32;
        assert_eq!(
            from.copy_chunk(&to, id, size, &verifier).await.unwrap(),
            Some(encoded.len() as u64)
        );
        assert_eq!(std::fs::read(b.path().join(&path)).unwrap(), encoded, "byte for byte");
        assert_eq!(from.copy_chunk(&to, id, size, &verifier).await.unwrap(), None);

        let mut damaged = encoded.clone();
        let n = damaged.len();
        damaged[n / 2] ^= 0x40;
        let data2 = b"other".repeat(10_000);
        let id2 = Addressing::Sha256.id_of(&data2);
        let path2 = id2.object_path();
        std::fs::create_dir_all(a.path().join(&path2).parent().unwrap()).unwrap();
        std::fs::write(a.path().join(&path2), &damaged).unwrap();
        let err = from
            .copy_chunk(&to, id2, data2.len() as u32, &verifier)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RepoError::Corrupt { .. }) && err.to_string().contains(&path2),
            "{err}"
        );
        assert!(!b.path().join(&path2).exists(), "damage must not be propagated");
    }
}
