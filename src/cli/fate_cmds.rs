//! `lifeboat fate [--probe] [--explain RULE]`: the shared-fate findings, exit 1 on a critical one.

use serde_json::json;

use super::context::Context;
use super::render::Output;
use super::{CliError, Exit};
use crate::drill::spec;
use crate::fate::{self, Analysis, Finding, RuleId, StorageInspector};

#[derive(clap::Args, Debug)]
pub struct FateArgs {
    /// Also try to destroy a canary object in each S3 repository with the repository's own
    /// credential (writes only under `probes/`); without it, `deletable` is not judged.
    #[arg(long)]
    pub probe: bool,
    /// Print what RULE checks, why it matters and how to fix it, then exit.
    #[arg(long, value_name = "RULE")]
    pub explain: Option<String>,
}

/// The storage inspector the command uses: S3 itself.
fn inspector() -> Box<dyn StorageInspector> {
    Box::new(fate::s3::S3Inspector)
}

pub fn explain(rule: &str, out: &Output) -> Result<Exit, CliError> {
    let id: RuleId = rule.parse().map_err(CliError::usage)?;
    if out.json {
        out.json(id.rule());
    } else {
        print!("{}", fate::explain(id.rule()));
    }
    Ok(Exit::Ok)
}

pub async fn fate(ctx: &Context, args: FateArgs, out: &Output) -> Result<Exit, CliError> {
    // A config without drill files is analysed too: `untested` then says so.
    let drills = if ctx.config.drills_dir.is_dir() {
        spec::load_dir(&ctx.config.drills_dir, &ctx.config)?
    } else {
        Vec::new()
    };
    let catalog = match ctx.catalog().await {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!(
                "warning: catalog unavailable, so drill history is not judged: {}",
                e.message
            );
            None
        }
    };
    let inspector = inspector();
    let analysis = fate::analyse(&ctx.config, &drills, catalog.as_deref(), inspector.as_ref(), args.probe).await;
    if let Some(c) = &catalog {
        c.close().await;
    }
    if out.json {
        out.json(&json!({
            "findings": analysis.findings,
            "counts": analysis.counts(),
            "notes": analysis.notes,
            "probed": args.probe,
        }));
    } else {
        print_analysis(&analysis);
    }
    Ok(if analysis.has_critical() {
        Exit::Failed
    } else {
        Exit::Ok
    })
}

fn print_analysis(analysis: &Analysis) {
    let findings = &analysis.findings;
    if !findings.is_empty() {
        let width = |f: fn(&Finding) -> String, header: &str| {
            findings
                .iter()
                .map(|x| f(x).chars().count())
                .max()
                .unwrap_or(0)
                .max(header.len())
        };
        let w_sev = width(|f| f.severity.to_string(), "SEVERITY");
        let w_rule = width(|f| f.rule.to_string(), "RULE");
        let w_where = width(Finding::subject, "SOURCE → REPOSITORY");
        let indent = " ".repeat(w_sev + w_rule + w_where + 6);
        println!(
            "{:<w_sev$}  {:<w_rule$}  {:<w_where$}  EVIDENCE",
            "SEVERITY", "RULE", "SOURCE → REPOSITORY"
        );
        for f in findings {
            println!(
                "{:<w_sev$}  {:<w_rule$}  {:<w_where$}  {}",
                f.severity.to_string(),
                f.rule.to_string(),
                f.subject(),
                f.evidence
            );
            println!("{indent}fix: {}", f.fix);
        }
        println!();
    }
    let c = analysis.counts();
    let verdict = if c.critical > 0 {
        "these backups would not survive what kills their data; `lifeboat fate --explain RULE` says more"
    } else if findings.is_empty() {
        "no shared-fate finding"
    } else {
        "no critical finding"
    };
    println!(
        "{} critical, {} warning, {} info: {verdict}",
        c.critical, c.warning, c.info
    );
    for note in &analysis.notes {
        println!("note: {note}");
    }
}
