//! Dead-man pings (healthchecks.io style): a job tells an outside monitor that it started,
//! succeeded or failed, and the monitor alerts when the pings stop coming. That catches the one
//! failure the daemon cannot report itself: the daemon (or its host) being down.

use std::time::Duration;

use crate::config::Secret;

use super::sink::{error_chain, scrub};

/// Bodies of failure pings are cut to this size (healthchecks.io keeps the first 100 kB).
const FAIL_MESSAGE_MAX: usize = 10_000;

/// The URLs of one job's pings. Each is optional: a job pings only what is set. The URLs are
/// secrets: anyone who knows one can ping (and so silence) the check.
#[derive(Clone, Debug)]
pub struct DeadManConfig {
    pub start: Option<Secret>,
    pub success: Option<Secret>,
    pub fail: Option<Secret>,
    /// Time allowed for one ping; a monitor that does not answer in time is logged and skipped.
    pub timeout: Duration,
}

impl DeadManConfig {
    /// healthchecks.io's convention for one check URL: `<url>/start`, `<url>`, `<url>/fail`.
    pub fn healthchecks(url: &Secret) -> DeadManConfig {
        let base = url.expose().trim_end_matches('/');
        DeadManConfig {
            start: Some(Secret::from(format!("{base}/start"))),
            success: Some(Secret::from(base.to_owned())),
            fail: Some(Secret::from(format!("{base}/fail"))),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Sends one job's pings. Failures are logged (without the URL) and never returned: a monitor
/// that is down must not fail a backup.
#[derive(Clone, Debug)]
pub struct DeadManPing {
    job: String,
    config: DeadManConfig,
    http: Option<reqwest::Client>,
}

impl DeadManPing {
    /// `job` names the job in log lines, e.g. `backup orders`.
    pub fn new(job: impl Into<String>, config: DeadManConfig) -> DeadManPing {
        let job = job.into();
        // Building a client fails only when the TLS backend cannot start; the job then goes on
        // without pings rather than failing.
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("lifeboat/", env!("CARGO_PKG_VERSION")))
            .build()
            .inspect_err(|e| {
                tracing::error!(
                    %job,
                    error = %error_chain(e),
                    "cannot set up HTTP for dead-man pings; {job} will not ping (fix: check that the system's \
                     TLS certificates are installed)"
                );
            })
            .ok();
        DeadManPing { job, config, http }
    }

    /// The job has started (GET the start URL): the monitor can then measure its run time.
    pub async fn ping_start(&self) {
        self.send("start", self.config.start.as_ref(), None).await;
    }

    /// The job succeeded (GET the success URL).
    pub async fn ping_success(&self) {
        self.send("success", self.config.success.as_ref(), None).await;
    }

    /// The job failed (POST `message` to the fail URL, where the monitor shows it).
    pub async fn ping_fail(&self, message: &str) {
        let mut end = message.len().min(FAIL_MESSAGE_MAX);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        self.send("fail", self.config.fail.as_ref(), Some(&message[..end]))
            .await;
    }

    /// GETs `url`, or POSTs `body` to it as text.
    async fn send(&self, which: &'static str, url: Option<&Secret>, body: Option<&str>) {
        let (Some(url), Some(http)) = (url, &self.http) else {
            return;
        };
        let request = match body {
            None => http.get(url.expose()),
            Some(body) => http
                .post(url.expose())
                .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(body.to_owned()),
        };
        let problem = match request.send().await {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => format!("the monitor answered HTTP {}", response.status()),
            Err(e) => scrub(&error_chain(&e.without_url()), [url].into_iter()),
        };
        tracing::warn!(
            job = %self.job,
            ping = which,
            error = %problem,
            "dead-man ping `{which}` for {} failed; the job goes on (fix: check the ping URL and that the \
             monitor is reachable)",
            self.job
        );
    }
}
