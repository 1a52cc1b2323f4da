//! Test fixture `panicky` (controller plugin, version 0.0.1): panics on
//! purpose so the loader's tests can prove that a panic becomes
//! `XPLUGIN_ERR_PANIC`, the plugin is marked failed, its dependents are
//! skipped and every other plugin goes on.
//!
//! Configuration `{"panic_in": "init" | "start" | "stop"}` picks the stage
//! that panics; without the key it panics in `init`. Any other value is a
//! configuration error (`XPLUGIN_ERR_CONFIG`), not a panic, so a typo in a
//! test shows up as such.
#![deny(missing_docs)]

use xplugin_abi::{Host, Plugin, PluginError, XPLUGIN_ERR_CONFIG};

/// The lifecycle stage in which the fixture panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PanicStage {
    Init,
    Start,
    Stop,
}

impl PanicStage {
    fn from_config(config_json: &str) -> Result<Self, PluginError> {
        let value: serde_json::Value = serde_json::from_str(config_json).map_err(|e| {
            PluginError::new(
                XPLUGIN_ERR_CONFIG,
                format!("panicky: configuration is not valid JSON ({e})"),
            )
        })?;
        match value.get("panic_in") {
            None => Ok(PanicStage::Init),
            Some(stage) => match stage.as_str() {
                Some("init") => Ok(PanicStage::Init),
                Some("start") => Ok(PanicStage::Start),
                Some("stop") => Ok(PanicStage::Stop),
                _ => Err(PluginError::new(
                    XPLUGIN_ERR_CONFIG,
                    format!(
                        "panicky: config item \"panic_in\" must be \"init\", \"start\" or \"stop\", found {stage}"
                    ),
                )),
            },
        }
    }
}

/// The instance (only reached when the panic is not in `init`).
struct Panicky {
    stage: PanicStage,
}

impl Plugin for Panicky {
    fn init(host: Host, config_json: &str) -> Result<Self, PluginError> {
        let stage = PanicStage::from_config(config_json)?;
        if stage == PanicStage::Init {
            panic!("panicky: deliberate panic in init");
        }
        host.info(&format!("panicky: will panic in {stage:?}"));
        Ok(Panicky { stage })
    }

    fn start(&mut self) -> Result<(), PluginError> {
        if self.stage == PanicStage::Start {
            panic!("panicky: deliberate panic in start");
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        if self.stage == PanicStage::Stop {
            panic!("panicky: deliberate panic in stop");
        }
        Ok(())
    }
}

xplugin_abi::export_plugin!(
    Panicky,
    kind = controller,
    name = "panicky",
    version = "0.0.1"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_comes_from_config_with_init_as_default() {
        assert_eq!(PanicStage::from_config("{}"), Ok(PanicStage::Init));
        assert_eq!(
            PanicStage::from_config(r#"{"panic_in":"start"}"#),
            Ok(PanicStage::Start)
        );
        assert_eq!(
            PanicStage::from_config(r#"{"panic_in":"stop"}"#),
            Ok(PanicStage::Stop)
        );
        let err = PanicStage::from_config(r#"{"panic_in":"later"}"#).unwrap_err();
        assert_eq!(err.status, XPLUGIN_ERR_CONFIG);
    }
}
