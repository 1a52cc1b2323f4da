//! `xplugin-pack verify` and `xplugin-pack inspect`: read a package (or one
//! plugin folder) the way a device does and report every plugin.
//!
//! A package is unpacked with the importer's own reader
//! (`xplugin_package::unpack_package`, default limits) into a
//! temporary folder; nothing of it is loaded or executed. Libraries are
//! inspected from their headers only.

use crate::error::PackError;
use crate::folder::{list_files, read_plugin_folder, PluginFolder};
use crate::libraries::{check_libraries, LibraryReport};
use crate::SideArg;
use clap::Args;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use xplugin_license::armor::dearmor;
use xplugin_license::timestamp::{format_rfc3339, parse_date, system_time, unix_seconds};
use xplugin_license::{
    check_signature, device_id, normalize_device_id, read_license_file, verify, verify_files,
    DeviceIdSource, LicenseError, LicensePayload, ThisDevice, TrustStore, VerifyContext,
    ANY_DEVICE,
};
use xplugin_model::{Failure, Problem, Side};
use xplugin_package::binary::Arch;
use xplugin_package::{unpack_package, Limits, PackageError};

/// Arguments of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A package (.zip) or one plugin folder.
    pub path: PathBuf,
    /// Folder of trusted vendor public keys (KEYID.pub).
    #[arg(long)]
    pub trust: PathBuf,
    /// The device id to check the binding for (default: this machine's,
    /// from /etc/machine-id).
    #[arg(long)]
    pub device_id: Option<String>,
    /// Check as if the clock said this date (UTC), e.g. 2027-06-01.
    #[arg(long)]
    pub at: Option<String>,
    /// Side of a plugin folder whose manifest does not make it clear.
    #[arg(long, value_enum)]
    pub side: Option<SideArg>,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A package (.zip) or one plugin folder.
    pub path: PathBuf,
    /// Folder of trusted vendor public keys; without it licenses are shown
    /// but not verified.
    #[arg(long)]
    pub trust: Option<PathBuf>,
    /// The device id to check the binding for (with --trust).
    #[arg(long)]
    pub device_id: Option<String>,
    /// Check as if the clock said this date (UTC).
    #[arg(long)]
    pub at: Option<String>,
    /// Side of a plugin folder whose manifest does not make it clear.
    #[arg(long, value_enum)]
    pub side: Option<SideArg>,
    /// The architecture the controllers run (e.g. aarch64): controller
    /// libraries built for another one are refused.
    #[arg(long)]
    pub controller_arch: Option<String>,
    /// The architecture the Linux pendants run: client `.so` libraries built
    /// for another one are refused.
    #[arg(long)]
    pub client_arch: Option<String>,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// The outcome of checking one plugin's license for the vendor tool.
#[derive(Debug)]
pub enum LicenseCheck {
    /// Verified; `device_checked` says whether the binding was checked.
    Valid {
        /// The verified content.
        payload: Box<LicensePayload>,
        /// False when no device id was given.
        device_checked: bool,
    },
    /// Refused, with every reason.
    Refused(LicenseError),
}

/// Verifies `folder`'s license as a device would: signature, plugin, side,
/// version, clock (at `now`, default the real clock, no high-water mark) and
/// files; and the device binding when `device` is given.
pub fn check_license_for_vendor(
    folder: &PluginFolder,
    trust: &TrustStore,
    device: Option<&str>,
    now: Option<SystemTime>,
) -> LicenseCheck {
    let result = (|| {
        let path = folder.dir.join(format!("{}.lic", folder.name));
        let text = read_license_file(&path, &folder.name)?;
        // Without a device id, check everything else by presenting a device
        // the license names; the report says the binding was not checked.
        let stand_in;
        let device_id = match device {
            Some(d) => d,
            None => {
                let payload = check_signature(&text, trust, &folder.name)?;
                stand_in = payload
                    .devices
                    .first()
                    .cloned()
                    .unwrap_or_else(|| ANY_DEVICE.to_string());
                stand_in.as_str()
            }
        };
        let ctx = VerifyContext {
            plugin: &folder.name,
            side: folder.manifest.side,
            plugin_version: &folder.manifest.version,
            device_id,
            now: now.unwrap_or_else(SystemTime::now),
            high_water_mark: None,
        };
        let license = verify(&text, trust, &ctx)?;
        verify_files(&license, &folder.dir)?;
        Ok::<_, LicenseError>(license.payload().clone())
    })();
    match result {
        Ok(payload) => LicenseCheck::Valid {
            payload: Box::new(payload),
            device_checked: device.is_some(),
        },
        Err(e) => LicenseCheck::Refused(e),
    }
}

/// What a report says about one license (its refusals are problems of
/// the plugin).
#[derive(Debug, Serialize)]
struct LicenseReport {
    /// `valid`, `refused`, `unverified` (no trust store given) or
    /// `not_checked` (the manifest is refused, so the version is unknown).
    status: &'static str,
    device_checked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<LicenseContent>,
}

#[derive(Debug, Serialize)]
struct LicenseContent {
    key_id: String,
    license_id: String,
    plugin: String,
    side: Side,
    versions: String,
    devices: Vec<String>,
    issued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_before: Option<String>,
    expires: String,
    features: Vec<String>,
    files: Vec<String>,
}

impl From<&LicensePayload> for LicenseContent {
    fn from(p: &LicensePayload) -> Self {
        LicenseContent {
            key_id: p.key_id.clone(),
            license_id: p.license_id.clone(),
            plugin: p.plugin.clone(),
            side: p.side,
            versions: p.versions.clone(),
            devices: p.devices.clone(),
            issued_at: format_rfc3339(p.issued_at),
            not_before: p.not_before.map(format_rfc3339),
            expires: p
                .expires
                .map(format_rfc3339)
                .unwrap_or_else(|| "never".to_string()),
            features: p.features.clone(),
            files: p.files.keys().cloned().collect(),
        }
    }
}

/// Everything reported about one plugin.
#[derive(Debug, Serialize)]
struct PluginReport {
    side: Side,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    /// Manifest, library and license problems, each with its code.
    problems: Vec<Problem>,
    libraries: Vec<LibraryReport>,
    license: LicenseReport,
}

impl PluginReport {
    fn ok(&self) -> bool {
        !self.problems.iter().any(Problem::is_error) && self.license.status != "refused"
    }
}

/// The whole report.
#[derive(Debug, Serialize)]
struct Report {
    path: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_id: Option<String>,
    checked_at: String,
    trust: Option<PathBuf>,
    plugins: Vec<PluginReport>,
    /// The package's warnings (ignored litter).
    warnings: Vec<Problem>,
    /// Every problem of the report: the package's and each plugin's.
    problems: Vec<Problem>,
    ok: bool,
}

/// Common options of verify and inspect.
struct Options<'a> {
    path: &'a Path,
    trust: Option<&'a Path>,
    device: Option<String>,
    now: Option<SystemTime>,
    side: Option<Side>,
    /// Inspect and check libraries (inspect), for these declared
    /// architectures.
    libraries: Option<DeclaredArch>,
}

/// The architectures `--client-arch` / `--controller-arch` declare.
#[derive(Debug, Default)]
struct DeclaredArch {
    client: Option<Arch>,
    controller: Option<Arch>,
}

impl DeclaredArch {
    fn of(&self, side: Side) -> Option<&Arch> {
        match side {
            Side::Client => self.client.as_ref(),
            Side::Controller => self.controller.as_ref(),
        }
    }
}

/// The canonical form of a `--device-id` value.
pub fn normalize_device_arg(text: &str) -> Result<String, PackError> {
    match normalize_device_id(text) {
        Some(id) if id != ANY_DEVICE => Ok(id),
        _ => Err(PackError::Usage(format!(
            "--device-id: \"{text}\" is not a device id; expected 32 hex digits as printed by `xplugin-pack device-id` (or `xplugin-controller device-id` on the device)"
        ))),
    }
}

fn parse_at(at: Option<&String>) -> Result<Option<SystemTime>, PackError> {
    at.map(|a| {
        parse_date(a)
            .map(system_time)
            .map_err(|e| PackError::Usage(format!("--at: {e}")))
    })
    .transpose()
}

/// `verify`: every license must verify, including the device binding.
///
/// # Errors
///
/// [`PackError::Failed`] when any plugin is refused (details printed),
/// others when the package or trust store cannot be read.
pub fn run_verify(args: &VerifyArgs) -> Result<(), PackError> {
    let device = match &args.device_id {
        Some(d) => normalize_device_arg(d)?,
        None => device_id(&DeviceIdSource::default())?,
    };
    let opts = Options {
        path: &args.path,
        trust: Some(&args.trust),
        device: Some(device),
        now: parse_at(args.at.as_ref())?,
        side: args.side.map(Into::into),
        libraries: None,
    };
    let report = build_report(&opts)?;
    print_report(&report, args.json, false);
    finish(&report)
}

/// `inspect`: show everything; fails only when something is refused.
///
/// # Errors
///
/// As [`run_verify`].
pub fn run_inspect(args: &InspectArgs) -> Result<(), PackError> {
    let opts = Options {
        path: &args.path,
        trust: args.trust.as_deref(),
        device: args
            .device_id
            .as_deref()
            .map(normalize_device_arg)
            .transpose()?,
        now: parse_at(args.at.as_ref())?,
        side: args.side.map(Into::into),
        libraries: Some(DeclaredArch {
            client: args.client_arch.as_deref().map(Arch::parse),
            controller: args.controller_arch.as_deref().map(Arch::parse),
        }),
    };
    let report = build_report(&opts)?;
    print_report(&report, args.json, true);
    finish(&report)
}

fn finish(report: &Report) -> Result<(), PackError> {
    if report.ok {
        Ok(())
    } else {
        let bad = report.plugins.iter().filter(|p| !p.ok()).count();
        Err(PackError::Failed(format!(
            "{bad} of {} plugin(s) in {} refused (see above)",
            report.plugins.len(),
            report.path.display()
        )))
    }
}

fn build_report(opts: &Options<'_>) -> Result<Report, PackError> {
    let trust = opts.trust.map(TrustStore::load).transpose()?;
    let mut warnings = Vec::new();
    // Keeps the unpacked package alive while the folders are read.
    let staging = tempfile::tempdir().map_err(PackError::io(
        "cannot create a temporary folder in",
        std::env::temp_dir(),
        "check free space in the temporary folder",
    ))?;
    // (side, folder, how problems name its files)
    let mut folders: Vec<(Side, PathBuf, String)> = Vec::new();
    if opts.path.is_dir() {
        let side = match opts.side {
            Some(s) => Some(s),
            None => read_plugin_folder(opts.path, None)
                .ok()
                .map(|f| f.manifest.side),
        };
        let prefix = format!("{}/", opts.path.display());
        folders.push((
            side.unwrap_or(Side::Controller),
            opts.path.to_path_buf(),
            prefix,
        ));
    } else {
        let unpacked = match unpack_package(opts.path, staging.path(), &Limits::default()) {
            Ok(u) => u,
            Err(PackageError::Refused(problems)) => {
                return Err(PackError::Refused {
                    what: format!("the package {} is refused", opts.path.display()),
                    problems,
                })
            }
            Err(e) => return Err(e.into()),
        };
        warnings.extend(unpacked.warnings.0.iter().cloned());
        // Files are named by their package entry, not the temporary folder.
        let package = opts
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (side, tree) in [
            (Side::Client, &unpacked.client),
            (Side::Controller, &unpacked.controller),
        ] {
            if let Some(tree) = tree {
                folders.extend(tree.plugins.iter().map(|p| {
                    let prefix = format!("{package}: {}: {}/", side.archive_name(), p.name);
                    (side, p.dir.clone(), prefix)
                }));
            }
        }
    }
    let mut plugins = Vec::new();
    for (side, dir, prefix) in folders {
        plugins.push(plugin_report(side, &dir, &prefix, trust.as_ref(), opts));
    }
    let ok = plugins.iter().all(PluginReport::ok);
    let problems = warnings
        .iter()
        .chain(plugins.iter().flat_map(|p| &p.problems))
        .cloned()
        .collect();
    Ok(Report {
        path: opts.path.to_path_buf(),
        device_id: opts.device.clone(),
        checked_at: format_rfc3339(unix_seconds(opts.now.unwrap_or_else(SystemTime::now))),
        trust: opts.trust.map(Path::to_path_buf),
        plugins,
        warnings,
        problems,
        ok,
    })
}

fn plugin_report(
    side: Side,
    dir: &Path,
    subject_prefix: &str,
    trust: Option<&TrustStore>,
    opts: &Options<'_>,
) -> PluginReport {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut report = PluginReport {
        side,
        name: name.clone(),
        version: None,
        problems: Vec::new(),
        libraries: Vec::new(),
        license: LicenseReport {
            status: "not_checked",
            device_checked: false,
            content: None,
        },
    };
    if let Some(declared) = &opts.libraries {
        match list_files(dir) {
            Ok(files) => {
                let arch = declared.of(side);
                let (libraries, problems) =
                    check_libraries(dir, &name, side, &files, arch, subject_prefix);
                report.libraries = libraries;
                report.problems.extend(problems.0);
            }
            Err(e) => report.problems.extend(e.problems().0),
        }
    }
    let folder = match read_plugin_folder(dir, Some(side)) {
        Ok(f) => f,
        Err(e) => {
            // The license is not checked: without a manifest the plugin's
            // version is unknown.
            report.problems.extend(e.problems().0);
            return report;
        }
    };
    report.version = Some(folder.manifest.version.to_string());
    let Some(trust) = trust else {
        report.license = LicenseReport {
            status: "unverified",
            device_checked: false,
            content: unverified_content(&folder),
        };
        return report;
    };
    report.license =
        match check_license_for_vendor(&folder, trust, opts.device.as_deref(), opts.now) {
            LicenseCheck::Valid {
                payload,
                device_checked,
            } => LicenseReport {
                status: "valid",
                device_checked,
                content: Some(LicenseContent::from(payload.as_ref())),
            },
            LicenseCheck::Refused(e) => {
                let device = ThisDevice {
                    id: opts.device.as_deref().unwrap_or("not given (--device-id)"),
                    now: opts.now.unwrap_or_else(SystemTime::now),
                };
                report
                    .problems
                    .extend(e.to_problems(&folder.subject(), &device).0);
                LicenseReport {
                    status: "refused",
                    device_checked: opts.device.is_some(),
                    content: unverified_content(&folder),
                }
            }
        };
    report
}

/// The license content without verification (for display only).
fn unverified_content(folder: &PluginFolder) -> Option<LicenseContent> {
    let path = folder.dir.join(format!("{}.lic", folder.name));
    let text = read_license_file(&path, &folder.name).ok()?;
    let parts = dearmor(&text).ok()?;
    let payload: LicensePayload = serde_json::from_slice(&parts.payload).ok()?;
    Some(LicenseContent::from(&payload))
}

fn print_report(report: &Report, json: bool, details: bool) {
    if json {
        match serde_json::to_string_pretty(report) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("xplugin-pack: error: cannot print the report as JSON: {e}"),
        }
        return;
    }
    println!("{}", report.path.display());
    if let Some(d) = &report.device_id {
        println!("  device id: {d}");
    }
    println!("  checked at: {}", report.checked_at);
    match &report.trust {
        Some(t) => println!("  trusted keys: {}", t.display()),
        None => println!("  trusted keys: none given (licenses shown, not verified)"),
    }
    for w in &report.warnings {
        println!("  {}", indented(w));
    }
    for p in &report.plugins {
        println!(
            "{} {} \"{}\" {}",
            if p.ok() { "OK     " } else { "REFUSED" },
            p.side,
            p.name,
            p.version.as_deref().unwrap_or("(version unknown)")
        );
        for problem in &p.problems {
            eprintln!("  {}", indented(problem));
        }
        if details {
            print_libraries(&p.libraries);
        }
        print_license(&p.license, details);
    }
}

/// A problem on lines indented under its plugin.
fn indented(problem: &Problem) -> String {
    problem.to_string().replace('\n', "\n  ")
}

fn print_libraries(libraries: &[LibraryReport]) {
    for lib in libraries {
        match &lib.error {
            Some(e) => println!("    library {} ({}): refused: {e}", lib.file, lib.role),
            None => println!(
                "    library {} ({}): {} {}, ABI {}, entry point {}",
                lib.file,
                lib.role,
                lib.format.as_deref().unwrap_or("?"),
                lib.arch.as_deref().unwrap_or("?"),
                lib.abi.as_deref().unwrap_or("?"),
                if lib.entry_point == Some(true) {
                    "present"
                } else {
                    "missing"
                }
            ),
        }
    }
}

fn print_license(l: &LicenseReport, details: bool) {
    let status = match (l.status, l.device_checked) {
        ("valid", true) => "valid for this device",
        ("valid", false) => "valid (device binding not checked: give --device-id)",
        ("unverified", _) => "NOT VERIFIED (give --trust DIR); content as the file claims",
        ("not_checked", _) => "not checked (the manifest is refused)",
        _ => "REFUSED",
    };
    println!("    license: {status}");
    let Some(c) = &l.content else {
        return;
    };
    if details || l.status != "valid" {
        println!(
            "      key {}, license {}, for {} plugin \"{}\" versions \"{}\"",
            c.key_id, c.license_id, c.side, c.plugin, c.versions
        );
        println!(
            "      devices: {}; issued {}; expires {}{}",
            c.devices.join(", "),
            c.issued_at,
            c.expires,
            c.not_before
                .as_ref()
                .map(|n| format!("; not before {n}"))
                .unwrap_or_default()
        );
        if !c.features.is_empty() {
            println!("      features: {}", c.features.join(", "));
        }
    } else {
        println!(
            "      key {}, expires {}, devices {}",
            c.key_id,
            c.expires,
            c.devices.join(", ")
        );
    }
}
