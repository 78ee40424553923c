//! `lifeboat copy` end to end through the binary: a real PostgreSQL scratch cluster as the source, file
//! repositories and one on the loopback S3 server, the catalog in the workspace's state dir.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use lifeboat::repo::{Keys, Repository};
use lifeboat::scratch::EphemeralPostgres;
use object_store::{ObjectStore, ObjectStoreExt};
use support::cli::{Workspace, all_output, cluster, engine, load_rental};

fn json(o: &std::process::Output) -> serde_json::Value {
    assert!(o.status.success(), "lifeboat failed: {}", all_output(o));
    report(o)
}

/// The JSON on stdout, whatever the exit code (a copy with failed snapshots still reports).
fn report(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", all_output(o)))
}

/// A source cluster with rental data in `rental` and a small `fleet` database beside it.
async fn sources() -> EphemeralPostgres {
    let source = cluster().await;
    source.create_database("rental").await.unwrap();
    load_rental(&source, "rental", 1).await;
    source.create_database("fleet").await.unwrap();
    source
        .psql(
            "fleet",
            "create table depots (id int primary key, name text); insert into depots select g, 'depot ' || g from generate_series(1, 500) g",
        )
        .await
        .unwrap();
    source
}

/// A repository entry of the config: `name`, a file repository at `dir`.
fn file_repo(name: &str, dir: &Path) -> String {
    format!("  {name}:\n    url: file://{}\n", dir.display())
}

/// Writes a config with both sources backing up into `local` (the workspace's repository) and the
/// given extra repositories.
fn write_config(ws: &Workspace, source: &EphemeralPostgres, extra_repos: &str) {
    ws.write_config(&format!(
        "state_dir: {state}\nrepositories:\n{local}{extra_repos}sources:\n  rental:\n    kind: postgres\n    dsn: \"{rental}\"\n    environment: staging\n    repository: local\n  fleet:\n    kind: postgres\n    dsn: \"{fleet}\"\n    environment: staging\n    repository: local\n",
        state = ws.path().join("state").display(),
        local = file_repo("local", &ws.repo_dir()),
        rental = source.dsn("rental"),
        fleet = source.dsn("fleet"),
    ));
}

fn run_ok(ws: &Workspace, args: &[&str], env: &[(&str, &str)]) {
    let o = ws.run(args, env);
    assert!(o.status.success(), "{args:?}: {}", all_output(&o));
}

fn backup(ws: &Workspace, source: &str, env: &[(&str, &str)]) -> String {
    json(&ws.run(&["--json", "-q", "backup", source], env))["snapshot"]
        .as_str()
        .unwrap()
        .to_string()
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

/// Every file under `dir` with its bytes, by relative path.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(base).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn under<'a>(all: &'a BTreeMap<String, Vec<u8>>, prefix: &str) -> BTreeMap<&'a str, &'a Vec<u8>> {
    all.iter()
        .filter(|(p, _)| p.starts_with(prefix))
        .map(|(p, b)| (p.as_str(), b))
        .collect()
}

/// The chunk objects a snapshot's manifest names, read from a file repository.
fn manifest_chunks(repo: &Path, source: &str, id: &str) -> BTreeSet<String> {
    let text = std::fs::read(repo.join(format!("snapshots/{source}/{id}.json"))).unwrap();
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

/// Drill evidence citing `snapshot`, stored the way drills store it.
async fn put_evidence(repo: &Path, snapshot: &str, run_id: &str) {
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(repo).unwrap());
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

/// Restores `id` from `repository` into a fresh cluster and checks every table equals the source now.
async fn assert_restores_equal(
    ws: &Workspace,
    source: &EphemeralPostgres,
    id: &str,
    repository: &str,
    env: &[(&str, &str)],
) {
    let target = cluster().await;
    target.create_database("restored").await.unwrap();
    let o = ws.run(
        &[
            "-q",
            "restore",
            id,
            "--repository",
            repository,
            "--into-dsn",
            &target.dsn("restored"),
        ],
        env,
    );
    assert!(o.status.success(), "restore from {repository}: {}", all_output(&o));
    let want = engine(source, "rental").content_checksums().await.unwrap();
    assert_eq!(want.len(), 4);
    assert_eq!(
        want,
        engine(&target, "restored").content_checksums().await.unwrap(),
        "the copy in {repository} must restore to the same data"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_into_a_file_and_an_s3_repository_byte_for_byte_and_a_rerun_copies_nothing() {
    let source = sources().await;
    let ws = Workspace::new();
    let second = ws.path().join("second");
    let bucket = support::unique_name("lbcopy");
    support::create_bucket(&bucket).await;
    let s3 = format!(
        "  offsite:\n    url: s3://{bucket}/lifeboat\n    endpoint: {}\n    access_key_id_env: LB_S3_KEY\n    secret_access_key_env: LB_S3_SECRET\n",
        support::s3_endpoint()
    );
    write_config(&ws, &source, &format!("{}{s3}", file_repo("second", &second)));
    let env = [("LB_S3_KEY", "testing"), ("LB_S3_SECRET", "testing-secret-value")];
    for repo in ["local", "second", "offsite"] {
        run_ok(&ws, &["init", repo], &env);
    }
    let a = backup(&ws, "rental", &env);
    change_data(&source, 1).await;
    let b = backup(&ws, "rental", &env);
    let f = backup(&ws, "fleet", &env);
    put_evidence(&ws.repo_dir(), &a, "drill-run-a").await;
    let local = files(&ws.repo_dir());
    let needed: BTreeSet<String> = [("rental", &a), ("rental", &b), ("fleet", &f)]
        .iter()
        .flat_map(|(s, id)| manifest_chunks(&ws.repo_dir(), s, id))
        .collect();
    let needed_bytes: u64 = needed.iter().map(|p| local[p].len() as u64).sum();

    // A dry run says what it would do and writes nothing.
    let before = files(&second);
    let plan = json(&ws.run(
        &["--json", "copy", "--from", "local", "--to", "second", "--dry-run"],
        &env,
    ));
    assert_eq!(files(&second), before, "a dry run must not write anything");
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["snapshots_copied"], 3);
    assert_eq!(plan["chunks_copied"], needed.len() as u64);
    assert_eq!(plan["bytes_copied"], needed_bytes);
    assert_eq!(plan["evidence_copied"], 1);

    let done = json(&ws.run(&["--json", "-q", "copy", "--from", "local", "--to", "second"], &env));
    assert_eq!(
        (
            done["snapshots_copied"].as_u64(),
            done["snapshots_already_present"].as_u64(),
            done["snapshots_failed"].as_u64()
        ),
        (Some(3), Some(0), Some(0)),
        "{done}"
    );
    assert_eq!(done["chunks_copied"], needed.len() as u64);
    assert_eq!(done["bytes_copied"], needed_bytes);
    assert_eq!(done["chunk_check"], "content");
    let a_entry = done["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == a.as_str())
        .unwrap();
    assert_eq!(a_entry["evidence_copied"], serde_json::json!(["drill-run-a"]));

    // Byte for byte: every object the snapshots consist of is in the copy exactly as in the original.
    let copied = files(&second);
    for prefix in ["chunks/", "snapshots/", "evidence/"] {
        let want = under(&local, prefix);
        assert_eq!(under(&copied, prefix), want, "{prefix} must be identical");
    }
    assert!(under(&copied, "locks/").is_empty(), "copy removes its lock");
    assert_ne!(
        copied["lifeboat.repo.json"], local["lifeboat.repo.json"],
        "a repository of its own"
    );

    run_ok(&ws, &["verify", "--all", "--read-data", "--repository", "second"], &env);
    assert_restores_equal(&ws, &source, &b, "second", &env).await;
    let catalog = json(&ws.run(&["--json", "snapshots"], &env));
    let in_second: BTreeSet<&str> = catalog
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["repository"] == "second")
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(in_second, BTreeSet::from([a.as_str(), b.as_str(), f.as_str()]));

    // Running it again finds everything there and writes nothing.
    let again = json(&ws.run(&["--json", "-q", "copy", "--from", "local", "--to", "second"], &env));
    assert_eq!(again["snapshots_copied"], 0);
    assert_eq!(again["snapshots_already_present"], 3);
    assert_eq!(again["chunks_copied"], 0);
    assert_eq!(again["bytes_copied"], 0);
    assert_eq!(again["chunks_skipped"], needed.len() as u64);
    assert_eq!(again["evidence_copied"], 0);
    assert_eq!(files(&second), copied);
    let text = all_output(&ws.run(&["copy", "--from", "local", "--to", "second"], &env));
    assert!(text.contains("0 copied, 3 already present, 0 failed"), "{text}");

    // Into S3, one source only.
    let to_s3 = json(&ws.run(
        &[
            "--json", "-q", "copy", "--from", "local", "--to", "offsite", "--source", "rental",
        ],
        &env,
    ));
    assert_eq!(to_s3["snapshots_copied"], 2, "{to_s3}");
    let mut opts = lifeboat::storage::StorageOptions::new(url::Url::parse(&format!("s3://{bucket}/lifeboat")).unwrap());
    opts.endpoint = Some(url::Url::parse(&support::s3_endpoint()).unwrap());
    opts.access_key_id = Some("testing".into());
    opts.secret_access_key = Some("testing-secret-value".into());
    let store = lifeboat::storage::Storage::open(&opts, false).unwrap().store;
    let objects: BTreeSet<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    let snapshots: BTreeSet<&str> = objects
        .iter()
        .filter(|p| p.starts_with("snapshots/"))
        .map(String::as_str)
        .collect();
    let (ma, mb) = (
        format!("snapshots/rental/{a}.json"),
        format!("snapshots/rental/{b}.json"),
    );
    assert_eq!(
        snapshots,
        BTreeSet::from([ma.as_str(), mb.as_str()]),
        "--source rental leaves fleet behind"
    );
    let rental_chunks: BTreeSet<String> = manifest_chunks(&ws.repo_dir(), "rental", &a)
        .union(&manifest_chunks(&ws.repo_dir(), "rental", &b))
        .cloned()
        .collect();
    let s3_chunks: BTreeSet<String> = objects.iter().filter(|p| p.starts_with("chunks/")).cloned().collect();
    assert_eq!(s3_chunks, rental_chunks);
    for p in &rental_chunks {
        let got = store.get(&object_store::path::Path::from(p.as_str())).await.unwrap();
        assert_eq!(got.bytes().await.unwrap().as_ref(), local[p].as_slice(), "{p}");
    }
    assert!(!objects.iter().any(|p| p.starts_with("locks/")));
    let o = ws.run(&["verify", "--all", "--read-data", "--repository", "offsite"], &env);
    assert!(o.status.success(), "{}", all_output(&o));
    assert!(!all_output(&o).contains("testing-secret-value"));
    assert_restores_equal(&ws, &source, &b, "offsite", &env).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_copy_leaves_no_snapshot_and_running_it_again_finishes_it() {
    let source = sources().await;
    let ws = Workspace::new();
    let second = ws.path().join("second");
    write_config(&ws, &source, &file_repo("second", &second));
    run_ok(&ws, &["init", "local"], &[]);
    run_ok(&ws, &["init", "second"], &[]);
    let a = backup(&ws, "rental", &[]);
    change_data(&source, 1).await;
    let b = backup(&ws, "rental", &[]);

    // A prune holding the destination: copy refuses before writing anything but its own lock.
    let locks = second.join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let now = jiff::Timestamp::now();
    std::fs::write(
        locks.join("prune.json"),
        serde_json::json!({"kind": "exclusive", "operation": "prune", "host": "db-other-host", "pid": 31337, "created": now, "refreshed": now}).to_string(),
    )
    .unwrap();
    let before = files(&second);
    let o = ws.run(&["copy", "--from", "local", "--to", "second"], &[]);
    let text = all_output(&o);
    assert_eq!(o.status.code(), Some(3), "{text}");
    assert!(text.contains("exclusive lock of `prune`"), "{text}");
    assert_eq!(files(&second), before);
    std::fs::remove_file(locks.join("prune.json")).unwrap();

    // The state an interrupted copy leaves: `a` complete, and only some of `b`'s chunks, no manifest.
    run_ok(&ws, &["-q", "copy", "--from", "local", "--to", "second"], &[]);
    let only_b: Vec<String> = manifest_chunks(&ws.repo_dir(), "rental", &b)
        .difference(&manifest_chunks(&ws.repo_dir(), "rental", &a))
        .cloned()
        .collect();
    assert!(
        !only_b.is_empty(),
        "the test needs chunks only the second snapshot uses"
    );
    let gone = only_b.len().div_ceil(2);
    std::fs::remove_file(second.join(format!("snapshots/rental/{b}.json"))).unwrap();
    for p in &only_b[..gone] {
        std::fs::remove_file(second.join(p)).unwrap();
    }
    let listed = json(&ws.run(&["--json", "snapshots", "--from-repository"], &[]));
    let in_second: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["repository"] == "second")
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(in_second, vec![a.as_str()], "no half snapshot is visible");

    let rerun = json(&ws.run(&["--json", "-q", "copy", "--from", "local", "--to", "second"], &[]));
    assert_eq!(rerun["snapshots_copied"], 1, "{rerun}");
    assert_eq!(rerun["snapshots_already_present"], 1);
    assert_eq!(rerun["chunks_copied"], gone as u64);
    let local = files(&ws.repo_dir());
    let copied = files(&second);
    assert_eq!(under(&copied, "chunks/"), under(&local, "chunks/"));
    assert_eq!(under(&copied, "snapshots/"), under(&local, "snapshots/"));
    run_ok(&ws, &["verify", "--all", "--read-data", "--repository", "second"], &[]);
    assert_restores_equal(&ws, &source, &b, "second", &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_source_chunk_fails_its_snapshot_naming_it_and_the_others_are_copied() {
    let source = sources().await;
    let ws = Workspace::new();
    let second = ws.path().join("second");
    write_config(&ws, &source, &file_repo("second", &second));
    run_ok(&ws, &["init", "local"], &[]);
    run_ok(&ws, &["init", "second"], &[]);
    let a = backup(&ws, "rental", &[]);
    change_data(&source, 1).await;
    let b = backup(&ws, "rental", &[]);
    let victim = manifest_chunks(&ws.repo_dir(), "rental", &a)
        .difference(&manifest_chunks(&ws.repo_dir(), "rental", &b))
        .next()
        .cloned()
        .expect("a chunk only the first snapshot uses");
    let path = ws.repo_dir().join(&victim);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();

    let o = ws.run(&["--json", "-q", "copy", "--from", "local", "--to", "second"], &[]);
    assert_eq!(o.status.code(), Some(4), "damage exits 4: {}", all_output(&o));
    let r = report(&o);
    assert_eq!(r["snapshots_copied"], 1);
    assert_eq!(r["snapshots_failed"], 1);
    let by_id: BTreeMap<&str, &serde_json::Value> = r["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s))
        .collect();
    assert_eq!(by_id[b.as_str()]["outcome"], "copied");
    let failed = by_id[a.as_str()];
    assert_eq!(failed["outcome"], "failed");
    assert_eq!(failed["failure"]["object"], victim.as_str());
    assert_eq!(failed["failure"]["repository"], "local");
    assert_eq!(failed["failure"]["damage"], true);
    assert!(
        !second.join(format!("snapshots/rental/{a}.json")).exists(),
        "nothing of it is committed"
    );
    assert!(!second.join(&victim).exists(), "damage is never copied");
    assert!(second.join(format!("snapshots/rental/{b}.json")).exists());
    run_ok(&ws, &["verify", "--all", "--read-data", "--repository", "second"], &[]);

    // The text says it too, and still fails: the damage is in the source.
    let o = ws.run(&["copy", "--from", "local", "--to", "second"], &[]);
    let text = all_output(&o);
    assert_eq!(o.status.code(), Some(4), "{text}");
    assert!(
        text.contains(&victim) && text.contains("FAILED") && text.contains(&a),
        "{text}"
    );
    assert!(!second.join(format!("snapshots/rental/{a}.json")).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn encryption_must_match_and_init_like_makes_a_repository_that_can_receive_copies() {
    let source = sources().await;
    let ws = Workspace::new();
    let identity = age::x25519::Identity::generate();
    let key_file = ws.path().join("vault.agekey");
    {
        use secrecy::ExposeSecret;
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&key_file, format!("{}\n", identity.to_string().expose_secret())).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let dir = |name: &str| -> PathBuf { ws.path().join(name) };
    let config = |with_identity: bool| {
        let encrypted = |name: &str| {
            let identity_line = if with_identity {
                format!("      identity_file: {}\n", key_file.display())
            } else {
                String::new()
            };
            format!(
                "{}    encryption:\n      recipients: [\"{}\"]\n{identity_line}",
                file_repo(name, &dir(name)),
                identity.to_public()
            )
        };
        format!(
            "state_dir: {state}\nrepositories:\n{local}{vault}{copy}{other}{alias}{plain_like}sources:\n  rental:\n    kind: postgres\n    dsn: \"{rental}\"\n    environment: staging\n    repository: vault\n",
            state = ws.path().join("state").display(),
            local = file_repo("local", &ws.repo_dir()),
            vault = encrypted("vault"),
            copy = encrypted("vault-copy"),
            other = encrypted("other-vault"),
            alias = file_repo("vault-alias", &dir("vault")),
            plain_like = file_repo("plain-like", &dir("plain-like")),
            rental = source.dsn("rental"),
        )
    };
    ws.write_config(&config(true));
    for repo in ["local", "vault", "other-vault"] {
        run_ok(&ws, &["init", repo], &[]);
    }
    let a = backup(&ws, "rental", &[]);

    // Different naming: refused, saying why and how to fix it, and nothing is written.
    let untouched = |name: &str| files(&dir(name));
    let before = (untouched("other-vault"), files(&ws.repo_dir()));
    for (from, to, needle) in [
        ("vault", "other-vault", "different address keys"),
        ("vault", "local", "plain SHA-256"),
        ("local", "vault", "wrongly named"),
    ] {
        let o = ws.run(&["copy", "--from", from, "--to", to], &[]);
        let text = all_output(&o);
        assert_eq!(o.status.code(), Some(3), "{from} -> {to}: {text}");
        assert!(text.contains(needle), "{text}");
        assert!(text.contains(&format!("lifeboat init {to} --like {from}")), "{text}");
    }
    assert_eq!((untouched("other-vault"), files(&ws.repo_dir())), before);

    // The same repository, by its own name or another one: refused.
    for to in ["vault", "vault-alias"] {
        let o = ws.run(&["copy", "--from", "vault", "--to", to], &[]);
        let text = all_output(&o);
        assert_eq!(o.status.code(), Some(3), "{text}");
        assert!(text.contains("same repository"), "{text}");
    }

    // `--like` insists the config says the same encryption, before creating anything.
    let o = ws.run(&["init", "plain-like", "--like", "vault"], &[]);
    let text = all_output(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(text.contains(&identity.to_public().to_string()), "{text}");
    assert!(!dir("plain-like").exists());

    run_ok(&ws, &["init", "vault-copy", "--like", "vault"], &[]);
    let done = json(&ws.run(&["--json", "-q", "copy", "--from", "vault", "--to", "vault-copy"], &[]));
    assert_eq!(done["snapshots_copied"], 1, "{done}");
    assert_eq!(done["chunk_check"], "content");
    assert_eq!(
        under(&files(&dir("vault-copy")), "chunks/"),
        under(&files(&dir("vault")), "chunks/")
    );
    run_ok(
        &ws,
        &["verify", "--all", "--read-data", "--repository", "vault-copy"],
        &[],
    );
    assert_restores_equal(&ws, &source, &a, "vault-copy", &[]).await;

    // Where no identity is configured, backups and copies still run; chunks are checked by header only,
    // and the copy says so.
    ws.write_config(&config(false));
    change_data(&source, 1).await;
    let b = backup(&ws, "rental", &[]);
    let o = ws.run(&["--json", "-q", "copy", "--from", "vault", "--to", "vault-copy"], &[]);
    let r = json(&o);
    assert_eq!(r["chunk_check"], "header-only");
    assert_eq!(r["snapshots_copied"], 1);
    assert!(all_output(&o).contains("header only"), "{}", all_output(&o));
    ws.write_config(&config(true));
    run_ok(
        &ws,
        &["verify", "--all", "--read-data", "--repository", "vault-copy"],
        &[],
    );
    assert_restores_equal(&ws, &source, &b, "vault-copy", &[]).await;
}
