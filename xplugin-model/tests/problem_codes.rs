//! `docs/problems.md` documents every problem code in one table, and that
//! table is exactly [`ProblemCode::ALL`]: every code is documented, every
//! documented code exists, with the same severity, meaning and advice.
//!
//! After changing the code table in `xplugin-model/src/code.rs`, regenerate
//! the document's table with
//! `XPLUGIN_BLESS=1 cargo test -p xplugin-model --test problem_codes`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use xplugin_model::{ProblemCode, Severity};

const BEGIN: &str = "<!-- BEGIN problem codes (generated from xplugin-model/src/code.rs) -->";
const END: &str = "<!-- END problem codes -->";

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/problems.md")
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// The table as the code defines it.
fn rendered() -> String {
    let mut out = String::from("| code | severity | meaning | what to do |\n|---|---|---|---|\n");
    for code in ProblemCode::ALL {
        let severity = match code.severity() {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        out.push_str(&format!(
            "| `{}` | {severity} | {} | {} |\n",
            code.as_str(),
            cell(code.meaning()),
            cell(code.what_to_do())
        ));
    }
    out
}

/// The document split around its generated table.
fn sections(doc: &str) -> (&str, &str, &str) {
    let begin = doc
        .find(BEGIN)
        .expect("docs/problems.md has no BEGIN marker");
    let end = doc.find(END).expect("docs/problems.md has no END marker");
    let table_start = begin + BEGIN.len();
    (
        &doc[..table_start],
        doc[table_start..end].trim_matches('\n'),
        &doc[end..],
    )
}

/// The codes the document's table lists.
fn documented_codes(table: &str) -> BTreeSet<String> {
    table
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(code, _)| code.to_string())
        .collect()
}

#[test]
fn the_document_lists_exactly_the_codes_of_the_table() {
    let path = doc_path();
    let doc = std::fs::read_to_string(&path).expect("read docs/problems.md");
    let (head, table, tail) = sections(&doc);
    if std::env::var_os("XPLUGIN_BLESS").is_some() {
        std::fs::write(&path, format!("{head}\n{}{tail}", rendered())).expect("write");
        return;
    }
    let in_code: BTreeSet<String> = ProblemCode::ALL
        .iter()
        .map(|c| c.as_str().to_string())
        .collect();
    let in_doc = documented_codes(table);
    let undocumented: Vec<_> = in_code.difference(&in_doc).collect();
    let unknown: Vec<_> = in_doc.difference(&in_code).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "codes missing from docs/problems.md: {undocumented:?}; documented codes that do not exist: {unknown:?}"
    );
    assert_eq!(
        table.trim(),
        rendered().trim(),
        "docs/problems.md is out of date: regenerate it with XPLUGIN_BLESS=1 cargo test -p xplugin-model --test problem_codes"
    );
}
