//! Typed alerting config: sinks, routes, reminder and retry policy. Plain structs: the config
//! layer fills them from YAML (with secrets already resolved) and calls [`AlertsConfig::validate`];
//! [`AlertsConfig::from_spec`] builds them from the config file's `alerts:` section.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::config::{AlertsConfigSpec, ConfigError, RouteSpec, Secret, SecretRef, SeverityFloor, SinkSpec};

use super::event::Severity;

/// PagerDuty's Events API v2 endpoint, used when [`PagerDutySink::endpoint`] is not overridden.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// Everything the [`crate::alert::Alerter`] needs.
#[derive(Clone, Debug)]
pub struct AlertsConfig {
    /// Sinks by name; routes refer to these names.
    pub sinks: BTreeMap<String, SinkConfig>,
    /// Routes by name; drills refer to these names (`alerts: [oncall]`).
    pub routes: BTreeMap<String, RouteConfig>,
    /// How long an open, unchanged alert stays quiet before it is sent again.
    pub reminder: Duration,
    pub retry: RetryPolicy,
}

impl Default for AlertsConfig {
    /// No sinks, no routes, a reminder every 4 hours, the default retry policy.
    fn default() -> AlertsConfig {
        AlertsConfig {
            sinks: BTreeMap::new(),
            routes: BTreeMap::new(),
            reminder: Duration::from_secs(4 * 3600),
            retry: RetryPolicy::default(),
        }
    }
}

/// Where alerts go. Every secret (URLs that embed a token, keys, passwords) is a [`Secret`].
#[derive(Clone, Debug)]
pub enum SinkConfig {
    Webhook(WebhookSink),
    Slack(SlackSink),
    PagerDuty(PagerDutySink),
    Email(EmailSink),
}

impl SinkConfig {
    /// `webhook`, `slack`, `pagerduty` or `email`: for metrics labels and messages.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Webhook(_) => "webhook",
            SinkConfig::Slack(_) => "slack",
            SinkConfig::PagerDuty(_) => "pagerduty",
            SinkConfig::Email(_) => "email",
        }
    }
}

/// A generic webhook: the alert as JSON (see the module doc for the shape), POSTed to `url`.
#[derive(Clone, Debug)]
pub struct WebhookSink {
    pub url: Secret,
}

/// A Slack incoming webhook (`https://hooks.slack.com/services/...`).
#[derive(Clone, Debug)]
pub struct SlackSink {
    pub webhook_url: Secret,
}

/// PagerDuty Events API v2: one integration's routing key.
#[derive(Clone, Debug)]
pub struct PagerDutySink {
    pub routing_key: Secret,
    /// Defaults to [`PAGERDUTY_EVENTS_URL`]; override for a proxy or a regional endpoint.
    pub endpoint: String,
}

impl PagerDutySink {
    pub fn new(routing_key: Secret) -> PagerDutySink {
        PagerDutySink {
            routing_key,
            endpoint: PAGERDUTY_EVENTS_URL.to_owned(),
        }
    }
}

/// Email over SMTP.
#[derive(Clone, Debug)]
pub struct EmailSink {
    pub host: String,
    /// Defaults by `tls`: 587 for STARTTLS, 465 for TLS, 25 for plain.
    pub port: Option<u16>,
    pub tls: SmtpTls,
    /// Log in only when set; `password` then must be set too.
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// `lifeboat@example.com` or `Lifeboat <lifeboat@example.com>`.
    pub from: String,
    pub to: Vec<String>,
}

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS; refuses to go on if the server does not offer it.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No encryption: allowed only to a loopback host (a local relay), since alerts and
    /// credentials would otherwise cross the network in clear.
    Plain,
}

impl SmtpTls {
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::Plain => 25,
        }
    }
}

/// A named route: which sinks get which alerts.
#[derive(Clone, Debug, Default)]
pub struct RouteConfig {
    /// Sink names, each a key of [`AlertsConfig::sinks`].
    pub sinks: Vec<String>,
    /// Alerts below this severity do not take this route.
    pub min_severity: Severity,
    /// Source-name globs (`*` any run of characters, `?` one character), e.g. `orders*`.
    /// Empty: every source, and alerts about no source. Applies only to alerts without explicit
    /// routes: an alert that names this route takes it whatever its source.
    pub sources: Vec<String>,
}

/// Retries with exponential backoff: attempt `n` (1-based) that fails is followed by a wait of
/// `initial_delay * 2^(n-1)`, capped at `max_delay`, until `max_attempts` attempts were made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per delivery, the first included; at least 1.
    pub max_attempts: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
    /// Time allowed for one attempt (connect, send, answer); a hanging receiver counts as a failure.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    /// 8 attempts over about two minutes (waits 1 s, 2 s, … capped at 60 s), 15 s per attempt.
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 8,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(15),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// One thing wrong with an [`AlertsConfig`]. `at` is a dotted path inside the alerts section
/// (`routes.oncall.sinks`), for the config layer to turn into a file position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertConfigProblem {
    pub at: String,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for AlertConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "alerts.{}: {}\n  fix: {}", self.at, self.message, self.fix)
    }
}

impl AlertsConfig {
    /// Every problem at once (none: `Ok`). Messages name sinks and routes, never secret values.
    pub fn validate(&self) -> Result<(), Vec<AlertConfigProblem>> {
        let mut problems = Vec::new();
        let mut problem =
            |at: String, message: String, fix: String| problems.push(AlertConfigProblem { at, message, fix });
        for (name, sink) in &self.sinks {
            for (field, message, fix) in sink_problems(sink) {
                problem(
                    format!("sinks.{name}.{field}"),
                    format!("sink `{name}`: {message}"),
                    fix,
                );
            }
        }
        let known = self
            .sinks
            .keys()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ");
        for (name, route) in &self.routes {
            if route.sinks.is_empty() {
                problem(
                    format!("routes.{name}.sinks"),
                    format!("route `{name}` sends to no sink"),
                    "list at least one sink name under `sinks`, or remove the route".to_owned(),
                );
            }
            for sink in &route.sinks {
                if !self.sinks.contains_key(sink) {
                    problem(
                        format!("routes.{name}.sinks"),
                        format!("route `{name}` names sink `{sink}`, which is not defined"),
                        if known.is_empty() {
                            format!("define sink `{sink}` under `alerts.sinks`")
                        } else {
                            format!("use one of the defined sinks ({known}) or define `{sink}` under `alerts.sinks`")
                        },
                    );
                }
            }
            for glob in &route.sources {
                if glob.is_empty() {
                    problem(
                        format!("routes.{name}.sources"),
                        format!("route `{name}` has an empty source pattern"),
                        "write a source name or a glob such as `orders*`, or remove the entry".to_owned(),
                    );
                }
            }
        }
        if self.reminder.is_zero() {
            problem(
                "reminder".to_owned(),
                "the reminder interval is zero, which would re-send every open alert on every check".to_owned(),
                "set a reminder interval such as `4h`".to_owned(),
            );
        }
        let retry = &self.retry;
        if retry.max_attempts == 0 {
            problem(
                "retry.max_attempts".to_owned(),
                "max_attempts is 0, so nothing would ever be sent".to_owned(),
                "set max_attempts to 1 or more".to_owned(),
            );
        }
        if retry.initial_delay > retry.max_delay {
            problem(
                "retry.initial_delay".to_owned(),
                "the initial retry delay is longer than the maximum delay".to_owned(),
                "make initial_delay at most max_delay".to_owned(),
            );
        }
        if retry.attempt_timeout.is_zero() {
            problem(
                "retry.attempt_timeout".to_owned(),
                "the attempt timeout is zero, so every attempt would time out".to_owned(),
                "set attempt_timeout to a few seconds, e.g. 15s".to_owned(),
            );
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}

impl AlertsConfig {
    /// What the config file's `alerts:` section describes, every secret resolved: the alerting
    /// config the daemon starts with (default retry policy). `Err` names the first secret that
    /// does not resolve (the variable or file, never a value). Reads secrets, nothing else.
    pub fn from_spec(spec: &AlertsConfigSpec) -> Result<AlertsConfig, ConfigError> {
        let mut sinks = BTreeMap::new();
        for (name, sink) in &spec.sinks {
            sinks.insert(name.clone(), SinkConfig::from_spec(sink)?);
        }
        Ok(AlertsConfig {
            sinks,
            routes: spec
                .routes
                .iter()
                .map(|(name, route)| (name.clone(), RouteConfig::from_spec(route)))
                .collect(),
            reminder: spec.reminder,
            retry: RetryPolicy::default(),
        })
    }
}

impl SinkConfig {
    /// One sink of the config file, its secrets resolved (see [`AlertsConfig::from_spec`]).
    pub fn from_spec(spec: &SinkSpec) -> Result<SinkConfig, ConfigError> {
        Ok(match spec {
            SinkSpec::Webhook { url } => SinkConfig::Webhook(WebhookSink { url: url.resolve()? }),
            SinkSpec::Slack { url } => SinkConfig::Slack(SlackSink {
                webhook_url: url.resolve()?,
            }),
            SinkSpec::PagerDuty { routing_key, endpoint } => SinkConfig::PagerDuty(PagerDutySink {
                routing_key: routing_key.resolve()?,
                endpoint: endpoint
                    .as_ref()
                    .map_or(PAGERDUTY_EVENTS_URL.to_owned(), ToString::to_string),
            }),
            SinkSpec::Email {
                server,
                tls,
                username,
                password,
                from,
                to,
            } => SinkConfig::Email(EmailSink {
                host: server.host_str().unwrap_or_default().to_owned(),
                port: server.port(),
                tls: match tls {
                    crate::config::SmtpTls::StartTls => SmtpTls::Starttls,
                    crate::config::SmtpTls::Tls => SmtpTls::Tls,
                    crate::config::SmtpTls::None => SmtpTls::Plain,
                },
                username: username.clone(),
                password: password.as_ref().map(SecretRef::resolve).transpose()?,
                from: from.clone(),
                to: to.clone(),
            }),
        })
    }
}

impl RouteConfig {
    /// One route of the config file.
    pub fn from_spec(spec: &RouteSpec) -> RouteConfig {
        RouteConfig {
            sinks: spec.sinks.clone(),
            min_severity: match spec.min_severity {
                SeverityFloor::Info => Severity::Info,
                SeverityFloor::Warning => Severity::Warning,
                SeverityFloor::Critical => Severity::Critical,
            },
            sources: spec.sources.clone(),
        }
    }
}

/// `(field, message, fix)` for each problem of one sink.
fn sink_problems(sink: &SinkConfig) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    match sink {
        SinkConfig::Webhook(webhook) => {
            if let Some(why) = http_url_problem(webhook.url.expose()) {
                out.push((
                    "url",
                    format!("the webhook URL {why}"),
                    "give a full http(s):// URL".to_owned(),
                ));
            }
        }
        SinkConfig::Slack(slack) => {
            if let Some(why) = http_url_problem(slack.webhook_url.expose()) {
                out.push((
                    "webhook_url",
                    format!("the Slack webhook URL {why}"),
                    "copy the incoming webhook URL (https://hooks.slack.com/services/...) from Slack".to_owned(),
                ));
            }
        }
        SinkConfig::PagerDuty(pagerduty) => {
            if pagerduty.routing_key.expose().trim().is_empty() {
                out.push((
                    "routing_key",
                    "the PagerDuty routing key is empty".to_owned(),
                    "copy the integration key of an Events API v2 integration from PagerDuty".to_owned(),
                ));
            }
            if let Some(why) = http_url_problem(&pagerduty.endpoint) {
                out.push((
                    "endpoint",
                    format!("the PagerDuty endpoint `{}` {why}", pagerduty.endpoint),
                    format!("leave it out to use {PAGERDUTY_EVENTS_URL}, or give a full https:// URL"),
                ));
            }
        }
        SinkConfig::Email(email) => out.extend(email_problems(email)),
    }
    out
}

fn email_problems(email: &EmailSink) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    if email.host.trim().is_empty() {
        out.push((
            "host",
            "the SMTP host is empty".to_owned(),
            "name the SMTP server, e.g. smtp.example.com".to_owned(),
        ));
    } else if email.tls == SmtpTls::Plain && !is_loopback_host(&email.host) {
        out.push((
            "tls",
            format!(
                "plain (unencrypted) SMTP to `{}` would send alerts and credentials in clear",
                email.host
            ),
            "use STARTTLS or TLS, or relay through an SMTP server on localhost".to_owned(),
        ));
    }
    if email.from.parse::<lettre::message::Mailbox>().is_err() {
        out.push((
            "from",
            format!("the sender `{}` is not an email address", email.from),
            "write it as `lifeboat@example.com` or `Lifeboat <lifeboat@example.com>`".to_owned(),
        ));
    }
    if email.to.is_empty() {
        out.push((
            "to",
            "no recipient".to_owned(),
            "list at least one address under `to`".to_owned(),
        ));
    }
    for to in &email.to {
        if to.parse::<lettre::message::Mailbox>().is_err() {
            out.push((
                "to",
                format!("the recipient `{to}` is not an email address"),
                "write it as `oncall@example.com` or `On-call <oncall@example.com>`".to_owned(),
            ));
        }
    }
    match (&email.username, &email.password) {
        (Some(_), None) => out.push((
            "password",
            "a username is set but no password".to_owned(),
            "set the password (from an env var or a file), or remove the username".to_owned(),
        )),
        (None, Some(_)) => out.push((
            "username",
            "a password is set but no username".to_owned(),
            "set the username, or remove the password".to_owned(),
        )),
        _ => {}
    }
    out
}

/// Why `url` is not a usable http(s) URL, without repeating it (it may hold a token).
fn http_url_problem(url: &str) -> Option<&'static str> {
    match url::Url::parse(url) {
        Err(_) => Some("is not a valid URL"),
        Ok(parsed) if !matches!(parsed.scheme(), "http" | "https") => Some("does not start with http:// or https://"),
        Ok(parsed) if parsed.host_str().is_none_or(str::is_empty) => Some("has no host"),
        Ok(_) => None,
    }
}

pub(crate) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(value: &str) -> Secret {
        Secret::from(value.to_owned())
    }

    fn email(host: &str, tls: SmtpTls) -> EmailSink {
        EmailSink {
            host: host.to_owned(),
            port: None,
            tls,
            username: None,
            password: None,
            from: "Lifeboat <lifeboat@example.com>".to_owned(),
            to: vec!["oncall@example.com".to_owned()],
        }
    }

    #[test]
    fn a_consistent_config_is_valid() {
        let mut config = AlertsConfig::default();
        config.sinks.insert(
            "hook".into(),
            SinkConfig::Webhook(WebhookSink {
                url: secret("https://h.example/x"),
            }),
        );
        config
            .sinks
            .insert("mail".into(), SinkConfig::Email(email("127.0.0.1", SmtpTls::Plain)));
        config.routes.insert(
            "oncall".into(),
            RouteConfig {
                sinks: vec!["hook".into(), "mail".into()],
                min_severity: Severity::Critical,
                sources: vec!["orders*".into()],
            },
        );
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn every_problem_is_reported_and_no_secret_is_repeated() {
        let mut config = AlertsConfig::default();
        config.sinks.insert(
            "hook".into(),
            SinkConfig::Webhook(WebhookSink {
                url: secret("ftp://tok3n@x"),
            }),
        );
        config
            .sinks
            .insert("pd".into(), SinkConfig::PagerDuty(PagerDutySink::new(secret(" "))));
        config.sinks.insert(
            "mail".into(),
            SinkConfig::Email(email("smtp.example.com", SmtpTls::Plain)),
        );
        config.routes.insert(
            "oncall".into(),
            RouteConfig {
                sinks: vec!["hook".into(), "pager".into()],
                ..RouteConfig::default()
            },
        );
        config.routes.insert("empty".into(), RouteConfig::default());
        config.retry.max_attempts = 0;
        let problems = config.validate().unwrap_err();
        let at: Vec<&str> = problems.iter().map(|p| p.at.as_str()).collect();
        assert_eq!(
            at,
            [
                "sinks.hook.url",
                "sinks.mail.tls",
                "sinks.pd.routing_key",
                "routes.empty.sinks",
                "routes.oncall.sinks",
                "retry.max_attempts"
            ]
        );
        let unknown = problems.iter().find(|p| p.message.contains("`pager`")).unwrap();
        assert!(unknown.fix.contains("`hook`, `mail`, `pd`"), "{unknown}");
        assert!(problems.iter().all(|p| !p.to_string().contains("tok3n")));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let retry = RetryPolicy {
            max_attempts: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            attempt_timeout: Duration::from_secs(1),
        };
        let delays: Vec<u128> = (1..=5).map(|n| retry.delay_after(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        assert_eq!(retry.delay_after(200), Duration::from_millis(500));
    }

    #[test]
    fn loopback_hosts() {
        for host in ["localhost", "127.0.0.1", "127.3.2.1", "::1", "[::1]"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["smtp.example.com", "10.0.0.1", "localhost.example.com"] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
