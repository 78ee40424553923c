//! `control:`: the control plane's settings (approvals, TLS for the API).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// `control:`; every key has a default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlConfig {
    /// How long an approval request waits for its approvers before it expires. Default 24h.
    pub approval_ttl: Duration,
    /// Approvals a request needs, per environment of the sources it touches (the largest applies);
    /// environments not named need 1. E.g. `{ production: 2 }`.
    pub approvals: BTreeMap<String, u32>,
    /// HTTPS for the daemon's listener; plain HTTP when absent.
    pub tls: Option<TlsConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key (refused if group or others can read it).
    pub key_file: PathBuf,
}

impl Default for ControlConfig {
    fn default() -> ControlConfig {
        ControlConfig {
            approval_ttl: Duration::from_secs(24 * 3600),
            approvals: BTreeMap::new(),
            tls: None,
        }
    }
}

impl ControlConfig {
    /// Approvals needed for a request touching these environments.
    pub fn approvals_needed<'a>(&self, environments: impl IntoIterator<Item = &'a str>) -> u32 {
        environments
            .into_iter()
            .map(|e| self.approvals.get(e).copied().unwrap_or(1))
            .max()
            .unwrap_or(1)
            .max(1)
    }
}
