//! Kafka mode over TLS, end to end. Most production clusters require TLS; no broker that can
//! run here speaks it, so tansu 0.6.0 runs behind a TLS-terminating proxy
//! (`support::Proxy`) and advertises the proxy's address: every connection shopscore
//! makes — metadata, the group, the input readers, the changelog, the output producers — and
//! every connection of the tests' own clients is TLS, with the broker's certificate checked
//! against a CA made for the test (`ssl.ca.location`) and its host name against the
//! certificate (librdkafka's default `ssl.endpoint.identification.algorithm = https`).

mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

const PARTITIONS: i32 = 3;

/// A tansu broker that clients reach only through TLS, with the proxy and the files of its
/// CA and of a client certificate.
struct TlsBroker {
    tansu: Tansu,
    proxy: Proxy,
    files: PkiFiles,
}

impl TlsBroker {
    /// With `client_certificates`, the broker requires them (mutual TLS), and the tests' own
    /// clients present theirs.
    fn start(pki: &Pki, dir: &std::path::Path, client_certificates: bool) -> TlsBroker {
        let upstream = free_port();
        let proxy = Proxy::tls(pki, upstream, client_certificates);
        let tansu = Tansu::start_advertising_on(upstream, proxy.port);
        let files = pki.write(dir);
        let mut settings = vec![("security.protocol", "SSL"), ("ssl.ca.location", files.ca.as_str())];
        if client_certificates {
            settings.push(("ssl.certificate.location", &files.client_cert));
            settings.push(("ssl.key.location", &files.client_key));
        }
        set_client_settings(&tansu.brokers, &settings);
        TlsBroker { tansu, proxy, files }
    }
}

/// shopscore's TLS settings, trusting the CA in the file `ca`.
fn tls_env(ca: &str) -> [(&'static str, &str); 2] {
    [
        ("SHOPSCORE__KAFKA__CLIENT__SECURITY_PROTOCOL", "SSL"),
        ("SHOPSCORE__KAFKA__CLIENT__SSL_CA_LOCATION", ca),
    ]
}

/// `shopscore run` for `brokers` over TLS, trusting the CA in the file `ca`.
fn tls_processor(brokers: &str, ca: &str, data: &std::path::Path) -> Command {
    let mut cmd = processor(brokers, "g", data, false);
    cmd.envs(tls_env(ca));
    cmd
}

/// The same input gives the same outputs over TLS as in plaintext: every compensation once,
/// every dead letter, every shop's final snapshot; and so does a replay over TLS.
#[test]
fn kafka_mode_over_tls_gives_the_outputs_of_a_plaintext_run() {
    let lines = gen_lines(6_000, 20, 10, 29);
    let dir = tempfile::tempdir().unwrap();

    let want = reference_outputs(&lines, PARTITIONS);

    let pki = Pki::new("shopscore test CA");
    let b = TlsBroker::start(&pki, dir.path(), false);
    setup_inputs(&b.tansu.brokers, &lines, PARTITIONS);
    let before = b.proxy.handshakes();
    run_until_idle(&mut tls_processor(&b.tansu.brokers, &b.files.ca, &dir.path().join("tls")));
    // shopscore's own clients connected through TLS: at least its metadata check, the group
    // member, the input reader, and a changelog reader and producer per shard.
    let by_shopscore = b.proxy.handshakes() - before;
    assert!(by_shopscore >= 4, "shopscore made {by_shopscore} TLS connections");
    let got = outputs(&b.tansu.brokers, false);
    assert_same(&got, &want);

    // `replay` over TLS (its own readers: the input ranges, the compensations already in the
    // output topic) reproduces them into a directory.
    let replayed = dir.path().join("replayed");
    let out = Command::new(env!("CARGO_BIN_EXE_shopscore"))
        .args(["replay", "--brokers", &b.tansu.brokers, "--group", "g", "--from", "earliest", "--output"])
        .arg(&replayed)
        .envs(tls_env(&b.files.ca))
        .env("SHOPSCORE__KAFKA__TRANSACTIONAL", "false")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", tail(&String::from_utf8_lossy(&out.stderr), 20));
    assert_same(&outputs_in_dir(&replayed), &want);
}

/// A broker certificate the configured CA did not sign stops startup within the metadata
/// timeout, with librdkafka's reason and the message that names the brokers setting.
#[test]
fn a_broker_certificate_from_another_ca_stops_startup_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("shopscore test CA");
    let b = TlsBroker::start(&pki, dir.path(), false);
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let stranger = Pki::new("another CA").write(&other).ca;
    let started = Instant::now();
    let out = tls_processor(&b.tansu.brokers, &stranger, &dir.path().join("data"))
        .arg("--until-idle")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    assert!(err.contains("certificate verify failed"), "librdkafka's reason is missing:\n{}", tail(&err, 20));
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("cannot reach the Kafka brokers") && last.contains("SHOPSCORE__KAFKA__BROKERS"),
        "{last}"
    );
    assert_eq!(b.proxy.handshakes(), 0, "no client may get past the handshake");
}

/// A broker that requires client certificates (mutual TLS): shopscore presents the one that
/// `ssl.certificate.location` and `ssl.key.location` name, and runs to the end; without one,
/// no connection gets through and startup stops.
#[test]
fn a_broker_that_requires_client_certificates_gets_shopscores() {
    let lines = gen_lines(3_000, 10, 10, 31);
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("shopscore test CA");
    let b = TlsBroker::start(&pki, dir.path(), true);
    setup_inputs(&b.tansu.brokers, &lines, PARTITIONS);

    let before = b.proxy.handshakes();
    let out = tls_processor(&b.tansu.brokers, &b.files.ca, &dir.path().join("without"))
        .arg("--until-idle")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("alert certificate required"),
        "librdkafka's reason is missing:\n{}",
        tail(&err, 20)
    );
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains("cannot reach the Kafka brokers"), "{last}");
    assert_eq!(b.proxy.handshakes(), before, "a client without a certificate got through");

    let mut cmd = tls_processor(&b.tansu.brokers, &b.files.ca, &dir.path().join("with"));
    cmd.env("SHOPSCORE__KAFKA__CLIENT__SSL_CERTIFICATE_LOCATION", &b.files.client_cert)
        .env("SHOPSCORE__KAFKA__CLIENT__SSL_KEY_LOCATION", &b.files.client_key);
    run_until_idle(&mut cmd);
    assert!(
        b.proxy.handshakes() >= before + 4,
        "shopscore made {} TLS connections",
        b.proxy.handshakes() - before
    );
    let got = outputs(&b.tansu.brokers, false);
    assert!(!got.compensations.is_empty() && !got.snapshots.is_empty());
    assert_no_duplicates(&got);
}
