//! The immutability probe: can the repository's own credential destroy a stored object?
//!
//! Settings can lie by omission (a bucket policy, an SCP, an IAM grant nobody remembers), so the
//! probe asks the store itself. It writes a canary, then tries, in order, to delete it by key,
//! to delete its version by version id, and to overwrite it, checking after each attempt whether
//! the canary's original bytes can still be read (by version id where the store gave one). What
//! counts is the bytes, not the answers: on a versioned bucket a delete by key is accepted and
//! destroys nothing (it adds a delete marker), and on an unversioned one a refused delete means
//! little if an overwrite is accepted. The probe stops at the first attempt that destroyed the
//! original and touches no object but its canary.
//!
//! The last attempt deletes the version again, asking to bypass governance retention
//! (`x-amz-bypass-governance-retention`): on a GOVERNANCE-mode bucket a credential granted
//! `s3:BypassGovernanceRetention` can delete locked versions, and a lock its own writer can lift
//! protects nothing against that writer. COMPLIANCE mode, or a credential without that permission,
//! survives it.

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;

use super::client::{self, Target, answer, fix, is_not_found};
use crate::config::RepositoryConfig;
use crate::fate::evidence::{ProbeAttempt, ProbeOutcome, ProbeResult};

/// The folder, under the repository's prefix, that holds canaries.
pub const PROBES_DIR: &str = "probes";
/// The attempts' names, as [`ProbeAttempt::name`] and [`ProbeOutcome::Destroyed`] give them.
pub const DELETE_BY_KEY: &str = "delete-by-key";
pub const DELETE_VERSION: &str = "delete-version";
pub const OVERWRITE: &str = "overwrite";
pub const DELETE_VERSION_BYPASSING_GOVERNANCE: &str = "delete-version-bypassing-governance";

/// Writes a canary under `<prefix>/probes/` and tries to destroy it with the repository's own
/// credential; see the module docs. Never fails: a canary that cannot be written, or whose fate
/// cannot be read, gives [`ProbeOutcome::CouldNotRun`] with the reason.
pub async fn probe(repo: &RepositoryConfig) -> ProbeResult {
    let target = match client::connect(repo).await {
        Ok(target) => target,
        Err(reason) => return could_not_run(repo, String::new(), reason),
    };
    let key = canary_key(&target.prefix);
    let canary = match Canary::write(&target, &repo.name, key.clone()).await {
        Ok(canary) => canary,
        Err(reason) => return could_not_run(repo, key, reason),
    };
    match canary.original_readable().await {
        Readable::Yes => {}
        Readable::Gone => {
            let reason = format!(
                "the canary {key} was written but could not be read back; fix: check that the store and the \
                 repository's credential allow reading what was just written (s3:GetObject, s3:GetObjectVersion)"
            );
            return could_not_run(repo, key, reason);
        }
        Readable::Unknown(why) => {
            let reason = format!(
                "the canary {key} was written but reading it back failed: {why}; fix: allow s3:GetObject and \
                 s3:GetObjectVersion to the repository's credential"
            );
            return could_not_run(repo, key, reason);
        }
    }

    let mut attempts = Vec::new();
    let mut leftovers = Vec::new();
    let mut outcome = ProbeOutcome::Survived;
    for step in [
        Step::DeleteByKey,
        Step::DeleteVersion,
        Step::Overwrite,
        Step::DeleteVersionBypassingGovernance,
    ] {
        let name = step.name();
        let (attempt, added_version) = canary.attempt(step).await;
        tracing::debug!(
            repository = %repo.name,
            canary = %key,
            attempt = name,
            accepted = attempt.accepted,
            answer = %attempt.answer,
            "probe attempt"
        );
        attempts.push(attempt);
        leftovers.extend(added_version);
        match canary.original_readable().await {
            Readable::Yes => {}
            Readable::Gone => {
                outcome = ProbeOutcome::Destroyed { by: name.to_owned() };
                break;
            }
            Readable::Unknown(why) => {
                outcome = ProbeOutcome::CouldNotRun {
                    reason: format!(
                        "after the {name} attempt, whether the canary {key} survived could not be read: {why}; \
                         fix: allow s3:GetObject and s3:GetObjectVersion to the repository's credential"
                    ),
                };
                break;
            }
        }
    }
    canary.tidy(&leftovers).await;
    tracing::info!(repository = %repo.name, canary = %key, outcome = ?outcome, "immutability probe done");
    ProbeResult {
        repository: repo.name.clone(),
        canary: key,
        outcome,
        attempts,
    }
}

fn could_not_run(repo: &RepositoryConfig, canary: String, reason: String) -> ProbeResult {
    tracing::warn!(repository = %repo.name, "the immutability probe could not run: {reason}");
    ProbeResult {
        repository: repo.name.clone(),
        canary,
        outcome: ProbeOutcome::CouldNotRun { reason },
        attempts: Vec::new(),
    }
}

/// `<prefix>/probes/<UTC timestamp>-<random>`: sorts by time, never collides.
fn canary_key(prefix: &str) -> String {
    let name = format!(
        "{}-{}",
        jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ"),
        hex::encode(rand::random::<[u8; 8]>())
    );
    if prefix.is_empty() {
        format!("{PROBES_DIR}/{name}")
    } else {
        format!("{prefix}/{PROBES_DIR}/{name}")
    }
}

/// The attempts, in the order the probe makes them.
#[derive(Clone, Copy)]
enum Step {
    DeleteByKey,
    DeleteVersion,
    Overwrite,
    DeleteVersionBypassingGovernance,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::DeleteByKey => DELETE_BY_KEY,
            Step::DeleteVersion => DELETE_VERSION,
            Step::Overwrite => OVERWRITE,
            Step::DeleteVersionBypassingGovernance => DELETE_VERSION_BYPASSING_GOVERNANCE,
        }
    }
}

enum Readable {
    /// The original bytes are there.
    Yes,
    /// The original version is gone, or its bytes were replaced.
    Gone,
    /// The store did not say (refused, unreachable); the reason.
    Unknown(String),
}

struct Canary<'a> {
    target: &'a Target,
    key: String,
    original: Vec<u8>,
    /// The version id the store gave the canary; `None` on an unversioned bucket.
    version: Option<String>,
}

impl<'a> Canary<'a> {
    async fn write(target: &'a Target, repository: &str, key: String) -> Result<Canary<'a>, String> {
        let original = format!(
            "lifeboat immutability probe\nrepository: {repository}\nobject: {key}\nwritten: {}\n\
             Tests whether the repository's credential can destroy a stored object. Safe to delete.\n",
            jiff::Timestamp::now()
        )
        .into_bytes();
        let written = put(target, &key, original.clone()).await.map_err(|e| {
            format!(
                "the canary {}/{key} could not be written: {}; fix: {}",
                target.bucket,
                answer(&e),
                fix(&e, "s3:PutObject")
            )
        })?;
        Ok(Canary {
            target,
            key,
            original,
            version: written.version_id().map(str::to_owned),
        })
    }

    async fn original_readable(&self) -> Readable {
        let mut get = self.target.s3.get_object().bucket(&self.target.bucket).key(&self.key);
        if let Some(version) = &self.version {
            get = get.version_id(version);
        }
        match get.send().await {
            Ok(out) => match out.body.collect().await {
                Ok(data) => {
                    if data.into_bytes() == self.original {
                        Readable::Yes
                    } else {
                        Readable::Gone
                    }
                }
                Err(e) => Readable::Unknown(format!("reading the body failed: {e}")),
            },
            // MethodNotAllowed: the version asked for is a delete marker now.
            Err(e) if is_not_found(&e) || e.code() == Some("MethodNotAllowed") => Readable::Gone,
            Err(e) => Readable::Unknown(answer(&e)),
        }
    }

    /// Runs one attempt; also gives the version it added to the bucket (a delete marker, the
    /// overwrite), for [`Canary::tidy`].
    async fn attempt(&self, step: Step) -> (ProbeAttempt, Option<String>) {
        let (bucket, key) = (&self.target.bucket, &self.key);
        let s3 = &self.target.s3;
        let (accepted, answer, added) = match step {
            Step::DeleteByKey => match s3.delete_object().bucket(bucket).key(key).send().await {
                Ok(out) if out.delete_marker() == Some(true) => {
                    let marker = out.version_id().map(str::to_owned);
                    let text = format!("OK: delete marker {} added", marker.as_deref().unwrap_or("(no id)"));
                    (true, text, marker)
                }
                Ok(_) => (true, "OK: deleted".to_owned(), None),
                Err(e) => (false, answer(&e), None),
            },
            Step::DeleteVersion => {
                // An unversioned object's version id is "null" to S3.
                let version = self.version.as_deref().unwrap_or("null");
                match s3
                    .delete_object()
                    .bucket(bucket)
                    .key(key)
                    .version_id(version)
                    .send()
                    .await
                {
                    Ok(_) => (true, format!("OK: version {version} deleted"), None),
                    Err(e) => (false, answer(&e), None),
                }
            }
            Step::DeleteVersionBypassingGovernance => {
                let version = self.version.as_deref().unwrap_or("null");
                match s3
                    .delete_object()
                    .bucket(bucket)
                    .key(key)
                    .version_id(version)
                    .bypass_governance_retention(true)
                    .send()
                    .await
                {
                    Ok(_) => (
                        true,
                        format!("OK: version {version} deleted, governance bypassed"),
                        None,
                    ),
                    Err(e) => (false, answer(&e), None),
                }
            }
            Step::Overwrite => {
                let mut bytes = b"lifeboat immutability probe: overwritten\n".to_vec();
                bytes.extend_from_slice(&self.original);
                match put(self.target, key, bytes).await {
                    Ok(out) => {
                        let version = out.version_id().map(str::to_owned);
                        let text = match &version {
                            Some(v) => format!("OK: written as version {v}"),
                            None => "OK: overwritten".to_owned(),
                        };
                        // On a suspended bucket the overwrite replaces the "null" version itself.
                        let added = version.filter(|v| Some(v) != self.version.as_ref());
                        (true, text, added)
                    }
                    Err(e) => (false, answer(&e), None),
                }
            }
        };
        let attempt = ProbeAttempt {
            name: step.name().to_owned(),
            accepted,
            answer,
        };
        (attempt, added)
    }

    /// Removes the versions the attempts added, where the store allows it; a locked overwrite
    /// stays until its retention lapses. Failures only matter to the bucket's tidiness.
    async fn tidy(&self, added: &[String]) {
        for version in added {
            let result = self
                .target
                .s3
                .delete_object()
                .bucket(&self.target.bucket)
                .key(&self.key)
                .version_id(version)
                .send()
                .await;
            if let Err(e) = result {
                tracing::debug!(canary = %self.key, version = %version, "probe leftover stays: {}", answer(&e));
            }
        }
    }
}

/// A PUT with a SHA-256 checksum, which Object Lock buckets require of every write.
async fn put(
    target: &Target,
    key: &str,
    bytes: Vec<u8>,
) -> Result<
    aws_sdk_s3::operation::put_object::PutObjectOutput,
    aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::put_object::PutObjectError>,
> {
    target
        .s3
        .put_object()
        .bucket(&target.bucket)
        .key(key)
        .content_type("text/plain; charset=utf-8")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .body(ByteStream::from(bytes))
        .send()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canaries_live_under_probes_and_never_collide() {
        let a = canary_key("lifeboat/orders");
        let b = canary_key("lifeboat/orders");
        assert!(a.starts_with("lifeboat/orders/probes/"), "{a}");
        assert_ne!(a, b);
        assert!(canary_key("").starts_with("probes/"));
    }
}
