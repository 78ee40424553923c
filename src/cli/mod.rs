//! The command line: parse arguments, call `ops`, render tables, JSON and progress.

mod check_config;
pub(crate) mod context;
pub(crate) mod control_cmds;
mod copy_cmds;
mod daemon_cmds;
mod demo;
pub(crate) mod drill_cmds;
mod exit;
mod fate_cmds;
mod progress;
mod prune_cmds;
mod render;
pub(crate) mod repo_cmds;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use exit::{CliError, Exit};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the operation failed (database or storage unreachable, tool failed, ...);
     for `fate`: a critical shared-fate finding
  2  bad usage or bad configuration (nothing was done)
  3  refused by a safety rule (nothing was written), e.g. the repository is locked by a
     prune or a backup; or it needs approval: a request was created (its id is printed)
     and nothing was done yet
  4  damage found: missing or corrupt backup objects, or restored data that does not match;
     for `drill run`: the drill's verdict is `fail`
  5  `drill run`: every check passed but RTO or RPO exceeded the SLA (`sla-breach`)
  6  not allowed: LIFEBOAT_TOKEN is invalid, expired or revoked, or lacks the operation,
     environment or source (nothing was done)

Environment:
  LIFEBOAT_CONFIG  config file (default config/lifeboat.yaml)
  LIFEBOAT_LOG     log filter, e.g. info or lifeboat=debug (logs go to stderr)
  LIFEBOAT_TOKEN   act as this API token's holder (default: the local operator,
                   `local:USER`, who may do and request anything but approve nothing)";

/// Lifeboat backs databases up to storage that does not share their fate, proves the backups restore,
/// and restores them when it matters.
#[derive(Parser, Debug)]
#[command(name = "lifeboat", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    /// Config file.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "LIFEBOAT_CONFIG",
        default_value = "config/lifeboat.yaml"
    )]
    config: PathBuf,
    /// Print results as JSON on stdout (progress and logs stay on stderr).
    #[arg(long, global = true)]
    json: bool,
    /// No progress bars or progress lines.
    #[arg(long, short = 'q', global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the whole cycle on a throwaway PostgreSQL cluster: load sample data, back it up, restore it
    /// into a fresh database and prove the data equal. Needs only PostgreSQL's server binaries.
    Demo(demo::DemoArgs),
    /// Create a repository. Refuses to touch a location that already holds one.
    #[command(
        after_help = "Examples:\n  lifeboat init offsite\n  lifeboat init second-site --like offsite\n\n\
--like makes a repository that names and encrypts chunks exactly as the other one (same chunker parameters, \
recipients and address key, an id of its own), so that `lifeboat copy` can move snapshots between the two."
    )]
    Init {
        /// Repository name from the config; may be omitted when the config has exactly one.
        repository: Option<String>,
        /// Create it like this existing repository (a name from the config), ready to receive copies of it.
        #[arg(long, value_name = "REPOSITORY")]
        like: Option<String>,
    },
    /// Take a consistent logical backup of a source into its repository.
    #[command(
        after_help = "Example:\n  lifeboat backup orders\n\nStreams `pg_dump -Fc` through content-defined chunking, \
zstd and (optionally) age encryption into the repository; chunks the repository already holds are not sent \
again. The snapshot exists only once its manifest is written, after every chunk is durable."
    )]
    Backup {
        /// Source name from the config.
        source: String,
        /// Chunks compressed or uploaded at once.
        #[arg(long, default_value_t = 4)]
        uploads: usize,
    },
    /// List snapshots (from the catalog; `catalog rebuild` refreshes it from the repositories).
    Snapshots {
        /// Only this source's snapshots.
        #[arg(long)]
        source: Option<String>,
        /// Read the repositories instead of the catalog.
        #[arg(long)]
        from_repository: bool,
    },
    /// Check snapshots: every chunk present, or with --read-data every chunk re-read and re-hashed.
    #[command(after_help = "Examples:\n  lifeboat verify --all\n  lifeboat verify 20261124T101500Z-1a2b --read-data")]
    Verify {
        /// Snapshot id or unique prefix.
        snapshot: Option<String>,
        /// Every snapshot in every repository (or in --repository).
        #[arg(long, conflicts_with = "snapshot")]
        all: bool,
        /// Download, decrypt and re-hash every chunk instead of checking presence.
        #[arg(long)]
        read_data: bool,
        /// Limit to one repository.
        #[arg(long)]
        repository: Option<String>,
    },
    /// Restore a snapshot into an empty database. Refuses a non-empty target and the source itself.
    #[command(
        after_help = "Example:\n  createdb orders_check && lifeboat restore 20261124T101500Z-1a2b --into-dsn postgres://postgres@127.0.0.1/orders_check\n\n\
With --jobs > 1 the restore runs while the archive is fetched: the schema is created as soon as its table of \
contents is proven, each table's data is loaded in parallel but committed only once every chunk is proven, \
then indexes and constraints follow. A damaged backup leaves the empty schema, marked INCOMPLETE, and no data. \
The archive is staged in memory when it takes at most a quarter of the available memory, else in --work-dir \
(or always there, with --stage-on-disk). With --jobs 1 it streams into one transaction, so a damaged backup \
leaves the target empty."
    )]
    Restore {
        /// Snapshot id or unique prefix.
        snapshot: String,
        /// Target database (must exist and be empty), as postgres://USER@HOST:PORT/DATABASE.
        // A string, not a `url::Url`: clap would echo a value it cannot parse, password and all.
        #[arg(long, value_name = "DSN")]
        into_dsn: String,
        /// Environment variable holding the target's password. Not for a restore that needs
        /// approval (over a non-empty database): the approver's process would read it; use the
        /// ~/.pgpass of the account that runs it instead.
        #[arg(long, value_name = "VAR")]
        password_env: Option<String>,
        /// Parallel restore jobs.
        #[arg(long, short = 'j', default_value_t = 2)]
        jobs: u32,
        /// Skip ownership and privileges (the target lacks the source's roles).
        #[arg(long)]
        no_owner: bool,
        /// Where a parallel restore stages the verified archive when it does not fit in memory
        /// (default: the system temp dir).
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Stage the archive in --work-dir even when it would fit in memory.
        #[arg(long)]
        stage_on_disk: bool,
        /// The repository to restore from, when the snapshot is in several (copies).
        #[arg(long)]
        repository: Option<String>,
    },
    /// Apply a retention policy: tombstone what it forgets, delete what was tombstoned longer than the
    /// grace period, then free the chunks no snapshot needs.
    #[command(
        after_help = "Examples:\n  lifeboat prune rental --keep-last 7 --keep-daily 14 --keep-weekly 8 --keep-monthly 12 --dry-run\n  lifeboat prune --repository offsite --keep-daily 30\n\n\
Rules follow restic: --keep-daily 14 keeps the newest snapshot of each of the 14 most recent days that have one \
(in --timezone); a snapshot kept by several rules lists them all; the newest snapshot, snapshots younger than \
--min-age and the newest one a drill passed are always kept. Forgotten snapshots are tombstoned first \
(`--undelete ID` takes one back) and deleted by a prune after --grace (default 7d); chunks go last, and only \
those no remaining snapshot of any source references. Prune holds the repository alone: it refuses while a \
backup, restore or drill reads it, and they refuse while it runs. Deleting needs the repository's deleting \
credential. Drill evidence is kept."
    )]
    Prune(prune_cmds::PruneArgs),
    /// Copy snapshots (chunks, manifests, drill evidence) into a second repository, byte for byte.
    #[command(
        after_help = "Examples:\n  lifeboat copy --from local --to offsite --dry-run\n  lifeboat copy --from local --to offsite --source rental\n\n\
The destination must name chunks like the source: both unencrypted, or encrypted with the same address key and \
recipients (`lifeboat init offsite --like local` creates such a repository). Every chunk is read back and checked \
before it is written, so damage is never copied: a snapshot with a missing or damaged object fails, naming it, \
and the others go on (exit 4). Chunks the destination holds are skipped; each manifest is written last and \
create-only, so an interrupted copy leaves no half snapshot and running it again finishes it. The destination \
holds a shared lock meanwhile, like a backup."
    )]
    Copy(copy_cmds::CopyArgs),
    /// Recovery drills: restore into a throwaway scratch environment, check, measure RTO/RPO.
    Drill {
        #[command(subcommand)]
        action: DrillAction,
    },
    /// Per source: the SLA's RTO/RPO, the last measured, p50/p95 over recent drills, share within SLA.
    Sla,
    /// The catalog: history and cache; the repositories are the truth.
    Catalog {
        #[command(subcommand)]
        action: CatalogAction,
    },
    /// Validate the config: every problem with file:line:column and the fix.
    CheckConfig,
    /// Run unattended: back up, verify, prune and drill on their schedules, alert, serve metrics.
    #[command(after_help = "Example:\n  lifeboat daemon\n\n\
Schedules are crontab lines (5 fields, Monday = 1, or 6 with seconds first) under each source's `schedule:` \
and in each drill file, read in `daemon.timezone` unless they start with `CRON_TZ=Zone/Name`. Each run is \
claimed in the catalog first, so daemons sharing a PostgreSQL catalog run it once between them and a job never \
overlaps itself. Runs missed while no daemon ran are run once at start when within `daemon.catch_up`, and \
reported as missed otherwise. SIGTERM/SIGINT: no new jobs, running ones get `daemon.shutdown_grace`, then are \
cancelled cleanly; exit 0. Serves /metrics and /healthz on `daemon.listen` (default 127.0.0.1:9187). Logs go \
to stderr (LIFEBOAT_LOG, default info).")]
    Daemon,
    /// The scheduled jobs: schedule, next run, last outcome, and which daemon runs them now.
    Jobs,
    /// Shared-fate analysis: every way a backup would die together with its data. Exit 1 when a
    /// finding is critical.
    #[command(
        after_help = "Examples:\n  lifeboat fate\n  lifeboat fate --probe --json\n  lifeboat fate --explain same-device\n\n\
Every source is judged with every repository that holds or receives its backups. Rules: same-device, same-host, \
no-immutability, deletable, shared-credentials, db-user-can-write, single-copy, same-provider-region, key-with-data, \
untested, scratch-is-production, retention-too-short. Each finding names its rule, severity (critical, warning, \
info), the evidence and the fix; an `info` finding says that a rule could not be judged and what it lacks. \
Exit 0 when no finding is critical, 1 otherwise; `--explain` exits 0."
    )]
    Fate(fate_cmds::FateArgs),
    /// API tokens: create (the secret is shown once), list, revoke.
    Token {
        #[command(subcommand)]
        action: control_cmds::TokenAction,
    },
    /// Approval requests: destructive actions wait here for another principal.
    #[command(
        after_help = "Examples:\n  lifeboat approvals\n  lifeboat approvals --state pending --json\n\n\
Deleting a snapshot, a prune that deletes, restoring over existing data, lowering retention, disabling a drill, \
job or alert route and removing a repository each create a request instead of acting. Another principal with \
`approve` for its environments and sources approves it (`lifeboat approve ID`); the requester never can. When \
the last approval needed arrives (control.approvals, e.g. 2 for production) it runs, exactly once, as it was \
requested. Requests expire after control.approval_ttl (default 24h)."
    )]
    Approvals {
        /// Only requests in this state: pending, approved, denied, expired, running, done, failed.
        #[arg(long)]
        state: Option<String>,
    },
    /// Approve a request (needs LIFEBOAT_TOKEN with `approve`); the last approval needed runs it.
    Approve {
        /// The request's id (`apr_...`).
        id: String,
    },
    /// Deny a request: it will never run.
    Deny {
        /// The request's id (`apr_...`).
        id: String,
        /// Why, for the requester and the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Ask for a snapshot to be deleted: creates an approval request.
    Delete {
        /// Snapshot id or unique prefix.
        snapshot: String,
        /// The repository, when the snapshot is in several.
        #[arg(long)]
        repository: Option<String>,
    },
    /// Ask for a drill, a job, an alert route or a repository to be switched off: creates an
    /// approval request.
    #[command(
        after_help = "Targets: drill:NAME, job:KIND:TARGET (e.g. job:backup:orders, job:verify:orders), \
route:NAME, repository:NAME (its backups, drills and copies stop; restoring from it still works)."
    )]
    Disable {
        /// What to switch off, e.g. drill:orders-nightly (see below).
        target: String,
    },
    /// Switch a disabled drill, job, alert route or repository back on (no approval needed;
    /// repository:NAME needs admin).
    Enable {
        /// What to switch back on: drill:NAME, job:KIND:TARGET, route:NAME or repository:NAME.
        target: String,
    },
    /// The audit log: who did what, when, what was decided and how it ended.
    #[command(after_help = "Examples:\n  lifeboat audit --limit 50\n  lifeboat audit verify\n\n\
Every API call and CLI action is appended to a hash chain in the catalog and copied into each repository under \
audit/. `audit verify` recomputes the chain and compares it with those copies: an edited, removed or reordered \
entry is named, with exit 4.")]
    Audit {
        #[command(subcommand)]
        action: Option<control_cmds::AuditAction>,
        /// Entries after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Subcommand, Debug)]
enum DrillAction {
    /// Run one drill now (its schedule is for the daemon). Verdict exit codes: pass 0, error 1,
    /// fail 4, sla-breach 5.
    #[command(
        after_help = "Examples:\n  lifeboat drill run rental-nightly\n  lifeboat drill run rental-nightly --negative-control\n\n\
Phases: select, provision, fetch-and-verify, restore, checks, teardown. RTO is the wall time from the start \
until the checks passed; RPO is the age of the restored snapshot at the start. The result is recorded in the \
catalog and, as evidence, in the repository."
    )]
    Run {
        /// Drill name (`lifeboat drill list` shows them).
        name: String,
        /// Delete a row from the restored copy before the checks: succeeds only if the drill then fails,
        /// proving the checks can catch lost data.
        #[arg(long)]
        negative_control: bool,
    },
    /// The drills defined in the drills directory, with their last verdict.
    List,
    /// Past runs of one drill, newest first.
    History {
        /// Drill name.
        name: String,
        /// At most this many runs, newest first.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

#[derive(Subcommand, Debug)]
enum CatalogAction {
    /// Recreate the catalog's snapshot list from the repositories alone.
    Rebuild,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon's log is its record of what it did; a command's is only for trouble.
    init_logging(if matches!(cli.command, Command::Daemon) {
        "info"
    } else {
        "warn"
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Failed.into();
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("error: {}", e.message);
            e.exit.into()
        }
    }
}

async fn run(cli: Cli) -> Result<Exit, CliError> {
    let out = render::Output {
        json: cli.json,
        progress: !cli.quiet,
    };
    match cli.command {
        Command::Demo(args) => demo::run(args, &out).await,
        Command::CheckConfig => check_config::run(&cli.config, &out),
        // Explaining a rule needs no config.
        Command::Fate(fate_cmds::FateArgs {
            explain: Some(rule), ..
        }) => fate_cmds::explain(&rule, &out),
        command => {
            let ctx = context::Context::load(&cli.config)?;
            // The daemon audits its API calls itself.
            let audited = !matches!(command, Command::Daemon);
            let result = dispatch(&ctx, command, &out).await;
            if audited {
                control_cmds::record(&ctx, &result).await;
            }
            result
        }
    }
}

async fn dispatch(ctx: &context::Context, command: Command, out: &render::Output) -> Result<Exit, CliError> {
    use crate::control::Operation;
    use control_cmds::require;
    match command {
        Command::Init { repository, like } => {
            require(ctx, Operation::Admin, "create a repository", &[]).await?;
            repo_cmds::init(ctx, repository, like, out).await
        }
        Command::Backup { source, uploads } => {
            require(ctx, Operation::Backup, &format!("back up {source}"), &[&source]).await?;
            control_cmds::in_use(ctx, &ctx.source(&source)?.repository).await?;
            repo_cmds::backup(ctx, &source, uploads, out).await
        }
        Command::Snapshots {
            source,
            from_repository,
        } => {
            require(ctx, Operation::Read, "list snapshots", &[]).await?;
            repo_cmds::snapshots(ctx, source, from_repository, out).await
        }
        Command::Verify {
            snapshot,
            all,
            read_data,
            repository,
        } => {
            require(ctx, Operation::Read, "verify snapshots", &[]).await?;
            repo_cmds::verify(ctx, snapshot, all, read_data, repository, out).await
        }
        Command::Restore {
            snapshot,
            into_dsn,
            password_env,
            jobs,
            no_owner,
            work_dir,
            stage_on_disk,
            repository,
        } => {
            repo_cmds::restore(
                ctx,
                &snapshot,
                into_dsn,
                password_env,
                jobs,
                no_owner,
                crate::ops::Staging {
                    dir: work_dir,
                    disk_only: stage_on_disk,
                },
                repository,
                out,
            )
            .await
        }
        Command::Catalog {
            action: CatalogAction::Rebuild,
        } => {
            require(ctx, Operation::Admin, "rebuild the catalog", &[]).await?;
            repo_cmds::catalog_rebuild(ctx, out).await
        }
        Command::Drill {
            action: DrillAction::Run { name, negative_control },
        } => drill_cmds::run_drill(ctx, &name, negative_control, out).await,
        Command::Drill {
            action: DrillAction::List,
        } => {
            require(ctx, Operation::Read, "list drills", &[]).await?;
            drill_cmds::list(ctx, out).await
        }
        Command::Drill {
            action: DrillAction::History { name, limit },
        } => {
            require(ctx, Operation::Read, "read drill history", &[]).await?;
            drill_cmds::history(ctx, &name, limit, out).await
        }
        Command::Sla => {
            require(ctx, Operation::Read, "read the SLA", &[]).await?;
            drill_cmds::sla(ctx, out).await
        }
        Command::Prune(args) => prune_cmds::prune(ctx, args, out).await,
        Command::Copy(args) => {
            require(ctx, Operation::Backup, "copy snapshots", &[]).await?;
            copy_cmds::copy(ctx, args, out).await
        }
        Command::Jobs => {
            require(ctx, Operation::Read, "list jobs", &[]).await?;
            daemon_cmds::jobs(ctx, out).await
        }
        Command::Daemon => daemon_cmds::daemon(ctx.clone()).await,
        Command::Fate(args) => {
            require(ctx, Operation::Read, "analyse shared fate", &[]).await?;
            fate_cmds::fate(ctx, args, out).await
        }
        Command::Token { action } => control_cmds::token(ctx, action, out).await,
        Command::Approvals { state } => control_cmds::approvals(ctx, state, out).await,
        Command::Approve { id } => control_cmds::approve(ctx, &id, out).await,
        Command::Deny { id, reason } => control_cmds::deny(ctx, &id, reason, out).await,
        Command::Delete { snapshot, repository } => {
            control_cmds::delete_snapshot(ctx, &snapshot, repository.as_deref(), out).await
        }
        Command::Disable { target } => control_cmds::disable(ctx, &target, false, out).await,
        Command::Enable { target } => control_cmds::disable(ctx, &target, true, out).await,
        Command::Audit {
            action: Some(control_cmds::AuditAction::Verify),
            ..
        } => control_cmds::audit_verify(ctx, out).await,
        Command::Audit {
            action: None,
            after,
            limit,
        } => control_cmds::audit_list(ctx, after, limit, out).await,
        Command::Demo(_) | Command::CheckConfig => unreachable!("handled above"),
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LIFEBOAT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a log file or journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
