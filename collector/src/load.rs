//! How much CPU other processes used while a probe ran.
//!
//! A benchmark on a busy host measures the host's load as much as its hardware. The collector
//! samples the machine's CPU time (`/proc/stat`) and its own (`/proc/self/stat`) around each
//! probe; what the machine spent beyond the collector, less interrupt handling and the
//! kernel's own threads (which do the probes' I/O as much as anyone's), is foreign load.

/// Foreign CPU above this share of the machine marks a measurement as disturbed.
pub const DISTURBED_THRESHOLD: f64 = 0.10;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuLoad {
    /// Other processes' share of all CPUs' time, 0–1; `None` where it cannot be measured.
    pub foreign_share: Option<f64>,
}

impl CpuLoad {
    pub fn disturbed(&self) -> bool {
        self.foreign_share.is_some_and(|s| s > DISTURBED_THRESHOLD)
    }
}

#[derive(Debug, Clone)]
struct Ticks {
    busy: u64,
    total: u64,
    own: u64,
    /// Time the hypervisor ran something else while this machine's vCPUs wanted to run.
    steal: u64,
    /// CPU time of other processes that count as ours (kernel threads, helpers), by pid: their
    /// differences are taken pid by pid, so one that exits in between lowers nothing.
    ours: std::collections::HashMap<u32, u64>,
}

fn read_ticks() -> Option<Ticks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> =
        stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    let total: u64 = cpu.iter().take(8).sum();
    // Idle and iowait are nobody's; interrupt and softirq time goes to whoever causes the I/O,
    // which during a storage or network probe is the probe itself (counted as foreign, it
    // marked 4 KiB random writes `disturbed` on a quiet machine).
    let idle = cpu.get(3)? + cpu.get(4).unwrap_or(&0) + cpu.get(5).unwrap_or(&0) + cpu.get(6).unwrap_or(&0);
    // utime, stime, and the children's cutime and cstime: a child we waited for (a reference
    // tool run by `calibrate`, a command a service probe times) is our load, not foreign.
    let own = process_ticks("self")?;
    let mut ours = kernel_thread_ticks();
    for &pid in HELPERS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        if let Some(t) = process_ticks(&pid.to_string()) {
            ours.insert(pid, t);
        }
    }
    Some(Ticks { busy: total - idle, total, own, steal: cpu.get(7).copied().unwrap_or(0), ours })
}

/// CPU time of the kernel's own threads (block-layer completion workers, writeback, the
/// journal): they serve whoever does I/O, during a storage probe the probe itself (a kworker
/// took 19 % of the machine while `storage.seq` wrote), so they are not counted as foreign.
fn kernel_thread_ticks() -> std::collections::HashMap<u32, u64> {
    let mut ticks = std::collections::HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return ticks };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(close) = stat.rfind(')') else { continue };
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        const PF_KTHREAD: u64 = 0x0020_0000;
        let flags: u64 = fields.get(6).and_then(|f| f.parse().ok()).unwrap_or(0);
        if flags & PF_KTHREAD != 0 {
            ticks.insert(
                pid,
                [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum::<u64>(),
            );
        }
    }
    ticks
}

/// A process's CPU time with its waited-for children's, in clock ticks.
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    (11..=14).map(|i| fields.get(i).and_then(|f| f.parse::<u64>().ok())).sum()
}

/// Processes whose CPU is ours though we do not wait for them: the servers `calibrate` starts
/// for the reference tools (`iperf3 -s`), busy exactly while the reference runs.
static HELPERS: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// Counts `pid`'s CPU time as the collector's own until [`forget_helper`].
pub fn count_as_own(pid: u32) {
    HELPERS.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
}

pub fn forget_helper(pid: u32) {
    HELPERS.lock().unwrap_or_else(|e| e.into_inner()).retain(|&p| p != pid);
}

/// Started before a probe, finished after it.
pub struct LoadMeter {
    start: Option<Ticks>,
    count_steal: bool,
}

impl LoadMeter {
    /// For probes that only compute: steal time (a neighbour on the host's core) is foreign.
    pub fn start() -> LoadMeter {
        LoadMeter { start: read_ticks(), count_steal: true }
    }

    /// For probes that do I/O on a VM: the host emulates the virtual disk and network on the
    /// vCPU's time, which the guest sees as steal (12 % of the machine while `storage.seq`
    /// wrote here), so steal measures the probe's own I/O path and is left out.
    pub fn start_io() -> LoadMeter {
        LoadMeter { start: read_ticks(), count_steal: false }
    }

    pub fn finish(&self) -> CpuLoad {
        let share = self.start.as_ref().zip(read_ticks()).and_then(|(a, b)| {
            let total = b.total.checked_sub(a.total)?;
            if total == 0 {
                return None;
            }
            let mut busy = b.busy.saturating_sub(a.busy);
            if !self.count_steal {
                busy = busy.saturating_sub(b.steal.saturating_sub(a.steal));
            }
            // Processes that count as ours: what each used since the start (all of it, for one
            // that started meanwhile).
            let ours: u64 =
                b.ours.iter().map(|(pid, &t)| t.saturating_sub(a.ours.get(pid).copied().unwrap_or(0))).sum();
            let own = b.own.saturating_sub(a.own) + ours;
            Some((busy.saturating_sub(own) as f64 / total as f64).clamp(0.0, 1.0))
        });
        CpuLoad { foreign_share: share }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_busy_neighbour_is_seen_as_foreign_load() {
        if read_ticks().is_none() {
            return; // not Linux
        }
        // The neighbour is a child process not yet waited for, so it counts as foreign.
        let mut child =
            std::process::Command::new("sh").args(["-c", "while :; do :; done"]).spawn().expect("sh");
        let meter = LoadMeter::start();
        let until = Instant::now() + Duration::from_millis(600);
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        let load = meter.finish();
        child.kill().ok();
        child.wait().ok();
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        let share = load.foreign_share.unwrap();
        // One busy core of `cpus`, minus scheduling slack.
        assert!(share > 0.6 / cpus, "foreign share {share} with {cpus} cpus");
    }
}
