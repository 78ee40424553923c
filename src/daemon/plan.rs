//! The job table: which jobs exist and when they run, from the config's sources and the drill files.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{Config, SecretRef};
use crate::drill::spec::DrillSpec;
use crate::schedule::{Schedule, ScheduleError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Backup,
    Verify,
    Prune,
    Copy,
    Drill,
    /// The shared-fate analysis of every source and repository.
    Fate,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Backup => "backup",
            JobKind::Verify => "verify",
            JobKind::Prune => "prune",
            JobKind::Copy => "copy",
            JobKind::Fate => "fate",
            JobKind::Drill => "drill",
        }
    }
}

/// One scheduled job.
#[derive(Clone, Debug)]
pub struct JobSpec {
    pub kind: JobKind,
    /// The source name, or the drill name for drills.
    pub target: String,
    /// The source the job concerns (a drill's source for drills).
    pub source: String,
    pub schedule: Schedule,
    /// Healthchecks-style ping URL.
    pub ping: Option<SecretRef>,
    /// Alert routes named by the drill file; empty: route by severity and source.
    pub routes: Vec<String>,
}

impl JobSpec {
    /// `<kind>:<target>`: the job's name in the catalog, the logs and alerts.
    pub fn key(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.target)
    }
}

/// Every scheduled job, in a stable order. A drill's schedule is read in the daemon's zone unless
/// it names its own with `CRON_TZ=`.
pub fn jobs(config: &Config, drills: &[DrillSpec]) -> Result<Vec<JobSpec>, ScheduleError> {
    let mut jobs = Vec::new();
    for source in config.sources.values() {
        let s = &source.schedules;
        for (kind, schedule, ping) in [
            (JobKind::Backup, &s.backup, &source.pings.backup),
            (JobKind::Verify, &s.verify, &source.pings.verify),
            (JobKind::Prune, &s.prune, &source.pings.prune),
            (JobKind::Copy, &s.copy, &source.pings.copy),
        ] {
            if let Some(schedule) = schedule {
                jobs.push(JobSpec {
                    kind,
                    target: source.name.clone(),
                    source: source.name.clone(),
                    schedule: schedule.clone(),
                    ping: ping.clone(),
                    routes: Vec::new(),
                });
            }
        }
    }
    for drill in drills {
        if let Some(expr) = &drill.schedule {
            let schedule = Schedule::parse(expr, config.daemon.timezone).map_err(|e| ScheduleError {
                message: format!("drill `{}`: {}", drill.name, e.message),
                fix: e.fix,
            })?;
            jobs.push(JobSpec {
                kind: JobKind::Drill,
                target: drill.name.clone(),
                source: drill.source.clone(),
                schedule,
                ping: None,
                routes: drill.alerts.clone(),
            });
        }
    }
    if let Some(schedule) = &config.fate.schedule {
        jobs.push(fate_job(schedule.clone()));
    }
    jobs.sort_by(|a, b| (a.kind, &a.target).cmp(&(b.kind, &b.target)));
    Ok(jobs)
}

/// The shared-fate analysis as a job: on `fate.schedule`, and once at every start.
pub fn fate_job(schedule: Schedule) -> JobSpec {
    JobSpec {
        kind: JobKind::Fate,
        target: "all".into(),
        source: String::new(),
        schedule,
        ping: None,
        routes: Vec::new(),
    }
}

/// Per source, the strictest RTO and RPO among its drills: the targets it is held to (as `lifeboat sla`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    pub rto: Option<Duration>,
    pub rpo: Option<Duration>,
}

pub fn targets(drills: &[DrillSpec]) -> BTreeMap<String, Targets> {
    let mut out: BTreeMap<String, Targets> = BTreeMap::new();
    let min = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    for d in drills {
        let t = out.entry(d.source.clone()).or_default();
        t.rto = min(t.rto, d.sla.rto);
        t.rpo = min(t.rpo, d.sla.rpo);
    }
    out
}
