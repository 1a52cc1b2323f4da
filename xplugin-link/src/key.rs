//! A host's link public key as people and files write it: 64 lower-case
//! hex digits (the 32 bytes of an X25519 public key), and its fingerprint,
//! four groups of four hex digits of its SHA-256, short enough to read out
//! over the phone when pairing.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;

/// Length of a public key in bytes.
pub const KEY_LEN: usize = 32;

/// A link public key (X25519, the Noise static key of a host).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; KEY_LEN]);

/// Why a text is not a public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{shown}\" is not a link public key: {why}")]
pub struct KeyParseError {
    /// The text, shortened for messages.
    pub shown: String,
    /// What is wrong with it.
    pub why: String,
}

impl PublicKey {
    /// From raw bytes (exactly [`KEY_LEN`]).
    pub fn from_slice(bytes: &[u8]) -> Option<PublicKey> {
        <[u8; KEY_LEN]>::try_from(bytes).ok().map(PublicKey)
    }

    /// Parses 64 hex digits (either case, surrounding white space ignored).
    ///
    /// # Errors
    /// [`KeyParseError`] saying what is wrong (length, a non-hex character).
    pub fn parse(text: &str) -> Result<PublicKey, KeyParseError> {
        let t = text.trim();
        let shown: String = t.chars().take(80).collect();
        let err = |why: String| KeyParseError {
            shown: shown.clone(),
            why,
        };
        if t.len() != KEY_LEN * 2 {
            return Err(err(format!(
                "expected {} hex digits, found {} characters",
                KEY_LEN * 2,
                t.chars().count()
            )));
        }
        let mut out = [0u8; KEY_LEN];
        for (i, pair) in t.as_bytes().chunks(2).enumerate() {
            let hi = hex_value(pair[0]);
            let lo = hex_value(pair[1]);
            match (hi, lo) {
                (Some(h), Some(l)) => out[i] = (h << 4) | l,
                _ => {
                    return Err(err(format!(
                        "character {} is not a hex digit",
                        i * 2 + 1 + usize::from(hi.is_some())
                    )))
                }
            }
        }
        Ok(PublicKey(out))
    }

    /// `3f2a-91bc-07de-55aa`: the first 8 bytes of the key's SHA-256.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0);
        digest[..8]
            .chunks(2)
            .map(|c| format!("{:02x}{:02x}", c[0], c[1]))
            .collect::<Vec<_>>()
            .join("-")
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of lower-case or upper-case hex text, if it is hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let t = text.as_bytes();
    if !t.len().is_multiple_of(2) {
        return None;
    }
    t.chunks(2)
        .map(|p| Some((hex_value(p[0])? << 4) | hex_value(p[1])?))
        .collect()
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        PublicKey::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_bad_text_is_explained() {
        let k = PublicKey([0xab; KEY_LEN]);
        let text = k.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(PublicKey::parse(&text.to_uppercase()).unwrap(), k);
        let fp = k.fingerprint();
        assert_eq!(fp.len(), 19, "{fp}");
        let e = PublicKey::parse("abc").unwrap_err();
        assert!(e.why.contains("64 hex digits"), "{e}");
        let mut bad = text.clone();
        bad.replace_range(10..11, "z");
        let e = PublicKey::parse(&bad).unwrap_err();
        assert!(e.why.contains("character 11"), "{e}");
        assert_eq!(unhex("0aff"), Some(vec![0x0a, 0xff]));
        assert_eq!(unhex("0g"), None);
    }
}
