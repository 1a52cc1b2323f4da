//! Who crashed, on Windows: not recorded. The Unix fault handler (`fault.rs`)
//! writes the blame into the crash journal from a signal handler; Windows
//! has neither the signals nor the journal (`Journal::open` refuses there),
//! so a crash of a pendant plugin takes the process down without naming the
//! plugin (docs/windows.md). Both functions keep the Unix signatures and say
//! that nothing was done.

/// Records nothing and returns 0 ("the loader does not list it"): there is
/// no fault handler on Windows to use the code ranges.
pub fn register_library(_plugin: usize, _path: &std::path::Path, _bias: Option<usize>) -> usize {
    0
}

/// Installs nothing; says so once. (Unreachable in practice: the host
/// installs the handler only after opening the journal, which Windows
/// refuses.)
pub fn install() {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        log::warn!("no fault handler on Windows: a crash inside a plugin is not blamed on it")
    });
}
