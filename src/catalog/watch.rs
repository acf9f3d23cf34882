//! Per-key and per-prefix wakeups for KV blocking queries. A blocked
//! `GET /v1/kv/<key>?index=N` registers the key (or, with `?recurse` and
//! `?keys`, its prefix) here and sleeps until a write touches it, so a
//! write elsewhere neither wakes it nor makes it re-read LMDB. Ten thousand
//! watchers cost one map entry and one channel each; a write wakes only the
//! watchers of its own key and of the prefixes above it.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;

/// Whether a watch is on one key or on everything under a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Key,
    Prefix,
}

struct Slot {
    /// Carries the raft index of the latest change seen for this key/prefix.
    tx: watch::Sender<u64>,
    watchers: usize,
}

#[derive(Default)]
struct Slots {
    keys: HashMap<String, Slot>,
    prefixes: HashMap<String, Slot>,
}

impl Slots {
    fn map(&mut self, scope: Scope) -> &mut HashMap<String, Slot> {
        match scope {
            Scope::Key => &mut self.keys,
            Scope::Prefix => &mut self.prefixes,
        }
    }
}

/// The registry of KV watchers, shared by the HTTP layer and the state machine.
#[derive(Default, Clone)]
pub struct KvWatch {
    slots: Arc<Mutex<Slots>>,
}

/// A registered watch; unregisters on drop.
pub struct KvWatcher {
    registry: KvWatch,
    scope: Scope,
    target: String,
    pub rx: watch::Receiver<u64>,
}

impl Drop for KvWatcher {
    fn drop(&mut self) {
        let mut slots = self.registry.slots.lock();
        let map = slots.map(self.scope);
        if let Some(slot) = map.get_mut(&self.target) {
            slot.watchers = slot.watchers.saturating_sub(1);
            if slot.watchers == 0 {
                map.remove(&self.target);
            }
        }
    }
}

impl KvWatch {
    /// Registers interest in `target`. Changes published after this call
    /// are seen by the returned watcher's `rx.changed()`.
    pub fn watch(&self, scope: Scope, target: &str) -> KvWatcher {
        let mut slots = self.slots.lock();
        let slot = slots
            .map(scope)
            .entry(target.to_string())
            .or_insert_with(|| Slot {
                tx: watch::channel(0).0,
                watchers: 0,
            });
        slot.watchers += 1;
        let rx = slot.tx.subscribe();
        drop(slots);
        KvWatcher {
            registry: self.clone(),
            scope,
            target: target.to_string(),
            rx,
        }
    }

    /// Wakes the watchers of each changed key and of every prefix of it.
    pub fn notify(&self, keys: &[String], index: u64) {
        let slots = self.slots.lock();
        if slots.keys.is_empty() && slots.prefixes.is_empty() {
            return;
        }
        for key in keys {
            if let Some(slot) = slots.keys.get(key) {
                slot.tx.send_replace(index);
            }
            if slots.prefixes.is_empty() {
                continue;
            }
            for (end, _) in key.char_indices().chain(std::iter::once((key.len(), ' '))) {
                if let Some(slot) = slots.prefixes.get(&key[..end]) {
                    slot.tx.send_replace(index);
                }
            }
        }
    }

    /// Wakes every watcher (a snapshot install or a delete of the whole tree).
    pub fn notify_all(&self, index: u64) {
        let slots = self.slots.lock();
        for slot in slots.keys.values().chain(slots.prefixes.values()) {
            slot.tx.send_replace(index);
        }
    }

    /// Number of registered watchers (for metrics and tests).
    pub fn watchers(&self) -> usize {
        let slots = self.slots.lock();
        slots
            .keys
            .values()
            .chain(slots.prefixes.values())
            .map(|s| s.watchers)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_matching_keys_and_prefixes_wake() {
        let reg = KvWatch::default();
        let mut key = reg.watch(Scope::Key, "app/config");
        let mut prefix = reg.watch(Scope::Prefix, "app/");
        let other = reg.watch(Scope::Key, "other");
        let root = reg.watch(Scope::Prefix, "");
        reg.notify(&["app/config".to_string()], 7);
        assert!(key.rx.has_changed().unwrap());
        assert_eq!(*key.rx.borrow_and_update(), 7);
        assert!(prefix.rx.has_changed().unwrap());
        assert!(root.rx.has_changed().unwrap());
        assert!(!other.rx.has_changed().unwrap());
        reg.notify(&["app/configx".to_string()], 8);
        assert!(!key.rx.has_changed().unwrap(), "exact keys only");
        assert!(prefix.rx.borrow_and_update().eq(&8));
        assert!(!other.rx.has_changed().unwrap());
        drop(key);
        drop(prefix);
        drop(root);
        assert_eq!(reg.watchers(), 1);
        drop(other);
        assert_eq!(reg.watchers(), 0);
    }
}
