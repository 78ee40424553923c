//! Validation of what the shared-fate analysis reads: `fate:`, and a source's `data_dir:` and
//! `cloud_identity:`.

use std::path::PathBuf;

use chrono_tz::Tz;

use super::{Validator, pos};
use crate::config::check::Target;
use crate::config::control::{ControlConfig, TlsConfig};
use crate::config::fate::{CloudIdentityConfig, FateConfig};
use crate::config::raw::{RawCloudIdentity, RawFate, S};
use crate::config::secret::SecretRef;
use crate::schedule::Schedule;

impl Validator<'_> {
    /// `fate:`; `None` only when a value is invalid (a problem is reported).
    pub(super) fn fate(&mut self, raw: Option<&S<RawFate>>, zone: Tz) -> Option<FateConfig> {
        let mut fate = FateConfig::default();
        let Some(raw) = raw else { return Some(fate) };
        let r = &raw.value;
        let mut ok = true;
        if let Some(v) = &r.untested_after {
            match self.service_duration("fate.untested_after", v, false) {
                Some(d) => fate.untested_after = d,
                None => ok = false,
            }
        }
        if let Some(v) = &r.detect_within {
            match self.service_duration("fate.detect_within", v, false) {
                Some(d) => fate.detect_within = d,
                None => ok = false,
            }
        }
        if let Some(v) = &r.schedule {
            match Schedule::parse(&v.value, zone) {
                Ok(s) => fate.schedule = Some(s),
                Err(e) => {
                    self.report(pos(v), format!("`fate.schedule`: {}", e.message), e.fix);
                    ok = false;
                }
            }
        }
        if let Some(p) = &r.probe {
            fate.probe = p.value;
        }
        ok.then_some(fate)
    }

    /// `control:`.
    /// `control:`. `environments` are the sources' environments: an approval count for any other
    /// name is a typo that would leave the real environment at one approval.
    pub(super) fn control(
        &mut self,
        raw: Option<&S<crate::config::raw::RawControl>>,
        environments: &[&str],
    ) -> Option<ControlConfig> {
        let mut control = ControlConfig::default();
        let Some(raw) = raw else { return Some(control) };
        let r = &raw.value;
        let mut ok = true;
        if let Some(v) = &r.approval_ttl {
            match self.service_duration("control.approval_ttl", v, false) {
                Some(d) => control.approval_ttl = d,
                None => ok = false,
            }
        }
        if let Some(map) = &r.approvals {
            for (env, n) in &map.value {
                if !environments.contains(&env.value.as_str()) {
                    let mut known: Vec<&str> = environments.to_vec();
                    known.sort();
                    known.dedup();
                    let hint = crate::config::did_you_mean(&env.value, known.iter().copied())
                        .map(|m| format!("did you mean `{m}`? "))
                        .unwrap_or_default();
                    self.report(
                        pos(env),
                        format!("`control.approvals.{}`: no source has environment `{}`", env.value, env.value),
                        format!(
                            "{hint}name an environment of a source ({}); a misspelt one would leave the real one at a single approval",
                            known.join(", ")
                        ),
                    );
                    ok = false;
                } else if n.value == 0 || n.value > 5 {
                    self.report(
                        pos(n),
                        format!("`control.approvals.{}: {}` is out of range", env.value, n.value),
                        "write 1 to 5: the number of different principals who must approve a request in that \
                         environment (the requester never counts)",
                    );
                    ok = false;
                } else {
                    control.approvals.insert(env.value.clone(), n.value);
                }
            }
        }
        if let Some(tls) = &r.tls {
            let cert = self.path("control.tls.cert_file", &tls.value.cert_file);
            let key = self.path("control.tls.key_file", &tls.value.key_file);
            match (cert, key) {
                (Some(cert_file), Some(key_file)) => {
                    self.check(
                        "control.tls.key_file".into(),
                        pos(&tls.value.key_file),
                        Target::Secret(SecretRef::File(key_file.clone())),
                    );
                    control.tls = Some(TlsConfig { cert_file, key_file });
                }
                _ => ok = false,
            }
        }
        ok.then_some(control)
    }

    /// `sources.NAME.data_dir`: where the source's data directory is, as seen from this host.
    pub(super) fn data_dir(&mut self, raw: &S<String>) -> Option<PathBuf> {
        self.path("data_dir", raw)
    }

    /// `sources.NAME.cloud_identity`: both keys are required (an identity without a secret
    /// cannot be asked who it is).
    pub(super) fn cloud_identity(&mut self, source: &str, raw: &S<RawCloudIdentity>) -> Option<CloudIdentityConfig> {
        let c = &raw.value;
        let key = format!("sources.{source}.cloud_identity");
        let access_key_id = self.secret_ref(
            "access_key_id",
            &c.access_key_id_env,
            &c.access_key_id_file,
            format!("{key}.access_key_id"),
            Target::Secret,
        );
        let secret_access_key = self.secret_ref(
            "secret_access_key",
            &c.secret_access_key_env,
            &c.secret_access_key_file,
            format!("{key}.secret_access_key"),
            Target::Secret,
        );
        for (written, what, example) in [
            (
                c.access_key_id_env.is_some() || c.access_key_id_file.is_some(),
                "access key id",
                "access_key_id_env: ORDERS_CLOUD_KEY_ID",
            ),
            (
                c.secret_access_key_env.is_some() || c.secret_access_key_file.is_some(),
                "secret access key",
                "secret_access_key_env: ORDERS_CLOUD_SECRET",
            ),
        ] {
            if !written {
                self.report(
                    pos(raw),
                    format!("`{key}` has no {what}"),
                    format!(
                        "add `{example}` (or the `_file` form) naming where the credential of the cloud \
                         account that runs this source's servers and volumes is kept"
                    ),
                );
            }
        }
        let endpoint = match &c.endpoint {
            Some(e) => Some(self.endpoint(e)?),
            None => None,
        };
        let region = match &c.region {
            Some(g) if g.value.trim().is_empty() => {
                self.report(
                    pos(g),
                    format!("`{key}.region` is empty"),
                    "write e.g. `region: eu-west-1`, or remove it",
                );
                return None;
            }
            Some(g) => Some(g.value.trim().to_owned()),
            None => None,
        };
        Some(CloudIdentityConfig {
            access_key_id: access_key_id?,
            secret_access_key: secret_access_key?,
            endpoint,
            region,
        })
    }
}
