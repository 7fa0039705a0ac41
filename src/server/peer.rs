//! Who is on the other end: SO_PEERCRED at accept, and the access policy.
//!
//! Admitted: root, the daemon's own uid, and members of each
//! `--allow-group`. Everyone else is answered PERMISSION_DENIED and
//! disconnected. The file mode of the socket is the first gate (the kernel
//! refuses `connect` without write permission); this policy is the second,
//! so a too-permissive mode set by hand or by a unit file cannot open the
//! daemon to every user.

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{Gid, Group, Uid, User};
use tokio::net::UnixStream;

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
        tokio::task::spawn_blocking(move || member_of_any(cred, &groups))
            .await
            .unwrap_or(false)
    }

    /// Who is admitted, for error messages.
    pub(crate) fn describe(&self) -> String {
        let mut who = vec!["root".to_string(), format!("uid {}", self.own_uid)];
        who.extend(self.groups.iter().map(|(name, _)| format!("group {name}")));
        who.join(", ")
    }
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
        };
        assert_eq!(policy.fast_path(&cred(0, 0)), Some(true));
        assert_eq!(policy.fast_path(&cred(1000, 5)), Some(true));
        assert_eq!(policy.fast_path(&cred(1001, 5)), Some(false));
        let policy = AccessPolicy {
            own_uid: 1000,
            groups: vec![("agents".into(), 77)],
        };
        assert_eq!(policy.fast_path(&cred(1001, 77)), Some(true));
        assert_eq!(
            policy.fast_path(&cred(1001, 5)),
            None,
            "needs a membership lookup"
        );
        assert!(policy.describe().contains("group agents"));
    }
}
