//! Problems in the `--json` documents of the programs, looked up by code:
//! tests assert on which problem was found by its stable code, and on the
//! wording only where it matters to a user.

/// The problems of `doc` (its top-level `problems` list) with code `code`.
pub fn problems_with<'a>(doc: &'a serde_json::Value, code: &str) -> Vec<&'a serde_json::Value> {
    doc["problems"]
        .as_array()
        .map(|a| a.iter().filter(|p| p["code"] == code).collect())
        .unwrap_or_default()
}

/// Asserts that `r` (an import with `--json`) was refused with exactly one
/// `license.file_hash_mismatch`, and that it names `file`.
pub fn assert_one_hash_mismatch(r: &crate::scenario::Run, file: &str) {
    assert_ne!(r.code, 0, "{}", r.all());
    let report = r.json();
    let swapped = problems_with(&report, "license.file_hash_mismatch");
    assert_eq!(swapped.len(), 1, "{}", r.all());
    assert!(
        swapped[0]["message"].as_str().unwrap_or("").contains(file),
        "{}",
        r.all()
    );
}

/// The codes of the problems in a program's `--json` output, in order.
pub fn codes(r: &crate::scenario::Run) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_default();
    v["problems"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["code"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
