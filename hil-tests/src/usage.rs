//! What a process has cost so far, from `/proc`: the benches' measure of CPU and memory.

use anyhow::Context;

/// CPU seconds (user and system) and resident memory of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcUsage {
    /// CPU time in user space, seconds.
    pub user_s: f64,
    /// CPU time in the kernel on the process's behalf (system calls, including the
    /// write-back an `fsync` waits for), seconds.
    pub sys_s: f64,
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
}

impl ProcUsage {
    /// User plus system CPU seconds.
    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`.
pub fn proc_usage(pid: i32) -> anyhow::Result<ProcUsage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse(
        &stat,
        &std::fs::read_to_string(format!("/proc/{pid}/status"))?,
    )
}

fn parse(stat: &str, status: &str) -> anyhow::Result<ProcUsage> {
    // Fields after the command name (which may hold spaces and parentheses) start after
    // the last ')'.
    let rest = stat.rsplit_once(')').context("stat has no command name")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after the name.
    let field = |i: usize, name: &str| -> anyhow::Result<f64> {
        f.get(i)
            .with_context(|| format!("stat has no {name}"))?
            .parse::<f64>()
            .with_context(|| format!("stat {name}"))
    };
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let kib = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcUsage {
        user_s: field(11, "utime")? / hz,
        sys_s: field(12, "stime")? / hz,
        rss_kib: kib("VmRSS:"),
        peak_rss_kib: kib("VmHWM:"),
    })
}

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_and_system_time_after_a_name_with_spaces_and_parentheses() {
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let stat = "42 (gst (x) launch) S 1 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 9 0";
        let status = "Name:\tx\nVmHWM:\t  20480 kB\nVmRSS:\t  10240 kB\n";
        let u = parse(stat, status).expect("parses");
        assert_eq!(u.user_s, 250.0 / hz);
        assert_eq!(u.sys_s, 50.0 / hz);
        assert_eq!(u.cpu_s(), 300.0 / hz);
        assert_eq!((u.rss_kib, u.peak_rss_kib), (10240, 20480));
        assert!(parse("42 (x) S 1", status).is_err(), "too few fields");
    }

    #[test]
    fn our_own_process_has_spent_some_cpu() {
        let u = proc_usage(std::process::id() as i32).expect("own /proc");
        assert!(u.peak_rss_kib >= u.rss_kib && u.rss_kib > 0);
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
