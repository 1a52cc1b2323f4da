//! `xplugin-pack pack`: build `plugindemo.zip` in the vendor layout.
//!
//! `--client DIR` and `--controller DIR` each hold one folder per plugin.
//! Each side becomes `client.zip` / `controller.zip` with the plugin
//! folders at its root; both go into the outer zip. Entries are sorted and
//! carry the fixed DOS time 1980-01-01 00:00:00 and fixed permissions
//! (0644 files, 0755 folders), so the same input gives the same bytes.
//! The result is unpacked once with the importer's own reader and limits
//! before it is written, so a package this tool writes is one a device
//! accepts (licenses aside).

use crate::error::PackError;
use crate::folder::{is_litter, join, list_files, read_plugin_folder, PluginFolder};
use crate::libraries::check_libraries;
use crate::report::{check_license_for_vendor, normalize_device_arg, LicenseCheck};
use clap::Args;
use std::collections::BTreeSet;
use std::io::{Cursor, Seek, Write};
use std::path::{Path, PathBuf};
use xplugin_license::TrustStore;
use xplugin_model::{Failure, Problem, ProblemCode, Problems, Side};
use xplugin_package::binary::Arch;
use xplugin_package::{unpack_package, Limits, PackageError};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

/// Arguments of `pack`.
#[derive(Debug, Args)]
pub struct PackArgs {
    /// Folder holding the client plugin folders.
    #[arg(long)]
    pub client: Option<PathBuf>,
    /// Folder holding the controller plugin folders.
    #[arg(long)]
    pub controller: Option<PathBuf>,
    /// The package to write.
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
    /// Check every license against the public keys in this folder and warn
    /// about those that do not verify.
    #[arg(long)]
    pub trust: Option<PathBuf>,
    /// With --trust: also check the device binding for this device id.
    #[arg(long, requires = "trust")]
    pub device_id: Option<String>,
    /// The architecture the controllers run (e.g. aarch64): controller
    /// libraries built for another one are refused.
    #[arg(long)]
    pub controller_arch: Option<String>,
    /// The architecture the Linux pendants run: client `.so` libraries built
    /// for another one are refused (`.dll` files are checked for kind and ABI).
    #[arg(long)]
    pub client_arch: Option<String>,
    /// Print one JSON document describing the package written.
    #[arg(long)]
    pub json: bool,
}

/// One side to pack.
struct SideInput {
    side: Side,
    plugins: Vec<(PluginFolder, Vec<String>)>,
}

/// Builds and writes the package.
///
/// # Errors
///
/// [`PackError::Refused`] listing every bad plugin folder (format, and the
/// libraries a device would refuse), or [`PackError::Package`] when the
/// importer's reader refuses the result.
pub fn run(args: &PackArgs) -> Result<(), PackError> {
    if args.client.is_none() && args.controller.is_none() {
        return Err(PackError::Usage(
            "give --client DIR and/or --controller DIR (each holds one folder per plugin)"
                .to_string(),
        ));
    }
    let mut problems = Problems::default();
    let mut sides = Vec::new();
    for (side, dir, arch) in [
        (Side::Client, &args.client, &args.client_arch),
        (Side::Controller, &args.controller, &args.controller_arch),
    ] {
        if let Some(dir) = dir {
            let arch = arch.as_deref().map(Arch::parse);
            sides.push(collect_side(side, dir, arch.as_ref(), &mut problems)?);
        }
    }
    if problems.has_errors() {
        return Err(PackError::Refused {
            what: format!("cannot pack {}", args.out.display()),
            problems,
        });
    }
    let warnings = license_warnings(args, &sides)?;
    let mut outer = ZipWriter::new(Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .last_modified_time(DateTime::default())
        .unix_permissions(0o644);
    for input in &sides {
        let inner = build_inner(input)?;
        outer
            .start_file(input.side.archive_name(), stored)
            .and_then(|()| outer.write_all(&inner).map_err(Into::into))
            .map_err(zip_error(&args.out))?;
    }
    let bytes = outer.finish().map_err(zip_error(&args.out))?.into_inner();
    write_checked(&args.out, &bytes)?;
    print_outcome(args, &sides, bytes.len(), &warnings);
    Ok(())
}

/// With `--trust`: a warning for every license that does not verify (for
/// `--device-id`, when given) as a device would check it.
fn license_warnings(args: &PackArgs, sides: &[SideInput]) -> Result<Problems, PackError> {
    let mut warnings = Problems::default();
    let Some(trust_dir) = &args.trust else {
        return Ok(warnings);
    };
    let trust = TrustStore::load(trust_dir)?;
    let device = args
        .device_id
        .as_deref()
        .map(normalize_device_arg)
        .transpose()?;
    for (folder, _) in sides.iter().flat_map(|input| &input.plugins) {
        if let LicenseCheck::Refused(e) =
            check_license_for_vendor(folder, &trust, device.as_deref(), None)
        {
            let warning = Problem::new(
                ProblemCode::PackLicenseNotVerified,
                folder.subject(),
                format!(
                    "its license does not verify against {}: {}",
                    trust_dir.display(),
                    xplugin_model::error_chain(&e)
                ),
                "issue the license again for the folder as packed (xplugin-pack license)",
            )
            .with_field("license");
            eprintln!("xplugin-pack: {warning}");
            warnings.push(warning);
        }
    }
    Ok(warnings)
}

/// Writes `bytes` next to `out`, checks them with the importer's own reader
/// and limits, then renames them into place: a package this tool writes is
/// one a device accepts (licenses aside).
fn write_checked(out: &Path, bytes: &[u8]) -> Result<(), PackError> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let hint = "check that the folder exists and is writable";
    let mut tmp = tempfile::Builder::new()
        .prefix(".xplugin-pack-")
        .suffix(".zip")
        .tempfile_in(&dir)
        .map_err(PackError::io("cannot create a file in", &dir, hint))?;
    let tmp_path = tmp.path().to_path_buf();
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(PackError::io("cannot write", &tmp_path, hint))?;
    let staging = tempfile::tempdir().map_err(PackError::io(
        "cannot create a temporary folder in",
        std::env::temp_dir(),
        hint,
    ))?;
    match unpack_package(&tmp_path, staging.path(), &Limits::default()) {
        Ok(_) => {}
        Err(PackageError::Refused(p)) => {
            return Err(PackError::Refused {
                what: format!(
                    "the package built for {} would be refused by devices; nothing was written",
                    out.display()
                ),
                problems: p,
            })
        }
        Err(e) => return Err(e.into()),
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(PackError::io("cannot write", &tmp_path, hint))?;
    }
    tmp.persist(out)
        .map_err(|e| PackError::io("cannot write", out, hint)(e.error))?;
    Ok(())
}

fn print_outcome(args: &PackArgs, sides: &[SideInput], size: usize, warnings: &Problems) {
    if args.json {
        let plugins: Vec<serde_json::Value> = sides
            .iter()
            .flat_map(|input| {
                input.plugins.iter().map(move |(folder, files)| {
                    serde_json::json!({
                        "side": input.side,
                        "name": folder.name,
                        "version": folder.manifest.version.to_string(),
                        "files": files,
                    })
                })
            })
            .collect();
        let doc = serde_json::json!({
            "package": args.out,
            "bytes": size,
            "plugins": plugins,
            "problems": warnings,
        });
        println!("{doc:#}");
        return;
    }
    println!("wrote {} ({size} bytes)", args.out.display());
    for input in sides {
        for (folder, files) in &input.plugins {
            println!(
                "  {}: {} {} ({} files)",
                input.side.archive_name(),
                folder.name,
                folder.manifest.version,
                files.len()
            );
        }
    }
}

fn zip_error(path: &Path) -> impl Fn(zip::result::ZipError) -> PackError + '_ {
    move |e| PackError::Io {
        action: "cannot build the zip archive for",
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
        hint: "check free memory and disk space",
    }
}

/// Reads and checks every plugin folder of one side; problems go to
/// `problems`.
fn collect_side(
    side: Side,
    dir: &Path,
    arch: Option<&Arch>,
    problems: &mut Problems,
) -> Result<SideInput, PackError> {
    let mut plugins = Vec::new();
    for name in plugin_folder_names(side, dir, problems)? {
        let plugin_dir = dir.join(&name);
        let folder = match read_plugin_folder(&plugin_dir, Some(side)) {
            Ok(f) => f,
            Err(PackError::Refused { problems: p, .. }) => {
                problems.extend(p.0);
                continue;
            }
            Err(e) => {
                problems.extend(e.problems().0);
                continue;
            }
        };
        let files = match list_files(&plugin_dir) {
            Ok(f) => f,
            Err(PackError::Refused { problems: p, .. }) => {
                problems.extend(p.0);
                continue;
            }
            Err(e) => return Err(e),
        };
        check_required_files(&folder, &files, problems);
        let prefix = format!("{}/", plugin_dir.display());
        let (_, library_problems) =
            check_libraries(&plugin_dir, &name, side, &files, arch, &prefix);
        problems.extend(library_problems.0);
        plugins.push((folder, files));
    }
    Ok(SideInput { side, plugins })
}

/// The plugin folders in `dir` (sorted); files next to them are problems.
fn plugin_folder_names(
    side: Side,
    dir: &Path,
    problems: &mut Problems,
) -> Result<Vec<String>, PackError> {
    let label = format!("--{side} {}", dir.display());
    let hint = "check the folder and its permissions";
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(PackError::io("cannot list", dir, hint))? {
        let entry = entry.map_err(PackError::io("cannot list", dir, hint))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_litter(&name) {
            continue;
        }
        let is_dir = entry
            .file_type()
            .map_err(PackError::io("cannot read", entry.path(), hint))?
            .is_dir();
        if is_dir {
            names.push(name);
        } else {
            problems.push(Problem::new(
                ProblemCode::PackStrayFile,
                format!("{label}: {name}"),
                "a file next to the plugin folders; this folder must hold only plugin folders",
                "move the file into its plugin's folder or remove it",
            ));
        }
    }
    names.sort();
    if names.is_empty() {
        problems.push(Problem::new(
            ProblemCode::PackNoPluginFolder,
            label,
            "no plugin folder found",
            "give a folder that holds one folder per plugin (NAME/NAME.json, NAME/NAME.lic, NAME/NAME.so)",
        ));
    }
    Ok(names)
}

/// NAME.lic and the plugin's library must be in the folder.
fn check_required_files(folder: &PluginFolder, files: &[String], problems: &mut Problems) {
    let (name, dir) = (&folder.name, &folder.dir);
    let side = folder.manifest.side;
    let has = |f: String| files.contains(&f);
    if !has(format!("{name}.lic")) {
        problems.push(Problem::new(
            ProblemCode::PackMissingLicense,
            folder.subject(),
            format!("missing {name}.lic in {}", dir.display()),
            format!(
                "issue it with `xplugin-pack license --plugin-dir {} ...`",
                dir.display()
            ),
        ));
    }
    let library_ok = match side {
        Side::Controller => has(format!("{name}.so")),
        Side::Client => has(format!("{name}.so")) || has(format!("{name}.dll")),
    };
    if !library_ok {
        let wanted = match side {
            Side::Controller => format!("{name}.so"),
            Side::Client => format!("{name}.so or {name}.dll"),
        };
        problems.push(Problem::new(
            ProblemCode::PackMissingLibrary,
            folder.subject(),
            format!("missing the plugin library {wanted} in {}", dir.display()),
            "build the plugin and copy its library into the folder, named after the folder",
        ));
    }
}

/// The bytes of `client.zip` / `controller.zip`.
fn build_inner(input: &SideInput) -> Result<Vec<u8>, PackError> {
    let archive_path = PathBuf::from(input.side.archive_name());
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let file_options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(DateTime::default())
        .unix_permissions(0o644);
    let dir_options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .last_modified_time(DateTime::default())
        .unix_permissions(0o755);
    for (folder, files) in &input.plugins {
        let mut dirs = BTreeSet::new();
        dirs.insert(format!("{}/", folder.name));
        for f in files {
            let mut prefix = folder.name.clone();
            let parts: Vec<&str> = f.split('/').collect();
            for part in parts.iter().take(parts.len().saturating_sub(1)) {
                prefix = format!("{prefix}/{part}");
                dirs.insert(format!("{prefix}/"));
            }
        }
        for d in &dirs {
            zip.add_directory(d.as_str(), dir_options)
                .map_err(zip_error(&archive_path))?;
        }
        for f in files {
            let path = join(&folder.dir, f);
            let mut source = std::fs::File::open(&path).map_err(PackError::io(
                "cannot read",
                &path,
                "check the file's permissions",
            ))?;
            zip.start_file(format!("{}/{f}", folder.name), file_options)
                .map_err(zip_error(&archive_path))?;
            std::io::copy(&mut source, &mut zip).map_err(PackError::io(
                "cannot read",
                &path,
                "check the file's permissions",
            ))?;
        }
    }
    let mut cursor = zip.finish().map_err(zip_error(&archive_path))?;
    cursor
        .rewind()
        .map_err(PackError::io("cannot build", &archive_path, "retry"))?;
    Ok(cursor.into_inner())
}
