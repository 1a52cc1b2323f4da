//! Hostile license texts: nothing panics, nothing altered verifies, and a
//! signature made without the domain prefix is useless.

use ed25519_dalek::Signer;
use proptest::prelude::*;
use std::sync::OnceLock;
use std::time::SystemTime;
use xplugin_license::armor::{armor, dearmor};
use xplugin_license::{
    check_signature, generate_keypair, issue, verify, LicenseError, LicensePayload, Side,
    TrustStore, VerifyContext,
};
use xplugin_model::Version;

fn payload(key_id: &str) -> LicensePayload {
    LicensePayload {
        format: 1,
        key_id: key_id.into(),
        license_id: "p1".into(),
        plugin: "demo".into(),
        side: Side::Client,
        versions: "*".into(),
        devices: vec!["*".into()],
        issued_at: 1_700_000_000,
        not_before: None,
        expires: None,
        features: vec![],
        files: [
            ("demo.json".to_string(), "0".repeat(64)),
            ("demo.dll".to_string(), "1".repeat(64)),
        ]
        .into_iter()
        .collect(),
    }
}

/// One key, trust store and valid license for all cases.
fn setup() -> &'static (ed25519_dalek::SigningKey, TrustStore, String) {
    static FIXTURE: OnceLock<(ed25519_dalek::SigningKey, TrustStore, String)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let (key, id) = generate_keypair(Some("fuzz")).expect("keygen");
        let mut trust = TrustStore::new();
        trust.insert(&id, key.verifying_key()).expect("trust");
        let text = issue(&payload(&id), &key).expect("issue");
        (key, trust, text)
    })
}

fn check(text: &str, trust: &TrustStore) -> Result<(), LicenseError> {
    let version = Version::parse("1.0").expect("version");
    let ctx = VerifyContext {
        plugin: "demo",
        side: Side::Client,
        plugin_version: &version,
        device_id: "0123abcd-0123abcd-0123abcd-0123abcd",
        now: SystemTime::now(),
        high_water_mark: None,
    };
    verify(text, trust, &ctx).map(|_| ())
}

#[test]
fn signature_without_domain_prefix_does_not_verify() {
    let (key, trust, text) = setup();
    let parts = dearmor(text).expect("dearmor");
    // The vendor key signing the bare payload (e.g. another tool misusing
    // the same key) must not produce a valid license.
    let bare = key.sign(&parts.payload);
    let forged = armor(&parts.key_id, &parts.payload, &bare.to_bytes());
    assert!(matches!(
        check_signature(&forged, trust, "demo"),
        Err(LicenseError::BadSignature { .. })
    ));
    assert!(check(text, trust).is_ok());
}

fn words(t: &str) -> Vec<String> {
    t.split_whitespace().map(str::to_string).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_text_never_panics_or_verifies(s in "\\PC{0,400}") {
        let (_, trust, _) = setup();
        prop_assert!(check(&s, trust).is_err());
    }

    #[test]
    fn any_byte_change_is_refused(pos in 0usize..2000, byte in any::<u8>()) {
        let (_, trust, text) = setup();
        let mut bytes = text.clone().into_bytes();
        let len = bytes.len();
        let pos = pos % len;
        prop_assume!(bytes.get(pos) != Some(&byte));
        if let Some(b) = bytes.get_mut(pos) { *b = byte; }
        if let Ok(changed) = String::from_utf8(bytes) {
            // Only whitespace-only edits outside the signed values may pass.
            let result = check(&changed, trust);
            if result.is_ok() {
                prop_assert_eq!(words(&changed), words(text));
            }
        }
    }

    #[test]
    fn random_signed_json_never_panics(json in "\\{(\"[a-z_]{1,8}\":(1|\"x\"|\\[\\]|null),?){0,12}\\}") {
        let (key, trust, _) = setup();
        let mut msg = xplugin_license::LICENSE_DOMAIN.to_vec();
        msg.extend_from_slice(json.as_bytes());
        let sig = key.sign(&msg);
        let text = armor("fuzz", json.as_bytes(), &sig.to_bytes());
        prop_assert!(check(&text, trust).is_err());
    }
}
