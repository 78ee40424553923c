//! From the file as written (`raw`) to the typed config (`model`), collecting every
//! problem instead of stopping at the first.
//!
//! Each step returns `Option`: `None` means "absent or invalid", and invalid always comes
//! with a problem pushed to `Validator::problems`. The config is built only when no
//! problem was found, so the `None`s never reach it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use url::Url;

use super::error::{ConfigError, Position, Problem, backticked, did_you_mean, sort_problems};
use super::model::{
    CatalogConfig, Config, EncryptionConfig, RepositoryConfig, SourceConfig, SourceKind,
};
use super::raw::{Named, RawCatalog, RawConfig, RawEncryption, RawRepository, RawSource, S};
use super::secret::SecretRef;
use super::syntax::yaml_problem;

const REPO_URL_FORMS: &str =
    "`file:///abs/path`, `s3://bucket/prefix`, `gs://bucket/prefix` or `az://container/prefix`";

pub(super) fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
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
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => {
            if problems.is_empty() {
                // Unreachable by construction; never build a half-validated config.
                problems.push(Problem::new(
                    origin,
                    None,
                    "the config could not be validated",
                    "report this as a Lifeboat bug, with the config file",
                ));
            }
            sort_problems(&mut problems);
            Err(ConfigError::from_problems(problems))
        }
    }
}

fn pos<T>(s: &S<T>) -> Option<Position> {
    Position::from_saphyr(s.referenced)
}

/// Entries of a name → value mapping in file order (the parser hands them over unordered).
fn in_file_order<T>(map: &Named<T>) -> Vec<(&S<String>, &S<T>)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| (pos(a.0), &a.0.value).cmp(&(pos(b.0), &b.0.value)));
    entries
}

struct Validator<'a> {
    file: &'a Path,
    /// The config file's directory, absolute: relative paths in the file start here.
    base: PathBuf,
    problems: Vec<Problem>,
    positions: BTreeMap<String, Position>,
}

impl<'a> Validator<'a> {
    fn new(file: &'a Path) -> Validator<'a> {
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
            positions: BTreeMap::new(),
        }
    }

    fn report(&mut self, at: Option<Position>, message: impl Into<String>, fix: impl Into<String>) {
        self.problems
            .push(Problem::new(self.file, at, message, fix));
    }

    fn record(&mut self, key: String, at: Option<Position>) {
        if let Some(at) = at {
            self.positions.insert(key, at);
        }
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
        let state_dir = match &raw.state_dir {
            Some(s) => {
                self.record("state_dir".into(), pos(s));
                self.path("state_dir", s)
            }
            None => Some(self.base.join(".lifeboat-state")),
        };
        let catalog = raw.catalog.as_ref().map(|c| self.catalog(c));

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
                    if let Some(s) = self.source(key, source, &repo_names) {
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

        Some(Config {
            path: self.file.to_path_buf(),
            state_dir: state_dir?,
            catalog: match catalog {
                None => None,
                Some(c) => Some(c?),
            },
            repositories,
            sources,
            positions: std::mem::take(&mut self.positions),
        })
    }

    /// A path value; relative paths resolve against the config file's directory.
    fn path(&mut self, key: &str, s: &S<String>) -> Option<PathBuf> {
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
        Some(self.base.join(text))
    }

    /// A name used as a map key; names end up in CLI arguments, API paths and repository
    /// paths, so they are kept to characters that are safe in all three.
    fn name(&mut self, what: &str, key: &S<String>) -> bool {
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

    /// `<prefix>_env` / `<prefix>_file`: at most one of the two. Records the position of the
    /// one given under `record_as`, for `Config::check`.
    fn secret_ref(
        &mut self,
        prefix: &str,
        env: &Option<S<String>>,
        file: &Option<S<String>>,
        record_as: String,
    ) -> Option<SecretRef> {
        let env_key = format!("{prefix}_env");
        let file_key = format!("{prefix}_file");
        match (env, file) {
            (Some(_), Some(f)) => {
                self.report(
                    pos(f),
                    format!("both `{env_key}` and `{file_key}` are set"),
                    format!(
                        "keep one of them: the secret comes from an env var or a file, not both"
                    ),
                );
                None
            }
            (Some(e), None) => {
                self.record(record_as, pos(e));
                self.env_name(&env_key, e).map(SecretRef::Env)
            }
            (None, Some(f)) => {
                self.record(record_as, pos(f));
                self.path(&file_key, f).map(SecretRef::File)
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
        let url = self.secret_ref("url", url_env, url_file, "catalog.url".into())?;
        Some(CatalogConfig { url })
    }

    fn repository(&mut self, key: &S<String>, raw: &S<RawRepository>) -> Option<RepositoryConfig> {
        let name = key.value.as_str();
        let name_ok = self.name("repository", key);
        let r: &RawRepository = &raw.value;

        let url = match &r.url {
            Some(u) => self.repo_url(u),
            None => {
                self.report(
                    pos(key),
                    format!("repository `{name}` has no `url`"),
                    format!("add `url:` with one of {REPO_URL_FORMS}"),
                );
                None
            }
        };
        let scheme = url.as_ref().map(|u| u.scheme().to_owned());
        let is = |s: &str| scheme.as_deref() == Some(s);

        let endpoint = r.endpoint.as_ref().and_then(|e| {
            if scheme.is_some() && !is("s3") {
                self.report(
                    pos(e),
                    "`endpoint` applies only to `s3://` repositories",
                    "remove `endpoint`, or use an `s3://` url",
                );
                None
            } else {
                self.endpoint(e)
            }
        });
        let region = r.region.as_ref().and_then(|g| {
            let text = g.value.trim();
            if scheme.is_some() && !is("s3") {
                self.report(
                    pos(g),
                    "`region` applies only to `s3://` repositories",
                    "remove `region`",
                );
                None
            } else if text.is_empty() {
                self.report(
                    pos(g),
                    "`region` is empty",
                    "write e.g. `region: eu-west-1`, or remove it",
                );
                None
            } else {
                Some(text.to_owned())
            }
        });

        let access_key_id = self.secret_ref(
            "access_key_id",
            &r.access_key_id_env,
            &r.access_key_id_file,
            format!("repositories.{name}.access_key_id"),
        );
        let secret_access_key = self.secret_ref(
            "secret_access_key",
            &r.secret_access_key_env,
            &r.secret_access_key_file,
            format!("repositories.{name}.secret_access_key"),
        );
        let id_at = r
            .access_key_id_env
            .as_ref()
            .or(r.access_key_id_file.as_ref())
            .map(pos);
        let secret_at = r
            .secret_access_key_env
            .as_ref()
            .or(r.secret_access_key_file.as_ref())
            .map(pos);
        if is("file") && (id_at.is_some() || secret_at.is_some()) {
            self.report(
                id_at.or(secret_at).flatten(),
                "`file://` repositories take no access keys",
                "remove the `access_key_id_*` and `secret_access_key_*` keys",
            );
        } else {
            match (id_at, secret_at) {
                (Some(at), None) => self.report(
                    at,
                    "`access_key_id_env`/`access_key_id_file` is set but no secret access key",
                    "add `secret_access_key_env` or `secret_access_key_file`, or remove both \
                     to use the ambient credentials (e.g. an instance role)",
                ),
                (None, Some(at)) => self.report(
                    at,
                    "`secret_access_key_env`/`secret_access_key_file` is set but no access key id",
                    "add `access_key_id_env` or `access_key_id_file`, or remove both to use \
                     the ambient credentials (e.g. an instance role)",
                ),
                _ => {}
            }
        }

        let encryption = match &r.encryption {
            Some(e) => Some(self.encryption(name, e)?),
            None => None,
        };

        if !name_ok {
            return None;
        }
        Some(RepositoryConfig {
            name: name.to_owned(),
            url: url?,
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            encryption,
        })
    }

    /// Repository URLs are not echoed except as bare paths: an s3 URL may carry keys.
    fn repo_url(&mut self, s: &S<String>) -> Option<Url> {
        let text = s.value.trim();
        let at = pos(s);
        if text.starts_with('/') {
            self.report(
                at,
                format!("repository url `{text}` is a path, not a URL"),
                format!("write it as a file URL: `file://{text}`"),
            );
            return None;
        }
        if !text.contains(':') {
            self.report(
                at,
                format!(
                    "repository url `{}` is a relative path; relative paths are refused because \
                     they would depend on the directory lifeboat is started from",
                    text.escape_debug()
                ),
                format!("write an absolute file URL such as `file:///srv/lifeboat`, or one of {REPO_URL_FORMS}"),
            );
            return None;
        }
        let url = match Url::parse(text) {
            Ok(url) => url,
            Err(e) => {
                self.report(
                    at,
                    format!("repository url is not a valid URL ({e})"),
                    format!("write it as one of {REPO_URL_FORMS}"),
                );
                return None;
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            self.report(
                at,
                "repository url contains credentials (before `@`); they are not shown here",
                "remove them from the url and use `access_key_id_env`/`access_key_id_file` and \
                 `secret_access_key_env`/`secret_access_key_file`; rotate them if they were real",
            );
            return None;
        }
        if url.query().is_some() || url.fragment().is_some() {
            self.report(
                at,
                "repository url has a `?query` or `#fragment`, which lifeboat would ignore",
                "remove it; S3 settings have their own keys (`endpoint`, `region`)",
            );
            return None;
        }
        match url.scheme() {
            "file" => {
                let lower = text.to_ascii_lowercase();
                if lower.starts_with("file:///") || lower.starts_with("file://localhost/") {
                    return Some(url);
                }
                let message = match url.host_str() {
                    Some(host) if !host.is_empty() => format!(
                        "file URL reads `{host}` as a host name: relative paths are refused, \
                         and a file URL needs an absolute path (three slashes)"
                    ),
                    _ => "relative file paths are refused: a file URL needs an absolute path \
                          (three slashes)"
                        .to_owned(),
                };
                self.report(at, message, "write e.g. `file:///srv/lifeboat`");
                None
            }
            "s3" | "gs" | "az" => {
                if url.host_str().is_none_or(str::is_empty) {
                    let what = if url.scheme() == "az" {
                        "container"
                    } else {
                        "bucket"
                    };
                    self.report(
                        at,
                        format!("`{}://` repository url names no {what}", url.scheme()),
                        format!("write `{}://{}/prefix`", url.scheme(), what.to_uppercase()),
                    );
                    return None;
                }
                Some(url)
            }
            scheme @ ("http" | "https") => {
                self.report(
                    at,
                    format!("unsupported repository scheme `{scheme}`"),
                    "for an S3-compatible server write `url: s3://bucket/prefix` and \
                     `endpoint: http://host:port`",
                );
                None
            }
            scheme => {
                let scheme = scheme.to_owned();
                self.report(
                    at,
                    format!("unsupported repository scheme `{scheme}`"),
                    format!("use one of {REPO_URL_FORMS}"),
                );
                None
            }
        }
    }

    fn endpoint(&mut self, s: &S<String>) -> Option<Url> {
        let at = pos(s);
        let fix =
            "write e.g. `endpoint: http://127.0.0.1:9000` or `endpoint: https://s3.example.net`";
        match Url::parse(s.value.trim()) {
            Ok(url) if !url.username().is_empty() || url.password().is_some() => {
                self.report(
                    at,
                    "`endpoint` contains credentials (before `@`); they are not shown here",
                    "remove them and use `access_key_id_env` and `secret_access_key_env` (or \
                     the `_file` forms); rotate them if they were real",
                );
                None
            }
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                Some(url)
            }
            Ok(url) => {
                self.report(
                    at,
                    format!(
                        "`endpoint` must be an http:// or https:// URL, not `{}:`",
                        url.scheme()
                    ),
                    fix,
                );
                None
            }
            Err(e) => {
                self.report(at, format!("`endpoint` is not a valid URL ({e})"), fix);
                None
            }
        }
    }

    fn encryption(&mut self, repo: &str, raw: &S<RawEncryption>) -> Option<EncryptionConfig> {
        let e = &raw.value;
        let before = self.problems.len();
        let mut recipients: Vec<String> = Vec::new();
        for r in e.recipients.iter().flat_map(|list| list.value.iter()) {
            if let Some(key) = self.recipient(r.value.trim(), pos(r), "") {
                recipients.push(key);
            }
        }
        if let Some(file) = &e.recipients_file
            && let Some(path) = self.path("recipients_file", file)
        {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    // age's recipients-file format: one key per line, `#` comments.
                    for (i, line) in text.lines().enumerate() {
                        let line = line.trim();
                        if line.is_empty() || line.starts_with('#') {
                            continue;
                        }
                        let place = format!(" (line {} of {})", i + 1, path.display());
                        if let Some(key) = self.recipient(line, pos(file), &place) {
                            recipients.push(key);
                        }
                    }
                }
                Err(err) => self.report(
                    pos(file),
                    format!("cannot read recipients_file {}: {err}", path.display()),
                    "correct the path (relative paths start at the config file's directory), \
                     or list the keys under `recipients:` instead",
                ),
            }
        }
        let mut seen = BTreeSet::new();
        recipients.retain(|r| seen.insert(r.clone()));
        if recipients.is_empty() && self.problems.len() == before {
            self.report(
                pos(raw),
                "`encryption` lists no recipients, so nothing could be encrypted",
                "add `recipients: [age1...]` (the public key printed by `age-keygen -y KEYFILE`) \
                 or `recipients_file: PATH`",
            );
        }
        let identity = self.secret_ref(
            "identity",
            &e.identity_env,
            &e.identity_file,
            format!("repositories.{repo}.encryption.identity"),
        );
        Some(EncryptionConfig {
            recipients,
            identity,
        })
    }

    fn recipient(&mut self, key: &str, at: Option<Position>, place: &str) -> Option<String> {
        if key.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
            // Never echoed; and the config file itself has leaked it, so say so.
            self.report(
                at,
                format!("a recipient{place} is an age SECRET key, not a public key"),
                "remove it now and treat it as exposed (anyone who read the file can decrypt); \
                 list the public key (`age-keygen -y KEYFILE`) and give the secret key with \
                 `identity_file` or `identity_env`",
            );
            return None;
        }
        match age::x25519::Recipient::from_str(key) {
            Ok(r) => Some(r.to_string()),
            Err(_) => {
                let message = if key.starts_with("age1") {
                    format!("recipient `{key}`{place} is not a valid age public key")
                } else {
                    format!("a recipient{place} is not an age public key (those start with `age1`)")
                };
                self.report(
                    at,
                    message,
                    "copy the public key printed by `age-keygen -y KEYFILE`",
                );
                None
            }
        }
    }

    fn source(
        &mut self,
        key: &S<String>,
        raw: &S<RawSource>,
        repo_names: &[&str],
    ) -> Option<SourceConfig> {
        let name = key.value.as_str();
        let name_ok = self.name("source", key);
        let s: &RawSource = &raw.value;

        let kind = match &s.kind {
            None => {
                self.report(
                    pos(key),
                    format!("source `{name}` has no `kind`"),
                    "add `kind: postgres`",
                );
                None
            }
            Some(k) => self.kind(name, k),
        };

        let dsn = match &s.dsn {
            None => {
                self.report(
                    pos(key),
                    format!("source `{name}` has no `dsn`"),
                    "add e.g. `dsn: postgres://lifeboat@db.internal:5432/orders`",
                );
                None
            }
            Some(d) => self.dsn(d, kind),
        };

        let password = self.secret_ref(
            "password",
            &s.password_env,
            &s.password_file,
            format!("sources.{name}.password"),
        );

        let environment = match &s.environment {
            None => {
                self.report(
                    pos(key),
                    format!("source `{name}` has no `environment`"),
                    "add `environment: production` (or staging, ...): it decides which tokens \
                     and drills may touch this source",
                );
                None
            }
            Some(e) => self.environment(e),
        };

        let repository = match &s.repository {
            None => {
                let fix = match repo_names {
                    [] => "add `repository: NAME` and define NAME under `repositories:`".to_owned(),
                    names => format!(
                        "add `repository:` with one of {}",
                        backticked(names.iter().copied())
                    ),
                };
                self.report(
                    pos(key),
                    format!("source `{name}` has no `repository`"),
                    fix,
                );
                None
            }
            Some(r) => self.repository_ref(name, r, repo_names),
        };

        let pg_bin_dir = s.pg_bin_dir.as_ref().and_then(|p| {
            self.record(format!("sources.{name}.pg_bin_dir"), pos(p));
            self.path("pg_bin_dir", p)
        });

        if !name_ok {
            return None;
        }
        Some(SourceConfig {
            name: name.to_owned(),
            kind: kind?,
            dsn: dsn?,
            password,
            environment: environment?,
            repository: repository?,
            pg_bin_dir,
        })
    }

    fn kind(&mut self, source: &str, k: &S<String>) -> Option<SourceKind> {
        let text = k.value.trim();
        match SourceKind::parse(text) {
            Some(SourceKind::Postgres) => Some(SourceKind::Postgres),
            Some(other) => {
                self.report(
                    pos(k),
                    format!("source kind `{other}` is not supported yet"),
                    format!(
                        "only `kind: postgres` can be backed up in this version; remove source \
                         `{source}` (or comment it out) until {other} support lands"
                    ),
                );
                None
            }
            None => {
                let names = SourceKind::ALL.map(SourceKind::as_str);
                let fix = match did_you_mean(text, names) {
                    Some(near) => format!("did you mean `kind: {near}`?"),
                    None => {
                        "write `kind: postgres` (mysql, mariadb and sqlite are planned)".to_owned()
                    }
                };
                self.report(
                    pos(k),
                    format!(
                        "unknown source kind `{}` (known: {})",
                        text.escape_debug(),
                        backticked(names)
                    ),
                    fix,
                );
                None
            }
        }
    }

    /// The DSN is never echoed: if it is wrong in some way we cannot be sure it holds no
    /// password.
    fn dsn(&mut self, d: &S<String>, kind: Option<SourceKind>) -> Option<Url> {
        let text = d.value.trim();
        let at = pos(d);
        if dsn_has_password(text) {
            self.report(
                at,
                "the dsn contains a password; passwords are never written in the config \
                 (the dsn is not shown here)",
                "remove the password from the dsn (e.g. `postgres://lifeboat@db.internal:5432/orders`) \
                 and give it with `password_env: VAR` or `password_file: PATH`; the password \
                 was in a plain file, so rotate it",
            );
            return None;
        }
        let url_fix = "write e.g. `postgres://USER@HOST:PORT/DBNAME`, or \
                       `postgresql:///DBNAME?host=/run/postgresql` for a Unix socket";
        let url = match Url::parse(text) {
            Ok(url) => url,
            Err(_) if !text.contains("://") && text.contains('=') => {
                self.report(
                    at,
                    "the dsn is in `key=value` form; lifeboat needs a URL",
                    url_fix,
                );
                return None;
            }
            Err(e) => {
                self.report(at, format!("the dsn is not a valid URL ({e})"), url_fix);
                return None;
            }
        };
        if kind == Some(SourceKind::Postgres) && !matches!(url.scheme(), "postgres" | "postgresql")
        {
            self.report(
                at,
                format!(
                    "a postgres source's dsn must start with `postgres://` or `postgresql://`, not `{}:`",
                    url.scheme()
                ),
                url_fix,
            );
            return None;
        }
        Some(url)
    }

    fn environment(&mut self, e: &S<String>) -> Option<String> {
        let text = e.value.trim();
        if !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Some(text.to_owned());
        }
        let suggestion = sanitize(text, &['-']);
        let fix = if suggestion.is_empty() {
            "write e.g. `environment: production` or `environment: staging`".to_owned()
        } else {
            format!("write `environment: {suggestion}`")
        };
        self.report(
            pos(e),
            format!(
                "environment `{}` must be lowercase letters, digits and `-` (e.g. `production`)",
                text.escape_debug()
            ),
            fix,
        );
        None
    }

    fn repository_ref(
        &mut self,
        source: &str,
        r: &S<String>,
        repo_names: &[&str],
    ) -> Option<String> {
        let wanted = r.value.trim();
        if repo_names.contains(&wanted) {
            return Some(wanted.to_owned());
        }
        let fix = match (did_you_mean(wanted, repo_names.iter().copied()), repo_names) {
            (Some(near), _) => format!("did you mean `repository: {near}`?"),
            (None, []) => format!("define `{wanted}` under `repositories:`"),
            (None, names) => format!(
                "use one of {}, or define `{wanted}` under `repositories:`",
                backticked(names.iter().copied())
            ),
        };
        self.report(
            pos(r),
            format!(
                "source `{source}` uses repository `{}`, which is not defined under `repositories`",
                wanted.escape_debug()
            ),
            fix,
        );
        None
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

/// A password in the user-info part (`user:pw@host`) or as a `password=` parameter
/// (URL query or libpq `key=value` form). Checked on the raw text so that a DSN the URL
/// parser rejects is still caught.
fn dsn_has_password(text: &str) -> bool {
    if text.to_ascii_lowercase().contains("password=") {
        return true;
    }
    if let Ok(url) = Url::parse(text)
        && url.password().is_some_and(|p| !p.is_empty())
    {
        return true;
    }
    let Some((_, rest)) = text.split_once("://") else {
        return false;
    };
    let head = rest.split('?').next().unwrap_or(rest);
    match head.rfind('@') {
        Some(at) => head[..at]
            .split_once(':')
            .is_some_and(|(_, pw)| !pw.is_empty()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_dsns() {
        assert!(dsn_has_password("postgres://u:pw@h/db"));
        assert!(dsn_has_password("postgres://u:p@ss@h/db"));
        assert!(dsn_has_password("postgres://u@h/db?password=x"));
        assert!(dsn_has_password("host=h password=x dbname=d"));
        assert!(!dsn_has_password("postgres://u@h:5432/db"));
        assert!(!dsn_has_password("postgresql:///db?host=/run/postgresql"));
    }

    #[test]
    fn sanitized_suggestions() {
        assert_eq!(sanitize("Production EU", &['-']), "production-eu");
        assert_eq!(sanitize("staging_2", &['-']), "staging-2");
        assert_eq!(sanitize("Orders_EU", &['-', '_']), "orders_eu");
    }
}
