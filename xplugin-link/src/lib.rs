//! The pendant link: how a teach pendant and its robot controller, two
//! computers often of different architectures, talk over TCP. The link
//! carries bytes and decisions; it never decides what is valid (the
//! controller re-checks everything it is sent).
//!
//! docs/link.md is the protocol's reference: messages, state machine,
//! versions, limits, why Noise, and the recovery rules of an install over
//! both computers.
//!
//! | module | concept |
//! |---|---|
//! | [`key`] | a public key as text, and its fingerprint |
//! | [`identity`] | this host's key pair (made on first use, remade on a cloned disk) |
//! | [`peers`] | pairing: the keys each side pins, and the pendants' roles |
//! | [`address`] | `ADDR:PORT`, the default port |
//! | [`frame`] | length-prefixed, bounded frames with deadlines |
//! | [`noise`] | the Noise XX handshake with pinned keys, the encrypted session |
//! | [`message`] | the protocol's messages and versions |
//! | [`upload`] | the controller's upload area: resumable, addressed by SHA-256, with a quota |
//! | [`server`] | the controller's half: listener, connection limit, request dispatch |
//! | [`client`] | the pendant's half: connect, hello, requests |
//! | [`bridge`] | plugin messages both ways over an open session: frames, order, keep-alive |
//! | [`failpoint`] | test hooks at the link's boundaries (feature `failpoints`) |
//! | [`error`] | failures as problems |
#![deny(missing_docs)]

pub mod address;
pub mod bridge;
pub mod client;
pub mod error;
pub mod failpoint;
pub mod frame;
pub mod identity;
pub mod key;
pub mod message;
pub mod noise;
pub mod peers;
pub mod server;
mod store_files;
pub mod upload;

pub use error::LinkError;
pub use key::PublicKey;
pub use peers::Role;

#[cfg(test)]
mod tests;
