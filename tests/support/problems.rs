//! Assertions on config and drill-file problems.

use lifeboat::config::{Position, Problem};

#[allow(dead_code)]
pub fn at(line: u64, column: u64) -> Option<Position> {
    Some(Position { line, column })
}

/// The problem whose message contains `needle`; fails listing all problems otherwise.
#[allow(dead_code)]
pub fn find<'a>(problems: &'a [Problem], needle: &str) -> &'a Problem {
    problems.iter().find(|p| p.message.contains(needle)).unwrap_or_else(|| {
        let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
        panic!("no problem mentions {needle:?}; got:\n{}", all.join("\n"))
    })
}
