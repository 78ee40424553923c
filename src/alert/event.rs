//! What the daemon raises: an [`Alert`] of one [`AlertKind`] at one [`Severity`].

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The kinds of alert Lifeboat raises. The snake_case id ([`AlertKind::id`]) is stable: it is
/// part of every payload and of every default de-duplication key, so dashboards and receivers
/// may match on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A backup job failed.
    BackupFailed,
    /// The newest usable backup is old enough that the RPO will be breached soon.
    RpoAtRisk,
    /// The newest usable backup is older than the RPO.
    RpoBreached,
    /// A drill's restore or checks failed.
    DrillFailed,
    /// A drill passed its checks but took longer than the SLA's RTO.
    SlaBreached,
    /// The p95 of measured RTO is above 80% of the target: the SLA is trending towards a breach.
    RtoTrending,
    /// Verification found a chunk or snapshot that does not match its address or fingerprint.
    CorruptionFound,
    /// A repository could not be reached (network, credentials, bucket gone).
    RepositoryUnreachable,
    /// Fate analysis found a critical shared-fate finding.
    FateCritical,
    /// Scheduled jobs did not run when they should have.
    JobsMissed,
}

impl AlertKind {
    pub const ALL: [AlertKind; 10] = [
        AlertKind::BackupFailed,
        AlertKind::RpoAtRisk,
        AlertKind::RpoBreached,
        AlertKind::DrillFailed,
        AlertKind::SlaBreached,
        AlertKind::RtoTrending,
        AlertKind::CorruptionFound,
        AlertKind::RepositoryUnreachable,
        AlertKind::FateCritical,
        AlertKind::JobsMissed,
    ];

    /// The stable snake_case id, e.g. `backup_failed`.
    pub fn id(self) -> &'static str {
        match self {
            AlertKind::BackupFailed => "backup_failed",
            AlertKind::RpoAtRisk => "rpo_at_risk",
            AlertKind::RpoBreached => "rpo_breached",
            AlertKind::DrillFailed => "drill_failed",
            AlertKind::SlaBreached => "sla_breached",
            AlertKind::RtoTrending => "rto_trending",
            AlertKind::CorruptionFound => "corruption_found",
            AlertKind::RepositoryUnreachable => "repository_unreachable",
            AlertKind::FateCritical => "fate_critical",
            AlertKind::JobsMissed => "jobs_missed",
        }
    }

    /// The de-duplication key of this kind of alert about `subject` (a source, drill,
    /// repository or job name): `backup_failed:orders`. [`Alert::new`] uses the same rule, so the
    /// daemon can compute the key to [`crate::alert::Alerter::resolve`] without the alert at hand.
    pub fn key(self, subject: &str) -> String {
        format!("{}:{subject}", self.id())
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// How urgent an alert is. Ordered: `Info < Warning < Critical`; a route's minimum severity
/// lets through alerts at or above it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Info,
    Warning,
    Critical,
}

impl Severity {
    /// `info`, `warning` or `critical`; also the PagerDuty severity.
    pub fn id(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// `INFO`, `WARNING`, `CRITICAL`: for Slack lines and email subjects.
    pub fn shout(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// One alert as the daemon raises it. Build with [`Alert::new`] and the `with_*` methods.
///
/// The de-duplication key defaults to `<kind>:<subject>`, where the subject is the drill if one
/// is set, else the source, else nothing (`jobs_missed:`); [`Alert::with_key`] overrides it.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    kind: AlertKind,
    severity: Severity,
    summary: String,
    source: Option<String>,
    drill: Option<String>,
    details: Map<String, Value>,
    routes: Vec<String>,
    key: Option<String>,
}

impl Alert {
    /// `summary` is one line a human reads first: what is wrong, with the numbers that matter
    /// ("newest backup is 26h old; RPO is 24h"). Keep it stable while the condition is
    /// unchanged: a different summary counts as a change and is sent again.
    pub fn new(kind: AlertKind, severity: Severity, summary: impl Into<String>) -> Alert {
        Alert {
            kind,
            severity,
            summary: summary.into(),
            source: None,
            drill: None,
            details: Map::new(),
            routes: Vec::new(),
            key: None,
        }
    }

    /// The source (database) the alert is about; route source globs match against it.
    pub fn with_source(mut self, source: impl Into<String>) -> Alert {
        self.source = Some(source.into());
        self
    }

    /// The drill the alert is about.
    pub fn with_drill(mut self, drill: impl Into<String>) -> Alert {
        self.drill = Some(drill.into());
        self
    }

    /// One detail for the payload's `details` object (PagerDuty `custom_details`). Details may
    /// change between raises without counting as a change of the alert.
    pub fn with_detail(mut self, name: impl Into<String>, value: impl Into<Value>) -> Alert {
        self.details.insert(name.into(), value.into());
        self
    }

    /// Explicit route names (a drill's `alerts: [oncall]`): the alert then goes to these routes
    /// only, still filtered by each route's minimum severity but not by its source globs.
    pub fn with_routes<I, S>(mut self, routes: I) -> Alert
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.routes = routes.into_iter().map(Into::into).collect();
        self
    }

    /// Replaces the default de-duplication key.
    pub fn with_key(mut self, key: impl Into<String>) -> Alert {
        self.key = Some(key.into());
        self
    }

    /// The de-duplication key (see the type's doc).
    pub fn key(&self) -> String {
        match &self.key {
            Some(key) => key.clone(),
            None => self.kind.key(self.subject().unwrap_or("")),
        }
    }

    /// The drill if set, else the source: the name a human looks for in a subject line.
    pub fn subject(&self) -> Option<&str> {
        self.drill.as_deref().or(self.source.as_deref())
    }

    pub fn kind(&self) -> AlertKind {
        self.kind
    }

    pub fn severity(&self) -> Severity {
        self.severity
    }

    pub fn summary(&self) -> &str {
        &self.summary
    }

    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    pub fn drill(&self) -> Option<&str> {
        self.drill.as_deref()
    }

    pub fn details(&self) -> &Map<String, Value> {
        &self.details
    }

    pub fn routes(&self) -> &[String] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_ids_are_the_serde_names() {
        for kind in AlertKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), Value::String(kind.id().to_owned()));
        }
    }

    #[test]
    fn default_key_prefers_the_drill_then_the_source() {
        let alert = Alert::new(AlertKind::BackupFailed, Severity::Critical, "x").with_source("orders");
        assert_eq!(alert.key(), "backup_failed:orders");
        let alert = alert.with_drill("orders-nightly");
        assert_eq!(alert.key(), "backup_failed:orders-nightly");
        assert_eq!(alert.with_key("custom").key(), "custom");
        assert_eq!(AlertKind::JobsMissed.key(""), "jobs_missed:");
    }

    #[test]
    fn severities_are_ordered() {
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
    }
}
