//! The file as written: serde shapes with a source position on every value.
//!
//! Everything is optional here on purpose. Serde stops at the first error, so a missing
//! required key would hide every other problem; instead `validate` notices it and keeps
//! going. Unknown keys are still rejected by serde (`deny_unknown_fields`), which is what
//! gives us the list of allowed keys for the message.

use std::collections::HashMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub(crate) type S<T> = Spanned<T>;
/// A mapping whose keys are names (of a repository, of a source); keys keep their position
/// so problems with a name can point at it.
pub(crate) type Named<T> = HashMap<S<String>, S<T>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub state_dir: Option<S<String>>,
    #[serde(default)]
    pub drills_dir: Option<S<String>>,
    #[serde(default)]
    pub catalog: Option<S<RawCatalog>>,
    #[serde(default)]
    pub repositories: Option<S<Named<RawRepository>>>,
    #[serde(default)]
    pub sources: Option<S<Named<RawSource>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCatalog {
    #[serde(default)]
    pub url_env: Option<S<String>>,
    #[serde(default)]
    pub url_file: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRepository {
    #[serde(default)]
    pub url: Option<S<String>>,
    #[serde(default)]
    pub endpoint: Option<S<String>>,
    #[serde(default)]
    pub region: Option<S<String>>,
    #[serde(default)]
    pub access_key_id_env: Option<S<String>>,
    #[serde(default)]
    pub access_key_id_file: Option<S<String>>,
    #[serde(default)]
    pub secret_access_key_env: Option<S<String>>,
    #[serde(default)]
    pub secret_access_key_file: Option<S<String>>,
    #[serde(default)]
    pub encryption: Option<S<RawEncryption>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEncryption {
    #[serde(default)]
    pub recipients: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    pub recipients_file: Option<S<String>>,
    #[serde(default)]
    pub identity_file: Option<S<String>>,
    #[serde(default)]
    pub identity_env: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSource {
    #[serde(default)]
    pub kind: Option<S<String>>,
    #[serde(default)]
    pub dsn: Option<S<String>>,
    #[serde(default)]
    pub password_env: Option<S<String>>,
    #[serde(default)]
    pub password_file: Option<S<String>>,
    #[serde(default)]
    pub environment: Option<S<String>>,
    #[serde(default)]
    pub repository: Option<S<String>>,
    #[serde(default)]
    pub pg_bin_dir: Option<S<String>>,
}
