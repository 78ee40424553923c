//! The control plane on real components: the daemon's API over HTTP, the CLI, a throwaway PostgreSQL
//! cluster with a production and a staging database, and a file repository. What is asserted is what
//! the safety model promises: refused or pending, audited, and nothing changed until another
//! principal approves.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use lifeboat::scratch::EphemeralPostgres;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::cli::{Workspace, all_output, cluster, engine, load_rental};
use support::daemon::Daemon;

/// A cluster with `prod` (environment production) and `stage` (staging), both backed up once into
/// the workspace's file repository; a drill for `stage`. `control` is appended to the config.
async fn setup(control: &str) -> (EphemeralPostgres, Workspace) {
    let pg = cluster().await;
    for db in ["prod", "stage"] {
        pg.create_database(db).await.unwrap();
        load_rental(&pg, db, 1).await;
    }
    let ws = Workspace::new();
    ws.write_config(&format!(
        "state_dir: {state}\nrepositories:\n  local:\n    url: file://{repo}\nsources:\n  prod:\n    kind: postgres\n    dsn: \"{prod}\"\n    environment: production\n    repository: local\n    retention:\n      keep_last: 5\n  stage:\n    kind: postgres\n    dsn: \"{stage}\"\n    environment: staging\n    repository: local\ndaemon:\n  listen: 127.0.0.1:0\n{control}",
        state = ws.path().join("state").display(),
        repo = ws.repo_dir().display(),
        prod = pg.dsn("prod"),
        stage = pg.dsn("stage"),
    ));
    let drills = ws.path().join("drills");
    std::fs::create_dir_all(&drills).unwrap();
    std::fs::write(
        drills.join("stage-check.yaml"),
        "name: stage-check\nsource: stage\nscratch:\n  kind: ephemeral\nchecks:\n  - fingerprint: true\n",
    )
    .unwrap();
    let o = ws.run(&["init"], &[]);
    assert!(o.status.success(), "{}", all_output(&o));
    for source in ["prod", "stage"] {
        let o = ws.run(&["-q", "backup", source], &[]);
        assert!(o.status.success(), "{}", all_output(&o));
    }
    (pg, ws)
}

fn cli_json(ws: &Workspace, args: &[&str], token: Option<&str>) -> Value {
    let mut all = vec!["--json", "-q"];
    all.extend_from_slice(args);
    let env: Vec<(&str, &str)> = token.map(|t| ("LIFEBOAT_TOKEN", t)).into_iter().collect();
    let o = ws.run(&all, &env);
    assert!(o.status.success(), "{}", all_output(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", all_output(&o)))
}

/// A token made with the workspace's admin token.
fn token(ws: &Workspace, name: &str, ops: &str, env: &str, sources: &str, extra: &[&str]) -> String {
    let admin = ws.admin_token();
    let mut args = vec![
        "token",
        "create",
        "--name",
        name,
        "--ops",
        ops,
        "--env",
        env,
        "--sources",
        sources,
    ];
    args.extend_from_slice(extra);
    cli_json(ws, &args, Some(&admin))["secret"]
        .as_str()
        .unwrap()
        .to_string()
}

fn snapshot_of(ws: &Workspace, source: &str) -> String {
    let list = cli_json(ws, &["snapshots", "--source", source], None);
    list[0]["id"].as_str().unwrap().to_string()
}

/// Every object in the repository with the SHA-256 of its bytes, except the audit log's copy (which
/// the daemon appends to by design).
fn repo_objects(ws: &Workspace) -> BTreeMap<String, String> {
    ws.repo_listing()
        .into_iter()
        .filter(|p| !p.starts_with("audit/"))
        .map(|p| {
            let bytes = std::fs::read(ws.repo_dir().join(&p)).unwrap();
            (p, hex::encode(Sha256::digest(&bytes)))
        })
        .collect()
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(daemon: &Daemon) -> Api {
        Api {
            base: format!("http://{}", daemon.addr),
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(300));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("API call");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_incident_replayed_an_agent_token_cannot_destroy_anything_and_one_approval_deletes_exactly_one_snapshot() {
    let (pg, ws) = setup("").await;
    let prod_snapshot = snapshot_of(&ws, "prod");
    let stage_snapshot = snapshot_of(&ws, "stage");
    // What an automation agent would hold, a broader automation token, and a human approver.
    let agent = token(&ws, "agent", "read,drill", "staging", "*", &[]);
    let bot = token(&ws, "ops-bot", "read,delete,approve", "*", "*", &[]);
    let alice = token(&ws, "alice", "read,approve", "*", "*", &[]);

    let daemon = Daemon::start(&ws, "daemon", &[]);
    let api = Api::new(&daemon);
    let objects_before = repo_objects(&ws);
    let prod_before = engine(&pg, "prod").content_checksums().await.unwrap();

    // The agent may do what it is for: read staging, run the staging drill.
    let (status, body) = api.call("GET", "/api/v1/sources", Some(&agent), None).await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["stage"], "a staging token sees staging only");
    let (status, body) = api.call("GET", "/api/v1/snapshots", Some(&agent), None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [stage_snapshot.as_str()]);

    // Everything destructive it tries is refused, each with the reason and a fix.
    let attempts = [
        ("DELETE", format!("/api/v1/snapshots/{prod_snapshot}"), None),
        ("DELETE", format!("/api/v1/snapshots/{stage_snapshot}"), None),
        ("POST", "/api/v1/prune".to_string(), Some(json!({"source": "prod"}))),
        (
            "POST",
            "/api/v1/restores".to_string(),
            Some(json!({"snapshot": prod_snapshot, "target": {"source": "prod"}})),
        ),
        (
            "PUT",
            "/api/v1/sources/prod/retention".to_string(),
            Some(json!({"keep_last": 1})),
        ),
        (
            "POST",
            "/api/v1/tokens".to_string(),
            Some(json!({"name": "agent-admin", "operations": ["admin"]})),
        ),
        (
            "POST",
            "/api/v1/disable".to_string(),
            Some(json!({"target": "drill:stage-check"})),
        ),
        ("DELETE", "/api/v1/repositories/local".to_string(), None),
    ];
    for (method, path, body) in &attempts {
        let (status, reply) = api.call(method, path, Some(&agent), body.clone()).await;
        assert_eq!(status, 403, "{method} {path}: {reply}");
        assert_eq!(reply["error"]["code"], "forbidden", "{reply}");
        assert!(reply["error"]["message"].as_str().unwrap().contains("fix:"), "{reply}");
    }
    // The same through the CLI, as the agent.
    for args in [
        vec!["delete", prod_snapshot.as_str()],
        vec!["token", "create", "--name", "agent-admin", "--ops", "admin"],
        vec!["prune", "prod"],
    ] {
        let o = ws.run(&args, &[("LIFEBOAT_TOKEN", agent.as_str())]);
        assert_eq!(o.status.code(), Some(6), "{args:?}: {}", all_output(&o));
        assert!(all_output(&o).contains("token:agent may not"), "{}", all_output(&o));
    }

    // A token that may delete still only asks, and cannot approve its own request.
    let (status, reply) = api
        .call(
            "DELETE",
            &format!("/api/v1/snapshots/{prod_snapshot}"),
            Some(&bot),
            None,
        )
        .await;
    assert_eq!(status, 202, "{reply}");
    let request = reply["approval"]["id"].as_str().unwrap().to_string();
    assert_eq!(reply["approval"]["state"], "pending");
    assert_eq!(reply["approval"]["requester"], "token:ops-bot");
    assert!(
        reply["approval"]["summary"].as_str().unwrap().contains(&prod_snapshot),
        "{reply}"
    );
    let (_, metrics) = daemon.get("/metrics").await;
    assert!(
        metrics.contains("lifeboat_approvals_pending{kind=\"delete_snapshot\"} 1"),
        "a waiting request shows on /metrics: {metrics}"
    );
    let (status, reply) = api
        .call(
            "POST",
            &format!("/api/v1/approvals/{request}/approve"),
            Some(&bot),
            None,
        )
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (403, Some("self_approval")),
        "{reply}"
    );
    let (status, _) = api
        .call(
            "POST",
            &format!("/api/v1/approvals/{request}/approve"),
            Some(&agent),
            None,
        )
        .await;
    assert_eq!(status, 403, "the agent has no `approve`");
    let o = ws.run(&["approve", &request], &[]);
    assert_eq!(
        o.status.code(),
        Some(6),
        "the local operator never approves: {}",
        all_output(&o)
    );

    // Nothing changed: not one object of the repository, not one row of production.
    assert_eq!(
        repo_objects(&ws),
        objects_before,
        "the repository must be byte-for-byte unchanged"
    );
    assert_eq!(engine(&pg, "prod").content_checksums().await.unwrap(), prod_before);

    // Every attempt is in the audit log, with its decision.
    let (status, log) = api.call("GET", "/api/v1/audit?limit=1000", Some(&alice), None).await;
    assert_eq!(status, 200);
    let entries = log["entries"].as_array().unwrap();
    let by = |principal: &str, decision: &str| {
        entries
            .iter()
            .filter(|e| e["principal"] == principal && e["decision"] == decision)
            .count()
    };
    assert_eq!(by("token:agent", "denied"), attempts.len() + 3 + 1, "{log}");
    assert!(by("token:agent", "allowed") >= 2);
    assert_eq!(by("token:ops-bot", "pending"), 1);
    assert_eq!(by("token:ops-bot", "denied"), 1);
    assert!(
        entries.iter().any(|e| e["principal"] == "token:agent"
            && e["action"]
                .as_str()
                .unwrap()
                .ends_with(&format!(" delete {prod_snapshot}"))
            && e["decision"] == "denied"),
        "{log}"
    );

    // Another principal approves: exactly the one requested deletion happens, once.
    let (status, reply) = api
        .call(
            "POST",
            &format!("/api/v1/approvals/{request}/approve"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["approval"]["state"], "done", "{reply}");
    let mut expected = objects_before.clone();
    expected
        .remove(&format!("snapshots/prod/{prod_snapshot}.json"))
        .expect("the manifest was there");
    assert_eq!(repo_objects(&ws), expected, "exactly one manifest goes");
    let (_, log) = api.call("GET", "/api/v1/audit?limit=1000", Some(&alice), None).await;
    assert!(
        log["entries"].as_array().unwrap().iter().any(|e| e["action"]
            .as_str()
            .unwrap()
            .starts_with(&format!("run approved request {request}"))
            && e["principal"] == "token:alice"),
        "the run is logged before it happens: {log}"
    );
    let (status, reply) = api
        .call(
            "POST",
            &format!("/api/v1/approvals/{request}/approve"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (409, Some("conflict")),
        "it runs once: {reply}"
    );
    assert_eq!(repo_objects(&ws), expected);
    assert_eq!(engine(&pg, "prod").content_checksums().await.unwrap(), prod_before);
    let ids: Vec<String> = cli_json(&ws, &["snapshots"], None)
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, [stage_snapshot]);

    // The log is intact, its copy reached the repository, and editing one entry is found.
    let (status, _) = daemon.stop(Duration::from_secs(30));
    assert!(status.success());
    assert!(
        ws.repo_listing().iter().any(|p| p.starts_with("audit/")),
        "the audit log is copied into the repository"
    );
    let o = ws.run(&["audit", "verify"], &[]);
    assert!(o.status.success(), "{}", all_output(&o));
    let db = ws.path().join("state/catalog.db");
    sqlite(&db, "UPDATE audit_log SET body = body || ' ' WHERE seq = 3").await;
    let o = ws.run(&["audit", "verify"], &[]);
    assert_eq!(o.status.code(), Some(4), "{}", all_output(&o));
    assert!(
        all_output(&o).contains("entry 3: its content does not match its hash (the entry was edited)"),
        "{}",
        all_output(&o)
    );
    pg.stop().await.unwrap();
}

async fn sqlite(db: &std::path::Path, sql: &str) {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_answers_every_scope_as_designed() {
    let (pg, ws) = setup("").await;
    let prod_snapshot = snapshot_of(&ws, "prod");
    let ops = [
        "read",
        "backup",
        "drill",
        "restore:scratch",
        "restore:target",
        "prune",
        "delete",
        "approve",
        "admin",
    ];
    let mut tokens: Vec<(String, String)> = ops
        .iter()
        .map(|op| {
            (
                op.to_string(),
                token(&ws, &format!("only-{}", op.replace(':', "-")), op, "*", "*", &[]),
            )
        })
        .collect();
    // Every operation, but on staging only: whatever is about production is out of its reach.
    tokens.push((
        "staging".into(),
        token(&ws, "staging-all", "admin", "staging", "*", &[]),
    ));
    let daemon = Daemon::start(&ws, "daemon", &[]);
    let api = Api::new(&daemon);

    // (method, path, body, operation that allows it (or `read|approve`), beyond a staging token's
    // reach (about production, or about everything)?)
    let table: Vec<(&str, String, Option<Value>, &str, bool)> = vec![
        ("GET", "/api/v1/sources".into(), None, "read", false),
        ("GET", "/api/v1/snapshots".into(), None, "read", false),
        (
            "DELETE",
            format!("/api/v1/snapshots/{prod_snapshot}"),
            None,
            "delete",
            true,
        ),
        (
            "POST",
            "/api/v1/backups".into(),
            Some(json!({"source": "prod"})),
            "backup",
            true,
        ),
        ("GET", "/api/v1/drills".into(), None, "read", false),
        ("POST", "/api/v1/drills/stage-check/runs".into(), None, "drill", false),
        ("GET", "/api/v1/drills/stage-check/runs".into(), None, "read", false),
        ("GET", "/api/v1/sla".into(), None, "read", false),
        ("GET", "/api/v1/fate".into(), None, "read", false),
        (
            "POST",
            "/api/v1/restores".into(),
            Some(json!({"source": "prod", "target": {"scratch": {}}})),
            "restore:scratch",
            true,
        ),
        (
            "POST",
            "/api/v1/restores".into(),
            Some(json!({"source": "prod", "target": {"source": "prod"}})),
            "restore:target",
            true,
        ),
        (
            "POST",
            "/api/v1/prune".into(),
            Some(json!({"source": "prod"})),
            "prune",
            true,
        ),
        (
            "PUT",
            "/api/v1/sources/prod/retention".into(),
            Some(json!({"keep_last": 2})),
            "admin",
            true,
        ),
        (
            "POST",
            "/api/v1/disable".into(),
            Some(json!({"target": "job:backup:prod"})),
            "admin",
            true,
        ),
        (
            "POST",
            "/api/v1/enable".into(),
            Some(json!({"target": "job:backup:prod"})),
            "admin",
            true,
        ),
        ("DELETE", "/api/v1/repositories/local".into(), None, "admin", true),
        ("GET", "/api/v1/approvals".into(), None, "read|approve", false),
        (
            "POST",
            "/api/v1/approvals/apr_000000000000/approve".into(),
            None,
            "approve",
            false,
        ),
        (
            "POST",
            "/api/v1/approvals/apr_000000000000/deny".into(),
            None,
            "approve",
            false,
        ),
        ("GET", "/api/v1/audit".into(), None, "read", false),
        ("GET", "/api/v1/tokens".into(), None, "admin", true),
        (
            "POST",
            "/api/v1/tokens".into(),
            Some(json!({"name": "minted", "operations": ["read"]})),
            "admin",
            true,
        ),
        ("DELETE", "/api/v1/tokens/0000000000".into(), None, "admin", true),
    ];
    // Calls that do real work (a backup, a drill, a restore) run once, with the narrow token.
    let runs_work = |method: &str, path: &str| {
        method == "POST" && (path.contains("/backups") || path.ends_with("/runs") || path.contains("/restores"))
    };
    for (method, path, body, needs, production) in &table {
        let (status, reply) = api.call(method, path, None, body.clone()).await;
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{method} {path} without a token"
        );
        let (status, _) = api.call(method, path, Some("lbt_0000000000_00"), body.clone()).await;
        assert_eq!(status, 401, "{method} {path} with a made-up token");
        for (label, secret) in &tokens {
            // `admin` includes every operation but `approve`.
            let admin = label == "admin" || label == "staging";
            let allowed_op = needs.split('|').any(|n| n == label || (admin && n != "approve"));
            let allowed = allowed_op && !(label == "staging" && *production);
            if allowed && runs_work(method, path) && (label == "admin" || label == "staging") {
                continue;
            }
            let (status, reply) = api.call(method, path, Some(secret), body.clone()).await;
            if allowed {
                assert!(
                    ![401, 403].contains(&status),
                    "{method} {path} with `{label}` must be allowed, got {status}: {reply}"
                );
                let expected: &[u16] = match (*method, path.as_str()) {
                    (_, p) if p.contains("apr_000000000000") || p.ends_with("/0000000000") => &[404],
                    ("DELETE", _) | ("POST", "/api/v1/disable") => &[202],
                    ("PUT", _) | ("POST", "/api/v1/prune") => &[200, 202],
                    ("POST", "/api/v1/restores")
                        if path.contains("restores") && body.as_ref().unwrap()["target"]["source"].is_string() =>
                    {
                        &[202]
                    }
                    ("POST", "/api/v1/tokens") => &[201],
                    _ => &[200],
                };
                assert!(
                    expected.contains(&status),
                    "{method} {path} with `{label}`: {status} {reply}"
                );
            } else {
                assert_eq!(
                    (status, reply["error"]["code"].as_str()),
                    (403, Some("forbidden")),
                    "{method} {path} with `{label}` must be refused: {reply}"
                );
            }
        }
    }
    // Unknown routes and oversized bodies answer in the same JSON shape.
    let admin = &tokens.iter().find(|(l, _)| l == "admin").unwrap().1;
    let (status, reply) = api.call("GET", "/api/v1/nothing", Some(admin), None).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (404, Some("not_found")));
    let big = json!({"source": "x".repeat(100 * 1024)});
    let (status, reply) = api.call("POST", "/api/v1/backups", Some(admin), Some(big)).await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{reply}"
    );
    let (status, doc) = api.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    for (method, path, ..) in &table {
        let template = path
            .replace(&prod_snapshot, "{id}")
            .replace("apr_000000000000", "{id}")
            .replace("/0000000000", "/{id}")
            .replace("/stage-check/", "/{name}/")
            .replace("/prod/retention", "/{name}/retention")
            .replace("/repositories/local", "/repositories/{name}");
        assert!(
            doc["paths"][&template][method.to_lowercase()].is_object(),
            "openapi.json lacks {method} {template}"
        );
    }
    drop(daemon);
    pg.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_tokens_and_expired_or_denied_requests_never_act() {
    let (pg, ws) = setup("control:\n  approval_ttl: 2s\n  approvals:\n    production: 2\n").await;
    let prod_snapshot = snapshot_of(&ws, "prod");
    let short = token(&ws, "short", "read", "*", "*", &["--expires", "1s"]);
    let alice = token(&ws, "alice", "approve", "*", "*", &[]);
    let bob = token(&ws, "bob", "approve", "*", "*", &[]);
    let revoked = token(&ws, "gone", "read", "*", "*", &[]);
    let revoked_id = revoked.split('_').nth(1).unwrap().to_string();
    cli_json(&ws, &["token", "revoke", &revoked_id], Some(&ws.admin_token()));
    let objects_before = repo_objects(&ws);

    std::thread::sleep(Duration::from_millis(1_100));
    let o = ws.run(&["snapshots"], &[("LIFEBOAT_TOKEN", short.as_str())]);
    assert_eq!(o.status.code(), Some(6), "{}", all_output(&o));
    assert!(all_output(&o).contains("has expired"), "{}", all_output(&o));
    let o = ws.run(&["snapshots"], &[("LIFEBOAT_TOKEN", revoked.as_str())]);
    assert_eq!(o.status.code(), Some(6));
    assert!(all_output(&o).contains("was revoked"), "{}", all_output(&o));

    // Production needs two approvers; one is not enough, and an expired request never runs.
    let o = ws.run(&["--json", "delete", &prod_snapshot], &[]);
    assert_eq!(o.status.code(), Some(3), "{}", all_output(&o));
    let first: Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = first["approval"]["id"].as_str().unwrap().to_string();
    assert_eq!(first["approval"]["required_approvals"], 2);
    let after_one = cli_json(&ws, &["approve", &id], Some(&alice));
    assert_eq!(after_one["state"], "pending", "{after_one}");
    let o = ws.run(&["approve", &id], &[("LIFEBOAT_TOKEN", alice.as_str())]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "one principal counts once: {}",
        all_output(&o)
    );
    std::thread::sleep(Duration::from_millis(2_100));
    let o = ws.run(&["approve", &id], &[("LIFEBOAT_TOKEN", bob.as_str())]);
    assert_eq!(o.status.code(), Some(3), "{}", all_output(&o));
    assert!(all_output(&o).contains("expired"), "{}", all_output(&o));
    let expired = cli_json(&ws, &["approvals", "--state", "expired"], None);
    assert_eq!(expired[0]["id"], id.as_str());

    // A denied request never runs either.
    let o = ws.run(&["--json", "delete", &prod_snapshot], &[]);
    let second: Value = serde_json::from_slice(&o.stdout).unwrap();
    let id2 = second["approval"]["id"].as_str().unwrap().to_string();
    assert_ne!(id2, id);
    let denied = cli_json(
        &ws,
        &["deny", &id2, "--reason", "not during the incident"],
        Some(&alice),
    );
    assert_eq!(denied["state"], "denied");
    let o = ws.run(&["approve", &id2], &[("LIFEBOAT_TOKEN", bob.as_str())]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(repo_objects(&ws), objects_before, "nothing was deleted");
    pg.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approved_restore_over_existing_data_replaces_it_with_the_backup() {
    let (pg, ws) = setup("").await;
    let snapshot = snapshot_of(&ws, "stage");
    let want = engine(&pg, "stage").content_checksums().await.unwrap();
    pg.create_database("occupied").await.unwrap();
    pg.psql(
        "occupied",
        "create table vehicles (id int); insert into vehicles values (1); create table keepme (x int);",
    )
    .await
    .unwrap();
    let o = ws.run(
        &["--json", "restore", &snapshot, "--into-dsn", &pg.dsn("occupied")],
        &[],
    );
    assert_eq!(o.status.code(), Some(3), "{}", all_output(&o));
    let pending: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        pending["approval"]["summary"]
            .as_str()
            .unwrap()
            .contains("is not empty"),
        "{pending}"
    );
    assert_eq!(
        pg.psql("occupied", "select count(*) from vehicles").await.unwrap(),
        "1",
        "untouched until approved"
    );

    // A password from an environment variable would be read by the approver's process.
    let o = ws.run(
        &[
            "restore",
            &snapshot,
            "--into-dsn",
            &pg.dsn("occupied"),
            "--password-env",
            "AWS_SECRET_ACCESS_KEY",
        ],
        &[("AWS_SECRET_ACCESS_KEY", "requesters-own-value")],
    );
    assert_eq!(o.status.code(), Some(2), "{}", all_output(&o));
    assert!(
        all_output(&o).contains("cannot take its password from `AWS_SECRET_ACCESS_KEY`")
            && all_output(&o).contains("fix:"),
        "{}",
        all_output(&o)
    );

    let done = ws.approve(pending["approval"]["id"].as_str().unwrap(), &[]);
    assert!(
        done["outcome"]
            .as_str()
            .unwrap()
            .contains("row counts equal the backup's"),
        "{done}"
    );
    let got: BTreeMap<String, String> = engine(&pg, "occupied")
        .content_checksums()
        .await
        .unwrap()
        .into_iter()
        .collect();
    for (table, sum) in &want {
        assert_eq!(got.get(table), Some(sum), "{table} equals the backup's");
    }
    assert_eq!(
        pg.psql("occupied", "select count(*) from keepme").await.unwrap(),
        "0",
        "what the backup does not hold stays"
    );
    pg.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn with_control_tls_the_api_is_served_over_https_only() {
    let pg = cluster().await;
    pg.create_database("stage").await.unwrap();
    let ws = Workspace::new();
    let (cert, key) = (ws.path().join("cert.pem"), ws.path().join("key.pem"));
    // A throwaway CA and a server certificate it signs for 127.0.0.1.
    let dir = ws.path();
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    for args in [
        [
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "1",
                "-subj",
                "/CN=test-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        ]
        .concat(),
        [
            &["req"][..],
            &ec,
            &["-subj", "/CN=127.0.0.1", "-keyout", "key.pem", "-out", "leaf.csr"],
        ]
        .concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ],
    ] {
        let o = std::process::Command::new("openssl")
            .args(&args)
            .current_dir(dir)
            .output()
            .expect("run openssl (install it to run this test)");
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    ws.write_simple_config(
        &pg.dsn("stage"),
        &format!(
            "daemon:\n  listen: 127.0.0.1:0\ncontrol:\n  tls:\n    cert_file: {}\n    key_file: {}\n",
            cert.display(),
            key.display()
        ),
    );
    std::fs::create_dir_all(ws.path().join("drills")).unwrap();
    let admin = ws.admin_token();
    let daemon = Daemon::start(&ws, "daemon", &[]);
    let root = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    let https = reqwest::Client::builder().add_root_certificate(root).build().unwrap();
    let r = https
        .get(format!("https://{}/api/v1/sources", daemon.addr))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("HTTPS call");
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["sources"][0]["name"], "rental");
    let plain = reqwest::Client::new()
        .get(format!("http://{}/api/v1/sources", daemon.addr))
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain HTTP must not be served"
    );
    drop(daemon);
    pg.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn no_one_approves_through_a_second_identity() {
    let (pg, ws) = setup("control:\n  approvals:\n    production: 2\n").await;
    let prod_snapshot = snapshot_of(&ws, "prod");
    let stage_snapshot = snapshot_of(&ws, "stage");
    let admin = ws.admin_token();
    let denied = |o: &std::process::Output, needle: &str| {
        let text = all_output(o);
        assert_eq!(o.status.code(), Some(6), "{text}");
        assert!(text.contains(needle), "{text}");
    };

    // An admin without `approve` cannot mint a token that has it.
    let second_admin = token(&ws, "second-admin", "admin", "*", "*", &[]);
    let o = ws.run(
        &["token", "create", "--name", "helper", "--ops", "approve"],
        &[("LIFEBOAT_TOKEN", second_admin.as_str())],
    );
    denied(&o, "lacks `approve`");
    // One active token per name: `token:bob` is bob.
    token(&ws, "bob", "read", "*", "*", &[]);
    let o = ws.run(
        &["token", "create", "--name", "bob", "--ops", "approve"],
        &[("LIFEBOAT_TOKEN", admin.as_str())],
    );
    assert_eq!(o.status.code(), Some(3), "{}", all_output(&o));

    // The person at the shell (`local:USER`) holding a token named USER is one person.
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap()
        .name;
    let mine = token(&ws, &user, "approve", "*", "*", &[]);
    let o = ws.run(&["--json", "delete", &prod_snapshot], &[]);
    assert_eq!(o.status.code(), Some(3), "{}", all_output(&o));
    let id = serde_json::from_slice::<Value>(&o.stdout).unwrap()["approval"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = ws.run(&["approve", &id], &[("LIFEBOAT_TOKEN", mine.as_str())]);
    denied(&o, "cannot decide about it");

    // Whoever created the requester's token is its hand too.
    let bot = token(&ws, "bot", "delete", "*", "*", &[]);
    let o = ws.run(
        &["--json", "delete", &stage_snapshot],
        &[("LIFEBOAT_TOKEN", bot.as_str())],
    );
    assert_eq!(o.status.code(), Some(3), "{}", all_output(&o));
    let id = serde_json::from_slice::<Value>(&o.stdout).unwrap()["approval"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = ws.run(&["approve", &id], &[("LIFEBOAT_TOKEN", admin.as_str())]);
    denied(&o, "cannot decide about it");

    // A staging snapshot restored over production's database is a production request: it needs
    // production's two approvals and approvers who reach production.
    let o = ws.run(
        &["--json", "restore", &stage_snapshot, "--into-dsn", &pg.dsn("prod")],
        &[],
    );
    assert_eq!(o.status.code(), Some(3), "{}", all_output(&o));
    let request: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        request["approval"]["environments"],
        json!(["production", "staging"]),
        "{request}"
    );
    assert_eq!(request["approval"]["required_approvals"], 2);
    assert!(
        request["approval"]["summary"]
            .as_str()
            .unwrap()
            .contains("source `prod` itself"),
        "{request}"
    );
    let staging_approver = token(&ws, "carol", "approve", "staging", "*", &[]);
    let o = ws.run(
        &["approve", request["approval"]["id"].as_str().unwrap()],
        &[("LIFEBOAT_TOKEN", staging_approver.as_str())],
    );
    denied(&o, "environment `production`");

    // A scoped token cannot use the CLI's listings, which show every source.
    let o = ws.run(&["snapshots"], &[("LIFEBOAT_TOKEN", staging_approver.as_str())]);
    assert_eq!(o.status.code(), Some(6), "{}", all_output(&o));
    pg.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn lowering_retention_in_the_config_file_waits_for_approval_too() {
    let pg = cluster().await;
    pg.create_database("stage").await.unwrap();
    load_rental(&pg, "stage", 1).await;
    let ws = Workspace::new();
    let config = |keep: u32| {
        ws.write_simple_config(
            &pg.dsn("stage"),
            &format!("    retention:\n      keep_last: {keep}\n      grace: 0s\n"),
        )
    };
    config(3);
    let o = ws.run(&["init"], &[]);
    assert!(o.status.success(), "{}", all_output(&o));
    for _ in 0..3 {
        let o = ws.run(&["-q", "backup", "rental"], &[]);
        assert!(o.status.success(), "{}", all_output(&o));
    }
    let report = cli_json(&ws, &["prune", "rental"], None);
    assert_eq!(report["policy"], "keep_last 3");

    // Someone edits the file to keep one: the three stay, and a request says what was asked.
    config(1);
    let o = ws.run(&["--json", "-q", "prune", "rental"], &[]);
    assert!(o.status.success(), "{}", all_output(&o));
    assert!(all_output(&o).contains("waits for approval"), "{}", all_output(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["policy"], "keep_last 3", "{report}");
    assert_eq!(report["snapshots_forgotten"], 0);
    let pending = cli_json(&ws, &["approvals", "--state", "pending"], None);
    let request = &pending[0];
    assert_eq!(request["action"]["kind"], "lower_retention", "{pending}");
    assert!(
        request["requester"].as_str().unwrap().starts_with("config:"),
        "{request}"
    );
    assert!(
        request["summary"].as_str().unwrap().contains("keep_last 3 -> 1"),
        "{request}"
    );

    // Approved, the file's policy is in force.
    ws.approve(request["id"].as_str().unwrap(), &[]);
    let report = cli_json(&ws, &["prune", "rental"], None);
    assert_eq!(report["policy"], "keep_last 1", "{report}");
    assert_eq!(report["snapshots_forgotten"], 2);
    // Raising it again needs no one.
    config(5);
    let report = cli_json(&ws, &["prune", "rental"], None);
    assert_eq!(report["policy"], "keep_last 5", "{report}");
    pg.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_repository_takes_no_more_writes_until_it_is_enabled_again() {
    let (pg, ws) = setup("").await;
    let snapshot = snapshot_of(&ws, "stage");
    let o = ws.run(&["--json", "disable", "repository:local"], &[]);
    assert_eq!(o.status.code(), Some(3), "{}", all_output(&o));
    let request: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(request["approval"]["action"]["kind"], "remove_repository", "{request}");
    ws.approve(request["approval"]["id"].as_str().unwrap(), &[]);

    let before = repo_objects(&ws);
    for args in [vec!["backup", "stage"], vec!["drill", "run", "stage-check"]] {
        let o = ws.run(&args, &[]);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", all_output(&o));
        assert!(
            all_output(&o).contains("repository local was removed"),
            "{}",
            all_output(&o)
        );
    }
    assert_eq!(repo_objects(&ws), before, "nothing written to it");
    // Its data is untouched and still restores: that is recovery, not use.
    pg.create_database("back").await.unwrap();
    let o = ws.run(&["-q", "restore", &snapshot, "--into-dsn", &pg.dsn("back")], &[]);
    assert!(o.status.success(), "{}", all_output(&o));

    let admin = ws.admin_token();
    let o = ws.run(&["enable", "repository:local"], &[("LIFEBOAT_TOKEN", admin.as_str())]);
    assert!(o.status.success(), "{}", all_output(&o));
    let o = ws.run(&["-q", "backup", "stage"], &[]);
    assert!(o.status.success(), "{}", all_output(&o));
    pg.stop().await.unwrap();
}
