//! Progress: a bar on a terminal, plain lines otherwise (logs and CI read those), nothing with --quiet.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::repo::Progress;

pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

pub enum Meter {
    Bar(ProgressBar),
    Lines {
        label: String,
        total: Option<u64>,
        done: AtomicU64,
        last: Mutex<Instant>,
    },
    Silent,
}

impl Meter {
    /// `total` in bytes when known.
    pub fn new(enabled: bool, label: &str, total: Option<u64>) -> Meter {
        if !enabled {
            return Meter::Silent;
        }
        if stderr_is_terminal() {
            let bar = match total {
                Some(t) => ProgressBar::new(t).with_style(
                    ProgressStyle::with_template(
                        "{msg:>10} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                ),
                None => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template("{spinner} {msg:>10} {binary_bytes} {binary_bytes_per_sec} {elapsed}")
                        .expect("valid template"),
                ),
            };
            bar.set_message(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            Meter::Bar(bar)
        } else {
            Meter::Lines {
                label: label.into(),
                total,
                done: AtomicU64::new(0),
                last: Mutex::new(Instant::now()),
            }
        }
    }

    pub fn finish(&self) {
        if let Meter::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}

impl Progress for Meter {
    fn advance(&self, bytes: u64) {
        match self {
            Meter::Bar(b) => b.inc(bytes),
            Meter::Lines {
                label,
                total,
                done,
                last,
            } => {
                let now = done.fetch_add(bytes, Ordering::Relaxed) + bytes;
                let mut last = last.lock().expect("progress lock");
                // One line every 5 seconds is enough for a log and never floods it.
                if last.elapsed() >= Duration::from_secs(5) {
                    *last = Instant::now();
                    match total {
                        Some(t) if *t > 0 => eprintln!(
                            "{label}: {} of {} ({}%)",
                            super::render::bytes(now),
                            super::render::bytes(*t),
                            now * 100 / t
                        ),
                        _ => eprintln!("{label}: {}", super::render::bytes(now)),
                    }
                }
            }
            Meter::Silent => {}
        }
    }
}
