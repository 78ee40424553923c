//! `lifeboat daemon`: the commands, run unattended on their schedules.
//!
//! - `plan`: the job table (each source's backup, verify and prune schedules; each drill's).
//! - `scheduler`: claims, leases, catch-up and shutdown.
//! - `jobs`: what each job does, and the alerts and metrics its outcome implies.
//! - `watch`: the RPO, evaluated continuously.
//!
//! The daemon serves `/metrics` and `/healthz` on `daemon.listen` (loopback by default).

mod jobs;
pub mod plan;
mod scheduler;
pub mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch as channel;

use crate::alert::{Alerter, AlertsConfig};
use crate::catalog::{Catalog, SnapshotFilter};
use crate::cli::context::Context;
use crate::cli::{CliError, Exit};
use crate::drill::spec::DrillSpec;
use crate::http::{Health, HttpState, Server};
use crate::telemetry::Metrics;

/// What the jobs share.
pub(crate) struct Shared {
    pub ctx: Context,
    pub catalog: Box<dyn Catalog>,
    /// This daemon's name in job claims: host, pid and a random suffix.
    pub owner: String,
    pub alerter: Alerter,
    pub metrics: Metrics,
    pub health: Health,
    pub drills: Vec<DrillSpec>,
    pub targets: BTreeMap<String, plan::Targets>,
    /// Who the daemon is when it asks for approvals: `daemon:HOST`, with every operation but `approve`.
    pub principal: crate::control::Principal,
}

impl Shared {
    /// The newest snapshot of `source` in `repository` the catalog knows: the newest restorable point.
    pub async fn newest_snapshot(
        &self,
        source: &str,
        repository: &str,
    ) -> Result<Option<crate::catalog::SnapshotRecord>, crate::catalog::CatalogError> {
        let filter = SnapshotFilter {
            source: Some(source.to_string()),
            repository: Some(repository.to_string()),
            limit: Some(1),
        };
        Ok(self.catalog.snapshots(&filter).await?.pop())
    }
}

/// Runs until `stop` resolves (SIGTERM/SIGINT in the CLI), then stops as the scheduler describes.
pub async fn run(
    ctx: Context,
    drills: Vec<DrillSpec>,
    stop: impl std::future::Future<Output = String> + Send,
) -> Result<Exit, CliError> {
    let config = ctx.config.clone();
    let jobs = plan::jobs(&config, &drills).map_err(|e| CliError::usage(format!("{}; fix: {}", e.message, e.fix)))?;
    let targets = plan::targets(&drills);
    let catalog = ctx.catalog().await?;
    // The config's retention goes through the same rule as the API's: lowering waits for approval.
    if let Err(e) = crate::control::ControlPlane::new(&ctx, catalog.as_ref())
        .reconcile_config_retention()
        .await
    {
        tracing::error!("the config's retention could not be checked against the retention in force: {e}");
    }
    let alerts = alerts_config(&config)?;
    let alerter = Alerter::start(alerts, config.state_dir.join("alerts.json"))
        .map_err(|e| CliError::usage(format!("alerts: {e}")))?;
    // Routes switched off through an approved request stay off (and are re-read every 30 s).
    let settings = crate::control::Settings::load(catalog.as_ref()).await?;
    alerter.set_disabled_routes(disabled_routes(&settings));
    let metrics = Metrics::new();
    let health = Health::new();
    let mut server = Server::bind(config.daemon.listen)
        .await
        .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
    if let Some(tls) = &config.control.tls {
        let acceptor = crate::http::tls::acceptor(&tls.cert_file, &tls.key_file).map_err(CliError::usage)?;
        server = server.tls(acceptor);
    }
    let listen = server.local_addr();
    let scheme = server.scheme();

    let owner = format!(
        "{}:{}:{:08x}",
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown-host".into()),
        std::process::id(),
        rand::random::<u32>()
    );
    let mut scope = crate::control::Scope::everything();
    scope.operations.remove(&crate::control::Operation::Approve);
    let principal = crate::control::Principal {
        name: format!("daemon:{}", owner.split(':').next().unwrap_or("unknown-host")),
        token_id: None,
        scope,
        created_by: None,
    };
    let api = crate::api::ApiState {
        ctx: Arc::new(ctx.clone()),
        catalog: Arc::from(ctx.catalog().await?),
        drills: Arc::new(drills.clone()),
        metrics: metrics.clone(),
    };
    let shared = Arc::new(Shared {
        ctx,
        catalog,
        owner,
        principal,
        alerter: alerter.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        drills,
        targets,
    });
    seed_metrics(&shared).await;

    let (stop_tx, stop_rx) = channel::channel(false);
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mirror_catalog = api.catalog.clone();
    let router = crate::http::router(HttpState {
        metrics: metrics.clone(),
        health: health.clone(),
    })
    .merge(crate::api::router(api));
    let http = tokio::spawn(server.run(router, async move {
        let _ = http_stop_rx.await;
    }));
    tracing::info!(
        "lifeboat daemon {} serving /metrics, /healthz and /api/v1 on {scheme}://{listen}; {} scheduled job(s): {}",
        env!("CARGO_PKG_VERSION"),
        jobs.len(),
        jobs.iter()
            .map(|j| format!("{} [{}]", j.key(), j.schedule))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let scheduler = tokio::spawn(scheduler::run(shared.clone(), jobs, stop_rx.clone()));
    let mirror = tokio::spawn(mirror_audit(shared.clone(), mirror_catalog, stop_rx));
    let why = stop.await;
    tracing::info!("{why}: shutting down");
    let _ = stop_tx.send(true);
    if let Err(e) = scheduler.await {
        tracing::error!("the scheduler ended abnormally: {e}");
    }
    let _ = mirror.await;
    let report = alerter.shutdown(Duration::from_secs(10)).await;
    if report.undelivered > 0 {
        tracing::warn!(
            "{} alert message(s) could not be delivered before exit",
            report.undelivered
        );
    }
    let _ = http_stop_tx.send(());
    match http.await {
        Ok(Err(e)) => tracing::warn!("the HTTP server ended with an error: {e}"),
        Err(e) => tracing::warn!("the HTTP server ended abnormally: {e}"),
        Ok(Ok(())) => {}
    }
    shared.catalog.close().await;
    tracing::info!("stopped");
    Ok(Exit::Ok)
}

/// The alert routes disabled through approved requests.
fn disabled_routes(settings: &crate::control::Settings) -> Vec<String> {
    settings
        .disabled
        .iter()
        .filter_map(|t| t.strip_prefix("route:"))
        .map(str::to_string)
        .collect()
}

/// How often the daemon copies new audit entries into the repositories (and re-reads the disabled
/// alert routes and the pending approvals).
const AUDIT_MIRROR_EVERY: Duration = Duration::from_secs(30);

/// Copies the audit log into every repository in use, now and then and once more at shutdown, so
/// the record of who did what survives the loss of this host and its catalog; and counts the
/// pending approval requests for `/metrics`.
async fn mirror_audit(shared: Arc<Shared>, catalog: Arc<dyn Catalog>, mut stop: channel::Receiver<bool>) {
    loop {
        // One read of the settings serves the alert routes and the repositories to mirror into.
        let removed = match crate::control::Settings::load(catalog.as_ref()).await {
            Ok(settings) => {
                shared.alerter.set_disabled_routes(disabled_routes(&settings));
                settings.removed_repositories
            }
            Err(e) => {
                tracing::warn!("disabled alert routes not re-read: {e}");
                Default::default()
            }
        };
        // Requests made by the CLI or the daemon's own jobs, and expiries, show up here too.
        match crate::control::approval::pending_by_kind(catalog.as_ref(), jiff::Timestamp::now()).await {
            Ok(counts) => shared.metrics.approvals_pending(&counts),
            Err(e) => tracing::warn!("pending approvals not counted: {e}"),
        }
        for name in shared.ctx.config.repositories.keys().filter(|n| !removed.contains(*n)) {
            let repo = match shared.ctx.repository(name).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("audit log not copied into repository {name}: {}", e.message);
                    continue;
                }
            };
            match crate::control::audit::mirror(catalog.as_ref(), &repo).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!("copied {n} audit entries into repository {name}"),
                Err(e) => tracing::warn!("audit log not copied into repository {name}: {e}"),
            }
        }
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(AUDIT_MIRROR_EVERY) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Targets, last success and newest point from the catalog, so dashboards are right from the
/// first scrape rather than after the first job.
async fn seed_metrics(shared: &Shared) {
    for (source, t) in &shared.targets {
        if let (Some(rto), Some(rpo)) = (t.rto, t.rpo) {
            shared.metrics.sla_targets(source, rto, rpo);
        }
    }
    for d in &shared.drills {
        if let Some(rto) = d.sla.rto {
            shared.metrics.drill_sla_rto(&d.name, rto);
        }
    }
    for source in shared.ctx.config.sources.values() {
        // The newest restorable point is set by the scheduler's first RPO watch, right after.
        if let Ok(Some(s)) = shared.newest_snapshot(&source.name, &source.repository).await {
            shared.metrics.backup_succeeded(&source.name, s.finished_at, 0, 0);
        }
    }
}

/// The config's `alerts:` with every secret read: a sink whose secret is missing fails the start,
/// not the first page at 3 a.m.
fn alerts_config(config: &crate::config::Config) -> Result<AlertsConfig, CliError> {
    // The same conversion `check-config` validates with.
    AlertsConfig::from_spec(&config.alerts).map_err(CliError::from)
}
