//! S3 evidence for the shared-fate rules, read with the repository's own credential: the bucket's
//! versioning and Object Lock settings, who the credential is, and the immutability probe.
//!
//! object_store cannot read any of this, hence aws-sdk-s3 and aws-sdk-sts here. Nothing in this
//! module fails as a whole: a call that is refused or unanswered is recorded in
//! [`BucketEvidence::unreadable`] as `<Call>: <answer>; fix: ...`, where `<Call>` is one of
//! [`GET_BUCKET_VERSIONING`], [`GET_OBJECT_LOCK_CONFIGURATION`] and [`GET_CALLER_IDENTITY`], so a
//! rule can tell "off" from "could not tell". Errors and logs name secrets' sources, never values.
//!
//! # What the probe leaves behind
//!
//! The probe ([`probe`]) writes one canary of about a hundred bytes under `<prefix>/probes/` and
//! then tries to destroy it. Afterwards it removes what its own attempts added (delete markers, the
//! overwrite's version) where the store lets it. What the store refuses to delete stays: on an
//! Object Lock bucket the canary and its overwrite stay until the default retention lapses, and a
//! credential that may not delete leaves the canary in place. A lifecycle rule limited to
//! `<prefix>/probes/` may expire these; it must never cover the rest of the repository (chunks
//! are shared across snapshots of any age).

mod client;
mod probe;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{BucketVersioningStatus, ObjectLockEnabled};

use super::evidence::{BucketEvidence, CallerIdentity, ObjectLock, Versioning};
use crate::config::{RepositoryConfig, Secret};
use client::{Place, Target, answer, fix, is_not_found};

pub use probe::{DELETE_BY_KEY, DELETE_VERSION, DELETE_VERSION_BYPASSING_GOVERNANCE, OVERWRITE, PROBES_DIR, probe};

/// The call names that prefix [`BucketEvidence::unreadable`] entries.
pub const GET_BUCKET_VERSIONING: &str = "GetBucketVersioning";
pub const GET_OBJECT_LOCK_CONFIGURATION: &str = "GetObjectLockConfiguration";
pub const GET_CALLER_IDENTITY: &str = "GetCallerIdentity";

/// Reads the bucket's protection settings and the caller identity of the repository's credential.
///
/// Never fails: what cannot be read is listed in `unreadable` and the field keeps its default
/// (which a rule must then not trust).
pub async fn bucket_evidence(repo: &RepositoryConfig) -> BucketEvidence {
    let mut evidence = BucketEvidence {
        repository: repo.name.clone(),
        ..BucketEvidence::default()
    };
    let place = match Place::of(repo) {
        Ok(place) => place,
        Err(reason) => return not_asked(evidence, &reason),
    };
    evidence.bucket = place.bucket;
    evidence.endpoint = place.endpoint;
    evidence.region = Some(place.region);
    let target = match client::connect(repo).await {
        Ok(target) => target,
        Err(reason) => return not_asked(evidence, &reason),
    };
    let (versioning, object_lock, caller) = tokio::join!(
        read_versioning(&target),
        read_object_lock(&target),
        ask_identity(&target.sts)
    );
    let mut unreadable = Vec::new();
    match versioning {
        Ok(v) => evidence.versioning = v,
        Err(e) => unreadable.push(e),
    }
    match object_lock {
        Ok(lock) => evidence.object_lock = lock,
        Err(e) => unreadable.push(e),
    }
    match caller {
        Ok(identity) => evidence.caller = Some(identity),
        Err(e) => unreadable.push(e),
    }
    for entry in &unreadable {
        tracing::warn!(repository = %repo.name, "cannot read a bucket setting: {entry}");
    }
    evidence.unreadable = unreadable;
    evidence
}

fn not_asked(mut evidence: BucketEvidence, reason: &str) -> BucketEvidence {
    tracing::warn!(repository = %evidence.repository, "cannot inspect the bucket: {reason}");
    evidence.unreadable = [
        GET_BUCKET_VERSIONING,
        GET_OBJECT_LOCK_CONFIGURATION,
        GET_CALLER_IDENTITY,
    ]
    .iter()
    .map(|call| format!("{call}: not asked: {reason}"))
    .collect();
    evidence
}

async fn read_versioning(target: &Target) -> Result<Versioning, String> {
    let result = target.s3.get_bucket_versioning().bucket(&target.bucket).send().await;
    match result {
        Ok(out) => Ok(match out.status() {
            Some(BucketVersioningStatus::Enabled) => Versioning::Enabled,
            Some(BucketVersioningStatus::Suspended) => Versioning::Suspended,
            _ => Versioning::Off,
        }),
        Err(e) => {
            let success = e.raw_response().filter(|r| r.status().as_u16() == 200);
            if let Some(versioning) = success.and_then(|r| lenient_versioning(r.body().bytes())) {
                return Ok(versioning);
            }
            Err(format!(
                "{GET_BUCKET_VERSIONING}: {}; fix: {}",
                answer(&e),
                fix(&e, "s3:GetBucketVersioning")
            ))
        }
    }
}

/// Reads a successful GetBucketVersioning answer that the SDK refused for its root element's
/// name: some S3-compatible servers (moto 5.2) answer `<GetBucketVersioningResponse>` where S3
/// answers `<VersioningConfiguration>`, with the same `<Status>` inside. `None` for anything else.
fn lenient_versioning(body: Option<&[u8]>) -> Option<Versioning> {
    let text = std::str::from_utf8(body?).ok()?;
    let mut root = text.trim_start();
    if root.starts_with("<?") {
        root = root.split_once("?>")?.1.trim_start();
    }
    let name: String = root
        .strip_prefix('<')?
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    if !name.contains("Versioning") {
        return None;
    }
    let status = text
        .split_once("<Status>")
        .and_then(|(_, rest)| rest.split_once("</Status>"))
        .map(|(status, _)| status.trim());
    match status {
        None | Some("") => Some(Versioning::Off),
        Some("Enabled") => Some(Versioning::Enabled),
        Some("Suspended") => Some(Versioning::Suspended),
        Some(_) => None,
    }
}

/// `Ok(None)` when the bucket has no Object Lock configuration (the store says "not found").
async fn read_object_lock(target: &Target) -> Result<Option<ObjectLock>, String> {
    let out = match target
        .s3
        .get_object_lock_configuration()
        .bucket(&target.bucket)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) if e.code() == Some("ObjectLockConfigurationNotFoundError") || is_not_found(&e) => return Ok(None),
        Err(e) => {
            return Err(format!(
                "{GET_OBJECT_LOCK_CONFIGURATION}: {}; fix: {}",
                answer(&e),
                fix(&e, "s3:GetBucketObjectLockConfiguration")
            ));
        }
    };
    let Some(config) = out.object_lock_configuration() else {
        return Ok(None);
    };
    let retention = config.rule().and_then(|r| r.default_retention());
    let enabled = config.object_lock_enabled() == Some(&ObjectLockEnabled::Enabled);
    if !enabled && retention.is_none() {
        return Ok(None);
    }
    Ok(Some(ObjectLock {
        mode: retention.and_then(|r| r.mode()).map(|m| m.as_str().to_owned()),
        default_retention_days: retention.and_then(|r| retention_days(r.days(), r.years())),
    }))
}

/// A default retention in days; years count 365 days. Some servers send both fields with the
/// unused one at zero, so the two are added.
fn retention_days(days: Option<i32>, years: Option<i32>) -> Option<u32> {
    if days.is_none() && years.is_none() {
        return None;
    }
    let days = u64::try_from(days.unwrap_or(0)).unwrap_or(0);
    let years = u64::try_from(years.unwrap_or(0)).unwrap_or(0);
    u32::try_from(days + years * 365).ok()
}

/// Who the credential behind `endpoint`/`region` is, so that the rules can compare the
/// repository's identity with a source's cloud credential. `endpoint` is `None` for AWS; the
/// region defaults to us-east-1. The error names the call and the store's answer, never a secret.
pub async fn caller_identity(
    endpoint: Option<&url::Url>,
    region: Option<&str>,
    key_id: &Secret,
    secret: &Secret,
) -> Result<CallerIdentity, String> {
    ask_identity(&client::sts_client_for(endpoint, region, key_id, secret)).await
}

async fn ask_identity(sts: &aws_sdk_sts::Client) -> Result<CallerIdentity, String> {
    let out = sts.get_caller_identity().send().await.map_err(|e| {
        format!(
            "{GET_CALLER_IDENTITY}: {}; fix: {}",
            answer(&e),
            fix(&e, "sts:GetCallerIdentity")
        )
    })?;
    Ok(CallerIdentity {
        arn: out.arn().unwrap_or_default().to_owned(),
        account: out.account().unwrap_or_default().to_owned(),
        user_id: out.user_id().unwrap_or_default().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioning_answers_with_another_root_element_are_read() {
        let read = |xml: &str| lenient_versioning(Some(xml.as_bytes()));
        let moto = r#"<?xml version="1.0" encoding="utf-8"?>
<GetBucketVersioningResponse xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></GetBucketVersioningResponse>"#;
        assert_eq!(read(moto), Some(Versioning::Enabled));
        assert_eq!(
            read(r#"<GetBucketVersioningResponse xmlns="x"><Status>Suspended</Status></GetBucketVersioningResponse>"#),
            Some(Versioning::Suspended)
        );
        assert_eq!(
            read(r#"<?xml version="1.0"?><GetBucketVersioningResponse xmlns="x"/>"#),
            Some(Versioning::Off)
        );
        assert_eq!(read("<Error><Code>InternalError</Code></Error>"), None);
        assert_eq!(
            read("<VersioningConfiguration><Status>Sideways</Status></VersioningConfiguration>"),
            None
        );
        assert_eq!(lenient_versioning(None), None);
    }

    #[test]
    fn retention_in_days_or_years() {
        assert_eq!(retention_days(Some(7), None), Some(7));
        assert_eq!(retention_days(None, Some(2)), Some(730));
        assert_eq!(retention_days(Some(1), Some(0)), Some(1));
        assert_eq!(retention_days(Some(0), Some(1)), Some(365));
        assert_eq!(retention_days(None, None), None);
        assert_eq!(retention_days(Some(-3), None), Some(0));
    }

    fn repo(url: &str) -> RepositoryConfig {
        RepositoryConfig {
            name: "offsite".into(),
            url: url::Url::parse(url).unwrap(),
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            encryption: None,
        }
    }

    #[tokio::test]
    async fn a_repository_that_is_not_on_s3_is_not_asked_anything() {
        let evidence = bucket_evidence(&repo("file:///srv/backups")).await;
        assert_eq!(evidence.repository, "offsite");
        assert_eq!(evidence.unreadable.len(), 3, "{:?}", evidence.unreadable);
        assert!(
            evidence.unreadable[0].starts_with("GetBucketVersioning: not asked: repository `offsite` is not on S3")
        );
    }

    #[tokio::test]
    async fn a_secret_that_cannot_be_read_is_named_and_nothing_is_asked() {
        let mut r = repo("s3://bucket/prefix");
        r.endpoint = Some(url::Url::parse("http://127.0.0.1:9/").unwrap());
        r.access_key_id = Some(crate::config::SecretRef::Env("LIFEBOAT_TEST_UNSET_KEY_ID_7F3A".into()));
        r.secret_access_key = Some(crate::config::SecretRef::Env("LIFEBOAT_TEST_UNSET_SECRET_7F3A".into()));
        let evidence = bucket_evidence(&r).await;
        assert_eq!(evidence.bucket, "bucket");
        assert_eq!(evidence.endpoint.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(evidence.region.as_deref(), Some("us-east-1"));
        assert_eq!(evidence.caller, None);
        for entry in &evidence.unreadable {
            assert!(
                entry.contains("LIFEBOAT_TEST_UNSET_KEY_ID_7F3A") && entry.contains("fix:"),
                "{entry}"
            );
        }
        let probe = probe(&r).await;
        assert!(
            matches!(&probe.outcome, crate::fate::evidence::ProbeOutcome::CouldNotRun { reason } if reason.contains("LIFEBOAT_TEST_UNSET_KEY_ID_7F3A")),
            "{probe:?}"
        );
        assert!(probe.attempts.is_empty());
    }
}

/// The storage inspector the analysis uses: S3 itself, through the repository's (and the source's
/// cloud) credentials.
#[derive(Debug, Clone, Copy, Default)]
pub struct S3Inspector;

#[async_trait::async_trait]
impl super::StorageInspector for S3Inspector {
    async fn bucket(&self, repo: &RepositoryConfig) -> BucketEvidence {
        bucket_evidence(repo).await
    }

    async fn probe(&self, repo: &RepositoryConfig) -> super::evidence::ProbeResult {
        probe(repo).await
    }

    async fn cloud_identity(&self, identity: &crate::config::CloudIdentityConfig) -> Result<CallerIdentity, String> {
        let key_id = identity.access_key_id.resolve().map_err(|e| e.to_string())?;
        let secret = identity.secret_access_key.resolve().map_err(|e| e.to_string())?;
        caller_identity(identity.endpoint.as_ref(), identity.region.as_deref(), &key_id, &secret).await
    }
}
