//! Reading an untrusted plugin package (`plugindemo.zip`) into a staging
//! directory, with bounded memory and disk.
//!
//! The package is the vendor's nested format (SPEC section 2): an outer zip
//! holding `client.zip` and/or `controller.zip`, each holding one folder per
//! plugin. [`unpack_package`] checks everything it can before writing a byte,
//! then streams each file into the staging directory the caller gave; the
//! caller verifies manifests and licenses there and commits atomically.
//!
//! # What is refused (each problem names the entry)
//!
//! * **Structure** — our own parse of the end record, of every central
//!   directory record and of every local header is cross-checked with the
//!   `zip` crate's reading and with each other (name, flags, method, CRC,
//!   sizes, data descriptor); entries must tile the data area exactly: no
//!   overlaps, no unlisted bytes (hidden local headers), nothing before the
//!   first entry or after the end record; no multi-disk archives; at most
//!   4 KiB of extra fields and comment per record (checked before the `zip`
//!   crate loads the directory). Streamed entries (sizes in a data
//!   descriptor, as Info-ZIP and macOS write them) are accepted once the
//!   descriptor agrees with the central directory.
//! * **Names** — traversal (`..`), absolute, drive, UNC and `\` paths, NUL
//!   and control characters, invisible and bidirectional-override
//!   characters, Windows-reserved names and characters, invalid UTF-8, too
//!   long, too deep, duplicates, and names that collide after Unicode NFC
//!   normalisation and lower-casing (a file against a folder too). Names are
//!   shown in messages with control and invisible characters escaped.
//! * **Types** — symlinks, devices, FIFOs, sockets (Unix mode in the external
//!   attributes); encrypted entries; methods other than stored and deflate.
//! * **Sizes** — the [`Limits`]: package size, entries per archive, per-entry
//!   and total uncompressed size, compression ratio, JSON size. Data is held
//!   to its declared size (the decompressor's output is cut at the declared
//!   size + 1 byte), its CRC-32 and its exact compressed length.
//! * **Nesting** — the outer archive may hold only `client.zip` and
//!   `controller.zip` (OS litter such as `__MACOSX/`, `.DS_Store`,
//!   `Thumbs.db` is ignored with a warning); any other entry, including any
//!   other archive, is refused. Inside a plugin folder a `.zip` is an ordinary
//!   data file: it is installed as bytes and never opened, and counts against
//!   the same limits, so it cannot be a bomb.
//! * **Format** — [`layout`](self) per side: `NAME/NAME.json`, `NAME/NAME.lic`,
//!   `NAME.so` (controller), `NAME.so` and/or `NAME.dll` with the matching ABI
//!   runtime (client), case-sensitive stems, no files outside plugin folders.
//!
//! # What is written
//!
//! `staging/client/NAME/...` and `staging/controller/NAME/...`, created
//! component by component, files with `O_EXCL|O_NOFOLLOW`, mode 0644, folders
//! 0755, whatever the archive says; nothing is fsynced (staging is not the
//! installation: the store's commit fsyncs every staged file and folder it
//! installs, a transaction's prepare fsyncs its staged tree, and staging is
//! discarded after a crash). An inner zip is first spooled (decompressed, size- and
//! CRC-checked) to `staging/.spool-<side>.zip` and removed after use. On any
//! refusal or failure everything this call created is removed, leaving the
//! staging directory empty.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod archive;
pub mod binary;
mod entry_name;
mod headers;
mod layout;
mod limits;
pub mod progress;
mod staging;
mod window;

pub use layout::Libraries;
pub use limits::Limits;

use archive::{Archive, DataError, Entry, ReadFailure};
use progress::{Counted, NoProgress, Tracker, UnpackProgress};
use staging::{Staging, WriteFailure};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use xplugin_model::manifest::Side;
use xplugin_model::{Failure, Problem, ProblemCode, Problems};

/// The folder under the staging directory that holds a side's plugins.
pub fn side_dir_name(side: Side) -> &'static str {
    match side {
        Side::Client => "client",
        Side::Controller => "controller",
    }
}

/// What [`unpack_package`] produced.
#[derive(Debug, Clone)]
pub struct UnpackedPackage {
    /// The client side, if the package has `client.zip`.
    pub client: Option<SideTree>,
    /// The controller side, if the package has `controller.zip`.
    pub controller: Option<SideTree>,
    /// Warnings only (ignored OS litter); the package was accepted.
    pub warnings: Problems,
    /// Side archives the package holds that were left packed
    /// ([`unpack_package_sides`]).
    pub not_unpacked: Vec<Side>,
}

/// One unpacked side.
#[derive(Debug, Clone)]
pub struct SideTree {
    /// Which side.
    pub side: Side,
    /// `staging/client` or `staging/controller`.
    pub dir: PathBuf,
    /// Its plugin folders, sorted by name.
    pub plugins: Vec<PluginFolder>,
}

/// One unpacked plugin folder.
#[derive(Debug, Clone)]
pub struct PluginFolder {
    /// The folder name, which the format makes the plugin name.
    pub name: String,
    /// `staging/<side>/<name>`.
    pub dir: PathBuf,
    /// Every file, relative to `dir`, `/`-separated, sorted.
    pub files: Vec<String>,
    /// Which libraries and runtimes are present.
    pub libraries: Libraries,
}

/// Why a package was not unpacked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackageError {
    /// The package is bad. Holds every problem found (errors, and warnings
    /// such as ignored litter), each naming the entry, e.g.
    /// `plugindemo.zip: controller.zip: plugindemo/plugindemo.so`.
    #[error("the package is refused; nothing was installed.\n{0}")]
    Refused(Problems),
    /// Our side failed: reading the package file, or writing the staging
    /// directory (full disk, permissions, a staging directory that is not an
    /// empty real directory).
    #[error("cannot unpack the package: {}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Failure for PackageError {
    fn problems(&self) -> Problems {
        match self {
            PackageError::Refused(problems) => problems.clone(),
            PackageError::Io { path, .. } => Problems(vec![Problem::from_error(
                ProblemCode::PackageUnreadable,
                path.display().to_string(),
                self,
                "check that the file is readable and that the install root's filesystem has space and is writable",
            )]),
        }
    }
}

impl From<WriteFailure> for PackageError {
    fn from(f: WriteFailure) -> Self {
        PackageError::Io {
            path: f.path,
            source: f.source,
        }
    }
}

/// Unpacks the untrusted package at `package` into `staging`.
///
/// `staging` must be an existing, empty, real directory on the same
/// filesystem as the install root; on success it holds `client/` and/or
/// `controller/` (see the module documentation) and nothing else. Memory use
/// is bounded by a few fixed buffers plus metadata proportional to
/// [`Limits::max_entries`]; disk use by [`Limits::max_package_bytes`] (one
/// spooled inner zip) plus [`Limits::max_total_uncompressed`].
///
/// # Errors
///
/// [`PackageError::Refused`] with every problem when the package is bad (it
/// breaks the format, a limit, or any rule in the module documentation);
/// [`PackageError::Io`] when reading the package or writing the staging
/// directory fails, or `staging` is not an empty directory. On any error,
/// everything this call created in `staging` has been removed.
pub fn unpack_package(
    package: &Path,
    staging: &Path,
    limits: &Limits,
) -> Result<UnpackedPackage, PackageError> {
    unpack_package_sides(package, staging, limits, &[Side::Client, Side::Controller])
}

/// [`unpack_package`] of the side archives in `sides` only; the outer
/// archive is checked whole, the other side archives are left packed and
/// listed in [`UnpackedPackage::not_unpacked`] (the pendant forwards the
/// controller part to the controller, which checks it itself).
///
/// # Errors
/// As [`unpack_package`].
pub fn unpack_package_sides(
    package: &Path,
    staging: &Path,
    limits: &Limits,
    sides: &[Side],
) -> Result<UnpackedPackage, PackageError> {
    unpack_package_with_progress(package, staging, limits, sides, &NoProgress)
}

/// [`unpack_package_sides`], telling `progress` the bytes expected and
/// written and the plugin folders found as it goes.
///
/// # Errors
/// As [`unpack_package`].
pub fn unpack_package_with_progress(
    package: &Path,
    staging: &Path,
    limits: &Limits,
    sides: &[Side],
    progress: &dyn UnpackProgress,
) -> Result<UnpackedPackage, PackageError> {
    let mut stage = Staging::open(staging)?;
    let mut tracker = Tracker::new(progress);
    let result = unpack_into(package, &mut stage, limits, sides, &mut tracker);
    if result.is_err() {
        if let Err(cleanup) = stage.remove_all() {
            log::error!(
                "could not remove the refused package's files from staging: {}: {}",
                cleanup.path.display(),
                cleanup.source
            );
        }
    }
    result
}

fn read_failure(package: &Path) -> impl Fn(ReadFailure) -> PackageError + '_ {
    move |ReadFailure(source)| PackageError::Io {
        path: package.to_path_buf(),
        source,
    }
}

fn unpack_into(
    package: &Path,
    stage: &mut Staging,
    limits: &Limits,
    sides: &[Side],
    tracker: &mut Tracker<'_>,
) -> Result<UnpackedPackage, PackageError> {
    let label = package
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| package.display().to_string());
    let mut problems = Problems::default();
    let file = open_package(package, &label, limits, &mut problems)?;
    // The outer entries are archives, bounded by the package limit rather
    // than the per-file one, and not counted in the unpacked total.
    let outer_limits = Limits {
        max_entry_uncompressed: limits.max_package_bytes,
        max_total_uncompressed: u64::MAX,
        ..limits.clone()
    };
    let mut outer_total = 0;
    let outer = window::Window::whole(file)
        .map_err(ReadFailure)
        .and_then(|file| {
            archive::scan(file, &label, &outer_limits, &mut outer_total, &mut problems)
        })
        .map_err(read_failure(package))?;
    let Some(outer) = outer else {
        return Err(PackageError::Refused(problems));
    };
    if problems.has_errors() {
        // A structurally bad outer archive: nothing in it can be trusted.
        return Err(PackageError::Refused(problems));
    }
    let found = side_archives(&outer, &label, &mut problems);
    for (_, entry) in found.iter().filter(|(side, _)| sides.contains(side)) {
        tracker.side_archive(entry.uncompressed_size);
    }

    let mut total = 0u64;
    let mut unpacked = UnpackedPackage {
        client: None,
        controller: None,
        warnings: Problems::default(),
        not_unpacked: Vec::new(),
    };
    for (side, entry) in found {
        if !sides.contains(&side) {
            unpacked.not_unpacked.push(side);
            continue;
        }
        let tree = unpack_side(
            &outer,
            entry,
            side,
            stage,
            limits,
            &mut total,
            &mut problems,
            tracker,
        )
        .map_err(|e| match e {
            SideFailure::Read(r) => read_failure(package)(r),
            SideFailure::Write(w) => w.into(),
        })?;
        match side {
            Side::Client => unpacked.client = tree,
            Side::Controller => unpacked.controller = tree,
        }
    }
    if problems.has_errors() {
        return Err(PackageError::Refused(problems));
    }
    unpacked.warnings = problems;
    Ok(unpacked)
}

/// Opens the package file, refusing anything but a regular file within
/// the package size limit (a FIFO or a device would block or read forever).
fn open_package(
    package: &Path,
    label: &str,
    limits: &Limits,
    problems: &mut Problems,
) -> Result<File, PackageError> {
    let io_error = |source| PackageError::Io {
        path: package.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(package).map_err(io_error)?;
    if !meta.is_file() {
        return Err(io_error(io::Error::other(
            "the package is not a regular file",
        )));
    }
    let file = File::open(package).map_err(io_error)?;
    let len = file.metadata().map_err(io_error)?.len();
    if len > limits.max_package_bytes {
        problems.push(Problem::new(
            ProblemCode::PackageTooLarge,
            label,
            format!(
                "the package is {len} bytes, the limit is {}",
                limits.max_package_bytes
            ),
            "raise max_package_bytes in the host configuration if the package is genuine",
        ));
        return Err(PackageError::Refused(std::mem::take(problems)));
    }
    Ok(file)
}

/// The inner archives of the outer one, sorted by side; litter and anything
/// else is reported to `problems`.
fn side_archives<'a>(
    outer: &'a Archive,
    label: &str,
    problems: &mut Problems,
) -> Vec<(Side, &'a Entry)> {
    let mut found: Vec<(Side, &Entry)> = Vec::new();
    for entry in &outer.entries {
        if entry.litter {
            problems.push(litter_warning(entry));
            continue;
        }
        match classify_outer(entry) {
            Ok(side) if found.iter().all(|(s, _)| *s != side) => found.push((side, entry)),
            Ok(_) => {} // duplicates were refused by the scan already
            Err(problem) => problems.push(problem),
        }
    }
    if found.is_empty() {
        problems.push(Problem::new(
            ProblemCode::PackageNoSideArchive,
            label,
            "the package contains neither client.zip nor controller.zip",
            "put client.zip and/or controller.zip at the top of the package (not inside a folder)",
        ));
    }
    found.sort_by_key(|(side, _)| *side);
    found
}

fn litter_warning(entry: &Entry) -> Problem {
    Problem::new(
        ProblemCode::PackageLitter,
        entry.subject.clone(),
        "operating-system litter, ignored (not installed)",
        "nothing to do; build packages with `xplugin-pack` to leave it out",
    )
}

/// Which side an outer entry is, or why it does not belong there.
fn classify_outer(entry: &Entry) -> Result<Side, Problem> {
    let components = &entry.name.components;
    let last = components.last().map(String::as_str).unwrap_or_default();
    if !entry.name.is_dir && components.len() == 1 {
        match last {
            "client.zip" => return Ok(Side::Client),
            "controller.zip" => return Ok(Side::Controller),
            _ => {}
        }
    }
    let fixed = ["client.zip", "controller.zip"];
    let (code, message, hint) = if let Some(wanted) =
        fixed.iter().find(|f| f.eq_ignore_ascii_case(last))
    {
        if components.len() == 1 {
            (
                ProblemCode::PackageInnerArchiveName,
                format!("expected {wanted}, found {last}: the inner archive names are fixed and case-sensitive"),
                format!("rename it to {wanted}"),
            )
        } else {
            (
                ProblemCode::PackageInnerArchiveInFolder,
                format!("{wanted} is inside a folder; it must be at the top of the package"),
                "zip client.zip and controller.zip themselves, not the folder that holds them"
                    .to_string(),
            )
        }
    } else if entry.name.is_dir {
        (
            ProblemCode::PackageUnexpectedEntry,
            "a folder in the package; the package may only hold client.zip and controller.zip"
                .to_string(),
            "zip client.zip and controller.zip themselves, not the folder that holds them"
                .to_string(),
        )
    } else if last.to_ascii_lowercase().ends_with(".zip") {
        (
            ProblemCode::PackageNestedArchive,
            "a nested archive other than client.zip and controller.zip; no other nesting is allowed"
                .to_string(),
            "put plugins inside client.zip or controller.zip".to_string(),
        )
    } else {
        (
            ProblemCode::PackageUnexpectedEntry,
            "an unexpected file; the package may only hold client.zip and controller.zip"
                .to_string(),
            "move it into a plugin folder inside client.zip or controller.zip, or leave it out"
                .to_string(),
        )
    };
    Err(Problem::new(code, entry.subject.clone(), message, hint))
}

enum SideFailure {
    Read(ReadFailure),
    Write(WriteFailure),
}

impl From<WriteFailure> for SideFailure {
    fn from(w: WriteFailure) -> Self {
        SideFailure::Write(w)
    }
}

/// Checks one inner zip and unpacks its files under `staging/<side>/`.
/// A stored inner zip (what `xplugin-pack` and most zip tools write: a zip
/// does not compress) is read in place, after one pass that checks its
/// CRC-32; a compressed one is first inflated into a staging file (a
/// "spool"). Problems go to `problems`; `None` when the side could not be
/// unpacked (the package is then refused).
#[allow(clippy::too_many_arguments)] // one call site; the state is all distinct
fn unpack_side(
    outer: &Archive,
    entry: &Entry,
    side: Side,
    stage: &mut Staging,
    limits: &Limits,
    total: &mut u64,
    problems: &mut Problems,
    tracker: &mut Tracker<'_>,
) -> Result<Option<SideTree>, SideFailure> {
    let corrupt = |problems: &mut Problems, message: String| {
        problems.push(Problem::new(
            ProblemCode::PackageCorruptData,
            entry.subject.clone(),
            message,
            "the package is corrupt or tampered with; get a fresh copy from the vendor",
        ));
    };
    if entry.method == archive::Method::Stored {
        let mut counted = Counted {
            inner: &mut io::sink(),
            progress: tracker.progress,
        };
        match archive::copy_entry_data(&outer.file, entry, &mut counted) {
            Ok(()) => {}
            Err(DataError::Bad(message)) => {
                corrupt(problems, message);
                return Ok(None);
            }
            Err(DataError::Read(e) | DataError::Write(e)) => {
                return Err(SideFailure::Read(ReadFailure(e)))
            }
        }
        let inner = outer
            .file
            .part_at(entry.data_start, entry.compressed_size)
            .map_err(|e| SideFailure::Read(ReadFailure(e)))?;
        return unpack_inner(
            inner, None, entry, side, stage, limits, total, problems, tracker,
        );
    }
    let spool_name = format!(".spool-{}", side.archive_name());
    let (mut spool, spool_path) = stage.create_file(&[spool_name.as_str()])?;
    let mut counted = Counted {
        inner: &mut spool,
        progress: tracker.progress,
    };
    let copied = archive::copy_entry_data(&outer.file, entry, &mut counted);
    drop(spool);
    match copied {
        Ok(()) => {}
        Err(DataError::Bad(message)) => {
            corrupt(problems, message);
            stage.remove_file(&spool_path)?;
            return Ok(None);
        }
        Err(DataError::Read(e)) => return Err(SideFailure::Read(ReadFailure(e))),
        Err(DataError::Write(source)) => {
            return Err(SideFailure::Write(WriteFailure {
                path: spool_path,
                source,
            }))
        }
    }
    let spooled = File::open(&spool_path)
        .and_then(window::Window::whole)
        .map_err(|source| WriteFailure {
            path: spool_path.clone(),
            source,
        })?;
    let result = unpack_inner(
        spooled,
        Some(&spool_path),
        entry,
        side,
        stage,
        limits,
        total,
        problems,
        tracker,
    );
    stage.remove_file(&spool_path)?;
    result
}

/// A failure reading the inner archive: of the package when it is read in
/// place, of our own staging file (reported against its path) when spooled.
fn inner_read_failure(spool_path: Option<&Path>) -> impl Fn(io::Error) -> SideFailure + '_ {
    move |source| match spool_path {
        Some(path) => SideFailure::Write(WriteFailure {
            path: path.to_path_buf(),
            source,
        }),
        None => SideFailure::Read(ReadFailure(source)),
    }
}

#[allow(clippy::too_many_arguments)] // one call site; the state is all distinct
fn unpack_inner(
    inner: window::Window,
    spool_path: Option<&Path>,
    entry: &Entry,
    side: Side,
    stage: &mut Staging,
    limits: &Limits,
    total: &mut u64,
    problems: &mut Problems,
    tracker: &mut Tracker<'_>,
) -> Result<Option<SideTree>, SideFailure> {
    let label = entry.subject.as_str();
    let errors_before = problems.errors().count();
    let Some(inner) = archive::scan(inner, label, limits, total, problems)
        .map_err(|ReadFailure(e)| inner_read_failure(spool_path)(e))?
    else {
        return Ok(None);
    };
    let structurally_sound = problems.errors().count() == errors_before;
    for litter in inner.entries.iter().filter(|e| e.litter) {
        problems.push(litter_warning(litter));
    }
    let folders = layout::check_side(side, label, &inner.entries, problems);
    if !structurally_sound {
        return Ok(None);
    }

    let files: u64 = inner
        .entries
        .iter()
        .filter(|e| !e.litter && !e.name.is_dir)
        .map(|e| e.uncompressed_size)
        .fold(0, u64::saturating_add);
    tracker.side_read(entry.uncompressed_size, files, folders.len());

    let side_dir = stage.make_dirs(&[side_dir_name(side)])?;
    for entry in inner.entries.iter().filter(|e| !e.litter) {
        let mut components: Vec<&str> = vec![side_dir_name(side)];
        components.extend(entry.name.components.iter().map(String::as_str));
        if entry.name.is_dir {
            stage.make_dirs(&components)?;
            continue;
        }
        let (mut file, path) = stage.create_file(&components)?;
        let mut counted = Counted {
            inner: &mut file,
            progress: tracker.progress,
        };
        match archive::copy_entry_data(&inner.file, entry, &mut counted) {
            // No fsync per file here: staging is not the installation. The
            // store's commit fsyncs every staged file it links into a
            // generation before the switch, and recovery discards staging
            // after a crash, so syncing here only doubled the import's fsyncs.
            Ok(()) => {}
            Err(DataError::Bad(message)) => {
                problems.push(Problem::new(
                    ProblemCode::PackageCorruptData,
                    entry.subject.clone(),
                    message,
                    "the package is corrupt or tampered with; get a fresh copy from the vendor",
                ));
                drop(file);
                stage.remove_file(&path)?;
            }
            Err(DataError::Read(e)) => return Err(inner_read_failure(spool_path)(e)),
            Err(DataError::Write(source)) => {
                return Err(SideFailure::Write(WriteFailure { path, source }))
            }
        }
    }
    let plugins = folders
        .into_iter()
        .map(|f| PluginFolder {
            dir: side_dir.join(&f.name),
            name: f.name,
            files: f.files,
            libraries: f.libraries,
        })
        .collect();
    Ok(Some(SideTree {
        side,
        dir: side_dir,
        plugins,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use zip::write::SimpleFileOptions;

    fn zip_bytes(files: &[(&str, &[u8])]) -> Vec<u8> {
        zip_bytes_as(files, zip::CompressionMethod::Deflated)
    }

    fn zip_bytes_as(files: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in files {
            let opts = SimpleFileOptions::default()
                .compression_method(method)
                .unix_permissions(0o4755);
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn package(dir: &Path, client: &[(&str, &[u8])], controller: &[(&str, &[u8])]) -> PathBuf {
        let c = zip_bytes(client);
        let k = zip_bytes(controller);
        let outer = zip_bytes(&[("client.zip", &c), ("controller.zip", &k)]);
        let path = dir.join("plugindemo.zip");
        std::fs::write(&path, outer).unwrap();
        path
    }

    #[test]
    fn well_formed_package_unpacks_with_fixed_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let pkg = package(
            tmp.path(),
            &[
                ("plugindemo/plugindemo.json", b"{}"),
                ("plugindemo/plugindemo.lic", b"lic"),
                ("plugindemo/plugindemo.so", b"\x7fELF"),
                ("plugindemo/xplugin.so", b"\x7fELF"),
                ("plugindemo/res/icon.png", b"png"),
            ],
            &[
                ("plugindemo/plugindemo.json", b"{}"),
                ("plugindemo/plugindemo.lic", b"lic"),
                ("plugindemo/plugindemo.so", b"\x7fELF"),
            ],
        );
        let staging = tmp.path().join("staging");
        std::fs::create_dir(&staging).unwrap();
        let out = unpack_package(&pkg, &staging, &Limits::default()).unwrap();
        let client = out.client.unwrap();
        assert_eq!(client.plugins.len(), 1);
        let p = &client.plugins[0];
        assert_eq!(p.name, "plugindemo");
        assert_eq!(p.libraries.runtime_so.as_deref(), Some("xplugin.so"));
        assert!(p.files.contains(&"res/icon.png".to_string()));
        let icon = staging.join("client/plugindemo/res/icon.png");
        assert_eq!(std::fs::read(&icon).unwrap(), b"png");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&icon).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, 0o644);
        }
        assert!(out.controller.is_some());
        let mut top: Vec<_> = std::fs::read_dir(&staging)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        top.sort();
        assert_eq!(top, ["client", "controller"]);
    }

    #[test]
    fn stored_inner_zips_are_read_in_place_and_their_crc_is_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let client = zip_bytes(&[
            ("plugindemo/plugindemo.json", b"{}"),
            ("plugindemo/plugindemo.lic", b"lic"),
            ("plugindemo/plugindemo.so", b"\x7fELF client"),
            ("plugindemo/xplugin.so", b"\x7fELF"),
        ]);
        let controller = zip_bytes(&[
            ("plugindemo/plugindemo.json", b"{}"),
            ("plugindemo/plugindemo.lic", b"lic"),
            ("plugindemo/plugindemo.so", b"\x7fELF controller"),
        ]);
        let outer = zip_bytes_as(
            &[("client.zip", &client), ("controller.zip", &controller)],
            zip::CompressionMethod::Stored,
        );
        let pkg = tmp.path().join("plugindemo.zip");
        std::fs::write(&pkg, &outer).unwrap();
        let staging = tmp.path().join("staging");
        std::fs::create_dir(&staging).unwrap();
        let out = unpack_package(&pkg, &staging, &Limits::default()).unwrap();
        assert!(out.client.is_some() && out.controller.is_some());
        assert_eq!(
            std::fs::read(staging.join("controller/plugindemo/plugindemo.so")).unwrap(),
            b"\x7fELF controller"
        );
        let mut top: Vec<_> = std::fs::read_dir(&staging)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        top.sort();
        assert_eq!(top, ["client", "controller"], "no spool file is left");

        // One byte of the stored client.zip changed (inside an entry's
        // compressed data, so its own structure still reads): the outer
        // CRC-32 refuses it before anything of it is unpacked.
        let at = outer
            .windows(client.len())
            .position(|w| w == client.as_slice())
            .unwrap()
            + 40;
        let mut bad = outer.clone();
        bad[at] ^= 0x01;
        std::fs::write(&pkg, &bad).unwrap();
        let staging = tmp.path().join("staging-bad");
        std::fs::create_dir(&staging).unwrap();
        let err = unpack_package(&pkg, &staging, &Limits::default()).unwrap_err();
        let PackageError::Refused(problems) = err else {
            panic!("expected a refusal, got {err}");
        };
        let p = problems.errors().next().unwrap();
        assert_eq!(p.code, ProblemCode::PackageCorruptData, "{problems}");
        assert_eq!(p.subject, "plugindemo.zip: client.zip", "{problems}");
        assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
    }

    #[test]
    fn layout_problems_are_all_reported_and_staging_is_emptied() {
        let tmp = tempfile::tempdir().unwrap();
        let pkg = package(
            tmp.path(),
            &[
                ("plugindemo/PluginDemo.json", b"{}"),
                ("plugindemo/plugindemo.dll", b"MZ"),
            ],
            &[("plugindemo/plugindemo.json", b"{}"), ("stray.txt", b"x")],
        );
        let staging = tmp.path().join("staging");
        std::fs::create_dir(&staging).unwrap();
        let err = unpack_package(&pkg, &staging, &Limits::default()).unwrap_err();
        let PackageError::Refused(problems) = err else {
            panic!("expected a refusal, got {err}");
        };
        let text = problems.to_string();
        assert!(text.contains("expected plugindemo.json"), "{text}");
        assert!(text.contains("found PluginDemo.json"), "{text}");
        assert!(text.contains("xplugin.dll"), "{text}");
        assert!(
            text.contains("plugindemo.zip: controller.zip: stray.txt"),
            "{text}"
        );
        assert!(text.contains("missing plugindemo.so"), "{text}");
        assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
    }
}
