//! Storage: turns a repository URL into an [`ObjectStore`] rooted at the repository's prefix.
//!
//! Every storage-specific fact lives here (URL schemes, endpoints, checksums that Object Lock buckets
//! demand); `repo` only ever sees an `ObjectStore`.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, Checksum};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, path::Path as StorePath};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// What a repository's storage needs to be reached. Credentials are secrets and never printed.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    pub url: Url,
    pub endpoint: Option<Url>,
    pub region: Option<String>,
    pub access_key_id: Option<SecretString>,
    pub secret_access_key: Option<SecretString>,
}

impl StorageOptions {
    pub fn new(url: Url) -> Self {
        StorageOptions {
            url,
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
        }
    }
}

/// Where a repository lives, as far as shared-fate reasoning and messages care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageKind {
    /// A local directory (file://).
    Local(std::path::PathBuf),
    S3 {
        bucket: String,
    },
    Gcs {
        bucket: String,
    },
    Azure {
        container: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(
        "repository URL {url} uses unsupported scheme `{scheme}`; fix: use file:///absolute/path, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix"
    )]
    UnsupportedScheme { url: String, scheme: String },
    #[error("repository URL {url} has no bucket or container name; fix: write it as SCHEME://BUCKET/prefix")]
    MissingBucket { url: String },
    #[error(
        "repository directory {path} cannot be used: {reason}; fix: create it (or run `lifeboat init`) and check its permissions"
    )]
    LocalDirectory { path: String, reason: String },
    #[error(
        "cannot configure storage for {url}: {source}; fix: check the repository's url, endpoint, region and credentials"
    )]
    Build {
        url: String,
        #[source]
        source: object_store::Error,
    },
}

/// A repository's store, already scoped to the repository prefix.
#[derive(Clone, Debug)]
pub struct Storage {
    pub store: Arc<dyn ObjectStore>,
    pub kind: StorageKind,
    /// The URL as configured (no credentials are ever part of it).
    pub url: Url,
}

impl Storage {
    /// Opens the store behind `opts.url`. For `file://` the directory is created when `create_dir` is set
    /// (only `init` does that), otherwise it must already exist.
    pub fn open(opts: &StorageOptions, create_dir: bool) -> Result<Storage, StorageError> {
        let url = &opts.url;
        let url_text = url.to_string();
        let build_err = |source| StorageError::Build {
            url: url_text.clone(),
            source,
        };
        let host = || -> Result<String, StorageError> {
            url.host_str()
                .filter(|h| !h.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| StorageError::MissingBucket { url: url_text.clone() })
        };
        let prefix = StorePath::from(url.path().trim_matches('/'));
        let (inner, kind): (Arc<dyn ObjectStore>, StorageKind) = match url.scheme() {
            "file" => {
                let path = url.to_file_path().map_err(|_| StorageError::LocalDirectory {
                    path: url_text.clone(),
                    reason: "not an absolute local path".into(),
                })?;
                if create_dir {
                    std::fs::create_dir_all(&path).map_err(|e| StorageError::LocalDirectory {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                }
                if !path.is_dir() {
                    return Err(StorageError::LocalDirectory {
                        path: path.display().to_string(),
                        reason: "no such directory".into(),
                    });
                }
                // Durable writes: every file is fsynced before it is published under its name,
                // and its directory after. The manifest is the commit point and may only exist once
                // every chunk it names would survive a power cut. Without this, a file repository's
                // guarantees hold against `kill -9` (the page cache survives the process) but not
                // against the machine going down.
                let fs = LocalFileSystem::new_with_prefix(&path)
                    .map_err(build_err)?
                    .with_fsync(true);
                // The whole path is the root here, so no extra prefix.
                return Ok(Storage {
                    store: Arc::new(fs),
                    kind: StorageKind::Local(path),
                    url: url.clone(),
                });
            }
            "s3" | "s3a" => {
                let bucket = host()?;
                let mut client = ClientOptions::new();
                let mut b = AmazonS3Builder::new()
                    .with_bucket_name(&bucket)
                    // Object Lock buckets refuse PUTs without an integrity checksum.
                    .with_checksum_algorithm(Checksum::SHA256);
                if let Some(ep) = &opts.endpoint {
                    let ep_text = ep.as_str().trim_end_matches('/').to_string();
                    client = client.with_allow_http(ep.scheme() == "http");
                    b = b.with_endpoint(ep_text).with_virtual_hosted_style_request(false);
                }
                // Some S3 servers also want the algorithm announced as a header on every PUT. One
                // ClientOptions carries every option: a second with_client_options would replace it.
                let mut headers = http::HeaderMap::new();
                headers.insert("x-amz-sdk-checksum-algorithm", http::HeaderValue::from_static("SHA256"));
                client = client.with_default_headers(headers);
                b = b.with_client_options(client);
                b = b.with_region(opts.region.clone().unwrap_or_else(|| "us-east-1".into()));
                if let Some(k) = &opts.access_key_id {
                    b = b.with_access_key_id(k.expose_secret());
                }
                if let Some(s) = &opts.secret_access_key {
                    b = b.with_secret_access_key(s.expose_secret());
                }
                (Arc::new(b.build().map_err(build_err)?), StorageKind::S3 { bucket })
            }
            "gs" => {
                let bucket = host()?;
                let b = GoogleCloudStorageBuilder::from_env().with_bucket_name(&bucket);
                (Arc::new(b.build().map_err(build_err)?), StorageKind::Gcs { bucket })
            }
            "az" | "azure" => {
                let container = host()?;
                let mut b = MicrosoftAzureBuilder::from_env().with_container_name(&container);
                if let Some(k) = &opts.access_key_id {
                    b = b.with_account(k.expose_secret());
                }
                if let Some(s) = &opts.secret_access_key {
                    b = b.with_access_key(s.expose_secret());
                }
                (
                    Arc::new(b.build().map_err(build_err)?),
                    StorageKind::Azure { container },
                )
            }
            other => {
                return Err(StorageError::UnsupportedScheme {
                    url: url_text,
                    scheme: other.to_string(),
                });
            }
        };
        let store: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
            inner
        } else {
            Arc::new(PrefixStore::new(inner, prefix))
        };
        Ok(Storage {
            store,
            kind,
            url: url.clone(),
        })
    }
}
