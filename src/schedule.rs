//! Cron schedules as ops write them in crontab: 5 fields (minute hour day-of-month month day-of-week,
//! Sunday = 0 or 7, Monday = 1), or 6 with a leading seconds field for short intervals, evaluated in a
//! time zone. croner does the calendar work, including DST: a time that a spring-forward gap skips
//! runs once right after the gap, and a time that a fall-back fold repeats runs once, at its first
//! occurrence. (The `cron` crate numbers weekdays from Sunday = 1 and wants a seconds field, so the
//! same line would mean something else there than in the crontab it was copied from.)
//!
//! An expression may start with `CRON_TZ=Zone/Name ` (the cronie and Kubernetes convention) to pin
//! its own time zone; otherwise the zone comes from the caller (the source's or drill's
//! `timezone:`, then `daemon.timezone`, then UTC).

use std::fmt;

use chrono::TimeZone;
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed schedule. Cheap to clone.
#[derive(Clone)]
pub struct Schedule {
    /// The expression as written, without a `CRON_TZ=` prefix.
    expr: String,
    cron: Cron,
    tz: Tz,
}

/// Why an expression or a zone was refused, and how to write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError {
    pub message: String,
    pub fix: String,
}

const FORMS: &str = "write 5 crontab fields (minute hour day-of-month month day-of-week), e.g. \
                     \"0 3 * * *\" for 03:00 every day or \"*/15 * * * *\" every 15 minutes; \
                     or 6 fields with seconds first, e.g. \"*/30 * * * * *\"";

impl Schedule {
    /// Parses `expr`; `zone` is used unless the expression pins its own with `CRON_TZ=`.
    pub fn parse(expr: &str, zone: Tz) -> Result<Schedule, ScheduleError> {
        let text = expr.trim();
        let (tz, text) = match text.strip_prefix("CRON_TZ=").or_else(|| text.strip_prefix("TZ=")) {
            Some(rest) => {
                let (name, fields) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                (parse_zone(name)?, fields.trim())
            }
            None => (zone, text),
        };
        let fields: Vec<&str> = text.split_whitespace().collect();
        if !text.starts_with('@') && !matches!(fields.len(), 5 | 6) {
            return Err(ScheduleError {
                message: format!(
                    "schedule `{}` has {} fields; a schedule has 5 (or 6 with leading seconds)",
                    text.escape_debug(),
                    fields.len()
                ),
                fix: FORMS.into(),
            });
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(text).map_err(|e| ScheduleError {
            message: format!(
                "schedule `{}` is not a valid crontab expression: {e}",
                text.escape_debug()
            ),
            fix: FORMS.into(),
        })?;
        let schedule = Schedule {
            expr: fields.join(" "),
            cron,
            tz,
        };
        // An expression like "0 0 30 2 *" parses but never fires; a schedule that never runs is a
        // drill or a backup that silently never happens.
        let now = jiff::Timestamp::now();
        if schedule.next_after(now).is_none() {
            return Err(ScheduleError {
                message: format!("schedule `{}` never fires", schedule.expr.escape_debug()),
                fix: "check the day-of-month and month fields (e.g. February has no 30th)".into(),
            });
        }
        Ok(schedule)
    }

    /// The expression as written (fields separated by single spaces).
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The zone the expression is evaluated in.
    pub fn zone(&self) -> Tz {
        self.tz
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let local = self.to_local(t)?;
        let next = self.cron.find_next_occurrence(&local, false).ok()?;
        from_chrono(next)
    }

    /// The last occurrence at or before `t`.
    pub fn last_at_or_before(&self, t: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let local = self.to_local(t)?;
        let prev = self.cron.find_previous_occurrence(&local, true).ok()?;
        from_chrono(prev)
    }

    /// Occurrences in `(after, until]`, oldest first, at most `limit` of them (the newest ones when
    /// there are more): what a daemon that was down between the two instants missed.
    pub fn between(&self, after: jiff::Timestamp, until: jiff::Timestamp, limit: usize) -> Missed {
        let mut newest = Vec::new();
        let mut total = 0usize;
        let mut cursor = until;
        // Walk backwards from `until`, so the newest are kept when the list is cut.
        while let Some(t) = self.last_at_or_before(cursor) {
            if t <= after {
                break;
            }
            total += 1;
            if newest.len() < limit {
                newest.push(t);
            } else if total > 100_000 {
                // A seconds schedule over a long outage: the count is a lower bound.
                break;
            }
            cursor = t - jiff::SignedDuration::from_nanos(1);
        }
        newest.reverse();
        Missed { total, newest }
    }

    fn to_local(&self, t: jiff::Timestamp) -> Option<chrono::DateTime<Tz>> {
        let utc = chrono::DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond() as u32)?;
        Some(self.tz.from_utc_datetime(&utc.naive_utc()))
    }
}

/// The result of [`Schedule::between`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    /// How many occurrences fell in the interval.
    pub total: usize,
    /// The newest of them, oldest first.
    pub newest: Vec<jiff::Timestamp>,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?} in {})", self.expr, self.tz.name())
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tz == Tz::UTC {
            write!(f, "{}", self.expr)
        } else {
            write!(f, "{} ({})", self.expr, self.tz.name())
        }
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.expr == other.expr && self.tz == other.tz
    }
}

fn from_chrono(t: chrono::DateTime<Tz>) -> Option<jiff::Timestamp> {
    jiff::Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32).ok()
}

/// An IANA zone name such as `Europe/Berlin` or `UTC`.
pub fn parse_zone(name: &str) -> Result<Tz, ScheduleError> {
    let name = name.trim();
    name.parse::<Tz>().map_err(|_| {
        let lower = name.to_ascii_lowercase();
        let near = chrono_tz::TZ_VARIANTS
            .iter()
            .map(|z| z.name())
            .find(|z| z.to_ascii_lowercase() == lower || z.rsplit('/').next() == Some(name));
        ScheduleError {
            message: format!("unknown time zone `{}`", name.escape_debug()),
            fix: match near {
                Some(z) => format!("did you mean `{z}`?"),
                None => "write an IANA zone name such as `Europe/Berlin`, `America/New_York` or `UTC`".into(),
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn monday_is_one_as_in_crontab() {
        let s = Schedule::parse("0 3 * * 1", Tz::UTC).unwrap();
        // 2026-11-24 is a Tuesday: the next Monday is the 30th.
        assert_eq!(
            s.next_after(ts("2026-11-24T08:00:00Z")),
            Some(ts("2026-11-30T03:00:00Z"))
        );
        let sunday = Schedule::parse("0 3 * * 0", Tz::UTC).unwrap();
        assert_eq!(
            sunday.next_after(ts("2026-11-24T08:00:00Z")),
            Some(ts("2026-11-29T03:00:00Z"))
        );
        let seven = Schedule::parse("0 3 * * 7", Tz::UTC).unwrap();
        assert_eq!(
            seven.next_after(ts("2026-11-24T08:00:00Z")),
            Some(ts("2026-11-29T03:00:00Z"))
        );
    }

    #[test]
    fn optional_leading_seconds() {
        let s = Schedule::parse("*/20 * * * * *", Tz::UTC).unwrap();
        assert_eq!(
            s.next_after(ts("2026-11-24T08:00:05Z")),
            Some(ts("2026-11-24T08:00:20Z"))
        );
    }

    #[test]
    fn zone_and_dst() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let s = Schedule::parse("30 2 * * *", berlin).unwrap();
        // 2026-03-29: Berlin springs forward from 02:00 to 03:00; 02:30 does not exist that day and
        // the job runs once, right after the gap.
        let next = s.next_after(ts("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(next, ts("2026-03-29T01:00:00Z"));
        let after = s.next_after(next).unwrap();
        assert_eq!(after, ts("2026-03-30T00:30:00Z"));
        // 2026-10-25: 02:30 happens twice in Berlin; the job runs once.
        let first = s.next_after(ts("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(first, ts("2026-10-25T00:30:00Z"));
        let second = s.next_after(first).unwrap();
        assert_eq!(second, ts("2026-10-26T01:30:00Z"));
    }

    #[test]
    fn cron_tz_prefix_pins_the_zone() {
        let s = Schedule::parse("CRON_TZ=America/New_York 0 9 * * *", Tz::UTC).unwrap();
        assert_eq!(s.zone().name(), "America/New_York");
        assert_eq!(
            s.next_after(ts("2026-11-24T00:00:00Z")),
            Some(ts("2026-11-24T14:00:00Z"))
        );
    }

    #[test]
    fn occurrences_missed_while_down() {
        let s = Schedule::parse("0 */6 * * *", Tz::UTC).unwrap();
        let m = s.between(ts("2026-11-23T05:00:00Z"), ts("2026-11-24T07:00:00Z"), 2);
        // 06, 12, 18, 00, 06.
        assert_eq!(m.total, 5);
        assert_eq!(m.newest, vec![ts("2026-11-24T00:00:00Z"), ts("2026-11-24T06:00:00Z")]);
        let none = s.between(ts("2026-11-24T06:00:00Z"), ts("2026-11-24T07:00:00Z"), 2);
        assert_eq!(none.total, 0);
    }

    #[test]
    fn crontab_edge_cases() {
        let next = |expr: &str, after: &str| Schedule::parse(expr, Tz::UTC).unwrap().next_after(ts(after));
        // Day of month and day of week both restricted: either matches, as in crontab.
        // After Tue 2026-11-24: Fri 27th comes before the 13th of December.
        assert_eq!(
            next("0 0 13 * 5", "2026-11-24T08:00:00Z"),
            Some(ts("2026-11-27T00:00:00Z"))
        );
        assert_eq!(
            next("0 0 13 * 5", "2026-11-27T00:00:00Z"),
            Some(ts("2026-12-04T00:00:00Z"))
        );
        // Lists, ranges and steps.
        assert_eq!(
            next("5,35 8-10/2 * * *", "2026-11-24T08:06:00Z"),
            Some(ts("2026-11-24T08:35:00Z"))
        );
        assert_eq!(
            next("5,35 8-10/2 * * *", "2026-11-24T08:36:00Z"),
            Some(ts("2026-11-24T10:05:00Z"))
        );
        // Names for months and days, weekday ranges.
        assert_eq!(
            next("0 6 * JAN MON-FRI", "2026-11-24T08:00:00Z"),
            Some(ts("2027-01-01T06:00:00Z"))
        );
        // 29 February: the next leap year.
        assert_eq!(
            next("0 0 29 2 *", "2026-11-24T08:00:00Z"),
            Some(ts("2028-02-29T00:00:00Z"))
        );
        // The end of a month that has no 31st is skipped, not moved.
        assert_eq!(
            next("0 0 31 * *", "2026-11-24T08:00:00Z"),
            Some(ts("2026-12-31T00:00:00Z"))
        );
    }

    #[test]
    fn bad_expressions_say_why() {
        let e = Schedule::parse("0 3 * *", Tz::UTC).unwrap_err();
        assert!(e.message.contains("has 4 fields"), "{e:?}");
        let e = Schedule::parse("0 25 * * *", Tz::UTC).unwrap_err();
        assert!(e.message.contains("not a valid crontab expression"), "{e:?}");
        let e = Schedule::parse("0 0 30 2 *", Tz::UTC).unwrap_err();
        assert!(e.message.contains("never fires"), "{e:?}");
        let e = parse_zone("europe/berlin").unwrap_err();
        assert!(e.fix.contains("Europe/Berlin"), "{e:?}");
        let e = parse_zone("Berlin").unwrap_err();
        assert!(e.fix.contains("Europe/Berlin"), "{e:?}");
    }
}
