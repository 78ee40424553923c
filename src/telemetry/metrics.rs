//! The `Metrics` handle: one method per event the daemon reports, so callers never touch a raw metric
//! and cannot get a name or a label wrong.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

use super::definitions::{self as defs, DRILL_VERDICTS, JOB_DURATION_BUCKETS, MetricDef};
use super::rpo::RestorablePoints;

type OneLabel = [(&'static str, String); 1];
type TwoLabels = [(&'static str, String); 2];
type FloatGauge = Gauge<f64, AtomicU64>;

/// The phase label value that carries a drill's measured RTO.
pub const TOTAL_PHASE: &str = "total";

/// Telemetry for the daemon: cheap to clone, safe to share between tasks. Every clone records into
/// the same registry, which [`Metrics::encode`] renders for `GET /metrics`.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    build_info: Family<OneLabel, Gauge>,
    last_backup_success: Family<OneLabel, FloatGauge>,
    backup_failures: Family<OneLabel, Counter>,
    backup_bytes: Family<TwoLabels, Counter>,
    restorable_points: RestorablePoints,
    sla_rpo: Family<OneLabel, FloatGauge>,
    sla_rto: Family<OneLabel, FloatGauge>,
    drill_rto: Family<TwoLabels, FloatGauge>,
    drill_sla_rto: Family<OneLabel, FloatGauge>,
    drill_verdict: Family<TwoLabels, Gauge>,
    drill_last_run: Family<OneLabel, FloatGauge>,
    job_duration: Family<OneLabel, Histogram, fn() -> Histogram>,
    job_failures: Family<TwoLabels, Counter>,
    jobs_missed: Family<TwoLabels, Counter>,
    fate_findings: Family<OneLabel, Gauge>,
    approvals_pending: Family<OneLabel, Gauge>,
    alert_deliveries: Family<TwoLabels, Counter>,
    /// Label values each drill has exposed, so that a new run can drop series the old one left.
    drill_series: Mutex<HashMap<String, DrillSeries>>,
}

#[derive(Default)]
struct DrillSeries {
    phases: Vec<String>,
    verdicts: Vec<String>,
}

fn one(key: &'static str, value: &str) -> OneLabel {
    [(key, value.to_owned())]
}

fn two(first: (&'static str, &str), second: (&'static str, &str)) -> TwoLabels {
    [(first.0, first.1.to_owned()), (second.0, second.1.to_owned())]
}

fn unix_seconds(at: Timestamp) -> f64 {
    at.as_millisecond() as f64 / 1000.0
}

fn job_duration_histogram() -> Histogram {
    Histogram::new(JOB_DURATION_BUCKETS.iter().copied())
}

fn register(registry: &mut Registry, def: &MetricDef, metric: impl Metric) {
    match def.unit {
        Some(unit) => registry.register_with_unit(def.registry_name(), def.help, unit.to_prometheus(), metric),
        None => registry.register(def.registry_name(), def.help, metric),
    }
}

impl Metrics {
    /// A fresh registry holding every metric of [`defs::METRICS`]; `lifeboat_build_info` is set at once.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let inner = Inner {
            build_info: Family::default(),
            last_backup_success: Family::default(),
            backup_failures: Family::default(),
            backup_bytes: Family::default(),
            restorable_points: RestorablePoints::default(),
            sla_rpo: Family::default(),
            sla_rto: Family::default(),
            drill_rto: Family::default(),
            drill_sla_rto: Family::default(),
            drill_verdict: Family::default(),
            drill_last_run: Family::default(),
            job_duration: Family::new_with_constructor(job_duration_histogram),
            job_failures: Family::default(),
            jobs_missed: Family::default(),
            fate_findings: Family::default(),
            approvals_pending: Family::default(),
            alert_deliveries: Family::default(),
            drill_series: Mutex::default(),
            registry: Registry::default(),
        };

        // Registration follows METRICS, so a scrape lists the metrics in the documented order
        // (except lifeboat_rpo_seconds: the registry writes collectors after the stored metrics).
        for def in defs::METRICS {
            match def.name {
                n if n == defs::BUILD_INFO.name => register(&mut registry, def, inner.build_info.clone()),
                n if n == defs::LAST_BACKUP_SUCCESS.name => {
                    register(&mut registry, def, inner.last_backup_success.clone())
                }
                n if n == defs::BACKUP_FAILURES.name => register(&mut registry, def, inner.backup_failures.clone()),
                n if n == defs::BACKUP_BYTES.name => register(&mut registry, def, inner.backup_bytes.clone()),
                n if n == defs::RPO.name => registry.register_collector(Box::new(inner.restorable_points.clone())),
                n if n == defs::SLA_RPO.name => register(&mut registry, def, inner.sla_rpo.clone()),
                n if n == defs::SLA_RTO.name => register(&mut registry, def, inner.sla_rto.clone()),
                n if n == defs::DRILL_RTO.name => register(&mut registry, def, inner.drill_rto.clone()),
                n if n == defs::DRILL_SLA_RTO.name => register(&mut registry, def, inner.drill_sla_rto.clone()),
                n if n == defs::DRILL_VERDICT.name => register(&mut registry, def, inner.drill_verdict.clone()),
                n if n == defs::DRILL_LAST_RUN.name => register(&mut registry, def, inner.drill_last_run.clone()),
                n if n == defs::JOB_DURATION.name => register(&mut registry, def, inner.job_duration.clone()),
                n if n == defs::JOB_FAILURES.name => register(&mut registry, def, inner.job_failures.clone()),
                n if n == defs::JOBS_MISSED.name => register(&mut registry, def, inner.jobs_missed.clone()),
                n if n == defs::FATE_FINDINGS.name => register(&mut registry, def, inner.fate_findings.clone()),
                n if n == defs::APPROVALS_PENDING.name => register(&mut registry, def, inner.approvals_pending.clone()),
                n if n == defs::ALERT_DELIVERIES.name => register(&mut registry, def, inner.alert_deliveries.clone()),
                other => unreachable!("{other} is listed in METRICS but Metrics::new does not register it"),
            }
        }

        inner
            .build_info
            .get_or_create(&one("version", env!("CARGO_PKG_VERSION")))
            .set(1);
        Metrics {
            inner: Arc::new(Inner { registry, ..inner }),
        }
    }

    /// A backup of `source` committed its snapshot. `bytes_read` is what the database tool produced,
    /// `bytes_stored` what was uploaded after deduplication and compression.
    pub fn backup_succeeded(&self, source: &str, finished_at: Timestamp, bytes_read: u64, bytes_stored: u64) {
        let inner = &self.inner;
        inner
            .last_backup_success
            .get_or_create(&one("source", source))
            .set(unix_seconds(finished_at));
        inner
            .backup_bytes
            .get_or_create(&two(("source", source), ("kind", "read")))
            .inc_by(bytes_read);
        inner
            .backup_bytes
            .get_or_create(&two(("source", source), ("kind", "stored")))
            .inc_by(bytes_stored);
        // Create the failure series at 0, so that `increase()` sees the first failure too.
        inner.backup_failures.get_or_create_owned(&one("source", source));
    }

    /// A backup of `source` failed. (The job itself is reported with [`Metrics::job_finished`].)
    pub fn backup_failed(&self, source: &str) {
        self.inner.backup_failures.get_or_create(&one("source", source)).inc();
    }

    /// The newest point `source` can be restored to (a snapshot's consistent point, or the end of
    /// archived WAL). `lifeboat_rpo_seconds` counts up from it on every scrape. The latest report
    /// wins, so report an older point when the newer one turned out to be unusable.
    pub fn restorable_point(&self, source: &str, at: Timestamp) {
        self.inner.restorable_points.set(source, at);
    }

    /// The SLA published for `source`; call it at start-up and whenever the configuration is reloaded.
    pub fn sla_targets(&self, source: &str, rto: Duration, rpo: Duration) {
        self.inner
            .sla_rto
            .get_or_create(&one("source", source))
            .set(rto.as_secs_f64());
        self.inner
            .sla_rpo
            .get_or_create(&one("source", source))
            .set(rpo.as_secs_f64());
    }

    /// The RTO that a drill's own SLA allows (drill files carry their SLA), so dashboards and alerts
    /// can compare each drill's measured RTO with it.
    pub fn drill_sla_rto(&self, drill: &str, rto: Duration) {
        self.inner
            .drill_sla_rto
            .get_or_create(&one("drill", drill))
            .set(rto.as_secs_f64());
    }

    /// A drill run ended with `verdict` (one of [`defs::DRILL_VERDICTS`]; another string is exposed
    /// as given). `phases` are the timed phases in order; `rto` is the measured RTO, `None` when the
    /// run could not measure it (verdict `error`): the `total` series then disappears rather than
    /// showing a misleading number. Series the drill's previous run exposed and this one does not
    /// are removed.
    pub fn drill_finished(&self, drill: &str, verdict: &str, phases: &[(&str, Duration)], rto: Option<Duration>) {
        let inner = &self.inner;
        let mut all_series = inner
            .drill_series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let series = all_series.entry(drill.to_owned()).or_default();

        let mut phase_names: Vec<String> = phases.iter().map(|(name, _)| (*name).to_owned()).collect();
        if rto.is_some() {
            phase_names.push(TOTAL_PHASE.to_owned());
        }
        for stale in series.phases.iter().filter(|old| !phase_names.contains(old)) {
            inner.drill_rto.remove(&two(("drill", drill), ("phase", stale)));
        }
        for (phase, took) in phases {
            inner
                .drill_rto
                .get_or_create(&two(("drill", drill), ("phase", phase)))
                .set(took.as_secs_f64());
        }
        if let Some(rto) = rto {
            let total = two(("drill", drill), ("phase", TOTAL_PHASE));
            inner.drill_rto.get_or_create(&total).set(rto.as_secs_f64());
        }
        series.phases = phase_names;

        let mut verdicts: Vec<String> = DRILL_VERDICTS.iter().map(|v| (*v).to_owned()).collect();
        if !verdicts.iter().any(|v| v == verdict) {
            verdicts.push(verdict.to_owned());
        }
        for stale in series.verdicts.iter().filter(|old| !verdicts.contains(old)) {
            inner.drill_verdict.remove(&two(("drill", drill), ("verdict", stale)));
        }
        for candidate in &verdicts {
            let value = i64::from(candidate == verdict);
            inner
                .drill_verdict
                .get_or_create(&two(("drill", drill), ("verdict", candidate)))
                .set(value);
        }
        series.verdicts = verdicts;

        inner
            .drill_last_run
            .get_or_create(&one("drill", drill))
            .set(unix_seconds(Timestamp::now()));
    }

    /// A scheduled job ended. `kind` is the job kind (backup, drill, verify, prune, fate, copy),
    /// `target` the source or drill it worked on; failures are counted per target, durations per kind.
    pub fn job_finished(&self, kind: &str, target: &str, duration: Duration, ok: bool) {
        let inner = &self.inner;
        inner
            .job_duration
            .get_or_create(&one("kind", kind))
            .observe(duration.as_secs_f64());
        let labels = two(("kind", kind), ("target", target));
        let failures = inner.job_failures.get_or_create(&labels);
        if !ok {
            failures.inc();
        }
        drop(failures);
        inner.jobs_missed.get_or_create_owned(&labels);
    }

    /// A scheduled run of a job never started (the previous run still held it, or the daemon was down).
    pub fn job_missed(&self, kind: &str, target: &str) {
        let labels = two(("kind", kind), ("target", target));
        self.inner.jobs_missed.get_or_create(&labels).inc();
        self.inner.job_failures.get_or_create_owned(&labels);
    }

    /// The open shared-fate findings after the latest analysis, by severity.
    pub fn fate_findings(&self, critical: u64, warning: u64, info: u64) {
        for (severity, count) in [("critical", critical), ("warning", warning), ("info", info)] {
            let count = i64::try_from(count).unwrap_or(i64::MAX);
            self.inner
                .fate_findings
                .get_or_create(&one("severity", severity))
                .set(count);
        }
    }

    /// The approval requests pending now, by kind; every kind is exported, 0 when none waits.
    pub fn approvals_pending(&self, counts: &[(&str, u64)]) {
        for kind in crate::control::Action::KINDS {
            let n = counts.iter().filter(|(k, _)| *k == kind).map(|(_, n)| *n).sum::<u64>();
            self.inner
                .approvals_pending
                .get_or_create(&one("kind", kind))
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// An alert notification was handed to `sink` (its configured name, never its URL or key);
    /// `ok` when the sink accepted it.
    pub fn alert_delivery(&self, sink: &str, ok: bool) {
        let (outcome, other) = if ok { ("ok", "failed") } else { ("failed", "ok") };
        self.inner
            .alert_deliveries
            .get_or_create(&two(("sink", sink), ("outcome", outcome)))
            .inc();
        self.inner
            .alert_deliveries
            .get_or_create_owned(&two(("sink", sink), ("outcome", other)));
    }

    /// Drops every per-source series of `source` (after it was removed from the configuration), so
    /// that a source that no longer exists does not keep an RPO alert firing.
    pub fn forget_source(&self, source: &str) {
        let inner = &self.inner;
        let labels = one("source", source);
        inner.last_backup_success.remove(&labels);
        inner.backup_failures.remove(&labels);
        inner.sla_rpo.remove(&labels);
        inner.sla_rto.remove(&labels);
        for kind in ["read", "stored"] {
            inner.backup_bytes.remove(&two(("source", source), ("kind", kind)));
        }
        inner.restorable_points.forget(source);
    }

    /// Drops every per-drill series of `drill` (after its drill file was removed).
    pub fn forget_drill(&self, drill: &str) {
        let inner = &self.inner;
        let mut all_series = inner
            .drill_series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(series) = all_series.remove(drill) {
            for phase in &series.phases {
                inner.drill_rto.remove(&two(("drill", drill), ("phase", phase)));
            }
            for verdict in &series.verdicts {
                inner.drill_verdict.remove(&two(("drill", drill), ("verdict", verdict)));
            }
        }
        inner.drill_sla_rto.remove(&one("drill", drill));
        inner.drill_last_run.remove(&one("drill", drill));
    }

    /// The OpenMetrics text exposition of every metric, ending in `# EOF`; serve it with
    /// [`super::CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        let mut out = String::new();
        text::encode(&mut out, &self.inner.registry).expect("encoding metrics into a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(text: &str, prefix: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn odd_source_names_are_escaped_in_label_values() {
        let metrics = Metrics::new();
        let at: Timestamp = "2026-11-23T10:14:00Z".parse().unwrap();
        metrics.backup_succeeded("quote\"back\\slash\nnewline", at, 1, 1);
        metrics.backup_succeeded("ünïcode café 🚣", at, 1, 1);
        metrics.backup_succeeded("", at, 1, 1);
        metrics.backup_succeeded("brace}comma,equals=", at, 1, 1);
        let text = metrics.encode();
        let lines = lines_of(&text, "lifeboat_last_backup_success_timestamp_seconds{");
        assert!(
            lines.contains(
                &r#"lifeboat_last_backup_success_timestamp_seconds{source="quote\"back\\slash\nnewline"} 1795428840.0"#
                    .to_owned()
            ),
            "{text}"
        );
        assert!(
            lines.contains(
                &r#"lifeboat_last_backup_success_timestamp_seconds{source="ünïcode café 🚣"} 1795428840.0"#.to_owned()
            ),
            "{text}"
        );
        assert!(
            lines.contains(&r#"lifeboat_last_backup_success_timestamp_seconds{source=""} 1795428840.0"#.to_owned()),
            "{text}"
        );
        assert!(
            lines.contains(
                &r#"lifeboat_last_backup_success_timestamp_seconds{source="brace}comma,equals="} 1795428840.0"#
                    .to_owned()
            ),
            "{text}"
        );
        // Every sample stays on one line: a raw newline would split one and corrupt the scrape.
        assert!(
            text.lines().all(|l| l.starts_with('#') || l.starts_with("lifeboat_")),
            "{text}"
        );
    }

    #[test]
    fn odd_names_are_escaped_in_the_rpo_collector_too() {
        let metrics = Metrics::new();
        metrics.restorable_point("a\"b\\c\nd", Timestamp::now());
        let text = metrics.encode();
        assert!(text.contains(r#"lifeboat_rpo_seconds{source="a\"b\\c\nd"} "#), "{text}");
    }

    #[test]
    fn nothing_recorded_exposes_only_build_info() {
        let text = Metrics::new().encode();
        let samples = text.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>();
        assert_eq!(
            samples,
            vec![format!(
                "lifeboat_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )]
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn a_new_drill_run_replaces_the_verdict_and_drops_stale_phases() {
        let metrics = Metrics::new();
        let secs = Duration::from_secs;
        metrics.drill_finished(
            "orders-nightly",
            "pass",
            &[("restore", secs(30)), ("checks", secs(5))],
            Some(secs(40)),
        );
        metrics.drill_finished("orders-nightly", "error", &[("restore", secs(12))], None);
        let text = metrics.encode();
        let rto = lines_of(&text, "lifeboat_drill_rto_seconds{");
        assert_eq!(
            rto,
            vec![r#"lifeboat_drill_rto_seconds{drill="orders-nightly",phase="restore"} 12.0"#]
        );
        let mut verdicts = lines_of(&text, "lifeboat_drill_verdict{");
        verdicts.sort();
        assert_eq!(
            verdicts,
            vec![
                r#"lifeboat_drill_verdict{drill="orders-nightly",verdict="error"} 1"#,
                r#"lifeboat_drill_verdict{drill="orders-nightly",verdict="fail"} 0"#,
                r#"lifeboat_drill_verdict{drill="orders-nightly",verdict="pass"} 0"#,
                r#"lifeboat_drill_verdict{drill="orders-nightly",verdict="sla-breach"} 0"#,
            ]
        );

        metrics.drill_finished("orders-nightly", "odd", &[], Some(secs(1)));
        metrics.drill_finished("orders-nightly", "pass", &[], Some(secs(1)));
        let text = metrics.encode();
        assert!(
            !text.contains(r#"verdict="odd""#),
            "an unknown verdict must not linger:\n{text}"
        );
    }

    #[test]
    fn failure_counters_exist_at_zero_once_a_target_has_run() {
        let metrics = Metrics::new();
        metrics.job_finished("backup", "orders", Duration::from_secs(3), true);
        metrics.alert_delivery("ops-slack", true);
        let text = metrics.encode();
        assert!(
            text.contains("lifeboat_job_failures_total{kind=\"backup\",target=\"orders\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("lifeboat_jobs_missed_total{kind=\"backup\",target=\"orders\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("lifeboat_alert_deliveries_total{sink=\"ops-slack\",outcome=\"failed\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn forgetting_a_source_removes_its_series() {
        let metrics = Metrics::new();
        metrics.backup_succeeded("gone", Timestamp::now(), 10, 5);
        metrics.backup_failed("gone");
        metrics.restorable_point("gone", Timestamp::now());
        metrics.sla_targets("gone", Duration::from_secs(60), Duration::from_secs(60));
        metrics.backup_succeeded("kept", Timestamp::now(), 10, 5);
        metrics.forget_source("gone");
        let text = metrics.encode();
        assert!(!text.contains("\"gone\""), "{text}");
        assert!(text.contains("\"kept\""), "{text}");
    }

    #[test]
    fn forgetting_a_drill_removes_its_series() {
        let metrics = Metrics::new();
        metrics.drill_sla_rto("gone", Duration::from_secs(60));
        metrics.drill_finished(
            "gone",
            "pass",
            &[("restore", Duration::from_secs(1))],
            Some(Duration::from_secs(2)),
        );
        metrics.forget_drill("gone");
        let text = metrics.encode();
        assert!(!text.contains("\"gone\""), "{text}");
    }

    #[test]
    fn units_are_declared_for_scrapers() {
        let metrics = Metrics::new();
        metrics.backup_succeeded("orders", Timestamp::now(), 10, 5);
        let text = metrics.encode();
        assert!(text.contains("# UNIT lifeboat_backup_bytes bytes\n"), "{text}");
        assert!(
            text.contains("# UNIT lifeboat_last_backup_success_timestamp_seconds seconds\n"),
            "{text}"
        );
    }

    #[test]
    fn the_handle_is_shareable_between_tasks() {
        fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
        assert_shareable::<Metrics>();
    }
}
