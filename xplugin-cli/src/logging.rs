//! Logging for the host programs: human-readable lines on stderr and, when
//! asked (the daemon under systemd), the same lines to syslog.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::Mutex;

#[cfg(unix)]
type Syslog = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;
/// No syslog on Windows: `--syslog` is refused there with a warning, so no
/// value of this type is ever made.
#[cfg(not(unix))]
enum Syslog {}

struct HostLogger {
    program: &'static str,
    level: LevelFilter,
    #[cfg_attr(not(unix), allow(dead_code))] // always None on Windows
    syslog: Option<Mutex<Syslog>>,
}

impl Log for HostLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        let _ = writeln!(
            std::io::stderr().lock(),
            "{}: {level}: {}",
            self.program,
            record.args()
        );
        if let Ok(mut sink) = FILE_SINK.lock() {
            if let Some(sink) = sink.as_mut() {
                sink.write(&format!(
                    "{} {}: {level}: {}\n",
                    unix_now(),
                    self.program,
                    record.args()
                ));
            }
        }
        #[cfg(unix)]
        if let Some(s) = &self.syslog {
            let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
            let msg = record.args().to_string();
            let _ = match record.level() {
                Level::Error => s.err(msg),
                Level::Warn => s.warning(msg),
                Level::Info => s.info(msg),
                Level::Debug | Level::Trace => s.debug(msg),
            };
        }
    }

    fn flush(&self) {}
}

/// A log file that keeps at most about `max` bytes: when it grows past
/// that, it becomes `NAME.1` (replacing the older one) and a new file starts.
/// For the diagnostics archive: the recent lines of a daemon survive its
/// crash.
struct RotatingFile {
    path: std::path::PathBuf,
    file: std::fs::File,
    written: u64,
    max: u64,
}

impl RotatingFile {
    fn open(path: &std::path::Path, max: u64) -> std::io::Result<RotatingFile> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let written = file.metadata().map_or(0, |m| m.len());
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file,
            written,
            max,
        })
    }

    fn write(&mut self, line: &str) {
        if self.written + line.len() as u64 > self.max {
            let old = self.path.with_extension("log.1");
            let _ = std::fs::rename(&self.path, old);
            if let Ok(f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
            {
                self.file = f;
                self.written = 0;
            }
        }
        if self.file.write_all(line.as_bytes()).is_ok() {
            self.written += line.len() as u64;
        }
    }
}

static FILE_SINK: Mutex<Option<RotatingFile>> = Mutex::new(None);

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Also writes every line logged from now on to `path` (created with its
/// directory; rotated at `max_bytes`, one older file kept as `NAME.log.1`).
///
/// # Errors
/// The I/O error if the file cannot be opened.
pub fn log_to_file(path: &std::path::Path, max_bytes: u64) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let sink = RotatingFile::open(path, max_bytes)?;
    if let Ok(mut slot) = FILE_SINK.lock() {
        *slot = Some(sink);
    }
    Ok(())
}

/// Installs the logger. `verbosity` 0 = warnings, 1 = info, 2 = debug,
/// 3+ = trace. With `to_syslog`, lines also go to the local syslog (a
/// missing syslog socket is reported once on stderr, not fatal).
pub fn init(program: &'static str, verbosity: u8, to_syslog: bool) {
    let level = match verbosity {
        0 => LevelFilter::Warn,
        1 => LevelFilter::Info,
        2 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    };
    #[cfg(not(unix))]
    let syslog: Option<Mutex<Syslog>> = {
        if to_syslog {
            eprintln!("{program}: warning: syslog exists only on Unix; logging to stderr only");
        }
        None
    };
    #[cfg(unix)]
    let syslog = if to_syslog {
        let formatter = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_DAEMON,
            hostname: None,
            process: program.into(),
            pid: std::process::id(),
        };
        match syslog::unix(formatter) {
            Ok(l) => Some(Mutex::new(l)),
            Err(e) => {
                eprintln!("{program}: warning: syslog unavailable ({e}); logging to stderr only");
                None
            }
        }
    } else {
        None
    };
    let logger = HostLogger {
        program,
        level,
        syslog,
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}
