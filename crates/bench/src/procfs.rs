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
}
