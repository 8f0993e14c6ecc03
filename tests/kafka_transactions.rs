//! Kafka mode with transactions (`kafka.transactional = true`, the default) on librdkafka's
//! mock cluster — an in-process Kafka-protocol broker with a transaction coordinator, reached
//! over TCP by the `shopscore` processes this test starts and kills. Outputs are read with
//! `read_committed`, as downstream consumers must.
//!
//! The mock accepts the transactional API but does not isolate transactions (pinned by
//! `mock_cluster_has_no_transaction_isolation`): records of open and aborted transactions are
//! visible to `read_committed` readers, shopscore's restorer included. So a kill inside a
//! transaction is not rolled back here as on Kafka. What the kill loop can still check on the
//! mock is that nothing is emitted twice (a shard queues its outputs after its changelog
//! records and commit marker, so a killed transaction's outputs become visible without its
//! marker only if librdkafka delivers an output batch before the changelog's last one); exactly
//! once against an uninterrupted run needs a broker with transactions (the ignored test).

mod support;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use support::*;

const PARTITIONS: i32 = 3;
const SHARDS: i32 = 4;

fn cluster(group: &str, lines: &[String]) -> MockCluster<'static, DefaultProducerContext> {
    let mock = MockCluster::new(1).expect("mock cluster");
    for t in INPUTS {
        mock.create_topic(t, PARTITIONS, 1).unwrap();
    }
    for t in OUTPUTS {
        mock.create_topic(t, SHARDS, 1).unwrap();
    }
    mock.create_topic(&format!("{group}-changelog"), SHARDS, 1).unwrap();
    produce_lines(&mock.bootstrap_servers(), lines, PARTITIONS);
    mock
}

#[test]
fn transactional_kill_9_loop_commits_each_output_at_most_once() {
    let got = outputs_after_a_kill_loop(&gen_lines(30_000, 30, 30, 37));
    assert!(!got.compensations.is_empty());
    assert_no_duplicates(&got);
}

/// Exactly once across SIGKILLs, compared with an uninterrupted run. **Ignored: the mock
/// cluster cannot run it** — it has no transaction isolation
/// ([`mock_cluster_has_no_transaction_isolation`]). A SIGKILL inside a shard's transaction
/// after its changelog records and commit marker reached the broker, but before all its outputs
/// did, leaves that transaction neither committed nor aborted, and visible: the next owner's
/// `read_committed` restore applies it (state and input positions of the unfinished commit) and
/// its missing outputs are never produced — compensations lost, none duplicated, which is what
/// this test saw fail now and then. Reproduced deterministically with a crash injected right
/// after the marker's delivery (a temporary diagnostic, not kept): the restart logged
/// `last_commit` = the crashed transaction's number, nothing was ever emitted under that
/// commit's output ids, and 48 compensations, all of that shard's shops, were missing; none was
/// extra or different. On a broker with
/// transactions the next owner's `init_transactions` aborts that transaction, `read_committed`
/// hides it, and the commit is redone from the previous one. Run it against such a broker
/// (Kafka, Redpanda) when one is available; the same comparison on tansu (outbox protocol,
/// no transactions) runs in `kafka_tansu`.
#[test]
#[ignore = "needs a broker with transaction isolation: librdkafka's mock cluster shows open and aborted transactions to read_committed consumers"]
fn transactional_kill_9_loop_is_exactly_once() {
    let lines = gen_lines(30_000, 30, 30, 31);
    let reference = reference(&lines, false);
    assert_same(&outputs_after_a_kill_loop(&lines), &reference);
}

/// The outputs (`read_committed`) of a transactional run on `lines` (without the outbox) that
/// was SIGKILLed 5 times mid-stream and then run to the end, on a mock cluster of its own.
fn outputs_after_a_kill_loop(lines: &[String]) -> Outputs {
    let mock = cluster("g", lines);
    let brokers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    kill_repeatedly(|| txn_processor(&brokers, "g", &data, false), &data, 5, 433);
    run_until_idle(&mut txn_processor(&brokers, "g", &data, false));
    outputs(&brokers, true)
}

/// The outputs of one uninterrupted transactional run on `lines`, on a mock cluster of its own.
fn reference(lines: &[String], outbox: bool) -> Outputs {
    let mock = cluster("ref", lines);
    let dir = tempfile::tempdir().unwrap();
    run_until_idle(&mut txn_processor(&mock.bootstrap_servers(), "ref", &dir.path().join("d"), outbox));
    let reference = outputs(&mock.bootstrap_servers(), true);
    assert!(!reference.compensations.is_empty());
    reference
}

/// Exactly once with transactions on the mock cluster, which does not isolate them, thanks to
/// the transactional outbox. The crash hook aborts the processor five times: three times exactly
/// where the ignored test above loses outputs (`marker`: a transaction whose changelog marker
/// the broker has but none of whose outputs it has), once with the changelog only queued and
/// once after the commit; then random SIGKILLs follow, and a last run to the end. Every output
/// of each commit that crashed after its marker must appear exactly once (re-sent by the next
/// owner from the outbox: that commit is never redone, as its marker is visible), and the
/// outputs must equal an uninterrupted run's.
#[test]
fn transactional_outbox_is_exactly_once_across_crashes_without_isolation() {
    let lines = gen_lines(30_000, 30, 30, 31);
    let reference = reference(&lines, true);
    let mock = cluster("g", &lines);
    let brokers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    use CrashPoint::{Marker, Queued, Stored};
    let at = [(Marker, 3), (Queued, 4), (Marker, 5), (Stored, 2), (Marker, 2)];
    let crashes = crash_repeatedly(|| txn_processor(&brokers, "g", &data, true), dir.path(), &at);
    kill_repeatedly(|| txn_processor(&brokers, "g", &data, true), &data, 3, 433);
    run_until_idle(&mut txn_processor(&brokers, "g", &data, true));
    let got = OutputRecords::read(&brokers, true);
    assert_crashed_outputs_once(&got.ids(), &crashes);
    assert_same(&got.into_outputs(), &reference);
}

/// Pins what the mock cluster does with transactions (librdkafka 2.12.1, `rdkafka_mock_handlers.c`:
/// `EndTxn` only checks the producer id, writing no commit or abort marker; `Fetch` reads the
/// isolation level but ignores it, reports the high watermark as the last stable offset and
/// never lists aborted transactions). So on the mock a `read_committed` consumer sees aborted
/// and still-open transactions' records, and offsets stay contiguous (no control records).
/// Kafka would return only `committed`, at offset 2. If this starts failing, the mock isolates
/// transactions: enable `transactional_kill_9_loop_is_exactly_once`.
#[test]
fn mock_cluster_has_no_transaction_isolation() {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("t", 1, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let _open = three_transactions(&brokers, "t");
    let seen = read_payloads(&brokers, "t", true);
    let expected: Vec<(i64, String)> =
        [(0, "aborted"), (1, "committed"), (2, "open")].map(|(o, p)| (o, p.to_owned())).to_vec();
    assert_eq!(
        seen, expected,
        "the mock cluster's transactions changed: if it now isolates them (read_committed sees only \
         `committed`), enable transactional_kill_9_loop_is_exactly_once"
    );
}
