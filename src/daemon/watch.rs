//! The recovery point, watched continuously: RPO "at risk" before it is breached, "breached" when
//! no restorable point is as new as the SLA allows.

use std::time::Duration;

use super::Shared;
use super::plan::{JobKind, JobSpec};
use crate::alert::{Alert, AlertKind, Severity};

/// Without a backup schedule to reason about, a source is at risk once its newest point has used
/// this share of the RPO.
const AT_RISK_SHARE: f64 = 0.8;

/// Where a source stands against its RPO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpoState {
    Ok,
    /// Not breached yet, but the next scheduled backup would land after the deadline.
    AtRisk,
    Breached,
}

/// `newest`: the newest restorable point; `next_backup_done`: when the next scheduled backup is
/// expected to have committed (its due time plus how long the last one took).
pub fn rpo_state(
    now: jiff::Timestamp,
    newest: Option<jiff::Timestamp>,
    rpo: Duration,
    next_backup_done: Option<jiff::Timestamp>,
) -> RpoState {
    let Some(newest) = newest else {
        return RpoState::Breached;
    };
    let age = now.duration_since(newest).as_secs_f64();
    if age > rpo.as_secs_f64() {
        return RpoState::Breached;
    }
    let deadline = newest + jiff::SignedDuration::from_secs_f64(rpo.as_secs_f64());
    match next_backup_done {
        Some(done) if done > deadline => RpoState::AtRisk,
        Some(_) => RpoState::Ok,
        None if age > AT_RISK_SHARE * rpo.as_secs_f64() => RpoState::AtRisk,
        None => RpoState::Ok,
    }
}

/// Looks at every source once: metrics for the newest point and, with `alerting`, alerts for the
/// RPO. Every daemon keeps its own metrics current; only one at a time alerts (see the scheduler).
pub(crate) async fn evaluate(shared: &Shared, jobs: &[JobSpec], alerting: bool) {
    let now = jiff::Timestamp::now();
    for source in shared.ctx.config.sources.values() {
        let newest = match shared.newest_snapshot(&source.name, &source.repository).await {
            Ok(newest) => newest,
            Err(e) => {
                shared.health.failing("catalog", format!("cannot read snapshots: {e}"));
                return;
            }
        };
        shared.health.ok("catalog");
        if let Some(s) = &newest {
            shared.metrics.restorable_point(&source.name, s.started_at);
        }
        if !alerting {
            continue;
        }
        let Some(rpo) = shared.targets.get(&source.name).and_then(|t| t.rpo) else {
            continue;
        };
        let last_took = newest
            .as_ref()
            .map(|s| s.finished_at.duration_since(s.started_at))
            .unwrap_or_default();
        let next_backup_done = jobs
            .iter()
            .find(|j| j.kind == JobKind::Backup && j.source == source.name)
            .and_then(|j| j.schedule.next_after(now))
            .map(|due| due + last_took);
        let state = rpo_state(now, newest.as_ref().map(|s| s.started_at), rpo, next_backup_done);
        let at_risk = AlertKind::RpoAtRisk.key(&source.name);
        let breached = AlertKind::RpoBreached.key(&source.name);
        let point = newest.as_ref().map_or("no snapshot at all".to_string(), |s| {
            format!("newest point {}", s.started_at)
        });
        let rpo_text = crate::drill::spec::format_duration(rpo);
        match state {
            RpoState::Ok => {
                shared.alerter.resolve(&at_risk);
                shared.alerter.resolve(&breached);
            }
            RpoState::AtRisk => {
                shared.alerter.resolve(&breached);
                let when = next_backup_done.map_or("soon".to_string(), |t| format!("at {t}"));
                shared.alerter.raise(
                    Alert::new(
                        AlertKind::RpoAtRisk,
                        Severity::Warning,
                        format!(
                            "{}: RPO {rpo_text} at risk: {point}, and the next backup is expected to land {when}",
                            source.name
                        ),
                    )
                    .with_source(source.name.clone())
                    .with_key(at_risk),
                );
            }
            RpoState::Breached => {
                shared.alerter.resolve(&at_risk);
                shared.alerter.raise(
                    Alert::new(
                        AlertKind::RpoBreached,
                        Severity::Critical,
                        format!("{}: RPO {rpo_text} breached: {point}", source.name),
                    )
                    .with_source(source.name.clone())
                    .with_key(breached)
                    .with_detail(
                        "fix",
                        format!(
                            "run `lifeboat backup {}` now, then find why scheduled backups stopped",
                            source.name
                        ),
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn rpo_states() {
        let now = ts("2026-11-24T12:00:00Z");
        let rpo = Duration::from_secs(6 * 3600);
        assert_eq!(rpo_state(now, None, rpo, None), RpoState::Breached);
        assert_eq!(
            rpo_state(now, Some(ts("2026-11-24T05:00:00Z")), rpo, None),
            RpoState::Breached
        );
        // Newest 10:00, deadline 16:00; the next backup lands at 12:30: fine.
        let newest = Some(ts("2026-11-24T10:00:00Z"));
        assert_eq!(
            rpo_state(now, newest, rpo, Some(ts("2026-11-24T12:30:00Z"))),
            RpoState::Ok
        );
        // ... lands at 16:30: at risk already now, hours before the breach.
        assert_eq!(
            rpo_state(now, newest, rpo, Some(ts("2026-11-24T16:30:00Z"))),
            RpoState::AtRisk
        );
        // No schedule: at risk after 80% of the RPO.
        assert_eq!(
            rpo_state(now, Some(ts("2026-11-24T07:00:00Z")), rpo, None),
            RpoState::AtRisk
        );
        assert_eq!(rpo_state(now, newest, rpo, None), RpoState::Ok);
    }
}
