//! Shared-fate analysis on real things: throwaway PostgreSQL clusters whose data directories sit
//! under /tmp, file repositories on that filesystem and on /dev/shm, directories with real owners
//! and permission bits, drill runs in the real SQLite catalog, the `lifeboat fate` binary and its
//! exit codes. S3 evidence (bucket settings, probe outcomes, caller identities) is handed in as
//! values through the inspector trait, as the S3 inspection hands it over; the buckets themselves
//! live on the loopback S3 server (`scripts/s3-server start`).

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lifeboat::catalog::{self, CatalogTarget, DrillRunRecord, DrillVerdict};
use lifeboat::config::{self, CloudIdentityConfig, Config, RepositoryConfig};
use lifeboat::drill::spec;
use lifeboat::fate::evidence::{
    BucketEvidence, CallerIdentity, ObjectLock, ProbeAttempt, ProbeOutcome, ProbeResult, Versioning,
};
use lifeboat::fate::inputs::{
    DataDir, Inputs, RepositoryFacts, ServerAddress, ServerTarget, SourceFacts, StorageFacts,
};
use lifeboat::fate::{self, Analysis, Finding, NoInspection, RuleId, Severity, StorageInspector};
use lifeboat::scratch::{EphemeralOptions, EphemeralPostgres};
use support::cli::all_output;

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// A test's own directory (under /tmp): config, state dir with the SQLite catalog, drill files,
/// secrets, and file repositories that share the filesystem of the clusters' data directories.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        Site {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `state_dir` and `drills_dir` lines for a config.
    fn head(&self) -> String {
        format!(
            "state_dir: {}/state\ndrills_dir: {}/drills\n",
            self.path().display(),
            self.path().display()
        )
    }

    /// A secret file (mode 600) under `secrets/`.
    fn secret(&self, name: &str, value: &str) -> PathBuf {
        let path = self.path().join("secrets").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, value).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    fn drill(&self, file: &str, yaml: &str) {
        let dir = self.path().join("drills");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), yaml).unwrap();
    }

    fn config_path(&self) -> PathBuf {
        self.path().join("lifeboat.yaml")
    }

    fn config(&self, yaml: &str) -> Config {
        std::fs::write(self.config_path(), yaml).unwrap();
        config::load(&self.config_path()).unwrap_or_else(|e| panic!("config must load:\n{e}\n---\n{yaml}"))
    }

    fn catalog_target(&self, cfg: &Config) -> CatalogTarget {
        CatalogTarget::Sqlite(cfg.state_dir.join("catalog.db"))
    }

    /// Runs the analysis the way `lifeboat fate` does, with `inspector` for S3.
    async fn analyse(&self, yaml: &str, inspector: &dyn StorageInspector, probe: bool) -> Analysis {
        let cfg = self.config(yaml);
        let drills = if cfg.drills_dir.is_dir() {
            spec::load_dir(&cfg.drills_dir, &cfg).unwrap_or_else(|e| panic!("drills must load:\n{e}"))
        } else {
            Vec::new()
        };
        let catalog = catalog::open(&self.catalog_target(&cfg)).await.unwrap();
        let analysis = fate::analyse(&cfg, &drills, Some(catalog.as_ref()), inspector, probe).await;
        catalog.close().await;
        analysis
    }

    /// `lifeboat --config <this> ARGS...`.
    fn run(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"))
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .env_remove("LIFEBOAT_CONFIG")
            .output()
            .expect("run lifeboat")
    }
}

/// A source on a host that is never this one (TEST-NET-3): nothing of it is local, and nothing
/// connects to it.
const REMOTE_DSN: &str = "postgres://lifeboat@203.0.113.7:5432/orders";

fn source(name: &str, dsn: &str, environment: &str, repository: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    kind: postgres\n    dsn: \"{dsn}\"\n    environment: {environment}\n    repository: {repository}\n{extra}"
    )
}

fn file_repo(name: &str, path: &Path, extra: &str) -> String {
    format!("  {name}:\n    url: file://{}\n{extra}", path.display())
}

fn s3_repo(name: &str, bucket: &str, key_file: &Path, secret_file: &Path) -> String {
    format!(
        "  {name}:\n    url: s3://{bucket}/lifeboat\n    endpoint: {}\n    access_key_id_file: {}\n    secret_access_key_file: {}\n",
        support::s3_endpoint(),
        key_file.display(),
        secret_file.display()
    )
}

async fn cluster() -> EphemeralPostgres {
    EphemeralPostgres::start(&EphemeralOptions::default())
        .await
        .expect("start a throwaway PostgreSQL cluster")
}

fn device(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().dev()
}

/// A directory on /dev/shm, or `None` (with the reason printed) when /dev/shm is not another
/// device than `than` here: the cases that need two devices are then skipped.
fn other_device(than: &Path) -> Option<tempfile::TempDir> {
    let dir = tempfile::tempdir_in("/dev/shm").ok()?;
    if device(dir.path()) == device(than) {
        eprintln!(
            "SKIPPED: /dev/shm is on the same device as {}; the different-device case needs two filesystems",
            than.display()
        );
        return None;
    }
    Some(dir)
}

fn listing(a: &Analysis) -> String {
    a.findings
        .iter()
        .map(|f| format!("{} {} {}: {}", f.severity, f.rule, f.subject(), f.evidence))
        .collect::<Vec<_>>()
        .join("\n")
}

fn found<'a>(a: &'a Analysis, rule: RuleId, source: &str, repo: Option<&str>) -> Option<&'a Finding> {
    a.findings.iter().find(|f| {
        f.rule == rule && f.source.as_deref() == Some(source) && (repo.is_none() || f.repository.as_deref() == repo)
    })
}

fn expect<'a>(a: &'a Analysis, rule: RuleId, source: &str, repo: Option<&str>) -> &'a Finding {
    found(a, rule, source, repo)
        .unwrap_or_else(|| panic!("expected {rule} for {source} → {repo:?}; got:\n{}", listing(a)))
}

fn absent(a: &Analysis, rule: RuleId, source: &str, repo: Option<&str>) {
    if let Some(f) = found(a, rule, source, repo) {
        panic!(
            "{rule} should not fire for {source} → {repo:?}: {f:?}\nall:\n{}",
            listing(a)
        );
    }
}

/// S3 evidence as values, handed over through the inspector trait as the S3 inspection would.
#[derive(Default)]
struct Evidence {
    /// By repository name.
    buckets: BTreeMap<String, BucketEvidence>,
    /// By repository name.
    probes: BTreeMap<String, ProbeOutcome>,
    /// By where the cloud identity's access key id comes from (`file /x`).
    callers: BTreeMap<String, CallerIdentity>,
}

#[async_trait::async_trait]
impl StorageInspector for Evidence {
    async fn bucket(&self, repo: &RepositoryConfig) -> BucketEvidence {
        self.buckets.get(&repo.name).cloned().unwrap_or_else(|| BucketEvidence {
            repository: repo.name.clone(),
            unreadable: vec!["no evidence given".into()],
            ..Default::default()
        })
    }

    async fn probe(&self, repo: &RepositoryConfig) -> ProbeResult {
        let outcome = self
            .probes
            .get(&repo.name)
            .cloned()
            .unwrap_or(ProbeOutcome::CouldNotRun {
                reason: "no outcome given".into(),
            });
        let attempts = match &outcome {
            ProbeOutcome::Destroyed { .. } => vec![
                attempt("delete-by-key", true, "204 No Content"),
                attempt("delete-version", true, "204 No Content"),
            ],
            _ => vec![attempt("delete-by-key", false, "AccessDenied")],
        };
        ProbeResult {
            repository: repo.name.clone(),
            canary: "probes/canary-1".into(),
            outcome,
            attempts,
        }
    }

    async fn cloud_identity(&self, identity: &CloudIdentityConfig) -> Result<CallerIdentity, String> {
        self.callers
            .get(&identity.access_key_id.describe())
            .cloned()
            .ok_or_else(|| "no identity given".into())
    }
}

fn attempt(name: &str, accepted: bool, answer: &str) -> ProbeAttempt {
    ProbeAttempt {
        name: name.into(),
        accepted,
        answer: answer.into(),
    }
}

fn bucket(repo: &str, versioning: Versioning, lock: Option<(&str, u32)>, caller_arn: &str) -> BucketEvidence {
    BucketEvidence {
        repository: repo.into(),
        bucket: format!("{repo}-bucket"),
        endpoint: None,
        region: Some("eu-west-1".into()),
        versioning,
        object_lock: lock.map(|(mode, days)| ObjectLock {
            mode: Some(mode.into()),
            default_retention_days: Some(days),
        }),
        caller: Some(caller(caller_arn)),
        unreadable: Vec::new(),
    }
}

/// `arn:aws:iam::ACCOUNT:user/NAME` → its identity.
fn caller(arn: &str) -> CallerIdentity {
    CallerIdentity {
        arn: arn.into(),
        account: arn.split(':').nth(4).unwrap_or_default().into(),
        user_id: format!("AIDA{}", arn.len()),
    }
}

async fn record_drill(site: &Site, cfg: &Config, source: &str, age: Duration, verdict: DrillVerdict) {
    let catalog = catalog::open(&site.catalog_target(cfg)).await.unwrap();
    let started = jiff::Timestamp::now() - jiff::SignedDuration::try_from(age).unwrap();
    catalog
        .record_drill_run(&DrillRunRecord {
            id: format!("run-{}-{}", source, support::unique_name("d")),
            drill: format!("{source}-nightly"),
            source: source.into(),
            repository: "near".into(),
            snapshot_id: Some("20261120T030000Z-00000001".into()),
            started_at: started,
            finished_at: started + jiff::SignedDuration::from_secs(60),
            verdict,
            rto_seconds: Some(60.0),
            rpo_seconds: Some(3600.0),
            sla_rto_seconds: None,
            sla_rpo_seconds: None,
            detail: None,
            evidence: serde_json::json!({"verdict": verdict}),
        })
        .await
        .unwrap();
    catalog.close().await;
}

fn drill_file(name: &str, source: &str, scratch: &str) -> String {
    format!(
        "name: {name}\nsource: {source}\nrestore_point: latest\nscratch:\n{scratch}checks:\n  - fingerprint: true\n"
    )
}

// ---------------------------------------------------------------------------------------------
// The rule table
// ---------------------------------------------------------------------------------------------

#[test]
fn the_readme_rule_table_is_the_rule_table() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("<!-- fate-rules:begin")
        .expect("README has the fate-rules:begin marker");
    let body = &readme[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let end = body
        .find("<!-- fate-rules:end -->")
        .expect("README has the fate-rules:end marker");
    let expected = fate::markdown_table();
    assert!(
        body[..end] == expected,
        "README.md's rule table differs from src/fate/rules.rs; replace the lines between the markers with:\n{expected}"
    );
    // Every rule of DESIGN.md's table is there, each documented.
    let ids: Vec<&str> = fate::RULES.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "same-device",
            "same-host",
            "no-immutability",
            "deletable",
            "shared-credentials",
            "db-user-can-write",
            "single-copy",
            "same-provider-region",
            "key-with-data",
            "untested",
            "scratch-is-production",
            "retention-too-short"
        ]
    );
    for r in &fate::RULES {
        assert!(!r.what.is_empty() && !r.why.is_empty() && !r.fix.is_empty(), "{r:?}");
    }
}

#[test]
fn explain_prints_a_rule_and_refuses_an_unknown_one_with_a_suggestion() {
    // No config is needed to explain a rule.
    let site = Site::new();
    let o = site.run(&["fate", "--explain", "same-device"]);
    let text = all_output(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    let rule = RuleId::SameDevice.rule();
    for part in [rule.title, rule.what, rule.why, rule.fix] {
        assert!(text.contains(part), "missing {part:?} in:\n{text}");
    }
    let o = site.run(&["--json", "fate", "--explain", "deletable"]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (doc["id"].as_str(), doc["severity"].as_str()),
        (Some("deletable"), Some("critical"))
    );

    let o = site.run(&["fate", "--explain", "same-devise"]);
    let text = all_output(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(text.contains("did you mean `same-device`?"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// same-device, same-host, no-immutability (file)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_repository_beside_the_data_directory_shares_its_device_and_one_on_dev_shm_does_not() {
    let pg = cluster().await;
    let Some(shm) = other_device(pg.data_dir()) else { return };
    let site = Site::new();
    assert_eq!(device(site.path()), device(pg.data_dir()), "both under /tmp");
    let near = site.path().join("near");
    let far = shm.path().join("far");
    std::fs::create_dir_all(&near).unwrap();
    std::fs::create_dir_all(&far).unwrap();
    let dsn = pg.dsn("postgres");
    let yaml = format!(
        "{}repositories:\n{}{}sources:\n{}{}{}",
        site.head(),
        file_repo("near", &near, ""),
        file_repo("far", &far, ""),
        source("beside", &dsn, "staging", "near", ""),
        source("apart", &dsn, "staging", "far", ""),
        source("elsewhere", REMOTE_DSN, "staging", "near", ""),
    );
    let a = site.analyse(&yaml, &NoInspection, false).await;

    let f = expect(&a, RuleId::SameDevice, "beside", Some("near"));
    assert_eq!(f.severity, Severity::Critical);
    let data = pg.data_dir().display().to_string();
    assert!(f.evidence.contains(&data), "{}", f.evidence);
    assert!(f.evidence.contains(&near.display().to_string()), "{}", f.evidence);
    assert!(f.evidence.contains("as the server reports it"), "{}", f.evidence);
    assert!(f.evidence.contains("the same filesystem"), "{}", f.evidence);
    assert!(f.fix.contains("near"), "{}", f.fix);
    absent(&a, RuleId::SameDevice, "apart", Some("far"));
    // A database on another host shares no disk with a directory here.
    absent(&a, RuleId::SameDevice, "elsewhere", Some("near"));

    // Both clusters' repositories are directories on the database's host; the remote one's is not.
    for (s, r) in [("beside", "near"), ("apart", "far")] {
        let f = expect(&a, RuleId::SameHost, s, Some(r));
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.evidence.contains("on this host"), "{}", f.evidence);
    }
    absent(&a, RuleId::SameHost, "elsewhere", Some("near"));

    // A plain directory keeps nothing once deleted.
    let f = expect(&a, RuleId::NoImmutability, "apart", Some("far"));
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.evidence.contains("plain directory"), "{}", f.evidence);
    assert!(a.has_critical());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_data_directory_comes_from_the_server_or_the_config_and_is_otherwise_not_judged() {
    let pg = cluster().await;
    pg.psql("postgres", "create role backup login").await.unwrap();
    let dsn = pg.dsn("postgres").replacen("postgres@", "backup@", 1);
    let site = Site::new();
    let near = site.path().join("near");
    std::fs::create_dir_all(&near).unwrap();
    let yaml = |extra: &str| {
        format!(
            "{}repositories:\n{}sources:\n{}",
            site.head(),
            file_repo("near", &near, ""),
            source("rental", &dsn, "staging", "near", extra),
        )
    };

    // A role without pg_read_all_settings cannot ask: not judged, and the fix says how to enable it.
    let a = site.analyse(&yaml(""), &NoInspection, false).await;
    let f = expect(&a, RuleId::SameDevice, "rental", Some("near"));
    assert_eq!(f.severity, Severity::Info, "{f:?}");
    assert!(f.evidence.contains("could not judge"), "{}", f.evidence);
    assert!(f.evidence.contains("pg_read_all_settings"), "{}", f.evidence);
    assert!(f.fix.contains("sources.rental.data_dir"), "{}", f.fix);

    // Configured: judged from the config.
    let configured = format!("    data_dir: {}\n", pg.data_dir().display());
    let a = site.analyse(&yaml(&configured), &NoInspection, false).await;
    let f = expect(&a, RuleId::SameDevice, "rental", Some("near"));
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.evidence.contains("from `sources.rental.data_dir`"), "{}", f.evidence);

    // Granted: the server says where.
    pg.psql("postgres", "grant pg_read_all_settings to backup")
        .await
        .unwrap();
    let a = site.analyse(&yaml(""), &NoInspection, false).await;
    let f = expect(&a, RuleId::SameDevice, "rental", Some("near"));
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.evidence.contains("as the server reports it"), "{}", f.evidence);
}

// ---------------------------------------------------------------------------------------------
// db-user-can-write
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_database_user_writing_the_repository_follows_owners_groups_and_modes() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: giving directories to the database's OS user needs root");
        return;
    }
    let pg = cluster().await;
    let data = std::fs::metadata(pg.data_dir()).unwrap();
    assert_ne!(data.uid(), 0, "the cluster runs as the postgres OS user");
    let site = Site::new();
    let srv = site.path().join("srv");
    let repo = srv.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    let own = |p: &Path, uid: u32, gid: u32| {
        nix::unistd::chown(
            p,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .unwrap()
    };
    mode(site.path(), 0o755);
    mode(&srv, 0o755);
    mode(&repo, 0o755);
    let yaml = format!(
        "{}repositories:\n{}sources:\n{}",
        site.head(),
        file_repo("local", &repo, ""),
        source("rental", &pg.dsn("postgres"), "staging", "local", ""),
    );
    let judge = || site.analyse(&yaml, &NoInspection, false);

    // root:root 0755: postgres may read, not write.
    absent(&judge().await, RuleId::DbUserCanWrite, "rental", Some("local"));

    // Group-writable by postgres's group.
    own(&repo, 0, data.gid());
    mode(&repo, 0o775);
    let a = judge().await;
    let f = expect(&a, RuleId::DbUserCanWrite, "rental", Some("local"));
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.evidence.contains("postgres"), "{}", f.evidence);
    assert!(f.evidence.contains("through group"), "{}", f.evidence);
    own(&repo, 0, 0);
    mode(&repo, 0o755);

    // A directory inside, owned by postgres: it can chmod it and delete what it holds.
    let chunks = repo.join("chunks");
    std::fs::create_dir(&chunks).unwrap();
    own(&chunks, data.uid(), data.gid());
    let a = judge().await;
    let f = expect(&a, RuleId::DbUserCanWrite, "rental", Some("local"));
    assert!(
        f.evidence.contains(&format!("owns {}", chunks.display())),
        "{}",
        f.evidence
    );
    own(&chunks, 0, 0);
    absent(&judge().await, RuleId::DbUserCanWrite, "rental", Some("local"));

    // World-writable, but behind a directory postgres cannot enter.
    mode(&repo, 0o777);
    assert!(found(&judge().await, RuleId::DbUserCanWrite, "rental", Some("local")).is_some());
    mode(&srv, 0o700);
    absent(&judge().await, RuleId::DbUserCanWrite, "rental", Some("local"));

    // Sticky: others' entries cannot be deleted.
    mode(&srv, 0o755);
    mode(&repo, 0o1777);
    absent(&judge().await, RuleId::DbUserCanWrite, "rental", Some("local"));
}

// ---------------------------------------------------------------------------------------------
// key-with-data
// ---------------------------------------------------------------------------------------------

const IDENTITY: &str = "AGE-SECRET-KEY-1GQ9778VQXMMJVE8SK7J6VT8UJ4HDQAJUVSFCWCM02D8GEWQ72PVQ2Y5J33";
const RECIPIENT: &str = "age1t7rxyev2z3rw82stdlrrepyc39nvn86l5078zqkf5uasdy86jp6svpy7pa";

fn identity_at(path: &Path) -> String {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("{IDENTITY}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    format!(
        "    encryption:\n      recipients: [{RECIPIENT}]\n      identity_file: {}\n",
        path.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_identity_inside_the_repository_or_beside_the_data_is_key_with_data() {
    let pg = cluster().await;
    let Some(shm) = other_device(pg.data_dir()) else { return };
    let site = Site::new();
    let near = site.path().join("near");
    std::fs::create_dir_all(&near).unwrap();
    let dsn = pg.dsn("postgres");
    let yaml = |identity: &str, dsn: &str| {
        format!(
            "{}repositories:\n{}sources:\n{}",
            site.head(),
            file_repo("near", &near, identity),
            source("rental", dsn, "staging", "near", ""),
        )
    };

    let inside = near.join("keys/near.agekey");
    let a = site
        .analyse(&yaml(&identity_at(&inside), &dsn), &NoInspection, false)
        .await;
    let f = expect(&a, RuleId::KeyWithData, "rental", Some("near"));
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.evidence.contains("is inside repository `near`"), "{}", f.evidence);
    assert!(
        !format!("{a:?}").contains("GQ9778"),
        "the identity itself never appears"
    );

    // On the data directory's filesystem (both under /tmp), outside the repository.
    let beside = site.path().join("keys/near.agekey");
    let a = site
        .analyse(&yaml(&identity_at(&beside), &dsn), &NoInspection, false)
        .await;
    let f = expect(&a, RuleId::KeyWithData, "rental", Some("near"));
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.evidence.contains("with the data directory"), "{}", f.evidence);
    assert!(!f.evidence.contains("inside repository"), "{}", f.evidence);

    // Elsewhere on the database's host: a warning.
    let apart = shm.path().join("near.agekey");
    let a = site
        .analyse(&yaml(&identity_at(&apart), &dsn), &NoInspection, false)
        .await;
    let f = expect(&a, RuleId::KeyWithData, "rental", Some("near"));
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.evidence.contains("database host"), "{}", f.evidence);

    // The database elsewhere, the key on its own device here: nothing.
    let a = site
        .analyse(&yaml(&identity_at(&apart), REMOTE_DSN), &NoInspection, false)
        .await;
    absent(&a, RuleId::KeyWithData, "rental", Some("near"));
    // And without encryption there is no key to misplace.
    let a = site.analyse(&yaml("", &dsn), &NoInspection, false).await;
    absent(&a, RuleId::KeyWithData, "rental", Some("near"));
}

// ---------------------------------------------------------------------------------------------
// shared-credentials
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn one_secret_or_one_identity_for_source_and_repository_is_shared_credentials() {
    let bucket_name = support::unique_name("lbfate");
    support::create_bucket(&bucket_name).await;
    let site = Site::new();
    let repo_key = site.secret("repo-key", "AKIAREPOWRITER");
    let repo_secret = site.secret("repo-secret", "Repo-S3cret-Value-71");
    let cloud_key = site.secret("cloud-key", "AKIAINFRAADMIN");
    let cloud_secret = site.secret("cloud-secret", "Cloud-S3cret-Value-42");
    let yaml = |repo_key: &Path, password: Option<&Path>| {
        let password = password.map_or(String::new(), |p| format!("    password_file: {}\n", p.display()));
        format!(
            "{}repositories:\n{}sources:\n{}",
            site.head(),
            s3_repo("offsite", &bucket_name, repo_key, &repo_secret),
            source(
                "orders",
                REMOTE_DSN,
                "production",
                "offsite",
                &format!(
                    "{password}    cloud_identity:\n      access_key_id_file: {}\n      secret_access_key_file: {}\n",
                    cloud_key.display(),
                    cloud_secret.display()
                )
            ),
        )
    };
    let mut evidence = Evidence::default();
    let writer = "arn:aws:iam::222222222222:user/lifeboat-writer";
    evidence.buckets.insert(
        "offsite".into(),
        bucket("offsite", Versioning::Enabled, Some(("GOVERNANCE", 30)), writer),
    );
    let admin_key = format!("file {}", cloud_key.display());
    evidence
        .callers
        .insert(admin_key.clone(), caller("arn:aws:iam::111111111111:user/infra-admin"));

    // Separate keys, values and accounts: nothing shared.
    let a = site.analyse(&yaml(&repo_key, None), &evidence, false).await;
    absent(&a, RuleId::SharedCredentials, "orders", Some("offsite"));

    // The repository's key id comes from the very file the infrastructure's does.
    let a = site.analyse(&yaml(&cloud_key, None), &evidence, false).await;
    let f = expect(&a, RuleId::SharedCredentials, "orders", Some("offsite"));
    assert_eq!(f.severity, Severity::Critical);
    assert!(
        f.evidence
            .contains(&format!("both come from file {}", cloud_key.display())),
        "{}",
        f.evidence
    );

    // Another file holding the same value as the repository's secret: the database password.
    let password = site.secret("db-password", "Repo-S3cret-Value-71");
    let a = site.analyse(&yaml(&repo_key, Some(&password)), &evidence, false).await;
    let f = expect(&a, RuleId::SharedCredentials, "orders", Some("offsite"));
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.evidence.contains("hold the same value"), "{}", f.evidence);
    assert!(f.evidence.contains("sources.orders.password"), "{}", f.evidence);
    assert!(
        !format!("{a:?}").contains("Repo-S3cret-Value-71"),
        "a secret value was shown"
    );

    // The same principal behind different keys (STS says so).
    evidence.callers.insert(admin_key.clone(), caller(writer));
    let a = site.analyse(&yaml(&repo_key, None), &evidence, false).await;
    let f = expect(&a, RuleId::SharedCredentials, "orders", Some("offsite"));
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.evidence.contains("same principal"), "{}", f.evidence);

    // Another principal of the same account: a warning.
    evidence
        .callers
        .insert(admin_key, caller("arn:aws:iam::222222222222:user/infra-admin"));
    let a = site.analyse(&yaml(&repo_key, None), &evidence, false).await;
    let f = expect(&a, RuleId::SharedCredentials, "orders", Some("offsite"));
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.evidence.contains("same cloud account 222222222222"), "{}", f.evidence);
}

// ---------------------------------------------------------------------------------------------
// no-immutability, deletable, retention-too-short (lock) on S3 evidence
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn bucket_settings_and_the_probe_judge_immutability() {
    let bucket_name = support::unique_name("lbfate");
    support::create_bucket(&bucket_name).await;
    let site = Site::new();
    let key = site.secret("repo-key", "AKIAREPOWRITER");
    let secret = site.secret("repo-secret", "Repo-S3cret-Value-71");
    let yaml = format!(
        "{}repositories:\n{}sources:\n{}",
        site.head(),
        s3_repo("offsite", &bucket_name, &key, &secret),
        source("orders", REMOTE_DSN, "production", "offsite", ""),
    );
    let writer = "arn:aws:iam::222222222222:user/lifeboat-writer";
    let judge = |b: BucketEvidence, probe: Option<ProbeOutcome>| {
        let mut e = Evidence::default();
        e.buckets.insert("offsite".into(), b);
        let probed = probe.is_some();
        if let Some(p) = probe {
            e.probes.insert("offsite".into(), p);
        }
        let site = &site;
        let yaml = &yaml;
        async move { site.analyse(yaml, &e, probed).await }
    };
    let severity = |a: &Analysis, rule| found(a, rule, "orders", Some("offsite")).map(|f| f.severity);

    // Neither versioning nor Object Lock: a delete is final.
    let a = judge(bucket("offsite", Versioning::Off, None, writer), None).await;
    assert_eq!(
        severity(&a, RuleId::NoImmutability),
        Some(Severity::Critical),
        "{}",
        listing(&a)
    );
    // Versions only: old versions can still be deleted.
    let a = judge(bucket("offsite", Versioning::Enabled, None, writer), None).await;
    assert_eq!(severity(&a, RuleId::NoImmutability), Some(Severity::Warning));
    // Object Lock with a default retention: immutable.
    let a = judge(
        bucket("offsite", Versioning::Enabled, Some(("COMPLIANCE", 30)), writer),
        None,
    )
    .await;
    assert_eq!(severity(&a, RuleId::NoImmutability), None, "{}", listing(&a));
    // Object Lock without a default rule locks nothing lifeboat writes.
    let mut unlocked = bucket("offsite", Versioning::Enabled, None, writer);
    unlocked.object_lock = Some(ObjectLock::default());
    let a = judge(unlocked, None).await;
    assert_eq!(severity(&a, RuleId::NoImmutability), Some(Severity::Warning));
    // What could not be read is said, not guessed.
    let mut unreadable = bucket("offsite", Versioning::Off, None, writer);
    unreadable.unreadable = vec!["GetBucketVersioning: AccessDenied".into()];
    let a = judge(unreadable, None).await;
    let f = expect(&a, RuleId::NoImmutability, "orders", Some("offsite"));
    assert_eq!(f.severity, Severity::Info);
    assert!(
        f.evidence.contains("GetBucketVersioning: AccessDenied"),
        "{}",
        f.evidence
    );

    // Without --probe, deletable is not judged, and a note (not a finding) says so.
    let locked = || bucket("offsite", Versioning::Enabled, Some(("GOVERNANCE", 30)), writer);
    let a = judge(locked(), None).await;
    assert_eq!(severity(&a, RuleId::Deletable), None);
    assert!(
        a.notes
            .iter()
            .any(|n| n.contains("deletable: not judged") && n.contains("--probe")),
        "{:?}",
        a.notes
    );
    // The canary survived every attempt.
    let a = judge(locked(), Some(ProbeOutcome::Survived)).await;
    assert_eq!(severity(&a, RuleId::Deletable), None, "{}", listing(&a));
    assert!(a.notes.is_empty(), "{:?}", a.notes);
    // It did not: critical, naming the attempt.
    let a = judge(
        locked(),
        Some(ProbeOutcome::Destroyed {
            by: "delete-version".into(),
        }),
    )
    .await;
    let f = expect(&a, RuleId::Deletable, "orders", Some("offsite"));
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.evidence.contains("destroyed by `delete-version`"), "{}", f.evidence);
    assert!(f.evidence.contains("probes/canary-1"), "{}", f.evidence);
    // The probe could not run: said, not guessed.
    let a = judge(
        locked(),
        Some(ProbeOutcome::CouldNotRun {
            reason: "PutObject: AccessDenied".into(),
        }),
    )
    .await;
    assert_eq!(severity(&a, RuleId::Deletable), Some(Severity::Info));

    // A lock shorter than the time to notice a bad backup.
    let a = judge(
        bucket("offsite", Versioning::Enabled, Some(("GOVERNANCE", 3)), writer),
        None,
    )
    .await;
    let f = expect(&a, RuleId::RetentionTooShort, "orders", Some("offsite"));
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.evidence.contains("3 day(s) (GOVERNANCE)"), "{}", f.evidence);
    assert!(f.evidence.contains("fate.detect_within (7d)"), "{}", f.evidence);
    let a = judge(locked(), None).await;
    absent(&a, RuleId::RetentionTooShort, "orders", Some("offsite"));
}

// ---------------------------------------------------------------------------------------------
// retention-too-short (the source's retention)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn retention_must_reach_back_further_than_a_bad_backup_can_go_unnoticed() {
    let site = Site::new();
    let near = site.path().join("near");
    std::fs::create_dir_all(&near).unwrap();
    let yaml = |extra: &str| {
        format!(
            "{}repositories:\n{}sources:\n{}",
            site.head(),
            file_repo("near", &near, ""),
            source("orders", REMOTE_DSN, "production", "near", extra),
        )
    };
    let judge = |extra: String| {
        let yaml = yaml(&extra);
        let site = &site;
        async move { site.analyse(&yaml, &NoInspection, false).await }
    };

    let a = judge("    retention: { keep_daily: 3 }\n".into()).await;
    let f = expect(&a, RuleId::RetentionTooShort, "orders", None);
    assert_eq!(f.severity, Severity::Warning);
    assert!(
        f.evidence.contains("keep_daily 3") && f.evidence.contains("about 2d"),
        "{}",
        f.evidence
    );
    absent(
        &judge("    retention: { keep_daily: 14 }\n".into()).await,
        RuleId::RetentionTooShort,
        "orders",
        None,
    );
    absent(&judge(String::new()).await, RuleId::RetentionTooShort, "orders", None);
    // keep_last counts backups: how far back depends on the schedule.
    let a = judge("    retention: { keep_last: 5 }\n".into()).await;
    assert_eq!(
        expect(&a, RuleId::RetentionTooShort, "orders", None).severity,
        Severity::Info
    );
    let a = judge("    schedule: { backup: \"0 */6 * * *\" }\n    retention: { keep_last: 5 }\n".into()).await;
    let f = expect(&a, RuleId::RetentionTooShort, "orders", None);
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.evidence.contains("about 1d"), "{}", f.evidence);
    // The window is the config's.
    let a = judge("    retention: { keep_daily: 3 }\nfate:\n  detect_within: 2d\n".into()).await;
    absent(&a, RuleId::RetentionTooShort, "orders", None);
}

// ---------------------------------------------------------------------------------------------
// untested
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn untested_reads_the_drill_history_in_the_catalog() {
    let site = Site::new();
    let near = site.path().join("near");
    std::fs::create_dir_all(&near).unwrap();
    let yaml = |fate: &str| {
        format!(
            "{}repositories:\n{}sources:\n{}{}{fate}",
            site.head(),
            file_repo("near", &near, ""),
            source("orders", REMOTE_DSN, "production", "near", ""),
            source("billing", REMOTE_DSN, "production", "near", ""),
        )
    };
    let cfg = site.config(&yaml(""));
    let untested = |a: &Analysis, s: &str| found(a, RuleId::Untested, s, None).map(|f| f.evidence.clone());

    // No drill file at all.
    let a = site.analyse(&yaml(""), &NoInspection, false).await;
    assert!(
        untested(&a, "orders")
            .unwrap()
            .contains("no drill file names source `orders`")
    );

    // A drill file, never run.
    site.drill(
        "orders.yaml",
        &drill_file("orders-nightly", "orders", "  kind: ephemeral\n"),
    );
    let a = site.analyse(&yaml(""), &NoInspection, false).await;
    assert!(
        untested(&a, "orders").unwrap().contains("has never run"),
        "{}",
        listing(&a)
    );

    // Run, and failed.
    record_drill(&site, &cfg, "orders", Duration::from_secs(3600), DrillVerdict::Fail).await;
    let a = site.analyse(&yaml(""), &NoInspection, false).await;
    let e = untested(&a, "orders").unwrap();
    assert!(
        e.contains("none of the 1 recorded drill run(s)") && e.contains("`fail`"),
        "{e}"
    );

    // Passed ten days ago: older than the default 8d.
    record_drill(
        &site,
        &cfg,
        "orders",
        Duration::from_secs(10 * 86_400),
        DrillVerdict::Pass,
    )
    .await;
    let a = site.analyse(&yaml(""), &NoInspection, false).await;
    let e = untested(&a, "orders").unwrap();
    assert!(
        e.contains("newest passing drill") && e.contains("fate.untested_after is 8d"),
        "{e}"
    );

    // Passed yesterday: tested; unless the window is shorter.
    record_drill(&site, &cfg, "orders", Duration::from_secs(86_400), DrillVerdict::Pass).await;
    let a = site.analyse(&yaml(""), &NoInspection, false).await;
    assert_eq!(untested(&a, "orders"), None, "{}", listing(&a));
    // The other source's history is its own.
    assert!(untested(&a, "billing").is_some());
    let a = site
        .analyse(&yaml("fate:\n  untested_after: 12h\n"), &NoInspection, false)
        .await;
    assert!(untested(&a, "orders").is_some());
}

// ---------------------------------------------------------------------------------------------
// scratch-is-production
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_drill_whose_scratch_server_resolves_to_a_production_server_is_refused_in_advance() {
    let site = Site::new();
    let near = site.path().join("near");
    std::fs::create_dir_all(&near).unwrap();
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let yaml = format!(
        "{}repositories:\n{}sources:\n{}{}",
        site.head(),
        file_repo("near", &near, ""),
        // Production on this host, spelled as a loopback address; nothing listens as `lifeboat`.
        source(
            "orders",
            "postgres://lifeboat@127.0.0.1:5432/orders",
            "production",
            "near",
            ""
        ),
        source("reports", REMOTE_DSN, "staging", "near", ""),
    );
    let scratch = |dsn: &str| {
        let file = site.secret("scratch-dsn", dsn);
        format!("  kind: server\n  dsn_file: {}\n", file.display())
    };

    // The scratch server named by this host's own name, same port: the production server.
    site.drill(
        "reports.yaml",
        &drill_file(
            "reports-nightly",
            "reports",
            &scratch(&format!("postgres://drill:Scratch-Pw-93@{host}:5432/postgres")),
        ),
    );
    let a = site.analyse(&yaml, &NoInspection, false).await;
    let f = expect(&a, RuleId::ScratchIsProduction, "reports", None);
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.evidence.contains("production source `orders`"), "{}", f.evidence);
    assert!(f.evidence.contains("both on this host, port 5432"), "{}", f.evidence);
    assert!(
        !format!("{a:?}").contains("Scratch-Pw-93"),
        "the scratch DSN's password was shown"
    );

    // Another port: another server.
    site.drill(
        "reports.yaml",
        &drill_file(
            "reports-nightly",
            "reports",
            &scratch("postgres://drill@127.0.0.1:5499/postgres"),
        ),
    );
    absent(
        &site.analyse(&yaml, &NoInspection, false).await,
        RuleId::ScratchIsProduction,
        "reports",
        None,
    );

    // An ephemeral scratch has no server at all.
    site.drill(
        "reports.yaml",
        &drill_file("reports-nightly", "reports", "  kind: ephemeral\n"),
    );
    absent(
        &site.analyse(&yaml, &NoInspection, false).await,
        RuleId::ScratchIsProduction,
        "reports",
        None,
    );
}

// ---------------------------------------------------------------------------------------------
// single-copy, same-provider-region
// ---------------------------------------------------------------------------------------------

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_newest_snapshot_in_one_repository_is_single_copy_until_copied() {
    let pg = cluster().await;
    let site = Site::new();
    let near = site.path().join("near");
    let copy = site.path().join("copy");
    let base = format!("{}repositories:\n{}", site.head(), file_repo("near", &near, ""));
    let sources = format!(
        "sources:\n{}",
        source("rental", &pg.dsn("postgres"), "staging", "near", "")
    );
    site.config(&format!("{base}{sources}"));
    for args in [&["init", "near"][..], &["-q", "backup", "rental"][..]] {
        let o = site.run(args);
        assert!(o.status.success(), "{}", all_output(&o));
    }
    let snapshot = std::fs::read_dir(near.join("snapshots/rental"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .into_string()
        .unwrap()
        .trim_end_matches(".json")
        .to_owned();

    let a = site.analyse(&format!("{base}{sources}"), &NoInspection, false).await;
    let f = expect(&a, RuleId::SingleCopy, "rental", Some("near"));
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.evidence.contains(&snapshot), "{}", f.evidence);
    absent(&a, RuleId::SameProviderRegion, "rental", None);

    // A second repository holding the same snapshot (as `lifeboat copy` leaves it) is a copy.
    copy_tree(&near, &copy);
    let both = format!("{base}{}{sources}", file_repo("copy", &copy, ""));
    let a = site.analyse(&both, &NoInspection, false).await;
    absent(&a, RuleId::SingleCopy, "rental", None);
    // The copy's pair is judged too.
    expect(&a, RuleId::SameDevice, "rental", Some("copy"));
    // Both on this host: one provider.
    let f = expect(&a, RuleId::SameProviderRegion, "rental", None);
    assert!(
        f.evidence.contains("`near`, `copy`") && f.evidence.contains("this host"),
        "{}",
        f.evidence
    );

    // Before any backup, there is nothing to count.
    let fresh = site.path().join("fresh");
    let yaml = format!(
        "{}repositories:\n{}sources:\n{}",
        site.head(),
        file_repo("fresh", &fresh, ""),
        source("rental", &pg.dsn("postgres"), "staging", "fresh", "")
    );
    let a = site.analyse(&yaml, &NoInspection, false).await;
    assert_eq!(expect(&a, RuleId::SingleCopy, "rental", None).severity, Severity::Info);
}

/// Same-provider on evidence values alone, through the pure evaluation.
#[test]
fn copies_with_one_provider_share_its_fate_and_another_provider_does_not() {
    let s3 = |name: &str, endpoint: Option<&str>, region: &str| RepositoryFacts {
        name: name.into(),
        storage: StorageFacts::S3 {
            bucket: format!("{name}-bucket"),
            endpoint: endpoint.map(Into::into),
            region: Some(region.into()),
            evidence: BucketEvidence {
                repository: name.into(),
                bucket: format!("{name}-bucket"),
                versioning: Versioning::Enabled,
                object_lock: Some(ObjectLock {
                    mode: Some("COMPLIANCE".into()),
                    default_retention_days: Some(30),
                }),
                ..Default::default()
            },
            probe: None,
        },
        credentials: Vec::new(),
        identity: None,
        snapshots: Ok(BTreeMap::from([(
            "orders".to_owned(),
            ["20261124T030000Z-00000001".to_owned()].into(),
        )])),
    };
    let inputs = |repos: Vec<RepositoryFacts>| Inputs {
        now: jiff::Timestamp::now(),
        untested_after: Duration::from_secs(8 * 86_400),
        detect_within: Duration::from_secs(7 * 86_400),
        probed: false,
        host_name: "backup-host".into(),
        sources: vec![SourceFacts {
            name: "orders".into(),
            environment: "production".into(),
            repository: "primary".into(),
            server: ServerAddress {
                shown: "203.0.113.7:5432".into(),
                port: 5432,
                target: ServerTarget::Remote {
                    host: "203.0.113.7".into(),
                    addrs: vec!["203.0.113.7".parse().unwrap()],
                },
            },
            data_dir: DataDir::Remote,
            db_user: Err("remote".into()),
            credentials: Vec::new(),
            cloud_caller: None,
            retention: None,
            backup_interval: None,
        }],
        repositories: repos,
        drills: Vec::new(),
        drill_history: Ok(BTreeMap::new()),
    };
    let findings = fate::evaluate(&inputs(vec![
        s3("primary", None, "eu-west-1"),
        s3("secondary", None, "eu-central-1"),
    ]));
    let f = findings
        .iter()
        .find(|f| f.rule == RuleId::SameProviderRegion)
        .expect("two AWS buckets share a provider");
    assert!(
        f.evidence.contains("AWS S3") && f.evidence.contains("eu-central-1, eu-west-1"),
        "{}",
        f.evidence
    );
    assert!(!findings.iter().any(|f| f.rule == RuleId::SingleCopy), "{findings:?}");

    let findings = fate::evaluate(&inputs(vec![
        s3("primary", None, "eu-west-1"),
        s3("secondary", Some("https://s3.other-cloud.example"), "de-1"),
    ]));
    assert!(
        !findings.iter().any(|f| f.rule == RuleId::SameProviderRegion),
        "{findings:?}"
    );
    // Immutable, separate, remote: nothing critical, nothing about placement.
    assert!(findings.iter().all(|f| f.severity < Severity::Critical), "{findings:?}");
}

// ---------------------------------------------------------------------------------------------
// The incident
// ---------------------------------------------------------------------------------------------

/// The failure this project answers: the data directory and the file repository on one volume,
/// and one credential (the infrastructure's) reaching both. Then the repository moves to a locked
/// bucket with a writer key of its own.
#[tokio::test(flavor = "multi_thread")]
async fn the_incident_is_critical_and_is_gone_once_the_backups_live_elsewhere() {
    let pg = cluster().await;
    let site = Site::new();
    let repo = site.path().join("backups");
    let cloud_key = site.secret("cloud-key", "AKIAINFRAADMIN");
    let cloud_secret = site.secret("cloud-secret", "Infra-Admin-S3cret-88");
    let cloud = format!(
        "    cloud_identity:\n      access_key_id_file: {}\n      secret_access_key_file: {}\n",
        cloud_key.display(),
        cloud_secret.display()
    );
    let sources = format!(
        "sources:\n{}",
        source("bookings", &pg.dsn("postgres"), "production", "local", &cloud)
    );
    let before = format!(
        "{}repositories:\n{}{sources}",
        site.head(),
        file_repo("local", &repo, "")
    );
    site.config(&before);
    let o = site.run(&["init", "local"]);
    assert!(o.status.success(), "{}", all_output(&o));

    // Through the binary: exit 1, both named critical.
    let o = site.run(&["fate"]);
    let text = all_output(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    for rule in ["same-device", "shared-credentials"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("critical") && l.contains(rule) && l.contains("bookings → local")),
            "no critical {rule} line in:\n{text}"
        );
    }
    assert!(
        !text.contains("Infra-Admin-S3cret-88") && !text.contains("AKIAINFRAADMIN"),
        "{text}"
    );
    let o = site.run(&["--json", "fate"]);
    assert_eq!(o.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let critical: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "critical")
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert!(
        critical.contains(&"same-device") && critical.contains(&"shared-credentials"),
        "{critical:?}"
    );
    assert_eq!(doc["counts"]["critical"].as_u64(), Some(critical.len() as u64));

    // The repository moves to a bucket with Object Lock, written with a key of its own, in
    // another account than the infrastructure's.
    let bucket_name = support::unique_name("lbincident");
    locked_bucket(&bucket_name, 30).await;
    let writer_key = site.secret("writer-key", "AKIALIFEBOATWRITER");
    let writer_secret = site.secret("writer-secret", "Writer-S3cret-19");
    let sources_after = sources.replace("repository: local", "repository: offsite");
    let after = format!(
        "{}repositories:\n{}{sources_after}",
        site.head(),
        s3_repo("offsite", &bucket_name, &writer_key, &writer_secret)
    );
    let mut evidence = Evidence::default();
    evidence.buckets.insert(
        "offsite".into(),
        bucket(
            "offsite",
            Versioning::Enabled,
            Some(("COMPLIANCE", 30)),
            "arn:aws:iam::222222222222:user/lifeboat-writer",
        ),
    );
    evidence.callers.insert(
        format!("file {}", cloud_key.display()),
        caller("arn:aws:iam::111111111111:user/infra-admin"),
    );
    evidence.probes.insert("offsite".into(), ProbeOutcome::Survived);
    let a = site.analyse(&after, &evidence, true).await;
    assert!(!a.has_critical(), "still critical:\n{}", listing(&a));
    for rule in [
        RuleId::SameDevice,
        RuleId::SharedCredentials,
        RuleId::NoImmutability,
        RuleId::Deletable,
    ] {
        absent(&a, rule, "bookings", Some("offsite"));
    }

    // The binary, inspecting the real bucket: its lock is read and nothing is critical; the
    // infrastructure's own identity cannot be asked here (no STS is reachable for it), which it says.
    site.config(&after);
    let o = site.run(&["fate"]);
    let text = all_output(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("0 critical"), "{text}");
    assert!(text.contains("could not judge"), "{text}");
}

/// A bucket on the test S3 server with Object Lock and a default COMPLIANCE retention of `days`.
async fn locked_bucket(name: &str, days: i32) {
    use aws_sdk_s3::types::{
        DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode, ObjectLockRule,
    };
    let admin = support::s3::client(&support::s3_endpoint(), "test", "test");
    admin
        .create_bucket()
        .bucket(name)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    let retention = DefaultRetention::builder()
        .mode(ObjectLockRetentionMode::Compliance)
        .days(days)
        .build();
    admin
        .put_object_lock_configuration()
        .bucket(name)
        .object_lock_configuration(
            ObjectLockConfiguration::builder()
                .object_lock_enabled(ObjectLockEnabled::Enabled)
                .rule(ObjectLockRule::builder().default_retention(retention).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
}
