//! Quoting for the three languages a scratch cluster is spoken to in: postgresql.conf, SQL, and
//! libpq connection URIs.

/// A postgresql.conf string literal: single quotes doubled, backslashes escaped.
pub(crate) fn conf_string(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// A SQL identifier, always quoted so that any name (mixed case, spaces, keywords) round-trips.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Percent-encodes everything except RFC 3986 unreserved characters and the bytes in `keep`.
/// `+` is always encoded: sqlx decodes query values as form data, where `+` means a space.
pub(crate) fn uri_component(value: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(conf_string("/tmp/it's"), "'/tmp/it''s'");
        assert_eq!(ident("we\"ird name"), "\"we\"\"ird name\"");
        assert_eq!(uri_component("/tmp/a b+c", b"/"), "/tmp/a%20b%2Bc");
        assert_eq!(uri_component("db/x", b""), "db%2Fx");
    }
}
