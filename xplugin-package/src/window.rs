//! A byte range of an open file, read by offset: the whole package, an
//! inner `client.zip` / `controller.zip` that the package stores without
//! compression (read where it lies instead of being copied out first), or
//! a library whose headers are inspected.
//!
//! Copying ("spooling") each inner zip to a staging file wrote every byte of
//! the package twice (425 MB written for a 211 MB package in
//! BENCHMARKS.md), and the copy's dirty pages competed with the install's
//! fsyncs. A stored entry's bytes are the inner archive itself, so reading
//! them in place costs one read pass for the outer CRC-32 and nothing else.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// `len` bytes of `file` starting at `base`. Every read is positional (no
/// shared cursor: the zip crate's reader and ours cannot disturb each other)
/// and ends at the window's end, whatever the file holds after it.
#[derive(Debug)]
pub(crate) struct Window {
    file: File,
    base: u64,
    len: u64,
}

impl Window {
    /// The whole of `file`.
    ///
    /// # Errors
    /// The error of reading the file's length.
    pub fn whole(file: File) -> io::Result<Window> {
        let len = file.metadata()?.len();
        Ok(Window { file, base: 0, len })
    }

    /// `len` bytes of `file` from `base`.
    fn part(file: File, base: u64, len: u64) -> Window {
        Window { file, base, len }
    }

    /// The window's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Reads exactly `buf.len()` bytes at `offset` (from the window's start).
    ///
    /// # Errors
    /// `UnexpectedEof` for a range that does not lie inside the window, or
    /// the file's read error.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        crate::headers::read_exact_at(&self.file, buf, self.base + offset)
    }

    /// Reads up to `buf.len()` bytes at `offset`, fewer at the window's end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let left = self.len.saturating_sub(offset);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let Some(buf) = buf.get_mut(..n) else {
            return Ok(0);
        };
        if n == 0 {
            return Ok(0);
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_at(&self.file, buf, self.base + offset)
        }
        #[cfg(windows)]
        {
            std::os::windows::fs::FileExt::seek_read(&self.file, buf, self.base + offset)
        }
    }

    /// A reader with its own cursor, starting at the window's start.
    pub fn reader(&self) -> WindowReader<'_> {
        WindowReader {
            window: self,
            pos: 0,
        }
    }

    /// The `len` bytes at `offset` of this window, as a window of their own
    /// (on another handle of the same file).
    ///
    /// # Errors
    /// `UnexpectedEof` for a range that does not lie inside this window, or
    /// the error of duplicating the handle.
    pub fn part_at(&self, offset: u64, len: u64) -> io::Result<Window> {
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(Window::part(
            self.file.try_clone()?,
            self.base + offset,
            len,
        ))
    }
}

/// `Read + Seek` over a [`Window`], for the zip crate and the data copy.
#[derive(Debug, Clone)]
pub(crate) struct WindowReader<'w> {
    window: &'w Window,
    pos: u64,
}

impl Read for WindowReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.window.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for WindowReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.window.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the archive",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_stay_inside_the_window() {
        let mut f = tempfile::tempfile().expect("temp file");
        f.write_all(b"0123456789abcdef").expect("write");
        let w = Window::whole(f)
            .expect("whole")
            .part_at(4, 8)
            .expect("part"); // "456789ab"
        assert_eq!(w.len(), 8);
        let mut buf = [0u8; 3];
        w.read_exact_at(&mut buf, 5).expect("inside");
        assert_eq!(&buf, b"9ab");
        assert!(w.read_exact_at(&mut buf, 6).is_err(), "past the end");
        assert!(w.read_exact_at(&mut buf, u64::MAX).is_err(), "overflow");
        assert!(w.part_at(4, 5).is_err(), "a part past the end");
        let mut r = w.reader();
        let mut all = Vec::new();
        r.read_to_end(&mut all).expect("read");
        assert_eq!(all, b"456789ab");
        assert_eq!(r.seek(SeekFrom::End(-2)).expect("seek"), 6);
        let mut two = Vec::new();
        r.read_to_end(&mut two).expect("read");
        assert_eq!(two, b"ab");
        assert!(r.seek(SeekFrom::Current(-100)).is_err());
        r.seek(SeekFrom::Start(100))
            .expect("past the end is allowed");
        assert_eq!(r.read(&mut buf).expect("read"), 0);
    }
}
