//! Who may use the admin socket. The kernel tells us the caller's uid, gid
//! and pid (SO_PEERCRED); the caller's supplementary groups are read from
//! `/proc/<pid>/status`. Reading (status, list, outcome) is open to root, the
//! daemon's own user, the configured admin user and members of the
//! configured admin group; changing anything needs root, the daemon's own
//! user or the configured admin user.

use std::os::unix::net::UnixStream;

/// The caller of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its pid.
    pub pid: i32,
    /// Its effective uid.
    pub uid: u32,
    /// Its effective gid.
    pub gid: u32,
}

impl Peer {
    /// The credentials of the process at the other end of `stream`.
    ///
    /// # Errors
    /// The system's error if they cannot be read.
    pub fn of(stream: &UnixStream) -> std::io::Result<Peer> {
        use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
        let c = getsockopt(stream, PeerCredentials).map_err(std::io::Error::from)?;
        Ok(Peer {
            pid: c.pid(),
            uid: c.uid(),
            gid: c.gid(),
        })
    }

    /// `uid 1000 (pid 4242)`, for records and logs.
    pub fn describe(&self) -> String {
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(self.uid))
            .ok()
            .flatten()
            .map(|u| format!("{} ", u.name))
            .unwrap_or_default();
        format!("{name}uid {} (pid {})", self.uid, self.pid)
    }

    /// The caller's supplementary groups (empty if they cannot be read).
    fn groups(&self) -> Vec<u32> {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", self.pid)) else {
            return Vec::new();
        };
        status
            .lines()
            .find_map(|l| l.strip_prefix("Groups:"))
            .map(|g| {
                g.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The access rule.
#[derive(Debug, Clone)]
pub struct Access {
    /// The daemon's own uid.
    pub daemon_uid: u32,
    /// `admin_user` from the configuration.
    pub admin_uid: Option<u32>,
    /// `admin_group` from the configuration.
    pub admin_gid: Option<u32>,
}

impl Access {
    /// The rule for this process with the configured user and group names
    /// (or numbers).
    ///
    /// # Errors
    /// A message naming the user or group that does not exist.
    pub fn configured(
        admin_user: Option<&str>,
        admin_group: Option<&str>,
    ) -> Result<Access, String> {
        let admin_uid = match admin_user {
            None => None,
            Some(u) => Some(match u.parse::<u32>() {
                Ok(n) => n,
                Err(_) => nix::unistd::User::from_name(u)
                    .ok()
                    .flatten()
                    .map(|x| x.uid.as_raw())
                    .ok_or_else(|| format!("admin_user \"{u}\" is not a user of this system"))?,
            }),
        };
        let admin_gid = match admin_group {
            None => None,
            Some(g) => Some(match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => nix::unistd::Group::from_name(g)
                    .ok()
                    .flatten()
                    .map(|x| x.gid.as_raw())
                    .ok_or_else(|| format!("admin_group \"{g}\" is not a group of this system"))?,
            }),
        };
        Ok(Access {
            daemon_uid: nix::unistd::geteuid().as_raw(),
            admin_uid,
            admin_gid,
        })
    }

    fn may_change(&self, p: &Peer) -> bool {
        p.uid == 0 || p.uid == self.daemon_uid || Some(p.uid) == self.admin_uid
    }

    fn may_read(&self, p: &Peer) -> bool {
        self.may_change(p)
            || self
                .admin_gid
                .is_some_and(|g| p.gid == g || p.groups().contains(&g))
    }

    /// Whether `peer` may make a request that changes something
    /// (`read_only == false`) or only reads.
    ///
    /// # Errors
    /// What is needed, for the refusal.
    pub fn check(&self, peer: &Peer, read_only: bool) -> Result<(), String> {
        let allowed = if read_only {
            self.may_read(peer)
        } else {
            self.may_change(peer)
        };
        if allowed {
            return Ok(());
        }
        let who = peer.describe();
        Err(if read_only {
            format!(
                "{who} may not read the controller's status: it needs root, the daemon's user, admin_user or membership of admin_group ({})",
                self.admin_gid.map_or("none configured".into(), |g| format!("gid {g}"))
            )
        } else {
            format!(
                "{who} may not change the controller's plugins: it needs root, the daemon's user or admin_user ({})",
                self.admin_uid.map_or("none configured".into(), |u| format!("uid {u}"))
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_and_writers() {
        let a = Access {
            daemon_uid: 500,
            admin_uid: Some(1000),
            admin_gid: Some(2000),
        };
        let peer = |uid, gid| Peer {
            pid: i32::MAX,
            uid,
            gid,
        };
        assert!(a.check(&peer(0, 0), false).is_ok());
        assert!(a.check(&peer(500, 1), false).is_ok());
        assert!(a.check(&peer(1000, 1), false).is_ok());
        assert!(a.check(&peer(1001, 2000), true).is_ok());
        let e = a.check(&peer(1001, 2000), false).unwrap_err();
        assert!(
            e.contains("may not change") && e.contains("uid 1000"),
            "{e}"
        );
        assert!(a.check(&peer(1001, 1), true).is_err());
    }
}
