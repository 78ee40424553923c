//! Retention: which snapshots a policy keeps, and why. Pure: no storage, no clock.
//!
//! The rules are restic's. Snapshots are walked newest first. `keep_last N` keeps the N newest.
//! `keep_hourly/daily/weekly/monthly/yearly N` keeps the newest snapshot of each of the N most recent
//! hours/days/weeks/months/years *that have snapshots* (a week without a backup does not use up a
//! weekly slot). `keep_within D` keeps every snapshot taken within D of the newest snapshot (not of
//! the current time, so a source whose backups stopped does not lose its history to the clock). A
//! snapshot kept by several rules lists every rule. Unlike restic 0.14+, a rule with slots left over
//! does not also keep the oldest snapshot of its oldest bucket: the policy means what it says.
//!
//! Hours, days, weeks, months and years are those of the operator's clock: buckets are computed in a
//! given time zone. Weeks are ISO weeks (Monday first; the first week of a year is the one holding its
//! first Thursday). On the day clocks go back, the repeated hour is one hour (01:10 EDT and 01:10 EST
//! share a bucket); on the day they go forward, the skipped hour simply has no snapshots; either day
//! is one day, 25 or 23 hours long.

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

/// How many snapshots of a source to keep. Every field is optional; a policy with no rule (every
/// count absent or zero, no `keep_within`) keeps everything, and prune refuses to run with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot taken within this long before the newest one.
    pub keep_within: Option<Duration>,
}

impl RetentionPolicy {
    /// True when no rule would keep anything: such a policy is treated as "keep everything".
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(_, n)| *n == 0) && self.keep_within.is_none()
    }

    fn counts(&self) -> [(KeepReason, u32); 6] {
        [
            (KeepReason::Last, self.keep_last.unwrap_or(0)),
            (KeepReason::Hourly, self.keep_hourly.unwrap_or(0)),
            (KeepReason::Daily, self.keep_daily.unwrap_or(0)),
            (KeepReason::Weekly, self.keep_weekly.unwrap_or(0)),
            (KeepReason::Monthly, self.keep_monthly.unwrap_or(0)),
            (KeepReason::Yearly, self.keep_yearly.unwrap_or(0)),
        ]
    }

    /// The rules in config spelling, e.g. "keep_last 7, keep_daily 14, keep_within 2d".
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .counts()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(reason, n)| format!("keep_{reason} {n}"))
            .collect();
        if let Some(d) = self.keep_within {
            parts.push(format!("keep_within {}", describe_duration(d)));
        }
        if parts.is_empty() {
            "no rules".into()
        } else {
            parts.join(", ")
        }
    }
}

fn describe_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s > 0 && s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s > 0 && s.is_multiple_of(3_600) => format!("{}h", s / 3_600),
        _ if s > 0 && s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// Why a snapshot is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeepReason {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
    Within,
    /// The policy has no rule, so everything is kept.
    PolicyEmpty,
}

impl std::fmt::Display for KeepReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeepReason::Last => "last",
            KeepReason::Hourly => "hourly",
            KeepReason::Daily => "daily",
            KeepReason::Weekly => "weekly",
            KeepReason::Monthly => "monthly",
            KeepReason::Yearly => "yearly",
            KeepReason::Within => "within",
            KeepReason::PolicyEmpty => "policy-empty",
        })
    }
}

/// A snapshot as retention sees it: its id and the time it stands for (when its backup started, i.e.
/// the point in time its data shows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotTime {
    pub id: String,
    pub time: Timestamp,
}

/// One kept snapshot and every rule that keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    pub id: String,
    pub reasons: Vec<KeepReason>,
}

/// What a policy does to a list of snapshots. Both lists are newest first; together they hold every
/// snapshot once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub keep: Vec<Kept>,
    pub forget: Vec<String>,
}

/// Applies `policy` to the snapshots of one source, bucketing times in `tz`. A non-empty policy
/// always keeps the newest snapshot (every rule keeps the first snapshot it sees); an empty one
/// keeps everything.
pub fn plan(snapshots: &[SnapshotTime], policy: &RetentionPolicy, tz: &TimeZone) -> Plan {
    let mut sorted: Vec<&SnapshotTime> = snapshots.iter().collect();
    sorted.sort_by(|a, b| (b.time, &b.id).cmp(&(a.time, &a.id)));
    if policy.is_empty() {
        return Plan {
            keep: sorted
                .iter()
                .map(|s| Kept {
                    id: s.id.clone(),
                    reasons: vec![KeepReason::PolicyEmpty],
                })
                .collect(),
            forget: Vec::new(),
        };
    }
    let newest = sorted.first().map(|s| s.time);
    // Per rule: slots left, and the bucket of the last snapshot it kept.
    let mut rules: Vec<(KeepReason, u32, Option<i64>)> = policy
        .counts()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(reason, n)| (reason, n, None))
        .collect();
    let mut out = Plan::default();
    for (index, snapshot) in sorted.iter().enumerate() {
        let mut reasons = Vec::new();
        for (reason, left, last) in rules.iter_mut() {
            if *left == 0 {
                continue;
            }
            let bucket = bucket(*reason, snapshot.time, index, tz);
            if *last != Some(bucket) {
                *last = Some(bucket);
                *left -= 1;
                reasons.push(*reason);
            }
        }
        if let (Some(within), Some(newest)) = (policy.keep_within, newest) {
            // Saturating: an absurdly long window reaches back to the start of time, keeping all.
            let since = newest
                .checked_sub(jiff::SignedDuration::try_from(within).unwrap_or(jiff::SignedDuration::MAX))
                .unwrap_or(Timestamp::MIN);
            if snapshot.time >= since {
                reasons.push(KeepReason::Within);
            }
        }
        if reasons.is_empty() {
            out.forget.push(snapshot.id.clone());
        } else {
            out.keep.push(Kept {
                id: snapshot.id.clone(),
                reasons,
            });
        }
    }
    out
}

/// The bucket a snapshot falls in for a rule: equal numbers mean the same hour/day/week/...
fn bucket(reason: KeepReason, time: Timestamp, index: usize, tz: &TimeZone) -> i64 {
    let local = time.to_zoned_datetime(tz.clone());
    let (y, m, d, h) = (
        i64::from(local.year()),
        i64::from(local.month()),
        i64::from(local.day()),
        i64::from(local.hour()),
    );
    match reason {
        // Every snapshot is a bucket of its own.
        KeepReason::Last => index as i64,
        KeepReason::Hourly => ((y * 100 + m) * 100 + d) * 100 + h,
        KeepReason::Daily => (y * 100 + m) * 100 + d,
        KeepReason::Weekly => {
            let week = local.date().iso_week_date();
            i64::from(week.year()) * 100 + i64::from(week.week())
        }
        KeepReason::Monthly => y * 100 + m,
        KeepReason::Yearly => y,
        KeepReason::Within | KeepReason::PolicyEmpty => unreachable!("not a counted rule"),
    }
}

#[cfg(test)]
mod tests {
    use super::KeepReason::*;
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// Snapshots named by their own time, so expectations read as times.
    fn snaps(times: &[&str]) -> Vec<SnapshotTime> {
        times
            .iter()
            .map(|t| SnapshotTime {
                id: t.to_string(),
                time: ts(t),
            })
            .collect()
    }

    fn new_york() -> TimeZone {
        // The US rules since 2007, spelled out so the test does not depend on the system's tz database.
        TimeZone::posix("EST5EDT,M3.2.0,M11.1.0").unwrap()
    }

    struct Case {
        name: &'static str,
        times: &'static [&'static str],
        policy: RetentionPolicy,
        tz: TimeZone,
        keep: &'static [(&'static str, &'static [KeepReason])],
        forget: &'static [&'static str],
    }

    fn check(case: Case) {
        let got = plan(&snaps(case.times), &case.policy, &case.tz);
        let want = Plan {
            keep: case
                .keep
                .iter()
                .map(|(id, reasons)| Kept {
                    id: id.to_string(),
                    reasons: reasons.to_vec(),
                })
                .collect(),
            forget: case.forget.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(got, want, "case `{}`", case.name);
        // The input order must not matter.
        let mut reversed = snaps(case.times);
        reversed.reverse();
        assert_eq!(
            plan(&reversed, &case.policy, &case.tz),
            want,
            "case `{}` reversed",
            case.name
        );
    }

    fn p() -> RetentionPolicy {
        RetentionPolicy::default()
    }

    #[test]
    fn table() {
        let utc = TimeZone::UTC;
        let cases = vec![
            Case {
                name: "no snapshots",
                times: &[],
                policy: RetentionPolicy {
                    keep_last: Some(3),
                    ..p()
                },
                tz: utc.clone(),
                keep: &[],
                forget: &[],
            },
            Case {
                name: "empty policy keeps everything",
                times: &["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"],
                policy: p(),
                tz: utc.clone(),
                keep: &[
                    ("2024-01-02T00:00:00Z", &[PolicyEmpty]),
                    ("2024-01-01T00:00:00Z", &[PolicyEmpty]),
                ],
                forget: &[],
            },
            Case {
                name: "every count zero is empty too",
                times: &["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"],
                policy: RetentionPolicy {
                    keep_last: Some(0),
                    keep_daily: Some(0),
                    keep_yearly: Some(0),
                    ..p()
                },
                tz: utc.clone(),
                keep: &[
                    ("2024-01-02T00:00:00Z", &[PolicyEmpty]),
                    ("2024-01-01T00:00:00Z", &[PolicyEmpty]),
                ],
                forget: &[],
            },
            Case {
                name: "keep_last 2 of 4",
                times: &[
                    "2024-01-01T00:00:00Z",
                    "2024-01-01T01:00:00Z",
                    "2024-01-01T02:00:00Z",
                    "2024-01-01T03:00:00Z",
                ],
                policy: RetentionPolicy {
                    keep_last: Some(2),
                    ..p()
                },
                tz: utc.clone(),
                keep: &[("2024-01-01T03:00:00Z", &[Last]), ("2024-01-01T02:00:00Z", &[Last])],
                forget: &["2024-01-01T01:00:00Z", "2024-01-01T00:00:00Z"],
            },
            Case {
                name: "keep_last more than there are",
                times: &["2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"],
                policy: RetentionPolicy {
                    keep_last: Some(10),
                    ..p()
                },
                tz: utc.clone(),
                keep: &[("2024-01-01T01:00:00Z", &[Last]), ("2024-01-01T00:00:00Z", &[Last])],
                forget: &[],
            },
            Case {
                name: "keep_hourly keeps the newest of each hour",
                times: &[
                    "2024-05-01T10:05:00Z",
                    "2024-05-01T10:55:00Z",
                    "2024-05-01T11:10:00Z",
                    "2024-05-01T11:40:00Z",
                    "2024-05-01T13:00:00Z",
                ],
                policy: RetentionPolicy {
                    keep_hourly: Some(3),
                    ..p()
                },
                tz: utc.clone(),
                keep: &[
                    ("2024-05-01T13:00:00Z", &[Hourly]),
                    ("2024-05-01T11:40:00Z", &[Hourly]),
                    ("2024-05-01T10:55:00Z", &[Hourly]),
                ],
                forget: &["2024-05-01T11:10:00Z", "2024-05-01T10:05:00Z"],
            },
            Case {
                name: "keep_daily counts days that have snapshots, not calendar days",
                times: &[
                    "2024-01-01T12:00:00Z",
                    "2024-01-05T08:00:00Z",
                    "2024-01-05T20:00:00Z",
                    "2024-01-10T06:00:00Z",
                ],
                policy: RetentionPolicy {
                    keep_daily: Some(2),
                    ..p()
                },
                tz: utc.clone(),
                keep: &[("2024-01-10T06:00:00Z", &[Daily]), ("2024-01-05T20:00:00Z", &[Daily])],
                forget: &["2024-01-05T08:00:00Z", "2024-01-01T12:00:00Z"],
            },
            Case {
                // 2024-01-07 is a Sunday: ISO week 1 runs Monday 1 to Sunday 7, week 2 from Monday 8.
                name: "keep_weekly uses ISO weeks, Monday first",
                times: &["2024-01-07T12:00:00Z", "2024-01-08T12:00:00Z", "2024-01-14T12:00:00Z"],
                policy: RetentionPolicy {
                    keep_weekly: Some(2),
                    ..p()
                },
                tz: utc.clone(),
                keep: &[("2024-01-14T12:00:00Z", &[Weekly]), ("2024-01-07T12:00:00Z", &[Weekly])],
                forget: &["2024-01-08T12:00:00Z"],
            },
            Case {
                // Monday 2024-12-30 belongs to ISO week 2025-W01, with 2025-01-02; Sunday 29 to 2024-W52.
                name: "keep_weekly across an ISO year boundary",
                times: &["2024-12-29T12:00:00Z", "2024-12-30T12:00:00Z", "2025-01-02T12:00:00Z"],
                policy: RetentionPolicy {
                    keep_weekly: Some(2),
                    ..p()
                },
                tz: utc.clone(),
                keep: &[("2025-01-02T12:00:00Z", &[Weekly]), ("2024-12-29T12:00:00Z", &[Weekly])],
                forget: &["2024-12-30T12:00:00Z"],
            },
            Case {
                name: "keep_monthly and keep_yearly",
                times: &[
                    "2022-06-01T00:00:00Z",
                    "2023-02-01T00:00:00Z",
                    "2023-11-01T00:00:00Z",
                    "2023-11-20T00:00:00Z",
                    "2024-01-15T00:00:00Z",
                    "2024-03-01T00:00:00Z",
                ],
                policy: RetentionPolicy {
                    keep_monthly: Some(3),
                    keep_yearly: Some(3),
                    ..p()
                },
                tz: utc.clone(),
                keep: &[
                    ("2024-03-01T00:00:00Z", &[Monthly, Yearly]),
                    ("2024-01-15T00:00:00Z", &[Monthly]),
                    ("2023-11-20T00:00:00Z", &[Monthly, Yearly]),
                    ("2022-06-01T00:00:00Z", &[Yearly]),
                ],
                forget: &["2023-11-01T00:00:00Z", "2023-02-01T00:00:00Z"],
            },
            Case {
                name: "a snapshot kept by several rules lists them all",
                times: &[
                    "2024-02-26T09:00:00Z",
                    "2024-02-27T09:00:00Z",
                    "2024-02-28T09:00:00Z",
                    "2024-02-28T21:00:00Z",
                    "2024-03-04T09:00:00Z",
                ],
                policy: RetentionPolicy {
                    keep_last: Some(2),
                    keep_daily: Some(3),
                    keep_weekly: Some(2),
                    keep_monthly: Some(1),
                    ..p()
                },
                tz: utc.clone(),
                keep: &[
                    ("2024-03-04T09:00:00Z", &[Last, Daily, Weekly, Monthly]),
                    ("2024-02-28T21:00:00Z", &[Last, Daily, Weekly]),
                    ("2024-02-27T09:00:00Z", &[Daily]),
                ],
                forget: &["2024-02-28T09:00:00Z", "2024-02-26T09:00:00Z"],
            },
            Case {
                name: "keep_within counts back from the newest snapshot, not from now",
                times: &[
                    "2020-01-01T00:00:00Z",
                    "2020-01-09T00:00:00Z",
                    "2020-01-09T23:59:59Z",
                    "2020-01-10T00:00:00Z",
                ],
                policy: RetentionPolicy {
                    keep_within: Some(Duration::from_secs(86_400)),
                    ..p()
                },
                tz: utc.clone(),
                keep: &[
                    ("2020-01-10T00:00:00Z", &[Within]),
                    ("2020-01-09T23:59:59Z", &[Within]),
                    ("2020-01-09T00:00:00Z", &[Within]),
                ],
                forget: &["2020-01-01T00:00:00Z"],
            },
            Case {
                name: "keep_within 0 keeps only the newest",
                times: &["2020-01-01T00:00:00Z", "2020-01-01T00:00:01Z"],
                policy: RetentionPolicy {
                    keep_within: Some(Duration::ZERO),
                    ..p()
                },
                tz: utc.clone(),
                keep: &[("2020-01-01T00:00:01Z", &[Within])],
                forget: &["2020-01-01T00:00:00Z"],
            },
            Case {
                // In New York, 03:30Z on Nov 3 is 23:30 EDT on Nov 2; 04:30Z on Nov 3 is 00:30 EDT on Nov 3; 04:30Z on Nov 4 is 23:30 EST on Nov 3. The
                // 25-hour day holds the last two.
                name: "daily buckets in the operator's zone across the fall-back day",
                times: &["2024-11-03T03:30:00Z", "2024-11-03T04:30:00Z", "2024-11-04T04:30:00Z"],
                policy: RetentionPolicy {
                    keep_daily: Some(2),
                    ..p()
                },
                tz: new_york(),
                keep: &[("2024-11-04T04:30:00Z", &[Daily]), ("2024-11-03T03:30:00Z", &[Daily])],
                forget: &["2024-11-03T04:30:00Z"],
            },
            Case {
                name: "the same snapshots bucketed in UTC",
                times: &["2024-11-03T03:30:00Z", "2024-11-03T04:30:00Z", "2024-11-04T04:30:00Z"],
                policy: RetentionPolicy {
                    keep_daily: Some(2),
                    ..p()
                },
                tz: utc.clone(),
                keep: &[("2024-11-04T04:30:00Z", &[Daily]), ("2024-11-03T04:30:00Z", &[Daily])],
                forget: &["2024-11-03T03:30:00Z"],
            },
            Case {
                // 05:10Z and 05:50Z are 01:10 and 01:50 EDT; 06:10Z and 06:50Z are 01:10 and 01:50 EST;
                // 07:10Z is 02:10 EST. The repeated 01 hour is one bucket.
                name: "hourly on the fall-back day: the repeated hour is one hour",
                times: &[
                    "2024-11-03T05:10:00Z",
                    "2024-11-03T05:50:00Z",
                    "2024-11-03T06:10:00Z",
                    "2024-11-03T06:50:00Z",
                    "2024-11-03T07:10:00Z",
                ],
                policy: RetentionPolicy {
                    keep_hourly: Some(3),
                    ..p()
                },
                tz: new_york(),
                keep: &[("2024-11-03T07:10:00Z", &[Hourly]), ("2024-11-03T06:50:00Z", &[Hourly])],
                forget: &["2024-11-03T06:10:00Z", "2024-11-03T05:50:00Z", "2024-11-03T05:10:00Z"],
            },
            Case {
                // 05:00Z Mar 10 is 00:00 EST; 03:59Z Mar 11 is 23:59 EDT Mar 10: one 23-hour day. 06:30Z is
                // 01:30 EST and 07:30Z is 03:30 EDT: 02:xx does not exist, so they are neighbouring hours.
                name: "the spring-forward day is one day, its hours are the clock's",
                times: &[
                    "2024-03-10T04:59:00Z",
                    "2024-03-10T05:00:00Z",
                    "2024-03-10T06:30:00Z",
                    "2024-03-10T07:30:00Z",
                    "2024-03-11T03:59:00Z",
                ],
                policy: RetentionPolicy {
                    keep_daily: Some(2),
                    keep_hourly: Some(3),
                    ..p()
                },
                tz: new_york(),
                keep: &[
                    ("2024-03-11T03:59:00Z", &[Hourly, Daily]),
                    ("2024-03-10T07:30:00Z", &[Hourly]),
                    ("2024-03-10T06:30:00Z", &[Hourly]),
                    ("2024-03-10T04:59:00Z", &[Daily]),
                ],
                forget: &["2024-03-10T05:00:00Z"],
            },
            Case {
                // Sunday 23:30 in New York is already Monday in UTC: the zone decides the week too.
                name: "weekly buckets follow the zone",
                times: &["2024-01-08T04:30:00Z", "2024-01-08T12:00:00Z"],
                policy: RetentionPolicy {
                    keep_weekly: Some(2),
                    ..p()
                },
                tz: new_york(),
                keep: &[("2024-01-08T12:00:00Z", &[Weekly]), ("2024-01-08T04:30:00Z", &[Weekly])],
                forget: &[],
            },
        ];
        for case in cases {
            check(case);
        }
    }

    #[test]
    fn snapshots_at_the_same_instant_are_ordered_by_id() {
        let t = ts("2024-01-01T00:00:00Z");
        let list = vec![
            SnapshotTime {
                id: "a".into(),
                time: t,
            },
            SnapshotTime {
                id: "b".into(),
                time: t,
            },
        ];
        let policy = RetentionPolicy {
            keep_last: Some(1),
            ..p()
        };
        let got = plan(&list, &policy, &TimeZone::UTC);
        assert_eq!(got.keep[0].id, "b");
        assert_eq!(got.forget, vec!["a".to_string()]);
    }

    /// Every single rule at its smallest, over snapshots spread across years: each keeps the newest
    /// snapshot for a reason of its own, and keep and forget together hold every snapshot once.
    #[test]
    fn no_policy_forgets_the_newest_snapshot() {
        let mut times = Vec::new();
        let mut t = ts("2021-12-31T23:30:00Z");
        for step in 0..200i64 {
            times.push(SnapshotTime {
                id: format!("s{step:03}"),
                time: t,
            });
            t = t
                .checked_add(jiff::SignedDuration::from_mins(37 * (step % 50 + 1)))
                .unwrap();
        }
        let newest = times.last().unwrap().id.clone();
        let one = Some(1);
        let policies = [
            RetentionPolicy { keep_last: one, ..p() },
            RetentionPolicy {
                keep_hourly: one,
                ..p()
            },
            RetentionPolicy { keep_daily: one, ..p() },
            RetentionPolicy {
                keep_weekly: one,
                ..p()
            },
            RetentionPolicy {
                keep_monthly: one,
                ..p()
            },
            RetentionPolicy {
                keep_yearly: one,
                ..p()
            },
            RetentionPolicy {
                keep_within: Some(Duration::ZERO),
                ..p()
            },
        ];
        for tz in [TimeZone::UTC, new_york()] {
            for policy in &policies {
                let got = plan(&times, policy, &tz);
                assert_eq!(got.keep.len(), 1, "{}", policy.describe());
                assert_eq!(got.keep[0].id, newest, "{}", policy.describe());
                assert_ne!(got.keep[0].reasons, vec![PolicyEmpty]);
                assert_eq!(got.forget.len(), times.len() - 1);
            }
        }
    }

    #[test]
    fn describe_and_is_empty() {
        let policy = RetentionPolicy {
            keep_last: Some(7),
            keep_daily: Some(14),
            keep_weekly: Some(0),
            keep_within: Some(Duration::from_secs(2 * 86_400)),
            ..p()
        };
        assert_eq!(policy.describe(), "keep_last 7, keep_daily 14, keep_within 2d");
        assert!(!policy.is_empty());
        assert!(p().is_empty());
        assert_eq!(p().describe(), "no rules");
    }
}
