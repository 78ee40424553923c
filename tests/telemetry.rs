//! The daemon's HTTP face, over real HTTP on loopback: what Prometheus scrapes from /metrics, what a
//! probe reads from /healthz, and that the shipped Grafana dashboard and Prometheus rules query only
//! metrics the daemon exports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use jiff::{SignedDuration, Timestamp};
use lifeboat::http::{self, Health, HttpState, ServeError, Server};
use lifeboat::telemetry::{self, METRICS, Metrics};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A daemon's HTTP server on 127.0.0.1:0, stopped by `stop`.
struct Running {
    addr: SocketAddr,
    metrics: Metrics,
    health: Health,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Running {
    async fn start() -> Running {
        Self::start_with(Router::new(), http::DEFAULT_DRAIN_TIMEOUT).await
    }

    async fn start_with(extra: Router, drain: Duration) -> Running {
        let state = HttpState::default();
        let (metrics, health) = (state.metrics.clone(), state.health.clone());
        let server = Server::bind("127.0.0.1:0".parse().unwrap())
            .await
            .expect("bind loopback");
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0, "local_addr must report the port the system chose");
        let (stop, stopped) = oneshot::channel::<()>();
        let router = http::router(state).merge(extra);
        let task = tokio::spawn(server.drain_timeout(drain).run(router, async {
            let _ = stopped.await;
        }));
        Running {
            addr,
            metrics,
            health,
            stop,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn scrape(&self) -> Scrape {
        let response = reqwest::get(self.url("/metrics")).await.expect("GET /metrics");
        assert_eq!(response.status(), 200);
        Scrape::parse(&response.text().await.unwrap())
    }

    /// Asks for shutdown and returns what `run` returned; fails if it takes longer than `limit`.
    async fn shut_down(self, limit: Duration) -> Result<(), ServeError> {
        self.stop.send(()).unwrap();
        tokio::time::timeout(limit, self.task)
            .await
            .expect("the server must return soon after shutdown is asked for")
            .expect("the server task panicked")
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed OpenMetrics text exposition.
#[derive(Debug)]
struct Scrape {
    samples: Vec<Sample>,
    text: String,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        assert!(
            text.ends_with("# EOF\n"),
            "an OpenMetrics exposition ends with # EOF:\n{text}"
        );
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(parse_sample)
            .collect();
        Scrape {
            samples,
            text: text.to_owned(),
        }
    }

    /// The value of the one sample named `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let matching: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert_eq!(matching.len(), 1, "expected one {name}{labels:?} in:\n{}", self.text);
        matching[0].value
    }

    fn names(&self) -> BTreeSet<String> {
        self.samples.iter().map(|s| s.name.clone()).collect()
    }
}

/// `name{k="v",…} value`, with `\\`, `\"` and `\n` escapes in label values.
fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value in {line:?}"));
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars
                .next()
                .unwrap_or_else(|| panic!("unterminated labels in {line:?}"));
            match c {
                '}' => {
                    rest = &body[i + 1..];
                    break;
                }
                ',' => {}
                '=' => {
                    assert_eq!(
                        chars.next().map(|(_, c)| c),
                        Some('"'),
                        "label value must be quoted: {line:?}"
                    );
                    let mut value = String::new();
                    loop {
                        match chars
                            .next()
                            .unwrap_or_else(|| panic!("unterminated value in {line:?}"))
                            .1
                        {
                            '"' => break,
                            '\\' => match chars.next().unwrap().1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        }
    }
    let value = rest.trim().split(' ').next().unwrap();
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|e| panic!("bad value {v:?} in {line:?}: {e}")),
    };
    Sample { name, labels, value }
}

fn ago(seconds: i64) -> Timestamp {
    Timestamp::now()
        .checked_sub(SignedDuration::from_secs(seconds))
        .unwrap()
}

/// One of every event the daemon reports.
fn record_every_event(metrics: &Metrics) -> Timestamp {
    let finished: Timestamp = "2026-11-23T10:14:00Z".parse().unwrap();
    let secs = Duration::from_secs;
    metrics.backup_succeeded("orders", finished, 5_000, 1_200);
    metrics.backup_succeeded("orders", finished, 3_000, 800);
    metrics.backup_failed("billing");
    metrics.restorable_point("orders", ago(3600));
    metrics.sla_targets("orders", secs(1800), secs(4 * 3600));
    metrics.drill_sla_rto("orders-nightly", secs(900));
    metrics.drill_finished(
        "orders-nightly",
        "sla-breach",
        &[("provision", secs(3)), ("restore", secs(600)), ("checks", secs(45))],
        Some(secs(1000)),
    );
    metrics.job_finished("backup", "orders", secs(90), true);
    metrics.job_finished("backup", "billing", secs(4000), false);
    metrics.job_missed("verify", "orders");
    metrics.fate_findings(2, 1, 0);
    metrics.approvals_pending(&[("delete_snapshot", 1), ("prune", 2)]);
    metrics.alert_delivery("ops-slack", true);
    metrics.alert_delivery("pagerduty", false);
    finished
}

#[tokio::test]
async fn metrics_are_served_as_openmetrics_with_every_event_recorded() {
    let server = Running::start().await;
    let finished = record_every_event(&server.metrics);

    let response = reqwest::get(server.url("/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], telemetry::CONTENT_TYPE);
    let scrape = Scrape::parse(&response.text().await.unwrap());

    // Every documented metric is in the scrape under the documented name.
    let names = scrape.names();
    for def in METRICS {
        for sample in def.sample_names() {
            assert!(
                names.contains(&sample),
                "{sample} ({:?}) is missing from:\n{}",
                def.kind,
                scrape.text
            );
        }
    }
    // …and nothing undocumented is.
    let documented: BTreeSet<String> = METRICS.iter().flat_map(|d| d.sample_names()).collect();
    assert_eq!(names, documented);

    let v = |name: &str, labels: &[(&str, &str)]| scrape.value(name, labels);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(v("lifeboat_build_info", &[("version", version)]), 1.0);
    let last_success = v(
        "lifeboat_last_backup_success_timestamp_seconds",
        &[("source", "orders")],
    );
    assert_eq!(last_success, finished.as_second() as f64);
    assert_eq!(
        v("lifeboat_backup_bytes_total", &[("source", "orders"), ("kind", "read")]),
        8_000.0
    );
    assert_eq!(
        v(
            "lifeboat_backup_bytes_total",
            &[("source", "orders"), ("kind", "stored")]
        ),
        2_000.0
    );
    assert_eq!(v("lifeboat_backup_failures_total", &[("source", "billing")]), 1.0);
    assert_eq!(v("lifeboat_backup_failures_total", &[("source", "orders")]), 0.0);
    assert_eq!(v("lifeboat_sla_rto_seconds", &[("source", "orders")]), 1800.0);
    assert_eq!(v("lifeboat_sla_rpo_seconds", &[("source", "orders")]), 14400.0);
    assert_eq!(
        v("lifeboat_drill_sla_rto_seconds", &[("drill", "orders-nightly")]),
        900.0
    );
    for (phase, seconds) in [
        ("provision", 3.0),
        ("restore", 600.0),
        ("checks", 45.0),
        ("total", 1000.0),
    ] {
        assert_eq!(
            v(
                "lifeboat_drill_rto_seconds",
                &[("drill", "orders-nightly"), ("phase", phase)]
            ),
            seconds
        );
    }
    for (verdict, value) in [("pass", 0.0), ("fail", 0.0), ("sla-breach", 1.0), ("error", 0.0)] {
        assert_eq!(
            v(
                "lifeboat_drill_verdict",
                &[("drill", "orders-nightly"), ("verdict", verdict)]
            ),
            value
        );
    }
    let last_run = v(
        "lifeboat_drill_last_run_timestamp_seconds",
        &[("drill", "orders-nightly")],
    );
    assert!(
        (Timestamp::now().as_second() as f64 - last_run).abs() < 60.0,
        "{last_run}"
    );

    // 90 s and 4000 s backups: bucket counts are cumulative.
    let backup = |le: &str| {
        v(
            "lifeboat_job_duration_seconds_bucket",
            &[("kind", "backup"), ("le", le)],
        )
    };
    assert_eq!(
        (backup("60.0"), backup("120.0"), backup("3600.0"), backup("7200.0")),
        (0.0, 1.0, 1.0, 2.0)
    );
    assert_eq!(backup("+Inf"), 2.0);
    assert_eq!(v("lifeboat_job_duration_seconds_count", &[("kind", "backup")]), 2.0);
    assert_eq!(v("lifeboat_job_duration_seconds_sum", &[("kind", "backup")]), 4090.0);
    assert_eq!(
        v(
            "lifeboat_job_failures_total",
            &[("kind", "backup"), ("target", "billing")]
        ),
        1.0
    );
    assert_eq!(
        v(
            "lifeboat_job_failures_total",
            &[("kind", "backup"), ("target", "orders")]
        ),
        0.0
    );
    assert_eq!(
        v(
            "lifeboat_jobs_missed_total",
            &[("kind", "verify"), ("target", "orders")]
        ),
        1.0
    );
    assert_eq!(v("lifeboat_fate_findings", &[("severity", "critical")]), 2.0);
    assert_eq!(v("lifeboat_fate_findings", &[("severity", "warning")]), 1.0);
    assert_eq!(v("lifeboat_fate_findings", &[("severity", "info")]), 0.0);
    assert_eq!(v("lifeboat_approvals_pending", &[("kind", "delete_snapshot")]), 1.0);
    assert_eq!(v("lifeboat_approvals_pending", &[("kind", "prune")]), 2.0);
    assert_eq!(v("lifeboat_approvals_pending", &[("kind", "restore_over")]), 0.0);
    assert_eq!(
        v(
            "lifeboat_alert_deliveries_total",
            &[("sink", "ops-slack"), ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(
        v(
            "lifeboat_alert_deliveries_total",
            &[("sink", "pagerduty"), ("outcome", "failed")]
        ),
        1.0
    );
    assert_eq!(
        v(
            "lifeboat_alert_deliveries_total",
            &[("sink", "pagerduty"), ("outcome", "ok")]
        ),
        0.0
    );

    server.shut_down(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn rpo_is_the_age_of_the_newest_restorable_point_and_grows_between_scrapes() {
    let server = Running::start().await;
    server.metrics.restorable_point("orders", ago(3600));

    let first = server
        .scrape()
        .await
        .value("lifeboat_rpo_seconds", &[("source", "orders")]);
    assert!((3600.0..3605.0).contains(&first), "RPO of a point 3600 s ago: {first}");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = server
        .scrape()
        .await
        .value("lifeboat_rpo_seconds", &[("source", "orders")]);
    assert!(
        second - first >= 1.1,
        "RPO must grow with time, not stay at its last value: {first} → {second}"
    );
    assert!(second - first < 5.0, "{first} → {second}");

    // A new backup brings it down again.
    server.metrics.restorable_point("orders", ago(60));
    let third = server
        .scrape()
        .await
        .value("lifeboat_rpo_seconds", &[("source", "orders")]);
    assert!((60.0..65.0).contains(&third), "{third}");

    server.shut_down(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn odd_source_names_survive_a_scrape() {
    let server = Running::start().await;
    let odd = ["quote\" back\\slash", "new\nline", "ünïcode 🚣", "a,b=c}{"];
    for (i, source) in odd.iter().enumerate() {
        server
            .metrics
            .sla_targets(source, Duration::from_secs(i as u64 + 1), Duration::from_secs(60));
    }
    let scrape = server.scrape().await;
    for (i, source) in odd.iter().enumerate() {
        assert_eq!(
            scrape.value("lifeboat_sla_rto_seconds", &[("source", source)]),
            i as f64 + 1.0
        );
    }
    server.shut_down(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn healthz_is_200_when_checks_pass_and_503_while_one_fails() {
    let server = Running::start().await;
    let client = reqwest::Client::new();
    let get = async || {
        let response = client.get(server.url("/healthz")).send().await.unwrap();
        let status = response.status().as_u16();
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        (status, response.json::<serde_json::Value>().await.unwrap())
    };

    server.health.ok("catalog");
    server.health.beat("scheduler", Duration::from_secs(60));
    let (status, body) = get().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(body["checks"][0]["name"], "catalog");
    assert_eq!(body["checks"][1]["name"], "scheduler");
    assert!(body["checks"][1]["age_seconds"].as_f64().unwrap() < 60.0);

    server.health.failing(
        "catalog",
        "cannot reach the catalog at postgres://catalog-db/lifeboat; is it up?",
    );
    let (status, body) = get().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"][0]["status"], "failing");
    assert!(
        body["checks"][0]["message"]
            .as_str()
            .unwrap()
            .contains("cannot reach the catalog")
    );
    assert_eq!(body["checks"][1]["status"], "ok");

    server.health.ok("catalog");
    let (status, body) = get().await;
    assert_eq!(status, 200, "{body}");
    assert!(body["checks"][0].get("message").is_none(), "{body}");

    // A scheduler that stops ticking fails on its own.
    server.health.beat("scheduler", Duration::from_millis(200));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, body) = get().await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["checks"][1]["message"]
            .as_str()
            .unwrap()
            .starts_with("no heartbeat for"),
        "{body}"
    );

    server.shut_down(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn the_router_takes_more_routes_with_their_own_state() {
    #[derive(Clone)]
    struct ApiState(&'static str);
    let api = Router::new()
        .route(
            "/api/v1/ping",
            get(|axum::extract::State(s): axum::extract::State<ApiState>| async move { s.0 }),
        )
        .with_state(ApiState("pong"));
    let server = Running::start_with(api, http::DEFAULT_DRAIN_TIMEOUT).await;

    let pong = reqwest::get(server.url("/api/v1/ping"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(pong, "pong");
    assert_eq!(reqwest::get(server.url("/healthz")).await.unwrap().status(), 200);
    assert_eq!(reqwest::get(server.url("/nowhere")).await.unwrap().status(), 404);
    server.shut_down(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_taken_address_is_reported_with_what_to_do() {
    let holder = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let taken = holder.local_addr().unwrap();

    let error = Server::bind(taken)
        .await
        .expect_err("binding a taken address must fail");
    assert!(matches!(error, ServeError::AddressInUse { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "{taken} is already in use: another lifeboat daemon? set daemon.listen"
        )),
        "{message}"
    );

    let error = http::serve(taken, Router::new(), std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(error, ServeError::AddressInUse { .. }), "{error:?}");
}

#[tokio::test]
async fn graceful_shutdown_returns_and_frees_the_address() {
    let server = Running::start().await;
    let addr = server.addr;
    // A kept-alive connection from an earlier scrape must not hold the shutdown up.
    let client = reqwest::Client::new();
    assert_eq!(client.get(server.url("/metrics")).send().await.unwrap().status(), 200);

    server
        .shut_down(Duration::from_secs(5))
        .await
        .expect("a graceful shutdown is not an error");
    assert!(
        reqwest::get(format!("http://{addr}/healthz")).await.is_err(),
        "the server still answers"
    );
    Server::bind(addr)
        .await
        .expect("the address is free again after shutdown");
}

#[tokio::test]
async fn shutdown_gives_up_on_a_stalled_client_after_the_drain_timeout() {
    let server = Running::start_with(Router::new(), Duration::from_millis(300)).await;
    // A client that sends half a request and then goes quiet.
    let mut stalled = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stalled
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: lifeboat\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = std::time::Instant::now();
    server.shut_down(Duration::from_secs(5)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        started.elapsed()
    );
    drop(stalled);
}

/// `lifeboat_*` metric names in a PromQL expression. A name that ends in `_` is the prefix of a
/// regular expression (`{__name__=~"lifeboat_.+"}`), not a metric.
fn metric_names_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("lifeboat_") {
        let preceded_by_ident = rest[..start]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        if !preceded_by_ident && !name.ends_with('_') {
            names.push(name.to_owned());
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn metric_names_are_found_in_promql() {
    let expr = r#"histogram_quantile(0.95, sum by (le) (rate(lifeboat_job_duration_seconds_bucket[5m]))) / on (source) lifeboat:rpo_sla_ratio + label_values({__name__=~"lifeboat_.+"}, source) + x_lifeboat_y"#;
    assert_eq!(metric_names_in(expr), vec!["lifeboat_job_duration_seconds_bucket"]);
}

/// Sample names a scrape holds after one of every event.
async fn exported_names() -> BTreeSet<String> {
    let server = Running::start().await;
    record_every_event(&server.metrics);
    let names = server.scrape().await.names();
    server.shut_down(Duration::from_secs(5)).await.unwrap();
    names
}

fn repo_file(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn collect_panels<'a>(panels: &'a [serde_json::Value], into: &mut Vec<&'a serde_json::Value>) {
    for panel in panels {
        into.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            collect_panels(nested, into);
        }
    }
}

#[tokio::test]
async fn the_grafana_dashboard_queries_only_exported_metrics() {
    let exported = exported_names().await;
    let dashboard: serde_json::Value =
        serde_json::from_str(&repo_file("dashboards/lifeboat.json")).expect("the dashboard is JSON");

    let variables = dashboard["templating"]["list"].as_array().expect("templating.list");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name}"))
    };
    assert_eq!(variable("DS_PROMETHEUS")["type"], "datasource");
    assert_eq!(variable("DS_PROMETHEUS")["query"], "prometheus");
    assert_eq!(variable("source")["type"], "query");

    let mut panels = Vec::new();
    collect_panels(dashboard["panels"].as_array().expect("panels"), &mut panels);
    let mut titles = Vec::new();
    let mut queried = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().expect("every panel has a title");
        titles.push(title);
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "panel id of {title} is not unique"
        );
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "{title} must use the data source variable"
        );
        let targets = panel["targets"]
            .as_array()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| panic!("{title}: no queries"));
        for target in targets {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: a target without expr"));
            let names = metric_names_in(expr);
            assert!(!names.is_empty(), "{title}: {expr} queries no lifeboat metric");
            for name in names {
                assert!(
                    exported.contains(&name),
                    "{title}: {expr} queries {name}, which /metrics does not export"
                );
                queried.insert(name);
            }
        }
    }
    for variable in variables.iter().filter(|v| v["type"] == "query") {
        let query = variable["definition"].as_str().unwrap();
        for name in metric_names_in(query) {
            assert!(
                exported.contains(&name),
                "variable {}: {query} queries unexported {name}",
                variable["name"]
            );
        }
    }

    for wanted in [
        "RPO per source vs SLA RPO",
        "Last drill RTO vs SLA RTO",
        "Drill verdicts",
        "Time since last successful backup",
        "Job failures and missed runs per hour",
        "Job duration p95 (24 h window)",
        "Fate findings by severity",
        "Alert delivery failures per hour",
        "Approval requests waiting",
    ] {
        assert!(
            titles.contains(&wanted),
            "the dashboard lacks the panel {wanted:?}; it has {titles:?}"
        );
    }
    for needed in [
        "lifeboat_rpo_seconds",
        "lifeboat_sla_rpo_seconds",
        "lifeboat_drill_rto_seconds",
    ] {
        assert!(queried.contains(needed), "no panel shows {needed}");
    }
}

#[tokio::test]
async fn the_prometheus_rules_reference_only_exported_metrics() {
    let exported = exported_names().await;
    let rules: serde_json::Value =
        serde_saphyr::from_str(&repo_file("deploy/prometheus/lifeboat-rules.yaml")).expect("the rules are YAML");

    let mut recorded = BTreeSet::new();
    let mut alerts = BTreeSet::new();
    for group in rules["groups"].as_array().expect("groups") {
        let group_name = group["name"].as_str().expect("every group has a name");
        for rule in group["rules"]
            .as_array()
            .unwrap_or_else(|| panic!("{group_name}: no rules"))
        {
            let expr = rule["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{group_name}: a rule without expr: {rule}"));
            for name in metric_names_in(expr) {
                assert!(
                    exported.contains(&name),
                    "{group_name}: {expr} references {name}, which is not exported"
                );
            }
            // Recording rules used by alerts must be defined in the file.
            for part in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
                if part.starts_with("lifeboat:") {
                    assert!(
                        recorded.contains(part),
                        "{expr} uses {part} before or without a rule recording it"
                    );
                }
            }
            match (rule["record"].as_str(), rule["alert"].as_str()) {
                (Some(record), None) => {
                    assert!(
                        record.starts_with("lifeboat:"),
                        "recorded name {record} must follow level:metric"
                    );
                    recorded.insert(record.to_owned());
                }
                (None, Some(alert)) => {
                    assert!(alerts.insert(alert.to_owned()), "alert {alert} is defined twice");
                    assert!(rule["labels"]["severity"].is_string(), "{alert}: no severity label");
                    assert!(rule["annotations"]["summary"].is_string(), "{alert}: no summary");
                    assert!(
                        rule["annotations"]["description"].is_string(),
                        "{alert}: no description"
                    );
                }
                _ => panic!("{group_name}: a rule must have exactly one of record and alert: {rule}"),
            }
        }
    }
    for wanted in [
        "LifeboatRpoAboveSla",
        "LifeboatNoRecentBackup",
        "LifeboatDrillNotPassing",
        "LifeboatFateCritical",
    ] {
        assert!(
            alerts.contains(wanted),
            "the rules lack the alert {wanted}; they have {alerts:?}"
        );
    }
}
