//! Deliveries in flight, and retiring a subscription without deadlock.
//!
//! Messages are delivered synchronously on the publisher's thread, so a
//! subscription's callback may be running on several threads at once, and a
//! callback may itself publish, subscribe or unsubscribe. Retiring a
//! subscription (the plugin's `unsubscribe`, or the host removing a plugin's
//! subscriptions before `destroy`) must not return while a delivery to it is
//! still running on another thread: the plugin frees `user` right after. It
//! must not wait for the caller's *own* delivery either: a callback that
//! unsubscribes itself would wait for itself forever.
//!
//! So each subscription records which threads are inside its callback
//! ([`Deliveries`]), and a retirement waits only for the other threads. The
//! one wait left that could deadlock is a cycle: a callback on thread A
//! unsubscribing a subscription whose callback runs on thread B, while that
//! callback is unsubscribing one whose callback runs on A. [`WaitGraph`]
//! records who waits for whom, and a plugin's `unsubscribe` that would close
//! such a cycle is refused (nothing changes, the plugin may retry after its
//! callback returns) instead of hanging both threads.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, ThreadId};

/// Deepest nesting of deliveries on one thread: a callback that publishes,
/// whose subscriber's callback publishes, and so on. A publish deeper than
/// this is refused instead of overflowing the thread's stack.
pub const MAX_DELIVERY_DEPTH: u32 = 16;

thread_local! {
    /// Deliveries on this thread's stack now.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// How many deliveries are running on the calling thread's stack.
pub fn depth() -> u32 {
    DEPTH.with(Cell::get)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a single push, remove or flag store:
    // a panic cannot leave them half-done, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug)]
struct State {
    /// False once retired: no delivery starts after that.
    active: bool,
    /// One entry per delivery in flight; a thread appears once per nesting
    /// level (a callback publishing on its own topic).
    threads: Vec<ThreadId>,
}

/// The deliveries of one subscription: whether it still takes messages and
/// which threads are inside its callback. Both change under one lock, so a
/// delivery starts only while the subscription is active and a retirement
/// sees every delivery that started before it.
#[derive(Debug)]
pub struct Deliveries {
    state: Mutex<State>,
    /// Signalled whenever a delivery ends.
    ended: Condvar,
}

impl Default for Deliveries {
    fn default() -> Self {
        Deliveries {
            state: Mutex::new(State {
                active: true,
                threads: Vec::new(),
            }),
            ended: Condvar::new(),
        }
    }
}

/// A delivery running on this thread; ends when dropped (on this thread:
/// it is not `Send`, since it also counts this thread's nesting depth).
#[must_use = "the delivery ends when this is dropped"]
pub struct InFlight<'a> {
    deliveries: &'a Deliveries,
    thread: ThreadId,
    _not_send: PhantomData<*const ()>,
}

impl Deliveries {
    /// Starts a delivery on the calling thread, unless the subscription is
    /// retired (`None`: do not call the callback).
    pub fn begin(&self) -> Option<InFlight<'_>> {
        let thread = thread::current().id();
        let mut st = lock(&self.state);
        if !st.active {
            return None;
        }
        st.threads.push(thread);
        DEPTH.with(|d| d.set(d.get() + 1));
        Some(InFlight {
            deliveries: self,
            thread,
            _not_send: PhantomData,
        })
    }

    /// Threads other than `me` inside the callback now.
    fn others(&self, me: ThreadId) -> Vec<ThreadId> {
        lock(&self.state)
            .threads
            .iter()
            .copied()
            .filter(|t| *t != me)
            .collect()
    }

    /// Blocks until no thread other than `me` is inside the callback.
    fn wait_for_others(&self, me: ThreadId) {
        let mut st = lock(&self.state);
        while st.threads.iter().any(|t| *t != me) {
            st = self.ended.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut st = lock(&self.deliveries.state);
        if let Some(i) = st.threads.iter().position(|t| *t == self.thread) {
            st.threads.swap_remove(i);
        }
        drop(st);
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        self.deliveries.ended.notify_all();
    }
}

/// Why a plugin's `unsubscribe` did not retire a subscription.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RetireError {
    /// No active subscription with this id belongs to the plugin: it never
    /// existed, was unsubscribed before, or the host removed it.
    #[error("no active subscription with this id belongs to the plugin")]
    NotFound,
    /// A callback on another thread is waiting, directly or through other
    /// waits, for a delivery running on this thread.
    #[error(
        "unsubscribing now would deadlock: the subscription's callback is running on another thread that is itself waiting for a callback running on this one; nothing was changed, retry after this callback returns"
    )]
    WouldDeadlock,
}

/// Which thread waits for which subscription's deliveries to end: the edges
/// that could form a deadlock cycle.
#[derive(Debug, Default)]
pub struct WaitGraph {
    waits: Mutex<HashMap<ThreadId, Arc<Deliveries>>>,
}

/// A retirement that still has to wait for deliveries on other threads.
#[must_use = "call wait() before freeing what the callback uses"]
pub struct Retirement<'a> {
    graph: &'a WaitGraph,
    deliveries: Arc<Deliveries>,
    me: ThreadId,
    registered: bool,
}

impl Retirement<'_> {
    /// Blocks until no delivery to the retired subscription runs on another
    /// thread. The caller's own delivery, if it is inside the callback, is
    /// not waited for.
    pub fn wait(self) {
        if self.registered {
            self.deliveries.wait_for_others(self.me);
            lock(&self.graph.waits).remove(&self.me);
        }
    }
}

impl WaitGraph {
    /// A plugin's `unsubscribe`: retires `deliveries` (no delivery starts
    /// after this returns) and returns the wait for the deliveries already in
    /// flight on other threads. Refuses, changing nothing, when that wait
    /// would close a cycle of waits.
    ///
    /// # Errors
    /// [`RetireError::NotFound`] if it was retired before;
    /// [`RetireError::WouldDeadlock`].
    pub fn retire(&self, deliveries: &Arc<Deliveries>) -> Result<Retirement<'_>, RetireError> {
        let me = thread::current().id();
        // Every retirement holds this lock across its check and its
        // registration, so of two threads closing a cycle the later one sees
        // the earlier one's wait, and `active` changes only under it.
        let mut waits = lock(&self.waits);
        if !lock(&deliveries.state).active {
            return Err(RetireError::NotFound);
        }
        if closes_cycle(&waits, me, deliveries.others(me)) {
            return Err(RetireError::WouldDeadlock);
        }
        Ok(self.deactivate(&mut waits, deliveries, me))
    }

    /// The host removing a subscription (a plugin failed or is about to be
    /// destroyed): retires it if it is still active and waits for every
    /// delivery in flight on another thread, also when a plugin's
    /// `unsubscribe` retired it first and is still waiting. Called from the
    /// lifecycle thread outside any delivery, so its wait closes no cycle.
    pub fn retire_and_wait(&self, deliveries: &Arc<Deliveries>) {
        let me = thread::current().id();
        let mut waits = lock(&self.waits);
        let retirement = self.deactivate(&mut waits, deliveries, me);
        drop(waits);
        retirement.wait();
    }

    fn deactivate(
        &self,
        waits: &mut HashMap<ThreadId, Arc<Deliveries>>,
        deliveries: &Arc<Deliveries>,
        me: ThreadId,
    ) -> Retirement<'_> {
        let registered = {
            let mut st = lock(&deliveries.state);
            st.active = false;
            // Deliveries that began after the caller's cycle check are on
            // threads that wait for nothing now (a wait registers under
            // `self.waits`, which the caller holds); if one of them later
            // waits for a delivery of ours, its own check sees this entry.
            st.threads.iter().any(|t| *t != me)
        };
        if registered {
            waits.insert(me, Arc::clone(deliveries));
        }
        Retirement {
            graph: self,
            deliveries: Arc::clone(deliveries),
            me,
            registered,
        }
    }
}

/// Whether `me` waiting for the deliveries on `threads` closes a cycle: one
/// of them waits (directly or through other waiting threads) for a delivery
/// running on `me`.
fn closes_cycle(
    waits: &HashMap<ThreadId, Arc<Deliveries>>,
    me: ThreadId,
    mut stack: Vec<ThreadId>,
) -> bool {
    let mut seen = HashSet::new();
    while let Some(t) = stack.pop() {
        if !seen.insert(t) {
            continue;
        }
        // A thread that waits for nothing will finish its delivery.
        let Some(waited_for) = waits.get(&t) else {
            continue;
        };
        for next in waited_for.others(t) {
            if next == me {
                return true;
            }
            stack.push(next);
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_thread_does_not_wait_for_its_own_delivery() {
        let graph = WaitGraph::default();
        let d = Arc::new(Deliveries::default());
        let inflight = d.begin().unwrap();
        assert_eq!(depth(), 1);
        graph.retire(&d).unwrap().wait();
        assert!(d.begin().is_none(), "retired: no new delivery");
        drop(inflight);
        assert_eq!(depth(), 0);
        assert_eq!(graph.retire(&d).err(), Some(RetireError::NotFound));
    }

    #[test]
    fn retirement_waits_for_a_delivery_on_another_thread() {
        let graph = WaitGraph::default();
        let d = Arc::new(Deliveries::default());
        let (started_tx, started_rx) = mpsc::channel();
        let (finish_tx, finish_rx) = mpsc::channel::<()>();
        let (ended_tx, ended_rx) = mpsc::channel();
        let d2 = Arc::clone(&d);
        let deliverer = thread::spawn(move || {
            let inflight = d2.begin().unwrap();
            started_tx.send(()).unwrap();
            finish_rx.recv().unwrap();
            ended_tx.send(()).unwrap();
            drop(inflight);
        });
        started_rx.recv().unwrap();
        let retirement = graph.retire(&d).unwrap();
        finish_tx.send(()).unwrap();
        retirement.wait();
        // wait() returned, so the other thread's delivery had ended.
        assert!(ended_rx.try_recv().is_ok());
        deliverer.join().unwrap();
    }

    #[test]
    fn the_second_of_two_crossing_retirements_is_refused_not_deadlocked() {
        // Thread A is delivering s1, thread B is delivering s2. A retires s2
        // (waits for B); B then retires s1, which would wait for A: a cycle.
        let graph = Arc::new(WaitGraph::default());
        let s1 = Arc::new(Deliveries::default());
        let s2 = Arc::new(Deliveries::default());
        let (a_in_tx, a_in_rx) = mpsc::channel();
        let (b_in_tx, b_in_rx) = mpsc::channel();
        let (a_waiting_tx, a_waiting_rx) = mpsc::channel();
        let (result_tx, result_rx) = mpsc::channel();
        let a = {
            let (graph, s1, s2) = (Arc::clone(&graph), Arc::clone(&s1), Arc::clone(&s2));
            thread::spawn(move || {
                let _in_s1 = s1.begin().unwrap();
                a_in_tx.send(()).unwrap();
                b_in_rx.recv().unwrap();
                let r = graph.retire(&s2).unwrap();
                a_waiting_tx.send(()).unwrap();
                r.wait();
            })
        };
        let b = {
            let (graph, s1, s2) = (Arc::clone(&graph), Arc::clone(&s1), Arc::clone(&s2));
            thread::spawn(move || {
                a_in_rx.recv().unwrap();
                let in_s2 = s2.begin().unwrap();
                b_in_tx.send(()).unwrap();
                a_waiting_rx.recv().unwrap();
                let refused = graph.retire(&s1).err();
                // Still active: nothing changed for s1.
                let s1_active = lock(&s1.state).active;
                drop(in_s2);
                result_tx.send((refused, s1_active)).unwrap();
            })
        };
        let (refused, s1_active) = result_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("crossing retirements deadlocked");
        assert_eq!(refused, Some(RetireError::WouldDeadlock));
        assert!(s1_active);
        a.join().unwrap();
        b.join().unwrap();
        // A's retirement of s2 completed once B's delivery ended.
        assert!(s2.begin().is_none());
    }
}
