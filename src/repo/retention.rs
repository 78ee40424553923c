//! Retention: which snapshots a policy keeps, and why. Pure: no storage, no clock.
//!
//! The rules are restic's. Snapshots are walked newest first. `keep_last N` keeps the N newest.
//! `keep_hourly/daily/weekly/monthly/yearly N` keeps the newest snapshot of each of the N most recent
//! hours/days/weeks/months/years *that have snapshots* (a week without a backup does not use up a
//! weekly slot; a bucket is counted once even where the local clock runs back into it). `keep_within D` keeps every snapshot taken within D of the newest snapshot (not of
//! the current time, so a source whose backups stopped does not lose its history to the clock). A
//! snapshot kept by several rules lists every rule. Unlike restic 0.14+, a rule with slots left over
//! does not also keep the oldest snapshot of its oldest bucket: the policy means what it says.
//!
//! Hours, days, weeks, months and years are those of the operator's clock: buckets are computed in a
//! given time zone. Weeks are ISO weeks (Monday first; the first week of a year is the one holding its
//! first Thursday). On the day clocks go back, the repeated hour is one hour (01:10 EDT and 01:10 EST
//! share a bucket); on the day they go forward, the skipped hour simply has no snapshots; either day
//! is one day, 25 or 23 hours long.
//!
//! Besides the rules, [`Guards`] keep snapshots whatever the rules say: every snapshot younger than
//! `min_age` (counted back from the time prune runs, not from the newest snapshot), and the ones the
//! caller pins: the newest snapshot that passed a drill, and those a restore or drill is reading.
//! Guards only add: they never change what a rule keeps, so `keep_last 3` still keeps the 3 newest.

use std::collections::HashSet;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

/// How long prune leaves a forgotten snapshot tombstoned (hidden, but whole, and `--undelete` takes
/// it back) before it deletes it, unless the policy says otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(7 * 86_400);

/// How many snapshots of a source to keep. Every field is optional; a policy with no rule (every
/// count absent or zero, no `keep_within`) keeps everything, and prune refuses to run with it.
/// `min_age` and `grace` are no rules: they only protect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    #[serde(default)]
    pub keep_last: Option<u32>,
    #[serde(default)]
    pub keep_hourly: Option<u32>,
    #[serde(default)]
    pub keep_daily: Option<u32>,
    #[serde(default)]
    pub keep_weekly: Option<u32>,
    #[serde(default)]
    pub keep_monthly: Option<u32>,
    #[serde(default)]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot taken within this long before the newest one.
    #[serde(default, with = "text_duration")]
    pub keep_within: Option<Duration>,
    /// Never forget a snapshot younger than this (its age counted at the time prune runs), whatever
    /// the rules say: a burst of backups or a clock jump cannot push fresh snapshots out.
    #[serde(default, with = "text_duration")]
    pub min_age: Option<Duration>,
    /// Not used by [`plan`]: how long a forgotten snapshot stays tombstoned, and can be undeleted,
    /// before prune deletes it. `None` is [`DEFAULT_GRACE`].
    #[serde(default, with = "text_duration")]
    pub grace: Option<Duration>,
}

impl RetentionPolicy {
    /// True when no rule would keep anything: such a policy is treated as "keep everything".
    /// `min_age` and `grace` are no rules.
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(_, n)| *n == 0) && self.keep_within.is_none()
    }

    /// The grace period: `grace`, or [`DEFAULT_GRACE`].
    pub fn grace(&self) -> Duration {
        self.grace.unwrap_or(DEFAULT_GRACE)
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

    /// The rules in config spelling, e.g. "keep_last 7, keep_daily 14, keep_within 2d, min_age 1d"
    /// (the grace period is not a rule and not described here).
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
            return "no rules".into();
        }
        if let Some(d) = self.min_age {
            parts.push(format!("min_age {}", describe_duration(d)));
        }
        parts.join(", ")
    }
}

/// "90m", "36h", "14d", "2w", or sums like "1d12h".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration; write it like 90m, 36h, 14d or 2w (units s, m, h, d, w)");
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() || text.trim().is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// Serde for the API and the catalog: durations as text ("14d"), like the config and the CLI.
mod text_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::describe_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| super::parse_duration(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl RetentionPolicy {
    /// Each way `to` keeps less than `self`, e.g. "keep_daily 14 -> 7", "grace 7d -> 1d"; empty when
    /// `to` keeps at least as much by every rule. An absent count is 0, an absent grace the default.
    pub fn lowered_by(&self, to: &RetentionPolicy) -> Vec<String> {
        let mut lowered: Vec<String> = self
            .counts()
            .iter()
            .zip(to.counts())
            .filter(|((_, from), (_, to))| to < from)
            .map(|((reason, from), (_, to))| format!("keep_{reason} {from} -> {to}"))
            .collect();
        let durations = [
            ("keep_within", self.keep_within, to.keep_within),
            ("min_age", self.min_age, to.min_age),
            ("grace", Some(self.grace()), Some(to.grace())),
        ];
        for (name, from, to) in durations {
            let (from, to) = (from.unwrap_or_default(), to.unwrap_or_default());
            if to < from {
                lowered.push(format!(
                    "{name} {} -> {}",
                    describe_duration(from),
                    describe_duration(to)
                ));
            }
        }
        lowered
    }
}

/// "7d", "36h", "90m", "45s": the largest unit that divides the duration.
pub fn describe_duration(d: Duration) -> String {
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
    /// Younger than `min_age`.
    MinAge,
    /// The newest snapshot that passed a drill: the last one known to restore.
    LastDrilled,
    /// A restore or drill is reading it.
    InUse,
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
            KeepReason::MinAge => "min-age",
            KeepReason::LastDrilled => "last-drilled",
            KeepReason::InUse => "in-use",
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

/// What keeps snapshots besides the policy's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guards {
    /// The time `min_age` counts back from: when prune runs.
    pub now: Timestamp,
    /// Snapshots kept whatever the rules say, each with why ([`KeepReason::LastDrilled`],
    /// [`KeepReason::InUse`]). Ids that name no snapshot are ignored.
    pub pinned: Vec<(String, KeepReason)>,
}

impl Guards {
    /// No pins; `min_age` counted back from `now`.
    pub fn at(now: Timestamp) -> Guards {
        Guards {
            now,
            pinned: Vec::new(),
        }
    }
}

/// Applies `policy` to the snapshots of one source, bucketing times in `tz`, then adds what `guards`
/// keep. A non-empty policy always keeps the newest snapshot (every rule keeps the first snapshot it
/// sees); an empty one keeps everything. The result does not depend on the input's order, and
/// applying it again to the snapshots it keeps forgets nothing more.
pub fn plan(snapshots: &[SnapshotTime], policy: &RetentionPolicy, tz: &TimeZone, guards: &Guards) -> Plan {
    let mut sorted: Vec<&SnapshotTime> = snapshots.iter().collect();
    sorted.sort_by(|a, b| (b.time, &b.id).cmp(&(a.time, &a.id)));
    let newest = sorted.first().map(|s| s.time);
    // Per rule: slots left, and the buckets it has kept a snapshot of. A set rather than the last
    // bucket: where a zone's clock falls back across midnight, a day comes round twice.
    let mut rules: Vec<(KeepReason, u32, HashSet<i64>)> = policy
        .counts()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(reason, n)| (reason, n, HashSet::new()))
        .collect();
    // Saturating: an absurdly long window reaches back to the start of time, keeping all.
    let back = |from: Timestamp, span: Duration| {
        from.checked_sub(SignedDuration::try_from(span).unwrap_or(SignedDuration::MAX))
            .unwrap_or(Timestamp::MIN)
    };
    let within_since = match (policy.keep_within, newest) {
        (Some(within), Some(newest)) => Some(back(newest, within)),
        _ => None,
    };
    let younger_than = policy.min_age.map(|age| back(guards.now, age));
    let keeps_all = policy.is_empty();
    let mut out = Plan::default();
    for (index, snapshot) in sorted.iter().enumerate() {
        let mut reasons = Vec::new();
        for (reason, left, kept) in rules.iter_mut() {
            if *left == 0 {
                continue;
            }
            if kept.insert(bucket(*reason, snapshot.time, index, tz)) {
                *left -= 1;
                reasons.push(*reason);
            }
        }
        if within_since.is_some_and(|since| snapshot.time >= since) {
            reasons.push(KeepReason::Within);
        }
        if keeps_all {
            reasons.push(KeepReason::PolicyEmpty);
        }
        if younger_than.is_some_and(|since| snapshot.time > since) {
            reasons.push(KeepReason::MinAge);
        }
        for (id, reason) in &guards.pinned {
            if *id == snapshot.id && !reasons.contains(reason) {
                reasons.push(*reason);
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
        KeepReason::Within
        | KeepReason::PolicyEmpty
        | KeepReason::MinAge
        | KeepReason::LastDrilled
        | KeepReason::InUse => unreachable!("not a counted rule"),
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
        let got = plan(&snaps(case.times), &case.policy, &case.tz, &g());
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
            plan(&reversed, &case.policy, &case.tz, &g()),
            want,
            "case `{}` reversed",
            case.name
        );
    }

    fn p() -> RetentionPolicy {
        RetentionPolicy::default()
    }

    /// No pins, and a `now` before every snapshot in these tests (min_age is tested on its own).
    fn g() -> Guards {
        Guards::at(ts("2000-01-01T00:00:00Z"))
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
        let got = plan(&list, &policy, &TimeZone::UTC, &g());
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
                let got = plan(&times, policy, &tz, &g());
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
        let guarded = RetentionPolicy {
            min_age: Some(Duration::from_secs(36 * 3_600)),
            grace: Some(Duration::from_secs(60)),
            ..policy
        };
        assert_eq!(
            guarded.describe(),
            "keep_last 7, keep_daily 14, keep_within 2d, min_age 36h"
        );
        assert_eq!(guarded.grace(), Duration::from_secs(60));
        assert_eq!(p().grace(), DEFAULT_GRACE);
        let only_guards = RetentionPolicy {
            min_age: Some(Duration::from_secs(86_400)),
            grace: Some(Duration::ZERO),
            ..p()
        };
        assert!(only_guards.is_empty(), "min_age and grace keep nothing by themselves");
        assert_eq!(only_guards.describe(), "no rules");
    }

    #[test]
    fn min_age_and_pins_keep_what_the_rules_forget_and_change_no_rule() {
        let times = snaps(&[
            "2024-03-01T00:00:00Z",
            "2024-03-05T00:00:00Z",
            "2024-03-08T00:00:00Z",
            "2024-03-09T12:00:00Z",
            "2024-03-10T00:00:00Z",
        ]);
        let policy = RetentionPolicy {
            keep_last: Some(1),
            min_age: Some(Duration::from_secs(2 * 86_400)),
            ..p()
        };
        let guards = Guards {
            // 03-08T00:00 is exactly two days old: not younger than min_age.
            now: ts("2024-03-10T00:00:00Z"),
            pinned: vec![
                ("2024-03-01T00:00:00Z".into(), LastDrilled),
                ("2024-03-10T00:00:00Z".into(), InUse),
                ("2024-03-01T00:00:00Z".into(), LastDrilled),
                ("no-such-snapshot".into(), InUse),
            ],
        };
        let got = plan(&times, &policy, &TimeZone::UTC, &guards);
        let want = Plan {
            keep: vec![
                Kept {
                    id: "2024-03-10T00:00:00Z".into(),
                    reasons: vec![Last, MinAge, InUse],
                },
                Kept {
                    id: "2024-03-09T12:00:00Z".into(),
                    reasons: vec![MinAge],
                },
                Kept {
                    id: "2024-03-01T00:00:00Z".into(),
                    reasons: vec![LastDrilled],
                },
            ],
            forget: vec!["2024-03-08T00:00:00Z".into(), "2024-03-05T00:00:00Z".into()],
        };
        assert_eq!(got, want);
        // A snapshot dated after `now` (a host clock ahead) is younger than any min_age, even 0.
        let skewed = RetentionPolicy {
            min_age: Some(Duration::ZERO),
            ..policy
        };
        let got = plan(&times, &skewed, &TimeZone::UTC, &Guards::at(ts("2024-03-09T00:00:00Z")));
        assert_eq!(got.forget.len(), 3);
        assert_eq!(got.keep[1].reasons, vec![MinAge]);
    }

    #[test]
    fn a_day_the_clock_enters_twice_is_one_daily_slot() {
        // A made-up zone whose clocks fall back from 00:30 (UTC-2) to 23:30 of the day before (UTC-3) at
        // 02:30Z on 2025-03-30, so local dates go 29, 30, 29, 30: 01:50Z is 23:50 on the 29th, 02:20Z
        // 00:20 on the 30th, 02:40Z 23:40 on the 29th again and 03:10Z 00:10 on the 30th again.
        let tz = TimeZone::posix("<-03>3<-02>,M10.1.0/0,M3.5.0/0:30").unwrap();
        let times = snaps(&[
            "2025-03-30T01:50:00Z",
            "2025-03-30T02:20:00Z",
            "2025-03-30T02:40:00Z",
            "2025-03-30T03:10:00Z",
        ]);
        let policy = RetentionPolicy {
            keep_daily: Some(3),
            ..p()
        };
        let got = plan(&times, &policy, &tz, &g());
        let kept: Vec<&str> = got.keep.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(kept, ["2025-03-30T03:10:00Z", "2025-03-30T02:40:00Z"]);
    }

    /// Property tests: random histories (times over years, ties, clocks ahead of `now`), random
    /// policies and pins, zones with and without DST. Fixed seeds, so a failure repeats.
    mod properties {
        use std::collections::BTreeMap;

        use rand::rngs::StdRng;
        use rand::seq::SliceRandom;
        use rand::{RngExt, SeedableRng};

        use super::super::*;

        const ITERATIONS: u64 = 20_000;

        fn zones() -> Vec<(&'static str, TimeZone)> {
            let posix = |spec: &str| TimeZone::posix(spec).unwrap();
            vec![
                ("UTC", TimeZone::UTC),
                ("New York", posix("EST5EDT,M3.2.0,M11.1.0")),
                ("Berlin", posix("CET-1CEST,M3.5.0,M10.5.0/3")),
                ("Sydney", posix("AEST-10AEDT,M10.1.0,M4.1.0/3")),
                (
                    "Lord Howe (half-hour DST)",
                    posix("<+1030>-10:30<+11>-11,M10.1.0,M4.1.0"),
                ),
                (
                    "Santiago (changes at midnight)",
                    posix("<-04>4<-03>,M9.1.6/24,M4.1.6/24"),
                ),
                ("Kathmandu", posix("<+0545>-5:45")),
                ("falls back across midnight", posix("<-03>3<-02>,M10.1.0/0,M3.5.0/0:30")),
            ]
        }

        /// Snapshots over years with gaps from none (ties) to a year; or, one time in three, dense
        /// around a clock change of `tz`, where hours and days repeat or vanish.
        fn history(rng: &mut StdRng, tz: &TimeZone) -> Vec<SnapshotTime> {
            let n = rng.random_range(0..50);
            // Between 2014 and 2030.
            let mut t = Timestamp::from_second(rng.random_range(1_400_000_000..1_900_000_000)).unwrap();
            let around_a_change = rng.random_bool(0.35);
            if around_a_change && let Some(change) = tz.following(t).next() {
                t = change.timestamp() - SignedDuration::from_secs(rng.random_range(0..36 * 3_600));
            }
            let mut out = Vec::new();
            for _ in 0..n {
                let gap: i64 = match rng.random_range(0..6) {
                    _ if around_a_change => rng.random_range(0..90 * 60),
                    0 => 0,
                    1 => rng.random_range(1..3_600),
                    2 => rng.random_range(3_600..86_400),
                    3 => rng.random_range(86_400..8 * 86_400),
                    4 => rng.random_range(8 * 86_400..400 * 86_400),
                    _ => rng.random_range(1..6 * 3_600),
                };
                t = t.checked_add(SignedDuration::from_secs(gap)).unwrap();
                out.push(SnapshotTime {
                    id: format!("{:016x}", rng.random::<u64>()),
                    time: t,
                });
            }
            out
        }

        fn count(rng: &mut StdRng) -> Option<u32> {
            rng.random_bool(0.45).then(|| rng.random_range(0..6u32))
        }

        fn duration(rng: &mut StdRng, p: f64) -> Option<Duration> {
            rng.random_bool(p)
                .then(|| Duration::from_secs(rng.random_range(0..90 * 86_400)))
        }

        fn policy(rng: &mut StdRng) -> RetentionPolicy {
            RetentionPolicy {
                keep_last: count(rng),
                keep_hourly: count(rng),
                keep_daily: count(rng),
                keep_weekly: count(rng),
                keep_monthly: count(rng),
                keep_yearly: count(rng),
                keep_within: duration(rng, 0.25),
                min_age: duration(rng, 0.5),
                grace: None,
            }
        }

        fn guards(rng: &mut StdRng, history: &[SnapshotTime]) -> Guards {
            let newest = history.iter().map(|s| s.time).max().unwrap_or(Timestamp::UNIX_EPOCH);
            // Mostly after the newest snapshot; sometimes before it (a clock ahead on the backup host).
            let offset = rng.random_range(-2 * 86_400..400 * 86_400);
            let mut pinned = Vec::new();
            if !history.is_empty() && rng.random_bool(0.5) {
                let i = rng.random_range(0..history.len());
                pinned.push((history[i].id.clone(), KeepReason::LastDrilled));
            }
            if !history.is_empty() && rng.random_bool(0.2) {
                let i = rng.random_range(0..history.len());
                pinned.push((history[i].id.clone(), KeepReason::InUse));
            }
            if rng.random_bool(0.1) {
                pinned.push(("gone".into(), KeepReason::InUse));
            }
            Guards {
                now: newest.checked_add(SignedDuration::from_secs(offset)).unwrap(),
                pinned,
            }
        }

        /// The bucket of a rule as a civil value, computed apart from the implementation's numbers.
        #[derive(Debug, Clone, PartialEq, Eq)]
        enum Key {
            Index(usize),
            Hour(jiff::civil::Date, i8),
            Day(jiff::civil::Date),
            Week(i16, i8),
            Month(i16, i8),
            Year(i16),
        }

        fn key(reason: KeepReason, index: usize, time: Timestamp, tz: &TimeZone) -> Key {
            let z = time.to_zoned_datetime(tz.clone());
            match reason {
                KeepReason::Last => Key::Index(index),
                KeepReason::Hourly => Key::Hour(z.date(), z.hour()),
                KeepReason::Daily => Key::Day(z.date()),
                KeepReason::Weekly => {
                    let w = z.date().iso_week_date();
                    Key::Week(w.year(), w.week())
                }
                KeepReason::Monthly => Key::Month(z.year(), z.month()),
                KeepReason::Yearly => Key::Year(z.year()),
                _ => unreachable!(),
            }
        }

        /// Every reason that is true of each snapshot, straight from the definitions: a counted rule
        /// keeps a snapshot when no newer snapshot shares its bucket and fewer than N buckets hold
        /// newer snapshots.
        fn oracle(
            history: &[SnapshotTime],
            policy: &RetentionPolicy,
            tz: &TimeZone,
            guards: &Guards,
        ) -> BTreeMap<String, Vec<KeepReason>> {
            let mut sorted: Vec<&SnapshotTime> = history.iter().collect();
            sorted.sort_by(|a, b| (b.time, &b.id).cmp(&(a.time, &a.id)));
            let mut out: BTreeMap<String, Vec<KeepReason>> =
                sorted.iter().map(|s| (s.id.clone(), Vec::new())).collect();
            for (reason, n) in policy.counts() {
                if n == 0 {
                    continue;
                }
                let keys: Vec<Key> = sorted
                    .iter()
                    .enumerate()
                    .map(|(i, s)| key(reason, i, s.time, tz))
                    .collect();
                for (i, s) in sorted.iter().enumerate() {
                    let newest_of_bucket = !keys[..i].contains(&keys[i]);
                    let mut newer_buckets: Vec<&Key> = Vec::new();
                    for k in &keys[..i] {
                        if !newer_buckets.contains(&k) {
                            newer_buckets.push(k);
                        }
                    }
                    if newest_of_bucket && (newer_buckets.len() as u32) < n {
                        out.get_mut(&s.id).unwrap().push(reason);
                    }
                }
            }
            let newest = sorted.first().map(|s| s.time);
            for s in &sorted {
                let reasons = out.get_mut(&s.id).unwrap();
                if let (Some(within), Some(newest)) = (policy.keep_within, newest)
                    && newest.duration_since(s.time) <= SignedDuration::try_from(within).unwrap()
                {
                    reasons.push(KeepReason::Within);
                }
                if policy.is_empty() {
                    reasons.push(KeepReason::PolicyEmpty);
                }
                if let Some(min_age) = policy.min_age
                    && guards.now.duration_since(s.time) < SignedDuration::try_from(min_age).unwrap()
                {
                    reasons.push(KeepReason::MinAge);
                }
                for (id, reason) in &guards.pinned {
                    if *id == s.id && !reasons.contains(reason) {
                        reasons.push(*reason);
                    }
                }
                reasons.sort();
            }
            out
        }

        #[test]
        fn plans_keep_what_they_must_over_random_histories() {
            let zones = zones();
            for seed in 0..ITERATIONS {
                let mut rng = StdRng::seed_from_u64(seed);
                let (zone_name, tz) = &zones[rng.random_range(0..zones.len())];
                let history = history(&mut rng, tz);
                let policy = policy(&mut rng);
                let guards = guards(&mut rng, &history);
                let context = format!("seed {seed}, zone {zone_name}, policy {policy:?}, guards {guards:?}");
                let got = plan(&history, &policy, tz, &guards);

                let mut newest_first = history.clone();
                newest_first.sort_by(|a, b| (b.time, &b.id).cmp(&(a.time, &a.id)));
                let forgotten: std::collections::HashSet<&str> = got.forget.iter().map(String::as_str).collect();

                // Keep and forget split the history, newest first both.
                let mut all: Vec<&str> = got
                    .keep
                    .iter()
                    .map(|k| k.id.as_str())
                    .chain(forgotten.iter().copied())
                    .collect();
                all.sort();
                let mut ids: Vec<&str> = history.iter().map(|s| s.id.as_str()).collect();
                ids.sort();
                assert_eq!(all, ids, "{context}");
                let rank = |id: &str| newest_first.iter().position(|s| s.id == id).unwrap();
                assert!(
                    got.keep.windows(2).all(|w| rank(&w[0].id) < rank(&w[1].id)),
                    "{context}"
                );
                assert!(got.forget.windows(2).all(|w| rank(&w[0]) < rank(&w[1])), "{context}");

                // The newest snapshot is never forgotten.
                if let Some(newest) = newest_first.first() {
                    assert!(!forgotten.contains(newest.id.as_str()), "newest forgotten: {context}");
                }
                // Nothing younger than min_age is forgotten.
                if let Some(min_age) = policy.min_age {
                    for s in &history {
                        let age = guards.now.duration_since(s.time);
                        if age < SignedDuration::try_from(min_age).unwrap() {
                            assert!(!forgotten.contains(s.id.as_str()), "{} is {age:?} old: {context}", s.id);
                        }
                    }
                }
                // Pinned snapshots (last drilled, in use) are never forgotten.
                for (id, _) in &guards.pinned {
                    assert!(!forgotten.contains(id.as_str()), "pinned {id} forgotten: {context}");
                }
                // keep_last N: exactly the N newest carry `last`.
                if let Some(n) = policy.keep_last.filter(|n| *n > 0) {
                    let with_last: Vec<&str> = got
                        .keep
                        .iter()
                        .filter(|k| k.reasons.contains(&KeepReason::Last))
                        .map(|k| k.id.as_str())
                        .collect();
                    let n_newest: Vec<&str> = newest_first.iter().take(n as usize).map(|s| s.id.as_str()).collect();
                    assert_eq!(with_last, n_newest, "{context}");
                }
                // Every reason given is true, and every snapshot something keeps is kept.
                let truth = oracle(&history, &policy, tz, &guards);
                for k in &got.keep {
                    let mut reasons = k.reasons.clone();
                    reasons.sort();
                    assert!(!reasons.is_empty(), "{context}");
                    assert_eq!(reasons, truth[&k.id], "reasons of {}: {context}", k.id);
                }
                for id in &got.forget {
                    assert!(truth[id].is_empty(), "{id} forgotten though {:?}: {context}", truth[id]);
                }

                // The input order does not matter.
                let mut shuffled = history.clone();
                shuffled.shuffle(&mut rng);
                assert_eq!(plan(&shuffled, &policy, tz, &guards), got, "shuffled: {context}");

                // Applying the plan again forgets nothing more, for the same reasons.
                let kept: Vec<SnapshotTime> = history
                    .iter()
                    .filter(|s| !forgotten.contains(s.id.as_str()))
                    .cloned()
                    .collect();
                let again = plan(&kept, &policy, tz, &guards);
                assert!(
                    again.forget.is_empty(),
                    "second pass forgets {:?}: {context}",
                    again.forget
                );
                assert_eq!(again.keep, got.keep, "second pass: {context}");
            }
        }

        /// keep_last alone, no guards: exactly the N newest stay, whatever the history.
        #[test]
        fn keep_last_alone_keeps_exactly_the_newest_n() {
            for seed in 0..ITERATIONS {
                let mut rng = StdRng::seed_from_u64(1_000_000 + seed);
                let history = history(&mut rng, &TimeZone::UTC);
                let n = rng.random_range(1..8u32);
                let policy = RetentionPolicy {
                    keep_last: Some(n),
                    ..RetentionPolicy::default()
                };
                let got = plan(&history, &policy, &TimeZone::UTC, &Guards::at(Timestamp::MIN));
                assert_eq!(got.keep.len(), history.len().min(n as usize), "seed {seed}");
                assert_eq!(
                    got.forget.len(),
                    history.len().saturating_sub(n as usize),
                    "seed {seed}"
                );
            }
        }
    }
}
