//! Validation of one source: kind, DSN (never with a password), environment, repository.

use url::Url;

use super::{Validator, pos, sanitize};
use crate::config::check::Target;
use crate::config::error::{backticked, did_you_mean};
use crate::config::model::{SourceConfig, SourceKind};
use crate::config::raw::{RawSource, S};

impl Validator<'_> {
    pub(super) fn source(
        &mut self,
        key: &S<String>,
        raw: &S<RawSource>,
        repo_names: &[&str],
        zone: chrono_tz::Tz,
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
            Target::Secret,
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
                    names => format!("add `repository:` with one of {}", backticked(names.iter().copied())),
                };
                self.report(pos(key), format!("source `{name}` has no `repository`"), fix);
                None
            }
            Some(r) => self.repository_ref(name, r, repo_names),
        };

        let pg_bin_dir = s.pg_bin_dir.as_ref().and_then(|p| {
            let dir = self.path("pg_bin_dir", p)?;
            self.check(
                format!("sources.{name}.pg_bin_dir"),
                pos(p),
                Target::PgBinDir(dir.clone()),
            );
            Some(dir)
        });

        let schedules = s
            .schedule
            .as_ref()
            .map(|r| self.schedules(name, r, zone))
            .unwrap_or_default();
        let retention = match &s.retention {
            Some(r) => Some(self.retention(name, r)?),
            None => None,
        };
        let pings = s.pings.as_ref().map(|p| self.pings(name, p)).unwrap_or_default();
        let copy_to = self.copy_to(name, s, repo_names);
        // `Some(None)`: written but invalid (a problem is reported); resolved below.
        let data_dir = s.data_dir.as_ref().map(|d| self.data_dir(d));
        let cloud_identity = s.cloud_identity.as_ref().map(|c| self.cloud_identity(name, c));
        if let (Some(prune), None) = (s.schedule.as_ref().and_then(|r| r.value.prune.as_ref()), &s.retention) {
            self.report(
                pos(prune),
                format!("source `{name}` schedules `prune` but has no `retention:` saying what to keep"),
                "add e.g. `retention: { keep_last: 7, keep_daily: 14, keep_weekly: 8, keep_monthly: 12 }` to the \
                 source, or remove the prune schedule",
            );
        }

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
            schedules,
            retention,
            pings,
            copy_to,
            data_dir: data_dir.map_or(Some(None), |d| d.map(Some))?,
            cloud_identity: cloud_identity.map_or(Some(None), |c| c.map(Some))?,
        })
    }

    /// `copy_to:` names other repositories; a `copy` schedule needs at least one.
    fn copy_to(&mut self, source: &str, s: &RawSource, repo_names: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for r in s.copy_to.iter().flat_map(|l| l.value.iter()) {
            let wanted = r.value.trim();
            if s.repository.as_ref().is_some_and(|own| own.value.trim() == wanted) {
                self.report(
                    pos(r),
                    format!("source `{source}` copies to `{wanted}`, which is already its own repository"),
                    "name another repository, ideally with another provider or in another region",
                );
            } else if let Some(name) = self.repository_ref(source, r, repo_names) {
                out.push(name);
            }
        }
        if let Some(copy) = s.schedule.as_ref().and_then(|r| r.value.copy.as_ref())
            && s.copy_to.as_ref().is_none_or(|l| l.value.is_empty())
        {
            self.report(
                pos(copy),
                format!("source `{source}` schedules `copy` but has no `copy_to:` saying where"),
                "add e.g. `copy_to: [second-site]` naming another repository, or remove the copy schedule",
            );
        }
        out
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
                    None => "write `kind: postgres` (mysql, mariadb and sqlite are planned)".to_owned(),
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
        if crate::engine::dsn_has_password(text) {
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
                self.report(at, "the dsn is in `key=value` form; lifeboat needs a URL", url_fix);
                return None;
            }
            Err(e) => {
                self.report(at, format!("the dsn is not a valid URL ({e})"), url_fix);
                return None;
            }
        };
        if kind == Some(SourceKind::Postgres) && !matches!(url.scheme(), "postgres" | "postgresql") {
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

    pub(crate) fn environment(&mut self, e: &S<String>) -> Option<String> {
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

    fn repository_ref(&mut self, source: &str, r: &S<String>, repo_names: &[&str]) -> Option<String> {
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
