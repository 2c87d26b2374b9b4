//! What /proc says: peak memory, CPU time per process and per thread, PostgreSQL's CPU, the
//! machine's load and free memory.

use serde::Serialize;
use std::collections::BTreeMap;
use std::process::Child;
use std::time::{Duration, Instant};

/// Clock ticks per second of /proc/*/stat (USER_HZ; 100 on Linux x86-64).
pub const HZ: f64 = 100.0;

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Peak resident set size (VmHWM), KiB.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

/// Resident set size now (VmRSS), KiB.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// (comm, utime + stime in ticks) of /proc/.../stat.
fn stat_ticks(path: &str) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 2..)?.split_whitespace().collect();
    // after "pid (comm) ": state is field 3, utime 14, stime 15
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

pub fn process_ticks(pid: u32) -> Option<u64> {
    stat_ticks(&format!("/proc/{pid}/stat")).map(|(_, t)| t)
}

/// tid -> (thread name, ticks)
pub fn thread_ticks(pid: u32) -> BTreeMap<u32, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(x) = stat_ticks(&format!("/proc/{pid}/task/{tid}/stat")) {
            out.insert(tid, x);
        }
    }
    out
}

/// pid -> ticks of every process named `postgres`.
pub fn postgres_ticks() -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some((comm, t)) = stat_ticks(&format!("/proc/{pid}/stat"))
            && comm == "postgres"
        {
            out.insert(pid, t);
        }
    }
    out
}

/// (busy, iowait, total) jiffies of the whole machine.
pub fn machine_cpu() -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let idle = *v.get(3)?;
    let iowait = *v.get(4)?;
    let total: u64 = v.iter().take(8).sum();
    Some((total - idle - iowait, iowait, total))
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

pub fn mem_available_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |k| k / 1024)
}

pub fn mem_total_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |k| k / 1024)
}

pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Processes other than `ours` using noticeable CPU right now (a 1 s sample), for the
/// machine-state line: (comm, % of one core).
pub fn busy_others(ours: &[u32]) -> Vec<(String, f64)> {
    let snap = || {
        let mut m = BTreeMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok())
                    && let Some(x) = stat_ticks(&format!("/proc/{pid}/stat"))
                {
                    m.insert(pid, x);
                }
            }
        }
        m
    };
    let a = snap();
    std::thread::sleep(Duration::from_secs(1));
    let b = snap();
    let mut out: Vec<(String, f64)> = b
        .iter()
        .filter(|(pid, _)| !ours.contains(pid))
        .filter_map(|(pid, (comm, t))| {
            let before = a.get(pid).map_or(0, |x| x.1);
            let pct = (t.saturating_sub(before)) as f64 / HZ * 100.0;
            (pct >= 10.0).then(|| (comm.clone(), pct))
        })
        .collect();
    out.sort_by(|x, y| y.1.total_cmp(&x.1));
    out
}

/// What a monitored stretch used.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    pub seconds: f64,
    /// Peak RSS (VmHWM) of the watched process, MiB (the last value seen).
    pub peak_rss_mib: f64,
    /// CPU of the watched process, % of one core.
    pub cpu_pct: f64,
    /// Its busiest threads: (name, % of one core).
    pub top_threads: Vec<(String, f64)>,
    /// CPU of all `postgres` processes, % of one core.
    pub postgres_cpu_pct: f64,
    /// The machine: busy and iowait, % of all cores.
    pub machine_busy_pct: f64,
    pub machine_iowait_pct: f64,
}

/// Watches `pid` (peak memory every 50 ms, CPU per thread every 500 ms) until `waiting`
/// exits; returns the child's exit status and what was used.
pub fn watch(
    waiting: &mut Child,
    pid: u32,
    with_postgres: bool,
) -> anyhow::Result<(std::process::ExitStatus, Usage)> {
    let started = Instant::now();
    let cpu0 = machine_cpu();
    // postgres backends come and go with their connections: keep the last value seen of each
    let pg0 = if with_postgres {
        postgres_ticks()
    } else {
        BTreeMap::new()
    };
    let mut pg_last = pg0.clone();
    let proc0 = process_ticks(pid).unwrap_or(0);
    let threads0 = thread_ticks(pid);
    let mut proc_last = proc0;
    let mut threads_last = threads0.clone();
    let mut hwm = vm_hwm_kib(pid).unwrap_or(0);
    let mut tick = 0u64;
    let status = loop {
        if let Some(s) = waiting.try_wait()? {
            break s;
        }
        if let Some(h) = vm_hwm_kib(pid) {
            hwm = h;
        }
        if let Some(t) = process_ticks(pid) {
            proc_last = t;
        }
        if tick.is_multiple_of(10) {
            if with_postgres {
                pg_last.extend(postgres_ticks());
            }
            let t = thread_ticks(pid);
            if !t.is_empty() {
                for (tid, x) in t {
                    threads_last.insert(tid, x);
                }
            }
        }
        tick += 1;
        std::thread::sleep(Duration::from_millis(50));
    };
    let seconds = started.elapsed().as_secs_f64();
    // a process still running (the server) can be read once more
    if let Some(h) = vm_hwm_kib(pid) {
        hwm = h;
    }
    if let Some(t) = process_ticks(pid) {
        proc_last = t;
    }
    for (tid, x) in thread_ticks(pid) {
        threads_last.insert(tid, x);
    }
    let pg_pct = if with_postgres {
        pg_last.extend(postgres_ticks());
        let used: u64 = pg_last
            .iter()
            .map(|(p, t)| t.saturating_sub(pg0.get(p).copied().unwrap_or(0)))
            .sum();
        used as f64 / HZ / seconds * 100.0
    } else {
        0.0
    };
    let (busy, iowait) = match (cpu0, machine_cpu()) {
        (Some((b0, w0, t0)), Some((b1, w1, t1))) if t1 > t0 => {
            let total = (t1 - t0) as f64;
            (
                (b1 - b0) as f64 / total * 100.0,
                (w1 - w0) as f64 / total * 100.0,
            )
        }
        _ => (0.0, 0.0),
    };
    // each thread on its own: one at ~100% is a saturated thread (tokio workers share a name)
    let mut top: Vec<(String, f64)> = threads_last
        .iter()
        .map(|(tid, (name, t))| {
            let before = threads0.get(tid).map_or(0, |x| x.1);
            (
                name.clone(),
                t.saturating_sub(before) as f64 / HZ / seconds * 100.0,
            )
        })
        .filter(|x| x.1 >= 1.0)
        .collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    top.truncate(5);
    Ok((
        status,
        Usage {
            seconds,
            peak_rss_mib: hwm as f64 / 1024.0,
            cpu_pct: proc_last.saturating_sub(proc0) as f64 / HZ / seconds * 100.0,
            top_threads: top,
            postgres_cpu_pct: pg_pct,
            machine_busy_pct: busy,
            machine_iowait_pct: iowait,
        },
    ))
}
