//! Process CPU time over a stretch of wall time, for the benchmark: whether a phase was
//! CPU-bound (both cores busy) or waiting (on the broker, on a lock), and which threads spent
//! it. A thread samples the process's user+system time (`/proc/self/stat`, Linux) and every
//! thread's (`/proc/self/task/*/stat`) every few milliseconds; the CPU spent between two
//! instants is read off the samples.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Sampling period. Reading every thread's stat costs this sampler ~0.7 ms of CPU per
/// sample with librdkafka's ~40 threads; at 20 ms that was ~2 % of the end-to-end phase's CPU
/// (perf, session 8), at 50 ms it is under 1 %, and the sampler reports its own share.
const EVERY: Duration = Duration::from_millis(50);

/// The sampling thread's name.
const SAMPLER_THREAD: &str = "bench-cpu";

/// Clock ticks per second of `/proc/self/stat`'s times: the kernel's `USER_HZ`, which is 100
/// on every Linux architecture (it is part of the user-space ABI, whatever the kernel's `HZ`).
const USER_HZ: f64 = 100.0;

/// What a thread does, from its name: the shards' rule threads, librdkafka's threads, RocksDB's
/// background threads, and everything else (the reading thread, the HTTP server…).
pub fn role_of(thread_name: &str) -> &'static str {
    if thread_name.starts_with("shard-") {
        "shards (rules, state, commits)"
    } else if thread_name.starts_with("rdk:") || thread_name.starts_with("producer poll") {
        "librdkafka threads"
    } else if thread_name.starts_with("rocksdb:") {
        "rocksdb background"
    } else if thread_name == SAMPLER_THREAD {
        "this CPU sampler"
    } else {
        "reader and others"
    }
}

/// One sample: when, the process's CPU seconds, and each live thread's (role, CPU seconds).
struct Sample {
    at: Instant,
    total: f64,
    threads: BTreeMap<u32, (&'static str, f64)>,
}

/// CPU used over a stretch of wall time.
#[derive(Clone, Debug, Default)]
pub struct CpuUse {
    pub cpu_seconds: f64,
    pub wall_seconds: f64,
    /// CPU seconds per thread role ([`role_of`]); threads that ended inside the stretch are
    /// counted under `"ended threads"`.
    pub by_role: Vec<(&'static str, f64)>,
}

/// Samples the process's CPU time until dropped.
pub struct CpuSampler {
    samples: Arc<Mutex<Vec<Sample>>>,
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
            .name(SAMPLER_THREAD.into())
            .spawn(move || {
                while !st.load(Ordering::Relaxed) {
                    if let Some(total) = process_cpu_seconds() {
                        let sample = Sample { at: Instant::now(), total, threads: thread_cpu_seconds() };
                        s.lock().unwrap_or_else(|p| p.into_inner()).push(sample);
                    }
                    std::thread::sleep(EVERY);
                }
            })
            .ok()?;
        Some(CpuSampler { samples, stop, handle: Some(handle) })
    }

    /// CPU the process used between `from` and `to`, over the wall time between the first and
    /// the last sample inside.
    pub fn between(&self, from: Instant, to: Instant) -> Option<CpuUse> {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let first = samples.iter().find(|s| s.at >= from)?;
        let last = samples.iter().rev().find(|s| s.at <= to)?;
        if last.at <= first.at {
            return None;
        }
        let cpu_seconds = last.total - first.total;
        let mut roles: BTreeMap<&'static str, f64> = BTreeMap::new();
        for (tid, (role, cpu)) in &last.threads {
            let before = first.threads.get(tid).map_or(0.0, |(_, c)| *c);
            *roles.entry(role).or_default() += cpu - before;
        }
        let ended = cpu_seconds - roles.values().sum::<f64>();
        let mut by_role: Vec<(&'static str, f64)> = roles.into_iter().collect();
        if ended > 0.005 {
            by_role.push(("ended threads", ended));
        }
        by_role.sort_by(|a, b| b.1.total_cmp(&a.1));
        Some(CpuUse { cpu_seconds, wall_seconds: last.at.duration_since(first.at).as_secs_f64(), by_role })
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
    stat_cpu_seconds(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// Every live thread's role and CPU seconds, by thread id.
fn thread_cpu_seconds() -> BTreeMap<u32, (&'static str, f64)> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let name = stat.find('(').zip(stat.rfind(')')).map_or("", |(a, b)| &stat[a + 1..b]);
        if let Some(cpu) = stat_cpu_seconds(&stat) {
            out.insert(tid, (role_of(name), cpu));
        }
    }
    out
}

/// utime + stime of a `/proc/…/stat` line, in seconds.
fn stat_cpu_seconds(stat: &str) -> Option<f64> {
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
        std::thread::sleep(Duration::from_millis(100));
        let from = Instant::now();
        let mut x = 0u64;
        while from.elapsed() < Duration::from_millis(400) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        std::thread::sleep(Duration::from_millis(100));
        let to = Instant::now();
        let used = sampler.between(from, to).expect("samples inside the interval");
        let (cpu, wall) = (used.cpu_seconds, used.wall_seconds);
        // One thread spun for 0.4 s: at least about one core's worth (ticks are 10 ms; tests
        // running in parallel in this process only add to it), never more than every core.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        assert!(cpu >= 0.25 && cpu <= wall * cores + 0.1, "cpu {cpu} s over {wall} s");
        // The test's own thread did it: its role carries it.
        let mine = role_of(std::thread::current().name().unwrap_or(""));
        let spent = used.by_role.iter().find(|(role, _)| *role == mine).map_or(0.0, |r| r.1);
        assert!(spent >= 0.2, "{:?}", used.by_role);
    }

    #[test]
    fn thread_names_map_to_roles() {
        assert_eq!(role_of("shard-3"), "shards (rules, state, commits)");
        assert_eq!(role_of("rdk:broker1"), "librdkafka threads");
        assert_eq!(role_of("producer pollin"), "librdkafka threads");
        assert_eq!(role_of("rocksdb:low"), "rocksdb background");
        assert_eq!(role_of("shopscore"), "reader and others");
        assert_eq!(role_of(SAMPLER_THREAD), "this CPU sampler");
    }
}
