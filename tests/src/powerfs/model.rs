//! The durability model of [`super`]: an in-memory file system that keeps,
//! next to what a running program sees ("live"), what a power cut would
//! leave ("durable"). The rules are listed in the parent module; each has a
//! unit test at the bottom of this file, named after it.
//!
//! No FUSE here: the FUSE adapter ([`super::fuse`]) maps requests onto these
//! methods, so the model is tested on its own.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

/// An inode number. The root directory is [`ROOT`].
pub type Ino = u64;

/// The root directory's inode number (FUSE's fixed root id).
pub const ROOT: Ino = 1;

/// Results carry the errno the kernel passes on to the program.
pub type FsResult<T> = Result<T, Errno>;

/// What an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

/// What a `stat` shows of an inode (its live state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// File, directory or symlink.
    pub kind: Kind,
    /// Permission bits (`0o7777` mask).
    pub mode: u32,
    /// Bytes of a file, length of a symlink's target, 0 for directories.
    pub size: u64,
    /// Live hard links (2 for every directory).
    pub nlink: u32,
}

/// What fsync of an inode makes durable (rules 1 and 2): a file's bytes, a
/// directory's entries, and the mode of either.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Content {
    mode: u32,
    data: Vec<u8>,
    entries: BTreeMap<OsString, Ino>,
}

#[derive(Debug, Clone)]
struct Inode {
    kind: Kind,
    /// A symlink's target: written with the inode (rule 6).
    target: PathBuf,
    live: Content,
    durable: Content,
    /// Live links of a file or symlink.
    nlink: u32,
    /// Readdir position of each live entry: increasing in insertion order,
    /// never reused, so a directory listed while entries are removed (as
    /// `remove_tree` does) neither skips nor repeats an entry.
    cookies: BTreeMap<OsString, u64>,
    next_cookie: u64,
    /// The last (directory, name) the inode was linked at: names it in
    /// boundaries and gives a directory its `..`.
    hint: Option<(Ino, OsString)>,
}

impl Inode {
    fn new(kind: Kind, mode: u32, target: PathBuf) -> Inode {
        let content = Content {
            mode,
            ..Content::default()
        };
        Inode {
            kind,
            target,
            live: content.clone(),
            durable: content,
            nlink: 0,
            cookies: BTreeMap::new(),
            next_cookie: FIRST_COOKIE,
            hint: None,
        }
    }
}

/// Cookies 1 and 2 are `.` and `..`.
const FIRST_COOKIE: u64 = 3;

/// A rename not yet made durable (rule 3): committed by an fsync of either
/// directory, together with the earlier pending renames of the same inode.
#[derive(Debug, Clone)]
struct Rename {
    ino: Ino,
    from: (Ino, OsString),
    to: (Ino, OsString),
}

/// The file system: live and durable state of every inode.
#[derive(Debug, Clone)]
pub struct Fs {
    inodes: BTreeMap<Ino, Inode>,
    next_ino: Ino,
    pending: Vec<Rename>,
    anomalies: Vec<String>,
}

impl Default for Fs {
    fn default() -> Self {
        Fs::new()
    }
}

impl Fs {
    /// An empty file system: a root directory (mode 0755), all durable.
    pub fn new() -> Fs {
        let mut root = Inode::new(Kind::Dir, 0o755, PathBuf::new());
        root.nlink = 1;
        Fs {
            inodes: BTreeMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            pending: Vec::new(),
            anomalies: Vec::new(),
        }
    }

    fn inode(&self, ino: Ino) -> FsResult<&Inode> {
        self.inodes.get(&ino).ok_or(Errno::ENOENT)
    }

    fn inode_mut(&mut self, ino: Ino) -> FsResult<&mut Inode> {
        self.inodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn dir(&self, ino: Ino) -> FsResult<&Inode> {
        let inode = self.inode(ino)?;
        if inode.kind == Kind::Dir {
            Ok(inode)
        } else {
            Err(Errno::ENOTDIR)
        }
    }

    /// The inode `name` names in directory `parent`.
    ///
    /// # Errors
    /// `ENOENT`, `ENOTDIR`.
    pub fn lookup(&self, parent: Ino, name: &OsStr) -> FsResult<Ino> {
        self.dir(parent)?
            .live
            .entries
            .get(name)
            .copied()
            .ok_or(Errno::ENOENT)
    }

    /// The live attributes of `ino`.
    ///
    /// # Errors
    /// `ENOENT`.
    pub fn attr(&self, ino: Ino) -> FsResult<Attr> {
        let inode = self.inode(ino)?;
        let (size, nlink) = match inode.kind {
            Kind::File => (inode.live.data.len() as u64, inode.nlink),
            Kind::Symlink => (inode.target.as_os_str().len() as u64, inode.nlink),
            Kind::Dir => (0, 2),
        };
        Ok(Attr {
            ino,
            kind: inode.kind,
            mode: inode.live.mode & 0o7777,
            size,
            nlink,
        })
    }

    fn add_inode(&mut self, kind: Kind, mode: u32, target: PathBuf) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes
            .insert(ino, Inode::new(kind, mode & 0o7777, target));
        ino
    }

    /// Fails with `EEXIST` if `name` exists in `parent`, `ENOTDIR` if
    /// `parent` is not a directory.
    fn check_free(&self, parent: Ino, name: &OsStr) -> FsResult<()> {
        check_name(name)?;
        if self.dir(parent)?.live.entries.contains_key(name) {
            Err(Errno::EEXIST)
        } else {
            Ok(())
        }
    }

    fn insert_entry(&mut self, parent: Ino, name: &OsStr, ino: Ino) -> FsResult<()> {
        let dir = self.inode_mut(parent)?;
        dir.live.entries.insert(name.to_owned(), ino);
        let cookie = dir.next_cookie;
        dir.next_cookie += 1;
        dir.cookies.insert(name.to_owned(), cookie);
        let inode = self.inode_mut(ino)?;
        inode.nlink += 1;
        inode.hint = Some((parent, name.to_owned()));
        Ok(())
    }

    fn remove_entry(&mut self, parent: Ino, name: &OsStr) -> FsResult<Ino> {
        let dir = self.inode_mut(parent)?;
        let ino = dir.live.entries.remove(name).ok_or(Errno::ENOENT)?;
        dir.cookies.remove(name);
        let inode = self.inode_mut(ino)?;
        inode.nlink = inode.nlink.saturating_sub(1);
        Ok(ino)
    }

    /// Creates an empty regular file (its durable state: empty, `mode`).
    ///
    /// # Errors
    /// `EEXIST`, `ENOENT`, `ENOTDIR`, `EINVAL` for a bad name.
    pub fn create(&mut self, parent: Ino, name: &OsStr, mode: u32) -> FsResult<Ino> {
        self.check_free(parent, name)?;
        let ino = self.add_inode(Kind::File, mode, PathBuf::new());
        self.insert_entry(parent, name, ino)?;
        Ok(ino)
    }

    /// Creates an empty directory (its durable state: no entries, `mode`).
    ///
    /// # Errors
    /// As [`Fs::create`].
    pub fn mkdir(&mut self, parent: Ino, name: &OsStr, mode: u32) -> FsResult<Ino> {
        self.check_free(parent, name)?;
        let ino = self.add_inode(Kind::Dir, mode, PathBuf::new());
        self.insert_entry(parent, name, ino)?;
        Ok(ino)
    }

    /// Creates a symlink to `target`.
    ///
    /// # Errors
    /// As [`Fs::create`].
    pub fn symlink(&mut self, parent: Ino, name: &OsStr, target: &Path) -> FsResult<Ino> {
        self.check_free(parent, name)?;
        let ino = self.add_inode(Kind::Symlink, 0o777, target.to_path_buf());
        self.insert_entry(parent, name, ino)?;
        Ok(ino)
    }

    /// Adds the hard link `parent/name` to the file or symlink `ino`.
    ///
    /// # Errors
    /// `EPERM` for a directory, `EEXIST`, `ENOENT`, `ENOTDIR`.
    pub fn link(&mut self, ino: Ino, parent: Ino, name: &OsStr) -> FsResult<()> {
        if self.inode(ino)?.kind == Kind::Dir {
            return Err(Errno::EPERM);
        }
        self.check_free(parent, name)?;
        self.insert_entry(parent, name, ino)
    }

    /// Removes the non-directory entry `parent/name`. The inode lives on
    /// (open handles may still use it) until a power cut drops it.
    ///
    /// # Errors
    /// `ENOENT`, `ENOTDIR`, `EISDIR` for a directory.
    pub fn unlink(&mut self, parent: Ino, name: &OsStr) -> FsResult<()> {
        let ino = self.lookup(parent, name)?;
        if self.inode(ino)?.kind == Kind::Dir {
            return Err(Errno::EISDIR);
        }
        self.remove_entry(parent, name).map(drop)
    }

    /// Removes the empty directory `parent/name`.
    ///
    /// # Errors
    /// `ENOENT`, `ENOTDIR`, `ENOTEMPTY`.
    pub fn rmdir(&mut self, parent: Ino, name: &OsStr) -> FsResult<()> {
        let ino = self.lookup(parent, name)?;
        if !self.dir(ino)?.live.entries.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        self.remove_entry(parent, name).map(drop)
    }

    /// True if `ino` is `ancestor` or lies below it (live).
    fn is_within(&self, mut ino: Ino, ancestor: Ino) -> bool {
        loop {
            if ino == ancestor {
                return true;
            }
            match self.inodes.get(&ino).and_then(|i| i.hint.as_ref()) {
                Some((parent, _)) if ino != ROOT => ino = *parent,
                _ => return false,
            }
        }
    }

    /// `rename(2)`: moves `parent/name` to `new_parent/new_name`, replacing
    /// a file there (or an empty directory, for a directory). With
    /// `noreplace` an existing target is refused. Recorded as pending until
    /// an fsync of either directory (rule 3).
    ///
    /// # Errors
    /// `ENOENT`, `ENOTDIR`, `EISDIR`, `ENOTEMPTY`, `EEXIST`, `EINVAL` (a
    /// directory into itself).
    pub fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        noreplace: bool,
    ) -> FsResult<()> {
        check_name(new_name)?;
        let ino = self.lookup(parent, name)?;
        self.dir(new_parent)?;
        let kind = self.inode(ino)?.kind;
        if kind == Kind::Dir && self.is_within(new_parent, ino) {
            return Err(Errno::EINVAL);
        }
        if let Ok(existing) = self.lookup(new_parent, new_name) {
            if noreplace {
                return Err(Errno::EEXIST);
            }
            if existing == ino {
                // Two links of one inode: rename(2) does nothing.
                return Ok(());
            }
            match (kind, self.inode(existing)?.kind) {
                (Kind::Dir, Kind::Dir) if !self.dir(existing)?.live.entries.is_empty() => {
                    return Err(Errno::ENOTEMPTY)
                }
                (Kind::Dir, Kind::Dir) => {}
                (Kind::Dir, _) => return Err(Errno::ENOTDIR),
                (_, Kind::Dir) => return Err(Errno::EISDIR),
                _ => {}
            }
            self.remove_entry(new_parent, new_name)?;
        }
        self.remove_entry(parent, name)?;
        self.insert_entry(new_parent, new_name, ino)?;
        self.pending.push(Rename {
            ino,
            from: (parent, name.to_owned()),
            to: (new_parent, new_name.to_owned()),
        });
        Ok(())
    }

    /// Writes `data` at `offset` (live only), zero-filling a gap.
    ///
    /// # Errors
    /// `ENOENT`, `EISDIR`, `EINVAL` for a symlink, `EFBIG` past 1 GiB.
    pub fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> FsResult<usize> {
        let inode = self.file_mut(ino)?;
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&end| end <= MAX_FILE)
            .ok_or(Errno::EFBIG)?;
        let (start, end) = (to_usize(offset)?, to_usize(end)?);
        if inode.live.data.len() < end {
            inode.live.data.resize(end, 0);
        }
        inode
            .live
            .data
            .get_mut(start..end)
            .ok_or(Errno::EINVAL)?
            .copy_from_slice(data);
        Ok(data.len())
    }

    /// Up to `size` live bytes from `offset`.
    ///
    /// # Errors
    /// `ENOENT`, `EISDIR`, `EINVAL` for a symlink.
    pub fn read(&self, ino: Ino, offset: u64, size: u32) -> FsResult<&[u8]> {
        let inode = self.inode(ino)?;
        check_file(inode.kind)?;
        let data = &inode.live.data;
        let start = to_usize(offset)?.min(data.len());
        let end = start.saturating_add(size as usize).min(data.len());
        Ok(data.get(start..end).unwrap_or_default())
    }

    /// Truncates or zero-extends a file (live only).
    ///
    /// # Errors
    /// As [`Fs::write`].
    pub fn set_size(&mut self, ino: Ino, size: u64) -> FsResult<()> {
        if size > MAX_FILE {
            return Err(Errno::EFBIG);
        }
        let size = to_usize(size)?;
        self.file_mut(ino)?.live.data.resize(size, 0);
        Ok(())
    }

    /// Changes the permission bits (live only: rule 1, metadata goes with
    /// the inode).
    ///
    /// # Errors
    /// `ENOENT`.
    pub fn set_mode(&mut self, ino: Ino, mode: u32) -> FsResult<()> {
        self.inode_mut(ino)?.live.mode = mode & 0o7777;
        Ok(())
    }

    /// A symlink's target.
    ///
    /// # Errors
    /// `ENOENT`, `EINVAL` if `ino` is not a symlink.
    pub fn readlink(&self, ino: Ino) -> FsResult<&Path> {
        let inode = self.inode(ino)?;
        if inode.kind == Kind::Symlink {
            Ok(&inode.target)
        } else {
            Err(Errno::EINVAL)
        }
    }

    /// The live entries of directory `dir` after readdir position `after`,
    /// as (position, name, inode, kind), in position order; `.` and `..`
    /// come first (positions 1 and 2).
    ///
    /// # Errors
    /// `ENOENT`, `ENOTDIR`.
    pub fn entries(&self, dir: Ino, after: u64) -> FsResult<Vec<(u64, OsString, Ino, Kind)>> {
        let inode = self.dir(dir)?;
        let parent = inode.hint.as_ref().map_or(ROOT, |(p, _)| *p);
        let mut out = vec![
            (1, OsString::from("."), dir, Kind::Dir),
            (2, OsString::from(".."), parent, Kind::Dir),
        ];
        for (name, &ino) in &inode.live.entries {
            let cookie = inode.cookies.get(name).copied().unwrap_or(FIRST_COOKIE);
            out.push((cookie, name.clone(), ino, self.inode(ino)?.kind));
        }
        out.retain(|e| e.0 > after);
        out.sort_by_key(|e| e.0);
        Ok(out)
    }

    /// `fsync(2)` of `ino`. A file: its live bytes and mode become durable
    /// (rule 1). A directory: its live entries and mode become durable
    /// (rule 2), and so do the pending renames into or out of it, each with
    /// the earlier pending renames of the same inode (rule 3).
    ///
    /// # Errors
    /// `ENOENT`.
    pub fn fsync(&mut self, ino: Ino) -> FsResult<()> {
        let kind = self.inode(ino)?.kind;
        if kind == Kind::Dir {
            self.commit_renames_touching(ino);
        }
        let inode = self.inode_mut(ino)?;
        match kind {
            Kind::File => {
                inode.durable.data = inode.live.data.clone();
                inode.durable.mode = inode.live.mode;
            }
            Kind::Dir => {
                inode.durable.entries = inode.live.entries.clone();
                inode.durable.mode = inode.live.mode;
            }
            Kind::Symlink => {}
        }
        Ok(())
    }

    fn commit_renames_touching(&mut self, dir: Ino) {
        let mut commit: BTreeSet<usize> = self
            .pending
            .iter()
            .enumerate()
            .filter(|(_, r)| r.from.0 == dir || r.to.0 == dir)
            .map(|(i, _)| i)
            .collect();
        // A later rename of an inode cannot be durable without its earlier
        // ones, or the inode would be linked where it never was at once.
        for (i, r) in self.pending.iter().enumerate().rev() {
            if commit
                .iter()
                .any(|&c| c > i && self.pending[c].ino == r.ino)
            {
                commit.insert(i);
            }
        }
        for &i in &commit {
            let r = self.pending[i].clone();
            if let Some(from) = self.inodes.get_mut(&r.from.0) {
                if from.durable.entries.get(&r.from.1) == Some(&r.ino) {
                    from.durable.entries.remove(&r.from.1);
                }
            }
            if let Some(to) = self.inodes.get_mut(&r.to.0) {
                to.durable.entries.insert(r.to.1.clone(), r.ino);
            }
        }
        let mut index = 0;
        self.pending.retain(|_| {
            index += 1;
            !commit.contains(&(index - 1))
        });
    }

    /// The path of `ino` relative to the root, `.` for the root itself, by
    /// the last place it was linked (a removed inode keeps its old path).
    pub fn path(&self, ino: Ino) -> String {
        let mut parts: Vec<&OsStr> = Vec::new();
        let mut at = ino;
        while at != ROOT {
            match self.inodes.get(&at).and_then(|i| i.hint.as_ref()) {
                Some((parent, name)) if parts.len() < 256 => {
                    parts.push(name);
                    at = *parent;
                }
                _ => {
                    parts.push(OsStr::new("?"));
                    break;
                }
            }
        }
        if parts.is_empty() {
            return ".".into();
        }
        parts.reverse();
        let joined: Vec<String> = parts
            .iter()
            .map(|p| String::from_utf8_lossy(p.as_bytes()).into_owned())
            .collect();
        joined.join("/")
    }

    /// What a power cut leaves (rule 4): the inodes reachable from the root
    /// through durable entries, each with its durable content, and nothing
    /// pending. Link counts are recounted.
    pub fn power_cut(&self) -> Fs {
        let mut out = Fs {
            inodes: BTreeMap::new(),
            next_ino: self.next_ino,
            pending: Vec::new(),
            anomalies: self.anomalies.clone(),
        };
        let mut queue = vec![ROOT];
        let mut seen_dirs = BTreeSet::from([ROOT]);
        while let Some(dir) = queue.pop() {
            let Some(inode) = self.inodes.get(&dir) else {
                continue;
            };
            let mut copy = durable_copy(inode);
            let mut kept = BTreeMap::new();
            for (name, &child) in &inode.durable.entries {
                let Some(child_inode) = self.inodes.get(&child) else {
                    continue;
                };
                if child_inode.kind == Kind::Dir && !seen_dirs.insert(child) {
                    // Cannot happen under rules 2 and 3; kept visible.
                    out.anomalies.push(format!(
                        "directory {} is durable in two places; dropped at {}/{}",
                        self.path(child),
                        self.path(dir),
                        name.to_string_lossy()
                    ));
                    continue;
                }
                kept.insert(name.clone(), child);
                if child_inode.kind == Kind::Dir {
                    queue.push(child);
                } else {
                    out.inodes
                        .entry(child)
                        .or_insert_with(|| durable_copy(child_inode));
                }
            }
            copy.live.entries = kept.clone();
            copy.durable.entries = kept;
            out.inodes.insert(dir, copy);
        }
        // Hints, link counts and readdir positions from the new tree.
        let links: Vec<(Ino, OsString, Ino)> = out
            .inodes
            .iter()
            .flat_map(|(&dir, inode)| {
                inode
                    .live
                    .entries
                    .iter()
                    .map(move |(name, &child)| (dir, name.clone(), child))
            })
            .collect();
        for (dir, name, child) in links {
            if let Some(parent) = out.inodes.get_mut(&dir) {
                let cookie = parent.next_cookie;
                parent.next_cookie += 1;
                parent.cookies.insert(name.clone(), cookie);
            }
            if let Some(inode) = out.inodes.get_mut(&child) {
                inode.nlink += 1;
                inode.hint = Some((dir, name));
            }
        }
        out
    }

    /// A clean shutdown: everything live becomes durable, then the image is
    /// taken as after a power cut (open but unlinked inodes are dropped).
    pub fn sync_all(&self) -> Fs {
        let mut all = self.clone();
        for inode in all.inodes.values_mut() {
            inode.durable = inode.live.clone();
        }
        all.pending.clear();
        all.power_cut()
    }

    /// Directories that a power cut found durable in two places (the model
    /// rules out; a non-empty list is a bug of the model).
    pub fn anomalies(&self) -> &[String] {
        &self.anomalies
    }

    fn file_mut(&mut self, ino: Ino) -> FsResult<&mut Inode> {
        let inode = self.inode_mut(ino)?;
        check_file(inode.kind)?;
        Ok(inode)
    }
}

fn durable_copy(inode: &Inode) -> Inode {
    Inode {
        kind: inode.kind,
        target: inode.target.clone(),
        live: inode.durable.clone(),
        durable: inode.durable.clone(),
        nlink: 0,
        cookies: BTreeMap::new(),
        next_cookie: FIRST_COOKIE,
        hint: None,
    }
}

/// Largest file the model holds (test files are small).
const MAX_FILE: u64 = 1 << 30;

fn to_usize(n: u64) -> FsResult<usize> {
    usize::try_from(n).map_err(|_| Errno::EFBIG)
}

fn check_file(kind: Kind) -> FsResult<()> {
    match kind {
        Kind::File => Ok(()),
        Kind::Dir => Err(Errno::EISDIR),
        Kind::Symlink => Err(Errno::EINVAL),
    }
}

fn check_name(name: &OsStr) -> FsResult<()> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
        Err(Errno::EINVAL)
    } else if bytes.len() > 255 {
        Err(Errno::ENAMETOOLONG)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! One test per rule of the model (see the parent module).

    use super::*;

    fn n(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    fn file(fs: &mut Fs, parent: Ino, name: &str, bytes: &[u8]) -> Ino {
        let ino = fs.create(parent, n(name), 0o644).unwrap();
        fs.write(ino, 0, bytes).unwrap();
        ino
    }

    fn bytes_at(fs: &Fs, path: &[&str]) -> Option<Vec<u8>> {
        let ino = resolve(fs, path)?;
        Some(fs.read(ino, 0, u32::MAX).ok()?.to_vec())
    }

    fn resolve(fs: &Fs, path: &[&str]) -> Option<Ino> {
        let mut at = ROOT;
        for part in path {
            at = fs.lookup(at, n(part)).ok()?;
        }
        Some(at)
    }

    #[test]
    fn rule1_file_data_is_durable_only_as_of_its_last_fsync() {
        let mut fs = Fs::new();
        let f = file(&mut fs, ROOT, "f", b"first");
        fs.fsync(ROOT).unwrap();
        assert_eq!(bytes_at(&fs.power_cut(), &["f"]), Some(Vec::new()));
        fs.fsync(f).unwrap();
        fs.write(f, 0, b"SECOND and longer").unwrap();
        assert_eq!(bytes_at(&fs.power_cut(), &["f"]), Some(b"first".to_vec()));
        fs.set_size(f, 2).unwrap();
        assert_eq!(bytes_at(&fs.power_cut(), &["f"]), Some(b"first".to_vec()));
        fs.fsync(f).unwrap();
        assert_eq!(bytes_at(&fs.power_cut(), &["f"]), Some(b"SE".to_vec()));
    }

    #[test]
    fn rule1_mode_goes_with_the_inode() {
        let mut fs = Fs::new();
        let f = file(&mut fs, ROOT, "f", b"x");
        fs.fsync(ROOT).unwrap();
        fs.set_mode(f, 0o600).unwrap();
        let cut = fs.power_cut();
        assert_eq!(
            cut.attr(resolve(&cut, &["f"]).unwrap()).unwrap().mode,
            0o644
        );
        fs.fsync(f).unwrap();
        let cut = fs.power_cut();
        assert_eq!(
            cut.attr(resolve(&cut, &["f"]).unwrap()).unwrap().mode,
            0o600
        );
        // A directory's mode is made durable by its own fsync, not the parent's.
        let d = fs.mkdir(ROOT, n("d"), 0o700).unwrap();
        fs.fsync(ROOT).unwrap();
        fs.set_mode(d, 0o755).unwrap();
        let cut = fs.power_cut();
        assert_eq!(
            cut.attr(resolve(&cut, &["d"]).unwrap()).unwrap().mode,
            0o700
        );
        fs.fsync(d).unwrap();
        let cut = fs.power_cut();
        assert_eq!(
            cut.attr(resolve(&cut, &["d"]).unwrap()).unwrap().mode,
            0o755
        );
    }

    #[test]
    fn rule2_entries_are_durable_only_after_fsync_of_their_directory() {
        let mut fs = Fs::new();
        let d = fs.mkdir(ROOT, n("d"), 0o755).unwrap();
        let f = file(&mut fs, d, "f", b"data");
        fs.fsync(f).unwrap();
        fs.fsync(d).unwrap();
        // d/f is durable in d, but d itself is not durable in the root.
        assert_eq!(resolve(&fs.power_cut(), &["d"]), None);
        fs.fsync(ROOT).unwrap();
        assert_eq!(
            bytes_at(&fs.power_cut(), &["d", "f"]),
            Some(b"data".to_vec())
        );
        // Removal is an entry change too: undone without an fsync of d.
        fs.unlink(d, n("f")).unwrap();
        assert_eq!(
            bytes_at(&fs.power_cut(), &["d", "f"]),
            Some(b"data".to_vec())
        );
        fs.fsync(d).unwrap();
        assert_eq!(resolve(&fs.power_cut(), &["d", "f"]), None);
    }

    #[test]
    fn rule2_hard_link_is_an_entry_change_of_its_directory() {
        let mut fs = Fs::new();
        let f = file(&mut fs, ROOT, "f", b"data");
        fs.fsync(f).unwrap();
        fs.fsync(ROOT).unwrap();
        let d = fs.mkdir(ROOT, n("d"), 0o755).unwrap();
        fs.link(f, d, n("g")).unwrap();
        fs.fsync(ROOT).unwrap();
        assert_eq!(resolve(&fs.power_cut(), &["d", "g"]), None);
        fs.fsync(d).unwrap();
        let cut = fs.power_cut();
        assert_eq!(bytes_at(&cut, &["d", "g"]), Some(b"data".to_vec()));
        assert_eq!(cut.attr(resolve(&cut, &["f"]).unwrap()).unwrap().nlink, 2);
        assert_eq!(fs.link(d, ROOT, n("dirlink")), Err(Errno::EPERM));
    }

    #[test]
    fn rule3_rename_survives_only_with_a_directory_fsync() {
        let mut fs = Fs::new();
        let f = file(&mut fs, ROOT, "new.tmp", b"new");
        fs.fsync(f).unwrap();
        let old = file(&mut fs, ROOT, "state", b"old");
        fs.fsync(old).unwrap();
        fs.fsync(ROOT).unwrap();
        fs.rename(ROOT, n("new.tmp"), ROOT, n("state"), false)
            .unwrap();
        let cut = fs.power_cut();
        assert_eq!(bytes_at(&cut, &["state"]), Some(b"old".to_vec()));
        assert!(resolve(&cut, &["new.tmp"]).is_some());
        fs.fsync(ROOT).unwrap();
        let cut = fs.power_cut();
        assert_eq!(bytes_at(&cut, &["state"]), Some(b"new".to_vec()));
        assert_eq!(resolve(&cut, &["new.tmp"]), None);
    }

    #[test]
    fn rule3_rename_survived_but_the_data_did_not() {
        // The classic bug: write, rename over, fsync the directory, but
        // never fsync the file. The new name survives with the file's
        // durable content: here, none.
        let mut fs = Fs::new();
        let old = file(&mut fs, ROOT, "state", b"old");
        fs.fsync(old).unwrap();
        fs.fsync(ROOT).unwrap();
        let f = file(&mut fs, ROOT, "state.tmp", b"new contents");
        fs.rename(ROOT, n("state.tmp"), ROOT, n("state"), false)
            .unwrap();
        fs.fsync(ROOT).unwrap();
        assert_eq!(bytes_at(&fs.power_cut(), &["state"]), Some(Vec::new()));
        // Short: part of the data was fsynced before more was appended.
        fs.set_size(f, 3).unwrap();
        fs.fsync(f).unwrap();
        fs.write(f, 3, b" contents").unwrap();
        assert_eq!(bytes_at(&fs.power_cut(), &["state"]), Some(b"new".to_vec()));
    }

    #[test]
    fn rule3_rename_between_directories_is_atomic_with_either_fsync() {
        for fsync_source in [false, true] {
            let mut fs = Fs::new();
            let a = fs.mkdir(ROOT, n("a"), 0o755).unwrap();
            let b = fs.mkdir(ROOT, n("b"), 0o755).unwrap();
            let g = fs.mkdir(a, n("gen"), 0o755).unwrap();
            let f = file(&mut fs, g, "f", b"data");
            for ino in [f, g, a, b, ROOT] {
                fs.fsync(ino).unwrap();
            }
            fs.rename(a, n("gen"), b, n("gen"), false).unwrap();
            let cut = fs.power_cut();
            assert!(resolve(&cut, &["a", "gen", "f"]).is_some());
            assert_eq!(resolve(&cut, &["b", "gen"]), None);
            fs.fsync(if fsync_source { a } else { b }).unwrap();
            let cut = fs.power_cut();
            assert_eq!(
                resolve(&cut, &["a", "gen"]),
                None,
                "source fsync {fsync_source}"
            );
            assert_eq!(bytes_at(&cut, &["b", "gen", "f"]), Some(b"data".to_vec()));
            assert!(cut.anomalies().is_empty());
        }
    }

    #[test]
    fn rule3_a_chain_of_renames_is_durable_as_a_whole() {
        let mut fs = Fs::new();
        let a = fs.mkdir(ROOT, n("a"), 0o755).unwrap();
        let b = fs.mkdir(ROOT, n("b"), 0o755).unwrap();
        let c = fs.mkdir(ROOT, n("c"), 0o755).unwrap();
        let f = file(&mut fs, a, "x", b"data");
        for ino in [f, a, b, c, ROOT] {
            fs.fsync(ino).unwrap();
        }
        fs.rename(a, n("x"), b, n("x"), false).unwrap();
        fs.rename(b, n("x"), b, n("y"), false).unwrap();
        fs.rename(b, n("y"), c, n("z"), false).unwrap();
        fs.fsync(c).unwrap();
        let cut = fs.power_cut();
        assert_eq!(resolve(&cut, &["a", "x"]), None);
        assert_eq!(resolve(&cut, &["b", "x"]), None);
        assert_eq!(resolve(&cut, &["b", "y"]), None);
        assert_eq!(bytes_at(&cut, &["c", "z"]), Some(b"data".to_vec()));
        assert_eq!(
            cut.attr(resolve(&cut, &["c", "z"]).unwrap()).unwrap().nlink,
            1
        );
    }

    #[test]
    fn rule4_power_cut_keeps_only_what_durable_entries_reach() {
        let mut fs = Fs::new();
        let d = fs.mkdir(ROOT, n("d"), 0o755).unwrap();
        let f = file(&mut fs, d, "f", b"data");
        fs.fsync(f).unwrap();
        fs.fsync(d).unwrap();
        fs.fsync(ROOT).unwrap();
        // Removed live, subtree durable: the power cut brings it back.
        fs.unlink(d, n("f")).unwrap();
        fs.rmdir(ROOT, n("d")).unwrap();
        let cut = fs.power_cut();
        assert_eq!(bytes_at(&cut, &["d", "f"]), Some(b"data".to_vec()));
        // Created but never reachable durably: gone, whatever was fsynced.
        let e = fs.mkdir(ROOT, n("e"), 0o755).unwrap();
        let g = file(&mut fs, e, "g", b"data");
        fs.fsync(g).unwrap();
        fs.fsync(e).unwrap();
        let cut = fs.power_cut();
        assert_eq!(resolve(&cut, &["e"]), None);
        assert!(cut.read(g, 0, 10).is_err(), "unreachable inode dropped");
        // A clean shutdown keeps the live state.
        let clean = fs.sync_all();
        assert_eq!(bytes_at(&clean, &["e", "g"]), Some(b"data".to_vec()));
        assert_eq!(resolve(&clean, &["d"]), None);
    }

    #[test]
    fn rule5_symlink_target_is_written_with_the_inode() {
        let mut fs = Fs::new();
        fs.symlink(ROOT, n("current.tmp"), Path::new("generations/2"))
            .unwrap();
        fs.rename(ROOT, n("current.tmp"), ROOT, n("current"), false)
            .unwrap();
        assert_eq!(resolve(&fs.power_cut(), &["current"]), None);
        fs.fsync(ROOT).unwrap();
        let cut = fs.power_cut();
        let link = resolve(&cut, &["current"]).unwrap();
        assert_eq!(cut.readlink(link).unwrap(), Path::new("generations/2"));
    }

    #[test]
    fn readdir_positions_survive_removal_while_listing() {
        let mut fs = Fs::new();
        for i in 0..10 {
            file(&mut fs, ROOT, &format!("f{i}"), b"");
        }
        let first = fs.entries(ROOT, 0).unwrap();
        let (pos, _, _, _) = first[5].clone();
        for (_, name, _, _) in &first[2..6] {
            fs.unlink(ROOT, name).unwrap();
        }
        let rest: Vec<String> = fs
            .entries(ROOT, pos)
            .unwrap()
            .into_iter()
            .map(|e| e.1.to_string_lossy().into_owned())
            .collect();
        assert_eq!(rest, ["f4", "f5", "f6", "f7", "f8", "f9"]);
    }

    #[test]
    fn rename_refuses_what_rename_2_refuses() {
        let mut fs = Fs::new();
        let d = fs.mkdir(ROOT, n("d"), 0o755).unwrap();
        let sub = fs.mkdir(d, n("sub"), 0o755).unwrap();
        file(&mut fs, sub, "f", b"");
        file(&mut fs, ROOT, "f", b"");
        let e = fs.mkdir(ROOT, n("e"), 0o755).unwrap();
        file(&mut fs, e, "x", b"");
        assert_eq!(
            fs.rename(ROOT, n("d"), sub, n("d"), false),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            fs.rename(ROOT, n("d"), ROOT, n("f"), false),
            Err(Errno::ENOTDIR)
        );
        assert_eq!(
            fs.rename(ROOT, n("f"), ROOT, n("d"), false),
            Err(Errno::EISDIR)
        );
        assert_eq!(
            fs.rename(ROOT, n("d"), ROOT, n("e"), false),
            Err(Errno::ENOTEMPTY)
        );
        assert_eq!(
            fs.rename(ROOT, n("f"), ROOT, n("e"), true),
            Err(Errno::EEXIST)
        );
        assert_eq!(fs.rmdir(ROOT, n("d")), Err(Errno::ENOTEMPTY));
        assert_eq!(fs.unlink(ROOT, n("d")), Err(Errno::EISDIR));
        assert_eq!(fs.path(sub), "d/sub");
    }
}
