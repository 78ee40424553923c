//! Turning a YAML/serde error into a [`Problem`] with a fix.
//!
//! serde-saphyr knows the position of every error; we supply the wording. Messages from the
//! parser are used for pure syntax errors, but never for type errors: those quote the value,
//! and a value in the wrong place may be a pasted secret.

use std::path::Path;

use serde_saphyr::{Error, MessageFormatter, UserMessageFormatter};

use super::error::{Position, Problem, backticked, did_you_mean};

pub(crate) fn yaml_problem(err: &Error, file: &Path) -> Problem {
    let position = err.location().and_then(Position::from_saphyr);
    let inner = original(err);
    let (message, fix) = match inner {
        Error::SerdeUnknownField { field, expected, .. } => unknown_key(field, expected),
        Error::SerdeInvalidType {
            unexpected, expected, ..
        }
        | Error::SerdeInvalidValue {
            unexpected, expected, ..
        } => (
            format!("expected {expected} here, found {}", without_value(unexpected)),
            format!("write {expected} at this position (check the indentation, too)"),
        ),
        // The YAML is fine but the value has the wrong shape, e.g. a list where a string goes.
        Error::Unexpected { expected, .. } => {
            let what = if expected.contains("mapping") {
                "a mapping (`key: value` entries)"
            } else if expected.contains("sequence") {
                "a list"
            } else {
                "a single value"
            };
            (
                format!("wrong kind of value here: expected {what}"),
                format!(
                    "write {what} here; check the indentation too (lines indented under a key \
                     belong to that key)"
                ),
            )
        }
        // A scalar of the wrong type: `keep_last: seven`, `probe: yes-please`.
        Error::InvalidScalar { ty, .. } => {
            let what = scalar_kind(ty);
            (
                format!("expected {what} here"),
                format!("write {what} at this position"),
            )
        }
        Error::InvalidBooleanStrict { .. } => (
            "expected true or false here".to_owned(),
            "write true or false at this position".to_owned(),
        ),
        Error::SerdeMissingField { field, .. } => (
            format!("missing required key `{field}`"),
            format!("add `{field}: ...` here"),
        ),
        Error::DuplicateMappingKey { key, .. } => {
            let key = key.as_deref().unwrap_or("?");
            (
                format!("key `{key}` appears twice in the same mapping"),
                format!("keep one `{key}` and delete the other"),
            )
        }
        Error::Eof { .. } => (
            "the file ends in the middle of a value".to_owned(),
            "close the open quote, bracket or brace, or complete the last entry".to_owned(),
        ),
        other => (
            format!(
                "invalid YAML: {}",
                UserMessageFormatter.format_message(other).escape_debug()
            ),
            "fix the YAML at this position (usually indentation, a missing `:` \
             after a key, or an unclosed quote)"
                .to_owned(),
        ),
    };
    Problem::new(file, position, message, fix)
}

/// A Rust scalar type as a config file's reader knows it.
fn scalar_kind(ty: &str) -> String {
    match ty {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number (0 or more)".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "bool" => "true or false".to_owned(),
        "char" => "a single character".to_owned(),
        other => format!("a value of type {other}"),
    }
}

/// The error under any alias/snippet wrappers.
fn original(mut err: &Error) -> &Error {
    while let Error::AliasError { error, .. } | Error::WithSnippet { error, .. } = err {
        err = error;
    }
    err
}

/// Serde describes the found value as e.g. `string "hunter2"`; keep only the kind.
fn without_value(unexpected: &str) -> String {
    let kind = unexpected.split(['"', '`', '\'']).next().unwrap_or("").trim();
    if kind.is_empty() {
        "something else".to_owned()
    } else {
        format!("a {kind}")
    }
}

fn unknown_key(field: &str, expected: &[&'static str]) -> (String, String) {
    let section = section_of(expected);
    let message = format!(
        "unknown key `{field}`{section} (allowed keys: {})",
        backticked(expected.iter().copied())
    );
    // `password:` where `password_env`/`password_file` exist: an inline secret.
    let env_key = format!("{field}_env");
    let file_key = format!("{field}_file");
    let fix = if expected.contains(&env_key.as_str()) {
        format!(
            "secrets are never written in the config: replace `{field}:` with \
             `{env_key}: VAR` (an environment variable holding it) or `{file_key}: PATH` \
             (a file readable only by lifeboat's user, mode 600); if a real secret was \
             written here, treat it as exposed and rotate it"
        )
    } else if let Some(near) = did_you_mean(field, expected.iter().copied()) {
        format!("did you mean `{near}`? Rename the key")
    } else {
        "remove the key, or rename it to one of the allowed keys".to_owned()
    };
    (message, fix)
}

/// Names the mapping an unknown key was found in, from the keys it allows.
fn section_of(expected: &[&str]) -> &'static str {
    let has = |k: &str| expected.contains(&k);
    if has("sources") {
        " at the top level"
    } else if has("dsn") {
        " in a source"
    } else if has("endpoint") && has("url") {
        " in a repository"
    } else if has("access_key_id_env") {
        " in `cloud_identity`"
    } else if has("detect_within") {
        " in `fate`"
    } else if has("routing_key_env") {
        " in an alert sink"
    } else if has("recipients") {
        " in `encryption`"
    } else if has("url_env") {
        " in `catalog`"
    } else {
        ""
    }
}
