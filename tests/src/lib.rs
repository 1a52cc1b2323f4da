//! shared test helpers
pub mod build;
