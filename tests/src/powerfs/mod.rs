//! powerfs: a FUSE file system that forgets, at a simulated power cut,
//! everything that was not made durable, for the power-loss test of the
//! install store (`tests/tests/it/powerloss.rs`).
//!
//! It lives in memory (the [`model`]), is served through the kernel with the
//! `fuser` crate ([`fuse`]), records every durability boundary a program
//! crosses ([`Boundary`]) and can cut power right after any one of them
//! ([`Mount::cut_after`]). The test then mounts what the disk held
//! ([`Cut::durable`]) and checks what recovery makes of it.
//!
//! # The model
//!
//! Every inode has a live state (what programs see) and a durable state
//! (what a power cut leaves). The rules, each with a unit test in
//! [`model`]:
//!
//! 1. **File data and metadata go with the inode.** Bytes written, truncation
//!    and mode changes are live only; `fsync` of the file makes its bytes and
//!    mode durable. A new inode's durable state is the state it was created
//!    with: empty, with its creation mode.
//! 2. **Directory entries go with the directory.** Creating, linking,
//!    unlinking, removing and renaming names changes the directory's live
//!    entries only; `fsync` of the directory makes its entries (and its mode)
//!    durable. `fsync` of a file does not make its name durable, nor does
//!    `fsync` of a parent make a child directory's entries durable.
//! 3. **A rename is atomic.** It is recorded in both directories and made
//!    durable, in both at once, by an `fsync` of either one (as a journaling
//!    file system does), together with the earlier pending renames of the
//!    same inode. It carries the entry only: a rename made durable while the
//!    renamed file's data was never fsynced comes back with the file's
//!    durable content, possibly empty or short ("the rename survived, the
//!    data did not").
//! 4. **A power cut keeps what durable entries reach.** The image after a
//!    cut holds the inodes reachable from the root through durable entries,
//!    each with its durable content; everything else is gone (including
//!    inodes only open handles kept alive). Link counts are recounted.
//! 5. **A symlink's target is written with the inode**: a symlink cannot be
//!    fsynced, and file systems store short targets in the inode itself, so
//!    it is durable exactly when its entry is.
//! 6. **After the cut, nothing gets through**: every request fails with
//!    `EIO` (the program doing the operation sees errors), until unmount.
//!
//! Not modelled: tearing within a file (a cut leaves a file's bytes as of
//! its last fsync, never a mix of old and new pages or a prefix of one
//! write), reordering of writes within a file, writeback of unsynced data
//! or entries before the cut (real systems flush some of it; the model
//! assumes the worst: nothing), times, owners, extended attributes, special
//! files, and rename chains of different inodes (each inode's renames are
//! committed on their own). Nothing in the model fails on its own (no
//! `ENOSPC`, no `EIO` before the cut).
//!
//! # Boundaries
//!
//! `fsync` of a file or directory, `rename`, `link` and `symlink`: the
//! operations whose order decides what survives. Under the rules above the
//! durable state changes only at an `fsync`, so a cut right after a rename,
//! link or symlink leaves what the cut after the preceding `fsync` leaves;
//! they are cut points all the same (they pin the order and would matter
//! under a model with writeback).

pub mod fuse;
pub mod model;

pub use fuse::{Aborter, Boundary, Cut, Image, Mount};
