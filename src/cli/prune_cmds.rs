//! `lifeboat prune`: apply a retention policy to a repository and free what no snapshot needs.

use std::time::Duration;

use jiff::tz::TimeZone;

use super::context::Context;
use super::progress::Meter;
use super::render::{self, Output};
use super::{CliError, Exit};
use crate::catalog::Catalog;
use crate::ops::{self, PruneReport, PruneRequest};
use crate::repo::LockOptions;
use crate::repo::retention::RetentionPolicy;

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
    /// Time zone whose hours, days and weeks the policy counts, e.g. Europe/Berlin (default: this
    /// host's).
    #[arg(long, value_name = "IANA-NAME")]
    timezone: Option<String>,
    /// Show what would be kept, forgotten and freed, and change nothing.
    #[arg(long)]
    dry_run: bool,
}

impl PruneArgs {
    fn policy(&self) -> RetentionPolicy {
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

/// "90m", "36h", "14d", "2w", or sums like "1d12h".
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration; write it like 90m, 36h, 14d or 2w (units s, m, h, d, w)");
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() || text.trim().is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

pub async fn prune(ctx: &Context, args: PruneArgs, out: &Output) -> Result<Exit, CliError> {
    // The flags are the whole policy: given any, they replace the source's `retention:` from the
    // config rather than merging with it, so what runs is exactly what the command line says.
    let flags = args.policy();
    let policy = if !flags.is_empty() {
        flags
    } else {
        match args.source.as_deref().map(|s| ctx.source(s)).transpose()? {
            Some(source) => source.retention.clone().ok_or_else(|| {
                CliError::usage(format!(
                    "source `{}` has no retention policy (`retention:` in the config) and no --keep-* flag was given; fix: add \
                     e.g. `retention: {{ keep_last: 7, keep_daily: 14 }}` under the source, or {}",
                    source.name,
                    ops::HOW_TO_SET_A_POLICY
                ))
            })?,
            None => {
                return Err(CliError::usage(format!(
                    "prune needs a retention policy, and none was given (a count of 0 is no rule); fix: name a \
                     source to use its `retention:` from the config, or {}",
                    ops::HOW_TO_SET_A_POLICY
                )));
            }
        }
    };
    let repository = match (&args.repository, &args.source) {
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
    };
    let tz = match &args.timezone {
        Some(name) => TimeZone::get(name).map_err(|e| {
            CliError::usage(format!(
                "unknown time zone `{name}` ({e}); fix: give an IANA name such as UTC, Europe/Berlin or America/New_York"
            ))
        })?,
        // Days and weeks are the operator's: the daemon's zone, as for schedules.
        None => TimeZone::get(ctx.config.daemon.timezone.name()).unwrap_or(TimeZone::UTC),
    };
    let repo = ctx.repository(&repository).await?;
    let catalog = match ctx.catalog().await {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("warning: catalog unavailable: {}", e.message);
            None
        }
    };
    let meter = Meter::new(out.progress && !args.dry_run, "sweep", None);
    let result = ops::prune(
        PruneRequest {
            repo: &repo,
            repository: &repository,
            source: args.source.as_deref(),
            policy: &policy,
            tz,
            dry_run: args.dry_run,
            locks: LockOptions::default(),
            catalog: catalog.as_deref().map(|c| c as &dyn Catalog),
        },
        &meter,
    )
    .await;
    meter.finish();
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
        print_report(&report);
    }
    Ok(Exit::Ok)
}

fn print_report(r: &PruneReport) {
    println!(
        "repository {}: {}{}",
        r.repository,
        r.policy,
        if r.dry_run {
            " (dry run: nothing was deleted)"
        } else {
            ""
        }
    );
    for s in &r.sources {
        println!(
            "  source {}: keep {}, forget {}",
            s.source,
            s.kept.len(),
            s.forgotten.len()
        );
        for k in &s.kept {
            let reasons: Vec<String> = k.reasons.iter().map(|r| r.to_string()).collect();
            println!("    keep    {}  {}", k.id, reasons.join(", "));
        }
        for f in &s.forgotten {
            let evidence = if f.drill_evidence.is_empty() {
                String::new()
            } else {
                format!("  (drill evidence kept: {})", f.drill_evidence.join(", "))
            };
            println!("    forget  {}{evidence}", f.id);
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
