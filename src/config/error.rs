//! Problems found in a config file, and the error that carries them.
//!
//! Every problem says where (`file:line:column` when it can be known), what is wrong, and
//! what to do about it. Messages never contain secret values: they name the env var or the
//! file a secret comes from, never its contents.

use std::fmt;
use std::path::{Path, PathBuf};

/// A 1-based line and column in the config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

impl Position {
    /// Converts a serde-saphyr location; `None` for its "unknown" marker (line 0).
    pub(crate) fn from_saphyr(location: serde_saphyr::Location) -> Option<Position> {
        (location.line() > 0).then(|| Position {
            line: location.line(),
            column: location.column(),
        })
    }
}

/// One thing wrong with a config, with the fix.
///
/// `file` is `None` only for problems that are not tied to any file, e.g. an environment
/// variable that a lazily resolved secret names is missing (and [`crate::config::Config::check`]
/// re-attaches the config location to those).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: Option<PathBuf>,
    pub position: Option<Position>,
    /// What is wrong, as a sentence.
    pub message: String,
    /// What to do, as a sentence.
    pub fix: String,
}

impl Problem {
    pub(crate) fn new(
        file: &Path,
        position: Option<Position>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Problem {
        Problem {
            file: Some(file.to_path_buf()),
            position,
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// A problem with no file: used by secret resolution, which does not know the config.
    pub(crate) fn detached(message: impl Into<String>, fix: impl Into<String>) -> Problem {
        Problem {
            file: None,
            position: None,
            message: message.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.position) {
            (Some(file), Some(p)) => write!(f, "{}:{}:{}: ", file.display(), p.line, p.column)?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, _) => {}
        }
        write!(f, "{}\n  fix: {}", self.message, self.fix)
    }
}

/// Why a config could not be loaded, or a secret could not be resolved.
///
/// Holds at least one [`Problem`]. Syntax and type errors stop at the first one (the parser
/// cannot go on); semantic validation reports every problem it finds, so `check-config` can
/// show them all in one go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    problems: Vec<Problem>,
}

impl ConfigError {
    /// Panics (debug) on an empty list: an error with no problem would say nothing.
    pub(crate) fn from_problems(problems: Vec<Problem>) -> ConfigError {
        debug_assert!(!problems.is_empty());
        ConfigError { problems }
    }

    pub(crate) fn one(problem: Problem) -> ConfigError {
        ConfigError {
            problems: vec![problem],
        }
    }

    /// Every problem, in file order (problems without a position come last).
    pub fn all(&self) -> &[Problem] {
        &self.problems
    }

    pub fn into_problems(self) -> Vec<Problem> {
        self.problems
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Sorts problems into file order so output reads top to bottom whatever order the
/// validator visited things in (maps come out of the parser unordered).
pub(crate) fn sort_problems(problems: &mut [Problem]) {
    problems.sort_by_key(|p| (p.position.is_none(), p.position));
}

/// The closest candidate to `word`, if it is close enough to be a plausible typo.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // Allow roughly one edit per three characters, at least one, at most three.
    let budget = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= budget)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance counting a swap of two neighbouring letters as one edit ("dns" → "dsn"),
/// the most common typo in short keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// Renders a list of names as "`a`, `b`, `c`".
pub(crate) fn backticked<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_suggestions() {
        assert_eq!(did_you_mean("dns", ["kind", "dsn", "password_env"]), Some("dsn"));
        assert_eq!(did_you_mean("enviroment", ["environment"]), Some("environment"));
        assert_eq!(did_you_mean("zzz", ["kind", "dsn"]), None);
    }
}
