//! Who is on the other end: SO_PEERCRED at accept, and the access policy.
//!
//! Admitted: root, the daemon's own uid, and members of each
//! `--allow-group`. Everyone else is answered PERMISSION_DENIED and
//! disconnected. The file mode of the socket is the first gate (the kernel
//! refuses `connect` without write permission); this policy is the second,
//! so a too-permissive mode set by hand or by a unit file cannot open the
//! daemon to every user.

use std::sync::Arc;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{Gid, Group, Uid, User};
use tokio::net::UnixStream;
use tokio::sync::Semaphore;

/// Group-membership lookups (NSS, which may block on a directory service)
/// running at once. Each holds a thread of tokio's blocking pool; up to
/// `--max-connections` peers outside the fast path may be waiting for one,
/// and the pool would start a thread for each. Four keep a slow directory
/// from stalling admission while bounding the threads a flood of
/// connections from a non-member can start.
const MAX_GROUP_LOOKUPS: usize = 4;

/// The peer's process credentials, as the kernel recorded them at connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PeerCred {
    pub(crate) pid: i32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// Reads SO_PEERCRED.
pub(crate) fn peer_cred(stream: &UnixStream) -> std::io::Result<PeerCred> {
    let cred = getsockopt(stream, PeerCredentials).map_err(std::io::Error::from)?;
    Ok(PeerCred {
        pid: cred.pid(),
        uid: cred.uid(),
        gid: cred.gid(),
    })
}

/// Who may use the daemon.
#[derive(Clone, Debug)]
pub(crate) struct AccessPolicy {
    /// The daemon's own effective uid.
    pub(crate) own_uid: u32,
    /// `--allow-group` groups, resolved at start-up.
    pub(crate) groups: Vec<(String, u32)>,
    /// Turns for group lookups, shared by every connection
    /// ([`MAX_GROUP_LOOKUPS`]).
    lookups: Arc<Semaphore>,
}

/// Resolves `--allow-group` names to gids; an unknown group is a start-up
/// error, not a silently empty rule.
pub(crate) fn resolve_groups(names: &[String]) -> Result<Vec<(String, u32)>, String> {
    names
        .iter()
        .map(|name| match Group::from_name(name) {
            Ok(Some(group)) => Ok((name.clone(), group.gid.as_raw())),
            Ok(None) => Err(format!("--allow-group {name}: no such group")),
            Err(err) => Err(format!("--allow-group {name}: cannot look it up: {err}")),
        })
        .collect()
}

impl AccessPolicy {
    /// The policy of this process: own uid plus `groups`.
    pub(crate) fn new(groups: Vec<(String, u32)>) -> Self {
        Self {
            own_uid: Uid::effective().as_raw(),
            groups,
            lookups: Arc::new(Semaphore::new(MAX_GROUP_LOOKUPS)),
        }
    }

    /// Decides quickly when the answer needs no user database lookup.
    fn fast_path(&self, cred: &PeerCred) -> Option<bool> {
        if cred.uid == 0 || cred.uid == self.own_uid {
            return Some(true);
        }
        if self.groups.is_empty() {
            return Some(false);
        }
        if self.groups.iter().any(|(_, gid)| *gid == cred.gid) {
            return Some(true);
        }
        None
    }

    /// Whether the peer is admitted. Group membership beyond the primary
    /// gid needs the user database (NSS may block), so it runs on the
    /// blocking pool.
    pub(crate) async fn admits(&self, cred: PeerCred) -> bool {
        if let Some(answer) = self.fast_path(&cred) {
            return answer;
        }
        let groups: Vec<u32> = self.groups.iter().map(|(_, gid)| *gid).collect();
        bounded_lookup(&self.lookups, move || member_of_any(cred, &groups)).await
    }

    /// Who is admitted, for error messages.
    pub(crate) fn describe(&self) -> String {
        let mut who = vec!["root".to_string(), format!("uid {}", self.own_uid)];
        who.extend(self.groups.iter().map(|(name, _)| format!("group {name}")));
        who.join(", ")
    }
}

/// Runs `lookup` on the blocking pool once a turn is free; the turn is held
/// until the lookup ends, even if the connection that asked is gone. A
/// lookup that panicked (a bug) or could not run admits no one.
async fn bounded_lookup(
    turns: &Arc<Semaphore>,
    lookup: impl FnOnce() -> bool + Send + 'static,
) -> bool {
    // Waits while MAX_GROUP_LOOKUPS lookups run; the semaphore is never
    // closed.
    let Ok(turn) = turns.clone().acquire_owned().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        lookup()
    })
    .await
    .unwrap_or(false)
}

fn member_of_any(cred: PeerCred, groups: &[u32]) -> bool {
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(cred.uid)) else {
        return false;
    };
    let Ok(name) = std::ffi::CString::new(user.name.as_bytes()) else {
        return false;
    };
    match nix::unistd::getgrouplist(&name, Gid::from_raw(cred.gid)) {
        Ok(list) => list.iter().any(|gid| groups.contains(&gid.as_raw())),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(uid: u32, gid: u32) -> PeerCred {
        PeerCred { pid: 1, uid, gid }
    }

    #[test]
    fn root_and_self_always_admitted_others_only_by_group() {
        let policy = AccessPolicy {
            own_uid: 1000,
            groups: vec![],
            lookups: Arc::new(Semaphore::new(1)),
        };
        assert_eq!(policy.fast_path(&cred(0, 0)), Some(true));
        assert_eq!(policy.fast_path(&cred(1000, 5)), Some(true));
        assert_eq!(policy.fast_path(&cred(1001, 5)), Some(false));
        let policy = AccessPolicy {
            own_uid: 1000,
            groups: vec![("agents".into(), 77)],
            lookups: Arc::new(Semaphore::new(1)),
        };
        assert_eq!(policy.fast_path(&cred(1001, 77)), Some(true));
        assert_eq!(
            policy.fast_path(&cred(1001, 5)),
            None,
            "needs a membership lookup"
        );
        assert!(policy.describe().contains("group agents"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_group_lookups_run_at_once_than_the_bound() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let turns = Arc::new(Semaphore::new(MAX_GROUP_LOOKUPS));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let lookups: Vec<_> = (0..32)
            .map(|i| {
                let (turns, running, most) = (turns.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    bounded_lookup(&turns, move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        // A slow directory service.
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        running.fetch_sub(1, Ordering::SeqCst);
                        i % 2 == 0
                    })
                    .await
                })
            })
            .collect();
        let mut admitted = 0;
        for lookup in lookups {
            admitted += usize::from(lookup.await.expect("join"));
        }
        assert_eq!(admitted, 16, "each lookup's own answer");
        let most = most.load(Ordering::SeqCst);
        assert!(most <= MAX_GROUP_LOOKUPS, "{most} lookups at once");
    }

    #[tokio::test]
    async fn a_lookup_that_panics_admits_no_one_and_frees_its_turn() {
        let turns = Arc::new(Semaphore::new(1));
        assert!(!bounded_lookup(&turns, || panic!("a bug in a lookup")).await);
        assert!(bounded_lookup(&turns, || true).await);
    }
}
