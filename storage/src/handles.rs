//! A bound on open file descriptors and memory maps, shared by every log of a data directory.
//!
//! Each segment has three handles that can be open or closed: its `.log` file descriptor and the mmaps of its
//! `.index` and `.timeindex`. Keeping all of them open would cost three handles per segment: a broker with
//! 20,000 partitions would pass both the descriptor limit and `vm.max_map_count` (65,530). Instead each handle
//! lives in a [`Slot`] that opens on first use and is registered with one [`HandleCache`]; when more than
//! `capacity` slots are open, the cache closes the least recently used ones. A closed slot reopens on its next
//! use, so eviction costs a later `open`/`mmap`, never correctness.
//!
//! Eviction only ever `try_lock`s a slot: a slot in use is skipped, so no lock order exists to get wrong, and
//! an owner never waits on another log's I/O. Dirty pages of an unmapped index stay in the page cache, so
//! closing a map loses nothing.
//!
//! The cache does not own what it bounds: it holds `Weak` references, and a slot dropped by its segment simply
//! disappears from the next scan.
//!
//! The cache also names the [`Disk`] its files are on, since everything that opens a segment's files already
//! holds it: one value per data directory for both.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crate::disk::{Disk, OsDisk};

/// Default for the most handles (descriptors plus maps) that one data directory keeps open at once.
pub const HANDLES_MAX_DEFAULT: usize = 8192;

/// Bounds the number of open slots; see the module documentation.
pub struct HandleCache {
    capacity: usize,
    disk: Arc<dyn Disk>,
    clock: AtomicU64,
    open: Mutex<Vec<Weak<dyn Evictable>>>,
}

impl fmt::Debug for HandleCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandleCache")
            .field("capacity", &self.capacity)
            .field("open", &self.open_count())
            .field("disk", &self.disk)
            .finish()
    }
}

trait Evictable: Send + Sync {
    fn last_used(&self) -> u64;
    /// Closes the slot unless it is in use; returns whether the slot no longer counts as open.
    fn try_close(&self) -> bool;
}

impl HandleCache {
    /// A cache of files on the operating system's disk.
    pub fn new(capacity: usize) -> Arc<Self> {
        Self::on_disk(capacity, OsDisk::shared())
    }

    pub fn on_disk(capacity: usize, disk: Arc<dyn Disk>) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(4),
            disk,
            clock: AtomicU64::new(0),
            open: Mutex::new(Vec::new()),
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn disk(&self) -> &Arc<dyn Disk> {
        &self.disk
    }

    /// Slots registered as open (an upper bound: a slot closed by its owner counts until the next scan).
    pub fn open_count(&self) -> usize {
        lock(&self.open).len()
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    fn register(&self, slot: Weak<dyn Evictable>) {
        let mut open = lock(&self.open);
        open.push(slot);
        if open.len() <= self.capacity {
            return;
        }
        // Over the bound: drop dead entries, then close the least recently used down to 7/8 of capacity so
        // that the scan (O(n log n)) runs once per capacity/8 registrations rather than on every one.
        let target = self.capacity - self.capacity / 8;
        let mut live: Vec<(u64, Arc<dyn Evictable>)> = open
            .drain(..)
            .filter_map(|weak| weak.upgrade())
            .map(|slot| (slot.last_used(), slot))
            .collect();
        live.sort_by_key(|(last_used, _)| *last_used);
        let excess = live.len().saturating_sub(target);
        let mut closed = 0;
        live.retain(|(_, slot)| {
            if closed < excess && slot.try_close() {
                closed += 1;
                false
            } else {
                true
            }
        });
        open.extend(live.iter().map(|(_, slot)| Arc::downgrade(slot)));
    }
}

/// One lazily opened handle (a file or a map) counted against a [`HandleCache`].
pub struct Slot<T: Send + 'static> {
    cache: Arc<HandleCache>,
    state: Mutex<SlotState<T>>,
    last_used: AtomicU64,
    this: Weak<Slot<T>>,
}

struct SlotState<T> {
    value: Option<T>,
    /// Whether the cache holds an entry for this slot (so reopening must not add a second one).
    registered: bool,
}

impl<T: Send + 'static> fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot").field("open", &self.is_open()).finish()
    }
}

impl<T: Send + 'static> Slot<T> {
    pub fn new(cache: &Arc<HandleCache>) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            cache: cache.clone(),
            state: Mutex::new(SlotState {
                value: None,
                registered: false,
            }),
            last_used: AtomicU64::new(0),
            this: this.clone(),
        })
    }

    /// Runs `f` on the handle, opening it with `open` first if it is closed.
    pub fn with<R, E>(&self, open: impl FnOnce() -> Result<T, E>, f: impl FnOnce(&mut T) -> R) -> Result<R, E> {
        let mut newly_registered = false;
        let result = {
            let mut state = lock(&self.state);
            if state.value.is_none() {
                state.value = Some(open()?);
                if !state.registered {
                    state.registered = true;
                    newly_registered = true;
                }
            }
            self.last_used.store(self.cache.tick(), Ordering::Relaxed);
            f(state.value.as_mut().expect("opened above"))
        };
        // Registered after the slot's own lock is released: registration may evict, and eviction must never
        // find this thread holding a slot lock it could be waiting on.
        if newly_registered {
            self.cache.register(self.this.clone());
        }
        Ok(result)
    }

    /// The cache this slot counts against.
    pub fn cache(&self) -> &Arc<HandleCache> {
        &self.cache
    }

    /// Runs `f` on the handle only if it is open.
    pub fn with_open<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        lock(&self.state).value.as_mut().map(f)
    }

    /// Closes the handle now (for example before truncating the file under a map).
    pub fn close(&self) -> Option<T> {
        lock(&self.state).value.take()
    }

    pub fn is_open(&self) -> bool {
        lock(&self.state).value.is_some()
    }
}

impl<T: Send + 'static> Evictable for Slot<T> {
    fn last_used(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }

    fn try_close(&self) -> bool {
        match self.state.try_lock() {
            Ok(mut state) => {
                state.value = None;
                state.registered = false;
                true
            }
            Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                let mut state = poisoned.into_inner();
                state.value = None;
                state.registered = false;
                true
            }
            Err(std::sync::TryLockError::WouldBlock) => false,
        }
    }
}

/// A poisoned lock only means another thread panicked while holding it; the handle it guards is still a
/// plain file or map, so carry on with it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn open_value(v: u32) -> impl FnOnce() -> Result<u32, Infallible> {
        move || Ok(v)
    }

    #[test]
    fn open_slots_never_exceed_the_capacity() {
        let cache = HandleCache::new(16);
        let slots: Vec<_> = (0..100).map(|_| Slot::<u32>::new(&cache)).collect();
        for (i, slot) in slots.iter().enumerate() {
            slot.with(open_value(i as u32), |v| *v).unwrap();
            assert!(cache.open_count() <= 16);
        }
        let open = slots.iter().filter(|s| s.is_open()).count();
        assert!((14..=16).contains(&open), "{open} open");
        // The most recently used survive.
        assert!(slots[99].is_open() && slots[98].is_open());
        assert!(!slots[0].is_open());
    }

    #[test]
    fn an_evicted_slot_reopens_on_use() {
        let cache = HandleCache::new(4);
        let slots: Vec<_> = (0..10).map(|_| Slot::<u32>::new(&cache)).collect();
        for slot in &slots {
            slot.with(open_value(1), |_| ()).unwrap();
        }
        assert!(!slots[0].is_open());
        assert_eq!(slots[0].with(open_value(7), |v| *v).unwrap(), 7);
        assert!(slots[0].is_open());
    }

    #[test]
    fn a_slot_in_use_is_not_evicted() {
        let cache = HandleCache::new(4);
        let busy = Slot::<u32>::new(&cache);
        let others: Vec<_> = (0..10).map(|_| Slot::<u32>::new(&cache)).collect();
        busy.with(open_value(1), |_| ()).unwrap();
        busy.with(open_value(1), |_| {
            for slot in &others {
                slot.with(open_value(2), |_| ()).unwrap();
            }
        })
        .unwrap();
        assert!(busy.is_open(), "the oldest slot was in use and must have been skipped");
    }

    #[test]
    fn dropped_slots_leave_the_cache() {
        let cache = HandleCache::new(4);
        for _ in 0..20 {
            let slot = Slot::<u32>::new(&cache);
            slot.with(open_value(1), |_| ()).unwrap();
        }
        assert!(cache.open_count() <= 4);
    }

    #[test]
    fn a_closed_and_reopened_slot_is_registered_once() {
        let cache = HandleCache::new(100);
        let slot = Slot::<u32>::new(&cache);
        for _ in 0..10 {
            slot.with(open_value(1), |_| ()).unwrap();
            slot.close();
        }
        assert_eq!(cache.open_count(), 1);
    }
}
