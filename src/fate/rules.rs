//! The one table of shared-fate rules: what each checks, why it matters, how to fix it.
//!
//! `lifeboat fate --explain RULE` prints an entry, and the README's rule table is
//! [`markdown_table`] (a test fails when the two disagree), so the documentation cannot drift
//! from what the analysis does.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::finding::Severity;

/// A rule's id, as written in findings, `--explain` and alerts (`same-device`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleId {
    SameDevice,
    SameHost,
    NoImmutability,
    Deletable,
    SharedCredentials,
    DbUserCanWrite,
    SingleCopy,
    SameProviderRegion,
    KeyWithData,
    Untested,
    ScratchIsProduction,
    RetentionTooShort,
}

impl RuleId {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::SameDevice => "same-device",
            RuleId::SameHost => "same-host",
            RuleId::NoImmutability => "no-immutability",
            RuleId::Deletable => "deletable",
            RuleId::SharedCredentials => "shared-credentials",
            RuleId::DbUserCanWrite => "db-user-can-write",
            RuleId::SingleCopy => "single-copy",
            RuleId::SameProviderRegion => "same-provider-region",
            RuleId::KeyWithData => "key-with-data",
            RuleId::Untested => "untested",
            RuleId::ScratchIsProduction => "scratch-is-production",
            RuleId::RetentionTooShort => "retention-too-short",
        }
    }

    /// This rule's entry in [`RULES`].
    pub fn rule(self) -> &'static Rule {
        RULES
            .iter()
            .find(|r| r.id == self)
            .expect("every rule id has an entry in RULES")
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RuleId {
    type Err = String;

    /// Errors say which rules exist, and which one was probably meant.
    fn from_str(s: &str) -> Result<RuleId, String> {
        let wanted = s.trim().to_ascii_lowercase();
        if let Some(rule) = RULES.iter().find(|r| r.id.as_str() == wanted) {
            return Ok(rule.id);
        }
        let ids = RULES.iter().map(|r| r.id.as_str());
        let hint = match crate::config::did_you_mean(&wanted, ids.clone()) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!("use one of: {}", ids.collect::<Vec<_>>().join(", ")),
        };
        Err(format!("unknown shared-fate rule `{}`; fix: {hint}", s.escape_debug()))
    }
}

/// One rule, documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub id: RuleId,
    /// The severity of a finding of this rule when it fires in full; some cases are graded lower
    /// (`what` says which), and a rule that lacks its evidence reports `info`.
    pub severity: Severity,
    /// The finding in one line.
    pub title: &'static str,
    /// What is checked, on which evidence.
    pub what: &'static str,
    pub why: &'static str,
    pub fix: &'static str,
}

pub static RULES: [Rule; 12] = [
    Rule {
        id: RuleId::SameDevice,
        severity: Severity::Critical,
        title: "a file:// repository is on the same filesystem or block device as the source's data directory",
        what: "Compares the source's data directory (asked from the server with `show data_directory`, else the \
               source's `data_dir:`) with each file:// repository holding its backups: the filesystem's device id \
               (stat) and the mount's source device (/proc/self/mountinfo). Judged when the database runs on this \
               host or `data_dir` is set; when the data directory cannot be found here (no rights to ask, a \
               server in a container), an info finding says so.",
        why: "A volume that is deleted, corrupted or filled up takes the backups with the data: the very incident \
              backups exist for.",
        fix: "Put the repository on another device, better another host or an object store with Object Lock \
              (`url: s3://bucket/prefix`).",
    },
    Rule {
        id: RuleId::SameHost,
        severity: Severity::Warning,
        title: "the repository is a directory on the database's own host",
        what: "The source's DSN reaches this host (a Unix socket, a loopback address, this host's name or one of \
               its addresses) and the repository is file://.",
        why: "Losing the host (a deleted instance, ransomware, a mistaken `rm` as root) loses data and backups at \
              once, even when they sit on different disks.",
        fix: "Keep at least one copy off the host: an object store, or a file repository mounted from another \
              machine.",
    },
    Rule {
        id: RuleId::NoImmutability,
        severity: Severity::Critical,
        title: "nothing stops the backups from being deleted or overwritten",
        what: "S3: the bucket's versioning and Object Lock. Neither is critical; versioning without Object Lock \
               (old versions can still be deleted) or Object Lock without a default retention is a warning. A \
               file:// repository is a plain directory that its owner and root can always delete (warning). \
               gs:// and az:// are not inspected (info).",
        why: "Whoever holds a credential that can delete (an attacker, a script, an over-broad token) can destroy \
              every backup in one call.",
        fix: "Use a bucket with Object Lock and a default retention of at least `fate.detect_within`, written with \
              a credential that cannot bypass it.",
    },
    Rule {
        id: RuleId::Deletable,
        severity: Severity::Critical,
        title: "the daemon's own credential can delete or overwrite a committed backup",
        what: "With `--probe` (the daemon: `fate.probe: true`), writes a canary under `probes/` in each S3 \
               repository and tries to destroy it with the repository's credential: delete by key, delete its \
               version, overwrite. The finding names the attempt after which the canary's original bytes were \
               gone. Without the probe this rule is not judged.",
        why: "A credential that can destroy backups is one leak or one buggy job away from losing them; \
              immutability that has not been tried is not relied on.",
        fix: "Give the daemon a credential without `s3:DeleteObject*` and `s3:BypassGovernanceRetention`, and \
              enable Object Lock with a default retention; pruning uses a separate deleting credential.",
    },
    Rule {
        id: RuleId::SharedCredentials,
        severity: Severity::Critical,
        title: "the repository and the source are reachable with the same identity or secret",
        what: "Compares the repository's access keys with the source's password and `cloud_identity`: the same \
               env var or file, or the same value (compared by salted SHA-256, never shown). With S3 evidence, \
               the repository credential's caller identity against the source's `cloud_identity`: the same \
               principal is critical, the same account a warning. A file:// repository on the database's host \
               is reachable by the source's `cloud_identity`, which controls that host.",
        why: "One leaked or over-broad credential then deletes the database and its backups together.",
        fix: "Give the repository its own credential, in another account (or at least another principal) that \
              the source's infrastructure credential cannot use or manage.",
    },
    Rule {
        id: RuleId::DbUserCanWrite,
        severity: Severity::Critical,
        title: "the database's OS user can write to (and so delete) a local repository",
        what: "For file:// repositories on the database's host: whether the OS user owning the data directory \
               (else `postgres`) can write the repository directory or a directory inside it, or owns one (and \
               could chmod it), from the permission bits, owners and its groups along the path. ACLs are not \
               read.",
        why: "A compromised database (`COPY ... TO PROGRAM` as a superuser) runs as that user; if it can delete \
              the backups, one intrusion destroys both.",
        fix: "Let another user own the repository, with mode 0750 or stricter and a group the database's user is \
              not in.",
    },
    Rule {
        id: RuleId::SingleCopy,
        severity: Severity::Warning,
        title: "the source's newest snapshot exists in only one repository",
        what: "Lists the snapshot manifests of every configured repository (a repository holding manifests of \
               the source counts as a copy) and counts those holding the source's newest snapshot.",
        why: "One copy is lost with its one repository: a deleted bucket, a closed account, a bug in one place.",
        fix: "Add a second repository and copy snapshots to it (`lifeboat copy --from A --to B --source S`, \
              scheduled by the daemon).",
    },
    Rule {
        id: RuleId::SameProviderRegion,
        severity: Severity::Warning,
        title: "every copy sits with the same provider, endpoint or region",
        what: "Groups the repositories that hold or receive the source's backups by provider: the S3 endpoint \
               (AWS when none is set) with its region, Google Cloud Storage, Azure, or this host (file://; a \
               network filesystem counts as its server). With one repository, single-copy says it already.",
        why: "One provider outage, closed account or regional disaster takes every copy.",
        fix: "Keep a copy with another provider, or at least in another region (`lifeboat copy`).",
    },
    Rule {
        id: RuleId::KeyWithData,
        severity: Severity::Critical,
        title: "the decryption identity is stored in the repository or next to the data",
        what: "Where the repository's `encryption.identity_file` is: inside a file:// repository (critical), \
               inside the source's data directory or on its device (critical), elsewhere on the database's host \
               (warning).",
        why: "A key inside the repository hands the data to whoever takes the backups; a key beside the data \
              dies with it, leaving backups that nobody can decrypt.",
        fix: "Keep the identity with the drill runner and on-call (a secret store, another host); backing up \
              needs only the recipients (public keys).",
    },
    Rule {
        id: RuleId::Untested,
        severity: Severity::Warning,
        title: "no passing drill within the configured window; or never",
        what: "From the catalog's drill history: the newest run with verdict `pass` for the source, against \
               `fate.untested_after` (default 8d). Also raised when no drill file names the source.",
        why: "A backup nobody has restored is a hope: broken dumps, lost keys and slow restores are found during \
              the incident instead of before it.",
        fix: "Write a drill file for the source (drills/README.md) and schedule it; fix what made the last \
              drills fail.",
    },
    Rule {
        id: RuleId::ScratchIsProduction,
        severity: Severity::Critical,
        title: "a drill's scratch server is a production server",
        what: "Resolves each drill's `scratch: {kind: server}` DSN and the DSNs of the production sources and of \
               the drill's own source to addresses: the same socket, the same address and port, or both on this \
               host with the same port.",
        why: "A drill creates and drops databases on its scratch server; pointed at production it loads, and may \
              damage, the database it is meant to protect.",
        fix: "Point the drill at a server set aside for drills, or use `scratch: {kind: ephemeral}`.",
    },
    Rule {
        id: RuleId::RetentionTooShort,
        severity: Severity::Warning,
        title: "retention or lock period shorter than the time to detect a bad backup",
        what: "Compares `fate.detect_within` (default 7d) with the history the source's `retention:` keeps \
               (keep_within; N hours/days/weeks/months/years reach back N-1 of them; keep_last N reaches back \
               N-1 intervals of the backup schedule) and with the bucket's Object Lock default retention.",
        why: "If a bad backup (silently broken, or taken after the data was encrypted by an attacker) is noticed \
              only after every good one was pruned or unlocked, no good copy is left.",
        fix: "Keep at least `fate.detect_within` of history (e.g. `keep_daily: 14`) and lock at least that long; \
              or notice sooner, with drills.",
    },
];

/// `lifeboat fate --explain RULE`.
pub fn explain(rule: &Rule) -> String {
    format!(
        "{} ({} by default)\n  {}\n\nWhat is checked:\n  {}\n\nWhy it matters:\n  {}\n\nFix:\n  {}\n",
        rule.id, rule.severity, rule.title, rule.what, rule.why, rule.fix
    )
}

/// The README's rule table, generated from [`RULES`].
pub fn markdown_table() -> String {
    let mut out =
        String::from("| rule | severity | finding | why it matters | fix |\n| --- | --- | --- | --- | --- |\n");
    for r in &RULES {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            r.id,
            r.severity,
            r.title,
            r.why,
            r.fix.replace('|', "\\|")
        ));
    }
    out
}
