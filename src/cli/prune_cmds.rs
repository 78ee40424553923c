//! `lifeboat prune`: apply a retention policy to a repository: tombstone what it forgets, delete what
//! was tombstoned longer than the grace period, free what no snapshot needs; and `--undelete` and
//! `--tombstoned` to take a snapshot back within its grace period.

use std::time::Duration;

use jiff::tz::TimeZone;

use super::context::Context;
use super::control_cmds;
use super::render::{self, Output};
use super::{CliError, Exit};
use crate::catalog::Catalog;
use crate::control::{ControlPlane, Decision};
use crate::ops::{self, PruneReport, PruneRequest, TombstonedSnapshot, UndeleteRequest};
use crate::repo::LockOptions;
use crate::repo::retention::{RetentionPolicy, describe_duration, parse_duration};

/// The `prune` arguments.
#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Source name; without it, every source with snapshots in the repository.
    source: Option<String>,
    /// Repository name from the config (default: the source's repository, or the only one).
    #[arg(long)]
    repository: Option<String>,
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N")]
    keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent hours that have one.
    #[arg(long, value_name = "N")]
    keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent days that have one.
    #[arg(long, value_name = "N")]
    keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent ISO weeks (Monday first) that have one.
    #[arg(long, value_name = "N")]
    keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent months that have one.
    #[arg(long, value_name = "N")]
    keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent years that have one.
    #[arg(long, value_name = "N")]
    keep_yearly: Option<u32>,
    /// Keep every snapshot taken within this long before the newest one, e.g. 36h, 14d, 2w.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    keep_within: Option<Duration>,
    /// Never forget a snapshot younger than this, whatever the rules say, e.g. 2d (default: the
    /// source's `retention.min_age`, also when --keep-* flags replace its rules).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    min_age: Option<Duration>,
    /// How long a forgotten snapshot stays tombstoned (hidden, but --undelete takes it back) before
    /// prune deletes it (default: the source's `retention.grace`, else 7d; 0s: the next prune).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    grace: Option<Duration>,
    /// Time zone whose hours, days and weeks the policy counts, e.g. Europe/Berlin (default: this
    /// host's).
    #[arg(long, value_name = "IANA-NAME")]
    timezone: Option<String>,
    /// Show what would be kept (and why), tombstoned, deleted and freed, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// List the tombstoned snapshots (forgotten by prune, not yet deleted) and when each becomes
    /// deletable; change nothing.
    #[arg(long, conflicts_with_all = ["dry_run", "undelete"])]
    tombstoned: bool,
    /// Take a tombstoned snapshot back within its grace period: remove its tombstone so it is live
    /// and restorable again. Needs the repository's deleting credential.
    #[arg(long, value_name = "SNAPSHOT-ID", conflicts_with_all = [
        "dry_run", "keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly",
        "keep_within", "min_age", "grace",
    ])]
    undelete: Option<String>,
}

impl PruneArgs {
    /// The --keep-* flags: the rules alone.
    fn rules(&self) -> RetentionPolicy {
        RetentionPolicy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within: self.keep_within,
            min_age: None,
            grace: None,
        }
    }
}

pub async fn prune(ctx: &Context, args: PruneArgs, out: &Output) -> Result<Exit, CliError> {
    // The retention in force: the catalog's, where the config file's is adopted unless it lowers it
    // (then a request to lower it is made, and the old one stays until it is approved).
    let configured = match args.source.as_deref() {
        None => None,
        Some(s) => {
            let source = ctx.source(s)?;
            match ctx.catalog().await {
                Ok(catalog) => {
                    let plane = ControlPlane::new(ctx, catalog.as_ref());
                    for a in plane.reconcile_config_retention().await? {
                        if a.sources.iter().any(|x| x == s) {
                            eprintln!(
                                "warning: the config lowers the retention of {s}; it waits for approval: request {} ({})",
                                a.id, a.summary
                            );
                        }
                    }
                    let in_force = plane.settings().await?.retention_of(s, source.retention.as_ref());
                    catalog.close().await;
                    in_force
                }
                Err(e) => {
                    eprintln!(
                        "warning: catalog unavailable, so the config's retention is used as written: {}",
                        e.message
                    );
                    source.retention.clone()
                }
            }
        }
    };
    let repository = repository_name(ctx, &args)?;
    if let Some(id) = &args.undelete {
        return undelete(ctx, &repository, id, out).await;
    }
    // The --keep-* flags are the whole set of rules: given any, they replace the source's from the
    // config rather than merging with them, so what runs is exactly what the command line says.
    // min_age and grace protect, so they stay the source's unless their own flags say otherwise.
    let guard = |flag: Option<Duration>, pick: fn(&RetentionPolicy) -> Option<Duration>| {
        flag.or_else(|| configured.as_ref().and_then(pick))
    };
    let min_age = guard(args.min_age, |p| p.min_age);
    let grace = guard(args.grace, |p| p.grace);
    if args.tombstoned {
        let grace = grace.unwrap_or(crate::repo::retention::DEFAULT_GRACE);
        return list_tombstoned(ctx, &repository, args.source.as_deref(), grace, out).await;
    }
    let rules = args.rules();
    let mut policy = if !rules.is_empty() {
        rules
    } else {
        match (&args.source, &configured) {
            (Some(_), Some(policy)) => policy.clone(),
            (Some(source), None) => {
                return Err(CliError::usage(format!(
                    "source `{source}` has no retention policy (`retention:` in the config) and no --keep-* flag was \
                     given; fix: add e.g. `retention: {{ keep_last: 7, keep_daily: 14 }}` under the source, or {}",
                    ops::HOW_TO_SET_A_POLICY
                )));
            }
            (None, _) => {
                return Err(CliError::usage(format!(
                    "prune needs a retention policy, and none was given (a count of 0 is no rule); fix: name a \
                     source to use its `retention:` from the config, or {}",
                    ops::HOW_TO_SET_A_POLICY
                )));
            }
        }
    };
    policy.min_age = min_age;
    policy.grace = grace;
    let tz = match &args.timezone {
        Some(name) => TimeZone::get(name).map_err(|e| {
            CliError::usage(format!(
                "unknown time zone `{name}` ({e}); fix: give an IANA name such as UTC, Europe/Berlin or America/New_York"
            ))
        })?,
        // Days and weeks are the operator's: the daemon's zone, as for schedules.
        None => ctx.config.daemon.zone(),
    };
    if !args.dry_run {
        return prune_for_real(ctx, &repository, args.source.as_deref(), policy, tz, out).await;
    }
    let repo = ctx.repository(&repository).await?;
    let catalog = open_catalog(ctx).await;
    let result = ops::prune(
        PruneRequest {
            repo: &repo,
            repository: &repository,
            source: args.source.as_deref(),
            policy: &policy,
            tz,
            dry_run: true,
            locks: LockOptions::default(),
            catalog: catalog.as_deref().map(|c| c as &dyn Catalog),
            initiator: "lifeboat prune",
            // A dry run shows everything a prune would delete, approved.
            deletions: crate::ops::Deletions::All,
        },
        &crate::repo::NoProgress,
    )
    .await;
    if let Some(c) = &catalog {
        c.close().await;
    }
    let report = result?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if out.json {
        out.json(&report);
    } else {
        print_report(&report);
    }
    Ok(Exit::Ok)
}

/// Tombstones now; whatever it would delete becomes an approval request (see `crate::control`).
async fn prune_for_real(
    ctx: &Context,
    repository: &str,
    source: Option<&str>,
    policy: RetentionPolicy,
    tz: TimeZone,
    out: &Output,
) -> Result<Exit, CliError> {
    let (catalog, p) = control_cmds::open(ctx).await?;
    let plane = ControlPlane::new(ctx, catalog.as_ref());
    let result = plane.prune(&p, repository, source, Some(policy), tz).await;
    catalog.close().await;
    let (report, approval) = result?;
    if let Some(w) = &report.catalog_warning {
        eprintln!("warning: {w}");
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(a) = &approval {
        control_cmds::note(Decision::Pending, Some(a.id.clone()));
    }
    if out.json {
        let mut v = serde_json::to_value(&report).expect("a prune report serialises");
        v["approval"] = serde_json::to_value(&approval).expect("an approval serialises");
        out.json(&v);
    } else {
        print_report(&report);
        if let Some(a) = &approval {
            println!(
                "  deleting needs approval: request {} ({} snapshot(s), {} chunk(s)); another principal approves with `lifeboat approve {}`",
                a.id,
                report.awaiting_approval.len(),
                report.chunks_awaiting_approval,
                a.id
            );
        }
    }
    Ok(Exit::Ok)
}

fn repository_name(ctx: &Context, args: &PruneArgs) -> Result<String, CliError> {
    Ok(match (&args.repository, &args.source) {
        (Some(r), _) => ctx.repository_config(r)?.name.clone(),
        (None, Some(source)) => ctx.source(source)?.repository.clone(),
        (None, None) if ctx.config.repositories.len() == 1 => {
            ctx.config.repositories.keys().next().cloned().expect("one")
        }
        (None, None) => {
            return Err(CliError::usage(format!(
                "which repository? fix: name a source, or pass --repository with one of: {}",
                ctx.config.repositories.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    })
}

async fn open_catalog(ctx: &Context) -> Option<Box<dyn Catalog>> {
    match ctx.catalog().await {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("warning: catalog unavailable: {}", e.message);
            None
        }
    }
}

async fn undelete(ctx: &Context, repository: &str, id: &str, out: &Output) -> Result<Exit, CliError> {
    let repo = ctx.repository(repository).await?;
    let catalog = open_catalog(ctx).await;
    let result = ops::undelete(UndeleteRequest {
        repo: &repo,
        repository,
        snapshot: id,
        catalog: catalog.as_deref().map(|c| c as &dyn Catalog),
    })
    .await;
    if let Some(c) = &catalog {
        c.close().await;
    }
    let report = result?;
    if let Some(w) = &report.catalog_warning {
        eprintln!("warning: {w}");
    }
    if out.json {
        out.json(&report);
    } else {
        println!(
            "snapshot {} of source {} (taken {}) is live and restorable again{}",
            report.snapshot,
            report.source,
            report.started_at.strftime("%Y-%m-%d %H:%M:%SZ"),
            match (&report.tombstoned_at, &report.reason) {
                (Some(at), Some(why)) => format!(
                    "; prune had tombstoned it at {} ({why})",
                    at.strftime("%Y-%m-%d %H:%M:%SZ")
                ),
                _ => String::new(),
            }
        );
        println!(
            "  a prune whose policy still forgets it tombstones it again: keep it with a rule (or a longer min_age) if it must stay"
        );
    }
    Ok(Exit::Ok)
}

async fn list_tombstoned(
    ctx: &Context,
    repository: &str,
    source: Option<&str>,
    grace: Duration,
    out: &Output,
) -> Result<Exit, CliError> {
    let repo = ctx.repository(repository).await?;
    let list = ops::tombstoned(&repo, source, grace).await?;
    if out.json {
        out.json(&list);
        return Ok(Exit::Ok);
    }
    if list.is_empty() {
        println!("no tombstoned snapshots in repository {repository}");
        return Ok(Exit::Ok);
    }
    let now = jiff::Timestamp::now();
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.source.clone(),
                t.started_at.map_or("(deleted)".into(), stamp),
                t.tombstoned_at.map_or("(damaged)".into(), stamp),
                deletable(t, now),
                t.reason.clone().or_else(|| t.damage.clone()).unwrap_or_default(),
            ]
        })
        .collect();
    render::table(&["ID", "SOURCE", "TAKEN", "TOMBSTONED", "DELETABLE", "WHY"], &rows);
    println!(
        "grace {}; undo with `lifeboat prune --undelete ID` before a prune deletes it (needs the deleting credential)",
        describe_duration(grace)
    );
    Ok(Exit::Ok)
}

fn stamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// "now", "in 6d", "never (damaged)".
fn deletable(t: &TombstonedSnapshot, now: jiff::Timestamp) -> String {
    match t.deletable_at {
        None => "never (damaged; undelete it)".into(),
        Some(at) if at <= now => "now (at the next prune)".into(),
        Some(at) => format!("in {}", age(at.duration_since(now))),
    }
}

/// A rough, readable length: "45s", "12m", "5h", "6d".
fn age(d: jiff::SignedDuration) -> String {
    let s = d.as_secs().max(0);
    match s {
        0..120 => format!("{s}s"),
        120..7_200 => format!("{}m", s / 60),
        7_200..172_800 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    }
}

fn print_report(r: &PruneReport) {
    println!(
        "repository {}: {}; grace {}{}",
        r.repository,
        r.policy,
        describe_duration(r.grace),
        if r.dry_run {
            " (dry run: nothing was changed)"
        } else {
            ""
        }
    );
    for l in &r.blocked_by {
        println!("  a real prune would refuse now: {l}");
    }
    for s in &r.sources {
        let deleting = s.tombstoned.iter().filter(|t| t.deleted).count();
        println!(
            "  source {}: keep {}, tombstone {}, delete {}, still tombstoned {}",
            s.source,
            s.kept.len(),
            s.forgotten.len(),
            deleting,
            s.tombstoned.len() - deleting
        );
        for k in &s.kept {
            let reasons: Vec<String> = k.reasons.iter().map(|r| r.to_string()).collect();
            println!("    keep       {}  {}", k.id, reasons.join(", "));
        }
        for f in &s.forgotten {
            let evidence = if f.drill_evidence.is_empty() {
                String::new()
            } else {
                format!("  (drill evidence kept: {})", f.drill_evidence.join(", "))
            };
            println!("    tombstone  {}{evidence}", f.id);
        }
        for t in &s.tombstoned {
            let since = t
                .tombstone_age_seconds
                .map_or("at an unknown time (damaged tombstone)".into(), |a| {
                    format!("{} ago", age(jiff::SignedDuration::from_secs(a as i64)))
                });
            if t.deleted {
                let what = if t.started_at.is_some() {
                    "manifest and tombstone"
                } else {
                    "tombstone only: the manifest is already gone"
                };
                println!("    delete     {}  tombstoned {since}, grace over ({what})", t.id);
            } else {
                println!(
                    "    tombstoned {}  tombstoned {since}, deletable {}; undo: lifeboat prune --undelete {}",
                    t.id,
                    t.deletable_at.map_or("never (damaged)".into(), stamp),
                    t.id
                );
            }
        }
        if let Some(d) = &s.last_drilled {
            let origin = match d.evidence {
                ops::EvidenceOrigin::Repository => "evidence in the repository",
                ops::EvidenceOrigin::Catalog => "known from the catalog only",
            };
            println!(
                "    newest snapshot that passed a drill: {} (runs {}; {origin})",
                d.id,
                d.runs.join(", ")
            );
        }
    }
    println!(
        "  chunks: {} of {} {}, {} {}",
        r.chunks_deleted,
        r.chunks_before,
        if r.dry_run { "unreferenced" } else { "deleted" },
        render::bytes(r.bytes_freed),
        if r.dry_run { "would be freed" } else { "freed" }
    );
    for l in &r.stale_locks_removed {
        println!("  removed the stale lock {l}");
    }
    println!("  took {}", render::seconds(r.duration));
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("1d12h"), Ok(Duration::from_secs(129_600)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(1_209_600)));
        for bad in ["", "12", "d", "3x", "1.5d", "99999999999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
