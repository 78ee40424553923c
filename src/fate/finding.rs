//! What the analysis reports: one [`Finding`] per rule that fired, for one source and/or one
//! repository.

use std::fmt;

use serde::Serialize;

use super::rules::RuleId;

/// How bad a finding is. `Critical` means "these backups are not backups": `lifeboat fate` exits 1
/// and the daemon alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something could not be judged, or is worth knowing.
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One way a backup would die together with its data, with what showed it and what to do.
///
/// `evidence` names concrete things (paths, devices, users, env var names, identities) and never
/// a secret's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: RuleId,
    pub severity: Severity,
    /// The source concerned; `None` for findings about a repository alone.
    pub source: Option<String>,
    /// The repository concerned; `None` for findings about a source as a whole.
    pub repository: Option<String>,
    pub evidence: String,
    pub fix: String,
}

impl Finding {
    /// A stable identity for de-duplicating alerts: the same rule on the same pair is the same
    /// finding however its evidence is worded today.
    pub fn key(&self) -> String {
        format!(
            "{}:{}:{}",
            self.rule,
            self.source.as_deref().unwrap_or("-"),
            self.repository.as_deref().unwrap_or("-")
        )
    }

    /// `source → repository`, `source`, or `repository`, for tables and alert titles.
    pub fn subject(&self) -> String {
        match (&self.source, &self.repository) {
            (Some(s), Some(r)) => format!("{s} → {r}"),
            (Some(s), None) => s.clone(),
            (None, Some(r)) => r.clone(),
            (None, None) => "-".into(),
        }
    }
}

/// Counts by severity, for the summary line and the `lifeboat_fate_findings` metric.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub critical: u64,
    pub warning: u64,
    pub info: u64,
}

impl Counts {
    pub fn of(findings: &[Finding]) -> Counts {
        let mut c = Counts::default();
        for f in findings {
            match f.severity {
                Severity::Critical => c.critical += 1,
                Severity::Warning => c.warning += 1,
                Severity::Info => c.info += 1,
            }
        }
        c
    }
}
