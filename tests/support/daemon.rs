//! A running `lifeboat daemon` for tests, its log in a file.
#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::cli::Workspace;

pub struct Daemon {
    child: Child,
    pub log: PathBuf,
    /// host:port of its HTTP listener.
    pub addr: String,
}

impl Daemon {
    pub fn start(ws: &Workspace, name: &str, env: &[(&str, &str)]) -> Daemon {
        let log = ws.path().join(format!("{name}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lifeboat"));
        cmd.arg("--config")
            .arg(ws.config_path())
            .arg("daemon")
            .env_remove("LIFEBOAT_CONFIG")
            .env("LIFEBOAT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start lifeboat daemon");
        let mut d = Daemon {
            child,
            log,
            addr: String::new(),
        };
        let marker = "serving /metrics, /healthz and /api/v1 on ";
        let line = d.wait_for_log(marker, Duration::from_secs(30));
        let rest = &line[line.find(marker).unwrap() + marker.len()..];
        let rest = &rest[rest.find("://").unwrap() + 3..];
        d.addr = rest.split(';').next().unwrap().trim().to_string();
        d
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    /// The first log line containing `needle`, waiting for it.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log_text().lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the daemon exited ({status}) before logging {needle:?}:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not log {needle:?} within {timeout:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::get(format!("http://{}{path}", self.addr)).await.expect("GET");
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// SIGTERM, then the exit status and the whole log.
    pub fn stop(mut self, timeout: Duration) -> (ExitStatus, String) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.log_text());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the daemon did not stop within {timeout:?} of SIGTERM:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
