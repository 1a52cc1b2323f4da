//! The one error type of the install store. Every variant names the path
//! (or plugin, or root) concerned; [`StoreError::hint`] says what to do and
//! [`StoreError::code`] which problem it is. The text does not repeat the
//! operating system's error: that is the source, shown once by whoever
//! prints the chain.

use std::path::{Path, PathBuf};

use xplugin_model::{Failure, Problem, ProblemCode, Problems};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("could not {action} {}", path.display())]
    Io {
        /// What the store was doing, as a verb phrase ("create directory").
        action: &'static str,
        /// The path the operation was about.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
        /// What to do about it.
        hint: String,
    },

    /// Another process holds the install lock.
    #[error(
        "another import is running (pid {}) on {}",
        pid.map_or_else(|| "unknown".to_string(), |p| p.to_string()),
        root.display()
    )]
    Busy {
        /// The pid the holder wrote into the lock file, if it could be read.
        pid: Option<u32>,
        /// The install root that is locked.
        root: PathBuf,
    },

    /// A generation's `state.json` could not be parsed or written.
    #[error("generation state {} is unreadable", path.display())]
    StateJson {
        /// The `state.json` concerned.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
        /// What to do about it.
        hint: String,
    },

    /// The installation on disk is not in a shape this store ever writes
    /// (e.g. `current` is not a symlink to `generations/<N>`, or a
    /// generation's `state.json` names another number).
    #[error("install root is inconsistent at {}: expected {expected}, found {found}", path.display())]
    Inconsistent {
        /// The path that is wrong.
        path: PathBuf,
        /// What the store expected there.
        expected: String,
        /// What it found.
        found: String,
        /// What to do about it.
        hint: String,
    },

    /// A commit plan was refused before anything was written; every problem
    /// found is listed.
    #[error("commit refused, nothing was changed: {problems}")]
    InvalidPlan {
        /// All problems found in the plan and its staged files.
        problems: Problems,
    },

    /// A plugin name cannot be used as a directory name in the store.
    #[error("plugin name {name:?} is not usable: {reason}")]
    InvalidPluginName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
        /// What to do about it.
        hint: String,
    },

    /// The plugin is not installed in the current generation.
    #[error("plugin {name:?} is not installed in {}", root.display())]
    NotInstalled {
        /// The plugin asked for.
        name: String,
        /// The install root.
        root: PathBuf,
        /// What to do about it.
        hint: String,
    },

    /// There is no generation to roll back to.
    #[error("nothing to roll back to in {}: {reason}", root.display())]
    NoPreviousGeneration {
        /// The install root.
        root: PathBuf,
        /// Why: fresh root, first generation, or the previous one was removed.
        reason: String,
        /// What to do about it.
        hint: String,
    },

    /// A lock of another install root was passed in.
    #[error(
        "the lock passed in belongs to {} but this store is {}",
        lock_root.display(),
        store_root.display()
    )]
    WrongLock {
        /// The root the lock was taken on.
        lock_root: PathBuf,
        /// The root of the store that was asked to write.
        store_root: PathBuf,
    },

    /// Another install transaction is open on this root.
    #[error("another install is in progress on this root: transaction {id} ({state}) held by {holder}, open until {expires_unix} (unix time)")]
    TransactionOpen {
        /// Its id.
        id: String,
        /// Who holds it.
        holder: String,
        /// `preparing` or `prepared`.
        state: crate::transaction::TransactionState,
        /// When it is aborted if undecided.
        expires_unix: u64,
    },
    /// No such transaction (never existed, or forgotten after its retention).
    #[error("no install transaction {id} in {}", root.display())]
    TransactionNotFound {
        /// The id asked for.
        id: String,
        /// The install root.
        root: PathBuf,
    },
    /// The transaction is not prepared (already decided, or still preparing).
    #[error("transaction {} is {}{}, not prepared; nothing was changed", record.id, record.state, record.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    TransactionDecided {
        /// Its record.
        record: Box<crate::transaction::TransactionRecord>,
    },
    /// The installation changed since the transaction was prepared; it was
    /// aborted.
    #[error("transaction {} was aborted: {}", record.id, record.reason.as_deref().unwrap_or("the installation changed"))]
    TransactionBaseChanged {
        /// Its record (now aborted).
        record: Box<crate::transaction::TransactionRecord>,
    },
    /// No more generation numbers (u64 exhausted): never expected in practice.
    #[error("generation numbers are exhausted in {}", root.display())]
    GenerationOverflow {
        /// The install root.
        root: PathBuf,
        /// What to do about it.
        hint: String,
    },
}

impl StoreError {
    /// The problem code ([`StoreError::InvalidPlan`]: its first problem's).
    pub fn code(&self) -> ProblemCode {
        match self {
            StoreError::Io { .. } => ProblemCode::StoreIo,
            StoreError::Busy { .. } => ProblemCode::StoreBusy,
            StoreError::StateJson { .. } => ProblemCode::StoreStateCorrupt,
            StoreError::Inconsistent { .. } => ProblemCode::StoreInconsistent,
            StoreError::InvalidPlan { problems } => problems
                .0
                .first()
                .map_or(ProblemCode::StorePlanInvalid, |p| p.code),
            StoreError::InvalidPluginName { .. } => ProblemCode::StoreInvalidPluginName,
            StoreError::NotInstalled { .. } => ProblemCode::StoreNotInstalled,
            StoreError::NoPreviousGeneration { .. } => ProblemCode::StoreNoPreviousGeneration,
            StoreError::WrongLock { .. } => ProblemCode::StoreWrongLock,
            StoreError::GenerationOverflow { .. } => ProblemCode::StoreGenerationOverflow,
            StoreError::TransactionOpen { .. } => ProblemCode::StoreTransactionOpen,
            StoreError::TransactionNotFound { .. } => ProblemCode::StoreTransactionNotFound,
            StoreError::TransactionDecided { .. } => ProblemCode::StoreTransactionDecided,
            StoreError::TransactionBaseChanged { .. } => ProblemCode::StoreTransactionBaseChanged,
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            StoreError::Io { hint, .. }
            | StoreError::StateJson { hint, .. }
            | StoreError::Inconsistent { hint, .. }
            | StoreError::InvalidPluginName { hint, .. }
            | StoreError::NotInstalled { hint, .. }
            | StoreError::NoPreviousGeneration { hint, .. }
            | StoreError::GenerationOverflow { hint, .. } => hint.clone(),
            StoreError::Busy { .. } => "wait for it to finish, then retry".into(),
            StoreError::InvalidPlan { .. } => "nothing was changed; see each problem".into(),
            StoreError::WrongLock { .. } => "take the lock with this store's lock()".into(),
            StoreError::TransactionOpen { id, .. } => format!(
                "wait for it to be committed or aborted; if it is abandoned, `xplugin-controller abort {id}`"
            ),
            StoreError::TransactionNotFound { .. } => {
                "check the id; `xplugin-controller status` shows the open transaction".into()
            }
            StoreError::TransactionDecided { .. } => {
                "prepare a new install if this one was aborted".into()
            }
            StoreError::TransactionBaseChanged { .. } => {
                "prepare the install again against the current installation".into()
            }
        }
    }

    /// The path, root or plugin the error is about.
    fn subject(&self) -> String {
        let shown = |p: &Path| p.display().to_string();
        match self {
            StoreError::Io { path, .. }
            | StoreError::StateJson { path, .. }
            | StoreError::Inconsistent { path, .. } => shown(path),
            StoreError::Busy { root, .. }
            | StoreError::NoPreviousGeneration { root, .. }
            | StoreError::GenerationOverflow { root, .. } => shown(root),
            StoreError::WrongLock { store_root, .. } => shown(store_root),
            StoreError::InvalidPluginName { name, .. } | StoreError::NotInstalled { name, .. } => {
                format!("plugin \"{name}\"")
            }
            StoreError::InvalidPlan { .. } => "commit plan".into(),
            StoreError::TransactionOpen { id, .. } | StoreError::TransactionNotFound { id, .. } => {
                format!("transaction {id}")
            }
            StoreError::TransactionDecided { record }
            | StoreError::TransactionBaseChanged { record } => format!("transaction {}", record.id),
        }
    }

    /// An [`StoreError::Io`] with the given action, path and hint.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
        hint: impl Into<String>,
    ) -> Self {
        StoreError::Io {
            action,
            path: path.into(),
            source,
            hint: hint.into(),
        }
    }
}

impl Failure for StoreError {
    fn problems(&self) -> Problems {
        match self {
            StoreError::InvalidPlan { problems } => problems.clone(),
            other => Problems(vec![Problem::from_error(
                other.code(),
                other.subject(),
                other,
                other.hint(),
            )]),
        }
    }
}

/// The hint for I/O failures inside the install root that are not the
/// caller's fault: disk full, read-only filesystem, permissions.
pub(crate) const HINT_DISK: &str =
    "check free space, that the filesystem is mounted read-write, and that this user owns the install root";
