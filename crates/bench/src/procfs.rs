//! Process measurements from `/proc`: CPU seconds and resident memory of the
//! registry under test and of the load generator itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// `/proc/PID/stat` counts CPU time in USER_HZ ticks. USER_HZ is part of the
/// kernel's user-space ABI and is 100 on every mainstream Linux architecture
/// (whatever the kernel's internal HZ), which spares a libc dependency for
/// `sysconf(_SC_CLK_TCK)`.
const TICKS_PER_SECOND: f64 = 100.0;

/// Which process to read: the registry (by pid) or this benchmark.
#[derive(Clone, Copy, Debug)]
pub enum Process {
    Pid(u32),
    Myself,
}

impl Process {
    fn path(self, file: &str) -> String {
        match self {
            Process::Pid(pid) => format!("/proc/{pid}/{file}"),
            Process::Myself => format!("/proc/self/{file}"),
        }
    }

    /// User plus system CPU seconds the process (all its threads) has used.
    pub fn cpu_seconds(self) -> std::io::Result<f64> {
        cpu_seconds_in(&std::fs::read_to_string(self.path("stat"))?)
    }

    /// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in bytes.
    pub fn status_bytes(self, field: &str) -> std::io::Result<u64> {
        let status = std::fs::read_to_string(self.path("status"))?;
        status
            .lines()
            .find_map(|line| {
                let value = line.strip_prefix(field)?.strip_prefix(':')?;
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib * 1024)
            .ok_or_else(|| std::io::Error::other(format!("no {field} in /proc status")))
    }
}

/// CPU seconds used so far by a process and all its descendants, including
/// descendants that have already exited: the services a registry depends on
/// (PostgreSQL's backend per connection, an object store's helpers) do their
/// work in child processes that come and go, and an exited child's time is
/// added to its parent's `cutime`/`cstime` once the parent reaps it.
///
/// A child that exits and is reaped between two readings moves its time from
/// its own counters to its parent's, so differences stay right; only a child
/// that has exited but is not reaped yet is briefly missed.
pub fn tree_cpu_seconds(root: u32) -> std::io::Result<f64> {
    let mut processes = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes that ended since the directory was listed are skipped.
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            if let Some((parent, ticks)) = parent_and_tree_ticks(&stat) {
                processes.push((pid, parent, ticks));
            }
        }
    }
    if !processes.iter().any(|&(pid, _, _)| pid == root) {
        return Err(std::io::Error::other(format!("no process {root}")));
    }
    let mut in_tree = std::collections::HashSet::from([root]);
    // Parents may be listed after their children, so grow the set until no
    // process joins it; trees are shallow, so this takes a few passes.
    loop {
        let before = in_tree.len();
        for &(pid, parent, _) in &processes {
            if in_tree.contains(&parent) {
                in_tree.insert(pid);
            }
        }
        if in_tree.len() == before {
            break;
        }
    }
    let ticks: u64 = processes
        .iter()
        .filter(|(pid, _, _)| in_tree.contains(pid))
        .map(|&(_, _, ticks)| ticks)
        .sum();
    Ok(ticks as f64 / TICKS_PER_SECOND)
}

/// The parent pid and utime + stime + cutime + cstime from a `stat` file.
fn parent_and_tree_ticks(stat: &str) -> Option<(u32, u64)> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let parent = fields.get(1)?.parse().ok()?;
    let mut ticks = 0u64;
    for index in 11..=14 {
        ticks += fields.get(index)?.parse::<u64>().ok()?;
    }
    Some((parent, ticks))
}

/// User plus system CPU seconds of the calling thread alone.
pub fn current_thread_cpu_seconds() -> std::io::Result<f64> {
    cpu_seconds_in(&std::fs::read_to_string("/proc/thread-self/stat")?)
}

/// User plus system CPU seconds from the text of a `stat` file.
fn cpu_seconds_in(stat: &str) -> std::io::Result<f64> {
    // The command name (field 2) is in parentheses and may contain spaces,
    // so fields are counted from the last ')': state is field 3, utime 14
    // and stime 15.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> std::io::Result<f64> {
        fields
            .get(index)
            .and_then(|field| field.parse::<u64>().ok())
            .map(|value| value as f64)
            .ok_or_else(|| std::io::Error::other("malformed /proc stat"))
    };
    Ok((ticks(11)? + ticks(12)?) / TICKS_PER_SECOND)
}

/// Samples a process's `VmRSS` on a background thread while a scenario runs.
///
/// `VmHWM` is the peak since the process started, so after the first large
/// scenario it would hide every later one; sampling the current RSS gives a
/// peak per scenario instead. Sampling every 10 ms costs a few hundred
/// microseconds of CPU per second and can miss only spikes shorter than that.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl RssSampler {
    pub fn start(process: Process) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_seen = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0u64;
            loop {
                if let Ok(rss) = process.status_bytes("VmRSS") {
                    peak = peak.max(rss);
                }
                if stop_seen.load(Ordering::Relaxed) {
                    return peak;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        RssSampler { stop, thread }
    }

    /// Stops sampling (after one last sample) and returns the peak in bytes.
    pub fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_cpu_time_and_memory() {
        assert!(Process::Myself.cpu_seconds().unwrap() >= 0.0);
        assert!(current_thread_cpu_seconds().unwrap() >= 0.0);
        assert!(Process::Myself.status_bytes("VmRSS").unwrap() > 0);
        let sampler = RssSampler::start(Process::Myself);
        assert!(sampler.finish() > 0);
    }

    #[test]
    fn a_process_tree_counts_its_exited_children() {
        let me = std::process::id();
        let before = tree_cpu_seconds(me).unwrap();
        // A child that burns some CPU and is reaped by `wait`: its time must
        // then show in this process's tree through `cutime`/`cstime`.
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 500000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        let after = tree_cpu_seconds(me).unwrap();
        assert!(after > before, "tree CPU went from {before} to {after}");
        assert!(tree_cpu_seconds(u32::MAX).is_err());
    }

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        let stat = "42 (a (b) c) S 7 1 1 0 -1 0 0 0 0 0 3 4 5 6 20 0 1 0 100 0 0";
        assert_eq!(parent_and_tree_ticks(stat), Some((7, 18)));
    }
}
