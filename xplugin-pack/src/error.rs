//! Why an `xplugin-pack` command failed. Every message names the file,
//! folder or plugin; [`Failure::problems`] gives each its code and what to
//! do, and `main` prints them to stderr (and as JSON with `--json`) in the
//! convention every xplugin program uses, then exits non-zero.

use std::path::PathBuf;
use xplugin_model::{Failure, Problem, ProblemCode, Problems};

/// A refusal or failure of one command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// A key file or trust-store problem.
    #[error(transparent)]
    Key(#[from] xplugin_license::KeyError),
    /// A license could not be issued or does not verify.
    #[error(transparent)]
    License(#[from] xplugin_license::LicenseError),
    /// This device's id cannot be determined.
    #[error(transparent)]
    Device(#[from] xplugin_license::DeviceIdError),
    /// The package is refused or cannot be unpacked.
    #[error(transparent)]
    Package(#[from] xplugin_package::PackageError),
    /// A file or folder cannot be read or written.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done ("cannot read").
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
        /// What to do.
        hint: &'static str,
    },
    /// The input is refused, with every problem found.
    #[error("{what}\n{problems}")]
    Refused {
        /// What was refused ("cannot license plugin folder ...").
        what: String,
        /// Every problem.
        problems: Problems,
    },
    /// A command-line value is unusable.
    #[error("{0}")]
    Usage(String),
    /// Some checked items failed; the details were already printed.
    #[error("{0}")]
    Failed(String),
}

impl Failure for PackError {
    fn problems(&self) -> Problems {
        let one = |code, subject: String, hint: &str| {
            Problems(vec![Problem::from_error(code, subject, self, hint)])
        };
        match self {
            PackError::Key(e) => e.problems(),
            PackError::License(e) => e.problems(),
            PackError::Device(e) => e.problems(),
            PackError::Package(e) => e.problems(),
            PackError::Io { path, hint, .. } => {
                one(ProblemCode::PackIo, path.display().to_string(), hint)
            }
            PackError::Refused { problems, .. } => problems.clone(),
            PackError::Usage(_) => one(
                ProblemCode::UsageInvalidArgument,
                "command line".into(),
                "fix the value; `xplugin-pack help` lists the options",
            ),
            PackError::Failed(_) => one(
                ProblemCode::PackChecksFailed,
                "xplugin-pack".into(),
                "fix each plugin's problems as listed above",
            ),
        }
    }
}

impl PackError {
    /// An I/O error about `path`.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        hint: &'static str,
    ) -> impl FnOnce(std::io::Error) -> PackError {
        let path = path.into();
        move |source| PackError::Io {
            action,
            path,
            source,
            hint,
        }
    }
}
