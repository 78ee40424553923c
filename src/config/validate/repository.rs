//! Validation of one repository: its URL, S3 settings, credentials and encryption.

use std::collections::BTreeSet;
use std::str::FromStr;

use url::Url;

use super::{REPO_URL_FORMS, Validator, pos};
use crate::config::check::Target;
use crate::config::error::Position;
use crate::config::model::{EncryptionConfig, RepositoryConfig};
use crate::config::raw::{RawEncryption, RawRepository, S};

impl Validator<'_> {
    pub(super) fn repository(&mut self, key: &S<String>, raw: &S<RawRepository>) -> Option<RepositoryConfig> {
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
            Target::Secret,
        );
        let secret_access_key = self.secret_ref(
            "secret_access_key",
            &r.secret_access_key_env,
            &r.secret_access_key_file,
            format!("repositories.{name}.secret_access_key"),
            Target::Secret,
        );
        let id_at = r.access_key_id_env.as_ref().or(r.access_key_id_file.as_ref()).map(pos);
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
            self.forget_checks(&[
                format!("repositories.{name}.access_key_id"),
                format!("repositories.{name}.secret_access_key"),
            ]);
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
                    let what = if url.scheme() == "az" { "container" } else { "bucket" };
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

    pub(super) fn endpoint(&mut self, s: &S<String>) -> Option<Url> {
        let at = pos(s);
        let fix = "write e.g. `endpoint: http://127.0.0.1:9000` or `endpoint: https://s3.example.net`";
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
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(url),
            Ok(url) => {
                self.report(
                    at,
                    format!("`endpoint` must be an http:// or https:// URL, not `{}:`", url.scheme()),
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
        // Whether the identity matches a recipient can only be judged on a complete list.
        let known = (self.problems.len() == before).then(|| recipients.clone());
        let identity = self.secret_ref(
            "identity",
            &e.identity_env,
            &e.identity_file,
            format!("repositories.{repo}.encryption.identity"),
            |secret| Target::Identity(secret, known),
        );
        Some(EncryptionConfig { recipients, identity })
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
                self.report(at, message, "copy the public key printed by `age-keygen -y KEYFILE`");
                None
            }
        }
    }
}
