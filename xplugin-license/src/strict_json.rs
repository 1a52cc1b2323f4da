//! Duplicate-key detection for JSON. `serde_json` silently keeps the last of
//! two equal keys, so `{"plugin":"a","plugin":"b"}` would mean different
//! things to different readers; a signed payload must mean one thing. This
//! walks the whole document once with a visitor that remembers the keys of
//! each object and reports the first repeated one with its path.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

/// Returns `Ok(None)` when no object in `bytes` repeats a key,
/// `Ok(Some(path))` naming the first repeated key (`files."a.so"` style),
/// or `Err` when `bytes` is not JSON at all.
///
/// # Errors
///
/// The `serde_json` error when the bytes are not one JSON value.
pub fn find_duplicate_key(bytes: &[u8]) -> Result<Option<String>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut found = None;
    let walk = Walk {
        path: String::new(),
        found: &mut found,
    };
    match walk.deserialize(&mut de) {
        Ok(()) => {
            de.end()?;
            Ok(found)
        }
        // The walk aborts with a custom error once a duplicate is found.
        Err(_) if found.is_some() => Ok(found),
        Err(e) => Err(e),
    }
}

/// Visits one JSON value at `path`.
struct Walk<'a> {
    path: String,
    found: &'a mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        loop {
            let child = Walk {
                path: format!("{}[{index}]", self.path),
                found: &mut *self.found,
            };
            if seq.next_element_seed(child)?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                format!("\"{key}\"")
            } else {
                format!("{}.\"{key}\"", self.path)
            };
            if !seen.insert(key) {
                *self.found = Some(path);
                return Err(de::Error::custom("duplicate key"));
            }
            map.next_value_seed(Walk {
                path,
                found: &mut *self.found,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_top_level_and_nested_duplicates() {
        assert_eq!(find_duplicate_key(br#"{"a":1,"b":2}"#).ok(), Some(None));
        assert_eq!(
            find_duplicate_key(br#"{"a":1,"a":2}"#).ok(),
            Some(Some("\"a\"".to_string()))
        );
        assert_eq!(
            find_duplicate_key(br#"{"files":{"x.so":"1","x.so":"2"}}"#).ok(),
            Some(Some("\"files\".\"x.so\"".to_string()))
        );
        assert_eq!(
            find_duplicate_key(br#"[{"k":1},{"k":1,"k":2}]"#).ok(),
            Some(Some("[1].\"k\"".to_string()))
        );
        // Escapes are decoded before comparing: "\u0061" is "a".
        assert!(matches!(
            find_duplicate_key(br#"{"a":1,"\u0061":2}"#),
            Ok(Some(_))
        ));
    }

    #[test]
    fn reports_non_json() {
        assert!(find_duplicate_key(b"{\"a\":").is_err());
        assert!(find_duplicate_key(b"{} trailing").is_err());
    }
}
