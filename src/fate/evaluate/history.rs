//! Proof and time: untested, retention-too-short (the source's retention), scratch-is-production.

use std::time::Duration;

use super::{human, source_finding};
use crate::fate::finding::{Finding, Severity};
use crate::fate::inputs::{Inputs, ScratchFacts, SourceFacts};
use crate::fate::local::address::same_server;
use crate::fate::rules::RuleId;
use crate::repo::retention::RetentionPolicy;

const HOUR: u64 = 3_600;
const DAY: u64 = 86_400;

pub(super) fn check_source(inputs: &Inputs, source: &SourceFacts, out: &mut Vec<Finding>) {
    untested(inputs, source, out);
    retention(inputs, source, out);
}

fn untested(inputs: &Inputs, source: &SourceFacts, out: &mut Vec<Finding>) {
    let name = &source.name;
    let window = human(inputs.untested_after);
    let drills: Vec<&str> = inputs
        .drills
        .iter()
        .filter(|d| &d.source == name)
        .map(|d| d.name.as_str())
        .collect();
    let warn = |evidence: String, fix: String| source_finding(name, RuleId::Untested, Severity::Warning, evidence, fix);
    if drills.is_empty() {
        out.push(warn(
            format!("no drill file names source `{name}`, so its backups have never been restored by lifeboat"),
            format!("write a drill file for `{name}` (drills/README.md) and give it a schedule"),
        ));
        return;
    }
    let history = match &inputs.drill_history {
        Ok(all) => all.get(name).cloned().unwrap_or_default(),
        Err(why) => {
            out.push(source_finding(
                name,
                RuleId::Untested,
                Severity::Info,
                format!("could not judge: the drill history could not be read ({why})"),
                "check that the catalog is reachable (`lifeboat drill list`)",
            ));
            return;
        }
    };
    let run_fix = format!("run `lifeboat drill run {}` and schedule it", drills[0]);
    match (history.last_pass, history.last) {
        (_, None) => out.push(warn(
            format!("drill {} for `{name}` has never run", drills.join(", ")),
            run_fix,
        )),
        (None, Some((at, verdict))) => out.push(warn(
            format!(
                "none of the {} recorded drill run(s) of `{name}` passed; the newest, at {at}, ended `{verdict}`",
                history.runs
            ),
            format!(
                "fix what made it fail (`lifeboat drill history {}`), then {run_fix}",
                drills[0]
            ),
        )),
        (Some(pass), _) => {
            let age = inputs.now.duration_since(pass);
            let age = Duration::try_from(age).unwrap_or(Duration::ZERO);
            if age > inputs.untested_after {
                out.push(warn(
                    format!(
                        "the newest passing drill of `{name}` started at {pass}, {} ago; fate.untested_after is {window}",
                        human(Duration::from_secs(age.as_secs()))
                    ),
                    run_fix,
                ));
            }
        }
    }
}

/// How far back a retention policy keeps history, at the least, counted from the newest snapshot.
/// `None` when only `keep_last` is set and there is no backup schedule to count it in.
pub fn retention_span(policy: &RetentionPolicy, backup_interval: Option<Duration>) -> Option<Duration> {
    let back = |n: Option<u32>, unit: u64| {
        n.filter(|n| *n > 0)
            .map(|n| Duration::from_secs(u64::from(n - 1) * unit))
    };
    let spans = [
        policy.keep_within,
        back(policy.keep_hourly, HOUR),
        back(policy.keep_daily, DAY),
        back(policy.keep_weekly, 7 * DAY),
        back(policy.keep_monthly, 30 * DAY),
        back(policy.keep_yearly, 365 * DAY),
        backup_interval.and_then(|i| back(policy.keep_last, i.as_secs())),
    ];
    spans.into_iter().flatten().max()
}

fn retention(inputs: &Inputs, source: &SourceFacts, out: &mut Vec<Finding>) {
    let Some(policy) = &source.retention else { return };
    let name = &source.name;
    let need = human(inputs.detect_within);
    match retention_span(policy, source.backup_interval) {
        None => out.push(source_finding(
            name,
            RuleId::RetentionTooShort,
            Severity::Info,
            format!(
                "could not judge: `{name}` keeps {} but has no backup schedule to tell how far back that reaches",
                policy.describe()
            ),
            format!("add `keep_daily` or `keep_within` (at least {need}) to `sources.{name}.retention`"),
        )),
        Some(span) if span < inputs.detect_within => out.push(source_finding(
            name,
            RuleId::RetentionTooShort,
            Severity::Warning,
            format!(
                "the retention of `{name}` ({}) reaches back about {} from the newest snapshot, less than \
                 fate.detect_within ({need})",
                policy.describe(),
                human(span)
            ),
            format!(
                "keep at least {need} of history in `sources.{name}.retention` (e.g. `keep_within: {need}` or more \
                 daily snapshots)"
            ),
        )),
        Some(_) => {}
    }
}

/// scratch-is-production: every drill's scratch server against the production sources and its own.
pub(super) fn check_drills(inputs: &Inputs, out: &mut Vec<Finding>) {
    for drill in &inputs.drills {
        let ScratchFacts::Server(scratch) = &drill.scratch else {
            continue;
        };
        let scratch = match scratch {
            Ok(s) => s,
            Err(why) => {
                out.push(source_finding(
                    &drill.source,
                    RuleId::ScratchIsProduction,
                    Severity::Info,
                    format!("could not judge drill `{}`: {why}", drill.name),
                    format!("make the scratch DSN of {} readable and valid", drill.file.display()),
                ));
                continue;
            }
        };
        for source in &inputs.sources {
            if source.environment != "production" && source.name != drill.source {
                continue;
            }
            let Some(why) = same_server(scratch, &source.server) else {
                continue;
            };
            let whose = if source.environment == "production" {
                format!("production source `{}`", source.name)
            } else {
                format!("its own source `{}`", source.name)
            };
            out.push(source_finding(
                &drill.source,
                RuleId::ScratchIsProduction,
                Severity::Critical,
                format!(
                    "drill `{}` ({}) restores onto {}, and {whose} is at {}: {why}",
                    drill.name,
                    drill.file.display(),
                    scratch.shown,
                    source.server.shown
                ),
                format!(
                    "point drill `{}` at a server set aside for drills, or use `scratch: {{kind: ephemeral}}`",
                    drill.name
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_of_retention_policies() {
        let days = |n: u64| Some(Duration::from_secs(n * DAY));
        let daily = RetentionPolicy {
            keep_daily: Some(7),
            ..Default::default()
        };
        assert_eq!(retention_span(&daily, None), days(6));
        let mixed = RetentionPolicy {
            keep_last: Some(7),
            keep_daily: Some(14),
            keep_weekly: Some(8),
            keep_monthly: Some(12),
            ..Default::default()
        };
        assert_eq!(retention_span(&mixed, None), days(330));
        let last = RetentionPolicy {
            keep_last: Some(5),
            ..Default::default()
        };
        assert_eq!(retention_span(&last, None), None);
        assert_eq!(
            retention_span(&last, Some(Duration::from_secs(6 * HOUR))),
            Some(Duration::from_secs(24 * HOUR))
        );
        let within = RetentionPolicy {
            keep_within: days(3),
            ..Default::default()
        };
        assert_eq!(retention_span(&within, None), days(3));
    }
}
