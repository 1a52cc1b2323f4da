//! The import's progress bar: drawn on stderr with `indicatif`, only when
//! both stdout and stderr are terminals and the output is not JSON, so a
//! pipe, a log file or `--json` sees exactly what it saw before.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use xplugin_host::progress::{ImportProgress, ImportStage, UnpackProgress};
use xplugin_model::manifest::Side;

/// Bytes unpacked against the bytes expected (with indicatif's estimate of
/// the time left), and plugins checked against plugins found.
pub struct ImportBar {
    bar: ProgressBar,
    checked: AtomicU64,
    plugins: AtomicU64,
}

impl ImportBar {
    /// A bar for an import, or `None` when nothing should be drawn: with
    /// `--json`, or when stdout or stderr is not a terminal.
    pub fn for_terminal(json: bool) -> Option<ImportBar> {
        if json || !std::io::stdout().is_terminal() || !std::io::stderr().is_terminal() {
            return None;
        }
        // A template that does not parse is a bug here, not an input
        // problem: fall back to indicatif's default bar rather than fail.
        // wide_bar takes what the terminal's width leaves, so the line
        // never wraps (a wrapped bar redraws as two).
        let style = ProgressStyle::with_template(
            "{prefix:>10} [{wide_bar}] {bytes}/{total_bytes}, {msg}, {eta} left",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(ImportStage::Unpacking.label());
        let b = ImportBar {
            bar,
            checked: AtomicU64::new(0),
            plugins: AtomicU64::new(0),
        };
        b.show_plugins();
        Some(b)
    }

    /// Removes the bar, before the report is printed.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn show_plugins(&self) {
        let checked = self.checked.load(Ordering::Relaxed);
        let plugins = self.plugins.load(Ordering::Relaxed);
        self.bar
            .set_message(format!("{checked}/{plugins} plugins checked"));
    }
}

impl UnpackProgress for ImportBar {
    fn expected(&self, bytes: u64, plugins: u64) {
        self.bar.set_length(bytes);
        self.plugins.store(plugins, Ordering::Relaxed);
        self.show_plugins();
    }

    fn written(&self, bytes: u64) {
        self.bar.inc(bytes);
    }
}

impl ImportProgress for ImportBar {
    fn stage(&self, stage: ImportStage) {
        self.bar.set_prefix(stage.label());
        if stage != ImportStage::Unpacking {
            // Every byte is unpacked by now; a guess that was too high
            // must not leave the bar short of its end.
            self.bar.set_length(self.bar.position());
        }
    }

    fn plugin_checked(&self, _side: Side, _name: &str) {
        self.checked.fetch_add(1, Ordering::Relaxed);
        self.show_plugins();
    }
}

impl Drop for ImportBar {
    fn drop(&mut self) {
        // An error path that returns early still leaves a clean line.
        self.bar.finish_and_clear();
    }
}
