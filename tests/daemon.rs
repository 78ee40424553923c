//! `lifeboat daemon` as ops run it: the real binary on real schedules, against throwaway PostgreSQL
//! clusters, a file repository, the machine's PostgreSQL for a shared catalog, and an HTTP receiver
//! standing in for a webhook endpoint.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifeboat::catalog::{self, CatalogTarget};
use lifeboat::scratch::{EphemeralOptions, EphemeralPostgres};
use serde_json::Value;
use support::cli::{Workspace, all_output, load_rental};
use support::daemon::Daemon;
use support::unique_name;

async fn source_cluster() -> EphemeralPostgres {
    let c = EphemeralPostgres::start(&EphemeralOptions::default())
        .await
        .expect("start scratch cluster");
    c.create_database("rental").await.unwrap();
    load_rental(&c, "rental", 1).await;
    c
}

/// A config with the rental source, a file repository and `extra` appended (YAML at top level);
/// `source_extra` is added under the source.
fn write_config(ws: &Workspace, dsn: &str, source_extra: &str, extra: &str) {
    ws.write_config(&format!(
        "state_dir: {state}\ndrills_dir: {drills}\nrepositories:\n  local:\n    url: file://{repo}\nsources:\n  rental:\n    kind: postgres\n    dsn: \"{dsn}\"\n    environment: staging\n    repository: local\n{source_extra}{extra}",
        state = ws.path().join("state").display(),
        drills = ws.path().join("drills").display(),
        repo = ws.repo_dir().display(),
    ));
    std::fs::create_dir_all(ws.path().join("drills")).unwrap();
}

fn init(ws: &Workspace, env: &[(&str, &str)]) {
    let o = ws.run(&["init"], env);
    assert!(o.status.success(), "{}", all_output(&o));
}

fn json(ws: &Workspace, args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut all = vec!["--json", "-q"];
    all.extend_from_slice(args);
    let o = ws.run(&all, env);
    assert!(o.status.success(), "{}", all_output(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", all_output(&o)))
}

fn snapshots(ws: &Workspace, env: &[(&str, &str)]) -> Vec<Value> {
    json(ws, &["snapshots"], env).as_array().cloned().unwrap_or_default()
}

fn wait_for_snapshots(ws: &Workspace, env: &[(&str, &str)], n: usize, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = snapshots(ws, env);
        if s.len() >= n {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{} snapshot(s) after {timeout:?}, wanted {n}",
            s.len()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn job<'a>(jobs: &'a Value, name: &str) -> &'a Value {
    jobs.as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == name)
        .unwrap_or_else(|| panic!("no job {name} in {jobs}"))
}

/// A metric's value in an OpenMetrics text, by its exact series (name and labels).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().split(' ').next()?.parse().ok())
}

/// An HTTP endpoint that records every JSON body POSTed to it: a webhook sink's far end.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
    /// `METHOD /path` of every other request (dead-man pings).
    requests: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let store = bodies.clone();
        let seen = requests.clone();
        let app = axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                    let store = store.clone();
                    async move {
                        store.lock().unwrap().push(body);
                        "ok"
                    }
                }),
            )
            .fallback(move |method: axum::http::Method, uri: axum::http::Uri| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(format!("{method} {}", uri.path()));
                    "ok"
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, bodies, requests }
    }

    fn base(&self) -> String {
        self.url.trim_end_matches("/hook").to_string()
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    fn received(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    async fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = self.received().into_iter().find(&pred) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} arrived; got {:?}",
                self.received()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

const WEBHOOK_ROUTE: &str = "alerts:\n  sinks:\n    hook:\n      kind: webhook\n      url_env: TEST_HOOK_URL\n  routes:\n    all:\n      sinks: [hook]\n      min_severity: info\n";

/// The daemon as the issue describes it: real PostgreSQL, the loopback S3 server, second-level
/// schedules; backups, verification and a drill happen, and the metrics show them.
#[tokio::test(flavor = "multi_thread")]
async fn scheduled_backups_verify_and_drills_on_s3_serve_metrics_and_health_and_stop_cleanly() {
    let source = source_cluster().await;
    let monitor = Receiver::start().await;
    let ping_url = format!("{}/ping/backup-rental", monitor.base());
    let bucket = unique_name("lbdaemon");
    support::create_bucket(&bucket).await;
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.path().join("drills")).unwrap();
    ws.write_config(&format!(
        "state_dir: {state}\ndrills_dir: {drills}\nrepositories:\n  offsite:\n    url: s3://{bucket}/lifeboat\n    \
         endpoint: {endpoint}\n    access_key_id_env: LB_S3_KEY\n    secret_access_key_env: LB_S3_SECRET\n\
         sources:\n  rental:\n    kind: postgres\n    dsn: \"{dsn}\"\n    environment: staging\n    repository: offsite\n    \
         schedule:\n      backup: \"*/2 * * * * *\"\n      verify: \"*/3 * * * * *\"\n    \
         pings:\n      backup: {{ url_env: TEST_PING_URL }}\n\
         daemon:\n  listen: 127.0.0.1:0\n",
        state = ws.path().join("state").display(),
        drills = ws.path().join("drills").display(),
        endpoint = support::s3_endpoint(),
        dsn = source.dsn("rental"),
    ));
    std::fs::write(
        ws.path().join("drills/nightly.yaml"),
        "name: nightly\nsource: rental\nschedule: \"*/5 * * * * *\"\nscratch:\n  kind: ephemeral\n\
         sla: { rto: 10m, rpo: 1h }\nchecks:\n  - fingerprint: true\n",
    )
    .unwrap();
    let env = [
        ("LB_S3_KEY", "lifeboat-test"),
        ("LB_S3_SECRET", "lifeboat-test-secret"),
        ("TEST_PING_URL", ping_url.as_str()),
    ];
    init(&ws, &env);
    let mut daemon = Daemon::start(&ws, "daemon", &env);

    let taken = wait_for_snapshots(&ws, &env, 2, Duration::from_secs(40));
    daemon.wait_for_log("verify:rental: ok", Duration::from_secs(20));
    daemon.wait_for_log("drill:nightly: ok", Duration::from_secs(60));

    let (status, text) = daemon.get("/metrics").await;
    assert_eq!(status, 200);
    let last = metric(
        &text,
        "lifeboat_last_backup_success_timestamp_seconds{source=\"rental\"}",
    )
    .unwrap_or_else(|| panic!("no last-success series in:\n{text}"));
    let now = jiff::Timestamp::now().as_second() as f64;
    assert!(now - last < 30.0, "last success {last} is not recent (now {now})");
    let rpo = metric(&text, "lifeboat_rpo_seconds{source=\"rental\"}").expect("rpo series");
    assert!((0.0..30.0).contains(&rpo), "rpo {rpo}");
    assert_eq!(
        metric(&text, "lifeboat_sla_rpo_seconds{source=\"rental\"}"),
        Some(3600.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "lifeboat_drill_verdict{drill=\"nightly\",verdict=\"pass\"}"),
        Some(1.0),
        "{text}"
    );
    let rto = metric(&text, "lifeboat_drill_rto_seconds{drill=\"nightly\",phase=\"total\"}").expect("drill RTO");
    assert!(rto > 0.0 && rto < 600.0, "{rto}");
    assert!(
        text.contains("lifeboat_job_duration_seconds_count{kind=\"backup\"}"),
        "no backup job histogram:\n{text}"
    );
    let (status, health) = daemon.get("/healthz").await;
    assert_eq!(status, 200, "{health}");
    assert!(health.contains("scheduler"), "{health}");

    // The dead-man monitor heard each backup start and succeed (healthchecks-style URLs).
    let pings = monitor.requests();
    assert!(
        pings.contains(&"GET /ping/backup-rental/start".to_string()),
        "{pings:?}"
    );
    assert!(pings.contains(&"GET /ping/backup-rental".to_string()), "{pings:?}");
    assert!(!pings.iter().any(|p| p.ends_with("/fail")), "{pings:?}");

    let (status, log) = daemon.stop(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("received SIGTERM"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a log file:\n{log}");

    // What it did is in the catalog: the job table and the snapshots, each one restorable.
    let jobs = json(&ws, &["jobs"], &env);
    let backup = job(&jobs, "backup:rental");
    assert_eq!(backup["last_outcome"], "ok", "{jobs}");
    assert!(backup["running_on"].is_null(), "{jobs}");
    assert_eq!(job(&jobs, "verify:rental")["last_outcome"], "ok", "{jobs}");
    assert_eq!(job(&jobs, "drill:nightly")["last_outcome"], "ok", "{jobs}");
    let id = taken[0]["id"].as_str().unwrap();
    let o = ws.run(&["verify", id, "--read-data"], &env);
    assert!(o.status.success(), "{}", all_output(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_sharing_a_postgres_catalog_run_each_occurrence_once() {
    let source = source_cluster().await;
    let catalog = SharedCatalog::create();
    let env = [("LIFEBOAT_CATALOG_URL", catalog.url.as_str())];

    let ws = Workspace::new();
    write_config(
        &ws,
        &source.dsn("rental"),
        "    schedule:\n      backup: \"*/2 * * * * *\"\n",
        "catalog:\n  url_env: LIFEBOAT_CATALOG_URL\ndaemon:\n  listen: 127.0.0.1:0\n  lease: 30s\n",
    );
    init(&ws, &[]);
    let a = Daemon::start(&ws, "a", &env);
    let b = Daemon::start(&ws, "b", &env);
    std::thread::sleep(Duration::from_secs(9));
    let (sa, la) = a.stop(Duration::from_secs(60));
    let (sb, lb) = b.stop(Duration::from_secs(60));
    assert_eq!((sa.code(), sb.code()), (Some(0), Some(0)), "{la}\n{lb}");

    let runs = |log: &str| log.lines().filter(|l| l.contains("backup:rental: started")).count();
    let (ra, rb) = (runs(&la), runs(&lb));
    let mut times: Vec<jiff::Timestamp> = snapshots(&ws, &env)
        .iter()
        .map(|s| s["started_at"].as_str().unwrap().parse().unwrap())
        .collect();
    times.sort();
    assert!(
        times.len() >= 3,
        "{} snapshots in 9 s of a 2 s schedule:\n{la}\n{lb}",
        times.len()
    );
    assert_eq!(ra + rb, times.len(), "every run made one snapshot:\n{la}\n{lb}");
    // Each occurrence ran on one daemon only: no two snapshots from the same 2-second slot.
    for pair in times.windows(2) {
        let gap = pair[1].duration_since(pair[0]).as_secs_f64();
        assert!(gap > 1.0, "two runs {gap:.2}s apart: {pair:?}\n{la}\n{lb}");
    }
}

/// A catalog database on the machine's PostgreSQL for daemons to share; dropped afterwards.
struct SharedCatalog {
    name: String,
    url: String,
}

const ADMIN_DSN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

impl SharedCatalog {
    fn create() -> SharedCatalog {
        let name = unique_name("lbcat").replace('-', "_");
        let out = Command::new("psql")
            .args(["-X", "-q", "-d", ADMIN_DSN, "-c", &format!("create database {name}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        SharedCatalog { name, url }
    }
}

impl Drop for SharedCatalog {
    fn drop(&mut self) {
        let sql = format!("drop database if exists {} with (force)", self.name);
        let _ = Command::new("psql")
            .args(["-X", "-q", "-d", ADMIN_DSN, "-c", &sql])
            .output();
    }
}

/// Every daemon watches the RPO, but only one alerts on it: two daemons on one catalog send one page.
#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_on_one_catalog_page_once_for_a_breached_rpo() {
    let source = source_cluster().await;
    let catalog = SharedCatalog::create();
    let hook = Receiver::start().await;
    let env = [
        ("LIFEBOAT_CATALOG_URL", catalog.url.as_str()),
        ("TEST_HOOK_URL", hook.url.as_str()),
    ];
    let ws = Workspace::new();
    write_config(
        &ws,
        &source.dsn("rental"),
        "",
        &format!("catalog:\n  url_env: LIFEBOAT_CATALOG_URL\ndaemon:\n  listen: 127.0.0.1:0\n{WEBHOOK_ROUTE}"),
    );
    // The SLA allows one second of data loss; the only backup is older than that by the time the
    // daemons look.
    std::fs::write(
        ws.path().join("drills/nightly.yaml"),
        "name: nightly\nsource: rental\nscratch:\n  kind: ephemeral\nsla: { rto: 10m, rpo: 1s }\nchecks:\n  - fingerprint: true\n",
    )
    .unwrap();
    init(&ws, &env);
    let o = ws.run(&["backup", "rental"], &env);
    assert!(o.status.success(), "{}", all_output(&o));
    let a = Daemon::start(&ws, "a", &env);
    let b = Daemon::start(&ws, "b", &env);
    hook.wait_for("an rpo_breached alert", |v| v["kind"] == "rpo_breached")
        .await;
    // Both daemons tick at least twice more.
    std::thread::sleep(Duration::from_secs(35));
    let (sa, la) = a.stop(Duration::from_secs(60));
    let (sb, lb) = b.stop(Duration::from_secs(60));
    assert_eq!((sa.code(), sb.code()), (Some(0), Some(0)), "{la}\n{lb}");
    let pages: Vec<Value> = hook
        .received()
        .into_iter()
        .filter(|v| v["kind"] == "rpo_breached")
        .collect();
    assert_eq!(pages.len(), 1, "{pages:#?}");
    assert_eq!(pages[0]["status"], "firing");
}

/// Marks `job` as taken care of up to `due`, as a daemon that ran then would have.
async fn seed_job(ws: &Workspace, job: &str, due: jiff::Timestamp) {
    let cat = catalog::open(&CatalogTarget::Sqlite(ws.path().join("state/catalog.db")))
        .await
        .unwrap();
    assert!(cat.skip_job(job, due).await.unwrap());
    cat.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn missed_runs_are_caught_up_within_the_window_and_reported_beyond_it() {
    let source = source_cluster().await;
    let hook = Receiver::start().await;
    let env = [("TEST_HOOK_URL", hook.url.as_str())];
    let ws = Workspace::new();
    let config = |second_job: &str, catch_up: &str| {
        write_config(
            &ws,
            &source.dsn("rental"),
            &format!(
                "    schedule:\n      backup: \"0 * * * *\"\n      {second_job}: \"0 * * * *\"\n    retention: {{ keep_last: 5 }}\n"
            ),
            &format!("daemon:\n  listen: 127.0.0.1:0\n  catch_up: {catch_up}\n{WEBHOOK_ROUTE}"),
        )
    };
    config("prune", "6h");
    init(&ws, &[]);
    // The daemon last took care of the hourly backup three hours ago: three runs were missed.
    let now = jiff::Timestamp::now();
    seed_job(&ws, "backup:rental", now - jiff::SignedDuration::from_hours(3)).await;

    let mut daemon = Daemon::start(&ws, "catch-up", &env);
    // The shared-fate analysis runs at start: the repository sits on the same filesystem as the
    // cluster's data directory (both under the temp dir), which is critical, and alerted at once.
    let fate = hook
        .wait_for("a fate_critical alert", |v| {
            v["kind"] == "fate_critical" && v["summary"].as_str().is_some_and(|s| s.starts_with("same-device"))
        })
        .await;
    assert_eq!(fate["severity"], "critical", "{fate}");
    daemon.wait_for_log("fate:all: ok", Duration::from_secs(30));
    daemon.wait_for_log("backup:rental: ok", Duration::from_secs(30));
    let (_, metrics) = daemon.get("/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "lifeboat_jobs_missed_total{kind=\"backup\",target=\"rental\"}"
        ),
        Some(2.0),
        "the newest missed run ran, the two before it are reported:\n{metrics}"
    );
    let critical = metric(&metrics, "lifeboat_fate_findings{severity=\"critical\"}").unwrap_or(0.0);
    assert!(critical >= 1.0, "{metrics}");
    let missed = hook
        .wait_for("a jobs_missed alert", |v| {
            v["kind"] == "jobs_missed" && v["status"] == "firing"
        })
        .await;
    assert!(
        missed["summary"]
            .as_str()
            .unwrap()
            .contains("2 scheduled run(s) missed"),
        "{missed}"
    );
    // The run that caught up resolves it.
    hook.wait_for("the jobs_missed resolve", |v| {
        v["kind"] == "jobs_missed" && v["status"] == "resolved"
    })
    .await;
    let (status, log) = daemon.stop(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{log}");
    assert_eq!(snapshots(&ws, &[]).len(), 1, "exactly one catch-up run");
    // The prune job was new to this catalog: nothing in the past counts as missed for it.
    assert!(!log.contains("prune:rental: started"), "{log}");
    assert_eq!(
        metric(&metrics, "lifeboat_jobs_missed_total{kind=\"prune\",target=\"rental\"}").unwrap_or(0.0),
        0.0
    );

    // Beyond the window: reported, not run.
    config("verify", "0s");
    seed_job(&ws, "verify:rental", now - jiff::SignedDuration::from_hours(5)).await;
    let daemon = Daemon::start(&ws, "beyond", &env);
    hook.wait_for("the verify jobs_missed alert", |v| {
        v["kind"] == "jobs_missed" && v["summary"].as_str().is_some_and(|s| s.contains("verify:rental"))
    })
    .await;
    let (_, metrics) = daemon.get("/metrics").await;
    let missed = metric(
        &metrics,
        "lifeboat_jobs_missed_total{kind=\"verify\",target=\"rental\"}",
    )
    .unwrap();
    assert!((4.0..=5.0).contains(&missed), "{missed} missed:\n{metrics}");
    let (status, log) = daemon.stop(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        !log.contains("verify:rental: started"),
        "a run beyond catch_up must not run:\n{log}"
    );
}

/// The loopback SMTP server that `scripts/test` runs (`scripts/smtp-server`): its address and maildir.
fn smtp_server() -> (String, PathBuf) {
    match (
        std::env::var("LIFEBOAT_TEST_SMTP_ADDR"),
        std::env::var("LIFEBOAT_TEST_SMTP_MAILDIR"),
    ) {
        (Ok(addr), Ok(dir)) if !addr.is_empty() && !dir.is_empty() => (addr, PathBuf::from(dir)),
        _ => panic!(
            "the SMTP test server is not running; run `bash scripts/test` (it starts it) or \
             `scripts/smtp-server start` and export its env (eval \"$(scripts/smtp-server env)\")"
        ),
    }
}

/// The subjects of the messages delivered to `recipient` so far.
fn mail_subjects(maildir: &Path, recipient: &str) -> Vec<String> {
    let mut subjects = Vec::new();
    for entry in std::fs::read_dir(maildir.join("new")).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path())
            .unwrap_or_default()
            .replace("\r\n", "\n");
        let head = text.split("\n\n").next().unwrap_or_default().replace("\n ", " ");
        if head
            .lines()
            .any(|l| l.starts_with("X-RcptTo:") && l.contains(recipient))
        {
            subjects.extend(
                head.lines()
                    .filter_map(|l| l.strip_prefix("Subject: "))
                    .map(str::to_owned),
            );
        }
    }
    subjects
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_backup_alerts_once_by_webhook_and_email_and_resolves_when_the_database_is_back() {
    let source = source_cluster().await;
    let hook = Receiver::start().await;
    let (smtp, maildir) = smtp_server();
    let oncall = format!("{}@lifeboat.test", unique_name("oncall"));
    let env = [("TEST_HOOK_URL", hook.url.as_str())];
    let ws = Workspace::new();
    write_config(
        &ws,
        &source.dsn("comes_later"),
        "    schedule:\n      backup: \"*/2 * * * * *\"\n",
        &format!(
            "daemon:\n  listen: 127.0.0.1:0\n{WEBHOOK_ROUTE}    mail:\n      sinks: [mail]\n      min_severity: critical\n"
        )
        .replace(
            "  routes:\n",
            &format!(
                "    mail:\n      kind: email\n      server: smtp://{smtp}\n      tls: none\n      from: lifeboat@lifeboat.test\n      to: [{oncall}]\n  routes:\n"
            ),
        ),
    );
    init(&ws, &[]);
    let mut daemon = Daemon::start(&ws, "daemon", &env);
    let alert = hook
        .wait_for("a backup_failed alert", |v| v["kind"] == "backup_failed")
        .await;
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["source"], "rental");
    assert!(alert["summary"].as_str().unwrap().contains("comes_later"), "{alert}");
    daemon.wait_for_log("backup:rental: failed", Duration::from_secs(10));
    // The next failures are the same alert: not sent again.
    std::thread::sleep(Duration::from_secs(3));
    let firing = hook.received().iter().filter(|v| v["kind"] == "backup_failed").count();
    assert_eq!(firing, 1, "{:?}", hook.received());
    let (_, metrics) = daemon.get("/metrics").await;
    let failures = metric(
        &metrics,
        "lifeboat_job_failures_total{kind=\"backup\",target=\"rental\"}",
    )
    .unwrap();
    assert!(failures >= 2.0, "{metrics}");
    // On-call's mailbox got it too, once.
    let deadline = Instant::now() + Duration::from_secs(20);
    let subjects = loop {
        let s = mail_subjects(&maildir, &oncall);
        if !s.is_empty() || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(subjects.len(), 1, "{subjects:?}");
    assert!(subjects[0].contains("CRITICAL backup_failed rental"), "{subjects:?}");

    // The database comes back: the next backup succeeds and the alert is resolved, on both sinks.
    source.create_database("comes_later").await.unwrap();
    hook.wait_for("the backup_failed resolve", |v| {
        v["kind"] == "backup_failed" && v["status"] == "resolved"
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !mail_subjects(&maildir, &oncall).iter().any(|s| s.contains("RESOLVED")) {
        assert!(
            Instant::now() < deadline,
            "no resolve mail: {:?}",
            mail_subjects(&maildir, &oncall)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, log) = daemon.stop(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_backup_exits_cleanly_and_leaves_a_verifiable_repository() {
    let source = source_cluster().await;
    let ws = Workspace::new();
    write_config(
        &ws,
        &source.dsn("rental"),
        "    schedule:\n      backup: \"*/2 * * * * *\"\n",
        "daemon:\n  listen: 127.0.0.1:0\n  shutdown_grace: 1s\n",
    );
    init(&ws, &[]);
    let o = ws.run(&["backup", "rental"], &[]);
    assert!(o.status.success(), "{}", all_output(&o));
    // Hold a table so that the next backup, once its snapshot is exported, waits inside pg_dump.
    let psql = source.bin_dir().join("psql");
    let mut holder = Command::new(&psql)
        .args(["-X", "-q", "-d", &source.dsn("rental"), "-c"])
        .arg("begin; lock table payments in access exclusive mode; select pg_sleep(120);")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut daemon = Daemon::start(&ws, "daemon", &[]);
    daemon.wait_for_log("backup:rental: started", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    let (status, log) = daemon.stop(Duration::from_secs(60));
    let _ = holder.kill();
    let _ = holder.wait();
    // The server side of the lock holder sleeps on until told: end it, releasing the lock.
    source
        .psql(
            "rental",
            "select pg_terminate_backend(pid) from pg_stat_activity where query like '%pg_sleep(120)%' and pid <> pg_backend_pid()",
        )
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("cancelling"), "{log}");
    // Its repository lock went with it: a prune is not held up for half an hour by a stale lock.
    let locks: Vec<String> = ws
        .repo_listing()
        .into_iter()
        .filter(|p| p.starts_with("locks/"))
        .collect();
    assert!(locks.is_empty(), "{locks:?}");
    // No half snapshot: only the one taken before, and every object of it intact.
    assert_eq!(snapshots(&ws, &[]).len(), 1);
    let o = ws.run(&["verify", "--all", "--read-data"], &[]);
    assert!(o.status.success(), "{}", all_output(&o));
    let jobs = json(&ws, &["jobs"], &[]);
    assert_eq!(job(&jobs, "backup:rental")["last_outcome"], "cancelled", "{jobs}");
    let ps = Command::new("pgrep").args(["-f", "pg_dump"]).output().unwrap();
    let dsn = source.dsn("rental");
    let leftover: Vec<String> = Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.contains("pg_dump") && l.contains(&dsn))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    assert!(leftover.is_empty(), "pg_dump still running: {leftover:?} ({ps:?})");
    // The next backup works.
    let o = ws.run(&["backup", "rental"], &[]);
    assert!(o.status.success(), "{}", all_output(&o));
}

fn scratch_leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("lifeboat-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_cancels_a_running_drill_after_the_grace_period_and_leaves_no_scratch() {
    let source = source_cluster().await;
    let ws = Workspace::new();
    write_config(
        &ws,
        &source.dsn("rental"),
        "",
        "daemon:\n  listen: 127.0.0.1:0\n  shutdown_grace: 0s\n",
    );
    std::fs::write(
        ws.path().join("drills/nightly.yaml"),
        "name: nightly\nsource: rental\nschedule: \"*/2 * * * * *\"\nscratch:\n  kind: ephemeral\nchecks:\n  - fingerprint: true\n",
    )
    .unwrap();
    init(&ws, &[]);
    let o = ws.run(&["backup", "rental"], &[]);
    assert!(o.status.success(), "{}", all_output(&o));
    // The drill's scratch cluster goes here (the postgres user must be able to reach it).
    let tmp = ws.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::set_permissions(ws.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();

    let tmp_text = tmp.display().to_string();
    let mut daemon = Daemon::start(&ws, "daemon", &[("TMPDIR", tmp_text.as_str())]);
    daemon.wait_for_log("drill:nightly: started", Duration::from_secs(20));
    // Let it get as far as a running scratch cluster.
    let deadline = Instant::now() + Duration::from_secs(20);
    while scratch_leftovers(&tmp).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no scratch directory appeared:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, log) = daemon.stop(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("cancelling"), "{log}");
    assert_eq!(
        scratch_leftovers(&tmp),
        Vec::<String>::new(),
        "scratch left behind:\n{log}"
    );
    let ps = Command::new("pgrep").args(["-f", &tmp_text]).output().unwrap();
    assert!(
        ps.stdout.is_empty(),
        "processes left running in the scratch directory: {}",
        String::from_utf8_lossy(&ps.stdout)
    );
    let jobs = json(&ws, &["jobs"], &[]);
    assert_eq!(job(&jobs, "drill:nightly")["last_outcome"], "cancelled", "{jobs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_schedule_keeps_a_verified_second_copy_in_another_repository() {
    let source = source_cluster().await;
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.path().join("drills")).unwrap();
    ws.write_config(&format!(
        "state_dir: {state}\nrepositories:\n  local:\n    url: file://{repo}\n  second:\n    url: file://{second}\n\
         sources:\n  rental:\n    kind: postgres\n    dsn: \"{dsn}\"\n    environment: staging\n    repository: local\n    \
         copy_to: [second]\n    schedule:\n      backup: \"*/2 * * * * *\"\n      copy: \"*/3 * * * * *\"\n\
         daemon:\n  listen: 127.0.0.1:0\n",
        state = ws.path().join("state").display(),
        repo = ws.repo_dir().display(),
        second = ws.path().join("second").display(),
        dsn = source.dsn("rental"),
    ));
    for repo in ["local", "second"] {
        let o = ws.run(&["init", repo], &[]);
        assert!(o.status.success(), "{}", all_output(&o));
    }
    let mut daemon = Daemon::start(&ws, "daemon", &[]);
    daemon.wait_for_log("copy:rental: ok", Duration::from_secs(30));
    let line = daemon.wait_for_log("1 copied", Duration::from_secs(30));
    assert!(line.contains("second:"), "{line}");
    let (status, log) = daemon.stop(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{log}");
    // The copy is whole: every chunk of every snapshot there re-read and proven.
    let o = ws.run(&["verify", "--all", "--read-data", "--repository", "second"], &[]);
    assert!(o.status.success(), "{}", all_output(&o));
    assert!(all_output(&o).contains("second"), "{}", all_output(&o));
    let copies: Vec<Value> = snapshots(&ws, &[])
        .into_iter()
        .filter(|s| s["repository"] == "second")
        .collect();
    assert!(!copies.is_empty(), "the catalog knows the copies");
}
