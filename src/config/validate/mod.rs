//! From the file as written (`raw`) to the typed config (`model`), collecting every
//! problem instead of stopping at the first.
//!
//! Each step returns `Option`: `None` means "absent or invalid", and invalid always comes
//! with a problem pushed to `Validator::problems`. The config is built only when no
//! problem was found, so the `None`s never reach it.
//!
//! Along the way every secret reference and checked path that could be read is recorded as
//! a [`Check`], even when other parts of the file are wrong, so that `check-config` can
//! report an unset variable together with the validation problems.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::check::{self, Check, Target};
use super::error::{ConfigError, Position, Problem, sort_problems};
use super::model::{CatalogConfig, Config};
use super::raw::{Named, RawCatalog, RawConfig, S};
use super::secret::SecretRef;
use super::syntax::yaml_problem;

mod fate;
mod repository;
mod service;
mod source;

const REPO_URL_FORMS: &str =
    "`file:///abs/path`, `s3://bucket/prefix`, `gs://bucket/prefix` or `az://container/prefix`";

/// What validation made of a file that parses: the config if it is valid, every problem
/// found, and the checks recorded for every secret and path that could be read.
pub(super) struct Validated {
    file: PathBuf,
    config: Option<Config>,
    /// In file order.
    problems: Vec<Problem>,
    checks: Vec<Check>,
    /// Where the keys of `alerts:` are, for the problems found once its secrets are resolved.
    alert_places: BTreeMap<String, Position>,
}

/// Parses and validates; `Err` only for a file that does not parse (syntax and type errors
/// stop at the first problem: the parser cannot go on).
pub(super) fn validate(text: &str, origin: &Path) -> Result<Validated, ConfigError> {
    // `Option` so that an empty file (or one with only comments) is a config with nothing
    // in it, reported as "no sources" rather than as a parser error.
    let raw: Option<RawConfig> =
        serde_saphyr::from_str(text).map_err(|e| ConfigError::one(yaml_problem(&e, origin)))?;
    let mut v = Validator::new(origin);
    let config = match raw {
        Some(raw) => v.config(&raw),
        None => {
            v.nothing_defined();
            None
        }
    };
    let mut problems = v.problems;
    if config.is_none() && problems.is_empty() {
        // Unreachable by construction; never build a half-validated config.
        problems.push(Problem::new(
            origin,
            None,
            "the config could not be validated",
            "report this as a Lifeboat bug, with the config file",
        ));
    }
    sort_problems(&mut problems);
    Ok(Validated {
        file: origin.to_path_buf(),
        config: config.filter(|_| problems.is_empty()),
        problems,
        checks: v.checks,
        alert_places: v.alert_places,
    })
}

impl Validated {
    /// The config, if validation found no problem (secrets are not resolved).
    pub(super) fn into_config(self) -> Result<Config, ConfigError> {
        match self.config {
            Some(mut config) => {
                config.checks = self.checks;
                Ok(config)
            }
            None => Err(ConfigError::from_problems(self.problems)),
        }
    }

    /// Also runs every recorded check, valid config or not, and on a valid config the checks
    /// the daemon makes of `alerts:` once its secrets are resolved. `Ok` only when there is no
    /// problem at all; otherwise every problem, in file order, each once.
    pub(super) fn into_checked(self) -> Result<Config, Vec<Problem>> {
        let mut problems = self.problems;
        problems.extend(check::run(&self.file, &self.checks));
        if let Some(config) = &self.config {
            problems.extend(service::alert_problems(&self.file, &config.alerts, &self.alert_places));
        }
        sort_problems(&mut problems);
        let mut unique: Vec<Problem> = Vec::with_capacity(problems.len());
        for p in problems {
            if !unique.contains(&p) {
                unique.push(p);
            }
        }
        match self.config {
            Some(mut config) if unique.is_empty() => {
                config.checks = self.checks;
                Ok(config)
            }
            _ => Err(unique),
        }
    }
}

pub(crate) fn pos<T>(s: &S<T>) -> Option<Position> {
    Position::from_saphyr(s.referenced)
}

/// Entries of a name → value mapping in file order (the parser hands them over unordered).
fn in_file_order<T>(map: &Named<T>) -> Vec<(&S<String>, &S<T>)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| (pos(a.0), &a.0.value).cmp(&(pos(b.0), &b.0.value)));
    entries
}

/// Collects problems while turning raw values into typed ones. Also used by the drill
/// files' loader (`crate::drill::spec`), which shares the rules for paths, names, secrets
/// and environments.
pub(crate) struct Validator<'a> {
    pub(crate) file: &'a Path,
    /// The config file's directory, absolute: relative paths in the file start here.
    base: PathBuf,
    pub(crate) problems: Vec<Problem>,
    /// Every secret reference and checked path read so far, valid config or not.
    checks: Vec<Check>,
    /// Where the keys of `alerts:` are, by their path inside it (`sinks.NAME.tls`).
    alert_places: BTreeMap<String, Position>,
}

impl<'a> Validator<'a> {
    pub(crate) fn new(file: &'a Path) -> Validator<'a> {
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        // Absolute so that a later change of working directory cannot move state_dir.
        let base = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        Validator {
            file,
            base,
            problems: Vec::new(),
            checks: Vec::new(),
            alert_places: BTreeMap::new(),
        }
    }

    pub(crate) fn report(&mut self, at: Option<Position>, message: impl Into<String>, fix: impl Into<String>) {
        self.problems.push(Problem::new(self.file, at, message, fix));
    }

    /// Records something to check on this machine; see [`Check`].
    fn check(&mut self, key: String, at: Option<Position>, target: Target) {
        self.checks.push(Check { key, at, target });
    }

    /// Drops the checks recorded under `keys`: for values that validation refused outright,
    /// where "also, this variable is not set" would only be noise.
    fn forget_checks(&mut self, keys: &[String]) {
        self.checks.retain(|c| !keys.contains(&c.key));
    }

    fn nothing_defined(&mut self) {
        self.report(
            None,
            "the config defines no repositories and no sources",
            "add `repositories:` and `sources:` sections (the commented example \
             config/lifeboat.yaml shows every key)",
        );
    }

    fn config(&mut self, raw: &RawConfig) -> Option<Config> {
        let (state_dir, at) = match &raw.state_dir {
            Some(s) => (self.path("state_dir", s), pos(s)),
            None => (Some(self.base.join(".lifeboat-state")), None),
        };
        if let Some(dir) = &state_dir {
            self.check("state_dir".into(), at, Target::StateDir(dir.clone()));
        }
        let drills_dir = match &raw.drills_dir {
            Some(s) => self.path("drills_dir", s),
            None => Some(self.base.join("drills")),
        };
        let catalog = raw.catalog.as_ref().map(|c| self.catalog(c));
        let daemon = self.daemon(raw.daemon.as_ref());

        let mut repositories = BTreeMap::new();
        let mut repo_names = Vec::new();
        match &raw.repositories {
            Some(map) if !map.value.is_empty() => {
                for (key, repo) in in_file_order(&map.value) {
                    repo_names.push(key.value.as_str());
                    if let Some(r) = self.repository(key, repo) {
                        repositories.insert(r.name.clone(), r);
                    }
                }
            }
            other => self.report(
                other.as_ref().and_then(pos),
                "no repositories are defined",
                "add at least one under `repositories:`, e.g. `offsite:` with \
                 `url: s3://bucket/prefix` (see config/lifeboat.yaml)",
            ),
        }

        let mut sources = BTreeMap::new();
        match &raw.sources {
            Some(map) if !map.value.is_empty() => {
                for (key, source) in in_file_order(&map.value) {
                    if let Some(s) = self.source(key, source, &repo_names, daemon.timezone) {
                        sources.insert(s.name.clone(), s);
                    }
                }
            }
            other => self.report(
                other.as_ref().and_then(pos),
                "no sources are defined, so there is nothing to back up",
                "add at least one database under `sources:` with `kind`, `dsn`, \
                 `environment` and `repository` (see config/lifeboat.yaml)",
            ),
        }

        let source_names: Vec<&str> = match &raw.sources {
            Some(map) => map.value.keys().map(|k| k.value.as_str()).collect(),
            None => Vec::new(),
        };
        let alerts = match &raw.alerts {
            Some(a) => self.alerts(a, &source_names),
            None => Some(Default::default()),
        };
        let fate = self.fate(raw.fate.as_ref(), daemon.timezone);
        let environments: Vec<&str> = sources
            .values()
            .map(|s: &crate::config::SourceConfig| s.environment.as_str())
            .collect();
        let control = self.control(raw.control.as_ref(), &environments);

        Some(Config {
            path: self.file.to_path_buf(),
            state_dir: state_dir?,
            drills_dir: drills_dir?,
            catalog: match catalog {
                None => None,
                Some(c) => Some(c?),
            },
            repositories,
            sources,
            daemon,
            alerts: alerts?,
            fate: fate?,
            control: control?,
            // Filled in by `Validated`, once every check is recorded.
            checks: Vec::new(),
        })
    }

    /// A path value; relative paths resolve against the config file's directory.
    pub(crate) fn path(&mut self, key: &str, s: &S<String>) -> Option<PathBuf> {
        let text = s.value.trim();
        if text.is_empty() {
            self.report(
                pos(s),
                format!("`{key}` is empty"),
                format!(
                    "write a path after `{key}:` (relative paths start at the config file's \
                     directory), or remove the key"
                ),
            );
            return None;
        }
        if text.starts_with('~') {
            // Silently making `~/x` into `<config dir>/~/x` would surprise everyone.
            self.report(
                pos(s),
                format!("`{key}` starts with `~`, which is not expanded here"),
                "write the absolute path (e.g. `/home/backup/...`) or a path relative to the \
                 config file's directory",
            );
            return None;
        }
        Some(self.base.join(text))
    }

    /// A name used as a map key; names end up in CLI arguments, API paths and repository
    /// paths, so they are kept to characters that are safe in all three.
    pub(crate) fn name(&mut self, what: &str, key: &S<String>) -> bool {
        let n = &key.value;
        let ok = (1..=63).contains(&n.len())
            && n.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !ok {
            let suggestion = sanitize(n, &['-', '_']);
            let fix = if suggestion.is_empty() {
                format!("rename the {what}, e.g. to `main`")
            } else {
                format!("rename the {what}, e.g. to `{suggestion}`")
            };
            self.report(
                pos(key),
                format!(
                    "{what} name `{}` is not allowed: names are lowercase letters, digits, \
                     `-` and `_`, start with a letter or digit and are at most 63 characters",
                    n.escape_debug()
                ),
                fix,
            );
        }
        ok
    }

    fn env_name(&mut self, key: &str, s: &S<String>) -> Option<String> {
        let text = s.value.trim();
        let example = key.trim_end_matches("_env").to_uppercase();
        if is_env_name(text) {
            return Some(text.to_owned());
        }
        let bare = text
            .trim_start_matches('$')
            .trim_start_matches('{')
            .trim_end_matches('}');
        if text.starts_with('$') && is_env_name(bare) {
            self.report(
                pos(s),
                format!("`{key}` takes the name of a variable, not `${bare}`"),
                format!("write `{key}: {bare}`"),
            );
        } else {
            // Not echoed: a value that is not a variable name may be the secret itself.
            self.report(
                pos(s),
                format!(
                    "`{key}` must be the name of an environment variable (letters, digits \
                     and `_`, not starting with a digit); the value is not shown in case it \
                     is a secret"
                ),
                format!(
                    "write the variable's name, e.g. `{key}: LIFEBOAT_{example}`, and put the \
                     secret in that variable; if a secret was written here, rotate it"
                ),
            );
        }
        None
    }

    /// `<prefix>_env` / `<prefix>_file`: at most one of the two. Records a check of the
    /// reference (`target` says which) under `record_as`, at the position of the key given.
    pub(crate) fn secret_ref(
        &mut self,
        prefix: &str,
        env: &Option<S<String>>,
        file: &Option<S<String>>,
        record_as: String,
        target: impl FnOnce(SecretRef) -> Target,
    ) -> Option<SecretRef> {
        let env_key = format!("{prefix}_env");
        let file_key = format!("{prefix}_file");
        match (env, file) {
            (Some(_), Some(f)) => {
                self.report(
                    pos(f),
                    format!("both `{env_key}` and `{file_key}` are set"),
                    "keep one of them: the secret comes from an env var or a file, not both",
                );
                None
            }
            (Some(e), None) => {
                let secret = self.env_name(&env_key, e).map(SecretRef::Env)?;
                self.check(record_as, pos(e), target(secret.clone()));
                Some(secret)
            }
            (None, Some(f)) => {
                let secret = self.path(&file_key, f).map(SecretRef::File)?;
                self.check(record_as, pos(f), target(secret.clone()));
                Some(secret)
            }
            (None, None) => None,
        }
    }

    fn catalog(&mut self, raw: &S<RawCatalog>) -> Option<CatalogConfig> {
        let RawCatalog { url_env, url_file } = &raw.value;
        if url_env.is_none() && url_file.is_none() {
            self.report(
                pos(raw),
                "`catalog` needs `url_env` or `url_file` (a PostgreSQL URL)",
                "add `url_env: VAR` naming an env var that holds `postgres://...`, or \
                 `url_file: PATH`; or remove `catalog:` to use SQLite in state_dir",
            );
            return None;
        }
        let url = self.secret_ref("url", url_env, url_file, "catalog.url".into(), Target::CatalogUrl)?;
        Some(CatalogConfig { url })
    }
}

fn is_env_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Lowercases and keeps `[a-z0-9]` plus `keep`, turning spaces and other separators into
/// the first of `keep`: "Production EU" → "production-eu".
fn sanitize(s: &str, keep: &[char]) -> String {
    let sep = keep[0];
    let mut out = String::new();
    for c in s.trim().chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || keep.contains(&c) {
            out.push(c);
        } else if (c == ' ' || c == '_' || c == '-' || c == '.') && !out.ends_with(sep) {
            out.push(sep);
        }
    }
    out.trim_matches(|c| keep.contains(&c)).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitized_suggestions() {
        assert_eq!(sanitize("Production EU", &['-']), "production-eu");
        assert_eq!(sanitize("staging_2", &['-']), "staging-2");
        assert_eq!(sanitize("Orders_EU", &['-', '_']), "orders_eu");
    }
}
