//! [`SharedQueue`]: the queue of [`Value`]s that interpreters share, with collection of
//! reference cycles between queues.
//!
//! A value can carry queues, so a queue can (directly or through others) contain itself.
//! Such a group is unreachable once no interpreter holds a handle on any of its members, but
//! reference counting never frees it. The algorithm (a mark phase over the queue graph):
//!
//! - Every queue counts `held`: the references to it that sit inside items of queues. Its
//!   *external* references (Python objects, values in flight) are then its strong count
//!   minus `held`.
//! - Queues that ever received an item carrying queue handles register as *containers*.
//! - When a reference is dropped and every remaining reference to that queue is held by
//!   queue items, a collection runs: with the graph lock taken for writing, the roots are the
//!   containers with external references, reachability follows the queue handles of their
//!   items, and every unreachable container is emptied. The emptied items are dropped after
//!   the lock is released, which frees the group.
//! - Every put and get moves items under the graph lock taken for *reading*, so the
//!   collector sees `held` counts and items consistently; blocking waits happen outside it.
use std::cell::Cell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};

use crate::queue::{GetError, PutError, Queue, Wait};
use crate::value::{Handle, Value};

struct Node {
    queue: Queue<Value>,
    /// References to this queue held inside items of queues.
    held: AtomicUsize,
    /// Registered in `CONTAINERS`.
    container: AtomicBool,
}

/// Writers: the collector. Readers: every put and get.
static GRAPH: RwLock<()> = RwLock::new(());
/// Queues that received items carrying queue handles (Rust data only).
static CONTAINERS: Mutex<Vec<Weak<Node>>> = Mutex::new(Vec::new());

thread_local! {
    /// Set while a collection drops what it emptied (drops must not start another).
    static COLLECTING: Cell<bool> = const { Cell::new(false) };
}

/// A reference to a shared queue.
pub struct SharedQueue(Arc<Node>);

/// A reference that does not keep the queue alive (for pickling within a process).
pub struct WeakQueue(Weak<Node>);

impl Clone for SharedQueue {
    fn clone(&self) -> Self {
        SharedQueue(Arc::clone(&self.0))
    }
}

fn queues_in(value: &Value) -> impl Iterator<Item = &SharedQueue> {
    value.handles.iter().filter_map(|h| match h {
        Handle::Queue(q) => Some(q),
        Handle::Memory(_) | Handle::Constant(_) => None,
    })
}

impl SharedQueue {
    /// `maxsize == 0` means unbounded.
    pub fn new(maxsize: usize) -> Self {
        SharedQueue(Arc::new(Node {
            queue: Queue::new(maxsize),
            held: AtomicUsize::new(0),
            container: AtomicBool::new(false),
        }))
    }

    /// Put `value`, waiting as `wait` allows for room.
    pub fn put(&self, mut value: Value, wait: Wait) -> Result<(), PutError<Value>> {
        loop {
            {
                let _graph = GRAPH.read().unwrap_or_else(PoisonError::into_inner);
                let carried: Vec<&Arc<Node>> = queues_in(&value).map(|q| &q.0).collect();
                if !carried.is_empty() && !self.0.container.swap(true, Ordering::AcqRel) {
                    CONTAINERS.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::downgrade(&self.0));
                }
                let targets: Vec<Arc<Node>> = carried.into_iter().cloned().collect();
                for t in &targets {
                    t.held.fetch_add(1, Ordering::AcqRel);
                }
                match self.0.queue.put(value, Wait::Never) {
                    Ok(()) => return Ok(()),
                    Err(err) => {
                        for t in &targets {
                            t.held.fetch_sub(1, Ordering::AcqRel);
                        }
                        match err {
                            PutError::Full(v) => value = v,
                            closed => return Err(closed),
                        }
                    }
                }
            }
            if !self.0.queue.wait_for_room(wait) {
                return Err(PutError::Full(value));
            }
        }
    }

    /// Take the next value, waiting as `wait` allows for one.
    pub fn get(&self, wait: Wait) -> Result<Value, GetError> {
        loop {
            {
                let _graph = GRAPH.read().unwrap_or_else(PoisonError::into_inner);
                match self.0.queue.get(Wait::Never) {
                    Ok(value) => {
                        for q in queues_in(&value) {
                            q.0.held.fetch_sub(1, Ordering::AcqRel);
                        }
                        return Ok(value);
                    }
                    Err(GetError::Closed) => return Err(GetError::Closed),
                    Err(GetError::Empty) => {}
                }
            }
            if !self.0.queue.wait_for_item(wait) {
                return Err(GetError::Empty);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.0.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.queue.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.0.queue.is_full()
    }

    pub fn maxsize(&self) -> usize {
        self.0.queue.maxsize()
    }

    pub fn close(&self) {
        self.0.queue.close();
    }

    pub fn is_closed(&self) -> bool {
        self.0.queue.is_closed()
    }

    /// An address that identifies this queue while it lives.
    pub fn id(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    pub fn downgrade(&self) -> WeakQueue {
        WeakQueue(Arc::downgrade(&self.0))
    }
}

impl WeakQueue {
    /// The queue, if it still lives. Taken under the graph lock, so a collection never
    /// empties a queue that was just found again this way.
    pub fn upgrade(&self) -> Option<SharedQueue> {
        let _graph = GRAPH.read().unwrap_or_else(PoisonError::into_inner);
        self.0.upgrade().map(SharedQueue)
    }

    pub fn is_alive(&self) -> bool {
        self.0.strong_count() > 0
    }
}

impl Drop for SharedQueue {
    fn drop(&mut self) {
        let held = self.0.held.load(Ordering::Acquire);
        // After this drop, are all remaining references held by queue items?
        if held > 0 && Arc::strong_count(&self.0) - 1 <= held && !COLLECTING.with(Cell::get) {
            collect_dropping(Some(Arc::as_ptr(&self.0) as usize)); // this reference is going away
        }
    }
}

/// Empty every container that no external reference can reach (see the module docs).
/// Returns how many queues were emptied.
pub fn collect() -> usize {
    collect_dropping(None)
}

/// `collect`, not counting one reference to `dropping` (a reference being dropped).
fn collect_dropping(dropping: Option<usize>) -> usize {
    let (emptied, garbage) = {
        let _graph = GRAPH.write().unwrap_or_else(PoisonError::into_inner);
        let nodes: Vec<Arc<Node>> = {
            let mut containers = CONTAINERS.lock().unwrap_or_else(PoisonError::into_inner);
            containers.retain(|w| w.strong_count() > 0);
            containers.iter().filter_map(Weak::upgrade).collect()
        };
        // `nodes` holds one reference to each; anything beyond that and `held` is external.
        let external = |n: &Arc<Node>| {
            let ours = 1 + usize::from(dropping == Some(Arc::as_ptr(n) as usize));
            Arc::strong_count(n).saturating_sub(ours) > n.held.load(Ordering::Acquire)
        };
        let roots: Vec<&Arc<Node>> = nodes.iter().filter(|n| external(n)).collect();
        let root_ids: Vec<usize> = roots.iter().map(|n| Arc::as_ptr(n) as usize).collect();
        let mut reached: HashSet<usize> = roots.iter().map(|n| Arc::as_ptr(n) as usize).collect();
        let mut stack: Vec<Arc<Node>> = roots.into_iter().cloned().collect();
        while let Some(node) = stack.pop() {
            node.queue.for_each(|value| {
                for q in queues_in(value) {
                    if reached.insert(Arc::as_ptr(&q.0) as usize) {
                        stack.push(Arc::clone(&q.0));
                    }
                }
            });
        }
        let mut garbage = Vec::new();
        let mut emptied = 0;
        for node in &nodes {
            if !reached.contains(&(Arc::as_ptr(node) as usize)) {
                let items = node.queue.drain();
                for value in &items {
                    for q in queues_in(value) {
                        q.0.held.fetch_sub(1, Ordering::AcqRel);
                    }
                }
                emptied += 1;
                garbage.push(items);
            }
        }
        (emptied, (garbage, nodes, root_ids))
    };
    let (garbage, nodes, root_ids) = garbage;
    // Dropping frees the groups; their own drops must not start another collection.
    COLLECTING.with(|c| c.set(true));
    drop(garbage);
    COLLECTING.with(|c| c.set(false));
    // Our temporary references may have hidden another thread's last external drop (its
    // check saw them): if a queue that was a root no longer has an external reference but
    // ours, collect again once ours is gone.
    let again = nodes.iter().any(|n| {
        let held = n.held.load(Ordering::Acquire);
        root_ids.contains(&(Arc::as_ptr(n) as usize)) && held > 0 && Arc::strong_count(n) - 1 <= held
    });
    drop(nodes);
    if again { emptied + collect_dropping(None) } else { emptied }
}

/// Queues alive in this process that ever contained queues (introspection for tests).
pub fn containers_alive() -> usize {
    let mut containers = CONTAINERS.lock().unwrap_or_else(PoisonError::into_inner);
    containers.retain(|w| w.strong_count() > 0);
    containers.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collections are process-wide: a test that checks that a drop freed a group right away
    /// must not run while another test's collection holds temporary references.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn carrying(queues: &[&SharedQueue]) -> Value {
        Value { bytes: Vec::new(), handles: queues.iter().map(|q| Handle::Queue((*q).clone())).collect() }
    }

    #[test]
    fn a_queue_that_contains_itself_is_freed() {
        let _serial = serial();
        let q = SharedQueue::new(0);
        let weak = q.downgrade();
        q.put(carrying(&[&q]), Wait::Never).unwrap();
        drop(q);
        assert!(!weak.is_alive(), "the self-cycle was collected");
    }

    #[test]
    fn queues_that_contain_each_other_are_freed_and_reachable_ones_kept() {
        let _serial = serial();
        let (a, b, keep) = (SharedQueue::new(0), SharedQueue::new(0), SharedQueue::new(0));
        let (wa, wb) = (a.downgrade(), b.downgrade());
        a.put(carrying(&[&b]), Wait::Never).unwrap();
        b.put(carrying(&[&a]), Wait::Never).unwrap();
        keep.put(carrying(&[&keep]), Wait::Never).unwrap(); // a cycle still held from outside
        drop(a);
        assert!(wa.is_alive() && wb.is_alive(), "b is still held, and b holds a");
        drop(b);
        assert!(!wa.is_alive() && !wb.is_alive());
        assert_eq!(keep.len(), 1, "an externally held cycle is left alone");
        let item = keep.get(Wait::Never).unwrap();
        drop(item);
        assert_eq!(keep.0.held.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_queue_reached_through_a_held_queue_survives() {
        let _serial = serial();
        let (outer, inner) = (SharedQueue::new(0), SharedQueue::new(0));
        let w = inner.downgrade();
        inner.put(carrying(&[&inner]), Wait::Never).unwrap();
        outer.put(carrying(&[&inner]), Wait::Never).unwrap();
        drop(inner);
        let inner = w.upgrade().expect("reachable from outer");
        assert_eq!(inner.len(), 1, "not emptied");
        drop(inner);
        drop(outer);
        assert!(!w.is_alive());
    }

    #[test]
    fn cycles_are_collected_under_concurrent_puts_and_gets() {
        let _serial = serial();
        // Another thread's collection may hold a queue for a moment when we drop ours; the
        // group is then collected by that thread instead, as soon as it lets go. So what is
        // guaranteed is that every group is freed once all threads are done.
        let handles: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    let mut weak = Vec::new();
                    for _ in 0..500 {
                        let (a, b) = (SharedQueue::new(0), SharedQueue::new(0));
                        weak.push((a.downgrade(), b.downgrade()));
                        a.put(carrying(&[&b]), Wait::Never).unwrap();
                        b.put(carrying(&[&a]), Wait::Never).unwrap();
                        let moved = a.get(Wait::Never).unwrap(); // b's ref leaves a...
                        b.put(moved, Wait::Never).unwrap(); // ...and goes into b
                    }
                    weak
                })
            })
            .collect();
        let weak: Vec<_> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        let alive = weak.iter().filter(|(a, b)| a.is_alive() || b.is_alive()).count();
        assert_eq!(alive, 0, "{alive} of {} cycles leaked", weak.len());
    }
}
