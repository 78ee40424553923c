//! Recovery drills end to end: real clusters, a real repository, the binary.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use lifeboat::scratch::{EphemeralOptions, EphemeralPostgres};
use support::cli::{Workspace, all_output, load_rental};

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", all_output(o)))
}

/// A source cluster with rental data, a workspace with one backup, and a drills directory.
async fn setup(scale: u32) -> (EphemeralPostgres, Workspace) {
    let source = EphemeralPostgres::start(&EphemeralOptions::default()).await.unwrap();
    source.create_database("rental").await.unwrap();
    load_rental(&source, "rental", scale).await;
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.path().join("drills")).unwrap();
    ws.write_simple_config(&source.dsn("rental"), "");
    for args in [&["init"][..], &["-q", "backup", "rental"][..]] {
        let o = ws.run(args, &[]);
        assert!(o.status.success(), "{}", all_output(&o));
    }
    (source, ws)
}

fn write_drill(ws: &Workspace, name: &str, body: &str) {
    std::fs::write(
        ws.path().join("drills").join(format!("{name}.yaml")),
        format!("name: {name}\nsource: rental\n{body}"),
    )
    .unwrap();
}

const GOOD_CHECKS: &str = "checks:
  - fingerprint: true
  - sql: \"select count(*) from reservations where status = 'booked'\"
    expect: \">= 1\"
  - freshness:
      sql: \"select max(created_at) from reservations\"
      within: 26h
  - amcheck: true
  - command: [\"sh\", \"-c\", \"test -n \\\"$LIFEBOAT_SCRATCH_DSN\\\"\"]
";

fn drill(ws: &Workspace, args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let mut full = vec!["--json", "-q", "drill", "run"];
    full.extend_from_slice(args);
    let o = ws.run(&full, &[]);
    (o.status.code(), json(&o), all_output(&o))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_passing_drill_measures_every_phase_and_leaves_evidence() {
    let (_source, ws) = setup(1).await;
    write_drill(
        &ws,
        "nightly",
        &format!("restore_point: latest\nscratch:\n  kind: ephemeral\nsla:\n  rto: 10m\n  rpo: 26h\n{GOOD_CHECKS}"),
    );
    let (code, out, text) = drill(&ws, &["nightly"]);
    assert_eq!(code, Some(0), "{text}");
    let r = &out["result"];
    assert_eq!(r["verdict"], "pass", "{text}");
    let phases: Vec<&str> = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "select",
            "provision",
            "fetch-and-verify",
            "restore",
            "checks",
            "teardown"
        ]
    );
    assert!(r["rto_seconds"].as_f64().unwrap() > 0.0);
    assert!(r["rpo_seconds"].as_f64().unwrap() >= 0.0);
    let checks = r["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 5);
    assert!(
        checks.iter().all(|c| c["status"] == "pass" || c["status"] == "skipped"),
        "{text}"
    );
    assert_eq!(checks[0]["observed"], "4 tables, 100200 rows");

    // Evidence in the repository names the snapshot and its manifest digest; history survives the catalog.
    let evidence = out["evidence"].as_str().unwrap();
    assert!(ws.repo_dir().join(evidence).exists());
    std::fs::remove_dir_all(ws.path().join("state")).unwrap();
    let o = ws.run(&["catalog", "rebuild"], &[]);
    assert!(o.status.success(), "{}", all_output(&o));
    let history = json(&ws.run(&["--json", "drill", "history", "nightly"], &[]));
    assert_eq!(history.as_array().unwrap().len(), 1);
    assert_eq!(history[0]["run_id"], r["run_id"]);
    let sla = json(&ws.run(&["--json", "sla"], &[]));
    assert_eq!(sla[0]["source"], "rental");
    assert_eq!(sla[0]["within_sla"], 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_assertion_is_named_and_a_tight_rto_is_a_breach() {
    let (_source, ws) = setup(1).await;
    write_drill(
        &ws,
        "wrong",
        "restore_point: latest\nscratch:\n  kind: ephemeral\nchecks:\n  - sql: \"select count(*) from vehicles\"\n    expect: \"= 7\"\n",
    );
    let (code, out, text) = drill(&ws, &["wrong"]);
    assert_eq!(code, Some(4), "{text}");
    assert_eq!(out["result"]["verdict"], "fail");
    let reason = out["result"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("select count(*) from vehicles") && reason.contains("200"),
        "{reason}"
    );

    // The shortest RTO a drill file can state is 1s, and a drill of this small snapshot can finish
    // within it: a check that sleeps makes the breach certain.
    write_drill(
        &ws,
        "tight",
        "restore_point: latest\nscratch:\n  kind: ephemeral\nsla:\n  rto: 1s\nchecks:\n  - fingerprint: true\n  - sql: \"select count(*) from pg_sleep(1.5)\"\n    expect: \"= 1\"\n",
    );
    let (code, out, text) = drill(&ws, &["tight"]);
    assert_eq!(code, Some(5), "{text}");
    assert_eq!(out["result"]["verdict"], "sla-breach");
    assert!(out["result"]["reason"].as_str().unwrap().contains("RTO"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_chunk_fails_the_drill_naming_the_object() {
    let (_source, ws) = setup(1).await;
    let chunk = ws
        .repo_listing()
        .into_iter()
        .filter(|p| p.starts_with("chunks/"))
        .max_by_key(|p| std::fs::metadata(ws.repo_dir().join(p)).unwrap().len())
        .unwrap();
    let path = ws.repo_dir().join(&chunk);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    write_drill(
        &ws,
        "nightly",
        "restore_point: latest\nscratch:\n  kind: ephemeral\nchecks:\n  - fingerprint: true\n",
    );
    let (code, out, text) = drill(&ws, &["nightly"]);
    assert_eq!(code, Some(4), "{text}");
    assert_eq!(out["result"]["verdict"], "fail");
    let name = Path::new(&chunk).file_name().unwrap().to_string_lossy().to_string();
    assert!(out["result"]["reason"].as_str().unwrap().contains(&name), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_negative_control_proves_the_checks_can_fail() {
    let (_source, ws) = setup(1).await;
    write_drill(
        &ws,
        "nightly",
        "restore_point: latest\nscratch:\n  kind: ephemeral\nchecks:\n  - fingerprint: true\n",
    );
    let (code, out, text) = drill(&ws, &["nightly", "--negative-control"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(out["result"]["verdict"], "fail");
    assert_eq!(out["result"]["negative_control"], true);

    // Checks that cannot see a lost row make the negative control fail.
    write_drill(
        &ws,
        "blind",
        "restore_point: latest\nscratch:\n  kind: ephemeral\nchecks:\n  - sql: \"select 1\"\n    expect: \"1\"\n",
    );
    let (code, _, text) = drill(&ws, &["blind", "--negative-control"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("negative control FAILED"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scratch_server_that_is_the_source_is_refused_before_anything_is_created() {
    let (source, ws) = setup(1).await;
    write_drill(
        &ws,
        "samehost",
        "restore_point: latest\nscratch:\n  kind: server\n  dsn_env: LB_SCRATCH_DSN\nchecks:\n  - fingerprint: true\n",
    );
    let before = source
        .psql("postgres", "select count(*) from pg_database")
        .await
        .unwrap();
    let o = ws.run(
        &["--json", "-q", "drill", "run", "samehost"],
        &[("LB_SCRATCH_DSN", &source.dsn("postgres"))],
    );
    assert_eq!(o.status.code(), Some(1), "{}", all_output(&o));
    let r = &json(&o)["result"];
    assert_eq!(r["verdict"], "error");
    assert!(r["reason"].as_str().unwrap().contains("refused"), "{}", all_output(&o));
    assert_eq!(
        source
            .psql("postgres", "select count(*) from pg_database")
            .await
            .unwrap(),
        before,
        "no database may be created"
    );
}

fn scratch_dirs(parent: &Path) -> Vec<String> {
    std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("lifeboat-pg-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_restore_leaves_no_cluster_directory_or_process() {
    let (_source, ws) = setup(3).await;
    write_drill(
        &ws,
        "nightly",
        "restore_point: latest\nscratch:\n  kind: ephemeral\nchecks:\n  - fingerprint: true\n",
    );
    // The drill's scratch clusters go to their own temp dir (searchable by the postgres OS user).
    let tmp = ws.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::set_permissions(ws.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .arg("--config")
        .arg(ws.config_path())
        .args(["-q", "drill", "run", "nightly"])
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the restore phase: pg_restore running into the scratch cluster in this temp dir.
    let deadline = Instant::now() + Duration::from_secs(120);
    let tmp_text = tmp.to_string_lossy().to_string();
    let cluster_dir = loop {
        assert!(Instant::now() < deadline, "the drill never reached its restore phase");
        let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap();
        let restoring = String::from_utf8_lossy(&ps.stdout)
            .lines()
            .any(|l| l.contains("pg_restore") && l.contains(&tmp_text));
        if restoring && let Some(d) = scratch_dirs(&tmp).into_iter().next() {
            break tmp.join(d);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("interrupted by SIGTERM"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        scratch_dirs(&tmp).is_empty(),
        "scratch directories left behind: {:?}",
        scratch_dirs(&tmp)
    );
    assert!(!cluster_dir.exists());
    let staged: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("lifeboat-restore-"))
        .collect();
    // This small archive is staged in memory, which goes with the process; one too big for that is
    // staged here, and must go too.
    assert!(staged.is_empty(), "the staged archive was left behind: {staged:?}");
    // No process (server, pg_restore or one of its workers) still runs on that cluster: they were
    // killed on the way out; give the kernel a moment to finish them.
    let needle = cluster_dir.to_string_lossy().to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap();
        let left: Vec<String> = String::from_utf8_lossy(&ps.stdout)
            .lines()
            .filter(|l| l.contains(&needle))
            .map(str::to_owned)
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "processes still use {needle}: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_drill_files_are_located() {
    let (_source, ws) = setup(1).await;
    write_drill(
        &ws,
        "bad",
        "restore_point: latest\nscratch:\n  kind: ephemeral\nsla:\n  rto: ten minutes\nchecks:\n  - fingerprnt: true\n",
    );
    let o = ws.run(&["drill", "run", "bad"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", all_output(&o));
    let text = all_output(&o);
    assert!(text.contains("bad.yaml:7:"), "bad duration located: {text}");
    assert!(text.contains("bad.yaml:9:"), "unknown check located: {text}");
    assert!(text.contains("fingerprint"), "did-you-mean: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drill_on_a_scratch_server_restores_into_a_throwaway_database_and_drops_it() {
    let (_source, ws) = setup(1).await;
    let scratch = EphemeralPostgres::start(&EphemeralOptions::default()).await.unwrap();
    write_drill(
        &ws,
        "onserver",
        "restore_point: latest\nscratch:\n  kind: server\n  dsn_env: LB_SCRATCH_DSN\n  environment: scratch\nchecks:\n  - fingerprint: true\n  - sql: \"select count(*) from customers\"\n    expect: 10000\n",
    );
    // What a drill killed with SIGKILL long ago left behind, and one that may belong to a running drill.
    scratch
        .create_database("lifeboat_drill_20200101t000000z_deadbeef")
        .await
        .unwrap();
    let young = format!(
        "lifeboat_drill_{}_0badcafe",
        jiff::Timestamp::now().strftime("%Y%m%dt%H%M%Sz")
    );
    scratch.create_database(&young).await.unwrap();
    let databases = "select string_agg(datname, ',') from pg_database where datname like 'lifeboat_drill%'";
    let o = ws.run(
        &["--json", "-q", "drill", "run", "onserver"],
        &[("LB_SCRATCH_DSN", &scratch.dsn("postgres"))],
    );
    assert_eq!(o.status.code(), Some(0), "{}", all_output(&o));
    let r = &json(&o)["result"];
    assert_eq!(r["verdict"], "pass");
    assert_eq!(r["scratch"]["kind"], "server");
    assert_eq!(r["scratch"]["reaped"][0], "lifeboat_drill_20200101t000000z_deadbeef");
    assert_eq!(
        scratch.psql("postgres", databases).await.unwrap(),
        young,
        "the drill's own database is dropped, the stale one reaped, a young one left alone"
    );
}
