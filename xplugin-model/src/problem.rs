//! A problem found in a package or an installation, phrased for a support
//! engineer: what (subject and field), what was expected and found, and what
//! to do. Every checker collects all of its problems instead of stopping at
//! the first, so one import attempt shows everything wrong with a package.

use serde::Serialize;
use std::fmt;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Refuses the package (or the plugin, where the checker says so).
    Error,
    /// Reported, nothing refused (unknown manifest fields, ignored litter).
    Warning,
}

/// One problem. `subject` names the plugin (`client plugin "plugindemo"`) or
/// the archive entry (`controller.zip: plugindemo/plugindemo.so`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// The plugin or archive entry concerned.
    pub subject: String,
    /// The manifest field or license field concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong: what was expected and what was found.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

impl Problem {
    /// An error about `subject`.
    pub fn error(
        subject: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Problem {
            severity: Severity::Error,
            subject: subject.into(),
            field: None,
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// A warning about `subject`.
    pub fn warning(
        subject: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(subject, message, hint)
        }
    }

    /// The same problem, naming the field concerned.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// True for [`Severity::Error`].
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: {}", self.subject)?;
        if let Some(field) = &self.field {
            write!(f, ", field \"{field}\"")?;
        }
        write!(f, ": {}", self.message)?;
        if !self.hint.is_empty() {
            write!(f, "\n  what to do: {}", self.hint)?;
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_subject_field_and_hint() {
        let p = Problem::error(
            "client plugin \"plugindemo\"",
            "expected a version like 1.0.2, found \"abc\"",
            "fix \"version\" in plugindemo.json",
        )
        .with_field("version");
        let s = p.to_string();
        assert!(s.starts_with("error: client plugin \"plugindemo\", field \"version\": expected"));
        assert!(s.contains("what to do: fix"));
    }
}
