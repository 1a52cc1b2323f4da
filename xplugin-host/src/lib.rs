//! The host library both loaders embed.
#![deny(missing_docs)]

pub mod package;
pub mod store;
