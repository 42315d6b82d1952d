//! Clocks and CPU accounting (Linux): CLOCK_MONOTONIC in microseconds (the
//! clock bench/load.mjs uses, so timestamps from either harness compare), this
//! process's CPU time, a process tree's CPU time and the machine's busy time
//! from /proc.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// CLOCK_MONOTONIC in microseconds: one clock for every process of the machine.
pub fn now_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1000
}

/// User and system CPU time of this process (all threads) in microseconds.
pub fn self_cpu_split_us() -> (u64, u64) {
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return (0, 0);
    }
    let tv = |t: libc::timeval| (t.tv_sec as u64) * 1_000_000 + t.tv_usec as u64;
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

fn tick_us() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1e6 / if hz > 0 { hz as f64 } else { 100.0 }
}

/// (ppid, utime + stime in ticks) of a process, from /proc/PID/stat.
fn read_stat(pid: u32) -> Option<(u32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: skip to the last ')'.
    let rest = s.get(s.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split(' ').collect();
    // f[0] = state (field 3), f[1] = ppid, f[11] = utime (14), f[12] = stime (15)
    let ppid = f.get(1)?.parse().ok()?;
    let ut: u64 = f.get(11)?.parse().ok()?;
    let st: u64 = f.get(12)?.parse().ok()?;
    Some((ppid, ut + st))
}

/// CPU time used so far by `root` and all its descendants.
#[derive(Debug, Clone, Copy)]
pub struct TreeCpu {
    /// Microseconds of CPU (user + system).
    pub cpu_us: f64,
    /// Number of processes in the tree.
    pub processes: usize,
}

/// CPU time of the process tree under `root`; `None` when `root` is gone or
/// /proc is unreadable.
pub fn tree_cpu(root: u32) -> Option<TreeCpu> {
    let mut stats: HashMap<u32, (u32, u64)> = HashMap::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(st) = read_stat(pid) {
            stats.insert(pid, st);
        }
    }
    stats.get(&root)?;
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &(ppid, _)) in &stats {
        children.entry(ppid).or_default().push(pid);
    }
    let mut total = 0u64;
    let mut processes = 0usize;
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        if let Some(&(_, ticks)) = stats.get(&p) {
            total += ticks;
            processes += 1;
        }
        if let Some(c) = children.get(&p) {
            stack.extend(c);
        }
    }
    Some(TreeCpu {
        cpu_us: total as f64 * tick_us(),
        processes,
    })
}

/// Machine-wide busy time (all CPUs, microseconds) from /proc/stat.
pub fn machine_busy_us() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
    let total: u64 = f.iter().sum();
    Some(total.saturating_sub(idle) as f64 * tick_us())
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> Option<Vec<f64>> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    s.split_whitespace()
        .take(3)
        .map(|v| v.parse().ok())
        .collect()
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn iso_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (days, sod) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        d.subsec_millis()
    )
}

/// Raises the soft open-file limit to the hard one (each client is a
/// socket); returns the new soft limit.
pub fn raise_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit / setrlimit take one valid rlimit pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return None;
        }
    }
    Some(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_move() {
        let a = now_us();
        let (u, s) = self_cpu_split_us();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(now_us() >= a);
        let (u2, s2) = self_cpu_split_us();
        assert!(u2 + s2 >= u + s);
        let me = tree_cpu(std::process::id()).expect("own process in /proc");
        assert!(me.processes >= 1);
        assert!(machine_busy_us().is_some());
    }

    #[test]
    fn iso_time_shape() {
        let s = iso_now();
        assert_eq!(s.len(), 24, "{s}");
        assert!(s.ends_with('Z') && s.as_bytes()[10] == b'T', "{s}");
    }
}
