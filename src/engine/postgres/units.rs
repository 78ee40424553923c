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
//!
//! In either order, a connection takes a unit of a table no other connection is loading when there
//! is one, and shares a table only when no other has units left, as `pg_restore --jobs` gives each
//! worker a table of its own. On the rental data, with both connections on the same table for most
//! of the load, the restore took 25.7–26.0 s and kept the machine busy for 44.5–45.6 core-seconds;
//! one table per connection, 23.3–23.9 s and 41.8–42.7, for the same WAL (BENCHMARKS.md, ninth run;
//! two `COPY`s into one table on an idle server were no slower than into two, so where the extra
//! CPU goes while index builds run alongside is not pinned down). Sharing still matters where one
//! table holds most of the data: otherwise one connection would load it alone.

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
/// error); each connection takes through its own [`Taker`].
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
    /// How many connections are loading each table, by dump id: those whose last unit was of it.
    loading: HashMap<i64, usize>,
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
                loading: HashMap::new(),
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

    /// A connection's own way to take units: the queue knows which table it is loading from the
    /// unit it took last, until it takes another or drops its taker.
    pub fn taker(self: &std::sync::Arc<Self>) -> Taker {
        Taker {
            queue: self.clone(),
            table: None,
        }
    }

    /// See [`Taker::next`]; `table` is the taker's.
    async fn next(&self, table: &mut Option<i64>) -> Option<Result<Unit, EngineError>> {
        loop {
            // Registered before looking, so that a push between the look and the wait is not missed.
            let changed = self.changed.notified();
            {
                let mut state = self.lock();
                if let Scan::Failed { first, message } = &mut state.scan {
                    let error = first.take().unwrap_or_else(|| EngineError::ArchiveLayout {
                        detail: format!("the scan of the archive stopped: {message}"),
                    });
                    return Some(Err(error));
                }
                state.release(table.take());
                if let Some(at) = self.choose(&state) {
                    let unit = state.pending.remove(at).expect("chosen from pending");
                    *state.loading.entry(unit.dump_id).or_default() += 1;
                    *table = Some(unit.dump_id);
                    return Some(Ok(unit));
                }
                if matches!(state.scan, Scan::Ended) {
                    return None;
                }
            }
            changed.await;
        }
    }

    /// Where in `pending` the unit to hand out next is (see the module documentation): the first
    /// in order of a table no connection is loading, else the first in order. The order is the
    /// archive's while the scan runs; after it, the table with the most build work first: its size
    /// times the number of builds that follow it, then its size, then archive order.
    fn choose(&self, state: &State) -> Option<usize> {
        let weight = |dump_id: i64| match state.scan {
            Scan::Running => (0, 0),
            _ => {
                let bytes = state.bytes.get(&dump_id).copied().unwrap_or(0);
                let builds = self.builds.get(&dump_id).copied().unwrap_or(0) as u64;
                (bytes.saturating_mul(builds), bytes)
            }
        };
        let alone = |unit: &Unit| state.loading.get(&unit.dump_id).is_none_or(|&n| n == 0);
        state
            .pending
            .iter()
            .enumerate()
            .max_by_key(|&(at, unit)| (alone(unit), weight(unit.dump_id), std::cmp::Reverse(at)))
            .map(|(at, _)| at)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("unit queue lock")
    }
}

impl State {
    fn release(&mut self, table: Option<i64>) {
        if let Some(n) = table.and_then(|t| self.loading.get_mut(&t)) {
            *n -= 1;
        }
    }
}

/// One connection's hold on the queue: see [`UnitQueue::taker`].
pub(super) struct Taker {
    queue: std::sync::Arc<UnitQueue>,
    /// The table of the unit taken last.
    table: Option<i64>,
}

impl Taker {
    /// The next unit for this connection to load; `None` once every unit is handed out and the scan
    /// has reached the archive's end. Waits while the scan is still running and has nothing new.
    /// This connection is done with its previous unit.
    pub async fn next(&mut self) -> Option<Result<Unit, EngineError>> {
        self.queue.next(&mut self.table).await
    }
}

impl Drop for Taker {
    fn drop(&mut self) {
        self.queue.lock().release(self.table.take());
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
    use std::sync::Arc;

    fn unit(dump_id: i64, start: u64, len: u64) -> Unit {
        Unit {
            dump_id,
            start,
            end: start + len,
        }
    }

    fn queue(builds: HashMap<i64, usize>) -> Arc<UnitQueue> {
        Arc::new(UnitQueue::new(builds))
    }

    async fn drain(q: &Arc<UnitQueue>) -> Vec<i64> {
        let mut taker = q.taker();
        let mut order = Vec::new();
        while let Some(u) = taker.next().await {
            order.push(u.expect("no error").dump_id);
        }
        order
    }

    #[tokio::test]
    async fn while_the_scan_runs_units_go_out_in_archive_order() {
        let q = queue(HashMap::from([(3, 5)]));
        q.push(unit(1, 0, 10));
        q.push(unit(3, 10, 100));
        q.push(unit(1, 110, 10));
        let mut taker = q.taker();
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(taker.next().await.unwrap().unwrap());
        }
        assert_eq!(got, vec![unit(1, 0, 10), unit(3, 10, 100), unit(1, 110, 10)]);
    }

    #[tokio::test]
    async fn once_the_scan_ends_the_table_with_the_most_build_work_goes_first() {
        // Table 2 is the biggest but has one index; table 3 is smaller with four: 4 × 60 > 1 × 100.
        // Table 4 has no builds and goes last although it comes first in the archive.
        let q = queue(HashMap::from([(2, 1), (3, 4)]));
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
        let q = queue(HashMap::new());
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
        let q = queue(HashMap::new());
        q.push(unit(1, 0, 10));
        q.end(Err(EngineError::ArchiveLayout {
            detail: "block type 9 at byte 10".into(),
        }));
        let first = q.taker().next().await.unwrap().unwrap_err();
        assert!(first.to_string().contains("block type 9"), "{first}");
        let later = q.taker().next().await.unwrap().unwrap_err();
        assert!(
            later.to_string().contains("block type 9"),
            "every later take fails alike: {later}"
        );
    }

    #[tokio::test]
    async fn a_scan_that_stops_without_ending_the_queue_fails_the_takers() {
        let q = queue(HashMap::new());
        let scan = tokio::spawn({
            let guard = EndGuard(q.clone());
            async move {
                let _guard = guard;
                panic!("the scan broke");
            }
        });
        assert!(scan.await.is_err());
        let error = q.taker().next().await.unwrap().unwrap_err();
        assert!(error.to_string().contains("stopped before its end"), "{error}");
    }

    #[tokio::test]
    async fn only_the_first_end_counts() {
        let q = queue(HashMap::new());
        let guard = EndGuard(q.clone());
        q.end(Ok(()));
        // The scan's guard goes after a normal end, as it does when the scan returns.
        drop(guard);
        q.end(Err(EngineError::ArchiveFailed));
        assert!(q.taker().next().await.is_none(), "the scan had reached the end");
    }

    #[tokio::test]
    async fn connections_load_different_tables_while_there_are_any() {
        // Table 1 comes first in the archive, but once one connection loads it the other takes
        // table 2, and each stays on its own table.
        let q = queue(HashMap::new());
        for i in 0..4 {
            q.push(unit(1, i * 10, 10));
        }
        for i in 4..6 {
            q.push(unit(2, i * 10, 10));
        }
        let (mut a, mut b) = (q.taker(), q.taker());
        let take = async |t: &mut Taker| {
            let next = tokio::time::timeout(std::time::Duration::from_secs(5), t.next());
            next.await.expect("a unit is pending").unwrap().unwrap().dump_id
        };
        assert_eq!((take(&mut a).await, take(&mut b).await), (1, 2));
        assert_eq!((take(&mut a).await, take(&mut b).await), (1, 2));
        // Table 2 has no units left: b shares table 1.
        assert_eq!((take(&mut a).await, take(&mut b).await), (1, 1));
    }

    #[tokio::test]
    async fn a_connection_that_stops_frees_its_table() {
        let q = queue(HashMap::new());
        q.push(unit(1, 0, 10));
        q.push(unit(1, 10, 10));
        q.push(unit(2, 20, 10));
        let mut a = q.taker();
        assert_eq!(a.next().await.unwrap().unwrap().dump_id, 1);
        drop(a);
        // Nobody loads table 1 any more: it comes first again.
        assert_eq!(q.taker().next().await.unwrap().unwrap().dump_id, 1);
    }

    #[tokio::test]
    async fn after_the_scan_a_second_connection_takes_the_next_heaviest_table() {
        let q = queue(HashMap::from([(2, 1), (3, 4)]));
        q.push(unit(2, 0, 50));
        q.push(unit(2, 50, 50));
        q.push(unit(3, 100, 30));
        q.push(unit(3, 130, 30));
        q.end(Ok(()));
        let (mut a, mut b) = (q.taker(), q.taker());
        assert_eq!(a.next().await.unwrap().unwrap().dump_id, 3);
        assert_eq!(b.next().await.unwrap().unwrap().dump_id, 2);
        assert_eq!(a.next().await.unwrap().unwrap().dump_id, 3);
        assert_eq!(
            a.next().await.unwrap().unwrap().dump_id,
            2,
            "table 3 is done: share table 2"
        );
        assert!(a.next().await.is_none());
    }
}
