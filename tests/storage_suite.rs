//! One repository suite, run against every storage kind: a local directory and a real S3 protocol
//! server on loopback (started by `scripts/test`).

mod support;

use std::io::Cursor;
use std::sync::Arc;

use lifeboat::repo::{
    BackupFacts, Keys, MANIFEST_VERSION, Manifest, NoProgress, ProblemKind, RepoError, Repository, StreamInfo,
    WriteOptions, new_snapshot_id,
};
use lifeboat::storage::{Storage, StorageOptions};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use secrecy::SecretString;

/// A fresh, empty repository location of one storage kind.
struct Case {
    storage: Storage,
    _dir: Option<tempfile::TempDir>,
}

async fn local_case() -> Case {
    let dir = tempfile::tempdir().unwrap();
    let url = url::Url::from_directory_path(dir.path().join("repo")).unwrap();
    let storage = Storage::open(&StorageOptions::new(url), true).unwrap();
    Case {
        storage,
        _dir: Some(dir),
    }
}

async fn s3_case() -> Case {
    let bucket = support::unique_name("lb");
    support::create_bucket(&bucket).await;
    let mut opts = StorageOptions::new(url::Url::parse(&format!("s3://{bucket}/team/repo")).unwrap());
    opts.endpoint = Some(url::Url::parse(&support::s3_endpoint()).unwrap());
    opts.access_key_id = Some(SecretString::from("testing"));
    opts.secret_access_key = Some(SecretString::from("testing"));
    Case {
        storage: Storage::open(&opts, false).unwrap(),
        _dir: None,
    }
}

impl Case {
    fn store(&self) -> Arc<dyn ObjectStore> {
        self.storage.store.clone()
    }
    async fn init(&self) -> Repository {
        Repository::init(self.store(), self.storage.url.as_str(), &[])
            .await
            .unwrap()
            .repository
    }
}

/// Deterministic, incompressible-ish bytes.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn write_snapshot(repo: &Repository, source: &str, bytes: Vec<u8>) -> Manifest {
    let summary = repo
        .write_stream(Cursor::new(bytes), &WriteOptions::default(), Arc::new(NoProgress))
        .await
        .unwrap();
    let now = jiff::Timestamp::now();
    let m = Manifest {
        version: MANIFEST_VERSION,
        id: new_snapshot_id(now),
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

async fn read_back(repo: &Repository, m: &Manifest) -> Result<Vec<u8>, RepoError> {
    let mut out = Vec::new();
    repo.read_stream(m, &mut out, &NoProgress).await?;
    Ok(out)
}

async fn init_refuses_an_existing_repository(case: Case) {
    let repo = case.init().await;
    let err = Repository::init(case.store(), "here", &[])
        .await
        .err()
        .expect("second init must fail");
    assert!(
        matches!(err, RepoError::AlreadyExists { ref id, .. } if id == repo.id()),
        "{err}"
    );
}

async fn stream_round_trip_and_dedup(case: Case) {
    let repo = case.init().await;
    let original = data(9 << 20, 7);
    let first = write_snapshot(&repo, "orders", original.clone()).await;
    assert!(first.stream.chunks.len() >= 2, "9 MiB must make several chunks");
    assert_eq!(read_back(&repo, &first).await.unwrap(), original);

    // Unchanged data: nothing new is stored.
    let second = write_snapshot(&repo, "orders", original.clone()).await;
    assert_eq!(second.stream.new_chunks, 0);
    assert_eq!(second.stream.new_bytes, 0);

    // A change in the middle: the chunks around it are new, the rest is shared.
    let mut changed = original.clone();
    changed[4 << 20] ^= 0xff;
    let third = write_snapshot(&repo, "orders", changed.clone()).await;
    assert!(
        third.stream.new_chunks >= 1 && (third.stream.new_chunks as usize) < third.stream.chunks.len(),
        "{:?}",
        third.stream.new_chunks
    );
    assert_eq!(read_back(&repo, &third).await.unwrap(), changed);

    let (listed, damaged) = repo.manifests(Some("orders")).await.unwrap();
    assert!(damaged.is_empty());
    assert_eq!(listed.len(), 3);
}

async fn commits_are_create_only(case: Case) {
    let repo = case.init().await;
    let m = write_snapshot(&repo, "orders", data(100_000, 3)).await;
    let path = StorePath::from(format!("snapshots/orders/{}.json", m.id).as_str());
    let stored = case.store().get(&path).await.unwrap().bytes().await.unwrap();
    // Another manifest under the same id is refused and replaces nothing.
    let other = Manifest {
        host: format!("{}-other", m.host),
        ..m.clone()
    };
    let err = repo.commit(&other).await.unwrap_err();
    assert!(matches!(err, RepoError::SnapshotExists { .. }), "{err}");
    // The same manifest again is a retried commit finding its own write: a success.
    repo.commit(&m).await.unwrap();
    assert_eq!(case.store().get(&path).await.unwrap().bytes().await.unwrap(), stored);
}

async fn verify_names_missing_and_corrupt_chunks(case: Case) {
    let repo = case.init().await;
    let m = write_snapshot(&repo, "orders", data(6 << 20, 11)).await;
    assert!(repo.verify(None, true, &NoProgress).await.unwrap().is_clean());

    let victim = lifeboat::repo::ChunkId::parse(&m.stream.chunks[0].id)
        .unwrap()
        .object_path();
    let path = StorePath::from(victim.as_str());
    let mut stored = case.store().get(&path).await.unwrap().bytes().await.unwrap().to_vec();
    let mid = stored.len() / 2;
    stored[mid] ^= 0x01;
    case.store().put(&path, PutPayload::from(stored)).await.unwrap();

    let quick = repo.verify(None, false, &NoProgress).await.unwrap();
    assert!(quick.is_clean(), "presence checks cannot see a flipped byte");
    let full = repo.verify(None, true, &NoProgress).await.unwrap();
    assert_eq!(full.problems.len(), 1, "{:?}", full.problems);
    assert_eq!(full.problems[0].kind, ProblemKind::CorruptChunk);
    assert!(
        full.problems[0].object.ends_with(&victim),
        "{}",
        full.problems[0].object
    );
    assert_eq!(full.problems[0].snapshots, vec![m.id.clone()]);
    let err = read_back(&repo, &m).await.unwrap_err();
    assert!(err.to_string().contains(&victim), "{err}");

    case.store().delete(&path).await.unwrap();
    let quick = repo.verify(Some(&m.id), false, &NoProgress).await.unwrap();
    assert_eq!(quick.problems.len(), 1);
    assert_eq!(quick.problems[0].kind, ProblemKind::MissingChunk);
    assert!(matches!(
        read_back(&repo, &m).await.unwrap_err(),
        RepoError::Missing { .. }
    ));
}

async fn verify_names_a_truncated_manifest(case: Case) {
    let repo = case.init().await;
    let m = write_snapshot(&repo, "orders", data(200_000, 5)).await;
    let path = StorePath::from(format!("snapshots/orders/{}.json", m.id));
    let bytes = case.store().get(&path).await.unwrap().bytes().await.unwrap();
    case.store()
        .put(&path, PutPayload::from(bytes.slice(..bytes.len() / 2)))
        .await
        .unwrap();
    let report = repo.verify(None, false, &NoProgress).await.unwrap();
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].kind, ProblemKind::CorruptManifest);
    assert!(report.problems[0].object.contains(&m.id));
}

async fn unknown_format_version_is_refused(case: Case) {
    let config = serde_json::json!({"format": "lifeboat-repository", "version": 99, "id": "x"});
    case.store()
        .put(
            &StorePath::from("lifeboat.repo.json"),
            PutPayload::from(config.to_string().into_bytes()),
        )
        .await
        .unwrap();
    let err = Repository::open(case.store(), "here", "offsite", Keys::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, RepoError::UnsupportedVersion { found: 99, .. }), "{err}");
    assert!(err.to_string().contains("version 99"));
}

async fn encrypted_repository_needs_only_recipients_to_write(case: Case) {
    let identity = age::x25519::Identity::generate();
    let created = Repository::init(case.store(), "here", &[identity.to_public()])
        .await
        .unwrap();
    let key = created.address_key.expect("encrypted repositories have an address key");
    // The backup side: public recipient and address key, no identity.
    let writer = Repository::open(
        case.store(),
        "here",
        "r",
        Keys {
            recipients: vec![identity.to_public()],
            identity: None,
            address_key: Some(key),
        },
    )
    .await
    .unwrap();
    let plain = b"customer 42 booked car 7 ".repeat(40_000);
    let m = write_snapshot(&writer, "orders", plain.clone()).await;
    // Names are keyed, not plain SHA-256, and payloads do not contain the plaintext.
    let sha = lifeboat::repo::Addressing::Sha256
        .id_of(&plain[..m.stream.chunks[0].size as usize])
        .to_hex();
    assert_ne!(m.stream.chunks[0].id, sha);
    let path = lifeboat::repo::ChunkId::parse(&m.stream.chunks[0].id)
        .unwrap()
        .object_path();
    let stored = case
        .store()
        .get(&StorePath::from(path.as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(!stored.windows(11).any(|w| w == b"customer 42"));
    assert!(matches!(
        read_back(&writer, &m).await.unwrap_err(),
        RepoError::IdentityRequired { .. }
    ));
    // The restore side: the identity alone unwraps the address key from the repository.
    let reader = Repository::open(
        case.store(),
        "here",
        "r",
        Keys {
            recipients: vec![],
            identity: Some(identity),
            address_key: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(read_back(&reader, &m).await.unwrap(), plain);
    assert!(reader.verify(None, true, &NoProgress).await.unwrap().is_clean());
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(#[tokio::test(flavor = "multi_thread")] async fn $name() { super::$name(super::local_case().await).await })*
        }
        mod s3 {
            $(#[tokio::test(flavor = "multi_thread")] async fn $name() { super::$name(super::s3_case().await).await })*
        }
    };
}

suite!(
    init_refuses_an_existing_repository,
    stream_round_trip_and_dedup,
    commits_are_create_only,
    verify_names_missing_and_corrupt_chunks,
    verify_names_a_truncated_manifest,
    unknown_format_version_is_refused,
    encrypted_repository_needs_only_recipients_to_write,
);
