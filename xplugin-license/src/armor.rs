//! The text form of a `.lic` file:
//!
//! ```text
//! -----BEGIN XPLUGIN LICENSE-----
//! format: xplugin-license-v1
//! key-id: acme-2026
//! payload: <standard base64 of the exact payload JSON bytes>
//! signature: <standard base64 of the 64-byte Ed25519 signature>
//! -----END XPLUGIN LICENSE-----
//! ```
//!
//! Exactly these lines in this order; blank lines before and after, `\r\n`
//! line ends and trailing spaces are tolerated, nothing else is. The
//! signature covers [`LICENSE_DOMAIN`] followed by the decoded payload bytes,
//! so a signature made for another format or purpose can never verify here.
//! The `key-id` line is only a lookup hint: the payload repeats the key id
//! and the verifier refuses a mismatch after the signature checks out.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Domain separation prefix of the signed message: format name, version, NUL.
pub const LICENSE_DOMAIN: &[u8] = b"xplugin-license-v1\0";

/// Largest `.lic` file accepted, checked before any decoding.
pub const MAX_LICENSE_BYTES: usize = 64 * 1024;

/// Length of an Ed25519 signature in bytes.
pub const SIGNATURE_BYTES: usize = 64;

const BEGIN: &str = "-----BEGIN XPLUGIN LICENSE-----";
const END: &str = "-----END XPLUGIN LICENSE-----";
const FORMAT_LINE: &str = "xplugin-license-v1";

/// The decoded parts of a license text, nothing verified yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Armored {
    /// The `key-id` line (a hint for the trust store lookup).
    pub key_id: String,
    /// The exact payload bytes that were signed.
    pub payload: Vec<u8>,
    /// The signature bytes as found (length not checked here).
    pub signature: Vec<u8>,
}

/// The message an Ed25519 key signs for `payload`.
pub fn signed_message(payload: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(LICENSE_DOMAIN.len() + payload.len());
    msg.extend_from_slice(LICENSE_DOMAIN);
    msg.extend_from_slice(payload);
    msg
}

/// The text of a license file.
pub fn armor(key_id: &str, payload: &[u8], signature: &[u8]) -> String {
    format!(
        "{BEGIN}\nformat: {FORMAT_LINE}\nkey-id: {key_id}\npayload: {}\nsignature: {}\n{END}\n",
        STANDARD.encode(payload),
        STANDARD.encode(signature)
    )
}

/// Why a text is not a license's armor: which line is wrong and what was
/// expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", line.map(|n| format!("line {n}: ")).unwrap_or_default())]
pub struct ArmorError {
    /// The line (1-based, counting empty lines), if one is at fault.
    pub line: Option<usize>,
    /// What is wrong.
    pub reason: String,
}

fn at(line: usize, reason: String) -> ArmorError {
    ArmorError {
        line: Some(line),
        reason,
    }
}

/// Splits a license text into its parts.
///
/// # Errors
///
/// [`ArmorError`] saying which line is wrong and what was expected there.
pub fn dearmor(text: &str) -> Result<Armored, ArmorError> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .map(str::trim_end)
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| (i + 1, l))
        .collect();
    let exact = |index: usize, want: &str| -> Result<(), ArmorError> {
        match lines.get(index) {
            Some((_, l)) if *l == want => Ok(()),
            Some((n, l)) => Err(at(
                *n,
                format!("expected \"{want}\", found \"{}\"", shorten(l)),
            )),
            None => Err(ArmorError {
                line: None,
                reason: format!("the text ends before \"{want}\""),
            }),
        }
    };
    let field = |index: usize, name: &str| -> Result<(usize, String), ArmorError> {
        match lines.get(index) {
            Some((n, l)) => match l.strip_prefix(name).and_then(|r| r.strip_prefix(':')) {
                Some(v) => Ok((*n, v.trim().to_string())),
                None => Err(at(
                    *n,
                    format!("expected \"{name}: ...\", found \"{}\"", shorten(l)),
                )),
            },
            None => Err(ArmorError {
                line: None,
                reason: format!("the text ends before the \"{name}:\" line"),
            }),
        }
    };
    exact(0, BEGIN)?;
    let (n, format) = field(1, "format")?;
    if format != FORMAT_LINE {
        return Err(at(
            n,
            format!(
                "this program reads license format \"{FORMAT_LINE}\", the file says \"{}\"",
                shorten(&format)
            ),
        ));
    }
    let (n, key_id) = field(2, "key-id")?;
    if key_id.is_empty() {
        return Err(at(n, "the key id is empty".into()));
    }
    let (n, payload) = field(3, "payload")?;
    let payload = STANDARD
        .decode(payload.as_bytes())
        .map_err(|e| at(n, format!("the payload is not valid base64 ({e})")))?;
    let (n, signature) = field(4, "signature")?;
    let signature = STANDARD
        .decode(signature.as_bytes())
        .map_err(|e| at(n, format!("the signature is not valid base64 ({e})")))?;
    exact(5, END)?;
    if let Some((n, l)) = lines.get(6) {
        return Err(at(
            *n,
            format!(
                "unexpected text after the end of the license: \"{}\"",
                shorten(l)
            ),
        ));
    }
    Ok(Armored {
        key_id,
        payload,
        signature,
    })
}

/// At most 60 characters of `s`, for quoting in messages.
fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if out.len() < s.len() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_crlf() {
        let text = armor("k1", b"{\"a\":1}", &[7u8; 64]);
        let parts = dearmor(&text).ok();
        assert_eq!(
            parts,
            Some(Armored {
                key_id: "k1".into(),
                payload: b"{\"a\":1}".to_vec(),
                signature: vec![7u8; 64],
            })
        );
        let crlf = format!("\r\n{}\r\n", text.replace('\n', "\r\n"));
        assert_eq!(dearmor(&crlf).ok(), parts);
    }

    #[test]
    fn refuses_extra_missing_or_reordered_lines() {
        let text = armor("k1", b"{}", &[7u8; 64]);
        let extra = format!("{text}junk\n");
        assert!(dearmor(&extra).is_err_and(|e| e.to_string().contains("after the end")));
        let missing: String = text
            .lines()
            .filter(|l| !l.starts_with("signature"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(dearmor(&missing).is_err_and(|e| e.to_string().contains("signature")));
        let bad_b64 = text.replace("payload: ", "payload: !");
        assert!(dearmor(&bad_b64).is_err_and(|e| e.to_string().contains("base64")));
        let other_format = text.replace("xplugin-license-v1", "xplugin-license-v9");
        assert!(dearmor(&other_format).is_err_and(|e| e.to_string().contains("v9")));
    }
}
