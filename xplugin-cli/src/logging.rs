//! Logging for the host programs: human-readable lines on stderr and, when
//! asked (the daemon under systemd), the same lines to syslog.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::Mutex;

type Syslog = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

struct HostLogger {
    program: &'static str,
    level: LevelFilter,
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
