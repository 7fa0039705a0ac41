//! The writer thread's cache of latest states.
//!
//! Every status update first loads the execution's latest state. From SQLite
//! that is a `SELECT` joining `executions` to `history` and a protobuf decode
//! of ~1 KiB: 16% of the writer thread's time under 32 runners (profiled,
//! docs/PERFORMANCE.md). The writer is the only code that changes a state, so
//! it can keep the states it wrote itself. A load moves the state out
//! ([`LatestCache::take`]) rather than copying it: the writer loads a state
//! only to replace it, and the update puts the new one back. Copying and
//! then dropping the old ~1 KiB of nested messages cost 8% of the writer
//! thread's time (profiled with `benches/store_floor.rs`).
//!
//! Correctness rests on two rules, both kept by `Txn` and `writer::transact`:
//! - the cache changes exactly where the transaction does (insert and update
//!   put the new state, delete removes it), after the SQL succeeded;
//! - when a batch transaction fails (it rolls back), the whole cache is
//!   cleared, since it may hold states from the rolled-back jobs.
//!
//! Entries are checked against the database on use anyway: an update only
//! moves an `executions` row still at the revision it loaded (see
//! `Txn::update_encoded`).
//!
//! The bound is in bytes (the encoded size of each state, plus a little for
//! the key and the decoded form), over two generations: entries are put in
//! `hot`; when `hot` outgrows half the budget it becomes `cold` (the old
//! `cold` is dropped); a hit in `cold` moves the entry back to `hot`. This
//! keeps the recently used executions at O(1) cost per operation, without
//! per-entry bookkeeping.

use std::collections::HashMap;
use std::sync::Arc;

use stigmer_proto::agentexecution::AgentExecution;

use super::txn::Chain;

/// Bytes counted for an entry beyond its encoded state: the key, the map's
/// slot and the decoded message's headers (a rough allowance).
const ENTRY_OVERHEAD: usize = 256;

/// A latest state as committed (or written in the open batch).
#[derive(Clone)]
struct Entry {
    execution: Arc<AgentExecution>,
    revision: u64,
    chain: Chain,
    bytes: usize,
}

/// See the module docs.
pub(crate) struct LatestCache {
    hot: HashMap<Box<str>, Entry>,
    cold: HashMap<Box<str>, Entry>,
    hot_bytes: usize,
    /// The most bytes held in both generations together.
    budget: usize,
}

impl LatestCache {
    /// A cache holding at most `budget` bytes of states (0 disables it).
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            hot: HashMap::new(),
            cold: HashMap::new(),
            hot_bytes: 0,
            budget,
        }
    }

    /// Moves the cached state of `id` and its revision out of the cache, if
    /// cached. The caller replaces it ([`LatestCache::put`]) or, when its job
    /// writes nothing after all, leaves the next load to read SQLite.
    pub(crate) fn take(&mut self, id: &str) -> Option<(Arc<AgentExecution>, u64, Chain)> {
        if let Some(entry) = self.hot.remove(id) {
            self.hot_bytes -= entry.bytes;
            return Some((entry.execution, entry.revision, entry.chain));
        }
        self.cold
            .remove(id)
            .map(|entry| (entry.execution, entry.revision, entry.chain))
    }

    /// A copy of the entry of `id` (its state shared, not copied), to put
    /// back with [`LatestCache::put`] after a transaction that took it and
    /// rolled back (the cluster mode's prepare): its state, revision,
    /// chain, and the size of its encoding.
    pub(crate) fn peek(&self, id: &str) -> Option<(Arc<AgentExecution>, u64, Chain, usize)> {
        self.hot.get(id).or_else(|| self.cold.get(id)).map(|entry| {
            (
                entry.execution.clone(),
                entry.revision,
                entry.chain,
                entry.bytes.saturating_sub(id.len() + ENTRY_OVERHEAD),
            )
        })
    }

    /// Records the latest state of `id` at `revision`; `encoded_len` is the
    /// size of its encoding.
    pub(crate) fn put(
        &mut self,
        id: &str,
        execution: Arc<AgentExecution>,
        revision: u64,
        chain: Chain,
        encoded_len: usize,
    ) {
        let bytes = encoded_len + id.len() + ENTRY_OVERHEAD;
        // States larger than a generation are not worth keeping.
        if bytes > self.budget / 2 {
            self.remove(id);
            return;
        }
        self.cold.remove(id);
        let entry = Entry {
            execution,
            revision,
            chain,
            bytes,
        };
        self.insert_hot(id.into(), entry);
    }

    /// Forgets `id` (deleted).
    pub(crate) fn remove(&mut self, id: &str) {
        if let Some(entry) = self.hot.remove(id) {
            self.hot_bytes -= entry.bytes;
        }
        self.cold.remove(id);
    }

    /// Forgets everything (the batch that wrote some entries rolled back).
    pub(crate) fn clear(&mut self) {
        self.hot.clear();
        self.cold.clear();
        self.hot_bytes = 0;
    }

    fn insert_hot(&mut self, key: Box<str>, entry: Entry) {
        self.hot_bytes += entry.bytes;
        if let Some(old) = self.hot.insert(key, entry) {
            self.hot_bytes -= old.bytes;
        }
        if self.hot_bytes > self.budget / 2 {
            self.cold = std::mem::take(&mut self.hot);
            self.hot_bytes = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(note: &str) -> Arc<AgentExecution> {
        Arc::new(AgentExecution {
            kind: note.into(),
            ..Default::default()
        })
    }

    /// What the writer does with a state: takes it, and puts it back (here
    /// unchanged, at the same revision and size).
    fn kind(cache: &mut LatestCache, id: &str, encoded_len: usize) -> Option<(String, u64)> {
        let (execution, revision, _) = cache.take(id)?;
        let found = (execution.kind.clone(), revision);
        cache.put(id, execution, revision, Chain::default(), encoded_len);
        Some(found)
    }

    #[test]
    fn put_take_remove_clear() {
        let mut cache = LatestCache::new(1 << 20);
        assert_eq!(kind(&mut cache, "a", 10), None);
        cache.put("a", state("one"), 1, Chain::default(), 10);
        cache.put("a", state("two"), 2, Chain::default(), 10);
        cache.put("b", state("b"), 3, Chain::default(), 10);
        assert_eq!(kind(&mut cache, "a", 10), Some(("two".into(), 2)));
        cache.remove("a");
        assert_eq!(kind(&mut cache, "a", 10), None);
        assert_eq!(cache.hot_bytes, 10 + 1 + ENTRY_OVERHEAD);
        cache.clear();
        assert_eq!(kind(&mut cache, "b", 10), None);
        assert_eq!(cache.hot_bytes, 0);
    }

    /// A taken state is out of the cache, and its bytes with it, until it
    /// is put back; the caller holds the only reference to it.
    #[test]
    fn take_moves_the_state_out() {
        let mut cache = LatestCache::new(1 << 20);
        cache.put("a", state("one"), 1, Chain::default(), 10);
        let (execution, revision, _) = cache.take("a").expect("cached");
        assert_eq!((execution.kind.as_str(), revision), ("one", 1));
        assert_eq!(Arc::strong_count(&execution), 1);
        assert_eq!(cache.hot_bytes, 0);
        assert!(cache.take("a").is_none());
        // From the cold generation too.
        cache.put("b", state("b"), 2, Chain::default(), 10);
        cache.cold = std::mem::take(&mut cache.hot);
        cache.hot_bytes = 0;
        assert_eq!(
            cache.take("b").map(|(e, r, _)| (e.kind.clone(), r)),
            Some(("b".into(), 2))
        );
        assert!(cache.take("b").is_none());
    }

    #[test]
    fn bounded_and_keeps_what_is_used() {
        // Room for 4 entries of 744 bytes per generation.
        let mut cache = LatestCache::new(2 * 4 * 1000);
        for i in 0..1000u64 {
            cache.put(
                &format!("id-{i}"),
                state("x"),
                i,
                Chain::default(),
                1000 - ENTRY_OVERHEAD - 6,
            );
            // "id-0" is used all along and stays.
            assert_eq!(
                kind(&mut cache, "id-0", 1000 - ENTRY_OVERHEAD - 6).map(|k| k.1),
                Some(0),
                "after {i}"
            );
            assert!(cache.hot.len() + cache.cold.len() <= 8);
            assert!(cache.hot_bytes <= 4000);
        }
        // A state larger than a generation is not kept, nor an older one.
        cache.put("id-0", state("big"), 5000, Chain::default(), 10_000);
        assert_eq!(kind(&mut cache, "id-0", 10_000), None);
    }

    #[test]
    fn disabled() {
        let mut cache = LatestCache::new(0);
        cache.put("a", state("one"), 1, Chain::default(), 10);
        assert_eq!(kind(&mut cache, "a", 10), None);
    }
}
