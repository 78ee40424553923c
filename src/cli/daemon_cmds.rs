//! `lifeboat daemon` and `lifeboat jobs`.

use serde::Serialize;

use super::context::Context;
use super::drill_cmds::{load_specs, shutdown_signal};
use super::render::{self, Output};
use super::{CliError, Exit};
use crate::daemon::plan;

pub async fn daemon(ctx: Context) -> Result<Exit, CliError> {
    let drills = load_specs(&ctx)?;
    crate::daemon::run(ctx, drills, async { format!("received {}", shutdown_signal().await) }).await
}

#[derive(Serialize)]
struct JobRow {
    job: String,
    kind: plan::JobKind,
    target: String,
    schedule: String,
    timezone: String,
    next_due: Option<jiff::Timestamp>,
    last_due: Option<jiff::Timestamp>,
    last_finished: Option<jiff::Timestamp>,
    last_outcome: Option<String>,
    last_detail: Option<String>,
    /// The daemon running it now, if any.
    running_on: Option<String>,
}

/// The job table: schedules from the config and drill files, state from the catalog.
pub async fn jobs(ctx: &Context, out: &Output) -> Result<Exit, CliError> {
    let drills = load_specs(ctx)?;
    let jobs =
        plan::jobs(&ctx.config, &drills).map_err(|e| CliError::usage(format!("{}; fix: {}", e.message, e.fix)))?;
    let catalog = ctx.catalog().await?;
    let states = catalog.jobs().await?;
    catalog.close().await;
    let now = jiff::Timestamp::now();
    let rows: Vec<JobRow> = jobs
        .iter()
        .map(|j| {
            let state = states.iter().find(|s| s.job == j.key());
            JobRow {
                job: j.key(),
                kind: j.kind,
                target: j.target.clone(),
                schedule: j.schedule.expr().to_string(),
                timezone: j.schedule.zone().name().to_string(),
                next_due: j.schedule.next_after(now),
                last_due: state.and_then(|s| s.last_due),
                last_finished: state.and_then(|s| s.last_finished),
                last_outcome: state.and_then(|s| s.last_outcome.clone()),
                last_detail: state.and_then(|s| s.last_detail.clone()),
                running_on: state
                    .filter(|s| s.lease_expires.is_some_and(|t| t > now))
                    .and_then(|s| s.owner.clone()),
            }
        })
        .collect();
    if out.json {
        out.json(&rows);
        return Ok(Exit::Ok);
    }
    if rows.is_empty() {
        println!("no scheduled jobs; add `schedule:` to a source (backup, verify, prune) or to a drill file");
        return Ok(Exit::Ok);
    }
    let opt = |t: Option<jiff::Timestamp>| t.map_or("-".to_string(), |t| t.strftime("%Y-%m-%d %H:%M:%SZ").to_string());
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.job.clone(),
                format!("{} ({})", r.schedule, r.timezone),
                opt(r.next_due),
                opt(r.last_finished),
                match (&r.running_on, &r.last_outcome) {
                    (Some(owner), _) => format!("running on {owner}"),
                    (None, Some(o)) => o.clone(),
                    (None, None) => "never ran".into(),
                },
            ]
        })
        .collect();
    render::table(&["JOB", "SCHEDULE", "NEXT", "LAST FINISHED", "STATE"], &table);
    Ok(Exit::Ok)
}
