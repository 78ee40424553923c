//! A request from outside that the work in progress stop and clean up after itself.
//!
//! Dropping a future cannot run asynchronous clean-up, and a restore stopped midway must leave a
//! marker on its target (`COMMENT ON DATABASE ... INCOMPLETE`), or the next person finds a
//! half-restored database that looks like any other. So the CLI turns SIGINT and SIGTERM into a
//! [`request`], and a restore waits on [`requested`] beside its own work: when it fires, the restore
//! drops the work (which kills `pg_restore`'s process group and closes the loading connections),
//! marks the target, and returns [`OpsError::Interrupted`](super::OpsError::Interrupted).
//! Nothing requests it in the daemon, whose shutdown has its own rules.

use std::sync::OnceLock;

use tokio::sync::watch;

fn channel() -> &'static watch::Sender<Option<&'static str>> {
    static CHANNEL: OnceLock<watch::Sender<Option<&'static str>>> = OnceLock::new();
    CHANNEL.get_or_init(|| watch::channel(None).0)
}

/// Asks the work in progress, and any that starts later in this process, to stop; `why` names the
/// cause (a signal's name) in the error it returns.
pub fn request(why: &'static str) {
    channel().send_replace(Some(why));
}

/// Resolves once a stop is requested (at once if it already was), with its cause.
pub async fn requested() -> &'static str {
    let mut rx = channel().subscribe();
    loop {
        if let Some(why) = *rx.borrow_and_update() {
            return why;
        }
        if rx.changed().await.is_err() {
            // The sender is a static: it is never dropped.
            std::future::pending::<()>().await;
        }
    }
}
