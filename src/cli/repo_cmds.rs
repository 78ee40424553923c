//! Commands over repositories: init, backup, snapshots, verify, restore, catalog rebuild.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use super::context::Context;
use super::progress::Meter;
use super::render::{self, Output};
use super::{CliError, Exit};
use crate::catalog::{Catalog, RunKind, RunRecord, RunStatus, SnapshotFilter, SnapshotRecord};
use crate::control::{ControlPlane, Outcome, RestoreSpec, RestoreTargetSpec};

use crate::ops;
use crate::repo::{Manifest, Repository, WriteOptions};

pub async fn init(ctx: &Context, name: Option<String>, like: Option<String>, out: &Output) -> Result<Exit, CliError> {
    let name = match name {
        Some(n) => n,
        None if ctx.config.repositories.len() == 1 => ctx.config.repositories.keys().next().cloned().expect("one"),
        None => {
            return Err(CliError::usage(format!(
                "which repository? fix: name one of: {}",
                ctx.config.repositories.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    };
    let rc = ctx.repository_config(&name)?;
    let keys = ctx.keys(rc)?;
    let template = match &like {
        None => None,
        Some(template_name) => {
            let template = ctx.repository(template_name).await?;
            check_like(
                &name,
                &keys.recipients,
                rc.encryption.is_some(),
                template_name,
                &template,
            )?;
            Some((template_name.as_str(), template))
        }
    };
    let storage = ctx.storage(rc, true)?;
    let created = match &template {
        None => Repository::init(storage.store, storage.url.as_str(), &keys.recipients).await?,
        Some((_, t)) => Repository::init_like(storage.store, storage.url.as_str(), t).await?,
    };
    let mut key_file = None;
    if let Some(key) = created.address_key {
        let dir = ctx.key_dir();
        let path = dir.join(crate::repo::address_key_file_name(created.repository.id()));
        write_private(&path, &hex::encode(key)).map_err(|e| {
            CliError::new(Exit::Failed, format!("repository created, but its address key could not be saved to {}: {e}; fix: make the state directory writable and run init against a new location", path.display()))
        })?;
        key_file = Some(path);
    }
    // Encrypted like a repository whose address key this host does not hold: copies need no key, but
    // backups into the new repository do.
    let key_note = match &template {
        Some((template_name, t)) if t.is_encrypted() && created.address_key.is_none() => Some(format!(
            "the address key of `{template_name}` is not on this host, so backups into `{name}` cannot run here yet (copies can); fix: copy {} from the host that ran `lifeboat init {template_name}` to {}, or configure the age identity for `{name}`",
            crate::repo::address_key_file_name(t.id()),
            ctx.key_dir()
                .join(crate::repo::address_key_file_name(created.repository.id()))
                .display()
        )),
        _ => None,
    };
    if let Some(note) = &key_note {
        eprintln!("note: {note}");
    }
    if out.json {
        out.json(&json!({"repository": name, "id": created.repository.id(), "url": rc.url.as_str(), "encrypted": created.repository.is_encrypted(), "address_key_file": key_file, "like": like}));
    } else {
        println!(
            "created repository {name} (id {}) at {}",
            created.repository.id(),
            rc.url
        );
        if let Some(p) = key_file {
            println!(
                "address key saved to {} (mode 600): backups need it; keep a copy with the age identity",
                p.display()
            );
        }
    }
    Ok(Exit::Ok)
}

/// `init NAME --like TEMPLATE` copies the template's encryption, so the config of NAME must say the
/// same: otherwise backups into NAME would encrypt to recipients other than the ones its chunks use.
fn check_like(
    name: &str,
    configured: &[age::x25519::Recipient],
    configured_encrypted: bool,
    template_name: &str,
    template: &Repository,
) -> Result<(), CliError> {
    let mine: std::collections::BTreeSet<String> = configured.iter().map(|r| r.to_string()).collect();
    match &template.config().encryption {
        None if configured_encrypted => Err(CliError::usage(format!(
            "`{template_name}` is not encrypted, so `{name}` cannot be both encrypted and like it; fix: remove `encryption:` from repository `{name}` in the config, or run init without --like (snapshots then cannot be copied between the two)"
        ))),
        None => Ok(()),
        Some(t) => {
            let theirs: std::collections::BTreeSet<String> = t.recipients.iter().cloned().collect();
            if mine == theirs {
                return Ok(());
            }
            let list = theirs.iter().map(|r| format!("\"{r}\"")).collect::<Vec<_>>().join(", ");
            Err(CliError::usage(if configured_encrypted {
                format!(
                    "`{template_name}` encrypts to recipients {list}, but repository `{name}` in the config lists others; chunks copied from `{template_name}` stay encrypted to its recipients; fix: set `encryption.recipients: [{list}]` for `{name}` in the config, then run init again"
                )
            } else {
                format!(
                    "`{template_name}` is encrypted, so `{name}` must be configured with the same recipients to be like it; fix: add `encryption: {{ recipients: [{list}] }}` to repository `{name}` in the config, then run init again"
                )
            }))
        }
    }
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")
}

#[derive(Serialize)]
struct BackupJson<'a> {
    snapshot: &'a str,
    source: &'a str,
    repository: &'a str,
    bytes_read: u64,
    bytes_stored: u64,
    chunks: usize,
    new_chunks: u64,
    tables: usize,
    rows: u64,
    consistent_point: Option<&'a str>,
    duration_seconds: f64,
}

pub async fn backup(ctx: &Context, source_name: &str, uploads: usize, out: &Output) -> Result<Exit, CliError> {
    let source = ctx.source(source_name)?;
    let catalog = open_catalog_or_warn(ctx).await;
    let meter = Arc::new(Meter::new(out.progress, "backup", None));
    let result = backup_recorded(ctx, catalog.as_deref(), source_name, uploads, meter.clone()).await;
    meter.finish();
    let report = result?;
    let m = &report.manifest;
    if out.json {
        out.json(&BackupJson {
            snapshot: &m.id,
            source: source_name,
            repository: &source.repository,
            bytes_read: m.stream.size,
            bytes_stored: m.stream.new_bytes,
            chunks: m.stream.chunks.len(),
            new_chunks: m.stream.new_chunks,
            tables: m.facts.fingerprint.tables.len(),
            rows: m.facts.fingerprint.total_rows(),
            consistent_point: m.facts.consistent_point.as_deref(),
            duration_seconds: report.duration.as_secs_f64(),
        });
    } else {
        println!("snapshot {} of {source_name} committed to {}", m.id, source.repository);
        println!(
            "  read {}, stored {} new ({} of {} chunks new), {} tables / {} rows, {}",
            render::bytes(m.stream.size),
            render::bytes(m.stream.new_bytes),
            m.stream.new_chunks,
            m.stream.chunks.len(),
            m.facts.fingerprint.tables.len(),
            m.facts.fingerprint.total_rows(),
            render::seconds(report.duration)
        );
    }
    Ok(Exit::Ok)
}

/// Backs a source up and records the run and the snapshot in the catalog when there is one: what
/// `lifeboat backup` and the daemon's backup job both do. A catalog that cannot record is a warning,
/// not a failure: the snapshot is committed, and `catalog rebuild` recovers the record.
pub(crate) async fn backup_recorded(
    ctx: &Context,
    catalog: Option<&dyn Catalog>,
    source_name: &str,
    uploads: usize,
    progress: Arc<dyn crate::repo::Progress>,
) -> Result<ops::BackupReport, CliError> {
    let source = ctx.source(source_name)?;
    let engine = ctx.engine_for_source(source)?;
    let repo = ctx.repository(&source.repository).await?;
    let started_at = jiff::Timestamp::now();
    let result = ops::backup(
        source_name,
        engine.as_ref(),
        &repo,
        &WriteOptions {
            uploads_in_flight: uploads,
        },
        progress,
    )
    .await;
    let run = |status, snapshot_id: Option<String>, detail| RunRecord {
        id: None,
        kind: RunKind::Backup,
        source: Some(source_name.to_string()),
        repository: Some(source.repository.clone()),
        snapshot_id,
        started_at,
        finished_at: jiff::Timestamp::now(),
        status,
        detail,
    };
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            let err: CliError = e.into();
            if let Some(c) = catalog {
                let _ = c
                    .record_run(&run(RunStatus::Failed, None, Some(err.message.clone())))
                    .await;
            }
            return Err(err);
        }
    };
    let m = &report.manifest;
    if let Some(c) = catalog {
        if let Err(e) = c.record_snapshot(&ops::snapshot_record(&source.repository, m)).await {
            tracing::warn!(
                "snapshot {} is committed to the repository but the catalog could not record it: {e}; fix: run `lifeboat catalog rebuild`",
                m.id
            );
        }
        let _ = c.record_run(&run(RunStatus::Ok, Some(m.id.clone()), None)).await;
    }
    Ok(report)
}

async fn open_catalog_or_warn(ctx: &Context) -> Option<Box<dyn Catalog>> {
    match ctx.catalog().await {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!(
                "warning: catalog unavailable, history will not be recorded: {}",
                e.message
            );
            None
        }
    }
}

pub async fn snapshots(
    ctx: &Context,
    source: Option<String>,
    from_repository: bool,
    out: &Output,
) -> Result<Exit, CliError> {
    if let Some(s) = &source {
        ctx.source(s)?;
    }
    let records: Vec<SnapshotRecord> = if from_repository {
        let mut all = Vec::new();
        for name in ctx.repository_names(None)? {
            let repo = ctx.repository(&name).await?;
            let (good, bad) = repo.manifests(source.as_deref()).await?;
            for e in bad {
                eprintln!("warning: {e}");
            }
            all.extend(good.iter().map(|m| ops::snapshot_record(&name, m)));
        }
        all.sort_by(|a, b| (b.finished_at, &b.id).cmp(&(a.finished_at, &a.id)));
        all
    } else {
        ctx.catalog()
            .await?
            .snapshots(&SnapshotFilter {
                source: source.clone(),
                repository: None,
                limit: None,
            })
            .await?
    };
    if out.json {
        out.json(&records);
        return Ok(Exit::Ok);
    }
    if records.is_empty() {
        println!(
            "no snapshots{}",
            if from_repository {
                ""
            } else {
                " in the catalog (if the repositories hold some, run `lifeboat catalog rebuild`)"
            }
        );
        return Ok(Exit::Ok);
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.source.clone(),
                r.repository.clone(),
                r.finished_at.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
                render::bytes(r.bytes_read),
                render::bytes(r.bytes_stored),
                r.tables.to_string(),
                r.rows.to_string(),
            ]
        })
        .collect();
    render::table(
        &[
            "ID",
            "SOURCE",
            "REPOSITORY",
            "FINISHED",
            "SIZE",
            "NEW",
            "TABLES",
            "ROWS",
        ],
        &rows,
    );
    Ok(Exit::Ok)
}

/// Finds a snapshot by id or prefix across the configured repositories.
pub(crate) async fn locate(
    ctx: &Context,
    id: &str,
    only: Option<&str>,
) -> Result<(String, Repository, Manifest), CliError> {
    let mut found = Vec::new();
    for name in ctx.repository_names(only)? {
        let repo = ctx.repository(&name).await?;
        match repo.find_manifest(id).await {
            Ok(m) => found.push((name, repo, m)),
            Err(crate::repo::RepoError::Missing { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    match found.len() {
        1 => Ok(found.pop().expect("one")),
        0 => Err(CliError::usage(format!(
            "no snapshot `{id}` in any configured repository; fix: list them with `lifeboat snapshots --from-repository`"
        ))),
        _ => Err(CliError::usage(format!(
            "snapshot `{id}` is in several repositories; fix: pass --repository"
        ))),
    }
}

pub async fn verify(
    ctx: &Context,
    snapshot: Option<String>,
    all: bool,
    read_data: bool,
    repository: Option<String>,
    out: &Output,
) -> Result<Exit, CliError> {
    if snapshot.is_none() && !all {
        return Err(CliError::usage(
            "name a snapshot or pass --all; fix: `lifeboat verify --all` checks every snapshot",
        ));
    }
    let targets: Vec<(String, Repository, Option<String>)> = match &snapshot {
        Some(id) => {
            let (name, repo, m) = locate(ctx, id, repository.as_deref()).await?;
            vec![(name, repo, Some(m.id))]
        }
        None => {
            let mut v = Vec::new();
            for name in ctx.repository_names(repository.as_deref())? {
                let repo = ctx.repository(&name).await?;
                v.push((name, repo, None));
            }
            v
        }
    };
    let catalog = open_catalog_or_warn(ctx).await;
    let mut reports = Vec::new();
    let mut damaged = false;
    for (name, repo, only) in targets {
        let started_at = jiff::Timestamp::now();
        let meter = Meter::new(out.progress, if read_data { "read" } else { "check" }, None);
        let report = repo.verify(only.as_deref(), read_data, &meter).await?;
        meter.finish();
        damaged |= !report.is_clean();
        if let Some(c) = &catalog {
            let _ = c
                .record_run(&RunRecord {
                    id: None,
                    kind: RunKind::Verify,
                    source: None,
                    repository: Some(name.clone()),
                    snapshot_id: only.clone(),
                    started_at,
                    finished_at: jiff::Timestamp::now(),
                    status: if report.is_clean() {
                        RunStatus::Ok
                    } else {
                        RunStatus::Failed
                    },
                    detail: (!report.is_clean()).then(|| format!("{} problems", report.problems.len())),
                })
                .await;
        }
        if !out.json {
            println!(
                "repository {name}: {} snapshots, {} chunks {}{}",
                report.snapshots_checked,
                report.chunks_checked,
                if read_data {
                    "re-read and re-hashed"
                } else {
                    "checked for presence"
                },
                if read_data {
                    format!(" ({})", render::bytes(report.bytes_read))
                } else {
                    String::new()
                }
            );
            for p in &report.problems {
                println!(
                    "  {:?}: {} ({}) — breaks snapshot {}",
                    p.kind,
                    p.object,
                    p.detail,
                    p.snapshots.join(", ")
                );
            }
            println!(
                "  {}",
                if report.is_clean() {
                    "OK".to_string()
                } else {
                    format!("{} PROBLEMS", report.problems.len())
                }
            );
        }
        reports.push(json!({"repository": name, "report": report}));
    }
    if out.json {
        out.json(&reports);
    }
    if damaged {
        eprintln!(
            "verify found damage; fix: restore from an undamaged snapshot or repository copy, and take a new backup now"
        );
        return Ok(Exit::Damage);
    }
    Ok(Exit::Ok)
}

/// SIGINT or SIGTERM asks the restore to stop and mark its target (see `ops::interrupt`) instead
/// of killing this process with `pg_restore` still running in its own process group; a second one
/// quits at once.
async fn stop_on_signal() {
    let why = super::drill_cmds::shutdown_signal().await;
    crate::ops::interrupt::request(why);
    eprintln!("{why}: stopping the restore and marking its target; send it again to quit at once");
    super::drill_cmds::shutdown_signal().await;
    std::process::exit(Exit::Failed as i32);
}

#[allow(clippy::too_many_arguments)]
pub async fn restore(
    ctx: &Context,
    snapshot: &str,
    into_dsn: String,
    password_env: Option<String>,
    jobs: u32,
    no_owner: bool,
    staging: crate::ops::Staging,
    repository: Option<String>,
    out: &Output,
) -> Result<Exit, CliError> {
    // The value is never repeated in these messages: it may hold a password.
    let into_dsn = url::Url::parse(&into_dsn).map_err(|e| {
        CliError::usage(format!(
            "--into-dsn is not a valid URL ({e}); fix: write it as postgres://USER@HOST:PORT/DATABASE \
             and pass the password with --password-env VAR"
        ))
    })?;
    // A password in it is refused by the control plane, before anything reads it.
    let spec = RestoreSpec {
        snapshot: Some(snapshot.to_string()),
        source: None,
        at: None,
        repository,
        target: RestoreTargetSpec::Dsn {
            dsn: into_dsn.to_string(),
            password_env,
        },
        no_owner,
        jobs: Some(jobs),
        staging,
    };
    let (catalog, p) = super::control_cmds::open(ctx).await?;
    let plane = ControlPlane::new(ctx, catalog.as_ref());
    let started_at = jiff::Timestamp::now();
    let meter = Meter::new(out.progress, "restore", None);
    let signals = tokio::spawn(stop_on_signal());
    let result = plane.restore(&p, &spec, &meter).await;
    signals.abort();
    meter.finish();
    let done = match result {
        Ok(Outcome::Pending(a)) => {
            catalog.close().await;
            return super::control_cmds::pending(&a, out);
        }
        Ok(Outcome::Done(d)) => Ok(d),
        Err(e) => Err(e),
    };
    // Refusals before anything ran (not allowed, bad input) are not restore runs.
    let ran = match &done {
        Ok(_) => true,
        Err(e) => !matches!(e.exit(), Exit::Usage | Exit::Denied),
    };
    if ran {
        let _ = catalog
            .record_run(&RunRecord {
                id: None,
                kind: RunKind::Restore,
                source: done.as_ref().ok().map(|d| d.source.clone()),
                repository: done.as_ref().ok().map(|d| d.repository.clone()),
                snapshot_id: done.as_ref().ok().map(|d| d.snapshot.clone()),
                started_at,
                finished_at: jiff::Timestamp::now(),
                status: if done.is_ok() { RunStatus::Ok } else { RunStatus::Failed },
                detail: done.as_ref().err().map(|e| e.to_string()),
            })
            .await;
    }
    catalog.close().await;
    let done = done?;
    let report = done.report.as_ref().expect("a restore into a database reports");
    if out.json {
        out.json(&json!({"report": report, "target": done.target, "duration_seconds": report.duration.as_secs_f64()}));
    } else {
        println!(
            "restored snapshot {} of {} into {}",
            done.snapshot, done.source, done.target
        );
        let staged = report
            .staged_in
            .map(|m| format!(" (staged in {m})"))
            .unwrap_or_default();
        println!(
            "  {} tables, {} rows; row counts equal those recorded at backup time; fetch {:.1}s{staged}, restore {:.1}s, total {}",
            report.tables,
            report.rows,
            report.fetch_seconds,
            report.restore_seconds,
            render::seconds(report.duration)
        );
    }
    Ok(Exit::Ok)
}

pub async fn catalog_rebuild(ctx: &Context, out: &Output) -> Result<Exit, CliError> {
    let catalog = ctx.catalog().await?;
    let mut summary = Vec::new();
    let mut damaged = false;
    for name in ctx.repository_names(None)? {
        let repo = ctx.repository(&name).await?;
        let (count, bad) = ops::rebuild_catalog(&name, &repo, catalog.as_ref()).await?;
        // Drill history comes back from the evidence the repository keeps.
        let (drills, bad_evidence) = crate::drill::record::rebuild(&repo, catalog.as_ref())
            .await
            .map_err(|e| CliError::new(Exit::Failed, format!("re-importing drill evidence from {name}: {e}")))?;
        let mut skipped: Vec<String> = bad.iter().map(|e| e.to_string()).collect();
        skipped.extend(bad_evidence);
        for e in &skipped {
            eprintln!("warning: not catalogued: {e}");
        }
        damaged |= !skipped.is_empty();
        if !out.json {
            println!(
                "repository {name}: {count} snapshots and {drills} drill runs catalogued{}",
                if skipped.is_empty() {
                    String::new()
                } else {
                    format!(", {} damaged objects skipped", skipped.len())
                }
            );
        }
        summary.push(json!({"repository": name, "snapshots": count, "drill_runs": drills, "damaged": skipped}));
    }
    if out.json {
        out.json(&summary);
    }
    Ok(if damaged { Exit::Damage } else { Exit::Ok })
}
