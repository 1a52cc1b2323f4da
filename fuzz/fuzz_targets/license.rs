//! License parsing and verification: `verify_plugin_dir` (read the `.lic`,
//! dearmor, trusted key, strict signature, duplicate keys, payload, plugin,
//! side, version, device, clock, then the licensed files' hashes) on a
//! plugin folder whose license is the input.
//!
//! Input: one mode byte, then the data.
//! * bit 0 clear: the data is the `.lic` file as found (random bytes only
//!   get as far as the armor and the signature);
//!   set: the data is a payload, signed here with the fuzzing vendor key and
//!   armored, so that everything behind the signature is reached.
//! * bit 1: the plugin is a client plugin (else controller);
//!   bit 2: this device has a clock high-water mark.
//!
//! The fuzzing vendor key, key id, device and plugin folder are the ones
//! `tests/tests/it/fuzz_seeds.rs` makes seeds for (`FUZZ_*` there).

#![no_main]

use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use xplugin_license::armor::{armor, signed_message};
use xplugin_license::{verify_plugin_dir, Side, ThisDevice, TrustStore, VerifyContext};
use xplugin_model::Version;

const KEY_SEED: [u8; 32] = [0x5a; 32];
const KEY_ID: &str = "fuzz-vendor";
const DEVICE: &str = "0123abcd-4567ef01-89abcdef-01234567";
const PLUGIN: &str = "plugindemo";
/// 2026-06-01T00:00:00Z: the seeds' licenses are valid then.
const NOW: u64 = 1_780_272_000;

struct Fixture {
    key: SigningKey,
    trust: TrustStore,
    dir: PathBuf,
    version: Version,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = SigningKey::from_bytes(&KEY_SEED);
        let mut trust = TrustStore::new();
        trust
            .insert(KEY_ID, key.verifying_key())
            .expect("the fuzzing key id is valid");
        let dir = xplugin_fuzz::scratch_dir("license").join(PLUGIN);
        std::fs::create_dir(&dir).expect("plugin folder");
        std::fs::write(dir.join("plugindemo.json"), b"{}\n").expect("manifest");
        std::fs::write(dir.join("plugindemo.so"), b"\x7fELF fuzz").expect("library");
        Fixture {
            key,
            trust,
            dir,
            version: Version::parse("1.0.2").expect("a version"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let text;
    let license: &[u8] = if mode & 1 == 0 {
        body
    } else {
        let signature = f.key.sign(&signed_message(body));
        text = armor(KEY_ID, body, &signature.to_bytes());
        text.as_bytes()
    };
    std::fs::write(f.dir.join("plugindemo.lic"), license).expect("write the license");
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    let ctx = VerifyContext {
        plugin: PLUGIN,
        side: if mode & 2 == 0 {
            Side::Controller
        } else {
            Side::Client
        },
        plugin_version: &f.version,
        device_id: DEVICE,
        now,
        high_water_mark: (mode & 4 != 0).then(|| now - Duration::from_secs(86_400)),
    };
    match verify_plugin_dir(&f.dir, &f.trust, &ctx) {
        Ok(verified) => {
            assert_eq!(verified.payload().plugin, PLUGIN);
            assert_eq!(verified.key_id(), KEY_ID);
            let _ = (
                verified.features(),
                verified.expires(),
                verified.is_perpetual(),
            );
        }
        Err(e) => {
            let _ = e.to_string();
            let _ = (e.code(), e.hint(), e.causes().len());
            let device = ThisDevice {
                id: DEVICE,
                now: SystemTime::UNIX_EPOCH + Duration::from_secs(NOW),
            };
            let _ = e
                .to_problems("controller plugin \"plugindemo\"", &device)
                .to_string();
        }
    }
});
