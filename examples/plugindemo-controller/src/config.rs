//! The controller plugin's configuration: the resolved config JSON the host
//! passes to `init` and `reconfigure`.

use xplugin_abi::{PluginError, XPLUGIN_ERR_CONFIG};

/// Settings of the plugindemo controller plugin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Factor applied by `scale_speed`, 0.0 ..= 1.0 (default 1.0).
    pub speed_override: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            speed_override: 1.0,
        }
    }
}

impl Config {
    /// Parses the config JSON. Unknown keys are ignored (the host may pass
    /// items meant for other tools); known keys are validated.
    ///
    /// # Errors
    /// `XPLUGIN_ERR_CONFIG` naming the key, the expected and the found value.
    pub fn parse(config_json: &str) -> Result<Self, PluginError> {
        let value: serde_json::Value = serde_json::from_str(config_json).map_err(|e| {
            PluginError::new(
                XPLUGIN_ERR_CONFIG,
                format!("plugindemo: configuration is not valid JSON ({e}); expected an object such as {{\"speed_override\": 0.5}}"),
            )
        })?;
        let object = value.as_object().ok_or_else(|| {
            PluginError::new(
                XPLUGIN_ERR_CONFIG,
                format!("plugindemo: configuration must be a JSON object, found {value}"),
            )
        })?;
        let mut config = Config::default();
        if let Some(raw) = object.get("speed_override") {
            let speed_override = raw
                .as_f64()
                .filter(|f| (0.0..=1.0).contains(f))
                .ok_or_else(|| {
                    PluginError::new(
                        XPLUGIN_ERR_CONFIG,
                        format!(
                            "plugindemo: config item \"speed_override\" must be a number from 0.0 to 1.0, found {raw}; fix the value in the plugin configuration"
                        ),
                    )
                })?;
            config.speed_override = speed_override;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_object_gives_defaults() {
        assert_eq!(Config::parse("{}"), Ok(Config::default()));
    }

    #[test]
    fn speed_override_is_read_and_range_checked() {
        assert_eq!(
            Config::parse(r#"{"speed_override": 0.25, "other": 1}"#).map(|c| c.speed_override),
            Ok(0.25)
        );
        let err = Config::parse(r#"{"speed_override": 1.5}"#).unwrap_err();
        assert_eq!(err.status, XPLUGIN_ERR_CONFIG);
        assert!(err.message.contains("speed_override"), "{}", err.message);
        assert!(Config::parse("[1]").is_err());
        assert!(Config::parse("{").is_err());
    }
}
