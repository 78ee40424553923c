//! Errors of the catalog. Every message says what went wrong and what to do next, and none carries
//! a password: PostgreSQL targets appear only redacted (see [`redact_url`]) and driver messages
//! pass through a [`Scrubber`] before they are stored.

use std::fmt;

/// The fix suggested when the catalog's own data is in doubt: the catalog is history and cache, the
/// repository is the truth, so rebuilding from the repository is always a way out for snapshots.
const REBUILD: &str = "run `lifeboat catalog rebuild` to recreate snapshots from the repository";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The SQLite file (or its directory) could not be created or opened.
    #[error(
        "cannot open catalog at {path}: {detail}; fix: check that the state_dir exists, is a \
         directory and is writable by the user lifeboat runs as"
    )]
    OpenSqlite { path: String, detail: String },

    /// The PostgreSQL URL does not parse. `target` is already redacted.
    #[error(
        "invalid catalog URL {target}: {detail}; fix: write it as \
         postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
    )]
    InvalidUrl { target: String, detail: String },

    /// No connection to PostgreSQL. `target` is already redacted.
    #[error(
        "catalog database unreachable at {target}: {detail}; fix: check that PostgreSQL is \
         running and reachable from this host, and that the database, user and password in the \
         catalog URL are right"
    )]
    Unreachable { target: String, detail: String },

    /// Schema migrations could not be applied.
    #[error("cannot migrate catalog {target}: {detail}; fix: {fix}")]
    Migrate {
        target: String,
        detail: String,
        fix: &'static str,
    },

    /// A statement failed.
    #[error("catalog {op} failed on {target}: {detail}; fix: {fix}")]
    Query {
        op: &'static str,
        target: String,
        detail: String,
        fix: &'static str,
    },

    /// A value cannot be stored: the databases hold signed 64-bit integers.
    #[error(
        "{field} = {value} cannot be stored in the catalog (it holds {range}); fix: this is a \
         bug in what produced the record, please report it"
    )]
    OutOfRange {
        field: &'static str,
        value: String,
        range: &'static str,
    },

    /// A record that cannot be keyed, such as a snapshot without an id.
    #[error(
        "refusing to store {what}; fix: this is a bug in what produced the record, please \
         report it"
    )]
    InvalidRecord { what: &'static str },

    /// A stored value makes no sense to this version of lifeboat.
    #[error("catalog {target} holds {what}; fix: {fix}")]
    Corrupt {
        target: String,
        what: String,
        fix: &'static str,
    },

    #[error(
        "snapshot id prefix {prefix:?} is too short and no snapshot has exactly that id; fix: \
         give at least {min} characters or the full id"
    )]
    PrefixTooShort { prefix: String, min: usize },

    #[error(
        "snapshot id prefix {prefix:?} is ambiguous, it matches {}; fix: give more characters \
         of the id",
        Candidates(candidates)
    )]
    AmbiguousPrefix {
        prefix: String,
        /// The matching ids, sorted; at most [`MAX_CANDIDATES`] + 1 (the extra one means "more").
        candidates: Vec<String>,
    },

    #[error(
        "snapshot {id} names repository {found:?} but is being stored as part of repository \
         {expected:?}; fix: this is a bug in the caller of replace_repository_snapshots, please \
         report it"
    )]
    RepositoryMismatch {
        id: String,
        expected: String,
        found: String,
    },

    #[error(
        "snapshot {id} appears more than once in the snapshots given for repository \
         {repository}; nothing was changed; fix: check the repository for two manifests with \
         the same id"
    )]
    DuplicateSnapshot { id: String, repository: String },

    #[error(
        "run {id} is not in the catalog, so it cannot be updated; fix: record the run with \
         id None to create it"
    )]
    RunNotFound { id: i64 },
}

/// How many candidates an ambiguous-prefix message lists before it says "and more".
pub const MAX_CANDIDATES: usize = 10;

struct Candidates<'a>(&'a [String]);

impl fmt::Display for Candidates<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.0[..self.0.len().min(MAX_CANDIDATES)];
        write!(f, "{}", shown.join(", "))?;
        if self.0.len() > MAX_CANDIDATES {
            write!(f, " and more")?;
        }
        Ok(())
    }
}

impl CatalogError {
    pub(crate) fn corrupt(target: &str, what: String) -> Self {
        CatalogError::Corrupt {
            target: target.to_owned(),
            what,
            fix: REBUILD,
        }
    }

    /// Wraps a failed statement, choosing the fix from the kind of failure.
    pub(crate) fn query(op: &'static str, target: &str, scrub: &Scrubber, err: &sqlx::Error) -> Self {
        CatalogError::Query {
            op,
            target: target.to_owned(),
            detail: scrub.scrub(&crate::engine::postgres::describe(err)),
            fix: fix_for(err),
        }
    }

    /// Wraps a failed migration.
    pub(crate) fn migrate(target: &str, scrub: &Scrubber, err: &sqlx::migrate::MigrateError) -> Self {
        use sqlx::migrate::MigrateError as M;
        let fix = match err {
            M::VersionMissing(_) => {
                "this catalog was migrated by a newer lifeboat; upgrade lifeboat, or point it at \
                 another catalog and run `lifeboat catalog rebuild`"
            }
            M::VersionMismatch(_) | M::VersionNotPresent(_) => {
                "a migration that was already applied has changed, which is a lifeboat bug; \
                 report it, and meanwhile use a fresh catalog and run `lifeboat catalog rebuild`"
            }
            M::Dirty(_) => {
                "an earlier migration was interrupted; move the catalog aside, start with a \
                 fresh one and run `lifeboat catalog rebuild`"
            }
            M::Execute(e) | M::ExecuteMigration(e, _) => fix_for(e),
            _ => "check that the catalog database is writable, then retry",
        };
        CatalogError::Migrate {
            target: target.to_owned(),
            detail: scrub.scrub(&err.to_string()),
            fix,
        }
    }
}

/// Picks the advice for a failed statement.
fn fix_for(err: &sqlx::Error) -> &'static str {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => {
            "check that the catalog database is reachable (PostgreSQL running, or the state_dir \
             disk mounted and not full), then retry"
        }
        sqlx::Error::Database(db) => {
            let msg = db.message();
            // SQLite reports a write lock held past busy_timeout as "database is locked".
            if msg.contains("locked") || msg.contains("busy") {
                "another process held the catalog's write lock for too long; retry, and look for \
                 a stuck lifeboat process using the same catalog"
            } else if msg.contains("readonly") || msg.contains("read-only") {
                "make the catalog file and its directory writable by the user lifeboat runs as"
            } else if msg.contains("full") || msg.contains("disk") {
                "free disk space where the catalog lives, then retry"
            } else {
                "retry; if it persists, the catalog schema may be damaged: move it aside and \
                 run `lifeboat catalog rebuild`"
            }
        }
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::ColumnNotFound(_) | sqlx::Error::Decode(_) => {
            "the catalog schema does not match this lifeboat version; move it aside and run \
             `lifeboat catalog rebuild`"
        }
        _ => "retry; if it persists, report it with this message",
    }
}

/// Removes secrets (a PostgreSQL password, raw and percent-decoded) from driver messages. Driver
/// errors are not expected to echo the URL, but a password in a log is too costly to trust that.
#[derive(Clone, Default)]
pub(crate) struct Scrubber {
    secrets: Vec<String>,
}

impl Scrubber {
    pub(crate) fn for_url(url: &str) -> Self {
        // The raw forms, as written in the URL (usually percent-encoded)...
        let mut raw: Vec<String> = Vec::new();
        if let Some(p) = raw_userinfo_password(url) {
            raw.push(p.to_owned());
        }
        if let Ok(parsed) = url::Url::parse(url) {
            // url may re-encode characters, so its view is added to ours.
            raw.extend(parsed.password().map(str::to_owned));
            for pair in parsed.query().unwrap_or("").split('&') {
                raw.extend(pair.strip_prefix("password=").map(str::to_owned));
            }
        }
        // ...and decoded, as a driver would show them.
        let mut secrets: Vec<String> = raw
            .iter()
            .flat_map(|s| [percent_decode(s), percent_decode(&s.replace('+', " "))])
            .chain(raw.iter().cloned())
            .filter(|s| !s.is_empty())
            .collect();
        // Longest first, so that a secret containing another is replaced whole.
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Scrubber { secrets }
    }

    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            out = out.replace(s.as_str(), "***");
        }
        out
    }
}

/// The password between `scheme://user:` and the last `@` of the authority, read without a URL
/// parser so that it is found even in a URL that does not parse.
fn raw_userinfo_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    userinfo.split_once(':').map(|(_, password)| password)
}

/// `%XX` decoding; invalid escapes are kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A PostgreSQL URL fit for messages and logs: the password (in the user info or as a `password`
/// query parameter) becomes `***`. A URL that does not parse is not shown at all, because we cannot
/// tell where its password is.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "<unparseable URL>".to_owned();
    };
    if parsed.password().is_some() {
        // Cannot fail for URLs that already have a password (they have a host).
        let _ = parsed.set_password(Some("***"));
    }
    // `sslpassword` is a client key's passphrase.
    let secret = |k: &str| k.to_ascii_lowercase().ends_with("password");
    if parsed.query_pairs().any(|(k, _)| secret(&k)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret(&k) { "***".to_owned() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo_and_query_passwords() {
        let r = redact_url("postgres://u:p%40ss@h:5432/db?password=other&sslmode=require");
        assert!(!r.contains("p%40ss") && !r.contains("other"), "{r}");
        assert!(r.contains("u:***@h:5432/db") && r.contains("sslmode=require"), "{r}");
        assert_eq!(redact_url("not a url with secret"), "<unparseable URL>");
        let r = redact_url("postgres://u@h/db?sslpassword=keypass&sslmode=verify-full");
        assert!(!r.contains("keypass") && r.contains("sslmode=verify-full"), "{r}");
    }

    #[test]
    fn scrubs_raw_and_decoded_passwords() {
        let s = Scrubber::for_url("postgres://u:p%40ss@h/db?password=q%20r+s");
        let out = s.scrub("a p%40ss b p@ss c q r s d q%20r+s e q r+s");
        assert_eq!(out, "a *** b *** c *** d *** e ***");
        // Found even when the URL does not parse (a bad port here).
        let s = Scrubber::for_url("postgres://u:hunter2@h:99999/db");
        assert_eq!(s.scrub("x hunter2 y"), "x *** y");
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }
}
