//! Helpers shared by integration tests (`mod support;`). Each test binary uses a different subset,
//! hence `dead_code` is allowed item by item.

use std::sync::atomic::{AtomicU32, Ordering};

/// Endpoint of the loopback S3 server that `scripts/test` (or `scripts/s3-server start`) runs.
#[allow(dead_code)]
pub fn s3_endpoint() -> String {
    match std::env::var("LIFEBOAT_TEST_S3_ENDPOINT") {
        Ok(url) if !url.is_empty() => url.trim_end_matches('/').to_owned(),
        _ => panic!(
            "the S3 test server is not running; run `bash scripts/test` (it starts it) or \
             `scripts/s3-server start` and export its env (eval \"$(scripts/s3-server env)\")"
        ),
    }
}

/// Creates `name` on the test S3 server. moto accepts an unsigned `PUT /<bucket>`; curl keeps
/// an HTTP client out of the dev-dependencies. An existing bucket is fine.
#[allow(dead_code)]
pub async fn create_bucket(name: &str) {
    let url = format!("{}/{name}", s3_endpoint());
    let out = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--fail-with-body", "-X", "PUT", &url])
        .output()
        .await
        .expect("run curl (install curl to run the S3 tests)");
    assert!(
        out.status.success(),
        "creating bucket {name} at {url} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A name unique across concurrent test processes and calls: `<prefix>-<pid>-<n>-<nanos>`,
/// lower-case and DNS-safe so it also works as a bucket name (keep the prefix short).
#[allow(dead_code)]
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}-{}-{n}-{nanos:x}", prefix.to_ascii_lowercase(), std::process::id())
}
pub mod cli;
pub mod daemon;
pub mod problems;
pub mod s3;
