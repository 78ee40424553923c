//! Comparing PostgreSQL DSNs: which server and which database a URL names, however it is spelled.

/// (host or socket directory, port, database) of a libpq-style URL. Loopback spellings are one host.
fn parts(u: &url::Url) -> (String, u16, String) {
    let q = |k: &str| u.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.to_string());
    let host = q("host")
        .or_else(|| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "localhost".into());
    let host = match host.as_str() {
        "127.0.0.1" | "::1" | "[::1]" => "localhost".to_string(),
        _ => host,
    };
    let port = q("port").and_then(|p| p.parse().ok()).or(u.port()).unwrap_or(5432);
    let db = q("dbname").unwrap_or_else(|| u.path().trim_start_matches('/').to_string());
    (host, port, db)
}

/// Whether two URLs reach the same server (host and port).
pub fn same_server(a: &url::Url, b: &url::Url) -> bool {
    let (ha, pa, _) = parts(a);
    let (hb, pb, _) = parts(b);
    (ha, pa) == (hb, pb)
}

/// Whether two URLs name the same database on the same server.
pub fn same_database(a: &url::Url, b: &url::Url) -> bool {
    parts(a) == parts(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_ports_and_sockets() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert!(same_database(
            &u("postgres://a@127.0.0.1/orders"),
            &u("postgres://b@localhost:5432/orders")
        ));
        assert!(!same_database(
            &u("postgres://a@127.0.0.1/orders"),
            &u("postgres://a@127.0.0.1/orders_check")
        ));
        assert!(same_server(
            &u("postgres://a@127.0.0.1/orders"),
            &u("postgres://a@127.0.0.1/orders_check")
        ));
        assert!(!same_server(
            &u("postgres://a@127.0.0.1:5433/x"),
            &u("postgres://b@localhost:5432/x")
        ));
        assert!(same_database(
            &u("postgresql:///x?host=/tmp/s&port=7000"),
            &u("postgresql://u@localhost/x?host=/tmp/s&port=7000")
        ));
        assert!(!same_database(
            &u("postgresql:///x?host=/tmp/s&port=7000"),
            &u("postgresql:///x?host=/tmp/s&port=7001")
        ));
    }
}
