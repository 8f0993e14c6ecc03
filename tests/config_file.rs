//! The reference file `config/shopscore.toml` must equal the built-in defaults and list every
//! key, so the documented values and the code cannot drift apart.

use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Value};
use figment::Figment;
use shopscore::config::{self, Config};

fn reference_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/shopscore.toml")
}

/// Dotted paths of the leaves of `dict` (an empty table counts as a leaf).
fn leaf_keys(prefix: &str, dict: &Dict, out: &mut Vec<String>) {
    for (k, v) in dict {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            Value::Dict(_, d) if !d.is_empty() => leaf_keys(&key, d, out),
            _ => out.push(key),
        }
    }
}

#[test]
fn reference_config_file_equals_defaults() {
    let loaded = config::load(Some(&reference_file())).expect("config/shopscore.toml loads");
    assert_eq!(loaded, Config::default());
}

#[test]
fn reference_config_file_lists_every_key() {
    let defaults: Dict = Figment::from(Serialized::defaults(Config::default())).extract().unwrap();
    let file: Dict = Figment::from(Toml::file_exact(reference_file())).extract().unwrap();
    let (mut expected, mut present) = (Vec::new(), Vec::new());
    leaf_keys("", &defaults, &mut expected);
    leaf_keys("", &file, &mut present);
    // `[[alerts]]` is empty by default; the file documents it in comments.
    expected.retain(|k| k != "alerts");
    expected.sort();
    present.sort();
    assert_eq!(present, expected);
    assert!(expected.len() >= 38, "{expected:?}");
}
