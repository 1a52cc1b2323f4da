//! Manifest parsing: `parse_manifest` (JSONC, the schema of both sides and
//! the `config` items) on arbitrary bytes, then what a loader does with a
//! manifest that parsed: compatibility, the resolver, the configuration
//! defaults and a first-install migration.
//!
//! Input: one byte choosing the side (bit 0) and the expected plugin name
//! (bits 1-2), then the manifest bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use xplugin_model::config_schema::migrate;
use xplugin_model::{
    check_compat, jsonc, parse_manifest, resolve, Node, ResolveInput, Side, Version,
};

const NAMES: [&str; 4] = ["plugindemo", "uikit", "motionlog", "a"];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let side = if mode & 1 == 0 {
        Side::Client
    } else {
        Side::Controller
    };
    let name = NAMES[usize::from((mode >> 1) & 3)];

    // The JSONC layer on its own (the manifest parser uses it first).
    if let Ok(stripped) = jsonc::strip_comments(bytes) {
        assert_eq!(stripped.text.len(), bytes.len(), "stripping moved offsets");
    }
    let _ = jsonc::parse(bytes);

    let outcome = parse_manifest(side, name, bytes);
    let _ = outcome.problems.to_string();
    let _ = serde_json::to_string(&outcome);
    let Some(manifest) = outcome.manifest else {
        assert!(outcome.problems.has_errors(), "no manifest but no error");
        return;
    };
    assert!(!outcome.problems.has_errors(), "a manifest despite errors");
    assert_eq!(manifest.name, name);
    assert_eq!(manifest.side, side);
    for host in ["0.1", "3.0.2", "99.99.99.99"] {
        if let Ok(v) = Version::parse(host) {
            let _ = check_compat(&manifest, &v).map_err(|e| e.to_string());
        }
    }
    let resolution = resolve(&ResolveInput {
        plugins: vec![Node::from_manifest(&manifest)],
        running_controller: None,
    });
    let _ = resolution.load_order;
    let schema = &manifest.config;
    let defaults = schema.defaults();
    let _ = defaults.shown(schema);
    for item in schema.ordered() {
        let _ = item.expected();
        let _ = item.describe(&item.default);
    }
    // A manifest that parsed runs with its defaults: they must fit.
    if let Err(problems) = schema.resolve("fuzz", &defaults) {
        panic!("the defaults of a valid manifest do not fit: {problems}");
    }
    let first = migrate(None, None, schema);
    assert_eq!(
        first.values, defaults,
        "a first install does not get the defaults"
    );
    let _ = migrate(Some(schema), Some(&defaults), schema);
});
