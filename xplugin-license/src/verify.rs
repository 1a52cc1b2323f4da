//! Issuing and verifying licenses, and checking a plugin folder's files
//! against a verified license.
//!
//! Order of checks, so that nothing unverified is ever interpreted:
//! size limit → armor → trusted key lookup → signature length → strict
//! Ed25519 signature over `LICENSE_DOMAIN || payload` → duplicate JSON keys
//! → payload parse and well-formedness → plugin, side, version, device and
//! clock against this device (all reported together).

use crate::armor::{armor, dearmor, signed_message, MAX_LICENSE_BYTES, SIGNATURE_BYTES};
use crate::clock::{FAR_FUTURE_SECS, HIGH_WATER_TOLERANCE_SECS, ISSUE_SKEW_SECS};
use crate::coverage::code_kind;
use crate::device::device_matches;
use crate::error::LicenseError;
use crate::error::ThisDevice;
use crate::keys::TrustStore;
use crate::payload::{LicensePayload, Side};
use crate::strict_json::find_duplicate_key;
use crate::timestamp::{system_time, unix_seconds};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use xplugin_model::{Version, VersionReq};

/// What a license is checked against: the plugin being installed or loaded
/// and the facts of this device.
#[derive(Debug, Clone, Copy)]
pub struct VerifyContext<'a> {
    /// The plugin's name (folder name, manifest `name`).
    pub plugin: &'a str,
    /// The side the plugin is installed on.
    pub side: Side,
    /// The plugin's version from its manifest.
    pub plugin_version: &'a Version,
    /// This device's id ([`crate::device_id`]).
    pub device_id: &'a str,
    /// This device's clock.
    pub now: SystemTime,
    /// The latest time this device has recorded
    /// ([`crate::ClockGuard::high_water_mark`]), if any.
    pub high_water_mark: Option<SystemTime>,
}

impl VerifyContext<'_> {
    /// This device's id and clock, as refusals show them
    /// ([`LicenseError::to_problems`]).
    pub fn this_device(&self) -> ThisDevice<'_> {
        ThisDevice {
            id: self.device_id,
            now: self.now,
        }
    }
}

/// A license whose signature, content and binding to this device and plugin
/// have been verified. Only [`verify`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLicense {
    payload: LicensePayload,
}

impl VerifiedLicense {
    /// The verified content.
    pub fn payload(&self) -> &LicensePayload {
        &self.payload
    }

    /// The id of the vendor key that signed it.
    pub fn key_id(&self) -> &str {
        &self.payload.key_id
    }

    /// The license id.
    pub fn license_id(&self) -> &str {
        &self.payload.license_id
    }

    /// The licensed features.
    pub fn features(&self) -> &[String] {
        &self.payload.features
    }

    /// The expiry, or `None` for a perpetual license.
    pub fn expires(&self) -> Option<SystemTime> {
        self.payload.expires.map(system_time)
    }

    /// True when the clock plays no part (no expiry, no not-before).
    pub fn is_perpetual(&self) -> bool {
        self.payload.is_perpetual()
    }
}

/// Signs `payload` with `key` and returns the `.lic` text. The payload's
/// `key_id` must be the id under which devices trust `key`.
///
/// # Errors
///
/// [`LicenseError::InvalidPayload`] listing everything wrong with the payload.
pub fn issue(payload: &LicensePayload, key: &SigningKey) -> Result<String, LicenseError> {
    let problems = payload.problems();
    if !problems.is_empty() {
        return Err(LicenseError::InvalidPayload {
            plugin: payload.plugin.clone(),
            problems,
        });
    }
    let bytes = serde_json::to_vec(payload).map_err(|e| LicenseError::InvalidPayload {
        plugin: payload.plugin.clone(),
        problems: vec![format!("cannot serialize the payload: {e}")],
    })?;
    let signature: Signature = key.sign(&signed_message(&bytes));
    Ok(armor(&payload.key_id, &bytes, &signature.to_bytes()))
}

/// Verifies the signature of a license text against the trust store and
/// returns its content, WITHOUT checking the plugin, side, version, device
/// or clock. For tools (`xplugin-pack inspect`); loaders use [`verify`].
/// `plugin` only names the plugin in error messages.
///
/// # Errors
///
/// [`LicenseError::Oversized`], [`LicenseError::Malformed`],
/// [`LicenseError::UnknownKey`], [`LicenseError::TruncatedSignature`],
/// [`LicenseError::BadSignature`], [`LicenseError::DuplicateKey`] or
/// [`LicenseError::InvalidPayload`].
pub fn check_signature(
    text: &str,
    trust: &TrustStore,
    plugin: &str,
) -> Result<LicensePayload, LicenseError> {
    check_signature_with(text, trust, plugin, &Rehash)
}

/// [`check_signature`], skipping the Ed25519 verification of a signature
/// `cache` remembers ([`FileDigests::signature_verified_before`]).
///
/// # Errors
///
/// As [`check_signature`].
pub fn check_signature_with(
    text: &str,
    trust: &TrustStore,
    plugin: &str,
    cache: &dyn FileDigests,
) -> Result<LicensePayload, LicenseError> {
    if text.len() > MAX_LICENSE_BYTES {
        return Err(LicenseError::Oversized {
            plugin: plugin.to_string(),
            size: text.len() as u64,
            limit: MAX_LICENSE_BYTES as u64,
        });
    }
    let parts = dearmor(text).map_err(|e| LicenseError::Malformed {
        plugin: plugin.to_string(),
        reason: e.to_string(),
    })?;
    let Some(key) = trust.get(&parts.key_id) else {
        return Err(LicenseError::UnknownKey {
            plugin: plugin.to_string(),
            key_id: parts.key_id,
            known: trust.key_ids(),
            trust_dir: trust.dir().map(Path::to_path_buf),
        });
    };
    let Ok(signature) = <[u8; SIGNATURE_BYTES]>::try_from(parts.signature.as_slice()) else {
        return Err(LicenseError::TruncatedSignature {
            plugin: plugin.to_string(),
            key_id: parts.key_id,
            found: parts.signature.len(),
        });
    };
    let message = signed_message(&parts.payload);
    let fingerprint = signature_fingerprint(key, &signature, &message);
    if !cache.signature_verified_before(&fingerprint) {
        let signature = Signature::from_bytes(&signature);
        if key.verify_strict(&message, &signature).is_err() {
            return Err(LicenseError::BadSignature {
                plugin: plugin.to_string(),
                key_id: parts.key_id,
            });
        }
    }
    cache.signature_verified(fingerprint);
    // From here on the bytes are the vendor's.
    let invalid = |problems: Vec<String>| LicenseError::InvalidPayload {
        plugin: plugin.to_string(),
        problems,
    };
    match find_duplicate_key(&parts.payload) {
        Ok(None) => {}
        Ok(Some(key)) => {
            return Err(LicenseError::DuplicateKey {
                plugin: plugin.to_string(),
                key,
            })
        }
        Err(e) => return Err(invalid(vec![format!("the content is not JSON: {e}")])),
    }
    let payload: LicensePayload = serde_json::from_slice(&parts.payload)
        .map_err(|e| invalid(vec![format!("the content is not a license payload: {e}")]))?;
    let mut problems = payload.problems();
    if payload.key_id != parts.key_id {
        problems.push(format!(
            "the key-id line says \"{}\" but the signed content says \"{}\"",
            parts.key_id, payload.key_id
        ));
    }
    if problems.is_empty() {
        Ok(payload)
    } else {
        Err(invalid(problems))
    }
}

/// Verifies a license text for `ctx`: signature against the trust store,
/// then plugin name, side, version range, device binding and (for
/// time-limited licenses only) the clock. All context mismatches are
/// reported together in [`LicenseError::Multiple`].
///
/// Does not look at the plugin's files: call [`verify_files`] next.
///
/// # Errors
///
/// Any [`LicenseError`] from [`check_signature`], and
/// [`LicenseError::WrongPlugin`], [`LicenseError::WrongSide`],
/// [`LicenseError::VersionOutOfRange`], [`LicenseError::WrongDevice`],
/// [`LicenseError::ClockBehindIssue`], [`LicenseError::ClockBehindHighWater`],
/// [`LicenseError::ClockFarFuture`], [`LicenseError::NotYetValid`],
/// [`LicenseError::Expired`].
pub fn verify(
    text: &str,
    trust: &TrustStore,
    ctx: &VerifyContext<'_>,
) -> Result<VerifiedLicense, LicenseError> {
    verify_with(text, trust, ctx, &Rehash)
}

/// [`verify`] with the signature cache of `cache`
/// ([`check_signature_with`]).
///
/// # Errors
///
/// As [`verify`].
pub fn verify_with(
    text: &str,
    trust: &TrustStore,
    ctx: &VerifyContext<'_>,
    cache: &dyn FileDigests,
) -> Result<VerifiedLicense, LicenseError> {
    let payload = check_signature_with(text, trust, ctx.plugin, cache)?;
    let errors = check_context(&payload, ctx);
    match LicenseError::combine(ctx.plugin, errors) {
        Some(e) => Err(e),
        None => Ok(VerifiedLicense { payload }),
    }
}

/// The public key (lowercase hex) that `trust` holds under the key id of
/// `license`: what [`reverify`] compares with later.
pub fn signer_key(license: &VerifiedLicense, trust: &TrustStore) -> Option<String> {
    trust
        .get(&license.payload.key_id)
        .map(|k| lower_hex(k.as_bytes()))
}

/// A license whose signature verified before, re-checked for `ctx` without
/// its text: `payload` must be the content [`verify`] accepted then, and
/// `signer` the public key that verified it ([`signer_key`]). Accepted only
/// when `trust` still holds exactly that key under the payload's key id
/// and the payload still binds to `ctx` (plugin, side, version, device,
/// dates against this clock, as [`verify`] checks them).
///
/// Returns `None` for anything else, without saying why: the caller
/// verifies the license file from the start then, and that verification
/// gives the reasons. The caller must know that the license file is the
/// one `payload` came from (a boot knows it by the file's key, see the
/// host's digest record).
pub fn reverify(
    payload: LicensePayload,
    signer: &str,
    trust: &TrustStore,
    ctx: &VerifyContext<'_>,
) -> Option<VerifiedLicense> {
    let key = trust.get(&payload.key_id)?;
    let versions = VersionReq::parse(&payload.versions);
    if lower_hex(key.as_bytes()) != signer || !payload.problems_given(&versions).is_empty() {
        return None;
    }
    check_context_given(&payload, ctx, versions.as_ref().ok())
        .is_empty()
        .then_some(VerifiedLicense { payload })
}

fn check_context(p: &LicensePayload, ctx: &VerifyContext<'_>) -> Vec<LicenseError> {
    check_context_given(p, ctx, VersionReq::parse(&p.versions).ok().as_ref())
}

/// [`check_context`] with the payload's `versions` already parsed (`None`:
/// they do not parse).
fn check_context_given(
    p: &LicensePayload,
    ctx: &VerifyContext<'_>,
    versions: Option<&VersionReq>,
) -> Vec<LicenseError> {
    let plugin = || ctx.plugin.to_string();
    let device = || ctx.device_id.to_string();
    let mut errors = Vec::new();
    if p.plugin != ctx.plugin {
        errors.push(LicenseError::WrongPlugin {
            plugin: plugin(),
            licensed: p.plugin.clone(),
        });
    }
    if p.side != ctx.side {
        errors.push(LicenseError::WrongSide {
            plugin: plugin(),
            licensed: p.side,
            expected: ctx.side,
        });
    }
    // `problems()` already refused an unparsable range.
    if !versions.is_some_and(|r| r.matches(ctx.plugin_version)) {
        errors.push(LicenseError::VersionOutOfRange {
            plugin: plugin(),
            versions: p.versions.clone(),
            plugin_version: ctx.plugin_version.to_string(),
        });
    }
    if !p.devices.iter().any(|d| device_matches(d, ctx.device_id)) {
        errors.push(LicenseError::WrongDevice {
            plugin: plugin(),
            licensed: p.devices.clone(),
            device_id: device(),
        });
    }
    if !p.is_perpetual() {
        check_clock(p, ctx, &mut errors);
    }
    errors
}

/// The time limits of a license against this device's clock and its
/// high-water mark: a clock behind the issue time or set back is the root
/// cause (nothing else is said about the limits then), a clock far ahead is
/// suspicious.
fn check_clock(p: &LicensePayload, ctx: &VerifyContext<'_>, errors: &mut Vec<LicenseError>) {
    let plugin = || ctx.plugin.to_string();
    let device = || ctx.device_id.to_string();
    let now = unix_seconds(ctx.now);
    let hwm = ctx.high_water_mark.map(unix_seconds);
    if now.saturating_add(ISSUE_SKEW_SECS) < p.issued_at {
        // The root cause; not-before and expiry say nothing with this clock.
        errors.push(LicenseError::ClockBehindIssue {
            plugin: plugin(),
            issued_at: p.issued_at,
            now,
            device_id: device(),
        });
        return;
    }
    if let Some(h) = hwm {
        if now.saturating_add(HIGH_WATER_TOLERANCE_SECS) < h {
            errors.push(LicenseError::ClockBehindHighWater {
                plugin: plugin(),
                high_water: h,
                now,
                device_id: device(),
            });
            return;
        }
    }
    let far_reference = if now > p.issued_at.saturating_add(FAR_FUTURE_SECS) {
        Some((p.issued_at, "the license's issue time"))
    } else {
        hwm.filter(|h| now > h.saturating_add(FAR_FUTURE_SECS))
            .map(|h| (h, "the latest time this device has seen"))
    };
    if let Some(nb) = p.not_before {
        if now < nb {
            errors.push(LicenseError::NotYetValid {
                plugin: plugin(),
                not_before: nb,
                now,
                device_id: device(),
            });
        }
    }
    match (p.expires, far_reference) {
        (Some(exp), far) if now >= exp => errors.push(LicenseError::Expired {
            plugin: plugin(),
            expires: exp,
            now,
            device_id: device(),
            far_future: far.is_some(),
        }),
        (_, Some((reference, reference_kind))) => errors.push(LicenseError::ClockFarFuture {
            plugin: plugin(),
            now,
            reference,
            reference_kind,
            device_id: device(),
        }),
        _ => {}
    }
}

/// Checks the files of the plugin folder `plugin_dir` against a verified
/// license: see [`check_files`].
///
/// # Errors
///
/// As [`check_files`].
pub fn verify_files(license: &VerifiedLicense, plugin_dir: &Path) -> Result<(), LicenseError> {
    check_files(&license.payload, plugin_dir)
}

/// Where [`check_files_with`] gets the SHA-256 of a licensed file.
///
/// The default, [`Rehash`], reads every byte. A host may answer from a
/// record of earlier full verifications instead, keyed by what any change
/// of the file through the file system changes (see `xplugin-host`'s
/// `digests` module); the licensed digest is compared with the answer
/// either way.
///
/// It may also remember signatures it was told verified, by a fingerprint
/// over the signed message, the signature and the public key that verified
/// it (so a changed license, or a trust store without that key, is checked
/// again): a remembered signature is not verified again. Only the Ed25519
/// arithmetic is skipped; the payload is parsed and its binding (plugin,
/// side, versions, device, dates against this clock) checked every time.
pub trait FileDigests: Sync {
    /// The lowercase hex SHA-256 of the regular file at `path`, whose
    /// `symlink_metadata` is `meta`.
    ///
    /// # Errors
    /// The I/O error reading the file.
    fn sha256(&self, path: &Path, meta: &std::fs::Metadata) -> std::io::Result<String>;

    /// True if a signature with this fingerprint verified before.
    fn signature_verified_before(&self, fingerprint: &[u8; 32]) -> bool {
        let _ = fingerprint;
        false
    }

    /// Told that the signature with this fingerprint verified now.
    fn signature_verified(&self, fingerprint: [u8; 32]) {
        let _ = fingerprint;
    }
}

/// The fingerprint [`FileDigests`] remembers a verified signature by.
fn signature_fingerprint(key: &VerifyingKey, signature: &[u8], message: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"xplugin verified signature v1\0");
    h.update(key.as_bytes());
    h.update(signature);
    h.update(message);
    h.finalize().into()
}

/// [`FileDigests`] that hashes every byte, every time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rehash;

impl FileDigests for Rehash {
    fn sha256(&self, path: &Path, _meta: &std::fs::Metadata) -> std::io::Result<String> {
        sha256_file(path)
    }
}

/// Most directory entries walked when looking for unlicensed code.
pub const MAX_WALK_ENTRIES: usize = 10_000;
/// Deepest sub-folder walked when looking for unlicensed code.
pub const MAX_WALK_DEPTH: usize = 8;

/// Checks `plugin_dir` against the `files` of a license: every listed file
/// exists, is a regular file and has the licensed SHA-256 (hashed in 64 KiB
/// blocks, constant memory), and every file of the folder (any depth) that
/// can hold code ([`crate::coverage`]: by content, or by a library name) is
/// listed. All problems are reported together.
///
/// # Errors
///
/// [`LicenseError::FileMissing`], [`LicenseError::FileHashMismatch`],
/// [`LicenseError::FileNotLicensed`], [`LicenseError::FileUnreadable`], or
/// [`LicenseError::Multiple`] of these.
pub fn check_files(payload: &LicensePayload, plugin_dir: &Path) -> Result<(), LicenseError> {
    check_files_with(payload, plugin_dir, &Rehash)
}

/// [`check_files`] with the digests from `digests`.
///
/// # Errors
///
/// As [`check_files`].
pub fn check_files_with(
    payload: &LicensePayload,
    plugin_dir: &Path,
    digests: &dyn FileDigests,
) -> Result<(), LicenseError> {
    check_files_except(payload, plugin_dir, digests, None)
}

/// [`check_files_with`], where the folder's file `parsed_license` (relative
/// name) is the license just read and parsed from it: it is not licensed
/// (it cannot hold its own digest) and, having parsed as a license, it is
/// no code, so it is not read again to look for code.
fn check_files_except(
    payload: &LicensePayload,
    plugin_dir: &Path,
    digests: &dyn FileDigests,
    parsed_license: Option<&str>,
) -> Result<(), LicenseError> {
    let plugin = &payload.plugin;
    let unreadable = |file: &str, reason: &str, source| LicenseError::FileUnreadable {
        plugin: plugin.clone(),
        file: file.to_string(),
        reason: reason.to_string(),
        source,
    };
    let mut errors = Vec::new();
    for (name, expected) in &payload.files {
        let path = join_relative(plugin_dir, name);
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                errors.push(LicenseError::FileMissing {
                    plugin: plugin.clone(),
                    file: name.clone(),
                    dir: plugin_dir.to_path_buf(),
                });
            }
            Err(e) => errors.push(unreadable(name, "cannot read its type", Some(e))),
            Ok(meta) if !meta.is_file() => errors.push(unreadable(
                name,
                "it is not a regular file (a symlink, folder or device)",
                None,
            )),
            Ok(meta) => match digests.sha256(&path, &meta) {
                Ok(actual) if &actual == expected => {}
                Ok(actual) => errors.push(LicenseError::FileHashMismatch {
                    plugin: plugin.clone(),
                    file: name.clone(),
                    expected: expected.clone(),
                    actual,
                }),
                Err(e) => errors.push(unreadable(name, "cannot read it", Some(e))),
            },
        }
    }
    let mut files = Vec::new();
    if let Err(e) = list_files(plugin_dir, "", 0, &mut 0, &mut files) {
        errors.push(unreadable(".", "cannot list the plugin folder", Some(e)));
    }
    for file in files
        .iter()
        .filter(|f| !payload.files.contains_key(*f) && Some(f.as_str()) != parsed_license)
    {
        let name = file.rsplit('/').next().unwrap_or(file);
        match code_kind(&join_relative(plugin_dir, file), name) {
            Ok(None) => {}
            Ok(Some(kind)) => errors.push(LicenseError::FileNotLicensed {
                plugin: plugin.clone(),
                file: file.clone(),
                what: kind.describe().to_string(),
            }),
            Err(e) => errors.push(unreadable(file, "cannot read it", Some(e))),
        }
    }
    match LicenseError::combine(plugin, errors) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `dir` joined with the `/`-separated `relative` path of a license's
/// file list (one component per part, on every platform).
pub fn join_relative(dir: &Path, relative: &str) -> PathBuf {
    let mut path = dir.to_path_buf();
    for part in relative.split('/') {
        path.push(part);
    }
    path
}

/// Collects the `/`-separated relative paths of the regular files under
/// `dir` (symlinks are neither followed nor listed), bounded in entries and
/// depth.
fn list_files(
    dir: &Path,
    prefix: &str,
    depth: usize,
    seen: &mut usize,
    out: &mut Vec<String>,
) -> std::io::Result<()> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        *seen += 1;
        if *seen > MAX_WALK_ENTRIES {
            return Err(std::io::Error::other(format!(
                "more than {MAX_WALK_ENTRIES} entries"
            )));
        }
        entries.push(entry);
    }
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let relative = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        // file_type() does not follow symlinks: a symlinked folder is not walked.
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if depth + 1 > MAX_WALK_DEPTH {
                return Err(std::io::Error::other(format!(
                    "folders nested deeper than {MAX_WALK_DEPTH} levels"
                )));
            }
            list_files(&entry.path(), &relative, depth + 1, seen, out)?;
        } else if kind.is_file() {
            out.push(relative);
        }
    }
    Ok(())
}

/// Lowercase hex SHA-256 of a file, read in 64 KiB blocks.
///
/// # Errors
///
/// The I/O error of opening or reading the file.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    sha256_reader(&mut std::fs::File::open(path)?)
}

/// Lowercase hex SHA-256 of everything `r` yields, read in 64 KiB blocks.
///
/// # Errors
///
/// The I/O error of reading.
pub fn sha256_reader(r: &mut impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok(lower_hex(&hasher.finalize()))
}

/// `bytes` as lowercase hex, two digits per byte.
pub fn lower_hex(bytes: &[u8]) -> String {
    // By table, not `write!("{b:02x}")`: a boot compares a key and a digest
    // per plugin this way, and the formatter costs ten times more.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Reads a `.lic` file with the size limit applied before reading it all.
/// `plugin` names the plugin in errors.
///
/// # Errors
///
/// [`LicenseError::Unreadable`], [`LicenseError::Oversized`],
/// [`LicenseError::Empty`] for an empty (or all white space) file, or
/// [`LicenseError::Malformed`] when the file is not UTF-8 text.
pub fn read_license_file(path: &Path, plugin: &str) -> Result<String, LicenseError> {
    let unreadable = |source| LicenseError::Unreadable {
        plugin: plugin.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let limit = MAX_LICENSE_BYTES as u64;
    let size = file.metadata().map_err(unreadable)?.len();
    if size > limit {
        return Err(LicenseError::Oversized {
            plugin: plugin.to_string(),
            size,
            limit,
        });
    }
    // Sized from the stat: without it `read_to_end` probes in 32-byte reads
    // and grows (seven reads for a 769-byte license, at every boot).
    let mut raw = Vec::with_capacity(size as usize + 1);
    file.take(limit + 1)
        .read_to_end(&mut raw)
        .map_err(unreadable)?;
    if raw.len() as u64 > limit {
        return Err(LicenseError::Oversized {
            plugin: plugin.to_string(),
            size: raw.len() as u64,
            limit,
        });
    }
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(LicenseError::Empty {
            plugin: plugin.to_string(),
            path: path.to_path_buf(),
            size: raw.len() as u64,
        });
    }
    String::from_utf8(raw).map_err(|_| LicenseError::Malformed {
        plugin: plugin.to_string(),
        reason: "the file is not text (not UTF-8)".to_string(),
    })
}

/// The whole check of an installed or staged plugin folder: reads
/// `plugin_dir/PLUGIN.lic`, [`verify`]s it for `ctx` and then
/// [`verify_files`]. This is what an import or a boot calls before any
/// library of the plugin is opened.
///
/// # Errors
///
/// Any [`LicenseError`].
pub fn verify_plugin_dir(
    plugin_dir: &Path,
    trust: &TrustStore,
    ctx: &VerifyContext<'_>,
) -> Result<VerifiedLicense, LicenseError> {
    verify_plugin_dir_with(plugin_dir, trust, ctx, &Rehash)
}

/// [`verify_plugin_dir`] with the file digests from `digests`.
///
/// # Errors
///
/// As [`verify_plugin_dir`].
pub fn verify_plugin_dir_with(
    plugin_dir: &Path,
    trust: &TrustStore,
    ctx: &VerifyContext<'_>,
    digests: &dyn FileDigests,
) -> Result<VerifiedLicense, LicenseError> {
    let file = format!("{}.lic", ctx.plugin);
    let text = read_license_file(&plugin_dir.join(&file), ctx.plugin)?;
    let license = verify_with(&text, trust, ctx, digests)?;
    check_files_except(&license.payload, plugin_dir, digests, Some(&file))?;
    Ok(license)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::armor::Armored;
    use crate::keys::generate_keypair;
    use crate::timestamp::system_time;

    const DEVICE: &str = "0123abcd-0123abcd-0123abcd-0123abcd";
    const DAY: u64 = 86_400;
    const ISSUED: u64 = 1_790_000_000;

    fn payload(key_id: &str) -> LicensePayload {
        LicensePayload {
            format: 1,
            key_id: key_id.into(),
            license_id: "lic-1".into(),
            plugin: "demo".into(),
            side: Side::Controller,
            versions: ">=1.0, <2".into(),
            devices: vec![DEVICE.into()],
            issued_at: ISSUED,
            not_before: None,
            expires: None,
            features: vec!["vision".into()],
            files: [
                ("demo.json".to_string(), "a".repeat(64)),
                ("demo.so".to_string(), "b".repeat(64)),
            ]
            .into_iter()
            .collect(),
        }
    }

    fn setup() -> (SigningKey, TrustStore) {
        let (key, id) = generate_keypair(Some("vendor-a")).expect("keygen");
        let mut trust = TrustStore::new();
        trust.insert(&id, key.verifying_key()).expect("trust");
        (key, trust)
    }

    fn check(text: &str, trust: &TrustStore, now: u64) -> Result<VerifiedLicense, LicenseError> {
        let version = Version::parse("1.2.0").expect("version");
        let ctx = VerifyContext {
            plugin: "demo",
            side: Side::Controller,
            plugin_version: &version,
            device_id: DEVICE,
            now: system_time(now),
            high_water_mark: None,
        };
        verify(text, trust, &ctx)
    }

    #[test]
    fn issued_license_verifies_and_perpetual_ignores_clock() {
        let (key, trust) = setup();
        let text = issue(&payload("vendor-a"), &key).expect("issue");
        let ok = check(&text, &trust, ISSUED + DAY).expect("verifies");
        assert_eq!(ok.payload(), &payload("vendor-a"));
        // A perpetual license does not care that the clock is in 1970.
        assert!(check(&text, &trust, 0).is_ok());
    }

    #[test]
    fn flipped_payload_bit_is_a_bad_signature() {
        let (key, trust) = setup();
        let text = issue(&payload("vendor-a"), &key).expect("issue");
        let mut parts: Armored = dearmor(&text).expect("dearmor");
        if let Some(b) = parts.payload.get_mut(10) {
            *b ^= 0x01;
        }
        let forged = armor(&parts.key_id, &parts.payload, &parts.signature);
        let err = check(&forged, &trust, ISSUED).expect_err("refused");
        assert!(matches!(err, LicenseError::BadSignature { .. }), "{err}");
        assert!(err.to_string().contains("does not verify"), "{err}");
    }

    #[test]
    fn a_reverified_license_needs_the_same_key_and_binds_to_this_boot() {
        let (key, trust) = setup();
        let mut p = payload("vendor-a");
        p.expires = Some(ISSUED + 10 * DAY);
        let text = issue(&p, &key).expect("issue");
        let verified = check(&text, &trust, ISSUED + DAY).expect("verifies");
        let signer = signer_key(&verified, &trust).expect("the key is trusted");
        let version = Version::parse("1.2.0").expect("version");
        let ctx = |device: &'static str, now: u64| VerifyContext {
            plugin: "demo",
            side: Side::Controller,
            plugin_version: &version,
            device_id: device,
            now: system_time(now),
            high_water_mark: None,
        };
        let again = reverify(
            verified.payload().clone(),
            &signer,
            &trust,
            &ctx(DEVICE, ISSUED + 2 * DAY),
        );
        assert_eq!(again.as_ref().map(VerifiedLicense::payload), Some(&p));
        // Past its expiry, on another device: refused (the caller then
        // verifies the file in full and says why).
        assert!(reverify(p.clone(), &signer, &trust, &ctx(DEVICE, ISSUED + 11 * DAY)).is_none());
        let other_device = "fedcba98-fedcba98-fedcba98-fedcba98";
        assert!(reverify(p.clone(), &signer, &trust, &ctx(other_device, ISSUED + DAY)).is_none());
        // Another key under the same id, or none: refused.
        let mut replaced = TrustStore::new();
        let (k2, _) = generate_keypair(Some("vendor-a")).expect("keygen");
        replaced
            .insert("vendor-a", k2.verifying_key())
            .expect("trust");
        assert!(reverify(p.clone(), &signer, &replaced, &ctx(DEVICE, ISSUED + DAY)).is_none());
        assert!(reverify(
            p.clone(),
            &signer,
            &TrustStore::new(),
            &ctx(DEVICE, ISSUED + DAY)
        )
        .is_none());
    }

    /// Remembers every fingerprint it is told about.
    #[derive(Default)]
    struct Remember(std::sync::Mutex<Vec<[u8; 32]>>);

    impl FileDigests for Remember {
        fn sha256(&self, path: &Path, _meta: &std::fs::Metadata) -> std::io::Result<String> {
            sha256_file(path)
        }
        fn signature_verified_before(&self, fingerprint: &[u8; 32]) -> bool {
            self.0.lock().is_ok_and(|v| v.contains(fingerprint))
        }
        fn signature_verified(&self, fingerprint: [u8; 32]) {
            if let Ok(mut v) = self.0.lock() {
                v.push(fingerprint);
            }
        }
    }

    #[test]
    fn a_remembered_signature_covers_only_the_same_bytes_and_key() {
        let (key, trust) = setup();
        let version = Version::parse("1.2.0").expect("version");
        let ctx = VerifyContext {
            plugin: "demo",
            side: Side::Controller,
            plugin_version: &version,
            device_id: DEVICE,
            now: system_time(ISSUED + DAY),
            high_water_mark: None,
        };
        let text = issue(&payload("vendor-a"), &key).expect("issue");
        let cache = Remember::default();
        verify_with(&text, &trust, &ctx, &cache).expect("verifies");
        assert_eq!(cache.0.lock().map(|v| v.len()).unwrap_or(0), 1);
        // Remembered: still verifies (and the binding is still checked).
        verify_with(&text, &trust, &ctx, &cache).expect("verifies again");
        let later = VerifyContext {
            device_id: "ffffffff-ffffffff-ffffffff-ffffffff",
            ..ctx
        };
        let err = verify_with(&text, &trust, &later, &cache).expect_err("binding checked");
        assert!(matches!(err, LicenseError::WrongDevice { .. }), "{err}");
        // Changed bytes are another fingerprint: verified, and refused.
        let mut parts: Armored = dearmor(&text).expect("dearmor");
        if let Some(b) = parts.payload.get_mut(10) {
            *b ^= 0x01;
        }
        let forged = armor(&parts.key_id, &parts.payload, &parts.signature);
        let err = verify_with(&forged, &trust, &ctx, &cache).expect_err("refused");
        assert!(matches!(err, LicenseError::BadSignature { .. }), "{err}");
        // Another key under the same id: another fingerprint.
        let (other, _) = generate_keypair(Some("vendor-a")).expect("keygen");
        let mut swapped = TrustStore::new();
        swapped
            .insert("vendor-a", other.verifying_key())
            .expect("trust");
        let err = verify_with(&text, &swapped, &ctx, &cache).expect_err("refused");
        assert!(matches!(err, LicenseError::BadSignature { .. }), "{err}");
    }

    #[test]
    fn expiry_and_device_are_reported_together() {
        let (key, trust) = setup();
        let mut p = payload("vendor-a");
        p.devices = vec!["ffffffff-ffffffff-ffffffff-ffffffff".into()];
        p.expires = Some(ISSUED + 10 * DAY);
        let text = issue(&p, &key).expect("issue");
        let err = check(&text, &trust, ISSUED + 20 * DAY).expect_err("refused");
        let causes = err.causes();
        assert_eq!(causes.len(), 2, "{err}");
        assert!(matches!(
            causes.first(),
            Some(LicenseError::WrongDevice { .. })
        ));
        assert!(matches!(causes.get(1), Some(LicenseError::Expired { .. })));
        let text = err.to_string();
        assert!(
            text.contains("ffffffff-ffffffff") && text.contains(DEVICE),
            "{text}"
        );
        let device = ThisDevice {
            id: DEVICE,
            now: system_time(ISSUED + 20 * DAY),
        };
        let problems = err.to_problems("controller plugin \"demo\"", &device);
        let codes: Vec<_> = problems.0.iter().map(|p| p.code).collect();
        assert_eq!(
            codes,
            [
                xplugin_model::ProblemCode::LicenseDeviceMismatch,
                xplugin_model::ProblemCode::LicenseExpired
            ]
        );
        // The device mismatch names the device; the clock is added to it.
        assert!(
            problems.0[0].message.contains("this device's clock says"),
            "{problems}"
        );
    }

    #[test]
    fn issue_refuses_an_invalid_payload() {
        let (key, _) = setup();
        let mut p = payload("vendor-a");
        p.versions = "~1.0".into();
        assert!(matches!(
            issue(&p, &key),
            Err(LicenseError::InvalidPayload { .. })
        ));
    }
}
