//! What each scheduled job does: the same operations as the commands, plus the alerts and metrics
//! their outcome implies. A job never panics the daemon and never blocks on alert delivery.

use std::sync::Arc;
use std::time::Duration;

use super::Shared;
use super::plan::{JobKind, JobSpec};
use crate::alert::{Alert, AlertKind, Severity};
use crate::catalog::{DrillRunFilter, RunKind, RunRecord, RunStatus};
use crate::cli::{drill_cmds, repo_cmds};
use crate::drill::result::Verdict;
use crate::drill::sla::percentile;
use crate::ops;
use crate::repo::{LockOptions, NoProgress};

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub ok: bool,
    /// One line for the catalog, the logs and the dead-man ping.
    pub detail: String,
}

impl Outcome {
    fn ok(detail: impl Into<String>) -> Outcome {
        Outcome {
            ok: true,
            detail: detail.into(),
        }
    }
    fn failed(detail: impl Into<String>) -> Outcome {
        Outcome {
            ok: false,
            detail: detail.into(),
        }
    }
}

pub async fn execute(shared: &Shared, job: &JobSpec) -> Outcome {
    // Settings changed through the control plane switch jobs and repositories off.
    match crate::control::Settings::load(shared.catalog.as_ref()).await {
        Ok(settings) => {
            if settings.job_disabled(&job.key()) {
                return Outcome::ok(format!(
                    "skipped: {} is disabled (`lifeboat enable job:{}`)",
                    job.key(),
                    job.key()
                ));
            }
            if let Some(source) = shared.ctx.config.sources.get(&job.source)
                && settings.removed_repositories.contains(&source.repository)
            {
                return Outcome::failed(format!(
                    "skipped: repository {} was removed through an approved request",
                    source.repository
                ));
            }
        }
        Err(e) => return Outcome::failed(format!("cannot read the control plane's settings: {e}")),
    }
    match job.kind {
        JobKind::Backup => backup(shared, job).await,
        JobKind::Verify => verify(shared, job).await,
        JobKind::Prune => prune(shared, job).await,
        JobKind::Copy => copy(shared, job).await,
        JobKind::Fate => fate(shared).await,
        JobKind::Drill => drill(shared, job).await,
    }
}

async fn backup(shared: &Shared, job: &JobSpec) -> Outcome {
    let source = &job.source;
    let key = AlertKind::BackupFailed.key(source);
    let result = repo_cmds::backup_recorded(
        &shared.ctx,
        Some(shared.catalog.as_ref()),
        source,
        4,
        Arc::new(NoProgress),
    )
    .await;
    match result {
        Ok(report) => {
            let m = &report.manifest;
            shared
                .metrics
                .backup_succeeded(source, m.finished_at, m.stream.size, m.stream.new_bytes);
            shared.metrics.restorable_point(source, m.started_at);
            shared.alerter.resolve(&key);
            shared
                .alerter
                .resolve(&AlertKind::RepositoryUnreachable.key(&repository_of(shared, source)));
            Outcome::ok(format!(
                "snapshot {} ({} bytes read, {} new bytes stored)",
                m.id, m.stream.size, m.stream.new_bytes
            ))
        }
        Err(e) => {
            shared.metrics.backup_failed(source);
            shared.alerter.raise(
                Alert::new(
                    AlertKind::BackupFailed,
                    Severity::Critical,
                    format!("backup of {source} failed: {}", e.message),
                )
                .with_source(source.clone())
                .with_key(key),
            );
            Outcome::failed(e.message)
        }
    }
}

fn repository_of(shared: &Shared, source: &str) -> String {
    shared
        .ctx
        .config
        .sources
        .get(source)
        .map(|s| s.repository.clone())
        .unwrap_or_default()
}

/// Checks that every object of every snapshot in the source's repository is present, and re-reads
/// the source's newest snapshot in full (every chunk decompressed and re-hashed): the one a restore
/// would use tonight.
async fn verify(shared: &Shared, job: &JobSpec) -> Outcome {
    let source = &job.source;
    let repository = repository_of(shared, source);
    let started_at = jiff::Timestamp::now();
    let unreachable = AlertKind::RepositoryUnreachable.key(&repository);
    let repo = match shared.ctx.repository(&repository).await {
        Ok(r) => r,
        Err(e) => {
            shared.alerter.raise(
                Alert::new(
                    AlertKind::RepositoryUnreachable,
                    Severity::Critical,
                    format!("repository {repository} cannot be opened: {}", e.message),
                )
                .with_source(source.clone())
                .with_key(unreachable),
            );
            return Outcome::failed(e.message);
        }
    };
    shared.alerter.resolve(&unreachable);
    let newest = shared.newest_snapshot(source, &repository).await.ok().flatten();
    let mut problems = Vec::new();
    let structure = repo.verify(None, false, &NoProgress).await;
    let data = match &newest {
        Some(s) => Some(repo.verify(Some(&s.id), true, &NoProgress).await),
        None => None,
    };
    for report in [Some(structure), data].into_iter().flatten() {
        match report {
            Ok(r) => problems.extend(r.problems.iter().map(|p| format!("{}: {}", p.object, p.detail))),
            Err(e) => problems.push(e.to_string()),
        }
    }
    problems.dedup();
    let corrupt = AlertKind::CorruptionFound.key(&repository);
    let clean = problems.is_empty();
    let detail = if clean {
        match &newest {
            Some(s) => format!(
                "every snapshot's objects present; newest snapshot {} re-read in full",
                s.id
            ),
            None => "every snapshot's objects present; no snapshot of this source to re-read".into(),
        }
    } else {
        format!(
            "{} problem(s): {}",
            problems.len(),
            problems.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
        )
    };
    if clean {
        shared.alerter.resolve(&corrupt);
    } else {
        shared.alerter.raise(
            Alert::new(
                AlertKind::CorruptionFound,
                Severity::Critical,
                format!("verify of repository {repository} found damage: {detail}"),
            )
            .with_source(source.clone())
            .with_key(corrupt)
            .with_detail(
                "fix",
                "run `lifeboat verify --all --read-data` to list every damaged snapshot; take a new backup now",
            ),
        );
    }
    let _ = shared
        .catalog
        .record_run(&RunRecord {
            id: None,
            kind: RunKind::Verify,
            source: Some(source.clone()),
            repository: Some(repository),
            snapshot_id: newest.map(|s| s.id),
            started_at,
            finished_at: jiff::Timestamp::now(),
            status: if clean { RunStatus::Ok } else { RunStatus::Failed },
            detail: (!clean).then(|| detail.clone()),
        })
        .await;
    if clean {
        Outcome::ok(detail)
    } else {
        Outcome::failed(detail)
    }
}

/// Applies the source's retention. Tombstoning happens at once; whatever is due for deletion becomes
/// an approval request from the daemon (one at a time: the same request is not made twice).
async fn prune(shared: &Shared, job: &JobSpec) -> Outcome {
    let source_name = &job.source;
    let Some(source) = shared.ctx.config.sources.get(source_name) else {
        return Outcome::failed(format!("source {source_name} is no longer in the config"));
    };
    let started_at = jiff::Timestamp::now();
    let tz = shared.ctx.config.daemon.zone();
    let plane = crate::control::ControlPlane::new(&shared.ctx, shared.catalog.as_ref());
    let result = plane
        .prune(&shared.principal, &source.repository, Some(source_name), None, tz)
        .await;
    let (outcome, status) = match result {
        Ok((r, approval)) => (
            Outcome::ok(format!(
                "tombstoned {} snapshot(s){}",
                r.snapshots_forgotten,
                match approval {
                    Some(a) => format!(
                        "; deleting {} snapshot(s) and {} chunk(s) waits for approval request {}",
                        r.awaiting_approval.len(),
                        r.chunks_awaiting_approval,
                        a.id
                    ),
                    None => ", nothing to delete".into(),
                }
            )),
            RunStatus::Ok,
        ),
        Err(e) => (Outcome::failed(e.to_string()), RunStatus::Failed),
    };
    let _ = shared
        .catalog
        .record_run(&RunRecord {
            id: None,
            kind: RunKind::Prune,
            source: Some(source_name.clone()),
            repository: Some(source.repository.clone()),
            snapshot_id: None,
            started_at,
            finished_at: jiff::Timestamp::now(),
            status,
            detail: Some(outcome.detail.clone()),
        })
        .await;
    outcome
}

/// Copies the source's snapshots to each `copy_to` repository: the second copy that the
/// `single-copy` and `same-provider-region` findings ask for.
async fn copy(shared: &Shared, job: &JobSpec) -> Outcome {
    let source_name = &job.source;
    let Some(source) = shared.ctx.config.sources.get(source_name) else {
        return Outcome::failed(format!("source {source_name} is no longer in the config"));
    };
    let from = match shared.ctx.repository(&source.repository).await {
        Ok(r) => r,
        Err(e) => return Outcome::failed(e.message),
    };
    let mut lines = Vec::new();
    let mut ok = true;
    let removed = crate::control::Settings::load(shared.catalog.as_ref())
        .await
        .map(|s| s.removed_repositories)
        .unwrap_or_default();
    for to_name in source.copy_to.iter().filter(|r| !removed.contains(*r)) {
        let unreachable = AlertKind::RepositoryUnreachable.key(to_name);
        let to = match shared.ctx.repository(to_name).await {
            Ok(r) => r,
            Err(e) => {
                shared.alerter.raise(
                    Alert::new(
                        AlertKind::RepositoryUnreachable,
                        Severity::Critical,
                        format!("repository {to_name} cannot be opened: {}", e.message),
                    )
                    .with_source(source_name.clone())
                    .with_key(unreachable),
                );
                ok = false;
                lines.push(format!("{to_name}: {}", e.message));
                continue;
            }
        };
        shared.alerter.resolve(&unreachable);
        let result = ops::copy(
            ops::CopyRequest {
                from: &from,
                from_name: &source.repository,
                to: &to,
                to_name,
                source: Some(source_name),
                snapshots: &[],
                dry_run: false,
                uploads_in_flight: 4,
                locks: LockOptions::default(),
                catalog: Some(shared.catalog.as_ref()),
            },
            &NoProgress,
        )
        .await;
        match result {
            Ok(r) => {
                let damaged = AlertKind::CorruptionFound.key(&source.repository);
                if r.found_damage() {
                    let failed: Vec<String> = r
                        .snapshots
                        .iter()
                        .filter_map(|s| s.failure.as_ref().map(|f| format!("{}: {}", s.id, f.error)))
                        .take(5)
                        .collect();
                    shared.alerter.raise(
                        Alert::new(
                            AlertKind::CorruptionFound,
                            Severity::Critical,
                            format!(
                                "copying {source_name} to {to_name} found damage in repository {}: {}",
                                source.repository,
                                failed.join("; ")
                            ),
                        )
                        .with_source(source_name.clone())
                        .with_key(damaged),
                    );
                }
                ok &= r.is_complete();
                lines.push(format!(
                    "{to_name}: {} copied, {} already there, {} failed ({} bytes)",
                    r.snapshots_copied, r.snapshots_already_present, r.snapshots_failed, r.bytes_copied
                ));
            }
            Err(e) => {
                ok = false;
                lines.push(format!("{to_name}: {e}"));
            }
        }
    }
    let detail = lines.join("; ");
    if ok {
        Outcome::ok(detail)
    } else {
        Outcome::failed(detail)
    }
}

/// Runs the shared-fate analysis: a critical finding is an alert until it is fixed, and the counts
/// are metrics. Findings are not job failures: the job failed only if it could not look.
async fn fate(shared: &Shared) -> Outcome {
    let config = &shared.ctx.config;
    let analysis = crate::fate::analyse(
        config,
        &shared.drills,
        Some(shared.catalog.as_ref()),
        &crate::fate::s3::S3Inspector,
        config.fate.probe,
    )
    .await;
    let counts = analysis.counts();
    shared
        .metrics
        .fate_findings(counts.critical, counts.warning, counts.info);
    let mut open: Vec<String> = Vec::new();
    for f in analysis
        .findings
        .iter()
        .filter(|f| f.severity == crate::fate::Severity::Critical)
    {
        let key = AlertKind::FateCritical.key(&f.key());
        let mut alert = Alert::new(
            AlertKind::FateCritical,
            Severity::Critical,
            format!("{} ({}): {}", f.rule, f.subject(), f.evidence),
        )
        .with_key(key.clone())
        .with_detail("rule", f.rule.to_string())
        .with_detail("fix", f.fix.clone());
        if let Some(source) = &f.source {
            alert = alert.with_source(source.clone());
        }
        if let Some(repository) = &f.repository {
            alert = alert.with_detail("repository", repository.clone());
        }
        shared.alerter.raise(alert);
        open.push(key);
    }
    // Fixed since the last analysis: resolved.
    for a in shared.alerter.open_alerts() {
        if a.kind == AlertKind::FateCritical && !open.contains(&a.key) {
            shared.alerter.resolve(&a.key);
        }
    }
    Outcome::ok(format!(
        "{} critical, {} warning, {} info finding(s)",
        counts.critical, counts.warning, counts.info
    ))
}

async fn drill(shared: &Shared, job: &JobSpec) -> Outcome {
    let Some(spec) = shared.drills.iter().find(|d| d.name == job.target) else {
        return Outcome::failed(format!("drill {} is no longer in the drills directory", job.target));
    };
    let name = &spec.name;
    let (result, _evidence) =
        match drill_cmds::run_recorded(&shared.ctx, Some(shared.catalog.as_ref()), spec, false, &NoProgress).await {
            Ok(r) => r,
            Err(e) => return Outcome::failed(e.message),
        };
    let phases: Vec<(&str, Duration)> = result
        .phases
        .iter()
        .map(|p| (p.name.as_str(), Duration::from_secs_f64(p.seconds.max(0.0))))
        .collect();
    shared.metrics.drill_finished(
        name,
        result.verdict.as_str(),
        &phases,
        result.rto_seconds.map(|s| Duration::from_secs_f64(s.max(0.0))),
    );
    let failed_key = AlertKind::DrillFailed.key(name);
    let breach_key = AlertKind::SlaBreached.key(name);
    let reason = result.reason.clone().unwrap_or_default();
    let alert = |kind, severity, summary: String| {
        Alert::new(kind, severity, summary)
            .with_source(spec.source.clone())
            .with_drill(name.clone())
            .with_routes(spec.alerts.clone())
            .with_detail("run", result.run_id.clone())
    };
    match result.verdict {
        Verdict::Pass => {
            shared.alerter.resolve(&failed_key);
            shared.alerter.resolve(&breach_key);
        }
        Verdict::SlaBreach => {
            shared.alerter.resolve(&failed_key);
            shared.alerter.raise(alert(
                AlertKind::SlaBreached,
                Severity::Warning,
                format!("drill {name}: recovery works but misses its SLA: {reason}"),
            ));
        }
        Verdict::Fail | Verdict::Error => {
            shared.alerter.raise(alert(
                AlertKind::DrillFailed,
                Severity::Critical,
                format!("drill {name} {}: {reason}", result.verdict.as_str()),
            ));
        }
    }
    rto_trend(shared, spec).await;
    let detail = match &result.reason {
        Some(r) => format!("{}: {r}", result.verdict.as_str()),
        None => result.verdict.as_str().to_string(),
    };
    if result.verdict == Verdict::Pass {
        Outcome::ok(detail)
    } else {
        Outcome::failed(detail)
    }
}

/// The share of its RTO target that a drill's p95 may reach before it is reported as trending
/// toward a breach.
const RTO_TREND_SHARE: f64 = 0.8;
/// Recent runs the p95 is taken over.
const RTO_TREND_RUNS: u32 = 20;

async fn rto_trend(shared: &Shared, spec: &crate::drill::spec::DrillSpec) {
    let Some(target) = spec.sla.rto else { return };
    let Ok(runs) = shared
        .catalog
        .drill_runs(&DrillRunFilter {
            drill: Some(spec.name.clone()),
            source: None,
            limit: Some(RTO_TREND_RUNS),
        })
        .await
    else {
        return;
    };
    let rtos: Vec<f64> = runs.iter().filter_map(|r| r.rto_seconds).collect();
    let key = AlertKind::RtoTrending.key(&spec.name);
    match percentile(&rtos, 95.0) {
        Some(p95) if p95 > RTO_TREND_SHARE * target.as_secs_f64() => {
            shared.alerter.raise(
                Alert::new(
                    AlertKind::RtoTrending,
                    Severity::Warning,
                    format!(
                        "drill {}: p95 RTO over the last {} runs is {:.0}s, above {:.0}% of the {:.0}s target",
                        spec.name,
                        rtos.len(),
                        p95,
                        RTO_TREND_SHARE * 100.0,
                        target.as_secs_f64()
                    ),
                )
                .with_source(spec.source.clone())
                .with_drill(spec.name.clone())
                .with_routes(spec.alerts.clone())
                .with_key(key),
            );
        }
        _ => {
            shared.alerter.resolve(&key);
        }
    }
}
