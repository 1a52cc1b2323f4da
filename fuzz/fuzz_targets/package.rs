//! The package reader on arbitrary bytes: `unpack_package_sides` with the
//! limits in force, exactly as an import calls it.
//!
//! Input: one mode byte, then the data.
//! * bit 0 clear: the data is the package (the outer zip);
//!   set: the data is an inner zip, wrapped here as the only entry of a
//!   well-formed outer zip (`client.zip`, or `controller.zip` with bit 1),
//!   so the fuzzer need not keep an outer CRC right to reach the inner reader.
//! * bit 2: tight limits (few entries, small JSON, low ratio threshold,
//!   short names) instead of the defaults, to reach the limit checks.
//! * bit 3: unpack the client side only (the pendant's online import).
//!
//! Checked beyond "no panic": a refused package leaves the staging
//! directory empty (the reader's contract), and every refusal renders.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use xplugin_model::{Failure, Side};
use xplugin_package::{binary, unpack_package_sides, Limits, PackageError};

struct Scratch {
    package: PathBuf,
    staging: PathBuf,
}

fn scratch() -> &'static Scratch {
    static SCRATCH: OnceLock<Scratch> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let dir = xplugin_fuzz::scratch_dir("package");
        Scratch {
            package: dir.join("plugindemo.zip"),
            staging: dir.join("staging"),
        }
    })
}

/// A stored outer zip holding `inner` as `name`, as `xplugin-pack` writes one.
fn wrap(name: &str, inner: &[u8]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    writer
        .start_file(name, options)
        .expect("zip writer in memory");
    writer.write_all(inner).expect("zip writer in memory");
    writer.finish().expect("zip writer in memory").into_inner()
}

fn tight_limits() -> Limits {
    Limits {
        max_package_bytes: 64 * 1024,
        max_entries: 8,
        max_total_uncompressed: 256 * 1024,
        max_entry_uncompressed: 64 * 1024,
        max_ratio: 10,
        ratio_check_min_bytes: 1024,
        max_json_bytes: 1024,
        max_name_len: 48,
        max_depth: 3,
    }
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let bytes = if mode & 1 == 0 {
        body.to_vec()
    } else if mode & 2 == 0 {
        wrap("client.zip", body)
    } else {
        wrap("controller.zip", body)
    };
    let limits = if mode & 4 == 0 {
        Limits::default()
    } else {
        tight_limits()
    };
    let sides: &[Side] = if mode & 8 == 0 {
        &[Side::Client, Side::Controller]
    } else {
        &[Side::Client]
    };
    let s = scratch();
    std::fs::write(&s.package, &bytes).expect("write the input package");
    if s.staging.exists() {
        std::fs::remove_dir_all(&s.staging).expect("clear staging");
    }
    std::fs::create_dir(&s.staging).expect("create staging");

    match unpack_package_sides(&s.package, &s.staging, &limits, sides) {
        Ok(unpacked) => {
            let _ = unpacked.warnings.to_string();
            for tree in [&unpacked.client, &unpacked.controller]
                .into_iter()
                .flatten()
            {
                for plugin in &tree.plugins {
                    for file in &plugin.files {
                        if file.ends_with(".so") || file.ends_with(".dll") {
                            // What the verifier does next with a library.
                            let path = plugin.dir.join(file);
                            if let Ok(info) = binary::inspect_library(&path) {
                                let _ = binary::check_library(&path, &info, 0);
                            }
                        }
                    }
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
            let _ = e.problems().to_string();
            assert!(
                is_empty_dir(&s.staging),
                "a refused package left files in staging: {e}"
            );
            if let PackageError::Refused(problems) = &e {
                assert!(
                    problems.has_errors(),
                    "refused without an error: {problems}"
                );
            }
        }
    }
});
