//! The control plane from the command line: tokens, approvals, the audit log, and the principal
//! every command acts as (`LIFEBOAT_TOKEN`'s, else the local operator's).

use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;

use super::context::Context;
use super::render::{self, Output};
use super::{CliError, Exit};
use crate::catalog::Catalog;
use crate::control::{
    Approval, ApprovalState, AuditEvent, ControlError, ControlPlane, Decision, Operation, Principal, Scope, audit,
};
use crate::repo::retention::parse_duration;

/// The variable holding the token the CLI acts with.
pub const TOKEN_ENV: &str = "LIFEBOAT_TOKEN";

impl From<ControlError> for CliError {
    fn from(e: ControlError) -> Self {
        CliError::new(e.exit(), e.to_string())
    }
}

/// Who this command acts as: the holder of `LIFEBOAT_TOKEN`, or `local:USER`.
pub async fn principal(plane: &ControlPlane<'_>) -> Result<Principal, CliError> {
    match std::env::var(TOKEN_ENV) {
        Ok(token) if !token.trim().is_empty() => {
            note(Decision::Unauthenticated, None);
            let p = plane.authenticate(&token).await?;
            note(Decision::Allowed, None);
            Ok(p)
        }
        _ => Ok(plane.local_principal().await?),
    }
}

/// Opens the catalog and finds the principal: what every command that checks permissions needs.
pub async fn open(ctx: &Context) -> Result<(Box<dyn Catalog>, Principal), CliError> {
    let catalog = ctx.catalog().await?;
    let p = principal(&ControlPlane::new(ctx, catalog.as_ref())).await?;
    Ok((catalog, p))
}

/// Checks that the principal may do `op` on `sources` (none: not about one source).
pub async fn require(ctx: &Context, op: Operation, what: &str, sources: &[&str]) -> Result<(), CliError> {
    // The local operator may do everything but approve: no need to open the catalog to know that.
    let has_token = std::env::var(TOKEN_ENV).is_ok_and(|t| !t.trim().is_empty());
    if !has_token && op != Operation::Approve {
        return Ok(());
    }
    let (catalog, p) = open(ctx).await?;
    let plane = ControlPlane::new(ctx, catalog.as_ref());
    let resources = sources
        .iter()
        .map(|s| plane.resource(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut checked = p.check(op, what, &resources);
    // The CLI's listings show every source; the API's show only those in the token's scope.
    if checked.is_ok() && op == Operation::Read && resources.is_empty() && !p.scope.is_global() {
        checked = Err(crate::control::principal::Denied {
            principal: p.name.clone(),
            what: what.to_string(),
            why: "the command shows every source, and its scope is limited to some environments or sources".into(),
            fix: "use the API (GET /api/v1/...), which shows only what the token may see, or a token for every environment and source".into(),
        });
    }
    catalog.close().await;
    if let Err(d) = checked {
        note(Decision::Denied, None);
        return Err(ControlError::Forbidden(d).into());
    }
    Ok(())
}

/// Refuses to write to a repository removed through an approved request. Without a catalog there
/// is no record of a removal, and the command goes on.
pub async fn in_use(ctx: &Context, repository: &str) -> Result<(), CliError> {
    let Ok(catalog) = ctx.catalog().await else {
        return Ok(());
    };
    let result = ControlPlane::new(ctx, catalog.as_ref())
        .repository_in_use(repository)
        .await;
    catalog.close().await;
    Ok(result?)
}

// ---- the audit entry of each command

/// What a command decided, for its audit entry; commands set it where it is not plain `allowed`.
static DECISION: Mutex<Option<(Decision, Option<String>)>> = Mutex::new(None);

pub fn note(decision: Decision, approval: Option<String>) {
    *DECISION.lock().unwrap_or_else(|p| p.into_inner()) = Some((decision, approval));
}

/// Records one audit entry for this command: who, the command line (URLs' passwords removed),
/// what was decided and how it ended. A catalog that cannot record is a warning.
pub async fn record(ctx: &Context, result: &Result<Exit, CliError>) {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .map(|a| {
            if a.contains("://") {
                crate::catalog::redact_url(&a)
            } else {
                a
            }
        })
        .collect();
    let Ok(catalog) = ctx.catalog().await else {
        tracing::warn!("the audit log could not be written: catalog unavailable");
        return;
    };
    let plane = ControlPlane::new(ctx, catalog.as_ref());
    let principal = match std::env::var(TOKEN_ENV) {
        Ok(t) if !t.trim().is_empty() => match plane.authenticate(&t).await {
            Ok(p) => p.name,
            Err(_) => "unauthenticated".to_string(),
        },
        _ => match plane.local_principal().await {
            Ok(p) => p.name,
            Err(_) => "local".to_string(),
        },
    };
    let noted = DECISION.lock().unwrap_or_else(|p| p.into_inner()).take();
    let (decision, approval) = match (noted, result) {
        (Some((d, a)), Ok(_)) => (d, a),
        (Some((d @ (Decision::Denied | Decision::Unauthenticated), a)), Err(_)) => (d, a),
        (Some((Decision::Pending, a)), Err(_)) => (Decision::Pending, a),
        (_, Err(e)) if e.exit == Exit::Denied => (Decision::Denied, None),
        _ => (Decision::Allowed, None),
    };
    let event = AuditEvent {
        at: jiff::Timestamp::now(),
        principal,
        action: format!("cli: {}", args.join(" ")),
        operation: None,
        environment: None,
        source: None,
        decision,
        outcome: match result {
            Ok(code) => format!("exit {}", *code as u8),
            Err(e) => format!("exit {}: {}", e.exit as u8, e.message),
        },
        approval,
    };
    if let Err(e) = audit::append(catalog.as_ref(), &event).await {
        tracing::warn!("the audit log could not be written: {e}");
    }
    catalog.close().await;
}

/// Copies new audit entries into every repository in use (best effort: the daemon does it too).
pub async fn mirror_audit(ctx: &Context, catalog: &dyn Catalog) {
    for name in ctx.config.repositories.keys() {
        let Ok(repo) = ctx.repository(name).await else { continue };
        if let Err(e) = audit::mirror(catalog, &repo).await {
            tracing::warn!("the audit log could not be copied into repository {name}: {e}");
        }
    }
}

// ---- tokens

#[derive(clap::Subcommand, Debug)]
pub enum TokenAction {
    /// Create a token and print its secret, once.
    #[command(
        after_help = "Examples:\n  lifeboat token create --name alice --ops read,approve --env production\n  \
lifeboat token create --name ci-bot --ops read,drill --env staging --sources 'orders*' --expires 30d\n\n\
Operations: read, backup, drill, restore:scratch, restore:target, prune, delete, approve, admin (admin includes \
all but approve). Destructive actions become approval requests whatever the token; `approve` lets its holder \
approve other principals' requests, never their own. The catalog keeps only the token's SHA-256. While no token \
exists, the local operator may create the first one, which must be a global admin token (bootstrap); afterwards \
managing tokens needs LIFEBOAT_TOKEN with admin."
    )]
    Create {
        /// Who holds it: a person's login or a service's name (the audit log and approvals show it).
        #[arg(long)]
        name: String,
        /// Comma-separated operations.
        #[arg(long, value_name = "OPS")]
        ops: String,
        /// Environments it reaches (comma-separated; `*` for all).
        #[arg(long, value_name = "ENVS", default_value = "*")]
        env: String,
        /// Source name patterns it reaches (comma-separated; `*` any run of characters).
        #[arg(long, value_name = "PATTERNS", default_value = "*")]
        sources: String,
        /// Lifetime, e.g. 30d or 12h (default: no expiry).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        expires: Option<Duration>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token at once.
    Revoke {
        /// The token's id (`token list` shows it).
        id: String,
    },
}

fn split(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

pub async fn token(ctx: &Context, action: TokenAction, out: &Output) -> Result<Exit, CliError> {
    let (catalog, p) = open(ctx).await?;
    let plane = ControlPlane::new(ctx, catalog.as_ref());
    match action {
        TokenAction::Create {
            name,
            ops,
            env,
            sources,
            expires,
        } => {
            let scope = Scope {
                operations: Operation::parse_list(&ops).map_err(CliError::usage)?,
                environments: split(&env),
                sources: split(&sources),
            };
            let (info, secret) = plane.create_token(&p, &name, scope, expires).await?;
            if out.json {
                out.json(&json!({"token": info, "secret": secret}));
            } else {
                println!(
                    "token {} for {} created; its secret, shown only now:",
                    info.id, info.name
                );
                println!("{secret}");
                println!(
                    "  operations {}; environments {}; sources {}; expires {}",
                    info.scope.operations_text(),
                    info.scope.environments.join(","),
                    info.scope.sources.join(","),
                    info.expires_at.map_or("never".into(), |e| e.to_string())
                );
            }
        }
        TokenAction::List => {
            let list = plane.tokens(&p).await?;
            if out.json {
                out.json(&list);
            } else {
                let now = jiff::Timestamp::now();
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            t.name.clone(),
                            t.scope.operations_text(),
                            t.scope.environments.join(","),
                            t.scope.sources.join(","),
                            if t.revoked_at.is_some() {
                                "revoked".into()
                            } else if !t.is_active(now) {
                                "expired".into()
                            } else {
                                t.expires_at.map_or("active".into(), |e| format!("until {e}"))
                            },
                        ]
                    })
                    .collect();
                render::table(&["ID", "NAME", "OPERATIONS", "ENVIRONMENTS", "SOURCES", "STATE"], &rows);
            }
        }
        TokenAction::Revoke { id } => {
            let info = plane.revoke_token(&p, &id).await?;
            if out.json {
                out.json(&info);
            } else {
                println!("token {} ({}) is revoked", info.id, info.name);
            }
        }
    }
    catalog.close().await;
    Ok(Exit::Ok)
}

// ---- approvals

pub async fn approvals(ctx: &Context, state: Option<String>, out: &Output) -> Result<Exit, CliError> {
    let state = state
        .map(|s| {
            ApprovalState::parse(&s).ok_or_else(|| {
                CliError::usage(format!(
                    "unknown state `{s}`; fix: use pending, approved, denied, expired, running, done or failed"
                ))
            })
        })
        .transpose()?;
    let (catalog, p) = open(ctx).await?;
    let list = ControlPlane::new(ctx, catalog.as_ref()).approvals(&p, state).await?;
    catalog.close().await;
    if out.json {
        out.json(&list);
        return Ok(Exit::Ok);
    }
    if list.is_empty() {
        println!("no approval requests");
        return Ok(Exit::Ok);
    }
    for a in &list {
        print_approval(a);
    }
    Ok(Exit::Ok)
}

fn print_approval(a: &Approval) {
    println!(
        "{}  {}  requested by {} at {}, expires {}",
        a.id,
        a.state.as_str(),
        a.requester,
        a.created_at.strftime("%Y-%m-%d %H:%M:%SZ"),
        a.expires_at.strftime("%Y-%m-%d %H:%M:%SZ")
    );
    println!("  {}", a.summary);
    println!(
        "  approvals {}/{}{}",
        a.approvals.len(),
        a.required_approvals,
        if a.approvals.is_empty() {
            String::new()
        } else {
            format!(
                ": {}",
                a.approvals.iter().map(|x| x.by.as_str()).collect::<Vec<_>>().join(", ")
            )
        }
    );
    if let Some(by) = &a.denied_by {
        println!(
            "  denied by {by}{}",
            a.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
        );
    }
    if let Some(o) = &a.outcome {
        println!("  outcome: {o}");
    }
}

pub async fn approve(ctx: &Context, id: &str, out: &Output) -> Result<Exit, CliError> {
    let (catalog, p) = open(ctx).await?;
    let plane = ControlPlane::new(ctx, catalog.as_ref());
    let result = plane.approve(&p, id).await;
    if result.is_ok() {
        note(Decision::Approved, Some(id.to_string()));
        mirror_audit(ctx, catalog.as_ref()).await;
    }
    catalog.close().await;
    let a = result?;
    if out.json {
        out.json(&a);
    } else {
        print_approval(&a);
    }
    Ok(match a.state {
        ApprovalState::Failed => Exit::Failed,
        _ => Exit::Ok,
    })
}

pub async fn deny(ctx: &Context, id: &str, reason: Option<String>, out: &Output) -> Result<Exit, CliError> {
    let (catalog, p) = open(ctx).await?;
    let result = ControlPlane::new(ctx, catalog.as_ref()).deny(&p, id, reason).await;
    if result.is_ok() {
        note(Decision::DeniedRequest, Some(id.to_string()));
    }
    catalog.close().await;
    let a = result?;
    if out.json {
        out.json(&a);
    } else {
        print_approval(&a);
    }
    Ok(Exit::Ok)
}

/// A request was made instead of acting: say so, and how it goes on. Exit 3.
pub fn pending(a: &Approval, out: &Output) -> Result<Exit, CliError> {
    note(Decision::Pending, Some(a.id.clone()));
    if out.json {
        out.json(&json!({"approval": a}));
    }
    Err(CliError::new(
        Exit::Refused,
        format!(
            "this needs approval; nothing was done yet. Request {} asks to {}. It needs {} approval(s) from \
             principal(s) other than {} before {}; fix: ask someone with `approve` to run `lifeboat approve {}`",
            a.id,
            a.summary,
            a.required_approvals,
            a.requester,
            a.expires_at.strftime("%Y-%m-%d %H:%M:%SZ"),
            a.id
        ),
    ))
}

pub async fn delete_snapshot(
    ctx: &Context,
    snapshot: &str,
    repository: Option<&str>,
    out: &Output,
) -> Result<Exit, CliError> {
    let (catalog, p) = open(ctx).await?;
    let result = ControlPlane::new(ctx, catalog.as_ref())
        .delete_snapshot(&p, snapshot, repository)
        .await;
    catalog.close().await;
    pending(&result?, out)
}

pub async fn disable(ctx: &Context, target: &str, enable: bool, out: &Output) -> Result<Exit, CliError> {
    let drills = super::drill_cmds::load_specs(ctx).unwrap_or_default();
    let (catalog, p) = open(ctx).await?;
    let plane = ControlPlane::new(ctx, catalog.as_ref());
    let result = if enable {
        plane.enable(&p, target, &drills).await.map(|()| None)
    } else {
        plane.disable(&p, target, &drills).await.map(Some)
    };
    catalog.close().await;
    match result? {
        Some(a) => pending(&a, out),
        None => {
            if out.json {
                out.json(&json!({"target": target, "enabled": true}));
            } else {
                println!("{target} is enabled");
            }
            Ok(Exit::Ok)
        }
    }
}

// ---- audit

#[derive(clap::Subcommand, Debug)]
pub enum AuditAction {
    /// Check the hash chain and compare it with the copies in the repositories. Exit 4 names the
    /// first entry that was edited, removed or moved.
    Verify,
}

pub async fn audit_list(ctx: &Context, after: i64, limit: u32, out: &Output) -> Result<Exit, CliError> {
    let (catalog, p) = open(ctx).await?;
    let entries = ControlPlane::new(ctx, catalog.as_ref()).audit(&p, after, limit).await;
    catalog.close().await;
    let entries = entries?;
    if out.json {
        out.json(&entries);
        return Ok(Exit::Ok);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                e.event.at.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
                e.event.principal.clone(),
                serde_json::to_value(e.event.decision)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                e.event.action.clone(),
                e.event.outcome.clone(),
            ]
        })
        .collect();
    render::table(&["SEQ", "AT", "PRINCIPAL", "DECISION", "ACTION", "OUTCOME"], &rows);
    Ok(Exit::Ok)
}

pub async fn audit_verify(ctx: &Context, out: &Output) -> Result<Exit, CliError> {
    let (catalog, p) = open(ctx).await?;
    if let Err(d) = p.check(Operation::Read, "verify the audit log", &[]) {
        return Err(ControlError::Forbidden(d).into());
    }
    let mut mirrors = Vec::new();
    for name in ctx.config.repositories.keys() {
        match ctx.repository(name).await {
            Ok(repo) => mirrors.push((name.clone(), repo)),
            Err(e) => eprintln!("warning: repository {name} not compared: {}", e.message),
        }
    }
    let v = audit::verify(catalog.as_ref(), &mirrors).await;
    catalog.close().await;
    let v = v?;
    if out.json {
        out.json(&v);
    } else if v.breaks.is_empty() {
        println!(
            "audit log intact: {} entries chained, {} compared with the repositories' copies; head {}",
            v.entries,
            v.mirrored,
            v.head.as_deref().unwrap_or("(empty)")
        );
    } else {
        for b in &v.breaks {
            println!("entry {}: {}", b.seq, b.problem);
        }
    }
    if let Some(first) = v.breaks.first() {
        return Err(CliError::new(
            Exit::Damage,
            format!(
                "the audit log was tampered with: entry {}: {} ({} problem(s) in all); fix: compare with the copies under audit/ in the repositories and find out who had write access to the catalog",
                first.seq,
                first.problem,
                v.breaks.len()
            ),
        ));
    }
    Ok(Exit::Ok)
}
