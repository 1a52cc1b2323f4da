//! How far an unpack has got, for a display. The library only counts: the
//! program decides whether and how to show it, so nothing here knows about
//! terminals.

use std::io::{self, Write};

/// Told how an unpack advances. Both methods have empty defaults. Calls
/// come from the unpacking thread between writes, so they must be cheap.
pub trait UnpackProgress {
    /// The work expected in all, as known so far: `bytes` to write and
    /// `plugins` plugin folders. Called again whenever an estimate is
    /// corrected (a side archive's files are known only once it is read).
    fn expected(&self, bytes: u64, plugins: u64) {
        let _ = (bytes, plugins);
    }

    /// `bytes` more were written.
    fn written(&self, bytes: u64) {
        let _ = bytes;
    }
}

/// No display: what the calls without a progress argument use.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl UnpackProgress for NoProgress {}

/// The expected totals of one unpack, corrected as side archives are read.
pub(crate) struct Tracker<'p> {
    pub(crate) progress: &'p dyn UnpackProgress,
    bytes: u64,
    plugins: u64,
}

impl<'p> Tracker<'p> {
    pub(crate) fn new(progress: &'p dyn UnpackProgress) -> Tracker<'p> {
        Tracker {
            progress,
            bytes: 0,
            plugins: 0,
        }
    }

    /// A side archive of `size` bytes will be spooled and then unpacked:
    /// until its entries are read, its files are guessed at its own size
    /// (plugin libraries barely compress).
    pub(crate) fn side_archive(&mut self, size: u64) {
        self.bytes = self.bytes.saturating_add(size.saturating_mul(2));
        self.progress.expected(self.bytes, self.plugins);
    }

    /// The side archive of `size` bytes holds `files` bytes in `plugins`
    /// plugin folders: replaces the guess.
    pub(crate) fn side_read(&mut self, size: u64, files: u64, plugins: usize) {
        self.bytes = self.bytes.saturating_sub(size).saturating_add(files);
        self.plugins = self.plugins.saturating_add(plugins as u64);
        self.progress.expected(self.bytes, self.plugins);
    }
}

/// A writer that tells `progress` how much went through it.
pub(crate) struct Counted<'a, W> {
    pub(crate) inner: W,
    pub(crate) progress: &'a dyn UnpackProgress,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.written(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[derive(Default)]
    struct Seen {
        expected: Cell<(u64, u64)>,
        written: Cell<u64>,
    }

    impl UnpackProgress for Seen {
        fn expected(&self, bytes: u64, plugins: u64) {
            self.expected.set((bytes, plugins));
        }
        fn written(&self, bytes: u64) {
            self.written.set(self.written.get() + bytes);
        }
    }

    #[test]
    fn the_guess_is_replaced_and_writes_are_counted() {
        let seen = Seen::default();
        let mut t = Tracker::new(&seen);
        t.side_archive(100);
        assert_eq!(seen.expected.get(), (200, 0));
        t.side_read(100, 150, 3);
        assert_eq!(seen.expected.get(), (250, 3));
        let mut out = Counted {
            inner: Vec::new(),
            progress: &seen,
        };
        out.write_all(b"hello").unwrap_or_default();
        assert_eq!(seen.written.get(), 5);
    }
}
