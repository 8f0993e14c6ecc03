//! Shared helpers of the Kafka integration tests: a real tansu broker per test (a separate
//! server process over TCP, memory storage), topic creation, producing generated events into
//! the input topics, reading output topics, and running the `shopscore` binary.
#![allow(dead_code)]

mod proc;
mod proxy;
mod tls;
#[allow(unused_imports)]
pub use proc::Proc;
#[allow(unused_imports)]
pub use proxy::Proxy;
#[allow(unused_imports)]
pub use tls::{Pki, PkiFiles};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use shopscore::kafka::client::FIRST_OFFSET;
pub use shopscore::kafka::crash::CrashPoint;
use shopscore::kafka::records::ID_HEADER;
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const INPUTS: [&str; 4] = ["orders", "logistics", "refunds", "service"];
pub const OUTPUTS: [&str; 4] = ["shop-metrics", "compensations", "shop-alerts", "dead-letters"];

/// Which tansu build a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TansuBuild {
    /// tansu 0.6.0 from crates.io (scripts/tansu.sh): no `EndTxn`.
    Release,
    /// tansu's main branch, v0.6.0-510f3e2 (scripts/tansu-txn.sh): with transactions.
    Transactional,
}

impl TansuBuild {
    /// The binary: `$SHOPSCORE_TANSU` / `$SHOPSCORE_TANSU_TXN` (set by scripts/test.sh), else
    /// the cached install.
    fn bin(self) -> PathBuf {
        let (var, cached, script) = match self {
            TansuBuild::Release => ("SHOPSCORE_TANSU", "bin/tansu", "scripts/tansu.sh"),
            TansuBuild::Transactional => {
                ("SHOPSCORE_TANSU_TXN", "tansu-0.6.0-510f3e2/tansu", "scripts/tansu-txn.sh")
            }
        };
        if let Ok(p) = std::env::var(var) {
            return PathBuf::from(p);
        }
        let home = std::env::var("HOME").unwrap_or_default();
        let p = PathBuf::from(home).join(".cache/shopscore/tools").join(cached);
        assert!(
            p.exists(),
            "{self:?} tansu is not installed: run `bash scripts/test.sh` (it installs it) or `bash {script}`"
        );
        p
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A tansu broker process, killed on drop.
pub struct Tansu {
    child: Child,
    pub brokers: String,
}

impl Tansu {
    /// tansu 0.6.0, the broker of most tests.
    pub fn start() -> Tansu {
        Tansu::start_build(TansuBuild::Release)
    }

    pub fn start_build(build: TansuBuild) -> Tansu {
        let port = free_port();
        Tansu::start_listening(build, port, port)
    }

    /// tansu 0.6.0 listening on `port` but advertising `advertised` (a proxy's port) to its
    /// clients; `brokers` is the advertised address.
    pub fn start_advertising_on(port: u16, advertised: u16) -> Tansu {
        Tansu::start_listening(TansuBuild::Release, port, advertised)
    }

    fn start_listening(build: TansuBuild, port: u16, advertised: u16) -> Tansu {
        let url = |port: u16| format!("tcp://127.0.0.1:{port}");
        let child = Command::new(build.bin())
            .args(["broker", "--listener-url", &url(port), "--advertised-listener-url", &url(advertised)])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let t = Tansu { child, brokers: format!("127.0.0.1:{advertised}") };
        // Asked on the listener itself, in plaintext: the bootstrap connection answers
        // metadata whatever address the broker advertises.
        let listener = format!("127.0.0.1:{port}");
        let start = Instant::now();
        loop {
            let c: BaseConsumer = plain_client(&listener).create().unwrap();
            if c.fetch_metadata(None, Duration::from_secs(1)).is_ok() {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "tansu did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        t
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// librdkafka settings a broker address needs besides `bootstrap.servers` (a broker behind
/// a TLS [`Proxy`]: TLS), for every client a helper makes for it. Most brokers need none.
static CLIENT_SETTINGS: Mutex<BTreeMap<String, Vec<(String, String)>>> = Mutex::new(BTreeMap::new());

/// Makes every helper's client for `brokers` use `settings`.
pub fn set_client_settings(brokers: &str, settings: &[(&str, &str)]) {
    let settings = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    CLIENT_SETTINGS.lock().unwrap_or_else(|p| p.into_inner()).insert(brokers.to_owned(), settings);
}

pub fn client(brokers: &str) -> ClientConfig {
    let mut c = plain_client(brokers);
    if let Some(settings) = CLIENT_SETTINGS.lock().unwrap_or_else(|p| p.into_inner()).get(brokers) {
        for (k, v) in settings {
            c.set(k, v);
        }
    }
    c
}

fn plain_client(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    c
}

pub fn create_topics(brokers: &str, topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = client(brokers).create().unwrap();
    let new: Vec<NewTopic<'_>> =
        topics.iter().map(|(n, p)| NewTopic::new(n, *p, TopicReplication::Fixed(1))).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for r in rt.block_on(admin.create_topics(new.iter(), &AdminOptions::new())).unwrap() {
        r.unwrap();
    }
}

/// Creates the four input topics with `partitions` partitions each and produces `lines` into
/// them ([`produce_lines`]).
pub fn setup_inputs(brokers: &str, lines: &[String], partitions: i32) {
    create_topics(brokers, &INPUTS.map(|n| (n, partitions)));
    produce_lines(brokers, lines, partitions);
}

/// The outputs of one uninterrupted run on `lines` (`partitions` per input topic), on a tansu
/// 0.6.0 of its own in plaintext: what a run that was interrupted, or went another way, must
/// equal.
pub fn reference_outputs(lines: &[String], partitions: i32) -> Outputs {
    let t = Tansu::start();
    setup_inputs(&t.brokers, lines, partitions);
    let dir = tempfile::tempdir().unwrap();
    run_until_idle(&mut processor(&t.brokers, "ref", &dir.path().join("data"), false));
    let want = outputs(&t.brokers, false);
    assert!(!want.compensations.is_empty() && !want.dead_letters.is_empty());
    want
}

/// The input topic of a JSON-lines event (by its `type`); lines that are not JSON objects
/// with a known type go to `orders` (poison records).
pub fn topic_of(line: &str) -> &'static str {
    let ty = serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_default();
    match ty.split('.').next().unwrap_or("") {
        "logistics" => "logistics",
        "refund" => "refunds",
        "service" => "service",
        _ => "orders",
    }
}

/// Produces `lines` into the input topics, spreading each topic's records round-robin over
/// `partitions` partitions (not by shop: inputs may be keyed any way), keyed by line number.
///
/// One record per batch: tansu 0.6.0 returns nothing for a fetch that starts in the middle of
/// a record batch (checked here: 50 records in one batch, fetch from offset 20 → no record),
/// so a consumer resuming mid-batch would lose the rest of it. Real Kafka does not do this.
pub fn produce_lines(brokers: &str, lines: &[String], partitions: i32) {
    let producer: ThreadedProducer<DefaultProducerContext> = client(brokers)
        .set("enable.idempotence", "true")
        .set("batch.num.messages", "1")
        .set("linger.ms", "0")
        .create()
        .unwrap();
    for (i, (line, (topic, p))) in lines.iter().zip(input_targets(lines, partitions)).enumerate() {
        let key = format!("k{i}");
        let mut rec = BaseRecord::to(topic).partition(p).key(&key).payload(line.as_bytes());
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    rec = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

/// Each line's input topic ([`topic_of`]) and partition: round robin over `partitions`, per
/// topic.
fn input_targets(lines: &[String], partitions: i32) -> Vec<(&'static str, i32)> {
    let mut next: BTreeMap<&str, i32> = BTreeMap::new();
    lines
        .iter()
        .map(|line| {
            let topic = topic_of(line);
            let n = next.entry(topic).or_default();
            let p = *n % partitions;
            *n += 1;
            (topic, p)
        })
        .collect()
}

/// Writes `lines` into the input topics (`partitions` each, placed as [`produce_lines`] places
/// them) the way producers usually do: many records per batch (unlike [`produce_lines`], one
/// record per batch, see there why), and with `transactional`, in committed
/// transactions of 500 records, whose commit markers take offsets of their own (the last
/// offset of every partition among them).
pub fn produce_batched(brokers: &str, lines: &[String], partitions: i32, transactional: bool) {
    let mut config = client(brokers);
    config.set("linger.ms", "20").set("batch.num.messages", "10000");
    if transactional {
        config.set("transactional.id", "test-inputs");
    }
    let producer: ThreadedProducer<DefaultProducerContext> = config.create().unwrap();
    let timeout = Duration::from_secs(30);
    if transactional {
        producer.init_transactions(timeout).unwrap();
    }
    let targets = input_targets(lines, partitions);
    for (chunk, targets) in lines.chunks(500).zip(targets.chunks(500)) {
        if transactional {
            producer.begin_transaction().unwrap();
        }
        for (line, &(topic, p)) in chunk.iter().zip(targets) {
            producer.send(BaseRecord::<(), [u8]>::to(topic).partition(p).payload(line.as_bytes())).unwrap();
        }
        if transactional {
            producer.commit_transaction(timeout).unwrap();
        } else {
            producer.flush(timeout).unwrap();
        }
    }
}

/// Generated sample events (with malformed and duplicated lines, and facts restated with
/// other content under other `event_id`s), as lines.
pub fn gen_lines(events: u64, shops: u32, days: u32, seed: u64) -> Vec<String> {
    let opts = shopscore::gen::GenOptions {
        seed,
        events,
        shops,
        days,
        restated_per_mille: 20,
        ..Default::default()
    };
    let mut buf = Vec::new();
    shopscore::gen::generate(&opts, &mut buf).unwrap();
    String::from_utf8_lossy(&buf).lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect()
}

/// One consumed record.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rec {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// The record had no payload at all (a tombstone), not an empty one.
    pub tombstone: bool,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Rec {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("JSON payload")
    }
    pub fn header(&self, k: &str) -> Option<String> {
        self.headers.iter().find(|(n, _)| n == k).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Every record of `topic` (all partitions, from offset 0 until quiet for 1.5 s: tansu
/// 0.6 reports wrong end offsets, so the end is found by waiting). From `FIRST_OFFSET`, like
/// shopscore's own readers, not `Offset::Beginning`: a read from tansu's "earliest" once
/// began an output partition at offset 17 and silently skipped its first 17 records
/// (session 26; `shopscore::kafka::client::FIRST_OFFSET` says why).
pub fn read_all(brokers: &str, topic: &str, read_committed: bool) -> Vec<Rec> {
    let c: BaseConsumer = client(brokers)
        .set("group.id", "shopscore-tests-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", if read_committed { "read_committed" } else { "read_uncommitted" })
        .create()
        .unwrap();
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let parts = md.topics()[0].partitions().len() as i32;
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts {
        tpl.add_partition_offset(topic, p, Offset::Offset(FIRST_OFFSET)).unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_millis(1500) {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last = Instant::now();
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter().map(|x| (x.key.to_owned(), x.value.unwrap_or_default().to_vec())).collect()
                    })
                    .unwrap_or_default();
                out.push(Rec {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    tombstone: m.payload().is_none(),
                    headers,
                });
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => panic!("reading {topic}: {e}"),
        }
    }
    out
}

/// A transactional producer (`transactional.id` = `canary`) that has written three
/// transactions of one record each to partition 0 of `topic`: `aborted` (aborted), `committed`
/// (committed) and `open` (left open while the returned producer lives). For the canaries that
/// pin what a broker does with transactions.
pub fn three_transactions(brokers: &str, topic: &str) -> ThreadedProducer<DefaultProducerContext> {
    let p: ThreadedProducer<DefaultProducerContext> =
        client(brokers).set("transactional.id", "canary").create().unwrap();
    let timeout = Duration::from_secs(30);
    p.init_transactions(timeout).unwrap();
    for (payload, end) in [("aborted", "abort"), ("committed", "commit"), ("open", "none")] {
        p.begin_transaction().unwrap();
        p.send(BaseRecord::<str, str>::to(topic).key(payload).partition(0).payload(payload))
            .map_err(|e| e.0)
            .unwrap();
        p.flush(timeout).unwrap();
        match end {
            "abort" => p.abort_transaction(timeout).unwrap(),
            "commit" => p.commit_transaction(timeout).unwrap(),
            _ => {}
        }
    }
    p
}

/// The records of `topic` ([`read_all`]) as (offset, payload text), for the transaction
/// canaries.
pub fn read_payloads(brokers: &str, topic: &str, read_committed: bool) -> Vec<(i64, String)> {
    read_all(brokers, topic, read_committed)
        .into_iter()
        .map(|r| (r.offset, String::from_utf8_lossy(&r.payload).into_owned()))
        .collect()
}

/// A `shopscore run --brokers` command for this test.
pub fn processor(brokers: &str, group: &str, data_dir: &Path, transactional: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shopscore"));
    cmd.args(["run", "--brokers", brokers, "--group", group, "--data-dir"])
        .arg(data_dir)
        .env("SHOPSCORE__KAFKA__TRANSACTIONAL", transactional.to_string())
        .env("SHOPSCORE__KAFKA__REPLICATION_FACTOR", "1")
        .env("SHOPSCORE__TIME__IDLE_TIMEOUT", "8s")
        .env("SHOPSCORE__PIPELINE__COMMIT_INTERVAL", "200ms")
        .env("SHOPSCORE__LOG__FORMAT", "json")
        .env("SHOPSCORE__KAFKA__CLIENT__SESSION_TIMEOUT_MS", "6000")
        // Kafka mode serves HTTP on a fixed port by default: parallel processes would collide
        // (a test that wants the endpoint passes --http-addr 127.0.0.1:0).
        .env("SHOPSCORE__HTTP__ENABLED", "false")
        .env("RUST_LOG", "shopscore=info,rdkafka=warn,librdkafka=warn")
        .stdout(Stdio::null());
    cmd
}

/// A processor with transactions, and with the transactional outbox if `outbox`
/// (`kafka.transactional_outbox`).
pub fn txn_processor(brokers: &str, group: &str, data: &Path, outbox: bool) -> Command {
    let mut cmd = processor(brokers, group, data, true);
    cmd.env("SHOPSCORE__KAFKA__TRANSACTIONAL_OUTBOX", outbox.to_string());
    cmd
}

/// The last snapshot of every shop (highest version), without `as_of`/`version`, which
/// depend on commit timing.
pub fn final_snapshots(recs: &[Rec]) -> BTreeMap<String, serde_json::Value> {
    let mut best: BTreeMap<String, (u64, serde_json::Value)> = BTreeMap::new();
    for r in recs {
        let mut v = r.json();
        let shop = v["shop_id"].as_str().unwrap().to_owned();
        let version = v["version"].as_u64().unwrap();
        let obj = v.as_object_mut().unwrap();
        obj.remove("as_of");
        obj.remove("version");
        if best.get(&shop).is_none_or(|(b, _)| version > *b) {
            best.insert(shop, (version, v));
        }
    }
    best.into_iter().map(|(k, (_, v))| (k, v)).collect()
}

/// Runs `cmd --until-idle` to completion (at most `limit`), panicking with its log tail when it
/// fails or hangs.
pub fn run_until_idle_within(cmd: &mut Command, limit: Duration) {
    let (status, log) = run_until_idle_logged(cmd, limit);
    if status.is_some_and(|s| s.success()) {
        // The run's summary (records, outputs, late events), shown if the test fails later:
        // late events in a run over input within the bound point at the watermark.
        eprintln!("until-idle run: {}", log.lines().last().unwrap_or_default());
        return;
    }
    panic!("shopscore --until-idle failed or hung; log tail:\n{}", tail(&log, 40));
}

/// Runs `cmd --until-idle` (at most `limit`): its exit status (None: it had not exited within
/// `limit` and was killed) and its log.
pub fn run_until_idle_logged(
    cmd: &mut Command,
    limit: Duration,
) -> (Option<std::process::ExitStatus>, String) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = cmd.arg("--until-idle").stderr(log.reopen().unwrap()).spawn().expect("run shopscore");
    let status = wait_within(&mut child, limit);
    (status, std::fs::read_to_string(log.path()).unwrap_or_default())
}

/// Waits until `ok` holds, checking every 100 ms, for at most `limit`. On time-out, panics
/// naming `what`, with the last 12 lines of each of `logs` that `relevant` keeps (what the
/// processors last said, for the diagnosis).
pub fn wait_until(
    what: &str,
    limit: Duration,
    logs: &[&Path],
    relevant: impl Fn(&str) -> bool,
    ok: impl Fn() -> bool,
) {
    let start = Instant::now();
    while !ok() {
        if start.elapsed() > limit {
            let said: Vec<String> = logs
                .iter()
                .map(|l| {
                    let text = std::fs::read_to_string(l).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().filter(|line| relevant(line)).collect();
                    format!("--- {}:\n{}", l.display(), lines[lines.len().saturating_sub(12)..].join("\n"))
                })
                .collect();
            panic!("timed out after {limit:?} waiting for {what}\n{}", said.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `cmd --until-idle` expecting it to fail within `limit`: its log. Panics, with the
/// log, if it hung or exited successfully.
pub fn run_until_idle_failing(cmd: &mut Command, limit: Duration) -> String {
    let (status, log) = run_until_idle_logged(cmd, limit);
    let status = status.unwrap_or_else(|| panic!("the processor hung (killed after {limit:?}); log:\n{log}"));
    assert!(!status.success(), "exited successfully; log:\n{log}");
    log
}

/// A child process killed (SIGKILL) and reaped when dropped, so that a test that fails with
/// processors running leaves none behind for the tests after it.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// Waits for `child` to exit, at most `limit`; past it, kills it and returns None.
fn wait_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `lines` lines of the log file at `path`.
fn log_tail(path: &Path, lines: usize) -> String {
    tail(&std::fs::read_to_string(path).unwrap_or_default(), lines)
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let tail: Vec<&str> = text.lines().rev().take(lines).collect::<Vec<_>>().into_iter().rev().collect();
    tail.join("\n")
}

/// Starts `cmd` with its log in `log`, waits until it has acquired `shards` shards (at most
/// 60 s), then lets it run `ms` more milliseconds and SIGKILLs it.
pub fn kill_after_acquiring(cmd: &mut Command, log: &Path, shards: usize, ms: u64) {
    let mut child = cmd.stderr(std::fs::File::create(log).unwrap()).spawn().expect("spawn shopscore");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches("\"shard acquired\"").count() >= shards {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(ms));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// Starts a processor made by `processor` (on the data directory `data`) and SIGKILLs it
/// `kills` times, each once it has acquired the four shards and then run 100–999 ms more
/// (varied by `step`); the logs go next to `data`.
pub fn kill_repeatedly(processor: impl Fn() -> Command, data: &Path, kills: u64, step: u64) {
    for i in 0..kills {
        let log = data.with_file_name(format!("run-{i}.log"));
        kill_after_acquiring(&mut processor(), &log, 4, 100 + (i * step) % 900);
    }
}

/// Where the crash hook stopped a processor: the point, the shard, its commit, and how many
/// outputs that commit had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crash {
    pub point: CrashPoint,
    pub shard: u32,
    pub commit: u64,
    pub outputs: usize,
}

/// Runs `cmd` with the crash hook (`shopscore::kafka::crash`) set to abort when the `n`-th
/// commit with outputs reaches `point`; its log goes to `log`. Returns why when the process did
/// not abort there within 2 minutes (it is then killed with SIGKILL — one more crash, which
/// the commit protocol must survive too).
///
/// The run commits every 1 000 input records (besides every 200 ms), so that each run of a
/// crash sequence gets through only a small, bounded part of the input before its crash, and
/// the next one still finds commits with outputs to crash in. Without the bound a fast machine
/// read all input in a run's first commits, and the next crash never came (seen once in a CI
/// run: `stored:2` after `queued:3` and `marker:4` on 40 000 events).
pub fn crash_at(cmd: &mut Command, point: CrashPoint, n: u64, log: &Path) -> Result<Crash, String> {
    use shopscore::kafka::crash::{CRASH_ENV, CRASH_LINE};
    use std::os::unix::process::ExitStatusExt;
    let mut child = cmd
        .env(CRASH_ENV, format!("{}:{n}", point.name()))
        .env("SHOPSCORE__PIPELINE__COMMIT_EVERY_EVENTS", "1000")
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn shopscore");
    let status = wait_within(&mut child, Duration::from_secs(120));
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let line = text.lines().find_map(|l| l.strip_prefix(CRASH_LINE));
    let (Some(status), Some(line)) = (status, line) else {
        return Err(format!(
            "the crash hook did not abort the processor at {}:{n}; log tail:\n{}",
            point.name(),
            log_tail(log, 30)
        ));
    };
    assert_eq!(status.signal(), Some(6), "expected SIGABRT from the crash hook, got {status}");
    let field = |name: &str| -> &str {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name} in the crash line {line:?}"))
    };
    let number = |name: &str| -> u64 {
        field(name).parse().unwrap_or_else(|_| panic!("{name} is not a number in {line:?}"))
    };
    let crash = Crash {
        point: CrashPoint::parse(field("point")).unwrap_or_else(|| panic!("no crash point in {line:?}")),
        shard: number("shard") as u32,
        commit: number("commit"),
        outputs: number("outputs") as usize,
    };
    assert_eq!(crash.point, point);
    Ok(crash)
}

/// What a shard's error says when its changelog restore stalled below its own fence: on
/// tansu's main build a partition's last stable offset sometimes stops for good at a
/// transaction whose commit the broker acknowledged (seen at the fence record a new owner had
/// just committed, README → Tests against real brokers); no restart gets past it.
pub const TANSU_STALL: &str = "stalled for 60s at offset";

/// What [`settled_outputs`] says when `read_committed` stops short of an output partition's
/// end after every processor has exited: the same broker bug as [`TANSU_STALL`], hit by an
/// output topic.
pub const TANSU_OUTPUT_STALL: &str = "read_committed stopped short of the output topics";

/// [`outputs`] as `read_committed` readers see them, once every processor has exited. On
/// tansu's main build `read_committed` hides only open transactions, and none is open then (a
/// crashed owner's is aborted when the next one fences it): so the committed read must hold
/// every output id the uncommitted read holds. If it does not, the broker stopped a
/// partition's last stable offset for good ([`TANSU_OUTPUT_STALL`]). Session 25 guessed this
/// was why a reference run once looked 38 compensations short of a crashed run (session 24);
/// session 26 reproduced such a short read with equal committed and uncommitted reads, both
/// starting past the partition's first records ([`read_all`]).
/// The committed records are read once and give both the outputs and their ids.
pub fn settled_outputs(brokers: &str) -> Settled {
    let committed = OutputRecords::read(brokers, true);
    let (ids, all) = (committed.ids(), output_ids(brokers, false));
    if ids != all {
        let missing: Vec<&String> = all.keys().filter(|id| !ids.contains_key(*id)).take(5).collect();
        panic!(
            "{TANSU_OUTPUT_STALL}: {} output ids read committed, {} uncommitted (missing e.g. {missing:?})",
            ids.len(),
            all.len()
        );
    }
    Settled { outputs: committed.into_outputs(), ids }
}

/// What [`settled_outputs`] read: the outputs, and how often each output id occurs.
pub struct Settled {
    pub outputs: Outputs,
    pub ids: BTreeMap<String, usize>,
}

/// How many fresh brokers [`retried_on_broker_stall`] gives a scenario. One retry was not
/// enough: in the CI run of session 25's submission both attempts of the crash scenario
/// failed, the first on a changelog stall; what stopped the second was cut from CI's output
/// by the first's long message, printed twice (now one line).
pub const STALL_ATTEMPTS: usize = 4;

/// Runs `scenario` on a fresh broker; while it fails because the broker stopped a partition's
/// last stable offset for good ([`TANSU_STALL`] in a changelog, [`TANSU_OUTPUT_STALL`] in an
/// output topic), runs it again on another fresh broker, up to [`STALL_ATTEMPTS`] runs in all.
/// Any other failure fails the test at once, and so does a stall in the last attempt. A
/// stalled attempt is reported in one line (the panic hook has already printed its message),
/// so a later attempt's failure stays within what CI shows.
pub fn retried_on_broker_stall<T>(scenario: impl Fn() -> T) -> T {
    let mut attempt = 1;
    loop {
        let panic = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(&scenario)) {
            Ok(value) => return value,
            Err(panic) => panic,
        };
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let stall = message.lines().find(|l| l.contains(TANSU_STALL) || l.contains(TANSU_OUTPUT_STALL));
        match stall {
            Some(line) if attempt < STALL_ATTEMPTS => {
                let line: String = line.chars().take(400).collect();
                eprintln!(
                    "attempt {attempt} of {STALL_ATTEMPTS}: the broker stalled a partition for good; \
                     running the scenario again on a fresh broker. The stall: {line}"
                );
                attempt += 1;
            }
            _ => std::panic::resume_unwind(panic),
        }
    }
}

/// [`crash_at`] for each `(point, n)` of `at`, each run made by `processor`; the logs go
/// into `logs`. A run whose hook did not fire is killed and the point tried again, up to three
/// times. Twice (sessions 14 and 16, the transactional tansu build) a restarted processor
/// could not open one of its four shards within 60 s. It then hung instead of exiting, a bug
/// fixed in session 17 (README → Tests against real brokers), so it never reached the commit
/// to crash in. The kill is a crash like any other; the outputs are still checked whole.
pub fn crash_repeatedly(
    processor: impl Fn() -> Command,
    logs: &Path,
    at: &[(CrashPoint, u64)],
) -> Vec<Crash> {
    const ATTEMPTS: usize = 3;
    at.iter()
        .enumerate()
        .map(|(i, &(point, n))| {
            let mut why = String::new();
            for attempt in 0..ATTEMPTS {
                let log = logs.join(format!("crash-{i}-{attempt}.log"));
                match crash_at(&mut processor(), point, n, &log) {
                    Ok(crash) => return crash,
                    // A changelog partition the broker will never let `read_committed` past
                    // (tansu main, see `TANSU_STALL`): restarting cannot help.
                    Err(e) if e.contains(TANSU_STALL) => panic!("{e}"),
                    Err(e) => {
                        eprintln!("crash {i} attempt {attempt} did not crash (retrying): {e}");
                        why = e;
                    }
                }
            }
            panic!("{why}")
        })
        .collect()
}

/// Asserts that every output of each commit that crashed once its marker was acknowledged
/// (points `Marker` and `Stored`: the commit is in the changelog, so it is never redone) is in
/// the output topics exactly once. A commit that crashed at `Queued` may be redone with other
/// outputs under the same ids, so only the comparison with an uninterrupted run covers it.
/// `ids`: how often each output id occurs in the output topics ([`output_ids`]).
pub fn assert_crashed_outputs_once(ids: &BTreeMap<String, usize>, crashes: &[Crash]) {
    for c in crashes.iter().filter(|c| c.point != CrashPoint::Queued) {
        assert!(c.outputs > 0);
        for i in 0..c.outputs {
            let id = format!("{}:{}:{i}", c.shard, c.commit);
            assert_eq!(ids.get(&id), Some(&1), "output {id} of the crashed commit {c:?}");
        }
    }
}

/// How many times each output id (the `shopscore.id` header, `shard:commit:index`) occurs in
/// the four output topics.
pub fn output_ids(brokers: &str, read_committed: bool) -> BTreeMap<String, usize> {
    OutputRecords::read(brokers, read_committed).ids()
}

/// Every record of the four output topics ([`OUTPUTS`]), by topic, each read once.
pub struct OutputRecords(BTreeMap<&'static str, Vec<Rec>>);

impl OutputRecords {
    pub fn read(brokers: &str, read_committed: bool) -> OutputRecords {
        OutputRecords(
            OUTPUTS.into_iter().map(|topic| (topic, read_all(brokers, topic, read_committed))).collect(),
        )
    }

    /// How many times each output id (the `shopscore.id` header) occurs.
    pub fn ids(&self) -> BTreeMap<String, usize> {
        let mut ids = BTreeMap::new();
        for (topic, recs) in &self.0 {
            for r in recs {
                let id = r.header(ID_HEADER).unwrap_or_else(|| panic!("a record of {topic} without an id"));
                *ids.entry(id).or_default() += 1;
            }
        }
        ids
    }

    pub fn into_outputs(mut self) -> Outputs {
        let mut take = |topic: &str| self.0.remove(topic).unwrap_or_default();
        outputs_of(take("compensations"), take("dead-letters"), &take("shop-metrics"))
    }
}

/// Runs `cmd --until-idle` to completion (at most 3 minutes).
pub fn run_until_idle(cmd: &mut Command) {
    run_until_idle_within(cmd, Duration::from_secs(180));
}

/// Everything a run left in the output topics, in comparable form (`read_committed`: only
/// committed transactions, as downstream consumers read them).
#[derive(Debug, PartialEq)]
pub struct Outputs {
    /// Compensation payloads, sorted (duplicates would show twice).
    pub compensations: Vec<String>,
    /// Dead-letter (source offset header, payload), sorted.
    pub dead_letters: Vec<(String, String, String, Vec<u8>)>,
    pub snapshots: BTreeMap<String, serde_json::Value>,
}

pub fn outputs(brokers: &str, read_committed: bool) -> Outputs {
    outputs_prefixed(brokers, "", read_committed)
}

/// [`outputs`] of the default output topics with `prefix` in front of their names.
pub fn outputs_prefixed(brokers: &str, prefix: &str, read_committed: bool) -> Outputs {
    let read = |name: &str| read_all(brokers, &format!("{prefix}{name}"), read_committed);
    outputs_of(read("compensations"), read("dead-letters"), &read("shop-metrics"))
}

/// [`Outputs`] of the records read from the compensation, dead-letter and snapshot topics.
fn outputs_of(compensations: Vec<Rec>, dead_letters: Vec<Rec>, snapshots: &[Rec]) -> Outputs {
    let mut compensations: Vec<String> =
        compensations.into_iter().map(|r| String::from_utf8(r.payload).unwrap()).collect();
    compensations.sort();
    Outputs {
        compensations,
        dead_letters: dead_letters_of(dead_letters),
        snapshots: final_snapshots(snapshots),
    }
}

/// `rec` with its protobuf payload of output `kind` replaced by its JSON form (keys sorted);
/// panics when the payload is JSON or not a protobuf `kind` record.
pub fn decode_protobuf(kind: shopscore::output::OutputKind, rec: Rec) -> Rec {
    assert!(
        serde_json::from_slice::<serde_json::Value>(&rec.payload).is_err(),
        "a JSON payload where protobuf was configured: {}",
        String::from_utf8_lossy(&rec.payload)
    );
    let value = shopscore::output::proto::to_json_value(kind, &rec.payload)
        .unwrap_or_else(|e| panic!("{kind:?} record at offset {}: {e}", rec.offset));
    Rec { payload: serde_json::to_vec(&value).unwrap(), ..rec }
}

/// JSON text with its object keys sorted, so that two encodings of one record compare equal.
pub fn canonical_json(text: &str) -> String {
    serde_json::to_string(&serde_json::from_str::<serde_json::Value>(text).unwrap()).unwrap()
}

/// [`outputs_prefixed`] of topics whose snapshots and compensations are protobuf, decoded into
/// their JSON form; compensations in [`canonical_json`] form.
pub fn outputs_protobuf_prefixed(brokers: &str, prefix: &str, read_committed: bool) -> Outputs {
    use shopscore::output::OutputKind;
    let topic = |name: &str| format!("{prefix}{name}");
    let mut compensations: Vec<String> = read_all(brokers, &topic("compensations"), read_committed)
        .into_iter()
        .map(|r| String::from_utf8(decode_protobuf(OutputKind::Compensation, r).payload).unwrap())
        .collect();
    compensations.sort();
    let snapshots: Vec<Rec> = read_all(brokers, &topic("shop-metrics"), read_committed)
        .into_iter()
        .map(|r| decode_protobuf(OutputKind::Snapshot, r))
        .collect();
    Outputs {
        compensations,
        dead_letters: dead_letters_of(read_all(brokers, &topic("dead-letters"), read_committed)),
        snapshots: final_snapshots(&snapshots),
    }
}

/// `out` with its compensations in [`canonical_json`] form, sorted.
pub fn canonical(out: &Outputs) -> Outputs {
    let mut compensations: Vec<String> = out.compensations.iter().map(|c| canonical_json(c)).collect();
    compensations.sort();
    Outputs { compensations, dead_letters: out.dead_letters.clone(), snapshots: out.snapshots.clone() }
}

/// Dead-letter records as (source topic, partition, offset, payload), sorted.
fn dead_letters_of(recs: Vec<Rec>) -> Vec<(String, String, String, Vec<u8>)> {
    let mut dead_letters: Vec<_> = recs
        .into_iter()
        .map(|r| {
            (
                r.header("shopscore.source.topic").unwrap(),
                r.header("shopscore.source.partition").unwrap(),
                r.header("shopscore.source.offset").unwrap(),
                r.payload,
            )
        })
        .collect();
    dead_letters.sort();
    dead_letters
}

/// [`outputs`] of a file-mode style output directory (a replay's `--output`).
pub fn outputs_in_dir(dir: &Path) -> Outputs {
    let lines = |f: &str| -> Vec<String> {
        std::fs::read_to_string(dir.join(f)).unwrap().lines().map(str::to_owned).collect()
    };
    let mut compensations = lines("compensations.jsonl");
    compensations.sort();
    let mut dead_letters: Vec<_> = lines("dead_letters.jsonl")
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let s = &v["source"];
            (
                s["topic"].as_str().unwrap().to_owned(),
                s["partition"].to_string(),
                s["offset"].to_string(),
                match v["raw"].as_str() {
                    Some(raw) => raw.as_bytes().to_vec(),
                    None => {
                        use base64::Engine;
                        let b64 = v["raw_base64"].as_str().expect("raw or raw_base64");
                        base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
                    }
                },
            )
        })
        .collect();
    dead_letters.sort();
    let snapshots: Vec<Rec> = lines("snapshots.jsonl")
        .into_iter()
        .map(|l| Rec {
            partition: 0,
            offset: 0,
            key: None,
            payload: l.into_bytes(),
            tombstone: false,
            headers: Vec::new(),
        })
        .collect();
    Outputs { compensations, dead_letters, snapshots: final_snapshots(&snapshots) }
}

/// Each compensation and each dead letter at most once in the topics.
pub fn assert_no_duplicates(got: &Outputs) {
    let mut seen = BTreeSet::new();
    for c in &got.compensations {
        let v: serde_json::Value = serde_json::from_str(c).unwrap();
        assert!(seen.insert(v["compensation_id"].to_string()), "compensation emitted twice: {c}");
    }
    let mut seen = BTreeSet::new();
    for d in &got.dead_letters {
        assert!(seen.insert((&d.0, &d.1, &d.2)), "dead letter emitted twice: {d:?}");
    }
}

pub fn assert_same(got: &Outputs, want: &Outputs) {
    assert_no_duplicates(got);
    let g: BTreeSet<&String> = got.compensations.iter().collect();
    let w: BTreeSet<&String> = want.compensations.iter().collect();
    for c in g.difference(&w).take(3) {
        eprintln!("only in this run: {c}");
    }
    for c in w.difference(&g).take(3) {
        eprintln!("only in the reference: {c}");
    }
    assert_eq!(got.compensations.len(), want.compensations.len(), "compensation count");
    assert_eq!(got.compensations, want.compensations);
    assert_eq!(got.dead_letters, want.dead_letters);
    assert_eq!(got.snapshots.len(), want.snapshots.len());
    for (shop, v) in &want.snapshots {
        assert_eq!(got.snapshots.get(shop), Some(v), "final snapshot of {shop}");
    }
}

/// A minimal HTTP/1.1 GET: (status, body).
pub fn http_get(addr: impl std::fmt::Display, path: &str) -> (u16, String) {
    try_http_get(&addr, path).unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"))
}

/// [`http_get`], with the failure to connect or read as an error instead of a panic (for a
/// process that may exit at any moment).
pub fn try_http_get(addr: impl std::fmt::Display, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok());
    let status = status.ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:?}")))?;
    Ok((status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()))
}

/// The value of the sample `series` (name with labels) in a Prometheus text body.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
