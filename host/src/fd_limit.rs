//! The open-file limit (`RLIMIT_NOFILE`): every connection a worker holds is
//! a file descriptor, and the soft limit (often 1 024) is reached long before
//! the hard one. The primary and the demo worker raise their soft limit to
//! the hard limit at start (workers inherit the primary's); past the hard
//! limit, which only a privileged parent can raise (`ulimit -Hn`), accepts
//! fail with `EMFILE`.

use std::io;

/// The open-file limit after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit before.
    pub was: u64,
    /// The soft limit now (the hard limit, unless it was already there).
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit.
pub fn raise() -> io::Result<FdLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let was: u64 = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads one rlimit through a valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(FdLimit {
        was,
        soft: lim.rlim_cur,
        hard: lim.rlim_max,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn raises_the_soft_limit_to_the_hard_one() {
        let l = super::raise().expect("getrlimit");
        assert_eq!(l.soft, l.hard);
        assert!(l.was <= l.soft);
        assert_eq!(super::raise().expect("again").was, l.hard);
    }
}
