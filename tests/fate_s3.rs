//! S3 evidence for the shared-fate rules, against a real S3 protocol server (moto): the shared test
//! server for plain cases, a private one with IAM enforcement switched on for policy cases.

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, ChecksumAlgorithm, DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled,
    ObjectLockRetentionMode, ObjectLockRule, VersioningConfiguration,
};
use lifeboat::config::{RepositoryConfig, Secret, SecretRef};
use lifeboat::fate::evidence::{ObjectLock, ProbeOutcome, ProbeResult, Versioning};
use lifeboat::fate::s3;
use support::s3::{PrivateS3, all_but, client, iam_user};

/// The shared server accepts any key until a test switches enforcement on (only private ones do).
const ANY_KEY: &str = "testing";
const ANY_SECRET: &str = "testing-secret";

/// A repository config whose keys live in files (mode 600) for as long as the value lives.
struct Repo {
    config: RepositoryConfig,
    _secrets: tempfile::TempDir,
}

fn repo(endpoint: &str, bucket: &str, key_id: &str, secret: &str) -> Repo {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, value: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, value).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        SecretRef::File(path)
    };
    let config = RepositoryConfig {
        name: "offsite".into(),
        url: url::Url::parse(&format!("s3://{bucket}/lifeboat")).unwrap(),
        endpoint: Some(url::Url::parse(endpoint).unwrap()),
        region: None,
        access_key_id: Some(file("key-id", key_id)),
        secret_access_key: Some(file("secret", secret)),
        encryption: None,
    };
    Repo { config, _secrets: dir }
}

enum Kind {
    Plain,
    Versioned,
    Suspended,
    /// Object Lock with a default retention rule (days or years).
    Locked(ObjectLockRetentionMode, Option<i32>, Option<i32>),
    /// Object Lock enabled, no default rule.
    LockedWithoutRule,
}

async fn bucket(admin: &aws_sdk_s3::Client, kind: Kind) -> String {
    let name = support::unique_name("lbfate");
    let locked = matches!(kind, Kind::Locked(..) | Kind::LockedWithoutRule);
    admin
        .create_bucket()
        .bucket(&name)
        .object_lock_enabled_for_bucket(locked)
        .send()
        .await
        .unwrap();
    let versioning = |status| VersioningConfiguration::builder().status(status).build();
    match kind {
        Kind::Plain | Kind::LockedWithoutRule => {}
        Kind::Versioned => {
            admin
                .put_bucket_versioning()
                .bucket(&name)
                .versioning_configuration(versioning(BucketVersioningStatus::Enabled))
                .send()
                .await
                .unwrap();
        }
        Kind::Suspended => {
            for status in [BucketVersioningStatus::Enabled, BucketVersioningStatus::Suspended] {
                admin
                    .put_bucket_versioning()
                    .bucket(&name)
                    .versioning_configuration(versioning(status))
                    .send()
                    .await
                    .unwrap();
            }
        }
        Kind::Locked(mode, days, years) => {
            let retention = DefaultRetention::builder()
                .mode(mode)
                .set_days(days)
                .set_years(years)
                .build();
            let config = ObjectLockConfiguration::builder()
                .object_lock_enabled(ObjectLockEnabled::Enabled)
                .rule(ObjectLockRule::builder().default_retention(retention).build())
                .build();
            admin
                .put_object_lock_configuration()
                .bucket(&name)
                .object_lock_configuration(config)
                .send()
                .await
                .unwrap();
        }
    }
    name
}

/// Objects a repository holds, inside and outside its prefix, that the probe must leave alone.
async fn seed(admin: &aws_sdk_s3::Client, bucket: &str) {
    for key in [
        "lifeboat/lifeboat.repo.json",
        "lifeboat/chunks/ab/abcdef",
        "lifeboat/snapshots/orders/1.json",
        "lifeboat/probesque.json",
        "other-app/data.bin",
    ] {
        put(admin, bucket, key, format!("content of {key}").as_bytes()).await;
    }
}

async fn put(admin: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &[u8]) {
    admin
        .put_object()
        .bucket(bucket)
        .key(key)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {}", aws_sdk_s3::error::DisplayErrorContext(e)));
}

/// Every version and delete marker in the bucket: (key, version id, ETag or "delete marker").
async fn versions(admin: &aws_sdk_s3::Client, bucket: &str) -> BTreeSet<(String, String, String)> {
    let out = admin.list_object_versions().bucket(bucket).send().await.unwrap();
    assert_ne!(out.is_truncated(), Some(true), "the test buckets are small");
    let mut all = BTreeSet::new();
    for v in out.versions() {
        all.insert((
            v.key().unwrap().to_owned(),
            v.version_id().unwrap_or("null").to_owned(),
            v.e_tag().unwrap_or_default().to_owned(),
        ));
    }
    for m in out.delete_markers() {
        all.insert((
            m.key().unwrap().to_owned(),
            m.version_id().unwrap_or("null").to_owned(),
            "delete marker".to_owned(),
        ));
    }
    all
}

fn outside_probes(all: &BTreeSet<(String, String, String)>) -> BTreeSet<(String, String, String)> {
    all.iter()
        .filter(|v| !v.0.starts_with("lifeboat/probes/"))
        .cloned()
        .collect()
}

fn names(result: &ProbeResult) -> Vec<(&str, bool)> {
    result.attempts.iter().map(|a| (a.name.as_str(), a.accepted)).collect()
}

async fn bytes_of(admin: &aws_sdk_s3::Client, bucket: &str, key: &str, version: &str) -> Vec<u8> {
    let out = admin
        .get_object()
        .bucket(bucket)
        .key(key)
        .version_id(version)
        .send()
        .await
        .unwrap();
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

// --- bucket settings -------------------------------------------------------------------------

#[tokio::test]
async fn a_plain_bucket_has_versioning_off_and_no_object_lock() {
    let endpoint = support::s3_endpoint();
    let admin = client(&endpoint, ANY_KEY, ANY_SECRET);
    let name = bucket(&admin, Kind::Plain).await;
    let evidence = s3::bucket_evidence(&repo(&endpoint, &name, ANY_KEY, ANY_SECRET).config).await;
    assert_eq!(evidence.unreadable, Vec::<String>::new());
    assert_eq!(evidence.repository, "offsite");
    assert_eq!(evidence.bucket, name);
    assert_eq!(evidence.endpoint.as_deref(), Some(endpoint.as_str()));
    assert_eq!(evidence.region.as_deref(), Some("us-east-1"));
    assert_eq!(evidence.versioning, Versioning::Off);
    assert_eq!(evidence.object_lock, None);
    assert!(evidence.caller.is_some_and(|c| !c.arn.is_empty()));
}

#[tokio::test]
async fn versioning_is_read_as_enabled_or_suspended() {
    let endpoint = support::s3_endpoint();
    let admin = client(&endpoint, ANY_KEY, ANY_SECRET);
    for (kind, want) in [
        (Kind::Versioned, Versioning::Enabled),
        (Kind::Suspended, Versioning::Suspended),
    ] {
        let name = bucket(&admin, kind).await;
        let evidence = s3::bucket_evidence(&repo(&endpoint, &name, ANY_KEY, ANY_SECRET).config).await;
        assert_eq!(evidence.unreadable, Vec::<String>::new());
        assert_eq!(evidence.versioning, want);
        assert_eq!(evidence.object_lock, None);
    }
}

#[tokio::test]
async fn object_lock_mode_and_default_retention_are_read() {
    let endpoint = support::s3_endpoint();
    let admin = client(&endpoint, ANY_KEY, ANY_SECRET);
    let cases = [
        (
            Kind::Locked(ObjectLockRetentionMode::Governance, Some(1), None),
            ObjectLock {
                mode: Some("GOVERNANCE".into()),
                default_retention_days: Some(1),
            },
        ),
        (
            Kind::Locked(ObjectLockRetentionMode::Compliance, None, Some(2)),
            ObjectLock {
                mode: Some("COMPLIANCE".into()),
                default_retention_days: Some(730),
            },
        ),
        (Kind::LockedWithoutRule, ObjectLock::default()),
    ];
    for (kind, want) in cases {
        let name = bucket(&admin, kind).await;
        let evidence = s3::bucket_evidence(&repo(&endpoint, &name, ANY_KEY, ANY_SECRET).config).await;
        assert_eq!(evidence.unreadable, Vec::<String>::new());
        assert_eq!(evidence.object_lock, Some(want));
        assert_eq!(
            evidence.versioning,
            Versioning::Enabled,
            "Object Lock turns versioning on"
        );
    }
}

/// A repository that names no keys uses the SDK's default chain (here: the environment that
/// `scripts/s3-server env` exports).
#[tokio::test]
async fn without_keys_in_the_config_the_default_chain_is_used() {
    let endpoint = support::s3_endpoint();
    assert!(
        std::env::var_os("AWS_ACCESS_KEY_ID").is_some(),
        "export the S3 test server's env (eval \"$(scripts/s3-server env)\")"
    );
    let admin = client(&endpoint, ANY_KEY, ANY_SECRET);
    let name = bucket(&admin, Kind::Versioned).await;
    let mut config = repo(&endpoint, &name, ANY_KEY, ANY_SECRET).config;
    config.access_key_id = None;
    config.secret_access_key = None;
    let evidence = s3::bucket_evidence(&config).await;
    assert_eq!(evidence.unreadable, Vec::<String>::new());
    assert_eq!(evidence.versioning, Versioning::Enabled);
}

// --- caller identity -------------------------------------------------------------------------

#[tokio::test]
async fn different_users_have_different_identities_and_one_key_always_the_same() {
    let endpoint = support::s3_endpoint();
    let ep = url::Url::parse(&endpoint).unwrap();
    let (alice, bob) = (support::unique_name("alice"), support::unique_name("bob"));
    let (alice_key, alice_secret) = iam_user(&endpoint, &alice, &all_but(&[]));
    let (bob_key, bob_secret) = iam_user(&endpoint, &bob, &all_but(&[]));
    let identity = |key: &str, secret: &str| {
        let (key, secret) = (Secret::from(key.to_owned()), Secret::from(secret.to_owned()));
        let ep = ep.clone();
        async move { s3::caller_identity(Some(&ep), None, &key, &secret).await.unwrap() }
    };
    let a1 = identity(&alice_key, &alice_secret).await;
    let a2 = identity(&alice_key, &alice_secret).await;
    let b = identity(&bob_key, &bob_secret).await;
    assert_eq!(a1, a2);
    assert_ne!(a1.arn, b.arn);
    assert!(a1.arn.ends_with(&format!("user/{alice}")), "{a1:?}");
    assert!(b.arn.ends_with(&format!("user/{bob}")), "{b:?}");
    assert!(!a1.account.is_empty() && !a1.user_id.is_empty(), "{a1:?}");

    // The bucket evidence names the repository credential's identity, the same one.
    let admin = client(&endpoint, ANY_KEY, ANY_SECRET);
    let name = bucket(&admin, Kind::Plain).await;
    let evidence = s3::bucket_evidence(&repo(&endpoint, &name, &alice_key, &alice_secret).config).await;
    assert_eq!(evidence.caller, Some(a1));
}

// --- the immutability probe ------------------------------------------------------------------

#[tokio::test]
async fn on_an_unversioned_bucket_a_full_access_key_destroys_the_canary_by_deleting_it() {
    let endpoint = support::s3_endpoint();
    let admin = client(&endpoint, ANY_KEY, ANY_SECRET);
    let name = bucket(&admin, Kind::Plain).await;
    seed(&admin, &name).await;
    let before = versions(&admin, &name).await;

    let result = s3::probe(&repo(&endpoint, &name, ANY_KEY, ANY_SECRET).config).await;
    assert_eq!(
        result.outcome,
        ProbeOutcome::Destroyed {
            by: "delete-by-key".into()
        },
        "{result:#?}"
    );
    assert_eq!(names(&result), [("delete-by-key", true)], "it stops at the destruction");
    assert!(result.canary.starts_with("lifeboat/probes/"), "{}", result.canary);
    assert_eq!(result.repository, "offsite");
    assert_eq!(
        versions(&admin, &name).await,
        before,
        "nothing but the canary was touched, and it is gone"
    );
}

#[tokio::test]
async fn on_a_versioned_bucket_the_delete_marker_destroys_nothing_and_the_version_delete_does() {
    let endpoint = support::s3_endpoint();
    let admin = client(&endpoint, ANY_KEY, ANY_SECRET);
    let name = bucket(&admin, Kind::Versioned).await;
    seed(&admin, &name).await;
    let before = versions(&admin, &name).await;

    let result = s3::probe(&repo(&endpoint, &name, ANY_KEY, ANY_SECRET).config).await;
    assert_eq!(
        result.outcome,
        ProbeOutcome::Destroyed {
            by: "delete-version".into()
        },
        "{result:#?}"
    );
    assert_eq!(names(&result), [("delete-by-key", true), ("delete-version", true)]);
    assert!(
        result.attempts[0].answer.contains("delete marker"),
        "{:?}",
        result.attempts[0]
    );
    assert_eq!(
        versions(&admin, &name).await,
        before,
        "the probe removes its delete marker and touches nothing else"
    );
}

#[tokio::test]
async fn on_a_compliance_locked_bucket_the_canary_survives_every_attempt() {
    let endpoint = support::s3_endpoint();
    let admin = client(&endpoint, ANY_KEY, ANY_SECRET);
    let name = bucket(&admin, Kind::Locked(ObjectLockRetentionMode::Compliance, Some(1), None)).await;
    seed(&admin, &name).await;
    let before = versions(&admin, &name).await;

    let result = s3::probe(&repo(&endpoint, &name, ANY_KEY, ANY_SECRET).config).await;
    assert_eq!(result.outcome, ProbeOutcome::Survived, "{result:#?}");
    assert_eq!(
        names(&result),
        [
            ("delete-by-key", true),
            ("delete-version", false),
            ("overwrite", true),
            ("delete-version-bypassing-governance", false)
        ]
    );
    for refused in [&result.attempts[1], &result.attempts[3]] {
        assert!(refused.answer.starts_with("AccessDenied"), "{refused:?}");
    }

    let after = versions(&admin, &name).await;
    assert_eq!(outside_probes(&after), before, "only the canary was touched");
    let canary: Vec<_> = after.iter().filter(|v| v.0 == result.canary).collect();
    assert_eq!(
        canary.len(),
        2,
        "the locked original and its overwrite stay, the delete marker is tidied away: {canary:?}"
    );
    let mut contents = Vec::new();
    for (key, version, _) in &canary {
        contents.push(String::from_utf8(bytes_of(&admin, &name, key, version).await).unwrap());
    }
    contents.sort();
    assert!(
        contents[0].starts_with("lifeboat immutability probe\n"),
        "the original is whole: {contents:?}"
    );
    assert!(contents[1].starts_with("lifeboat immutability probe: overwritten\n"));
}

/// Governance retention is a lock its holder may lift: a key allowed to bypass it (here, one with every
/// permission) destroys the canary, and the probe names the bypass.
#[tokio::test]
async fn a_governance_lock_does_not_stop_a_key_that_may_bypass_it() {
    let endpoint = support::s3_endpoint();
    let admin = client(&endpoint, ANY_KEY, ANY_SECRET);
    let name = bucket(&admin, Kind::Locked(ObjectLockRetentionMode::Governance, Some(1), None)).await;
    let result = s3::probe(&repo(&endpoint, &name, ANY_KEY, ANY_SECRET).config).await;
    assert_eq!(
        result.outcome,
        ProbeOutcome::Destroyed {
            by: "delete-version-bypassing-governance".into()
        },
        "{result:#?}"
    );
    assert!(
        !result.attempts[1].accepted,
        "the plain version delete is refused: {result:#?}"
    );
}

/// The everyday writer key may not delete (`s3:DeleteObject*` denied). On an unversioned bucket that
/// is not enough: the overwrite destroys the original bytes, and the probe must say so. On a locked
/// bucket the same key cannot destroy anything.
#[tokio::test]
async fn a_key_that_may_not_delete_still_destroys_by_overwriting_unless_the_bucket_is_locked() {
    let server = PrivateS3::start();
    let endpoint = server.endpoint();
    let (admin_key, admin_secret) = iam_user(&endpoint, "admin", &all_but(&[]));
    let (writer_key, writer_secret) = iam_user(&endpoint, "writer", &all_but(&["s3:DeleteObject*"]));
    let admin = client(&endpoint, &admin_key, &admin_secret);
    let plain = bucket(&admin, Kind::Plain).await;
    let locked = bucket(&admin, Kind::Locked(ObjectLockRetentionMode::Governance, Some(1), None)).await;
    seed(&admin, &plain).await;
    seed(&admin, &locked).await;
    server.enforce_iam();

    let before = versions(&admin, &plain).await;
    let result = s3::probe(&repo(&endpoint, &plain, &writer_key, &writer_secret).config).await;
    assert_eq!(
        result.outcome,
        ProbeOutcome::Destroyed { by: "overwrite".into() },
        "{result:#?}"
    );
    assert_eq!(
        names(&result),
        [("delete-by-key", false), ("delete-version", false), ("overwrite", true)]
    );
    for refused in &result.attempts[..2] {
        assert!(refused.answer.starts_with("AccessDenied"), "{refused:?}");
    }
    let after = versions(&admin, &plain).await;
    assert_eq!(
        outside_probes(&after),
        outside_probes(&before),
        "only the canary was touched"
    );

    let before = versions(&admin, &locked).await;
    let result = s3::probe(&repo(&endpoint, &locked, &writer_key, &writer_secret).config).await;
    assert_eq!(result.outcome, ProbeOutcome::Survived, "{result:#?}");
    assert_eq!(
        names(&result),
        [
            ("delete-by-key", false),
            ("delete-version", false),
            ("overwrite", true),
            ("delete-version-bypassing-governance", false)
        ]
    );
    assert_eq!(outside_probes(&versions(&admin, &locked).await), before);
}

/// A refused read is recorded, not fatal; a wrong secret makes every call unreadable, and no
/// message shows the secret.
#[tokio::test]
async fn refusals_are_recorded_and_never_show_the_secret() {
    let server = PrivateS3::start();
    let endpoint = server.endpoint();
    let user = "no-versioning-reader";
    let (key, secret) = iam_user(&endpoint, user, &all_but(&["s3:GetBucketVersioning"]));
    let admin = client(&endpoint, &key, &secret);
    let name = bucket(&admin, Kind::Locked(ObjectLockRetentionMode::Governance, Some(3), None)).await;
    server.enforce_iam();

    let evidence = s3::bucket_evidence(&repo(&endpoint, &name, &key, &secret).config).await;
    assert_eq!(evidence.unreadable.len(), 1, "{:?}", evidence.unreadable);
    let entry = &evidence.unreadable[0];
    assert!(entry.starts_with("GetBucketVersioning: AccessDenied"), "{entry}");
    assert!(entry.contains("fix: allow `s3:GetBucketVersioning`"), "{entry}");
    assert_eq!(
        evidence.object_lock,
        Some(ObjectLock {
            mode: Some("GOVERNANCE".into()),
            default_retention_days: Some(3)
        })
    );
    assert!(
        evidence
            .caller
            .as_ref()
            .is_some_and(|c| c.arn.ends_with("user/no-versioning-reader")),
        "{:?}",
        evidence.caller
    );

    let wrong_secret = "wrong-secret-d41d8cd98f00b204e9800998ecf8427e";
    let wrong = repo(&endpoint, &name, &key, wrong_secret);
    let evidence = s3::bucket_evidence(&wrong.config).await;
    let calls: Vec<&str> = evidence
        .unreadable
        .iter()
        .map(|e| e.split(':').next().unwrap())
        .collect();
    assert_eq!(
        calls,
        ["GetBucketVersioning", "GetObjectLockConfiguration", "GetCallerIdentity"],
        "{:?}",
        evidence.unreadable
    );
    assert_eq!(evidence.caller, None);
    let probe = s3::probe(&wrong.config).await;
    assert!(
        matches!(&probe.outcome, ProbeOutcome::CouldNotRun { reason } if reason.contains("could not be written")),
        "{probe:#?}"
    );
    let err = s3::caller_identity(
        Some(&url::Url::parse(&endpoint).unwrap()),
        None,
        &Secret::from(key.clone()),
        &Secret::from(wrong_secret.to_owned()),
    )
    .await
    .unwrap_err();
    for text in [
        format!("{evidence:?}"),
        serde_json::to_string(&evidence).unwrap(),
        format!("{probe:?}"),
        err,
    ] {
        assert!(!text.contains(wrong_secret), "{text}");
        assert!(!text.contains(&secret), "{text}");
    }
}
