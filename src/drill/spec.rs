//! Drill files: `drills/*.yaml` → validated, typed [`DrillSpec`]s.
//!
//! Problems are reported exactly like the config file's ([`crate::config`]): each one says
//! `file:line:column`, what is wrong and a `fix:`. Unknown keys are errors. A file that
//! does not parse gives one problem (the parser cannot go on); everything else is collected,
//! so [`load_dir`] reports every problem of every file at once.
//!
//! The shape (`drills/README.md` documents every key):
//!
//! ```yaml
//! name: orders-nightly
//! source: orders                   # a source of the config
//! schedule: "0 3 * * *"            # optional; 5 crontab fields, or 6 with leading seconds
//! restore_point: latest            # latest | random: 7d | at: 2026-11-20T03:00:00Z
//! scratch:
//!   kind: ephemeral                # or `kind: server` with `dsn_env`/`dsn_file`
//! sla: {rto: 10m, rpo: 26h}
//! checks:
//!   - fingerprint: true
//!   - sql: "select count(*) from reservations"
//!     expect: ">= 1"
//!   - freshness: {sql: "select max(created_at) from reservations", within: 26h}
//!   - amcheck: true
//!   - command: ["./smoke.sh"]
//! alerts: [oncall]
//! ```

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::config::{
    Config, ConfigError, Position, Problem, SecretRef, Target, Validator, backticked, did_you_mean, pos, sort_problems,
    yaml_problem,
};

type S<T> = Spanned<T>;

// ---------------------------------------------------------------------------------------
// The typed drill
// ---------------------------------------------------------------------------------------

/// One validated drill file.
#[derive(Clone, Debug, PartialEq)]
pub struct DrillSpec {
    /// Unique among the drill files of a directory; lowercase letters, digits, `-`, `_`.
    pub name: String,
    /// The file it came from, as found (used in messages).
    pub file: PathBuf,
    /// A key of [`Config::sources`].
    pub source: String,
    /// A crontab line for the daemon: 5 fields, or 6 with leading seconds. Only the field
    /// count and characters are checked here; fields are separated by single spaces.
    pub schedule: Option<String>,
    pub restore_point: RestorePoint,
    pub scratch: ScratchSpec,
    pub sla: Sla,
    /// Never empty.
    pub checks: Vec<Check>,
    /// Alert route names, as written.
    pub alerts: Vec<String>,
}

/// Which snapshot the drill restores.
#[derive(Clone, Debug, PartialEq)]
pub enum RestorePoint {
    /// `latest`: the newest snapshot of the source.
    Latest,
    /// `random: 7d`: a snapshot picked at random among those taken within this long before
    /// the drill's start.
    Random { within: Duration },
    /// `at: 2026-11-20T03:00:00Z`: the newest snapshot taken at or before this instant.
    At(jiff::Timestamp),
}

/// Where the restore goes. Neither has a route to production.
#[derive(Clone, Debug, PartialEq)]
pub enum ScratchSpec {
    /// `kind: ephemeral`: a throwaway cluster on a Unix socket in a temp directory.
    Ephemeral,
    /// `kind: server`: a throwaway database on a scratch server.
    Server {
        /// A `postgres://` URL for the scratch server (from `dsn_env` or `dsn_file`; it may
        /// hold a password).
        dsn: SecretRef,
        /// The server's environment tag (lowercase letters, digits, `-`); never
        /// `production` (refused at load).
        environment: Option<String>,
    },
}

/// The published service levels the drill is measured against; `None` = not measured
/// against anything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sla {
    /// Longest acceptable time from the drill's start until the checks passed.
    pub rto: Option<Duration>,
    /// Oldest acceptable restored point, measured at the drill's start.
    pub rpo: Option<Duration>,
}

/// One verification run against the restored copy.
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    /// Per-table row counts equal those recorded at backup time.
    Fingerprint,
    /// A query returning one value, compared with `expect`.
    Sql { sql: String, expect: Expectation },
    /// A query returning a timestamp (e.g. `max(created_at)`) that must be no older than
    /// `within` at the drill's start.
    Freshness { sql: String, within: Duration },
    /// `amcheck` index verification, where the extension is available.
    Amcheck,
    /// A program run with `LIFEBOAT_SCRATCH_DSN` in its environment; passes on exit 0.
    /// A relative program path (one containing `/`) is resolved against the drill file's
    /// directory at load; a bare name is looked up on `PATH`.
    Command { argv: Vec<String> },
}

/// `expect:` of a `sql` check: an operator and a value.
#[derive(Clone, Debug, PartialEq)]
pub struct Expectation {
    pub op: CompareOp,
    pub value: ExpectedValue,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExpectedValue {
    /// Written as a number: `>= 1`, `= 0.5`.
    Number(f64),
    /// Written in quotes: `= 'booked'` (the quotes are not part of the value).
    Text(String),
}

const CHECK_KINDS: [&str; 5] = ["fingerprint", "sql", "freshness", "amcheck", "command"];

const DURATION_FORMS: &str = "write a whole number and a unit: `90s`, `10m`, `26h`, `7d`, or a combination \
     from the largest unit down such as `1h30m` (units: s, m, h, d; not zero)";

const EXPECT_FORMS: &str = "write an operator (`=`, `==`, `!=`, `<`, `<=`, `>`, `>=`; none means `=`) and a \
     number or a quoted text, e.g. `expect: \">= 1\"`, `expect: 0` or `expect: \"= 'booked'\"`; text \
     compares only with `=` and `!=`";

impl CompareOp {
    /// The operator as written in drill files (`==` reads back as `=`).
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }

    fn holds(self, ordering: Option<Ordering>) -> bool {
        match (self, ordering) {
            (_, None) => self == CompareOp::Ne,
            (CompareOp::Eq, Some(o)) => o == Ordering::Equal,
            (CompareOp::Ne, Some(o)) => o != Ordering::Equal,
            (CompareOp::Lt, Some(o)) => o == Ordering::Less,
            (CompareOp::Le, Some(o)) => o != Ordering::Greater,
            (CompareOp::Gt, Some(o)) => o == Ordering::Greater,
            (CompareOp::Ge, Some(o)) => o != Ordering::Less,
        }
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ExpectedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedValue::Number(n) => write!(f, "{n}"),
            ExpectedValue::Text(t) => write!(f, "'{t}'"),
        }
    }
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op, self.value)
    }
}

impl Expectation {
    /// Whether the value a query returned satisfies the expectation, as `actual OP value`.
    ///
    /// When both `actual` (trimmed) and the expected value read as finite numbers, they are
    /// compared as numbers (`"3.0" = 3`). Otherwise they are compared as text, exactly, and
    /// only `=` and `!=` can hold (`<` etc. are false for text).
    pub fn matches(&self, actual: &str) -> bool {
        let expected_number = match &self.value {
            ExpectedValue::Number(n) => Some(*n),
            ExpectedValue::Text(t) => number(t),
        };
        if let (Some(expected), Some(actual)) = (expected_number, number(actual)) {
            return self.op.holds(actual.partial_cmp(&expected));
        }
        let expected = match &self.value {
            ExpectedValue::Number(n) => n.to_string(),
            ExpectedValue::Text(t) => t.clone(),
        };
        match self.op {
            CompareOp::Eq => actual == expected,
            CompareOp::Ne => actual != expected,
            _ => false,
        }
    }
}

/// A finite number, or `None` (`"inf"` and `"NaN"` are not numbers here).
fn number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

impl FromStr for Expectation {
    /// Why the text is not an expectation, as a sentence fragment.
    type Err = String;

    /// Parses `expect:`: an optional operator (none means `=`) and a number or a quoted
    /// (`'...'` or `"..."`) text. Text takes only `=` and `!=`.
    fn from_str(text: &str) -> Result<Expectation, String> {
        let text = text.trim();
        // Longest operators first, so `>=` is not read as `>` followed by `=1`.
        const OPS: [(&str, CompareOp); 7] = [
            (">=", CompareOp::Ge),
            ("<=", CompareOp::Le),
            ("!=", CompareOp::Ne),
            ("==", CompareOp::Eq),
            ("=", CompareOp::Eq),
            ("<", CompareOp::Lt),
            (">", CompareOp::Gt),
        ];
        let (op, rest) = OPS
            .iter()
            .find_map(|(s, op)| text.strip_prefix(s).map(|rest| (*op, rest.trim())))
            .unwrap_or((CompareOp::Eq, text));
        if rest.is_empty() {
            return Err("it has no value to compare with".to_owned());
        }
        let quoted = ['\'', '"']
            .into_iter()
            .find(|q| rest.len() >= 2 && rest.starts_with(*q) && rest.ends_with(*q));
        let value = if let Some(q) = quoted {
            ExpectedValue::Text(rest[q.len_utf8()..rest.len() - q.len_utf8()].to_owned())
        } else if let Some(n) = number(rest) {
            ExpectedValue::Number(n)
        } else {
            return Err(format!(
                "`{}` is neither a number nor a quoted text",
                rest.escape_debug()
            ));
        };
        if matches!(value, ExpectedValue::Text(_)) && !matches!(op, CompareOp::Eq | CompareOp::Ne) {
            return Err(format!("text can only be compared with `=` or `!=`, not `{op}`"));
        }
        Ok(Expectation { op, value })
    }
}

impl Check {
    /// A short human label, e.g. `sql: select count(*) from reservations ... expect >= 1`.
    pub fn describe(&self) -> String {
        match self {
            Check::Fingerprint => "fingerprint".to_owned(),
            Check::Sql { sql, expect } => format!("sql: {} expect {expect}", shorten(sql)),
            Check::Freshness { sql, within } => {
                format!("freshness: {} within {}", shorten(sql), format_duration(*within))
            }
            Check::Amcheck => "amcheck".to_owned(),
            Check::Command { argv } => format!("command: {}", shorten(&argv.join(" "))),
        }
    }

    /// The kind as written in drill files: `fingerprint`, `sql`, `freshness`, `amcheck` or
    /// `command`.
    pub fn kind(&self) -> &'static str {
        match self {
            Check::Fingerprint => "fingerprint",
            Check::Sql { .. } => "sql",
            Check::Freshness { .. } => "freshness",
            Check::Amcheck => "amcheck",
            Check::Command { .. } => "command",
        }
    }
}

/// Whitespace collapsed, and cut at a word boundary with ` ...` when long.
fn shorten(text: &str) -> String {
    const MAX: usize = 40;
    let words: Vec<&str> = text.split_whitespace().collect();
    let full = words.join(" ");
    if full.chars().count() <= MAX {
        return full;
    }
    let mut out = String::new();
    for word in words {
        if !out.is_empty() && out.chars().count() + 1 + word.chars().count() > MAX {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    if out.chars().count() > MAX {
        // One very long first word.
        out = out.chars().take(MAX).collect();
    }
    out + " ..."
}

/// Parses a duration as written in drill files: whole numbers with a unit (`s`, `m`, `h`,
/// `d`), several from the largest unit down (`90s`, `10m`, `26h`, `7d`, `1h30m`). `None` for
/// zero, for anything else (no unit, a space, a fraction, a repeated or out-of-order unit)
/// and for values too large to represent.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut last_unit: Option<u64> = None;
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        if digits.is_empty() || last_unit.is_some_and(|last| unit >= last) {
            return None;
        }
        let n: u64 = digits.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        digits.clear();
        last_unit = Some(unit);
    }
    if !digits.is_empty() || total == 0 {
        return None;
    }
    Some(Duration::from_secs(total))
}

/// Formats a duration the way drill files write it (`26h`, `1h30m`, `7d`): days only for a
/// whole number of days; sub-second parts are dropped, and zero is `0s`.
pub fn format_duration(duration: Duration) -> String {
    let mut left = duration.as_secs();
    if left == 0 {
        return "0s".to_owned();
    }
    if left.is_multiple_of(86_400) {
        return format!("{}d", left / 86_400);
    }
    let mut out = String::new();
    for (unit, secs) in [("h", 3600), ("m", 60), ("s", 1)] {
        if left >= secs {
            out.push_str(&format!("{}{unit}", left / secs));
            left %= secs;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------

/// Loads every drill file (`*.yaml`, `*.yml`; hidden files skipped) in `dir`, in file-name
/// order, and returns the drills sorted by name. Reports every problem of every file at
/// once: a file that does not parse gives one problem, the others all of theirs; two files
/// with the same drill name are refused. An empty directory gives no drills; a missing one
/// is an error (it names `drills_dir`).
pub fn load_dir(dir: &Path, config: &Config) -> Result<Vec<DrillSpec>, ConfigError> {
    let files = drill_files(dir)?;
    let mut problems = Vec::new();
    let mut specs = Vec::new();
    // Drill name → where it was first defined.
    let mut names: BTreeMap<String, (PathBuf, Option<Position>)> = BTreeMap::new();
    for file in files {
        let parsed = match std::fs::read_to_string(&file) {
            Ok(text) => parse(&text, &file, config),
            Err(e) => Parsed {
                name: None,
                result: Err(vec![unreadable(&file, &e)]),
            },
        };
        if let Some((name, at)) = &parsed.name {
            if let Some((first_file, first_at)) = names.get(name) {
                let first = match first_at {
                    Some(p) => format!("{}:{}:{}", first_file.display(), p.line, p.column),
                    None => first_file.display().to_string(),
                };
                problems.push(Problem::new(
                    &file,
                    *at,
                    format!("drill name `{name}` is already used by {first}"),
                    "drill names must be unique in the drills directory: rename one of the two drills \
                     (or delete the copy)",
                ));
            } else {
                names.insert(name.clone(), (file.clone(), *at));
            }
        }
        match parsed.result {
            Ok(spec) => specs.push(spec),
            Err(mut found) => problems.append(&mut found),
        }
    }
    if !problems.is_empty() {
        // Files are visited in order; within each file, problems are in file order.
        let mut ordered: Vec<Problem> = Vec::with_capacity(problems.len());
        let mut by_file: BTreeMap<Option<PathBuf>, Vec<Problem>> = BTreeMap::new();
        for p in problems {
            by_file.entry(p.file.clone()).or_default().push(p);
        }
        for (_, mut list) in by_file {
            sort_problems(&mut list);
            ordered.append(&mut list);
        }
        return Err(ConfigError::from_problems(ordered));
    }
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(specs)
}

/// Loads one drill file.
pub fn load_file(path: &Path, config: &Config) -> Result<DrillSpec, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::one(unreadable(path, &e)))?;
    load_str(&text, path, config)
}

/// Parses and validates `text` as if it had been read from `origin` (used in messages and
/// as the base for relative paths; it need not exist).
pub fn load_str(text: &str, origin: &Path, config: &Config) -> Result<DrillSpec, ConfigError> {
    parse(text, origin, config).result.map_err(ConfigError::from_problems)
}

fn unreadable(path: &Path, e: &std::io::Error) -> Problem {
    Problem::new(
        path,
        None,
        format!("cannot read the drill file: {e}"),
        "make the file readable by the user running lifeboat",
    )
}

/// The drill files of `dir`, sorted by file name.
fn drill_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        let fix = if e.kind() == std::io::ErrorKind::NotFound {
            "create the directory and put drill files (`NAME.yaml`) in it, or set `drills_dir:` in the \
             config file to where they are (relative paths start at the config file's directory); \
             drills/README.md in the Lifeboat sources documents the format"
        } else {
            "make the directory readable by the user running lifeboat"
        };
        ConfigError::one(Problem::new(
            dir,
            None,
            format!("cannot read the drills directory: {e}"),
            fix,
        ))
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| {
            ConfigError::one(Problem::new(
                dir,
                None,
                format!("cannot list the drills directory: {e}"),
                "make the directory readable by the user running lifeboat",
            ))
        })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if !is_yaml || name.starts_with('.') || entry.path().is_dir() {
            continue;
        }
        files.push(entry.path());
    }
    files.sort();
    Ok(files)
}

/// What one file gave: its drill name with its position if the name itself is valid (even
/// when the rest is not, so duplicates are reported together with everything else), and the
/// drill or every problem found, in file order.
struct Parsed {
    name: Option<(String, Option<Position>)>,
    result: Result<DrillSpec, Vec<Problem>>,
}

fn parse(text: &str, file: &Path, config: &Config) -> Parsed {
    let raw: Option<S<RawDrill>> = match serde_saphyr::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            return Parsed {
                name: None,
                result: Err(vec![yaml_problem(&e, file)]),
            };
        }
    };
    let mut d = DrillValidator {
        v: Validator::new(file),
        config,
    };
    let (name, spec) = match &raw {
        Some(raw) => d.drill(raw),
        None => {
            d.v.report(
                None,
                "the drill file is empty",
                "write a drill in it (drills/README.md in the Lifeboat sources documents every key), \
                 or delete the file",
            );
            (None, None)
        }
    };
    let mut problems = d.v.problems;
    sort_problems(&mut problems);
    let result = match spec {
        Some(spec) if problems.is_empty() => Ok(spec),
        _ if problems.is_empty() => Err(vec![Problem::new(
            file,
            None,
            "the drill could not be validated",
            "report this as a Lifeboat bug, with the drill file",
        )]),
        _ => Err(problems),
    };
    Parsed { name, result }
}

// ---------------------------------------------------------------------------------------
// The file as written
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDrill {
    #[serde(default)]
    name: Option<S<String>>,
    #[serde(default)]
    source: Option<S<String>>,
    #[serde(default)]
    schedule: Option<S<String>>,
    #[serde(default)]
    restore_point: Option<S<RawRestorePoint>>,
    #[serde(default)]
    scratch: Option<S<RawScratch>>,
    #[serde(default)]
    sla: Option<S<RawSla>>,
    #[serde(default)]
    checks: Option<S<Vec<S<RawCheck>>>>,
    #[serde(default)]
    alerts: Option<S<Vec<S<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScratch {
    #[serde(default)]
    kind: Option<S<String>>,
    #[serde(default)]
    dsn_env: Option<S<String>>,
    #[serde(default)]
    dsn_file: Option<S<String>>,
    #[serde(default)]
    environment: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSla {
    #[serde(default)]
    rto: Option<S<String>>,
    #[serde(default)]
    rpo: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFreshness {
    #[serde(default)]
    sql: Option<S<String>>,
    #[serde(default)]
    within: Option<S<String>>,
}

/// `restore_point:` is a word (`latest`) or a one-entry mapping (`random: 7d`). Anything
/// else is judged by validation, so a wrong word gets a did-you-mean rather than a parser
/// message.
#[derive(Debug)]
enum RawRestorePoint {
    Word(String),
    Map(Vec<(S<String>, S<String>)>),
}

impl<'de> Deserialize<'de> for RawRestorePoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawRestorePoint;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`latest`, `random: DURATION` or `at: TIMESTAMP`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawRestorePoint, E> {
                Ok(RawRestorePoint::Word(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRestorePoint, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<S<String>>()? {
                    entries.push((key, map.next_value::<S<String>>()?));
                }
                Ok(RawRestorePoint::Map(entries))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// One entry of `checks:`: a mapping whose keys are judged by validation (so an unknown
/// kind gets a did-you-mean and does not hide other problems), or a bare word where a
/// mapping belongs (`- amcheck`).
#[derive(Debug, Default)]
struct RawCheck {
    bare: Option<String>,
    entries: Vec<(S<String>, RawCheckValue)>,
}

#[derive(Debug)]
enum RawCheckValue {
    Flag(S<RawFlag>),
    Text(S<String>),
    Freshness(S<RawFreshness>),
    Argv(S<RawArgv>),
    /// An unknown key; its value is skipped.
    Unknown,
}

/// `fingerprint:` / `amcheck:` take `true` or `false`; a word (`yes`, `on`) is caught to
/// say so rather than give a parser message.
#[derive(Debug)]
enum RawFlag {
    Bool(bool),
    Word(String),
}

impl<'de> Deserialize<'de> for RawFlag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawFlag;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`true` or `false`")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawFlag, E> {
                Ok(RawFlag::Bool(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawFlag, E> {
                Ok(RawFlag::Word(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawFlag, E> {
                Ok(RawFlag::Word(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawFlag, E> {
                Ok(RawFlag::Word(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawFlag, E> {
                Ok(RawFlag::Word(String::new()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// `command:` should be a list; a single string is caught to suggest the list.
#[derive(Debug)]
enum RawArgv {
    One(String),
    List(Vec<S<String>>),
}

impl<'de> Deserialize<'de> for RawCheck {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawCheck;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a check such as `fingerprint: true`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawCheck, E> {
                Ok(RawCheck {
                    bare: Some(v.to_owned()),
                    entries: Vec::new(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawCheck, A::Error> {
                let mut check = RawCheck::default();
                while let Some(key) = map.next_key::<S<String>>()? {
                    let value = match key.value.as_str() {
                        "fingerprint" | "amcheck" => RawCheckValue::Flag(map.next_value()?),
                        "sql" | "expect" => RawCheckValue::Text(map.next_value()?),
                        "freshness" => RawCheckValue::Freshness(map.next_value()?),
                        "command" => RawCheckValue::Argv(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            RawCheckValue::Unknown
                        }
                    };
                    check.entries.push((key, value));
                }
                Ok(check)
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawArgv {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawArgv;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list: the program and its arguments")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawArgv, E> {
                Ok(RawArgv::One(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawArgv, A::Error> {
                let mut argv = Vec::new();
                while let Some(arg) = seq.next_element::<S<String>>()? {
                    argv.push(arg);
                }
                Ok(RawArgv::List(argv))
            }
        }
        deserializer.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

/// Every step returns `Option`: `None` means absent or invalid, and invalid always comes
/// with a problem reported. The drill is built only when no problem was found.
struct DrillValidator<'a> {
    /// The config's validator, for its rules on names, paths, secrets and environments;
    /// its base is the drill file's directory.
    v: Validator<'a>,
    config: &'a Config,
}

impl DrillValidator<'_> {
    fn report(&mut self, at: Option<Position>, message: impl Into<String>, fix: impl Into<String>) {
        self.v.report(at, message, fix);
    }

    fn drill(&mut self, raw: &S<RawDrill>) -> (Option<(String, Option<Position>)>, Option<DrillSpec>) {
        let top = pos(raw);
        let r = &raw.value;
        let name = match &r.name {
            None => {
                let stem = self.v.file.file_stem().map(|s| s.to_string_lossy().into_owned());
                let example = stem.as_deref().unwrap_or("orders-nightly");
                self.report(
                    top,
                    "the drill has no `name`",
                    format!("add `name: {example}` (lowercase letters, digits, `-` and `_`; unique among the drills)"),
                );
                None
            }
            Some(n) => {
                let trimmed = S {
                    value: n.value.trim().to_owned(),
                    referenced: n.referenced,
                    defined: n.defined,
                };
                self.v.name("drill", &trimmed).then(|| (trimmed.value, pos(n)))
            }
        };
        let source = self.source(top, &r.source);
        let schedule = r.schedule.as_ref().and_then(|s| self.schedule(s));
        let restore_point = match &r.restore_point {
            None => Some(RestorePoint::Latest),
            Some(rp) => self.restore_point(rp),
        };
        let scratch = match &r.scratch {
            None => Some(ScratchSpec::Ephemeral),
            Some(s) => self.scratch(s),
        };
        let sla = match &r.sla {
            None => Some(Sla::default()),
            Some(s) => self.sla(s),
        };
        let checks = self.checks(top, &r.checks);
        let alerts = match &r.alerts {
            None => Some(Vec::new()),
            Some(a) => self.alerts(a),
        };

        let spec = (|| {
            Some(DrillSpec {
                name: name.clone()?.0,
                file: self.v.file.to_path_buf(),
                source: source?,
                schedule: match &r.schedule {
                    None => None,
                    Some(_) => Some(schedule?),
                },
                restore_point: restore_point?,
                scratch: scratch?,
                sla: sla?,
                checks: checks?,
                alerts: alerts?,
            })
        })();
        (name, spec)
    }

    fn source(&mut self, top: Option<Position>, raw: &Option<S<String>>) -> Option<String> {
        let configured: Vec<&str> = self.config.sources.keys().map(String::as_str).collect();
        let config_file = self.config.path.display().to_string();
        let Some(s) = raw else {
            let fix = match configured.as_slice() {
                [] => format!("add `source: NAME`, with NAME defined under `sources:` in {config_file}"),
                names => format!("add `source:` with one of {}", backticked(names.iter().copied())),
            };
            self.report(
                top,
                "the drill has no `source` (the database whose backups it restores)",
                fix,
            );
            return None;
        };
        let wanted = s.value.trim();
        if self.config.sources.contains_key(wanted) {
            return Some(wanted.to_owned());
        }
        let fix = match (did_you_mean(wanted, configured.iter().copied()), configured.as_slice()) {
            (Some(near), _) => format!("did you mean `source: {near}`?"),
            (None, []) => format!("define `{wanted}` under `sources:` in {config_file}"),
            (None, names) => format!(
                "use one of {}, or define `{wanted}` under `sources:` in {config_file}",
                backticked(names.iter().copied())
            ),
        };
        self.report(
            pos(s),
            format!(
                "source `{}` is not defined in the config ({config_file})",
                wanted.escape_debug()
            ),
            fix,
        );
        None
    }

    fn schedule(&mut self, s: &S<String>) -> Option<String> {
        const FORMS: &str = "write 5 crontab fields (minute hour day-of-month month day-of-week), e.g. \
                             `schedule: \"0 3 * * *\"` for 03:00 every day, or 6 with seconds first";
        let text = s.value.trim();
        if let Some(macro_name) = text.strip_prefix('@') {
            let equivalent = match macro_name {
                "hourly" => Some("0 * * * *"),
                "daily" | "midnight" => Some("0 0 * * *"),
                "weekly" => Some("0 0 * * 0"),
                "monthly" => Some("0 0 1 * *"),
                "yearly" | "annually" => Some("0 0 1 1 *"),
                _ => None,
            };
            let fix = match equivalent {
                Some(e) => format!("write the fields instead: `schedule: \"{e}\"`"),
                None => FORMS.to_owned(),
            };
            self.report(
                pos(s),
                format!("schedule `{}`: `@` shortcuts are not supported", text.escape_debug()),
                fix,
            );
            return None;
        }
        // Checked in UTC here; the daemon reads it in its own zone unless it starts with `CRON_TZ=`.
        match crate::schedule::Schedule::parse(text, chrono_tz::Tz::UTC) {
            Ok(_) => Some(text.split_whitespace().collect::<Vec<_>>().join(" ")),
            Err(e) => {
                self.report(pos(s), e.message, e.fix);
                None
            }
        }
    }

    fn duration(&mut self, key: &str, s: &S<String>) -> Option<Duration> {
        let parsed = parse_duration(&s.value);
        if parsed.is_none() {
            self.report(
                pos(s),
                format!("`{key}: {}` is not a duration", s.value.trim().escape_debug()),
                DURATION_FORMS,
            );
        }
        parsed
    }

    fn restore_point(&mut self, raw: &S<RawRestorePoint>) -> Option<RestorePoint> {
        const FORMS: &str = "write `restore_point: latest`, `restore_point: {random: 7d}` (a random snapshot \
                             from the last 7 days) or `restore_point: {at: 2026-11-20T03:00:00Z}`";
        const KINDS: [&str; 3] = ["latest", "random", "at"];
        let unknown = |word: &str| {
            (
                format!(
                    "unknown restore point `{}` (allowed: {})",
                    word.escape_debug(),
                    backticked(KINDS)
                ),
                match did_you_mean(word, KINDS) {
                    Some(near) => format!("did you mean `{near}`? {FORMS}"),
                    None => FORMS.to_owned(),
                },
            )
        };
        match &raw.value {
            RawRestorePoint::Word(word) => {
                let word = word.trim();
                if word == "latest" {
                    return Some(RestorePoint::Latest);
                }
                let (message, fix) = if word == "random" || word == "at" {
                    (format!("restore point `{word}` needs a value"), FORMS.to_owned())
                } else {
                    unknown(word)
                };
                self.report(pos(raw), message, fix);
                None
            }
            RawRestorePoint::Map(entries) => {
                let [(key, value)] = entries.as_slice() else {
                    self.report(
                        pos(raw),
                        "`restore_point` takes exactly one of `latest`, `random` or `at`",
                        FORMS,
                    );
                    return None;
                };
                match key.value.as_str() {
                    "random" => {
                        let within = self.duration("random", value)?;
                        Some(RestorePoint::Random { within })
                    }
                    "at" => match value.value.trim().parse::<jiff::Timestamp>() {
                        Ok(t) => Some(RestorePoint::At(t)),
                        Err(_) => {
                            self.report(
                                pos(value),
                                format!("`at: {}` is not a timestamp", value.value.trim().escape_debug()),
                                "write an RFC 3339 time with its UTC offset, e.g. `at: 2026-11-20T03:00:00Z` \
                                 or `at: 2026-11-20T04:00:00+01:00`",
                            );
                            None
                        }
                    },
                    "latest" => {
                        self.report(pos(key), "`latest` takes no value", "write `restore_point: latest`");
                        None
                    }
                    other => {
                        let (message, fix) = unknown(other);
                        self.report(pos(key), message, fix);
                        None
                    }
                }
            }
        }
    }

    fn scratch(&mut self, raw: &S<RawScratch>) -> Option<ScratchSpec> {
        const KINDS: [&str; 2] = ["ephemeral", "server"];
        let s = &raw.value;
        let kind = match &s.kind {
            None => {
                self.report(
                    pos(raw),
                    "`scratch` has no `kind`",
                    "add `kind: ephemeral` (a throwaway cluster on a Unix socket) or `kind: server` \
                     with `dsn_env: VAR` (a throwaway database on a scratch server)",
                );
                return None;
            }
            Some(k) => k,
        };
        match kind.value.trim() {
            "ephemeral" => {
                let mut ok = true;
                for (key, value) in [
                    ("dsn_env", &s.dsn_env),
                    ("dsn_file", &s.dsn_file),
                    ("environment", &s.environment),
                ] {
                    if let Some(v) = value {
                        ok = false;
                        self.report(
                            pos(v),
                            format!("`{key}` is for `kind: server`; an ephemeral scratch needs no server"),
                            format!("remove `{key}`, or write `kind: server` to restore onto a scratch server"),
                        );
                    }
                }
                ok.then_some(ScratchSpec::Ephemeral)
            }
            "server" => {
                let dsn = self
                    .v
                    .secret_ref("dsn", &s.dsn_env, &s.dsn_file, "scratch.dsn".to_owned(), Target::Secret);
                if s.dsn_env.is_none() && s.dsn_file.is_none() {
                    self.report(
                        pos(kind),
                        "a `server` scratch needs `dsn_env` or `dsn_file`",
                        "add `dsn_env: SCRATCH_PG_DSN` (an environment variable holding \
                         `postgres://user:pw@scratch-host:5432/postgres`) or `dsn_file: PATH` (mode 600)",
                    );
                }
                let environment = match &s.environment {
                    None => Some(None),
                    Some(e) => match self.v.environment(e) {
                        Some(env) if env == "production" => {
                            self.report(
                                pos(e),
                                "a scratch server must not be tagged `production`",
                                "restore drills onto a server that is not production (e.g. \
                                 `environment: scratch`), or use `kind: ephemeral`",
                            );
                            None
                        }
                        Some(env) => Some(Some(env)),
                        None => None,
                    },
                };
                Some(ScratchSpec::Server {
                    dsn: dsn?,
                    environment: environment?,
                })
            }
            other => {
                let fix = match did_you_mean(other, KINDS) {
                    Some(near) => format!("did you mean `kind: {near}`?"),
                    None => "write `kind: ephemeral` or `kind: server`".to_owned(),
                };
                self.report(
                    pos(kind),
                    format!(
                        "unknown scratch kind `{}` (allowed: {})",
                        other.escape_debug(),
                        backticked(KINDS)
                    ),
                    fix,
                );
                None
            }
        }
    }

    fn sla(&mut self, raw: &S<RawSla>) -> Option<Sla> {
        let rto = raw.value.rto.as_ref().map(|d| self.duration("rto", d));
        let rpo = raw.value.rpo.as_ref().map(|d| self.duration("rpo", d));
        Some(Sla {
            rto: rto.map_or(Some(None), |d| d.map(Some))?,
            rpo: rpo.map_or(Some(None), |d| d.map(Some))?,
        })
    }

    fn alerts(&mut self, raw: &S<Vec<S<String>>>) -> Option<Vec<String>> {
        let mut ok = true;
        let mut alerts = Vec::new();
        for a in &raw.value {
            let route = a.value.trim();
            if route.is_empty() {
                ok = false;
                self.report(
                    pos(a),
                    "an alert route is empty",
                    "write the route's name (e.g. `alerts: [oncall]`), or remove the entry",
                );
            } else if self.config.alerts.routes.contains_key(route) {
                alerts.push(route.to_owned());
            } else {
                // A drill whose failure pages nobody is worse than one without alerts: say so now.
                ok = false;
                let routes: Vec<&str> = self.config.alerts.routes.keys().map(String::as_str).collect();
                let fix = match (did_you_mean(route, routes.iter().copied()), routes.is_empty()) {
                    (Some(near), _) => format!("did you mean `{near}`?"),
                    (None, true) => format!(
                        "define the route under `alerts.routes:` in {} (with the sinks it sends to), or remove it here",
                        self.config.path.display()
                    ),
                    (None, false) => format!(
                        "use one of {}, or define `{route}` under `alerts.routes:`",
                        backticked(routes)
                    ),
                };
                self.report(
                    pos(a),
                    format!("alert route `{}` is not defined in the config", route.escape_debug()),
                    fix,
                );
            }
        }
        ok.then_some(alerts)
    }

    fn checks(&mut self, top: Option<Position>, raw: &Option<S<Vec<S<RawCheck>>>>) -> Option<Vec<Check>> {
        let Some(list) = raw else {
            self.report(
                top,
                "the drill has no `checks`, so it would prove only that a restore ran",
                "add `checks:` with at least `- fingerprint: true` (row counts per table match the \
                 backup); see drills/README.md for the others",
            );
            return None;
        };
        let mut ok = true;
        let mut checks = Vec::new();
        for item in &list.value {
            match self.check(item) {
                Some(Some(check)) => checks.push(check),
                Some(None) => {} // `fingerprint: false`, `amcheck: false`
                None => ok = false,
            }
        }
        if ok && checks.is_empty() {
            self.report(
                pos(list),
                "the drill has no checks, so it would prove only that a restore ran",
                "add at least `- fingerprint: true` (row counts per table match the backup)",
            );
            return None;
        }
        ok.then_some(checks)
    }

    /// `Some(None)`: a check switched off (`amcheck: false`).
    fn check(&mut self, item: &S<RawCheck>) -> Option<Option<Check>> {
        let raw = &item.value;
        let allowed = backticked(CHECK_KINDS);
        if let Some(word) = &raw.bare {
            let word = word.trim();
            let fix = match word {
                "fingerprint" | "amcheck" => format!("write `- {word}: true`"),
                "sql" => "write `- sql: \"select ...\"` with `expect: \">= 1\"` on the next line".to_owned(),
                "freshness" => "write `- freshness: {sql: \"select max(created_at) from t\", within: 26h}`".to_owned(),
                "command" => "write `- command: [\"./script.sh\"]`".to_owned(),
                _ => match did_you_mean(word, CHECK_KINDS) {
                    Some(near) => format!("did you mean `{near}`? Write e.g. `- fingerprint: true`"),
                    None => format!("write one of {allowed} as `kind: value`, e.g. `- fingerprint: true`"),
                },
            };
            self.report(
                pos(item),
                format!(
                    "check `{}` is not a `kind: value` entry (allowed kinds: {allowed})",
                    word.escape_debug()
                ),
                fix,
            );
            return None;
        }
        if raw.entries.is_empty() {
            self.report(
                pos(item),
                "empty check",
                format!("write one of {allowed}, e.g. `- fingerprint: true`, or remove the entry"),
            );
            return None;
        }

        let find = |name: &str| raw.entries.iter().find(|(k, _)| k.value == name);
        let has_sql = find("sql").is_some();
        let mut ok = true;
        let mut kinds: Vec<&S<String>> = Vec::new();
        for (key, value) in &raw.entries {
            match value {
                RawCheckValue::Unknown => {
                    ok = false;
                    if has_sql {
                        let fix = match did_you_mean(&key.value, ["sql", "expect"]) {
                            Some(near) => format!("did you mean `{near}`? Rename the key"),
                            None => "remove the key: a `sql` check has only `sql` and `expect`".to_owned(),
                        };
                        self.report(
                            pos(key),
                            format!(
                                "unknown key `{}` in a `sql` check (allowed keys: `sql`, `expect`)",
                                key.value.escape_debug()
                            ),
                            fix,
                        );
                    } else {
                        let fix = match did_you_mean(&key.value, CHECK_KINDS.into_iter().chain(["expect"])) {
                            Some(near) => format!("did you mean `{near}`? Rename the key"),
                            None => format!("use one of {allowed}"),
                        };
                        self.report(
                            pos(key),
                            format!(
                                "unknown check kind `{}` (allowed kinds: {allowed})",
                                key.value.escape_debug()
                            ),
                            fix,
                        );
                    }
                }
                _ if key.value == "expect" => {}
                _ => kinds.push(key),
            }
        }
        if kinds.len() > 1 {
            let names: Vec<&str> = kinds.iter().map(|k| k.value.as_str()).collect();
            self.report(
                pos(kinds[1]),
                format!("one check has several kinds: {}", backticked(names.iter().copied())),
                "make each its own list entry, each starting with `- ` (e.g. `- fingerprint: true` \
                 and `- amcheck: true` on separate lines)",
            );
            return None;
        }
        if let Some((expect_key, _)) = find("expect")
            && !has_sql
        {
            let fix = match kinds.first() {
                Some(kind) if kind.value == "freshness" => {
                    "a `freshness` check takes `within:` (inside `freshness:`), not `expect`: remove `expect`"
                        .to_owned()
                }
                Some(kind) => format!(
                    "`expect` belongs to a `sql` check, not to `{}`: remove `expect`, or make this \
                     a `sql` check with `sql: \"select ...\"`",
                    kind.value
                ),
                None => "add `sql: \"select ...\"` (a query returning one value) to this check, \
                         or remove `expect`"
                    .to_owned(),
            };
            self.report(pos(expect_key), "`expect` without `sql`", fix);
            return None;
        }
        if !ok {
            return None;
        }
        let Some(kind) = kinds.first() else {
            // Only unknown keys or a lone `expect`, both reported above.
            return None;
        };
        let value = &find(kind.value.as_str())?.1;
        match value {
            RawCheckValue::Flag(flag) => {
                let on = match &flag.value {
                    RawFlag::Bool(on) => *on,
                    RawFlag::Word(word) => {
                        self.report(
                            pos(flag),
                            format!(
                                "`{}` takes `true` or `false`, not `{}`",
                                kind.value,
                                word.trim().escape_debug()
                            ),
                            format!(
                                "write `- {0}: true` to run the check, or `- {0}: false` to leave it out",
                                kind.value
                            ),
                        );
                        return None;
                    }
                };
                Some(on.then_some(match kind.value.as_str() {
                    "fingerprint" => Check::Fingerprint,
                    _ => Check::Amcheck,
                }))
            }
            RawCheckValue::Text(sql) => {
                let sql = self.sql("sql", sql);
                let expect = match find("expect") {
                    Some((_, RawCheckValue::Text(e))) => self.expectation(e),
                    _ => {
                        self.report(
                            pos(kind),
                            "`sql` check without `expect`",
                            "add `expect:` on the next line, aligned with `sql:`, e.g. `expect: \">= 1\"` \
                             (operators `=`, `!=`, `<`, `<=`, `>`, `>=`; a number or a quoted text)",
                        );
                        None
                    }
                };
                Some(Some(Check::Sql {
                    sql: sql?,
                    expect: expect?,
                }))
            }
            RawCheckValue::Freshness(f) => self.freshness(f).map(Some),
            RawCheckValue::Argv(argv) => self.command(argv).map(Some),
            RawCheckValue::Unknown => None,
        }
    }

    fn sql(&mut self, key: &str, s: &S<String>) -> Option<String> {
        let sql = s.value.trim();
        if sql.is_empty() {
            self.report(
                pos(s),
                format!("`{key}` is empty"),
                format!("write a query after `{key}:`, e.g. `{key}: \"select count(*) from orders\"`"),
            );
            return None;
        }
        Some(sql.to_owned())
    }

    fn expectation(&mut self, e: &S<String>) -> Option<Expectation> {
        match e.value.parse::<Expectation>() {
            Ok(x) => Some(x),
            Err(why) => {
                self.report(
                    pos(e),
                    format!("`expect: {}` is not a comparison: {why}", e.value.trim().escape_debug()),
                    EXPECT_FORMS,
                );
                None
            }
        }
    }

    fn freshness(&mut self, raw: &S<RawFreshness>) -> Option<Check> {
        let f = &raw.value;
        let sql = match &f.sql {
            None => {
                self.report(
                    pos(raw),
                    "`freshness` has no `sql`",
                    "add `sql: \"select max(created_at) from TABLE\"` (a query returning one timestamp)",
                );
                None
            }
            Some(s) => self.sql("sql", s),
        };
        let within = match &f.within {
            None => {
                self.report(
                    pos(raw),
                    "`freshness` has no `within`",
                    format!("add `within: 26h` (how old the newest row may be); {DURATION_FORMS}"),
                );
                None
            }
            Some(w) => self.duration("within", w),
        };
        Some(Check::Freshness {
            sql: sql?,
            within: within?,
        })
    }

    fn command(&mut self, raw: &S<RawArgv>) -> Option<Check> {
        let list = match &raw.value {
            RawArgv::One(text) => {
                let words: Vec<String> = text
                    .split_whitespace()
                    .map(|w| format!("\"{}\"", w.escape_debug()))
                    .collect();
                let example = if words.is_empty() {
                    "[\"./smoke.sh\"]".to_owned()
                } else {
                    format!("[{}]", words.join(", "))
                };
                self.report(
                    pos(raw),
                    "`command` must be a list (the program, then each argument); it is run without a shell",
                    format!("write `command: {example}`"),
                );
                return None;
            }
            RawArgv::List(list) => list,
        };
        let Some(program) = list.first() else {
            self.report(
                pos(raw),
                "`command` is empty",
                "write the program and its arguments, e.g. `command: [\"./smoke.sh\"]`",
            );
            return None;
        };
        let program_text = program.value.trim();
        let program_path = if program_text.is_empty() {
            self.report(
                pos(program),
                "the command's program is empty",
                "write the program first, e.g. `command: [\"./smoke.sh\"]`",
            );
            None
        } else if program_text.contains('/') {
            // A path: relative ones start at the drill file's directory.
            let trimmed = S {
                value: program_text.to_owned(),
                referenced: program.referenced,
                defined: program.defined,
            };
            self.v
                .path("command", &trimmed)
                .map(|p| without_dot_components(&p).to_string_lossy().into_owned())
        } else {
            // A bare name is looked up on PATH when the check runs.
            Some(program_text.to_owned())
        };
        let mut argv = vec![program_path?];
        argv.extend(list[1..].iter().map(|a| a.value.clone()));
        Some(Check::Command { argv })
    }
}

/// `/a/./b/./c` → `/a/b/c` (`..` is kept: it may cross a symlink).
fn without_dot_components(path: &Path) -> PathBuf {
    path.components().filter(|c| *c != Component::CurDir).collect()
}
