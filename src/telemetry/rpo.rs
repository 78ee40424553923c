//! `lifeboat_rpo_seconds`: the age of each source's newest restorable point, computed when Prometheus
//! scrapes. A stored gauge would freeze between events and hide a stalled backup schedule; this one
//! keeps growing until a newer point arrives, which is exactly what an RPO alert needs to see.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use jiff::Timestamp;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use super::definitions::{MetricUnit, RPO};

/// The newest restorable point per source, shared between the `Metrics` handle (which writes it)
/// and the registry (which reads it on every scrape).
#[derive(Debug, Default, Clone)]
pub(crate) struct RestorablePoints {
    points: Arc<RwLock<BTreeMap<String, Timestamp>>>,
}

impl RestorablePoints {
    pub(crate) fn set(&self, source: &str, at: Timestamp) {
        self.write().insert(source.to_owned(), at);
    }

    pub(crate) fn forget(&self, source: &str) {
        self.write().remove(source);
    }

    /// Seconds from each source's point to `now`; never negative (a point "in the future" means the
    /// clocks of the database and the daemon disagree, not that no data would be lost).
    pub(crate) fn ages_at(&self, now: Timestamp) -> Vec<(String, f64)> {
        let points = self.points.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        points
            .iter()
            .map(|(source, at)| {
                let age = now.duration_since(*at).as_secs_f64();
                (source.clone(), age.max(0.0))
            })
            .collect()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Timestamp>> {
        // A panic elsewhere while holding the lock leaves a map that is still whole: keep using it.
        self.points.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Collector for RestorablePoints {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let ages = self.ages_at(Timestamp::now());
        if ages.is_empty() {
            // Like an empty family: no series, no descriptor.
            return Ok(());
        }
        let unit = RPO.unit.map(MetricUnit::to_prometheus);
        let help = format!("{}.", RPO.help);
        let mut metric = encoder.encode_descriptor(RPO.registry_name(), &help, unit.as_ref(), MetricType::Gauge)?;
        for (source, age) in &ages {
            let labels = [("source", source.as_str())];
            ConstGauge::new(*age).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_is_measured_from_the_given_moment_and_never_negative() {
        let points = RestorablePoints::default();
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        points.set("orders", "2026-11-23T09:00:00Z".parse().unwrap());
        points.set("skewed", "2026-11-23T10:05:00Z".parse().unwrap());
        let ages = points.ages_at(now);
        assert_eq!(ages, vec![("orders".to_owned(), 3600.0), ("skewed".to_owned(), 0.0)]);

        let later = now.checked_add(jiff::SignedDuration::from_secs(90)).unwrap();
        assert_eq!(points.ages_at(later)[0].1, 3690.0);
    }

    #[test]
    fn a_newer_report_replaces_the_point_and_forget_removes_it() {
        let points = RestorablePoints::default();
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        points.set("orders", "2026-11-23T08:00:00Z".parse().unwrap());
        points.set("orders", "2026-11-23T09:59:00Z".parse().unwrap());
        assert_eq!(points.ages_at(now), vec![("orders".to_owned(), 60.0)]);
        points.forget("orders");
        assert!(points.ages_at(now).is_empty());
    }
}
