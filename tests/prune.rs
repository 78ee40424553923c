//! Prune end to end through the binary: a real PostgreSQL scratch cluster as the source, a file
//! repository (and one case on the loopback S3 server), the catalog in the workspace's state dir.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::TryStreamExt;
use lifeboat::engine::Endpoint;
use lifeboat::engine::postgres::Postgres;
use lifeboat::repo::{Keys, Repository};
use lifeboat::scratch::{EphemeralOptions, EphemeralPostgres};
use object_store::ObjectStore;
use support::cli::{Workspace, all_output, load_rental};

async fn cluster() -> EphemeralPostgres {
    EphemeralPostgres::start(&EphemeralOptions::default())
        .await
        .expect("start scratch cluster")
}

fn engine(c: &EphemeralPostgres, db: &str) -> Postgres {
    Postgres::new(Endpoint {
        dsn: url::Url::parse(&c.dsn(db)).unwrap(),
        password: None,
        bin_dir: Some(c.bin_dir().to_path_buf()),
    })
}

fn json(o: &std::process::Output) -> serde_json::Value {
    assert!(o.status.success(), "lifeboat failed: {}", all_output(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", all_output(o)))
}

/// A source cluster with small rental data, a workspace for it, the file repository initialised.
async fn setup() -> (EphemeralPostgres, Workspace) {
    let source = cluster().await;
    source.create_database("rental").await.unwrap();
    load_rental(&source, "rental", 1).await;
    let ws = Workspace::new();
    ws.write_simple_config(&source.dsn("rental"), "");
    let o = ws.run(&["init"], &[]);
    assert!(o.status.success(), "{}", all_output(&o));
    (source, ws)
}

fn backup(ws: &Workspace, env: &[(&str, &str)]) -> String {
    let o = ws.run(&["--json", "-q", "backup", "rental"], env);
    json(&o)["snapshot"].as_str().unwrap().to_string()
}

/// Changes the last table in dump order, so the next dump shares its leading chunks with this one.
async fn change_data(source: &EphemeralPostgres, round: u32) {
    source
        .psql(
            "rental",
            &format!("update vehicles set odometer = odometer + {round}, location = 'moved {round}' where id % 3 = 0"),
        )
        .await
        .unwrap();
}

/// The chunk objects a snapshot's manifest names, read from the file repository.
fn manifest_chunks(ws: &Workspace, id: &str) -> BTreeSet<String> {
    let text = std::fs::read(ws.repo_dir().join(format!("snapshots/rental/{id}.json"))).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&text).unwrap();
    doc["manifest"]["stream"]["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let id = c["id"].as_str().unwrap();
            format!("chunks/{}/{id}", &id[..2])
        })
        .collect()
}

fn listed(ws: &Workspace, prefix: &str) -> BTreeSet<String> {
    ws.repo_listing()
        .into_iter()
        .filter(|p| p.starts_with(prefix))
        .collect()
}

fn lock_object(kind: &str, operation: &str, refreshed_ago_secs: i64) -> String {
    let refreshed = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(refreshed_ago_secs);
    serde_json::json!({
        "kind": kind,
        "operation": operation,
        "host": "db-other-host",
        "pid": 31337,
        "created": refreshed,
        "refreshed": refreshed,
    })
    .to_string()
}

/// Drill evidence citing `snapshot`, stored the way drills store it.
async fn put_evidence(ws: &Workspace, snapshot: &str, run_id: &str) {
    let store: Arc<dyn ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(ws.repo_dir()).unwrap());
    let repo = Repository::open(store, "test", "local", Keys::default()).await.unwrap();
    let now = jiff::Timestamp::now();
    let doc = serde_json::json!({
        "run_id": run_id, "drill": "nightly", "source": "rental", "repository": "local",
        "started_at": now, "finished_at": now, "verdict": "pass",
        "snapshot": {"id": snapshot, "manifest_sha256": "00", "taken_at": now, "bytes": 1},
        "phases": [], "checks": [], "lifeboat_version": "test",
    });
    repo.put_evidence("rental", run_id, &doc).await.unwrap();
}

fn catalog_ids(ws: &Workspace) -> BTreeSet<String> {
    json(&ws.run(&["--json", "snapshots"], &[]))
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_last_one_forgets_older_snapshots_sweeps_their_chunks_and_keeps_the_rest_whole() {
    let (source, ws) = setup().await;
    let a = backup(&ws, &[]);
    change_data(&source, 1).await;
    let b = backup(&ws, &[]);
    change_data(&source, 2).await;
    let c = backup(&ws, &[]);
    put_evidence(&ws, &a, "drill-run-a").await;

    let (chunks_a, chunks_b, chunks_c) = (
        manifest_chunks(&ws, &a),
        manifest_chunks(&ws, &b),
        manifest_chunks(&ws, &c),
    );
    let shared: BTreeSet<&String> = chunks_a.intersection(&chunks_c).collect();
    assert!(
        !shared.is_empty(),
        "the test needs chunks that the old and the kept snapshot share"
    );
    let garbage: BTreeSet<String> = chunks_a
        .union(&chunks_b)
        .filter(|x| !chunks_c.contains(*x))
        .cloned()
        .collect();
    assert!(
        !garbage.is_empty(),
        "the data changes must leave chunks only old snapshots use"
    );
    let garbage_bytes: u64 = garbage
        .iter()
        .map(|p| std::fs::metadata(ws.repo_dir().join(p)).unwrap().len())
        .sum();
    assert_eq!(catalog_ids(&ws), BTreeSet::from([a.clone(), b.clone(), c.clone()]));

    // A dry run shows the plan and what would be freed, and changes nothing at all.
    let before = ws.repo_listing();
    let plan = json(&ws.run(&["--json", "prune", "rental", "--keep-last", "1", "--dry-run"], &[]));
    assert_eq!(ws.repo_listing(), before, "a dry run must not write or delete anything");
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["snapshots_kept"], 1);
    assert_eq!(plan["snapshots_forgotten"], 2);
    assert_eq!(plan["chunks_deleted"], garbage.len() as u64);
    assert_eq!(plan["bytes_freed"], garbage_bytes);
    assert_eq!(plan["sources"][0]["kept"][0]["id"], c.as_str());
    assert_eq!(plan["sources"][0]["kept"][0]["reasons"], serde_json::json!(["last"]));
    let o = ws.run(&["prune", "rental", "--keep-last", "1", "--dry-run"], &[]);
    let text = all_output(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("dry run") && text.contains("would be freed"), "{text}");
    assert!(
        text.contains(&format!("forget  {a}  (drill evidence kept: drill-run-a)")),
        "{text}"
    );
    assert_eq!(catalog_ids(&ws).len(), 3, "a dry run leaves the catalog alone");

    // The real thing.
    let report = json(&ws.run(&["--json", "-q", "prune", "rental", "--keep-last", "1"], &[]));
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["snapshots_forgotten"], 2);
    assert_eq!(report["chunks_deleted"], garbage.len() as u64);
    assert_eq!(report["bytes_freed"], garbage_bytes);
    let forgotten: BTreeMap<String, serde_json::Value> = report["sources"][0]["forgotten"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["id"].as_str().unwrap().to_string(), f["drill_evidence"].clone()))
        .collect();
    assert_eq!(forgotten[&a], serde_json::json!(["drill-run-a"]));
    assert_eq!(forgotten[&b], serde_json::json!([]));

    assert_eq!(
        listed(&ws, "snapshots/"),
        BTreeSet::from([format!("snapshots/rental/{c}.json")]),
        "only the kept manifest remains"
    );
    assert_eq!(
        listed(&ws, "chunks/"),
        chunks_c,
        "exactly the kept snapshot's chunks remain"
    );
    assert_eq!(
        listed(&ws, "evidence/"),
        BTreeSet::from(["evidence/rental/drill-run-a.json".to_string()]),
        "drill evidence is history and stays"
    );
    assert!(listed(&ws, "locks/").is_empty(), "prune removes its lock");
    assert_eq!(
        catalog_ids(&ws),
        BTreeSet::from([c.clone()]),
        "the catalog follows the repository"
    );

    let o = ws.run(&["verify", "--all", "--read-data"], &[]);
    assert!(
        o.status.success(),
        "the kept snapshot must be whole: {}",
        all_output(&o)
    );
    let target = cluster().await;
    target.create_database("restored").await.unwrap();
    let o = ws.run(&["-q", "restore", &c, "--into-dsn", &target.dsn("restored")], &[]);
    assert!(o.status.success(), "{}", all_output(&o));
    let want = engine(&source, "rental").content_checksums().await.unwrap();
    assert_eq!(want, engine(&target, "restored").content_checksums().await.unwrap());

    // Pruning again finds nothing to do.
    let again = json(&ws.run(&["--json", "-q", "prune", "--keep-last", "1"], &[]));
    assert_eq!(
        (again["snapshots_forgotten"].as_u64(), again["chunks_deleted"].as_u64()),
        (Some(0), Some(0))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn locks_keep_prune_and_backups_apart() {
    let (source, ws) = setup().await;
    let first = backup(&ws, &[]);
    change_data(&source, 1).await;
    let second = backup(&ws, &[]);
    assert!(listed(&ws, "locks/").is_empty(), "a backup removes its lock when done");
    let locks = ws.repo_dir().join("locks");
    std::fs::create_dir_all(&locks).unwrap();

    // A live backup elsewhere: prune refuses, names it, and deletes nothing.
    std::fs::write(locks.join("other.json"), lock_object("shared", "backup rental", 300)).unwrap();
    let before = ws.repo_listing();
    let o = ws.run(&["prune", "rental", "--keep-last", "1"], &[]);
    let text = all_output(&o);
    assert_eq!(o.status.code(), Some(3), "{text}");
    for needle in ["db-other-host", "pid 31337", "backup rental", "5m ago", "fix:"] {
        assert!(text.contains(needle), "the refusal must mention {needle}: {text}");
    }
    assert_eq!(ws.repo_listing(), before, "a refused prune must change nothing");
    assert_eq!(catalog_ids(&ws).len(), 2);

    // The same lock, not refreshed for 31 minutes: its process is dead. Ignored, and removed.
    std::fs::write(
        locks.join("other.json"),
        lock_object("shared", "backup rental", 31 * 60),
    )
    .unwrap();
    let report = json(&ws.run(&["--json", "-q", "prune", "rental", "--keep-last", "1"], &[]));
    assert_eq!(report["snapshots_forgotten"], 1);
    assert_eq!(report["stale_locks_removed"], serde_json::json!(["locks/other.json"]));
    assert!(listed(&ws, "locks/").is_empty());
    assert_eq!(
        listed(&ws, "snapshots/"),
        BTreeSet::from([format!("snapshots/rental/{second}.json")])
    );
    assert!(!catalog_ids(&ws).contains(&first));

    // A prune running elsewhere: a backup refuses before it writes anything but its own lock, which
    // it removes again.
    std::fs::write(locks.join("prune.json"), lock_object("exclusive", "prune", 10)).unwrap();
    let before = ws.repo_listing();
    let o = ws.run(&["backup", "rental"], &[]);
    let text = all_output(&o);
    assert_eq!(o.status.code(), Some(3), "{text}");
    assert!(
        text.contains("exclusive lock of `prune`") && text.contains("db-other-host"),
        "{text}"
    );
    assert_eq!(
        ws.repo_listing(),
        before,
        "a refused backup must leave the repository as it was"
    );

    // Once that prune's lock is stale, backups go ahead.
    std::fs::write(locks.join("prune.json"), lock_object("exclusive", "prune", 3600)).unwrap();
    backup(&ws, &[]);
    assert_eq!(listed(&ws, "snapshots/").len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_is_required_and_damaged_manifests_stop_the_sweep() {
    let (_source, ws) = setup().await;
    let id = backup(&ws, &[]);
    backup(&ws, &[]);
    let before = ws.repo_listing();
    for args in [
        &["prune", "rental"][..],
        &["prune", "rental", "--keep-last", "0", "--keep-daily", "0"],
    ] {
        let o = ws.run(args, &[]);
        let text = all_output(&o);
        assert_eq!(o.status.code(), Some(2), "{text}");
        assert!(
            text.contains("--keep-last") && text.contains("retention policy"),
            "{text}"
        );
    }
    // An unreadable manifest hides which chunks it needs: prune must not guess.
    let manifest = ws.repo_dir().join(format!("snapshots/rental/{id}.json"));
    let bytes = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &bytes[..bytes.len() / 2]).unwrap();
    let before_damaged = ws.repo_listing();
    let o = ws.run(&["prune", "rental", "--keep-last", "1"], &[]);
    let text = all_output(&o);
    assert_eq!(o.status.code(), Some(3), "{text}");
    assert!(
        text.contains(&format!("{id}.json")) && text.contains("verify --all"),
        "{text}"
    );
    assert_eq!(ws.repo_listing(), before_damaged);
    std::fs::write(&manifest, &bytes).unwrap();
    assert_eq!(ws.repo_listing(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_on_an_s3_repository() {
    let source = cluster().await;
    source.create_database("rental").await.unwrap();
    load_rental(&source, "rental", 1).await;
    let bucket = support::unique_name("lbprune");
    support::create_bucket(&bucket).await;
    let ws = Workspace::new();
    ws.write_config(&format!(
        "state_dir: {state}\nrepositories:\n  offsite:\n    url: s3://{bucket}/lifeboat\n    endpoint: {endpoint}\n    access_key_id_env: LB_S3_KEY\n    secret_access_key_env: LB_S3_SECRET\nsources:\n  rental:\n    kind: postgres\n    dsn: \"{dsn}\"\n    environment: staging\n    repository: offsite\n",
        state = ws.path().join("state").display(),
        endpoint = support::s3_endpoint(),
        dsn = source.dsn("rental"),
    ));
    let env = [("LB_S3_KEY", "testing"), ("LB_S3_SECRET", "testing-secret-value")];
    let o = ws.run(&["init"], &env);
    assert!(o.status.success(), "{}", all_output(&o));
    let mut ids = Vec::new();
    for round in 1..=3 {
        ids.push(backup(&ws, &env));
        change_data(&source, round).await;
    }

    let mut opts = lifeboat::storage::StorageOptions::new(url::Url::parse(&format!("s3://{bucket}/lifeboat")).unwrap());
    opts.endpoint = Some(url::Url::parse(&support::s3_endpoint()).unwrap());
    opts.access_key_id = Some("testing".into());
    opts.secret_access_key = Some("testing-secret-value".into());
    let store = lifeboat::storage::Storage::open(&opts, false).unwrap().store;
    let objects = || async {
        store
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect::<BTreeSet<String>>()
            .await
            .unwrap()
    };
    let repo = Repository::open(store.clone(), "s3", "offsite", Keys::default())
        .await
        .unwrap();
    let kept = repo.find_manifest(&ids[2]).await.unwrap();
    let kept_chunks: BTreeSet<String> = kept
        .stream
        .chunks
        .iter()
        .map(|c| format!("chunks/{}/{}", &c.id[..2], c.id))
        .collect();

    let before = objects().await;
    let plan = json(&ws.run(&["--json", "prune", "--keep-last", "1", "--dry-run"], &env));
    assert_eq!(objects().await, before, "a dry run changes nothing");
    let report = json(&ws.run(&["--json", "-q", "prune", "--keep-last", "1"], &env));
    assert_eq!(report["snapshots_forgotten"], 2);
    assert_eq!(report["chunks_deleted"], plan["chunks_deleted"]);
    assert!(report["chunks_deleted"].as_u64().unwrap() > 0);
    let after = objects().await;
    let chunks: BTreeSet<String> = after.iter().filter(|p| p.starts_with("chunks/")).cloned().collect();
    assert_eq!(chunks, kept_chunks);
    let snapshots: Vec<&String> = after.iter().filter(|p| p.starts_with("snapshots/")).collect();
    assert_eq!(snapshots, vec![&format!("snapshots/rental/{}.json", ids[2])]);
    assert!(!after.iter().any(|p| p.starts_with("locks/")));
    let o = ws.run(&["verify", "--all", "--read-data"], &env);
    assert!(o.status.success(), "{}", all_output(&o));
    assert!(!all_output(&o).contains("testing-secret-value"));
}

/// A moto server of this test's own, so that switching IAM enforcement on does not touch the shared
/// one. Stopped when dropped, also when the test fails.
struct PrivateS3 {
    port: u16,
}

impl PrivateS3 {
    fn start() -> PrivateS3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = PrivateS3 { port };
        let o = server.script("start");
        assert!(o.status.success(), "starting moto: {}", all_output(&o));
        server
    }

    fn script(&self, action: &str) -> std::process::Output {
        std::process::Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/s3-server"))
            .arg(action)
            .env("LIFEBOAT_S3_PORT", self.port.to_string())
            .output()
            .unwrap()
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// curl against the server; IAM calls carry a credential scope naming the service, which moto
    /// routes by (it checks no signature before enforcement is on).
    fn curl(&self, args: &[&str]) -> String {
        let o = std::process::Command::new("curl")
            .args(["--silent", "--show-error", "--fail-with-body"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "curl {args:?}: {}", all_output(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn iam(&self, params: &[(&str, &str)]) -> String {
        let mut args = vec![
            "-X".to_string(),
            "POST".to_string(),
            self.endpoint() + "/",
            "-H".to_string(),
            "Authorization: AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=00".to_string(),
            "--data-urlencode".to_string(),
            "Version=2010-05-08".to_string(),
        ];
        for (k, v) in params {
            args.push("--data-urlencode".into());
            args.push(format!("{k}={v}"));
        }
        self.curl(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// A user with an inline policy; returns its access key id and secret.
    fn user(&self, name: &str, policy: &serde_json::Value) -> (String, String) {
        self.iam(&[("Action", "CreateUser"), ("UserName", name)]);
        let policy = policy.to_string();
        self.iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", name),
            ("PolicyName", "lifeboat"),
            ("PolicyDocument", &policy),
        ]);
        let xml = self.iam(&[("Action", "CreateAccessKey"), ("UserName", name)]);
        let field = |tag: &str| {
            let start = xml.find(&format!("<{tag}>")).unwrap() + tag.len() + 2;
            let end = xml.find(&format!("</{tag}>")).unwrap();
            xml[start..end].to_string()
        };
        (field("AccessKeyId"), field("SecretAccessKey"))
    }
}

impl Drop for PrivateS3 {
    fn drop(&mut self) {
        self.script("stop");
        // The script keeps a log per port; this port's is of no use once the server is gone.
        let tools = std::env::var("LIFEBOAT_TOOLS_DIR").unwrap_or_else(|_| {
            format!(
                "{}/.cache/lifeboat-tools",
                std::env::var("HOME").unwrap_or("/tmp".into())
            )
        });
        let _ = std::fs::remove_file(format!("{tools}/moto-5.2.5/moto-{}.log", self.port));
    }
}

/// The everyday credential may write but not delete (least privilege): prune with it fails naming
/// the object and the credential it needs, and deletes nothing; the deleting credential then prunes.
/// Backups with it cannot delete their locks either, and leave them marked released instead.
#[tokio::test(flavor = "multi_thread")]
async fn a_credential_that_cannot_delete_is_named_and_nothing_is_lost() {
    let s3 = PrivateS3::start();
    let (writer_key, writer_secret) = s3.user(
        "lifeboat-writer",
        &serde_json::json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"], "Resource": "*"},
        ]}),
    );
    let (admin_key, admin_secret) = s3.user(
        "lifeboat-pruner",
        &serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
    );
    s3.curl(&["-X", "PUT", &format!("{}/lbleast", s3.endpoint())]);
    // Enforcement from the next request on; a form content type would hide the body from moto.
    let reset = format!("{}/moto-api/reset-auth", s3.endpoint());
    s3.curl(&[
        "-X",
        "POST",
        &reset,
        "-H",
        "Content-Type: text/plain",
        "--data-binary",
        "0",
    ]);

    let source = cluster().await;
    source.create_database("rental").await.unwrap();
    load_rental(&source, "rental", 1).await;
    let ws = Workspace::new();
    ws.write_config(&format!(
        "state_dir: {state}\nrepositories:\n  offsite:\n    url: s3://lbleast/lifeboat\n    endpoint: {endpoint}\n    access_key_id_env: LB_S3_KEY\n    secret_access_key_env: LB_S3_SECRET\nsources:\n  rental:\n    kind: postgres\n    dsn: \"{dsn}\"\n    environment: staging\n    repository: offsite\n",
        state = ws.path().join("state").display(),
        endpoint = s3.endpoint(),
        dsn = source.dsn("rental"),
    ));
    let writer = [
        ("LB_S3_KEY", writer_key.as_str()),
        ("LB_S3_SECRET", writer_secret.as_str()),
    ];
    let pruner = [
        ("LB_S3_KEY", admin_key.as_str()),
        ("LB_S3_SECRET", admin_secret.as_str()),
    ];
    let o = ws.run(&["init"], &writer);
    assert!(o.status.success(), "{}", all_output(&o));
    let first = backup(&ws, &writer);
    change_data(&source, 1).await;
    backup(&ws, &writer);

    let mut opts = lifeboat::storage::StorageOptions::new(url::Url::parse("s3://lbleast/lifeboat").unwrap());
    opts.endpoint = Some(url::Url::parse(&s3.endpoint()).unwrap());
    opts.access_key_id = Some(admin_key.clone().into());
    opts.secret_access_key = Some(admin_secret.clone().into());
    let store = lifeboat::storage::Storage::open(&opts, false).unwrap().store;
    let objects = || async {
        store
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect::<BTreeSet<String>>()
            .await
            .unwrap()
    };
    let locks: Vec<String> = objects()
        .await
        .into_iter()
        .filter(|p| p.starts_with("locks/"))
        .collect();
    assert_eq!(
        locks.len(),
        2,
        "each backup leaves its undeletable lock behind: {locks:?}"
    );
    let repo = Repository::open(store.clone(), "s3", "offsite", Keys::default())
        .await
        .unwrap();
    for lock in repo.locks().await.unwrap() {
        assert!(
            lock.info.unwrap().released.is_some(),
            "{} must be marked released",
            lock.object
        );
    }

    let data = |all: &BTreeSet<String>| -> BTreeSet<String> {
        all.iter().filter(|p| !p.starts_with("locks/")).cloned().collect()
    };
    let before = data(&objects().await);
    let o = ws.run(&["prune", "rental", "--keep-last", "1"], &writer);
    let text = all_output(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("snapshots/rental/{first}.json")),
        "must name the object: {text}"
    );
    assert!(
        text.contains("deleting credential"),
        "must say which credential prune needs: {text}"
    );
    assert!(!text.contains(&writer_secret));
    assert_eq!(data(&objects().await), before, "nothing may be deleted");

    let report = json(&ws.run(&["--json", "-q", "prune", "rental", "--keep-last", "1"], &pruner));
    assert_eq!(report["snapshots_forgotten"], 1);
    assert!(report["chunks_deleted"].as_u64().unwrap() > 0);
    assert_eq!(report["stale_locks_removed"].as_array().unwrap().len(), 3, "{report}");
    assert!(!objects().await.iter().any(|p| p.starts_with("locks/")));
    let o = ws.run(&["verify", "--all", "--read-data"], &writer);
    assert!(o.status.success(), "{}", all_output(&o));
}
