//! The file as written: serde shapes with a source position on every value.
//!
//! Everything is optional here on purpose. Serde stops at the first error, so a missing
//! required key would hide every other problem; instead `validate` notices it and keeps
//! going. Unknown keys are still rejected by serde (`deny_unknown_fields`), which is what
//! gives us the list of allowed keys for the message.

use std::collections::HashMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub(crate) type S<T> = Spanned<T>;
/// A mapping whose keys are names (of a repository, of a source); keys keep their position
/// so problems with a name can point at it.
pub(crate) type Named<T> = HashMap<S<String>, S<T>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub state_dir: Option<S<String>>,
    #[serde(default)]
    pub drills_dir: Option<S<String>>,
    #[serde(default)]
    pub catalog: Option<S<RawCatalog>>,
    #[serde(default)]
    pub repositories: Option<S<Named<RawRepository>>>,
    #[serde(default)]
    pub sources: Option<S<Named<RawSource>>>,
    #[serde(default)]
    pub daemon: Option<S<RawDaemon>>,
    #[serde(default)]
    pub alerts: Option<S<RawAlerts>>,
    #[serde(default)]
    pub fate: Option<S<RawFate>>,
    #[serde(default)]
    pub control: Option<S<RawControl>>,
}

/// `control:`: approvals and the API's TLS.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawControl {
    #[serde(default)]
    pub approval_ttl: Option<S<String>>,
    #[serde(default)]
    pub approvals: Option<S<Named<u32>>>,
    #[serde(default)]
    pub tls: Option<S<RawTls>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub cert_file: S<String>,
    pub key_file: S<String>,
}

/// `fate:`: settings of the shared-fate analysis.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFate {
    #[serde(default)]
    pub untested_after: Option<S<String>>,
    #[serde(default)]
    pub detect_within: Option<S<String>>,
    #[serde(default)]
    pub schedule: Option<S<String>>,
    #[serde(default)]
    pub probe: Option<S<bool>>,
}

/// A source's `cloud_identity:`: the cloud credential of the source's own infrastructure.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCloudIdentity {
    #[serde(default)]
    pub access_key_id_env: Option<S<String>>,
    #[serde(default)]
    pub access_key_id_file: Option<S<String>>,
    #[serde(default)]
    pub secret_access_key_env: Option<S<String>>,
    #[serde(default)]
    pub secret_access_key_file: Option<S<String>>,
    #[serde(default)]
    pub endpoint: Option<S<String>>,
    #[serde(default)]
    pub region: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDaemon {
    #[serde(default)]
    pub listen: Option<S<String>>,
    #[serde(default)]
    pub timezone: Option<S<String>>,
    #[serde(default)]
    pub catch_up: Option<S<String>>,
    #[serde(default)]
    pub jitter: Option<S<String>>,
    #[serde(default)]
    pub shutdown_grace: Option<S<String>>,
    #[serde(default)]
    pub lease: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSchedules {
    #[serde(default)]
    pub backup: Option<S<String>>,
    #[serde(default)]
    pub verify: Option<S<String>>,
    #[serde(default)]
    pub prune: Option<S<String>>,
    #[serde(default)]
    pub copy: Option<S<String>>,
    #[serde(default)]
    pub timezone: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetention {
    #[serde(default)]
    pub keep_last: Option<S<u32>>,
    #[serde(default)]
    pub keep_hourly: Option<S<u32>>,
    #[serde(default)]
    pub keep_daily: Option<S<u32>>,
    #[serde(default)]
    pub keep_weekly: Option<S<u32>>,
    #[serde(default)]
    pub keep_monthly: Option<S<u32>>,
    #[serde(default)]
    pub keep_yearly: Option<S<u32>>,
    #[serde(default)]
    pub keep_within: Option<S<String>>,
    #[serde(default)]
    pub min_age: Option<S<String>>,
    #[serde(default)]
    pub grace: Option<S<String>>,
}

/// A URL that may carry a secret (a webhook, a healthchecks ping URL): from env or file only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecretUrl {
    #[serde(default)]
    pub url_env: Option<S<String>>,
    #[serde(default)]
    pub url_file: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPings {
    #[serde(default)]
    pub backup: Option<S<RawSecretUrl>>,
    #[serde(default)]
    pub verify: Option<S<RawSecretUrl>>,
    #[serde(default)]
    pub prune: Option<S<RawSecretUrl>>,
    #[serde(default)]
    pub copy: Option<S<RawSecretUrl>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlerts {
    #[serde(default)]
    pub reminder: Option<S<String>>,
    #[serde(default)]
    pub sinks: Option<S<Named<RawSink>>>,
    #[serde(default)]
    pub routes: Option<S<Named<RawRoute>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSink {
    #[serde(default)]
    pub kind: Option<S<String>>,
    #[serde(default)]
    pub url_env: Option<S<String>>,
    #[serde(default)]
    pub url_file: Option<S<String>>,
    /// PagerDuty: the Events API endpoint, for a proxy or a test server.
    #[serde(default)]
    pub endpoint: Option<S<String>>,
    #[serde(default)]
    pub routing_key_env: Option<S<String>>,
    #[serde(default)]
    pub routing_key_file: Option<S<String>>,
    /// Email: `smtp://host:port`.
    #[serde(default)]
    pub server: Option<S<String>>,
    #[serde(default)]
    pub tls: Option<S<String>>,
    #[serde(default)]
    pub username: Option<S<String>>,
    #[serde(default)]
    pub password_env: Option<S<String>>,
    #[serde(default)]
    pub password_file: Option<S<String>>,
    #[serde(default)]
    pub from: Option<S<String>>,
    #[serde(default)]
    pub to: Option<S<Vec<S<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    #[serde(default)]
    pub sinks: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    pub min_severity: Option<S<String>>,
    #[serde(default)]
    pub sources: Option<S<Vec<S<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCatalog {
    #[serde(default)]
    pub url_env: Option<S<String>>,
    #[serde(default)]
    pub url_file: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRepository {
    #[serde(default)]
    pub url: Option<S<String>>,
    #[serde(default)]
    pub endpoint: Option<S<String>>,
    #[serde(default)]
    pub region: Option<S<String>>,
    #[serde(default)]
    pub access_key_id_env: Option<S<String>>,
    #[serde(default)]
    pub access_key_id_file: Option<S<String>>,
    #[serde(default)]
    pub secret_access_key_env: Option<S<String>>,
    #[serde(default)]
    pub secret_access_key_file: Option<S<String>>,
    #[serde(default)]
    pub encryption: Option<S<RawEncryption>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEncryption {
    #[serde(default)]
    pub recipients: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    pub recipients_file: Option<S<String>>,
    #[serde(default)]
    pub identity_file: Option<S<String>>,
    #[serde(default)]
    pub identity_env: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSource {
    #[serde(default)]
    pub kind: Option<S<String>>,
    #[serde(default)]
    pub dsn: Option<S<String>>,
    #[serde(default)]
    pub password_env: Option<S<String>>,
    #[serde(default)]
    pub password_file: Option<S<String>>,
    #[serde(default)]
    pub environment: Option<S<String>>,
    #[serde(default)]
    pub repository: Option<S<String>>,
    #[serde(default)]
    pub pg_bin_dir: Option<S<String>>,
    #[serde(default)]
    pub schedule: Option<S<RawSchedules>>,
    #[serde(default)]
    pub retention: Option<S<RawRetention>>,
    #[serde(default)]
    pub pings: Option<S<RawPings>>,
    /// Repositories the daemon's `copy` job copies this source's snapshots to.
    #[serde(default)]
    pub copy_to: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    pub data_dir: Option<S<String>>,
    #[serde(default)]
    pub cloud_identity: Option<S<RawCloudIdentity>>,
}
