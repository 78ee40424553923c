//! Validation of what only the daemon reads: `daemon:`, a source's `schedule:`, `retention:` and
//! `pings:`, and `alerts:`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use chrono_tz::Tz;

use super::{Validator, in_file_order, pos};
use crate::alert::{AlertsConfig, RetryPolicy, SinkConfig};
use crate::config::check::Target;
use crate::config::error::{Position, Problem, backticked, did_you_mean};
use crate::config::raw::{
    RawAlerts, RawDaemon, RawPings, RawRetention, RawRoute, RawSchedules, RawSecretUrl, RawSink, S,
};
use crate::config::secret::SecretRef;
use crate::config::service::{
    AlertsConfigSpec, DaemonConfig, RouteSpec, SeverityFloor, SinkSpec, SmtpTls, SourcePings, SourceSchedules,
};
use crate::repo::retention::RetentionPolicy;
use crate::schedule::{Schedule, parse_zone};

const DURATION_FORMS: &str = "write a whole number and a unit: `90s`, `10m`, `6h`, `7d`, or a combination \
                              from the largest unit down such as `1h30m`";
const SINK_KINDS: [&str; 4] = ["webhook", "slack", "pagerduty", "email"];
const SEVERITIES: [&str; 3] = ["info", "warning", "critical"];

impl Validator<'_> {
    pub(super) fn daemon(&mut self, raw: Option<&S<RawDaemon>>) -> DaemonConfig {
        let mut d = DaemonConfig::default();
        let Some(raw) = raw else { return d };
        let r = &raw.value;
        if let Some(l) = &r.listen {
            match l.value.trim().parse::<SocketAddr>() {
                Ok(addr) => d.listen = addr,
                Err(_) => self.report(
                    pos(l),
                    format!(
                        "`daemon.listen: {}` is not an address and port",
                        l.value.trim().escape_debug()
                    ),
                    "write e.g. `listen: 127.0.0.1:9187` (an IP address, not a host name, and a port); \
                     keep it on loopback unless a reverse proxy guards it",
                ),
            }
        }
        if let Some(z) = &r.timezone
            && let Some(tz) = self.zone("daemon.timezone", z)
        {
            d.timezone = tz;
        }
        let mut duration = |key: &str, value: &Option<S<String>>, slot: &mut Duration, zero_ok: bool| {
            if let Some(v) = value
                && let Some(parsed) = self.service_duration(key, v, zero_ok)
            {
                *slot = parsed;
            }
        };
        duration("daemon.catch_up", &r.catch_up, &mut d.catch_up, true);
        duration("daemon.jitter", &r.jitter, &mut d.jitter, true);
        duration("daemon.shutdown_grace", &r.shutdown_grace, &mut d.shutdown_grace, true);
        duration("daemon.lease", &r.lease, &mut d.lease, false);
        if d.lease < Duration::from_secs(10) {
            self.report(
                r.lease.as_ref().and_then(pos),
                "`daemon.lease` is shorter than 10s",
                "use at least `lease: 30s`: a daemon renews its claim every third of the lease, and a \
                 short lease lets a slow catalog make two daemons run one job",
            );
        }
        d
    }

    fn zone(&mut self, key: &str, z: &S<String>) -> Option<Tz> {
        match parse_zone(&z.value) {
            Ok(tz) => Some(tz),
            Err(e) => {
                self.report(pos(z), format!("`{key}`: {}", e.message), e.fix);
                None
            }
        }
    }

    /// `0s` is allowed where zero means "off" (`jitter`, `catch_up`).
    pub(super) fn service_duration(&mut self, key: &str, v: &S<String>, zero_ok: bool) -> Option<Duration> {
        let text = v.value.trim();
        if zero_ok && matches!(text, "0" | "0s" | "0m" | "0h") {
            return Some(Duration::ZERO);
        }
        let parsed = crate::drill::spec::parse_duration(text);
        if parsed.is_none() {
            self.report(
                pos(v),
                format!("`{key}: {}` is not a duration", text.escape_debug()),
                DURATION_FORMS,
            );
        }
        parsed
    }

    pub(super) fn schedules(&mut self, source: &str, raw: &S<RawSchedules>, default_zone: Tz) -> SourceSchedules {
        let r = &raw.value;
        let zone = match &r.timezone {
            Some(z) => self.zone(&format!("sources.{source}.schedule.timezone"), z),
            None => Some(default_zone),
        };
        let mut one = |job: &str, value: &Option<S<String>>| {
            let v = value.as_ref()?;
            match Schedule::parse(&v.value, zone?) {
                Ok(s) => Some(s),
                Err(e) => {
                    self.report(
                        pos(v),
                        format!("`sources.{source}.schedule.{job}`: {}", e.message),
                        e.fix,
                    );
                    None
                }
            }
        };
        let schedules = SourceSchedules {
            backup: one("backup", &r.backup),
            verify: one("verify", &r.verify),
            prune: one("prune", &r.prune),
            copy: one("copy", &r.copy),
        };
        if r.backup.is_none() && r.verify.is_none() && r.prune.is_none() && r.copy.is_none() {
            self.report(
                pos(raw),
                format!("`sources.{source}.schedule` names no job"),
                "add `backup:`, `verify:`, `prune:` and/or `copy:` with a crontab expression, e.g. `backup: \"0 */6 * * *\"`",
            );
        }
        schedules
    }

    pub(super) fn retention(&mut self, source: &str, raw: &S<RawRetention>) -> Option<RetentionPolicy> {
        let r = &raw.value;
        let count = |v: &Option<S<u32>>| v.as_ref().map(|s| s.value).filter(|n| *n > 0);
        let keep_within = match &r.keep_within {
            Some(v) => Some(self.service_duration(&format!("sources.{source}.retention.keep_within"), v, false)?),
            None => None,
        };
        // Zero is allowed for both: `min_age: 0s` protects nothing, `grace: 0s` deletes a tombstoned
        // snapshot at the next prune.
        let min_age = match &r.min_age {
            Some(v) => Some(self.service_duration(&format!("sources.{source}.retention.min_age"), v, true)?),
            None => None,
        };
        let grace = match &r.grace {
            Some(v) => Some(self.service_duration(&format!("sources.{source}.retention.grace"), v, true)?),
            None => None,
        };
        let policy = RetentionPolicy {
            keep_last: count(&r.keep_last),
            keep_hourly: count(&r.keep_hourly),
            keep_daily: count(&r.keep_daily),
            keep_weekly: count(&r.keep_weekly),
            keep_monthly: count(&r.keep_monthly),
            keep_yearly: count(&r.keep_yearly),
            keep_within,
            min_age,
            grace,
        };
        if policy.is_empty() {
            self.report(
                pos(raw),
                format!("`sources.{source}.retention` keeps nothing"),
                "set at least one rule above zero, e.g. `retention: { keep_last: 7, keep_daily: 14 }`; \
                 to keep every snapshot, remove `retention:`",
            );
            return None;
        }
        Some(policy)
    }

    pub(super) fn pings(&mut self, source: &str, raw: &S<RawPings>) -> SourcePings {
        let r = &raw.value;
        let mut one = |job: &str, v: &Option<S<RawSecretUrl>>| {
            let v = v.as_ref()?;
            let url = self.secret_url(&format!("sources.{source}.pings.{job}"), v);
            if url.is_none() && v.value.url_env.is_none() && v.value.url_file.is_none() {
                self.report(
                    pos(v),
                    format!("`sources.{source}.pings.{job}` has no URL"),
                    "add `url_env: VAR` (or `url_file: PATH`) holding the check's ping URL, e.g. \
                     https://hc-ping.com/<uuid>; it is secret because anyone with it can ping",
                );
            }
            url
        };
        SourcePings {
            backup: one("backup", &r.backup),
            verify: one("verify", &r.verify),
            prune: one("prune", &r.prune),
            copy: one("copy", &r.copy),
        }
    }

    fn secret_url(&mut self, key: &str, raw: &S<RawSecretUrl>) -> Option<SecretRef> {
        self.secret_ref(
            "url",
            &raw.value.url_env,
            &raw.value.url_file,
            key.into(),
            Target::Secret,
        )
    }

    pub(super) fn alerts(&mut self, raw: &S<RawAlerts>, source_names: &[&str]) -> Option<AlertsConfigSpec> {
        self.alert_places(raw);
        let r = &raw.value;
        let mut spec = AlertsConfigSpec::default();
        let mut ok = true;
        if let Some(v) = &r.reminder {
            match self.service_duration("alerts.reminder", v, false) {
                Some(d) => spec.reminder = d,
                None => ok = false,
            }
        }
        let mut sink_names = Vec::new();
        if let Some(sinks) = &r.sinks {
            for (key, sink) in in_file_order(&sinks.value) {
                sink_names.push(key.value.clone());
                if !self.name("alert sink", key) {
                    ok = false;
                    continue;
                }
                match self.sink(&key.value, sink) {
                    Some(s) => {
                        spec.sinks.insert(key.value.clone(), s);
                    }
                    None => ok = false,
                }
            }
        }
        if let Some(routes) = &r.routes {
            for (key, route) in in_file_order(&routes.value) {
                if !self.name("alert route", key) {
                    ok = false;
                    continue;
                }
                match self.route(&key.value, route, &sink_names, source_names) {
                    Some(rt) => {
                        spec.routes.insert(key.value.clone(), rt);
                    }
                    None => ok = false,
                }
            }
        }
        if !spec.sinks.is_empty() && spec.routes.is_empty() {
            self.report(
                pos(raw),
                "`alerts` defines sinks but no routes, so no alert would ever be sent",
                "add e.g. `routes: { oncall: { sinks: [NAME], min_severity: critical } }`",
            );
            ok = false;
        }
        ok.then_some(spec)
    }

    /// Records where the keys of `alerts:` are, named as [`AlertsConfig::validate`] names them
    /// (`sinks.NAME.webhook_url`, `routes.NAME.sinks`), for [`alert_problems`].
    fn alert_places(&mut self, raw: &S<RawAlerts>) {
        let mut places = BTreeMap::new();
        let mut place = |key: String, at: Option<Position>| {
            if let Some(at) = at {
                places.insert(key, at);
            }
        };
        let either = |a: &Option<S<String>>, b: &Option<S<String>>| a.as_ref().or(b.as_ref()).and_then(pos);
        let r = &raw.value;
        place(String::new(), pos(raw));
        place("reminder".into(), r.reminder.as_ref().and_then(pos));
        for (key, sink) in r.sinks.iter().flat_map(|m| m.value.iter()) {
            let s = &sink.value;
            let at = |field: &str| format!("sinks.{}.{field}", key.value);
            place(format!("sinks.{}", key.value), pos(sink));
            let url = either(&s.url_env, &s.url_file);
            place(at("url"), url);
            place(at("webhook_url"), url);
            place(at("routing_key"), either(&s.routing_key_env, &s.routing_key_file));
            place(at("endpoint"), s.endpoint.as_ref().and_then(pos));
            place(at("host"), s.server.as_ref().and_then(pos));
            place(at("tls"), s.tls.as_ref().and_then(pos));
            place(at("from"), s.from.as_ref().and_then(pos));
            place(at("to"), s.to.as_ref().and_then(pos));
            // A username without a password (or the reverse) is shown where the one given is.
            let password = either(&s.password_env, &s.password_file);
            let username = s.username.as_ref().and_then(pos);
            place(at("username"), username.or(password));
            place(at("password"), password.or(username));
        }
        for (key, route) in r.routes.iter().flat_map(|m| m.value.iter()) {
            let at = |field: &str| format!("routes.{}.{field}", key.value);
            place(format!("routes.{}", key.value), pos(route));
            place(at("sinks"), route.value.sinks.as_ref().and_then(pos));
            place(at("sources"), route.value.sources.as_ref().and_then(pos));
        }
        self.alert_places = places;
    }

    fn sink(&mut self, name: &str, raw: &S<RawSink>) -> Option<SinkSpec> {
        let s = &raw.value;
        let key = format!("alerts.sinks.{name}");
        let Some(kind) = &s.kind else {
            self.report(
                pos(raw),
                format!("alert sink `{name}` has no `kind`"),
                format!("add `kind:` with one of {}", backticked(SINK_KINDS)),
            );
            return None;
        };
        let url = |v: &mut Self| v.secret_ref("url", &s.url_env, &s.url_file, format!("{key}.url"), Target::Secret);
        let needs_url = |v: &mut Self, found: Option<SecretRef>| {
            if found.is_none() && s.url_env.is_none() && s.url_file.is_none() {
                v.report(
                    pos(raw),
                    format!("alert sink `{name}` has no URL"),
                    "add `url_env: VAR` (or `url_file: PATH`) holding the webhook URL; it is kept out of \
                     the file because anyone with it can post",
                );
            }
            found
        };
        match kind.value.trim() {
            "webhook" => Some(SinkSpec::Webhook {
                url: {
                    let u = url(self);
                    needs_url(self, u)?
                },
            }),
            "slack" => Some(SinkSpec::Slack {
                url: {
                    let u = url(self);
                    needs_url(self, u)?
                },
            }),
            "pagerduty" => {
                let routing_key = self.secret_ref(
                    "routing_key",
                    &s.routing_key_env,
                    &s.routing_key_file,
                    format!("{key}.routing_key"),
                    Target::Secret,
                );
                if routing_key.is_none() && s.routing_key_env.is_none() && s.routing_key_file.is_none() {
                    self.report(
                        pos(raw),
                        format!("pagerduty sink `{name}` has no routing key"),
                        "add `routing_key_env: VAR` naming a variable that holds the integration key of an \
                         Events API v2 integration",
                    );
                }
                let endpoint = match &s.endpoint {
                    Some(e) => Some(self.http_url(&format!("{key}.endpoint"), e)?),
                    None => None,
                };
                Some(SinkSpec::PagerDuty {
                    routing_key: routing_key?,
                    endpoint,
                })
            }
            "email" => self.email(name, raw),
            other => {
                let fix = match did_you_mean(other, SINK_KINDS) {
                    Some(near) => format!("did you mean `kind: {near}`?"),
                    None => format!("use one of {}", backticked(SINK_KINDS)),
                };
                self.report(
                    pos(kind),
                    format!("unknown alert sink kind `{}`", other.escape_debug()),
                    fix,
                );
                None
            }
        }
    }

    fn http_url(&mut self, key: &str, v: &S<String>) -> Option<url::Url> {
        match url::Url::parse(v.value.trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.password().is_none() => Some(u),
            _ => {
                self.report(
                    pos(v),
                    format!("`{key}` is not an http(s) URL without credentials"),
                    "write e.g. `https://events.pagerduty.com/v2/enqueue`",
                );
                None
            }
        }
    }

    fn email(&mut self, name: &str, raw: &S<RawSink>) -> Option<SinkSpec> {
        let s = &raw.value;
        let key = format!("alerts.sinks.{name}");
        let server = match &s.server {
            None => {
                self.report(
                    pos(raw),
                    format!("email sink `{name}` has no `server`"),
                    "add e.g. `server: smtp://mail.internal:587`",
                );
                None
            }
            Some(v) => match url::Url::parse(v.value.trim()) {
                Ok(u) if u.scheme() == "smtp" && u.host_str().is_some() && u.password().is_none() => Some(u),
                _ => {
                    self.report(
                        pos(v),
                        format!("`{key}.server` must be `smtp://HOST:PORT` (credentials go in username/password_env)"),
                        "write e.g. `server: smtp://mail.internal:587`",
                    );
                    None
                }
            },
        };
        let tls = match &s.tls {
            None => Some(SmtpTls::StartTls),
            Some(t) => match t.value.trim() {
                "starttls" => Some(SmtpTls::StartTls),
                "tls" => Some(SmtpTls::Tls),
                "none" => Some(SmtpTls::None),
                other => {
                    self.report(
                        pos(t),
                        format!("`{key}.tls: {}` is not known", other.escape_debug()),
                        "write `tls: starttls` (port 587, the default), `tls: tls` (port 465) or `tls: none` \
                         (a relay on this host only)",
                    );
                    None
                }
            },
        };
        let password = self.secret_ref(
            "password",
            &s.password_env,
            &s.password_file,
            format!("{key}.password"),
            Target::Secret,
        );
        let address = |v: &mut Self, what: &str, a: &S<String>| {
            let text = a.value.trim();
            if text.parse::<lettre::message::Mailbox>().is_ok() {
                Some(text.to_owned())
            } else {
                v.report(
                    pos(a),
                    format!("`{key}.{what}`: `{}` is not an email address", text.escape_debug()),
                    "write a plain address such as `lifeboat@example.com`",
                );
                None
            }
        };
        let from = match &s.from {
            Some(f) => address(self, "from", f),
            None => {
                self.report(
                    pos(raw),
                    format!("email sink `{name}` has no `from`"),
                    "add e.g. `from: lifeboat@example.com`",
                );
                None
            }
        };
        let to: Option<Vec<String>> = match &s.to {
            Some(list) if !list.value.is_empty() => list.value.iter().map(|a| address(self, "to", a)).collect(),
            other => {
                self.report(
                    other.as_ref().and_then(pos).or(pos(raw)),
                    format!("email sink `{name}` has no recipients"),
                    "add e.g. `to: [oncall@example.com]`",
                );
                None
            }
        };
        Some(SinkSpec::Email {
            server: server?,
            tls: tls?,
            username: s.username.as_ref().map(|u| u.value.trim().to_owned()),
            password,
            from: from?,
            to: to?,
        })
    }

    fn route(
        &mut self,
        name: &str,
        raw: &S<RawRoute>,
        sink_names: &[String],
        source_names: &[&str],
    ) -> Option<RouteSpec> {
        let r = &raw.value;
        let mut ok = true;
        let sinks: Vec<String> = match &r.sinks {
            Some(list) if !list.value.is_empty() => list
                .value
                .iter()
                .filter_map(|s| {
                    let wanted = s.value.trim();
                    if sink_names.iter().any(|n| n == wanted) {
                        return Some(wanted.to_owned());
                    }
                    let fix = match did_you_mean(wanted, sink_names.iter().map(String::as_str)) {
                        Some(near) => format!("did you mean `{near}`?"),
                        None => format!("define `{wanted}` under `alerts.sinks:`"),
                    };
                    self.report(
                        pos(s),
                        format!(
                            "route `{name}` sends to sink `{}`, which is not defined",
                            wanted.escape_debug()
                        ),
                        fix,
                    );
                    ok = false;
                    None
                })
                .collect(),
            other => {
                self.report(
                    other.as_ref().and_then(pos).or(pos(raw)),
                    format!("alert route `{name}` has no sinks"),
                    "add e.g. `sinks: [pagerduty]`",
                );
                return None;
            }
        };
        let min_severity = match &r.min_severity {
            None => SeverityFloor::Warning,
            Some(v) => match v.value.trim() {
                "info" => SeverityFloor::Info,
                "warning" => SeverityFloor::Warning,
                "critical" => SeverityFloor::Critical,
                other => {
                    self.report(
                        pos(v),
                        format!("unknown severity `{}`", other.escape_debug()),
                        format!("use one of {}", backticked(SEVERITIES)),
                    );
                    return None;
                }
            },
        };
        let mut sources = Vec::new();
        for glob in r.sources.iter().flat_map(|l| l.value.iter()) {
            let g = glob.value.trim();
            if !source_names.iter().any(|s| crate::alert::glob_match(g, s)) {
                self.report(
                    pos(glob),
                    format!("route `{name}`: `{}` matches no source", g.escape_debug()),
                    format!(
                        "use a source name or a glob such as `orders*`; sources are {}",
                        backticked(source_names.iter().copied())
                    ),
                );
                ok = false;
            }
            sources.push(g.to_owned());
        }
        ok.then_some(RouteSpec {
            sinks,
            min_severity,
            sources,
        })
    }
}

/// What the daemon's check of its alerting config ([`AlertsConfig::validate`], run when the
/// daemon starts) finds in a valid `alerts:` section once its secrets are resolved, located
/// with `places` (see `Validator::alert_places`). A secret that does not resolve is reported
/// by its own check; the sinks whose secrets do resolve are still checked, and the routes once
/// every sink resolves. Secret values are never shown: only where they come from.
pub(super) fn alert_problems(
    file: &Path,
    spec: &AlertsConfigSpec,
    places: &BTreeMap<String, Position>,
) -> Vec<Problem> {
    let alerts = AlertsConfig::from_spec(spec).unwrap_or_else(|_| AlertsConfig {
        sinks: spec
            .sinks
            .iter()
            .filter_map(|(name, s)| Some((name.clone(), SinkConfig::from_spec(s).ok()?)))
            .collect(),
        routes: BTreeMap::new(),
        reminder: spec.reminder,
        retry: RetryPolicy::default(),
    });
    let Err(found) = alerts.validate() else {
        return Vec::new();
    };
    found
        .into_iter()
        .map(|p| {
            // The closest key written in the file: the field, else its sink or route, else `alerts:`.
            let mut key = p.at.as_str();
            let at = loop {
                if let Some(at) = places.get(key) {
                    break Some(*at);
                }
                match key.rfind('.') {
                    Some(dot) => key = &key[..dot],
                    None if !key.is_empty() => key = "",
                    None => break None,
                }
            };
            let from = secret_source(spec, &p.at).map_or(String::new(), |s| {
                format!(" (the value of {} is not shown)", s.describe())
            });
            Problem::new(file, at, format!("`alerts.{}`: {}{from}", p.at, p.message), p.fix)
        })
        .collect()
}

/// The secret that the field at `at` (`sinks.NAME.FIELD`) holds, if it holds one.
fn secret_source<'a>(spec: &'a AlertsConfigSpec, at: &str) -> Option<&'a SecretRef> {
    let (name, field) = at.strip_prefix("sinks.")?.rsplit_once('.')?;
    match (spec.sinks.get(name)?, field) {
        (SinkSpec::Webhook { url }, "url") | (SinkSpec::Slack { url }, "webhook_url") => Some(url),
        (SinkSpec::PagerDuty { routing_key, .. }, "routing_key") => Some(routing_key),
        _ => None,
    }
}
