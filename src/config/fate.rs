//! The parts of the config that the shared-fate analysis reads (`crate::fate`): the `fate:`
//! section, and each source's `data_dir:` and `cloud_identity:`. Validated in `validate/fate.rs`.

use std::time::Duration;

use super::secret::SecretRef;
use crate::schedule::Schedule;

/// `fate:`; every key has a default, so a config without the section is analysed too.
#[derive(Clone, Debug, PartialEq)]
pub struct FateConfig {
    /// A source whose newest passing drill is older than this (or that never passed one) is
    /// `untested`. Default 8d: a weekly drill with a day of slack.
    pub untested_after: Duration,
    /// How long a bad backup may go unnoticed: retention and Object Lock periods shorter than
    /// this can lose the last good copy before anyone knows it is needed. Default 7d.
    pub detect_within: Duration,
    /// When the daemon runs the analysis; `None`: only at start.
    pub schedule: Option<Schedule>,
    /// Whether the daemon's scheduled analysis also runs the immutability probe on S3
    /// repositories. Default false.
    pub probe: bool,
}

impl Default for FateConfig {
    fn default() -> FateConfig {
        FateConfig {
            untested_after: Duration::from_secs(8 * 86_400),
            detect_within: Duration::from_secs(7 * 86_400),
            schedule: None,
            probe: false,
        }
    }
}

/// A source's `cloud_identity:`: a credential of the cloud account that runs the source's own
/// infrastructure (its VM, its volumes). Never used to change anything: the analysis only asks
/// who it is (STS GetCallerIdentity), to see whether the repository's credential is the same
/// identity, and compares the secrets themselves with the repository's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudIdentityConfig {
    pub access_key_id: SecretRef,
    pub secret_access_key: SecretRef,
    /// An STS-compatible endpoint (for S3-compatible clouds and test servers); `None` for AWS.
    pub endpoint: Option<url::Url>,
    pub region: Option<String>,
}
