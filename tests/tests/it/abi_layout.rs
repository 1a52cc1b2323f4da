//! The C headers and the Rust definitions describe the same ABI.
//!
//! `xplugin.h` is written by hand; these tests are what keep it honest: a C
//! program compiled from the header prints the size and every field offset
//! of each ABI struct and the value of every constant, and the test compares
//! them with `xplugin_abi::layout_table()` and the Rust constants. The
//! examples' service headers are checked against the Rust tables their
//! providers register, the same way. When a runner is configured
//! (`XPLUGIN_TEST_RUNNER`, e.g. qemu for aarch64) the C programs run under it,
//! so the comparison holds on the target, not only on the build machine.

use object::{Object, ObjectSection};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use xplugin_abi::*;
use xplugin_tests::build;

// The service tables are defined once, by their providers; include those
// files so that the test compares the real Rust layouts with the headers.
#[allow(dead_code)]
#[path = "../../../examples/plugindemo-controller/src/motion_service.rs"]
mod motion_service;
#[allow(dead_code)]
#[path = "../../../examples/uikit-client/src/widgets_service.rs"]
mod widgets_service;

/// Size and offsets this test checks beyond `layout_table()`: the leading
/// ABI fields and the examples' service tables, named like the C side.
fn extra_layout_table() -> Vec<(String, usize)> {
    use core::mem::{offset_of, size_of};
    use motion_service::MotionService;
    use widgets_service::WidgetsService;
    [
        // Leading fields that `layout_table()` leaves out because they sit
        // at the start; checked too, so that e.g. swapped majors and minors
        // cannot pass.
        ("xplugin_abi_tag.magic", offset_of!(AbiTag, magic)),
        ("xplugin_abi_tag.abi_major", offset_of!(AbiTag, abi_major)),
        ("xplugin_abi_tag.abi_minor", offset_of!(AbiTag, abi_minor)),
        (
            "xplugin_host_api.struct_size",
            offset_of!(HostApi, struct_size),
        ),
        ("xplugin_descriptor.magic", offset_of!(Descriptor, magic)),
        (
            "xplugin_render_context.struct_size",
            offset_of!(RenderContext, struct_size),
        ),
        (
            "xplugin_module.struct_size",
            offset_of!(Module, struct_size),
        ),
        ("xplugin_module_list.magic", offset_of!(ModuleList, magic)),
        (
            "sizeof(plugindemo_motion_service)",
            size_of::<MotionService>(),
        ),
        (
            "plugindemo_motion_service.version",
            offset_of!(MotionService, version),
        ),
        (
            "plugindemo_motion_service.get_cycle_count",
            offset_of!(MotionService, get_cycle_count),
        ),
        (
            "plugindemo_motion_service.scale_speed",
            offset_of!(MotionService, scale_speed),
        ),
        ("sizeof(uikit_widgets_service)", size_of::<WidgetsService>()),
        (
            "uikit_widgets_service.version",
            offset_of!(WidgetsService, version),
        ),
        (
            "uikit_widgets_service.add_button",
            offset_of!(WidgetsService, add_button),
        ),
        (
            "uikit_widgets_service.widget_count",
            offset_of!(WidgetsService, widget_count),
        ),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}

/// Every `#define` of the headers with the Rust value it must have.
fn constant_table() -> Vec<(&'static str, i64)> {
    vec![
        ("XPLUGIN_MAGIC", i64::from(XPLUGIN_MAGIC)),
        ("XPLUGIN_ABI_MAJOR", i64::from(XPLUGIN_ABI_MAJOR)),
        ("XPLUGIN_ABI_MINOR", i64::from(XPLUGIN_ABI_MINOR)),
        (
            "XPLUGIN_KIND_CONTROLLER",
            i64::from(XPLUGIN_KIND_CONTROLLER),
        ),
        ("XPLUGIN_KIND_CLIENT", i64::from(XPLUGIN_KIND_CLIENT)),
        ("XPLUGIN_KIND_RUNTIME", i64::from(XPLUGIN_KIND_RUNTIME)),
        ("XPLUGIN_OK", i64::from(XPLUGIN_OK)),
        ("XPLUGIN_ERR_FAILED", i64::from(XPLUGIN_ERR_FAILED)),
        (
            "XPLUGIN_ERR_INVALID_ARG",
            i64::from(XPLUGIN_ERR_INVALID_ARG),
        ),
        ("XPLUGIN_ERR_NOT_FOUND", i64::from(XPLUGIN_ERR_NOT_FOUND)),
        (
            "XPLUGIN_ERR_NOT_IMPLEMENTED",
            i64::from(XPLUGIN_ERR_NOT_IMPLEMENTED),
        ),
        ("XPLUGIN_ERR_NOT_READY", i64::from(XPLUGIN_ERR_NOT_READY)),
        ("XPLUGIN_ERR_CONFIG", i64::from(XPLUGIN_ERR_CONFIG)),
        ("XPLUGIN_ERR_DEPENDENCY", i64::from(XPLUGIN_ERR_DEPENDENCY)),
        ("XPLUGIN_ERR_DUPLICATE", i64::from(XPLUGIN_ERR_DUPLICATE)),
        ("XPLUGIN_ERR_NO_MEMORY", i64::from(XPLUGIN_ERR_NO_MEMORY)),
        ("XPLUGIN_ERR_IO", i64::from(XPLUGIN_ERR_IO)),
        ("XPLUGIN_ERR_TIMEOUT", i64::from(XPLUGIN_ERR_TIMEOUT)),
        ("XPLUGIN_ERR_PANIC", i64::from(XPLUGIN_ERR_PANIC)),
        (
            "XPLUGIN_ERR_UNAUTHORIZED",
            i64::from(XPLUGIN_ERR_UNAUTHORIZED),
        ),
        ("XPLUGIN_LOG_ERROR", i64::from(XPLUGIN_LOG_ERROR)),
        ("XPLUGIN_LOG_WARN", i64::from(XPLUGIN_LOG_WARN)),
        ("XPLUGIN_LOG_INFO", i64::from(XPLUGIN_LOG_INFO)),
        ("XPLUGIN_LOG_DEBUG", i64::from(XPLUGIN_LOG_DEBUG)),
        ("XPLUGIN_LOG_TRACE", i64::from(XPLUGIN_LOG_TRACE)),
        ("XPLUGIN_TOOLKIT_NONE", i64::from(XPLUGIN_TOOLKIT_NONE)),
        (
            "XPLUGIN_TOOLKIT_QT_WIDGET",
            i64::from(XPLUGIN_TOOLKIT_QT_WIDGET),
        ),
        (
            "XPLUGIN_TOOLKIT_WIN32_HWND",
            i64::from(XPLUGIN_TOOLKIT_WIN32_HWND),
        ),
        ("XPLUGIN_MAX_MODULES", i64::from(XPLUGIN_MAX_MODULES)),
        (
            "PLUGINDEMO_MOTION_VERSION",
            i64::from(motion_service::MOTION_SERVICE_VERSION),
        ),
        (
            "UIKIT_WIDGETS_VERSION",
            i64::from(widgets_service::WIDGETS_SERVICE_VERSION),
        ),
    ]
}

/// The C expression for a layout entry: `sizeof(T)` stays, `T.f` becomes
/// `offsetof(T, f)`.
fn c_expression(entry: &str) -> String {
    if entry.starts_with("sizeof(") {
        return entry.to_string();
    }
    match entry.split_once('.') {
        Some((ty, field)) => format!("offsetof({ty}, {field})"),
        None => panic!("layout entry {entry:?} is neither sizeof(T) nor T.field"),
    }
}

/// Writes `source` to `dir/name.c`, compiles it into an executable and runs
/// it (through the runner, if any), returning its stdout.
fn compile_and_run(dir: &Path, name: &str, source: &str, link_args: &[&OsStr]) -> String {
    let c_file = dir.join(format!("{name}.c"));
    std::fs::write(&c_file, source).unwrap();
    let exe = dir.join(name);
    let mut args: Vec<&OsStr> = vec![OsStr::new("-o"), exe.as_os_str(), c_file.as_os_str()];
    args.extend_from_slice(link_args);
    build::run_cc(&args);
    let output = build::target_command(&exe).output().unwrap();
    assert!(
        output.status.success(),
        "{} failed with {}: {}",
        exe.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn parse_name_value_lines(text: &str) -> BTreeMap<String, i64> {
    text.lines()
        .map(|line| {
            let (name, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad line from the C program: {line:?}"));
            (name.to_string(), value.parse::<i64>().unwrap())
        })
        .collect()
}

/// Compiles and runs the layout program and returns every entry where C and
/// Rust disagree. `xplugin_h_override` replaces xplugin.h (for the self-test).
fn layout_mismatches(xplugin_h_override: Option<&str>) -> Vec<String> {
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    let layouts: Vec<(String, usize)> = layout_table()
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .chain(extra_layout_table())
        .collect();
    assert!(
        layouts.len() >= 30,
        "layout table shrank: {}",
        layouts.len()
    );
    let mut program = String::from(
        "#include <stddef.h>\n#include <stdio.h>\n#include \"xplugin.h\"\n\
         #include \"xplugin_runtime.h\"\n#include \"plugindemo_motion.h\"\n\
         #include \"uikit_widgets.h\"\n\nint main(void) {\n",
    );
    for (name, value) in &layouts {
        expected.insert(name.clone(), i64::try_from(*value).unwrap());
        writeln!(
            program,
            "  printf(\"%s %llu\\n\", \"{name}\", (unsigned long long){});",
            c_expression(name)
        )
        .unwrap();
    }
    for (name, value) in constant_table() {
        expected.insert(name.to_string(), value);
        writeln!(
            program,
            "  printf(\"%s %lld\\n\", \"{name}\", (long long){name});"
        )
        .unwrap();
    }
    program.push_str("  return 0;\n}\n");

    let dir = tempfile::tempdir().unwrap();
    if let Some(header) = xplugin_h_override {
        // A quoted #include looks in the including file's directory first,
        // so this copy wins over the real header on the include path.
        std::fs::write(dir.path().join("xplugin.h"), header).unwrap();
    }
    let printed = parse_name_value_lines(&compile_and_run(dir.path(), "layout", &program, &[]));
    let mut mismatches: Vec<String> = expected
        .iter()
        .filter(|(name, value)| printed.get(*name) != Some(value))
        .map(|(name, value)| format!("{name}: Rust {value}, C {:?}", printed.get(name)))
        .collect();
    mismatches.extend(
        printed
            .keys()
            .filter(|name| !expected.contains_key(*name))
            .map(|name| format!("{name}: printed by C but not expected")),
    );
    mismatches
}

#[test]
fn c_headers_have_the_rust_layout_and_constants() {
    let mismatches = layout_mismatches(None);
    assert!(
        mismatches.is_empty(),
        "xplugin.h / service headers and the Rust definitions disagree (fix the header or the Rust struct, never only one):\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn layout_check_detects_a_drifted_header() {
    // The comparison is only worth something if a header that differs from
    // Rust fails it: run it against a copy of xplugin.h with one tag field
    // widened and one descriptor field moved.
    let header = build::workspace_root().join("xplugin-abi/include/xplugin.h");
    let original = std::fs::read_to_string(header).unwrap();
    let drifted = original
        .replacen(
            "  uint32_t kind;      /* XPLUGIN_KIND_* */",
            "  uint64_t kind;      /* XPLUGIN_KIND_* */",
            1,
        )
        .replacen(
            "  void (*destroy)(void *instance);",
            "  void *inserted_by_test;\n  void (*destroy)(void *instance);",
            1,
        );
    assert_eq!(
        drifted.len(),
        original.len() + "\n  void *inserted_by_test;".len(),
        "test anchors not found in xplugin.h"
    );
    let mismatches = layout_mismatches(Some(&drifted));
    for entry in [
        "sizeof(xplugin_abi_tag)",
        "xplugin_abi_tag.reserved",
        "sizeof(xplugin_descriptor)",
        "xplugin_descriptor.destroy",
        "xplugin_descriptor.idle",
    ] {
        assert!(
            mismatches
                .iter()
                .any(|m| m.starts_with(&format!("{entry}:"))),
            "{entry} not reported; mismatches: {mismatches:?}"
        );
    }
}

fn compile_header_alone(header: &str) {
    let dir = tempfile::tempdir().unwrap();
    let c_file = dir.path().join("only_header.c");
    // Including it twice proves the include guard.
    std::fs::write(
        &c_file,
        format!("#include \"{header}\"\n#include \"{header}\"\nint xplugin_header_check_anchor;\n"),
    )
    .unwrap();
    let object_file = dir.path().join("only_header.o");
    build::run_cc(&[
        OsStr::new("-pedantic"),
        OsStr::new("-c"),
        OsStr::new("-o"),
        object_file.as_os_str(),
        c_file.as_os_str(),
    ]);
}

#[test]
fn every_header_compiles_alone_as_strict_c99() {
    for header in [
        "xplugin.h",
        "xplugin_runtime.h",
        "plugindemo_motion.h",
        "uikit_widgets.h",
    ] {
        compile_header_alone(header);
    }
}

/// The C++ compiler for header checks: `XPLUGIN_TEST_CXX`, else `c++`.
fn cxx() -> String {
    std::env::var("XPLUGIN_TEST_CXX")
        .ok()
        .filter(|cxx| !cxx.trim().is_empty())
        .unwrap_or_else(|| "c++".to_string())
}

/// Runs the C++ compiler with our include directories and strict warnings.
fn run_cxx(args: &[&OsStr]) {
    let cxx = cxx();
    let mut command = std::process::Command::new(&cxx);
    command.args(["-std=c++11", "-Wall", "-Wextra", "-Werror"]);
    for dir in build::c_include_dirs() {
        command.arg("-I").arg(dir);
    }
    let output = command
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cxx} (set XPLUGIN_TEST_CXX): {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_header_compiles_as_cplusplus() {
    // C++ plugin authors include the same headers.
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("headers.cpp");
    std::fs::write(
        &source,
        "#include \"xplugin.h\"\n#include \"xplugin_runtime.h\"\n#include \"plugindemo_motion.h\"\n\
         #include \"uikit_widgets.h\"\nstatic_assert(sizeof(xplugin_abi_tag) == 16, \"tag\");\n",
    )
    .unwrap();
    run_cxx(&[OsStr::new("-fsyntax-only"), source.as_os_str()]);
}

#[test]
fn a_cplusplus_plugin_exports_entry_and_tag() {
    // In C++ a namespace-scope const has internal linkage: the tag macro
    // must give it C linkage or the host would never find it.
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("plugin.cpp");
    std::fs::write(
        &source,
        r#"#include "xplugin.h"
XPLUGIN_DEFINE_ABI_TAG(XPLUGIN_KIND_CLIENT);
namespace {
xplugin_status init(const xplugin_host_api *, const char *, size_t, void **out, char *, size_t) {
  *out = nullptr;
  return XPLUGIN_OK;
}
xplugin_status stage(void *, char *, size_t) { return XPLUGIN_OK; }
void destroy(void *) {}
const xplugin_descriptor descriptor = {
    XPLUGIN_MAGIC, XPLUGIN_ABI_MAJOR, XPLUGIN_ABI_MINOR, sizeof(xplugin_descriptor),
    XPLUGIN_KIND_CLIENT, "cppdemo", "1.0.0", init, stage, stage, destroy,
    nullptr, nullptr, nullptr, nullptr};
}  // namespace
XPLUGIN_EXTERN_C XPLUGIN_EXPORT const xplugin_descriptor *xplugin_entry(void) {
  return &descriptor;
}
"#,
    )
    .unwrap();
    let library = dir.path().join(build::cdylib_file_name("cppdemo"));
    run_cxx(&[
        OsStr::new("-fPIC"),
        OsStr::new("-shared"),
        OsStr::new("-fvisibility=hidden"),
        OsStr::new("-o"),
        library.as_os_str(),
        source.as_os_str(),
    ]);
    assert_plugin_exports(&library, XPLUGIN_KIND_CLIENT, XPLUGIN_ABI_MAJOR);
}

/// Exported symbols of a library and the bytes of its `xplugin_abi` tag.
struct Exports {
    names: Vec<String>,
    tag: Option<AbiTag>,
}

fn read_exports(path: &Path) -> Exports {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = object::File::parse(&*data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let exports = file.exports().unwrap();
    let mut names = Vec::new();
    let mut tag = None;
    for export in exports {
        let export = export.unwrap();
        let object::read::NameOrOrdinal::Name(name) = export.name() else {
            continue;
        };
        let name = String::from_utf8_lossy(name).into_owned();
        if name == XPLUGIN_ABI_TAG_SYMBOL {
            let object::read::ExportTarget::Address { address } = export.target() else {
                panic!("{}: xplugin_abi is not a plain address", path.display())
            };
            let section = file
                .sections()
                .find(|s| address >= s.address() && address < s.address() + s.size())
                .unwrap_or_else(|| panic!("{}: no section holds xplugin_abi", path.display()));
            let bytes = section.data().unwrap();
            let start = usize::try_from(address - section.address()).unwrap();
            tag = AbiTag::from_bytes(&bytes[start..], file.is_little_endian());
        }
        names.push(name);
    }
    Exports { names, tag }
}

fn assert_plugin_exports(path: &Path, kind: u32, abi_major: u16) {
    let exports = read_exports(path);
    for symbol in [XPLUGIN_ENTRY_SYMBOL, XPLUGIN_ABI_TAG_SYMBOL] {
        assert!(
            exports.names.iter().any(|n| n == symbol),
            "{} does not export {symbol}; exports: {:?}",
            path.display(),
            exports.names
        );
    }
    let tag = exports.tag.unwrap();
    assert_eq!(tag.magic, XPLUGIN_MAGIC, "{}", path.display());
    assert_eq!(tag.abi_major, abi_major, "{}", path.display());
    assert_eq!(tag.kind, kind, "{}", path.display());
}

#[test]
fn rust_example_plugins_export_entry_and_tag() {
    for (lib, kind) in [
        ("plugindemo_controller", XPLUGIN_KIND_CONTROLLER),
        ("plugindemo_client", XPLUGIN_KIND_CLIENT),
        ("uikit_client", XPLUGIN_KIND_CLIENT),
        ("panicky", XPLUGIN_KIND_CONTROLLER),
    ] {
        assert_plugin_exports(&build::cdylib_path(lib), kind, XPLUGIN_ABI_MAJOR);
    }
}

#[test]
fn c_plugins_export_only_entry_and_tag() {
    let motionlog = build::motionlog_path();
    assert_plugin_exports(&motionlog, XPLUGIN_KIND_CONTROLLER, XPLUGIN_ABI_MAJOR);
    let mut names = read_exports(&motionlog).names;
    names.sort();
    assert_eq!(names, [XPLUGIN_ABI_TAG_SYMBOL, XPLUGIN_ENTRY_SYMBOL]);

    let client = build::c_fixture("abi_client_fixture", &["FIXTURE_KIND=XPLUGIN_KIND_CLIENT"]);
    assert_plugin_exports(&client, XPLUGIN_KIND_CLIENT, XPLUGIN_ABI_MAJOR);
    // The wrong-major fixture carries the wrong major in the file itself.
    let wrong_major = build::c_fixture("abi_major2_fixture", &["FIXTURE_ABI_MAJOR=2"]);
    assert_plugin_exports(&wrong_major, XPLUGIN_KIND_CONTROLLER, 2);
}

#[test]
fn runtime_library_exports_tag_and_helpers_but_no_entry() {
    let runtime = build::runtime_library_path();
    assert_eq!(
        runtime.file_name().and_then(|n| n.to_str()),
        Some(build::cdylib_file_name("xplugin").as_str())
    );
    let exports = read_exports(&runtime);
    for symbol in [
        XPLUGIN_ABI_TAG_SYMBOL,
        "xplugin_runtime_version",
        "xplugin_runtime_abi_version",
        "xplugin_status_name",
        "xplugin_status_text",
        "xplugin_write_error",
    ] {
        assert!(
            exports.names.iter().any(|n| n == symbol),
            "{} does not export {symbol}: {:?}",
            runtime.display(),
            exports.names
        );
    }
    assert!(!exports.names.iter().any(|n| n == XPLUGIN_ENTRY_SYMBOL));
    assert_eq!(exports.tag, Some(AbiTag::current(XPLUGIN_KIND_RUNTIME)));
}

#[test]
fn runtime_helpers_are_callable_from_c_as_declared() {
    let runtime = build::runtime_library_path();
    let lib_dir: PathBuf = runtime.parent().unwrap().to_path_buf();
    let program = r#"#include <stdio.h>
#include <string.h>
#include "xplugin_runtime.h"
int main(void) {
  char buf[6];
  size_t n;
  printf("version %s\n", xplugin_runtime_version());
  printf("abi %lu\n", (unsigned long)xplugin_runtime_abi_version());
  printf("name %s\n", xplugin_status_name(XPLUGIN_ERR_CONFIG));
  printf("text %s\n", xplugin_status_text(XPLUGIN_ERR_CONFIG));
  printf("unknown %s\n", xplugin_status_name(-1000));
  memset(buf, 'x', sizeof buf);
  n = xplugin_write_error(buf, sizeof buf, "abcdefgh");
  printf("truncated %lu %s\n", (unsigned long)n, buf);
  return 0;
}
"#;
    let dir = tempfile::tempdir().unwrap();
    let link_dir = format!("-L{}", lib_dir.display());
    let rpath = format!("-Wl,-rpath,{}", lib_dir.display());
    let out = compile_and_run(
        dir.path(),
        "runtime_user",
        program,
        &[
            OsStr::new(&link_dir),
            OsStr::new(&rpath),
            OsStr::new("-lxplugin"),
        ],
    );
    let expected = format!(
        "version {}\nabi {}\nname XPLUGIN_ERR_CONFIG\ntext configuration rejected\n\
         unknown unknown error status\ntruncated 5 abcde\n",
        env!("CARGO_PKG_VERSION"),
        (u32::from(XPLUGIN_ABI_MAJOR) << 16) | u32::from(XPLUGIN_ABI_MINOR)
    );
    assert_eq!(out, expected);
}
