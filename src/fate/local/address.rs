//! Where a database DSN leads: a Unix socket, this host, or another host (by its addresses).
//!
//! "This host" is told by the name (`localhost`, this host's own name), by loopback addresses, and
//! for other addresses by binding a UDP socket to them, which the kernel allows only for addresses
//! this host holds (unless `ip_nonlocal_bind` is set).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::fate::inputs::{ServerAddress, ServerTarget};

/// libpq's default socket directory on Debian-style systems, used when a DSN names no host.
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
const DEFAULT_PORT: u16 = 5432;
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves a libpq-style URL (`postgres://user@host:port/db`, `postgresql:///db?host=/sock&port=N`).
pub async fn server_address(dsn: &Url, host_name: &str) -> ServerAddress {
    let q = |k: &str| dsn.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.to_string());
    let host = q("host")
        .or_else(|| dsn.host_str().map(|h| percent_decode(h.trim_matches(['[', ']']))))
        .map(|h| h.split(',').next().unwrap_or_default().to_owned())
        .filter(|h| !h.is_empty());
    let port = q("port")
        .and_then(|p| p.split(',').next()?.trim().parse().ok())
        .or(dsn.port())
        .unwrap_or(DEFAULT_PORT);
    let Some(host) = host else {
        return socket(PathBuf::from(DEFAULT_SOCKET_DIR), port);
    };
    if host.starts_with('/') {
        return socket(PathBuf::from(host), port);
    }
    let shown = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{host}]:{port}"),
        _ => format!("{host}:{port}"),
    };
    let target = target(&host, port, host_name).await;
    ServerAddress { shown, port, target }
}

fn socket(dir: PathBuf, port: u16) -> ServerAddress {
    ServerAddress {
        shown: format!("socket {}:{port}", dir.display()),
        port,
        target: ServerTarget::Socket(dir),
    }
}

async fn target(host: &str, port: u16, host_name: &str) -> ServerTarget {
    let this_host = |via: String| ServerTarget::ThisHost { via };
    if host.eq_ignore_ascii_case("localhost") {
        return this_host("`localhost` is this host".into());
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return match local_address(ip) {
            Some(what) => this_host(format!("{ip} is {what}")),
            None => ServerTarget::Remote {
                host: host.to_owned(),
                addrs: vec![ip],
            },
        };
    }
    let short = |n: &str| n.split('.').next().unwrap_or(n).to_ascii_lowercase();
    if !host_name.is_empty() && (host.eq_ignore_ascii_case(host_name) || short(host) == short(host_name)) {
        return this_host(format!("`{host}` is this host's name"));
    }
    let resolved = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await;
    let addrs: Vec<IpAddr> = match resolved {
        Ok(Ok(found)) => {
            let mut addrs: Vec<IpAddr> = found.map(|a| a.ip()).collect();
            addrs.sort();
            addrs.dedup();
            addrs
        }
        Ok(Err(e)) => {
            return ServerTarget::Unresolved {
                host: host.to_owned(),
                why: format!("`{host}` does not resolve: {e}"),
            };
        }
        Err(_) => {
            return ServerTarget::Unresolved {
                host: host.to_owned(),
                why: format!("resolving `{host}` took longer than {}s", RESOLVE_TIMEOUT.as_secs()),
            };
        }
    };
    match addrs
        .iter()
        .find_map(|ip| local_address(*ip).map(|what| format!("{ip}, {what}")))
    {
        Some(via) => this_host(format!("`{host}` resolves to {via}")),
        None => ServerTarget::Remote {
            host: host.to_owned(),
            addrs,
        },
    }
}

/// What `ip` is when it is loopback or one of this host's addresses ("a loopback address").
pub fn local_address(ip: IpAddr) -> Option<&'static str> {
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    if ip.is_unspecified() {
        return Some("the unspecified address, this host");
    }
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0))
        .ok()
        .map(|_| "an address of this host")
}

/// `%2Fvar%2Frun` → `/var/run`: libpq accepts a socket directory percent-encoded as the host.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether two addresses reach the same server; `Some(why)` in words.
pub fn same_server(a: &ServerAddress, b: &ServerAddress) -> Option<String> {
    use ServerTarget::*;
    if a.port != b.port {
        return None;
    }
    let local = |t: &ServerTarget| matches!(t, Socket(_) | ThisHost { .. });
    match (&a.target, &b.target) {
        (Socket(x), Socket(y)) => (x == y).then(|| format!("the same socket {}:{}", x.display(), a.port)),
        (x, y) if local(x) && local(y) => Some(format!("both on this host, port {}", a.port)),
        (Remote { host: h1, addrs: a1 }, Remote { host: h2, addrs: a2 }) => {
            if h1.eq_ignore_ascii_case(h2) {
                Some(format!("the same host {h1}, port {}", a.port))
            } else {
                a1.iter()
                    .find(|ip| a2.contains(ip))
                    .map(|ip| format!("the same address {ip}, port {}", a.port))
            }
        }
        (
            Remote { host: h1, .. } | Unresolved { host: h1, .. },
            Remote { host: h2, .. } | Unresolved { host: h2, .. },
        ) if h1.eq_ignore_ascii_case(h2) => Some(format!("the same host {h1}, port {}", a.port)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[tokio::test]
    async fn sockets_loopback_names_and_remote_hosts() {
        let a = server_address(&u("postgresql:///x?host=/tmp/sock&port=7000"), "vm").await;
        assert_eq!(a.target, ServerTarget::Socket("/tmp/sock".into()));
        assert_eq!((a.port, a.shown.as_str()), (7000, "socket /tmp/sock:7000"));

        let d = server_address(&u("postgresql:///x"), "vm").await;
        assert_eq!(d.target, ServerTarget::Socket(DEFAULT_SOCKET_DIR.into()));

        let l = server_address(&u("postgres://u@127.0.0.1/x"), "vm").await;
        assert!(matches!(l.target, ServerTarget::ThisHost { .. }));
        assert_eq!(l.shown, "127.0.0.1:5432");

        let n = server_address(&u("postgres://u@VM.example.net:6543/x"), "vm").await;
        assert!(matches!(n.target, ServerTarget::ThisHost { ref via } if via.contains("this host's name")));

        // TEST-NET-3: never an address of this host.
        let r = server_address(&u("postgres://u@203.0.113.7/x"), "vm").await;
        assert!(matches!(r.target, ServerTarget::Remote { .. }));
    }

    #[tokio::test]
    async fn same_server_by_socket_port_and_address() {
        let sock = server_address(&u("postgresql:///x?host=/run/pg&port=5432"), "vm").await;
        let tcp = server_address(&u("postgres://u@localhost:5432/y"), "vm").await;
        let other_port = server_address(&u("postgres://u@localhost:5433/y"), "vm").await;
        let remote = server_address(&u("postgres://u@203.0.113.7:5432/y"), "vm").await;
        let remote_again = server_address(&u("postgres://v@203.0.113.7:5432/z"), "vm").await;
        assert!(same_server(&sock, &tcp).is_some());
        assert!(same_server(&tcp, &other_port).is_none());
        assert!(same_server(&tcp, &remote).is_none());
        assert!(same_server(&remote, &remote_again).is_some());
    }
}
