//! Running one drill: select → provision → fetch and verify → restore → checks → teardown, each timed.
//!
//! A run always ends with a [`DrillResult`]; failures become verdicts, never panics or early returns,
//! because "could not measure" is itself what on-call needs to know.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::result::{CheckResult, CheckStatus, DrillResult, Phase, ScratchInfo, TestedSnapshot, Verdict};
use super::spec::{Check, DrillSpec, RestorePoint, ScratchSpec};
use crate::config::SourceConfig;
use crate::engine::{self, AmcheckOutcome, Endpoint, Engine, RestoreOptions};
use crate::ops::{self, OpsError};
use crate::repo::{Manifest, Progress, RepoError, Repository, new_snapshot_id};
use crate::scratch::{EphemeralOptions, EphemeralPostgres};

/// How long a drill's `command` check may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);

pub struct DrillInputs<'a> {
    pub spec: &'a DrillSpec,
    pub source: &'a SourceConfig,
    pub repository_name: &'a str,
    pub repo: &'a Repository,
    /// Tamper with the restored copy before the checks: the run must then end in `fail`.
    pub negative_control: bool,
    /// Where ephemeral clusters are created (default: the system temp dir).
    pub scratch_parent: Option<PathBuf>,
}

/// The scratch database a drill restores into, and how to get rid of it.
enum Scratch {
    /// The cluster's own guard stops it and removes its directory if the drill is cancelled.
    Ephemeral {
        cluster: EphemeralPostgres,
        target: Endpoint,
    },
    Server {
        db: ServerDatabase,
        target: Endpoint,
    },
}

/// A throwaway database on a scratch server, dropped even when the drill is cancelled midway.
struct ServerDatabase {
    server: Box<dyn Engine>,
    name: String,
    armed: bool,
}

impl Drop for ServerDatabase {
    fn drop(&mut self) {
        if self.armed {
            self.server.drop_database_blocking(&self.name);
        }
    }
}

impl Scratch {
    fn target(&self) -> &Endpoint {
        match self {
            Scratch::Ephemeral { target, .. } | Scratch::Server { target, .. } => target,
        }
    }
    async fn teardown(self) -> Result<(), String> {
        match self {
            Scratch::Ephemeral { cluster, .. } => cluster.stop().await.map_err(|e| e.to_string()),
            Scratch::Server { mut db, .. } => {
                let dropped = db.server.drop_database(&db.name).await.map_err(|e| e.to_string());
                // Only a failed drop is retried by the guard.
                db.armed = dropped.is_err();
                dropped
            }
        }
    }
}

struct Clock {
    phases: Vec<Phase>,
    at: Instant,
}

impl Clock {
    fn lap(&mut self, name: &str, ok: bool, detail: Option<String>) {
        let seconds = self.at.elapsed().as_secs_f64();
        self.phases.push(Phase {
            name: name.into(),
            seconds,
            ok,
            detail,
        });
        self.at = Instant::now();
    }
}

pub async fn run(inputs: DrillInputs<'_>, progress: &dyn Progress) -> DrillResult {
    let start = Instant::now();
    let started_at = jiff::Timestamp::now();
    let spec = inputs.spec;
    let mut result = DrillResult {
        run_id: new_snapshot_id(started_at),
        drill: spec.name.clone(),
        source: spec.source.clone(),
        repository: inputs.repository_name.to_string(),
        started_at,
        finished_at: started_at,
        verdict: Verdict::Error,
        reason: None,
        snapshot: None,
        rto_seconds: None,
        rpo_seconds: None,
        sla_rto_seconds: spec.sla.rto.map(|d| d.as_secs_f64()),
        sla_rpo_seconds: spec.sla.rpo.map(|d| d.as_secs_f64()),
        phases: Vec::new(),
        checks: Vec::new(),
        scratch: None,
        negative_control: inputs.negative_control,
        lifeboat_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let mut clock = Clock {
        phases: Vec::new(),
        at: Instant::now(),
    };
    let outcome = run_phases(&inputs, &mut result, &mut clock, start, progress).await;
    if let Err((verdict, reason)) = outcome {
        result.verdict = verdict;
        result.reason = Some(reason);
    }
    result.phases = clock.phases;
    result.finished_at = jiff::Timestamp::now();
    result
}

type Stop = (Verdict, String);

async fn run_phases(
    inputs: &DrillInputs<'_>,
    result: &mut DrillResult,
    clock: &mut Clock,
    start: Instant,
    progress: &dyn Progress,
) -> Result<(), Stop> {
    let spec = inputs.spec;
    // --- select
    let manifest = match select(inputs.repo, spec, result.started_at).await {
        Ok(m) => m,
        Err(e) => {
            clock.lap("select", false, Some(e.clone()));
            return Err((Verdict::Error, e));
        }
    };
    result.snapshot = Some(TestedSnapshot {
        id: manifest.id.clone(),
        manifest_sha256: manifest.digest(),
        taken_at: manifest.started_at,
        bytes: manifest.stream.size,
    });
    let rpo = result
        .started_at
        .duration_since(manifest.started_at)
        .as_secs_f64()
        .max(0.0);
    result.rpo_seconds = Some(rpo);
    clock.lap("select", true, Some(manifest.id.clone()));

    // --- provision, and fetch-and-verify at the same time: neither needs the other, and on the way
    // to a restored database their times would otherwise add up. The two phases overlap, so their
    // seconds add up to more than the wall time they took.
    let staging = ops::Staging {
        dir: inputs.scratch_parent.clone(),
        disk_only: false,
    };
    let purpose = format!("drill {}", spec.name);
    let provision_clock = Instant::now();
    let (provisioned, staged) = tokio::join!(
        async {
            let p = provision(inputs, &manifest, &result.run_id).await;
            (p, provision_clock.elapsed().as_secs_f64())
        },
        // Holds a shared repository lock naming this drill and the snapshot while it reads, so a prune
        // cannot delete the snapshot under it.
        ops::stage(inputs.repo, &manifest, &staging, &purpose, progress),
    );
    let (provisioned, provision_seconds) = provisioned;
    let lap = |name: &str, seconds: f64, ok: bool, detail: Option<String>| Phase {
        name: name.into(),
        seconds,
        ok,
        detail,
    };
    let (scratch, info) = match provisioned {
        Ok(s) => {
            clock.phases.push(lap("provision", provision_seconds, true, None));
            s
        }
        Err(e) => {
            clock
                .phases
                .push(lap("provision", provision_seconds, false, Some(e.clone())));
            return Err((Verdict::Error, e));
        }
    };
    result.scratch = Some(info);
    let staged = match staged {
        Ok(s) => {
            clock.phases.push(lap("fetch-and-verify", s.seconds, true, None));
            s
        }
        Err(e) => {
            let seconds = provision_clock.elapsed().as_secs_f64();
            clock
                .phases
                .push(lap("fetch-and-verify", seconds, false, Some(e.to_string())));
            clock.at = Instant::now();
            let teardown = scratch.teardown().await;
            clock.lap("teardown", teardown.is_ok(), teardown.err());
            let verdict = match &e {
                OpsError::Repo(RepoError::Corrupt { .. } | RepoError::Missing { .. }) => Verdict::Fail,
                _ => Verdict::Error,
            };
            return Err((verdict, e.to_string()));
        }
    };
    clock.at = Instant::now();

    // Everything from here on tears the scratch down, whatever happens.
    let measured = restore_and_check(inputs, &manifest, &scratch, staged, result, clock, progress).await;
    if measured.is_ok()
        && result
            .checks
            .iter()
            .all(|c| matches!(c.status, CheckStatus::Pass | CheckStatus::Skipped))
    {
        result.rto_seconds = Some(start.elapsed().as_secs_f64());
    }
    clock.at = Instant::now();
    let teardown = scratch.teardown().await;
    clock.lap("teardown", teardown.is_ok(), teardown.as_ref().err().cloned());
    measured?;

    if let Some(failed) = result.checks.iter().find(|c| c.status == CheckStatus::Fail) {
        return Err((Verdict::Fail, describe_check_failure(failed)));
    }
    if let Some(broken) = result.checks.iter().find(|c| c.status == CheckStatus::Error) {
        return Err((Verdict::Error, describe_check_failure(broken)));
    }
    if let Err(e) = teardown {
        return Err((Verdict::Error, format!("teardown failed: {e}")));
    }
    let rto = result.rto_seconds.unwrap_or_default();
    let mut breaches = Vec::new();
    if let Some(limit) = spec.sla.rto
        && rto > limit.as_secs_f64()
    {
        breaches.push(format!(
            "RTO {} exceeds the SLA's {}",
            human(rto),
            human(limit.as_secs_f64())
        ));
    }
    if let Some(limit) = spec.sla.rpo
        && rpo > limit.as_secs_f64()
    {
        breaches.push(format!(
            "RPO {} exceeds the SLA's {}",
            human(rpo),
            human(limit.as_secs_f64())
        ));
    }
    if !breaches.is_empty() {
        return Err((Verdict::SlaBreach, breaches.join("; ")));
    }
    result.verdict = Verdict::Pass;
    Ok(())
}

async fn restore_and_check(
    inputs: &DrillInputs<'_>,
    manifest: &Manifest,
    scratch: &Scratch,
    staged: ops::StagedArchive,
    result: &mut DrillResult,
    clock: &mut Clock,
    progress: &dyn Progress,
) -> Result<(), Stop> {
    let target =
        engine::for_kind(&manifest.engine, scratch.target().clone()).map_err(|e| (Verdict::Error, e.to_string()))?;
    let request = ops::RestoreRequest {
        manifest,
        repo: inputs.repo,
        target: target.as_ref(),
        // A scratch cluster has none of the source's roles.
        options: RestoreOptions {
            jobs: 2,
            no_owner: true,
            replace: false,
        },
        // Already staged above.
        staging: ops::Staging::default(),
        staged: Some(staged),
    };
    match ops::restore(request, progress).await {
        Ok(_) => clock.lap("restore", true, None),
        Err(e) => {
            let verdict = match &e {
                OpsError::Repo(RepoError::Corrupt { .. } | RepoError::Missing { .. }) | OpsError::Mismatch { .. } => {
                    Verdict::Fail
                }
                _ => Verdict::Error,
            };
            clock.lap("restore", false, Some(e.to_string()));
            return Err((verdict, e.to_string()));
        }
    }

    if inputs.negative_control {
        let victim = manifest
            .facts
            .fingerprint
            .tables
            .iter()
            .filter(|t| t.rows > 0)
            .max_by_key(|t| t.rows);
        let Some(victim) = victim else {
            return Err((
                Verdict::Error,
                "negative control: the backup has no rows to tamper with".into(),
            ));
        };
        target
            .delete_one_row(&victim.schema, &victim.table)
            .await
            .map_err(|e| {
                (
                    Verdict::Error,
                    format!("negative control: cannot tamper with the copy: {e}"),
                )
            })?;
    }

    for check in &inputs.spec.checks {
        result.checks.push(
            run_check(
                check,
                target.as_ref(),
                manifest,
                result.started_at,
                scratch.target(),
                inputs.spec,
            )
            .await,
        );
    }
    let ok = result
        .checks
        .iter()
        .all(|c| matches!(c.status, CheckStatus::Pass | CheckStatus::Skipped));
    clock.lap("checks", ok, None);
    Ok(())
}

fn describe_check_failure(c: &CheckResult) -> String {
    let mut s = format!(
        "check `{}` {}",
        c.check,
        if c.status == CheckStatus::Fail {
            "failed"
        } else {
            "could not run"
        }
    );
    if let Some(o) = &c.observed {
        s.push_str(&format!(": saw {o}"));
    }
    if let Some(d) = &c.detail {
        s.push_str(&format!(" ({d})"));
    }
    s
}

async fn select(repo: &Repository, spec: &DrillSpec, now: jiff::Timestamp) -> Result<Manifest, String> {
    let (mut manifests, damaged) = repo.manifests(Some(&spec.source)).await.map_err(|e| e.to_string())?;
    if manifests.is_empty() {
        let extra = if damaged.is_empty() {
            String::new()
        } else {
            format!(" ({} damaged manifests skipped)", damaged.len())
        };
        return Err(format!(
            "no snapshot of source `{}` in repository {}{extra}; fix: run `lifeboat backup {}` first",
            spec.source,
            repo.location(),
            spec.source
        ));
    }
    manifests.sort_by_key(|m| m.finished_at);
    match &spec.restore_point {
        RestorePoint::Latest => Ok(manifests.pop().expect("not empty")),
        RestorePoint::Random { within } => {
            let span = jiff::SignedDuration::try_from(*within).unwrap_or(jiff::SignedDuration::MAX);
            let since = now.checked_sub(span).unwrap_or(jiff::Timestamp::MIN);
            let recent: Vec<Manifest> = manifests.into_iter().filter(|m| m.finished_at >= since).collect();
            if recent.is_empty() {
                return Err(format!(
                    "no snapshot of `{}` finished within the last {}; fix: take a backup or widen `random:`",
                    spec.source,
                    human(within.as_secs_f64())
                ));
            }
            let pick = rand::random_range(0..recent.len());
            Ok(recent.into_iter().nth(pick).expect("in range"))
        }
        RestorePoint::At(at) => manifests.into_iter().rfind(|m| m.started_at <= *at).ok_or_else(|| {
            format!(
                "no snapshot of `{}` was taken at or before {at}; fix: choose a later time",
                spec.source
            )
        }),
    }
}

/// Scratch-server databases are named after the run: `lifeboat_drill_<yyyymmddThhmmssZ>_<random>`.
const DRILL_DB_PREFIX: &str = "lifeboat_drill_";

/// Drops databases that drills killed outright (SIGKILL, a lost host) left on a scratch server. Only
/// those more than a day old: no drill runs that long, and a younger one may belong to a drill
/// running right now.
async fn reap_leftover_databases(server: &dyn Engine) -> Vec<String> {
    let Ok(names) = server.databases_with_prefix(DRILL_DB_PREFIX).await else {
        return Vec::new();
    };
    let cutoff = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24);
    let mut reaped = Vec::new();
    for name in names {
        let stamp = name[DRILL_DB_PREFIX.len()..].get(..16).map(str::to_ascii_uppercase);
        let created = stamp.and_then(|s| {
            let civil = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", &s).ok()?;
            jiff::tz::TimeZone::UTC.to_timestamp(civil).ok()
        });
        if created.is_some_and(|t| t < cutoff) && server.drop_database(&name).await.is_ok() {
            reaped.push(name);
        }
    }
    reaped
}

/// The major version in a `server_version` string ("15.20 (Debian ...)" → 15).
fn major_version(server_version: &str) -> Option<u32> {
    server_version.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

async fn provision(
    inputs: &DrillInputs<'_>,
    manifest: &Manifest,
    run_id: &str,
) -> Result<(Scratch, ScratchInfo), String> {
    match &inputs.spec.scratch {
        ScratchSpec::Ephemeral => {
            let wanted = major_version(&manifest.facts.server_version);
            let bin_dir = wanted
                .map(|v| PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")))
                .filter(|d| d.join("initdb").exists());
            let cluster = EphemeralPostgres::start(&EphemeralOptions {
                bin_dir: bin_dir.clone(),
                parent_dir: inputs.scratch_parent.clone(),
            })
            .await
            .map_err(|e| e.to_string())?;
            let version_note = match (wanted, &bin_dir) {
                (Some(v), None) => Some(format!(
                    "the backup is from PostgreSQL {v} but no {v} server binaries are installed here; the scratch cluster uses {}",
                    cluster.bin_dir().display()
                )),
                _ => None,
            };
            cluster.create_database("drill").await.map_err(|e| e.to_string())?;
            let dsn = url::Url::parse(&cluster.dsn("drill")).map_err(|e| e.to_string())?;
            let target = Endpoint {
                dsn,
                password: None,
                bin_dir: Some(cluster.bin_dir().to_path_buf()),
            };
            let info = ScratchInfo {
                kind: "ephemeral".into(),
                server_version: wanted.map(|v| v.to_string()),
                version_note,
                // Ephemeral clusters are reaped by the scratch module when it starts one.
                reaped: Vec::new(),
            };
            Ok((Scratch::Ephemeral { cluster, target }, info))
        }
        ScratchSpec::Server { dsn, environment } => {
            if environment.as_deref() == Some("production") {
                return Err("refused: the scratch server is tagged production; fix: point the drill at a server set aside for drills".into());
            }
            let dsn_text = dsn.resolve().map_err(|e| e.to_string())?;
            let url = url::Url::parse(dsn_text.expose()).map_err(|e| format!("the scratch DSN is not a URL: {e}"))?;
            let password = url.password().map(|p| secrecy::SecretString::from(p.to_string()));
            let mut clean = url.clone();
            let _ = clean.set_password(None);
            let endpoint = Endpoint {
                dsn: clean,
                password,
                bin_dir: inputs.source.pg_bin_dir.clone(),
            };
            // The database name does not matter: a drill must not load the source's server at all.
            if engine::same_server(&manifest.engine, &endpoint.dsn, &inputs.source.dsn) {
                return Err(format!(
                    "refused: the scratch server {} is the source's own server; fix: use a separate server for drills",
                    engine::redact(&endpoint.dsn)
                ));
            }
            let server = engine::for_kind(&manifest.engine, endpoint).map_err(|e| e.to_string())?;
            let identity = server.identity().await.map_err(|e| e.to_string())?;
            if identity.system_identifier.is_some() && identity.system_identifier == manifest.facts.system_identifier {
                return Err(format!(
                    "refused: the scratch server has the source's system identifier {}; it is the source's own cluster; fix: use a separate server for drills",
                    identity.system_identifier.unwrap_or_default()
                ));
            }
            let reaped = reap_leftover_databases(server.as_ref()).await;
            let database = format!("{DRILL_DB_PREFIX}{}", run_id.to_ascii_lowercase().replace('-', "_"));
            let target = server.create_database(&database).await.map_err(|e| e.to_string())?;
            let info = ScratchInfo {
                kind: "server".into(),
                server_version: Some(identity.server_version),
                version_note: None,
                reaped,
            };
            Ok((
                Scratch::Server {
                    db: ServerDatabase {
                        server,
                        name: database,
                        armed: true,
                    },
                    target,
                },
                info,
            ))
        }
    }
}

async fn run_check(
    check: &Check,
    target: &dyn Engine,
    manifest: &Manifest,
    started_at: jiff::Timestamp,
    endpoint: &Endpoint,
    spec: &DrillSpec,
) -> CheckResult {
    let label = check.describe();
    let done = |status, observed: Option<String>, detail: Option<String>| CheckResult {
        check: label.clone(),
        status,
        observed,
        detail,
    };
    match check {
        Check::Fingerprint => match target.fingerprint().await {
            Ok(now) => {
                let mut want = manifest.facts.fingerprint.tables.clone();
                want.sort();
                let mut got = now.tables;
                got.sort();
                let diffs: Vec<String> = want
                    .iter()
                    .filter_map(|w| {
                        let seen = got
                            .iter()
                            .find(|g| g.schema == w.schema && g.table == w.table)
                            .map(|g| g.rows);
                        (seen != Some(w.rows)).then(|| {
                            format!(
                                "{}.{}: expected {} rows, saw {}",
                                w.schema,
                                w.table,
                                w.rows,
                                seen.map_or("no table".into(), |r| r.to_string())
                            )
                        })
                    })
                    .collect();
                if diffs.is_empty() && want.len() == got.len() {
                    done(
                        CheckStatus::Pass,
                        Some(format!(
                            "{} tables, {} rows",
                            want.len(),
                            manifest.facts.fingerprint.total_rows()
                        )),
                        None,
                    )
                } else if diffs.is_empty() {
                    done(
                        CheckStatus::Fail,
                        Some(format!("{} tables, expected {}", got.len(), want.len())),
                        None,
                    )
                } else {
                    done(CheckStatus::Fail, Some(diffs.join("; ")), None)
                }
            }
            Err(e) => done(CheckStatus::Error, None, Some(e.to_string())),
        },
        Check::Sql { sql, expect } => match target.query_text(sql).await {
            Ok(value) => {
                let shown = value.clone().unwrap_or_else(|| "NULL".into());
                let ok = value.as_deref().is_some_and(|v| expect.matches(v));
                done(
                    if ok { CheckStatus::Pass } else { CheckStatus::Fail },
                    Some(shown),
                    None,
                )
            }
            Err(e) => done(CheckStatus::Error, None, Some(e.to_string())),
        },
        Check::Freshness { sql, within } => match target.query_timestamp(sql).await {
            Ok(Some(ts)) => {
                let age = started_at.duration_since(ts).as_secs_f64();
                let ok = age <= within.as_secs_f64();
                done(
                    if ok { CheckStatus::Pass } else { CheckStatus::Fail },
                    Some(format!("newest {ts}, {} old", human(age.max(0.0)))),
                    None,
                )
            }
            Ok(None) => done(CheckStatus::Fail, Some("NULL (no rows)".into()), None),
            Err(e) => done(CheckStatus::Error, None, Some(e.to_string())),
        },
        Check::Amcheck => match target.amcheck().await {
            Ok(AmcheckOutcome::Sound { indexes }) => {
                done(CheckStatus::Pass, Some(format!("{indexes} B-tree indexes sound")), None)
            }
            Ok(AmcheckOutcome::Corrupt { detail }) => done(CheckStatus::Fail, Some(detail), None),
            Ok(AmcheckOutcome::Unavailable { reason }) => done(CheckStatus::Skipped, None, Some(reason)),
            Err(e) => done(CheckStatus::Error, None, Some(e.to_string())),
        },
        Check::Command { argv } => {
            run_command(argv, endpoint, spec)
                .await
                .unwrap_or_else(|(status, observed, detail)| CheckResult {
                    check: label.clone(),
                    status,
                    observed,
                    detail,
                })
        }
    }
}

type CommandFailure = (CheckStatus, Option<String>, Option<String>);

async fn run_command(argv: &[String], endpoint: &Endpoint, spec: &DrillSpec) -> Result<CheckResult, CommandFailure> {
    let (program, args) = argv
        .split_first()
        .ok_or((CheckStatus::Error, None, Some("empty command".to_string())))?;
    let dir = spec.file.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(&dir)
        .env("LIFEBOAT_SCRATCH_DSN", endpoint.dsn.as_str())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(pw) = &endpoint.password {
        use secrecy::ExposeSecret;
        cmd.env("PGPASSWORD", pw.expose_secret());
    }
    let out = tokio::time::timeout(COMMAND_TIMEOUT, cmd.output())
        .await
        .map_err(|_| {
            (
                CheckStatus::Error,
                None,
                Some(format!("still running after {}s; killed", COMMAND_TIMEOUT.as_secs())),
            )
        })?
        .map_err(|e| (CheckStatus::Error, None, Some(format!("cannot run {program}: {e}"))))?;
    let tail = |b: &[u8]| {
        let t = String::from_utf8_lossy(b);
        let t = t.trim();
        let start = t.char_indices().rev().nth(400).map_or(0, |(i, _)| i);
        t[start..].to_string()
    };
    let observed = Some(format!(
        "exit {}",
        out.status.code().map_or("by signal".into(), |c| c.to_string())
    ));
    let status = if out.status.success() {
        CheckStatus::Pass
    } else {
        CheckStatus::Fail
    };
    let detail = (!out.status.success()).then(|| {
        tail(if out.stderr.is_empty() {
            &out.stdout
        } else {
            &out.stderr
        })
    });
    Ok(CheckResult {
        check: argv.join(" "),
        status,
        observed,
        detail,
    })
}

/// "1h 02m", "3m 20s", "12.3s".
pub fn human(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m {:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else if s < 86400.0 * 2.0 {
        format!("{}h {:02}m", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64)
    } else {
        format!("{}d {:02}h", (s / 86400.0) as u64, ((s % 86400.0) / 3600.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_versions() {
        assert_eq!(major_version("15.20 (Debian 15.20-0+deb12u1)"), Some(15));
        assert_eq!(major_version("17beta1"), Some(17));
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(12.34), "12.3s");
        assert_eq!(human(200.0), "3m 20s");
        assert_eq!(human(3720.0), "1h 02m");
    }
}
