//! `rss-probe PROGRAM ARGS...`: runs one program, waits for it, and prints
//! `exit=<code> maxrss_kib=<peak resident set size>` on stderr's last line,
//! then exits with the program's status. The probe has exactly one child, so
//! `getrusage(RUSAGE_CHILDREN)` is that child's peak RSS (a test harness
//! cannot use it directly: its other tests spawn children too).

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(program) = args.next() else {
        eprintln!("usage: rss-probe PROGRAM [ARGS...]");
        return ExitCode::from(64);
    };
    let status = match Command::new(&program).args(args).status() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rss-probe: cannot run {}: {e}", program.to_string_lossy());
            return ExitCode::from(127);
        }
    };
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN);
    let maxrss = usage.map(|u| u.max_rss()).unwrap_or(-1);
    let code = status.code().unwrap_or(-1);
    eprintln!("exit={code} maxrss_kib={maxrss}");
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
