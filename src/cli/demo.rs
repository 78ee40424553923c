//! `lifeboat demo`: the whole cycle on embedded defaults, needing only PostgreSQL's server binaries.
//! It runs the same operations as `backup`, `verify` and `restore`, on a throwaway cluster.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::progress::Meter;
use super::render::{self, Output};
use super::{CliError, Exit};
use crate::engine::postgres::Postgres;
use crate::engine::{Endpoint, RestoreOptions};
use crate::ops;
use crate::repo::{Repository, WriteOptions};
use crate::scratch::{EphemeralOptions, EphemeralPostgres};
use crate::storage::{Storage, StorageOptions};

const RENTAL_SQL: &str = include_str!("../../demo/rental.sql");

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Size of the sample car-rental database (1 is about 20 MB).
    #[arg(long, default_value_t = 1)]
    scale: u32,
    /// Keep the demo repository and print where it is.
    #[arg(long)]
    keep: bool,
}

fn step(out: &Output, text: &str) {
    if !out.json {
        println!("==> {text}");
    }
}

pub async fn run(args: DemoArgs, out: &Output) -> Result<Exit, CliError> {
    let clock = Instant::now();
    step(out, "starting a throwaway PostgreSQL cluster (Unix socket only)");
    let cluster = EphemeralPostgres::start(&EphemeralOptions::default()).await?;
    cluster.create_database("rental").await?;
    step(
        out,
        &format!("loading the sample car-rental data (scale {})", args.scale),
    );
    load_rental(&cluster, args.scale).await?;

    // The repository lives in its own directory, outside the cluster's data directory.
    let work = tempfile::Builder::new()
        .prefix("lifeboat-demo-")
        .tempdir()
        .map_err(|e| CliError::new(Exit::Failed, format!("cannot create a temp dir: {e}")))?;
    let repo_dir = work.path().join("repository");
    let url = url::Url::from_directory_path(&repo_dir).expect("absolute path");
    let storage = Storage::open(&StorageOptions::new(url.clone()), true)?;
    let repo = Repository::init(storage.store, url.as_str(), &[]).await?.repository;
    step(out, &format!("created repository at {}", repo_dir.display()));

    let source = Postgres::new(endpoint(&cluster, "rental")?);
    step(out, "backing up (pg_dump -Fc streamed through chunking, SHA-256, zstd)");
    let first = backup(&source, &repo, out).await?;
    step(out, "backing up again: unchanged data should store almost nothing");
    let second = backup(&source, &repo, out).await?;

    step(out, "verifying every chunk (--read-data)");
    let report = repo.verify(None, true, &crate::repo::NoProgress).await?;
    if !report.is_clean() {
        return Err(CliError::new(
            Exit::Damage,
            format!("verify found {} problems in a fresh repository", report.problems.len()),
        ));
    }

    cluster.create_database("rental_restored").await?;
    let target = Postgres::new(endpoint(&cluster, "rental_restored")?);
    step(out, "restoring the second snapshot into a fresh database");
    let meter = Meter::new(out.progress, "restore", Some(second.manifest.stream.size));
    let restored = ops::restore(
        ops::RestoreRequest {
            manifest: &second.manifest,
            repo: &repo,
            target: &target,
            options: RestoreOptions {
                jobs: 2,
                no_owner: false,
                replace: false,
            },
            staging: ops::Staging {
                dir: Some(work.path().to_path_buf()),
                disk_only: false,
            },
            staged: None,
        },
        &meter,
    )
    .await?;
    meter.finish();

    step(out, "comparing the restored data with the original, table by table");
    let original = source.content_checksums().await?;
    let copy = target.content_checksums().await?;
    let equal = original == copy && !original.is_empty();

    let kept: Option<PathBuf> = if args.keep { Some(work.keep()) } else { None };
    cluster.stop().await?;
    let new_pct = 100.0 * second.manifest.stream.new_bytes as f64 / second.manifest.stream.size.max(1) as f64;
    if out.json {
        out.json(&json!({
            "equal": equal,
            "tables": copy.len(),
            "rows": restored.rows,
            "backup_bytes": first.manifest.stream.size,
            "stored_bytes": first.manifest.stream.new_bytes,
            "second_backup_new_bytes": second.manifest.stream.new_bytes,
            "restore_seconds": restored.duration.as_secs_f64(),
            "repository": kept,
            "seconds": clock.elapsed().as_secs_f64(),
        }));
    } else {
        println!();
        println!(
            "backup:   {} read, {} stored after zstd (first run, {})",
            render::bytes(first.manifest.stream.size),
            render::bytes(first.manifest.stream.new_bytes),
            render::seconds(first.duration)
        );
        println!(
            "again:    {} new ({new_pct:.2}% of the stream): unchanged chunks are not sent twice",
            render::bytes(second.manifest.stream.new_bytes)
        );
        println!(
            "restore:  {} tables, {} rows in {}",
            restored.tables,
            restored.rows,
            render::seconds(restored.duration)
        );
        if let Some(p) = &kept {
            println!("kept:     {}", p.display());
        }
        if equal {
            println!(
                "PASS: the restored database equals the original ({} tables, row counts and content checksums equal)",
                copy.len()
            );
        } else {
            println!("FAIL: the restored database differs from the original");
        }
    }
    Ok(if equal { Exit::Ok } else { Exit::Damage })
}

fn endpoint(cluster: &EphemeralPostgres, db: &str) -> Result<Endpoint, CliError> {
    let dsn =
        url::Url::parse(&cluster.dsn(db)).map_err(|e| CliError::new(Exit::Failed, format!("scratch DSN: {e}")))?;
    Ok(Endpoint {
        dsn,
        password: None,
        bin_dir: Some(cluster.bin_dir().to_path_buf()),
    })
}

async fn backup(source: &Postgres, repo: &Repository, out: &Output) -> Result<ops::BackupReport, CliError> {
    let meter = Arc::new(Meter::new(out.progress, "backup", None));
    let r = ops::backup("rental", source, repo, &WriteOptions::default(), meter.clone()).await;
    meter.finish();
    Ok(r?)
}

async fn load_rental(cluster: &EphemeralPostgres, scale: u32) -> Result<(), CliError> {
    let file = tempfile::Builder::new()
        .suffix(".sql")
        .tempfile()
        .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
    std::fs::write(file.path(), RENTAL_SQL).map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
    let status = tokio::process::Command::new(cluster.bin_dir().join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-v"])
        .arg(format!("scale={scale}"))
        .arg("-d")
        .arg(cluster.dsn("rental"))
        .arg("-f")
        .arg(file.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .map_err(|e| CliError::new(Exit::Failed, format!("cannot run psql: {e}")))?;
    if !status.success() {
        return Err(CliError::new(
            Exit::Failed,
            "loading the sample data failed; fix: run with LIFEBOAT_LOG=debug and check the PostgreSQL server binaries",
        ));
    }
    Ok(())
}
