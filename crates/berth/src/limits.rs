//! The process's open-file limit, raised to what the server may need.

/// File descriptors the server keeps for itself beyond its connections:
/// database files and connections, blob files being read or written, the
/// listening socket, logs.
const RESERVED_FILES: u64 = 512;

/// Raises the soft limit on open files (`RLIMIT_NOFILE`) to the hard limit,
/// as Go's runtime does at start, and says so when even that cannot hold
/// `max_connections` connections plus the server's own files.
///
/// Every connection is a descriptor, and the soft limit is commonly 1,024
/// (systemd's default) while the hard limit is far higher: left alone, the
/// server would fail to accept new connections (`EMFILE`) long before its
/// `max_connections` cap answers them with a 503, so a thousand idle sockets
/// would keep every real client out. Returns the soft limit in force.
pub fn raise_open_file_limit(max_connections: usize) -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct
        // passed; the resource is a constant.
        let soft = unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return None;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit.rlim_cur = limit.rlim_max;
                }
            }
            limit.rlim_cur
        };
        let needed = (max_connections as u64).saturating_add(RESERVED_FILES);
        if soft < needed {
            tracing::warn!(
                open_file_limit = soft,
                max_connections,
                "the open-file limit cannot hold max_connections connections and the server's \
                 own files; raise it (LimitNOFILE= in a systemd unit, ulimit -n, or the \
                 container's nofile ulimit) or lower server.max_connections"
            );
        }
        Some(soft)
    }
    #[cfg(not(unix))]
    {
        let _ = max_connections;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let soft = raise_open_file_limit(1).expect("a limit on unix");
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        assert_eq!(soft, limit.rlim_cur);
        assert_eq!(limit.rlim_cur, limit.rlim_max);
    }
}
