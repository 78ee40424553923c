//! Prune end to end through the binary: a real PostgreSQL scratch cluster as the source, a file
//! repository (and one case on the loopback S3 server), the catalog in the workspace's state dir.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::TryStreamExt;
use lifeboat::engine::Endpoint;
use lifeboat::engine::postgres::Postgres;
use lifeboat::repo::{Keys, Repository};
use lifeboat::scratch::EphemeralPostgres;
use object_store::ObjectStore;
use support::cli::{Workspace, all_output, cluster, engine, load_rental};

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

/// A prune as the local operator, then, when it asked to delete, the approval by another principal:
/// the report of what was deleted (or of the prune itself when nothing waited for approval).
fn prune_approved(ws: &Workspace, args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let report = json(&ws.run(args, env));
    match report["approval"]["id"].as_str() {
        Some(id) => ws.approve(id, env)["result"].clone(),
        None => report,
    }
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

/// The file repository, opened in-process.
async fn open_repo(ws: &Workspace) -> Repository {
    let store: Arc<dyn ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(ws.repo_dir()).unwrap());
    Repository::open(store, "test", "local", Keys::default()).await.unwrap()
}

/// Drill evidence citing `snapshot`, stored the way drills store it.
async fn put_evidence(ws: &Workspace, snapshot: &str, run_id: &str, verdict: &str, negative_control: bool) {
    let repo = open_repo(ws).await;
    let now = jiff::Timestamp::now();
    let doc = serde_json::json!({
        "run_id": run_id, "drill": "nightly", "source": "rental", "repository": "local",
        "started_at": now, "finished_at": now, "verdict": verdict,
        "snapshot": {"id": snapshot, "manifest_sha256": "00", "taken_at": now, "bytes": 1},
        "phases": [], "checks": [], "negative_control": negative_control, "lifeboat_version": "test",
    });
    repo.put_evidence("rental", run_id, &doc).await.unwrap();
}

fn catalog_ids(ws: &Workspace) -> BTreeSet<String> {
    ids_of(&json(&ws.run(&["--json", "snapshots"], &[])))
}

fn ids_of(list: &serde_json::Value) -> BTreeSet<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// `id: [reasons]` of a report's kept snapshots (first source).
fn kept(report: &serde_json::Value) -> BTreeMap<String, Vec<String>> {
    report["sources"][0]["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let reasons = k["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect();
            (k["id"].as_str().unwrap().to_string(), reasons)
        })
        .collect()
}

fn forgotten_ids(report: &serde_json::Value) -> BTreeSet<String> {
    ids_of(&report["sources"][0]["forgotten"])
}

fn tombstone_doc(ws: &Workspace, id: &str) -> serde_json::Value {
    let bytes = std::fs::read(ws.repo_dir().join(format!("tombstones/rental/{id}.json"))).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    doc["tombstone"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn forgotten_snapshots_are_tombstoned_then_deleted_after_the_grace_period_and_their_chunks_swept() {
    let (source, ws) = setup().await;
    let a = backup(&ws, &[]);
    change_data(&source, 1).await;
    let b = backup(&ws, &[]);
    change_data(&source, 2).await;
    let c = backup(&ws, &[]);
    put_evidence(&ws, &a, "drill-run-a", "fail", false).await;

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
    let all_chunks = listed(&ws, "chunks/");
    assert_eq!(catalog_ids(&ws), BTreeSet::from([a.clone(), b.clone(), c.clone()]));

    // A dry run shows the plan, and changes nothing at all. Tombstoning frees nothing yet.
    let before = ws.repo_listing();
    let prune = ["--json", "-q", "prune", "rental", "--keep-last", "1", "--grace", "1s"];
    let dry = [&prune[..], &["--dry-run"]].concat();
    let plan = json(&ws.run(&dry, &[]));
    assert_eq!(ws.repo_listing(), before, "a dry run must not write or delete anything");
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["grace_seconds"], 1);
    assert_eq!(
        (plan["snapshots_kept"].as_u64(), plan["snapshots_forgotten"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(
        (plan["snapshots_deleted"].as_u64(), plan["chunks_deleted"].as_u64()),
        (Some(0), Some(0)),
        "a tombstoned snapshot's chunks stay until its manifest is deleted"
    );
    assert_eq!(kept(&plan), BTreeMap::from([(c.clone(), vec!["last".to_string()])]));
    assert_eq!(forgotten_ids(&plan), BTreeSet::from([a.clone(), b.clone()]));
    let o = ws.run(&["prune", "rental", "--keep-last", "1", "--dry-run"], &[]);
    let text = all_output(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("dry run") && text.contains("grace 7d"), "{text}");
    assert!(
        text.contains(&format!("tombstone  {a}  (drill evidence kept: drill-run-a)")),
        "{text}"
    );
    assert_eq!(catalog_ids(&ws).len(), 3, "a dry run leaves the catalog alone");

    // The first prune only tombstones: the snapshots are hidden, but every object stays.
    let report = prune_approved(&ws, &prune, &[]);
    assert_eq!(
        (
            report["snapshots_forgotten"].as_u64(),
            report["tombstones_pending"].as_u64()
        ),
        (Some(2), Some(2))
    );
    assert_eq!(report["chunks_deleted"], 0);
    assert_eq!(
        listed(&ws, "tombstones/"),
        BTreeSet::from([
            format!("tombstones/rental/{a}.json"),
            format!("tombstones/rental/{b}.json")
        ])
    );
    assert_eq!(
        listed(&ws, "snapshots/").len(),
        3,
        "manifests stay for the grace period"
    );
    assert_eq!(listed(&ws, "chunks/"), all_chunks);
    let tombstone = tombstone_doc(&ws, &a);
    assert_eq!(tombstone["snapshot"], a.as_str());
    assert!(
        tombstone["reason"].as_str().unwrap().contains("keep_last 1"),
        "{tombstone}"
    );
    assert!(
        tombstone["by"].as_str().unwrap().starts_with("lifeboat prune by "),
        "{tombstone}"
    );
    // Hidden from the catalog, from the repository's listing, and a rebuild does not bring them back.
    assert_eq!(catalog_ids(&ws), BTreeSet::from([c.clone()]));
    let from_repo = json(&ws.run(&["--json", "snapshots", "--from-repository"], &[]));
    assert_eq!(ids_of(&from_repo), BTreeSet::from([c.clone()]));
    let o = ws.run(&["catalog", "rebuild"], &[]);
    assert!(o.status.success(), "{}", all_output(&o));
    assert_eq!(
        catalog_ids(&ws),
        BTreeSet::from([c.clone()]),
        "rebuild must not resurrect them"
    );
    // Listed as tombstoned, with when each becomes deletable.
    let list = json(&ws.run(&["--json", "prune", "rental", "--tombstoned", "--grace", "1s"], &[]));
    assert_eq!(ids_of(&list), BTreeSet::from([a.clone(), b.clone()]));
    assert!(list[0]["deletable_at"].is_string(), "{list}");

    // Within the grace period a prune deletes nothing.
    let again = prune_approved(&ws, &["--json", "-q", "prune", "rental", "--keep-last", "1"], &[]);
    assert_eq!(
        (
            again["snapshots_forgotten"].as_u64(),
            again["snapshots_deleted"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(again["tombstones_pending"], 2);
    assert_eq!(listed(&ws, "snapshots/").len(), 3);

    // After it, a dry run says exactly what goes: both manifests (with their tombstones' age) and the
    // chunks only they used.
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let before = ws.repo_listing();
    let plan = json(&ws.run(&dry, &[]));
    assert_eq!(ws.repo_listing(), before);
    assert_eq!(plan["snapshots_deleted"], 2);
    assert_eq!(plan["chunks_deleted"], garbage.len() as u64);
    assert_eq!(plan["bytes_freed"], garbage_bytes);
    for t in plan["sources"][0]["tombstoned"].as_array().unwrap() {
        assert_eq!(t["deleted"], true, "{t}");
        assert!(t["tombstone_age_seconds"].as_u64().unwrap() >= 1, "{t}");
    }
    let o = ws.run(
        &["prune", "rental", "--keep-last", "1", "--grace", "1s", "--dry-run"],
        &[],
    );
    let text = all_output(&o);
    assert!(text.contains(&format!("delete     {a}  tombstoned ")), "{text}");
    assert!(text.contains("would be freed"), "{text}");

    // The real thing.
    let report = prune_approved(&ws, &prune, &[]);
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["snapshots_deleted"], 2);
    assert_eq!(report["tombstones_pending"], 0);
    assert_eq!(report["chunks_deleted"], garbage.len() as u64);
    assert_eq!(report["bytes_freed"], garbage_bytes);
    assert_eq!(
        listed(&ws, "snapshots/"),
        BTreeSet::from([format!("snapshots/rental/{c}.json")]),
        "only the kept manifest remains"
    );
    assert!(
        listed(&ws, "tombstones/").is_empty(),
        "tombstones go after their manifests"
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
    assert_eq!(catalog_ids(&ws), BTreeSet::from([c.clone()]));

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
    let again = prune_approved(
        &ws,
        &["--json", "-q", "prune", "--keep-last", "1", "--grace", "0s"],
        &[],
    );
    assert_eq!(
        (again["snapshots_forgotten"].as_u64(), again["chunks_deleted"].as_u64()),
        (Some(0), Some(0))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn undelete_within_the_grace_period_brings_a_snapshot_back_and_min_age_protects() {
    let (source, ws) = setup().await;
    let a = backup(&ws, &[]);
    change_data(&source, 1).await;
    let b = backup(&ws, &[]);

    // min_age from the config keeps both fresh snapshots, whatever keep_last says; --min-age overrides.
    ws.write_simple_config(
        &source.dsn("rental"),
        "    retention: { keep_last: 1, min_age: 1h, grace: 0s }\n",
    );
    let plan = json(&ws.run(&["--json", "prune", "rental", "--dry-run"], &[]));
    assert_eq!(plan["policy"], "keep_last 1, min_age 1h");
    assert_eq!(plan["grace_seconds"], 0);
    assert_eq!(
        kept(&plan),
        BTreeMap::from([
            (b.clone(), vec!["last".to_string(), "min-age".to_string()]),
            (a.clone(), vec!["min-age".to_string()]),
        ])
    );
    let plan = json(&ws.run(&["--json", "prune", "rental", "--dry-run", "--min-age", "0s"], &[]));
    assert_eq!(forgotten_ids(&plan), BTreeSet::from([a.clone()]));
    // --keep-* flags replace the rules, not the protection.
    let plan = json(&ws.run(&["--json", "prune", "rental", "--dry-run", "--keep-last", "1"], &[]));
    assert!(forgotten_ids(&plan).is_empty(), "{plan}");

    let report = prune_approved(&ws, &["--json", "-q", "prune", "rental", "--min-age", "0s"], &[]);
    assert_eq!(report["snapshots_forgotten"], 1);
    assert_eq!(catalog_ids(&ws), BTreeSet::from([b.clone()]));

    // Undo, by a unique prefix: the snapshot is live again, in the catalog and in listings.
    let o = ws.run(&["prune", "rental", "--undelete", &a[..a.len() - 4]], &[]);
    let text = all_output(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains(&format!("snapshot {a} of source rental")), "{text}");
    assert!(text.contains("live and restorable again"), "{text}");
    assert!(listed(&ws, "tombstones/").is_empty());
    assert!(listed(&ws, "locks/").is_empty(), "undelete removes its lock");
    assert_eq!(catalog_ids(&ws), BTreeSet::from([a.clone(), b.clone()]));
    let from_repo = json(&ws.run(&["--json", "snapshots", "--from-repository"], &[]));
    assert_eq!(ids_of(&from_repo), BTreeSet::from([a.clone(), b.clone()]));

    // Undoing what is not tombstoned, or never existed, says so.
    let o = ws.run(&["prune", "rental", "--undelete", &a], &[]);
    assert_eq!(o.status.code(), Some(3), "{}", all_output(&o));
    assert!(
        all_output(&o).contains("is not tombstoned: it is live"),
        "{}",
        all_output(&o)
    );
    let o = ws.run(&["prune", "rental", "--undelete", "20990101"], &[]);
    assert_eq!(o.status.code(), Some(3), "{}", all_output(&o));
    assert!(all_output(&o).contains("no tombstoned snapshot"), "{}", all_output(&o));

    // grace 0s: tombstoned by one prune, deleted by the next; then it is too late.
    prune_approved(&ws, &["--json", "-q", "prune", "rental", "--min-age", "0s"], &[]);
    let report = prune_approved(&ws, &["--json", "-q", "prune", "rental", "--min-age", "0s"], &[]);
    assert_eq!(report["snapshots_deleted"], 1);
    assert_eq!(
        listed(&ws, "snapshots/"),
        BTreeSet::from([format!("snapshots/rental/{b}.json")])
    );
    let o = ws.run(&["prune", "rental", "--undelete", &a], &[]);
    assert_eq!(o.status.code(), Some(3), "{}", all_output(&o));
    assert!(all_output(&o).contains("cannot be brought back"), "{}", all_output(&o));

    // A config with a malformed min_age is located and explained.
    ws.write_simple_config(
        &source.dsn("rental"),
        "    retention: { keep_last: 1, min_age: two days }\n",
    );
    let o = ws.run(&["check-config"], &[]);
    let text = all_output(&o);
    assert!(!o.status.success(), "{text}");
    assert!(
        text.contains("`sources.rental.retention.min_age: two days` is not a duration"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_newest_snapshot_that_passed_a_drill_survives_keep_last_one() {
    let (source, ws) = setup().await;
    let a = backup(&ws, &[]);
    change_data(&source, 1).await;
    let b = backup(&ws, &[]);
    change_data(&source, 2).await;
    let c = backup(&ws, &[]);
    change_data(&source, 3).await;
    let d = backup(&ws, &[]);
    // a passed; b failed; c "passed" a negative control, which proves nothing about restoring it.
    put_evidence(&ws, &a, "run-a", "pass", false).await;
    put_evidence(&ws, &b, "run-b", "fail", false).await;
    put_evidence(&ws, &c, "run-c", "pass", true).await;

    let plan = json(&ws.run(&["--json", "prune", "rental", "--keep-last", "1", "--dry-run"], &[]));
    assert_eq!(
        kept(&plan),
        BTreeMap::from([
            (d.clone(), vec!["last".to_string()]),
            (a.clone(), vec!["last-drilled".to_string()]),
        ])
    );
    assert_eq!(plan["sources"][0]["last_drilled"]["id"], a.as_str());
    assert_eq!(plan["sources"][0]["last_drilled"]["evidence"], "repository");
    let text = all_output(&ws.run(&["prune", "rental", "--keep-last", "1", "--dry-run"], &[]));
    assert!(text.contains(&format!("keep       {a}  last-drilled")), "{text}");

    // A passing run the catalog knows of but whose evidence the repository lacks counts too.
    let catalog = lifeboat::catalog::open(&lifeboat::catalog::CatalogTarget::Sqlite(
        ws.path().join("state/catalog.db"),
    ))
    .await
    .unwrap();
    let now = jiff::Timestamp::now();
    let record = |id: &str, snapshot: &str, repository: &str| lifeboat::catalog::DrillRunRecord {
        id: id.into(),
        drill: "nightly".into(),
        source: "rental".into(),
        repository: repository.into(),
        snapshot_id: Some(snapshot.into()),
        started_at: now,
        finished_at: now,
        verdict: lifeboat::catalog::DrillVerdict::Pass,
        rto_seconds: None,
        rpo_seconds: None,
        sla_rto_seconds: None,
        sla_rpo_seconds: None,
        detail: None,
        evidence: serde_json::json!({}),
    };
    // Of another repository with the same source name: no bearing on this one.
    catalog
        .record_drill_run(&record("run-elsewhere", &c, "offsite"))
        .await
        .unwrap();
    // The catalog's copy of run-b says pass, but the repository's evidence (fail) wins.
    catalog.record_drill_run(&record("run-b", &b, "local")).await.unwrap();
    let plan = json(&ws.run(&["--json", "prune", "rental", "--keep-last", "1", "--dry-run"], &[]));
    assert_eq!(plan["sources"][0]["last_drilled"]["id"], a.as_str(), "{plan}");
    catalog
        .record_drill_run(&record("run-c-catalog", &c, "local"))
        .await
        .unwrap();
    catalog.close().await;
    let plan = json(&ws.run(&["--json", "prune", "rental", "--keep-last", "1", "--dry-run"], &[]));
    assert_eq!(plan["sources"][0]["last_drilled"]["id"], c.as_str(), "{plan}");
    assert_eq!(plan["sources"][0]["last_drilled"]["evidence"], "catalog");

    // Prune acts on it: the snapshot the catalog saw pass stays, the older drilled one goes.
    let report = json(&ws.run(
        &["--json", "-q", "prune", "rental", "--keep-last", "1", "--grace", "0s"],
        &[],
    ));
    assert_eq!(forgotten_ids(&report), BTreeSet::from([a.clone(), b.clone()]));
    prune_approved(
        &ws,
        &["--json", "-q", "prune", "rental", "--keep-last", "1", "--grace", "0s"],
        &[],
    );
    assert_eq!(
        listed(&ws, "snapshots/"),
        BTreeSet::from([
            format!("snapshots/rental/{c}.json"),
            format!("snapshots/rental/{d}.json")
        ])
    );
    assert_eq!(listed(&ws, "evidence/").len(), 3, "drill evidence is history and stays");
}

/// Progress that stops the first time data moves, until the test lets it go: a read frozen midway.
struct Gate {
    reached: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
    go: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    first: std::sync::atomic::AtomicBool,
}

impl lifeboat::repo::Progress for Gate {
    fn advance(&self, _: u64) {
        if !self.first.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.reached.lock().unwrap().send(()).unwrap();
            self.go.lock().unwrap().recv().unwrap();
        }
    }
}

/// Runs `read` on a thread of its own with a [`Gate`] as progress; returns once the read is frozen
/// midway, with the sender that lets it finish and the thread to join.
fn frozen_read<F, Fut>(read: F) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<Result<(), String>>)
where
    F: FnOnce(Arc<Gate>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let (reached_tx, reached_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel();
    let gate = Arc::new(Gate {
        reached: std::sync::Mutex::new(reached_tx),
        go: std::sync::Mutex::new(go_rx),
        first: std::sync::atomic::AtomicBool::new(false),
    });
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(read(gate))
    });
    match reached_rx.recv_timeout(std::time::Duration::from_secs(120)) {
        Ok(()) => (go_tx, thread),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            panic!("the read ended before moving data: {:?}", thread.join())
        }
        Err(e) => panic!("the read did not start: {e}"),
    }
}

/// A restore (streaming, into a real database) and a drill's fetch hold a lock naming the snapshot
/// while they read it: prune refuses, naming them; a dry run shows the snapshot as in use.
#[tokio::test(flavor = "multi_thread")]
async fn a_running_restore_or_drill_fetch_stops_prune_and_is_named() {
    let (source, ws) = setup().await;
    let a = backup(&ws, &[]);
    let content_a = engine(&source, "rental").content_checksums().await.unwrap();
    change_data(&source, 1).await;
    let b = backup(&ws, &[]);
    let target = cluster().await;
    target.create_database("restored").await.unwrap();
    let target_dsn = target.dsn("restored");
    let bin_dir = target.bin_dir().to_path_buf();

    let repo = open_repo(&ws).await;
    let manifest = repo.find_manifest(&a).await.unwrap();
    let (go, restoring) = {
        let (repo, manifest) = (repo.clone(), manifest.clone());
        frozen_read(move |gate| async move {
            let target = Postgres::new(Endpoint {
                dsn: url::Url::parse(&target_dsn).unwrap(),
                password: None,
                bin_dir: Some(bin_dir),
            });
            lifeboat::ops::restore(
                lifeboat::ops::RestoreRequest {
                    manifest: &manifest,
                    repo: &repo,
                    target: &target,
                    options: lifeboat::engine::RestoreOptions {
                        jobs: 1,
                        no_owner: false,
                        replace: false,
                    },
                    staging: lifeboat::ops::Staging::default(),
                    staged: None,
                },
                gate.as_ref(),
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
        })
    };
    assert_eq!(listed(&ws, "locks/").len(), 1, "the restore holds a lock");
    let before = ws.repo_listing();
    let o = ws.run(&["prune", "rental", "--keep-last", "1"], &[]);
    let text = all_output(&o);
    assert_eq!(o.status.code(), Some(3), "{text}");
    for needle in [
        format!("shared lock of `restore reading snapshot {a} of source rental`"),
        format!("pid {}", std::process::id()),
        "fix: wait until it finishes".to_string(),
    ] {
        assert!(text.contains(&needle), "the refusal must mention {needle}: {text}");
    }
    assert_eq!(ws.repo_listing(), before, "a refused prune changes nothing");
    let plan = json(&ws.run(&["--json", "prune", "rental", "--keep-last", "1", "--dry-run"], &[]));
    assert_eq!(kept(&plan)[&a], vec!["in-use".to_string()]);
    assert!(
        plan["blocked_by"][0]
            .as_str()
            .unwrap()
            .contains("restore reading snapshot"),
        "{plan}"
    );
    go.send(()).unwrap();
    restoring.join().unwrap().expect("the restore completes");
    assert!(listed(&ws, "locks/").is_empty(), "the restore removes its lock");
    assert_eq!(
        content_a,
        engine(&target, "restored").content_checksums().await.unwrap(),
        "the restore that held the lock completes, whole"
    );

    // A drill's fetch (the staged path) likewise, named after the drill.
    let manifest = repo.find_manifest(&b).await.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().to_path_buf();
    let (go, fetching) = {
        let repo = repo.clone();
        frozen_read(move |gate| async move {
            let staging = lifeboat::ops::Staging {
                dir: Some(dir),
                disk_only: true,
            };
            lifeboat::ops::stage(&repo, &manifest, &staging, "drill nightly", gate.as_ref())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    };
    let o = ws.run(&["prune", "rental", "--keep-last", "1"], &[]);
    let text = all_output(&o);
    assert_eq!(o.status.code(), Some(3), "{text}");
    assert!(
        text.contains(&format!("`drill nightly reading snapshot {b} of source rental`")),
        "{text}"
    );
    go.send(()).unwrap();
    fetching.join().unwrap().expect("the fetch completes");
    assert!(listed(&ws, "locks/").is_empty());

    // With nothing reading, prune goes ahead.
    let report = prune_approved(&ws, &["--json", "-q", "prune", "rental", "--keep-last", "1"], &[]);
    assert_eq!(report["snapshots_forgotten"], 1);
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
    let report = prune_approved(&ws, &["--json", "-q", "prune", "rental", "--keep-last", "1"], &[]);
    assert_eq!(report["snapshots_forgotten"], 1);
    assert_eq!(report["stale_locks_removed"], serde_json::json!(["locks/other.json"]));
    assert!(listed(&ws, "locks/").is_empty());
    assert_eq!(
        listed(&ws, "tombstones/"),
        BTreeSet::from([format!("tombstones/rental/{first}.json")])
    );
    assert_eq!(catalog_ids(&ws), BTreeSet::from([second.clone()]));

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
    let third = backup(&ws, &[]);
    assert!(listed(&ws, "snapshots/").contains(&format!("snapshots/rental/{third}.json")));
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

    // The first prune tombstones; with no grace the next deletes and sweeps what its dry run said.
    let report = prune_approved(
        &ws,
        &["--json", "-q", "prune", "--keep-last", "1", "--grace", "0s"],
        &env,
    );
    assert_eq!(report["snapshots_forgotten"], 2);
    assert_eq!(report["chunks_deleted"], 0);
    let before = objects().await;
    assert_eq!(before.iter().filter(|p| p.starts_with("tombstones/")).count(), 2);
    let plan = json(&ws.run(
        &["--json", "prune", "--keep-last", "1", "--grace", "0s", "--dry-run"],
        &env,
    ));
    assert_eq!(objects().await, before, "a dry run changes nothing");
    let report = prune_approved(
        &ws,
        &["--json", "-q", "prune", "--keep-last", "1", "--grace", "0s"],
        &env,
    );
    assert_eq!(report["snapshots_deleted"], 2);
    assert_eq!(report["chunks_deleted"], plan["chunks_deleted"]);
    assert_eq!(report["bytes_freed"], plan["bytes_freed"]);
    assert!(report["chunks_deleted"].as_u64().unwrap() > 0);
    let after = objects().await;
    let chunks: BTreeSet<String> = after.iter().filter(|p| p.starts_with("chunks/")).cloned().collect();
    assert_eq!(chunks, kept_chunks);
    let snapshots: Vec<&String> = after.iter().filter(|p| p.starts_with("snapshots/")).collect();
    assert_eq!(snapshots, vec![&format!("snapshots/rental/{}.json", ids[2])]);
    assert!(
        !after
            .iter()
            .any(|p| p.starts_with("locks/") || p.starts_with("tombstones/"))
    );
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
        // Locks come and go, and the audit log's copy grows by design.
        all.iter()
            .filter(|p| !p.starts_with("locks/") && !p.starts_with("audit/"))
            .cloned()
            .collect()
    };
    // Tombstoning is a create-only write, which the everyday credential may do.
    let before = data(&objects().await);
    let report = json(&ws.run(
        &["--json", "-q", "prune", "rental", "--keep-last", "1", "--grace", "0s"],
        &writer,
    ));
    assert_eq!(
        (
            report["snapshots_forgotten"].as_u64(),
            report["chunks_deleted"].as_u64()
        ),
        (Some(1), Some(0))
    );
    let tombstone = format!("tombstones/rental/{first}.json");
    let mut expected = before.clone();
    expected.insert(tombstone.clone());
    assert_eq!(data(&objects().await), expected, "only the tombstone is new");

    // Deleting is not: the next prune asks for approval, and once approved, running it with this
    // credential fails naming the object and the credential, and deletes nothing.
    let before = data(&objects().await);
    let report = json(&ws.run(
        &["--json", "-q", "prune", "rental", "--keep-last", "1", "--grace", "0s"],
        &writer,
    ));
    let id = report["approval"]["id"]
        .as_str()
        .expect("deleting needs approval")
        .to_string();
    assert_eq!(report["awaiting_approval"], serde_json::json!([first]));
    let approver_token = ws.approver_token();
    let mut approver = writer.to_vec();
    approver.push(("LIFEBOAT_TOKEN", approver_token.as_str()));
    let o = ws.run(&["--json", "approve", &id], &approver);
    let text = all_output(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    let ran: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(ran["state"], "failed", "{text}");
    assert!(
        text.contains(&format!("snapshots/rental/{first}.json")),
        "must name the object: {text}"
    );
    assert!(
        text.contains("pruning needs the repository's deleting credential"),
        "must say which credential prune needs: {text}"
    );
    assert!(!text.contains(&writer_secret));
    assert_eq!(data(&objects().await), before, "nothing may be deleted");

    // Nor may it undelete: removing a tombstone is a delete too, and the refusal says so.
    let o = ws.run(&["prune", "rental", "--undelete", &first], &writer);
    let text = all_output(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains(&tombstone), "must name the tombstone: {text}");
    assert!(
        text.contains("undeleting a snapshot (removing its tombstone) needs the repository's deleting credential"),
        "{text}"
    );
    assert_eq!(data(&objects().await), before);

    let locks_left = objects().await.iter().filter(|p| p.starts_with("locks/")).count();
    let asked = json(&ws.run(
        &["--json", "-q", "prune", "rental", "--keep-last", "1", "--grace", "0s"],
        &pruner,
    ));
    let report = ws.approve(asked["approval"]["id"].as_str().unwrap(), &pruner)["result"].clone();
    assert_eq!(report["snapshots_deleted"], 1);
    assert!(report["chunks_deleted"].as_u64().unwrap() > 0);
    let removed = asked["stale_locks_removed"].as_array().unwrap().len()
        + report["stale_locks_removed"].as_array().unwrap().len();
    assert_eq!(
        removed, locks_left,
        "every lock the writer could only mark released is removed: {asked} {report}"
    );
    let after = objects().await;
    assert!(
        !after
            .iter()
            .any(|p| p.starts_with("locks/") || p.starts_with("tombstones/"))
    );
    assert!(!after.contains(&format!("snapshots/rental/{first}.json")));
    let o = ws.run(&["verify", "--all", "--read-data"], &writer);
    assert!(o.status.success(), "{}", all_output(&o));
}
