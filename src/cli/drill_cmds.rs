//! `lifeboat drill run|list|history` and `lifeboat sla`.

use std::collections::BTreeMap;

use serde_json::json;

use super::context::Context;
use super::progress::Meter;
use super::render::{self, Output};
use super::{CliError, Exit};
use crate::catalog::{Catalog, DrillRunFilter};
use crate::drill::result::{CheckStatus, DrillResult, Verdict};
use crate::drill::run::{DrillInputs, human};
use crate::drill::sla::{Measured, summarize};
use crate::drill::spec::{self, DrillSpec, RestorePoint};
use crate::drill::{record, run};

fn specs(ctx: &Context) -> Result<Vec<DrillSpec>, CliError> {
    Ok(spec::load_dir(&ctx.config.drills_dir, &ctx.config)?)
}

fn find<'a>(specs: &'a [DrillSpec], name: &str) -> Result<&'a DrillSpec, CliError> {
    specs.iter().find(|s| s.name == name).ok_or_else(|| {
        let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        CliError::usage(format!(
            "no drill named `{name}`; fix: use one of: {} (drill files are read from the config's drills_dir)",
            if known.is_empty() {
                "(none defined)".to_string()
            } else {
                known.join(", ")
            }
        ))
    })
}

pub fn verdict_exit(v: Verdict) -> Exit {
    match v {
        Verdict::Pass => Exit::Ok,
        Verdict::Fail => Exit::Damage,
        Verdict::SlaBreach => Exit::SlaBreach,
        Verdict::Error => Exit::Failed,
    }
}

/// Resolves on SIGINT or SIGTERM, naming it.
pub(crate) async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

pub async fn run_drill(ctx: &Context, name: &str, negative_control: bool, out: &Output) -> Result<Exit, CliError> {
    let specs = specs(ctx)?;
    let spec = find(&specs, name)?;
    super::control_cmds::require(
        ctx,
        crate::control::Operation::Drill,
        &format!("run drill {name}"),
        &[&spec.source],
    )
    .await?;
    super::control_cmds::in_use(ctx, &ctx.source(&spec.source)?.repository).await?;
    let meter = Meter::new(out.progress, "drill", None);
    let catalog = match ctx.catalog().await {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("warning: catalog unavailable: {}", e.message);
            None
        }
    };
    // On SIGINT/SIGTERM the drill's future is dropped: the scratch cluster's guard stops it and
    // removes its directory, and child tools are killed with it.
    let outcome = tokio::select! {
        r = run_recorded(ctx, catalog.as_deref(), spec, negative_control, &meter) => r,
        sig = shutdown_signal() => {
            meter.finish();
            return Err(CliError::new(Exit::Failed, format!("drill {name} interrupted by {sig}; its scratch environment was removed and nothing was recorded")));
        }
    };
    meter.finish();
    let (result, evidence) = outcome?;

    if out.json {
        out.json(&json!({"result": result, "evidence": evidence}));
    } else {
        print_result(&result, evidence.as_deref());
    }
    if negative_control {
        // The copy was damaged on purpose: only a failing verdict proves the checks can fail.
        return Ok(if result.verdict == Verdict::Fail {
            if !out.json {
                println!("negative control PASSED: the checks caught the tampering");
            }
            Exit::Ok
        } else {
            eprintln!(
                "negative control FAILED: a row was deleted from the restored copy and the drill still said `{}`; fix: add a `fingerprint: true` or a count check to the drill",
                result.verdict.as_str()
            );
            Exit::Failed
        });
    }
    Ok(verdict_exit(result.verdict))
}

/// Runs a drill and records its result as evidence in the repository and in the catalog (when
/// there is one): what `lifeboat drill run` and the daemon's drill job both do. Returns the result
/// and the evidence object's path; failing to record is a warning, the verdict stands.
pub(crate) async fn run_recorded(
    ctx: &Context,
    catalog: Option<&dyn Catalog>,
    spec: &DrillSpec,
    negative_control: bool,
    progress: &dyn crate::repo::Progress,
) -> Result<(DrillResult, Option<String>), CliError> {
    let source = ctx.source(&spec.source)?;
    let repo = ctx.repository(&source.repository).await?;
    let inputs = DrillInputs {
        spec,
        source,
        repository_name: &source.repository,
        repo: &repo,
        negative_control,
        scratch_parent: None,
    };
    let result = run::run(inputs, progress).await;
    let evidence = match record::store_evidence(&repo, &result).await {
        Ok(path) => Some(path),
        Err(e) => {
            tracing::warn!("the drill's evidence could not be stored in the repository: {e}");
            None
        }
    };
    if let Some(c) = catalog
        && let Err(e) = c.record_drill_run(&record::catalog_record(&result)).await
    {
        tracing::warn!("the catalog could not record this drill: {e}; fix: run `lifeboat catalog rebuild`");
    }
    Ok((result, evidence))
}

/// The drill files of the config's `drills_dir`.
pub(crate) fn load_specs(ctx: &Context) -> Result<Vec<DrillSpec>, CliError> {
    specs(ctx)
}

fn print_result(r: &DrillResult, evidence: Option<&str>) {
    let sla = |v: Option<f64>, limit: Option<f64>| match (v, limit) {
        (Some(v), Some(l)) => format!("{} (SLA {})", human(v), human(l)),
        (Some(v), None) => human(v),
        (None, Some(l)) => format!("not measured (SLA {})", human(l)),
        (None, None) => "not measured".into(),
    };
    println!("drill {}: {}", r.drill, r.verdict.as_str().to_uppercase());
    if let Some(reason) = &r.reason {
        println!("  reason:   {reason}");
    }
    if let Some(s) = &r.snapshot {
        println!(
            "  snapshot: {} (taken {}, manifest sha256 {})",
            s.id,
            s.taken_at,
            &s.manifest_sha256[..16]
        );
    }
    println!("  RTO:      {}", sla(r.rto_seconds, r.sla_rto_seconds));
    println!("  RPO:      {}", sla(r.rpo_seconds, r.sla_rpo_seconds));
    if let Some(note) = r.scratch.as_ref().and_then(|s| s.version_note.as_ref()) {
        println!("  scratch:  {note}");
    }
    let phases: Vec<String> = r
        .phases
        .iter()
        .map(|p| format!("{} {}{}", p.name, human(p.seconds), if p.ok { "" } else { " (failed)" }))
        .collect();
    println!("  phases:   {}", phases.join(", "));
    for c in &r.checks {
        let status = match c.status {
            CheckStatus::Pass => "pass",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Skipped => "skipped",
            CheckStatus::Error => "ERROR",
        };
        let mut line = format!("  {status:<8} {}", c.check);
        if let Some(o) = &c.observed {
            line.push_str(&format!(" → {o}"));
        }
        if let Some(d) = &c.detail {
            line.push_str(&format!(" ({d})"));
        }
        println!("{line}");
    }
    if let Some(e) = evidence {
        println!("  evidence: {e}");
    }
}

fn restore_point(p: &RestorePoint) -> String {
    match p {
        RestorePoint::Latest => "latest".into(),
        RestorePoint::Random { within } => format!("random {}", spec::format_duration(*within)),
        RestorePoint::At(t) => format!("at {t}"),
    }
}

pub async fn list(ctx: &Context, out: &Output) -> Result<Exit, CliError> {
    let specs = specs(ctx)?;
    let catalog = ctx.catalog().await.ok();
    let mut rows = Vec::new();
    let mut docs = Vec::new();
    for s in &specs {
        let last = match &catalog {
            Some(c) => c
                .drill_runs(&DrillRunFilter {
                    drill: Some(s.name.clone()),
                    source: None,
                    limit: Some(1),
                })
                .await
                .ok()
                .and_then(|v| v.into_iter().next()),
            None => None,
        };
        let last_text = last.as_ref().map_or("never".to_string(), |l| {
            format!("{} {}", l.verdict, l.finished_at.strftime("%Y-%m-%d %H:%M"))
        });
        rows.push(vec![
            s.name.clone(),
            s.source.clone(),
            s.schedule.clone().unwrap_or_else(|| "-".into()),
            restore_point(&s.restore_point),
            s.sla.rto.map_or("-".into(), spec::format_duration),
            s.sla.rpo.map_or("-".into(), spec::format_duration),
            s.checks.len().to_string(),
            last_text.clone(),
        ]);
        docs.push(json!({
            "name": s.name, "source": s.source, "file": s.file, "schedule": s.schedule,
            "restore_point": restore_point(&s.restore_point),
            "sla_rto_seconds": s.sla.rto.map(|d| d.as_secs_f64()), "sla_rpo_seconds": s.sla.rpo.map(|d| d.as_secs_f64()),
            "checks": s.checks.iter().map(|c| c.describe()).collect::<Vec<_>>(),
            "last_verdict": last.as_ref().map(|l| l.verdict.to_string()),
        }));
    }
    if out.json {
        out.json(&docs);
    } else if rows.is_empty() {
        println!("no drills in {}", ctx.config.drills_dir.display());
    } else {
        render::table(
            &[
                "NAME",
                "SOURCE",
                "SCHEDULE",
                "RESTORE POINT",
                "RTO SLA",
                "RPO SLA",
                "CHECKS",
                "LAST",
            ],
            &rows,
        );
    }
    Ok(Exit::Ok)
}

pub async fn history(ctx: &Context, name: &str, limit: u32, out: &Output) -> Result<Exit, CliError> {
    let catalog = ctx.catalog().await?;
    let runs = catalog
        .drill_runs(&DrillRunFilter {
            drill: Some(name.to_string()),
            source: None,
            limit: Some(limit),
        })
        .await?;
    if out.json {
        let docs: Vec<serde_json::Value> = runs.iter().map(|r| r.evidence.clone()).collect();
        out.json(&docs);
        return Ok(Exit::Ok);
    }
    if runs.is_empty() {
        println!(
            "no runs of drill {name} in the catalog (run one with `lifeboat drill run {name}`, or `lifeboat catalog rebuild`)"
        );
        return Ok(Exit::Ok);
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.verdict.to_string(),
                r.snapshot_id.clone().unwrap_or_else(|| "-".into()),
                r.rto_seconds.map_or("-".into(), human),
                r.rpo_seconds.map_or("-".into(), human),
                r.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    render::table(&["RUN", "VERDICT", "SNAPSHOT", "RTO", "RPO", "DETAIL"], &rows);
    Ok(Exit::Ok)
}

pub async fn sla(ctx: &Context, out: &Output) -> Result<Exit, CliError> {
    let specs = specs(ctx)?;
    let catalog = ctx.catalog().await?;
    let summaries = sla_summaries(&specs, catalog.as_ref()).await?;
    if out.json {
        out.json(&summaries);
        return Ok(Exit::Ok);
    }
    let opt = |v: Option<f64>| v.map_or("-".into(), human);
    let rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|s| {
            vec![
                s.source.clone(),
                opt(s.target_rto_seconds),
                opt(s.last_rto_seconds),
                format!("{} / {}", opt(s.rto_p50_seconds), opt(s.rto_p95_seconds)),
                opt(s.target_rpo_seconds),
                opt(s.last_rpo_seconds),
                s.within_sla
                    .map_or("-".into(), |w| format!("{:.0}% of {}", w * 100.0, s.drills)),
                s.last_verdict.map_or("never".into(), |v| v.as_str().to_string()),
            ]
        })
        .collect();
    render::table(
        &[
            "SOURCE",
            "RTO SLA",
            "LAST RTO",
            "RTO p50 / p95",
            "RPO SLA",
            "LAST RPO",
            "WITHIN SLA",
            "LAST",
        ],
        &rows,
    );
    Ok(Exit::Ok)
}

/// Per source: the strictest SLA among its drills, and what the recent drills measured.
pub(crate) async fn sla_summaries(
    specs: &[DrillSpec],
    catalog: &dyn Catalog,
) -> Result<Vec<crate::drill::sla::SlaSummary>, CliError> {
    // The strictest target among a source's drills is the one it is held to.
    let mut targets: BTreeMap<String, (Option<f64>, Option<f64>)> = BTreeMap::new();
    for s in specs {
        let t = targets.entry(s.source.clone()).or_default();
        let min = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        t.0 = min(t.0, s.sla.rto.map(|d| d.as_secs_f64()));
        t.1 = min(t.1, s.sla.rpo.map(|d| d.as_secs_f64()));
    }
    let mut summaries = Vec::new();
    for (source, (rto, rpo)) in &targets {
        let runs = recent_runs(catalog, source).await?;
        summaries.push(summarize(source, *rto, *rpo, &runs));
    }
    Ok(summaries)
}

/// The last 100 real drill runs of a source (negative controls excluded: they fail on purpose).
async fn recent_runs(catalog: &dyn Catalog, source: &str) -> Result<Vec<Measured>, CliError> {
    let runs = catalog
        .drill_runs(&DrillRunFilter {
            drill: None,
            source: Some(source.to_string()),
            limit: Some(100),
        })
        .await?;
    Ok(runs
        .iter()
        .filter_map(|r| record::from_evidence(&r.evidence))
        .filter(|r| !r.negative_control)
        .map(|r| Measured {
            verdict: r.verdict,
            rto_seconds: r.rto_seconds,
            rpo_seconds: r.rpo_seconds,
            finished_at: r.finished_at,
        })
        .collect())
}
