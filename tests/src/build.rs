//! Building and laying out the real artifacts the integration tests load:
//! the example and fixture cdylibs, the workspace binaries, C plugins
//! compiled with the system C compiler, and plugin folders in the vendor
//! layout.
//!
//! Everything is derived from the running test executable, so the helpers
//! work for `cargo test`, `cargo test --release`, a custom
//! `CARGO_TARGET_DIR`, and cross runs (`--target aarch64-unknown-linux-gnu`
//! under qemu). Environment knobs:
//!
//! | variable | meaning |
//! |---|---|
//! | `CARGO` | cargo to run for missing artifacts (cargo sets it for tests; default `cargo`) |
//! | `XPLUGIN_TARGET` | target triple the tests were built for (otherwise derived from the path) |
//! | `XPLUGIN_TEST_PREBUILT` | `1`: never run cargo, only use artifacts that exist |
//! | `XPLUGIN_TEST_CC` | C compiler (default `cc`), e.g. `aarch64-linux-gnu-gcc` |
//! | `XPLUGIN_TEST_CFLAGS` | extra C compiler flags, split on whitespace |
//! | `XPLUGIN_TEST_RUNNER` | prefix to run target programs, e.g. `qemu-aarch64 -L /` (with Debian's `libc6:arm64`; the cross sysroot `/usr/aarch64-linux-gnu` hangs in `pthread_create` under qemu 7.2) |
//!
//! Cargo artifacts are built at most once per test process: each artifact
//! has its own `OnceLock`, so parallel tests that ask for the same library
//! wait for one `cargo build` instead of racing. They are rebuilt once per
//! process (a no-op when fresh) so an edited example is never tested stale,
//! unless `XPLUGIN_TEST_PREBUILT=1`.
//!
//! These are test helpers: on failure they panic with the full compiler or
//! cargo output, which is what a failing test should show.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

/// Cargo package of each example / fixture cdylib, by library name.
const CDYLIB_PACKAGES: &[(&str, &str)] = &[
    (
        "plugindemo_controller",
        "xplugin-example-plugindemo-controller",
    ),
    ("plugindemo_client", "xplugin-example-plugindemo-client"),
    ("uikit_client", "xplugin-example-uikit-client"),
    ("panicky", "xplugin-test-panicky"),
    ("modules", "xplugin-test-modules"),
    ("xplugin", "xplugin-runtime"),
];

/// The workspace root (parent of the `tests` package).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir.to_path_buf())
}

/// Where the test executable's build lives.
#[derive(Debug, Clone)]
struct BuildLayout {
    /// `.../target[/TRIPLE]/PROFILE`
    profile_dir: PathBuf,
    /// `.../target` (what `--target-dir` takes).
    target_root: PathBuf,
    /// `--target` triple, if the tests were cross-built.
    triple: Option<String>,
    /// Directory name of the profile (`debug`, `release`, ...).
    profile: String,
}

fn layout() -> &'static BuildLayout {
    static LAYOUT: OnceLock<BuildLayout> = OnceLock::new();
    LAYOUT.get_or_init(derive_layout)
}

fn derive_layout() -> BuildLayout {
    let exe = std::env::current_exe().unwrap_or_else(|e| {
        panic!("cannot find the test executable's path (std::env::current_exe: {e})")
    });
    let mut profile_dir = exe
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    // Test and example executables live in PROFILE/deps or PROFILE/examples.
    if matches!(
        profile_dir.file_name().and_then(|n| n.to_str()),
        Some("deps" | "examples")
    ) {
        if let Some(parent) = profile_dir.parent() {
            profile_dir = parent.to_path_buf();
        }
    }
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_string();
    let parent = profile_dir.parent().map(Path::to_path_buf);
    let grandparent = parent
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf);
    // Cargo writes CACHEDIR.TAG into the target dir and into each
    // target/TRIPLE dir, so look at the grandparent first: a tag there (or a
    // parent named like XPLUGIN_TARGET) means a cross layout target/TRIPLE/PROFILE.
    let has_cachedir_tag = |dir: &Path| dir.join("CACHEDIR.TAG").is_file();
    let env_triple = std::env::var("XPLUGIN_TARGET")
        .ok()
        .filter(|t| !t.is_empty());
    let parent_name = parent
        .as_deref()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .map(str::to_string);
    let (target_root, derived_triple) = match (parent, grandparent) {
        (Some(_), Some(g))
            if (env_triple.is_some() && env_triple == parent_name)
                || (has_cachedir_tag(&g)
                    && parent_name.as_deref().is_some_and(looks_like_triple)) =>
        {
            (g, parent_name)
        }
        (Some(p), _) => (p, None),
        (None, _) => (profile_dir.clone(), None),
    };
    BuildLayout {
        profile_dir,
        target_root,
        triple: env_triple.or(derived_triple),
        profile,
    }
}

/// `aarch64-unknown-linux-gnu`, `x86_64-pc-windows-msvc`: at least three
/// dash-separated parts (a target dir named e.g. `examples` is not one).
fn looks_like_triple(name: &str) -> bool {
    name.split('-').filter(|part| !part.is_empty()).count() >= 3
}

/// The profile directory the tests were built into (`.../target[/TRIPLE]/debug`),
/// where cargo puts the cdylibs and binaries.
pub fn target_dir() -> PathBuf {
    layout().profile_dir.clone()
}

/// File name of a cdylib on this platform: `libNAME.so`, `NAME.dll`, `libNAME.dylib`.
pub fn cdylib_file_name(lib_name: &str) -> String {
    format!(
        "{}{lib_name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// The plugin library file name inside a package folder: `NAME.so` / `NAME.dll`.
pub fn plugin_library_file_name(plugin_name: &str) -> String {
    format!("{plugin_name}{}", std::env::consts::DLL_SUFFIX)
}

/// Path of a workspace cdylib by library name (`plugindemo_controller`,
/// `plugindemo_client`, `uikit_client`, `panicky`, `xplugin`), built with
/// `cargo build -p PACKAGE --lib` if needed (see the module docs).
///
/// # Panics
/// If the name is unknown, or cargo fails, or the file is still missing.
pub fn cdylib_path(lib_name: &str) -> PathBuf {
    let package = CDYLIB_PACKAGES
        .iter()
        .find(|(lib, _)| *lib == lib_name)
        .map(|(_, package)| *package)
        .unwrap_or_else(|| {
            let known: Vec<&str> = CDYLIB_PACKAGES.iter().map(|(lib, _)| *lib).collect();
            panic!("cdylib_path: unknown library {lib_name:?}; known: {known:?} (add it to CDYLIB_PACKAGES in tests/src/build.rs)")
        });
    let path = target_dir().join(cdylib_file_name(lib_name));
    built_artifact(&format!("lib:{lib_name}"), &path, &["-p", package, "--lib"])
}

/// Path of the client-side runtime library (`libxplugin.so` / `xplugin.dll`).
///
/// # Panics
/// As [`cdylib_path`].
pub fn runtime_library_path() -> PathBuf {
    cdylib_path("xplugin")
}

/// Path of a workspace binary (`xplugin-controller`, `xplugin-client`,
/// `xplugin-pack`), built with `cargo build -p NAME --bin NAME` if needed.
/// The package is assumed to carry the binary's name, as all of ours do.
///
/// # Panics
/// If cargo fails or the file is still missing.
pub fn bin_path(name: &str) -> PathBuf {
    let path = target_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    // The hosts are built with the store's and the link's failpoints, as
    // the workspace build that includes this test crate builds them (one
    // feature set, so neither build invalidates the other).
    let args: &[&str] = match name {
        "xplugin-controller" | "xplugin-client" => &[
            "-p",
            name,
            "--bin",
            name,
            "--features",
            "xplugin-store/failpoints,xplugin-link/failpoints",
        ],
        _ => &["-p", name, "--bin", name],
    };
    built_artifact(&format!("bin:{name}"), &path, args)
}

/// The memoised outcome of building one artifact: its path or the error text.
type ArtifactCell = OnceLock<Result<PathBuf, String>>;

/// Runs cargo for one artifact at most once per process and returns its path.
fn built_artifact(key: &str, path: &Path, cargo_args: &[&str]) -> PathBuf {
    static ARTIFACTS: OnceLock<Mutex<HashMap<String, Arc<ArtifactCell>>>> = OnceLock::new();
    let cell = {
        let mut map = ARTIFACTS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(map.entry(key.to_string()).or_default())
    };
    let result = cell.get_or_init(|| {
        let prebuilt = std::env::var("XPLUGIN_TEST_PREBUILT").is_ok_and(|v| v == "1");
        let cargo_log = if prebuilt {
            String::new()
        } else {
            run_cargo_build(cargo_args)?
        };
        if path.is_file() {
            Ok(path.to_path_buf())
        } else if prebuilt {
            Err(format!(
                "{} does not exist and XPLUGIN_TEST_PREBUILT=1 forbids building it; build it first: cargo build {}",
                path.display(),
                cargo_args.join(" ")
            ))
        } else {
            Err(format!(
                "cargo build succeeded but {} does not exist; {cargo_log}",
                path.display()
            ))
        }
    });
    match result {
        Ok(path) => path.clone(),
        Err(message) => panic!("{message}"),
    }
}

/// Runs `cargo build ARGS` for the tests' target and profile; returns the
/// command and cargo's stderr (for messages), or the error text.
fn run_cargo_build(cargo_args: &[&str]) -> Result<String, String> {
    let layout = layout();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(&cargo);
    command
        .current_dir(workspace_root())
        .arg("build")
        .args(cargo_args)
        .arg("--target-dir")
        .arg(&layout.target_root);
    match layout.profile.as_str() {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    if let Some(triple) = &layout.triple {
        command.args(["--target", triple]);
    }
    let output = command.output().map_err(|e| {
        format!(
            "cannot run {} (set CARGO to the cargo binary): {e}",
            cargo.to_string_lossy()
        )
    })?;
    if output.status.success() {
        Ok(format!(
            "{command:?}:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ))
    } else {
        Err(format!(
            "{command:?} failed with {}:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The C compiler: `XPLUGIN_TEST_CC`, else `cc`.
pub fn cc() -> String {
    std::env::var("XPLUGIN_TEST_CC")
        .ok()
        .filter(|cc| !cc.trim().is_empty())
        .unwrap_or_else(|| "cc".to_string())
}

/// Extra C flags from `XPLUGIN_TEST_CFLAGS`.
fn extra_cflags() -> Vec<String> {
    std::env::var("XPLUGIN_TEST_CFLAGS")
        .map(|flags| flags.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The include directories of the ABI headers and the examples' service headers.
pub fn c_include_dirs() -> Vec<PathBuf> {
    let root = workspace_root();
    vec![
        root.join("xplugin-abi/include"),
        root.join("examples/plugindemo-controller/include"),
        root.join("examples/uikit-client/include"),
    ]
}

/// Runs the C compiler with the include directories and the warnings we hold
/// C code to (`-std=c99 -Wall -Wextra -Werror`), plus `args`.
///
/// # Panics
/// If the compiler cannot be run or fails; the message holds its output.
pub fn run_cc(args: &[&std::ffi::OsStr]) {
    let compiler = cc();
    let mut command = Command::new(&compiler);
    command.args(["-std=c99", "-Wall", "-Wextra", "-Werror"]);
    for dir in c_include_dirs() {
        command.arg("-I").arg(dir);
    }
    command.args(extra_cflags()).args(args);
    let output = command.output().unwrap_or_else(|e| {
        panic!("cannot run the C compiler {compiler:?} (set XPLUGIN_TEST_CC): {e}")
    });
    assert!(
        output.status.success(),
        "{command:?} failed with {}:\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Compiles C sources into a plugin library at `out_path` with
/// `-fPIC -shared -fvisibility=hidden`, one `-D` per entry of `defines`
/// (e.g. `FIXTURE_NAME="failinit"` or `FIXTURE_FAIL_INIT`).
///
/// # Panics
/// If the compiler fails (its output is in the message).
pub fn compile_c_plugin(sources: &[&Path], defines: &[&str], out_path: &Path) {
    if let Some(dir) = out_path.parent() {
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    }
    let mut args: Vec<OsString> = vec![
        "-fPIC".into(),
        "-shared".into(),
        "-fvisibility=hidden".into(),
    ];
    args.extend(defines.iter().map(|d| OsString::from(format!("-D{d}"))));
    args.push("-o".into());
    args.push(out_path.into());
    args.extend(sources.iter().map(|s| OsString::from(*s)));
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(OsString::as_os_str).collect();
    run_cc(&refs);
}

/// Compiles the C fixture `examples/test-plugins/c/fixture.c` with
/// `FIXTURE_NAME="<name>"` plus `defines` (e.g. `["FIXTURE_FAIL_INIT"]`),
/// once per process and set of defines, into
/// `<profile dir>/xplugin-c-fixtures/<name>-<hash of defines>/libNAME.so`,
/// and returns its path. See the head of fixture.c for every define.
///
/// # Panics
/// If the compiler fails.
pub fn c_fixture(name: &str, defines: &[&str]) -> PathBuf {
    let mut all: Vec<String> = vec![format!("FIXTURE_NAME=\"{name}\"")];
    all.extend(defines.iter().map(|d| d.to_string()));
    let key = all.join(" ");
    let out = target_dir()
        .join("xplugin-c-fixtures")
        .join(format!("{name}-{:016x}", fnv1a(key.as_bytes())))
        .join(cdylib_file_name(name));
    compiled_once(&key, &out, |tmp| {
        let source = workspace_root().join("examples/test-plugins/c/fixture.c");
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        compile_c_plugin(&[&source], &refs, tmp);
    })
}

/// Compiles the C test plugin with several entry modules,
/// `examples/test-plugins/c/modules.c`, with `MODULES_NAME="<name>"` plus
/// `defines`, once per process and set of defines (as [`c_fixture`]), and
/// returns its path. See the head of modules.c for every define.
///
/// # Panics
/// If the compiler fails.
pub fn c_modules_fixture(name: &str, defines: &[&str]) -> PathBuf {
    let mut all: Vec<String> = vec![format!("MODULES_NAME=\"{name}\"")];
    all.extend(defines.iter().map(|d| d.to_string()));
    let key = all.join(" ");
    let out = target_dir()
        .join("xplugin-c-fixtures")
        .join(format!("modules-{name}-{:016x}", fnv1a(key.as_bytes())))
        .join(cdylib_file_name(name));
    compiled_once(&key, &out, |tmp| {
        let source = workspace_root().join("examples/test-plugins/c/modules.c");
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        compile_c_plugin(&[&source], &refs, tmp);
    })
}

/// Compiles the C example plugin `examples/motionlog-c/motionlog.c` once per
/// process into `<profile dir>/xplugin-c-examples/libmotionlog.so`.
///
/// # Panics
/// If the compiler fails.
pub fn motionlog_path() -> PathBuf {
    let out = target_dir()
        .join("xplugin-c-examples")
        .join(cdylib_file_name("motionlog"));
    compiled_once("c-example:motionlog", &out, |tmp| {
        let source = workspace_root().join("examples/motionlog-c/motionlog.c");
        compile_c_plugin(&[&source], &[], tmp);
    })
}

/// Runs `compile(tmp_path)` once per process and key, then renames the
/// result to `out`: other test processes (nextest runs one per test) never
/// see a half-written library.
fn compiled_once(key: &str, out: &Path, compile: impl FnOnce(&Path)) -> PathBuf {
    static COMPILED: OnceLock<Mutex<HashMap<String, Arc<OnceLock<()>>>>> = OnceLock::new();
    let cell = {
        let mut map = COMPILED
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(map.entry(key.to_string()).or_default())
    };
    cell.get_or_init(|| {
        let mut tmp_name = out.as_os_str().to_owned();
        tmp_name.push(format!(".tmp{}", std::process::id()));
        let tmp = PathBuf::from(tmp_name);
        compile(&tmp);
        std::fs::rename(&tmp, out).unwrap_or_else(|e| {
            panic!("cannot rename {} to {}: {e}", tmp.display(), out.display())
        });
    });
    out.to_path_buf()
}

/// FNV-1a, 64 bit: a hash that is stable across Rust versions, for cache paths.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `XPLUGIN_TEST_RUNNER` split on whitespace (empty when unset): the prefix
/// that runs a target program, e.g. `["qemu-aarch64", "-L", "/"]`.
pub fn runner_prefix() -> Vec<String> {
    std::env::var("XPLUGIN_TEST_RUNNER")
        .map(|runner| runner.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// A `Command` that runs `program` (built for the target) through
/// [`runner_prefix`] when one is set.
pub fn target_command(program: &Path) -> Command {
    let prefix = runner_prefix();
    match prefix.split_first() {
        Some((runner, runner_args)) => {
            let mut command = Command::new(runner);
            command.args(runner_args).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// Lays out a plugin folder the way a package installs it:
/// `dest/NAME/NAME.json` (the given manifest text), `dest/NAME/NAME.so`
/// (a copy of `lib_src`; `.dll` on Windows) and, when the manifest is a
/// client manifest (contains `"client_plugin"`), the runtime library
/// `libxplugin.so` beside it. Returns `dest/NAME`.
///
/// # Panics
/// On any I/O error, naming the path.
pub fn plugin_folder(dest: &Path, name: &str, lib_src: &Path, manifest_json: &str) -> PathBuf {
    let folder = dest.join(name);
    std::fs::create_dir_all(&folder)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", folder.display()));
    let manifest = folder.join(format!("{name}.json"));
    std::fs::write(&manifest, manifest_json)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", manifest.display()));
    copy_file(lib_src, &folder.join(plugin_library_file_name(name)));
    if manifest_json.contains("\"client_plugin\"") {
        let runtime = runtime_library_path();
        copy_file(&runtime, &folder.join(cdylib_file_name("xplugin")));
    }
    folder
}

fn copy_file(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", from.display(), to.display()));
}

/// A flat controller manifest: `{"controller_plugin": {"name": NAME, ...}}`
/// with `depend` as plain names, `enable: true` and optional `config` JSON
/// (an object's text, placed as `"config"`; the loader's test decides its form).
pub fn controller_manifest(
    name: &str,
    version: &str,
    depend: &[&str],
    config: Option<&str>,
) -> String {
    let depend = json_string_list(depend);
    let config = config
        .map(|c| format!(",\n    \"config\": {c}"))
        .unwrap_or_default();
    format!(
        "{{\n  \"controller_plugin\": {{\n    \"name\": {},\n    \"depend\": {depend},\n    \"enable\": true,\n    \"version\": {}{config}\n  }}\n}}\n",
        json_string(name),
        json_string(version)
    )
}

/// A client manifest in the vendor's form with `enable: true`.
pub fn client_manifest(name: &str, version: &str, depend: &[&str], ctrl_depend: &[&str]) -> String {
    format!(
        "{{\n  \"client_plugin\": {{\n    \"name\": {},\n    \"depend\": {},\n    \"ctrlDepend\": {},\n    \"enable\": true,\n    \"version\": {}\n  }}\n}}\n",
        json_string(name),
        json_string_list(depend),
        json_string_list(ctrl_depend),
        json_string(version)
    )
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_string_list(items: &[&str]) -> String {
    let items: Vec<String> = items.iter().map(|s| json_string(s)).collect();
    format!("[{}]", items.join(", "))
}

/// A Windows x86-64 DLL (PE32+) that carries exactly what the checks read
/// from a `.dll` without loading it: the DLL flag, the machine type, an
/// export table with `xplugin_abi` (the 16-byte ABI tag of `kind`, this
/// ABI version) and, unless `kind` is the runtime, `xplugin_entry`. It has
/// no code: it stands for a vendor's Windows build in the tests that run on
/// Linux, where a `.dll` is checked and licensed but never loaded (and no
/// mingw is needed to make one). Windows would refuse to run it.
pub fn pe_library(kind: u32) -> Vec<u8> {
    use xplugin_abi::{
        XPLUGIN_ABI_MAJOR, XPLUGIN_ABI_MINOR, XPLUGIN_ABI_TAG_SYMBOL, XPLUGIN_ENTRY_SYMBOL,
        XPLUGIN_KIND_RUNTIME, XPLUGIN_MAGIC,
    };
    const FILE_ALIGN: usize = 0x200;
    const RVA: u32 = 0x1000; // the one section's address
    fn put16(b: &mut [u8], at: usize, v: u16) {
        b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn put32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn put64(b: &mut [u8], at: usize, v: u64) {
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    // The section (.rdata): the tag at 0, a `ret` standing for the entry at
    // 16, then the export directory and its tables and names.
    let mut names: Vec<&str> = vec![XPLUGIN_ABI_TAG_SYMBOL];
    if kind != XPLUGIN_KIND_RUNTIME {
        names.push(XPLUGIN_ENTRY_SYMBOL);
    }
    names.sort_unstable(); // the export name table is sorted
    let n = names.len();
    let mut sec = vec![0u8; 32];
    put32(&mut sec, 0, XPLUGIN_MAGIC);
    put16(&mut sec, 4, XPLUGIN_ABI_MAJOR);
    put16(&mut sec, 6, XPLUGIN_ABI_MINOR);
    put32(&mut sec, 8, kind);
    sec[16] = 0xc3;
    let dir_at = sec.len();
    let functions_at = dir_at + 40;
    let names_at = functions_at + 4 * n;
    let ordinals_at = names_at + 4 * n;
    let mut strings_at = ordinals_at + 2 * n;
    sec.resize(strings_at, 0);
    let mut add_string = |sec: &mut Vec<u8>, s: &str| -> u32 {
        let at = strings_at;
        sec.extend_from_slice(s.as_bytes());
        sec.push(0);
        strings_at = sec.len();
        RVA + at as u32
    };
    let dll_name = add_string(&mut sec, "plugin.dll");
    for (i, name) in names.iter().enumerate() {
        let name_rva = add_string(&mut sec, name);
        let target = if *name == XPLUGIN_ABI_TAG_SYMBOL {
            0
        } else {
            16
        };
        put32(&mut sec, functions_at + 4 * i, RVA + target);
        put32(&mut sec, names_at + 4 * i, name_rva);
        put16(&mut sec, ordinals_at + 2 * i, i as u16);
    }
    let export_size = sec.len() - dir_at;
    put32(&mut sec, dir_at + 12, dll_name); // Name
    put32(&mut sec, dir_at + 16, 1); // Base
    put32(&mut sec, dir_at + 20, n as u32); // NumberOfFunctions
    put32(&mut sec, dir_at + 24, n as u32); // NumberOfNames
    put32(&mut sec, dir_at + 28, RVA + functions_at as u32);
    put32(&mut sec, dir_at + 32, RVA + names_at as u32);
    put32(&mut sec, dir_at + 36, RVA + ordinals_at as u32);
    let raw_size = sec.len().div_ceil(FILE_ALIGN) * FILE_ALIGN;

    // Headers: DOS stub header, PE signature, COFF header, PE32+ optional
    // header with 16 data directories, one section header.
    let mut b = vec![0u8; FILE_ALIGN];
    b[0..2].copy_from_slice(b"MZ");
    put32(&mut b, 0x3c, 0x40); // e_lfanew
    b[0x40..0x44].copy_from_slice(b"PE\0\0");
    let coff = 0x44;
    put16(&mut b, coff, 0x8664); // IMAGE_FILE_MACHINE_AMD64
    put16(&mut b, coff + 2, 1); // one section
    put16(&mut b, coff + 16, 240); // SizeOfOptionalHeader (PE32+)
    put16(&mut b, coff + 18, 0x2022); // EXECUTABLE_IMAGE | LARGE_ADDRESS_AWARE | DLL
    let opt = coff + 20;
    put16(&mut b, opt, 0x20b); // PE32+
    put32(&mut b, opt + 8, raw_size as u32); // SizeOfInitializedData
    put32(&mut b, opt + 20, RVA); // BaseOfCode
    put64(&mut b, opt + 24, 0x1_8000_0000); // ImageBase
    put32(&mut b, opt + 32, 0x1000); // SectionAlignment
    put32(&mut b, opt + 36, FILE_ALIGN as u32); // FileAlignment
    put16(&mut b, opt + 40, 6); // MajorOperatingSystemVersion
    put16(&mut b, opt + 48, 6); // MajorSubsystemVersion
    let image_size = RVA as usize + sec.len().div_ceil(0x1000) * 0x1000;
    put32(&mut b, opt + 56, image_size as u32); // SizeOfImage
    put32(&mut b, opt + 60, FILE_ALIGN as u32); // SizeOfHeaders
    put16(&mut b, opt + 68, 3); // IMAGE_SUBSYSTEM_WINDOWS_CUI
    put64(&mut b, opt + 72, 0x10_0000); // SizeOfStackReserve
    put64(&mut b, opt + 80, 0x1000); // SizeOfStackCommit
    put64(&mut b, opt + 88, 0x10_0000); // SizeOfHeapReserve
    put64(&mut b, opt + 96, 0x1000); // SizeOfHeapCommit
    put32(&mut b, opt + 108, 16); // NumberOfRvaAndSizes
    put32(&mut b, opt + 112, RVA + dir_at as u32); // the export directory
    put32(&mut b, opt + 116, export_size as u32);
    let sh = opt + 240;
    b[sh..sh + 6].copy_from_slice(b".rdata");
    put32(&mut b, sh + 8, sec.len() as u32); // VirtualSize
    put32(&mut b, sh + 12, RVA); // VirtualAddress
    put32(&mut b, sh + 16, raw_size as u32); // SizeOfRawData
    put32(&mut b, sh + 20, FILE_ALIGN as u32); // PointerToRawData
    put32(&mut b, sh + 36, 0x4000_0040); // INITIALIZED_DATA | MEM_READ
    sec.resize(raw_size, 0);
    b.extend_from_slice(&sec);
    b
}
