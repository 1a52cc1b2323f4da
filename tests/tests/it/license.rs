//! Licenses end to end on real files: the attack matrix of issue 5 (each
//! attack refused with a message naming its cause), the positive cases, and
//! the `xplugin-pack` vendor tool driven as a program.

use ed25519_dalek::{Signer, SigningKey};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::SystemTime;
use xplugin_license::armor::{armor, dearmor, signed_message};
use xplugin_license::timestamp::system_time;
use xplugin_license::{
    device_id, generate_keypair, issue, sha256_file, verify_plugin_dir, write_key_files,
    ClockGuard, DeviceIdSource, LicenseError, LicensePayload, Side, ThisDevice, TrustStore,
    VerifiedLicense, VerifyContext,
};
use xplugin_model::Version;
use xplugin_tests::problems::problems_with;

const DAY: u64 = 86_400;
const YEAR: u64 = 365 * DAY;
/// Issue time of the test licenses (2026-09-21T14:13:20Z).
const T0: u64 = 1_790_000_000;
const OTHER_DEVICE: &str = "ffffffff-00000000-ffffffff-00000000";

/// A vendor key, a device trust store on disk, this device's id and a
/// controller plugin folder `demo/` (version 1.0.2) in a temp dir.
struct Fixture {
    root: tempfile::TempDir,
    key: SigningKey,
    key_id: String,
    trust: TrustStore,
    device: String,
}

impl Fixture {
    fn new() -> Fixture {
        let root = tempfile::tempdir().expect("temp dir");
        let (key, key_id) = generate_keypair(Some("acme-1")).expect("keygen");
        let keys = root.path().join("vendor-keys");
        let files = write_key_files(&keys, &key_id, &key).expect("key files");
        // The device's trust store holds only the public key file.
        let trust_dir = root.path().join("trusted-keys");
        std::fs::create_dir(&trust_dir).expect("mkdir");
        std::fs::copy(&files.public, trust_dir.join("acme-1.pub")).expect("install pub");
        let trust = TrustStore::load(&trust_dir).expect("trust store");
        let machine_id = root.path().join("machine-id");
        std::fs::write(&machine_id, "4b1d2c3e4f5a6b7c8d9e0f1a2b3c4d5e\n").expect("machine-id");
        let device = device_id(&DeviceIdSource::MachineIdFile(machine_id)).expect("device id");
        let plugin = root.path().join("demo");
        std::fs::create_dir(&plugin).expect("mkdir");
        std::fs::write(
            plugin.join("demo.json"),
            "{\n  // vendor comment\n  \"controller_plugin\": {\"name\": \"demo\", \"enable\": true, \"version\": \"1.0.2\"}\n}\n",
        )
        .expect("manifest");
        let library: Vec<u8> = (0..256 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(plugin.join("demo.so"), library).expect("library");
        std::fs::write(plugin.join("icon.png"), b"not code").expect("data file");
        Fixture {
            root,
            key,
            key_id,
            trust,
            device,
        }
    }

    fn plugin_dir(&self) -> PathBuf {
        self.root.path().join("demo")
    }

    /// A perpetual license of `demo` for this device, covering the real files.
    fn payload(&self) -> LicensePayload {
        let dir = self.plugin_dir();
        let hash = |name: &str| sha256_file(&dir.join(name)).expect("hash");
        LicensePayload {
            format: 1,
            key_id: self.key_id.clone(),
            license_id: "test-license".into(),
            plugin: "demo".into(),
            side: Side::Controller,
            versions: ">=1.0, <2".into(),
            devices: vec![self.device.clone()],
            issued_at: T0,
            not_before: None,
            expires: None,
            features: vec!["vision".into()],
            files: [
                ("demo.json".to_string(), hash("demo.json")),
                ("demo.so".to_string(), hash("demo.so")),
            ]
            .into_iter()
            .collect(),
        }
    }

    fn install(&self, text: &str) {
        std::fs::write(self.plugin_dir().join("demo.lic"), text).expect("write license");
    }

    fn issue_and_install(&self, payload: &LicensePayload) -> String {
        let text = issue(payload, &self.key).expect("issue");
        self.install(&text);
        text
    }

    /// The loader's check of the plugin folder at clock `now`.
    fn check_at(&self, now: u64, hwm: Option<u64>) -> Result<VerifiedLicense, LicenseError> {
        self.check_with(now, hwm, &self.device, Side::Controller)
    }

    fn check_with(
        &self,
        now: u64,
        hwm: Option<u64>,
        device: &str,
        side: Side,
    ) -> Result<VerifiedLicense, LicenseError> {
        let version = Version::parse("1.0.2").expect("version");
        let ctx = VerifyContext {
            plugin: "demo",
            side,
            plugin_version: &version,
            device_id: device,
            now: system_time(now),
            high_water_mark: hwm.map(system_time),
        };
        verify_plugin_dir(&self.plugin_dir(), &self.trust, &ctx)
    }
}

/// Asserts a refusal with exactly one cause matching `pred` and a message
/// containing every fragment; returns the message.
fn refused(
    result: Result<VerifiedLicense, LicenseError>,
    pred: impl Fn(&LicenseError) -> bool,
    fragments: &[&str],
) -> String {
    let err = match result {
        Ok(v) => panic!("expected a refusal, the license verified: {v:?}"),
        Err(e) => e,
    };
    let causes = err.causes();
    assert!(
        causes.iter().any(|c| pred(c)),
        "unexpected cause(s): {err}\n{err:?}"
    );
    // As a loader reports it: one problem per reason, each with its code,
    // its hint, and this device's id and clock (SPEC section 4).
    let device = ThisDevice {
        id: "device-shown-in-refusals",
        now: system_time(T0),
    };
    let problems = err.to_problems("controller plugin \"demo\"", &device);
    for p in &problems.0 {
        assert!(p.code.as_str().starts_with("license."), "{p}");
        assert!(!p.hint.is_empty(), "no hint: {p}");
        assert!(
            p.message.contains("clock says") && p.message.contains("device"),
            "the refusal does not show this device and its clock: {p}"
        );
    }
    let text = problems.to_string();
    for f in fragments {
        assert!(text.contains(f), "message lacks {f:?}:\n{text}");
    }
    text
}

#[test]
fn perpetual_license_verifies_with_any_clock() {
    let fx = Fixture::new();
    fx.issue_and_install(&fx.payload());
    for now in [0, T0 - 10 * YEAR, T0, T0 + 50 * YEAR] {
        let ok = fx
            .check_at(now, Some(T0 + 30 * YEAR))
            .expect("perpetual license");
        assert!(ok.is_perpetual());
        assert_eq!(ok.features(), ["vision".to_string()]);
    }
}

#[test]
fn any_device_license_verifies_on_every_device() {
    let fx = Fixture::new();
    let mut p = fx.payload();
    p.devices = vec!["*".into()];
    fx.issue_and_install(&p);
    for device in [fx.device.as_str(), OTHER_DEVICE] {
        assert!(fx
            .check_with(T0 + DAY, None, device, Side::Controller)
            .is_ok());
    }
}

#[test]
fn time_limited_license_verifies_inside_its_window() {
    let fx = Fixture::new();
    let mut p = fx.payload();
    p.not_before = Some(T0);
    p.expires = Some(T0 + YEAR);
    fx.issue_and_install(&p);
    let ok = fx.check_at(T0 + DAY, Some(T0)).expect("valid");
    assert_eq!(ok.expires(), Some(system_time(T0 + YEAR)));
}

#[test]
fn flipped_bit_in_payload_is_refused() {
    let fx = Fixture::new();
    let text = issue(&fx.payload(), &fx.key).expect("issue");
    let mut parts = dearmor(&text).expect("dearmor");
    // Bit 0 of a byte inside the JSON (e.g. turns a hash digit into another).
    let i = parts.payload.len() / 2;
    if let Some(b) = parts.payload.get_mut(i) {
        *b ^= 1;
    }
    fx.install(&armor(&parts.key_id, &parts.payload, &parts.signature));
    refused(
        fx.check_at(T0, None),
        |e| matches!(e, LicenseError::BadSignature { .. }),
        &["demo", "does not verify", "acme-1"],
    );
}

#[test]
fn flipped_bit_in_signature_is_refused() {
    let fx = Fixture::new();
    let text = issue(&fx.payload(), &fx.key).expect("issue");
    let mut parts = dearmor(&text).expect("dearmor");
    if let Some(b) = parts.signature.get_mut(5) {
        *b ^= 0x10;
    }
    fx.install(&armor(&parts.key_id, &parts.payload, &parts.signature));
    refused(
        fx.check_at(T0, None),
        |e| matches!(e, LicenseError::BadSignature { .. }),
        &["does not verify"],
    );
}

#[test]
fn every_single_bit_flip_in_the_signed_lines_is_refused() {
    let fx = Fixture::new();
    let text = issue(&fx.payload(), &fx.key).expect("issue");
    let bytes = text.as_bytes().to_vec();
    // Positions of the base64 values of the payload and signature lines.
    let mut positions = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        for prefix in ["payload: ", "signature: "] {
            if line.starts_with(prefix) {
                let start = offset + prefix.len();
                let end = offset + line.trim_end().len();
                positions.extend(start..end);
            }
        }
        offset += line.len();
    }
    assert!(positions.len() > 200, "found {} positions", positions.len());
    for (n, pos) in positions.iter().enumerate() {
        let mut flipped = bytes.clone();
        let bit = 1u8 << (n % 7);
        if let Some(b) = flipped.get_mut(*pos) {
            *b ^= bit;
        }
        let Ok(flipped) = String::from_utf8(flipped) else {
            continue;
        };
        fx.install(&flipped);
        assert!(
            fx.check_at(T0, None).is_err(),
            "flipping bit {bit:#x} of byte {pos} was not noticed"
        );
    }
}

#[test]
fn truncated_signature_is_refused() {
    let fx = Fixture::new();
    let text = issue(&fx.payload(), &fx.key).expect("issue");
    let parts = dearmor(&text).expect("dearmor");
    let short = parts.signature.get(..48).expect("64-byte signature");
    fx.install(&armor(&parts.key_id, &parts.payload, short));
    refused(
        fx.check_at(T0, None),
        |e| matches!(e, LicenseError::TruncatedSignature { found: 48, .. }),
        &["truncated signature", "48 bytes"],
    );
}

#[test]
fn license_file_cut_short_is_refused() {
    let fx = Fixture::new();
    let text = issue(&fx.payload(), &fx.key).expect("issue");
    let cut = text.get(..text.len() / 2).expect("half");
    fx.install(cut);
    refused(
        fx.check_at(T0, None),
        |e| matches!(e, LicenseError::Malformed { .. }),
        &["malformed"],
    );
}

#[test]
fn unknown_key_is_refused_naming_the_trusted_keys() {
    let fx = Fixture::new();
    let (other, other_id) = generate_keypair(Some("globex-7")).expect("keygen");
    let mut p = fx.payload();
    p.key_id = other_id;
    fx.install(&issue(&p, &other).expect("issue"));
    let text = refused(
        fx.check_at(T0, None),
        |e| matches!(e, LicenseError::UnknownKey { .. }),
        &["globex-7", "acme-1", "does not trust", "globex-7.pub"],
    );
    assert!(text.contains("trusted-keys"), "{text}");
}

#[test]
fn key_of_another_vendor_under_a_trusted_id_is_refused() {
    let fx = Fixture::new();
    // Another vendor signs with its own key but claims the trusted key id.
    let (other, _) = generate_keypair(None).expect("keygen");
    fx.install(&issue(&fx.payload(), &other).expect("issue"));
    refused(
        fx.check_at(T0, None),
        |e| matches!(e, LicenseError::BadSignature { .. }),
        &["acme-1", "does not verify"],
    );
}

#[test]
fn wrong_device_is_refused_showing_both_ids() {
    let fx = Fixture::new();
    let mut p = fx.payload();
    p.devices = vec![OTHER_DEVICE.into()];
    fx.issue_and_install(&p);
    refused(
        fx.check_at(T0, None),
        |e| matches!(e, LicenseError::WrongDevice { .. }),
        &[OTHER_DEVICE, &fx.device, "device-id"],
    );
}

#[test]
fn license_of_another_plugin_is_refused() {
    let fx = Fixture::new();
    let mut p = fx.payload();
    p.plugin = "other".into();
    p.files = p
        .files
        .into_iter()
        .map(|(k, v)| (k.replace("demo", "other"), v))
        .collect();
    fx.issue_and_install(&p);
    refused(
        fx.check_at(T0, None),
        |e| matches!(e, LicenseError::WrongPlugin { .. }),
        &["\"other\"", "\"demo\""],
    );
}

#[test]
fn license_of_the_other_side_is_refused() {
    let fx = Fixture::new();
    let mut p = fx.payload();
    p.side = Side::Client;
    fx.issue_and_install(&p);
    refused(
        fx.check_at(T0, None),
        |e| matches!(e, LicenseError::WrongSide { .. }),
        &["client", "controller"],
    );
}

#[test]
fn plugin_version_out_of_range_is_refused() {
    let fx = Fixture::new();
    let mut p = fx.payload();
    p.versions = ">=2.0, <3".into();
    fx.issue_and_install(&p);
    refused(
        fx.check_at(T0, None),
        |e| matches!(e, LicenseError::VersionOutOfRange { .. }),
        &[">=2.0, <3", "1.0.2"],
    );
}

#[test]
fn swapped_library_is_refused() {
    let fx = Fixture::new();
    let p = fx.payload();
    let licensed = p.files.get("demo.so").cloned().expect("hash");
    fx.issue_and_install(&p);
    assert!(fx.check_at(T0, None).is_ok());
    std::fs::write(
        fx.plugin_dir().join("demo.so"),
        b"\x7fELF a different build",
    )
    .expect("swap");
    let found = fx.hash_prefix("demo.so");
    refused(
        fx.check_at(T0, None),
        |e| matches!(e, LicenseError::FileHashMismatch { file, .. } if file == "demo.so"),
        &[
            "demo.so",
            "changed or swapped",
            licensed.get(..16).expect("hex"),
            &found,
        ],
    );
}

impl Fixture {
    /// The first 16 hex digits of a file's current SHA-256.
    fn hash_prefix(&self, name: &str) -> String {
        sha256_file(&self.plugin_dir().join(name))
            .expect("hash")
            .chars()
            .take(16)
            .collect()
    }
}

#[test]
fn edited_manifest_is_refused() {
    let fx = Fixture::new();
    let p = fx.payload();
    let licensed_hash = p.files.get("demo.json").cloned().expect("hash");
    fx.issue_and_install(&p);
    let manifest = fx.plugin_dir().join("demo.json");
    let edited = std::fs::read_to_string(&manifest)
        .expect("read")
        .replace("1.0.2", "1.0.3");
    std::fs::write(&manifest, edited).expect("edit");
    let found = fx.hash_prefix("demo.json");
    refused(
        fx.check_at(T0, None),
        |e| matches!(e, LicenseError::FileHashMismatch { file, .. } if file == "demo.json"),
        &["demo.json", licensed_hash.get(..16).expect("hex"), &found],
    );
}

#[test]
fn missing_and_unlicensed_files_are_all_reported() {
    let fx = Fixture::new();
    fx.issue_and_install(&fx.payload());
    std::fs::remove_file(fx.plugin_dir().join("demo.so")).expect("remove");
    std::fs::create_dir(fx.plugin_dir().join("lib")).expect("mkdir");
    std::fs::write(fx.plugin_dir().join("lib/libextra.so.1"), b"code").expect("extra");
    let err = fx.check_at(T0, None).expect_err("refused");
    let causes = err.causes();
    assert!(causes
        .iter()
        .any(|c| matches!(c, LicenseError::FileMissing { file, .. } if file == "demo.so")));
    assert!(causes.iter().any(
        |c| matches!(c, LicenseError::FileNotLicensed { file, .. } if file == "lib/libextra.so.1")
    ));
    assert!(err.to_string().contains("2 reasons"), "{err}");
}

#[test]
fn code_files_are_covered_by_content_whatever_their_name() {
    let fx = Fixture::new();
    fx.issue_and_install(&fx.payload());
    // An ELF file called helper.bin and a PE file called tool.dat, neither
    // in the license: both refused, like an unlicensed x.so. The data file
    // icon.png (not code) is not.
    std::fs::write(fx.plugin_dir().join("helper.bin"), b"\x7fELF\x02\x01\x01\0").expect("elf");
    let mut pe = vec![0u8; 0x48];
    pe[..2].copy_from_slice(b"MZ");
    pe[0x3c] = 0x40;
    pe[0x40..0x44].copy_from_slice(b"PE\0\0");
    std::fs::write(fx.plugin_dir().join("tool.dat"), pe).expect("pe");
    let err = fx.check_at(T0, None).expect_err("refused");
    let uncovered: Vec<&str> = err
        .causes()
        .into_iter()
        .filter_map(|c| match c {
            LicenseError::FileNotLicensed { file, .. } => Some(file.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(uncovered, ["helper.bin", "tool.dat"], "{err}");
    assert_eq!(
        err.code(),
        xplugin_model::ProblemCode::LicenseFileNotCovered
    );
    assert!(
        err.to_string().contains("helper.bin is an ELF file"),
        "{err}"
    );
}

#[test]
fn a_covered_helper_binary_with_swapped_content_is_refused() {
    let fx = Fixture::new();
    let helper = fx.plugin_dir().join("helper.bin");
    std::fs::write(&helper, b"\x7fELF original helper").expect("elf");
    let mut p = fx.payload();
    p.files.insert(
        "helper.bin".to_string(),
        sha256_file(&helper).expect("hash"),
    );
    fx.issue_and_install(&p);
    fx.check_at(T0, None).expect("licensed helper verifies");
    std::fs::write(&helper, b"\x7fELF swapped helper!!").expect("swap");
    refused(
        fx.check_at(T0, None),
        |e| matches!(e, LicenseError::FileHashMismatch { file, .. } if file == "helper.bin"),
        &["helper.bin does not match its license"],
    );
}

#[test]
fn an_empty_license_file_says_it_is_empty() {
    let fx = Fixture::new();
    fx.install("");
    let text = refused(
        fx.check_at(T0, None),
        |e| matches!(e, LicenseError::Empty { size: 0, .. }),
        &["demo.lic is empty"],
    );
    assert!(!text.contains("malformed"), "{text}");
    fx.install(" \n\n");
    refused(
        fx.check_at(T0, None),
        |e| matches!(e, LicenseError::Empty { size: 3, .. }),
        &["all white space"],
    );
}

#[test]
fn expired_license_is_refused_showing_expiry_and_clock() {
    let fx = Fixture::new();
    let mut p = fx.payload();
    p.expires = Some(T0 + 30 * DAY);
    fx.issue_and_install(&p);
    refused(
        fx.check_at(T0 + 31 * DAY, None),
        |e| matches!(e, LicenseError::Expired { .. }),
        &["expired on 2026-10-21", "clock says 2026-10-22", &fx.device],
    );
}

#[test]
fn not_yet_valid_license_is_refused() {
    let fx = Fixture::new();
    let mut p = fx.payload();
    p.not_before = Some(T0 + 10 * DAY);
    fx.issue_and_install(&p);
    refused(
        fx.check_at(T0 + DAY, None),
        |e| matches!(e, LicenseError::NotYetValid { .. }),
        &["valid only from 2026-10-01", "clock says 2026-09-22"],
    );
}

#[test]
fn clock_behind_issue_time_is_refused() {
    let fx = Fixture::new();
    let mut p = fx.payload();
    p.expires = Some(T0 + YEAR);
    fx.issue_and_install(&p);
    refused(
        fx.check_at(T0 - 2 * DAY, None),
        |e| matches!(e, LicenseError::ClockBehindIssue { .. }),
        &["the system clock is behind: set it", "2026-09-19"],
    );
}

#[test]
fn clock_behind_the_high_water_mark_is_refused() {
    let fx = Fixture::new();
    let mut p = fx.payload();
    p.expires = Some(T0 + YEAR);
    fx.issue_and_install(&p);
    // The device saw T0 + 200 days at its last boot; now the clock says
    // T0 + 100 days (set back to stretch the license).
    let hwm_path = fx.root.path().join("state/clock-hwm");
    std::fs::create_dir_all(hwm_path.parent().expect("parent")).expect("mkdir");
    let mut guard = ClockGuard::load(&hwm_path).expect("load");
    guard.record(system_time(T0 + 200 * DAY)).expect("record");
    let guard = ClockGuard::load(&hwm_path).expect("reload");
    let hwm = guard.high_water_mark().map(|t| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
    });
    refused(
        fx.check_at(T0 + 100 * DAY, hwm),
        |e| matches!(e, LicenseError::ClockBehindHighWater { .. }),
        &["set back", "2027-04-09", "2026-12-30"],
    );
    // Within a day of the mark is fine.
    assert!(fx.check_at(T0 + 200 * DAY - 3600, hwm).is_ok());
}

#[test]
fn far_future_clock_is_called_suspicious() {
    let fx = Fixture::new();
    let mut p = fx.payload();
    p.expires = Some(T0 + 20 * YEAR);
    fx.issue_and_install(&p);
    refused(
        fx.check_at(T0 + 11 * YEAR, None),
        |e| matches!(e, LicenseError::ClockFarFuture { .. }),
        &["suspicious", "10 years"],
    );
    // Expired with such a clock: the expiry message says the clock is odd.
    let mut p = fx.payload();
    p.expires = Some(T0 + YEAR);
    fx.issue_and_install(&p);
    refused(
        fx.check_at(T0 + 11 * YEAR, None),
        |e| {
            matches!(
                e,
                LicenseError::Expired {
                    far_future: true,
                    ..
                }
            )
        },
        &["probably wrong"],
    );
}

#[test]
fn duplicate_json_keys_are_refused_even_when_signed() {
    let fx = Fixture::new();
    let p = fx.payload();
    let json = serde_json::to_string(&p).expect("json");
    // A second "devices" key after the first: serde_json alone would keep
    // the last one and accept any device.
    let forged = json.replacen("\"devices\":", "\"devices\":[\"*\"],\"devices\":", 1);
    assert_ne!(json, forged);
    let signature = fx.key.sign(&signed_message(forged.as_bytes()));
    fx.install(&armor(&fx.key_id, forged.as_bytes(), &signature.to_bytes()));
    refused(
        fx.check_at(T0, None),
        |e| matches!(e, LicenseError::DuplicateKey { key, .. } if key == "\"devices\""),
        &["repeats the key \"devices\""],
    );
}

#[test]
fn oversized_license_is_refused_before_decoding() {
    let fx = Fixture::new();
    let text = issue(&fx.payload(), &fx.key).expect("issue");
    let padded = format!("{text}{}", "\n".repeat(70 * 1024));
    fx.install(&padded);
    refused(
        fx.check_at(T0, None),
        |e| matches!(e, LicenseError::Oversized { limit: 65_536, .. }),
        &["limit"],
    );
    // A huge signed payload is refused by the same limit.
    let mut p = fx.payload();
    p.features = vec!["x".repeat(80 * 1024)];
    fx.install(&issue(&p, &fx.key).expect("issue"));
    refused(
        fx.check_at(T0, None),
        |e| matches!(e, LicenseError::Oversized { .. }),
        &["bytes"],
    );
}

#[test]
fn missing_license_file_is_refused() {
    let fx = Fixture::new();
    refused(
        fx.check_at(T0, None),
        |e| matches!(e, LicenseError::Unreadable { .. }),
        &["demo.lic"],
    );
}

// ---------------------------------------------------------------- the CLI

fn pack_bin() -> PathBuf {
    xplugin_tests::build::bin_path("xplugin-pack")
}

fn run(args: &[&str], cwd: &Path) -> Output {
    xplugin_tests::build::target_command(&pack_bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run xplugin-pack")
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

#[test]
fn keygen_writes_a_0600_private_key_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run(
        &["keygen", "--out", "keys", "--key-id", "acme-1"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let private = dir.path().join("keys/acme-1.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&private)
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "mode {:o}", mode & 0o777);
    }
    assert!(dir.path().join("keys/acme-1.pub").is_file());
    let before = std::fs::read(&private).expect("read");
    let again = run(
        &["keygen", "--out", "keys", "--key-id", "acme-1"],
        dir.path(),
    );
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("refusing to overwrite"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(std::fs::read(&private).expect("read"), before);
}

/// `xplugin-pack license` of `client/uidemo` (from [`vendor_tree`]) for
/// any device, with the key `keys/acme-1.key`.
const UIDEMO_LICENSE: &[&str] = &[
    "license",
    "--key",
    "keys/acme-1.key",
    "--plugin-dir",
    "client/uidemo",
    "--side",
    "client",
    "--devices",
    "any",
    "--versions",
    "*",
];

/// Lays out `client/uidemo` and `controller/demo` plugin folders.
fn vendor_tree(dir: &Path) {
    let ctl = dir.join("controller/demo");
    std::fs::create_dir_all(&ctl).expect("mkdir");
    std::fs::write(
        ctl.join("demo.json"),
        r#"{"controller_plugin": {"demo": {"name": "demo", "enable": true, "version": "1.0.2"}}}"#,
    )
    .expect("manifest");
    // Real libraries: the vendor tool refuses what a device refuses, and a
    // device refuses a file that is not an xplugin library of its side.
    let copy = |from: std::path::PathBuf, to: std::path::PathBuf| {
        std::fs::copy(from, to).expect("copy library");
    };
    copy(
        xplugin_tests::build::cdylib_path("plugindemo_controller"),
        ctl.join("demo.so"),
    );
    let cli = dir.join("client/uidemo");
    std::fs::create_dir_all(cli.join("i18n")).expect("mkdir");
    std::fs::write(
        cli.join("uidemo.json"),
        r#"{"client_plugin": {"name": "uidemo", "enable": true, "version": "2.1"}}"#,
    )
    .expect("manifest");
    copy(
        xplugin_tests::build::cdylib_path("uikit_client"),
        cli.join("uidemo.so"),
    );
    copy(
        xplugin_tests::build::runtime_library_path(),
        cli.join("xplugin.so"),
    );
    std::fs::write(cli.join("i18n/de.txt"), b"Hallo").expect("data");
}

#[test]
fn vendor_tool_licenses_packs_and_verifies_end_to_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    vendor_tree(d);
    std::fs::write(d.join("machine-id"), "00112233445566778899aabbccddeeff\n").expect("mid");
    let ok = |o: &Output| assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    ok(&run(&["keygen", "--out", "keys", "--key-id", "acme-1"], d));
    let dev = run(&["device-id", "--machine-id-file", "machine-id"], d);
    ok(&dev);
    let device = text(&dev.stdout).trim().to_string();
    assert_eq!(device.len(), 35, "{device}");
    ok(&run(
        &[
            "license",
            "--key",
            "keys/acme-1.key",
            "--plugin-dir",
            "controller/demo",
            "--side",
            "controller",
            "--devices",
            &device,
            "--versions",
            ">=1.0, <2",
            "--days",
            "365",
            "--features",
            "vision,io",
        ],
        d,
    ));
    ok(&run(UIDEMO_LICENSE, d));
    ok(&run(
        &[
            "pack",
            "--client",
            "client",
            "--controller",
            "controller",
            "-o",
            "plugindemo.zip",
            "--trust",
            "keys",
        ],
        d,
    ));
    ok(&run(
        &[
            "pack",
            "--client",
            "client",
            "--controller",
            "controller",
            "-o",
            "again.zip",
        ],
        d,
    ));
    assert_eq!(
        std::fs::read(d.join("plugindemo.zip")).expect("zip"),
        std::fs::read(d.join("again.zip")).expect("zip"),
        "packing is not deterministic"
    );

    // The device's view: only the .pub in its trust store.
    std::fs::create_dir(d.join("trusted")).expect("mkdir");
    std::fs::copy(d.join("keys/acme-1.pub"), d.join("trusted/acme-1.pub")).expect("copy");
    let verified = run(
        &[
            "verify",
            "plugindemo.zip",
            "--trust",
            "trusted",
            "--device-id",
            &device,
        ],
        d,
    );
    ok(&verified);
    let out = text(&verified.stdout);
    assert!(out.contains("OK      controller \"demo\" 1.0.2"), "{out}");
    assert!(out.contains("OK      client \"uidemo\" 2.1"), "{out}");

    // Another device: the controller plugin is refused, naming both ids.
    let other = run(
        &[
            "verify",
            "plugindemo.zip",
            "--trust",
            "trusted",
            "--device-id",
            OTHER_DEVICE,
        ],
        d,
    );
    assert!(!other.status.success());
    let err = text(&other.stderr);
    assert!(err.contains(&device) && err.contains(OTHER_DEVICE), "{err}");

    // After the expiry date.
    let late = run(
        &[
            "verify",
            "plugindemo.zip",
            "--trust",
            "trusted",
            "--device-id",
            &device,
            "--at",
            "2099-01-01",
        ],
        d,
    );
    assert!(!late.status.success());
    assert!(
        text(&late.stderr).contains("expired on"),
        "{}",
        text(&late.stderr)
    );

    // A plugin folder checked directly, after its library was swapped.
    std::fs::write(d.join("controller/demo/demo.so"), b"swapped").expect("swap");
    let swapped = run(
        &[
            "verify",
            "controller/demo",
            "--trust",
            "trusted",
            "--device-id",
            &device,
        ],
        d,
    );
    assert!(!swapped.status.success());
    assert!(text(&swapped.stderr).contains("demo.so does not match its license"));

    // inspect --json: one JSON document with every plugin and its status.
    let inspect = run(
        &[
            "inspect",
            "plugindemo.zip",
            "--trust",
            "trusted",
            "--device-id",
            &device,
            "--json",
        ],
        d,
    );
    ok(&inspect);
    let doc: serde_json::Value =
        serde_json::from_slice(&inspect.stdout).expect("one JSON document");
    let plugins = doc["plugins"].as_array().expect("plugins");
    assert_eq!(plugins.len(), 2);
    for p in plugins {
        assert_eq!(p["license"]["status"], "valid", "{p}");
        assert!(
            !p["libraries"].as_array().expect("libraries").is_empty(),
            "{p}"
        );
    }
    // Without a trust store the license is shown but not verified.
    let unverified = run(&["inspect", "plugindemo.zip", "--json"], d);
    ok(&unverified);
    let doc: serde_json::Value = serde_json::from_slice(&unverified.stdout).expect("json");
    assert_eq!(doc["plugins"][0]["license"]["status"], "unverified");
}

#[test]
fn pack_refuses_folders_without_license_or_library() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    vendor_tree(d);
    std::fs::remove_file(d.join("controller/demo/demo.so")).expect("remove");
    let out = run(
        &[
            "pack",
            "--client",
            "client",
            "--controller",
            "controller",
            "-o",
            "p.zip",
        ],
        d,
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("missing demo.lic"), "{err}");
    assert!(err.contains("missing uidemo.lic"), "{err}");
    assert!(err.contains("missing the plugin library demo.so"), "{err}");
    assert!(!d.join("p.zip").exists());
}

#[test]
fn inspect_shows_architecture_and_abi_of_a_real_plugin() {
    use xplugin_tests::build;
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let lib = build::cdylib_path("plugindemo_controller");
    build::plugin_folder(
        &d.join("controller"),
        "plugindemo",
        &lib,
        &build::controller_manifest("plugindemo", "1.0.2", &[], None),
    );
    let ok = |o: &Output| assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    ok(&run(&["keygen", "--out", "keys", "--key-id", "acme-1"], d));
    ok(&run(
        &[
            "license",
            "--key",
            "keys/acme-1.key",
            "--plugin-dir",
            "controller/plugindemo",
            "--side",
            "controller",
            "--devices",
            "any",
            "--versions",
            "[1.0,2.0)",
        ],
        d,
    ));
    ok(&run(
        &["pack", "--controller", "controller", "-o", "p.zip"],
        d,
    ));
    let inspect = run(&["inspect", "p.zip", "--trust", "keys", "--json"], d);
    ok(&inspect);
    let doc: serde_json::Value = serde_json::from_slice(&inspect.stdout).expect("json");
    let plugin = &doc["plugins"][0];
    assert_eq!(plugin["name"], "plugindemo");
    assert_eq!(plugin["version"], "1.0.2");
    assert_eq!(plugin["side"], "controller");
    let library = &plugin["libraries"][0];
    assert_eq!(
        library["file"],
        build::plugin_library_file_name("plugindemo")
    );
    // Our architecture names are Rust's target_arch names.
    let arch = std::env::consts::ARCH;
    assert_eq!(library["arch"], arch, "{library}");
    let abi = library["abi"].as_str().expect("abi");
    assert!(
        abi.starts_with(&format!("{}.", xplugin_abi::XPLUGIN_ABI_MAJOR)),
        "{library}"
    );
    assert_eq!(library["entry_point"], true, "{library}");
    assert_eq!(plugin["license"]["status"], "valid");
    assert_eq!(plugin["license"]["device_checked"], false);
}

#[test]
fn vendor_tool_refuses_the_libraries_a_device_refuses() {
    use xplugin_tests::build;
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let controller = |name: &str, lib: &Path| {
        build::plugin_folder(
            &d.join("controller"),
            name,
            lib,
            &build::controller_manifest(name, "1.0.0", &[], None),
        );
    };
    // A client plugin where a controller plugin belongs, and a library
    // built against ABI 2.
    controller("kind", &build::cdylib_path("uikit_client"));
    controller("abi", &build::c_fixture("abi2", &["FIXTURE_ABI_MAJOR=2"]));
    let out = run(
        &[
            "pack",
            "--controller",
            "controller",
            "-o",
            "p.zip",
            "--json",
        ],
        d,
    );
    assert!(!out.status.success());
    assert!(!d.join("p.zip").exists());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let kind = problems_with(&doc, "library.wrong_kind");
    assert_eq!(kind.len(), 1, "{doc:#}");
    let subject = kind[0]["subject"].as_str().unwrap_or("");
    assert!(subject.ends_with("controller/kind/kind.so"), "{subject}");
    // Wording matters: the fix is moving the plugin, not rebuilding it.
    let message = kind[0]["message"].as_str().unwrap_or("");
    assert!(message.contains("this is a client plugin"), "{message}");
    assert!(!message.contains("rebuild"), "{message}");
    assert_eq!(problems_with(&doc, "library.abi_major").len(), 1, "{doc:#}");
    assert!(
        text(&out.stderr).contains("this is a client plugin"),
        "{}",
        text(&out.stderr)
    );

    // inspect says the same of a folder.
    let inspect = run(&["inspect", "controller/kind", "--json"], d);
    assert!(!inspect.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&inspect.stdout).expect("json");
    assert_eq!(
        problems_with(&doc, "library.wrong_kind").len(),
        1,
        "{doc:#}"
    );
    assert_eq!(doc["plugins"][0]["libraries"][0]["role"], "plugin");

    // A declared architecture other than the library's.
    std::fs::remove_dir_all(d.join("controller")).expect("clean");
    controller("good", &build::cdylib_path("plugindemo_controller"));
    let other = if cfg!(target_arch = "aarch64") {
        "x86_64"
    } else {
        "aarch64"
    };
    let inspect = run(
        &[
            "inspect",
            "controller/good",
            "--controller-arch",
            other,
            "--json",
        ],
        d,
    );
    assert!(!inspect.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&inspect.stdout).expect("json");
    assert_eq!(
        problems_with(&doc, "library.wrong_arch").len(),
        1,
        "{doc:#}"
    );
    let here = std::env::consts::ARCH;
    let inspect = run(
        &[
            "inspect",
            "controller/good",
            "--controller-arch",
            here,
            "--json",
        ],
        d,
    );
    let doc: serde_json::Value = serde_json::from_slice(&inspect.stdout).expect("json");
    assert!(
        problems_with(&doc, "library.wrong_arch").is_empty(),
        "{doc:#}"
    );
}

#[test]
fn license_warns_about_the_files_it_does_not_cover() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    vendor_tree(d);
    assert!(run(&["keygen", "--out", "keys", "--key-id", "acme-1"], d)
        .status
        .success());
    let out = run(&[UIDEMO_LICENSE, &["--json"]].concat(), d);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let warnings = problems_with(&doc, "pack.file_not_covered");
    assert_eq!(warnings.len(), 1, "{doc:#}");
    assert!(
        warnings[0]["subject"]
            .as_str()
            .unwrap_or("")
            .ends_with("i18n/de.txt"),
        "{doc:#}"
    );
    let files = doc["license"]["files"].as_object().expect("files");
    assert!(files.contains_key("uidemo.so") && files.contains_key("xplugin.so"));
    assert!(!files.contains_key("i18n/de.txt"), "{doc:#}");
    assert!(
        text(&out.stderr).contains("warning:") && text(&out.stderr).contains("i18n/de.txt"),
        "{}",
        text(&out.stderr)
    );
}
