//! Every check of one plugin folder that must pass before any of its code
//! runs: manifest, compatibility, license (signature, binding, file hashes)
//! and the library files (architecture, ABI tag, kind). Import runs them on
//! the staged package; boot runs them again on the installed files, so a file
//! changed on disk after install is caught.
//!
//! All problems of a plugin are collected; nothing stops at the first.

use crate::config::HostConfig;
use crate::device::TrustStoreError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use xplugin_abi::{XPLUGIN_KIND_CLIENT, XPLUGIN_KIND_CONTROLLER, XPLUGIN_KIND_RUNTIME};
use xplugin_license::timestamp::{format_rfc3339, unix_seconds};
use xplugin_license::{ClockGuard, DeviceIdError, ThisDevice, TrustStore, VerifyContext};
use xplugin_model::compat;
use xplugin_model::manifest::{parse_manifest, Manifest, Side};
use xplugin_model::{error_chain, Problem, ProblemCode, Problems, Version};
use xplugin_package::binary::{check_library_for, inspect_library, Arch, BinaryError, LibraryInfo};

/// Where the files being checked come from, which decides how problems
/// name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    /// Installed files (boot): named by their path, which stays.
    Installed,
    /// Files unpacked from a package into staging (import): named by their
    /// package entry, `plugindemo.zip: controller.zip: alpha/alpha.so`,
    /// never by the staging path, which is gone once the command returns.
    Package {
        /// The inner archive, `plugindemo.zip: controller.zip`.
        label: &'a str,
    },
}

/// Facts of this host that the checks need.
pub struct CheckContext<'a> {
    /// This host's HMI (client) or controller version.
    pub host_version: &'a Version,
    /// This device's id (what licenses are bound to).
    pub device_id: &'a str,
    /// Trusted vendor keys, or why there are none (every license is then
    /// refused, unless `allow_unlicensed`).
    pub trust: Result<&'a TrustStore, &'a TrustStoreError>,
    /// Development mode: license problems become warnings.
    pub allow_unlicensed: bool,
    /// This device's clock.
    pub now: SystemTime,
    /// Latest time this device has seen (clock high-water mark).
    pub high_water_mark: Option<SystemTime>,
    /// How problems name the files checked.
    pub origin: Origin<'a>,
    /// The architecture the libraries must be built for: this computer's,
    /// except when the pendant checks a controller part offline (then the
    /// configured `controller_arch`).
    pub arch: Arch,
    /// Said with a wrong architecture when [`CheckContext::arch`] is not
    /// this computer's (where it came from).
    pub arch_hint: Option<&'a str>,
    /// Where the licensed files' digests come from: hashing every byte
    /// ([`xplugin_license::Rehash`]) or a boot's digest record
    /// ([`crate::digests::DigestRecord`]).
    pub digests: &'a dyn xplugin_license::FileDigests,
    /// The boot's digest record, whose folder verdicts
    /// ([`crate::verdicts`]) the checks reuse and keep; `None` (an import,
    /// a check of staged files) checks every folder in full.
    pub verdicts: Option<&'a crate::digests::DigestRecord>,
}

impl CheckContext<'_> {
    /// The subject naming file `relative` (`/`-separated) of plugin folder
    /// `dir` named `name`, as [`Origin`] says.
    pub fn file_subject(&self, dir: &Path, name: &str, relative: &str) -> String {
        match self.origin {
            Origin::Installed => dir.join(relative).display().to_string(),
            Origin::Package { label } => format!("{label}: {name}/{relative}"),
        }
    }

    /// This device's id and clock, as license refusals show them.
    pub fn this_device(&self) -> ThisDevice<'_> {
        ThisDevice {
            id: self.device_id,
            now: self.now,
        }
    }
}

/// This host's facts for the checks, gathered once per import or boot:
/// device id, trusted keys, clock and its high-water mark.
pub struct HostFacts {
    /// This device's id, or why it cannot be determined.
    pub device: Result<String, DeviceIdError>,
    trust: Result<TrustStore, TrustStoreError>,
    clock: Option<ClockGuard>,
    allow_unlicensed: bool,
    now: SystemTime,
}

impl HostFacts {
    /// Reads the device id, the trust store and the clock high-water mark of
    /// install root `root` as `config` names them.
    pub fn gather(config: &HostConfig, root: &Path) -> HostFacts {
        let clock = match ClockGuard::load(&root.join("state").join("clock-hwm")) {
            Ok(c) => Some(c),
            Err(e) => {
                // Without the mark, a clock set back goes unnoticed: say so.
                log::error!(
                    "clock high-water mark unusable, expiring licenses are checked against the clock alone: {}",
                    error_chain(&e)
                );
                None
            }
        };
        HostFacts {
            device: crate::device::device_identity(config),
            trust: crate::device::trust_store(config),
            clock,
            allow_unlicensed: config.allow_unlicensed,
            now: SystemTime::now(),
        }
    }

    /// The check context for a host of `host_version`, for installed files
    /// (set [`CheckContext::origin`] for a package).
    pub fn context<'a>(&'a self, host_version: &'a Version) -> CheckContext<'a> {
        CheckContext {
            host_version,
            device_id: self.device.as_deref().unwrap_or("unknown"),
            trust: self.trust.as_ref(),
            allow_unlicensed: self.allow_unlicensed,
            now: self.now,
            high_water_mark: self.clock.as_ref().and_then(|c| c.high_water_mark()),
            origin: Origin::Installed,
            arch: Arch::host(),
            arch_hint: None,
            digests: &xplugin_license::Rehash,
            verdicts: None,
        }
    }

    /// Records the time of this check as the clock high-water mark (the
    /// guard refuses implausible clocks); failures are logged.
    pub fn record_clock(&mut self) {
        if let Some(c) = self.clock.as_mut() {
            match c.record(self.now) {
                Ok(true) => {
                    // The mark is rewritten by rename: a root command would
                    // leave a file the daemon's user cannot replace.
                    if let Some(root) = c.path().parent().and_then(Path::parent) {
                        xplugin_store::adopt_into(root, c.path());
                    }
                }
                Ok(false) => {}
                Err(e) => log::warn!(
                    "cannot record the clock high-water mark: {}",
                    error_chain(&e)
                ),
            }
        }
    }
}

/// License outcome of one plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LicenseStatus {
    /// Signature, binding and file hashes verified.
    Verified {
        /// License id.
        license_id: String,
        /// Vendor key id.
        key_id: String,
        /// Expiry (unix seconds), `None` = perpetual.
        expires_unix: Option<u64>,
    },
    /// Not verified, accepted because `allow_unlicensed` is on.
    Unlicensed {
        /// Why it did not verify.
        reason: String,
    },
    /// Refused.
    Refused {
        /// Why.
        reason: String,
    },
    /// Not checked because the manifest could not be read.
    NotChecked,
}

impl std::fmt::Display for LicenseStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LicenseStatus::Verified { license_id, .. } => {
                write!(f, "license {license_id} verified")
            }
            LicenseStatus::Unlicensed { .. } => f.write_str("UNLICENSED (development mode)"),
            LicenseStatus::Refused { .. } => f.write_str("license refused"),
            LicenseStatus::NotChecked => f.write_str("license not checked"),
        }
    }
}

/// Manifests of installed plugin folders (`(name, folder)`, as
/// `Generation::plugin_dirs` lists them) that parse. Installed manifests were
/// checked at import; one that no longer parses is left out here and reported
/// by the boot's own checks.
pub fn installed_manifests(
    folders: impl IntoIterator<Item = (String, PathBuf)>,
    side: Side,
) -> BTreeMap<String, Manifest> {
    folders
        .into_iter()
        .filter_map(|(name, dir)| {
            let bytes = read_bounded(&dir.join(format!("{name}.json")), 1 << 20).ok()?;
            let manifest = parse_manifest(side, &name, &bytes).manifest?;
            Some((name, manifest))
        })
        .collect()
}

/// A library that passed the file checks of [`check_plugin_file`] and may be
/// opened. The only way to get one is through that check, so code that opens
/// libraries cannot skip it.
#[derive(Debug, Clone)]
pub struct CheckedLibrary {
    path: PathBuf,
    kind: u32,
    info: LibraryInfo,
}

impl CheckedLibrary {
    /// A library whose headers were read and checked at an earlier boot,
    /// the file unchanged since ([`crate::verdicts`]), and checked again
    /// on those headers by the caller ([`check_library_for`]).
    pub(crate) fn recorded(path: PathBuf, kind: u32, info: LibraryInfo) -> CheckedLibrary {
        CheckedLibrary { path, kind, info }
    }

    /// The library file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the file says about itself.
    pub fn info(&self) -> &LibraryInfo {
        &self.info
    }

    /// The `XPLUGIN_KIND_*` the file was checked to be.
    pub fn kind(&self) -> u32 {
        self.kind
    }
}

/// Inspects `path` without loading it and checks architecture, ABI tag and
/// kind (`XPLUGIN_KIND_*`).
///
/// # Errors
/// [`BinaryError`] naming the file, what was expected and what was found.
pub fn check_plugin_file(path: &Path, kind: u32) -> Result<CheckedLibrary, BinaryError> {
    check_plugin_file_for(path, kind, &Arch::host())
}

/// [`check_plugin_file`] for architecture `arch`: the pendant checking a
/// controller part offline checks for the controller's architecture. A
/// library checked for another architecture is never opened here (only
/// boot opens libraries, and boot checks for this computer's).
///
/// # Errors
/// As [`check_plugin_file`].
pub fn check_plugin_file_for(
    path: &Path,
    kind: u32,
    arch: &Arch,
) -> Result<CheckedLibrary, BinaryError> {
    let info = inspect_library(path)?;
    check_library_for(path, &info, kind, arch)?;
    Ok(CheckedLibrary {
        path: path.to_path_buf(),
        kind,
        info,
    })
}

/// The result of checking one plugin folder.
#[derive(Debug, Clone, Serialize)]
pub struct PluginCheck {
    /// Folder name (= plugin name when the manifest agrees).
    pub name: String,
    /// Client or controller.
    pub side: Side,
    /// The folder.
    pub dir: PathBuf,
    /// The parsed manifest, when it parsed.
    #[serde(skip)]
    pub manifest: Option<Manifest>,
    /// The library for this platform, checked (not loaded).
    #[serde(skip)]
    pub library: Option<CheckedLibrary>,
    /// The client ABI runtime for this platform, checked (not loaded).
    #[serde(skip)]
    pub runtime: Option<CheckedLibrary>,
    /// True when the plugin ships no library for this platform (e.g. only a
    /// `.dll` on a Linux pendant): not an error of the package, the plugin is
    /// just not loadable here.
    pub no_platform_library: bool,
    /// License outcome.
    pub license: LicenseStatus,
    /// True if the plugin is incompatible with this host's version.
    pub incompatible: bool,
    /// Everything found, errors and warnings.
    pub problems: Problems,
}

impl PluginCheck {
    /// True if nothing refuses the plugin.
    pub fn ok(&self) -> bool {
        !self.problems.has_errors()
    }

    /// The first error as one line, for the resolver's failure reason.
    pub fn failure(&self) -> Option<String> {
        self.problems.errors().next().map(|p| match &p.field {
            Some(f) => format!("{} (field \"{f}\")", p.message),
            None => p.message.clone(),
        })
    }
}

/// File name of a plugin's library on this platform.
pub fn library_file_name(name: &str) -> String {
    if cfg!(windows) {
        format!("{name}.dll")
    } else {
        format!("{name}.so")
    }
}

/// Candidate names of the client ABI runtime on this platform.
pub fn runtime_file_names() -> &'static [&'static str] {
    if cfg!(windows) {
        &["xplugin.dll"]
    } else {
        &["libxplugin.so", "xplugin.so"]
    }
}

/// `client plugin "x"` / `controller plugin "x"`.
pub fn subject(side: Side, name: &str) -> String {
    match side {
        Side::Client => format!("client plugin \"{name}\""),
        Side::Controller => format!("controller plugin \"{name}\""),
    }
}

fn binary_problem(subject: &str, e: &BinaryError, ctx: &CheckContext<'_>) -> Problem {
    match (e, ctx.arch_hint) {
        (BinaryError::WrongArch { .. }, Some(note)) => {
            Problem::from_error(e.code(), subject, e, format!("{} ({note})", e.hint()))
        }
        _ => Problem::from_error(e.code(), subject, e, e.hint()),
    }
}

/// A plugin folder's manifest, read and parsed: the first of the checks of
/// [`check_plugin_folder`], on its own so that a boot can resolve the
/// dependency graph on the manifests while the rest of the checks run
/// ([`check_plugin_folder_with`] takes it from there, so both see the same
/// bytes).
#[derive(Debug, Clone)]
pub struct ManifestRead {
    /// The manifest, when it parsed.
    pub manifest: Option<Manifest>,
    /// What reading and parsing it found.
    pub problems: Problems,
}

/// Most bytes of a manifest read.
const MANIFEST_LIMIT: u64 = 1 << 20;

/// Reads and parses the manifest `NAME.json` of plugin folder `dir`.
pub fn read_plugin_manifest(
    dir: &Path,
    name: &str,
    side: Side,
    ctx: &CheckContext<'_>,
) -> ManifestRead {
    let file = format!("{name}.json");
    match read_bounded(&dir.join(&file), MANIFEST_LIMIT) {
        Ok(bytes) => parsed_manifest(side, name, &bytes),
        Err(e) => ManifestRead {
            manifest: None,
            problems: Problems(vec![Problem::new(
                ProblemCode::ManifestUnreadable,
                ctx.file_subject(dir, name, &file),
                format!("cannot read the manifest: {e}"),
                "re-import the package",
            )]),
        },
    }
}

fn parsed_manifest(side: Side, name: &str, bytes: &[u8]) -> ManifestRead {
    let outcome = parse_manifest(side, name, bytes);
    ManifestRead {
        manifest: outcome.manifest,
        problems: outcome.problems,
    }
}

/// Runs every check on plugin folder `dir` named `name` of `side`: manifest,
/// compatibility, license, libraries. Nothing is loaded.
///
/// With a previous verdict on the folder ([`crate::verdicts`]) whose keys
/// all hold, the manifest is read through the folder the keys were taken
/// from, and its own key from the file read: the bytes parsed are the ones
/// the verdict's key describes.
pub fn check_plugin_folder(
    dir: &Path,
    name: &str,
    side: Side,
    ctx: &CheckContext<'_>,
) -> PluginCheck {
    let keyed = match (ctx.verdicts, ctx.trust) {
        (Some(record), Ok(_)) => crate::verdicts::keyed(record, dir, &format!("{name}.json")),
        _ => None,
    };
    if let Some(keyed) = keyed {
        if let Some(bytes) = keyed.read_manifest(&format!("{name}.json"), MANIFEST_LIMIT) {
            let read = parsed_manifest(side, name, &bytes);
            return check_plugin_folder_with(dir, name, side, ctx, read, Some(keyed));
        }
    }
    let manifest = read_plugin_manifest(dir, name, side, ctx);
    check_plugin_folder_with(dir, name, side, ctx, manifest, None)
}

/// The checks of [`check_plugin_folder`] after the manifest: compatibility,
/// license, libraries, on the manifest `read` from the folder. With
/// `keyed`, the folder's previous verdict is reused if all else it rests
/// on holds; otherwise (or without it) the full check runs. Nothing is
/// loaded.
fn check_plugin_folder_with(
    dir: &Path,
    name: &str,
    side: Side,
    ctx: &CheckContext<'_>,
    read: ManifestRead,
    keyed: Option<crate::verdicts::Keyed>,
) -> PluginCheck {
    let mut check = PluginCheck {
        name: name.to_string(),
        side,
        dir: dir.to_path_buf(),
        manifest: read.manifest,
        library: None,
        runtime: None,
        no_platform_library: false,
        license: LicenseStatus::NotChecked,
        incompatible: false,
        problems: read.problems,
    };
    let mut verified = None;
    if let Some(m) = &check.manifest {
        if let Err(e) = compat::check(m, ctx.host_version) {
            check.incompatible = true;
            check.problems.push(e.to_problem());
        }
        if let (true, Some(keyed)) = (check.problems.0.is_empty(), keyed) {
            if let Some(reused) = reuse_verdict(dir, name, m, side, ctx, keyed) {
                check.license = verified_status(&reused.license);
                check.library = Some(reused.library);
                check.runtime = reused.runtime;
                return check;
            }
        }
    }
    // The folder's keys before the full check, for its verdict.
    let before = match (ctx.verdicts, &check.manifest, ctx.trust) {
        (Some(record), Some(_), Ok(_)) if record.keeps_verdicts() => {
            crate::verdicts::walk(dir).ok()
        }
        _ => None,
    };
    if let Some(m) = &check.manifest {
        // License: before any library is touched beyond its headers.
        let (status, license) = check_license(dir, m, side, ctx, &mut check.problems);
        check.license = status;
        verified = license;
    }
    check_libraries(&mut check, ctx);
    if let (Some(record), Some(before), Some(license), Some(library), Ok(trust)) =
        (ctx.verdicts, before, &verified, &check.library, ctx.trust)
    {
        let runtime_ok = side == Side::Controller || check.runtime.is_some();
        if check.problems.0.is_empty() && runtime_ok {
            crate::verdicts::keep(
                record,
                dir,
                before,
                license,
                trust,
                library,
                check.runtime.as_ref(),
            );
        }
    }
    check
}

/// The verdict an earlier boot kept for `dir` ([`crate::verdicts`]), when
/// everything it rests on still holds.
fn reuse_verdict(
    dir: &Path,
    name: &str,
    m: &Manifest,
    side: Side,
    ctx: &CheckContext<'_>,
    keyed: crate::verdicts::Keyed,
) -> Option<crate::verdicts::Reused> {
    let (record, Ok(trust)) = (ctx.verdicts?, ctx.trust) else {
        return None;
    };
    let (lib_file, kind) = expected_library(side, name);
    let runtimes = match side {
        Side::Client => runtime_file_names(),
        Side::Controller => &[][..],
    };
    let vctx = verify_context(m, side, ctx);
    let expected = crate::verdicts::Expected {
        lib_file: &lib_file,
        kind,
        runtimes,
    };
    crate::verdicts::reuse(record, dir, keyed, &expected, trust, &vctx, ctx)
}

/// What the license of the plugin of manifest `m` on `side` is checked
/// against: the plugin and this device's facts.
fn verify_context<'a>(m: &'a Manifest, side: Side, ctx: &'a CheckContext<'_>) -> VerifyContext<'a> {
    VerifyContext {
        plugin: &m.name,
        side,
        plugin_version: &m.version,
        device_id: ctx.device_id,
        now: ctx.now,
        high_water_mark: ctx.high_water_mark,
    }
}

/// The status of a license that verified.
fn verified_status(l: &xplugin_license::VerifiedLicense) -> LicenseStatus {
    LicenseStatus::Verified {
        license_id: l.license_id().to_string(),
        key_id: l.key_id().to_string(),
        expires_unix: l
            .expires()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs()),
    }
}

/// The library file a plugin `name` of `side` must ship for this platform,
/// and the `XPLUGIN_KIND_*` it must be. Controllers run Linux: a
/// controller part is `.so` whichever computer checks it (a Windows
/// pendant checking offline too).
fn expected_library(side: Side, name: &str) -> (String, u32) {
    match side {
        Side::Client => (library_file_name(name), XPLUGIN_KIND_CLIENT),
        Side::Controller => (format!("{name}.so"), XPLUGIN_KIND_CONTROLLER),
    }
}

/// The libraries for this platform: headers only.
fn check_libraries(check: &mut PluginCheck, ctx: &CheckContext<'_>) {
    let (dir, name) = (check.dir.clone(), check.name.clone());
    let (lib_name, kind) = expected_library(check.side, &name);
    let lib_path = dir.join(&lib_name);
    let file_subject = |file: &str| ctx.file_subject(&dir, &name, file);
    // A client plugin's build for the other platform (a package may carry
    // both): a folder with only that one is installed but cannot load here.
    let (other, other_platform, this_platform) = if cfg!(windows) {
        (format!("{name}.so"), "Linux", "Windows")
    } else {
        (format!("{name}.dll"), "Windows", "Linux")
    };
    if lib_path.is_file() {
        match check_plugin_file_for(&lib_path, kind, &ctx.arch) {
            Ok(l) => check.library = Some(l),
            Err(e) => check
                .problems
                .push(binary_problem(&file_subject(&lib_name), &e, ctx)),
        }
        if check.side == Side::Client {
            let runtime = runtime_file_names().iter().find(|n| dir.join(n).is_file());
            match runtime {
                Some(rt) => {
                    match check_plugin_file_for(&dir.join(rt), XPLUGIN_KIND_RUNTIME, &ctx.arch) {
                        Ok(l) => check.runtime = Some(l),
                        Err(e) => check
                            .problems
                            .push(binary_problem(&file_subject(rt), &e, ctx)),
                    }
                }
                None => check.problems.push(Problem::new(
                    ProblemCode::LibraryRuntimeMissing,
                    subject(check.side, &name),
                    format!(
                        "no xplugin ABI runtime next to {lib_name}: expected one of {}",
                        runtime_file_names().join(", ")
                    ),
                    "ship the xplugin runtime library the plugin was built against in the plugin folder",
                )),
            }
        }
    } else if check.side == Side::Client && dir.join(&other).is_file() {
        check.no_platform_library = true;
        check.problems.push(Problem::new(
            ProblemCode::LibraryNoPlatformBuild,
            subject(check.side, &name),
            format!(
                "no library for this platform: the plugin ships {other} ({other_platform}) but no {lib_name}"
            ),
            format!("ask the vendor for a {this_platform} build if the plugin is needed on this pendant"),
        ));
    } else {
        check.problems.push(Problem::new(
            ProblemCode::LibraryMissing,
            file_subject(&lib_name),
            format!("library {lib_name} is missing"),
            "re-import the package",
        ));
    }
}

/// Verifies the plugin's license; its problems (each with this device's id
/// and clock) go to `problems`, as warnings with `allow_unlicensed`.
fn check_license(
    dir: &Path,
    m: &Manifest,
    side: Side,
    ctx: &CheckContext<'_>,
    problems: &mut Problems,
) -> (LicenseStatus, Option<xplugin_license::VerifiedLicense>) {
    let subj = subject(side, &m.name);
    let refusal = match ctx.trust {
        Err(e) => no_trusted_keys(&subj, e, ctx),
        Ok(trust) => {
            let vctx = verify_context(m, side, ctx);
            match xplugin_license::verify_plugin_dir_with(dir, trust, &vctx, ctx.digests) {
                Ok(l) => return (verified_status(&l), Some(l)),
                Err(e) => (error_chain(&e), e.to_problems(&subj, &ctx.this_device())),
            }
        }
    };
    let (reason, refused) = refusal;
    if ctx.allow_unlicensed {
        problems.extend(refused.0.into_iter().map(|p| {
            Problem::new(
                ProblemCode::LicenseUnlicensedAccepted,
                p.subject,
                format!(
                    "license not valid, accepted because allow_unlicensed is on: {}",
                    p.message
                ),
                "development mode only: turn allow_unlicensed off on production robots",
            )
            .with_field("license")
        }));
        (LicenseStatus::Unlicensed { reason }, None)
    } else {
        problems.extend(refused.0);
        (LicenseStatus::Refused { reason }, None)
    }
}

/// The refusal of every license when this device trusts no key: the reason
/// and its problem, showing this device's id and clock like every license
/// refusal.
fn no_trusted_keys(subj: &str, e: &TrustStoreError, ctx: &CheckContext<'_>) -> (String, Problems) {
    let reason = format!("no trusted vendor keys: {}", error_chain(e));
    let message = format!(
        "license not checked: {reason} (this device is {}, its clock says {})",
        ctx.device_id,
        format_rfc3339(unix_seconds(ctx.now))
    );
    let problem = Problem::new(ProblemCode::LicenseNoTrustedKeys, subj, message, e.hint())
        .with_field("license");
    (reason, Problems(vec![problem]))
}

/// Reads a small file, refusing more than `limit` bytes.
///
/// # Errors
/// I/O errors, or `InvalidData` if the file is larger than `limit`.
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    // Sized from the stat (bounded by `limit`): without a size `read_to_end`
    // probes in 32-byte reads and grows.
    let size = f.metadata().map_or(0, |m| m.len()).min(limit);
    let mut buf = Vec::with_capacity(size as usize + 1);
    f.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("file is larger than {limit} bytes"),
        ));
    }
    Ok(buf)
}

/// [`check_plugin_folder`] of every `(folder, name)` of `side`, on this
/// thread and up to three more (one per CPU; the folders are taken in turn
/// as each thread is free, and they are independent). `checked(i)` is
/// called on this thread as each folder's check ends, in any order; the
/// checks come back in the order of `folders`.
pub fn check_plugin_folders(
    folders: &[(&Path, &str)],
    side: Side,
    ctx: &CheckContext<'_>,
    mut checked: impl FnMut(usize),
) -> Vec<PluginCheck> {
    let helpers = crate::os::usable_cpus()
        .clamp(1, 4)
        .min(folders.len())
        .saturating_sub(1);
    let check = |i: usize| {
        let (dir, name) = folders[i];
        check_plugin_folder(dir, name, side, ctx)
    };
    let (task_tx, tasks) = crossbeam_channel::unbounded();
    for i in 0..folders.len() {
        // Cannot fail: the receiver is alive.
        let _ = task_tx.send(i);
    }
    drop(task_tx);
    let mut done: Vec<Option<PluginCheck>> = (0..folders.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let (result_tx, results) = crossbeam_channel::unbounded();
        for _ in 0..helpers {
            let (tasks, result_tx, check) = (tasks.clone(), result_tx.clone(), &check);
            // A small stack: under mlockall (the daemon's real-time
            // settings) glibc keeps exited threads' stacks mapped for
            // reuse, and every byte of them stays resident.
            let spawned = std::thread::Builder::new()
                .name("xplugin-check".into())
                .stack_size(512 * 1024)
                .spawn_scoped(scope, move || {
                    for i in tasks.iter() {
                        if result_tx.send((i, check(i))).is_err() {
                            break;
                        }
                    }
                });
            if let Err(e) = spawned {
                log::warn!("cannot start a check thread ({e}): checking on fewer threads");
            }
        }
        drop(result_tx);
        // This thread checks too, and reports each result as it comes.
        while let Ok(i) = tasks.try_recv() {
            done[i] = Some(check(i));
            checked(i);
            while let Ok((i, c)) = results.try_recv() {
                done[i] = Some(c);
                checked(i);
            }
        }
        // Ends when every helper has ended.
        for (i, c) in results.iter() {
            done[i] = Some(c);
            checked(i);
        }
    });
    // A slot stays empty only if its helper panicked, which the scope has
    // raised here already.
    done.into_iter().flatten().collect()
}
