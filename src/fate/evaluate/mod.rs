//! The rules, as pure functions over [`Inputs`]: every source is judged with every repository that
//! holds or receives its backups (its own, and any holding manifests of it: copies).

mod credentials;
mod history;
mod placement;
mod storage;

use super::finding::{Finding, Severity};
use super::inputs::{Inputs, RepositoryFacts, SourceFacts};
use super::rules::RuleId;

/// Every finding, most severe first, then by source, repository and rule.
pub fn evaluate(inputs: &Inputs) -> Vec<Finding> {
    let mut out = Vec::new();
    for source in &inputs.sources {
        let repos = repositories_of(inputs, source);
        for repo in &repos {
            let pair = Pair { source, repo };
            placement::check(&pair, &mut out);
            credentials::check(&pair, &mut out);
            storage::check(inputs, &pair, &mut out);
        }
        storage::copies(inputs, source, &repos, &mut out);
        history::check_source(inputs, source, &mut out);
    }
    history::check_drills(inputs, &mut out);
    out.sort_by(|a, b| {
        (b.severity, &a.source, &a.repository, a.rule).cmp(&(a.severity, &b.source, &b.repository, b.rule))
    });
    out
}

/// The source's own repository first, then every other one holding a manifest of it.
fn repositories_of<'a>(inputs: &'a Inputs, source: &SourceFacts) -> Vec<&'a RepositoryFacts> {
    let mut repos: Vec<&RepositoryFacts> = inputs
        .repositories
        .iter()
        .filter(|r| r.name == source.repository)
        .collect();
    for r in &inputs.repositories {
        let holds = r.snapshots.as_ref().is_ok_and(|s| s.contains_key(&source.name));
        if holds && r.name != source.repository {
            repos.push(r);
        }
    }
    repos
}

/// One source with one repository.
struct Pair<'a> {
    source: &'a SourceFacts,
    repo: &'a RepositoryFacts,
}

impl Pair<'_> {
    fn finding(&self, rule: RuleId, severity: Severity, evidence: String, fix: impl Into<String>) -> Finding {
        Finding {
            rule,
            severity,
            source: Some(self.source.name.clone()),
            repository: Some(self.repo.name.clone()),
            evidence,
            fix: fix.into(),
        }
    }

    /// An `info` finding: the rule could not be judged, and why.
    fn unjudged(&self, rule: RuleId, why: &str, fix: impl Into<String>) -> Finding {
        self.finding(rule, Severity::Info, format!("could not judge: {why}"), fix)
    }
}

/// A finding about a source as a whole.
fn source_finding(source: &str, rule: RuleId, severity: Severity, evidence: String, fix: impl Into<String>) -> Finding {
    Finding {
        rule,
        severity,
        source: Some(source.to_owned()),
        repository: None,
        evidence,
        fix: fix.into(),
    }
}

/// `7d`, `26h`, `1h30m`: durations as the config writes them.
fn human(d: std::time::Duration) -> String {
    crate::drill::spec::format_duration(d)
}
