//! shared test helpers
pub mod build;
pub mod hostile;
pub mod problems;
pub mod scenario;
