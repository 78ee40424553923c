//! One delivery attempt to one sink. Errors are built here, and only here, from what the
//! transport said, with every secret of the sink scrubbed out.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;

use crate::config::Secret;

use super::config::{EmailSink, SinkConfig, SmtpTls};
use super::payload::{self, Notice};

/// At most this much of a receiver's error answer goes into a log line.
const ANSWER_EXCERPT: usize = 300;

/// Why one attempt failed. `message` holds no secret of the sink.
#[derive(Debug)]
pub(crate) struct DeliveryError {
    pub message: String,
    /// False for answers that another attempt cannot change (e.g. HTTP 400, SMTP 5xx).
    pub retryable: bool,
}

/// A sink ready to send: parsed addresses, a built SMTP transport.
pub(crate) enum Sink {
    Webhook { url: Secret },
    Slack { url: Secret },
    PagerDuty { endpoint: String, routing_key: Secret },
    Email(Box<EmailTransport>),
}

pub(crate) struct EmailTransport {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    password: Option<Secret>,
}

impl Sink {
    /// Builds the sink from a validated config. Fails only for email, on a config that
    /// [`super::config::AlertsConfig::validate`] would have refused or a TLS setup error.
    pub(crate) fn build(config: &SinkConfig, attempt_timeout: Duration) -> Result<Sink, String> {
        Ok(match config {
            SinkConfig::Webhook(webhook) => Sink::Webhook {
                url: webhook.url.clone(),
            },
            SinkConfig::Slack(slack) => Sink::Slack {
                url: slack.webhook_url.clone(),
            },
            SinkConfig::PagerDuty(pagerduty) => Sink::PagerDuty {
                endpoint: pagerduty.endpoint.clone(),
                routing_key: pagerduty.routing_key.clone(),
            },
            SinkConfig::Email(email) => Sink::Email(Box::new(EmailTransport::build(email, attempt_timeout)?)),
        })
    }

    pub(crate) async fn deliver(&self, http: &reqwest::Client, notice: &Notice) -> Result<(), DeliveryError> {
        match self {
            Sink::Webhook { url } => post_json(http, url.expose(), &payload::webhook(notice), &[url]).await,
            Sink::Slack { url } => post_json(http, url.expose(), &payload::slack(notice), &[url]).await,
            Sink::PagerDuty { endpoint, routing_key } => {
                let body = payload::pagerduty(notice, routing_key.expose());
                post_json(http, endpoint, &body, &[routing_key]).await
            }
            Sink::Email(email) => email.send(notice).await,
        }
    }
}

impl EmailTransport {
    fn build(config: &EmailSink, attempt_timeout: Duration) -> Result<EmailTransport, String> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| format!("sender `{}`: {e}", config.from))?;
        let to = config
            .to
            .iter()
            .map(|to| to.parse::<Mailbox>().map_err(|e| format!("recipient `{to}`: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let tls = match config.tls {
            SmtpTls::Plain => Tls::None,
            SmtpTls::Starttls | SmtpTls::Tls => {
                let parameters = TlsParameters::new(config.host.clone())
                    .map_err(|e| format!("cannot set up TLS for {}: {e}", config.host))?;
                if config.tls == SmtpTls::Tls {
                    Tls::Wrapper(parameters)
                } else {
                    Tls::Required(parameters)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.clone())
            .port(config.port.unwrap_or(config.tls.default_port()))
            .tls(tls)
            .timeout(Some(attempt_timeout));
        // Servers may refuse an EHLO of `localhost` (lettre's default): introduce ourselves by name.
        if let Some(hostname) = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()) {
            builder = builder.hello_name(ClientId::Domain(hostname));
        }
        if let (Some(username), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(username.clone(), password.expose().to_owned()));
        }
        Ok(EmailTransport {
            transport: builder.build(),
            from,
            to,
            password: config.password.clone(),
        })
    }

    async fn send(&self, notice: &Notice) -> Result<(), DeliveryError> {
        let (subject, body) = payload::email(notice);
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(None)
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            message = message.to(to.clone());
        }
        let message = message.body(body).map_err(|e| DeliveryError {
            message: format!("cannot build the email: {e}"),
            retryable: false,
        })?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) => Err(DeliveryError {
                message: scrub(&format!("SMTP: {e}"), self.password.iter()),
                retryable: !e.is_permanent(),
            }),
        }
    }
}

/// POSTs `body` as JSON to `url`; any 2xx answer is success. Redirects are not followed: a
/// webhook that moved should be reconfigured, not followed with its payload.
async fn post_json(http: &reqwest::Client, url: &str, body: &Value, secrets: &[&Secret]) -> Result<(), DeliveryError> {
    let scrubbed = |text: &str| scrub(text, secrets.iter().copied());
    let response = http.post(url).json(body).send().await.map_err(|e| DeliveryError {
        message: scrubbed(&error_chain(&e.without_url())),
        retryable: true,
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let answer = response.text().await.unwrap_or_default();
    let excerpt: String = answer.chars().take(ANSWER_EXCERPT).collect();
    Err(DeliveryError {
        message: scrubbed(&format!("the receiver answered HTTP {status}: {}", excerpt.trim())),
        retryable: status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT,
    })
}

/// An error and its causes on one line: reqwest's own message says little ("error sending
/// request"); the cause says what happened ("connection refused").
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Replaces every secret (and, for URLs, the part after the host, where tokens live) with
/// `[redacted]`. The transports should not echo secrets back; this makes sure.
pub(crate) fn scrub<'a>(text: &str, secrets: impl Iterator<Item = &'a Secret>) -> String {
    let mut text = text.to_owned();
    for secret in secrets {
        let value = secret.expose();
        if value.len() >= 4 {
            text = text.replace(value, "[redacted]");
        }
        if let Ok(url) = url::Url::parse(value) {
            let path = &url[url::Position::BeforePath..];
            if path.len() >= 4 {
                text = text.replace(path, "[redacted]");
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_secrets_and_url_paths() {
        let url = Secret::from("https://hooks.example/services/T0/B0/xyzzy".to_owned());
        let key = Secret::from("routing-key-123".to_owned());
        let text = "failed for https://hooks.example/services/T0/B0/xyzzy and /services/T0/B0/xyzzy \
                    with routing-key-123";
        let scrubbed = scrub(text, [&url, &key].into_iter());
        assert_eq!(scrubbed, "failed for [redacted] and [redacted] with [redacted]");
    }
}
