//! A problem found in a package or an installation, phrased for a support
//! engineer: what (subject and field), what was expected and found, and what
//! to do. Every checker collects all of its problems instead of stopping at
//! the first, so one import attempt shows everything wrong with a package.

use crate::code::ProblemCode;
use serde::Serialize;
use std::fmt;

/// How bad a problem is. Decided by the problem's [`ProblemCode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Refuses the package (or the plugin, where the checker says so).
    Error,
    /// Reported, nothing refused (unknown manifest fields, ignored litter).
    Warning,
}

/// One problem: a stable [`ProblemCode`] saying which problem it is, the
/// `subject` it is about (the plugin, `client plugin "plugindemo"`, or the
/// archive entry, `plugindemo.zip: controller.zip: plugindemo/plugindemo.so`),
/// the field concerned, what is wrong (what was expected and found) and what
/// to do.
///
/// The only way to make one is [`Problem::new`] (or [`Problem::from_error`]),
/// which takes the code first: a problem without a code cannot be written,
/// and its severity is always the code's.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// Which problem this is; decides the severity.
    pub code: ProblemCode,
    /// The plugin or archive entry concerned.
    pub subject: String,
    /// The manifest field or license field concerned, if any.
    pub field: Option<String>,
    /// What is wrong: what was expected and what was found.
    pub message: String,
    /// What to do about it (may be empty when the message says it all).
    pub hint: String,
}

impl Problem {
    /// A problem `code` about `subject`.
    pub fn new(
        code: ProblemCode,
        subject: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Problem {
            code,
            subject: subject.into(),
            field: None,
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// A problem `code` about `subject` whose message is `error` with its
    /// chain of causes ([`error_chain`]).
    pub fn from_error(
        code: ProblemCode,
        subject: impl Into<String>,
        error: &(dyn std::error::Error + '_),
        hint: impl Into<String>,
    ) -> Self {
        Problem::new(code, subject, error_chain(error), hint)
    }

    /// The same problem, naming the field concerned.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Error or warning, as the code says.
    pub fn severity(&self) -> Severity {
        self.code.severity()
    }

    /// True for [`Severity::Error`].
    pub fn is_error(&self) -> bool {
        self.severity() == Severity::Error
    }
}

/// The JSON form every `--json` document uses:
/// `{"code", "severity", "subject", "field", "message", "hint"}` (`field` is
/// `null` when no field is concerned).
impl Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Problem", 6)?;
        st.serialize_field("code", &self.code)?;
        st.serialize_field("severity", &self.severity())?;
        st.serialize_field("subject", &self.subject)?;
        st.serialize_field("field", &self.field)?;
        st.serialize_field("message", &self.message)?;
        st.serialize_field("hint", &self.hint)?;
        st.end()
    }
}

/// `error: SUBJECT, field "F": MESSAGE`, then `  what to do: HINT` on its own
/// line: the one convention every program prints problems and errors in.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity() {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: {}", self.subject)?;
        if let Some(field) = &self.field {
            write!(f, ", field \"{field}\"")?;
        }
        write!(f, ": {}", self.message)?;
        if !self.hint.is_empty() {
            write!(f, "{HINT_SEPARATOR}{}", self.hint)?;
        }
        Ok(())
    }
}

/// A problem is also an error a program can fail with: an ad-hoc failure
/// is written `Problem::new(code, subject, message, hint)`, code first.
impl std::error::Error for Problem {}

impl Failure for Problem {
    fn problems(&self) -> Problems {
        Problems(vec![self.clone()])
    }
}

/// What separates a message from its hint in text output.
pub const HINT_SEPARATOR: &str = "\n  what to do: ";

/// `error` followed by each of its causes (`a: b: c`), each printed once: a
/// cause whose text the message already holds (an error that shows its
/// source itself) is not repeated.
pub fn error_chain(error: &(dyn std::error::Error + '_)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let shown = c.to_string();
        if !shown.is_empty() && !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        cause = c.source();
    }
    text
}

/// An error a program reports: every public error type of xplugin implements
/// it, so the command-line programs print any failure as problems (text or
/// `--json`) with a stable code, subject and hint.
pub trait Failure: std::error::Error {
    /// The problems this failure stands for: at least one, each with its
    /// code; a refusal that found several lists them all.
    fn problems(&self) -> Problems;
}

/// The text a program prints on stderr for `failure`, in the one convention
/// of problems: a single problem as `PROGRAM: error: SUBJECT: MESSAGE` with
/// its `  what to do: HINT` line; several as the failure's first line, then
/// each problem as `- ...`.
pub fn failure_text(program: &str, failure: &dyn Failure) -> String {
    let problems = failure.problems();
    match problems.0.as_slice() {
        [] => format!("{program}: error: {}", error_chain(failure)),
        [one] => format!("{program}: {one}"),
        many => {
            let summary = failure.to_string();
            let headline = summary.lines().next().unwrap_or_default();
            let mut out = format!("{program}: error: {headline}");
            for p in many {
                out.push_str("\n- ");
                out.push_str(&p.to_string());
            }
            out
        }
    }
}

/// The `--json` document of `failure`:
/// `{"ok": false, "error": FIRST LINE, "problems": [...]}`.
pub fn failure_json(failure: &dyn Failure) -> serde_json::Value {
    let summary = failure.to_string();
    serde_json::json!({
        "ok": false,
        "error": summary.lines().next().unwrap_or_default(),
        "problems": failure.problems(),
    })
}

/// A list of problems that refuses an operation when it holds any error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Adds one problem.
    pub fn push(&mut self, p: Problem) {
        self.0.push(p)
    }

    /// True if any problem is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Problem::is_error)
    }

    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|p| p.is_error())
    }

    /// The warnings only.
    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|p| !p.is_error())
    }

    /// True if there are no problems at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl Extend<Problem> for Problems {
    fn extend<I: IntoIterator<Item = Problem>>(&mut self, iter: I) {
        self.0.extend(iter)
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = self.errors().count();
        let warnings = self.len() - errors;
        writeln!(f, "{errors} error(s), {warnings} warning(s):")?;
        for p in &self.0 {
            writeln!(f, "- {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

impl Failure for Problems {
    fn problems(&self) -> Problems {
        self.clone()
    }
}

impl FromIterator<Problem> for Problems {
    fn from_iter<I: IntoIterator<Item = Problem>>(iter: I) -> Self {
        Problems(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_subject_field_and_hint() {
        let p = Problem::new(
            ProblemCode::ManifestBadVersion,
            "client plugin \"plugindemo\"",
            "expected a version like 1.0.2, found \"abc\"",
            "fix \"version\" in plugindemo.json",
        )
        .with_field("version");
        let s = p.to_string();
        assert!(s.starts_with("error: client plugin \"plugindemo\", field \"version\": expected"));
        assert!(s.contains("what to do: fix"));
        assert!(p.is_error());
    }

    #[test]
    fn severity_comes_from_the_code() {
        let p = Problem::new(ProblemCode::ManifestUnknownField, "x", "m", "h");
        assert_eq!(p.severity(), Severity::Warning);
        assert!(p.to_string().starts_with("warning: x: m"));
    }

    #[test]
    fn json_has_every_field_of_the_contract() {
        let p = Problem::new(ProblemCode::GraphCycle, "controller plugin \"a\"", "m", "h");
        let v = serde_json::to_value(&p).unwrap_or_default();
        assert_eq!(v["code"], "graph.cycle");
        assert_eq!(v["severity"], "error");
        assert_eq!(v["subject"], "controller plugin \"a\"");
        assert!(v["field"].is_null());
        assert_eq!(v["message"], "m");
        assert_eq!(v["hint"], "h");
    }

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("cannot open x")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn failures_print_in_the_problem_convention() {
        let one = Problems(vec![Problem::new(
            ProblemCode::StoreBusy,
            "/r",
            "locked",
            "wait",
        )]);
        assert_eq!(
            failure_text("prog", &one),
            "prog: error: /r: locked\n  what to do: wait"
        );
        let two = Problems(vec![
            Problem::new(ProblemCode::GraphCycle, "a", "m1", "h1"),
            Problem::new(ProblemCode::ManifestUnknownField, "b", "m2", ""),
        ]);
        let text = failure_text("prog", &two);
        assert!(
            text.starts_with("prog: error: 1 error(s), 1 warning(s):\n- error: a: m1"),
            "{text}"
        );
        assert!(text.ends_with("- warning: b: m2"), "{text}");
        let single = Problem::new(ProblemCode::UsageInvalidArgument, "cmd", "bad", "fix");
        assert_eq!(
            failure_text("prog", &single),
            "prog: error: cmd: bad\n  what to do: fix"
        );
        let doc = failure_json(&two);
        assert_eq!(doc["ok"], false);
        assert_eq!(doc["problems"][1]["code"], "manifest.unknown_field");
    }

    #[test]
    fn the_chain_shows_each_cause_once() {
        let e = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(error_chain(&e), "cannot open x: disk on fire");
        let p = Problem::from_error(ProblemCode::StoreIo, "root", &e, "check");
        assert_eq!(p.message, "cannot open x: disk on fire");
    }
}
