//! SDK clients built from a repository's own config, and SDK failures told in words that carry no
//! secret.
//!
//! The repository's credential is what the analysis judges, so it is exactly that credential that
//! asks: explicit keys from the config when given (and then nothing else: no `~/.aws`, no
//! environment), the SDK's default chain (environment, profile, web identity, ECS, instance
//! metadata) only when the config names no keys.

use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::config::{RepositoryConfig, Secret};

/// The region used when the repository names none (what S3-compatible servers expect).
pub(super) const DEFAULT_REGION: &str = "us-east-1";

/// One repository's bucket and the clients that reach it with the repository's credential.
pub(super) struct Target {
    pub bucket: String,
    /// The repository's prefix inside the bucket, without slashes at either end; may be empty.
    pub prefix: String,
    pub s3: aws_sdk_s3::Client,
    pub sts: aws_sdk_sts::Client,
}

/// Where the repository is and whom to ask, as far as it can be known without any secret.
pub(super) struct Place {
    pub bucket: String,
    pub prefix: String,
    /// The endpoint as configured, without a trailing slash; `None` for AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
}

impl Place {
    pub fn of(repo: &RepositoryConfig) -> Result<Place, String> {
        let url = &repo.url;
        if !matches!(url.scheme(), "s3" | "s3a") {
            return Err(format!(
                "repository `{}` is not on S3 ({}); only s3:// repositories have bucket settings to read",
                repo.name, url
            ));
        }
        let bucket = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| {
            format!(
                "repository `{}` has no bucket in its url {url}; fix: write it as s3://BUCKET/prefix",
                repo.name
            )
        })?;
        Ok(Place {
            bucket: bucket.to_owned(),
            prefix: url.path().trim_matches('/').to_owned(),
            endpoint: endpoint_text(repo.endpoint.as_ref()),
            region: repo.region.clone().unwrap_or_else(|| DEFAULT_REGION.to_owned()),
        })
    }
}

fn endpoint_text(endpoint: Option<&url::Url>) -> Option<String> {
    endpoint.map(|e| e.as_str().trim_end_matches('/').to_owned())
}

/// Resolves the repository's credential and builds its clients. Fails only when a configured
/// secret cannot be read or the url is not an S3 one; the message names the secret's source,
/// never its value.
pub(super) async fn connect(repo: &RepositoryConfig) -> Result<Target, String> {
    let place = Place::of(repo)?;
    let credentials = match (&repo.access_key_id, &repo.secret_access_key) {
        (Some(key_id), Some(secret)) => {
            let key_id = resolve(key_id, &repo.name)?;
            let secret = resolve(secret, &repo.name)?;
            static_credentials(&key_id, &secret)
        }
        _ => default_chain(&place.region).await,
    };
    Ok(Target {
        s3: s3_client(place.endpoint.as_deref(), &place.region, credentials.clone()),
        sts: sts_client(place.endpoint.as_deref(), &place.region, credentials),
        bucket: place.bucket,
        prefix: place.prefix,
    })
}

fn resolve(secret: &crate::config::SecretRef, repository: &str) -> Result<Secret, String> {
    secret.resolve().map_err(|e| {
        let problems: Vec<String> = e
            .all()
            .iter()
            .map(|p| format!("{} (fix: {})", p.message, p.fix))
            .collect();
        format!(
            "the credential of repository `{repository}` cannot be read: {}",
            problems.join("; ")
        )
    })
}

pub(super) fn static_credentials(key_id: &Secret, secret: &Secret) -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new(
        key_id.expose(),
        secret.expose(),
        None,
        None,
        "lifeboat-repository-config",
    ))
}

async fn default_chain(region: &str) -> SharedCredentialsProvider {
    let chain = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
        .region(Region::new(region.to_owned()))
        .build()
        .await;
    SharedCredentialsProvider::new(chain)
}

/// Short enough that a dead endpoint does not hold up a fate run for minutes; long enough for a
/// busy store. Reads and writes here are a few hundred bytes.
fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .operation_attempt_timeout(Duration::from_secs(30))
        .operation_timeout(Duration::from_secs(90))
        .build()
}

pub(super) fn s3_client(
    endpoint: Option<&str>,
    region: &str,
    credentials: SharedCredentialsProvider,
) -> aws_sdk_s3::Client {
    let mut config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(credentials)
        .retry_config(RetryConfig::standard())
        .timeout_config(timeouts());
    if let Some(endpoint) = endpoint {
        // S3-compatible servers rarely serve bucket subdomains.
        config = config.endpoint_url(endpoint).force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(config.build())
}

/// STS on the same endpoint as S3 for S3-compatible servers (moto, MinIO serve it on the same
/// port); AWS's regional STS endpoint otherwise.
pub(super) fn sts_client(
    endpoint: Option<&str>,
    region: &str,
    credentials: SharedCredentialsProvider,
) -> aws_sdk_sts::Client {
    let mut config = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(credentials)
        .retry_config(RetryConfig::standard())
        .timeout_config(timeouts());
    if let Some(endpoint) = endpoint {
        config = config.endpoint_url(endpoint);
    }
    aws_sdk_sts::Client::from_conf(config.build())
}

pub(super) fn sts_client_for(
    endpoint: Option<&url::Url>,
    region: Option<&str>,
    key_id: &Secret,
    secret: &Secret,
) -> aws_sdk_sts::Client {
    sts_client(
        endpoint_text(endpoint).as_deref(),
        region.unwrap_or(DEFAULT_REGION),
        static_credentials(key_id, secret),
    )
}

/// What the store answered to a failed call: `AccessDenied (HTTP 403): Access Denied`, or why no
/// answer came. SDK errors hold no credentials; only the code, status and message are kept.
pub(super) fn answer<E>(err: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    match err {
        // A success the SDK could not read (a server's dialect of the protocol).
        SdkError::ServiceError(_) | SdkError::ResponseError(_) if status.is_some_and(|s| s < 300) => {
            format!(
                "an answer that could not be read (HTTP {}): {}",
                status.unwrap_or_default(),
                DisplayErrorContext(err)
            )
        }
        SdkError::ServiceError(_) | SdkError::ResponseError(_) => {
            let code = err.code().map(str::to_owned);
            let mut text = match (code, status) {
                (Some(code), Some(status)) => format!("{code} (HTTP {status})"),
                (Some(code), None) => code,
                (None, Some(status)) => format!("HTTP {status}"),
                (None, None) => "an unreadable answer".to_owned(),
            };
            if let Some(message) = err.message().filter(|m| !m.is_empty()) {
                text.push_str(": ");
                text.push_str(message);
            }
            text
        }
        SdkError::TimeoutError(_) => "no answer: the request timed out".to_owned(),
        // Typically no credential could be found (default chain).
        SdkError::ConstructionFailure(_) => format!("not sent: {}", DisplayErrorContext(err)),
        _ => format!("no answer: {}", DisplayErrorContext(err)),
    }
}

/// The fix for a failed call, by what kind of failure it was.
pub(super) fn fix<E>(err: &SdkError<E>, permission: &str) -> String
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(_) | SdkError::ResponseError(_) => {
            let status = err.raw_response().map(|r| r.status().as_u16());
            match (err.code(), status) {
                (Some("AccessDenied"), _) | (_, Some(403)) => {
                    format!("allow `{permission}` to the repository's credential, or check that its keys are valid")
                }
                (Some("NoSuchBucket"), _) | (_, Some(404)) => {
                    "check the bucket name in the repository's url, and its region".to_owned()
                }
                _ => "check the repository's endpoint, region and credential".to_owned(),
            }
        }
        SdkError::ConstructionFailure(_) => "give the repository a credential: access_key_id and \
             secret_access_key in its config, or AWS credentials in the daemon's environment, profile or role"
            .to_owned(),
        _ => "check that the repository's endpoint is reachable from here".to_owned(),
    }
}

/// Whether the store said the object, version or configuration does not exist.
pub(super) fn is_not_found<E>(err: &SdkError<E>) -> bool
where
    E: ProvideErrorMetadata,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    status == Some(404) || matches!(err.code(), Some("NoSuchKey" | "NoSuchVersion" | "NotFound"))
}
