//! `config/lifeboat.yaml` → a validated, typed [`Config`].
//!
//! - Every error says where (`file:line:column`), what is wrong, and a `fix:`; semantic
//!   problems are all reported at once ([`ConfigError::all`]).
//! - Unknown keys are errors, so a typo never silently disables a setting.
//! - Secrets are never in the file: only `*_env` (a variable's name) or `*_file` (a path,
//!   refused if group or others can read it). They are resolved lazily with
//!   [`SecretRef::resolve`]; [`Config::check`] resolves all of them, and [`check_file`]
//!   does so even for a file with validation problems, so `check-config` lists everything.
//! - Relative paths in the file resolve against the file's own directory.
//!
//! Files: `raw` (serde shapes with positions), `validate` (raw → model), `model` (the
//! typed config; `service` and `fate` hold the daemon's and the shared-fate analysis' parts),
//! `secret`, `check` (secrets and paths on this machine), `error`, `syntax` (YAML errors →
//! problems).

mod check;
mod control;
mod error;
mod fate;
mod model;
mod raw;
mod secret;
mod service;
mod syntax;
mod validate;

use std::path::{Path, PathBuf};

pub use control::{ControlConfig, TlsConfig};
pub use error::{ConfigError, Position, Problem};
pub use fate::{CloudIdentityConfig, FateConfig};
pub use model::{CatalogConfig, Config, EncryptionConfig, RepositoryConfig, SourceConfig, SourceKind};
pub use secret::{Secret, SecretRef};
pub use service::{
    AlertsConfigSpec, DaemonConfig, RouteSpec, SeverityFloor, SinkSpec, SmtpTls, SourcePings, SourceSchedules,
};

// Shared with the drill files' loader (`crate::drill::spec`), which reports problems the
// same way and follows the same rules for names, paths, secrets and environments.
pub(crate) use check::Target;
pub(crate) use error::{backticked, did_you_mean, sort_problems};
pub(crate) use syntax::yaml_problem;
pub(crate) use validate::{Validator, pos};

/// Reads, parses and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_str(&read(path)?, path)
}

/// Parses and validates `text` as if it had been read from `origin` (which is used in
/// messages and as the base for relative paths; it need not exist).
pub fn load_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    validate::validate(text, origin)?.into_config()
}

/// Every problem with the config file at `path`, in file order, each once: what validation
/// finds, plus every secret that does not resolve and every path that is wrong on this
/// machine ([`Config::check`]), including those of a file that does not validate. Empty
/// means the config is ready to use. A file that cannot be read or parsed gives one problem.
pub fn check_file(path: &Path) -> Vec<Problem> {
    load_checked(path).err().unwrap_or_default()
}

/// Like [`check_file`], but gives the config when there is no problem at all.
pub fn load_checked(path: &Path) -> Result<Config, Vec<Problem>> {
    let text = read(path).map_err(ConfigError::into_problems)?;
    validate::validate(&text, path)
        .map_err(ConfigError::into_problems)?
        .into_checked()
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| {
        let fix = if e.kind() == std::io::ErrorKind::NotFound {
            "create it (config/lifeboat.yaml in the Lifeboat sources is a commented example), \
             or point `--config` / LIFEBOAT_CONFIG at the right file"
        } else {
            "make the file readable by the user running lifeboat"
        };
        ConfigError::one(Problem::new(
            path,
            None,
            format!("cannot read the config file: {e}"),
            fix,
        ))
    })
}

/// The config path used when none is given. `$LIFEBOAT_CONFIG` is handled by the CLI.
pub fn default_path() -> PathBuf {
    PathBuf::from("config/lifeboat.yaml")
}
