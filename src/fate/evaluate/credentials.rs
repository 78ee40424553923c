//! shared-credentials: one secret or one identity reaching both the data and its backups.

use super::Pair;
use crate::fate::finding::{Finding, Severity};
use crate::fate::inputs::StorageFacts;
use crate::fate::rules::RuleId;

pub(super) fn check(pair: &Pair, out: &mut Vec<Finding>) {
    let source = &pair.source.name;
    let repo = &pair.repo.name;
    // (severity, evidence), merged into one finding per pair at the end.
    let mut seen: Vec<(Severity, String)> = Vec::new();

    for r in &pair.repo.credentials {
        for s in &pair.source.credentials {
            if r.reference == s.reference {
                seen.push((
                    Severity::Critical,
                    format!("`{}` and `{}` both come from {}", r.key, s.key, r.reference.describe()),
                ));
            } else if r.digest.is_some() && r.digest == s.digest {
                seen.push((
                    Severity::Critical,
                    format!(
                        "`{}` ({}) and `{}` ({}) hold the same value (compared by salted SHA-256; not shown)",
                        r.key,
                        r.reference.describe(),
                        s.key,
                        s.reference.describe()
                    ),
                ));
            }
        }
    }

    match (&pair.repo.storage, &pair.source.cloud_caller) {
        (StorageFacts::S3 { evidence, .. }, Some(Ok(theirs))) => match &evidence.caller {
            Some(ours) if ours.arn == theirs.arn => seen.push((
                Severity::Critical,
                format!(
                    "the credential of `{repo}` and the cloud identity of `{source}` are the same principal {}",
                    ours.arn
                ),
            )),
            Some(ours) if !ours.account.is_empty() && ours.account == theirs.account => seen.push((
                Severity::Warning,
                format!(
                    "the credential of `{repo}` ({}) is in the same cloud account {} as the cloud identity of \
                     `{source}` ({})",
                    ours.arn, ours.account, theirs.arn
                ),
            )),
            Some(_) => {}
            None => seen.push((
                Severity::Info,
                format!("could not judge: the caller identity of `{repo}`'s credential is not known"),
            )),
        },
        (StorageFacts::S3 { .. }, Some(Err(why))) => seen.push((
            Severity::Info,
            format!("could not judge: who the cloud identity of `{source}` is could not be asked ({why})"),
        )),
        (StorageFacts::File { path, .. }, Some(_)) if pair.source.is_local() == Some(true) => seen.push((
            Severity::Critical,
            format!(
                "`{source}` has a `cloud_identity`, the credential of the infrastructure its database runs on, and \
                 repository `{repo}` is the directory {} on that same host: one call with that credential destroys \
                 data and backups together",
                path.display()
            ),
        )),
        _ => {}
    }

    let Some(worst) = seen.iter().map(|(s, _)| *s).max() else {
        return;
    };
    // Below the worst, an "info: could not judge" adds nothing.
    let evidence: Vec<String> = seen
        .into_iter()
        .filter(|(s, _)| *s == worst || *s > Severity::Info)
        .map(|(_, e)| e)
        .collect();
    out.push(pair.finding(
        RuleId::SharedCredentials,
        worst,
        evidence.join("; "),
        format!(
            "give `{repo}` its own credential, in an account (or at least a principal) that `{source}`'s credentials \
             cannot use or manage; a file repository belongs on a host that `{source}`'s cloud identity does not \
             control"
        ),
    ));
}
