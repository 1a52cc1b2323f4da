//! `xplugin-pack license`: issue a license for a plugin folder.

use crate::error::PackError;
use crate::folder::{coverage, join, list_files, read_plugin_folder, Coverage, PluginFolder};
use crate::SideArg;
use clap::Args;
use ed25519_dalek::SigningKey;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use xplugin_license::timestamp::{format_rfc3339, parse_date, unix_seconds};
use xplugin_license::{
    check_files, check_signature, issue, new_license_id, normalize_device_id, read_private_key,
    sha256_file, LicensePayload, TrustStore, ANY_DEVICE, PAYLOAD_FORMAT,
};
use xplugin_model::{Problem, ProblemCode, Problems, VersionReq};

/// Arguments of `license`.
#[derive(Debug, Args)]
pub struct LicenseArgs {
    /// The vendor's private key file (KEYID.key from `keygen`).
    #[arg(long)]
    pub key: PathBuf,
    /// The plugin folder (NAME/ holding NAME.json and the libraries).
    #[arg(long)]
    pub plugin_dir: PathBuf,
    /// Which loader the plugin is for.
    #[arg(long, value_enum)]
    pub side: SideArg,
    /// Device ids the license is bound to, comma-separated, or `any`.
    #[arg(long)]
    pub devices: String,
    /// Plugin versions covered, e.g. ">=1.0, <2", "[1.0,2.0)" or "*".
    #[arg(long)]
    pub versions: String,
    /// Expiry date (UTC), e.g. 2027-12-31 or 2027-12-31T12:00:00Z.
    /// Without --expires or --days the license is perpetual.
    #[arg(long, conflicts_with = "days")]
    pub expires: Option<String>,
    /// Expiry as a number of days from now.
    #[arg(long)]
    pub days: Option<u64>,
    /// Not valid before this date (UTC).
    #[arg(long)]
    pub not_before: Option<String>,
    /// Licensed features, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<String>,
    /// Output file (default: PLUGIN_DIR/NAME.lic).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print one JSON document describing the license.
    #[arg(long)]
    pub json: bool,
}

fn usage(problems: &mut Problems, subject: &str, message: String, hint: &str) {
    problems.push(Problem::new(
        ProblemCode::UsageInvalidArgument,
        subject,
        message,
        hint,
    ));
}

/// Issues and writes the license. Files it does not cover (data files) are
/// listed as warnings.
///
/// # Errors
///
/// [`PackError`] for an unreadable key or folder, a refused manifest, or
/// unusable arguments (all listed together).
pub fn run(args: &LicenseArgs) -> Result<(), PackError> {
    let (key_id, key) = read_private_key(&args.key)?;
    let side: xplugin_model::Side = args.side.into();
    let mut problems = Problems::default();
    // A refused manifest is reported together with the argument problems.
    let folder = match read_plugin_folder(&args.plugin_dir, Some(side)) {
        Ok(f) => Some(f),
        Err(PackError::Refused { problems: p, .. }) => {
            problems.extend(p.0);
            None
        }
        Err(e) => return Err(e),
    };
    let subject = match &folder {
        Some(f) => f.subject(),
        None => format!("plugin folder {}", args.plugin_dir.display()),
    };
    let devices = devices(&args.devices, &mut problems);
    check_versions(&args.versions, folder.as_ref(), &mut problems);
    let now = unix_seconds(SystemTime::now());
    let (not_before, expires) = validity(args, now, &mut problems);
    let Some(folder) = folder.filter(|_| !problems.has_errors()) else {
        return Err(PackError::Refused {
            what: format!("cannot license {subject}"),
            problems,
        });
    };
    let files = list_files(&folder.dir)?;
    let coverage = coverage(&folder, &files)?;
    let mut hashes = BTreeMap::new();
    for (name, _) in &coverage.covered {
        let path = join(&folder.dir, name);
        let hash = sha256_file(&path).map_err(PackError::io(
            "cannot read",
            &path,
            "check the file's permissions",
        ))?;
        hashes.insert(name.clone(), hash);
    }
    let payload = LicensePayload {
        format: PAYLOAD_FORMAT,
        key_id,
        license_id: new_license_id(),
        plugin: folder.name.clone(),
        side: folder.manifest.side,
        versions: args.versions.trim().to_string(),
        devices,
        issued_at: now,
        not_before,
        expires,
        features: args
            .features
            .iter()
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect(),
        files: hashes,
    };
    let text = issue_checked(&payload, &key, &folder)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| folder.dir.join(format!("{}.lic", folder.name)));
    write_atomically(&out, text.as_bytes())?;
    let warnings = not_covered_warnings(&folder, &coverage);
    print_outcome(
        args, &out, &subject, &folder, &payload, &coverage, &warnings,
    );
    Ok(())
}

/// The `--devices` argument as canonical device ids (or `["*"]`).
fn devices(arg: &str, problems: &mut Problems) -> Vec<String> {
    if arg.trim().eq_ignore_ascii_case("any") || arg.trim() == ANY_DEVICE {
        return vec![ANY_DEVICE.to_string()];
    }
    let mut out = Vec::new();
    for d in arg.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        match normalize_device_id(d) {
            Some(id) if id != ANY_DEVICE => out.push(id),
            _ => usage(
                problems,
                "--devices",
                format!("\"{d}\" is not a device id (32 hex digits, as printed by `device-id`)"),
                "give the ids printed by `xplugin-controller device-id` / `xplugin-client device-id` on the devices, comma-separated, or `any`",
            ),
        }
    }
    if out.is_empty() && problems.is_empty() {
        usage(
            problems,
            "--devices",
            "no device id given".to_string(),
            "give device ids, comma-separated, or `any`",
        );
    }
    out
}

/// `--versions` must parse and cover the plugin's own version.
fn check_versions(versions: &str, folder: Option<&PluginFolder>, problems: &mut Problems) {
    match (VersionReq::parse(versions), folder) {
        (Ok(req), Some(folder)) if !req.matches(&folder.manifest.version) => usage(
            problems,
            "--versions",
            format!(
                "the range \"{versions}\" does not cover the plugin's own version {} (from {}.json)",
                folder.manifest.version, folder.name
            ),
            "widen the range or bump the version in the manifest",
        ),
        (Ok(_), _) => {}
        (Err(e), _) => usage(problems, "--versions", e.to_string(), "fix the range"),
    }
}

/// `--not-before` and the expiry (`--expires` or `--days` from `now`).
fn validity(args: &LicenseArgs, now: u64, problems: &mut Problems) -> (Option<u64>, Option<u64>) {
    let mut date = |flag: &str, text: &Option<String>| -> Option<u64> {
        let text = text.as_ref()?;
        match parse_date(text) {
            Ok(t) => Some(t),
            Err(e) => {
                usage(
                    problems,
                    flag,
                    e.to_string(),
                    "use YYYY-MM-DD or RFC 3339 UTC",
                );
                None
            }
        }
    };
    let not_before = date("--not-before", &args.not_before);
    let mut expires = date("--expires", &args.expires);
    if let Some(days) = args.days {
        expires = Some(now.saturating_add(days.saturating_mul(86_400)));
    }
    if let Some(exp) = expires.filter(|exp| *exp <= now) {
        usage(
            problems,
            "--expires",
            format!("{} is not in the future", format_rfc3339(exp)),
            "give a later date",
        );
    }
    (not_before, expires)
}

/// Signs `payload`, then checks the text as a device would: it verifies
/// with the key's public half and matches the folder as it is now.
fn issue_checked(
    payload: &LicensePayload,
    key: &SigningKey,
    folder: &PluginFolder,
) -> Result<String, PackError> {
    let text = issue(payload, key)?;
    let mut own = TrustStore::new();
    own.insert(&payload.key_id, key.verifying_key())?;
    let checked = check_signature(&text, &own, &folder.name)?;
    check_files(&checked, &folder.dir)?;
    Ok(text)
}

/// One warning per file the license does not cover.
fn not_covered_warnings(folder: &PluginFolder, coverage: &Coverage) -> Problems {
    coverage
        .not_covered
        .iter()
        .map(|file| {
            Problem::new(
                ProblemCode::PackFileNotCovered,
                join(&folder.dir, file).display().to_string(),
                format!(
                    "{file} is not covered by the license: it is not code (not an ELF, PE, Mach-O or Wasm file, not a #! script, not named like a library), so it is installed but not integrity-protected"
                ),
                "nothing to do for data; if the plugin runs this file as code, make it recognisable as code so the license covers it",
            )
        })
        .collect()
}

fn print_outcome(
    args: &LicenseArgs,
    out: &Path,
    subject: &str,
    folder: &PluginFolder,
    payload: &LicensePayload,
    coverage: &Coverage,
    warnings: &Problems,
) {
    for w in &warnings.0 {
        eprintln!("xplugin-pack: {w}");
    }
    if args.json {
        let doc = serde_json::json!({ "file": out, "license": payload, "problems": warnings });
        println!("{doc:#}");
        return;
    }
    println!("wrote {}", out.display());
    println!(
        "  {subject} version {} licensed for versions \"{}\"",
        folder.manifest.version, payload.versions
    );
    println!(
        "  license id {} signed by key {}",
        payload.license_id, payload.key_id
    );
    println!("  devices: {}", payload.devices.join(", "));
    println!(
        "  expires: {}",
        payload
            .expires
            .map(format_rfc3339)
            .unwrap_or_else(|| "never (perpetual)".to_string())
    );
    let covered: Vec<&str> = coverage.covered.iter().map(|(f, _)| f.as_str()).collect();
    println!("  files: {}", covered.join(", "));
    if !coverage.not_covered.is_empty() {
        println!("  not covered (data): {}", coverage.not_covered.join(", "));
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder.
///
/// # Errors
///
/// [`PackError::Io`] on any write failure (the temporary file is removed).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PackError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let hint = "check that the folder exists and is writable";
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(PackError::io(
        "cannot create a file in",
        &dir,
        hint,
    ))?;
    // Temporary files are created 0600; the result is an ordinary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let perms = std::fs::Permissions::from_mode(0o644);
        tmp.as_file().set_permissions(perms).map_err(PackError::io(
            "cannot write",
            tmp.path().to_path_buf(),
            hint,
        ))?;
    }
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(PackError::io(
            "cannot write",
            tmp.path().to_path_buf(),
            hint,
        ))?;
    tmp.persist(path)
        .map_err(|e| PackError::io("cannot write", path, hint)(e.error))?;
    Ok(())
}
