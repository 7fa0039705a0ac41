//! etcd transactions: compares on keys (a write guarded by the `mod_revision`
//! it was based on is how the daemon refuses a stale writer), then the
//! operations for success or failure, applied atomically at one revision.

use bytes::Bytes;

use crate::kv::{Delete, DeleteResponse, Header, Put, PutResponse, Range, RangeResponse};
use crate::proto::etcdserverpb as pb;
use pb::compare::{CompareResult, CompareTarget, TargetUnion};

/// How a compare relates the key's field to the given value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// Field == value.
    Equal,
    /// Field > value.
    Greater,
    /// Field < value.
    Less,
    /// Field != value.
    NotEqual,
}

impl CompareOp {
    fn result(self) -> CompareResult {
        match self {
            CompareOp::Equal => CompareResult::Equal,
            CompareOp::Greater => CompareResult::Greater,
            CompareOp::Less => CompareResult::Less,
            CompareOp::NotEqual => CompareResult::NotEqual,
        }
    }
}

/// One condition of a transaction, on one key. A key that does not exist
/// has `mod_revision`, `create_revision` and `version` 0, so
/// `Compare::mod_revision(key, Equal, 0)` means "the key does not exist".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    inner: pb::Compare,
}

impl Compare {
    fn new(key: Bytes, op: CompareOp, target: CompareTarget, value: TargetUnion) -> Compare {
        Compare {
            inner: pb::Compare {
                result: op.result() as i32,
                target: target as i32,
                key,
                target_union: Some(value),
                range_end: Bytes::new(),
            },
        }
    }

    /// The revision of the key's last modification.
    pub fn mod_revision(key: impl Into<Bytes>, op: CompareOp, revision: i64) -> Compare {
        Compare::new(
            key.into(),
            op,
            CompareTarget::Mod,
            TargetUnion::ModRevision(revision),
        )
    }

    /// The revision of the key's creation.
    pub fn create_revision(key: impl Into<Bytes>, op: CompareOp, revision: i64) -> Compare {
        Compare::new(
            key.into(),
            op,
            CompareTarget::Create,
            TargetUnion::CreateRevision(revision),
        )
    }

    /// The key's version (modifications since its creation).
    pub fn version(key: impl Into<Bytes>, op: CompareOp, version: i64) -> Compare {
        Compare::new(
            key.into(),
            op,
            CompareTarget::Version,
            TargetUnion::Version(version),
        )
    }

    /// The key's value (bytewise).
    pub fn value(key: impl Into<Bytes>, op: CompareOp, value: impl Into<Bytes>) -> Compare {
        Compare::new(
            key.into(),
            op,
            CompareTarget::Value,
            TargetUnion::Value(value.into()),
        )
    }
}

/// An operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A read.
    Range(Range),
    /// A write of one key.
    Put(Put),
    /// A deletion.
    Delete(Delete),
}

impl From<Range> for Op {
    fn from(r: Range) -> Op {
        Op::Range(r)
    }
}

impl From<Put> for Op {
    fn from(p: Put) -> Op {
        Op::Put(p)
    }
}

impl From<Delete> for Op {
    fn from(d: Delete) -> Op {
        Op::Delete(d)
    }
}

impl Op {
    fn into_request(self) -> pb::RequestOp {
        use pb::request_op::Request;
        let request = match self {
            Op::Range(r) => Request::RequestRange(r.inner),
            Op::Put(p) => Request::RequestPut(p.inner),
            Op::Delete(d) => Request::RequestDeleteRange(d.inner),
        };
        pb::RequestOp {
            request: Some(request),
        }
    }

    fn revision(&self) -> i64 {
        match self {
            Op::Range(r) => r.inner.revision,
            _ => 0,
        }
    }
}

/// A transaction: if every compare holds, the `and_then` operations run,
/// otherwise the `or_else` ones; either way atomically, at one revision.
/// etcd refuses a transaction that writes one key twice, and one of more
/// than `--max-txn-ops` (128 by default) operations per branch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    compares: Vec<Compare>,
    success: Vec<Op>,
    failure: Vec<Op>,
}

impl Txn {
    /// An empty transaction (no compare: the success branch runs).
    pub fn new() -> Txn {
        Txn::default()
    }

    /// Adds conditions; all must hold.
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Txn {
        self.compares.extend(compares);
        self
    }

    /// Adds operations to run when the conditions hold.
    pub fn and_then<O: Into<Op>>(mut self, ops: impl IntoIterator<Item = O>) -> Txn {
        self.success.extend(ops.into_iter().map(Into::into));
        self
    }

    /// Adds operations to run when a condition fails (typically a read of
    /// the key, to retry from its current state).
    pub fn or_else<O: Into<Op>>(mut self, ops: impl IntoIterator<Item = O>) -> Txn {
        self.failure.extend(ops.into_iter().map(Into::into));
        self
    }

    /// The first revision a range of the transaction asks for, to fill in a
    /// `Compacted` error.
    pub(crate) fn asked_revision(&self) -> i64 {
        self.success
            .iter()
            .chain(&self.failure)
            .map(Op::revision)
            .find(|&r| r > 0)
            .unwrap_or(0)
    }

    pub(crate) fn into_request(self) -> pb::TxnRequest {
        pb::TxnRequest {
            compare: self.compares.into_iter().map(|c| c.inner).collect(),
            success: self.success.into_iter().map(Op::into_request).collect(),
            failure: self.failure.into_iter().map(Op::into_request).collect(),
        }
    }
}

/// The answer to one operation of a transaction, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResponse {
    /// To an [`Op::Range`].
    Range(RangeResponse),
    /// To an [`Op::Put`].
    Put(PutResponse),
    /// To an [`Op::Delete`].
    Delete(DeleteResponse),
}

/// The answer to a [`Txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether the compares held (the success branch ran).
    pub succeeded: bool,
    /// The store's revision after the transaction: its own revision when it
    /// wrote, otherwise the revision its reads saw. Same as
    /// `header.revision`.
    pub revision: i64,
    /// The full header.
    pub header: Header,
    /// One response per operation of the branch that ran.
    pub responses: Vec<OpResponse>,
}

impl From<pb::TxnResponse> for TxnResponse {
    fn from(r: pb::TxnResponse) -> TxnResponse {
        use pb::response_op::Response;
        let header = Header::from(r.header);
        let responses = r
            .responses
            .into_iter()
            .filter_map(|op| match op.response? {
                Response::ResponseRange(r) => Some(OpResponse::Range(r.into())),
                Response::ResponsePut(p) => Some(OpResponse::Put(p.into())),
                Response::ResponseDeleteRange(d) => Some(OpResponse::Delete(d.into())),
                // This crate sends no nested transaction, so gets none back.
                Response::ResponseTxn(_) => None,
            })
            .collect();
        TxnResponse {
            succeeded: r.succeeded,
            revision: header.revision,
            header,
            responses,
        }
    }
}
