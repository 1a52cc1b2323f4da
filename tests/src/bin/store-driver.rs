//! Test driver for the install store, run as a separate process by the crash
//! and lock tests so it can be killed (`XPLUGIN_FAILPOINT`, `SIGKILL`) or hold
//! the lock while the test process tries to take it.
//!
//! ```text
//! store-driver ROOT commit FIXTURE      stage FIXTURE's plugins and commit them
//! store-driver ROOT rollback            roll back to the previous generation
//! store-driver ROOT set-enabled NAME true|false
//! store-driver ROOT recover             take the lock (runs recovery) and release it
//! store-driver ROOT hold-lock           take the lock, print "locked PID", hold it until stdin closes
//! ```
//!
//! A FIXTURE directory holds `plan.txt` and one directory per staged plugin.
//! `plan.txt` has one line per change: `add NAME VERSION enabled|disabled`
//! or `remove NAME`. `commit` copies each plugin directory into a fresh
//! staging directory (as an importer unpacks a package) before committing;
//! a file `NAME.values` beside a plugin directory is staged as its
//! configuration values.
//!
//! With `XPLUGIN_DRIVER_READY` set, the driver first prints `ready` on
//! stdout (the crash test starts its kill timer then) and, on success,
//! `took NANOS` (the operation's duration, for calibrating the kill times).
//!
//! Exit status: 0 done, 1 store error (printed), 2 usage or fixture error.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use xplugin_store::{CommitPlan, StagedPlugin, Store, StoreError, ValuesFile};

fn main() -> ExitCode {
    let report_timing = std::env::var_os("XPLUGIN_DRIVER_READY").is_some();
    let started = std::time::Instant::now();
    if report_timing {
        // Tells the crash test that start-up is over and the operation
        // begins, so its random kills land in the operation.
        let mut out = std::io::stdout().lock();
        if writeln!(out, "ready").and_then(|()| out.flush()).is_err() {
            return usage("cannot write \"ready\" to stdout");
        }
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(root), Some(op)) = (args.first(), args.get(1)) else {
        return usage("missing ROOT and OPERATION");
    };
    let rest = args.get(2..).unwrap_or_default();
    let store = match Store::open(Path::new(root)) {
        Ok(store) => store,
        Err(e) => return store_error(&e),
    };
    let result = match (op.as_str(), rest) {
        ("commit", [fixture]) => commit(&store, Path::new(fixture)),
        ("rollback", []) => store
            .lock()
            .and_then(|lock| store.rollback(&lock))
            .map(|_| ())
            .map_err(Failure::Store),
        ("set-enabled", [name, flag]) => match flag.as_str() {
            "true" | "false" => store
                .lock()
                .and_then(|lock| store.set_enabled(&lock, name, flag == "true"))
                .map(|_| ())
                .map_err(Failure::Store),
            _ => Err(Failure::Usage(format!(
                "expected true or false, found {flag:?}"
            ))),
        },
        ("recover", []) => store.lock().map(|_| ()).map_err(Failure::Store),
        ("hold-lock", []) => hold_lock(&store),
        _ => Err(Failure::Usage(format!(
            "unknown operation {op:?} with {} argument(s)",
            rest.len()
        ))),
    };
    match result {
        Ok(()) if report_timing => {
            // The operation's own duration, immune to the test process
            // being descheduled on a loaded machine.
            println!("took {}", started.elapsed().as_nanos());
            ExitCode::SUCCESS
        }
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Store(e)) => store_error(&e),
        Err(Failure::Usage(message)) => usage(&message),
    }
}

enum Failure {
    Store(StoreError),
    Usage(String),
}

fn usage(message: &str) -> ExitCode {
    eprintln!("store-driver: {message}");
    eprintln!("usage: store-driver ROOT commit FIXTURE | rollback | set-enabled NAME true|false | recover | hold-lock");
    ExitCode::from(2)
}

fn store_error(e: &StoreError) -> ExitCode {
    eprintln!("store-driver: {e}");
    ExitCode::from(1)
}

/// One line of `plan.txt`.
enum Change {
    Add {
        name: String,
        version: String,
        enabled: bool,
    },
    Remove(String),
}

fn read_plan(fixture: &Path) -> Result<Vec<Change>, Failure> {
    let path = fixture.join("plan.txt");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))?;
    let mut changes = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["add", name, version, flag @ ("enabled" | "disabled")] => changes.push(Change::Add {
                name: (*name).to_string(),
                version: (*version).to_string(),
                enabled: *flag == "enabled",
            }),
            ["remove", name] => changes.push(Change::Remove((*name).to_string())),
            _ => {
                return Err(Failure::Usage(format!(
                    "{}: bad line {line:?}",
                    path.display()
                )))
            }
        }
    }
    Ok(changes)
}

fn commit(store: &Store, fixture: &Path) -> Result<(), Failure> {
    let changes = read_plan(fixture)?;
    let lock = store.lock().map_err(Failure::Store)?;
    let staging = store.staging(&lock).map_err(Failure::Store)?;
    let mut plan = CommitPlan::default();
    for change in changes {
        match change {
            Change::Add {
                name,
                version,
                enabled,
            } => {
                let dir = staging.plugin_dir(&name).map_err(Failure::Store)?;
                copy_tree(&fixture.join(&name), &dir)
                    .map_err(|e| Failure::Usage(format!("cannot stage {name}: {e}")))?;
                // Its configuration values, when the fixture has NAME.values.
                let values = std::fs::read(fixture.join(format!("{name}.values")))
                    .ok()
                    .map(ValuesFile);
                plan.add_or_replace.push(StagedPlugin {
                    name,
                    version,
                    enabled,
                    dir,
                    values,
                });
            }
            Change::Remove(name) => plan.remove.push(name),
        }
    }
    store
        .commit(&lock, plan)
        .map(|_| ())
        .map_err(Failure::Store)
}

/// Copies regular files and directories (what an importer unpacks).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target: PathBuf = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir(&target)?;
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn hold_lock(store: &Store) -> Result<(), Failure> {
    let lock = store.lock().map_err(Failure::Store)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "locked {}", std::process::id())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Usage(format!("cannot write to stdout: {e}")))?;
    // Hold the lock until the test closes our stdin (or dies).
    let mut sink = String::new();
    while std::io::stdin()
        .lock()
        .read_line(&mut sink)
        .is_ok_and(|n| n > 0)
    {
        sink.clear();
    }
    drop(lock);
    Ok(())
}
