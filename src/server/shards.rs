//! Connection shards: the connection workers, each a tokio runtime of its
//! own with one worker thread and its own I/O driver. A connection lives on
//! one shard (round-robin by accept order) with every task it spawns.
//!
//! Why not one runtime with several workers: tokio lets one worker at a time
//! wait on the I/O driver, so with two workers the lone-peer poll
//! ([`super::read_poll`]) spins on one worker while a request's readiness
//! reaches the other, parked in `epoll_wait` (a wake-up through the
//! hypervisor on a small VM). Measured on two vCPUs (docs/PERFORMANCE.md,
//! session 5): one runtime with two workers made a lone runner's round trip
//! ~30% longer than one worker; two shards kept it, and gave 32 concurrent
//! runners a paired throughput ratio of 0.34x against one worker's 0.31x
//! (medians of nine pairs; the same as two workers in one runtime). Each
//! shard polls for its own lone peer, and connections share nothing that
//! needs their runtime (the store, the broker and the outboxes are plain
//! threads, locks and atomics), so a connection needs no other shard.

use std::io;

use tokio::runtime::{Handle, Runtime};

/// The shards: the first is the runtime `start` was called in (it also runs
/// the listener and the service tasks); the others are started here.
pub(crate) struct Shards {
    handles: Vec<Handle>,
    owned: Vec<Runtime>,
}

impl Shards {
    /// `count` shards (at least one). Must be called inside a runtime.
    pub(crate) fn start(count: usize) -> io::Result<Shards> {
        let mut handles = vec![Handle::current()];
        let mut owned = Vec::new();
        for _ in 1..count.max(1) {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("stigmer-worker")
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            owned.push(runtime);
        }
        Ok(Shards { handles, owned })
    }

    /// The shards' handles, to spawn on (index = shard number).
    pub(crate) fn handles(&self) -> Vec<Handle> {
        self.handles.clone()
    }
}

impl Drop for Shards {
    /// Stops the shards this started, dropping any task still running on
    /// them (after the grace period, as the first shard's runtime does at
    /// exit). Never blocks, so it may run inside the first shard, also when
    /// a `Daemon` is dropped without `shutdown` (in-process use): dropping a
    /// runtime the ordinary way inside another one would panic.
    fn drop(&mut self) {
        for runtime in self.owned.drain(..) {
            runtime.shutdown_background();
        }
    }
}

/// The shard of connection `id` among `shards`: round-robin by accept order.
pub(crate) fn shard_of(id: u64, shards: usize) -> usize {
    (id % shards.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_take_turns_over_the_shards() {
        let picked: Vec<usize> = (1..=6).map(|id| shard_of(id, 2)).collect();
        assert_eq!(picked, [1, 0, 1, 0, 1, 0]);
        assert!((1..100).all(|id| shard_of(id, 1) == 0));
        assert_eq!(shard_of(7, 0), 0, "no shards means the first");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn each_extra_shard_runs_tasks_on_its_own_thread() {
        let shards = Shards::start(3).expect("start");
        let handles = shards.handles();
        assert_eq!(handles.len(), 3);
        let mut threads = Vec::new();
        for handle in &handles[1..] {
            let thread = handle
                .spawn(async { std::thread::current().id() })
                .await
                .expect("ran");
            threads.push(thread);
        }
        assert_ne!(threads[0], threads[1]);
        assert!(!threads.contains(&std::thread::current().id()));
        drop(shards);
    }

    /// A `Daemon` dropped without `shutdown` drops its shards inside the
    /// caller's runtime, where dropping a runtime the ordinary way panics.
    #[tokio::test]
    async fn dropping_inside_a_runtime_does_not_panic() {
        let shards = Shards::start(2).expect("start");
        let handle = shards.handles()[1].clone();
        assert_eq!(handle.spawn(async { 7 }).await.expect("ran"), 7);
        drop(shards);
    }
}
