//! Property tests of versions, the JSONC reader and the manifest parser:
//! the version order against a simple model, and no panic (only problems)
//! on arbitrary bytes, since manifests come from untrusted packages.

use proptest::prelude::*;
use std::cmp::Ordering;
use xplugin_model::jsonc;
use xplugin_model::{parse_manifest, Side, Version, VersionReq};

fn version_text() -> impl Strategy<Value = (Vec<u64>, Option<Vec<String>>)> {
    (
        prop::collection::vec(0u64..12, 1..=4),
        prop::option::of(prop::collection::vec(
            prop_oneof!["[0-9]{1,2}", "(alpha|beta|rc|x-y)"],
            1..3,
        )),
    )
}

fn render(parts: &[u64], pre: &Option<Vec<String>>) -> String {
    let mut s = parts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(".");
    if let Some(ids) = pre {
        s.push('-');
        s.push_str(&ids.join("."));
    }
    s
}

/// The documented order, computed independently: parts padded with zeros,
/// then release above pre-release, then identifiers SemVer-style.
fn model_cmp(a: &(Vec<u64>, Option<Vec<String>>), b: &(Vec<u64>, Option<Vec<String>>)) -> Ordering {
    let pad = |p: &Vec<u64>| {
        let mut v = p.clone();
        v.resize(4, 0);
        v
    };
    pad(&a.0).cmp(&pad(&b.0)).then_with(|| match (&a.1, &b.1) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => {
            for (i, j) in x.iter().zip(y) {
                let o = match (i.parse::<u64>(), j.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    (Err(_), Err(_)) => i.cmp(j),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
    })
}

fn parse(s: &str) -> Version {
    Version::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn version_order_matches_the_model(a in version_text(), b in version_text()) {
        let (sa, sb) = (render(&a.0, &a.1), render(&b.0, &b.1));
        let (va, vb) = (parse(&sa), parse(&sb));
        prop_assert_eq!(va.cmp(&vb), model_cmp(&a, &b), "{} vs {}", sa, sb);
        prop_assert_eq!(va.to_string(), sa.clone());
        prop_assert_eq!(parse(&va.to_string()), va.clone());
        if va == vb {
            use std::hash::{BuildHasher, RandomState};
            let h = RandomState::new();
            prop_assert_eq!(h.hash_one(&va), h.hash_one(&vb));
        }
        // Interval and comparator spellings of the same range agree.
        let (lo, hi) = if va <= vb { (&sa, &sb) } else { (&sb, &sa) };
        let interval = VersionReq::parse(&format!("[{lo},{hi}]")).unwrap_or_else(|e| panic!("{e}"));
        let comparators = VersionReq::parse(&format!(">={lo}, <={hi}")).unwrap_or_else(|e| panic!("{e}"));
        for probe in [&va, &vb, &parse("0"), &parse("5.5"), &parse("11.11.11.11")] {
            prop_assert_eq!(interval.matches(probe), comparators.matches(probe));
        }
        prop_assert!(interval.matches(&va) && interval.matches(&vb));
    }

    #[test]
    fn version_parse_never_panics(s in "\\PC{0,24}") {
        let _ = Version::parse(&s);
        let _ = VersionReq::parse(&s);
    }

    #[test]
    fn comment_stripping_keeps_offsets_and_lines(s in "[{}\\[\\],:\"/*\\\\a1 \n]{0,80}") {
        if let Ok(stripped) = jsonc::strip_comments(s.as_bytes()) {
            prop_assert_eq!(stripped.text.len(), s.len());
            let newlines = |b: &[u8]| b.iter().enumerate().filter(|(_, c)| **c == b'\n').map(|(i, _)| i).collect::<Vec<_>>();
            prop_assert_eq!(newlines(&stripped.text), newlines(s.as_bytes()));
        }
    }

    #[test]
    fn manifest_parser_reports_instead_of_panicking(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        for side in [Side::Client, Side::Controller] {
            let out = parse_manifest(side, "p", &bytes);
            prop_assert_eq!(out.manifest.is_some(), !out.problems.has_errors());
        }
    }

    #[test]
    fn manifest_parser_on_json_like_text(s in "[{}\\[\\],:\"a-z_0-9. \n/*-]{0,160}") {
        let text = format!("{{\"client_plugin\": {{\"name\": \"p\", {s}");
        let out = parse_manifest(Side::Client, "p", text.as_bytes());
        prop_assert_eq!(out.manifest.is_some(), !out.problems.has_errors());
        for p in &out.problems.0 {
            prop_assert_eq!(p.subject.as_str(), "client plugin \"p\"");
            prop_assert!(!p.hint.is_empty());
        }
    }
}
