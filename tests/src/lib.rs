//! shared test helpers
pub mod build;
pub mod daemon;
pub mod hostile;
pub mod link;
#[cfg(target_os = "linux")]
pub mod powerfs;
pub mod problems;
pub mod scenario;
