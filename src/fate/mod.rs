//! Shared-fate analysis: every way a backup would die together with its data.
//!
//! [`analyse`] gathers evidence ([`gather`]: this host's filesystems, mounts and users, each
//! source's data directory as its server reports it, each repository's manifests, storage
//! settings through a [`StorageInspector`], drill history from the catalog) into plain
//! [`Inputs`], and judges them with the rules of [`RULES`] ([`evaluate`], pure). Each rule that
//! fires gives a [`Finding`] with its evidence and fix; a rule that lacks its evidence gives an
//! `info` finding saying what is missing, never a guess.
//!
//! - `rules`: the one documented table of rules (for `--explain` and the README).
//! - `finding`: what is reported.
//! - `inputs`: the evidence, as values; `gather`: how it is collected.
//! - `evaluate`: the rules, as functions of the inputs.
//! - `local`: stat, /proc/self/mountinfo, permission bits, DSN addresses.
//! - `inspect`: the storage inspection trait; `evidence`: what S3 inspection reports.

mod evaluate;
pub mod evidence;
mod finding;
mod gather;
pub mod inputs;
mod inspect;
pub mod local;
mod rules;
pub mod s3;

use serde::Serialize;

pub use evaluate::evaluate;
pub use finding::{Counts, Finding, Severity};
pub use gather::gather;
pub use inputs::Inputs;
pub use inspect::{NoInspection, StorageInspector};
pub use rules::{RULES, Rule, RuleId, explain, markdown_table};

use crate::catalog::Catalog;
use crate::config::Config;
use crate::drill::spec::DrillSpec;

/// One analysis: its findings, most severe first, and notes on what was not looked at (which are
/// not findings: nothing is wrong with them, they were just not judged).
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub findings: Vec<Finding>,
    pub notes: Vec<String>,
}

impl Analysis {
    pub fn counts(&self) -> Counts {
        Counts::of(&self.findings)
    }

    /// Whether a finding says "these backups are not backups".
    pub fn has_critical(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Critical)
    }
}

/// Evaluates every source with every repository holding or receiving its backups. `drills`: the
/// drill files (for `untested` and `scratch-is-production`); `catalog`: drill history (`None`:
/// `untested` is not judged); `probe`: also run the immutability probe on S3 repositories, which
/// writes a canary under `probes/` (`deletable` is judged only then).
pub async fn analyse(
    config: &Config,
    drills: &[DrillSpec],
    catalog: Option<&dyn Catalog>,
    inspector: &dyn StorageInspector,
    probe: bool,
) -> Analysis {
    let inputs = gather(config, drills, catalog, inspector, probe).await;
    Analysis {
        findings: evaluate(&inputs),
        notes: notes(&inputs),
    }
}

fn notes(inputs: &Inputs) -> Vec<String> {
    let s3: Vec<&str> = inputs
        .repositories
        .iter()
        .filter(|r| matches!(r.storage, inputs::StorageFacts::S3 { .. }))
        .map(|r| r.name.as_str())
        .collect();
    let mut notes = Vec::new();
    if !inputs.probed && !s3.is_empty() {
        notes.push(format!(
            "deletable: not judged for {}; `lifeboat fate --probe` tries to destroy a canary object with each \
             repository's own credential",
            s3.join(", ")
        ));
    }
    if inputs.probed && s3.is_empty() {
        notes.push("deletable: --probe applies to S3 repositories, and there is none".into());
    }
    notes
}
