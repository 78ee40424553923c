//! `lifeboat check-config`: every problem, with file:line:column and the fix.
//!
//! Checks what `lifeboat daemon` checks before it starts: the config file (validation, secrets,
//! paths, and the alert sinks and routes once their secrets are resolved) and every drill file
//! in `drills_dir`, with the daemon's own code. Reads files and the environment, nothing else:
//! no network, no connection, no write.

use std::path::Path;

use serde_json::json;

use super::render::Output;
use super::{CliError, Exit};
use crate::config::{self, Config, Problem};
use crate::drill::spec;

pub fn run(path: &Path, out: &Output) -> Result<Exit, CliError> {
    if !path.exists() {
        return Err(CliError::usage(format!(
            "config file {} not found; fix: pass --config FILE or set LIFEBOAT_CONFIG",
            path.display()
        )));
    }
    // Validation problems and unresolvable secrets / bad paths together, in file order.
    let (cfg, mut problems) = match config::load_checked(path) {
        Ok(cfg) => (Some(cfg), Vec::new()),
        // A config that validates but names, say, an unset variable still has its drill files
        // checked against it, so that one run shows everything.
        Err(problems) => (config::load(path).ok(), problems),
    };
    let config_problems = problems.len();
    let drills = match &cfg {
        Some(cfg) => drills(cfg, &mut problems),
        None => Drills::NotChecked,
    };
    let note = match &drills {
        Drills::NoDirectory(dir) => Some(json!({
            "message": format!(
                "the drills directory {} does not exist, so `lifeboat daemon` and the drill commands \
                 would stop at it",
                dir.display()
            ),
            "fix": "create it (empty is fine), or set `drills_dir:` in the config file to where the drill files are",
        })),
        _ => None,
    };
    if let Some(note) = &note
        && !out.json
    {
        eprintln!(
            "note: {}\n  fix: {}",
            note["message"].as_str().unwrap_or_default(),
            note["fix"].as_str().unwrap_or_default()
        );
    }
    let notes: Vec<_> = note.into_iter().collect();
    if problems.is_empty()
        && let Some(cfg) = &cfg
    {
        let count = match &drills {
            Drills::Loaded(n) => Some(*n),
            _ => None,
        };
        if out.json {
            out.json(&json!({
                "file": path,
                "ok": true,
                "sources": cfg.sources.len(),
                "repositories": cfg.repositories.len(),
                "drills": count,
                "drills_dir": cfg.drills_dir,
                "problems": [],
                "notes": notes,
            }));
        } else {
            let drills = match count {
                Some(n) => format!("; drills: {n} in {}", cfg.drills_dir.display()),
                None => String::new(),
            };
            println!(
                "{}: OK (sources: {}, repositories: {}){drills}",
                path.display(),
                cfg.sources.len(),
                cfg.repositories.len()
            );
        }
        return Ok(Exit::Ok);
    }
    if out.json {
        let list: Vec<_> = problems
            .iter()
            .map(|p| json!({"file": p.file, "line": p.position.map(|x| x.line), "column": p.position.map(|x| x.column), "message": p.message, "fix": p.fix}))
            .collect();
        out.json(&json!({"file": path, "ok": false, "problems": list, "notes": notes}));
    } else {
        for p in &problems {
            eprintln!("{p}");
        }
        let drill_files = match (&cfg, problems.len() > config_problems) {
            (Some(cfg), true) => format!(" and the drill files in {}", cfg.drills_dir.display()),
            _ => String::new(),
        };
        eprintln!(
            "{} problem{} in {}{drill_files}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            path.display()
        );
    }
    Ok(Exit::Usage)
}

/// What became of the drill files.
enum Drills {
    /// The config does not validate, so the drills cannot be judged against it.
    NotChecked,
    /// `drills_dir` does not exist: not counted as a problem (a config without drills is fine
    /// for every command but the daemon's and the drills'), but said.
    NoDirectory(std::path::PathBuf),
    /// How many drills; their problems, if any, were added.
    Loaded(usize),
}

/// Loads the drill files as the daemon does ([`spec::load_dir`]) and plans their schedules as
/// it does ([`crate::daemon::plan::jobs`], in the daemon's time zone), adding every problem.
fn drills(cfg: &Config, problems: &mut Vec<Problem>) -> Drills {
    if !cfg.drills_dir.exists() {
        return Drills::NoDirectory(cfg.drills_dir.clone());
    }
    let specs = match spec::load_dir(&cfg.drills_dir, cfg) {
        Ok(specs) => specs,
        Err(e) => {
            problems.extend(e.into_problems());
            return Drills::Loaded(0);
        }
    };
    for drill in &specs {
        if let Err(e) = crate::daemon::plan::jobs(cfg, std::slice::from_ref(drill)) {
            problems.push(Problem {
                file: Some(drill.file.clone()),
                position: None,
                message: e.message,
                fix: e.fix,
            });
        }
    }
    Drills::Loaded(specs.len())
}
