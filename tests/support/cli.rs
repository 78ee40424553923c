//! Running the `lifeboat` binary against a config written for the test.

use std::path::{Path, PathBuf};
use std::process::Output;

/// A test's own state: a config file, its state directory and a file repository, all in a temp dir.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

#[allow(dead_code)]
impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("lifeboat.yaml")
    }

    /// The file repository's directory (outside any cluster's data directory).
    pub fn repo_dir(&self) -> PathBuf {
        self.path().join("repo")
    }

    pub fn write_config(&self, yaml: &str) {
        std::fs::write(self.config_path(), yaml).expect("write config");
    }

    /// A config with one PostgreSQL source and one file repository. `extra_source` is appended to
    /// the source's keys (e.g. "    password_env: X\n").
    pub fn write_simple_config(&self, dsn: &str, extra_source: &str) {
        self.write_config(&format!(
            "state_dir: {state}\nrepositories:\n  local:\n    url: file://{repo}\nsources:\n  rental:\n    kind: postgres\n    dsn: \"{dsn}\"\n    environment: staging\n    repository: local\n{extra_source}",
            state = self.path().join("state").display(),
            repo = self.repo_dir().display(),
        ));
    }

    /// Runs `lifeboat --config <this config> ARGS...` with extra environment variables.
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"));
        cmd.arg("--config").arg(self.config_path()).args(args);
        // The local operator unless a test says otherwise.
        cmd.env_remove("LIFEBOAT_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.env_remove("LIFEBOAT_CONFIG");
        cmd.output().expect("run lifeboat")
    }

    /// An admin token (that may also approve) for this workspace: the first token, created by the
    /// local operator (who may then create no other), kept in the workspace for later calls.
    pub fn admin_token(&self) -> String {
        let file = self.path().join("admin.token");
        if let Ok(t) = std::fs::read_to_string(&file) {
            return t;
        }
        let o = self.run(
            &[
                "--json",
                "token",
                "create",
                "--name",
                "test-admin",
                "--ops",
                "admin,approve",
            ],
            &[],
        );
        assert!(o.status.success(), "creating the admin token: {}", all_output(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let secret = v["secret"].as_str().unwrap().to_string();
        std::fs::write(&file, &secret).unwrap();
        secret
    }

    /// A token of another person, `approver`, with `approve` everywhere: created by the admin token
    /// (not by the local operator, whose requests it approves).
    pub fn approver_token(&self) -> String {
        let file = self.path().join("approver.token");
        if let Ok(t) = std::fs::read_to_string(&file) {
            return t;
        }
        let admin = self.admin_token();
        let o = self.run(
            &["--json", "token", "create", "--name", "approver", "--ops", "approve"],
            &[("LIFEBOAT_TOKEN", admin.as_str())],
        );
        assert!(o.status.success(), "creating the approver token: {}", all_output(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let secret = v["secret"].as_str().unwrap().to_string();
        std::fs::write(&file, &secret).unwrap();
        secret
    }

    /// Approves request `id` as another person (`token:approver`, not the local operator who
    /// asked), with `env` (e.g. storage credentials), and returns the request as it ended.
    /// Panics unless it ran and succeeded.
    pub fn approve(&self, id: &str, env: &[(&str, &str)]) -> serde_json::Value {
        let token = self.approver_token();
        let mut env = env.to_vec();
        env.push(("LIFEBOAT_TOKEN", token.as_str()));
        let o = self.run(&["--json", "approve", id], &env);
        assert!(o.status.success(), "approving {id}: {}", all_output(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["state"], "done", "{v}");
        v
    }

    /// Every file under the repository directory, relative, sorted: "writes nothing" is checked by
    /// comparing two of these.
    pub fn repo_listing(&self) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else { return };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.repo_dir(), &self.repo_dir(), &mut out);
        out.sort();
        out
    }
}

/// stdout and stderr together, for messages and for secret greps.
#[allow(dead_code)]
pub fn all_output(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The process exited with `expected`; a failure shows all its output.
#[allow(dead_code)]
#[track_caller]
pub fn assert_exit(o: &Output, expected: i32, what: &str) {
    assert_eq!(
        o.status.code(),
        Some(expected),
        "{what}: expected exit {expected}, got {:?}; output:\n{}",
        o.status.code(),
        all_output(o)
    );
}

/// stderr contains every needle (case-sensitive); a failure shows the whole stderr.
#[allow(dead_code)]
#[track_caller]
pub fn assert_stderr_has(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    for n in needles {
        assert!(err.contains(n), "stderr should contain {n:?}; stderr:\n{err}");
    }
}

/// Loads the sample car-rental data into `database` of a scratch cluster.
#[allow(dead_code)]
pub async fn load_rental(cluster: &lifeboat::scratch::EphemeralPostgres, database: &str, scale: u32) {
    let sql = concat!(env!("CARGO_MANIFEST_DIR"), "/demo/rental.sql");
    let out = tokio::process::Command::new(cluster.bin_dir().join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-v"])
        .arg(format!("scale={scale}"))
        .arg("-d")
        .arg(cluster.dsn(database))
        .arg("-f")
        .arg(sql)
        .output()
        .await
        .expect("run psql");
    assert!(
        out.status.success(),
        "loading rental data: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway PostgreSQL cluster on a Unix socket.
#[allow(dead_code)]
pub async fn cluster() -> lifeboat::scratch::EphemeralPostgres {
    lifeboat::scratch::EphemeralPostgres::start(&lifeboat::scratch::EphemeralOptions::default())
        .await
        .expect("start scratch cluster")
}

/// The PostgreSQL engine for `database` of a scratch cluster.
#[allow(dead_code)]
pub fn engine(c: &lifeboat::scratch::EphemeralPostgres, database: &str) -> lifeboat::engine::postgres::Postgres {
    lifeboat::engine::postgres::Postgres::new(lifeboat::engine::Endpoint {
        dsn: url::Url::parse(&c.dsn(database)).unwrap(),
        password: None,
        bin_dir: Some(c.bin_dir().to_path_buf()),
    })
}
