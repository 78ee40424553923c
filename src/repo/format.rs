//! `lifeboat.repo.json`: the one object that says what a repository is and how to read it.

use serde::{Deserialize, Serialize};

/// The repository format version this build writes and the only one it reads.
pub const FORMAT_VERSION: u64 = 1;
pub const CONFIG_OBJECT: &str = "lifeboat.repo.json";
const FORMAT_NAME: &str = "lifeboat-repository";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    /// Always "lifeboat-repository": lets a reader tell our objects from anything else in a bucket.
    pub format: String,
    pub version: u64,
    pub id: String,
    pub created_at: jiff::Timestamp,
    pub chunker: ChunkerParams,
    pub compression: Compression,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionInfo>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChunkerParams {
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

impl Default for ChunkerParams {
    /// 1–4 MiB chunks: large enough that per-object costs (requests, locks, listings) stay small on
    /// object storage, small enough that an unchanged table dedups between two dumps.
    fn default() -> Self {
        ChunkerParams {
            min_size: 1 << 20,
            avg_size: 2 << 20,
            max_size: 4 << 20,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Compression {
    pub algorithm: String,
    pub level: i32,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            algorithm: "zstd".into(),
            level: 3,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionInfo {
    /// "age-x25519": payloads are age files; addresses are HMAC-SHA-256 under the address key.
    pub scheme: String,
    /// Public recipients at creation time (informational: backups use the configured recipients).
    pub recipients: Vec<String>,
    /// The 32-byte address key, age-encrypted to the recipients, hex. Holders of the identity can
    /// recover it; the backup host keeps its own copy so that it never needs the identity.
    pub address_key_wrapped: String,
    /// SHA-256 of the address key, hex: tells a wrong key from a right one before it names chunks.
    pub address_key_check: String,
}

impl RepoConfig {
    pub fn new(id: String, encryption: Option<EncryptionInfo>) -> Self {
        RepoConfig {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            id,
            created_at: jiff::Timestamp::now(),
            chunker: ChunkerParams::default(),
            compression: Compression::default(),
            encryption,
        }
    }

    /// Parses the config object, refusing versions and formats this build does not know. The version
    /// is checked before the rest so that a future format with new fields gets the version message.
    pub fn parse(bytes: &[u8], location: &str) -> super::Result<RepoConfig> {
        use super::RepoError;
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| RepoError::Corrupt {
            object: format!("{location}/{CONFIG_OBJECT}"),
            detail: e.to_string(),
        })?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT_NAME) {
            return Err(RepoError::Corrupt {
                object: format!("{location}/{CONFIG_OBJECT}"),
                detail: format!("`format` is not \"{FORMAT_NAME}\""),
            });
        }
        let found = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if found != FORMAT_VERSION {
            return Err(RepoError::UnsupportedVersion {
                location: location.to_string(),
                found,
                supported: FORMAT_VERSION,
            });
        }
        let config: RepoConfig = serde_json::from_value(value).map_err(|e| RepoError::Corrupt {
            object: format!("{location}/{CONFIG_OBJECT}"),
            detail: e.to_string(),
        })?;
        let c = config.chunker;
        if !(c.min_size >= 64 << 10 && c.min_size <= c.avg_size && c.avg_size <= c.max_size && c.max_size <= 16 << 20) {
            return Err(RepoError::Corrupt {
                object: format!("{location}/{CONFIG_OBJECT}"),
                detail: "chunker sizes out of range".into(),
            });
        }
        if config.compression.algorithm != "zstd" {
            return Err(RepoError::Corrupt {
                object: format!("{location}/{CONFIG_OBJECT}"),
                detail: format!("unknown compression `{}`", config.compression.algorithm),
            });
        }
        Ok(config)
    }
}
