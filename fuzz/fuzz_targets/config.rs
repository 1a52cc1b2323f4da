//! Configuration values against a schema: a `config` object (JSONC, as in
//! a manifest) parsed by `parse_schema`, then stored values (the JSON the
//! host keeps per plugin in the store's values files) resolved against it,
//! a `config set` change (`KEY=VALUE` lines) prepared, and a migration of
//! those values to the same items.
//!
//! Input: the `config` object, a NUL byte, the stored values (a JSON
//! object), a NUL byte, then `KEY=VALUE` lines.
//!
//! Checked beyond "no panic": values the host accepts (a resolved set, a
//! prepared change, a migration's result) fit every item of the schema.

#![no_main]

use libfuzzer_sys::fuzz_target;
use xplugin_model::config_schema::{migrate, parse_assignments, parse_schema};
use xplugin_model::{jsonc, ConfigSchema, ConfigValues, Problems};

fn must_fit(schema: &ConfigSchema, values: &ConfigValues, what: &str) {
    for (name, item) in &schema.items {
        let Some(value) = values.get(name) else {
            panic!("{what}: item {name} has no value");
        };
        if let Err(e) = item.check(value) {
            panic!("{what}: item {name} does not fit: {e}");
        }
    }
    assert_eq!(
        values.0.len(),
        schema.items.len(),
        "{what}: values of items the schema does not have"
    );
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let schema_bytes = parts.next().unwrap_or_default();
    let values_bytes = parts.next().unwrap_or_default();
    let lines = parts.next().unwrap_or_default();

    let Ok(parsed) = jsonc::parse(schema_bytes) else {
        return;
    };
    let mut problems = Problems::default();
    let schema = parse_schema("controller plugin \"fuzz\"", &parsed.value, &mut problems);
    let _ = problems.to_string();
    if problems.has_errors() {
        // A manifest with errors is refused whole; its schema is never used.
        return;
    }
    let defaults = schema.defaults();
    must_fit(&schema, &defaults, "defaults");

    let stored = serde_json::from_slice::<serde_json::Value>(values_bytes)
        .ok()
        .and_then(|v| ConfigValues::from_json(&v))
        .unwrap_or_default();
    let _ = stored.shown(&schema);
    match schema.resolve("fuzz", &stored) {
        Ok(values) => must_fit(&schema, &values, "resolved values"),
        Err(problems) => {
            assert!(problems.has_errors());
            let _ = problems.to_string();
        }
    }

    let args: Vec<String> = String::from_utf8_lossy(lines)
        .lines()
        .map(str::to_string)
        .collect();
    for arg in &args {
        // What `config set` does with each text before the change.
        if let Some((key, text)) = arg.split_once('=') {
            if let Some(item) = schema.items.get(key) {
                if let Ok(value) = item.parse_text(text) {
                    let _ = item.check(&value);
                    let _ = item.shown(&value);
                }
            }
        }
    }
    if let Ok(assignments) = parse_assignments("fuzz", &args) {
        match schema.prepare_change("fuzz", &stored, &assignments) {
            Ok(prepared) => {
                must_fit(&schema, &prepared.values, "a prepared change");
                let _ = serde_json::to_string(&prepared.changes);
            }
            Err(problems) => assert!(problems.has_errors()),
        }
    }

    let migration = migrate(Some(&schema), Some(&stored), &schema);
    must_fit(&schema, &migration.values, "migrated values");
    for change in &migration.changes {
        let _ = change.to_string();
    }
    let reset = migrate(Some(&schema), None, &schema);
    assert_eq!(
        reset.values, defaults,
        "unreadable values reset to the defaults"
    );
});
