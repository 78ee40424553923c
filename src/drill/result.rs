//! A drill's result: what the catalog records, what the repository keeps as evidence, what `--json`
//! prints. One document for all three, so they can never disagree.

use serde::{Deserialize, Serialize};

/// The verdict of a drill run. Exit codes: pass 0, fail 4, sla-breach 5, error 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Restored, every check passed, within the SLA.
    Pass,
    /// A check failed or the backup is damaged: the restored copy is not what it should be.
    Fail,
    /// Everything passed, but recovery took longer (RTO) or the copy was older (RPO) than the SLA allows.
    SlaBreach,
    /// The drill could not measure (no snapshot, no scratch, a tool failed): nothing is known.
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::SlaBreach => "sla-breach",
            Verdict::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Phase {
    /// select, provision, fetch-and-verify, restore, checks, teardown
    pub name: String,
    pub seconds: f64,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckStatus {
    Pass,
    Fail,
    Skipped,
    Error,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckResult {
    pub check: String,
    pub status: CheckStatus,
    /// What the check saw (a value, a count, a command's exit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TestedSnapshot {
    pub id: String,
    /// SHA-256 of the manifest's body: ties this evidence to exactly one backup.
    pub manifest_sha256: String,
    pub taken_at: jiff::Timestamp,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScratchInfo {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// Set when the scratch server's major version differs from the backed-up server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_note: Option<String>,
    /// Databases that crashed drills had left on the scratch server, dropped by this run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reaped: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DrillResult {
    pub run_id: String,
    pub drill: String,
    pub source: String,
    pub repository: String,
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    pub verdict: Verdict,
    /// Why the verdict is not `pass`: which check, what it saw, which object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<TestedSnapshot>,
    /// Wall time from the drill's start until its checks passed (teardown excluded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_seconds: Option<f64>,
    /// Age of the restored point at the drill's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla_rto_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla_rpo_seconds: Option<f64>,
    pub phases: Vec<Phase>,
    pub checks: Vec<CheckResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch: Option<ScratchInfo>,
    /// A negative-control run: the copy was tampered with on purpose, and the checks had to notice.
    #[serde(default)]
    pub negative_control: bool,
    pub lifeboat_version: String,
}
