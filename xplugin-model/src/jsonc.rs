//! JSON with comments, as the vendor's manifest examples are written.
//!
//! What is accepted beyond strict JSON, and why:
//!
//! * `// line` and `/* block */` comments outside strings: the vendor's own
//!   examples carry them. They are replaced byte for byte by spaces (newlines
//!   inside block comments are kept), so every byte offset, line and column
//!   reported by the JSON parser points at the original file.
//! * A trailing comma before `}` or `]` (`[1, 2,]`): hand-edited manifests
//!   grow them and blanking one byte costs nothing. Each one is reported (see
//!   [`Parsed::trailing_commas`]) because strict JSON readers, including
//!   possibly the vendor's own HMI, refuse them. A comma right after `[`,
//!   `{` or another comma is left in place for the parser to refuse.
//! * A UTF-8 byte order mark at the start (Windows editors write one).
//!
//! Duplicate object keys are detected (plain `serde_json` silently keeps the
//! last one) and returned as paths such as `client_plugin.name`, so the
//! caller can refuse them: which of two values wins differs between readers.

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::RefCell;
use std::fmt;

/// A place in the original text, 1-based like an editor shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Byte offset from the start of the text (0-based).
    pub offset: usize,
    /// Line number, starting at 1.
    pub line: usize,
    /// Column in bytes, starting at 1.
    pub column: usize,
}

impl Position {
    fn at(text: &[u8], offset: usize) -> Position {
        let before = text.get(..offset).unwrap_or(text);
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        Position {
            offset,
            line,
            column: offset - line_start + 1,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Why a text could not be read as JSON with comments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsoncError {
    /// The text starts with a UTF-16 byte order mark.
    #[error("the file is UTF-16 text; save it as UTF-8")]
    Utf16,
    /// The text is not valid UTF-8.
    #[error("the file is not UTF-8 text (invalid byte at {at}); save it as UTF-8")]
    NotUtf8 {
        /// Where the first invalid byte is.
        at: Position,
    },
    /// A `/*` comment is never closed.
    #[error("the /* comment starting at {at} is never closed with */")]
    UnterminatedComment {
        /// Where the comment starts.
        at: Position,
    },
    /// The JSON itself is malformed.
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Syntax {
        /// Line number (1-based) in the original text.
        line: usize,
        /// Column (1-based) in the original text.
        column: usize,
        /// The parser's description.
        message: String,
    },
}

/// A parsed JSONC document.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The document. For duplicate keys, the last value is kept.
    pub value: Value,
    /// Paths of keys that appear more than once in their object, e.g.
    /// `client_plugin.name` or `client_plugin.depend[1].name`, in document order.
    pub duplicate_keys: Vec<String>,
    /// Trailing commas that were accepted.
    pub trailing_commas: Vec<Position>,
}

/// Comment-free text with the same byte offsets as the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stripped {
    /// The text with comments (and accepted trailing commas) blanked.
    pub text: Vec<u8>,
    /// Trailing commas that were blanked.
    pub trailing_commas: Vec<Position>,
}

#[derive(Clone, Copy)]
enum State {
    Code,
    Str { escaped: bool },
    LineComment,
    BlockComment { start: usize },
}

/// Blanks comments and acceptable trailing commas, keeping offsets.
///
/// # Errors
///
/// [`JsoncError::UnterminatedComment`] if a `/*` is never closed.
pub fn strip_comments(input: &[u8]) -> Result<Stripped, JsoncError> {
    let mut out = input.to_vec();
    let mut trailing = Vec::new();
    let mut state = State::Code;
    // Last significant byte outside strings and comments (0 at the start),
    // and a comma that would be trailing if the next significant byte closes.
    let mut last_significant = 0u8;
    let mut pending_comma: Option<usize> = None;
    let mut i = 0;
    while i < out.len() {
        let b = out[i];
        match state {
            State::Str { escaped } => {
                state = match (escaped, b) {
                    (true, _) => State::Str { escaped: false },
                    (false, b'\\') => State::Str { escaped: true },
                    (false, b'"') => State::Code,
                    _ => State::Str { escaped: false },
                };
            }
            State::LineComment => {
                if b == b'\n' {
                    state = State::Code;
                } else {
                    out[i] = b' ';
                }
            }
            State::BlockComment { .. } => {
                if b == b'*' && out.get(i + 1) == Some(&b'/') {
                    out[i] = b' ';
                    out[i + 1] = b' ';
                    i += 1;
                    state = State::Code;
                } else if b != b'\n' && b != b'\r' {
                    out[i] = b' ';
                }
            }
            State::Code => match b {
                b'/' if out.get(i + 1) == Some(&b'/') => {
                    out[i] = b' ';
                    out[i + 1] = b' ';
                    i += 1;
                    state = State::LineComment;
                }
                b'/' if out.get(i + 1) == Some(&b'*') => {
                    out[i] = b' ';
                    out[i + 1] = b' ';
                    state = State::BlockComment { start: i };
                    i += 1;
                }
                b' ' | b'\t' | b'\n' | b'\r' => {}
                b',' => {
                    pending_comma = match last_significant {
                        0 | b'[' | b'{' | b',' | b':' => None,
                        _ => Some(i),
                    };
                    last_significant = b;
                }
                b'}' | b']' => {
                    if let Some(p) = pending_comma.take() {
                        out[p] = b' ';
                        trailing.push(Position::at(input, p));
                    }
                    last_significant = b;
                }
                b'"' => {
                    pending_comma = None;
                    last_significant = b;
                    state = State::Str { escaped: false };
                }
                _ => {
                    pending_comma = None;
                    last_significant = b;
                }
            },
        }
        i += 1;
    }
    if let State::BlockComment { start } = state {
        return Err(JsoncError::UnterminatedComment {
            at: Position::at(input, start),
        });
    }
    Ok(Stripped {
        text: out,
        trailing_commas: trailing,
    })
}

/// Parses JSON with comments, reporting duplicate keys and trailing commas.
///
/// # Errors
///
/// [`JsoncError`] for UTF-16 or non-UTF-8 text, an unclosed comment, or
/// malformed JSON; positions refer to the original text.
pub fn parse(input: &[u8]) -> Result<Parsed, JsoncError> {
    if input.starts_with(&[0xFF, 0xFE]) || input.starts_with(&[0xFE, 0xFF]) {
        return Err(JsoncError::Utf16);
    }
    if let Err(e) = std::str::from_utf8(input) {
        return Err(JsoncError::NotUtf8 {
            at: Position::at(input, e.valid_up_to()),
        });
    }
    let mut stripped = strip_comments(input)?;
    // A UTF-8 BOM is three bytes the JSON parser does not accept; blanking
    // them keeps offsets.
    if stripped.text.starts_with(&[0xEF, 0xBB, 0xBF]) {
        stripped.text[..3].copy_from_slice(b"   ");
    }
    let duplicates = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(&stripped.text);
    let syntax = |e: serde_json::Error| JsoncError::Syntax {
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    };
    let value = ValueSeed {
        path: &Step::Root,
        duplicates: &duplicates,
    }
    .deserialize(&mut de)
    .map_err(syntax)?;
    de.end().map_err(syntax)?;
    Ok(Parsed {
        value,
        duplicate_keys: duplicates.into_inner(),
        trailing_commas: stripped.trailing_commas,
    })
}

/// serde_json appends " at line L column C"; the caller prints its own.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(p) => message[..p].to_string(),
        None => message.to_string(),
    }
}

/// Where a value is in the document: its path is only spelled out
/// (`a.b[2].c`) for a duplicate key, so the parse of a document without
/// any formats no text.
enum Step<'a> {
    Root,
    Key(&'a Step<'a>, &'a str),
    Index(&'a Step<'a>, usize),
}

impl Step<'_> {
    /// `key`, `parent.key`, `parent[i]`; the root is empty.
    fn render(&self) -> String {
        match self {
            Step::Root => String::new(),
            Step::Key(Step::Root, key) => (*key).to_string(),
            Step::Key(parent, key) => format!("{}.{key}", parent.render()),
            Step::Index(parent, i) => format!("{}[{i}]", parent.render()),
        }
    }
}

/// Builds a [`Value`] like serde_json does, recording duplicate keys.
struct ValueSeed<'a> {
    path: &'a Step<'a>,
    duplicates: &'a RefCell<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON text cannot spell NaN or infinity, so this is always Some;
        // Null is a harmless fallback rather than a panic.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let path = Step::Index(self.path, items.len());
            let seed = ValueSeed {
                path: &path,
                duplicates: self.duplicates,
            };
            match seq.next_element_seed(seed)? {
                Some(v) => items.push(v),
                None => break,
            }
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(ValueSeed {
                path: &Step::Key(self.path, &key),
                duplicates: self.duplicates,
            })?;
            match object.entry(key) {
                serde_json::map::Entry::Occupied(mut o) => {
                    // The later value wins, as serde_json's own parse does.
                    let path = Step::Key(self.path, o.key()).render();
                    self.duplicates.borrow_mut().push(path);
                    o.insert(value);
                }
                serde_json::map::Entry::Vacant(v) => {
                    v.insert(value);
                }
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(text: &str) -> Parsed {
        parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn strips_line_and_block_comments_but_not_inside_strings() {
        let p = ok(r#"{ // c1
            "a": "x // not a comment", /* c2
            still c2 */ "b": "/* nor this */", "c": "\"//\""
        }"#);
        assert_eq!(
            p.value,
            json!({"a": "x // not a comment", "b": "/* nor this */", "c": "\"//\""})
        );
        assert!(p.duplicate_keys.is_empty());
    }

    #[test]
    fn offsets_and_lines_survive_stripping() {
        let input = "/* a\nb */ {\"x\": 1}";
        let s = strip_comments(input.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.text.len(), input.len());
        assert_eq!(s.text.iter().filter(|&&b| b == b'\n').count(), 1);
        // A syntax error after a multi-line comment is reported on its real line.
        match parse(b"{\n/* one\ntwo */\n\"a\": tru }") {
            Err(JsoncError::Syntax { line, .. }) => assert_eq!(line, 4),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn multibyte_text_in_comments_stays_valid() {
        let p = ok("{\"a\": 1 // 插件说明\n}");
        assert_eq!(p.value, json!({"a": 1}));
    }

    #[test]
    fn unterminated_block_comment_is_refused_with_its_line() {
        match parse(b"{\n\"a\": 1 /* open\n}") {
            Err(JsoncError::UnterminatedComment { at }) => {
                assert_eq!((at.line, at.column), (2, 8))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn trailing_commas_are_accepted_and_reported() {
        let p = ok("{\"a\": [1, 2, ],\n \"b\": {\"c\": 1,},}");
        assert_eq!(p.value, json!({"a": [1, 2], "b": {"c": 1}}));
        let lines: Vec<usize> = p.trailing_commas.iter().map(|p| p.line).collect();
        assert_eq!(lines, [1, 2, 2]);
        // A comma that does not follow a value is still an error.
        for bad in ["[,]", "{,}", "[1,,]", "{\"a\":,}"] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn duplicate_keys_are_reported_with_their_path() {
        let p = ok(r#"{"p": {"name": "a", "x": [{"k": 1, "k": 2}], "name": "b"}}"#);
        assert_eq!(p.duplicate_keys, ["p.x[0].k", "p.name"]);
        assert_eq!(p.value["p"]["name"], json!("b"));
        let p = ok(r#"[{"a": 1, "a": 2}, [{"b": [], "b": {"c": 1, "c": 2}}]]"#);
        assert_eq!(p.duplicate_keys, ["[0].a", "[1][0].b.c", "[1][0].b"]);
    }

    #[test]
    fn encodings() {
        assert_eq!(ok("\u{feff}{\"a\": true}").value, json!({"a": true}));
        assert_eq!(parse(&[0xFF, 0xFE, b'{', 0]), Err(JsoncError::Utf16));
        assert!(matches!(
            parse(b"{\"a\": \"\xC3\x28\"}"),
            Err(JsoncError::NotUtf8 { at }) if at.offset == 7
        ));
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        match parse(b"{\"a\": 1\n \"b\": 2}") {
            Err(e @ JsoncError::Syntax { line: 2, .. }) => {
                assert!(e.to_string().starts_with("invalid JSON at line 2"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(b"{} x").is_err());
        assert!(parse(b"").is_err());
        // Nesting beyond serde_json's recursion limit is refused, not a stack overflow.
        let deep = "[".repeat(100_000);
        assert!(parse(deep.as_bytes()).is_err());
    }
}
