//! Where backups sit relative to the data: same-device, same-host, db-user-can-write,
//! key-with-data.

use std::path::Path;

use super::Pair;
use crate::config::SecretRef;
use crate::fate::finding::{Finding, Severity};
use crate::fate::inputs::{DataDir, PathPlace, StorageFacts};
use crate::fate::local::{self, Access};
use crate::fate::rules::RuleId;

pub(super) fn check(pair: &Pair, out: &mut Vec<Finding>) {
    same_device(pair, out);
    same_host(pair, out);
    db_user_can_write(pair, out);
    key_with_data(pair, out);
}

fn same_device(pair: &Pair, out: &mut Vec<Finding>) {
    let StorageFacts::File { path, place, .. } = &pair.repo.storage else {
        return;
    };
    let name = &pair.source.name;
    let (data, how, data_place) = match &pair.source.data_dir {
        DataDir::Remote => return,
        DataDir::Unknown { why } => {
            out.push(pair.unjudged(
                RuleId::SameDevice,
                &format!("the data directory of `{name}` is not known ({why})"),
                format!(
                    "let lifeboat reach `{name}` with its DSN and read `data_directory` (a superuser, or a role \
                     granted `pg_read_all_settings`), or set `sources.{name}.data_dir`"
                ),
            ));
            return;
        }
        DataDir::Known { path, how, place } => (path, how, place),
    };
    let (data_place, repo_place) = match (data_place, place) {
        (Ok(d), Ok(r)) => (d, r),
        (Err(why), _) | (_, Err(why)) => {
            out.push(pair.unjudged(
                RuleId::SameDevice,
                why,
                "make the data directory and the repository directory visible to lifeboat's user",
            ));
            return;
        }
    };
    let Some(shared) = local::same_device(data_place, repo_place) else {
        return;
    };
    let inside = if local::is_inside(&repo_place.resolved, &data_place.resolved) {
        " (the repository is inside the data directory)"
    } else {
        ""
    };
    out.push(pair.finding(
        RuleId::SameDevice,
        Severity::Critical,
        format!(
            "data directory {} ({how}) and repository `{}` at {} are on {shared}{inside}",
            data.display(),
            pair.repo.name,
            path.display()
        ),
        format!(
            "move repository `{}` off {}: to another host or an object store with Object Lock",
            pair.repo.name,
            device_words(repo_place)
        ),
    ));
}

fn device_words(place: &PathPlace) -> String {
    match &place.mount {
        Some(m) => format!("{} ({})", m.source, m.point.display()),
        None => format!("device {}", place.device),
    }
}

fn same_host(pair: &Pair, out: &mut Vec<Finding>) {
    let StorageFacts::File { path, .. } = &pair.repo.storage else {
        return;
    };
    let server = &pair.source.server;
    match pair.source.is_local() {
        Some(true) => out.push(pair.finding(
            RuleId::SameHost,
            Severity::Warning,
            format!(
                "source `{}` is reached at {} on this host ({}), and repository `{}` is the directory {} on this \
                 host too",
                pair.source.name,
                server.shown,
                via(pair),
                pair.repo.name,
                path.display()
            ),
            format!(
                "keep a copy of `{}`'s backups off this host (an object store, or a repository mounted from \
                 another machine)",
                pair.source.name
            ),
        )),
        Some(false) => {}
        None => {
            let why = match &server.target {
                crate::fate::inputs::ServerTarget::Unresolved { why, .. } => why.clone(),
                _ => "its host is unknown".into(),
            };
            out.push(pair.unjudged(
                RuleId::SameHost,
                &why,
                "write a DSN whose host resolves from this machine",
            ));
        }
    }
}

fn via(pair: &Pair) -> String {
    use crate::fate::inputs::ServerTarget;
    match &pair.source.server.target {
        ServerTarget::Socket(_) => "a Unix socket".into(),
        ServerTarget::ThisHost { via } => via.clone(),
        ServerTarget::Remote { host, .. } | ServerTarget::Unresolved { host, .. } => host.clone(),
    }
}

fn db_user_can_write(pair: &Pair, out: &mut Vec<Finding>) {
    let StorageFacts::File { path, dirs, .. } = &pair.repo.storage else {
        return;
    };
    if pair.source.is_local() != Some(true) {
        return;
    }
    let fix = |user: &str| {
        format!(
            "let a user other than `{user}` own {} (e.g. `chown -R lifeboat: {0}` and `chmod -R go-w {0}`), with a \
             group `{user}` is not in",
            path.display()
        )
    };
    let account = match &pair.source.db_user {
        Ok(a) => a,
        Err(why) => {
            out.push(pair.unjudged(
                RuleId::DbUserCanWrite,
                &format!("the database's OS user is not known ({why})"),
                format!("set `sources.{}.data_dir` so its owner can be read", pair.source.name),
            ));
            return;
        }
    };
    let dirs = match dirs {
        Ok(d) => d,
        Err(why) => {
            out.push(pair.unjudged(RuleId::DbUserCanWrite, why, fix(&account.name)));
            return;
        }
    };
    if let Access::Writes { how } = local::can_write(account, dirs) {
        out.push(pair.finding(
            RuleId::DbUserCanWrite,
            Severity::Critical,
            format!(
                "`{}` runs as OS user {} (uid {}), and {how}",
                pair.source.name, account.name, account.uid
            ),
            fix(&account.name),
        ));
    }
}

fn key_with_data(pair: &Pair, out: &mut Vec<Finding>) {
    let Some(identity) = &pair.repo.identity else {
        return;
    };
    let repo = &pair.repo.name;
    let fix = format!(
        "keep the identity of `{repo}` with the drill runner and on-call (a secret store, another host) and remove it \
         from here; backups need only the recipients"
    );
    let on_db_host = pair.source.is_local() == Some(true);
    let path = match &identity.reference {
        SecretRef::File(path) => path,
        SecretRef::Env(var) => {
            if on_db_host {
                out.push(pair.finding(
                    RuleId::KeyWithData,
                    Severity::Warning,
                    format!(
                        "the identity of `{repo}` comes from env {var} of lifeboat on the database host of `{}`",
                        pair.source.name
                    ),
                    fix,
                ));
            }
            return;
        }
    };
    let place = identity.place.as_ref().and_then(|p| p.as_ref().ok());
    let resolved = place.map_or(path.as_path(), |p| p.resolved.as_path());
    let mut reasons = Vec::new();
    if let StorageFacts::File {
        path: repo_path, place, ..
    } = &pair.repo.storage
    {
        let repo_dir = place.as_ref().map_or(repo_path.as_path(), |p| p.resolved.as_path());
        if local::is_inside(resolved, repo_dir) || local::is_inside(path, repo_path) {
            reasons.push(format!("is inside repository `{repo}` ({})", repo_path.display()));
        }
    }
    if let DataDir::Known {
        path: data,
        place: data_place,
        ..
    } = &pair.source.data_dir
    {
        let data_dir: &Path = data_place.as_ref().map_or(data.as_path(), |p| p.resolved.as_path());
        if local::is_inside(resolved, data_dir) || local::is_inside(path, data) {
            reasons.push(format!("is inside the data directory {}", data.display()));
        } else if let (Some(key), Ok(data_place)) = (place, data_place)
            && let Some(shared) = local::same_device(key, data_place)
        {
            reasons.push(format!("is on {shared}, with the data directory {}", data.display()));
        }
    }
    if !reasons.is_empty() {
        out.push(pair.finding(
            RuleId::KeyWithData,
            Severity::Critical,
            format!(
                "identity file {} of `{repo}` {}",
                path.display(),
                reasons.join(", and ")
            ),
            fix,
        ));
    } else if on_db_host {
        out.push(pair.finding(
            RuleId::KeyWithData,
            Severity::Warning,
            format!(
                "identity file {} of `{repo}` is on the database host of `{}`",
                path.display(),
                pair.source.name
            ),
            fix,
        ));
    }
}
