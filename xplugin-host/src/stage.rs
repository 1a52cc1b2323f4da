//! The calls the host makes into a plugin, by name: lifecycle stages in
//! reports, the journal's "in plugin N, stage S" record and the supervisor's
//! timeouts all use this one list.

use serde::Serialize;

/// A call into a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Stage {
    /// `dlopen` and `xplugin_entry` (the library's constructors run here).
    Load,
    /// `init`.
    Init,
    /// `start`.
    Start,
    /// `step`, on the cycle thread.
    Step,
    /// `idle` (client plugins).
    Idle,
    /// A message callback.
    Message,
    /// `reconfigure`.
    Reconfigure,
    /// `stop`.
    Stop,
    /// `destroy`.
    Destroy,
    /// `render` (client plugins, ABI 1.1). Last, so that the journal's
    /// stage numbers of older versions keep their meaning.
    Render,
}

impl Stage {
    /// Every stage, in a fixed order (the journal stores the index).
    pub const ALL: [Stage; 10] = [
        Stage::Load,
        Stage::Init,
        Stage::Start,
        Stage::Step,
        Stage::Idle,
        Stage::Message,
        Stage::Reconfigure,
        Stage::Stop,
        Stage::Destroy,
        Stage::Render,
    ];

    /// The lower-case name used in reports (`init`, `step`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Load => "load",
            Stage::Init => "init",
            Stage::Start => "start",
            Stage::Step => "step",
            Stage::Idle => "idle",
            Stage::Message => "message",
            Stage::Reconfigure => "reconfigure",
            Stage::Stop => "stop",
            Stage::Destroy => "destroy",
            Stage::Render => "render",
        }
    }

    /// Position in [`Stage::ALL`].
    pub fn index(self) -> u32 {
        Stage::ALL.iter().position(|s| *s == self).unwrap_or(0) as u32
    }

    /// The stage at position `i` of [`Stage::ALL`].
    pub fn from_index(i: u32) -> Option<Stage> {
        Stage::ALL.get(i as usize).copied()
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
