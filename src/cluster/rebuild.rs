//! The rebuild: etcd compacted past this replica's last applied revision
//! (it was away longer than the compaction left history for), so the
//! changes it missed cannot be replayed. Instead it reads every
//! execution's key at one revision `R`, rebuilds the states it lacks from
//! their records (back to the last record stored whole), and has the
//! writer thread replace the replica with them under the compaction floor
//! `R` (`store::replica::replace`). Every open stream then resyncs
//! explicitly, and the watch resumes from `R + 1`.
//!
//! Only executions the replica holds at another revision than etcd's are
//! read back and sent to the writer; the ones it already has stay as they
//! are, chains and all.
//!
//! The keys are read first, page by page; then the chains of the
//! executions to install, [`REBUILD_CONCURRENCY`] at a time, taken in key
//! order, so what is installed and logged is as if read one by one.

use std::collections::HashSet;

use futures::StreamExt;

use prost::Message;
use stigmer_etcd::{prefix_end, KeyValue, Range};
use stigmer_proto::agentexecution::AgentExecution;
use stigmer_proto::delta::ReplayError;

use super::Cluster;
use crate::pipeline::replicate::{Record, RecordKind};
use crate::store::replica::{self, Install, Rebuild};
use crate::store::Reader;
use crate::writer::Writer;

/// Keys read per range request. A record is at most a state of
/// `MAX_STATE_BYTES` (640 KiB) and, after a replacing operation, that
/// operation: 32 such worst-case records stay within the client's 64 MiB
/// response limit (`stigmer_etcd::DEFAULT_MAX_RESPONSE_BYTES`).
const PAGE_KEYS: i64 = 32;

/// The most records followed back from an execution's latest change to the
/// one stored whole. The base rule (a base once the operations since the
/// last one outgrow it) keeps a chain short in bytes; in records it is at
/// most that many tiny appends. Past this the chain is taken as broken.
const MAX_CHAIN: usize = 100_000;

/// Executions whose chains are read at once. A chain is followed back one
/// record at a time (each names the one before it), so one execution's
/// reads are round trips back to back, and one after another a rebuild of
/// many executions took the sum of them all. Reading several executions at
/// once overlaps those round trips: each read is an HTTP/2 stream of its
/// own on the client's connection to a member, served by etcd in parallel.
/// 16 hides a round trip many times over (etcd serves a one-key read at a
/// past revision in well under one), while the records in flight stay
/// small (a record is at most about twice `MAX_STATE_BYTES`, so at most
/// about 20 MiB at once) and a rebuild does not crowd out the other
/// daemons' proposals to the same etcd.
const REBUILD_CONCURRENCY: usize = 16;

/// What the rebuild found, for the log.
#[derive(Debug, Default)]
pub(crate) struct Rebuilt {
    pub(crate) revision: u64,
    pub(crate) kept: usize,
    pub(crate) installed: usize,
    /// Executions whose chain etcd no longer holds back to a whole state
    /// (compacted by something other than the daemons' compactor): left
    /// out of the replica, each logged.
    pub(crate) lost: usize,
}

/// Rebuilds the replica from etcd at its current revision (see the module
/// comment). Fails, changing nothing, when etcd cannot be read or the
/// writer refuses; the caller tries again.
pub(crate) async fn rebuild(
    cluster: &Cluster,
    writer: &Writer,
    reader: &Reader,
) -> Result<Rebuilt, String> {
    // One read of the replica's heads, on a read thread.
    let heads = reader
        .run(replica::heads)
        .await
        .map_err(|e| format!("cannot read the replica: {e}"))?;
    let prefix = cluster.executions_prefix();
    let end = prefix_end(prefix.as_bytes());
    let mut from = prefix.clone().into_bytes();
    let mut revision = 0i64;
    let mut rebuilt = Rebuilt::default();
    let mut keep = HashSet::new();
    // The keys of the executions to read back, in key order.
    let mut stale = Vec::new();
    let mut install = Vec::new();
    loop {
        // A page of keys at the revision of the first page (bounded by the
        // client's request timeout; a compaction past that revision
        // meanwhile fails the read, and the caller starts over).
        let page = cluster
            .client
            .range(
                Range::key(from.clone())
                    .range_end(end.clone())
                    .revision(revision)
                    .limit(PAGE_KEYS),
            )
            .await
            .map_err(|e| format!("cannot read etcd: {e}"))?;
        if revision == 0 {
            revision = page.header.revision;
        }
        let next = match page.kvs.last() {
            Some(last) if page.more => {
                let mut next = last.key.to_vec();
                next.push(0);
                Some(next)
            }
            _ => None,
        };
        for kv in page.kvs {
            let Some(id) = cluster.id_of(&kv.key) else {
                continue;
            };
            if heads.get(id) == Some(&(kv.mod_revision as u64)) {
                keep.insert(id.to_owned());
                continue;
            }
            stale.push((id.to_owned(), kv));
        }
        match next {
            Some(next) => from = next,
            None => break,
        }
    }
    // Each chain is followed back one read per record, each bounded;
    // `REBUILD_CONCURRENCY` executions at a time, their answers taken in
    // key order, so the log and the install are as if read one by one.
    // (The reads are gathered before they are streamed: a stream over a
    // borrowing closure's futures is not `Send` to the compiler.)
    let reads: Vec<_> = stale
        .iter()
        .map(|(id, kv)| async move { (id, kv, state_of(cluster, id, kv).await) })
        .collect();
    let mut chains = futures::stream::iter(reads).buffered(REBUILD_CONCURRENCY);
    // Waits for the next chain in key order (the others go on meanwhile).
    while let Some((id, kv, found)) = chains.next().await {
        match found? {
            Found::Live(execution, log_base) => install.push(Install {
                execution: *execution,
                revision: kv.mod_revision as u64,
                log_base,
            }),
            Found::Deleted => {}
            Found::Lost(why) => {
                tracing::error!(
                    execution = id.as_str(),
                    revision = kv.mod_revision,
                    "{why}: the execution is left out of the rebuilt replica \
                     (was etcd compacted by something other than the daemons?)"
                );
                rebuilt.lost += 1;
            }
        }
    }
    rebuilt.revision = revision as u64;
    rebuilt.kept = keep.len();
    rebuilt.installed = install.len();
    // Waits behind the writer's queue, then for the one transaction.
    writer
        .rebuild(Rebuild {
            revision: revision as u64,
            keep,
            install,
        })
        .await
        .map_err(|e| format!("cannot replace the replica: {e}"))?;
    Ok(rebuilt)
}

/// An execution's state as etcd holds it.
enum Found {
    /// Its state and the revision of the record it was rebuilt from.
    Live(Box<AgentExecution>, u64),
    /// Its latest record is a delete.
    Deleted,
    /// Its chain cannot be followed back to a whole state.
    Lost(String),
}

/// The state at `latest` (execution `id`'s key as read): its record's
/// state if stored whole, else the last whole state before it with the
/// operations of every record since applied in order
/// (`stigmer_proto::delta::replay`, as the store rebuilds a state from its
/// history).
async fn state_of(cluster: &Cluster, id: &str, latest: &KeyValue) -> Result<Found, String> {
    let mut revision = latest.mod_revision;
    let mut record = match Record::decode(latest.value.as_ref()) {
        Ok(record) => record,
        Err(e) => return Ok(Found::Lost(format!("its record does not decode: {e}"))),
    };
    if record.kind == RecordKind::Deleted as i32 {
        return Ok(Found::Deleted);
    }
    // Operations newest first, applied in reverse once the base is found.
    let mut ops = Vec::new();
    let (base, log_base) = loop {
        if let Some(base) = record.base.take() {
            break (base, revision as u64);
        }
        if ops.len() >= MAX_CHAIN || record.prev == 0 {
            return Ok(Found::Lost(format!(
                "no record stored whole within {} records of revision {}",
                ops.len(),
                latest.mod_revision
            )));
        }
        ops.push(record.ops.take().unwrap_or_default());
        revision = record.prev as i64;
        // The key as it was at the previous change (bounded by the client's
        // request timeout).
        let older = cluster
            .client
            .range(Range::key(cluster.key(id)).revision(revision))
            .await;
        let kv = match older {
            Ok(page) => page.kvs.into_iter().next(),
            Err(stigmer_etcd::Error::Compacted { .. }) => None,
            Err(e) => return Err(format!("cannot read etcd: {e}")),
        };
        let Some(kv) = kv.filter(|kv| kv.mod_revision == revision) else {
            return Ok(Found::Lost(format!(
                "its change at revision {revision} is compacted away"
            )));
        };
        record = match Record::decode(kv.value.as_ref()) {
            Ok(record) => record,
            Err(e) => return Ok(Found::Lost(format!("its record does not decode: {e}"))),
        };
    };
    // The operations were gathered newest first.
    match stigmer_proto::delta::replay(base, ops.into_iter().rev()) {
        Ok(execution) => Ok(Found::Live(Box::new(execution), log_base)),
        Err(ReplayError::Base(e)) => Ok(Found::Lost(format!("its state does not decode: {e}"))),
        Err(ReplayError::Delta(e)) => Ok(Found::Lost(format!("its operations do not decode: {e}"))),
        Err(ReplayError::Apply(e)) => {
            Ok(Found::Lost(format!("its operations do not apply: {e:?}")))
        }
    }
}
