//! Approval requests: what a destructive action becomes instead of happening.
//!
//! A request records exactly what will be done (the [`Action`], fixed at request time), who asked,
//! which environments and sources it touches, how many approvals it needs and when it expires.
//! Other principals with `approve` over all of it approve or deny; the requester never counts.
//! Once the last approval arrives the request runs, once: every change is a compare-and-set on the
//! request's version, so of two approvers deciding at once, or two processes starting the run, one
//! wins and the other is told. Expired and denied requests never run.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::operation::Operation;
use super::principal::{Denied, Principal};
use crate::catalog::{Catalog, CatalogError, StoredApproval};
use crate::repo::retention::RetentionPolicy;

/// What an approved request does, exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Delete one snapshot's manifest from one repository (its chunks go with the next prune).
    DeleteSnapshot {
        snapshot: String,
        repository: String,
        source: String,
    },
    /// Delete the snapshots a prune tombstoned whose grace period is over, then the chunks that no
    /// remaining snapshot references.
    Prune {
        repository: String,
        source: Option<String>,
        policy: RetentionPolicy,
        delete_snapshots: Vec<String>,
    },
    /// Restore a snapshot over a database that holds data (objects the archive has are replaced).
    RestoreOver {
        snapshot: String,
        repository: String,
        source: String,
        target: RestoreTarget,
        /// Skip ownership and privileges (the target lacks the source's roles).
        no_owner: bool,
        /// Why this is a restore over data, e.g. what the target holds.
        why: String,
    },
    LowerRetention {
        source: String,
        from: Option<RetentionPolicy>,
        to: RetentionPolicy,
        lowered: Vec<String>,
    },
    /// `drill:NAME`, `job:KIND:TARGET` or `route:NAME`.
    Disable { target: String },
    /// Stop using a repository (its stored data is not touched).
    RemoveRepository { repository: String },
}

/// Where a restore over existing data goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreTarget {
    /// A DSN without a password (the password comes from `password_env` when it runs).
    Dsn { dsn: String, password_env: Option<String> },
    /// The configured source's own database, with its credentials.
    Source { name: String },
}

impl Action {
    /// Every [`Action::kind`], for series that must exist at 0 (`lifeboat_approvals_pending`).
    pub const KINDS: [&'static str; 6] = [
        "delete_snapshot",
        "prune",
        "restore_over",
        "lower_retention",
        "disable",
        "remove_repository",
    ];

    /// Its `kind` as serialised, e.g. `delete_snapshot`; one of [`Action::KINDS`].
    pub fn kind(&self) -> &'static str {
        match self {
            Action::DeleteSnapshot { .. } => "delete_snapshot",
            Action::Prune { .. } => "prune",
            Action::RestoreOver { .. } => "restore_over",
            Action::LowerRetention { .. } => "lower_retention",
            Action::Disable { .. } => "disable",
            Action::RemoveRepository { .. } => "remove_repository",
        }
    }

    /// The operation a requester needs to ask for it.
    pub fn operation(&self) -> Operation {
        match self {
            Action::DeleteSnapshot { .. } => Operation::Delete,
            Action::Prune { .. } => Operation::Prune,
            Action::RestoreOver { .. } => Operation::RestoreTarget,
            Action::LowerRetention { .. } | Action::Disable { .. } | Action::RemoveRepository { .. } => {
                Operation::Admin
            }
        }
    }

    /// Exactly what will happen, for people deciding.
    pub fn summary(&self) -> String {
        match self {
            Action::DeleteSnapshot {
                snapshot,
                repository,
                source,
            } => format!(
                "delete snapshot {snapshot} of source {source} from repository {repository} (its manifest; chunks \
                 no other snapshot uses are freed by a later approved prune); it cannot be restored afterwards"
            ),
            Action::Prune {
                repository,
                source,
                policy,
                delete_snapshots,
            } => format!(
                "prune repository {repository}{} with policy `{}`: delete {} tombstoned snapshot(s) ({}) whose grace \
                 period is over, then every chunk no remaining snapshot references",
                source.as_deref().map(|s| format!(", source {s},")).unwrap_or_default(),
                policy.describe(),
                delete_snapshots.len(),
                if delete_snapshots.is_empty() {
                    "none; orphaned chunks only".to_string()
                } else {
                    delete_snapshots.join(", ")
                }
            ),
            Action::RestoreOver {
                snapshot,
                source,
                target,
                why,
                ..
            } => format!(
                "restore snapshot {snapshot} of source {source} over {} ({why}): tables, views and other objects the \
                 backup holds are dropped and recreated with the backup's data; changes made since the snapshot are lost",
                match target {
                    RestoreTarget::Dsn { dsn, .. } => dsn.clone(),
                    RestoreTarget::Source { name } => format!("the database of source {name} itself"),
                }
            ),
            Action::LowerRetention {
                source, lowered, to, ..
            } => format!(
                "lower the retention of source {source} to `{}` ({}): the next prunes forget snapshots the old policy kept",
                to.describe(),
                lowered.join("; ")
            ),
            Action::Disable { target } => format!("disable {target} until someone enables it again"),
            Action::RemoveRepository { repository } => format!(
                "stop using repository {repository}: no more backups, copies or drills with it (its stored data is \
                 not touched)"
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    Pending,
    Approved,
    Denied,
    Expired,
    Running,
    Done,
    Failed,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
            ApprovalState::Running => "running",
            ApprovalState::Done => "done",
            ApprovalState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<ApprovalState> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approver {
    pub by: String,
    pub at: jiff::Timestamp,
}

/// An approval request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    pub action: Action,
    pub summary: String,
    pub requester: String,
    /// Who created the requester's token, if it is a token: they may not approve either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_created_by: Option<String>,
    pub environments: Vec<String>,
    pub sources: Vec<String>,
    pub required_approvals: u32,
    pub approvals: Vec<Approver>,
    pub state: ApprovalState,
    pub created_at: jiff::Timestamp,
    pub expires_at: jiff::Timestamp,
    pub decided_at: Option<jiff::Timestamp>,
    pub denied_by: Option<String>,
    pub reason: Option<String>,
    /// What running it did, or why it failed.
    pub outcome: Option<String>,
    /// The run's report, where it has one (a prune's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(skip)]
    version: i64,
}

/// A request about to be made.
pub struct NewRequest<'a> {
    pub action: Action,
    pub requester: &'a Principal,
    pub environments: Vec<String>,
    pub sources: Vec<String>,
    pub required_approvals: u32,
    pub ttl: Duration,
}

/// Why a decision was not taken. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    #[error("no approval request {id}; fix: `lifeboat approvals` lists them")]
    NotFound { id: String },
    #[error("approval request {id} is {state}, not pending: nothing to decide")]
    NotPending { id: String, state: &'static str },
    #[error("approval request {id} expired at {at}; it will never run; fix: ask for it again")]
    Expired { id: String, at: jiff::Timestamp },
    #[error(
        "{principal} asked for request {id} (or holds a token its requester created, or created the requester's token) and cannot decide about it; fix: another person with `approve` must"
    )]
    SelfApproval { id: String, principal: String },
    #[error("{principal} has already approved request {id}; it needs {needed} different approver(s)")]
    AlreadyApproved { id: String, principal: String, needed: u32 },
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error("approval request {id} changed while it was being decided; fix: look at it again (`lifeboat approvals`)")]
    Raced { id: String },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl Approval {
    pub fn is_expired(&self, now: jiff::Timestamp) -> bool {
        self.state == ApprovalState::Pending && now >= self.expires_at
    }

    fn stored(&self) -> StoredApproval {
        StoredApproval {
            id: self.id.clone(),
            state: self.state.as_str().to_string(),
            version: self.version,
            created_at: self.created_at,
            body: serde_json::to_string(self).expect("an approval serialises"),
        }
    }

    fn from_stored(s: &StoredApproval) -> Result<Approval, CatalogError> {
        let mut a: Approval = serde_json::from_str(&s.body)
            .map_err(|e| CatalogError::corrupt("approvals", format!("request {}: {e}", s.id)))?;
        a.version = s.version;
        Ok(a)
    }

    /// Writes this request's new state if nobody changed it since it was read.
    async fn save(&mut self, catalog: &dyn Catalog) -> Result<bool, CatalogError> {
        let expected = self.version;
        self.version += 1;
        let ok = catalog.update_approval(&self.stored(), expected).await?;
        if !ok {
            self.version = expected;
        }
        Ok(ok)
    }
}

/// Creates a pending request.
pub async fn request(
    catalog: &dyn Catalog,
    new: NewRequest<'_>,
    now: jiff::Timestamp,
) -> Result<Approval, CatalogError> {
    let ttl = jiff::SignedDuration::try_from(new.ttl).unwrap_or(jiff::SignedDuration::from_hours(24));
    let approval = Approval {
        id: format!("apr_{}", hex::encode(rand::random::<[u8; 6]>())),
        summary: new.action.summary(),
        action: new.action,
        requester: new.requester.name.clone(),
        requester_created_by: new.requester.created_by.clone(),
        environments: new.environments,
        sources: new.sources,
        required_approvals: new.required_approvals.max(1),
        approvals: Vec::new(),
        state: ApprovalState::Pending,
        created_at: now,
        expires_at: now.saturating_add(ttl).unwrap_or(now),
        decided_at: None,
        denied_by: None,
        reason: None,
        outcome: None,
        result: None,
        version: 1,
    };
    catalog.insert_approval(&approval.stored()).await?;
    Ok(approval)
}

pub async fn get(catalog: &dyn Catalog, id: &str) -> Result<Option<Approval>, CatalogError> {
    catalog
        .approval(id)
        .await?
        .as_ref()
        .map(Approval::from_stored)
        .transpose()
}

/// Newest first; pending requests past their expiry show as expired.
pub async fn list(
    catalog: &dyn Catalog,
    state: Option<ApprovalState>,
    now: jiff::Timestamp,
) -> Result<Vec<Approval>, CatalogError> {
    let stored = catalog
        .approvals(
            state
                .filter(|s| *s != ApprovalState::Expired)
                .map(ApprovalState::as_str),
        )
        .await?;
    let mut out = Vec::new();
    for s in &stored {
        let mut a = Approval::from_stored(s)?;
        if a.is_expired(now) {
            a.state = ApprovalState::Expired;
        }
        if state.is_none_or(|want| want == a.state) {
            out.push(a);
        }
    }
    if state == Some(ApprovalState::Expired) {
        // Pending ones past expiry were skipped by the state filter above: add them.
        for s in catalog.approvals(Some("pending")).await? {
            let mut a = Approval::from_stored(&s)?;
            if a.is_expired(now) {
                a.state = ApprovalState::Expired;
                out.push(a);
            }
        }
    }
    Ok(out)
}

/// Loads a request that is still open for a decision, recording its expiry if it just expired.
async fn pending(catalog: &dyn Catalog, id: &str, now: jiff::Timestamp) -> Result<Approval, DecisionError> {
    let mut a = get(catalog, id)
        .await?
        .ok_or_else(|| DecisionError::NotFound { id: id.to_string() })?;
    if a.is_expired(now) {
        a.state = ApprovalState::Expired;
        a.decided_at = Some(now);
        a.save(catalog).await?;
        return Err(DecisionError::Expired {
            id: a.id,
            at: a.expires_at,
        });
    }
    if a.state != ApprovalState::Pending {
        return Err(DecisionError::NotPending {
            id: a.id,
            state: a.state.as_str(),
        });
    }
    Ok(a)
}

/// May `p` decide about `a`? Needs `approve` over every environment and source it touches, and
/// must not be the requester.
fn may_decide(p: &Principal, a: &Approval, what: &str) -> Result<(), DecisionError> {
    // One person is one principal, whether at the shell (`local:alice`) or with a token
    // (`token:alice`); and a token is its creator's hand: neither may decide about the other's
    // requests.
    let same_person = Principal::person(&p.name) == Principal::person(&a.requester);
    let own_token = p.created_by.as_deref() == Some(a.requester.as_str())
        || a.requester_created_by.as_deref() == Some(p.name.as_str());
    if same_person || own_token {
        return Err(DecisionError::SelfApproval {
            id: a.id.clone(),
            principal: p.name.clone(),
        });
    }
    let denied = |why: String| Denied {
        principal: p.name.clone(),
        what: format!("{what} request {}", a.id),
        why,
        fix: "ask someone whose token has `approve` for these environments and sources".into(),
    };
    if !p.scope.has(Operation::Approve) {
        return Err(denied("it lacks the `approve` operation".into()).into());
    }
    if a.environments.is_empty() && a.sources.is_empty() && !p.scope.is_global() {
        return Err(denied("the request is not about one source, and its scope is limited".into()).into());
    }
    if let Some(e) = a.environments.iter().find(|e| !p.scope.covers_environment(e)) {
        return Err(denied(format!("the request touches environment `{e}`, outside its scope")).into());
    }
    if let Some(s) = a.sources.iter().find(|s| !p.scope.covers_source(s)) {
        return Err(denied(format!("the request touches source `{s}`, outside its scope")).into());
    }
    Ok(())
}

/// Adds `approver`'s approval. The result is `Approved` when it was the last one needed: the
/// caller then runs it through [`start`] and [`finish`].
pub async fn approve(
    catalog: &dyn Catalog,
    id: &str,
    approver: &Principal,
    now: jiff::Timestamp,
) -> Result<Approval, DecisionError> {
    let mut a = pending(catalog, id, now).await?;
    may_decide(approver, &a, "approve")?;
    if a.approvals.iter().any(|x| x.by == approver.name) {
        return Err(DecisionError::AlreadyApproved {
            id: a.id,
            principal: approver.name.clone(),
            needed: a.required_approvals,
        });
    }
    a.approvals.push(Approver {
        by: approver.name.clone(),
        at: now,
    });
    if a.approvals.len() as u32 >= a.required_approvals {
        a.state = ApprovalState::Approved;
        a.decided_at = Some(now);
    }
    if !a.save(catalog).await? {
        return Err(DecisionError::Raced { id: a.id });
    }
    Ok(a)
}

pub async fn deny(
    catalog: &dyn Catalog,
    id: &str,
    by: &Principal,
    reason: Option<String>,
    now: jiff::Timestamp,
) -> Result<Approval, DecisionError> {
    let mut a = pending(catalog, id, now).await?;
    may_decide(by, &a, "deny")?;
    a.state = ApprovalState::Denied;
    a.decided_at = Some(now);
    a.denied_by = Some(by.name.clone());
    a.reason = reason;
    if !a.save(catalog).await? {
        return Err(DecisionError::Raced { id: a.id });
    }
    Ok(a)
}

/// Takes an approved request for running: true for exactly one caller, ever.
pub async fn start(catalog: &dyn Catalog, a: &mut Approval) -> Result<bool, CatalogError> {
    if a.state != ApprovalState::Approved {
        return Ok(false);
    }
    a.state = ApprovalState::Running;
    let ok = a.save(catalog).await?;
    if !ok {
        a.state = ApprovalState::Approved;
    }
    Ok(ok)
}

/// Records how a run ended.
pub async fn finish(
    catalog: &dyn Catalog,
    a: &mut Approval,
    result: Result<(String, Option<serde_json::Value>), String>,
) -> Result<(), CatalogError> {
    let (state, outcome, report) = match result {
        Ok((o, report)) => (ApprovalState::Done, o, report),
        Err(e) => (ApprovalState::Failed, e, None),
    };
    a.state = state;
    a.outcome = Some(outcome);
    a.result = report;
    if !a.save(catalog).await? {
        tracing::warn!(
            "approval request {} changed while it ran; its outcome was not recorded",
            a.id
        );
    }
    Ok(())
}

/// How many requests are pending (and not expired), by kind: for the `lifeboat_approvals_pending`
/// metric.
pub async fn pending_by_kind(
    catalog: &dyn Catalog,
    now: jiff::Timestamp,
) -> Result<Vec<(&'static str, u64)>, CatalogError> {
    let mut counts: Vec<(&'static str, u64)> = Vec::new();
    for a in list(catalog, Some(ApprovalState::Pending), now).await? {
        match counts.iter_mut().find(|(k, _)| *k == a.action.kind()) {
            Some((_, n)) => *n += 1,
            None => counts.push((a.action.kind(), 1)),
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_is_the_serialised_tag() {
        let a = Action::Disable {
            target: "route:x".into(),
        };
        assert_eq!(serde_json::to_value(&a).unwrap()["kind"], a.kind());
        assert!(Action::KINDS.contains(&a.kind()));
        let a = Action::RemoveRepository { repository: "r".into() };
        assert_eq!(serde_json::to_value(&a).unwrap()["kind"], a.kind());
        assert!(Action::KINDS.contains(&a.kind()));
    }
}
