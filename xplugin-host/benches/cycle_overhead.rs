//! Cycle-path benchmark: the host's cost per plugin per cycle on the
//! real-time cycle thread, the whole path (the active check, the journal's
//! "in plugin N" stores, the call through the descriptor, the timestamp,
//! the histogram, the budget check), not only the call.
//!
//! It runs the real `Cycle` over N instances of the benchmark suite's C
//! plugin (`bench/c/bench_plugin.c`, `-O2`: its step increments a counter),
//! with a journal open as the daemon has, for N = 1, 10 and 100, and reads
//! the mean stepping time of a cycle from the cycle's own statistics. The
//! slope between N = 1 and N = 100 is the per-plugin cost; from it the
//! report subtracts what is not the host's: one timestamp per plugin (the
//! counter's measured read cost, reported on its own) and the step body
//! itself (measured here by calling the same body directly).
//!
//! Run: `cargo bench -p xplugin-host --bench cycle_overhead` (scripts/bench
//! does). Prints `key=value` lines.

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;
use xplugin_abi::{HostApi, XPLUGIN_ABI_MAJOR, XPLUGIN_ABI_MINOR, XPLUGIN_KIND_CONTROLLER};
use xplugin_host::checks::check_plugin_file;
use xplugin_host::cycle::{Cycle, CycleHooks, CyclePlugin, CycleSettings, OverrunPolicy};
use xplugin_host::loader::open_plugin;
use xplugin_host::services::Bus;

const NAME: &str = "cyclebench";
const VERSION: &str = "1.0.0";
const CYCLES: u64 = 20_000;

fn compile(dir: &Path) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."));
    let pad = dir.join("pad");
    std::fs::write(&pad, vec![0x5a_u8; 4096]).unwrap_or_else(|e| panic!("{}: {e}", pad.display()));
    let out = dir.join("cyclebench.so");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let ok = Command::new(&cc)
        .args(["-std=c99", "-O2", "-fPIC", "-shared", "-fvisibility=hidden"])
        .arg("-I")
        .arg(repo.join("xplugin-abi/include"))
        .arg(format!("-DBENCH_NAME=\"{NAME}\""))
        .arg(format!("-DBENCH_VERSION=\"{VERSION}\""))
        .arg(format!("-DBENCH_PAD_FILE=\"{}\"", pad.display()))
        .arg("-o")
        .arg(&out)
        .arg(repo.join("bench/c/bench_plugin.c"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"))
        .success();
    assert!(ok, "{cc} failed on bench/c/bench_plugin.c");
    out
}

/// What calling the plugin's step costs by itself (the call through the
/// descriptor's pointer and the plugin's own two stores): not the host's.
fn step_call_ns(step: xplugin_host::cycle::StepFn, instance: *mut c_void) -> f64 {
    let n = 20_000_000u64;
    let step = std::hint::black_box(step);
    let start = std::time::Instant::now();
    for c in 0..n {
        // SAFETY: a live instance of this plugin; nothing else calls it now.
        std::hint::black_box(unsafe { step(instance, c, 0) });
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    // The daemon runs with a journal: so does this.
    let journal = dir.path().join("journal");
    xplugin_host::journal::Journal::open(
        &journal,
        1,
        false,
        xplugin_host::journal::Phase::Starting,
    )
    .unwrap_or_else(|e| panic!("journal: {e}"));
    let lib = compile(dir.path());
    let checked =
        check_plugin_file(&lib, XPLUGIN_KIND_CONTROLLER).unwrap_or_else(|e| panic!("{e}"));
    // SAFETY: our own plugin, compiled just now from this repository and
    // checked by check_plugin_file.
    let plugin = unsafe { open_plugin(&checked, NAME, VERSION) }.unwrap_or_else(|e| panic!("{e}"));
    let d = plugin.descriptor();
    let (init, step) = (d.init.expect("init"), d.step.expect("step"));
    let host = HostApi {
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
    };
    let instances: Vec<*mut c_void> = (0..100)
        .map(|_| {
            let mut instance: *mut c_void = std::ptr::null_mut();
            let mut err = [0u8; 128];
            // SAFETY: a complete table the plugin never calls into; "{}" is
            // a NUL-terminated config of 2 bytes; the out pointers are locals.
            let s = unsafe {
                init(
                    &host,
                    c"{}".as_ptr(),
                    2,
                    &mut instance,
                    err.as_mut_ptr().cast(),
                    err.len(),
                )
            };
            assert_eq!(s, 0, "bench plugin init failed");
            instance
        })
        .collect();
    let mut means = Vec::new();
    let mut read_cost = 0;
    for n in [1usize, 10, 100] {
        let plugins = instances[..n]
            .iter()
            .enumerate()
            .map(|(i, &instance)| CyclePlugin {
                journal_index: i as u32,
                name: format!("p{i}"),
                step,
                instance,
                budget_ns: 1_000_000,
                depends_on: Vec::new(),
            })
            .collect();
        let settings = CycleSettings {
            period_ns: 50_000,
            cycles: Some(CYCLES),
            policy: OverrunPolicy::Skip,
            ..CycleSettings::default()
        };
        // SAFETY: the instances live until the end of main and nothing else
        // calls their step.
        let cycle = unsafe { Cycle::spawn(settings, plugins, Bus::new(), CycleHooks::default()) }
            .unwrap_or_else(|e| panic!("{e}"));
        while cycle.stats().cycles.load(Ordering::Relaxed) < CYCLES {
            std::thread::sleep(Duration::from_millis(10));
        }
        let t = cycle.join();
        read_cost = t.timestamps.read_cost_ns;
        println!("cycle_ns_mean_n{n}={}", t.cycle_ns.mean);
        println!("cycle_ns_p50_n{n}={}", t.cycle_ns.p50);
        means.push((n, t.cycle_ns.mean as f64));
    }
    let slope = (means[2].1 - means[0].1) / (means[2].0 - means[0].0) as f64;
    let call = step_call_ns(step, instances[0]);
    println!("per_plugin_ns={slope:.2}");
    println!("timestamp_ns={read_cost}");
    println!("step_call_ns={call:.2}");
    println!("host_per_plugin_ns={:.2}", slope - read_cost as f64 - call);
    println!("cycles_per_case={CYCLES}");
}
