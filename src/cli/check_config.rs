//! `lifeboat check-config`: every problem, with file:line:column and the fix.

use std::path::Path;

use serde_json::json;

use super::render::Output;
use super::{CliError, Exit};
use crate::config;

pub fn run(path: &Path, out: &Output) -> Result<Exit, CliError> {
    if !path.exists() {
        return Err(CliError::usage(format!(
            "config file {} not found; fix: pass --config FILE or set LIFEBOAT_CONFIG",
            path.display()
        )));
    }
    // Validation problems and unresolvable secrets / bad paths together, in file order.
    let problems = match config::load_checked(path) {
        Ok(cfg) => {
            if out.json {
                out.json(&json!({"file": path, "ok": true, "sources": cfg.sources.len(), "repositories": cfg.repositories.len(), "problems": []}));
            } else {
                println!(
                    "{}: OK (sources: {}, repositories: {})",
                    path.display(),
                    cfg.sources.len(),
                    cfg.repositories.len()
                );
            }
            return Ok(Exit::Ok);
        }
        Err(problems) => problems,
    };
    if out.json {
        let list: Vec<_> = problems
            .iter()
            .map(|p| json!({"file": p.file, "line": p.position.map(|x| x.line), "column": p.position.map(|x| x.column), "message": p.message, "fix": p.fix}))
            .collect();
        out.json(&json!({"file": path, "ok": false, "problems": list}));
    } else {
        for p in &problems {
            eprintln!("{p}");
        }
        eprintln!(
            "{} problem{} in {}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            path.display()
        );
    }
    Ok(Exit::Usage)
}
