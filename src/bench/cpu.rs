//! Process CPU time over a stretch of wall time, for the benchmark: whether a phase was
//! CPU-bound (both cores busy) or waiting (on the broker, on a lock). A thread samples the
//! process's user+system time (`/proc/self/stat`, Linux) every few milliseconds; the CPU
//! spent between two instants is read off the samples.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const EVERY: Duration = Duration::from_millis(20);

/// Clock ticks per second of `/proc/self/stat`'s times: the kernel's `USER_HZ`, which is 100
/// on every Linux architecture (it is part of the user-space ABI, whatever the kernel's `HZ`).
const USER_HZ: f64 = 100.0;

/// Samples the process's CPU time until dropped.
pub struct CpuSampler {
    samples: Arc<Mutex<Vec<(Instant, f64)>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl CpuSampler {
    /// Starts sampling; `None` where the process's CPU time cannot be read.
    pub fn start() -> Option<CpuSampler> {
        process_cpu_seconds()?;
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (samples.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("bench-cpu".into())
            .spawn(move || {
                while !st.load(Ordering::Relaxed) {
                    if let Some(cpu) = process_cpu_seconds() {
                        s.lock().unwrap_or_else(|p| p.into_inner()).push((Instant::now(), cpu));
                    }
                    std::thread::sleep(EVERY);
                }
            })
            .ok()?;
        Some(CpuSampler { samples, stop, handle: Some(handle) })
    }

    /// CPU seconds the process used between `from` and `to`, and the wall seconds that
    /// covers (between the first and the last sample inside).
    pub fn between(&self, from: Instant, to: Instant) -> Option<(f64, f64)> {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let first = samples.iter().find(|(t, _)| *t >= from)?;
        let last = samples.iter().rev().find(|(t, _)| *t <= to)?;
        (last.0 > first.0).then_some((last.1 - first.1, last.0.duration_since(first.0).as_secs_f64()))
    }
}

impl Drop for CpuSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// User + system CPU seconds of this process so far.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesized command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_work_shows_as_cpu_time() {
        let Some(sampler) = CpuSampler::start() else { return };
        std::thread::sleep(Duration::from_millis(60));
        let from = Instant::now();
        let mut x = 0u64;
        while from.elapsed() < Duration::from_millis(400) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        std::thread::sleep(Duration::from_millis(60));
        let to = Instant::now();
        let (cpu, wall) = sampler.between(from, to).expect("samples inside the interval");
        // One thread spun for 0.4 s: about one core's worth (ticks are 10 ms).
        assert!(cpu >= 0.25 && cpu <= wall + 0.1, "cpu {cpu} s over {wall} s");
    }
}
