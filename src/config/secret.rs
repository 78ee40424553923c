//! Secrets: where they come from (env var or file) and the value once read.
//!
//! The config file never holds a secret, only a reference to one. References are resolved
//! lazily: a `backup` of one source needs only that source's password, and
//! `check-config` resolves all of them to report every missing one.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

use super::error::{ConfigError, Problem};

/// A secret value. `Debug` prints `[redacted]`; there is no `Display`, so it cannot end up in
/// a `format!` by accident. Call [`Secret::expose`] at the one place the value is needed.
pub struct Secret(SecretString);

impl Secret {
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub(crate) fn new(value: String) -> Secret {
        Secret(SecretString::from(value))
    }
}

/// For values that are already resolved (a secret read by another layer, a test's own value).
/// The config file itself only ever names a [`SecretRef`].
impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret::new(value)
    }
}

impl Clone for Secret {
    fn clone(&self) -> Secret {
        Secret::new(self.expose().to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where a secret lives: the name of an environment variable, or a file (absolute, or
/// resolved against the config file's directory at load time).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl SecretRef {
    /// Reads the secret now.
    ///
    /// Files readable by group or others are refused: a secret that any local user can read
    /// is not a secret. Trailing line breaks are stripped (editors add them; `echo` too).
    /// Errors name the variable or file, never the value, and carry no config location;
    /// [`crate::config::Config::check`] adds it.
    pub fn resolve(&self) -> Result<Secret, ConfigError> {
        let value = match self {
            SecretRef::Env(name) => resolve_env(name)?,
            SecretRef::File(path) => resolve_file(path)?,
        };
        let value = value.trim_end_matches(['\n', '\r']).to_owned();
        if value.is_empty() {
            return Err(ConfigError::one(Problem::detached(
                format!("the secret in {} is empty", self.describe()),
                format!("put the secret in {}", self.describe()),
            )));
        }
        Ok(Secret::new(value))
    }

    /// Where the secret comes from, for messages: `env ORDERS_PG_PASSWORD` or `file /x`.
    pub fn describe(&self) -> String {
        match self {
            SecretRef::Env(name) => format!("env {name}"),
            SecretRef::File(path) => format!("file {}", path.display()),
        }
    }
}

fn resolve_env(name: &str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(value) => Ok(value),
        Err(std::env::VarError::NotPresent) => Err(ConfigError::one(Problem::detached(
            format!("environment variable `{name}` is not set"),
            format!(
                "set `{name}` in the environment that runs lifeboat \
                 (e.g. `export {name}=...`, or `Environment=`/`EnvironmentFile=` in a systemd unit)"
            ),
        ))),
        Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::one(Problem::detached(
            format!("environment variable `{name}` is not valid UTF-8"),
            format!("set `{name}` to a UTF-8 value"),
        ))),
    }
}

fn resolve_file(path: &std::path::Path) -> Result<String, ConfigError> {
    let shown = path.display();
    let fail = |message: String, fix: String| Err(ConfigError::one(Problem::detached(message, fix)));
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return fail(
                format!("secret file {shown} does not exist"),
                format!(
                    "create {shown} holding only the secret, then `chmod 600 {shown}`; \
                     or correct the path (relative paths start at the config file's directory)"
                ),
            );
        }
        Err(e) => {
            return fail(
                format!("cannot read secret file {shown}: {e}"),
                format!("make {shown} readable by the user running lifeboat (and no one else)"),
            );
        }
    };
    if !meta.is_file() {
        return fail(
            format!("secret file {shown} is not a regular file"),
            "point this key at a file that holds only the secret".to_owned(),
        );
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return fail(
            format!("secret file {shown} can be read by group or others (mode {mode:04o})"),
            format!("run `chmod 600 {shown}`"),
        );
    }
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Ok(text),
            Err(_) => fail(
                format!("secret file {shown} is not valid UTF-8"),
                format!("write the secret to {shown} as UTF-8 text"),
            ),
        },
        Err(e) => fail(
            format!("cannot read secret file {shown}: {e}"),
            format!("make {shown} readable by the user running lifeboat (and no one else)"),
        ),
    }
}
