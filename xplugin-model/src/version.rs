//! Plugin and host versions, and version ranges for dependencies.
//!
//! # Versions
//!
//! A version is 1 to 4 numeric parts separated by dots, optionally followed by
//! a pre-release suffix after a `-`:
//!
//! ```text
//! 3            3.0          3.0.1        1.0.2.6
//! 3.0.1-rc.1   1.0.2.6-beta 2.0-alpha.2
//! ```
//!
//! * Parts are compared numerically, left to right; missing parts count as 0,
//!   so `1.2`, `1.2.0` and `1.2.0.0` are the same version (they compare equal
//!   and hash equal), although each keeps its own text for display.
//! * A pre-release sorts before its release: `3.0.1-rc.1 < 3.0.1`.
//!   Pre-release identifiers (separated by `.`) compare like SemVer: numeric
//!   identifiers numerically, alphanumeric ones as ASCII text, numeric before
//!   alphanumeric, and a shorter list before a longer one it is a prefix of
//!   (`rc < rc.1 < rc.2 < rc.10 < rcx`).
//! * Anything else is refused with a [`VersionError`] that quotes the text:
//!   leading `v`, spaces, empty parts (`1..2`), more than 4 parts, build
//!   metadata (`+build`), parts above `u64::MAX`.
//!
//! # Version ranges ([`VersionReq`])
//!
//! Used by the object form of a dependency,
//! `{"name": "x", "version": ">=1.2, <2"}`. Two syntaxes are accepted:
//!
//! * **Comparators**, comma-separated, all of which must hold:
//!   `=V`, `>V`, `>=V`, `<V`, `<=V`, and a bare `V` meaning `=V`.
//!   Examples: `>=1.2, <2`, `=1.0.2.6`, `1.2` (same as `=1.2`, so it matches
//!   `1.2.0` but not `1.2.1`), `>3.0`. Spaces around operators and commas are
//!   allowed. `*` alone means any version.
//! * **Intervals** (OSGi / Maven style): `[1.2,2.0)` (1.2 inclusive to 2.0
//!   exclusive), `(1,2]`, `[1.2,)` (1.2 or newer), `(,2.0)` (below 2.0) and
//!   `[1.2]` (exactly 1.2). Note: unlike OSGi, a bare `1.2` means *exactly*
//!   1.2 here, not "1.2 or newer"; write `>=1.2` or `[1.2,)` for that.
//!
//! Ranges compare with the same total order as versions: a pre-release is
//! just a version below its release, so `>=3.0` does not match `3.0-rc.1`
//! and `<3.0` does. `~`, `^`, `!=` and `||` are not supported; the error
//! says what to write instead.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// Most numeric parts a version may have (vendor versions use up to 4).
pub const MAX_PARTS: usize = 4;

const VERSION_EXAMPLES: &str = "like 3.0.1, 1.0.2.6 or 3.0.1-rc.1";
const RANGE_EXAMPLES: &str = "like \">=1.2, <2\", \"=1.0.2.6\", \"1.2\" or \"[1.2,2.0)\"";

/// Why a version text was refused. Every variant quotes the text and says
/// what a valid version looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// The text is empty.
    #[error(
        "version is empty; expected 1 to 4 numeric parts separated by dots, {VERSION_EXAMPLES}"
    )]
    Empty,
    /// The text has spaces or other whitespace around it.
    #[error("version \"{text}\" has spaces around it; write it without them, {VERSION_EXAMPLES}")]
    Whitespace {
        /// The offending text.
        text: String,
    },
    /// More than [`MAX_PARTS`] numeric parts.
    #[error("version \"{text}\" has {count} numeric parts; expected 1 to 4, {VERSION_EXAMPLES}")]
    TooManyParts {
        /// The offending text.
        text: String,
        /// How many parts were found.
        count: usize,
    },
    /// A part is empty or not made of ASCII digits.
    #[error("version \"{text}\": part {position} (\"{part}\") is not a number; expected digits only, {VERSION_EXAMPLES}")]
    NotANumber {
        /// The offending text.
        text: String,
        /// The offending part.
        part: String,
        /// 1-based position of the part.
        position: usize,
    },
    /// A part does not fit in 64 bits.
    #[error("version \"{text}\": part \"{part}\" is too large (at most {max}); {VERSION_EXAMPLES}", max = u64::MAX)]
    PartTooLarge {
        /// The offending text.
        text: String,
        /// The offending part.
        part: String,
    },
    /// The pre-release suffix after `-` is empty or has characters other
    /// than ASCII letters, digits and `-`, or an empty identifier.
    #[error("version \"{text}\": pre-release suffix \"{suffix}\" is invalid; expected dot-separated letters, digits or '-' after the '-', {VERSION_EXAMPLES}")]
    BadPreRelease {
        /// The offending text.
        text: String,
        /// The suffix after the first `-`.
        suffix: String,
    },
    /// SemVer build metadata (`+...`) is not part of this version scheme.
    #[error("version \"{text}\" has build metadata \"+{metadata}\", which plugin versions do not support; remove it, {VERSION_EXAMPLES}")]
    BuildMetadata {
        /// The offending text.
        text: String,
        /// The text after `+`.
        metadata: String,
    },
}

/// One pre-release identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum PreIdent {
    Numeric(u64),
    Alpha(String),
}

impl Ord for PreIdent {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PreIdent::Numeric(a), PreIdent::Numeric(b)) => a.cmp(b),
            (PreIdent::Numeric(_), PreIdent::Alpha(_)) => Ordering::Less,
            (PreIdent::Alpha(_), PreIdent::Numeric(_)) => Ordering::Greater,
            (PreIdent::Alpha(a), PreIdent::Alpha(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for PreIdent {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A plugin or host version: 1 to 4 numeric parts and an optional
/// pre-release suffix. See the [module documentation](self) for the syntax
/// and the order. Equality and hashing follow the order (`1.2 == 1.2.0`);
/// [`Display`](fmt::Display) prints the original text.
#[derive(Debug, Clone)]
pub struct Version {
    /// Numeric parts, missing ones filled with 0.
    parts: [u64; MAX_PARTS],
    /// How many parts the text had (1..=4).
    len: u8,
    /// Pre-release identifiers; empty means a release.
    pre: Vec<PreIdent>,
    /// The text as written.
    text: String,
}

impl Version {
    /// Parses a version.
    ///
    /// # Errors
    ///
    /// [`VersionError`] when the text is not 1 to 4 dot-separated numbers
    /// with an optional `-pre.release` suffix.
    pub fn parse(text: &str) -> Result<Version, VersionError> {
        if text.is_empty() {
            return Err(VersionError::Empty);
        }
        if text.trim() != text {
            return Err(VersionError::Whitespace { text: text.into() });
        }
        if let Some((_, metadata)) = text.split_once('+') {
            return Err(VersionError::BuildMetadata {
                text: text.into(),
                metadata: metadata.into(),
            });
        }
        let (numbers, suffix) = match text.split_once('-') {
            Some((n, s)) => (n, Some(s)),
            None => (text, None),
        };
        let count = numbers.split('.').count();
        if count > MAX_PARTS {
            return Err(VersionError::TooManyParts {
                text: text.into(),
                count,
            });
        }
        let mut parts = [0u64; MAX_PARTS];
        for (i, (slot, part)) in parts.iter_mut().zip(numbers.split('.')).enumerate() {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(VersionError::NotANumber {
                    text: text.into(),
                    part: part.into(),
                    position: i + 1,
                });
            }
            *slot = part.parse().map_err(|_| VersionError::PartTooLarge {
                text: text.into(),
                part: part.into(),
            })?;
        }
        let pre = match suffix {
            None => Vec::new(),
            Some(s) => parse_pre(s).ok_or_else(|| VersionError::BadPreRelease {
                text: text.into(),
                suffix: s.into(),
            })?,
        };
        Ok(Version {
            parts,
            // count is 1..=MAX_PARTS here, so it fits in a u8.
            len: count as u8,
            pre,
            text: text.into(),
        })
    }

    /// Version `0`, the lowest release.
    pub(crate) fn zero() -> Version {
        Version {
            parts: [0; MAX_PARTS],
            len: 1,
            pre: Vec::new(),
            text: "0".into(),
        }
    }

    /// The numeric parts as written (1 to 4 of them).
    pub fn parts(&self) -> &[u64] {
        &self.parts[..usize::from(self.len)]
    }

    /// The pre-release suffix without its `-`, if any.
    pub fn pre_release(&self) -> Option<&str> {
        self.text.split_once('-').map(|(_, s)| s)
    }

    /// True if the version has a pre-release suffix.
    pub fn is_pre_release(&self) -> bool {
        !self.pre.is_empty()
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Parses dot-separated pre-release identifiers; `None` if any is invalid.
fn parse_pre(s: &str) -> Option<Vec<PreIdent>> {
    let mut out = Vec::new();
    for ident in s.split('.') {
        if ident.is_empty()
            || !ident
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return None;
        }
        if ident.bytes().all(|b| b.is_ascii_digit()) {
            out.push(PreIdent::Numeric(ident.parse().ok()?));
        } else {
            out.push(PreIdent::Alpha(ident.into()));
        }
    }
    Some(out)
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parts.cmp(&other.parts).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                // A release sorts after any of its pre-releases.
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            }
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl Hash for Version {
    // Hashes exactly what `cmp` compares, so 1.2 and 1.2.0 hash alike.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts.hash(state);
        self.pre.hash(state);
    }
}

impl FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Version::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Why a version range text was refused. Every variant quotes the text and
/// says what a valid range looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionReqError {
    /// The text is empty or only spaces.
    #[error("version range is empty; write one {RANGE_EXAMPLES}")]
    Empty,
    /// A comparator between commas is empty (`>=1.2,` or `,<2`).
    #[error("version range \"{text}\" has an empty comparator between commas; write one {RANGE_EXAMPLES}")]
    EmptyComparator {
        /// The offending range text.
        text: String,
    },
    /// An operator this syntax does not have (`~`, `^`, `!=`, `||`, ...).
    #[error("version range \"{text}\": operator \"{operator}\" is not supported; use =, >, >=, <, <= or an interval, {RANGE_EXAMPLES}")]
    UnsupportedOperator {
        /// The offending range text.
        text: String,
        /// The operator found.
        operator: String,
    },
    /// A version inside the range is invalid.
    #[error("version range \"{text}\": {source}; write a range {RANGE_EXAMPLES}")]
    BadVersion {
        /// The offending range text.
        text: String,
        /// What is wrong with the version.
        source: VersionError,
    },
    /// An interval is malformed (brackets, comma count, empty bound).
    #[error("version range \"{text}\": {why}; write an interval {RANGE_EXAMPLES}")]
    BadInterval {
        /// The offending range text.
        text: String,
        /// What is malformed.
        why: String,
    },
    /// An interval whose lower bound is above its upper bound matches nothing.
    #[error("version range \"{text}\" matches no version: the lower bound is above the upper bound; write one {RANGE_EXAMPLES}")]
    EmptyInterval {
        /// The offending range text.
        text: String,
    },
}

/// A comparison operator of a [`Comparator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `=V` or a bare `V`: equal (with missing parts as 0).
    Exact,
    /// `>V`
    Greater,
    /// `>=V`
    GreaterEq,
    /// `<V`
    Less,
    /// `<=V`
    LessEq,
}

/// One condition of a [`VersionReq`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Comparator {
    /// The operator.
    pub op: Op,
    /// The version compared against.
    pub version: Version,
}

impl Comparator {
    /// True if `v` satisfies this condition.
    pub fn matches(&self, v: &Version) -> bool {
        match self.op {
            Op::Exact => v == &self.version,
            Op::Greater => v > &self.version,
            Op::GreaterEq => v >= &self.version,
            Op::Less => v < &self.version,
            Op::LessEq => v <= &self.version,
        }
    }
}

/// A version range: every comparator must hold. See the
/// [module documentation](self) for the syntax. Displays and serializes as
/// the text it was parsed from (trimmed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VersionReq {
    comparators: Vec<Comparator>,
    text: String,
}

impl VersionReq {
    /// The range that matches every version (`*`).
    pub fn any() -> VersionReq {
        VersionReq {
            comparators: Vec::new(),
            text: "*".into(),
        }
    }

    /// Parses a range.
    ///
    /// # Errors
    ///
    /// [`VersionReqError`] naming the text and what is wrong with it.
    pub fn parse(text: &str) -> Result<VersionReq, VersionReqError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(VersionReqError::Empty);
        }
        let comparators = if trimmed == "*" {
            Vec::new()
        } else if trimmed.starts_with('[') || trimmed.starts_with('(') {
            parse_interval(trimmed)?
        } else {
            parse_comparators(trimmed)?
        };
        Ok(VersionReq {
            comparators,
            text: trimmed.into(),
        })
    }

    /// True if `v` satisfies every comparator.
    pub fn matches(&self, v: &Version) -> bool {
        self.comparators.iter().all(|c| c.matches(v))
    }

    /// The comparators, all of which must hold (empty for `*`).
    pub fn comparators(&self) -> &[Comparator] {
        &self.comparators
    }

    /// The range text as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn bad_version(text: &str, source: VersionError) -> VersionReqError {
    VersionReqError::BadVersion {
        text: text.into(),
        source,
    }
}

fn parse_comparators(text: &str) -> Result<Vec<Comparator>, VersionReqError> {
    if text.contains("||") {
        return Err(VersionReqError::UnsupportedOperator {
            text: text.into(),
            operator: "||".into(),
        });
    }
    let mut out = Vec::new();
    for raw in text.split(',') {
        let item = raw.trim();
        if item.is_empty() {
            return Err(VersionReqError::EmptyComparator { text: text.into() });
        }
        let (op, rest) = if let Some(r) = item.strip_prefix(">=") {
            (Op::GreaterEq, r)
        } else if let Some(r) = item.strip_prefix("<=") {
            (Op::LessEq, r)
        } else if let Some(r) = item.strip_prefix('>') {
            (Op::Greater, r)
        } else if let Some(r) = item.strip_prefix('<') {
            (Op::Less, r)
        } else if item.starts_with("==") || item.starts_with("!=") {
            return Err(VersionReqError::UnsupportedOperator {
                text: text.into(),
                operator: item[..2].into(),
            });
        } else if let Some(r) = item.strip_prefix('=') {
            (Op::Exact, r)
        } else {
            match item.chars().next() {
                Some(c) if c.is_ascii_digit() => (Op::Exact, item),
                Some(c) if "~^!*xX".contains(c) => {
                    return Err(VersionReqError::UnsupportedOperator {
                        text: text.into(),
                        operator: c.to_string(),
                    })
                }
                _ => (Op::Exact, item),
            }
        };
        let version = Version::parse(rest.trim()).map_err(|e| bad_version(text, e))?;
        out.push(Comparator { op, version });
    }
    Ok(out)
}

fn parse_interval(text: &str) -> Result<Vec<Comparator>, VersionReqError> {
    let bad = |why: &str| VersionReqError::BadInterval {
        text: text.into(),
        why: why.into(),
    };
    let lower_inclusive = text.starts_with('[');
    let upper_inclusive = if text.ends_with(']') {
        true
    } else if text.ends_with(')') {
        false
    } else {
        return Err(bad("an interval must end with ']' or ')'"));
    };
    // Both ends are single ASCII bytes, so slicing off one byte on each side
    // is on char boundaries; `get` keeps that panic-free regardless.
    let inner = text
        .get(1..text.len().saturating_sub(1))
        .ok_or_else(|| bad("the interval is too short"))?;
    let pieces: Vec<&str> = inner.split(',').map(str::trim).collect();
    let parse = |s: &str| Version::parse(s).map_err(|e| bad_version(text, e));
    match pieces.as_slice() {
        [single] => {
            if !(lower_inclusive && upper_inclusive) {
                return Err(bad("a single-version interval must be written [V]"));
            }
            if single.is_empty() {
                return Err(bad("the interval has no version"));
            }
            Ok(vec![Comparator {
                op: Op::Exact,
                version: parse(single)?,
            }])
        }
        [lo, hi] => {
            let mut out = Vec::new();
            if lo.is_empty() {
                if lower_inclusive {
                    return Err(bad(
                        "an open lower end must be written with '(', as in (,2.0)",
                    ));
                }
            } else {
                out.push(Comparator {
                    op: if lower_inclusive {
                        Op::GreaterEq
                    } else {
                        Op::Greater
                    },
                    version: parse(lo)?,
                });
            }
            if hi.is_empty() {
                if upper_inclusive {
                    return Err(bad(
                        "an open upper end must be written with ')', as in [1.2,)",
                    ));
                }
            } else {
                out.push(Comparator {
                    op: if upper_inclusive {
                        Op::LessEq
                    } else {
                        Op::Less
                    },
                    version: parse(hi)?,
                });
            }
            if lo.is_empty() && hi.is_empty() {
                return Err(bad("the interval has neither a lower nor an upper bound"));
            }
            if let [a, b] = out.as_slice() {
                let empty = match a.version.cmp(&b.version) {
                    Ordering::Greater => true,
                    Ordering::Equal => !(lower_inclusive && upper_inclusive),
                    Ordering::Less => false,
                };
                if empty {
                    return Err(VersionReqError::EmptyInterval { text: text.into() });
                }
            }
            Ok(out)
        }
        _ => Err(bad("an interval has exactly one comma")),
    }
}

impl FromStr for VersionReq {
    type Err = VersionReqError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VersionReq::parse(s)
    }
}

impl fmt::Display for VersionReq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for VersionReq {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for VersionReq {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        VersionReq::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        match Version::parse(s) {
            Ok(v) => v,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn req(s: &str) -> VersionReq {
        match VersionReq::parse(s) {
            Ok(r) => r,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn parses_one_to_four_parts() {
        assert_eq!(v("3").parts(), &[3]);
        assert_eq!(v("3.0").parts(), &[3, 0]);
        assert_eq!(v("3.0.1").parts(), &[3, 0, 1]);
        assert_eq!(v("1.0.2.6").parts(), &[1, 0, 2, 6]);
        assert_eq!(v("1.0.2.6").to_string(), "1.0.2.6");
    }

    #[test]
    fn missing_parts_are_zero_but_text_is_kept() {
        assert_eq!(v("1.2"), v("1.2.0"));
        assert_eq!(v("1.2"), v("1.2.0.0"));
        assert_eq!(v("1.2").to_string(), "1.2");
        assert_eq!(v("1.2.0").to_string(), "1.2.0");
        use std::collections::HashSet;
        let set: HashSet<Version> = [v("1.2"), v("1.2.0"), v("1.2.0.0")].into_iter().collect();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn four_part_vendor_versions_order_numerically() {
        assert!(v("1.0.2.6") < v("1.0.2.10"));
        assert!(v("1.0.2.6") > v("1.0.2"));
        assert!(v("1.0.10") > v("1.0.9.9"));
        assert!(v("2") > v("1.99.99.99"));
    }

    #[test]
    fn pre_release_sorts_before_release() {
        assert!(v("3.0.1-rc.1") < v("3.0.1"));
        assert!(v("3.0.1-rc.1") > v("3.0.0"));
        assert!(v("3.0.1-alpha") < v("3.0.1-beta"));
        assert!(v("3.0.1-rc") < v("3.0.1-rc.1"));
        assert!(v("3.0.1-rc.2") < v("3.0.1-rc.10"));
        assert!(v("3.0.1-1") < v("3.0.1-rc"));
        assert_eq!(v("3.0-rc.1"), v("3.0.0-rc.1"));
        assert!(v("1.0.2.6-rc.1").is_pre_release());
        assert_eq!(v("1.0.2.6-rc.1").pre_release(), Some("rc.1"));
        assert_eq!(v("1.0.2.6").pre_release(), None);
    }

    #[test]
    fn sorting_is_total_and_stable_for_a_mixed_list() {
        let mut list: Vec<Version> = ["3.0.1", "1.0.2.6", "3.0.1-rc.1", "3", "0.9", "3.0.0.1"]
            .iter()
            .map(|s| v(s))
            .collect();
        list.sort();
        let texts: Vec<String> = list.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            ["0.9", "1.0.2.6", "3", "3.0.0.1", "3.0.1-rc.1", "3.0.1"]
        );
    }

    #[test]
    fn bad_versions_are_refused_with_the_text() {
        assert_eq!(Version::parse(""), Err(VersionError::Empty));
        let cases = [
            "v1.2",
            "1..2",
            "1.2.",
            ".1",
            "1.2.3.4.5",
            "1.a",
            " 1.2",
            "1.2 ",
            "1.2-",
            "1.2-rc..1",
            "1.2-rc_1",
            "1.2+build",
            "-1",
            "1,2",
            "99999999999999999999",
        ];
        for case in cases {
            let err = match Version::parse(case) {
                Ok(ok) => panic!("{case:?} accepted as {ok:?}"),
                Err(e) => e,
            };
            let msg = err.to_string();
            assert!(msg.contains("like 3.0.1"), "{case:?}: {msg}");
            assert!(msg.contains(case.trim()), "{case:?}: {msg}");
        }
        assert!(matches!(
            Version::parse("1.2.3.4.5"),
            Err(VersionError::TooManyParts { count: 5, .. })
        ));
        assert!(matches!(
            Version::parse("1.2+b"),
            Err(VersionError::BuildMetadata { .. })
        ));
    }

    #[test]
    fn serializes_as_the_original_string() {
        let json = serde_json::to_string(&v("1.0.2.6-rc.1")).unwrap_or_default();
        assert_eq!(json, "\"1.0.2.6-rc.1\"");
        let back: Version = serde_json::from_str("\"1.2\"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, v("1.2.0"));
        assert!(serde_json::from_str::<Version>("\"x\"").is_err());
    }

    #[test]
    fn comparator_ranges() {
        let r = req(">=1.2, <2");
        assert!(r.matches(&v("1.2")));
        assert!(r.matches(&v("1.2.0.0")));
        assert!(r.matches(&v("1.99")));
        assert!(!r.matches(&v("2.0")));
        assert!(!r.matches(&v("1.1.9")));
        assert!(r.matches(&v("2.0-rc.1")), "a pre-release of 2 is below 2");
        assert!(!r.matches(&v("1.2-rc.1")));

        assert!(req("=1.0.2.6").matches(&v("1.0.2.6")));
        assert!(!req("=1.0.2.6").matches(&v("1.0.2.7")));
        assert!(req("1.2").matches(&v("1.2.0")));
        assert!(!req("1.2").matches(&v("1.2.1")));
        assert!(req(">3.0").matches(&v("3.0.1")));
        assert!(!req(">3.0").matches(&v("3.0")));
        assert!(req("<=3.0").matches(&v("3.0.0")));
        assert!(req("  >= 1.2 ,< 2 ").matches(&v("1.5")));
        assert!(req("*").matches(&v("0.0.1-a")));
        assert_eq!(req("  >= 1.2 ,< 2 ").to_string(), ">= 1.2 ,< 2");
    }

    #[test]
    fn interval_ranges() {
        let r = req("[1.2,2.0)");
        assert!(r.matches(&v("1.2")));
        assert!(!r.matches(&v("2.0")));
        let r = req("(1,2]");
        assert!(!r.matches(&v("1")));
        assert!(r.matches(&v("1.0.0.1")));
        assert!(r.matches(&v("2")));
        assert!(!r.matches(&v("2.0.0.1")));
        let r = req("[1.2,)");
        assert!(r.matches(&v("99")));
        assert!(!r.matches(&v("1.1")));
        let r = req("(,2.0)");
        assert!(r.matches(&v("0.1")));
        assert!(!r.matches(&v("2")));
        assert!(req("[1.2]").matches(&v("1.2.0")));
        assert!(req("[1.2,1.2]").matches(&v("1.2")));
        assert_eq!(req("[1.2, 2.0)").comparators().len(), 2);
    }

    #[test]
    fn bad_ranges_are_refused_with_the_text_and_an_example() {
        for case in [
            "",
            "  ",
            ">=1.2,",
            ",<2",
            "~1.2",
            "^1.2",
            "!=1.2",
            "==1.2",
            "1.2 || 2",
            ">=x",
            "[1.2,2.0",
            "[1.2,2.0,3)",
            "[,2)",
            "[1.2,]",
            "(,)",
            "[2,1)",
            "[1,1)",
            "(1.2)",
            "[]",
            ">=1.2 <2",
        ] {
            let err = match VersionReq::parse(case) {
                Ok(ok) => panic!("{case:?} accepted as {ok:?}"),
                Err(e) => e,
            };
            let msg = err.to_string();
            assert!(msg.contains("like \">=1.2, <2\""), "{case:?}: {msg}");
            assert!(msg.contains(case.trim()), "{case:?}: {msg}");
        }
        assert!(matches!(
            VersionReq::parse("[2,1)"),
            Err(VersionReqError::EmptyInterval { .. })
        ));
        assert!(matches!(
            VersionReq::parse("~1"),
            Err(VersionReqError::UnsupportedOperator { .. })
        ));
    }

    #[test]
    fn range_serializes_as_its_text() {
        let json = serde_json::to_string(&req("[1.2,2.0)")).unwrap_or_default();
        assert_eq!(json, "\"[1.2,2.0)\"");
    }
}
