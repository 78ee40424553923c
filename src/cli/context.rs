//! What every command needs: the config, the catalog, and a way to open repositories and engines.

use std::path::{Path, PathBuf};

use secrecy::SecretString;

use super::{CliError, Exit};
use crate::catalog::{self, Catalog, CatalogTarget};
use crate::config::{self, Config, RepositoryConfig, SecretRef, SourceConfig};
use crate::engine::{self, Endpoint, Engine};
use crate::repo::{Keys, Repository};
use crate::storage::{Storage, StorageOptions};

#[derive(Clone)]
pub struct Context {
    pub config: Config,
}

impl Context {
    pub fn load(path: &Path) -> Result<Context, CliError> {
        if !path.exists() {
            return Err(CliError::usage(format!(
                "config file {} not found; fix: pass --config FILE or set LIFEBOAT_CONFIG (config/lifeboat.yaml in the source tree documents every key)",
                path.display()
            )));
        }
        Ok(Context {
            config: config::load(path)?,
        })
    }

    pub async fn catalog(&self) -> Result<Box<dyn Catalog>, CliError> {
        let target = match &self.config.catalog {
            None => CatalogTarget::Sqlite(self.config.state_dir.join("catalog.db")),
            Some(c) => CatalogTarget::Postgres(c.resolve_url()?.expose().to_string()),
        };
        Ok(catalog::open(&target).await?)
    }

    pub fn source(&self, name: &str) -> Result<&SourceConfig, CliError> {
        self.config.sources.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.config.sources.keys().map(String::as_str).collect();
            CliError::usage(format!(
                "unknown source `{name}`; fix: use one of the sources in {}: {}",
                self.config.path.display(),
                known.join(", ")
            ))
        })
    }

    pub fn repository_config(&self, name: &str) -> Result<&RepositoryConfig, CliError> {
        self.config.repositories.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.config.repositories.keys().map(String::as_str).collect();
            CliError::usage(format!(
                "unknown repository `{name}`; fix: use one of the repositories in {}: {}",
                self.config.path.display(),
                known.join(", ")
            ))
        })
    }

    pub fn storage(&self, rc: &RepositoryConfig, create_dir: bool) -> Result<Storage, CliError> {
        let mut opts = StorageOptions::new(rc.url.clone());
        opts.endpoint = rc.endpoint.clone();
        opts.region = rc.region.clone();
        opts.access_key_id = rc.access_key_id.as_ref().map(resolve).transpose()?;
        opts.secret_access_key = rc.secret_access_key.as_ref().map(resolve).transpose()?;
        Ok(Storage::open(&opts, create_dir)?)
    }

    /// Where `init` keeps an encrypted repository's address key (needed by whoever takes backups).
    pub fn key_dir(&self) -> PathBuf {
        self.config.state_dir.join("keys")
    }

    /// Opens a repository with every key this host has for it.
    pub async fn repository(&self, name: &str) -> Result<Repository, CliError> {
        let rc = self.repository_config(name)?;
        let storage = self.storage(rc, false)?;
        let keys = self.keys(rc)?;
        let location = storage.url.to_string();
        let repo = Repository::open(storage.store.clone(), &location, name, keys.clone()).await?;
        if repo.is_encrypted() && keys.identity.is_none() {
            let key_file = self.key_dir().join(crate::repo::address_key_file_name(repo.id()));
            if let Ok(text) = std::fs::read_to_string(&key_file) {
                let mut key = [0u8; 32];
                hex::decode_to_slice(text.trim(), &mut key).map_err(|_| {
                    CliError::new(
                        Exit::Usage,
                        format!(
                            "{} is not a valid address key; fix: copy it again from the host that ran `lifeboat init`",
                            key_file.display()
                        ),
                    )
                })?;
                let keys = Keys {
                    address_key: Some(key),
                    ..keys
                };
                return Ok(Repository::open(storage.store, &location, name, keys).await?);
            }
        }
        Ok(repo)
    }

    pub fn keys(&self, rc: &RepositoryConfig) -> Result<Keys, CliError> {
        let Some(enc) = &rc.encryption else {
            return Ok(Keys::default());
        };
        let recipients = enc
            .recipients
            .iter()
            .map(|r| {
                r.parse::<age::x25519::Recipient>()
                    .map_err(|e| CliError::usage(format!("repository `{}`: recipient {r} is not an age X25519 public key ({e}); fix: use the `age1...` line that age-keygen printed", rc.name)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let identity = match &enc.identity {
            None => None,
            Some(r) => {
                let secret = r.resolve()?;
                let line = secret
                    .expose()
                    .lines()
                    .map(str::trim)
                    .find(|l| l.starts_with("AGE-SECRET-KEY-"))
                    .unwrap_or("");
                Some(line.parse::<age::x25519::Identity>().map_err(|_| {
                    CliError::usage(format!(
                        "repository `{}`: {} holds no age X25519 identity; fix: point it at a file written by age-keygen",
                        rc.name,
                        r.describe()
                    ))
                })?)
            }
        };
        Ok(Keys {
            recipients,
            identity,
            address_key: None,
        })
    }

    pub fn engine_for_source(&self, source: &SourceConfig) -> Result<Box<dyn Engine>, CliError> {
        Ok(engine::for_kind(
            source.kind.as_str(),
            self.endpoint_for_source(source)?,
        )?)
    }

    /// How to reach a source's database, its password read now.
    pub fn endpoint_for_source(&self, source: &SourceConfig) -> Result<Endpoint, CliError> {
        Ok(Endpoint {
            dsn: source.dsn.clone(),
            password: source.password.as_ref().map(resolve).transpose()?,
            bin_dir: source.pg_bin_dir.clone(),
        })
    }

    /// The configured repositories a command should look at: one by name, or all.
    pub fn repository_names(&self, only: Option<&str>) -> Result<Vec<String>, CliError> {
        match only {
            Some(n) => Ok(vec![self.repository_config(n)?.name.clone()]),
            None => Ok(self.config.repositories.keys().cloned().collect()),
        }
    }
}

pub fn resolve(r: &SecretRef) -> Result<SecretString, CliError> {
    Ok(SecretString::from(r.resolve()?.expose().to_string()))
}
