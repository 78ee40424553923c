//! What the analyser knows about a repository's storage, as plain data: gathered from S3 by
//! `fate::s3` (bucket settings, the caller's identity, the immutability probe) and judged by the
//! rules. Kept free of any SDK type so that rules are testable on values alone.

use serde::Serialize;

/// A bucket's protection settings and who the repository's credential is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BucketEvidence {
    /// The repository's name in the config.
    pub repository: String,
    pub bucket: String,
    /// The endpoint URL for S3-compatible servers; `None` for AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub versioning: Versioning,
    /// `None` when the bucket has no Object Lock configuration.
    pub object_lock: Option<ObjectLock>,
    /// Who the repository's credential is (STS GetCallerIdentity); `None` if it could not be asked.
    pub caller: Option<CallerIdentity>,
    /// What could not be read, and why (e.g. "GetBucketVersioning: AccessDenied"): a rule that
    /// needs it reports that it could not judge, rather than guessing.
    pub unreadable: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Versioning {
    /// Never enabled.
    #[default]
    Off,
    Enabled,
    Suspended,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObjectLock {
    /// `GOVERNANCE` or `COMPLIANCE`; `None` when Object Lock is enabled without a default rule.
    pub mode: Option<String>,
    /// The default retention, in days (a rule given in years is converted at 365 days).
    pub default_retention_days: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallerIdentity {
    pub arn: String,
    pub account: String,
    pub user_id: String,
}

/// The immutability probe's outcome for one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeResult {
    pub repository: String,
    /// The canary's key under `probes/`.
    pub canary: String,
    pub outcome: ProbeOutcome,
    /// Every attempt, in order, with what the store answered.
    pub attempts: Vec<ProbeAttempt>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum ProbeOutcome {
    /// The canary's original bytes were still readable after every attempt.
    Survived,
    /// The original bytes are gone; `by` names the attempt that destroyed them.
    Destroyed { by: String },
    /// The probe could not run (the canary could not be written, say); `reason` says why.
    CouldNotRun { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeAttempt {
    /// `delete-by-key`, `delete-version` or `overwrite`.
    pub name: String,
    /// Whether the store accepted the request (an accepted request need not destroy anything: a
    /// plain delete on a versioned bucket only adds a delete marker).
    pub accepted: bool,
    /// The store's answer, e.g. "AccessDenied" or "204 No Content".
    pub answer: String,
}
