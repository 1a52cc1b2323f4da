//! The host's remaining error types as [`Failure`]s, so the programs report
//! every error the same way (problems with a code, subject and hint).
//! The errors of checks, import, configuration and devices implement it
//! where they are defined.

use crate::admin::AdminError;
use crate::boot::BootError;
use xplugin_model::{Failure, Problem, ProblemCode, Problems};

impl Failure for AdminError {
    fn problems(&self) -> Problems {
        let (code, subject, hint) = match self {
            AdminError::Store(e) => return e.problems(),
            AdminError::NotInstalled { name, .. } => (
                ProblemCode::StoreNotInstalled,
                format!("plugin \"{name}\""),
                "`list` shows what is installed; check the name".to_string(),
            ),
            AdminError::HasDependents { name, .. } => (
                ProblemCode::AdminHasDependents,
                format!("plugin \"{name}\""),
                "remove them first, or pass --cascade to remove them too".to_string(),
            ),
        };
        Problems(vec![Problem::from_error(code, subject, self, hint)])
    }
}

impl Failure for BootError {
    fn problems(&self) -> Problems {
        match self {
            BootError::Store(e) => e.problems(),
        }
    }
}
