//! `xplugin-pack keygen --out DIR [--key-id ID]`.

use crate::error::PackError;
use std::path::Path;
use xplugin_license::{generate_keypair, write_key_files, DEFAULT_TRUST_DIR};

/// Generates and writes a key pair, and says where each file goes.
///
/// # Errors
///
/// [`PackError::Key`] for an unusable key id, an existing file or a write
/// failure.
pub fn run(out: &Path, key_id: Option<&str>, json: bool) -> Result<(), PackError> {
    let (key, id) = generate_keypair(key_id)?;
    let files = write_key_files(out, &id, &key)?;
    if json {
        let doc = serde_json::json!({
            "key_id": id,
            "private_key": files.private,
            "public_key": files.public,
        });
        println!("{doc:#}");
    } else {
        println!("key id:      {id}");
        println!(
            "private key: {} (mode 0600; keep it secret, it signs licenses)",
            files.private.display()
        );
        println!(
            "public key:  {} (install it on devices in {DEFAULT_TRUST_DIR}/)",
            files.public.display()
        );
    }
    Ok(())
}
