//! Finding and removing scratch directories whose creator died without tearing them down.

use std::path::{Path, PathBuf};

use super::ScratchError;
use super::marker::{Marker, scratch_dirs};
use super::postgres::DATA_SUBDIR;
use super::teardown;

/// Stops and removes every scratch directory directly under `parent` whose creating process is
/// dead, and returns the directories removed.
///
/// Directories without a marker, with a live creator, or that are symlinks are left alone. A
/// directory that cannot be removed is logged (with the reason) and skipped, so one stuck orphan
/// does not shield the others; only failing to list `parent` is an error.
pub fn reap_orphans(parent: &Path) -> Result<Vec<PathBuf>, ScratchError> {
    let mut reaped = Vec::new();
    for dir in scratch_dirs(parent)? {
        match reap_one(&dir) {
            Ok(true) => reaped.push(dir),
            Ok(false) => {}
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "scratch orphan not reaped"),
        }
    }
    Ok(reaped)
}

fn reap_one(dir: &Path) -> Result<bool, ScratchError> {
    // A symlink could point the teardown at a directory that is not ours.
    let is_real_dir = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    if !is_real_dir(dir) {
        return Ok(false);
    }
    let Some(marker) = Marker::read(dir)? else {
        return Ok(false);
    };
    if marker.creator_alive() {
        return Ok(false);
    }
    // The marker's own data_dir is informational: only the data directory inside `dir` is ever
    // touched, so a forged marker cannot aim the reaper elsewhere.
    let data_dir = dir.join(DATA_SUBDIR);
    if data_dir.exists() && !is_real_dir(&data_dir) {
        return Ok(false);
    }
    teardown::destroy(dir, &data_dir).map_err(|e| {
        ScratchError::io(
            "remove",
            dir,
            "stop any server still running there and delete the directory by hand",
            e,
        )
    })?;
    tracing::info!(dir = %dir.display(), creator = marker.pid, "reaped orphaned scratch directory");
    Ok(true)
}
