//! One queue and one task per sink: deliveries to a sink happen in order (a resolve never
//! overtakes its trigger), with retries and backoff, and a slow or failing sink holds up only
//! its own queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;

use super::config::RetryPolicy;
use super::payload::Notice;
use super::sink::Sink;

/// Deliveries waiting per sink beyond which new ones are dropped (and counted): a sink that is
/// down for hours must not grow memory without bound.
const QUEUE_CAPACITY: usize = 1024;

/// Delivery counters of one sink, as [`crate::alert::Alerter::stats`] reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkStats {
    pub sink: String,
    /// `webhook`, `slack`, `pagerduty` or `email`.
    pub kind: &'static str,
    /// Messages the receiver accepted.
    pub delivered: u64,
    /// Messages given up on: attempts exhausted, or an answer that retrying cannot change.
    pub failed: u64,
    /// Attempts after a first one failed.
    pub retries: u64,
    /// Messages never attempted: the queue was full, or the alerter was shut down.
    pub dropped: u64,
    /// Messages queued or in delivery right now.
    pub queued: u64,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    dropped: AtomicU64,
    queued: AtomicU64,
}

/// A sink's queue and worker task.
pub(crate) struct SinkWorker {
    name: String,
    kind: &'static str,
    queue: Mutex<Option<mpsc::Sender<Arc<Notice>>>>,
    task: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
}

impl SinkWorker {
    /// Starts the worker task on the current tokio runtime.
    pub(crate) fn spawn(
        name: String,
        kind: &'static str,
        sink: Sink,
        http: reqwest::Client,
        retry: RetryPolicy,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let counters = Arc::new(Counters::default());
        let delivery = Delivery {
            name: name.clone(),
            kind,
            sink,
            http,
            retry,
            counters: counters.clone(),
        };
        let task = tokio::spawn(delivery.run(receiver));
        SinkWorker {
            name,
            kind,
            queue: Mutex::new(Some(sender)),
            task: Mutex::new(Some(task)),
            counters,
        }
    }

    /// Queues `notice` without waiting; when it cannot, counts and logs the drop.
    pub(crate) fn enqueue(&self, notice: Arc<Notice>) {
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sender) = queue.as_ref() else {
            self.drop_notice(&notice, "the alerter is shut down");
            return;
        };
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        match sender.try_send(notice) {
            Ok(()) => {}
            Err(TrySendError::Full(notice)) => {
                self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                self.drop_notice(&notice, "its queue is full (the sink has been failing for a while)");
            }
            Err(TrySendError::Closed(notice)) => {
                self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                self.drop_notice(&notice, "its worker has stopped");
            }
        }
    }

    fn drop_notice(&self, notice: &Notice, why: &str) {
        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            sink = %self.name,
            kind = self.kind,
            key = %notice.alert.key,
            "alert not sent to sink `{}`: {why}",
            self.name
        );
    }

    /// Closes the queue: the worker delivers what is queued, then ends. Returns its task.
    pub(crate) fn close(&self) -> Option<JoinHandle<()>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.task.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub(crate) fn stats(&self) -> SinkStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SinkStats {
            sink: self.name.clone(),
            kind: self.kind,
            delivered: read(&self.counters.delivered),
            failed: read(&self.counters.failed),
            retries: read(&self.counters.retries),
            dropped: read(&self.counters.dropped),
            queued: read(&self.counters.queued),
        }
    }
}

/// What the worker task owns.
struct Delivery {
    name: String,
    kind: &'static str,
    sink: Sink,
    http: reqwest::Client,
    retry: RetryPolicy,
    counters: Arc<Counters>,
}

impl Delivery {
    async fn run(self, mut receiver: mpsc::Receiver<Arc<Notice>>) {
        while let Some(notice) = receiver.recv().await {
            self.deliver(&notice).await;
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
        }
    }

    async fn deliver(&self, notice: &Notice) {
        let key = &notice.alert.key;
        let status = notice.status.id();
        for attempt in 1..=self.retry.max_attempts.max(1) {
            let outcome = tokio::time::timeout(self.retry.attempt_timeout, self.sink.deliver(&self.http, notice)).await;
            let error = match outcome {
                Ok(Ok(())) => {
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(sink = %self.name, kind = self.kind, %key, status, attempt, "alert delivered");
                    return;
                }
                Ok(Err(error)) => error,
                Err(_) => super::sink::DeliveryError {
                    message: format!("no answer within {:?}", self.retry.attempt_timeout),
                    retryable: true,
                },
            };
            if !error.retryable || attempt >= self.retry.max_attempts {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                let given_up = if error.retryable {
                    "attempts exhausted"
                } else {
                    "retrying would not help"
                };
                tracing::error!(
                    sink = %self.name,
                    kind = self.kind,
                    %key,
                    status,
                    attempt,
                    error = %error.message,
                    "alert delivery to sink `{}` failed, giving up ({given_up}); fix the sink's config or \
                     the receiver",
                    self.name
                );
                return;
            }
            let delay = self.retry.delay_after(attempt);
            tracing::warn!(
                sink = %self.name,
                kind = self.kind,
                %key,
                status,
                attempt,
                error = %error.message,
                "alert delivery to sink `{}` failed; retrying in {delay:?}",
                self.name
            );
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
        }
    }
}
