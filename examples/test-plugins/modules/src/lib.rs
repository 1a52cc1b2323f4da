//! Test fixture `rcell` (controller plugin, version 0.1.0): one library
//! with three entry modules, declared with `export_plugin!`'s
//! `modules = [...]` form, listed out of order on purpose (`alpha` 10,
//! `safety` 20, `beta` 10) so that a test sees the host order them: safety,
//! alpha, beta.
//!
//! Every call appends `rcell/MODULE:stage` to the file named by the
//! configuration's `"trace_file"`. `{"fail_init": "beta"}` (or
//! `"fail_start"`) makes that module's call fail. Each module steps; only
//! its first step is recorded.
#![deny(missing_docs)]

use std::io::Write as _;
use std::path::PathBuf;
use xplugin_abi::{Host, Plugin, PluginError};

/// What every module does, by module name.
struct Recorder {
    module: &'static str,
    trace: Option<PathBuf>,
    fail_start: bool,
    stepped: bool,
    /// Set once `init` succeeded: only then does dropping it mean the host
    /// called `destroy`.
    live: bool,
}

impl Recorder {
    fn init(module: &'static str, config_json: &str) -> Result<Self, PluginError> {
        let config: serde_json::Value = serde_json::from_str(config_json)
            .map_err(|e| PluginError::failed(format!("rcell: bad configuration: {e}")))?;
        let is_me = |key: &str| config.get(key).and_then(|v| v.as_str()) == Some(module);
        let mut r = Recorder {
            module,
            trace: config
                .get("trace_file")
                .and_then(|v| v.as_str())
                .map(PathBuf::from),
            fail_start: is_me("fail_start"),
            stepped: false,
            live: false,
        };
        r.record("init");
        if is_me("fail_init") {
            return Err(PluginError::failed(format!(
                "{module}: deliberate failure in init"
            )));
        }
        r.live = true;
        Ok(r)
    }

    fn record(&self, stage: &str) {
        if let Some(path) = &self.trace {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = writeln!(f, "rcell/{}:{stage}", self.module);
            }
        }
    }

    fn start(&mut self) -> Result<(), PluginError> {
        self.record("start");
        if self.fail_start {
            return Err(PluginError::failed(format!(
                "{}: deliberate failure in start",
                self.module
            )));
        }
        Ok(())
    }

    fn step(&mut self) {
        if !self.stepped {
            self.stepped = true;
            self.record("step");
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.live {
            self.record("destroy");
        }
    }
}

/// Declares one module type around a [`Recorder`].
macro_rules! module {
    ($ty:ident, $name:literal) => {
        #[doc = concat!("The `", $name, "` module.")]
        struct $ty(Recorder);

        impl Plugin for $ty {
            fn init(_host: Host, config_json: &str) -> Result<Self, PluginError> {
                Recorder::init($name, config_json).map($ty)
            }

            fn start(&mut self) -> Result<(), PluginError> {
                self.0.start()
            }

            fn stop(&mut self) -> Result<(), PluginError> {
                self.0.record("stop");
                Ok(())
            }

            const HAS_STEP: bool = true;

            fn step(&mut self, _cycle: u64, _now_ns: u64) -> Result<(), PluginError> {
                self.0.step();
                Ok(())
            }
        }
    };
}

module!(Alpha, "alpha");
module!(Safety, "safety");
module!(Beta, "beta");

xplugin_abi::export_plugin!(
    kind = controller,
    name = "rcell",
    version = "0.1.0",
    modules = [
        Alpha => ("alpha", 10),
        Safety => ("safety", 20),
        Beta => ("beta", 10),
    ]
);
