//! Errors of the scratch module. Each message says what failed and what to do next, because the
//! person reading it is usually on-call in the middle of a drill, not the author of this code.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error(
        "PostgreSQL server binaries not found (looked in: {searched}); fix: install the \
         postgresql server package, or set pg_bin_dir (EphemeralOptions::bin_dir, or the \
         LIFEBOAT_PG_BIN_DIR environment variable) to the directory that holds initdb"
    )]
    BinariesNotFound { searched: String },

    #[error(
        "{tool} not found in {dir}; fix: install the postgresql server binaries there or set \
         pg_bin_dir to a directory that holds initdb, pg_ctl, postgres and psql"
    )]
    MissingTool { tool: &'static str, dir: PathBuf },

    #[error(
        "running as root but the OS user `{user}` cannot be used ({reason}); initdb refuses to \
         run as root; fix: create a `{user}` system user (the postgresql package does) or run \
         Lifeboat as an unprivileged user"
    )]
    OsUser { user: String, reason: String },

    #[error(
        "{path} is not searchable by the OS user `{user}` that runs the scratch cluster; fix: \
         choose a parent_dir whose every ancestor is world-searchable (e.g. /tmp), or `chmod o+x` \
         the directory"
    )]
    NotSearchable { path: PathBuf, user: String },

    #[error(
        "the socket path {path} is {len} bytes, over the {max}-byte limit of Unix sockets; fix: \
         choose a shorter parent_dir (e.g. /tmp)"
    )]
    SocketPathTooLong { path: PathBuf, len: usize, max: usize },

    #[error("could not {action} {path}: {source}; fix: {fix}")]
    Io {
        action: &'static str,
        path: PathBuf,
        fix: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("could not run {program}: {source}; fix: check that it exists and is executable")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{step} failed ({status}):\n{output}\nfix: {fix}")]
    ToolFailed {
        step: String,
        status: String,
        output: String,
        fix: String,
    },

    #[error(
        "the scratch PostgreSQL server in {data_dir} did not start ({status}); last lines of its \
         log:\n{log_tail}\nfix: read the log above; common causes are too little shared memory, a \
         full disk, or a data directory the server's OS user cannot write"
    )]
    StartFailed {
        data_dir: PathBuf,
        status: String,
        log_tail: String,
    },

    #[error(
        "psql on database `{database}` failed ({status}):\n{stderr}\nfix: correct the SQL, or \
         create the database first with create_database"
    )]
    Psql {
        database: String,
        status: String,
        stderr: String,
    },

    #[error(
        "invalid scratch marker {path}: {reason}; fix: if no Lifeboat process owns that \
         directory, stop any server in it and delete it by hand"
    )]
    BadMarker { path: PathBuf, reason: String },
}

impl ScratchError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        fix: &'static str,
        source: std::io::Error,
    ) -> Self {
        ScratchError::Io {
            action,
            path: path.into(),
            fix,
            source,
        }
    }
}
