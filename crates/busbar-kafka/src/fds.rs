//! File descriptors of a process serving Kafka connections. `busbar serve` raises its soft
//! `RLIMIT_NOFILE` to the hard limit at start ([`raise_descriptor_limit`]) and keeps
//! `kafka.connections_max` within what the limit leaves after a reserve for everything else: segment
//! files, indexes, the data-directory lock, HTTP connections, the runtime ([`connections_fitting`]).
//! Should descriptors run out anyway, `serve` backs off on accept errors instead of spinning.

/// Descriptors kept for the log and the rest of the process when the limit is large.
pub const DESCRIPTORS_RESERVED: u64 = 1024;

/// Raises the soft limit on open files to the hard limit; returns (soft limit before, after).
#[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not on every target
pub fn raise_descriptor_limit() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = lim.rlim_cur as u64;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads one `rlimit` through a valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((before, lim.rlim_cur as u64))
}

/// Most client connections that fit in `limit` descriptors: the limit less
/// [`DESCRIPTORS_RESERVED`], or half the limit when it is under twice the reserve.
pub fn connections_fitting(limit: u64) -> u64 {
    if limit >= 2 * DESCRIPTORS_RESERVED {
        limit - DESCRIPTORS_RESERVED
    } else {
        limit / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_kept() {
        assert_eq!(connections_fitting(1_048_576), 1_047_552);
        assert_eq!(connections_fitting(2048), 1024);
        assert_eq!(connections_fitting(1024), 512);
        assert_eq!(connections_fitting(128), 64);
        assert_eq!(connections_fitting(u64::MAX), u64::MAX - 1024);
    }

    #[test]
    fn raising_reaches_the_hard_limit() {
        let (before, after) = raise_descriptor_limit().unwrap();
        assert!(after >= before);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        assert_eq!(lim.rlim_cur, lim.rlim_max);
    }
}
