//! Time to verify one license including hashing a 2 MB library, the cost a
//! boot pays per plugin. Ignored by default (a measurement, not a check):
//!
//! `cargo test -p xplugin-license --release --test timing -- --ignored --nocapture`

use std::time::{Instant, SystemTime};
use xplugin_license::{
    generate_keypair, issue, sha256_file, verify_plugin_dir, LicensePayload, Side, TrustStore,
    VerifyContext,
};
use xplugin_model::Version;

#[test]
#[ignore = "measurement; run with --ignored --nocapture, preferably --release"]
fn verify_one_license_with_a_2mb_library() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin = dir.path().join("demo");
    std::fs::create_dir(&plugin).expect("mkdir");
    std::fs::write(
        plugin.join("demo.json"),
        r#"{"controller_plugin": {"name": "demo", "enable": true, "version": "1.0.2"}}"#,
    )
    .expect("manifest");
    let library: Vec<u8> = (0..2 * 1024 * 1024u32)
        .map(|i| (i * 31 % 253) as u8)
        .collect();
    std::fs::write(plugin.join("demo.so"), library).expect("library");
    let (key, key_id) = generate_keypair(Some("bench")).expect("keygen");
    let mut trust = TrustStore::new();
    trust.insert(&key_id, key.verifying_key()).expect("trust");
    let device = "0123abcd-0123abcd-0123abcd-0123abcd";
    let hash = |n: &str| sha256_file(&plugin.join(n)).expect("hash");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let payload = LicensePayload {
        format: 1,
        key_id,
        license_id: "bench".into(),
        plugin: "demo".into(),
        side: Side::Controller,
        versions: "*".into(),
        devices: vec![device.into()],
        issued_at: now - 60,
        not_before: None,
        expires: Some(now + 86_400),
        features: vec![],
        files: [
            ("demo.json".to_string(), hash("demo.json")),
            ("demo.so".to_string(), hash("demo.so")),
        ]
        .into_iter()
        .collect(),
    };
    std::fs::write(
        plugin.join("demo.lic"),
        issue(&payload, &key).expect("issue"),
    )
    .expect("lic");
    let version = Version::parse("1.0.2").expect("version");
    let ctx = VerifyContext {
        plugin: "demo",
        side: Side::Controller,
        plugin_version: &version,
        device_id: device,
        now: SystemTime::now(),
        high_water_mark: None,
    };
    // Warm the page cache, as on a boot after install.
    verify_plugin_dir(&plugin, &trust, &ctx).expect("verifies");
    let rounds = 50u32;
    let start = Instant::now();
    for _ in 0..rounds {
        verify_plugin_dir(&plugin, &trust, &ctx).expect("verifies");
    }
    let per = start.elapsed() / rounds;
    println!("verify_plugin_dir with a 2 MiB library: {per:?} per license ({rounds} rounds)");
    assert!(per.as_secs() < 5, "implausibly slow: {per:?}");
}
