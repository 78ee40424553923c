//! `lifeboat copy`: put snapshots of one repository into a second one, byte for byte.

use super::context::Context;
use super::progress::Meter;
use super::render::{self, Output};
use super::{CliError, Exit};
use crate::catalog::Catalog;
use crate::ops::{self, CopyOutcome, CopyReport, CopyRequest};
use crate::repo::{ChunkCheck, LockOptions};

/// The `copy` arguments.
#[derive(clap::Args, Debug)]
pub struct CopyArgs {
    /// Repository to copy from (a name from the config).
    #[arg(long, value_name = "REPOSITORY")]
    from: String,
    /// Repository to copy to. It must exist and name chunks like --from: `lifeboat init NAME --like FROM`
    /// creates one that does.
    #[arg(long, value_name = "REPOSITORY")]
    to: String,
    /// Only this source's snapshots.
    #[arg(long)]
    source: Option<String>,
    /// Only this snapshot (id or unique prefix); repeat it for several.
    #[arg(long = "snapshot", value_name = "ID")]
    snapshots: Vec<String>,
    /// Show what would be copied, and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Chunks read, checked and written at once.
    #[arg(long, default_value_t = 4)]
    uploads: usize,
}

pub async fn copy(ctx: &Context, args: CopyArgs, out: &Output) -> Result<Exit, CliError> {
    super::control_cmds::in_use(ctx, &args.to).await?;
    if args.uploads == 0 {
        return Err(CliError::usage(
            "--uploads must be at least 1; fix: leave it out for the default of 4",
        ));
    }
    let from = ctx.repository(&args.from).await?;
    let to = ctx.repository(&args.to).await?;
    let catalog = if args.dry_run {
        None
    } else {
        match ctx.catalog().await {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!(
                    "warning: catalog unavailable, copied snapshots will not be recorded: {}",
                    e.message
                );
                None
            }
        }
    };
    let meter = Meter::new(out.progress && !args.dry_run, "copy", None);
    let result = ops::copy(
        CopyRequest {
            from: &from,
            from_name: &args.from,
            to: &to,
            to_name: &args.to,
            source: args.source.as_deref(),
            snapshots: &args.snapshots,
            dry_run: args.dry_run,
            uploads_in_flight: args.uploads,
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
    if report.chunk_check == ChunkCheck::HeaderOnly {
        eprintln!(
            "warning: the repositories are encrypted and neither `{}` nor `{}` has an age identity configured here, so chunks were checked by their header only and damage inside the encrypted payload was not detected; fix: run the copy where `encryption.identity_file` is configured, or run `lifeboat verify --all --read-data --repository {}` there",
            report.from, report.to, report.to
        );
    }
    if out.json {
        out.json(&report);
    } else {
        print_report(&report, args.source.as_deref());
    }
    if report.is_complete() {
        return Ok(Exit::Ok);
    }
    let copied = report.snapshots.len() as u64 - report.snapshots_failed;
    if report.found_damage() {
        eprintln!(
            "{} of {} snapshots were not copied because objects they need are missing or damaged (named above); {copied} are complete in `{}`; damage is never copied; fix: `lifeboat verify --all --read-data --repository NAME` lists every damaged object in the repository named; take a new backup, and copy again to send the rest",
            report.snapshots_failed,
            report.snapshots.len(),
            report.to
        );
        return Ok(Exit::Damage);
    }
    eprintln!(
        "{} of {} snapshots were not copied (see above); {copied} are complete in `{}`; fix: correct the cause and run the same copy again: it skips what is there",
        report.snapshots_failed,
        report.snapshots.len(),
        report.to
    );
    Ok(Exit::Failed)
}

fn print_report(r: &CopyReport, source: Option<&str>) {
    println!(
        "copy {} -> {}: {} copied, {} already present, {} failed{}",
        r.from,
        r.to,
        r.snapshots_copied,
        r.snapshots_already_present,
        r.snapshots_failed,
        if r.dry_run {
            " (dry run: nothing was written)"
        } else {
            ""
        }
    );
    if r.snapshots.is_empty() {
        println!(
            "  no snapshots{} in {}",
            source.map(|s| format!(" of source {s}")).unwrap_or_default(),
            r.from
        );
    }
    for s in &r.snapshots {
        let outcome = match s.outcome {
            CopyOutcome::Copied if r.dry_run => "would copy",
            CopyOutcome::Copied => "copied",
            CopyOutcome::AlreadyPresent => "present",
            CopyOutcome::Failed => "FAILED",
        };
        if let Some(f) = &s.failure {
            println!("  {outcome:<10}  {} {}", s.source, s.id);
            println!("      {}", f.error);
            continue;
        }
        let evidence = if s.evidence_copied.is_empty() {
            String::new()
        } else {
            format!(", drill evidence {}", s.evidence_copied.join(", "))
        };
        println!(
            "  {outcome:<10}  {} {}  {} chunks ({}) {}, {} already there{evidence}",
            s.source,
            s.id,
            s.chunks_copied,
            render::bytes(s.bytes_copied),
            if r.dry_run { "to send" } else { "sent" },
            s.chunks_skipped
        );
    }
    println!(
        "  chunks: {} {} ({}), {} already there; drill evidence: {} {}; took {}",
        r.chunks_copied,
        if r.dry_run { "to copy" } else { "copied" },
        render::bytes(r.bytes_copied),
        r.chunks_skipped,
        r.evidence_copied,
        if r.dry_run { "to copy" } else { "copied" },
        render::seconds(r.duration)
    );
}
