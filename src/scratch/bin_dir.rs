//! Finding the PostgreSQL server binaries (initdb, pg_ctl, postgres, psql).
//!
//! Client-only installs put `pg_config`/`psql` in /usr/bin without `initdb`, so every candidate is
//! accepted only if it actually holds `initdb`.

use std::path::{Path, PathBuf};

use super::ScratchError;

/// The tools a scratch cluster needs; checked up front so a missing one fails with its name.
pub(crate) const REQUIRED_TOOLS: [&str; 4] = ["initdb", "pg_ctl", "postgres", "psql"];

/// Environment override, for machines where discovery guesses wrong.
pub const BIN_DIR_ENV: &str = "LIFEBOAT_PG_BIN_DIR";

/// Resolve the binary directory: the explicit choice, else `$LIFEBOAT_PG_BIN_DIR`, else
/// `pg_config --bindir`, else the newest `/usr/lib/postgresql/<N>/bin` (Debian layout), else the
/// directory of `initdb` on `PATH`.
pub(crate) fn resolve(explicit: Option<&Path>) -> Result<PathBuf, ScratchError> {
    let dir = match explicit {
        Some(dir) => dir.to_path_buf(),
        None => discover()?,
    };
    for tool in REQUIRED_TOOLS {
        if !dir.join(tool).is_file() {
            return Err(ScratchError::MissingTool { tool, dir });
        }
    }
    Ok(dir)
}

fn discover() -> Result<PathBuf, ScratchError> {
    let mut searched = Vec::new();
    let candidates = [env_dir(), pg_config_bindir(), newest_debian_dir(), path_dir()];
    for candidate in candidates.into_iter().flatten() {
        if candidate.join("initdb").is_file() {
            return Ok(candidate);
        }
        searched.push(candidate.display().to_string());
    }
    searched.push("/usr/lib/postgresql/*/bin".into());
    searched.push("PATH".into());
    Err(ScratchError::BinariesNotFound {
        searched: searched.join(", "),
    })
}

fn env_dir() -> Option<PathBuf> {
    std::env::var_os(BIN_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn pg_config_bindir() -> Option<PathBuf> {
    let out = std::process::Command::new("pg_config").arg("--bindir").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let dir = text.trim();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// Highest numeric version under /usr/lib/postgresql (10 sorts above 9, hence numeric).
fn newest_debian_dir() -> Option<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version: f64 = name.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))?;
    Some(newest.1)
}

fn path_dir() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| dir.join("initdb").is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tool_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve(Some(dir.path())).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("initdb not found"), "{text}");
        assert!(text.contains("fix:"), "{text}");
    }
}
