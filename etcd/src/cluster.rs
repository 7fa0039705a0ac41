//! What a client learns about the cluster itself: one member's status (who
//! it thinks leads, its raft term, revision and database size) and the
//! member list, for health checks, `stigmer status` and the tests' fault
//! injection.

use crate::proto::etcdserverpb as pb;

/// One member's view of itself and of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// The endpoint asked.
    pub endpoint: String,
    /// The answering member's id.
    pub member_id: u64,
    /// The member it believes leads; 0 while it knows no leader.
    pub leader: u64,
    /// Its raft term.
    pub raft_term: u64,
    /// Its raft committed index.
    pub raft_index: u64,
    /// Its key-value store's revision.
    pub revision: i64,
    /// Its database file's size, in bytes (what `--quota-backend-bytes`
    /// limits, 2 GiB by default).
    pub db_size: i64,
    /// The part of the file in use; the rest is freed by defragmentation.
    pub db_size_in_use: i64,
    /// Its etcd version, e.g. "3.4.23".
    pub version: String,
    /// Alarms and health errors it reports (e.g. "NOSPACE").
    pub errors: Vec<String>,
    /// Whether it is a non-voting learner.
    pub is_learner: bool,
}

impl Status {
    /// Whether this member leads the cluster.
    pub fn is_leader(&self) -> bool {
        self.leader != 0 && self.leader == self.member_id
    }

    pub(crate) fn from_response(endpoint: &str, r: pb::StatusResponse) -> Status {
        let header = r.header.unwrap_or_default();
        Status {
            endpoint: endpoint.to_owned(),
            member_id: header.member_id,
            leader: r.leader,
            raft_term: r.raft_term,
            raft_index: r.raft_index,
            revision: header.revision,
            db_size: r.db_size,
            db_size_in_use: r.db_size_in_use,
            version: r.version,
            errors: r.errors,
            is_learner: r.is_learner,
        }
    }
}

/// A member of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    /// Its id (what [`Status::leader`] names).
    pub id: u64,
    /// Its `--name`; empty until it has started.
    pub name: String,
    /// Its peer URLs.
    pub peer_urls: Vec<String>,
    /// Its client URLs; empty until it has started.
    pub client_urls: Vec<String>,
    /// Whether it is a non-voting learner.
    pub is_learner: bool,
}

impl From<pb::Member> for Member {
    fn from(m: pb::Member) -> Member {
        Member {
            id: m.id,
            name: m.name,
            peer_urls: m.peer_ur_ls,
            client_urls: m.client_ur_ls,
            is_learner: m.is_learner,
        }
    }
}
