//! Append: operations on an execution's status from a runner (`Request`
//! field 18), applied atomically under one revision, and safe to retry.
//!
//! | step        | runs on                               | does |
//! |-------------|---------------------------------------|------|
//! | `validate`  | the connection's task                 | id well-formed; at least one operation; no `stamp` (the daemon's own) |
//! | `load`      | the writer thread, in the transaction | the stored execution; NOT_FOUND; FAILED_PRECONDITION once terminal ([`super::ops::load`]) |
//! | `check`     | the writer thread                     | `expected_revision` (compare-and-set): ABORTED on another revision, unless every operation is already applied |
//! | `apply`     | the writer thread                     | each operation in order (`stigmer_proto::delta::apply`): ABORTED for a stale offset or index, INVALID_ARGUMENT for a malformed operation; when all were already applied, nothing is written and the current revision is acknowledged |
//! | `stamp`     | the writer thread                     | the commit stamp, the last operation |
//! | `persist`   | the writer thread                     | a revision; the operations (a delta) or the whole state (a base) ([`super::ops::persist`]) |
//! | `broadcast` | the writer thread, after COMMIT       | [`super::broadcast`] |
//!
//! Retrying is safe: an operation that names where it applies (a text's
//! byte offset, a message's index) and finds its content already there is
//! acknowledged as already applied, never applied twice. So a client that
//! lost a reply to a reconnect sends the same append again.

use std::sync::Arc;
use std::time::SystemTime;

use stigmer_proto::daemon::{op, AppendRequest};
use stigmer_proto::delta::{self, ApplyError, Outcome};

use super::ops::{self, Loaded};
use super::{validate as check, Applied};
use crate::protocol::{ApiError, Code};
use crate::store::Txn;

/// The most operations one append carries: far beyond a runner's batch of
/// tokens and tool calls, small enough that one append cannot hold the
/// writer thread for long (the frame limit bounds their bytes).
pub(crate) const MAX_OPS: usize = 10_000;

/// Step 1, on the connection's task before the write is queued.
pub(crate) fn validate(req: &AppendRequest) -> Result<(), ApiError> {
    check::execution_id("execution_id", &req.execution_id)?;
    if req.ops.is_empty() {
        return Err(ApiError::invalid_argument(
            "ops is empty: an append carries at least one operation",
        ));
    }
    if req.ops.len() > MAX_OPS {
        return Err(ApiError::invalid_argument(format!(
            "{} operations in one append, over the limit of {MAX_OPS}",
            req.ops.len()
        )));
    }
    for (i, o) in req.ops.iter().enumerate() {
        match &o.op {
            None => {
                return Err(ApiError::invalid_argument(format!(
                    "ops[{i}] is empty (no operation set)"
                )))
            }
            Some(op::Op::Stamp(_)) => {
                return Err(ApiError::invalid_argument(format!(
                    "ops[{i}] is a stamp: the daemon stamps each change itself"
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Steps 2-6, on the writer thread inside its transaction, in this order.
pub(crate) fn in_transaction(
    txn: &mut Txn<'_>,
    req: AppendRequest,
    now: SystemTime,
) -> Result<Applied, ApiError> {
    let id = req.execution_id;
    let loaded = ops::load(txn, &id)?;
    let loaded = check_revision(loaded, req.expected_revision, &req.ops)?;
    let (loaded, changed) = apply(loaded, &req.ops)?;
    if !changed {
        let revision = loaded.revision;
        txn.keep(
            &id,
            crate::store::txn::Stored {
                execution: loaded.execution,
                revision,
                chain: loaded.chain,
            },
        );
        return Ok(Applied::Unchanged {
            execution_id: Arc::from(id.as_str()),
            revision,
        });
    }
    let (loaded, all) = stamp(loaded, req.ops, now);
    ops::persist(txn, &id, loaded, all).map(Applied::Change)
}

/// Step "check": with `expected_revision`, the execution must be at that
/// revision, unless the append is a retry of one already committed (every
/// operation already applied), which is acknowledged.
fn check_revision(
    loaded: Loaded,
    expected: Option<u64>,
    ops: &[stigmer_proto::daemon::Op],
) -> Result<Loaded, ApiError> {
    let Some(expected) = expected.filter(|e| *e != loaded.revision) else {
        return Ok(loaded);
    };
    let mut probe = loaded.execution.status.clone().unwrap_or_default();
    match delta::apply_all(&mut probe, ops) {
        Ok(false) => Ok(loaded),
        _ => Err(ApiError::new(
            Code::Aborted,
            format!(
                "expected revision {expected}, but the execution is at revision {}",
                loaded.revision
            ),
        )),
    }
}

/// Step "apply": the operations in order; returns whether any changed the
/// state (false: all were already applied).
fn apply(
    mut loaded: Loaded,
    ops: &[stigmer_proto::daemon::Op],
) -> Result<(Loaded, bool), ApiError> {
    let revision = loaded.revision;
    let status = loaded.execution.status.get_or_insert_with(Default::default);
    let mut changed = false;
    for (i, o) in ops.iter().enumerate() {
        match delta::apply(status, o) {
            Ok(Outcome::Applied) => changed = true,
            Ok(Outcome::AlreadyApplied) => {}
            Err(ApplyError::Conflict(why)) => {
                return Err(ApiError::new(
                    Code::Aborted,
                    format!("ops[{i}]: {why} (the execution is at revision {revision})"),
                ))
            }
            Err(ApplyError::Invalid(why)) => {
                return Err(ApiError::invalid_argument(format!("ops[{i}]: {why}")))
            }
        }
    }
    Ok((loaded, changed))
}

/// Step "stamp": the commit stamp, applied and appended to the operations.
fn stamp(
    mut loaded: Loaded,
    mut all: Vec<stigmer_proto::daemon::Op>,
    now: SystemTime,
) -> (Loaded, Vec<stigmer_proto::daemon::Op>) {
    let stamp = ops::stamp(now);
    let status = loaded.execution.status.get_or_insert_with(Default::default);
    // A stamp always applies.
    let _ = delta::apply(status, &stamp);
    all.push(stamp);
    (loaded, all)
}
