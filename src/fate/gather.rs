//! Gathering the [`Inputs`]: the config, this host (stat, /proc/self/mountinfo, users), each
//! source's server (its data directory), each repository's manifests, the storage inspector and
//! the catalog's drill history. Every failure becomes a reason in the inputs, never an error: a
//! rule that lacks its evidence says so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use futures::future::join_all;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use super::inputs::{
    Credential, DataDir, DrillFacts, DrillHistory, IdentityFacts, Inputs, Mount, RepositoryFacts, ScratchFacts,
    ServerTarget, SourceFacts, StorageFacts,
};
use super::inspect::StorageInspector;
use super::local::{self, address};
use crate::catalog::{Catalog, DrillRunFilter, DrillVerdict};
use crate::config::{Config, RepositoryConfig, SecretRef, SourceConfig, SourceKind};
use crate::drill::spec::{DrillSpec, ScratchSpec};
use crate::engine::{self, Endpoint};
use crate::repo::{Keys, Repository};
use crate::storage::{Storage, StorageOptions};

/// Listing a repository's manifests (a slow or unreachable store retries for minutes).
const LIST_TIMEOUT: Duration = Duration::from_secs(30);
/// Asking a server for its data directory.
const ASK_TIMEOUT: Duration = Duration::from_secs(15);
/// The OS user PostgreSQL runs as when its data directory's owner cannot be read.
const DEFAULT_DB_USER: &str = "postgres";

/// Everything the rules need, from the config and what it names. `probe`: run the immutability
/// probe on S3 repositories.
pub async fn gather(
    config: &Config,
    drills: &[DrillSpec],
    catalog: Option<&dyn Catalog>,
    inspector: &dyn StorageInspector,
    probe: bool,
) -> Inputs {
    let host_name = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let mounts = local::mountinfo::read();
    // Digests of secrets are compared within this analysis only.
    let salt: [u8; 32] = rand::random();
    let ctx = Ctx {
        inspector,
        mounts: &mounts,
        salt: &salt,
        host_name: &host_name,
    };
    let repositories = join_all(config.repositories.values().map(|r| ctx.repository(r, probe))).await;
    let sources = join_all(config.sources.values().map(|s| ctx.source(s))).await;
    let drills = join_all(drills.iter().map(|d| ctx.drill(d))).await;
    let drill_history = history(catalog, config).await;
    Inputs {
        now: jiff::Timestamp::now(),
        untested_after: config.fate.untested_after,
        detect_within: config.fate.detect_within,
        probed: probe,
        host_name,
        sources,
        repositories,
        drills,
        drill_history,
    }
}

struct Ctx<'a> {
    inspector: &'a dyn StorageInspector,
    mounts: &'a [Mount],
    salt: &'a [u8; 32],
    host_name: &'a str,
}

impl Ctx<'_> {
    fn credential(&self, key: String, reference: &SecretRef) -> Credential {
        let digest = reference.resolve().ok().map(|value| {
            let mut h = Sha256::new();
            h.update(self.salt);
            h.update(value.expose().as_bytes());
            h.finalize().into()
        });
        Credential {
            key,
            reference: reference.clone(),
            digest,
        }
    }

    /// Where an existing path lives; a missing one is an error, not its parent's place.
    fn existing(&self, path: &std::path::Path) -> Result<super::inputs::PathPlace, String> {
        match local::place(path, self.mounts) {
            Ok(p) if !p.exists => Err(format!("{} does not exist", path.display())),
            other => other,
        }
    }

    async fn repository(&self, rc: &RepositoryConfig, probe: bool) -> RepositoryFacts {
        let storage = match rc.url.scheme() {
            "file" => {
                let path = rc.url.to_file_path().unwrap_or_else(|_| PathBuf::from(rc.url.path()));
                StorageFacts::File {
                    place: local::place(&path, self.mounts),
                    dirs: local::repo_dirs(&path),
                    path,
                }
            }
            "s3" | "s3a" => {
                let (evidence, probe) = if probe {
                    let (e, p) = tokio::join!(self.inspector.bucket(rc), self.inspector.probe(rc));
                    (e, Some(p))
                } else {
                    (self.inspector.bucket(rc).await, None)
                };
                StorageFacts::S3 {
                    bucket: rc.url.host_str().unwrap_or_default().to_owned(),
                    endpoint: rc.endpoint.as_ref().map(ToString::to_string),
                    region: rc.region.clone(),
                    evidence,
                    probe,
                }
            }
            other => StorageFacts::Other {
                scheme: other.to_owned(),
            },
        };
        let key = |k: &str| format!("repositories.{}.{k}", rc.name);
        let mut credentials = Vec::new();
        if let Some(r) = &rc.access_key_id {
            credentials.push(self.credential(key("access_key_id"), r));
        }
        if let Some(r) = &rc.secret_access_key {
            credentials.push(self.credential(key("secret_access_key"), r));
        }
        let identity = rc
            .encryption
            .as_ref()
            .and_then(|e| e.identity.as_ref())
            .map(|reference| IdentityFacts {
                place: match reference {
                    SecretRef::File(path) => Some(self.existing(path)),
                    SecretRef::Env(_) => None,
                },
                reference: reference.clone(),
            });
        RepositoryFacts {
            name: rc.name.clone(),
            storage,
            credentials,
            identity,
            snapshots: snapshots(rc).await,
        }
    }

    async fn source(&self, s: &SourceConfig) -> SourceFacts {
        let server = address::server_address(&s.dsn, self.host_name).await;
        let configured = |why: Option<String>| match &s.data_dir {
            Some(path) => DataDir::Known {
                how: format!("from `sources.{}.data_dir`", s.name),
                place: self.existing(path),
                path: path.clone(),
            },
            None => match why {
                Some(why) => DataDir::Unknown { why },
                None => DataDir::Remote,
            },
        };
        let data_dir = match &server.target {
            ServerTarget::Remote { .. } => configured(None),
            ServerTarget::Unresolved { why, .. } => configured(Some(why.clone())),
            ServerTarget::Socket(_) | ServerTarget::ThisHost { .. } => match ask_data_directory(s).await {
                // A server in a container reports a path inside it, which may not exist here (or be
                // something else here): only a path that exists here says where the data is.
                Ok(path) if !path.exists() => configured(Some(format!(
                    "the server reports {}, which does not exist on this host (is it in a container?)",
                    path.display()
                ))),
                Ok(path) => DataDir::Known {
                    how: "as the server reports it".into(),
                    place: self.existing(&path),
                    path,
                },
                Err(why) => configured(Some(why)),
            },
        };
        let db_user = match &data_dir {
            DataDir::Known { place: Ok(p), .. } if p.exists => local::account_by_uid(p.owner_uid),
            _ => local::account_by_name(DEFAULT_DB_USER),
        };
        let key = |k: &str| format!("sources.{}.{k}", s.name);
        let mut credentials = Vec::new();
        if let Some(r) = &s.password {
            credentials.push(self.credential(key("password"), r));
        }
        if let Some(c) = &s.cloud_identity {
            credentials.push(self.credential(key("cloud_identity.access_key_id"), &c.access_key_id));
            credentials.push(self.credential(key("cloud_identity.secret_access_key"), &c.secret_access_key));
        }
        let cloud_caller = match &s.cloud_identity {
            Some(c) => Some(self.inspector.cloud_identity(c).await),
            None => None,
        };
        SourceFacts {
            name: s.name.clone(),
            environment: s.environment.clone(),
            repository: s.repository.clone(),
            server,
            data_dir,
            db_user,
            credentials,
            cloud_caller,
            retention: s.retention.clone(),
            backup_interval: s.schedules.backup.as_ref().and_then(shortest_gap),
        }
    }

    async fn drill(&self, d: &DrillSpec) -> DrillFacts {
        let scratch = match &d.scratch {
            ScratchSpec::Ephemeral => ScratchFacts::Ephemeral,
            ScratchSpec::Server { dsn, .. } => ScratchFacts::Server(match dsn.resolve() {
                // Neither the value nor the parser's quote of it is shown: it may hold a password.
                Err(e) => Err(format!("its scratch DSN cannot be read: {}", one_line(e))),
                Ok(text) => match url::Url::parse(text.expose()) {
                    Ok(url) => Ok(address::server_address(&url, self.host_name).await),
                    Err(_) => Err(format!("its scratch DSN in {} is not a URL", dsn.describe())),
                },
            }),
        };
        DrillFacts {
            name: d.name.clone(),
            file: d.file.clone(),
            source: d.source.clone(),
            scratch,
        }
    }
}

/// The query that reports a server's data directory, per database kind. It needs superuser or
/// `pg_read_all_settings` on PostgreSQL.
fn data_directory_query(kind: SourceKind) -> Option<&'static str> {
    match kind {
        SourceKind::Postgres => Some("select current_setting('data_directory')"),
        _ => None,
    }
}

async fn ask_data_directory(s: &SourceConfig) -> Result<PathBuf, String> {
    let sql = data_directory_query(s.kind).ok_or_else(|| format!("{} servers are not asked", s.kind))?;
    let password = match &s.password {
        Some(r) => Some(SecretString::from(r.resolve().map_err(one_line)?.expose().to_owned())),
        None => None,
    };
    let endpoint = Endpoint {
        dsn: s.dsn.clone(),
        password,
        bin_dir: s.pg_bin_dir.clone(),
    };
    let engine = engine::for_kind(s.kind.as_str(), endpoint).map_err(one_line)?;
    match tokio::time::timeout(ASK_TIMEOUT, engine.query_text(sql)).await {
        Ok(Ok(Some(dir))) if !dir.is_empty() => Ok(PathBuf::from(dir)),
        Ok(Ok(_)) => Err("the server reported no data directory".into()),
        Ok(Err(e)) => Err(format!("the server could not be asked: {}", one_line(e))),
        Err(_) => Err(format!("the server did not answer within {}s", ASK_TIMEOUT.as_secs())),
    }
}

/// The shortest gap between the next few runs of a schedule.
fn shortest_gap(schedule: &crate::schedule::Schedule) -> Option<Duration> {
    let mut at = schedule.next_after(jiff::Timestamp::now())?;
    let mut shortest: Option<Duration> = None;
    for _ in 0..16 {
        let next = schedule.next_after(at)?;
        let gap = Duration::try_from(next.duration_since(at)).ok()?;
        shortest = Some(shortest.map_or(gap, |s| s.min(gap)));
        at = next;
    }
    shortest
}

/// Snapshot ids by source, read from the manifests' object names.
async fn snapshots(rc: &RepositoryConfig) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let resolve = |r: &Option<SecretRef>| -> Result<Option<SecretString>, String> {
        match r {
            Some(r) => Ok(Some(SecretString::from(
                r.resolve().map_err(one_line)?.expose().to_owned(),
            ))),
            None => Ok(None),
        }
    };
    let mut opts = StorageOptions::new(rc.url.clone());
    opts.endpoint = rc.endpoint.clone();
    opts.region = rc.region.clone();
    opts.access_key_id = resolve(&rc.access_key_id)?;
    opts.secret_access_key = resolve(&rc.secret_access_key)?;
    let list = async {
        let storage = Storage::open(&opts, false).map_err(one_line)?;
        // Listing needs no key: manifests are not encrypted.
        let repo = Repository::open(storage.store, rc.url.as_str(), &rc.name, Keys::default())
            .await
            .map_err(one_line)?;
        repo.manifest_paths(None).await.map_err(one_line)
    };
    let paths = tokio::time::timeout(LIST_TIMEOUT, list)
        .await
        .map_err(|_| format!("listing took longer than {}s", LIST_TIMEOUT.as_secs()))??;
    let mut by_source: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in paths {
        let Some(rest) = path.strip_prefix("snapshots/") else {
            continue;
        };
        let Some((source, file)) = rest.split_once('/') else {
            continue;
        };
        let Some(id) = file.strip_suffix(".json") else { continue };
        by_source.entry(source.to_owned()).or_default().insert(id.to_owned());
    }
    Ok(by_source)
}

async fn history(catalog: Option<&dyn Catalog>, config: &Config) -> Result<BTreeMap<String, DrillHistory>, String> {
    let catalog = catalog.ok_or_else(|| "the catalog is not available".to_owned())?;
    let mut all = BTreeMap::new();
    for name in config.sources.keys() {
        let filter = DrillRunFilter {
            source: Some(name.clone()),
            ..DrillRunFilter::default()
        };
        // Newest first.
        let runs = catalog.drill_runs(&filter).await.map_err(one_line)?;
        let history = DrillHistory {
            runs: runs.len() as u64,
            last_pass: runs
                .iter()
                .find(|r| r.verdict == DrillVerdict::Pass)
                .map(|r| r.started_at),
            last: runs.first().map(|r| (r.started_at, r.verdict)),
        };
        all.insert(name.clone(), history);
    }
    Ok(all)
}

/// An error as one line: findings are table rows, and errors carry their fix on a line of its own.
fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
