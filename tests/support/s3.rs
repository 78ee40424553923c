//! S3 test helpers: an SDK client for setting buckets up, IAM users on moto, and a moto server of a
//! test's own for the cases that switch IAM enforcement on (the shared server must stay open).

use std::process::{Command, Output};

use super::cli::all_output;

/// An S3 client for test setup and inspection, path-style against `endpoint`.
#[allow(dead_code)]
pub fn client(endpoint: &str, key_id: &str, secret: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(key_id, secret, None, None, "test"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

#[allow(dead_code)]
fn curl(args: &[&str]) -> String {
    let o = Command::new("curl")
        .args(["--silent", "--show-error", "--fail-with-body"])
        .args(args)
        .output()
        .expect("run curl (install curl to run the S3 tests)");
    assert!(o.status.success(), "curl {args:?}: {}", all_output(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// One call to moto's IAM API. The credential scope names the service, which moto routes by; it
/// checks no signature of IAM calls made before enforcement is switched on.
#[allow(dead_code)]
pub fn iam(endpoint: &str, params: &[(&str, &str)]) -> String {
    let url = format!("{endpoint}/");
    let mut args = vec![
        "-X".to_string(),
        "POST".to_string(),
        url,
        "-H".to_string(),
        "Authorization: AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/iam/aws4_request, \
         SignedHeaders=host, Signature=00"
            .to_string(),
        "--data-urlencode".to_string(),
        "Version=2010-05-08".to_string(),
    ];
    for (k, v) in params {
        args.push("--data-urlencode".into());
        args.push(format!("{k}={v}"));
    }
    curl(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// An IAM user with an inline policy on the moto at `endpoint`; returns its key id and secret.
#[allow(dead_code)]
pub fn iam_user(endpoint: &str, name: &str, policy: &serde_json::Value) -> (String, String) {
    iam(endpoint, &[("Action", "CreateUser"), ("UserName", name)]);
    let policy = policy.to_string();
    iam(
        endpoint,
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", name),
            ("PolicyName", "lifeboat"),
            ("PolicyDocument", &policy),
        ],
    );
    let xml = iam(endpoint, &[("Action", "CreateAccessKey"), ("UserName", name)]);
    let field = |tag: &str| {
        let start = xml.find(&format!("<{tag}>")).expect("a key in moto's answer") + tag.len() + 2;
        let end = xml.find(&format!("</{tag}>")).expect("a key in moto's answer");
        xml[start..end].to_string()
    };
    (field("AccessKeyId"), field("SecretAccessKey"))
}

/// A policy allowing everything except `denied` actions.
#[allow(dead_code)]
pub fn all_but(denied: &[&str]) -> serde_json::Value {
    let mut statements = vec![serde_json::json!({"Effect": "Allow", "Action": "*", "Resource": "*"})];
    if !denied.is_empty() {
        statements.push(serde_json::json!({"Effect": "Deny", "Action": denied, "Resource": "*"}));
    }
    serde_json::json!({"Version": "2012-10-17", "Statement": statements})
}

/// A moto server of the test's own on a free port, so that switching IAM enforcement on does not
/// touch the shared one. Stopped when dropped, also when the test fails.
#[allow(dead_code)]
pub struct PrivateS3 {
    port: u16,
}

#[allow(dead_code)]
impl PrivateS3 {
    pub fn start() -> PrivateS3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = PrivateS3 { port };
        let o = server.script("start");
        assert!(o.status.success(), "starting moto: {}", all_output(&o));
        server
    }

    fn script(&self, action: &str) -> Output {
        Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/s3-server"))
            .arg(action)
            .env("LIFEBOAT_S3_PORT", self.port.to_string())
            .output()
            .unwrap()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// From the next request on, every key must exist in IAM and every call pass its policies.
    /// A form content type would hide the body from moto, hence text/plain.
    pub fn enforce_iam(&self) {
        let reset = format!("{}/moto-api/reset-auth", self.endpoint());
        curl(&[
            "-X",
            "POST",
            &reset,
            "-H",
            "Content-Type: text/plain",
            "--data-binary",
            "0",
        ]);
    }
}

impl Drop for PrivateS3 {
    fn drop(&mut self) {
        self.script("stop");
        // The script keeps a log per port; this port's is of no use once the server is gone.
        let tools = std::env::var("LIFEBOAT_TOOLS_DIR").unwrap_or_else(|_| {
            format!(
                "{}/.cache/lifeboat-tools",
                std::env::var("HOME").unwrap_or("/tmp".into())
            )
        });
        let _ = std::fs::remove_file(format!("{tools}/moto-5.2.5/moto-{}.log", self.port));
    }
}
