//! Vendor keys and the device's trust store.
//!
//! Key files are short text files:
//!
//! ```text
//! xplugin-private-key-v1            xplugin-public-key-v1
//! key-id: acme-2026                 key-id: acme-2026
//! secret: <base64, 32 bytes>        public: <base64, 32 bytes>
//! ```
//!
//! The private key file (`KEYID.key`) is created with mode 0600 and never
//! overwritten; the public key file is named `KEYID.pub`, and a device
//! trusts exactly the `*.pub` files in its trust-store directory (by default
//! `/etc/xplugin/trusted-keys/`). A key shipped inside a package is never
//! trusted: the verifier only looks keys up in a [`TrustStore`].

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use xplugin_model::{Failure, Problem, ProblemCode, Problems};

const PRIVATE_HEADER: &str = "xplugin-private-key-v1";
const PUBLIC_HEADER: &str = "xplugin-public-key-v1";
/// Key files are tiny; anything bigger is not a key file.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// The default trust-store directory on a device.
pub const DEFAULT_TRUST_DIR: &str = "/etc/xplugin/trusted-keys";

/// A problem with a key file or the trust store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A key file or directory cannot be read or written.
    #[error("{action} {path}")]
    Io {
        /// What was being done ("cannot read key file").
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
        /// What to do.
        hint: &'static str,
    },
    /// Key generation would overwrite an existing file.
    #[error("{path} already exists; refusing to overwrite a key")]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// A key file does not have the documented form.
    #[error("{path} is not a valid xplugin {kind} key file: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// "private" or "public".
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A private key file readable by group or others.
    #[error("private key file {path} has mode {mode:o}: other users can read it")]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key id that cannot be used (it names files).
    #[error("key id \"{key_id}\" is not usable: {reason}")]
    InvalidKeyId {
        /// The key id.
        key_id: String,
        /// What is wrong.
        reason: String,
    },
    /// A public key file whose name does not match the key id inside.
    #[error("trusted key file {path} holds key id \"{key_id}\"; the file must be named \"{key_id}.pub\"")]
    NameMismatch {
        /// The file.
        path: PathBuf,
        /// The key id inside.
        key_id: String,
    },
    /// Two trusted key files claim the same key id.
    #[error("key id \"{key_id}\" is defined twice in the trust store ({first} and {second})")]
    DuplicateKeyId {
        /// The key id.
        key_id: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
    /// Several problems in one trust store, all listed.
    #[error("trust store {dir} has {} problem(s):{}", problems.len(), list(problems))]
    TrustStore {
        /// The directory.
        dir: PathBuf,
        /// Each problem.
        problems: Vec<KeyError>,
    },
}

fn list(problems: &[KeyError]) -> String {
    let mut out = String::new();
    for p in problems {
        let _ = write!(out, "\n- {}", xplugin_model::error_chain(p));
    }
    out
}

impl KeyError {
    /// The problem code ([`KeyError::TrustStore`]: its first problem's).
    pub fn code(&self) -> ProblemCode {
        match self {
            KeyError::Io { .. } => ProblemCode::KeyIo,
            KeyError::Exists { .. } => ProblemCode::KeyExists,
            KeyError::Malformed { .. } => ProblemCode::KeyMalformed,
            KeyError::InsecurePermissions { .. } => ProblemCode::KeyInsecurePermissions,
            KeyError::InvalidKeyId { .. } => ProblemCode::KeyInvalidId,
            KeyError::NameMismatch { .. } => ProblemCode::KeyNameMismatch,
            KeyError::DuplicateKeyId { .. } => ProblemCode::KeyDuplicateId,
            KeyError::TrustStore { problems, .. } => {
                problems.first().map_or(ProblemCode::KeyIo, KeyError::code)
            }
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            KeyError::Io { hint, .. } => (*hint).to_string(),
            KeyError::Exists { .. } => "choose another --out directory or --key-id, or move the old key away if you really mean to replace it".into(),
            KeyError::Malformed { .. } => "use the file written by `xplugin-pack keygen` unchanged".into(),
            KeyError::InsecurePermissions { path, .. } => format!("`chmod 600 {}` (and consider the key leaked if others could read it)", path.display()),
            KeyError::InvalidKeyId { .. } => "use 1 to 64 characters from A-Z a-z 0-9 . _ - not starting with '.' or '-'".into(),
            KeyError::NameMismatch { .. } => "rename the file or install the right key file".into(),
            KeyError::DuplicateKeyId { .. } => "remove one of the files".into(),
            KeyError::TrustStore { .. } => "fix each problem listed".into(),
        }
    }

    /// The file or key the error is about.
    fn subject(&self) -> String {
        match self {
            KeyError::Io { path, .. }
            | KeyError::Exists { path }
            | KeyError::Malformed { path, .. }
            | KeyError::InsecurePermissions { path, .. }
            | KeyError::NameMismatch { path, .. } => path.display().to_string(),
            KeyError::DuplicateKeyId { first, .. } => first.display().to_string(),
            KeyError::InvalidKeyId { key_id, .. } => format!("key id \"{key_id}\""),
            KeyError::TrustStore { dir, .. } => dir.display().to_string(),
        }
    }
}

/// One problem per error; a trust store with several lists each.
impl Failure for KeyError {
    fn problems(&self) -> Problems {
        match self {
            KeyError::TrustStore { problems, .. } => {
                problems.iter().flat_map(|p| p.problems().0).collect()
            }
            other => Problems(vec![Problem::from_error(
                other.code(),
                other.subject(),
                other,
                other.hint(),
            )]),
        }
    }
}

/// Checks that `key_id` can name a key (and its `.pub` file).
///
/// # Errors
///
/// [`KeyError::InvalidKeyId`] saying what is wrong.
pub fn validate_key_id(key_id: &str) -> Result<(), KeyError> {
    let reason = if key_id.is_empty() {
        Some("it is empty".to_string())
    } else if key_id.len() > 64 {
        Some(format!(
            "it has {} characters, at most 64 are allowed",
            key_id.len()
        ))
    } else if key_id.starts_with(['.', '-']) {
        Some("it starts with '.' or '-'".to_string())
    } else {
        key_id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            .map(|c| format!("it contains {c:?}"))
    };
    match reason {
        Some(reason) => Err(KeyError::InvalidKeyId {
            key_id: key_id.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The key id used when the vendor chooses none: `xk-` and the first 8
/// bytes (hex) of SHA-256 over a domain prefix and the public key.
pub fn default_key_id(key: &VerifyingKey) -> String {
    let mut h = Sha256::new();
    h.update(b"xplugin-key-id-v1\0");
    h.update(key.as_bytes());
    let mut out = String::from("xk-");
    for b in h.finalize().iter().take(8) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A new random signing key from the operating system's generator, and its
/// key id (`key_id` if given, else [`default_key_id`]).
///
/// # Errors
///
/// [`KeyError::InvalidKeyId`] for an unusable `key_id`.
pub fn generate_keypair(key_id: Option<&str>) -> Result<(SigningKey, String), KeyError> {
    let key = SigningKey::generate(&mut rand_core::OsRng);
    let id = match key_id {
        Some(id) => {
            validate_key_id(id)?;
            id.to_string()
        }
        None => default_key_id(&key.verifying_key()),
    };
    Ok((key, id))
}

/// The files [`write_key_files`] created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFiles {
    /// `DIR/KEYID.key`, mode 0600.
    pub private: PathBuf,
    /// `DIR/KEYID.pub`, to install in devices' trust stores.
    pub public: PathBuf,
}

/// Writes `DIR/KEYID.key` (mode 0600, created exclusively) and
/// `DIR/KEYID.pub`, creating `dir` if needed. Neither file may exist.
///
/// # Errors
///
/// [`KeyError::Exists`] if either file exists, [`KeyError::Io`] on write
/// failures, [`KeyError::InvalidKeyId`] for an unusable id.
pub fn write_key_files(dir: &Path, key_id: &str, key: &SigningKey) -> Result<KeyFiles, KeyError> {
    validate_key_id(key_id)?;
    std::fs::create_dir_all(dir).map_err(|source| KeyError::Io {
        action: "cannot create key directory",
        path: dir.to_path_buf(),
        source,
        hint: "check the path and its permissions",
    })?;
    let files = KeyFiles {
        private: dir.join(format!("{key_id}.key")),
        public: dir.join(format!("{key_id}.pub")),
    };
    for path in [&files.private, &files.public] {
        if path.symlink_metadata().is_ok() {
            return Err(KeyError::Exists { path: path.clone() });
        }
    }
    let secret = format!(
        "{PRIVATE_HEADER}\nkey-id: {key_id}\nsecret: {}\n",
        STANDARD.encode(key.to_bytes())
    );
    write_new(&files.private, secret.as_bytes(), 0o600)?;
    write_new(
        &files.public,
        public_key_text(key_id, &key.verifying_key()).as_bytes(),
        0o644,
    )?;
    Ok(files)
}

/// The text of a public key file.
pub fn public_key_text(key_id: &str, key: &VerifyingKey) -> String {
    format!(
        "{PUBLIC_HEADER}\nkey-id: {key_id}\npublic: {}\n",
        STANDARD.encode(key.as_bytes())
    )
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let io = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::Exists {
                path: path.to_path_buf(),
            }
        } else {
            KeyError::Io {
                action: "cannot write key file",
                path: path.to_path_buf(),
                source,
                hint: "check the directory's permissions and free space",
            }
        }
    };
    let mut file = options.open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(())
}

/// Reads a key file of `kind` ("private" / "public") with a size limit.
fn read_small(path: &Path, kind: &'static str, what: &'static str) -> Result<String, KeyError> {
    let io = |source| KeyError::Io {
        action: what,
        path: path.to_path_buf(),
        source,
        hint: "check the path and its permissions",
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut raw = Vec::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut raw)
        .map_err(io)?;
    if raw.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(KeyError::Malformed {
            path: path.to_path_buf(),
            kind,
            reason: format!("it is larger than {MAX_KEY_FILE_BYTES} bytes"),
        });
    }
    String::from_utf8(raw).map_err(|_| KeyError::Malformed {
        path: path.to_path_buf(),
        kind,
        reason: "it is not UTF-8 text".to_string(),
    })
}

/// Parses `HEADER / key-id: / FIELD:` key file text into (key id, 32 bytes).
fn parse_key_text(text: &str, header: &str, field: &str) -> Result<(String, [u8; 32]), String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some(header) {
        return Err(format!("the first line must be \"{header}\""));
    }
    let key_id = lines
        .next()
        .and_then(|l| l.strip_prefix("key-id:"))
        .map(str::trim)
        .ok_or("the second line must be \"key-id: ...\"")?;
    let b64 = lines
        .next()
        .and_then(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
        .ok_or_else(|| format!("the third line must be \"{field}: ...\""))?;
    if lines.next().is_some() {
        return Err("unexpected text after the key".to_string());
    }
    let bytes = STANDARD
        .decode(b64)
        .map_err(|e| format!("the key is not valid base64 ({e})"))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("the key has {} bytes, expected 32", b.len()))?;
    validate_key_id(key_id).map_err(|e| e.to_string())?;
    Ok((key_id.to_string(), bytes))
}

/// Reads a private key file: its key id and signing key. Refuses files that
/// group or others can read (unix).
///
/// # Errors
///
/// [`KeyError::Io`], [`KeyError::Malformed`] or [`KeyError::InsecurePermissions`].
pub fn read_private_key(path: &Path) -> Result<(String, SigningKey), KeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| KeyError::Io {
            action: "cannot read private key file",
            path: path.to_path_buf(),
            source,
            hint: "give the file written by `xplugin-pack keygen` (KEYID.key)",
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::InsecurePermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    let text = read_small(path, "private", "cannot read private key file")?;
    let (key_id, bytes) =
        parse_key_text(&text, PRIVATE_HEADER, "secret").map_err(|reason| KeyError::Malformed {
            path: path.to_path_buf(),
            kind: "private",
            reason,
        })?;
    Ok((key_id, SigningKey::from_bytes(&bytes)))
}

/// Reads a public key file: its key id and verifying key. Refuses keys that
/// are not valid curve points or are of small order.
///
/// # Errors
///
/// [`KeyError::Io`] or [`KeyError::Malformed`].
pub fn read_public_key(path: &Path) -> Result<(String, VerifyingKey), KeyError> {
    let text = read_small(path, "public", "cannot read public key file")?;
    let malformed = |reason: String| KeyError::Malformed {
        path: path.to_path_buf(),
        kind: "public",
        reason,
    };
    let (key_id, bytes) = parse_key_text(&text, PUBLIC_HEADER, "public").map_err(malformed)?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| malformed("the key is not a valid Ed25519 public key".to_string()))?;
    if key.is_weak() {
        return Err(malformed("the key is a weak (small-order) key".to_string()));
    }
    Ok((key_id, key))
}

/// The public keys this device trusts, by key id.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    dir: Option<PathBuf>,
    keys: BTreeMap<String, (VerifyingKey, Option<PathBuf>)>,
}

impl TrustStore {
    /// An empty store (trusts nothing).
    pub fn new() -> Self {
        TrustStore::default()
    }

    /// Loads every `*.pub` file in `dir` (not recursive). Each file must be
    /// named after the key id it holds. Other files are ignored. All bad
    /// files are reported together.
    ///
    /// # Errors
    ///
    /// [`KeyError::Io`] if `dir` cannot be listed, [`KeyError::TrustStore`]
    /// listing every bad key file.
    pub fn load(dir: &Path) -> Result<TrustStore, KeyError> {
        let entries = std::fs::read_dir(dir).map_err(|source| KeyError::Io {
            action: "cannot read the trust-store directory",
            path: dir.to_path_buf(),
            source,
            hint: "create it and install the vendors' KEYID.pub files there, or configure the right trust-store directory",
        })?;
        let mut paths = Vec::new();
        let mut problems = Vec::new();
        for entry in entries {
            match entry {
                Ok(e) => {
                    let p = e.path();
                    if p.extension().is_some_and(|x| x == "pub") {
                        paths.push(p);
                    }
                }
                Err(source) => problems.push(KeyError::Io {
                    action: "cannot list the trust-store directory",
                    path: dir.to_path_buf(),
                    source,
                    hint: "check the directory's permissions",
                }),
            }
        }
        paths.sort();
        let mut store = TrustStore {
            dir: Some(dir.to_path_buf()),
            keys: BTreeMap::new(),
        };
        for path in paths {
            match read_public_key(&path) {
                Ok((key_id, key)) => {
                    if path.file_stem().and_then(|s| s.to_str()) != Some(key_id.as_str()) {
                        problems.push(KeyError::NameMismatch { path, key_id });
                    } else if let Err(e) = store.insert_from(&key_id, key, Some(path)) {
                        problems.push(e);
                    }
                }
                Err(e) => problems.push(e),
            }
        }
        if problems.is_empty() {
            Ok(store)
        } else {
            Err(KeyError::TrustStore {
                dir: dir.to_path_buf(),
                problems,
            })
        }
    }

    /// Adds a trusted key (for tools and tests; devices use [`TrustStore::load`]).
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidKeyId`] or [`KeyError::DuplicateKeyId`].
    pub fn insert(&mut self, key_id: &str, key: VerifyingKey) -> Result<(), KeyError> {
        self.insert_from(key_id, key, None)
    }

    fn insert_from(
        &mut self,
        key_id: &str,
        key: VerifyingKey,
        path: Option<PathBuf>,
    ) -> Result<(), KeyError> {
        validate_key_id(key_id)?;
        if let Some((_, first)) = self.keys.get(key_id) {
            return Err(KeyError::DuplicateKeyId {
                key_id: key_id.to_string(),
                first: first
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("(added in memory)")),
                second: path.unwrap_or_else(|| PathBuf::from("(added in memory)")),
            });
        }
        self.keys.insert(key_id.to_string(), (key, path));
        Ok(())
    }

    /// The trusted key with this id.
    pub fn get(&self, key_id: &str) -> Option<&VerifyingKey> {
        self.keys.get(key_id).map(|(k, _)| k)
    }

    /// The trusted key ids, sorted.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }

    /// The directory the store was loaded from, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// True when no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_files_round_trip_and_refuse_overwrite() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (key, id) = generate_keypair(Some("acme-1")).expect("keygen");
        let files = write_key_files(dir.path(), &id, &key).expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&files.private)
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (rid, rkey) = read_private_key(&files.private).expect("read private");
        assert_eq!(rid, "acme-1");
        assert_eq!(rkey.to_bytes(), key.to_bytes());
        let (pid, pkey) = read_public_key(&files.public).expect("read public");
        assert_eq!(pid, "acme-1");
        assert_eq!(pkey, key.verifying_key());
        assert!(matches!(
            write_key_files(dir.path(), &id, &key),
            Err(KeyError::Exists { .. })
        ));
        let store = TrustStore::load(dir.path()).expect("trust store");
        assert_eq!(store.key_ids(), vec!["acme-1".to_string()]);
    }

    #[test]
    fn trust_store_reports_every_bad_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (key, _) = generate_keypair(None).expect("keygen");
        std::fs::write(dir.path().join("garbage.pub"), "hello").expect("write");
        std::fs::write(
            dir.path().join("wrong-name.pub"),
            public_key_text("other", &key.verifying_key()),
        )
        .expect("write");
        std::fs::write(dir.path().join("README"), "not a key").expect("write");
        match TrustStore::load(dir.path()) {
            Err(KeyError::TrustStore { problems, .. }) => {
                assert_eq!(problems.len(), 2, "{problems:?}");
            }
            other => panic!("expected trust store problems, got {other:?}"),
        }
    }

    #[test]
    fn key_ids_are_checked() {
        for bad in ["", "../x", ".hidden", "a/b", "with space", &"x".repeat(65)] {
            assert!(validate_key_id(bad).is_err(), "{bad}");
        }
        assert!(validate_key_id("Acme_2026.v1-a").is_ok());
    }
}
