//! `EphemeralPostgres`: a throwaway PostgreSQL cluster in a temp directory, reachable only through
//! a Unix socket in that directory, torn down on `stop` or on drop.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::marker::{Marker, scratch_dirs};
use super::os_user::{OsUser, command};
use super::{ScratchError, bin_dir, quote, reap_orphans, run, teardown};

/// The data directory's name inside the scratch directory.
pub(crate) const DATA_SUBDIR: &str = "data";
const LOG_FILE: &str = "server.log";
/// Unix socket paths must fit `sun_path` (108 bytes with the terminating NUL on Linux).
const MAX_SOCKET_PATH: usize = 107;
/// Socket "ports" are drawn from here; the number only names the socket file.
const PORT_RANGE: std::ops::Range<u16> = 20000..60000;
/// Seconds pg_ctl waits for the server to come up or go down.
const PG_CTL_WAIT_SECS: &str = "60";

/// Where and with what a cluster is created. `Default` discovers everything.
#[derive(Debug, Clone, Default)]
pub struct EphemeralOptions {
    /// Directory holding initdb, pg_ctl, postgres and psql. Default: `$LIFEBOAT_PG_BIN_DIR`, else
    /// `pg_config --bindir`, else the newest `/usr/lib/postgresql/<N>/bin`, else `PATH`.
    pub bin_dir: Option<PathBuf>,
    /// Where the cluster's temp directory is created. Default: `std::env::temp_dir()`.
    pub parent_dir: Option<PathBuf>,
}

/// A running throwaway cluster. Superuser `postgres`, trust authentication, no TCP listener.
#[derive(Debug)]
pub struct EphemeralPostgres {
    dir: PathBuf,
    data_dir: PathBuf,
    bin_dir: PathBuf,
    port: u16,
    /// The OS user the server runs as, when that is not us (we are root).
    server_user: Option<OsUser>,
    /// Cleared by a successful `stop`, so `Drop` does not tear down twice.
    armed: bool,
}

impl EphemeralPostgres {
    /// Creates, configures and starts a cluster. Also reaps orphans that dead processes left in
    /// the same parent directory, so killed test runs do not leak servers.
    pub async fn start(opts: &EphemeralOptions) -> Result<Self, ScratchError> {
        let bin_dir = bin_dir::resolve(opts.bin_dir.as_deref())?;
        let parent = opts.parent_dir.clone().unwrap_or_else(std::env::temp_dir);
        let unwritable = |e| ScratchError::io("create", &parent, "choose a writable parent_dir", e);
        std::fs::create_dir_all(&parent).map_err(unwritable)?;
        // Absolute, because the path goes into the server's config and into DSNs.
        let parent = std::path::absolute(&parent).map_err(unwritable)?;
        let reap_parent = parent.clone();
        let _ = tokio::task::spawn_blocking(move || reap_orphans(&reap_parent)).await;

        let server_user = OsUser::for_server()?;
        let port = pick_port(&parent);
        // 0700: with trust authentication, whoever can reach the socket is superuser.
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-pg-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&parent)
            .map_err(unwritable)?
            .keep();
        // From here on, dropping `pg` on any error removes the directory again.
        let pg = EphemeralPostgres {
            data_dir: dir.join(DATA_SUBDIR),
            dir,
            bin_dir,
            port,
            server_user,
            armed: true,
        };
        Marker::for_this_process(port, &pg.bin_dir, &pg.data_dir).write(&pg.dir)?;
        if let Some(user) = &pg.server_user {
            user.check_searchable(&pg.dir)?;
            user.chown(&pg.dir)?;
        }
        pg.check_socket_path()?;
        pg.initdb().await?;
        pg.write_config()?;
        pg.pg_ctl_start().await?;
        Ok(pg)
    }

    /// A libpq URI for `database`, accepted by psql/pg_dump (libpq) and by sqlx: the socket
    /// directory and port go in the query string, which both override the host part.
    pub fn dsn(&self, database: &str) -> String {
        format!(
            "postgresql://postgres@localhost/{}?host={}&port={}",
            quote::uri_component(database, b""),
            quote::uri_component(&self.dir.to_string_lossy(), b"/"),
            self.port
        )
    }

    /// The directory holding the server's socket (`.s.PGSQL.<port>`); also the scratch directory.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The port number; with no TCP listener it only names the socket file.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The PostgreSQL binaries this cluster was created with; use its pg_dump/pg_restore too, so
    /// client and server versions match.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// A command for `tool` from `bin_dir`, run as the server's OS user with `PG*` variables
    /// cleared: for tools that must touch the data directory (pg_ctl, pg_resetwal, …).
    pub fn server_command(&self, tool: &str) -> tokio::process::Command {
        command(&self.bin_dir.join(tool), self.server_user.as_ref(), &self.dir).into()
    }

    pub async fn create_database(&self, name: &str) -> Result<(), ScratchError> {
        self.psql("postgres", &format!("CREATE DATABASE {}", quote::ident(name)))
            .await
            .map(drop)
    }

    /// Runs `sql` (a script: several statements and psql meta-commands are fine) with
    /// `psql -X -q -At -v ON_ERROR_STOP=1` and returns its stdout without the trailing newline:
    /// unaligned, tuples only, `|` between columns, one row per line.
    pub async fn psql(&self, database: &str, sql: &str) -> Result<String, ScratchError> {
        let mut cmd = command(&self.bin_dir.join("psql"), None, &self.dir);
        cmd.args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-f", "-", "-d"])
            .arg(self.dsn(database));
        let out = run::output(cmd, Some(sql)).await?;
        if !out.status.success() {
            return Err(ScratchError::Psql {
                database: database.into(),
                status: out.status.to_string(),
                stderr: run::combined(&out),
            });
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        Ok(stdout.trim_end_matches('\n').to_owned())
    }

    /// Restarts the server (fast shutdown), e.g. after `ALTER SYSTEM` of a setting that needs it.
    pub async fn restart(&self) -> Result<(), ScratchError> {
        let mut cmd = self.pg_ctl();
        cmd.args(["restart", "-m", "fast", "-w", "-t", PG_CTL_WAIT_SECS, "-s", "-l"])
            .arg(self.dir.join(LOG_FILE));
        let out = run::output(cmd, None).await?;
        if out.status.success() {
            return Ok(());
        }
        Err(self.start_failed(&out))
    }

    /// Fast shutdown (`pg_ctl stop -m fast`), then removes the directory. On error, the value's
    /// drop still forces the server down and removes the directory.
    pub async fn stop(mut self) -> Result<(), ScratchError> {
        let mut cmd = self.pg_ctl();
        cmd.args(["stop", "-m", "fast", "-w", "-t", PG_CTL_WAIT_SECS, "-s"]);
        run::checked(
            cmd,
            "pg_ctl stop",
            "the server is force-stopped when this value drops; if one survives, run reap_orphans",
        )
        .await?;
        std::fs::remove_dir_all(&self.dir)
            .map_err(|e| ScratchError::io("remove", &self.dir, "delete the directory by hand", e))?;
        self.armed = false;
        Ok(())
    }

    fn pg_ctl(&self) -> std::process::Command {
        let mut cmd = command(&self.bin_dir.join("pg_ctl"), self.server_user.as_ref(), &self.dir);
        cmd.arg("-D").arg(&self.data_dir);
        cmd
    }

    fn check_socket_path(&self) -> Result<(), ScratchError> {
        let path = self.dir.join(format!(".s.PGSQL.{}", self.port));
        let len = path.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(ScratchError::SocketPathTooLong {
                path,
                len,
                max: MAX_SOCKET_PATH,
            });
        }
        Ok(())
    }

    async fn initdb(&self) -> Result<(), ScratchError> {
        let mut cmd = command(&self.bin_dir.join("initdb"), self.server_user.as_ref(), &self.dir);
        // C locale: available everywhere and independent of the host's environment.
        cmd.args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .args(["--locale=C", "-D"])
            .arg(&self.data_dir);
        run::checked(
            cmd,
            "initdb",
            "check free disk space and that the server's OS user can write the scratch directory",
        )
        .await
        .map(drop)
    }

    /// Settings go into postgresql.conf rather than `pg_ctl -o`, which passes them through a
    /// shell where a path with spaces or quotes would break.
    fn write_config(&self) -> Result<(), ScratchError> {
        let dir = self.dir.to_string_lossy();
        let settings = format!(
            "\n# Lifeboat scratch cluster: Unix socket only; speed over durability, it is thrown away\n\
             listen_addresses = ''\n\
             unix_socket_directories = {}\n\
             port = {}\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             # A restore is one bulk load: no WAL beyond crash safety, no checkpoints midway, no\n\
             # autovacuum competing with it, and room for index builds in memory.\n\
             wal_level = minimal\n\
             max_wal_senders = 0\n\
             max_wal_size = 8GB\n\
             checkpoint_timeout = 1h\n\
             autovacuum = off\n\
             shared_buffers = 256MB\n\
             maintenance_work_mem = 256MB\n\
             max_connections = 50\n",
            quote::conf_string(&dir),
            self.port
        );
        let path = self.data_dir.join("postgresql.conf");
        let append = || -> std::io::Result<()> {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
            file.write_all(settings.as_bytes())
        };
        append().map_err(|e| ScratchError::io("append to", &path, "check that initdb created the data directory", e))
    }

    async fn pg_ctl_start(&self) -> Result<(), ScratchError> {
        let mut cmd = self.pg_ctl();
        cmd.args(["start", "-w", "-t", PG_CTL_WAIT_SECS, "-s", "-l"])
            .arg(self.dir.join(LOG_FILE));
        let out = run::output(cmd, None).await?;
        if out.status.success() {
            return Ok(());
        }
        Err(self.start_failed(&out))
    }

    fn start_failed(&self, out: &std::process::Output) -> ScratchError {
        let log = std::fs::read_to_string(self.dir.join(LOG_FILE)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        ScratchError::StartFailed {
            data_dir: self.data_dir.clone(),
            status: out.status.to_string(),
            log_tail: format!("{}\n{tail}", run::combined(out)).trim().to_owned(),
        }
    }
}

impl Drop for EphemeralPostgres {
    /// Best effort, synchronous: immediate shutdown and removal, so that a panicking test leaves
    /// neither a server nor a directory behind.
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Err(e) = teardown::destroy(&self.dir, &self.data_dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "scratch cluster not removed; reap_orphans will retry");
        }
    }
}

/// A socket number that no other scratch cluster under `parent` uses, so that names in logs and
/// DSNs are unambiguous. Starts from a per-process pseudo-random point to spread concurrent
/// starters apart.
fn pick_port(parent: &Path) -> u16 {
    let used: HashSet<u16> = scratch_dirs(parent)
        .unwrap_or_default()
        .iter()
        .filter_map(|dir| Marker::read(dir).ok().flatten())
        .map(|m| m.port)
        .collect();
    let span = u32::from(PORT_RANGE.end - PORT_RANGE.start);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = std::process::id().wrapping_mul(2_654_435_761) ^ nanos;
    (0..span)
        .map(|i| PORT_RANGE.start + ((seed.wrapping_add(i)) % span) as u16)
        .find(|p| !used.contains(p))
        .unwrap_or(PORT_RANGE.start)
}
