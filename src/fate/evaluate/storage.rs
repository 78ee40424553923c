//! What the storage itself allows, and how many places hold the backups: no-immutability,
//! deletable, retention-too-short (the lock), single-copy, same-provider-region.

use std::time::Duration;

use super::{Pair, human, source_finding};
use crate::fate::evidence::{ProbeOutcome, Versioning};
use crate::fate::finding::{Finding, Severity};
use crate::fate::inputs::{Inputs, RepositoryFacts, SourceFacts, StorageFacts};
use crate::fate::rules::RuleId;

const LOCK_FIX: &str = "create the bucket with Object Lock and set a default retention (e.g. `aws s3api \
                        put-object-lock-configuration --bucket B --object-lock-configuration \
                        '{\"ObjectLockEnabled\":\"Enabled\",\"Rule\":{\"DefaultRetention\":{\"Mode\":\"GOVERNANCE\",\
                        \"Days\":30}}}'`), written with a credential that cannot bypass it";

pub(super) fn check(inputs: &Inputs, pair: &Pair, out: &mut Vec<Finding>) {
    no_immutability(pair, out);
    deletable(pair, out);
    lock_retention(inputs, pair, out);
}

fn no_immutability(pair: &Pair, out: &mut Vec<Finding>) {
    let repo = &pair.repo.name;
    match &pair.repo.storage {
        StorageFacts::File { path, .. } => out.push(pair.finding(
            RuleId::NoImmutability,
            Severity::Warning,
            format!(
                "repository `{repo}` is the plain directory {}: its owner and root can delete it at any time, and \
                 nothing keeps what was deleted",
                path.display()
            ),
            "keep a copy in a bucket with Object Lock and a default retention",
        )),
        StorageFacts::S3 { bucket, evidence, .. } => {
            let lock = evidence.object_lock.as_ref();
            if lock.is_some_and(|l| l.default_retention_days.is_some()) {
                return;
            }
            if !evidence.unreadable.is_empty() {
                out.push(pair.unjudged(
                    RuleId::NoImmutability,
                    &format!("bucket {bucket}: {}", evidence.unreadable.join("; ")),
                    "let the repository's credential read the bucket's versioning and Object Lock configuration \
                     (s3:GetBucketVersioning, s3:GetBucketObjectLockConfiguration)",
                ));
                return;
            }
            let (severity, evidence) = match (lock, evidence.versioning) {
                (Some(_), _) => (
                    Severity::Warning,
                    format!(
                        "bucket {bucket} has Object Lock enabled but no default retention, so the objects lifeboat \
                         writes are not locked"
                    ),
                ),
                (None, Versioning::Enabled) => (
                    Severity::Warning,
                    format!(
                        "bucket {bucket} keeps versions but has no Object Lock: a credential allowed \
                         s3:DeleteObjectVersion deletes old versions too"
                    ),
                ),
                (None, Versioning::Suspended) => (
                    Severity::Critical,
                    format!("bucket {bucket} has versioning suspended and no Object Lock"),
                ),
                (None, Versioning::Off) => (
                    Severity::Critical,
                    format!("bucket {bucket} has neither versioning nor Object Lock: a delete is final"),
                ),
            };
            out.push(pair.finding(RuleId::NoImmutability, severity, evidence, LOCK_FIX));
        }
        StorageFacts::Other { scheme } => out.push(pair.unjudged(
            RuleId::NoImmutability,
            &format!("{scheme}:// repositories are not inspected"),
            "check the bucket's retention policy (GCS) or immutability policy (Azure) by hand",
        )),
    }
}

fn deletable(pair: &Pair, out: &mut Vec<Finding>) {
    let StorageFacts::S3 {
        bucket,
        probe: Some(probe),
        ..
    } = &pair.repo.storage
    else {
        return;
    };
    match &probe.outcome {
        ProbeOutcome::Survived => {}
        ProbeOutcome::CouldNotRun { reason } => out.push(pair.unjudged(
            RuleId::Deletable,
            &format!("the probe could not run on bucket {bucket}: {reason}"),
            "let the repository's credential write under `probes/` so the probe can run",
        )),
        ProbeOutcome::Destroyed { by } => {
            let attempts: Vec<String> = probe
                .attempts
                .iter()
                .map(|a| {
                    format!(
                        "{} {} ({})",
                        a.name,
                        if a.accepted { "accepted" } else { "refused" },
                        a.answer
                    )
                })
                .collect();
            out.push(pair.finding(
                RuleId::Deletable,
                Severity::Critical,
                format!(
                    "with the credential of `{}`, the probe's canary {} in bucket {bucket} was destroyed by `{by}` \
                     (attempts: {})",
                    pair.repo.name,
                    probe.canary,
                    attempts.join(", ")
                ),
                "give the daemon a credential without s3:DeleteObject* and s3:BypassGovernanceRetention, and \
                 enable Object Lock with a default retention on the bucket",
            ));
        }
    }
}

fn lock_retention(inputs: &Inputs, pair: &Pair, out: &mut Vec<Finding>) {
    let StorageFacts::S3 { bucket, evidence, .. } = &pair.repo.storage else {
        return;
    };
    let Some(lock) = &evidence.object_lock else { return };
    let Some(days) = lock.default_retention_days else {
        return;
    };
    let locked = Duration::from_secs(u64::from(days) * 86_400);
    if locked < inputs.detect_within {
        out.push(pair.finding(
            RuleId::RetentionTooShort,
            Severity::Warning,
            format!(
                "bucket {bucket} locks objects for {days} day(s){}, less than fate.detect_within ({})",
                lock.mode.as_deref().map(|m| format!(" ({m})")).unwrap_or_default(),
                human(inputs.detect_within)
            ),
            format!(
                "set the bucket's default retention to at least {} days",
                inputs.detect_within.as_secs().div_ceil(86_400)
            ),
        ));
    }
}

/// single-copy and same-provider-region, over every repository holding or receiving the source.
pub(super) fn copies(inputs: &Inputs, source: &SourceFacts, repos: &[&RepositoryFacts], out: &mut Vec<Finding>) {
    single_copy(source, repos, out);
    same_provider(inputs, source, repos, out);
}

fn single_copy(source: &SourceFacts, repos: &[&RepositoryFacts], out: &mut Vec<Finding>) {
    let name = &source.name;
    let mut unlisted = Vec::new();
    let mut newest: Option<&String> = None;
    for r in repos {
        match &r.snapshots {
            Ok(by_source) => {
                if let Some(max) = by_source.get(name).and_then(|ids| ids.last()) {
                    newest = newest.max(Some(max));
                }
            }
            Err(why) => unlisted.push(format!("`{}` ({why})", r.name)),
        }
    }
    let copy_fix = format!(
        "add a second repository and copy `{name}`'s snapshots to it (`lifeboat copy --from {} --to OTHER --source \
         {name}`)",
        source.repository
    );
    let Some(newest) = newest else {
        let (why, fix) = if unlisted.is_empty() {
            (
                format!("no repository holds a snapshot of `{name}` yet"),
                format!("run `lifeboat backup {name}`"),
            )
        } else {
            (
                format!("no snapshot of `{name}` found; could not list {}", unlisted.join(", ")),
                format!(
                    "make the repositories readable with their configured credentials (`lifeboat init` creates a \
                     missing one), then run `lifeboat backup {name}`"
                ),
            )
        };
        out.push(source_finding(
            name,
            RuleId::SingleCopy,
            Severity::Info,
            format!("could not judge: {why}"),
            fix,
        ));
        return;
    };
    let holders: Vec<&str> = repos
        .iter()
        .filter(|r| {
            r.snapshots
                .as_ref()
                .is_ok_and(|s| s.get(name).is_some_and(|ids| ids.contains(newest)))
        })
        .map(|r| r.name.as_str())
        .collect();
    if let [only] = holders.as_slice() {
        let unlisted = if unlisted.is_empty() {
            String::new()
        } else {
            format!(" (could not list {})", unlisted.join(", "))
        };
        out.push(Finding {
            repository: Some((*only).to_owned()),
            ..source_finding(
                name,
                RuleId::SingleCopy,
                Severity::Warning,
                format!("the newest snapshot of `{name}`, {newest}, is only in repository `{only}`{unlisted}"),
                copy_fix,
            )
        });
    }
}

/// Which provider (and region) a repository's storage belongs to.
fn provider(inputs: &Inputs, repo: &RepositoryFacts) -> (String, Option<String>) {
    const NETWORK_FS: [&str; 8] = ["nfs", "nfs4", "cifs", "smb3", "ceph", "glusterfs", "fuse.sshfs", "9p"];
    match &repo.storage {
        StorageFacts::File { place, .. } => match place.as_ref().ok().and_then(|p| p.mount.as_ref()) {
            Some(m) if NETWORK_FS.contains(&m.fs_type.as_str()) => {
                let server = m.source.split(':').next().unwrap_or(&m.source);
                (format!("{} server {server}", m.fs_type), None)
            }
            _ => (format!("this host ({})", inputs.host_name), None),
        },
        StorageFacts::S3 {
            endpoint,
            region,
            evidence,
            ..
        } => {
            let provider = match endpoint {
                Some(e) => format!("S3 endpoint {}", e.trim_end_matches('/')),
                None => "AWS S3".to_owned(),
            };
            (provider, evidence.region.clone().or_else(|| region.clone()))
        }
        StorageFacts::Other { scheme } => (
            match scheme.as_str() {
                "gs" => "Google Cloud Storage".to_owned(),
                "az" | "azure" => "Azure Blob Storage".to_owned(),
                other => format!("{other}://"),
            },
            None,
        ),
    }
}

fn same_provider(inputs: &Inputs, source: &SourceFacts, repos: &[&RepositoryFacts], out: &mut Vec<Finding>) {
    // With one repository, single-copy already says it.
    if repos.len() < 2 {
        return;
    }
    let places: Vec<(String, Option<String>)> = repos.iter().map(|r| provider(inputs, r)).collect();
    let (first, _) = &places[0];
    if places.iter().any(|(p, _)| p != first) {
        return;
    }
    let mut regions: Vec<&str> = places.iter().filter_map(|(_, r)| r.as_deref()).collect();
    regions.sort();
    regions.dedup();
    let region = match regions.as_slice() {
        [] => String::new(),
        [one] => format!(", region {one}"),
        many => format!(", regions {}", many.join(", ")),
    };
    let names: Vec<String> = repos.iter().map(|r| format!("`{}`", r.name)).collect();
    out.push(source_finding(
        &source.name,
        RuleId::SameProviderRegion,
        Severity::Warning,
        format!(
            "every repository holding `{}` ({}) is with {first}{region}",
            source.name,
            names.join(", ")
        ),
        format!(
            "copy `{}`'s snapshots to a repository with another provider (`lifeboat copy`)",
            source.name
        ),
    ));
}
