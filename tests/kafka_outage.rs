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
/// been read when the reads stopped), the
/// network is cut for [`CUT`]. The run must ride it out and finish (exit 0) with the outputs of
/// an uninterrupted run on another broker: every compensation once, byte for byte, every
/// dead letter, every shop's final snapshot. Until session 27 it stopped instead, ~10 s into
/// the cut: a commit's request for the output partitions' end offsets timed out.
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
