//! When jobs run. Every occurrence of a schedule is claimed in the catalog before it runs, so that
//! several daemons sharing a PostgreSQL catalog run it once between them and a job never overlaps
//! itself; the claim is a lease the running daemon renews, and it expires when that daemon dies.
//!
//! At start, occurrences missed while no daemon ran are either run once (the newest, when it is
//! within `daemon.catch_up`) or reported as missed. On shutdown no new job starts; running jobs get
//! `daemon.shutdown_grace` to finish and are then cancelled: their futures are dropped, which kills
//! their child processes and removes their scratch environments, and a backup cancelled before its
//! manifest is written leaves no snapshot, only chunks that the next backup reuses.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::Shared;
use super::jobs::{self, Outcome};
use super::plan::JobSpec;
use crate::alert::{Alert, AlertKind, DeadManConfig, DeadManPing, Severity};
use crate::catalog::{JobClaim, JobDone};

/// The scheduler wakes at least this often, to watch the RPO and to prove it is alive.
const TICK: Duration = Duration::from_secs(15);

struct Slot {
    job: Arc<JobSpec>,
    next_due: Option<jiff::Timestamp>,
}

/// How a run was started.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    OnTime,
    /// Missed while no daemon ran, run at start; `older` more were missed before it.
    CatchUp {
        older: usize,
    },
}

pub async fn run(shared: Arc<Shared>, jobs: Vec<JobSpec>, mut stop: watch::Receiver<bool>) {
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let mut running: JoinSet<()> = JoinSet::new();
    let specs: Vec<JobSpec> = jobs.clone();
    let mut slots: Vec<Slot> = jobs
        .into_iter()
        .map(|j| Slot {
            job: Arc::new(j),
            next_due: None,
        })
        .collect();

    catch_up(&shared, &mut slots, &mut running, &cancel_rx).await;
    // The shared-fate analysis runs at every start, so a daemon deployed next to its own backups
    // says so at once rather than at the next scheduled analysis.
    let fate = specs
        .iter()
        .find(|j| j.kind == super::plan::JobKind::Fate)
        .cloned()
        .unwrap_or_else(|| {
            super::plan::fate_job(
                crate::schedule::Schedule::parse("0 0 1 1 *", chrono_tz::Tz::UTC).expect("a valid schedule"),
            )
        });
    spawn(
        &shared,
        &mut running,
        &cancel_rx,
        Arc::new(fate),
        jiff::Timestamp::now(),
        Start::OnTime,
    );
    let mut exported = std::collections::BTreeMap::new();

    loop {
        shared.health.beat("scheduler", TICK * 4);
        let watching = hold_watch(&shared).await;
        super::watch::evaluate(&shared, &specs, watching).await;
        export_alert_deliveries(&shared, &mut exported);
        let now = jiff::Timestamp::now();
        for slot in slots.iter_mut() {
            let Some(due) = slot.next_due else { continue };
            if due <= now {
                spawn(&shared, &mut running, &cancel_rx, slot.job.clone(), due, Start::OnTime);
                slot.next_due = slot.job.schedule.next_after(now);
            }
        }
        while running.try_join_next().is_some() {}
        let wake = slots
            .iter()
            .filter_map(|s| s.next_due)
            .min()
            .map_or(TICK, |t| duration_until(t).min(TICK));
        tokio::select! {
            _ = tokio::time::sleep(wake) => {}
            _ = stop.changed() => break,
        }
    }

    release_watch(&shared).await;
    let grace = shared.ctx.config.daemon.shutdown_grace;
    while running.try_join_next().is_some() {}
    if !running.is_empty() {
        tracing::info!(
            "stopping: no new jobs; waiting up to {} for {} running job(s)",
            crate::drill::spec::format_duration(grace),
            running.len()
        );
        let drained = tokio::time::timeout(grace, async { while running.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                "{} job(s) still running after the grace period: cancelling them",
                running.len()
            );
            let _ = cancel_tx.send(true);
            while running.join_next().await.is_some() {}
        }
    }
}

/// The pseudo-job whose lease says which daemon alerts on the RPO.
const WATCH: &str = "watch:rpo";

/// The RPO watch runs in every daemon (each keeps its metrics current), but only the daemon holding
/// the `watch:rpo` lease alerts on it: several daemons sharing a catalog would otherwise each send
/// the same page, since each keeps its own open alerts. The holder renews the lease every tick and
/// keeps it; another daemon takes over once it lapses (the holder died) or is released (it stopped).
async fn hold_watch(shared: &Shared) -> bool {
    let now = jiff::Timestamp::now();
    let until = now + TICK * 3;
    match shared.catalog.renew_job(WATCH, &shared.owner, until).await {
        Ok(true) => return true,
        Ok(false) => {}
        Err(e) => {
            // Without the catalog nobody can agree; alerting twice beats not alerting.
            tracing::warn!("cannot renew the RPO watch: {e}; alerting from this daemon");
            return true;
        }
    }
    let claim = JobClaim {
        job: WATCH.into(),
        due: now,
        owner: shared.owner.clone(),
        now,
        lease_until: until,
    };
    shared.catalog.claim_job(&claim).await.unwrap_or(true)
}

/// Gives the RPO watch up, so that another daemon takes it at its next tick.
async fn release_watch(shared: &Shared) {
    let _ = shared
        .catalog
        .finish_job(&JobDone {
            job: WATCH.into(),
            owner: shared.owner.clone(),
            finished_at: jiff::Timestamp::now(),
            outcome: "ok".into(),
            detail: Some("released at shutdown".into()),
        })
        .await;
}

/// Carries the alerter's per-sink counters over to the metrics: `exported` holds what was already
/// counted (delivered, failed) per sink.
fn export_alert_deliveries(shared: &Shared, exported: &mut std::collections::BTreeMap<String, (u64, u64)>) {
    for s in shared.alerter.stats() {
        let seen = exported.entry(s.sink.clone()).or_default();
        for _ in seen.0..s.delivered {
            shared.metrics.alert_delivery(&s.sink, true);
        }
        for _ in seen.1..s.failed {
            shared.metrics.alert_delivery(&s.sink, false);
        }
        *seen = (s.delivered.max(seen.0), s.failed.max(seen.1));
    }
}

fn duration_until(t: jiff::Timestamp) -> Duration {
    let d = t.duration_since(jiff::Timestamp::now());
    if d.is_negative() {
        Duration::ZERO
    } else {
        d.unsigned_abs()
    }
}

/// Sets every slot's next occurrence, and deals with what was missed while no daemon ran.
async fn catch_up(shared: &Arc<Shared>, slots: &mut [Slot], running: &mut JoinSet<()>, cancel: &watch::Receiver<bool>) {
    let now = jiff::Timestamp::now();
    let states = match shared.catalog.jobs().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot read the job table, so missed runs are not caught up: {e}");
            shared
                .health
                .failing("catalog", format!("cannot read the job table: {e}"));
            Vec::new()
        }
    };
    let window = shared.ctx.config.daemon.catch_up;
    for slot in slots.iter_mut() {
        let job = &slot.job;
        let key = job.key();
        slot.next_due = job.schedule.next_after(now);
        let last_due = states.iter().find(|s| s.job == key).and_then(|s| s.last_due);
        match decide(&job.schedule, last_due, now, window) {
            AtStart::Nothing => {}
            AtStart::Baseline(prev) => {
                let _ = shared.catalog.skip_job(&key, prev).await;
            }
            AtStart::Run { due, older } => {
                tracing::info!("{key}: running the occurrence of {due} missed while no daemon ran");
                spawn(shared, running, cancel, job.clone(), due, Start::CatchUp { older });
            }
            AtStart::Missed { newest, total } => {
                if shared.catalog.skip_job(&key, newest).await.unwrap_or(false) {
                    report_missed(shared, job, total, newest);
                }
            }
        }
    }
}

/// What to do at start about a job's past, given the newest occurrence a daemon took care of.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AtStart {
    /// Nothing was missed.
    Nothing,
    /// A job never seen: start counting from its last occurrence rather than calling the whole past
    /// missed.
    Baseline(jiff::Timestamp),
    /// Run the newest missed occurrence now; `older` more were missed before it.
    Run { due: jiff::Timestamp, older: usize },
    /// The newest missed occurrence is older than the catch-up window: report, do not run.
    Missed { newest: jiff::Timestamp, total: usize },
}

fn decide(
    schedule: &crate::schedule::Schedule,
    last_due: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
    window: Duration,
) -> AtStart {
    let Some(last_due) = last_due else {
        return schedule
            .last_at_or_before(now)
            .map_or(AtStart::Nothing, AtStart::Baseline);
    };
    let missed = schedule.between(last_due, now, 1);
    let Some(&newest) = missed.newest.last() else {
        return AtStart::Nothing;
    };
    if now.duration_since(newest).unsigned_abs() <= window {
        AtStart::Run {
            due: newest,
            older: missed.total - 1,
        }
    } else {
        AtStart::Missed {
            newest,
            total: missed.total,
        }
    }
}

fn report_missed(shared: &Shared, job: &JobSpec, count: usize, newest: jiff::Timestamp) {
    if count == 0 {
        return;
    }
    let key = job.key();
    for _ in 0..count {
        shared.metrics.job_missed(job.kind.as_str(), &job.target);
    }
    tracing::warn!("{key}: {count} scheduled run(s) missed while no daemon ran, the last due at {newest}");
    shared.alerter.raise(
        Alert::new(
            AlertKind::JobsMissed,
            Severity::Warning,
            format!(
                "{key}: {count} scheduled run(s) missed while no daemon was running (last due {newest}); \
                 older than daemon.catch_up, so not run"
            ),
        )
        .with_source(job.source.clone())
        .with_routes(job.routes.clone())
        .with_key(AlertKind::JobsMissed.key(&key)),
    );
}

fn spawn(
    shared: &Arc<Shared>,
    running: &mut JoinSet<()>,
    cancel: &watch::Receiver<bool>,
    job: Arc<JobSpec>,
    due: jiff::Timestamp,
    start: Start,
) {
    let shared = shared.clone();
    let cancel = cancel.clone();
    running.spawn(async move { occurrence(&shared, &job, due, start, cancel).await });
}

/// One occurrence of a job: claim, run while renewing the lease, record.
async fn occurrence(
    shared: &Shared,
    job: &JobSpec,
    due: jiff::Timestamp,
    start: Start,
    mut cancel: watch::Receiver<bool>,
) {
    let key = job.key();
    let lease = shared.ctx.config.daemon.lease;
    let now = jiff::Timestamp::now();
    let claim = JobClaim {
        job: key.clone(),
        due,
        owner: shared.owner.clone(),
        now,
        lease_until: now + lease,
    };
    match shared.catalog.claim_job(&claim).await {
        Ok(true) => {}
        Ok(false) => {
            // Either another daemon took this occurrence (nothing to do), or the previous run is
            // still going: then this occurrence is skipped, and one daemon reports it.
            if shared.catalog.skip_job(&key, due).await.unwrap_or(false) {
                shared.metrics.job_missed(job.kind.as_str(), &job.target);
                tracing::warn!("{key}: the run due at {due} was skipped: the previous run is still going");
            } else {
                tracing::debug!("{key}: the run due at {due} is another daemon's");
            }
            return;
        }
        Err(e) => {
            shared.health.failing("catalog", format!("cannot claim jobs: {e}"));
            tracing::warn!("{key}: cannot claim the run due at {due}: {e}");
            return;
        }
    }
    if let Start::CatchUp { older } = start {
        report_missed(shared, job, older, due);
    }
    let jitter = shared.ctx.config.daemon.jitter;
    if !jitter.is_zero() {
        let wait = Duration::from_millis(rand::random_range(0..=jitter.as_millis() as u64));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.changed() => {}
        }
    }
    let ping = job.ping.as_ref().and_then(|p| match p.resolve() {
        Ok(url) => Some(DeadManPing::new(key.clone(), DeadManConfig::healthchecks(&url))),
        Err(e) => {
            tracing::warn!("{key}: the ping URL cannot be read, so no ping is sent: {e}");
            None
        }
    });
    if let Some(p) = &ping {
        p.ping_start().await;
    }
    tracing::info!("{key}: started (due {due})");
    let clock = std::time::Instant::now();
    let outcome = tokio::select! {
        o = jobs::execute(shared, job) => o,
        lost = keep_lease(shared, &key, lease) => Outcome {
            ok: false,
            detail: format!("cancelled: {lost}"),
        },
        _ = cancel.changed() => Outcome {
            ok: false,
            detail: "cancelled: the daemon was stopping and the grace period ran out".into(),
        },
    };
    let took = clock.elapsed();
    shared
        .metrics
        .job_finished(job.kind.as_str(), &job.target, took, outcome.ok);
    if outcome.ok {
        tracing::info!("{key}: ok in {:.1}s: {}", took.as_secs_f64(), outcome.detail);
        shared.alerter.resolve(&AlertKind::JobsMissed.key(&key));
    } else {
        tracing::warn!("{key}: failed after {:.1}s: {}", took.as_secs_f64(), outcome.detail);
    }
    if let Some(p) = &ping {
        if outcome.ok {
            p.ping_success().await;
        } else {
            p.ping_fail(&outcome.detail).await;
        }
    }
    let cancelled = outcome.detail.starts_with("cancelled:");
    let done = JobDone {
        job: key.clone(),
        owner: shared.owner.clone(),
        finished_at: jiff::Timestamp::now(),
        outcome: if outcome.ok {
            "ok"
        } else if cancelled {
            "cancelled"
        } else {
            "failed"
        }
        .into(),
        detail: Some(outcome.detail),
    };
    if let Err(e) = shared.catalog.finish_job(&done).await {
        tracing::warn!("{key}: cannot record the end of the run: {e}; its lease expires on its own");
    }
}

/// Renews the lease every third of its length; returns (ending the run) only when it was lost.
async fn keep_lease(shared: &Shared, key: &str, lease: Duration) -> String {
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(lease / 3).await;
        let until = jiff::Timestamp::now() + lease;
        match shared.catalog.renew_job(key, &shared.owner, until).await {
            Ok(true) => failures = 0,
            Ok(false) => return "the lease was lost: another daemon took the job over".into(),
            Err(e) => {
                // A catalog blip must not kill a long backup; two missed renewals would let the
                // lease lapse, so stop before another daemon can start the same job.
                failures += 1;
                tracing::warn!("{key}: cannot renew the job's lease: {e}");
                if failures >= 2 {
                    return format!("the lease could not be renewed ({e})");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Schedule;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn catch_up_runs_the_newest_missed_within_the_window() {
        let hourly = Schedule::parse("0 * * * *", chrono_tz::Tz::UTC).unwrap();
        let now = ts("2026-11-24T09:20:00Z");
        // Down since 05:30: 06, 07, 08, 09 missed; 09:00 is 20 min old.
        let d = decide(&hourly, Some(ts("2026-11-24T05:30:00Z")), now, 6 * HOUR);
        assert_eq!(
            d,
            AtStart::Run {
                due: ts("2026-11-24T09:00:00Z"),
                older: 3
            }
        );
        // Window of 10 minutes: reported, not run.
        let d = decide(&hourly, Some(ts("2026-11-24T05:30:00Z")), now, Duration::from_secs(600));
        assert_eq!(
            d,
            AtStart::Missed {
                newest: ts("2026-11-24T09:00:00Z"),
                total: 4
            }
        );
        // Up to date.
        assert_eq!(
            decide(&hourly, Some(ts("2026-11-24T09:00:00Z")), now, 6 * HOUR),
            AtStart::Nothing
        );
        // Never seen: a baseline, nothing run or reported.
        assert_eq!(
            decide(&hourly, None, now, 6 * HOUR),
            AtStart::Baseline(ts("2026-11-24T09:00:00Z"))
        );
    }

    #[test]
    fn catch_up_across_a_dst_change() {
        // 02:30 daily in Berlin; the daemon was down over the night clocks went back (2026-10-25),
        // when 02:30 happened twice: one run missed, not two.
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let daily = Schedule::parse("30 2 * * *", berlin).unwrap();
        let last = ts("2026-10-24T00:30:00Z"); // 02:30 CEST on the 24th
        let now = ts("2026-10-25T06:00:00Z");
        let d = decide(&daily, Some(last), now, 6 * HOUR);
        assert_eq!(
            d,
            AtStart::Run {
                due: ts("2026-10-25T00:30:00Z"),
                older: 0
            }
        );
        // Spring forward (2026-03-29): 02:30 does not exist; the run happens once, right after the gap.
        let last = ts("2026-03-28T01:30:00Z");
        let now = ts("2026-03-29T03:00:00Z");
        let d = decide(&daily, Some(last), now, 6 * HOUR);
        assert_eq!(
            d,
            AtStart::Run {
                due: ts("2026-03-29T01:00:00Z"),
                older: 0
            }
        );
    }
}
