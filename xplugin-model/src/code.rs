//! The stable, machine-readable codes of every [`Problem`](crate::Problem).
//!
//! A code names *which* problem was found (`package.path_traversal`,
//! `license.device_mismatch`, `graph.cycle`); the message and hint around it
//! are prose for people and may improve from release to release, the code
//! does not change. Scripts, tests and support tools match on codes.
//!
//! The list below is the only definition: [`ProblemCode`], its string form,
//! its severity, what it means and what to do about it all come from one
//! table, and `docs/problems.md` is that table rendered (a test keeps the two
//! equal). A code is `area.what`, lower case with `_`: the area is the
//! concept that found the problem (`package`, `layout`, `manifest`, `compat`,
//! `graph`, `license`, `key`, `device`, `clock`, `library`, `import`, `store`,
//! `admin`, `config`, `host`, `usage`, `daemon`, `link`, `pack`).
//!
//! Rules for changing the table: never rename or reuse a code (scripts read
//! them); add new codes at the end of their area; a code whose problem can no
//! longer occur stays, documented as such.

use crate::problem::Severity;
use serde::{Serialize, Serializer};
use std::fmt;

macro_rules! problem_codes {
    ($(
        $variant:ident = $code:literal, $severity:ident,
            $meaning:literal,
            $what_to_do:literal;
    )*) => {
        /// Which problem was found: one stable code per kind of problem.
        /// Serialized (and displayed) as its string, e.g. `"graph.cycle"`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum ProblemCode {
            $(
                #[doc = concat!("`", $code, "` (", stringify!($severity), "): ", $meaning)]
                $variant,
            )*
        }

        impl ProblemCode {
            /// Every code, in table order.
            pub const ALL: &'static [ProblemCode] = &[$(ProblemCode::$variant),*];

            /// The stable string, e.g. `"license.device_mismatch"`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ProblemCode::$variant => $code,)*
                }
            }

            /// Whether a problem with this code refuses (error) or only
            /// informs (warning).
            pub const fn severity(self) -> Severity {
                match self {
                    $(ProblemCode::$variant => Severity::$severity,)*
                }
            }

            /// What the problem means, in one or two sentences.
            pub const fn meaning(self) -> &'static str {
                match self {
                    $(ProblemCode::$variant => $meaning,)*
                }
            }

            /// What to do about it in general (a problem's own hint is more
            /// specific).
            pub const fn what_to_do(self) -> &'static str {
                match self {
                    $(ProblemCode::$variant => $what_to_do,)*
                }
            }
        }
    };
}

problem_codes! {
    // --- package: the archive file and its entries (xplugin-package) ---
    PackageTooLarge = "package.too_large", Error,
        "The package file is larger than the configured max_package_bytes.",
        "Check that it is the vendor's package; raise max_package_bytes in the host configuration if it is genuine.";
    PackageNotAZip = "package.not_a_zip", Error,
        "The package, or client.zip/controller.zip inside it, is not a readable zip archive (truncated, corrupt, or followed by other bytes).",
        "Get a fresh copy of the package from the vendor.";
    PackageEmptyArchive = "package.empty_archive", Error,
        "The archive holds no entries.",
        "Rebuild the package with `xplugin-pack pack`.";
    PackageTooManyEntries = "package.too_many_entries", Error,
        "The archive declares more entries than max_entries allows.",
        "Split the package, or raise max_entries in the host configuration if it is genuine.";
    PackageMalformedDirectory = "package.malformed_directory", Error,
        "The central directory does not fit the end record: records are missing, hidden or run past it.",
        "Rebuild the package with a standard zip tool; do not install this file.";
    PackageAmbiguousDirectory = "package.ambiguous_directory", Error,
        "Two zip readers would see different contents: two end records, an end record and a zip64 end record that disagree, or an entry the zip library reads differently.",
        "Do not install this file; rebuild the package with a standard zip tool.";
    PackageMultiDisk = "package.multi_disk", Error,
        "The archive (or an entry) claims to span several disks; multi-part archives are not supported.",
        "Rebuild the package as one single-part zip file.";
    PackagePrependedData = "package.prepended_data", Error,
        "Other data comes before the archive (a self-extractor or a polyglot file).",
        "Rebuild the package as a plain zip file.";
    PackageOversizedExtra = "package.oversized_extra", Error,
        "An entry carries more than 4 KiB of extra fields and comment.",
        "Rebuild the package with a standard zip tool.";
    PackageNameTooLong = "package.name_too_long", Error,
        "An entry name is longer than max_name_len bytes.",
        "Shorten the file or folder names, or raise max_name_len in the host configuration.";
    PackageTooDeep = "package.too_deep", Error,
        "An entry is nested more folders deep than max_depth allows.",
        "Flatten the folder structure, or raise max_depth in the host configuration.";
    PackageBadName = "package.bad_name", Error,
        "An entry name is empty or has an empty path component (`//`).",
        "Rebuild the package with plain relative file names.";
    PackageNameNotUtf8 = "package.name_not_utf8", Error,
        "An entry name is not valid UTF-8.",
        "Rebuild the package with a zip tool that stores UTF-8 file names.";
    PackageNameControlCharacter = "package.name_control_character", Error,
        "An entry name contains a NUL byte or another control character.",
        "Rebuild the package with plain relative file names.";
    PackageNameInvisibleCharacter = "package.name_invisible_character", Error,
        "An entry name contains an invisible or text-direction character that makes it look like another name.",
        "Rebuild the package with plain relative file names.";
    PackageBackslashInName = "package.backslash_in_name", Error,
        "An entry name contains a backslash, a path separator on Windows (and the `..\\` traversal trick).",
        "Use `/` as the folder separator; rebuild the package with a standard zip tool.";
    PackageAbsolutePath = "package.absolute_path", Error,
        "An entry name is an absolute path (starts with `/`, or `//` for a UNC path).",
        "Rebuild the package with relative file names.";
    PackageDriveOrStream = "package.drive_or_stream", Error,
        "An entry name contains `:` (a Windows drive letter or an alternate data stream).",
        "Rebuild the package with plain relative file names.";
    PackagePathTraversal = "package.path_traversal", Error,
        "An entry name contains a `.` or `..` component that could point outside its folder.",
        "Do not install this file; a package must never refer outside its own folders.";
    PackageNameNotPortable = "package.name_not_portable", Error,
        "An entry name means something else on Windows: a reserved character, a trailing dot or space, or a device name such as `con`.",
        "Rename the file and rebuild the package.";
    PackageDuplicateEntry = "package.duplicate_entry", Error,
        "Two entries have the same name; which one wins depends on the tool.",
        "Rebuild the package with a standard zip tool.";
    PackageNameCollision = "package.name_collision", Error,
        "Two names collide ignoring case or Unicode normalisation, or a name is used both as a file and as a folder.",
        "Give every file and folder one distinct spelling and rebuild the package.";
    PackageEncrypted = "package.encrypted", Error,
        "An entry is encrypted.",
        "Rebuild the package without a password.";
    PackageUnsupportedMethod = "package.unsupported_method", Error,
        "An entry uses a compression method other than stored (0) or deflate (8).",
        "Rebuild the package with plain deflate compression.";
    PackageSymlink = "package.symlink", Error,
        "An entry is a symbolic link.",
        "Replace the link by a copy of the file it points to and rebuild the package.";
    PackageSpecialFile = "package.special_file", Error,
        "An entry is a device, FIFO, socket or other non-regular file (by its Unix mode).",
        "Packages hold only regular files and folders; rebuild the package.";
    PackageMalformedEntry = "package.malformed_entry", Error,
        "An entry's headers are inconsistent in themselves: a folder with data, unequal sizes of a stored entry, a local header missing or outside the data area.",
        "Rebuild the package with a standard zip tool; do not install this file.";
    PackageHeaderMismatch = "package.header_mismatch", Error,
        "An entry's local header or data descriptor disagrees with its central directory record, so different tools would unpack different files.",
        "Do not install this file; rebuild the package with a standard zip tool.";
    PackageOverlappingEntries = "package.overlapping_entries", Error,
        "Two entries share bytes of the archive (a zip bomb or a hidden header).",
        "Do not install this file; rebuild the package with a standard zip tool.";
    PackageHiddenData = "package.hidden_data", Error,
        "The archive holds bytes that belong to no listed entry (possibly a hidden entry only a streaming unzipper sees).",
        "Do not install this file; rebuild the package with a standard zip tool.";
    PackageEntryTooLarge = "package.entry_too_large", Error,
        "One entry unpacks to more than max_entry_uncompressed bytes.",
        "Raise max_entry_uncompressed in the host configuration if the file is genuine.";
    PackageCompressionRatio = "package.compression_ratio", Error,
        "An entry unpacks to more than max_ratio times its compressed size (a zip bomb?).",
        "Raise max_ratio in the host configuration if the file is genuine.";
    PackageJsonTooLarge = "package.json_too_large", Error,
        "A JSON file in the package is larger than max_json_bytes.",
        "Manifests are small; remove embedded data or raise max_json_bytes.";
    PackageTotalTooLarge = "package.total_too_large", Error,
        "The package unpacks to more than max_total_uncompressed bytes in total.",
        "Raise max_total_uncompressed in the host configuration if the package is genuine.";
    PackageCorruptData = "package.corrupt_data", Error,
        "An entry's data does not match its headers: CRC-32, size, or a deflate stream that is corrupt, truncated or hides data after its end.",
        "The package is corrupt or tampered with; get a fresh copy from the vendor.";
    PackageNoSideArchive = "package.no_side_archive", Error,
        "The package contains neither client.zip nor controller.zip at its top.",
        "Put client.zip and/or controller.zip at the top of the package (not inside a folder).";
    PackageInnerArchiveName = "package.inner_archive_name", Error,
        "An inner archive is named like client.zip or controller.zip but with other upper/lower case; the names are fixed and case-sensitive.",
        "Rename it to client.zip or controller.zip.";
    PackageInnerArchiveInFolder = "package.inner_archive_in_folder", Error,
        "client.zip or controller.zip is inside a folder of the package instead of at its top.",
        "Zip client.zip and controller.zip themselves, not the folder that holds them.";
    PackageNestedArchive = "package.nested_archive", Error,
        "The package holds another archive besides client.zip and controller.zip.",
        "Put plugins inside client.zip or controller.zip; no other nesting is allowed.";
    PackageUnexpectedEntry = "package.unexpected_entry", Error,
        "The package holds a file or folder besides client.zip and controller.zip.",
        "Move it into a plugin folder inside client.zip or controller.zip, or leave it out.";
    PackageLitter = "package.litter_ignored", Warning,
        "Operating-system litter (`__MACOSX/`, `.DS_Store`, `Thumbs.db`, ...) was found and ignored; it is not installed.",
        "Nothing to do; build packages with `xplugin-pack pack` to leave it out.";
    PackageUnreadable = "package.unreadable", Error,
        "The package file could not be read, or the staging directory could not be written (not the package's fault).",
        "Check that the file is readable and that the install root's filesystem has space and is writable.";

    // --- layout: the vendor format of each side (xplugin-package) ---
    LayoutFileOutsideFolder = "layout.file_outside_folder", Error,
        "A file lies at the top of client.zip or controller.zip, outside any plugin folder.",
        "Put every file inside its plugin's folder (NAME/...).";
    LayoutNoPluginFolder = "layout.no_plugin_folder", Error,
        "client.zip or controller.zip contains no plugin folder.",
        "Put one folder per plugin into the archive.";
    LayoutMissingFile = "layout.missing_file", Error,
        "A plugin folder lacks a required file: NAME.json, NAME.lic, or the library (NAME.so; or NAME.dll for client plugins).",
        "Add the file, named after the folder, and rebuild the package.";
    LayoutWrongCase = "layout.wrong_case", Error,
        "A required file is there but with other upper/lower case than the folder name; names are case-sensitive.",
        "Rename the file to match the folder name exactly.";
    LayoutStemMismatch = "layout.stem_mismatch", Error,
        "A required file's stem differs from the folder name (e.g. demo/other.json).",
        "Rename the file or the folder so that they match.";
    LayoutRuntimeMissing = "layout.runtime_missing", Error,
        "A client plugin ships NAME.so (or NAME.dll) without the xplugin ABI runtime next to it (xplugin.so / libxplugin.so / xplugin.dll).",
        "Add the runtime library the plugin was linked against to the plugin folder.";

    // --- manifest: NAME.json (xplugin-model) ---
    ManifestUnreadable = "manifest.unreadable", Error,
        "The manifest file could not be read.",
        "Re-import the package; if it persists, check the install root's disk.";
    ManifestTooLarge = "manifest.too_large", Error,
        "The manifest is larger than manifests may be.",
        "Keep the manifest small; large data belongs in a separate file of the plugin folder.";
    ManifestSyntax = "manifest.syntax", Error,
        "The manifest is not valid JSON (comments are allowed).",
        "Fix the JSON at the position the message gives.";
    ManifestTrailingComma = "manifest.trailing_comma", Warning,
        "The manifest has a trailing comma; accepted, but strict JSON readers refuse it.",
        "Remove the comma before the closing bracket.";
    ManifestDuplicateKey = "manifest.duplicate_key", Error,
        "A key appears twice in one JSON object of the manifest; readers disagree on which value wins.",
        "Keep exactly one entry for the key.";
    ManifestNotAnObject = "manifest.not_an_object", Error,
        "The manifest, or its client_plugin/controller_plugin value, is not a JSON object.",
        "Write the manifest as {\"client_plugin\": {...}} or {\"controller_plugin\": {...}}.";
    ManifestWrongSide = "manifest.wrong_side", Error,
        "The manifest is for the other side (a controller manifest in client.zip or the reverse).",
        "Move the plugin folder to the other inner archive, or fix the manifest's top-level key.";
    ManifestMissingPluginObject = "manifest.missing_plugin_object", Error,
        "The manifest has no client_plugin/controller_plugin object.",
        "Wrap the plugin fields in {\"client_plugin\": {...}} or {\"controller_plugin\": {...}}.";
    ManifestBadShape = "manifest.bad_shape", Error,
        "The plugin object has the wrong shape: a keyed client manifest, an empty controller_plugin, or more than one plugin.",
        "Describe exactly one plugin, in the form the message shows.";
    ManifestKeyMismatch = "manifest.key_mismatch", Error,
        "A keyed controller manifest uses a key other than the folder name, or its \"name\" differs from the key.",
        "Make the key, the \"name\" field and the folder name the same.";
    ManifestMissingField = "manifest.missing_field", Error,
        "A required field (name, version, enable) is missing.",
        "Add the field the message names.";
    ManifestWrongType = "manifest.wrong_type", Error,
        "A field has the wrong JSON type (e.g. a number where a version string is expected).",
        "Write the field as the message shows.";
    ManifestBadTopic = "manifest.bad_topic", Error,
        "A topic in the manifest's \"bridge\" (the topics that cross the pendant link) is malformed, reserved (\"xplugin/...\") or one list is too long.",
        "Use 1 to 128 bytes of A-Z a-z 0-9 _ . - /, prefixed with the plugin name (\"plugindemo/button\").";
    ManifestInvalidName = "manifest.invalid_name", Error,
        "A plugin or dependency name breaks the naming rule.",
        "Rename the plugin (folder, files and \"name\") to follow the rule.";
    ManifestNameMismatch = "manifest.name_mismatch", Error,
        "The \"name\" field differs from the plugin folder name (case counts).",
        "Make folder name, \"name\" and file stems equal.";
    ManifestBadVersion = "manifest.bad_version", Error,
        "A version string is not a version (1 to 4 numeric parts, optional pre-release).",
        "Write a quoted version such as \"1.0.2.6\".";
    ManifestBadRange = "manifest.bad_range", Error,
        "A dependency's version range cannot be parsed.",
        "Write a range such as \">=1.2, <2\" or \"[1.2,2.0)\".";
    ManifestSelfDependency = "manifest.self_dependency", Error,
        "The plugin lists itself in \"depend\".",
        "Remove the plugin's own name from \"depend\".";
    ManifestDuplicateDependency = "manifest.duplicate_dependency", Warning,
        "A dependency is listed twice; both constraints apply.",
        "Keep one entry per dependency.";
    ManifestCtrlDependOnController = "manifest.ctrl_depend_on_controller", Error,
        "A controller plugin has \"ctrlDepend\", which only client plugins may have.",
        "Move the entries to \"depend\".";
    ManifestUnknownField = "manifest.unknown_field", Warning,
        "A field or key is not used by xplugin and is ignored (possibly a misspelling).",
        "Remove it, or fix its spelling as the hint suggests.";

    // --- compat: plugin vs host version (xplugin-model) ---
    CompatHostTooOld = "compat.host_too_old", Error,
        "The host (HMI or controller) version is below the plugin's minimum and not in its list of adapted versions.",
        "Install a plugin version built for this host version, or upgrade the host.";
    CompatHostNotListed = "compat.host_not_listed", Error,
        "The controller version is not one of the plugin's must_controller_version list.",
        "Install a plugin version built for this controller version, or switch the controller to a listed version.";

    // --- graph: the dependency resolver (xplugin-model) ---
    GraphPluginFailed = "graph.plugin_failed", Error,
        "The plugin failed an earlier check (license, compatibility, library), so it cannot load.",
        "Fix the failure the message names.";
    GraphDisabled = "graph.disabled", Warning,
        "The plugin is disabled, so it is not loaded.",
        "Enable it if it is needed.";
    GraphDuplicateName = "graph.duplicate_name", Error,
        "More than one plugin of the side has this name.",
        "Keep one plugin per name.";
    GraphMissingDependency = "graph.missing_dependency", Error,
        "A \"depend\" entry names a plugin that is not installed or imported.",
        "Install the dependency, or import a package that brings it.";
    GraphDependencyDisabled = "graph.dependency_disabled", Warning,
        "A dependency is disabled, so this plugin does not load.",
        "Enable the dependency if this plugin is needed.";
    GraphDependencyVersion = "graph.dependency_version", Error,
        "A dependency is present but its version is outside the range required.",
        "Install a version of the dependency inside the range.";
    GraphDependencyFailed = "graph.dependency_failed", Error,
        "A dependency (directly or down a chain) cannot load, so this plugin cannot either.",
        "Fix the root cause the chain ends in.";
    GraphCycle = "graph.cycle", Error,
        "The plugin is part of a dependency cycle (`a -> b -> a`).",
        "Break the cycle: remove one of the dependencies named.";
    GraphMissingCtrlDependency = "graph.missing_ctrl_dependency", Error,
        "A client plugin's \"ctrlDepend\" names a controller plugin that is not running.",
        "Install and enable the controller plugin on the controller.";
    GraphCtrlDependencyVersion = "graph.ctrl_dependency_version", Error,
        "A \"ctrlDepend\" controller plugin runs in a version outside the range required.",
        "Install a version of the controller plugin inside the range.";
    GraphCtrlStateUnknown = "graph.ctrl_state_unknown", Warning,
        "A \"ctrlDepend\" cannot be checked: which controller plugins run is unknown.",
        "Give the controller root (--controller-root) or the running set so it can be checked.";

    // --- license: NAME.lic against this device (xplugin-license) ---
    LicenseUnreadable = "license.unreadable", Error,
        "The license file cannot be read (missing, permissions).",
        "Every plugin folder needs the NAME.lic file from the vendor.";
    LicenseEmpty = "license.empty", Error,
        "The license file is empty (or holds only white space).",
        "Copy the .lic file again from the vendor's package, or ask the vendor for it.";
    LicenseOversized = "license.oversized", Error,
        "The license file is larger than any license this format produces.",
        "Ask the vendor for the plugin's .lic file made by xplugin-pack.";
    LicenseMalformed = "license.malformed", Error,
        "The license text is not a license (armor lines, base64 or text encoding are wrong).",
        "Copy the .lic file again from the vendor's package, or ask the vendor for a new one.";
    LicenseUnknownKey = "license.unknown_key", Error,
        "The license is signed with a vendor key this device does not trust.",
        "Install the vendor's public key in the trust store if you trust the vendor; otherwise ask for a license signed with a trusted key.";
    LicenseTruncatedSignature = "license.truncated_signature", Error,
        "The license's signature is not 64 bytes: the file was cut or edited.",
        "Copy the original .lic file from the vendor's package.";
    LicenseBadSignature = "license.bad_signature", Error,
        "The signature does not verify: the license was altered after signing, or signed by another key under the same name.",
        "Do not use this file; get the original .lic from the vendor.";
    LicenseDuplicateJsonKey = "license.duplicate_json_key", Error,
        "The signed content repeats a JSON key, so it could be read two ways.",
        "Ask the vendor for a license made by xplugin-pack.";
    LicenseInvalidPayload = "license.invalid_payload", Error,
        "The license is signed but its content breaks the license format.",
        "Ask the vendor to issue it again with xplugin-pack.";
    LicensePluginMismatch = "license.plugin_mismatch", Error,
        "The license is for another plugin.",
        "Ask the vendor for this plugin's license.";
    LicenseSideMismatch = "license.side_mismatch", Error,
        "The license is for the other side (client vs controller).",
        "Ask the vendor for a license for the side the plugin is installed on.";
    LicenseVersionMismatch = "license.version_mismatch", Error,
        "The plugin's version is outside the versions the license covers.",
        "Ask the vendor for a license covering this version, or install a covered version.";
    LicenseDeviceMismatch = "license.device_mismatch", Error,
        "The license is bound to other devices than this one.",
        "Send this device's id (`device-id`) to the vendor and ask for a license for it.";
    LicenseExpired = "license.expired", Error,
        "The license has expired by this device's clock.",
        "Renew the license with the vendor; if the clock is wrong, set it.";
    LicenseNotYetValid = "license.not_yet_valid", Error,
        "The license's not-before time has not come yet by this device's clock.",
        "Wait until then, or set the clock if it is wrong.";
    LicenseClockBehindIssue = "license.clock_behind_issue", Error,
        "This device's clock is before the license's issue time: the clock is behind.",
        "Set the system clock to the correct time (NTP), then retry.";
    LicenseClockSetBack = "license.clock_set_back", Error,
        "This device's clock is more than a day behind the latest time it has already seen: the clock was set back.",
        "Set the system clock to the correct time; if the recorded time is wrong, delete state/clock-hwm under the root.";
    LicenseClockFarFuture = "license.clock_far_future", Error,
        "This device's clock is more than 10 years ahead of the issue time or the latest time seen; time-limited licenses are not accepted with it.",
        "Set the system clock to the correct time.";
    LicenseFileMissing = "license.file_missing", Error,
        "A file the license covers is missing from the plugin folder.",
        "Reinstall the plugin from the vendor's package.";
    LicenseFileHashMismatch = "license.file_hash_mismatch", Error,
        "A file's SHA-256 differs from the licensed one: the file was changed or swapped.",
        "Reinstall the plugin from the vendor's original package; a rebuilt plugin needs a new license.";
    LicenseFileNotCovered = "license.file_not_covered", Error,
        "A file of the plugin folder that can hold code (a library or executable by its content, or a library by its name) is not covered by the license.",
        "Remove the file, or have the vendor license the plugin folder as shipped.";
    LicenseFileUnreadable = "license.file_unreadable", Error,
        "A licensed file, or the plugin folder, cannot be read or is not a regular file.",
        "Reinstall the plugin from the vendor's package.";
    LicenseNoTrustedKeys = "license.no_trusted_keys", Error,
        "This device trusts no vendor key (the trust store is missing, empty or unreadable), so no license can verify.",
        "Install the vendor's public key (KEYID.pub) in the trusted-keys directory.";
    LicenseUnlicensedAccepted = "license.unlicensed_accepted", Warning,
        "A license did not verify, and the plugin was accepted anyway because allow_unlicensed (development mode) is on.",
        "Development only: turn allow_unlicensed off on production robots.";

    // --- key: vendor key files and the trust store (xplugin-license) ---
    KeyIo = "key.io", Error,
        "A key file or the trust-store directory cannot be read or written.",
        "Check the path and its permissions.";
    KeyExists = "key.exists", Error,
        "A key file already exists; keys are never overwritten.",
        "Choose another directory or key id, or move the old key away.";
    KeyMalformed = "key.malformed", Error,
        "A key file is not a valid xplugin key file.",
        "Use the file written by `xplugin-pack keygen` unchanged.";
    KeyInsecurePermissions = "key.insecure_permissions", Error,
        "A private key file is readable by other users.",
        "chmod 600 the file, and consider the key leaked if others could read it.";
    KeyInvalidId = "key.invalid_id", Error,
        "A key id is not usable (1 to 64 characters from A-Z a-z 0-9 . _ -).",
        "Choose a key id that follows the rule.";
    KeyNameMismatch = "key.name_mismatch", Error,
        "A trusted key file is not named after the key id it holds.",
        "Rename the file to KEYID.pub or install the right key file.";
    KeyDuplicateId = "key.duplicate_id", Error,
        "Two files of the trust store define the same key id.",
        "Remove one of the files.";

    // --- device and clock: this device's identity and time (xplugin-license) ---
    DeviceIdUnreadable = "device.id_unreadable", Error,
        "The machine-id file this device's id is derived from cannot be read.",
        "Check that the file exists (`systemd-machine-id-setup`), or configure a serial number as the device identity.";
    DeviceIdMalformed = "device.id_malformed", Error,
        "The machine-id file does not hold a machine id (32 hex digits).",
        "Regenerate it with `systemd-machine-id-setup`, or configure a serial number.";
    DeviceBadSerial = "device.bad_serial", Error,
        "The configured device serial number cannot be used.",
        "Set a serial of 1 to 128 printable characters in the configuration.";
    ClockIo = "clock.io", Error,
        "The clock high-water mark file cannot be read or written.",
        "Check that the state directory exists and is writable by the loader.";
    ClockCorrupt = "clock.corrupt", Error,
        "The clock high-water mark file is damaged.",
        "Delete it; time-limited licenses lose their set-back protection until the next start records the time again.";

    // --- library: a plugin's .so/.dll, inspected without loading (xplugin-package) ---
    LibraryUnreadable = "library.unreadable", Error,
        "The library file cannot be opened.",
        "Re-import the package; if it persists, check the install root's disk.";
    LibraryNotALibrary = "library.not_a_library", Error,
        "The file is not an ELF or PE shared library this host can read.",
        "Rebuild it as a shared library (.so for Linux, .dll for Windows).";
    LibraryWrongArch = "library.wrong_arch", Error,
        "The library is built for another processor architecture than this host (or than the package declares).",
        "Rebuild the plugin for the target architecture (e.g. cargo build --target aarch64-unknown-linux-gnu).";
    LibraryNoAbiTag = "library.no_abi_tag", Error,
        "The library does not export the `xplugin_abi` tag, so it is not an xplugin plugin (or predates the tag).",
        "Build it with XPLUGIN_DEFINE_ABI_TAG (C) or xplugin_abi::export_plugin! (Rust).";
    LibraryBadAbiTag = "library.bad_abi_tag", Error,
        "The library's `xplugin_abi` tag has a wrong magic number: it is damaged or not an xplugin tag.",
        "Rebuild the plugin against xplugin.h / xplugin-abi.";
    LibraryAbiMajor = "library.abi_major", Error,
        "The library is built against an xplugin ABI major version this host does not support.",
        "Rebuild the plugin against the ABI major version this host supports.";
    LibraryWrongKind = "library.wrong_kind", Error,
        "The library is of another kind than its place needs: a client plugin in controller.zip, a controller plugin in client.zip, or not a runtime where the ABI runtime belongs.",
        "Move the plugin to the right inner archive, or ship the right library.";
    LibraryNoEntry = "library.no_entry", Error,
        "The library exports no `xplugin_entry` function.",
        "Build it with xplugin_abi::export_plugin! or export `const xplugin_descriptor *xplugin_entry(void)`.";
    LibraryMissing = "library.missing", Error,
        "The plugin's library for this platform is missing from its folder.",
        "Re-import the package.";
    LibraryRuntimeMissing = "library.runtime_missing", Error,
        "A client plugin's folder holds no xplugin ABI runtime for this platform.",
        "Ship the runtime library the plugin was built against in the plugin folder.";
    LibraryNoPlatformBuild = "library.no_platform_build", Warning,
        "The plugin ships no library for this platform (e.g. only a .dll on a Linux pendant); it is installed but cannot load here.",
        "Ask the vendor for a build for this platform if the plugin is needed here.";

    // --- import: the pendant's import of a package (xplugin-host) ---
    ImportNoControllerRoot = "import.no_controller_root", Error,
        "The package has a controller part but no controller root is known.",
        "Pass --controller-root DIR, or set controller_root in the client configuration.";
    ImportHostVersionUnknown = "import.host_version_unknown", Error,
        "This host's HMI or controller version is unknown, so compatibility cannot be checked.",
        "Pass --hmi-version / --controller-version, or set host_version in the configuration.";
    ImportDeviceIdUnknown = "import.device_id_unknown", Error,
        "This device's id cannot be determined, so no device-bound license can verify.",
        "Configure device.machine_id_file or device.serial in the host configuration.";
    ImportDowngrade = "import.downgrade", Error,
        "The package brings an older version than the one installed.",
        "Pass --allow-downgrade to install it anyway.";
    ImportBreaksInstalled = "import.breaks_installed", Error,
        "The import would stop an installed plugin from loading (a dependency removed, disabled or out of range).",
        "Import a package that keeps the installed plugin's dependencies satisfied, or remove it first.";

    // --- store: the install root (xplugin-store) ---
    StoreIo = "store.io", Error,
        "A filesystem operation in the install root failed.",
        "Check free space, that the filesystem is mounted read-write, and that this user owns the install root.";
    StoreBusy = "store.busy", Error,
        "Another process holds the install root's lock (an import is running).",
        "Wait for it to finish and retry.";
    StoreStateCorrupt = "store.state_corrupt", Error,
        "A generation's state.json cannot be read or written.",
        "Roll back to the previous generation, or re-import the plugins.";
    StoreInconsistent = "store.inconsistent", Error,
        "The install root is not in a shape this store ever writes.",
        "Restore the root from a backup or re-import; do not edit the install root by hand.";
    StoreInvalidPluginName = "store.invalid_plugin_name", Error,
        "A plugin name cannot be used as a folder name in the install root.",
        "Fix \"name\" in the plugin manifest.";
    StoreNotInstalled = "store.not_installed", Error,
        "The plugin named is not installed.",
        "`list` shows what is installed; check the name.";
    StoreNoPreviousGeneration = "store.no_previous_generation", Error,
        "There is no previous generation to roll back to.",
        "Nothing to roll back; re-import an older package instead.";
    StoreWrongLock = "store.wrong_lock", Error,
        "A lock of another install root was used (a bug in the caller).",
        "Report it; take the lock with the same store's lock().";
    StoreGenerationOverflow = "store.generation_overflow", Error,
        "Generation numbers are exhausted.",
        "Re-create the install root and re-import its plugins.";
    StorePlanInvalid = "store.plan_invalid", Error,
        "A commit plan is invalid in itself: empty, naming a plugin twice, or with an empty version (a bug in the caller).",
        "Report it; nothing was changed.";
    StoreStagedOutside = "store.staged_outside", Error,
        "A staged plugin folder is not inside the install root's staging area.",
        "Unpack into a directory from Store::staging() (a bug in the caller).";
    StoreStagedUnreadable = "store.staged_unreadable", Error,
        "A staged plugin folder cannot be opened or listed (it changed during the import).",
        "Run the import again.";
    StoreStagedSpecialFile = "store.staged_special_file", Error,
        "A staged plugin folder holds a symlink, device, FIFO or socket; only regular files are installed.",
        "Remove it from the package; plugins are installed as plain files only.";
    StoreLeftoverNotRemoved = "store.leftover_not_removed", Warning,
        "Recovery could not remove a leftover of an interrupted operation; the installed set is not affected.",
        "Remove it by hand; the next recovery tries again.";
    StoreSyncFailed = "store.sync_failed", Warning,
        "Recovery could not fsync a directory after cleaning it; the installed set is not affected.",
        "Check the disk.";
    StoreTransactionOpen = "store.transaction_open", Error,
        "Another install transaction is open on this install root (one at a time: a second preparer is refused).",
        "Wait for it to be committed or aborted; abort it (`xplugin-controller abort ID`) if it is abandoned.";
    StoreTransactionNotFound = "store.transaction_not_found", Error,
        "No install transaction has this id (it never existed, or its outcome was forgotten after its retention time).",
        "Check the id; `xplugin-controller status` lists the open transaction.";
    StoreTransactionDecided = "store.transaction_decided", Error,
        "The install transaction is not prepared: it was already committed or aborted, or is still being prepared.",
        "Nothing was changed; prepare a new install if it was aborted.";
    StoreTransactionBaseChanged = "store.transaction_base_changed", Error,
        "The installation changed after the transaction was prepared, so it was aborted.",
        "Prepare the install again against the current installation.";
    StoreTransactionRecordFailed = "store.transaction_record_failed", Warning,
        "Recovery could not record the outcome of an interrupted install transaction.",
        "Check the disk; the next recovery tries again.";

    // --- admin, config, host, usage: the programs (xplugin-host, xplugin-cli) ---
    AdminHasDependents = "admin.has_dependents", Error,
        "A plugin cannot be removed: installed plugins depend on it.",
        "Remove the dependents first, or pass --cascade to remove them too.";
    ConfigUnreadable = "config.unreadable", Error,
        "The host configuration file cannot be read.",
        "Check the path given with --config.";
    ConfigInvalid = "config.invalid", Error,
        "The host configuration file is not valid (JSON syntax, unknown key, wrong type, repeated key).",
        "Fix the file; see the configuration example in the README.";
    HostVersionUnknown = "host.version_unknown", Error,
        "This host's HMI or controller version is not given.",
        "Pass --hmi-version / --controller-version, or set host_version in the configuration.";
    HostVersionInvalid = "host.version_invalid", Error,
        "The host version given is not a version.",
        "Give a version such as 3.0.2.";
    UsageInvalidArgument = "usage.invalid_argument", Error,
        "A command-line value is unusable.",
        "Fix the value as the message says; --help lists the options.";
    HostCycleStartFailed = "host.cycle_start_failed", Error,
        "The real-time cycle's threads could not be started.",
        "Check the service's thread and memory limits (LimitNPROC, LimitMEMLOCK) and the --cpu given.";
    HostUnsupportedPlatform = "host.unsupported_platform", Error,
        "This build of xplugin does not do this on this operating system: the facility exists only on Linux (the Windows pendant build refuses it rather than pretend).",
        "Do it on a Linux pendant or the controller; docs/windows.md lists what the Windows build does.";

    // --- config: plugin configuration, the `config` items of a manifest and their values (xplugin-model, xplugin-host) ---
    ConfigTooManyItems = "config.too_many_items", Error,
        "A manifest's \"config\" object declares more items than a plugin may have (256).",
        "Group related settings into one item of type JSON or list, or drop unused items.";
    ConfigBadItemName = "config.bad_item_name", Error,
        "A configuration item's name is not usable: it must be 1 to 64 characters, letters, digits, `_`, `-` or `.`, starting with a letter or `_`.",
        "Rename the item in the manifest's \"config\" object.";
    ConfigItemNotObject = "config.item_not_object", Error,
        "A configuration item is not an object of properties such as {\"type\": \"integer\", \"default\": 5}.",
        "Write the item as an object with at least \"type\" and \"default\".";
    ConfigMissingProperty = "config.missing_property", Error,
        "A configuration item lacks a property it needs: \"type\", \"default\", \"options\" (enumerations) or \"items\" (lists).",
        "Add the property named in the message to the item.";
    ConfigUnknownType = "config.unknown_type", Error,
        "A configuration item's \"type\" (or a list's \"items\") is not one xplugin knows: integer, float, string, password, boolean, enumeration, JSON, list.",
        "Use one of the supported types; addresses, URLs and code are strings.";
    ConfigBadProperty = "config.bad_property", Error,
        "A property of a configuration item has the wrong kind of value (e.g. a \"minimum\" that is not a number, \"options\" that are not distinct strings, a negative \"length\").",
        "Fix the property as the message says.";
    ConfigPropertyNotApplicable = "config.property_not_applicable", Error,
        "A configuration item has a constraint its type cannot have (e.g. \"minimum\" on a string, \"options\" on an integer); it would not be enforced.",
        "Remove the property, or change the item's type.";
    ConfigBadRange = "config.bad_range", Error,
        "A configuration item's range is empty or its step is not positive (\"minimum\" above \"maximum\", \"step\" of 0 or less).",
        "Fix \"minimum\", \"maximum\" or \"step\" of the item.";
    ConfigBadDefault = "config.bad_default", Error,
        "A configuration item's \"default\" violates the item's own rules (type, range, step, options, length, mandatory).",
        "Give a default the item accepts.";
    ConfigNoDescription = "config.no_description", Warning,
        "A configuration item has no \"description\"; operators see only its name.",
        "Add a \"description\" saying what the item does and its unit.";
    ConfigUnknownProperty = "config.unknown_property", Warning,
        "A configuration item has a property xplugin does not use; it is ignored. Expressions (\"rule\", \"validity\") are never evaluated.",
        "Remove it, or check the spelling against the supported properties.";
    ConfigBadAssignment = "config.bad_assignment", Error,
        "A `config set` argument is not KEY=VALUE, or names the same item twice.",
        "Give each item once as KEY=VALUE; lists and JSON values as JSON text.";
    ConfigUnknownItem = "config.unknown_item", Error,
        "The plugin has no configuration item of that name.",
        "`config show NAME` lists the plugin's items.";
    ConfigReadonly = "config.readonly", Error,
        "The configuration item is read-only: only the plugin's vendor changes it, with a new version.",
        "Leave the item out of the change.";
    ConfigWrongType = "config.wrong_type", Error,
        "A configuration value is not of the item's type (e.g. text for an integer, a number for a list).",
        "Give a value of the item's type, as the message says.";
    ConfigOutOfRange = "config.out_of_range", Error,
        "A configuration value is below the item's minimum or above its maximum.",
        "Give a value inside the range the message names.";
    ConfigOffStep = "config.off_step", Error,
        "A configuration value is not on the item's step (the minimum plus a whole number of steps).",
        "Give one of the values the message names.";
    ConfigNotAnOption = "config.not_an_option", Error,
        "A configuration value is not one of the enumeration's options.",
        "Give one of the options the message lists (case-sensitive).";
    ConfigTooLong = "config.too_long", Error,
        "A configuration value is longer than the item allows (its \"length\" or \"listSize\", or 64 KiB).",
        "Give a shorter value.";
    ConfigMandatoryBlank = "config.mandatory_blank", Error,
        "A mandatory configuration item may not be empty.",
        "Give a non-empty value.";
    ConfigValuesUnreadable = "config.values_unreadable", Error,
        "A plugin's stored configuration values cannot be read or do not fit its items (a damaged or hand-edited file under ROOT/state/config).",
        "Set the items named with `config set NAME KEY=VALUE`, or delete the file named to return the plugin to its defaults.";
    ConfigLiveUnavailable = "config.live_unavailable", Error,
        "The running daemon could not offer a configuration change to the running plugin (its step did not return, or the daemon is shutting down); nothing was changed.",
        "Try again; if the plugin's step is hung the supervisor stops it, see the daemon's log.";
    ConfigRefusedByPlugin = "config.refused_by_plugin", Error,
        "The running plugin refused the new configuration through its reconfigure (its reason is in the message); nothing was applied or stored.",
        "Change the values as the plugin's message says.";
    ConfigPendingGeneration = "config.pending_generation", Error,
        "A newer generation is committed but not running yet, and its configuration items for the plugin differ; a live change would be lost when it starts.",
        "Restart the controller so the committed generation runs (or commit with --apply now), then change the values.";
    // --- quarantine: fault containment (xplugin-host) ---
    QuarantineNotQuarantined = "quarantine.not_quarantined", Error,
        "The plugin named is not quarantined.",
        "`xplugin-controller quarantine list` shows what is.";
    QuarantineUnusable = "quarantine.unusable", Error,
        "The quarantine file (ROOT/state/quarantine.json) cannot be read or written.",
        "Check the disk and the file's permissions; if it is damaged, remove it (the evidence in it is lost).";

    // --- daemon: the controller daemon and its admin socket (xplugin-daemon) ---
    DaemonNotRunning = "daemon.not_running", Error,
        "No xplugin-controller daemon answers on the admin socket.",
        "Start it (systemctl start xplugin-controller), or pass the --admin-socket it serves.";
    DaemonRunning = "daemon.running", Error,
        "A daemon runs for this install root, so the command may not change the root directly.",
        "Run the command with the daemon's --admin-socket (it goes through the daemon), or stop the daemon first.";
    DaemonStartFailed = "daemon.start_failed", Error,
        "The daemon could not start: its root is locked by another daemon, its admin socket is in use, or boot failed.",
        "See the message; stop the other daemon or choose another --admin-socket.";
    DaemonAccessDenied = "daemon.access_denied", Error,
        "The caller may not make this request on the admin socket.",
        "Run it as root or as the configured admin_user; members of admin_group may read the status.";
    DaemonWrongRoot = "daemon.wrong_root", Error,
        "The daemon answering on this admin socket serves another install root.",
        "Pass the --admin-socket of the daemon that serves that root.";
    DaemonBadRequest = "daemon.bad_request", Error,
        "The admin socket received a request it cannot read (too large, too slow, malformed, or from another release).",
        "Use xplugin-controller of the same release as the daemon.";
    DaemonApplyTimeout = "daemon.apply_timeout", Error,
        "A committed generation was not applied in time: plugins held the controller busy, or the daemon did not come back.",
        "See who held it in the message; apply with --apply now, or at the next start.";

    // --- link: the pendant link between pendant and controller (xplugin-link) ---
    LinkUnreachable = "link.unreachable", Error,
        "The controller does not answer on the pendant link's address (nothing listens, a firewall, the wrong address, or it stopped in the middle).",
        "Check the address and that the controller's daemon runs with `listen` set; see `xplugin-controller status`.";
    LinkNotPaired = "link.not_paired", Error,
        "The pendant has no controller key pinned for this address, so it cannot authenticate the controller.",
        "Pair first: `xplugin-controller identity` on the controller prints its key; `xplugin-client pair ADDR:PORT KEY` here.";
    LinkControllerKeyMismatch = "link.controller_key_mismatch", Error,
        "The controller at this address proved another key than the one pinned when pairing: another computer answers, or the controller's identity was rotated or remade.",
        "Compare the fingerprints with `xplugin-controller identity` on the controller; if its key changed on purpose, pair again with `xplugin-client pair ADDR:PORT KEY`.";
    LinkPendantNotAuthorised = "link.pendant_not_authorised", Error,
        "The controller does not know this pendant's key: it was never paired, was unpaired, or the pendant's identity was rotated or remade.",
        "On the controller: `xplugin-controller pair KEY` with the key `xplugin-client identity` prints.";
    LinkRoleDenied = "link.role_denied", Error,
        "The pendant is paired with the status role, which may only look, and asked to change something.",
        "Pair it again with `xplugin-controller pair KEY --role install` if it should install.";
    LinkBridgeRefused = "link.bridge_refused", Warning,
        "A topic a plugin declares in its \"bridge\" cannot cross the pendant link: no plugin on the other computer that it may reach declares it (a client plugin reaches only the controller plugins in its ctrlDepend), or that plugin does not run. Its messages stay on this computer.",
        "Declare the topic on both sides (\"send\" on one, \"receive\" on the other) and list the controller plugin in the client plugin's ctrlDepend.";
    LinkBridgeBusy = "link.bridge_busy", Error,
        "Another pendant holds the controller's plugin message bridge; one pendant at a time exchanges plugin messages.",
        "Stop `xplugin-client run` on the other pendant, or retry when it has gone.";
    LinkHandshakeFailed = "link.handshake_failed", Error,
        "The link's handshake failed: the peer is not an xplugin link, speaks another handshake, or a message was replayed, altered or cut.",
        "Check that the address is the controller's pendant link; a replayed or altered handshake is an attack or a broken network.";
    LinkProtocolVersion = "link.protocol_version", Error,
        "The pendant and the controller speak no common link protocol version (both ranges are named).",
        "Update the older of the two programs so their ranges overlap.";
    LinkBadFrame = "link.bad_frame", Error,
        "A frame on the link was refused (oversized, truncated, undecryptable, replayed, reordered, or not a message of the protocol); the connection was dropped.",
        "Retry; if it happens again, the network or the peer is broken or hostile.";
    LinkTimeout = "link.timeout", Error,
        "The peer did not send a whole message before the deadline; the connection was dropped.",
        "Check the network between pendant and controller, then retry.";
    LinkBusy = "link.busy", Error,
        "The controller serves as many pendant connections as it allows.",
        "Retry in a moment.";
    LinkClockSkew = "link.clock_skew", Warning,
        "The pendant's and the controller's clocks differ by more than the documented bound; licenses are checked against each computer's own clock.",
        "Set both clocks (NTP); an expiring license may be accepted on one computer and refused on the other.";
    LinkUploadQuota = "link.upload_quota", Error,
        "The controller refused an upload before staging it: larger than its package limit, its upload quota, or its free disk space.",
        "Free space on the controller, or raise max_package_bytes / upload_quota_bytes in its configuration if the package is genuine.";
    LinkUploadMismatch = "link.upload_mismatch", Error,
        "The bytes the controller received do not have the SHA-256 the pendant announced (or do not fit the announced size); they were discarded.",
        "Import again; if it repeats, the network alters data.";
    LinkInstallUndecided = "link.install_undecided", Error,
        "A two-computer install on this pendant waits for the controller's outcome, so the pendant's install root may not change until it is settled.",
        "Reach the controller (any `xplugin-client` link command, e.g. `controller-status --controller ADDR:PORT`, settles it first).";
    LinkOutcomeUnknown = "link.outcome_unknown", Warning,
        "The controller no longer knows the outcome of a transaction this pendant prepared its part for; the pendant decided from what the controller runs.",
        "Compare `xplugin-client list` with `xplugin-client controller-status`; import the package again if they differ.";
    LinkRemoteProblem = "link.remote_problem", Error,
        "The controller reported a problem whose code this release does not know (it is named in the message).",
        "See the message; update this program to the controller's release for the full description.";
    LinkRemoteWarning = "link.remote_warning", Warning,
        "The controller reported a warning whose code this release does not know (it is named in the message).",
        "See the message.";
    LinkIdentity = "link.identity", Error,
        "This host's link identity or its list of paired peers cannot be read or written, or the private key is readable by others.",
        "Check ROOT/state/identity (mode 0700, files 0600, owned by the service user; on Windows an ACL for that user and SYSTEM only); `identity --rotate` makes a new key.";
    LinkBadKey = "link.bad_key", Error,
        "A key given on the command line is not a link public key (64 hex digits).",
        "Copy the first line `identity` prints on the other computer.";
    LinkListenFailed = "link.listen_failed", Error,
        "The daemon cannot listen on the pendant link's address.",
        "Check `listen` / --listen (ADDR:PORT), that the port is free and that the address belongs to this computer.";
    LinkNotConfirmed = "link.not_confirmed", Error,
        "The operator did not confirm the install, so nothing was installed on either computer.",
        "Import again and confirm, or pass --yes in scripts.";

    // --- pack: the vendor tool (xplugin-pack) ---
    PackStrayFile = "pack.stray_file", Error,
        "A file lies next to the plugin folders of --client/--controller; those folders may hold only plugin folders.",
        "Move the file into its plugin's folder or remove it.";
    PackNoPluginFolder = "pack.no_plugin_folder", Error,
        "The --client/--controller folder holds no plugin folder.",
        "Give a folder that holds one folder per plugin.";
    PackMissingLicense = "pack.missing_license", Error,
        "A plugin folder has no NAME.lic.",
        "Issue it with `xplugin-pack license`.";
    PackMissingLibrary = "pack.missing_library", Error,
        "A plugin folder has no library named after the folder.",
        "Build the plugin and copy its library into the folder, named after the folder.";
    PackUnusableFile = "pack.unusable_file", Error,
        "A plugin folder holds something that cannot be packed: a symlink or special file, a non-UTF-8 name, too deep folders or too many files.",
        "Keep plugin folders to regular files with UTF-8 names, at most 8 folders deep.";
    PackFileNotCovered = "pack.file_not_covered", Warning,
        "The license being issued does not cover this file (a data file); it is installed but not integrity-protected.",
        "Nothing to do for data; if the file holds code, make sure it is an ELF/PE file or named .so/.dll so it is covered.";
    PackLicenseNotVerified = "pack.license_not_verified", Warning,
        "A plugin's license does not verify against the trust store given to `pack --trust`; devices will refuse it.",
        "Issue the license again for the folder as packed.";
    PackIo = "pack.io", Error,
        "A file or folder of the vendor's disk cannot be read or written.",
        "Check the path and its permissions.";
    PackChecksFailed = "pack.checks_failed", Error,
        "`verify` or `inspect` refused some plugins; the report above lists why.",
        "Fix each plugin's problems as listed.";
}

impl ProblemCode {
    /// The code whose string is `s`, if any.
    pub fn from_code(s: &str) -> Option<ProblemCode> {
        ProblemCode::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ProblemCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn codes_are_unique_and_well_formed() {
        let mut seen = BTreeSet::new();
        for code in ProblemCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} is defined twice");
            let (area, what) = s.split_once('.').unwrap_or_else(|| panic!("{s}: no area"));
            for part in [area, what] {
                assert!(
                    !part.is_empty()
                        && part
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                    "{s}: expected area.what in lower case, digits and _"
                );
            }
            assert_eq!(ProblemCode::from_code(s), Some(*code));
            assert!(code.meaning().ends_with('.'), "{s}: meaning is a sentence");
            assert!(
                code.what_to_do().ends_with('.'),
                "{s}: what to do is a sentence"
            );
        }
        assert_eq!(ProblemCode::from_code("no.such_code"), None);
    }

    #[test]
    fn serializes_as_its_string() {
        let json = serde_json::to_string(&ProblemCode::GraphCycle).unwrap_or_default();
        assert_eq!(json, "\"graph.cycle\"");
    }
}
