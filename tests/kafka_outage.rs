//! Kafka mode through a network cut. tansu 0.6.0 runs behind a plaintext `support::Proxy`
//! and advertises it, so every connection of shopscore's goes through the proxy; mid-stream
//! the proxy closes every connection and refuses new ones for longer than the group's session
//! timeout, then lets them through again. Nothing the run emits may be lost or repeated.

mod support;

use std::process::Stdio;
use std::time::Duration;
use support::*;

const PARTITIONS: i32 = 3;

/// Longer than the group session (6 s in the tests' processors), shorter than the 60 s for
/// which a shard's requests wait for the broker (`shopscore::kafka::retry::OUTAGE_LIMIT`).
const CUT: Duration = Duration::from_secs(12);

/// 40 000 events; 300 ms after the four shards are acquired (in one run, ~24 000 records had
/// been read when the reads stopped), the network is cut for [`CUT`]. The run must ride it out
/// and finish (exit 0) with the outputs of an uninterrupted run on another broker: every
/// compensation once, byte for byte, every dead letter, every shop's final snapshot. Until
/// session 27 it stopped instead, ~10 s into the cut: a commit's request for the output
/// partitions' end offsets timed out.
#[test]
fn a_network_cut_mid_stream_loses_and_repeats_nothing() {
    let lines = gen_lines(40_000, 40, 40, 37);
    let dir = tempfile::tempdir().unwrap();

    let want = reference_outputs(&lines, PARTITIONS);

    let upstream = free_port();
    let proxy = Proxy::plain(upstream);
    let t = Tansu::start_advertising_on(upstream, proxy.port);
    setup_inputs(&t.brokers, &lines, PARTITIONS);
    let mut cmd = processor(&t.brokers, "g", &dir.path().join("data"), false);
    cmd.arg("--until-idle").stderr(Stdio::piped());
    let mut run = Proc::spawn(cmd);
    for _ in 0..4 {
        run.wait_line("\"shard acquired\"");
    }
    std::thread::sleep(Duration::from_millis(300));
    proxy.cut();
    std::thread::sleep(CUT);
    proxy.restore();
    let (status, log) = run.wait(Duration::from_secs(240));
    assert!(status.success(), "exit {status:?}; log tail:\n{}", tail(&log, 40));
    // The cut reached the run: librdkafka lost its connections.
    assert!(log.contains("AllBrokersDown"), "the run never lost the broker:\n{}", tail(&log, 40));
    let got = outputs(&t.brokers, false);
    assert_same(&got, &want);
}

/// A shard crashes right after its commit's outputs are in their topics (the crash hook at
/// `sent`), so its next owner restores an outbox whose records are all there. That owner scans
/// the output topics while the broker holds back each answer for 2 s. It must find every
/// record and send none again.
///
/// Until session 28 it did not: the scan ended on 1.5 s of quiet alone, found nothing, and
/// sent the whole outbox again ("missing":10 of 10 records in one run, a dead letter twice in
/// its topic). The scan now ends on the ends fetch answers report (`kafka::scan_end`).
#[test]
fn a_slow_broker_while_a_shard_scans_its_outbox_gets_nothing_twice() {
    slow_outbox_scan(CrashPoint::Sent, 41);
}

/// The other side of the same scan: a shard crashes after its commit is in the changelog but
/// before any of its outputs is sent (the hook at `marker`). With the broker as slow, the
/// scan must still end, find none of the records, and send each once: the run's outputs
/// equal an uninterrupted run's.
#[test]
fn a_slow_broker_while_a_shard_scans_its_outbox_gets_the_unsent_outputs_once() {
    slow_outbox_scan(CrashPoint::Marker, 43);
}

/// 40 000 events; a shard is crashed at `point` of its third commit, restarted, and from its
/// restore on the proxy holds back each broker answer for 2 s until its outbox scan has
/// reported. The scan must report every record of the outbox as there (`sent`) or as missing
/// (`marker`), and the finished run's outputs must equal an uninterrupted run's.
fn slow_outbox_scan(point: CrashPoint, seed: u64) {
    let lines = gen_lines(40_000, 40, 40, seed);
    let want = reference_outputs(&lines, PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    let upstream = free_port();
    let proxy = Proxy::plain(upstream);
    let t = Tansu::start_advertising_on(upstream, proxy.port);
    setup_inputs(&t.brokers, &lines, PARTITIONS);
    let data = dir.path().join("data");
    let crash =
        crash_at(&mut processor(&t.brokers, "g", &data, false), point, 3, &dir.path().join("crash.log"))
            .unwrap();

    let mut cmd = processor(&t.brokers, "g", &data, false);
    cmd.arg("--until-idle").stderr(Stdio::piped());
    let mut run = Proc::spawn(cmd);
    // Slow from the crashed shard's restore on, so its outbox scan meets the slow broker.
    let restored = format!("\"message\":\"shard state restored\",\"shard\":{}", crash.shard);
    while !run.wait_line("shard state restored").contains(&restored) {}
    proxy.slow(Duration::from_secs(2));
    let scanned = format!("\"shard\":{},\"commit\":{}", crash.shard, crash.commit);
    let line = loop {
        let line = run.wait_line("re-sending the unsent outputs");
        if line.contains(&scanned) {
            break line;
        }
    };
    proxy.slow(Duration::ZERO);
    let missing = if point == CrashPoint::Sent { 0 } else { crash.outputs };
    let counts = format!("\"records\":{},\"missing\":{missing},", crash.outputs);
    assert!(crash.outputs > 0 && line.contains(&counts), "expected {counts} in {line}");
    let (status, log) = run.wait(Duration::from_secs(240));
    assert!(status.success(), "exit {status:?}; log tail:\n{}", tail(&log, 40));
    assert_same(&outputs(&t.brokers, false), &want);
}
