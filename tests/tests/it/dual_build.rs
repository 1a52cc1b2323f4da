//! A client plugin folder that carries both builds, `NAME.so` (with
//! `libxplugin.so`) and `NAME.dll` (with `xplugin.dll`), licensed together
//! by one `.lic`: packed, verified and imported on Linux, where the `.so` is
//! loaded and the `.dll` is only checked and hashed; and a folder with only
//! the Windows build, installed here but reported as having no library for
//! this platform. (The same package under wine: scripts/windows-smoke.)
//!
//! The `.dll` files here are PE images made by `pe_library`: the facts the
//! checks read (DLL, x86-64, ABI tag, entry export) without code, so no
//! mingw is needed on Linux, where a `.dll` is never loaded.

use xplugin_abi::{XPLUGIN_KIND_CLIENT, XPLUGIN_KIND_RUNTIME};
use xplugin_tests::build::{client_manifest, pe_library};
use xplugin_tests::scenario::{run_program, Scenario};

fn plugin<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["plugins"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("{name} not in {report:#}"))
}

/// Adds the Windows build (`uikit.dll`, `xplugin.dll`) to the example
/// `uikit` folder, which holds the Linux one.
fn add_windows_build(s: &Scenario, name: &str) {
    let dir = s.folder("client", name);
    std::fs::write(
        dir.join(format!("{name}.dll")),
        pe_library(XPLUGIN_KIND_CLIENT),
    )
    .expect("write .dll");
    std::fs::write(dir.join("xplugin.dll"), pe_library(XPLUGIN_KIND_RUNTIME))
        .expect("write xplugin.dll");
}

#[test]
fn a_dual_build_plugin_is_licensed_once_packed_and_loads_its_linux_build() {
    let s = Scenario::new();
    add_windows_build(&s, "uikit");
    // One license covers both builds: every library file is hashed.
    let lic = s.license("client", "uikit", &[]).ok();
    for file in ["uikit.so", "libxplugin.so", "uikit.dll", "xplugin.dll"] {
        assert!(
            lic.stdout.contains(file),
            "{file} not covered: {}",
            lic.all()
        );
    }
    s.license_all();
    let pkg = s.pack("dual");
    let inspect = run_program(
        "xplugin-pack",
        &[
            "inspect",
            pkg.to_str().unwrap_or_default(),
            "--trust",
            s.trust.to_str().unwrap_or_default(),
            "--device-id",
            &s.device_id,
            "--json",
        ],
    )
    .ok()
    .json();
    let libraries: Vec<String> = plugin(&inspect, "uikit")["libraries"]
        .as_array()
        .expect("libraries")
        .iter()
        .map(|l| l.to_string())
        .collect();
    for file in ["uikit.so", "uikit.dll", "xplugin.dll"] {
        assert!(
            libraries.iter().any(|l| l.contains(file)),
            "{file} not in {libraries:?}"
        );
    }

    let report = s.import(&pkg, &["--json"]).ok().json();
    assert_eq!(report["committed"], true, "{report:#}");
    let installed = s.client_root.join("current/plugins/uikit");
    for file in [
        "uikit.so",
        "libxplugin.so",
        "uikit.dll",
        "xplugin.dll",
        "uikit.lic",
    ] {
        assert!(installed.join(file).is_file(), "{file} not installed");
    }

    let croot = s.controller_root.to_string_lossy().into_owned();
    let run = s
        .client(&[
            "run",
            "--hmi-version",
            "3.0.2",
            "--controller-root",
            &croot,
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(plugin(&run, "uikit")["state"], "stopped", "{run:#}");
    assert_eq!(plugin(&run, "plugindemo")["state"], "stopped", "{run:#}");
}

#[test]
fn a_swapped_windows_build_refuses_the_plugin_on_linux_too() {
    let s = Scenario::new();
    add_windows_build(&s, "uikit");
    s.license_all();
    s.import(&s.pack("good"), &[]).ok();
    let before = s.roots_digest();
    // The .dll changed after licensing. A Linux pendant would load the .so,
    // but one license covers both builds, so the plugin is refused.
    let mut bytes = pe_library(XPLUGIN_KIND_CLIENT);
    bytes.extend_from_slice(b"swapped");
    std::fs::write(s.folder("client", "uikit").join("uikit.dll"), bytes).expect("swap");
    let r = s.import(&s.pack("swapped"), &["--force", "--json"]);
    xplugin_tests::problems::assert_one_hash_mismatch(&r, "uikit.dll");
    assert_eq!(
        s.roots_digest(),
        before,
        "a refused import changed the roots"
    );
}

#[test]
fn a_windows_only_client_folder_has_no_library_for_linux() {
    let s = Scenario::new();
    let dir = s.folder("client", "winonly");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("winonly.json"),
        client_manifest("winonly", "1.0.0", &[], &[]),
    )
    .expect("manifest");
    std::fs::write(dir.join("winonly.dll"), pe_library(XPLUGIN_KIND_CLIENT)).expect("dll");
    std::fs::write(dir.join("xplugin.dll"), pe_library(XPLUGIN_KIND_RUNTIME)).expect("dll");
    s.license_all();
    let report = s.import(&s.pack("winonly"), &["--json"]).ok().json();
    assert_eq!(report["committed"], true, "{report:#}");
    let text = report.to_string();
    assert!(
        text.contains("no library for this platform: the plugin ships winonly.dll (Windows) but no winonly.so"),
        "{report:#}"
    );
    assert!(text.contains("library.no_platform_build"), "{report:#}");
}
