//! The controller daemon (`xplugin-controller run`): boots the installed
//! plugins, runs the real-time cycle, serves the admin socket, applies
//! committed generations, stops cleanly on SIGTERM.
//!
//! | module | concept |
//! |---|---|
//! | [`protocol`] | the admin socket's frames, requests and responses |
//! | [`daemon`] | the daemon's life: boot, cycle, socket, signals, apply by re-exec |
//! | [`client`] | the admin socket's client side (the CLI, Mender) |
//! | [`server`] | the admin socket's server side: threads, deadlines, access |
//! | [`access`] | who may read and who may change (SO_PEERCRED) |
//! | [`notify`] | the service manager's notify protocol: ready, watchdog, reload, stop |
//! | [`presence`] | the per-root daemon lock and where its socket is |
//! | [`status`] | what `status` shows |
//! | `link` | the pendant link's requests, answered like the admin socket's |
#![deny(missing_docs)]

pub mod access;
pub mod client;
pub mod daemon;
mod link;
pub mod notify;
pub mod presence;
pub mod protocol;
pub mod server;
pub mod status;
