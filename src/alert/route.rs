//! Which sinks an alert goes to.

use std::collections::{BTreeMap, BTreeSet};

use super::config::RouteConfig;
use super::event::Alert;

/// The sinks that `alert` goes to, and the explicit route names it carries that are not
/// configured (for the caller to log).
///
/// With explicit routes, each named route whose minimum severity the alert reaches; source
/// globs do not apply (the drill chose the route). Without, every route whose minimum severity
/// the alert reaches and whose source globs match (no globs: any source). A route in `off`
/// (switched off through an approved request) takes nothing, and is not unknown either.
pub(crate) fn select_sinks<'a>(
    routes: &BTreeMap<String, RouteConfig>,
    off: &BTreeSet<String>,
    alert: &'a Alert,
) -> (BTreeSet<String>, Vec<&'a str>) {
    let mut sinks = BTreeSet::new();
    let mut unknown = Vec::new();
    let mut take = |route: &RouteConfig| {
        if alert.severity() >= route.min_severity {
            sinks.extend(route.sinks.iter().cloned());
        }
    };
    if alert.routes().is_empty() {
        routes
            .iter()
            .filter(|(name, route)| !off.contains(*name) && source_matches(&route.sources, alert.source()))
            .for_each(|(_, route)| take(route));
    } else {
        for name in alert.routes() {
            match routes.get(name) {
                _ if off.contains(name) => {}
                Some(route) => take(route),
                None => unknown.push(name.as_str()),
            }
        }
    }
    (sinks, unknown)
}

fn source_matches(globs: &[String], source: Option<&str>) -> bool {
    if globs.is_empty() {
        return true;
    }
    source.is_some_and(|source| globs.iter().any(|glob| glob_match(glob, source)))
}

/// `*` matches any run of characters (also none), `?` exactly one; everything else itself.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it currently stands for the end of.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::event::{AlertKind, Severity};

    #[test]
    fn globs() {
        for (pattern, text, expected) in [
            ("orders*", "orders", true),
            ("orders*", "orders-eu", true),
            ("orders*", "billing", false),
            ("*-eu", "orders-eu", true),
            ("*-eu", "orders-us", false),
            ("o?ders", "orders", true),
            ("o?ders", "oders", false),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b", "xxbxxa", false),
            ("orders", "orders", true),
            ("orders", "orders2", false),
            ("*", "", true),
        ] {
            assert_eq!(glob_match(pattern, text), expected, "{pattern} ~ {text}");
        }
    }

    fn routes() -> BTreeMap<String, RouteConfig> {
        let route = |sinks: &[&str], min_severity, sources: &[&str]| RouteConfig {
            sinks: sinks.iter().map(|s| s.to_string()).collect(),
            min_severity,
            sources: sources.iter().map(|s| s.to_string()).collect(),
        };
        BTreeMap::from([
            ("all".to_owned(), route(&["log"], Severity::Info, &[])),
            ("oncall".to_owned(), route(&["pager"], Severity::Critical, &["orders*"])),
            ("team".to_owned(), route(&["chat"], Severity::Warning, &["billing"])),
        ])
    }

    fn names(set: &BTreeSet<String>) -> Vec<&str> {
        set.iter().map(String::as_str).collect()
    }

    #[test]
    fn implicit_routes_filter_by_severity_and_source() {
        let routes = routes();
        let alert = |severity, source: &str| Alert::new(AlertKind::BackupFailed, severity, "x").with_source(source);
        assert_eq!(
            names(&select_sinks(&routes, &BTreeSet::new(), &alert(Severity::Critical, "orders-eu")).0),
            ["log", "pager"]
        );
        assert_eq!(
            names(&select_sinks(&routes, &BTreeSet::new(), &alert(Severity::Warning, "orders-eu")).0),
            ["log"]
        );
        assert_eq!(
            names(&select_sinks(&routes, &BTreeSet::new(), &alert(Severity::Critical, "billing")).0),
            ["chat", "log"]
        );
        let sourceless = Alert::new(AlertKind::JobsMissed, Severity::Critical, "x");
        assert_eq!(names(&select_sinks(&routes, &BTreeSet::new(), &sourceless).0), ["log"]);
    }

    #[test]
    fn explicit_routes_ignore_source_globs_but_not_severity() {
        let routes = routes();
        let alert = Alert::new(AlertKind::DrillFailed, Severity::Critical, "x")
            .with_source("billing")
            .with_routes(["oncall", "nope"]);
        let (sinks, unknown) = select_sinks(&routes, &BTreeSet::new(), &alert);
        assert_eq!((names(&sinks), unknown), (vec!["pager"], vec!["nope"]));
        let warning = Alert::new(AlertKind::DrillFailed, Severity::Warning, "x").with_routes(["oncall"]);
        assert!(select_sinks(&routes, &BTreeSet::new(), &warning).0.is_empty());
    }
}
