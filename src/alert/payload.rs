//! What each sink sends, built from one [`Notice`]. The shapes are documented in the module doc
//! of [`crate::alert`]; change them only together with it.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::state::OpenAlert;

/// Version of the webhook JSON shape, sent as its `version` field.
pub const WEBHOOK_PAYLOAD_VERSION: u32 = 1;

/// PagerDuty refuses summaries longer than this.
const PAGERDUTY_SUMMARY_MAX: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub(crate) fn id(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// One message to the sinks: an alert firing (new, changed or reminder) or resolved.
#[derive(Clone, Debug)]
pub(crate) struct Notice {
    pub status: Status,
    pub alert: OpenAlert,
    /// Set when `status` is `Resolved`.
    pub resolved_at: Option<Timestamp>,
}

impl Notice {
    /// `CRITICAL backup_failed orders: newest backup failed` (`RESOLVED …` once resolved): the
    /// line a human reads first, in Slack and in email subjects.
    pub(crate) fn headline(&self) -> String {
        let alert = &self.alert;
        let label = match self.status {
            Status::Firing => alert.severity.shout(),
            Status::Resolved => "RESOLVED",
        };
        match alert.drill.as_deref().or(alert.source.as_deref()) {
            Some(subject) => format!("{label} {} {subject}: {}", alert.kind, alert.summary),
            None => format!("{label} {}: {}", alert.kind, alert.summary),
        }
    }
}

/// The generic webhook body.
pub(crate) fn webhook(notice: &Notice) -> Value {
    let alert = &notice.alert;
    json!({
        "version": WEBHOOK_PAYLOAD_VERSION,
        "status": notice.status.id(),
        "key": alert.key,
        "kind": alert.kind,
        "severity": alert.severity,
        "source": alert.source,
        "drill": alert.drill,
        "summary": alert.summary,
        "details": alert.details,
        "first_seen": alert.first_seen.to_string(),
        "last_seen": alert.last_seen.to_string(),
        "resolved_at": notice.resolved_at.map(|t| t.to_string()),
    })
}

/// The Slack incoming-webhook body: the headline, then the key and the details, one per line.
pub(crate) fn slack(notice: &Notice) -> Value {
    let alert = &notice.alert;
    let mut text = format!("[lifeboat] {}\nkey: {}", notice.headline(), alert.key);
    for (name, value) in &alert.details {
        text.push_str(&format!("\n{name}: {}", plain(value)));
    }
    json!({ "text": text })
}

/// The PagerDuty Events API v2 body: `trigger` while firing, `resolve` once resolved, both with
/// the alert's key as `dedup_key`, so PagerDuty folds them into one incident.
pub(crate) fn pagerduty(notice: &Notice, routing_key: &str) -> Value {
    let alert = &notice.alert;
    match notice.status {
        Status::Resolved => json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": alert.key,
        }),
        Status::Firing => {
            let mut details = alert.details.clone();
            details.insert("kind".into(), json!(alert.kind));
            details.insert("key".into(), json!(alert.key));
            if let Some(drill) = &alert.drill {
                details.insert("drill".into(), json!(drill));
            }
            details.insert("first_seen".into(), json!(alert.first_seen.to_string()));
            let summary = match alert.drill.as_deref().or(alert.source.as_deref()) {
                Some(subject) => format!("{} {subject}: {}", alert.kind, alert.summary),
                None => format!("{}: {}", alert.kind, alert.summary),
            };
            json!({
                "routing_key": routing_key,
                "event_action": "trigger",
                "dedup_key": alert.key,
                "client": "lifeboat",
                "payload": {
                    "summary": truncate(&summary, PAGERDUTY_SUMMARY_MAX),
                    "source": alert.source.as_deref().or(alert.drill.as_deref()).unwrap_or("lifeboat"),
                    "severity": alert.severity,
                    "timestamp": alert.last_seen.to_string(),
                    "component": alert.kind,
                    "custom_details": details,
                },
            })
        }
    }
}

/// Email subject and plain-text body.
pub(crate) fn email(notice: &Notice) -> (String, String) {
    let alert = &notice.alert;
    let subject = format!("[lifeboat] {}", notice.headline());
    let mut body = format!("{}\n\n{}\n\n", notice.headline(), alert.summary);
    let mut line = |name: &str, value: &str| body.push_str(&format!("{name:<11} {value}\n"));
    line("status:", notice.status.id());
    line("key:", &alert.key);
    line("kind:", alert.kind.id());
    line("severity:", alert.severity.id());
    if let Some(source) = &alert.source {
        line("source:", source);
    }
    if let Some(drill) = &alert.drill {
        line("drill:", drill);
    }
    line("first seen:", &alert.first_seen.to_string());
    line("last seen:", &alert.last_seen.to_string());
    if let Some(resolved_at) = notice.resolved_at {
        line("resolved:", &resolved_at.to_string());
    }
    if !alert.details.is_empty() {
        body.push_str("\ndetails:\n");
        for (name, value) in &alert.details {
            body.push_str(&format!("  {name}: {}\n", plain(value)));
        }
    }
    (subject, body)
}

/// A JSON value as a human writes it: strings without quotes.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn truncate(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_owned();
    }
    let mut end = max_bytes - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Map;

    use super::*;
    use crate::alert::event::{AlertKind, Severity};

    fn notice(status: Status) -> Notice {
        let mut details = Map::new();
        details.insert("age".into(), json!("26h"));
        details.insert("attempts".into(), json!(3));
        Notice {
            status,
            alert: OpenAlert {
                key: "backup_failed:orders".into(),
                kind: AlertKind::BackupFailed,
                severity: Severity::Critical,
                summary: "pg_dump exited with 1".into(),
                source: Some("orders".into()),
                drill: None,
                details,
                first_seen: "2026-11-23T10:00:00Z".parse().unwrap(),
                last_seen: "2026-11-23T10:05:00Z".parse().unwrap(),
                last_sent: "2026-11-23T10:05:00Z".parse().unwrap(),
                sinks: BTreeSet::new(),
            },
            resolved_at: (status == Status::Resolved).then(|| "2026-11-23T11:00:00Z".parse().unwrap()),
        }
    }

    #[test]
    fn webhook_shape() {
        assert_eq!(
            webhook(&notice(Status::Firing)),
            json!({
                "version": 1,
                "status": "firing",
                "key": "backup_failed:orders",
                "kind": "backup_failed",
                "severity": "critical",
                "source": "orders",
                "drill": null,
                "summary": "pg_dump exited with 1",
                "details": {"age": "26h", "attempts": 3},
                "first_seen": "2026-11-23T10:00:00Z",
                "last_seen": "2026-11-23T10:05:00Z",
                "resolved_at": null,
            })
        );
        let resolved = webhook(&notice(Status::Resolved));
        assert_eq!(resolved["status"], "resolved");
        assert_eq!(resolved["resolved_at"], "2026-11-23T11:00:00Z");
    }

    #[test]
    fn slack_text() {
        assert_eq!(
            slack(&notice(Status::Firing))["text"],
            "[lifeboat] CRITICAL backup_failed orders: pg_dump exited with 1\nkey: backup_failed:orders\n\
             age: 26h\nattempts: 3"
        );
        let resolved = slack(&notice(Status::Resolved));
        assert!(
            resolved["text"]
                .as_str()
                .unwrap()
                .starts_with("[lifeboat] RESOLVED backup_failed orders:")
        );
    }

    #[test]
    fn pagerduty_trigger_and_resolve() {
        let trigger = pagerduty(&notice(Status::Firing), "rk");
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(trigger["dedup_key"], "backup_failed:orders");
        assert_eq!(trigger["payload"]["severity"], "critical");
        assert_eq!(trigger["payload"]["source"], "orders");
        assert_eq!(
            trigger["payload"]["summary"],
            "backup_failed orders: pg_dump exited with 1"
        );
        assert_eq!(trigger["payload"]["custom_details"]["age"], "26h");
        let resolve = pagerduty(&notice(Status::Resolved), "rk");
        assert_eq!(
            resolve,
            json!({"routing_key": "rk", "event_action": "resolve", "dedup_key": "backup_failed:orders"})
        );
    }

    #[test]
    fn email_subject_and_body() {
        let (subject, body) = email(&notice(Status::Firing));
        assert_eq!(
            subject,
            "[lifeboat] CRITICAL backup_failed orders: pg_dump exited with 1"
        );
        assert!(body.contains("\nkey:        backup_failed:orders\n"), "{body}");
        assert!(body.contains("\n  attempts: 3\n"), "{body}");
    }

    #[test]
    fn long_summaries_are_cut_on_a_char_boundary() {
        let cut = truncate(&"é".repeat(600), PAGERDUTY_SUMMARY_MAX);
        assert!(cut.len() <= PAGERDUTY_SUMMARY_MAX && cut.ends_with('…'));
    }
}
