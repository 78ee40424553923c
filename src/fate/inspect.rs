//! How the analysis asks storage about itself: bucket settings, the immutability probe, and who a
//! cloud credential is. Behind a trait so that the S3 implementation (`fate::s3`, aws-sdk-s3 and
//! aws-sdk-sts) plugs in, and so that the rules can be driven with evidence values.

use async_trait::async_trait;

use super::evidence::{BucketEvidence, CallerIdentity, ProbeOutcome, ProbeResult};
use crate::config::{CloudIdentityConfig, RepositoryConfig};

/// Asked only about `s3://` repositories; file:// ones are judged from this host.
#[async_trait]
pub trait StorageInspector: Send + Sync {
    /// Versioning, Object Lock, and the caller identity of the repository's credential. What
    /// cannot be read goes into [`BucketEvidence::unreadable`].
    async fn bucket(&self, repo: &RepositoryConfig) -> BucketEvidence;

    /// Writes a canary under `probes/` and tries to destroy it with the repository's credential.
    async fn probe(&self, repo: &RepositoryConfig) -> ProbeResult;

    /// Who a source's `cloud_identity` is (STS GetCallerIdentity); `Err`: why it could not be asked.
    async fn cloud_identity(&self, identity: &CloudIdentityConfig) -> Result<CallerIdentity, String>;
}

/// Used where no storage inspection is available: every answer says so, and the rules that need
/// it report that they could not judge (an `info` finding) rather than guess.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoInspection;

const UNAVAILABLE: &str = "S3 inspection is not available in this build";

#[async_trait]
impl StorageInspector for NoInspection {
    async fn bucket(&self, repo: &RepositoryConfig) -> BucketEvidence {
        BucketEvidence {
            repository: repo.name.clone(),
            bucket: repo.url.host_str().unwrap_or_default().to_owned(),
            endpoint: repo.endpoint.as_ref().map(ToString::to_string),
            region: repo.region.clone(),
            unreadable: vec![UNAVAILABLE.to_owned()],
            ..BucketEvidence::default()
        }
    }

    async fn probe(&self, repo: &RepositoryConfig) -> ProbeResult {
        ProbeResult {
            repository: repo.name.clone(),
            canary: String::new(),
            outcome: ProbeOutcome::CouldNotRun {
                reason: UNAVAILABLE.to_owned(),
            },
            attempts: Vec::new(),
        }
    }

    async fn cloud_identity(&self, _identity: &CloudIdentityConfig) -> Result<CallerIdentity, String> {
        Err(UNAVAILABLE.to_owned())
    }
}
