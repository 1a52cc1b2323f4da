//! The FUSE side of [`super`]: serves a [`Fs`] at a mount point with the
//! `fuser` crate, records every durability boundary in order, and cuts
//! power right after a chosen one.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    BsdFileFlags, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};

use super::model::{Attr, Fs, FsResult, Ino, Kind, ROOT};

/// A file system image: what a disk holds while nothing is mounted. Made by
/// a power cut ([`Cut::durable`]), a clean shutdown ([`Mount::shutdown`]) or
/// [`Image::empty`].
#[derive(Debug, Clone)]
pub struct Image {
    fs: Fs,
}

impl Image {
    /// An empty file system (a root directory, mode 0755).
    pub fn empty() -> Image {
        Image { fs: Fs::new() }
    }

    /// What the model could not represent when this image was made (a
    /// directory durable in two places); must be empty.
    pub fn anomalies(&self) -> &[String] {
        self.fs.anomalies()
    }
}

/// A durability boundary: an operation after which a power cut can leave
/// something else than before it, named by the paths it touched (relative
/// to the mount point; `.` is the mount point itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boundary {
    /// `fsync` of a file.
    Fsync(String),
    /// `fsync` of a directory.
    FsyncDir(String),
    /// `rename(from, to)`.
    Rename(String, String),
    /// A new hard link.
    Link(String),
    /// A new symlink.
    Symlink(String),
}

impl fmt::Display for Boundary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Boundary::Fsync(p) => write!(f, "fsync {p}"),
            Boundary::FsyncDir(p) => write!(f, "fsync-dir {p}"),
            Boundary::Rename(from, to) => write!(f, "rename {from} -> {to}"),
            Boundary::Link(p) => write!(f, "link {p}"),
            Boundary::Symlink(p) => write!(f, "symlink {p}"),
        }
    }
}

/// What a power cut right after a boundary left.
#[derive(Debug, Clone)]
pub struct Cut {
    /// The boundary it followed (1-based, counted from the mount).
    pub after: usize,
    /// What the disk holds: the durable state.
    pub durable: Image,
    /// What the programs saw at that instant, all of it made durable: the
    /// image a `kill -9` at that boundary followed by a clean shutdown
    /// leaves (a start state for recovery tests).
    pub live: Image,
}

#[derive(Debug)]
struct State {
    fs: Fs,
    log: Vec<Boundary>,
    cut_after: Option<usize>,
    cut: Option<Cut>,
}

impl State {
    fn dead(&self) -> bool {
        self.cut.is_some()
    }

    fn boundary(&mut self, boundary: Boundary) {
        self.log.push(boundary);
        if self.cut_after == Some(self.log.len()) {
            self.cut_now();
        }
    }

    fn cut_now(&mut self) {
        self.cut = Some(Cut {
            after: self.log.len(),
            durable: Image {
                fs: self.fs.power_cut(),
            },
            live: Image {
                fs: self.fs.sync_all(),
            },
        });
    }

    fn child_path(&self, dir: Ino, name: &OsStr) -> String {
        let name = String::from_utf8_lossy(name.as_bytes());
        if dir == ROOT {
            name.into_owned()
        } else {
            format!("{}/{name}", self.fs.path(dir))
        }
    }
}

/// A mounted [`Image`]. Unmounted by [`Mount::shutdown`], [`Mount::unmount`]
/// or when dropped.
#[derive(Debug)]
pub struct Mount {
    session: Option<fuser::BackgroundSession>,
    state: Arc<Mutex<State>>,
    dir: PathBuf,
    /// Ends this mount's connection.
    aborter: Aborter,
}

/// Ends the FUSE connection whose `abort` file this is: every request
/// waiting on it fails with `ENOTCONN`, later ones too, and the serving
/// thread's read returns `ENODEV`, so it ends.
#[derive(Debug, Clone)]
pub struct Aborter {
    /// The connection's `abort` file in the fusectl file system
    /// (`/sys/fs/fuse/connections/N/abort`), opened while it was mounted;
    /// `None` where fusectl is not available.
    ///
    /// Held open, not named by path: fusectl names a connection by its
    /// device minor, which the kernel hands to the next mount once this one
    /// is gone, so a path written late could end another test's connection.
    /// The open file stays this connection's: once it ends, fusectl unlinks
    /// the file from it and a write does nothing.
    abort: Option<Arc<std::fs::File>>,
}

impl Aborter {
    /// Aborts the connection; false where that is not possible (no fusectl)
    /// or it is already gone.
    pub fn abort(&self) -> bool {
        use std::io::Write as _;
        self.abort
            .as_ref()
            .is_some_and(|f| (&**f).write_all(b"1").is_ok())
    }
}

/// Where fusectl is mounted; mounted there by root if it is not yet.
const FUSECTL: &str = "/sys/fs/fuse/connections";

/// The `abort` file of the FUSE connection mounted at `dir`: fusectl names
/// a connection by the minor number of its anonymous device (`st_dev`).
fn abort_file_of(dir: &Path) -> Option<Arc<std::fs::File>> {
    use std::os::unix::fs::MetadataExt;
    static MOUNTED: std::sync::Once = std::sync::Once::new();
    MOUNTED.call_once(|| {
        let empty = std::fs::read_dir(FUSECTL).is_ok_and(|mut d| d.next().is_none());
        if empty {
            // Only root may; without it the teardown cannot abort and
            // relies on the unmount alone, as before.
            let _ = nix::mount::mount(
                Some("fusectl"),
                FUSECTL,
                Some("fusectl"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            );
        }
    });
    let dev = std::fs::metadata(dir).ok()?.dev();
    let abort = Path::new(FUSECTL)
        .join(nix::sys::stat::minor(dev).to_string())
        .join("abort");
    std::fs::OpenOptions::new()
        .write(true)
        .open(abort)
        .ok()
        .map(Arc::new)
}

impl Mount {
    /// Mounts a copy of `image` at the existing empty directory `dir`.
    ///
    /// # Errors
    /// When FUSE is unavailable (no `/dev/fuse`, no permission to mount).
    pub fn new(image: &Image, dir: &Path) -> io::Result<Mount> {
        let state = Arc::new(Mutex::new(State {
            fs: image.fs.clone(),
            log: Vec::new(),
            cut_after: None,
            cut: None,
        }));
        let adapter = PowerFuse {
            state: Arc::clone(&state),
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
        };
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("powerfs".into()),
            MountOption::Subtype("powerfs".into()),
        ];
        let session = fuser::spawn_mount(adapter, dir, &config)?;
        Ok(Mount {
            session: Some(session),
            state,
            dir: dir.to_path_buf(),
            aborter: Aborter {
                abort: abort_file_of(dir),
            },
        })
    }

    /// What ends this mount's connection from another thread (a watchdog),
    /// so a request stuck on it returns.
    pub fn aborter(&self) -> Aborter {
        self.aborter.clone()
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Arms a power cut right after boundary `k` (1-based, counted from the
    /// mount): that operation completes, then the durable state is taken
    /// ([`Mount::take_cut`]) and every later request fails with `EIO`.
    pub fn cut_after(&self, k: usize) {
        self.state().cut_after = Some(k);
    }

    /// Every boundary crossed since the mount, in order.
    pub fn boundaries(&self) -> Vec<Boundary> {
        self.state().log.clone()
    }

    /// The cut, once it happened.
    pub fn take_cut(&self) -> Option<Cut> {
        self.state().cut.take()
    }

    /// Cuts power now (if it was not cut already) and returns what the disk
    /// holds; every later request fails with `EIO`.
    pub fn power_cut(&self) -> Image {
        let mut state = self.state();
        if state.cut.is_none() {
            state.cut_now();
        }
        state
            .cut
            .as_ref()
            .map_or_else(Image::empty, |c| c.durable.clone())
    }

    /// Unmounts, then returns the live state made durable: a clean shutdown.
    ///
    /// # Errors
    /// If unmounting fails.
    pub fn shutdown(mut self) -> io::Result<Image> {
        self.unmount_now()?;
        Ok(Image {
            fs: self.state().fs.sync_all(),
        })
    }

    /// Unmounts.
    ///
    /// # Errors
    /// If unmounting fails.
    pub fn unmount(mut self) -> io::Result<()> {
        self.unmount_now()
    }

    fn unmount_now(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        // End the connection before unmounting. The operation under test has
        // returned, so nothing waits on it; an unmount ends it as well, but
        // only when this was the file system's last mount. A copy of the
        // mount in another mount namespace, or a descriptor some other
        // process still holds, would keep the connection and the serving
        // thread alive, and the join below would wait forever: the hang
        // that once stopped a CI run inside this test.
        let aborted = self.aborter.abort();
        // A child that another test thread forks holds this mount's open
        // descriptors until its exec: retry while the mount is busy.
        let mut busy = 0;
        loop {
            match nix::mount::umount(&self.dir) {
                Ok(()) => break,
                Err(nix::errno::Errno::EBUSY) if busy < 400 => {
                    busy += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                // Busy for good, but the connection is ended: detach the
                // mount point; its last user releases the rest.
                Err(nix::errno::Errno::EBUSY) if aborted => {
                    nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH)?;
                    break;
                }
                // Not root (EPERM), or busy for good: fuser's own unmount
                // (through fusermount3) and its error.
                Err(_) => return session.umount_and_join(),
            }
        }
        // Unmounted: the rest of the session goes first (its own unmount
        // attempt finds a plain directory), then the serving thread, which
        // ends with the connection, is joined.
        let guard = {
            let session = session;
            session.guard
        };
        // Ended, the connection makes the thread's read fail at once; one
        // that still does not end is stuck in the model, and is left behind
        // with an error rather than waited for forever.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !guard.is_finished() {
            if std::time::Instant::now() > deadline {
                return Err(io::Error::other(
                    "the powerfs thread did not end within 30 s of the unmount",
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        match guard
            .join()
            .map_err(|_| io::Error::other("the powerfs thread panicked"))?
        {
            // The kernel's word for a request the serving thread was reading
            // when the abort above ended the connection (fs/fuse/dev.c
            // answers that read with ECONNABORTED, an idle read with
            // ENODEV): the end this teardown asked for, not a failure.
            Err(e) if aborted && e.raw_os_error() == Some(nix::libc::ECONNABORTED) => Ok(()),
            other => other,
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = self.unmount_now();
    }
}

/// A poisoned lock only means a test thread panicked while holding it; the
/// state itself is consistent (every change is one call), so keep serving.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The kernel may cache names and attributes: only this mount changes them.
const TTL: Duration = Duration::from_secs(60);

struct PowerFuse {
    state: Arc<Mutex<State>>,
    uid: u32,
    gid: u32,
}

impl PowerFuse {
    /// Runs `f` on the state unless power was cut (then `EIO`).
    fn with<T>(&self, f: impl FnOnce(&mut State) -> FsResult<T>) -> Result<T, Errno> {
        let mut state = lock(&self.state);
        if state.dead() {
            return Err(Errno::EIO);
        }
        f(&mut state).map_err(|e| Errno::from_i32(e as i32))
    }

    fn file_attr(&self, a: &Attr) -> FileAttr {
        // A fixed time: nothing under test looks at times.
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        FileAttr {
            ino: INodeNo(a.ino),
            size: a.size,
            blocks: a.size.div_ceil(512),
            atime: time,
            mtime: time,
            ctime: time,
            crtime: time,
            kind: kind_of(a.kind),
            perm: (a.mode & 0o7777) as u16,
            nlink: a.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn entry(&self, reply: ReplyEntry, result: Result<Attr, Errno>) {
        match result {
            Ok(attr) => reply.entry(&TTL, &self.file_attr(&attr), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    /// fsync of a file or directory: a boundary named `boundary(path)`.
    fn sync(&self, ino: INodeNo, boundary: fn(String) -> Boundary, reply: ReplyEmpty) {
        let result = self.with(|s| {
            s.fs.fsync(ino.0)?;
            let path = s.fs.path(ino.0);
            s.boundary(boundary(path));
            Ok(())
        });
        Self::empty(reply, result);
    }

    fn empty(reply: ReplyEmpty, result: Result<(), Errno>) {
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}

fn kind_of(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
    }
}

impl Filesystem for PowerFuse {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let result = self.with(|s| {
            let ino = s.fs.lookup(parent.0, name)?;
            s.fs.attr(ino)
        });
        self.entry(reply, result);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.with(|s| s.fs.attr(ino.0)) {
            Ok(attr) => reply.attr(&TTL, &self.file_attr(&attr)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Owners and times are not modelled; the mode and the size are.
        let result = self.with(|s| {
            if let Some(mode) = mode {
                s.fs.set_mode(ino.0, mode)?;
            }
            if let Some(size) = size {
                s.fs.set_size(ino.0, size)?;
            }
            s.fs.attr(ino.0)
        });
        match result {
            Ok(attr) => reply.attr(&TTL, &self.file_attr(&attr)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.with(|s| Ok(s.fs.readlink(ino.0)?.as_os_str().as_bytes().to_vec())) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let result = self.with(|s| {
            // Only regular files: the store refuses everything else anyway.
            if mode & nix::sys::stat::SFlag::S_IFMT.bits() != nix::sys::stat::SFlag::S_IFREG.bits()
            {
                return Err(nix::errno::Errno::EPERM);
            }
            let ino = s.fs.create(parent.0, name, mode & !umask)?;
            s.fs.attr(ino)
        });
        self.entry(reply, result);
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let result = self.with(|s| {
            let ino = s.fs.mkdir(parent.0, name, mode & !umask)?;
            s.fs.attr(ino)
        });
        self.entry(reply, result);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(reply, self.with(|s| s.fs.unlink(parent.0, name)));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(reply, self.with(|s| s.fs.rmdir(parent.0, name)));
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let result = self.with(|s| {
            let ino = s.fs.symlink(parent.0, link_name, target)?;
            let path = s.child_path(parent.0, link_name);
            s.boundary(Boundary::Symlink(path));
            s.fs.attr(ino)
        });
        self.entry(reply, result);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let result = self.with(|s| {
            if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
                return Err(nix::errno::Errno::EINVAL);
            }
            let from = s.child_path(parent.0, name);
            let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
            s.fs.rename(parent.0, name, newparent.0, newname, noreplace)?;
            let to = s.child_path(newparent.0, newname);
            s.boundary(Boundary::Rename(from, to));
            Ok(())
        });
        Self::empty(reply, result);
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let result = self.with(|s| {
            s.fs.link(ino.0, newparent.0, newname)?;
            let path = s.child_path(newparent.0, newname);
            s.boundary(Boundary::Link(path));
            s.fs.attr(ino.0)
        });
        self.entry(reply, result);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.with(|s| s.fs.attr(ino.0)) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.with(|s| Ok(s.fs.read(ino.0, offset, size)?.to_vec())) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.with(|s| s.fs.write(ino.0, offset, data)) {
            Ok(n) => reply.written(u32::try_from(n).unwrap_or(u32::MAX)),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) is no durability point; writes reached the model already.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.sync(ino, Boundary::Fsync, reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.with(|s| s.fs.entries(ino.0, u64::MAX)) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.with(|s| s.fs.entries(ino.0, offset)) {
            Ok(entries) => {
                for (cookie, name, child, kind) in entries {
                    if reply.add(INodeNo(child), cookie, kind_of(kind), &name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.sync(ino, Boundary::FsyncDir, reply);
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let result = self.with(|s| {
            let ino = s.fs.create(parent.0, name, mode & !umask)?;
            s.fs.attr(ino)
        });
        match result {
            Ok(attr) => reply.created(
                &TTL,
                &self.file_attr(&attr),
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }
}
