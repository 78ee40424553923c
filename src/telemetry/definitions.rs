//! The one list of metrics the daemon exports. Registration, the documentation table and the tests
//! all read it, so a metric cannot be renamed in one place and forgotten in another.

use prometheus_client::registry::Unit;

/// How Prometheus sees a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only ever goes up while the daemon runs; the exposed name ends in `_total`.
    Counter,
    /// A value that can go up and down.
    Gauge,
    /// Observations counted into buckets; exposed as `_bucket`, `_sum` and `_count`.
    Histogram,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }

    /// The suffix OpenMetrics appends to the family name for this kind.
    fn suffix(self) -> &'static str {
        match self {
            MetricKind::Counter => "_total",
            MetricKind::Gauge | MetricKind::Histogram => "",
        }
    }
}

/// The unit a metric is measured in; OpenMetrics writes it as a `# UNIT` line and a name suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricUnit {
    Seconds,
    Bytes,
}

impl MetricUnit {
    fn suffix(self) -> &'static str {
        match self {
            MetricUnit::Seconds => "_seconds",
            MetricUnit::Bytes => "_bytes",
        }
    }

    pub(crate) fn to_prometheus(self) -> Unit {
        match self {
            MetricUnit::Seconds => Unit::Seconds,
            MetricUnit::Bytes => Unit::Bytes,
        }
    }
}

/// One exported metric: its name as PromQL queries it, its type, labels and meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    /// The name as written in PromQL (counters end in `_total`, histograms are queried as
    /// `<name>_bucket`, `<name>_sum` and `<name>_count`).
    pub name: &'static str,
    pub kind: MetricKind,
    pub unit: Option<MetricUnit>,
    pub labels: &'static [&'static str],
    /// One sentence without a final full stop (the encoder adds it).
    pub help: &'static str,
}

impl MetricDef {
    /// The name to hand to the registry: without the suffixes that the encoder appends for the
    /// kind (`_total`) and the unit (`_seconds`, `_bytes`).
    pub(crate) fn registry_name(&self) -> &'static str {
        let name = self.name.strip_suffix(self.kind.suffix()).unwrap_or(self.name);
        match self.unit {
            Some(unit) => name.strip_suffix(unit.suffix()).unwrap_or(name),
            None => name,
        }
    }

    /// The names of the samples this metric exposes, as they appear in a scrape.
    pub fn sample_names(&self) -> Vec<String> {
        match self.kind {
            MetricKind::Histogram => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|suffix| format!("{}{suffix}", self.name))
                .collect(),
            _ => vec![self.name.to_owned()],
        }
    }
}

/// The verdicts a drill can reach, in the order the drill module defines them. A drill's
/// `lifeboat_drill_verdict` series exist for each of these (1 for the current verdict, 0 for the rest).
pub const DRILL_VERDICTS: &[&str] = &["pass", "fail", "sla-breach", "error"];

/// Buckets of `lifeboat_job_duration_seconds`: jobs take from seconds (a fate check) to hours (a
/// full backup of a large database), so the bounds run from 1 s to 12 h.
pub const JOB_DURATION_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0,
];

pub const BUILD_INFO: MetricDef = MetricDef {
    name: "lifeboat_build_info",
    // A gauge rather than OpenMetrics' `info` type, which parsers of the older Prometheus text
    // format (and `promtool check metrics`) reject.
    kind: MetricKind::Gauge,
    unit: None,
    labels: &["version"],
    help: "The running lifeboat build; the value is always 1 and the version is in the label",
};

pub const LAST_BACKUP_SUCCESS: MetricDef = MetricDef {
    name: "lifeboat_last_backup_success_timestamp_seconds",
    kind: MetricKind::Gauge,
    unit: Some(MetricUnit::Seconds),
    labels: &["source"],
    help: "Unix time in seconds at which the newest successful backup of the source finished",
};

pub const BACKUP_FAILURES: MetricDef = MetricDef {
    name: "lifeboat_backup_failures_total",
    kind: MetricKind::Counter,
    unit: None,
    labels: &["source"],
    help: "Backups of the source that failed since the daemon started",
};

pub const BACKUP_BYTES: MetricDef = MetricDef {
    name: "lifeboat_backup_bytes_total",
    kind: MetricKind::Counter,
    unit: Some(MetricUnit::Bytes),
    labels: &["source", "kind"],
    help: "Bytes moved by successful backups since the daemon started: kind=read is what the database \
           tool produced, kind=stored is what was uploaded after deduplication and compression",
};

pub const RPO: MetricDef = MetricDef {
    name: "lifeboat_rpo_seconds",
    kind: MetricKind::Gauge,
    unit: Some(MetricUnit::Seconds),
    labels: &["source"],
    help: "Seconds from the newest restorable point of the source to the moment of the scrape: the data \
           a loss right now would cost",
};

pub const SLA_RPO: MetricDef = MetricDef {
    name: "lifeboat_sla_rpo_seconds",
    kind: MetricKind::Gauge,
    unit: Some(MetricUnit::Seconds),
    labels: &["source"],
    help: "Recovery point objective of the source's SLA in seconds: the most data loss it allows",
};

pub const SLA_RTO: MetricDef = MetricDef {
    name: "lifeboat_sla_rto_seconds",
    kind: MetricKind::Gauge,
    unit: Some(MetricUnit::Seconds),
    labels: &["source"],
    help: "Recovery time objective of the source's SLA in seconds: the longest recovery it allows",
};

pub const DRILL_RTO: MetricDef = MetricDef {
    name: "lifeboat_drill_rto_seconds",
    kind: MetricKind::Gauge,
    unit: Some(MetricUnit::Seconds),
    labels: &["drill", "phase"],
    help: "Seconds each phase of the drill's last run took; phase=total is the measured RTO, from the \
           start to checks passed, and is absent when the run could not measure it",
};

pub const DRILL_SLA_RTO: MetricDef = MetricDef {
    name: "lifeboat_drill_sla_rto_seconds",
    kind: MetricKind::Gauge,
    unit: Some(MetricUnit::Seconds),
    labels: &["drill"],
    help: "Recovery time objective in seconds that the drill's SLA holds its measured RTO to",
};

pub const DRILL_VERDICT: MetricDef = MetricDef {
    name: "lifeboat_drill_verdict",
    kind: MetricKind::Gauge,
    unit: None,
    labels: &["drill", "verdict"],
    help: "1 for the verdict of the drill's last run and 0 for every other verdict (pass, fail, \
           sla-breach, error)",
};

pub const DRILL_LAST_RUN: MetricDef = MetricDef {
    name: "lifeboat_drill_last_run_timestamp_seconds",
    kind: MetricKind::Gauge,
    unit: Some(MetricUnit::Seconds),
    labels: &["drill"],
    help: "Unix time in seconds at which the drill's last run finished, whatever its verdict",
};

pub const JOB_DURATION: MetricDef = MetricDef {
    name: "lifeboat_job_duration_seconds",
    kind: MetricKind::Histogram,
    unit: Some(MetricUnit::Seconds),
    labels: &["kind"],
    help: "Wall time in seconds of finished scheduled jobs by kind (backup, drill, verify, prune, fate, \
           copy), successful or not",
};

pub const JOB_FAILURES: MetricDef = MetricDef {
    name: "lifeboat_job_failures_total",
    kind: MetricKind::Counter,
    unit: None,
    labels: &["kind", "target"],
    help: "Scheduled jobs that finished with an error since the daemon started, by kind and target \
           (a source or a drill)",
};

pub const JOBS_MISSED: MetricDef = MetricDef {
    name: "lifeboat_jobs_missed_total",
    kind: MetricKind::Counter,
    unit: None,
    labels: &["kind", "target"],
    help: "Scheduled runs that never started since the daemon started (the previous run still held \
           the job, or the daemon was down at the time)",
};

pub const FATE_FINDINGS: MetricDef = MetricDef {
    name: "lifeboat_fate_findings",
    kind: MetricKind::Gauge,
    unit: None,
    labels: &["severity"],
    help: "Open shared-fate findings from the latest analysis by severity (critical, warning, info)",
};

pub const APPROVALS_PENDING: MetricDef = MetricDef {
    name: "lifeboat_approvals_pending",
    kind: MetricKind::Gauge,
    unit: None,
    labels: &["kind"],
    help: "Approval requests waiting for approvers, by what they would do (delete_snapshot, prune, \
           restore_over, lower_retention, disable, remove_repository): nothing destructive happens until \
           someone approves",
};

pub const ALERT_DELIVERIES: MetricDef = MetricDef {
    name: "lifeboat_alert_deliveries_total",
    kind: MetricKind::Counter,
    unit: None,
    labels: &["sink", "outcome"],
    help: "Alert notifications handed to each sink since the daemon started: outcome=ok when the sink \
           accepted them, outcome=failed when it did not",
};

/// Every metric the daemon exports, in the order a scrape lists them.
pub const METRICS: &[MetricDef] = &[
    BUILD_INFO,
    LAST_BACKUP_SUCCESS,
    BACKUP_FAILURES,
    BACKUP_BYTES,
    RPO,
    SLA_RPO,
    SLA_RTO,
    DRILL_RTO,
    DRILL_SLA_RTO,
    DRILL_VERDICT,
    DRILL_LAST_RUN,
    JOB_DURATION,
    JOB_FAILURES,
    JOBS_MISSED,
    FATE_FINDINGS,
    APPROVALS_PENDING,
    ALERT_DELIVERIES,
];

/// The metrics as a Markdown table (metric, type, labels, meaning): `metrics.md` next to this file
/// holds its output, and the module documentation and the README show that file.
pub fn markdown_table() -> String {
    let mut table = String::from("| metric | type | labels | meaning |\n| --- | --- | --- | --- |\n");
    for def in METRICS {
        let labels = def
            .labels
            .iter()
            .map(|l| format!("`{l}`"))
            .collect::<Vec<_>>()
            .join(", ");
        table.push_str(&format!(
            "| `{}` | {} | {} | {}. |\n",
            def.name,
            def.kind.as_str(),
            labels,
            def.help
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_documented_table_is_the_one_the_code_exports() {
        let documented = include_str!("metrics.md");
        let table = markdown_table();
        assert!(
            documented.contains(&table),
            "src/telemetry/metrics.md is out of date with METRICS; replace its table with:\n{table}"
        );
    }

    #[test]
    fn names_are_unique_prefixed_and_carry_their_suffixes() {
        let mut seen = HashSet::new();
        for def in METRICS {
            assert!(seen.insert(def.name), "{} is listed twice", def.name);
            assert!(
                def.name.starts_with("lifeboat_"),
                "{} lacks the lifeboat_ prefix",
                def.name
            );
            assert!(
                def.name.ends_with(def.kind.suffix()),
                "{} must end in {}",
                def.name,
                def.kind.suffix()
            );
            if let Some(unit) = def.unit {
                let base = def.name.strip_suffix(def.kind.suffix()).unwrap_or(def.name);
                assert!(
                    base.ends_with(unit.suffix()),
                    "{} must name its unit {:?}",
                    def.name,
                    unit
                );
            }
        }
    }

    #[test]
    fn help_texts_fit_on_one_exposition_line_and_one_table_cell() {
        for def in METRICS {
            assert!(!def.help.is_empty(), "{} has no help text", def.name);
            for forbidden in ['\n', '\\', '|'] {
                assert!(
                    !def.help.contains(forbidden),
                    "{} help contains {forbidden:?}",
                    def.name
                );
            }
            assert!(!def.help.ends_with('.'), "{}: the encoder adds the full stop", def.name);
            assert!(!def.help.contains("  "), "{}: help has a double space", def.name);
        }
    }

    #[test]
    fn registry_names_drop_kind_and_unit_suffixes() {
        assert_eq!(BACKUP_BYTES.registry_name(), "lifeboat_backup");
        assert_eq!(JOB_DURATION.registry_name(), "lifeboat_job_duration");
        assert_eq!(JOB_FAILURES.registry_name(), "lifeboat_job_failures");
        assert_eq!(BUILD_INFO.registry_name(), "lifeboat_build_info");
        assert_eq!(FATE_FINDINGS.registry_name(), "lifeboat_fate_findings");
    }

    #[test]
    fn drill_verdicts_are_the_drill_modules_verdicts() {
        use crate::drill::result::Verdict;
        let from_drill: Vec<&str> = [Verdict::Pass, Verdict::Fail, Verdict::SlaBreach, Verdict::Error]
            .iter()
            .map(|v| v.as_str())
            .collect();
        assert_eq!(DRILL_VERDICTS, from_drill.as_slice());
    }

    #[test]
    fn job_duration_buckets_rise_from_seconds_to_hours() {
        assert!(JOB_DURATION_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert!(JOB_DURATION_BUCKETS[0] <= 1.0);
        assert!(*JOB_DURATION_BUCKETS.last().unwrap() >= 6.0 * 3600.0);
    }
}
