//! ABI-call benchmark: the cyclic `step` of a real plugin library called
//! through its descriptor, versus a direct call of the same function body
//! compiled into this binary.
//!
//! The plugin is the benchmark suite's generated plugin
//! (`bench/c/bench_plugin.c`), compiled here with the system C compiler
//! (`CC`, default `cc`) at `-O2`, checked with [`check_plugin_file`] and opened
//! with [`open_plugin`], the loader's own path (`RTLD_NOW | RTLD_LOCAL`). Its
//! `step` increments a counter and stores the cycle; `direct_step` below does
//! the same.
//!
//! Three figures (the whole cycle path per plugin is measured by the
//! `cycle` bench of scripts/bench):
//! - `direct_call`: `direct_step`, `#[inline(never)]`, called by name;
//! - `direct_call_via_pointer`: the same function through a `black_box`ed
//!   function pointer (an indirect call without leaving this binary);
//! - `descriptor_step`: the plugin's `step`, read from its descriptor each
//!   call (what the host's cyclic loop does).
//!
//! Run: `cargo bench -p xplugin-host --bench abi_call` (scripts/bench does,
//! and writes the difference into BENCHMARKS.md). Not run by `cargo test`.

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::process::Command;
use xplugin_abi::{HostApi, Status, XPLUGIN_ABI_MAJOR, XPLUGIN_ABI_MINOR, XPLUGIN_KIND_CONTROLLER};
use xplugin_abi::{XPLUGIN_ERR_INVALID_ARG, XPLUGIN_OK};
use xplugin_host::checks::check_plugin_file;
use xplugin_host::loader::{open_plugin, LoadedPlugin};

/// Name and version compiled into the plugin (must match for `open_plugin`).
const PLUGIN_NAME: &str = "abibench";
const PLUGIN_VERSION: &str = "1.0.0";

fn main() {
    divan::main();
}

/// Same layout as `bench_instance` in bench/c/bench_plugin.c.
#[repr(C)]
struct BenchInstance {
    steps: u64,
    last_cycle: u64,
}

/// The plugin's `bench_step`, compiled into this binary.
///
/// # Safety
/// `instance` is null or points to a live `BenchInstance`.
#[inline(never)]
unsafe extern "C" fn direct_step(instance: *mut c_void, cycle: u64, _now_ns: u64) -> Status {
    let this = instance.cast::<BenchInstance>();
    // SAFETY: the caller passes a live instance (or null, refused here).
    match unsafe { this.as_mut() } {
        Some(this) => {
            this.steps += 1;
            this.last_cycle = cycle;
            XPLUGIN_OK
        }
        None => XPLUGIN_ERR_INVALID_ARG,
    }
}

/// Compiles bench/c/bench_plugin.c into `dir` and returns the library path.
fn compile_plugin(dir: &Path) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."));
    let pad = dir.join("abibench.pad");
    // A small padding: this benchmark is about the call, not the file size.
    std::fs::write(&pad, vec![0x5a_u8; 4096])
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", pad.display()));
    let out = dir.join("abibench.so");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let status = Command::new(&cc)
        .args(["-std=c99", "-O2", "-fPIC", "-shared", "-fvisibility=hidden"])
        .arg("-I")
        .arg(repo.join("xplugin-abi/include"))
        .arg(format!("-DBENCH_NAME=\"{PLUGIN_NAME}\""))
        .arg(format!("-DBENCH_VERSION=\"{PLUGIN_VERSION}\""))
        .arg(format!("-DBENCH_PAD_FILE=\"{}\"", pad.display()))
        .arg("-o")
        .arg(&out)
        .arg(repo.join("bench/c/bench_plugin.c"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc:?} (set CC): {e}"));
    assert!(
        status.success(),
        "{cc} failed to compile bench/c/bench_plugin.c"
    );
    out
}

/// A host table with no services: the bench plugin's `init` uses none.
fn empty_host_api() -> HostApi {
    HostApi {
        struct_size: std::mem::size_of::<HostApi>() as u32,
        abi_major: XPLUGIN_ABI_MAJOR,
        abi_minor: XPLUGIN_ABI_MINOR,
        host: std::ptr::null_mut(),
        log: None,
        host_version: None,
        data_dir: None,
        publish: None,
        subscribe: None,
        unsubscribe: None,
        register_service: None,
        find_service: None,
        set_busy: None,
    }
}

/// The loaded plugin and an instance made by its own `init`.
struct Loaded {
    _dir: tempfile::TempDir,
    plugin: LoadedPlugin,
    instance: *mut c_void,
}

fn load() -> Loaded {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = compile_plugin(dir.path());
    let checked = check_plugin_file(&path, XPLUGIN_KIND_CONTROLLER)
        .unwrap_or_else(|e| panic!("the bench plugin fails the loader's file check: {e}"));
    // SAFETY: our own plugin, compiled just now from bench/c/bench_plugin.c
    // in this repository (no package, so no license to check) and passed
    // through `check_plugin_file` (architecture, ABI tag, kind) above.
    let plugin = unsafe { open_plugin(&checked, PLUGIN_NAME, PLUGIN_VERSION) }
        .unwrap_or_else(|e| panic!("cannot open the bench plugin: {e}"));
    let d = plugin.descriptor();
    let host = empty_host_api();
    let mut instance: *mut c_void = std::ptr::null_mut();
    let mut err = [0u8; 256];
    let init = d
        .init
        .unwrap_or_else(|| panic!("the bench plugin has no init"));
    // SAFETY: `init` comes from the descriptor `open_plugin` validated;
    // `host` is a complete 1.0 table (every function NULL, which the bench
    // plugin never calls) that outlives the instance; the config is a
    // NUL-terminated 2-byte literal; `instance` and `err` are locals valid
    // for writes of a pointer and `err.len()` bytes.
    let status = unsafe {
        init(
            &host,
            c"{}".as_ptr(),
            2,
            &mut instance,
            err.as_mut_ptr().cast(),
            err.len(),
        )
    };
    assert_eq!(status, XPLUGIN_OK, "the bench plugin's init failed");
    Loaded {
        _dir: dir,
        plugin,
        instance,
    }
}

#[divan::bench]
fn direct_call(bencher: divan::Bencher) {
    let mut instance = BenchInstance {
        steps: 0,
        last_cycle: 0,
    };
    let ptr: *mut c_void = (&mut instance as *mut BenchInstance).cast();
    let mut cycle = 0u64;
    bencher.bench_local(|| {
        cycle = cycle.wrapping_add(1);
        // SAFETY: `instance` lives for the whole benchmark.
        unsafe { direct_step(divan::black_box(ptr), divan::black_box(cycle), 0) }
    });
    assert!(instance.steps > 0);
}

#[divan::bench]
fn direct_call_via_pointer(bencher: divan::Bencher) {
    let mut instance = BenchInstance {
        steps: 0,
        last_cycle: 0,
    };
    let ptr: *mut c_void = (&mut instance as *mut BenchInstance).cast();
    let f: xplugin_abi::StepFn = direct_step;
    let mut cycle = 0u64;
    bencher.bench_local(|| {
        cycle = cycle.wrapping_add(1);
        let f = divan::black_box(f);
        // SAFETY: `instance` lives for the whole benchmark.
        unsafe { f(divan::black_box(ptr), divan::black_box(cycle), 0) }
    });
    assert!(instance.steps > 0);
}

#[divan::bench]
fn descriptor_step(bencher: divan::Bencher) {
    let loaded = load();
    let descriptor = loaded.plugin.descriptor();
    let instance = loaded.instance;
    let mut cycle = 0u64;
    bencher.bench_local(|| {
        cycle = cycle.wrapping_add(1);
        // What the host's loop does: read `step` from the descriptor, call it.
        match divan::black_box(descriptor).step {
            // SAFETY: a live instance made by this plugin's init.
            Some(step) => unsafe { step(divan::black_box(instance), divan::black_box(cycle), 0) },
            None => XPLUGIN_ERR_INVALID_ARG,
        }
    });
    // The plugin really ran: its own counter moved.
    // SAFETY: the instance is the plugin's `bench_instance`, which
    // `BenchInstance` mirrors; its init succeeded and it is not destroyed
    // yet, and no step runs concurrently (the benchmark loop has returned).
    let steps = unsafe { (*loaded.instance.cast::<BenchInstance>()).steps };
    assert!(steps > 0, "the plugin's step never ran");
    if let Some(destroy) = descriptor.destroy {
        // SAFETY: the instance came from this plugin's successful init, is
        // destroyed once, here, and not used after.
        unsafe { destroy(loaded.instance) };
    }
}
