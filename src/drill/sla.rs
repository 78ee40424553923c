//! SLA compliance over recent drills: what dashboards and `lifeboat sla` show.

use serde::Serialize;

use super::result::Verdict;

/// One past drill run, as far as SLA figures care.
#[derive(Debug, Clone)]
pub struct Measured {
    pub verdict: Verdict,
    pub rto_seconds: Option<f64>,
    pub rpo_seconds: Option<f64>,
    pub finished_at: jiff::Timestamp,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SlaSummary {
    pub source: String,
    pub target_rto_seconds: Option<f64>,
    pub target_rpo_seconds: Option<f64>,
    pub drills: usize,
    pub last_verdict: Option<Verdict>,
    pub last_rto_seconds: Option<f64>,
    pub last_rpo_seconds: Option<f64>,
    pub rto_p50_seconds: Option<f64>,
    pub rto_p95_seconds: Option<f64>,
    /// Share of the recent runs whose verdict is `pass` (restored, checked, within the SLA).
    pub within_sla: Option<f64>,
}

/// The p-th percentile (0..=100) by nearest rank; `None` for no values.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}

/// Summarises runs (any order) against the targets.
pub fn summarize(source: &str, target_rto: Option<f64>, target_rpo: Option<f64>, runs: &[Measured]) -> SlaSummary {
    let mut runs = runs.to_vec();
    runs.sort_by_key(|r| r.finished_at);
    let last = runs.last();
    let rtos: Vec<f64> = runs.iter().filter_map(|r| r.rto_seconds).collect();
    let passed = runs.iter().filter(|r| r.verdict == Verdict::Pass).count();
    SlaSummary {
        source: source.to_string(),
        target_rto_seconds: target_rto,
        target_rpo_seconds: target_rpo,
        drills: runs.len(),
        last_verdict: last.map(|r| r.verdict),
        last_rto_seconds: last.and_then(|r| r.rto_seconds),
        last_rpo_seconds: last.and_then(|r| r.rpo_seconds),
        rto_p50_seconds: percentile(&rtos, 50.0),
        rto_p95_seconds: percentile(&rtos, 95.0),
        within_sla: (!runs.is_empty()).then(|| passed as f64 / runs.len() as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(10.0));
        assert_eq!(percentile(&v, 95.0), Some(19.0));
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn summary_counts_only_passes_as_within_sla() {
        let at = |s: i64| jiff::Timestamp::from_second(s).unwrap();
        let runs = vec![
            Measured {
                verdict: Verdict::Pass,
                rto_seconds: Some(100.0),
                rpo_seconds: Some(10.0),
                finished_at: at(1),
            },
            Measured {
                verdict: Verdict::SlaBreach,
                rto_seconds: Some(900.0),
                rpo_seconds: Some(20.0),
                finished_at: at(3),
            },
            Measured {
                verdict: Verdict::Fail,
                rto_seconds: None,
                rpo_seconds: Some(30.0),
                finished_at: at(2),
            },
        ];
        let s = summarize("orders", Some(600.0), None, &runs);
        assert_eq!(s.drills, 3);
        assert_eq!(s.last_verdict, Some(Verdict::SlaBreach));
        assert_eq!(s.last_rto_seconds, Some(900.0));
        assert_eq!(s.rto_p50_seconds, Some(100.0));
        assert!((s.within_sla.unwrap() - 1.0 / 3.0).abs() < 1e-9);
    }
}
