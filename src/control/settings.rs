//! Settings changed through the control plane, which take precedence over the config file: a
//! source's retention, disabled jobs, drills and alert routes, removed repositories. Lowering and
//! disabling happen only through an approved request; raising and enabling at once.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, CatalogError};
use crate::repo::retention::RetentionPolicy;

/// Who changed a setting, when, and under which approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub by: String,
    pub at: jiff::Timestamp,
    pub approval: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RetentionSetting {
    policy: RetentionPolicy,
    #[serde(flatten)]
    change: Change,
}

/// The settings in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// Per source.
    pub retention: BTreeMap<String, RetentionPolicy>,
    /// `drill:NAME`, `job:KIND:TARGET`, `route:NAME`.
    pub disabled: BTreeSet<String>,
    pub removed_repositories: BTreeSet<String>,
}

pub fn retention_key(source: &str) -> String {
    format!("retention:{source}")
}
pub fn disabled_key(target: &str) -> String {
    format!("disabled:{target}")
}
pub fn removed_key(repository: &str) -> String {
    format!("removed:{repository}")
}

impl Settings {
    pub async fn load(catalog: &dyn Catalog) -> Result<Settings, CatalogError> {
        let mut s = Settings::default();
        for (key, body) in catalog.settings().await? {
            if let Some(source) = key.strip_prefix("retention:") {
                let r: RetentionSetting = serde_json::from_str(&body)
                    .map_err(|e| CatalogError::corrupt("settings", format!("{key}: {e}")))?;
                s.retention.insert(source.to_string(), r.policy);
            } else if let Some(target) = key.strip_prefix("disabled:") {
                s.disabled.insert(target.to_string());
            } else if let Some(repo) = key.strip_prefix("removed:") {
                s.removed_repositories.insert(repo.to_string());
            }
        }
        Ok(s)
    }

    /// The retention that applies to a source: the control plane's, else the config's.
    pub fn retention_of(&self, source: &str, configured: Option<&RetentionPolicy>) -> Option<RetentionPolicy> {
        self.retention.get(source).cloned().or_else(|| configured.cloned())
    }

    /// Is the daemon's job `key` (`backup:orders`, `drill:orders-nightly`) switched off?
    pub fn job_disabled(&self, key: &str) -> bool {
        self.disabled.contains(&format!("job:{key}")) || (key.starts_with("drill:") && self.disabled.contains(key))
    }
}

pub async fn set_retention(
    catalog: &dyn Catalog,
    source: &str,
    policy: &RetentionPolicy,
    change: Change,
) -> Result<(), CatalogError> {
    let body = serde_json::to_string(&RetentionSetting {
        policy: policy.clone(),
        change,
    })
    .expect("a setting serialises");
    catalog.set_setting(&retention_key(source), Some(&body)).await
}

pub async fn set_flag(catalog: &dyn Catalog, key: &str, change: Option<Change>) -> Result<(), CatalogError> {
    let body = change.map(|c| serde_json::to_string(&c).expect("a setting serialises"));
    catalog.set_setting(key, body.as_deref()).await
}
