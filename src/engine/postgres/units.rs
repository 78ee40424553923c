//! The units of table data between the scan of the archive and the loading connections, and the
//! order in which the connections take them.
//!
//! While the archive is still arriving, units go out in archive order: the connections load right
//! behind the fetch. Once the scan has reached the archive's end every unit is known, and the rest
//! go out table by table, the table with the most index work first. A table's indexes and
//! constraints are built as soon as its data is committed, while the connections load the next
//! table; so the table whose builds take longest should be complete first, and the table with the
//! least to build last. In archive order, the last table's builds ran alone at the end of the
//! restore, for 4.9 s of 23 on the rental data (BENCHMARKS.md, eighth run).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::engine::EngineError;

/// A stretch of one table's data: whole pieces (rows), from `start` to `end` in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Unit {
    pub dump_id: i64,
    pub start: u64,
    pub end: u64,
}

/// See the module documentation. The scan [`push`](UnitQueue::push)es and finally
/// [`end`](UnitQueue::end)s (or, if it stops without saying, an [`EndGuard`] ends it with an
/// error); the connections take with [`next`](UnitQueue::next).
pub(super) struct UnitQueue {
    state: Mutex<State>,
    changed: Notify,
    /// Indexes and constraints built from each table's data as soon as it is committed, by the dump
    /// id of the data: with the table's size, the weight of the work that follows its load.
    builds: HashMap<i64, usize>,
}

struct State {
    /// Units not handed out yet, in archive order.
    pending: VecDeque<Unit>,
    /// Bytes of each table's data cut so far, by dump id.
    bytes: HashMap<i64, u64>,
    scan: Scan,
}

enum Scan {
    Running,
    /// Reached the archive's end: every unit is known.
    Ended,
    /// Stopped by an error: the first connection that asks gets it (the restore then ends), any
    /// other one the same words.
    Failed {
        first: Option<EngineError>,
        message: String,
    },
}

impl UnitQueue {
    /// `builds`: how many indexes and constraints are built from each table's data once it is
    /// committed, by the dump id of the data; tables not named have none.
    pub fn new(builds: HashMap<i64, usize>) -> UnitQueue {
        UnitQueue {
            state: Mutex::new(State {
                pending: VecDeque::new(),
                bytes: HashMap::new(),
                scan: Scan::Running,
            }),
            changed: Notify::new(),
            builds,
        }
    }

    pub fn push(&self, unit: Unit) {
        let mut state = self.lock();
        *state.bytes.entry(unit.dump_id).or_default() += unit.end - unit.start;
        state.pending.push_back(unit);
        drop(state);
        self.changed.notify_waiters();
    }

    /// The scan is over: `Ok` when it reached the archive's end, or the error that stopped it.
    /// Only the first call counts.
    pub fn end(&self, result: Result<(), EngineError>) {
        let mut state = self.lock();
        if !matches!(state.scan, Scan::Running) {
            return;
        }
        state.scan = match result {
            Ok(()) => Scan::Ended,
            Err(e) => Scan::Failed {
                message: e.to_string(),
                first: Some(e),
            },
        };
        drop(state);
        self.changed.notify_waiters();
    }

    /// The next unit to load; `None` once every unit is handed out and the scan has reached the
    /// archive's end. Waits while the scan is still running and has nothing new.
    pub async fn next(&self) -> Option<Result<Unit, EngineError>> {
        loop {
            // Registered before looking, so that a push between the look and the wait is not missed.
            let changed = self.changed.notified();
            {
                let mut state = self.lock();
                match &mut state.scan {
                    Scan::Failed { first, message } => {
                        let error = first.take().unwrap_or_else(|| EngineError::ArchiveLayout {
                            detail: format!("the scan of the archive stopped: {message}"),
                        });
                        return Some(Err(error));
                    }
                    Scan::Running => {
                        if let Some(unit) = state.pending.pop_front() {
                            return Some(Ok(unit));
                        }
                    }
                    Scan::Ended => {
                        let at = self.heaviest(&state)?;
                        return state.pending.remove(at).map(Ok);
                    }
                }
            }
            changed.await;
        }
    }

    /// Where in `pending` the first unit of the table with the most build work is: its size times
    /// the number of builds that follow it, then its size, then archive order.
    fn heaviest(&self, state: &State) -> Option<usize> {
        let weight = |dump_id: i64| {
            let bytes = state.bytes.get(&dump_id).copied().unwrap_or(0);
            let builds = self.builds.get(&dump_id).copied().unwrap_or(0) as u64;
            (bytes.saturating_mul(builds), bytes)
        };
        let mut best: Option<(usize, (u64, u64))> = None;
        for (at, unit) in state.pending.iter().enumerate() {
            let w = weight(unit.dump_id);
            if best.is_none_or(|(_, b)| w > b) {
                best = Some((at, w));
            }
        }
        best.map(|(at, _)| at)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("unit queue lock")
    }
}

/// Held by the scan: if it stops without ending the queue (a panic, or its task aborted), the
/// queue ends with an error instead of leaving the connections waiting for units forever.
pub(super) struct EndGuard(pub std::sync::Arc<UnitQueue>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.0.end(Err(EngineError::ArchiveLayout {
            detail: "the scan of the archive stopped before its end".into(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(dump_id: i64, start: u64, len: u64) -> Unit {
        Unit {
            dump_id,
            start,
            end: start + len,
        }
    }

    async fn drain(q: &UnitQueue) -> Vec<i64> {
        let mut order = Vec::new();
        while let Some(u) = q.next().await {
            order.push(u.expect("no error").dump_id);
        }
        order
    }

    #[tokio::test]
    async fn while_the_scan_runs_units_go_out_in_archive_order() {
        let q = UnitQueue::new(HashMap::from([(3, 5)]));
        q.push(unit(1, 0, 10));
        q.push(unit(3, 10, 100));
        q.push(unit(1, 110, 10));
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(q.next().await.unwrap().unwrap());
        }
        assert_eq!(got, vec![unit(1, 0, 10), unit(3, 10, 100), unit(1, 110, 10)]);
    }

    #[tokio::test]
    async fn once_the_scan_ends_the_table_with_the_most_build_work_goes_first() {
        // Table 2 is the biggest but has one index; table 3 is smaller with four: 4 × 60 > 1 × 100.
        // Table 4 has no builds and goes last although it comes first in the archive.
        let q = UnitQueue::new(HashMap::from([(2, 1), (3, 4)]));
        q.push(unit(4, 0, 500));
        q.push(unit(2, 500, 50));
        q.push(unit(2, 550, 50));
        q.push(unit(3, 600, 30));
        q.push(unit(3, 630, 30));
        q.end(Ok(()));
        assert_eq!(drain(&q).await, vec![3, 3, 2, 2, 4]);
    }

    #[tokio::test]
    async fn a_waiting_connection_wakes_for_a_new_unit_and_for_the_end() {
        let q = std::sync::Arc::new(UnitQueue::new(HashMap::new()));
        let waiting = tokio::spawn({
            let q = q.clone();
            async move { drain(&q).await }
        });
        tokio::task::yield_now().await;
        q.push(unit(7, 0, 10));
        tokio::task::yield_now().await;
        q.push(unit(8, 10, 10));
        q.end(Ok(()));
        let order = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the connection woke")
            .unwrap();
        assert_eq!(order, vec![7, 8]);
    }

    #[tokio::test]
    async fn a_failed_scan_fails_the_next_take_even_with_units_left() {
        let q = UnitQueue::new(HashMap::new());
        q.push(unit(1, 0, 10));
        q.end(Err(EngineError::ArchiveLayout {
            detail: "block type 9 at byte 10".into(),
        }));
        let first = q.next().await.unwrap().unwrap_err();
        assert!(first.to_string().contains("block type 9"), "{first}");
        let later = q.next().await.unwrap().unwrap_err();
        assert!(
            later.to_string().contains("block type 9"),
            "every later take fails alike: {later}"
        );
    }

    #[tokio::test]
    async fn a_scan_that_stops_without_ending_the_queue_fails_the_takers() {
        let q = std::sync::Arc::new(UnitQueue::new(HashMap::new()));
        let scan = tokio::spawn({
            let guard = EndGuard(q.clone());
            async move {
                let _guard = guard;
                panic!("the scan broke");
            }
        });
        assert!(scan.await.is_err());
        let error = q.next().await.unwrap().unwrap_err();
        assert!(error.to_string().contains("stopped before its end"), "{error}");
    }

    #[tokio::test]
    async fn only_the_first_end_counts() {
        let q = std::sync::Arc::new(UnitQueue::new(HashMap::new()));
        let guard = EndGuard(q.clone());
        q.end(Ok(()));
        // The scan's guard goes after a normal end, as it does when the scan returns.
        drop(guard);
        q.end(Err(EngineError::ArchiveFailed));
        assert!(q.next().await.is_none(), "the scan had reached the end");
    }
}
