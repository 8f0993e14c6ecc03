//! The deployment files in `deploy/` agree with the real program. Docker cannot run here, so
//! this parses every YAML file and the Dockerfile and checks what would break a deployment:
//! the ConfigMap's `shopscore.toml` loads through `shopscore::config` exactly as the binary
//! loads it (with the container's environment), the container port is `http.addr`'s port,
//! probes hit `/healthz` and `/readyz`, the state volume is mounted where `--data-dir` and
//! `file.data_dir` point, and every `SHOPSCORE__…` variable names a real key.

#![allow(clippy::result_large_err)] // figment::Jail closures

use serde::Deserialize;
use serde_yaml_ng::Value;
use shopscore::config::{self, Config};
use std::path::{Path, PathBuf};

const STATE_DIR: &str = "/var/lib/shopscore";
const CONFIG_FILE: &str = "/etc/shopscore/shopscore.toml";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every document of every YAML file under `deploy/`, with its file name.
fn yaml_documents() -> Vec<(String, Value)> {
    let mut files = Vec::new();
    let mut dirs = vec![deploy_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 6, "compose.yaml and the k8s manifests: {files:?}");
    let mut docs = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.strip_prefix(deploy_dir()).unwrap().display().to_string();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"));
            if !v.is_null() {
                docs.push((name.clone(), v));
            }
        }
    }
    docs
}

fn kind<'a>(docs: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|(_, v)| v["kind"].as_str() == Some(kind)).map(|(_, v)| v).collect()
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

/// Loads `toml` as the binary does (`--config FILE`) with exactly `env` set.
fn load_with(toml: &str, env: &[(String, String)]) -> Config {
    let mut out = None;
    figment::Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file("shopscore.toml", toml)?;
        for (k, v) in env {
            jail.set_env(k, v);
        }
        out = Some(config::load(Some(Path::new("shopscore.toml"))).map_err(|e| e.to_string())?);
        Ok(())
    });
    out.unwrap()
}

/// `(name, value)` of a container's `env`; values from a Secret get a placeholder.
fn container_env(container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_sequence()
        .map(|seq| {
            seq.iter()
                .map(|e| {
                    let value = e["value"].as_str().map(str::to_owned).unwrap_or_else(|| {
                        assert!(e["valueFrom"].is_mapping(), "env {:?} has no value", e["name"]);
                        "from-secret".to_owned()
                    });
                    (str_of(&e["name"]).to_owned(), value)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn assert_shopscore_env(env: &[(String, String)], origin: &str) {
    for (name, _) in env {
        assert!(name.starts_with(config::ENV_PREFIX), "{origin}: env {name} is not a SHOPSCORE__ key");
    }
}

/// The value after `flag` in an argument list.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence().map(|s| s.iter().map(|x| str_of(x).to_owned()).collect()).unwrap_or_default()
}

/// A Kubernetes memory quantity in MiB (`Mi` or `Gi`).
fn mib(q: &Value) -> u64 {
    let q = str_of(q);
    let (n, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("memory quantity {q:?}"));
    n * match unit {
        "Mi" => 1,
        "Gi" => 1024,
        _ => panic!("memory quantity {q:?}: use Mi or Gi"),
    }
}

/// The container's memory limit covers RocksDB's budget as configured, its memtables'
/// overshoot and the rest of the process (deploy/README.md → Memory).
fn assert_memory_fits(container: &Value, cfg: &Config) {
    let resources = &container["resources"];
    let (request, limit) = (mib(&resources["requests"]["memory"]), mib(&resources["limits"]["memory"]));
    let needed = cfg.state.block_cache_mib + cfg.state.memtables_mib * 14 / 10 + 800;
    assert!(
        limit >= needed,
        "memory limit {limit} MiB below block cache + 1.4 x memtables + 800 = {needed} MiB"
    );
    assert!(request <= limit, "memory request {request} MiB above the limit {limit} MiB");
}

/// Where `container` mounts the pod volume named `name`.
fn mount_path(container: &Value, name: &str) -> Option<String> {
    container["volumeMounts"]
        .as_sequence()?
        .iter()
        .find(|m| m["name"].as_str() == Some(name))
        .map(|m| str_of(&m["mountPath"]).to_owned())
}

#[test]
fn kubernetes_manifests_agree_with_the_config() {
    let docs = yaml_documents();
    for (name, v) in &docs {
        if name.starts_with("k8s") {
            assert!(v["apiVersion"].is_string() && v["kind"].is_string(), "{name}: apiVersion and kind");
            assert!(v["metadata"]["name"].is_string(), "{name}: metadata.name");
        }
    }
    let cm = kind(&docs, "ConfigMap");
    assert_eq!(cm.len(), 1);
    let toml = str_of(&cm[0]["data"]["shopscore.toml"]);
    let sts = kind(&docs, "StatefulSet");
    assert_eq!(sts.len(), 1);
    let spec = &sts[0]["spec"];
    let pod = &spec["template"]["spec"];
    let c = &pod["containers"][0];
    let env = container_env(c);
    assert_shopscore_env(&env, "statefulset");
    let cfg = load_with(toml, &env);

    // Kafka mode, so the HTTP endpoint is served, on all interfaces, at the container port.
    assert!(cfg.kafka_mode(), "the ConfigMap configures brokers");
    assert!(cfg.http.enabled.serves(true));
    assert!(cfg.http.addr.ip().is_unspecified(), "probes reach the pod IP: {}", cfg.http.addr);
    let port = cfg.http.addr.port();
    let ports = c["ports"].as_sequence().unwrap();
    let http = ports.iter().find(|p| p["name"].as_str() == Some("http")).expect("a port named http");
    assert_eq!(http["containerPort"].as_u64(), Some(u64::from(port)));
    assert!(cfg.kafka.client.contains_key("sasl.password"), "the Secret reaches [kafka.client]");

    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert!(get["port"].as_str() == Some("http") || get["port"].as_u64() == Some(u64::from(port)));
    }

    // State: the claim template's volume is mounted where the binary keeps state.
    let args = strings(&c["args"]);
    assert_eq!(flag_value(&args, "--data-dir"), Some(STATE_DIR));
    assert_eq!(cfg.file.data_dir, Path::new(STATE_DIR));
    let claim = str_of(&spec["volumeClaimTemplates"][0]["metadata"]["name"]);
    let mount = |name: &str| mount_path(c, name);
    assert_eq!(mount(claim).as_deref(), Some(STATE_DIR));
    // The ConfigMap is mounted where the image's entrypoint reads its --config file.
    let config_volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == cm[0]["metadata"]["name"])
        .expect("a volume from the ConfigMap");
    let config_dir = mount(str_of(&config_volume["name"])).expect("the config volume is mounted");
    assert_eq!(Path::new(&config_dir).join("shopscore.toml"), Path::new(CONFIG_FILE));

    // Shutdown: the commit-on-SIGTERM budget fits in the grace period.
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        cfg.pipeline.shutdown_timeout.as_secs() < grace,
        "shutdown_timeout must be below the grace period"
    );

    assert_memory_fits(c, &cfg);

    // Services route to the named port and select the StatefulSet's pods.
    let labels = &spec["template"]["metadata"]["labels"];
    for svc in kind(&docs, "Service") {
        for (k, v) in svc["spec"]["selector"].as_mapping().unwrap() {
            assert_eq!(&labels[k.as_str().unwrap()], v, "service selector matches the pods");
        }
        for p in svc["spec"]["ports"].as_sequence().unwrap() {
            assert!(
                p["targetPort"].as_str() == Some("http") || p["targetPort"].as_u64() == Some(u64::from(port))
            );
        }
    }
    assert_eq!(spec["serviceName"], kind(&docs, "Service")[0]["metadata"]["name"]);

    // The Secret provides every key the StatefulSet reads.
    let secret = kind(&docs, "Secret");
    for e in c["env"].as_sequence().unwrap() {
        if let Some(r) = e["valueFrom"]["secretKeyRef"].as_mapping() {
            let key = r.get("key").and_then(Value::as_str).unwrap();
            assert!(secret.iter().any(|s| !s["stringData"][key].is_null()), "secret key {key}");
        }
    }
}

/// The replay Job: the binary accepts its arguments (behind the image's `--config`), it
/// reaches the ConfigMap's brokers, serves its metrics on the container port that Prometheus
/// is told to scrape, keeps its state in a volume that is new for every pod (a replay refuses
/// a used `--data-dir`, so a restarted container must not reuse one), reads the ConfigMap, and
/// is reached by no Service.
#[test]
fn replay_job_agrees_with_the_config() {
    let docs = yaml_documents();
    let cm = kind(&docs, "ConfigMap");
    let toml = str_of(&cm[0]["data"]["shopscore.toml"]);
    let jobs = kind(&docs, "Job");
    assert_eq!(jobs.len(), 1);
    let template = &jobs[0]["spec"]["template"];
    let pod = &template["spec"];
    let c = &pod["containers"][0];
    let env = container_env(c);
    assert_shopscore_env(&env, "replay job");
    let cfg = load_with(toml, &env);

    let args = strings(&c["args"]);
    assert_eq!(args.first().map(String::as_str), Some("replay"));
    let parsed = std::process::Command::new(env!("CARGO_BIN_EXE_shopscore"))
        .args(["--config", CONFIG_FILE])
        .args(&args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        parsed.status.success(),
        "the binary refuses the Job's arguments: {}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    assert_eq!(flag_value(&args, "--brokers"), Some(cfg.kafka.brokers.as_str()));

    let http: std::net::SocketAddr = flag_value(&args, "--http-addr")
        .expect("--http-addr: a replay serves metrics only when asked")
        .parse()
        .unwrap();
    assert!(http.ip().is_unspecified(), "the scraper reaches the pod IP: {http}");
    let ports = c["ports"].as_sequence().unwrap();
    let port = ports.iter().find(|p| p["name"].as_str() == Some("http")).expect("a port named http");
    assert_eq!(port["containerPort"].as_u64(), Some(u64::from(http.port())));
    let scrape = &template["metadata"]["annotations"];
    assert_eq!(scrape["prometheus.io/port"].as_str(), Some(http.port().to_string().as_str()));
    assert_eq!(scrape["prometheus.io/path"].as_str(), Some("/metrics"));

    assert_eq!(
        pod["restartPolicy"].as_str(),
        Some("Never"),
        "a restarted container would find its --data-dir used"
    );
    let data_dir =
        Path::new(flag_value(&args, "--data-dir").expect("--data-dir (the root filesystem is read-only)"));
    let volumes = pod["volumes"].as_sequence().unwrap();
    let state = volumes
        .iter()
        .filter(|v| v["emptyDir"].is_mapping())
        .filter_map(|v| mount_path(c, str_of(&v["name"])))
        .find(|m| data_dir.starts_with(m) && data_dir != Path::new(m));
    assert!(
        state.is_some(),
        "--data-dir {} inside an emptyDir mount (and not the mount itself, which exists)",
        data_dir.display()
    );
    let config_volume = volumes
        .iter()
        .find(|v| v["configMap"]["name"] == cm[0]["metadata"]["name"])
        .expect("a volume from the ConfigMap");
    let config_dir = mount_path(c, str_of(&config_volume["name"])).expect("the config volume is mounted");
    assert_eq!(Path::new(&config_dir).join("shopscore.toml"), Path::new(CONFIG_FILE));
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() > cfg.pipeline.shutdown_timeout.as_secs());
    assert_memory_fits(c, &cfg);

    let labels = &template["metadata"]["labels"];
    for svc in kind(&docs, "Service") {
        let selector = svc["spec"]["selector"].as_mapping().unwrap();
        assert!(
            selector.iter().any(|(k, v)| &labels[k.as_str().unwrap()] != v),
            "Service {:?} would route to the replay",
            svc["metadata"]["name"]
        );
    }
}

#[test]
fn compose_file_agrees_with_the_config() {
    let docs = yaml_documents();
    let compose = &docs.iter().find(|(n, _)| n == "compose.yaml").expect("deploy/compose.yaml").1;
    let services = compose["services"].as_mapping().unwrap();
    let broker = services
        .values()
        .find(|s| s["image"].as_str().is_some_and(|i| i.contains("kafka") || i.contains("redpanda")))
        .expect("a Kafka-compatible broker");
    assert!(broker["environment"]["KAFKA_PROCESS_ROLES"].as_str().unwrap().contains("controller"), "KRaft");
    let s = &compose["services"]["shopscore"];
    assert_eq!(s["build"]["dockerfile"].as_str(), Some("deploy/Dockerfile"));
    let env: Vec<(String, String)> = s["environment"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (str_of(k).to_owned(), str_of(v).to_owned()))
        .collect();
    assert_shopscore_env(&env, "compose");
    // The image's reference config file plus this environment, as the container loads it.
    let reference =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/shopscore.toml"));
    let cfg = load_with(&reference.unwrap(), &env);
    assert!(cfg.kafka_mode());
    let broker_host = cfg.kafka.brokers.split(':').next().unwrap();
    assert!(services.contains_key(broker_host), "brokers name the broker service: {}", cfg.kafka.brokers);
    assert!(cfg.http.enabled.serves(true) && cfg.http.addr.ip().is_unspecified());
    let port = cfg.http.addr.port();
    assert!(strings(&s["ports"]).iter().any(|p| p.ends_with(&format!(":{port}"))), "published http port");
    assert!(strings(&s["volumes"]).iter().any(|v| v.ends_with(&format!(":{STATE_DIR}"))));
    assert_eq!(flag_value(&strings(&s["command"]), "--data-dir"), Some(STATE_DIR));
    assert!(s["healthcheck"]["test"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|t| t.as_str().unwrap().ends_with("/readyz")));
}

#[test]
fn dockerfile_agrees_with_the_config() {
    let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    // Instructions with their continuation lines joined.
    let mut instructions: Vec<String> = Vec::new();
    let mut pending = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        pending.push_str(line.trim_end_matches('\\'));
        pending.push(' ');
        if !line.ends_with('\\') {
            instructions.push(std::mem::take(&mut pending).trim().to_owned());
        }
    }
    let args = |op: &str| -> Vec<&str> {
        instructions.iter().filter_map(|i| i.strip_prefix(op).and_then(|r| r.strip_prefix(' '))).collect()
    };
    let froms = args("FROM");
    assert_eq!(froms.len(), 2, "multi-stage: {froms:?}");
    assert!(
        froms[0].starts_with("rust:1.95") && froms[1].starts_with("debian:") && froms[1].contains("slim")
    );
    assert!(
        args("RUN")[0].contains("libclang-dev") && args("RUN")[0].contains("clang"),
        "rocksdb needs libclang"
    );
    // librdkafka is built with TLS (rdkafka's `ssl` feature) against the system OpenSSL: the
    // build needs its headers, and the binary links libssl.so.3 at run time.
    assert!(args("RUN")[0].contains("libssl-dev"), "the build stage needs libssl-dev");
    assert!(
        args("RUN").iter().any(|r| r.contains("apt-get") && r.contains("libssl3")),
        "the runtime stage needs libssl3"
    );

    // Non-root user, state volume, config file, entrypoint.
    let user = args("USER");
    assert!(
        !user.is_empty()
            && !user.last().unwrap().starts_with("root")
            && !user.last().unwrap().starts_with('0')
    );
    assert!(args("VOLUME").iter().any(|v| v.contains(STATE_DIR)));
    assert!(args("COPY").iter().any(|c| c.ends_with(&format!("config/shopscore.toml {CONFIG_FILE}"))));
    let entry: Vec<String> = serde_json::from_str(args("ENTRYPOINT")[0]).unwrap();
    assert_eq!(flag_value(&entry, "--config"), Some(CONFIG_FILE));
    let cmd: Vec<String> = serde_json::from_str(args("CMD")[0]).unwrap();
    assert_eq!(flag_value(&cmd, "--data-dir"), Some(STATE_DIR));

    // ENV: SHOPSCORE__ keys that load, and the exposed port is http.addr's.
    let env: Vec<(String, String)> = args("ENV")
        .iter()
        .flat_map(|e| e.split_whitespace())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    assert_shopscore_env(&env, "Dockerfile");
    let reference =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/shopscore.toml"));
    let cfg = load_with(&reference.unwrap(), &env);
    assert_eq!(cfg.file.data_dir, Path::new(STATE_DIR));
    assert_eq!(args("EXPOSE"), [cfg.http.addr.port().to_string()]);
    assert_eq!(cfg.http.addr.port(), Config::default().http.addr.port());
}
