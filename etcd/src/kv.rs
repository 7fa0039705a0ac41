//! The key-value requests (range, put, delete) as small builders, usable on
//! their own or as operations of a transaction, and their responses as plain
//! structs (the generated ones wrap every field in `Option`).

use bytes::Bytes;

use crate::proto::etcdserverpb as pb;
pub use crate::proto::mvccpb::KeyValue;

/// The end of the range holding every key that starts with `prefix`: the
/// prefix with its last byte below 0xff incremented (and the 0xff bytes
/// after it dropped). An empty prefix, or one of only 0xff bytes, gives
/// `[0]`, which etcd reads as "every key from the start key on".
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// What etcd says about itself with every response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    /// The cluster's id.
    pub cluster_id: u64,
    /// The id of the member that answered.
    pub member_id: u64,
    /// The store's revision when the request was applied: a write's own
    /// revision, or the revision a read saw.
    pub revision: i64,
    /// The raft term when the request was applied.
    pub raft_term: u64,
}

impl From<Option<pb::ResponseHeader>> for Header {
    fn from(header: Option<pb::ResponseHeader>) -> Header {
        let h = header.unwrap_or_default();
        Header {
            cluster_id: h.cluster_id,
            member_id: h.member_id,
            revision: h.revision,
            raft_term: h.raft_term,
        }
    }
}

/// A read of one key or of the keys in `[key, range_end)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Range {
    pub(crate) inner: pb::RangeRequest,
}

impl Range {
    /// The key alone.
    pub fn key(key: impl Into<Bytes>) -> Range {
        Range {
            inner: pb::RangeRequest {
                key: key.into(),
                ..Default::default()
            },
        }
    }

    /// Every key that starts with `prefix` (see [`prefix_end`]).
    pub fn prefix(prefix: impl Into<Bytes>) -> Range {
        let key: Bytes = prefix.into();
        let end = prefix_end(&key);
        Range::key(key).range_end(end)
    }

    /// The keys in `[key, range_end)`; `[0]` for every key from `key` on.
    pub fn range_end(mut self, range_end: impl Into<Bytes>) -> Range {
        self.inner.range_end = range_end.into();
        self
    }

    /// Read the store as it was at `revision` (0, the default: the newest).
    /// A compacted revision gives [`Error::Compacted`](crate::Error::Compacted).
    pub fn revision(mut self, revision: i64) -> Range {
        self.inner.revision = revision;
        self
    }

    /// At most `limit` keys, in key order (0, the default: no limit);
    /// [`RangeResponse::more`] tells whether keys were left out.
    pub fn limit(mut self, limit: i64) -> Range {
        self.inner.limit = limit;
        self
    }

    /// Keys and revisions without values.
    pub fn keys_only(mut self) -> Range {
        self.inner.keys_only = true;
        self
    }

    /// Only [`RangeResponse::count`], no keys.
    pub fn count_only(mut self) -> Range {
        self.inner.count_only = true;
        self
    }
}

/// The answer to a [`Range`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// `header.revision` is the revision the read saw.
    pub header: Header,
    /// The keys found, in key order.
    pub kvs: Vec<KeyValue>,
    /// Whether the limit left keys out.
    pub more: bool,
    /// How many keys the range holds, whatever the limit.
    pub count: i64,
}

impl From<pb::RangeResponse> for RangeResponse {
    fn from(r: pb::RangeResponse) -> RangeResponse {
        RangeResponse {
            header: r.header.into(),
            kvs: r.kvs,
            more: r.more,
            count: r.count,
        }
    }
}

/// A write of one key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Put {
    pub(crate) inner: pb::PutRequest,
}

impl Put {
    /// Sets `key` to `value`.
    pub fn new(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Put {
        Put {
            inner: pb::PutRequest {
                key: key.into(),
                value: value.into(),
                ..Default::default()
            },
        }
    }

    /// Also return the key-value pair this put replaced.
    pub fn prev_kv(mut self) -> Put {
        self.inner.prev_kv = true;
        self
    }
}

/// The answer to a [`Put`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutResponse {
    /// `header.revision` is the put's revision.
    pub header: Header,
    /// The replaced pair, when asked for and the key existed.
    pub prev_kv: Option<KeyValue>,
}

impl From<pb::PutResponse> for PutResponse {
    fn from(r: pb::PutResponse) -> PutResponse {
        PutResponse {
            header: r.header.into(),
            prev_kv: r.prev_kv,
        }
    }
}

/// A deletion of one key or of the keys in `[key, range_end)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delete {
    pub(crate) inner: pb::DeleteRangeRequest,
}

impl Delete {
    /// The key alone.
    pub fn key(key: impl Into<Bytes>) -> Delete {
        Delete {
            inner: pb::DeleteRangeRequest {
                key: key.into(),
                ..Default::default()
            },
        }
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: impl Into<Bytes>) -> Delete {
        let key: Bytes = prefix.into();
        let end = prefix_end(&key);
        Delete::key(key).range_end(end)
    }

    /// The keys in `[key, range_end)`.
    pub fn range_end(mut self, range_end: impl Into<Bytes>) -> Delete {
        self.inner.range_end = range_end.into();
        self
    }

    /// Also return the deleted pairs.
    pub fn prev_kv(mut self) -> Delete {
        self.inner.prev_kv = true;
        self
    }
}

/// The answer to a [`Delete`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteResponse {
    /// `header.revision` is the deletion's revision (unchanged when nothing
    /// was deleted).
    pub header: Header,
    /// How many keys were deleted.
    pub deleted: i64,
    /// The deleted pairs, when asked for.
    pub prev_kvs: Vec<KeyValue>,
}

impl From<pb::DeleteRangeResponse> for DeleteResponse {
    fn from(r: pb::DeleteRangeResponse) -> DeleteResponse {
        DeleteResponse {
            header: r.header.into(),
            deleted: r.deleted,
            prev_kvs: r.prev_kvs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_follows_etcd() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"a\xfe\xff\xff"), b"a\xff");
        assert_eq!(prefix_end(b"\xff\xff"), [0]);
        assert_eq!(prefix_end(b""), [0]);
    }
}
