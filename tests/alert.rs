//! Alerting against real receivers on loopback: an axum HTTP server that records every request
//! (and can fail or hang on demand), and the aiosmtpd server of `scripts/smtp-server`.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use lifeboat::alert::{
    Alert, AlertError, AlertKind, Alerter, AlertsConfig, DeadManConfig, DeadManPing, EmailSink, PagerDutySink,
    RaiseOutcome, ResolveOutcome, RetryPolicy, RouteConfig, SendReason, Severity, SinkConfig, SlackSink, SmtpTls,
    WebhookSink,
};
use lifeboat::config::Secret;
use serde_json::Value;

// ---------------------------------------------------------------- the HTTP receiver

#[derive(Clone, Debug)]
struct Request {
    method: Method,
    path: String,
    body: String,
    at: Instant,
}

impl Request {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{} body is not JSON ({e}): {}", self.path, self.body))
    }
}

/// An HTTP server on 127.0.0.1 that records every request. It answers 200, or `fail_status` to
/// the first `fail_first` requests, or never (while `hang` is set).
#[derive(Clone, Default)]
struct Receiver {
    requests: Arc<Mutex<Vec<Request>>>,
    fail_first: Arc<AtomicUsize>,
    fail_status: Arc<AtomicU16>,
    hang: Arc<AtomicBool>,
    base: String,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut receiver = Receiver::default();
        receiver.fail_status.store(500, Ordering::SeqCst);
        receiver.base = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().fallback(record).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        receiver
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn fail_first(&self, n: usize, status: u16) {
        self.fail_status.store(status, Ordering::SeqCst);
        self.fail_first.store(n, Ordering::SeqCst);
    }

    fn all(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    fn at(&self, path: &str) -> Vec<Request> {
        self.all().into_iter().filter(|r| r.path == path).collect()
    }
}

async fn record(State(receiver): State<Receiver>, method: Method, uri: Uri, body: String) -> (StatusCode, String) {
    let path = uri.path().to_owned();
    receiver.requests.lock().unwrap().push(Request {
        method,
        path: path.clone(),
        body,
        at: Instant::now(),
    });
    if receiver.hang.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let failing = receiver
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        let status = StatusCode::from_u16(receiver.fail_status.load(Ordering::SeqCst)).unwrap();
        // Echoes the path, as some receivers do: the sender must keep it out of its logs.
        return (status, format!("no luck for {path}"));
    }
    (StatusCode::OK, "ok".to_owned())
}

// ---------------------------------------------------------------- helpers

fn secret(value: impl Into<String>) -> Secret {
    Secret::from(value.into())
}

fn webhook(url: String) -> SinkConfig {
    SinkConfig::Webhook(WebhookSink { url: secret(url) })
}

fn route(sinks: &[&str], min_severity: Severity, sources: &[&str]) -> RouteConfig {
    RouteConfig {
        sinks: sinks.iter().map(|s| s.to_string()).collect(),
        min_severity,
        sources: sources.iter().map(|s| s.to_string()).collect(),
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        attempt_timeout: Duration::from_secs(5),
    }
}

fn config(sinks: Vec<(&str, SinkConfig)>, routes: Vec<(&str, RouteConfig)>) -> AlertsConfig {
    AlertsConfig {
        sinks: sinks.into_iter().map(|(n, s)| (n.to_owned(), s)).collect(),
        routes: routes.into_iter().map(|(n, r)| (n.to_owned(), r)).collect(),
        reminder: Duration::from_secs(3600),
        retry: fast_retry(),
    }
}

/// One webhook sink `hook` at `/hook`, taking every alert.
fn one_hook(receiver: &Receiver) -> AlertsConfig {
    config(
        vec![("hook", webhook(receiver.url("/hook")))],
        vec![("all", route(&["hook"], Severity::Info, &[]))],
    )
}

/// Two routes: `everything` (info and up) to the `ops` webhook, `oncall` (critical) to `pager`.
fn ops_and_pager(receiver: &Receiver) -> AlertsConfig {
    config(
        vec![
            ("ops", webhook(receiver.url("/ops"))),
            ("pager", webhook(receiver.url("/pager"))),
        ],
        vec![
            ("everything", route(&["ops"], Severity::Info, &[])),
            ("oncall", route(&["pager"], Severity::Critical, &[])),
        ],
    )
}

fn state_file(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("alerts/state.json")
}

/// Waits until every sink's queue is empty: every raised message was delivered or given up on.
async fn settle(alerter: &Alerter) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while alerter.stats().iter().any(|s| s.queued > 0) {
        assert!(
            Instant::now() < deadline,
            "deliveries did not finish: {:?}",
            alerter.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn backup_failed(severity: Severity, source: &str, summary: &str) -> Alert {
    Alert::new(AlertKind::BackupFailed, severity, summary).with_source(source)
}

fn sinks(outcome: &RaiseOutcome) -> Vec<&str> {
    match outcome {
        RaiseOutcome::Sent { sinks, .. } => sinks.iter().map(String::as_str).collect(),
        RaiseOutcome::Unchanged => panic!("expected the alert to be sent, it was unchanged"),
    }
}

// ---------------------------------------------------------------- routing

#[tokio::test]
async fn alerts_take_routes_by_severity_source_and_explicit_name() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        vec![
            ("ops", webhook(receiver.url("/ops"))),
            ("pager", webhook(receiver.url("/pager"))),
            ("orders-team", webhook(receiver.url("/orders-team"))),
        ],
        vec![
            ("everything", route(&["ops"], Severity::Info, &[])),
            ("oncall", route(&["pager"], Severity::Critical, &[])),
            ("orders", route(&["orders-team"], Severity::Warning, &["orders*"])),
        ],
    );
    let alerter = Alerter::start(config, state_file(&dir)).unwrap();

    let warning = alerter.raise(backup_failed(Severity::Warning, "orders-eu", "slow"));
    assert_eq!(sinks(&warning), ["ops", "orders-team"]);
    let critical = alerter.raise(backup_failed(Severity::Critical, "billing", "failed"));
    assert_eq!(sinks(&critical), ["ops", "pager"]);
    let info = alerter.raise(Alert::new(AlertKind::RtoTrending, Severity::Info, "p95 at 85%").with_source("orders"));
    assert_eq!(sinks(&info), ["ops"]);
    // A drill naming its route: source globs do not apply, severity does.
    let drill = Alert::new(AlertKind::DrillFailed, Severity::Critical, "row counts differ")
        .with_source("billing")
        .with_drill("billing-nightly")
        .with_routes(["orders"]);
    assert_eq!(sinks(&alerter.raise(drill)), ["orders-team"]);
    let quiet = Alert::new(AlertKind::SlaBreached, Severity::Warning, "RTO 14m > 10m")
        .with_drill("orders-nightly")
        .with_routes(["oncall"]);
    assert_eq!(sinks(&alerter.raise(quiet)), Vec::<&str>::new());
    settle(&alerter).await;

    let keys = |path: &str| -> Vec<String> {
        let mut keys: Vec<String> = receiver
            .at(path)
            .iter()
            .map(|r| r.json()["key"].as_str().unwrap().to_owned())
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(
        keys("/ops"),
        [
            "backup_failed:billing",
            "backup_failed:orders-eu",
            "rto_trending:orders"
        ]
    );
    assert_eq!(keys("/pager"), ["backup_failed:billing"]);
    assert_eq!(
        keys("/orders-team"),
        ["backup_failed:orders-eu", "drill_failed:billing-nightly"]
    );
    assert_eq!(receiver.all().len(), 6);
}

#[tokio::test]
async fn a_route_switched_off_takes_no_alerts_until_it_is_switched_back_on() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = ops_and_pager(&receiver);
    let alerter = Alerter::start(config, state_file(&dir)).unwrap();
    alerter.set_disabled_routes(["oncall".to_string()]);
    let off = alerter.raise(backup_failed(Severity::Critical, "orders", "failed"));
    assert_eq!(sinks(&off), ["ops"]);
    // A drill naming the switched-off route: it goes nowhere, and is not reported as unknown.
    let drill = Alert::new(AlertKind::DrillFailed, Severity::Critical, "row counts differ")
        .with_drill("orders-nightly")
        .with_routes(["oncall"]);
    assert_eq!(sinks(&alerter.raise(drill)), Vec::<&str>::new());
    alerter.set_disabled_routes(Vec::new());
    let on = alerter.raise(backup_failed(Severity::Critical, "billing", "failed"));
    assert_eq!(sinks(&on), ["ops", "pager"]);
    settle(&alerter).await;
    assert_eq!(
        receiver.at("/pager").len(),
        1,
        "only the alert raised after switching it back on"
    );
}

// ---------------------------------------------------------------- de-duplication and resolve

#[tokio::test]
async fn an_open_alert_is_sent_again_only_when_it_changes_or_the_reminder_is_due() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = one_hook(&receiver);
    config.reminder = Duration::from_secs(1);
    let alerter = Alerter::start(config, state_file(&dir)).unwrap();
    let alert = || backup_failed(Severity::Warning, "orders", "pg_dump exited with 1");

    assert!(matches!(
        alerter.raise(alert()),
        RaiseOutcome::Sent {
            reason: SendReason::New,
            ..
        }
    ));
    assert_eq!(
        alerter.raise(alert().with_detail("attempt", 2)),
        RaiseOutcome::Unchanged
    );
    settle(&alerter).await;
    assert_eq!(receiver.all().len(), 1, "an unchanged alert was sent twice");

    let changed = alerter.raise(backup_failed(Severity::Critical, "orders", "pg_dump exited with 1"));
    assert!(matches!(
        changed,
        RaiseOutcome::Sent {
            reason: SendReason::Changed,
            ..
        }
    ));
    assert_eq!(
        alerter.raise(backup_failed(Severity::Critical, "orders", "pg_dump exited with 1")),
        RaiseOutcome::Unchanged
    );
    settle(&alerter).await;
    assert_eq!(receiver.all().len(), 2);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reminder = alerter.raise(backup_failed(Severity::Critical, "orders", "pg_dump exited with 1"));
    assert!(matches!(
        reminder,
        RaiseOutcome::Sent {
            reason: SendReason::Reminder,
            ..
        }
    ));
    settle(&alerter).await;

    let bodies: Vec<Value> = receiver.all().iter().map(Request::json).collect();
    assert_eq!(bodies.len(), 3);
    let field = |name: &str| bodies.iter().map(|b| b[name].clone()).collect::<Vec<_>>();
    assert_eq!(field("severity"), ["warning", "critical", "critical"]);
    assert_eq!(field("status"), ["firing", "firing", "firing"]);
    let first_seen = field("first_seen");
    assert!(
        first_seen.iter().all(|t| *t == first_seen[0]),
        "first_seen moved: {first_seen:?}"
    );
    let last_seen: Vec<jiff::Timestamp> = field("last_seen")
        .iter()
        .map(|t| t.as_str().unwrap().parse().unwrap())
        .collect();
    assert!(last_seen[2] > last_seen[0], "last_seen did not advance: {last_seen:?}");
}

#[tokio::test]
async fn resolve_is_sent_once_to_every_sink_the_alert_reached_and_only_for_open_alerts() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = ops_and_pager(&receiver);
    let alerter = Alerter::start(config, state_file(&dir)).unwrap();

    assert_eq!(alerter.resolve("backup_failed:orders"), ResolveOutcome::NotOpen);
    settle(&alerter).await;
    assert!(
        receiver.all().is_empty(),
        "resolving an unknown key sent {:?}",
        receiver.all()
    );

    // Escalates from warning (ops only) to critical (ops and the pager), then recovers at warning:
    // the pager still gets the resolve.
    alerter.raise(backup_failed(Severity::Warning, "orders", "slow"));
    alerter.raise(backup_failed(Severity::Critical, "orders", "failed"));
    alerter.raise(backup_failed(Severity::Warning, "orders", "slow"));
    let resolved = alerter.resolve("backup_failed:orders");
    assert_eq!(
        resolved,
        ResolveOutcome::Resolved {
            sinks: vec!["ops".into(), "pager".into()]
        }
    );
    assert_eq!(alerter.resolve("backup_failed:orders"), ResolveOutcome::NotOpen);
    settle(&alerter).await;

    let statuses = |path: &str| {
        receiver
            .at(path)
            .iter()
            .map(|r| r.json()["status"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(statuses("/ops"), ["firing", "firing", "firing", "resolved"]);
    assert_eq!(statuses("/pager"), ["firing", "resolved"]);
    let resolve = receiver.at("/pager").pop().unwrap().json();
    assert_eq!(resolve["key"], "backup_failed:orders");
    assert!(resolve["resolved_at"].is_string(), "{resolve}");
    assert!(alerter.open_alerts().is_empty());
}

#[tokio::test]
async fn open_alerts_survive_a_restart() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let first = Alerter::start(one_hook(&receiver), state_file(&dir)).unwrap();
    first.raise(backup_failed(Severity::Critical, "orders", "failed"));
    first.raise(backup_failed(Severity::Critical, "billing", "failed"));
    assert_eq!(first.shutdown(Duration::from_secs(10)).await.undelivered, 0);
    drop(first);
    assert_eq!(receiver.all().len(), 2);
    let saved: Value = serde_json::from_slice(&std::fs::read(state_file(&dir)).unwrap()).unwrap();
    assert!(saved["open"]["backup_failed:orders"].is_object(), "{saved}");

    let second = Alerter::start(one_hook(&receiver), state_file(&dir)).unwrap();
    let open: Vec<String> = second.open_alerts().into_iter().map(|a| a.key).collect();
    assert_eq!(open, ["backup_failed:billing", "backup_failed:orders"]);
    assert_eq!(
        second.raise(backup_failed(Severity::Critical, "orders", "failed")),
        RaiseOutcome::Unchanged
    );
    assert!(matches!(
        second.resolve("backup_failed:billing"),
        ResolveOutcome::Resolved { .. }
    ));
    settle(&second).await;

    let requests = receiver.all();
    assert_eq!(requests.len(), 3, "after the restart: no new page, one resolve");
    let resolve = requests[2].json();
    assert_eq!(
        (resolve["status"].as_str(), resolve["key"].as_str()),
        (Some("resolved"), Some("backup_failed:billing"))
    );
}

// ---------------------------------------------------------------- payloads

#[tokio::test]
async fn pagerduty_trigger_and_resolve_share_the_dedup_key() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut pagerduty = PagerDutySink::new(secret("R0UTINGKEY0123456789abcdef012345"));
    pagerduty.endpoint = receiver.url("/v2/enqueue");
    let config = config(
        vec![("pd", SinkConfig::PagerDuty(pagerduty))],
        vec![("oncall", route(&["pd"], Severity::Critical, &[]))],
    );
    let alerter = Alerter::start(config, state_file(&dir)).unwrap();
    let alert = Alert::new(
        AlertKind::RpoBreached,
        Severity::Critical,
        "newest backup is 26h old; RPO is 24h",
    )
    .with_source("orders")
    .with_detail("age_hours", 26);
    alerter.raise(alert);
    alerter.resolve(&AlertKind::RpoBreached.key("orders"));
    settle(&alerter).await;

    let requests = receiver.at("/v2/enqueue");
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.method == Method::POST));
    let (trigger, resolve) = (requests[0].json(), requests[1].json());
    assert_eq!(trigger["routing_key"], "R0UTINGKEY0123456789abcdef012345");
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], "rpo_breached:orders");
    let payload = &trigger["payload"];
    assert_eq!(
        payload["summary"],
        "rpo_breached orders: newest backup is 26h old; RPO is 24h"
    );
    assert_eq!(payload["source"], "orders");
    assert_eq!(payload["severity"], "critical");
    assert_eq!(payload["custom_details"]["age_hours"], 26);
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
    assert_eq!(resolve["routing_key"], trigger["routing_key"]);
}

#[tokio::test]
async fn slack_gets_a_readable_line() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        vec![(
            "chat",
            SinkConfig::Slack(SlackSink {
                webhook_url: secret(receiver.url("/services/T0/B0/x")),
            }),
        )],
        vec![("all", route(&["chat"], Severity::Info, &[]))],
    );
    let alerter = Alerter::start(config, state_file(&dir)).unwrap();
    alerter.raise(
        Alert::new(
            AlertKind::CorruptionFound,
            Severity::Critical,
            "chunk ab12 does not match",
        )
        .with_source("orders"),
    );
    alerter.resolve("corruption_found:orders");
    settle(&alerter).await;
    let texts: Vec<String> = receiver
        .all()
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts.len(), 2);
    assert!(
        texts[0].starts_with("[lifeboat] CRITICAL corruption_found orders: chunk ab12 does not match"),
        "{}",
        texts[0]
    );
    assert!(
        texts[1].starts_with("[lifeboat] RESOLVED corruption_found orders:"),
        "{}",
        texts[1]
    );
}

// ---------------------------------------------------------------- delivery

#[tokio::test]
async fn failed_deliveries_are_retried_with_growing_delays() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    receiver.fail_first(2, 500);
    let alerter = Alerter::start(one_hook(&receiver), state_file(&dir)).unwrap();
    alerter.raise(backup_failed(Severity::Critical, "orders", "failed"));
    settle(&alerter).await;

    let requests = receiver.all();
    assert_eq!(requests.len(), 3, "two failures, then success");
    assert_eq!(requests[0].body, requests[2].body, "a retry sends the same message");
    let gaps: Vec<Duration> = requests.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[0] >= Duration::from_millis(50), "first retry after {:?}", gaps[0]);
    assert!(
        gaps[1] >= Duration::from_millis(100),
        "second retry after {:?} (backoff doubles)",
        gaps[1]
    );
    let stats = &alerter.stats()[0];
    assert_eq!((stats.delivered, stats.retries, stats.failed), (1, 2, 0), "{stats:?}");
}

#[tokio::test]
async fn attempts_are_bounded_and_client_errors_are_not_retried() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    receiver.fail_first(100, 503);
    let alerter = Alerter::start(one_hook(&receiver), state_file(&dir)).unwrap();
    alerter.raise(backup_failed(Severity::Critical, "orders", "failed"));
    settle(&alerter).await;
    assert_eq!(receiver.all().len(), 4, "max_attempts is 4");
    assert_eq!((alerter.stats()[0].failed, alerter.stats()[0].delivered), (1, 0));

    receiver.fail_first(100, 400);
    alerter.raise(backup_failed(Severity::Critical, "billing", "failed"));
    settle(&alerter).await;
    assert_eq!(receiver.all().len(), 5, "a 400 is final: retrying cannot change it");
    assert_eq!(alerter.stats()[0].failed, 2);
}

#[tokio::test]
async fn a_hanging_sink_does_not_hold_up_another_and_shutdown_respects_its_deadline() {
    let slow = Receiver::start().await;
    slow.hang.store(true, Ordering::SeqCst);
    let fast = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(
        vec![
            ("fast", webhook(fast.url("/fast"))),
            ("slow", webhook(slow.url("/slow"))),
        ],
        vec![("all", route(&["fast", "slow"], Severity::Info, &[]))],
    );
    config.retry.attempt_timeout = Duration::from_secs(30);
    let alerter = Alerter::start(config, state_file(&dir)).unwrap();
    let started = Instant::now();
    alerter.raise(backup_failed(Severity::Critical, "orders", "failed"));
    alerter.raise(backup_failed(Severity::Critical, "billing", "failed"));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "raise waited for delivery: {:?}",
        started.elapsed()
    );

    while fast.all().len() < 2 || slow.all().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the fast sink waited for the hanging one"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(slow.all().len(), 1, "the slow sink is still on its first message");

    let report = alerter.shutdown(Duration::from_millis(300)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown overran its deadline"
    );
    assert_eq!(report.undelivered, 2, "both messages to the hanging sink are left");
    let stats: BTreeMap<String, u64> = alerter.stats().into_iter().map(|s| (s.sink, s.delivered)).collect();
    assert_eq!(stats, BTreeMap::from([("fast".to_owned(), 2), ("slow".to_owned(), 0)]));
}

#[tokio::test]
async fn shutdown_flushes_what_is_queued() {
    let receiver = Receiver::start().await;
    receiver.fail_first(1, 500);
    let dir = tempfile::tempdir().unwrap();
    let alerter = Alerter::start(one_hook(&receiver), state_file(&dir)).unwrap();
    for source in ["a", "b", "c", "d", "e"] {
        alerter.raise(backup_failed(Severity::Critical, source, "failed"));
    }
    let report = alerter.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.undelivered, 0);
    assert_eq!(alerter.stats()[0].delivered, 5);
    // The queue is closed now: raising still tracks the alert but sends nothing.
    assert!(matches!(
        alerter.raise(backup_failed(Severity::Critical, "f", "failed")),
        RaiseOutcome::Sent { .. }
    ));
    assert_eq!(alerter.stats()[0].dropped, 1);
    assert_eq!(receiver.all().len(), 6, "5 messages, one of them twice");
}

// ---------------------------------------------------------------- secrets

/// Everything logged by this test process, for the secret check.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other test sets a global subscriber");
        logs
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_stay_out_of_logs_debug_output_and_errors() {
    let logs = captured_logs();
    let receiver = Receiver::start().await;
    receiver.fail_first(1000, 500);
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let hook_token = "hooktoken-5ecret-9f1c";
    let slack_token = "slacktoken-5ecret-77aa";
    let refused_token = "refusedtoken-5ecret-0b0b";
    let routing_key = "routingkey-5ecret-3c3c";
    let mut pagerduty = PagerDutySink::new(secret(routing_key));
    pagerduty.endpoint = receiver.url("/v2/enqueue");
    let mut config = config(
        vec![
            ("hook", webhook(receiver.url(&format!("/hook/{hook_token}")))),
            (
                "chat",
                SinkConfig::Slack(SlackSink {
                    webhook_url: secret(receiver.url(&format!("/services/{slack_token}"))),
                }),
            ),
            (
                "refused",
                webhook(format!("http://127.0.0.1:{closed_port}/hook/{refused_token}")),
            ),
            ("pd", SinkConfig::PagerDuty(pagerduty)),
        ],
        vec![("all", route(&["hook", "chat", "refused", "pd"], Severity::Info, &[]))],
    );
    config.retry.max_attempts = 2;
    let ping_token = "pingtoken-5ecret-4d4d";
    let secrets = [hook_token, slack_token, refused_token, routing_key, ping_token];

    let debug = format!("{config:?}");
    let alerter = Alerter::start(config.clone(), state_file(&dir)).unwrap();
    alerter.raise(backup_failed(Severity::Critical, "orders", "failed"));
    settle(&alerter).await;
    assert!(alerter.stats().iter().all(|s| s.failed == 1), "{:?}", alerter.stats());
    let pings = DeadManConfig {
        start: Some(secret(receiver.url(&format!("/ping/{ping_token}/start")))),
        success: None,
        fail: Some(secret(format!("http://127.0.0.1:{closed_port}/ping/{ping_token}/fail"))),
        timeout: Duration::from_secs(5),
    };
    let pings = DeadManPing::new("backup orders", pings);
    pings.ping_start().await;
    pings.ping_fail("pg_dump exited with 1").await;
    let debug = format!("{debug} {pings:?}");

    config
        .routes
        .insert("broken".into(), route(&["nope"], Severity::Info, &[]));
    config
        .sinks
        .insert("bad".into(), webhook(format!("ftp://{hook_token}")));
    let error = match Alerter::start(config, state_file(&dir)) {
        Err(error @ AlertError::InvalidConfig { .. }) => error.to_string(),
        Err(other) => panic!("expected a config error, got {other}"),
        Ok(_) => panic!("a route to an unknown sink was accepted"),
    };
    assert!(error.contains("route `broken` names sink `nope`"), "{error}");

    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    for sink in ["hook", "chat", "refused", "pd"] {
        assert!(
            logs.contains(&format!("alert delivery to sink `{sink}` failed")),
            "no failure logged for {sink}:\n{logs}"
        );
    }
    assert!(
        logs.contains("HTTP 500"),
        "the receiver's answer is not in the logs:\n{logs}"
    );
    for ping in ["start", "fail"] {
        assert!(
            logs.contains(&format!("dead-man ping `{ping}` for backup orders failed")),
            "{logs}"
        );
    }
    for token in secrets {
        assert!(!logs.contains(token), "secret {token} in the logs:\n{logs}");
        assert!(!debug.contains(token), "secret {token} in Debug output: {debug}");
        assert!(!error.contains(token), "secret {token} in the error: {error}");
    }
}

// ---------------------------------------------------------------- email

/// The loopback SMTP server of `scripts/smtp-server`: its address and its Maildir.
fn smtp_server() -> (String, u16, PathBuf) {
    let addr = std::env::var("LIFEBOAT_TEST_SMTP_ADDR").ok().filter(|a| !a.is_empty());
    let maildir = std::env::var("LIFEBOAT_TEST_SMTP_MAILDIR")
        .ok()
        .filter(|a| !a.is_empty());
    let (Some(addr), Some(maildir)) = (addr, maildir) else {
        panic!(
            "the SMTP test server is not running; run `bash scripts/test` (it starts it) or \
             `scripts/smtp-server start` and export its env (eval \"$(scripts/smtp-server env)\")"
        )
    };
    let (host, port) = addr.rsplit_once(':').expect("LIFEBOAT_TEST_SMTP_ADDR is host:port");
    (
        host.to_owned(),
        port.parse().expect("LIFEBOAT_TEST_SMTP_ADDR port"),
        PathBuf::from(maildir),
    )
}

/// The headers of every message in `maildir` whose envelope went to `recipient` (unfolded; the
/// server adds `X-RcptTo` from the envelope), in arrival order. Removes those messages.
fn take_mail(maildir: &Path, recipient: &str) -> Vec<BTreeMap<String, String>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(maildir.join("new")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let head = text.replace("\r\n", "\n");
        let head = head
            .split("\n\n")
            .next()
            .unwrap_or_default()
            .replace("\n ", " ")
            .replace("\n\t", " ");
        let headers: BTreeMap<String, String> = head
            .lines()
            .filter_map(|line| line.split_once(": "))
            .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        if headers.get("x-rcptto").is_some_and(|to| to.contains(recipient)) {
            found.push((std::fs::metadata(&path).unwrap().modified().unwrap(), headers, text));
            std::fs::remove_file(&path).unwrap();
        }
    }
    found.sort_by_key(|(modified, headers, _)| (*modified, headers.get("subject").cloned()));
    found
        .into_iter()
        .map(|(_, mut headers, text)| {
            headers.insert("body".into(), text);
            headers
        })
        .collect()
}

#[tokio::test]
async fn email_reaches_every_recipient_with_the_alert_in_the_subject() {
    let (host, port, maildir) = smtp_server();
    let unique = support::unique_name("mail");
    let oncall = format!("oncall-{unique}@lifeboat.test");
    let dba = format!("dba-{unique}@lifeboat.test");
    let dir = tempfile::tempdir().unwrap();
    let email = EmailSink {
        host,
        port: Some(port),
        tls: SmtpTls::Plain,
        username: None,
        password: None,
        from: "Lifeboat <lifeboat@lifeboat.test>".to_owned(),
        to: vec![oncall.clone(), format!("DBA team <{dba}>")],
    };
    let config = config(
        vec![("mail", SinkConfig::Email(email))],
        vec![("all", route(&["mail"], Severity::Info, &[]))],
    );
    let alerter = Alerter::start(config, state_file(&dir)).unwrap();
    let source = format!("orders-{unique}");
    alerter.raise(backup_failed(Severity::Critical, &source, "pg_dump exited with 1").with_detail("exit_code", 1));
    settle(&alerter).await;
    alerter.resolve(&AlertKind::BackupFailed.key(&source));
    settle(&alerter).await;
    assert_eq!(alerter.stats()[0].delivered, 2, "{:?}", alerter.stats());

    let mail = take_mail(&maildir, &oncall);
    assert_eq!(mail.len(), 2, "{mail:#?}");
    let subjects: Vec<&str> = mail.iter().map(|m| m["subject"].as_str()).collect();
    assert_eq!(
        subjects,
        [
            format!("[lifeboat] CRITICAL backup_failed {source}: pg_dump exited with 1"),
            format!("[lifeboat] RESOLVED backup_failed {source}: pg_dump exited with 1"),
        ]
    );
    for message in &mail {
        assert!(
            message["x-rcptto"].contains(&oncall) && message["x-rcptto"].contains(&dba),
            "{message:#?}"
        );
        assert!(message["x-mailfrom"].contains("lifeboat@lifeboat.test"), "{message:#?}");
        assert!(message["to"].contains(&dba), "{message:#?}");
    }
    assert!(mail[0]["body"].contains("exit_code: 1"), "{}", mail[0]["body"]);
}

#[tokio::test]
async fn plain_smtp_to_a_remote_host_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let email = EmailSink {
        host: "smtp.example.com".to_owned(),
        port: None,
        tls: SmtpTls::Plain,
        username: Some("lifeboat".to_owned()),
        password: Some(secret("mailpassword-5ecret")),
        from: "lifeboat@example.com".to_owned(),
        to: vec!["oncall@example.com".to_owned()],
    };
    let config = config(
        vec![("mail", SinkConfig::Email(email))],
        vec![("all", route(&["mail"], Severity::Info, &[]))],
    );
    let error = Alerter::start(config, state_file(&dir))
        .err()
        .expect("plain SMTP to a remote host was accepted")
        .to_string();
    assert!(
        error.contains("alerts.sinks.mail.tls") && error.contains("in clear"),
        "{error}"
    );
    assert!(!error.contains("mailpassword-5ecret"), "{error}");
}

// ---------------------------------------------------------------- dead-man pings

#[tokio::test]
async fn dead_man_pings_reach_the_monitor() {
    let receiver = Receiver::start().await;
    let ping = DeadManPing::new(
        "backup orders",
        DeadManConfig::healthchecks(&secret(receiver.url("/ping/abc-123"))),
    );
    ping.ping_start().await;
    ping.ping_success().await;
    ping.ping_fail("pg_dump exited with 1").await;
    let requests: Vec<(Method, String, String)> =
        receiver.all().into_iter().map(|r| (r.method, r.path, r.body)).collect();
    assert_eq!(
        requests,
        [
            (Method::GET, "/ping/abc-123/start".to_owned(), String::new()),
            (Method::GET, "/ping/abc-123".to_owned(), String::new()),
            (
                Method::POST,
                "/ping/abc-123/fail".to_owned(),
                "pg_dump exited with 1".to_owned()
            ),
        ]
    );
}

#[tokio::test]
async fn a_dead_man_monitor_that_hangs_or_fails_does_not_hold_up_the_job() {
    let hanging = Receiver::start().await;
    hanging.hang.store(true, Ordering::SeqCst);
    let failing = Receiver::start().await;
    failing.fail_first(10, 500);
    let config = DeadManConfig {
        start: Some(secret(hanging.url("/start"))),
        success: Some(secret(failing.url("/ok"))),
        fail: None,
        timeout: Duration::from_millis(300),
    };
    let ping = DeadManPing::new("backup orders", config);
    let started = Instant::now();
    ping.ping_start().await;
    ping.ping_success().await;
    ping.ping_fail("ignored: no fail URL").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "pings took {:?}",
        started.elapsed()
    );
    assert_eq!((hanging.all().len(), failing.all().len()), (1, 1));
}
