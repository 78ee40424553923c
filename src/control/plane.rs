//! The rules in one place, for the CLI and the API alike: who may do what, which actions become
//! approval requests instead of happening, and running a request once it is approved.
//!
//! Nothing here writes the audit log: each caller records one entry per call, with the decision
//! and outcome it got from here (see `cli::audited` and `api`).

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::approval::{self, Action, Approval, ApprovalState, DecisionError, NewRequest, RestoreTarget};
use super::operation::Operation;
use super::principal::{Denied, Principal, Resource, Scope};
use super::settings::{self, Change, Settings};
use super::token::{self, AuthError, TokenInfo};
use crate::catalog::{Catalog, CatalogError, SnapshotFilter, SnapshotRecord};
use crate::cli::context::Context;
use crate::cli::{CliError, Exit};
use crate::engine::{self, Endpoint, RestoreOptions};
use crate::ops::{self, Deletions, PruneReport, PruneRequest};
use crate::repo::LockOptions;
use crate::repo::retention::RetentionPolicy;

/// Why a call did not do what was asked. Each kind has a stable code (the API's `error.code`), an
/// HTTP status and a CLI exit code; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    #[error("not allowed: {0}")]
    Forbidden(#[from] Denied),
    #[error("{0}")]
    SelfApproval(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Damage(String),
    #[error("{0}")]
    Failed(String),
}

impl ControlError {
    pub fn code(&self) -> &'static str {
        match self {
            ControlError::Unauthenticated(AuthError::Catalog(_)) => "failed",
            ControlError::Unauthenticated(_) => "unauthorized",
            ControlError::Forbidden(_) => "forbidden",
            ControlError::SelfApproval(_) => "self_approval",
            ControlError::NotFound(_) => "not_found",
            ControlError::BadRequest(_) => "bad_request",
            ControlError::PayloadTooLarge(_) => "payload_too_large",
            ControlError::Conflict(_) => "conflict",
            ControlError::Refused(_) => "refused",
            ControlError::Damage(_) => "damage",
            ControlError::Failed(_) => "failed",
        }
    }

    pub fn http_status(&self) -> u16 {
        match self.code() {
            "unauthorized" => 401,
            "forbidden" | "self_approval" => 403,
            "not_found" => 404,
            "bad_request" => 400,
            "payload_too_large" => 413,
            "conflict" | "refused" => 409,
            "damage" => 422,
            _ => 500,
        }
    }

    pub fn exit(&self) -> Exit {
        match self.code() {
            "unauthorized" | "forbidden" | "self_approval" => Exit::Denied,
            "not_found" | "bad_request" | "payload_too_large" => Exit::Usage,
            "conflict" | "refused" => Exit::Refused,
            "damage" => Exit::Damage,
            _ => Exit::Failed,
        }
    }
}

impl From<CatalogError> for ControlError {
    fn from(e: CatalogError) -> Self {
        ControlError::Failed(e.to_string())
    }
}

impl From<CliError> for ControlError {
    fn from(e: CliError) -> Self {
        match e.exit {
            Exit::Usage => ControlError::BadRequest(e.message),
            Exit::Refused => ControlError::Refused(e.message),
            Exit::Damage => ControlError::Damage(e.message),
            Exit::Denied => ControlError::Conflict(e.message),
            _ => ControlError::Failed(e.message),
        }
    }
}

impl From<ops::OpsError> for ControlError {
    fn from(e: ops::OpsError) -> Self {
        CliError::from(e).into()
    }
}

impl From<crate::engine::EngineError> for ControlError {
    fn from(e: crate::engine::EngineError) -> Self {
        ControlError::Failed(e.to_string())
    }
}

impl From<DecisionError> for ControlError {
    fn from(e: DecisionError) -> Self {
        match e {
            DecisionError::NotFound { .. } => ControlError::NotFound(e.to_string()),
            DecisionError::SelfApproval { .. } => ControlError::SelfApproval(e.to_string()),
            DecisionError::Denied(d) => ControlError::Forbidden(d),
            DecisionError::Catalog(c) => c.into(),
            DecisionError::NotPending { .. }
            | DecisionError::Expired { .. }
            | DecisionError::AlreadyApproved { .. }
            | DecisionError::Raced { .. } => ControlError::Conflict(e.to_string()),
        }
    }
}

/// Done now, or waiting for approval.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome<T> {
    Done(T),
    Pending(Box<Approval>),
}

/// `POST /restores`: which snapshot, and where to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreSpec {
    pub snapshot: Option<String>,
    pub source: Option<String>,
    /// The newest snapshot of `source` taken at or before this time.
    pub at: Option<jiff::Timestamp>,
    pub repository: Option<String>,
    pub target: RestoreTargetSpec,
    #[serde(default)]
    pub no_owner: bool,
    /// Parallel restore jobs (default 2).
    #[serde(default)]
    pub jobs: Option<u32>,
    /// Where a parallel restore stages the archive (the CLI's --work-dir and --stage-on-disk).
    #[serde(skip)]
    pub staging: ops::Staging,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RestoreTargetSpec {
    /// A throwaway cluster, checked and removed.
    Scratch {},
    Dsn {
        dsn: String,
        password_env: Option<String>,
    },
    Source(String),
}

/// What a restore did.
#[derive(Debug, Serialize)]
pub struct RestoreDone {
    pub snapshot: String,
    pub source: String,
    pub repository: String,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<ops::RestoreReport>,
    /// For a scratch restore: the check's result, as a drill reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scratch: Option<crate::drill::result::DrillResult>,
}

/// The rules, over one config and one catalog.
pub struct ControlPlane<'a> {
    pub ctx: &'a Context,
    pub catalog: &'a dyn Catalog,
}

impl<'a> ControlPlane<'a> {
    pub fn new(ctx: &'a Context, catalog: &'a dyn Catalog) -> Self {
        ControlPlane { ctx, catalog }
    }

    fn now() -> jiff::Timestamp {
        jiff::Timestamp::now()
    }

    /// The principal for a presented token.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, ControlError> {
        Ok(token::authenticate(self.catalog, token, Self::now()).await?)
    }

    /// The operator at this host's shell, `local:USER`: may do and ask for anything but approve
    /// nothing, and may manage tokens only while no admin token exists (see [`Self::token_admin`]).
    pub async fn local_principal(&self) -> Result<Principal, ControlError> {
        let user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| format!("uid{}", nix::unistd::getuid()));
        let mut scope = Scope::everything();
        scope.operations.remove(&Operation::Approve);
        Ok(Principal {
            name: format!("local:{user}"),
            token_id: None,
            scope,
            created_by: None,
        })
    }

    /// A configured source as the policy sees it.
    pub fn resource(&self, source: &str) -> Result<Resource<'a>, ControlError> {
        let s = self.ctx.config.sources.get(source).ok_or_else(|| {
            ControlError::NotFound(format!(
                "unknown source `{source}`; fix: `GET /api/v1/sources` or the config lists them"
            ))
        })?;
        Ok(Resource {
            source: &s.name,
            environment: &s.environment,
        })
    }

    /// The sources that back up into `repository`.
    fn resources_of_repository(&self, repository: &str) -> Result<Vec<Resource<'a>>, ControlError> {
        self.ctx
            .repository_config(repository)
            .map_err(|e| ControlError::NotFound(e.message))?;
        Ok(self
            .ctx
            .config
            .sources
            .values()
            .filter(|s| s.repository == repository || s.copy_to.iter().any(|r| r == repository))
            .map(|s| Resource {
                source: &s.name,
                environment: &s.environment,
            })
            .collect())
    }

    async fn request(
        &self,
        p: &Principal,
        action: Action,
        resources: &[Resource<'_>],
    ) -> Result<Approval, ControlError> {
        let environments: BTreeSet<String> = resources.iter().map(|r| r.environment.to_string()).collect();
        let sources: BTreeSet<String> = resources.iter().map(|r| r.source.to_string()).collect();
        // The same request, still pending: point at it rather than open another.
        let now = Self::now();
        for open in approval::list(self.catalog, Some(ApprovalState::Pending), now).await? {
            if open.action == action && open.requester == p.name {
                return Ok(open);
            }
        }
        let control = &self.ctx.config.control;
        let new = NewRequest {
            required_approvals: control.approvals_needed(environments.iter().map(String::as_str)),
            action,
            requester: p,
            environments: environments.into_iter().collect(),
            sources: sources.into_iter().collect(),
            ttl: control.approval_ttl,
        };
        Ok(approval::request(self.catalog, new, now).await?)
    }

    pub async fn settings(&self) -> Result<Settings, ControlError> {
        Ok(Settings::load(self.catalog).await?)
    }

    /// Refuses to write to a repository removed through an approved request (backups, drills'
    /// evidence, copies). Reading it stays possible: restoring from it is recovery.
    pub async fn repository_in_use(&self, repository: &str) -> Result<(), ControlError> {
        if self.settings().await?.removed_repositories.contains(repository) {
            return Err(ControlError::Refused(format!(
                "refused: repository {repository} was removed through an approved request, so nothing is written \
                 to it any more; fix: point the source at another repository in the config, or ask for the \
                 removal to be undone (an admin runs `lifeboat enable repository:{repository}`)"
            )));
        }
        Ok(())
    }

    /// Snapshots the principal may see.
    pub async fn snapshots(&self, p: &Principal, filter: &SnapshotFilter) -> Result<Vec<SnapshotRecord>, ControlError> {
        p.check(Operation::Read, "list snapshots", &[])?;
        Ok(self
            .catalog
            .snapshots(filter)
            .await?
            .into_iter()
            .filter(|s| self.resource(&s.source).is_ok_and(|r| p.scope.covers(r)))
            .collect())
    }

    // ---- deleting a snapshot

    pub async fn delete_snapshot(
        &self,
        p: &Principal,
        id: &str,
        repository: Option<&str>,
    ) -> Result<Approval, ControlError> {
        let snapshot = self.find_snapshot(id, repository).await?;
        let r = self.resource(&snapshot.source)?;
        p.check(Operation::Delete, &format!("delete snapshot {}", snapshot.id), &[r])?;
        let action = Action::DeleteSnapshot {
            snapshot: snapshot.id.clone(),
            repository: snapshot.repository.clone(),
            source: snapshot.source.clone(),
        };
        self.request(p, action, &[r]).await
    }

    async fn find_snapshot(&self, id: &str, repository: Option<&str>) -> Result<SnapshotRecord, ControlError> {
        let not_found = || {
            ControlError::NotFound(format!(
                "no snapshot `{id}` in the catalog{}; fix: list them with `lifeboat snapshots` (or `catalog rebuild` if the catalog is behind)",
                repository.map(|r| format!(" in repository {r}")).unwrap_or_default()
            ))
        };
        let found = self
            .catalog
            .snapshot(id)
            .await
            .map_err(|e| ControlError::BadRequest(e.to_string()))?;
        let found = found.ok_or_else(not_found)?;
        match repository {
            None => Ok(found),
            Some(repo) if found.repository == repo => Ok(found),
            Some(repo) => self
                .catalog
                .snapshots(&SnapshotFilter {
                    source: Some(found.source.clone()),
                    repository: Some(repo.to_string()),
                    limit: None,
                })
                .await?
                .into_iter()
                .find(|s| s.id == found.id)
                .ok_or_else(not_found),
        }
    }

    // ---- prune

    /// Applies `policy` (or the source's retention): tombstones at once, and asks for approval of
    /// whatever it would delete.
    pub async fn prune(
        &self,
        p: &Principal,
        repository: &str,
        source: Option<&str>,
        policy: Option<RetentionPolicy>,
        tz: jiff::tz::TimeZone,
    ) -> Result<(PruneReport, Option<Approval>), ControlError> {
        let resources = match source {
            Some(s) => vec![self.resource(s)?],
            None => self.resources_of_repository(repository)?,
        };
        p.check(Operation::Prune, &format!("prune repository {repository}"), &resources)?;
        let policy = match policy {
            Some(p) => p,
            None => {
                let source = source.ok_or_else(|| {
                    ControlError::BadRequest("prune needs a source (its retention applies); fix: name one".into())
                })?;
                let configured = self.ctx.source(source)?.retention.clone();
                self.settings().await?.retention_of(source, configured.as_ref()).ok_or_else(|| {
                    ControlError::BadRequest(format!(
                        "source `{source}` has no retention policy; fix: set `retention:` in the config or PUT /api/v1/sources/{source}/retention"
                    ))
                })?
            }
        };
        let repo = self.ctx.repository(repository).await?;
        let report = ops::prune(
            PruneRequest {
                repo: &repo,
                repository,
                source,
                policy: &policy,
                tz,
                dry_run: false,
                locks: LockOptions::default(),
                catalog: Some(self.catalog),
                initiator: "lifeboat prune",
                deletions: Deletions::Withheld,
            },
            &crate::repo::NoProgress,
        )
        .await?;
        if report.awaiting_approval.is_empty() && report.chunks_awaiting_approval == 0 {
            return Ok((report, None));
        }
        let action = Action::Prune {
            repository: repository.to_string(),
            source: source.map(str::to_string),
            policy,
            delete_snapshots: report.awaiting_approval.clone(),
        };
        let approval = self.request(p, action, &resources).await?;
        Ok((report, Some(approval)))
    }

    // ---- restore

    pub async fn restore(
        &self,
        p: &Principal,
        spec: &RestoreSpec,
        progress: &dyn crate::repo::Progress,
    ) -> Result<Outcome<RestoreDone>, ControlError> {
        if let Some(jobs) = spec.jobs
            && !(1..=64).contains(&jobs)
        {
            return Err(ControlError::BadRequest(format!(
                "`jobs: {jobs}` is out of range; fix: use 1 to 64 (about the target's CPU count)"
            )));
        }
        // Before anything else reads it.
        if let RestoreTargetSpec::Dsn { dsn, .. } = &spec.target
            && engine::dsn_has_password(dsn)
        {
            return Err(ControlError::BadRequest(
                "the target DSN contains a password; fix: remove it and name an environment variable in \
                 `password_env` (CLI: --password-env)"
                    .into(),
            ));
        }
        // A snapshot named by id is found in the repositories (the truth); a point in time in the
        // catalog's list.
        let (repo_name, repo, manifest) = match &spec.snapshot {
            Some(id) => crate::cli::repo_cmds::locate(self.ctx, id, spec.repository.as_deref()).await?,
            None => {
                let s = self.restore_point(spec).await?;
                crate::cli::repo_cmds::locate(self.ctx, &s.id, Some(&s.repository)).await?
            }
        };
        let snapshot = crate::ops::snapshot_record(&repo_name, &manifest);
        let r = self.resource(&snapshot.source)?;
        let source_cfg = self.ctx.source(&snapshot.source)?;
        let done = |target: String| RestoreDone {
            snapshot: manifest.id.clone(),
            source: manifest.source.clone(),
            repository: repo_name.clone(),
            target,
            report: None,
            scratch: None,
        };
        // A DSN that is a configured source's is that source: its environment is what the request
        // touches, and its approvers must cover it.
        let effective = match &spec.target {
            RestoreTargetSpec::Dsn { dsn, .. } => {
                let url = url::Url::parse(dsn)
                    .map_err(|e| ControlError::BadRequest(format!("target dsn is not a URL ({e})")))?;
                match self
                    .ctx
                    .config
                    .sources
                    .values()
                    .find(|s| engine::same_database(&manifest.engine, &s.dsn, &url))
                {
                    Some(s) => RestoreTargetSpec::Source(s.name.clone()),
                    None => spec.target.clone(),
                }
            }
            other => other.clone(),
        };
        let mut target_resource = None;
        let (target, label) = match &effective {
            RestoreTargetSpec::Scratch {} => {
                p.check(Operation::RestoreScratch, "restore into scratch", &[r])?;
                let result = self.scratch_restore(&snapshot, &repo).await;
                if result.verdict != crate::drill::result::Verdict::Pass {
                    return Err(ControlError::Damage(format!(
                        "the scratch restore of snapshot {} did not pass: {}",
                        snapshot.id,
                        result.reason.clone().unwrap_or_default()
                    )));
                }
                let mut d = done("scratch".into());
                d.scratch = Some(result);
                return Ok(Outcome::Done(d));
            }
            RestoreTargetSpec::Source(name) => {
                target_resource = Some(self.resource(name)?);
                p.check(
                    Operation::RestoreTarget,
                    "restore over a source database",
                    &[r, self.resource(name)?],
                )?;
                (RestoreTarget::Source { name: name.clone() }, format!("source:{name}"))
            }
            RestoreTargetSpec::Dsn { dsn, password_env } => {
                p.check(Operation::RestoreTarget, "restore into a database", &[r])?;
                let url = url::Url::parse(dsn)
                    .map_err(|e| ControlError::BadRequest(format!("target dsn is not a URL ({e})")))?;
                let target = RestoreTarget::Dsn {
                    dsn: url.to_string(),
                    password_env: password_env.clone(),
                };
                (target, engine::redact(&url))
            }
        };
        let endpoint = self.target_endpoint(&target, source_cfg.pg_bin_dir.clone())?;
        let engine = engine::for_kind(&manifest.engine, endpoint)?;
        let state = engine.target_state().await?;
        let same_server = matches!(
            (&manifest.facts.system_identifier, &state.identity.system_identifier),
            (Some(a), Some(b)) if a == b && manifest.facts.database == state.identity.database
        );
        let why = match &target {
            RestoreTarget::Source { name } => Some(format!("it is the source `{name}` itself")),
            _ if same_server => Some(format!(
                "the target is the source database itself (system identifier {}, database {})",
                state.identity.system_identifier.as_deref().unwrap_or("?"),
                state.identity.database
            )),
            _ if !state.is_empty() => Some(format!(
                "the target database {} is not empty: it holds {} objects (e.g. {})",
                state.identity.database,
                state.existing_objects,
                state.examples.join(", ")
            )),
            _ => None,
        };
        if let Some(why) = why {
            // An approved request runs in the process of whoever approves it last (their shell,
            // or the daemon behind the API), which would read the variable there and send its
            // value to a server the requester chose.
            if let RestoreTarget::Dsn {
                password_env: Some(var),
                ..
            } = &target
            {
                return Err(ControlError::BadRequest(format!(
                    "{why}, so restoring over it needs approval, and an approved restore cannot take its \
                     password from `{var}`: the approver's process would read that variable; fix: drop \
                     --password-env and give the password to the account that will run it in its \
                     ~/.pgpass (or PGPASSFILE), or restore into a new, empty database, which needs no approval"
                )));
            }
            let action = Action::RestoreOver {
                snapshot: manifest.id.clone(),
                repository: repo_name.clone(),
                source: manifest.source.clone(),
                target,
                no_owner: spec.no_owner,
                why,
            };
            let touched: Vec<Resource<'_>> = std::iter::once(r).chain(target_resource).collect();
            return Ok(Outcome::Pending(Box::new(self.request(p, action, &touched).await?)));
        }
        let report = ops::restore(
            ops::RestoreRequest {
                manifest: &manifest,
                repo: &repo,
                target: engine.as_ref(),
                options: RestoreOptions {
                    jobs: spec.jobs.unwrap_or(2),
                    no_owner: spec.no_owner,
                    replace: false,
                },
                staging: spec.staging.clone(),
                staged: None,
            },
            progress,
        )
        .await?;
        let mut d = done(label);
        d.report = Some(report);
        Ok(Outcome::Done(d))
    }

    /// How to reach a restore's target: a source's database with its credentials, or a DSN with the
    /// password from `password_env` (the CLI's) and the snapshot's source's `bin_dir`.
    fn target_endpoint(
        &self,
        target: &RestoreTarget,
        bin_dir: Option<std::path::PathBuf>,
    ) -> Result<Endpoint, ControlError> {
        Ok(match target {
            RestoreTarget::Source { name } => self.ctx.endpoint_for_source(self.ctx.source(name)?)?,
            RestoreTarget::Dsn { dsn, password_env } => Endpoint {
                dsn: url::Url::parse(dsn)
                    .map_err(|e| ControlError::BadRequest(format!("target dsn is not a URL ({e})")))?,
                password: password_env
                    .as_ref()
                    .map(|v| crate::cli::context::resolve(&crate::config::SecretRef::Env(v.clone())))
                    .transpose()?,
                bin_dir,
            },
        })
    }

    async fn restore_point(&self, spec: &RestoreSpec) -> Result<SnapshotRecord, ControlError> {
        match &spec.source {
            Some(source) => {
                let repository = match &spec.repository {
                    Some(r) => r.clone(),
                    None => self.ctx.source(source)?.repository.clone(),
                };
                let all = self
                    .catalog
                    .snapshots(&SnapshotFilter {
                        source: Some(source.clone()),
                        repository: Some(repository),
                        limit: None,
                    })
                    .await?;
                all.into_iter()
                    .find(|s| spec.at.is_none_or(|at| s.started_at <= at))
                    .ok_or_else(|| {
                        ControlError::NotFound(format!(
                            "no snapshot of `{source}`{} in the catalog; fix: choose a later time, or take a backup",
                            spec.at.map(|a| format!(" taken at or before {a}")).unwrap_or_default()
                        ))
                    })
            }
            None => Err(ControlError::BadRequest(
                "say what to restore: `snapshot`, or `source` (and optionally `at`)".into(),
            )),
        }
    }

    /// Restores into a throwaway cluster, checks row counts against the backup, removes it: a drill
    /// of one snapshot, not recorded as drill history.
    async fn scratch_restore(
        &self,
        snapshot: &SnapshotRecord,
        repo: &crate::repo::Repository,
    ) -> crate::drill::result::DrillResult {
        use crate::drill::spec::{Check, DrillSpec, RestorePoint, ScratchSpec, Sla};
        let spec = DrillSpec {
            name: "restore-to-scratch".into(),
            file: std::path::PathBuf::from("(api)"),
            source: snapshot.source.clone(),
            schedule: None,
            restore_point: RestorePoint::At(snapshot.started_at),
            scratch: ScratchSpec::Ephemeral,
            sla: Sla { rto: None, rpo: None },
            checks: vec![Check::Fingerprint],
            alerts: Vec::new(),
        };
        let source = self
            .ctx
            .config
            .sources
            .get(&snapshot.source)
            .expect("checked by resource()");
        let inputs = crate::drill::run::DrillInputs {
            spec: &spec,
            source,
            repository_name: &snapshot.repository,
            repo,
            negative_control: false,
            scratch_parent: None,
        };
        crate::drill::run::run(inputs, &crate::repo::NoProgress).await
    }

    // ---- settings

    /// Brings the config file's `retention:` under the same rule as the API: the retention in force
    /// lives in the catalog. A config that keeps at least as much by every rule is adopted at once;
    /// one that keeps less is not: the retention in force stays, and a request to lower it is made
    /// (by `config:HOST`, once while it is pending), so that editing the file cannot shorten history
    /// without a human's approval. Returns the requests made or still pending.
    pub async fn reconcile_config_retention(&self) -> Result<Vec<Approval>, ControlError> {
        let settings = self.settings().await?;
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown-host".into());
        let mut scope = Scope::everything();
        scope.operations.remove(&Operation::Approve);
        let config = Principal {
            name: format!("config:{host}"),
            token_id: None,
            scope,
            created_by: None,
        };
        let mut requests = Vec::new();
        for source in self.ctx.config.sources.values() {
            let change = || Change {
                by: format!("config file {}", self.ctx.config.path.display()),
                at: Self::now(),
                approval: None,
            };
            match (settings.retention.get(&source.name), &source.retention) {
                (None, Some(configured)) => {
                    settings::set_retention(self.catalog, &source.name, configured, change()).await?;
                }
                (Some(in_force), Some(configured)) if in_force != configured => {
                    let lowered = in_force.lowered_by(configured);
                    if lowered.is_empty() {
                        settings::set_retention(self.catalog, &source.name, configured, change()).await?;
                    } else {
                        let r = self.resource(&source.name)?;
                        let action = Action::LowerRetention {
                            source: source.name.clone(),
                            from: Some(in_force.clone()),
                            to: configured.clone(),
                            lowered,
                        };
                        let a = self.request(&config, action, &[r]).await?;
                        tracing::warn!(
                            "the config lowers the retention of {} to `{}`; `{}` stays in force until request {} is approved",
                            source.name,
                            configured.describe(),
                            in_force.describe(),
                            a.id
                        );
                        requests.push(a);
                    }
                }
                // No `retention:` in the file keeps everything: nothing is lowered, and what is in
                // force (set through the API, or adopted earlier) stays.
                _ => {}
            }
        }
        Ok(requests)
    }

    pub async fn set_retention(
        &self,
        p: &Principal,
        source: &str,
        policy: RetentionPolicy,
    ) -> Result<Outcome<RetentionPolicy>, ControlError> {
        let r = self.resource(source)?;
        p.check(Operation::Admin, &format!("change the retention of {source}"), &[r])?;
        if policy.is_empty() {
            return Err(ControlError::BadRequest(format!(
                "the policy has no rule; fix: {}",
                ops::HOW_TO_SET_A_POLICY
            )));
        }
        let configured = self.ctx.source(source)?.retention.clone();
        let from = self.settings().await?.retention_of(source, configured.as_ref());
        let lowered = match &from {
            Some(from) => from.lowered_by(&policy),
            None => vec!["no policy (every snapshot kept) -> a policy that forgets".into()],
        };
        if lowered.is_empty() {
            let change = Change {
                by: p.name.clone(),
                at: Self::now(),
                approval: None,
            };
            settings::set_retention(self.catalog, source, &policy, change).await?;
            return Ok(Outcome::Done(policy));
        }
        let action = Action::LowerRetention {
            source: source.to_string(),
            from,
            to: policy,
            lowered,
        };
        Ok(Outcome::Pending(Box::new(self.request(p, action, &[r]).await?)))
    }

    /// What a disable target touches; an error for a target the config does not have.
    fn target_resources(
        &self,
        target: &str,
        drills: &[crate::drill::spec::DrillSpec],
    ) -> Result<Vec<Resource<'a>>, ControlError> {
        let unknown = |what: &str| {
            ControlError::NotFound(format!(
                "unknown {what} in `{target}`; fix: write drill:NAME, job:KIND:TARGET (e.g. job:backup:orders), route:NAME or repository:NAME"
            ))
        };
        if let Some(name) = target.strip_prefix("drill:") {
            let d = drills.iter().find(|d| d.name == name).ok_or_else(|| unknown("drill"))?;
            return Ok(vec![self.resource(&d.source)?]);
        }
        if let Some(job) = target.strip_prefix("job:") {
            let (kind, what) = job.split_once(':').ok_or_else(|| unknown("job"))?;
            return match kind {
                "backup" | "verify" | "prune" | "copy" => Ok(vec![self.resource(what)?]),
                "drill" => self.target_resources(&format!("drill:{what}"), drills),
                "fate" => Ok(Vec::new()),
                _ => Err(unknown("job kind")),
            };
        }
        if let Some(repository) = target.strip_prefix("repository:") {
            return self.resources_of_repository(repository);
        }
        if let Some(route) = target.strip_prefix("route:") {
            if !self.ctx.config.alerts.routes.contains_key(route) {
                return Err(unknown("alert route"));
            }
            return Ok(Vec::new());
        }
        Err(unknown("target"))
    }

    pub async fn disable(
        &self,
        p: &Principal,
        target: &str,
        drills: &[crate::drill::spec::DrillSpec],
    ) -> Result<Approval, ControlError> {
        let resources = self.target_resources(target, drills)?;
        p.check(Operation::Admin, &format!("disable {target}"), &resources)?;
        let action = match target.strip_prefix("repository:") {
            Some(repository) => Action::RemoveRepository {
                repository: repository.to_string(),
            },
            None => Action::Disable {
                target: target.to_string(),
            },
        };
        self.request(p, action, &resources).await
    }

    pub async fn enable(
        &self,
        p: &Principal,
        target: &str,
        drills: &[crate::drill::spec::DrillSpec],
    ) -> Result<(), ControlError> {
        let resources = self.target_resources(target, drills)?;
        p.check(Operation::Admin, &format!("enable {target}"), &resources)?;
        let key = match target.strip_prefix("repository:") {
            Some(repository) => settings::removed_key(repository),
            None => settings::disabled_key(target),
        };
        settings::set_flag(self.catalog, &key, None).await?;
        Ok(())
    }

    pub async fn remove_repository(&self, p: &Principal, repository: &str) -> Result<Approval, ControlError> {
        let resources = self.resources_of_repository(repository)?;
        p.check(Operation::Admin, &format!("remove repository {repository}"), &resources)?;
        let action = Action::RemoveRepository {
            repository: repository.to_string(),
        };
        self.request(p, action, &resources).await
    }

    // ---- approvals

    /// Requests the principal may see (`read` or `approve`), newest first.
    pub async fn approvals(&self, p: &Principal, state: Option<ApprovalState>) -> Result<Vec<Approval>, ControlError> {
        if !p.scope.has(Operation::Approve) {
            p.check(Operation::Read, "list approval requests", &[])?;
        }
        Ok(approval::list(self.catalog, state, Self::now())
            .await?
            .into_iter()
            .filter(|a| {
                (a.sources.is_empty() && p.scope.is_global())
                    || (!a.sources.is_empty() && a.sources.iter().all(|s| p.scope.covers_source(s)))
                        && a.environments.iter().all(|e| p.scope.covers_environment(e))
                    || a.requester == p.name
            })
            .collect())
    }

    /// Approves; when it is the last approval needed, runs the request (exactly once) and returns it
    /// with its outcome.
    pub async fn approve(&self, p: &Principal, id: &str) -> Result<Approval, ControlError> {
        // Whoever lacks `approve` learns nothing about the request, not even that it exists.
        if !p.scope.has(Operation::Approve) {
            p.check(Operation::Approve, &format!("approve request {id}"), &[])?;
        }
        let mut a = approval::approve(self.catalog, id, p, Self::now()).await?;
        if a.state == ApprovalState::Approved && approval::start(self.catalog, &mut a).await? {
            // Nothing destructive runs unrecorded: the log says what is about to happen first, and
            // a log that cannot be written stops it.
            let about_to = super::AuditEvent {
                at: Self::now(),
                principal: p.name.clone(),
                action: format!("run approved request {}: {}", a.id, a.summary),
                operation: Some(a.action.operation()),
                environment: a.environments.first().cloned(),
                source: a.sources.first().cloned(),
                decision: super::Decision::Approved,
                outcome: format!(
                    "running; approved by {}",
                    a.approvals.iter().map(|x| x.by.as_str()).collect::<Vec<_>>().join(", ")
                ),
                approval: Some(a.id.clone()),
            };
            let result = match super::audit::append(self.catalog, &about_to).await {
                Ok(_) => self.execute(&a).await,
                Err(e) => Err(format!(
                    "not run: the audit log could not record it ({e}); fix: repair the catalog, then ask for it again"
                )),
            };
            approval::finish(self.catalog, &mut a, result).await?;
        }
        Ok(a)
    }

    pub async fn deny(&self, p: &Principal, id: &str, reason: Option<String>) -> Result<Approval, ControlError> {
        if !p.scope.has(Operation::Approve) {
            p.check(Operation::Approve, &format!("deny request {id}"), &[])?;
        }
        Ok(approval::deny(self.catalog, id, p, reason, Self::now()).await?)
    }

    /// Runs an approved request. Ok: what it did (and its report, if any); Err: why it failed.
    async fn execute(&self, a: &Approval) -> Result<(String, Option<serde_json::Value>), String> {
        // Only a prune has a report worth keeping.
        match &a.action {
            Action::Prune { .. } => self.execute_prune(a).await,
            _ => self.execute_simple(a).await.map(|s| (s, None)),
        }
    }

    async fn execute_prune(&self, a: &Approval) -> Result<(String, Option<serde_json::Value>), String> {
        let Action::Prune {
            repository,
            source,
            policy,
            delete_snapshots,
        } = &a.action
        else {
            unreachable!("called for prune requests")
        };
        let repo = self.ctx.repository(repository).await.map_err(|e| e.message)?;
        let tz = self.ctx.config.daemon.zone();
        let report = ops::prune(
            PruneRequest {
                repo: &repo,
                repository,
                source: source.as_deref(),
                policy,
                tz,
                dry_run: false,
                locks: LockOptions::default(),
                catalog: Some(self.catalog),
                initiator: &format!("approved request {}", a.id),
                deletions: Deletions::Approved(delete_snapshots.iter().cloned().collect()),
            },
            &crate::repo::NoProgress,
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok((
            format!(
                "deleted {} snapshot(s) and {} chunk(s) ({} bytes) from repository {repository}",
                report.snapshots_deleted, report.chunks_deleted, report.bytes_freed
            ),
            serde_json::to_value(&report).ok(),
        ))
    }

    async fn execute_simple(&self, a: &Approval) -> Result<String, String> {
        let change = || Change {
            by: a.approvals.iter().map(|x| x.by.as_str()).collect::<Vec<_>>().join(", "),
            at: Self::now(),
            approval: Some(a.id.clone()),
        };
        let fail = |e: ControlError| e.to_string();
        match &a.action {
            Action::DeleteSnapshot {
                snapshot,
                repository,
                source,
            } => {
                let repo = self.ctx.repository(repository).await.map_err(|e| e.message)?;
                ops::delete_snapshot(&repo, repository, source, snapshot, Some(self.catalog))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(format!(
                    "deleted snapshot {snapshot} of {source} from repository {repository}"
                ))
            }
            Action::Prune { .. } => unreachable!("prune requests run in execute_prune"),
            Action::RestoreOver {
                snapshot,
                repository,
                source,
                target,
                no_owner,
                ..
            } => {
                let (_, repo, manifest) = crate::cli::repo_cmds::locate(self.ctx, snapshot, Some(repository))
                    .await
                    .map_err(|e| e.message)?;
                // Requests stored before such requests were refused (see `restore`) must not read
                // the approver's environment either.
                if let RestoreTarget::Dsn {
                    password_env: Some(var),
                    ..
                } = target
                {
                    return Err(format!(
                        "this request takes the target's password from `{var}`, which an approved restore \
                         may not read; deny it and request it again without --password-env"
                    ));
                }
                let bin_dir = self.ctx.source(source).ok().and_then(|s| s.pg_bin_dir.clone());
                let endpoint = self.target_endpoint(target, bin_dir).map_err(|e| e.to_string())?;
                let engine = engine::for_kind(&manifest.engine, endpoint).map_err(|e| e.to_string())?;
                let report = ops::restore(
                    ops::RestoreRequest {
                        manifest: &manifest,
                        repo: &repo,
                        target: engine.as_ref(),
                        options: RestoreOptions {
                            jobs: 2,
                            no_owner: *no_owner,
                            replace: true,
                        },
                        staging: ops::Staging::default(),
                        staged: None,
                    },
                    &crate::repo::NoProgress,
                )
                .await
                .map_err(|e| e.to_string())?;
                Ok(format!(
                    "restored snapshot {snapshot} over {}: {} tables, {} rows, row counts equal the backup's",
                    report.database, report.tables, report.rows
                ))
            }
            Action::LowerRetention { source, to, .. } => {
                settings::set_retention(self.catalog, source, to, change())
                    .await
                    .map_err(|e| fail(e.into()))?;
                Ok(format!("source {source} now keeps `{}`", to.describe()))
            }
            Action::Disable { target } => {
                settings::set_flag(self.catalog, &settings::disabled_key(target), Some(change()))
                    .await
                    .map_err(|e| fail(e.into()))?;
                Ok(format!("{target} is disabled"))
            }
            Action::RemoveRepository { repository } => {
                settings::set_flag(self.catalog, &settings::removed_key(repository), Some(change()))
                    .await
                    .map_err(|e| fail(e.into()))?;
                Ok(format!(
                    "repository {repository} is no longer used; its data is untouched"
                ))
            }
        }
    }

    // ---- tokens

    /// Managing tokens needs `admin`; `grants` is the scope of a token being created. A token grants
    /// only operations its creator holds. The local operator may manage tokens only while no token
    /// exists at all, to create the first one, which must be a global admin token: from then on tokens are managed with
    /// an admin token, so that a shell on the daemon's host (or an agent given one) cannot mint itself
    /// a token to approve its own requests.
    async fn token_admin(&self, p: &Principal, what: &str, grants: Option<&Scope>) -> Result<(), ControlError> {
        p.check(Operation::Admin, what, &[])?;
        let denied = |why: &str, fix: &str| {
            ControlError::Forbidden(Denied {
                principal: p.name.clone(),
                what: what.to_string(),
                why: why.into(),
                fix: fix.into(),
            })
        };
        if p.token_id.is_some() {
            // A token grants only what its creator holds: an admin cannot mint an `approve`
            // token (for itself, under another name) unless it may approve itself.
            if let Some(scope) = grants
                && let Some(op) = scope.operations.iter().find(|op| !p.scope.has(**op))
            {
                return Err(denied(
                    &format!("a token may grant only operations its creator holds, and it lacks `{op}`"),
                    "ask someone who holds that operation to create the token",
                ));
            }
            return Ok(());
        }
        if !token::list(self.catalog).await?.is_empty() {
            return Err(denied(
                "tokens exist, so they are managed with an admin token",
                "set LIFEBOAT_TOKEN to an admin token",
            ));
        }
        match grants {
            Some(scope) if !(scope.has(Operation::Admin) && scope.is_global()) => Err(denied(
                "the first token must be an admin token for every environment and source",
                "create it with `--ops admin` (and the default --env and --sources), then create the others with it",
            )),
            _ => Ok(()),
        }
    }

    pub async fn create_token(
        &self,
        p: &Principal,
        name: &str,
        scope: Scope,
        expires: Option<Duration>,
    ) -> Result<(TokenInfo, String), ControlError> {
        self.token_admin(p, "create a token", Some(&scope)).await?;
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
        if !valid_name {
            return Err(ControlError::BadRequest(format!(
                "token name `{name}` is not valid; fix: use 1 to 64 letters, digits, `-`, `_`, `.` or `@` (e.g. a person's login)"
            )));
        }
        if scope.environments.is_empty() || scope.sources.is_empty() {
            return Err(ControlError::BadRequest(
                "a token needs at least one environment and one source pattern (`*` for all)".into(),
            ));
        }
        let now = Self::now();
        // Names are people (or services): one active token per name, so that an approval by
        // `token:bob` is bob's.
        if token::list(self.catalog)
            .await?
            .iter()
            .any(|t| t.name == name && t.is_active(now))
        {
            return Err(ControlError::Conflict(format!(
                "an active token named `{name}` exists; fix: revoke it first (`lifeboat token revoke ID`), or choose another name"
            )));
        }
        let expires_at = expires
            .map(|d| {
                jiff::SignedDuration::try_from(d)
                    .ok()
                    .and_then(|d| now.checked_add(d).ok())
                    .ok_or_else(|| ControlError::BadRequest("the expiry is too far away".into()))
            })
            .transpose()?;
        let (id, secret) = token::mint();
        let info = TokenInfo {
            id,
            name: name.to_string(),
            scope,
            created_at: now,
            created_by: p.name.clone(),
            expires_at,
            revoked_at: None,
            revoked_by: None,
        };
        token::store(self.catalog, &info, &secret).await?;
        Ok((info, secret))
    }

    pub async fn tokens(&self, p: &Principal) -> Result<Vec<TokenInfo>, ControlError> {
        self.token_admin(p, "list tokens", None).await?;
        Ok(token::list(self.catalog).await?)
    }

    pub async fn revoke_token(&self, p: &Principal, id: &str) -> Result<TokenInfo, ControlError> {
        self.token_admin(p, "revoke a token", None).await?;
        token::revoke(self.catalog, id, &p.name, Self::now())
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("no token {id}; fix: `lifeboat token list` shows them")))
    }

    // ---- audit

    /// Entries the principal may see: all for a global scope, else those about its sources.
    pub async fn audit(&self, p: &Principal, after: i64, limit: u32) -> Result<Vec<super::AuditEntry>, ControlError> {
        p.check(Operation::Read, "read the audit log", &[])?;
        let entries = super::audit::entries(self.catalog, after, limit).await?;
        if p.scope.is_global() {
            return Ok(entries);
        }
        Ok(entries
            .into_iter()
            .filter(|e| {
                e.event.principal == p.name
                    || e.event
                        .source
                        .as_deref()
                        .is_some_and(|s| self.resource(s).is_ok_and(|r| p.scope.covers(r)))
            })
            .collect())
    }
}
