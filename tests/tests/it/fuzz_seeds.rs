//! Seeds for the fuzz targets (fuzz/, docs/fuzzing.md): the hostile
//! package corpus, the example manifests and their `config`, licenses
//! signed with the fuzzing vendor key, and link frames and messages. Not a
//! test: `scripts/fuzz --seeds` runs it (ignored otherwise) with
//! `XPLUGIN_FUZZ_SEEDS` naming the folder to write `<target>/<name>` into.

use ed25519_dalek::SigningKey;
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use xplugin_license::{issue, LicensePayload, Side};
use xplugin_tests::build::workspace_root;
use xplugin_tests::hostile::{corpus, well_formed_package};

// The fuzzing vendor and device: the same as fuzz/fuzz_targets/license.rs.
const FUZZ_KEY_SEED: [u8; 32] = [0x5a; 32];
const FUZZ_KEY_ID: &str = "fuzz-vendor";
const FUZZ_DEVICE: &str = "0123abcd-4567ef01-89abcdef-01234567";
const FUZZ_NOW: u64 = 1_780_272_000;
/// The plugin folder files of the license target, and their SHA-256.
const FUZZ_FILES: [(&str, &[u8]); 2] = [
    ("plugindemo.json", b"{}\n"),
    ("plugindemo.so", b"\x7fELF fuzz"),
];
/// Larger seeds slow every run that starts from them down more than they
/// add coverage (the 4 GiB-of-zeros attack is mostly repeated blocks).
const MAX_SEED: usize = 256 * 1024;

struct Seeds {
    root: PathBuf,
}

impl Seeds {
    fn put(&self, target: &str, name: &str, mode: Option<u8>, bytes: &[u8]) {
        let dir = self.root.join(target);
        fs::create_dir_all(&dir).expect("seed folder");
        let mut out = Vec::with_capacity(bytes.len() + 1);
        out.extend(mode);
        out.extend_from_slice(bytes);
        // Entry names of hostile packages make file names: keep them plain.
        let name: String = name
            .chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
                _ => '_',
            })
            .collect();
        if out.len() <= MAX_SEED {
            fs::write(dir.join(name), out).expect("write seed");
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The inner archives of a package the `zip` crate can read.
fn inner_zips(package: &[u8]) -> Vec<(String, Vec<u8>)> {
    let Ok(mut outer) = zip::ZipArchive::new(std::io::Cursor::new(package)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for i in 0..outer.len() {
        let Ok(mut entry) = outer.by_index(i) else {
            continue;
        };
        let Ok(name) = entry.name().map(|n| n.to_string()) else {
            continue;
        };
        if !name.ends_with(".zip") || entry.size() > MAX_SEED as u64 {
            continue;
        }
        let mut bytes = Vec::new();
        if entry.read_to_end(&mut bytes).is_ok() {
            out.push((name, bytes));
        }
    }
    out
}

fn packages(seeds: &Seeds) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut packages = vec![(
        "well-formed".to_string(),
        well_formed_package(dir.path()).expect("well-formed package"),
    )];
    for attack in corpus() {
        let path = (attack.build)(dir.path())
            .unwrap_or_else(|e| panic!("{}: cannot build: {e}", attack.name));
        packages.push((attack.name.to_string(), path));
    }
    for (name, path) in packages {
        if fs::metadata(&path).expect("package").len() > MAX_SEED as u64 {
            fs::remove_file(&path).expect("remove package");
            continue;
        }
        let bytes = fs::read(&path).expect("read package");
        fs::remove_file(&path).expect("remove package");
        // Mode byte: see fuzz/fuzz_targets/package.rs.
        seeds.put("package", &format!("{name}.zip"), Some(0), &bytes);
        for (inner, zip) in inner_zips(&bytes) {
            let mode = if inner == "controller.zip" { 3 } else { 1 };
            seeds.put("package", &format!("{name}.{inner}"), Some(mode), &zip);
            if name == "well-formed" {
                seeds.put(
                    "package",
                    &format!("{name}.tight.{inner}"),
                    Some(mode | 4),
                    &zip,
                );
            }
        }
    }
}

fn manifests(seeds: &Seeds) {
    let root = workspace_root();
    // (file, mode byte: bit 0 controller, bits 1-2 the name's index in the
    // target's list plugindemo, uikit, motionlog, a)
    let examples = [
        ("examples/plugindemo-client/plugindemo.json", 0),
        ("examples/plugindemo-controller/plugindemo.json", 1),
        ("examples/uikit-client/uikit.json", 2),
        ("examples/motionlog-c/motionlog.json", 5),
    ];
    for (file, mode) in examples {
        let bytes = fs::read(root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let name = file.replace('/', "_");
        seeds.put("manifest", &name, Some(mode), &bytes);
        // Its `config` object, with stored values and a change, for the
        // config target.
        let parsed = xplugin_model::jsonc::parse(&bytes).expect("example manifest parses");
        let plugin = parsed
            .value
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.as_object())
            .and_then(|o| o.values().next())
            .cloned()
            .unwrap_or_default();
        if let Some(config) = plugin.get("config") {
            let schema = serde_json::to_vec_pretty(config).expect("config JSON");
            let mut values = serde_json::Map::new();
            let mut changes = String::new();
            if let Some(items) = config.as_object() {
                for (item, spec) in items {
                    if let Some(default) = spec.get("default") {
                        values.insert(item.clone(), default.clone());
                        let text = match default {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        changes.push_str(&format!("{item}={text}\n"));
                    }
                }
            }
            let mut seed = schema;
            seed.push(0);
            seed.extend(serde_json::to_vec(&values).expect("values JSON"));
            seed.push(0);
            seed.extend(changes.as_bytes());
            seeds.put("config", &name, None, &seed);
        }
    }
    let small = br#"{"controller_plugin": {"a": {"name": "a", "enable": true, "version": "1.0", "depend": [{"name": "b", "version": ">=1.2, <2"}]}}}"#;
    seeds.put("manifest", "small-controller.json", Some(7), small);
    let config = br#"{
  "speed": {"type": "float", "default": 0.5, "minimum": 0.0, "maximum": 1.0, "step": 0.05, "description": "d"},
  "mode": {"type": "enumeration", "options": ["auto", "manual"], "default": "auto", "description": "d"},
  "joints": {"type": "list", "items": "integer", "default": [1, 2], "minimum": 1, "maximum": 7, "listSize": 7, "description": "d"},
  "name": {"type": "string", "default": "x", "length": 8, "mandatory": true, "description": "d"},
  "secret": {"type": "password", "default": "", "description": "d"},
  "count": {"type": "integer", "default": "5", "readonly": "true", "description": "d"},
  "on": {"type": "boolean", "default": false, "order": 1, "description": "d"},
  "extra": {"type": "JSON", "default": {"a": [1]}, "description": "d"}
}"#;
    let mut seed = config.to_vec();
    seed.push(0);
    seed.extend_from_slice(br#"{"speed": 0.25, "mode": "manual", "joints": [3], "count": 9}"#);
    seed.push(0);
    seed.extend_from_slice(b"speed=0.75\nmode=auto\njoints=[1,7]\nname=robot\nsecret=hunter2\non=true\nextra={\"b\":2}\n");
    seeds.put("config", "all-types", None, &seed);
}

fn licenses(seeds: &Seeds) {
    let key = SigningKey::from_bytes(&FUZZ_KEY_SEED);
    let files: BTreeMap<String, String> = FUZZ_FILES
        .iter()
        .map(|(name, bytes)| (name.to_string(), sha256_hex(bytes)))
        .collect();
    let base = LicensePayload {
        format: 1,
        key_id: FUZZ_KEY_ID.into(),
        license_id: "fuzz-license".into(),
        plugin: "plugindemo".into(),
        side: Side::Controller,
        versions: ">=1.0, <2".into(),
        devices: vec![FUZZ_DEVICE.into()],
        issued_at: FUZZ_NOW - 86_400,
        not_before: None,
        expires: None,
        features: vec!["vision".into()],
        files,
    };
    let variants = [
        ("perpetual", base.clone()),
        (
            "expiring",
            LicensePayload {
                not_before: Some(FUZZ_NOW - 3600),
                expires: Some(FUZZ_NOW + 86_400),
                ..base.clone()
            },
        ),
        (
            "expired",
            LicensePayload {
                expires: Some(FUZZ_NOW - 1),
                ..base.clone()
            },
        ),
        (
            "any-device-client",
            LicensePayload {
                side: Side::Client,
                devices: vec!["*".into()],
                ..base.clone()
            },
        ),
    ];
    for (name, payload) in variants {
        // Mode byte: see fuzz/fuzz_targets/license.rs (bit 0: sign the
        // payload; bit 1: client side).
        let side = if payload.side == Side::Client { 2 } else { 0 };
        let json = serde_json::to_vec(&payload).expect("payload JSON");
        seeds.put("license", &format!("{name}.payload"), Some(1 | side), &json);
        let text = issue(&payload, &key).expect("issue");
        seeds.put(
            "license",
            &format!("{name}.lic"),
            Some(side),
            text.as_bytes(),
        );
    }
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// One plaintext frame of the link_message target: 2-byte length, bytes.
fn plain(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 1) as u16).to_be_bytes().to_vec();
    out.push(kind);
    out.extend_from_slice(body);
    out
}

fn link(seeds: &Seeds) {
    seeds.put(
        "link_frame",
        "two-frames",
        Some(0),
        &[frame(b"hello"), frame(b"")].concat(),
    );
    seeds.put("link_frame", "oversized", Some(0), &65536u32.to_be_bytes());
    seeds.put("link_frame", "truncated", Some(0), &[0, 0, 0, 9, 1, 2]);
    seeds.put("link_frame", "handshake-1", Some(1), &frame(&[7u8; 32]));
    seeds.put(
        "link_frame",
        "handshake-1-3",
        Some(1),
        &[frame(&[7u8; 32]), frame(&[9u8; 64])].concat(),
    );

    let root = workspace_root();
    let hello = br#"{"type":"hello","protocol_min":1,"protocol_max":1,"program":"xplugin-client","release":"1.0","arch":"x86_64","clock_unix_ms":1700000000000}"#;
    let data = b"0123456789abcdef";
    let sha = sha256_hex(data);
    let begin = format!(
        r#"{{"type":"upload-begin","sha256":"{sha}","size":{}}}"#,
        data.len()
    );
    let end = format!(r#"{{"type":"upload-end","sha256":"{sha}"}}"#);
    let prepare = format!(
        r#"{{"type":"prepare","sha256":"{sha}","label":"p.zip","force":false,"request":"r1"}}"#
    );
    let mut chunk = 0u64.to_be_bytes().to_vec();
    chunk.extend_from_slice(data);
    let session = [
        plain(1, hello),
        plain(1, br#"{"type":"status"}"#),
        plain(1, begin.as_bytes()),
        plain(3, &chunk),
        plain(1, end.as_bytes()),
        plain(1, prepare.as_bytes()),
        plain(1, br#"{"type":"commit","transaction":"t1","apply":"now"}"#),
        plain(1, br#"{"type":"abort","transaction":"t1","reason":"x"}"#),
        plain(1, br#"{"type":"outcome","transaction":"t1"}"#),
        plain(1, br#"{"type":"lookup","request":"r1"}"#),
    ]
    .concat();
    seeds.put("link_message", "session", None, &session);
    let pieces = [
        plain(2, br#"{"type":"hel"#),
        plain(1, br#"lo","protocol_min":0,"protocol_max":9}"#),
    ]
    .concat();
    seeds.put("link_message", "pieces", None, &pieces);
    let answers = [
        plain(1, br#"{"type":"welcome","role":"install"}"#),
        plain(1, br#"{"type":"refused","problem":{"code":"link.protocol_version","severity":"error","subject":"s","message":"m","hint":"h"}}"#),
        plain(1, br#"{"type":"error","problems":[{"code":"future.thing","severity":"warning"}]}"#),
        plain(1, br#"{"type":"upload-at","offset":5}"#),
        plain(1, br#"{"type":"uploaded","sha256":"00","size":1}"#),
        plain(1, br#"{"type":"transaction","transaction":"t","state":"prepared","expires_unix":1,"report":{"a":[1,2.5,null]}}"#),
        plain(1, br#"{"type":"status-report","running":1,"plugins":[],"text":"ok"}"#),
    ]
    .concat();
    seeds.put("link_message", "answers", None, &answers);
    for file in ["v0-pendant.json", "v1-newer-pendant.json"] {
        let path = root.join("tests/fixtures/link").join(file);
        let steps: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).expect("link fixture")).expect("JSON");
        let frames: Vec<u8> = steps
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.get("send"))
            .flat_map(|m| plain(1, &serde_json::to_vec(m).expect("JSON")))
            .collect();
        seeds.put("link_message", file, None, &frames);
    }
}

#[test]
#[ignore = "writes fuzz seeds; run by scripts/fuzz --seeds"]
fn write_fuzz_seeds() {
    let root = std::env::var_os("XPLUGIN_FUZZ_SEEDS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/fuzz-seeds"));
    let seeds = Seeds { root };
    packages(&seeds);
    manifests(&seeds);
    licenses(&seeds);
    link(&seeds);
    let count = |t: &str| fs::read_dir(seeds.root.join(t)).map_or(0, |d| d.count());
    for target in [
        "package",
        "manifest",
        "config",
        "license",
        "link_frame",
        "link_message",
    ] {
        eprintln!(
            "{target}: {} seeds in {}",
            count(target),
            Path::new(&seeds.root).join(target).display()
        );
        assert!(count(target) > 0, "no seeds for {target}");
    }
}
