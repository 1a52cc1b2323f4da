//! `plugindemo` controller plugin, version 1.0.0: the Rust example of an
//! xplugin controller plugin.
//!
//! What it shows:
//! - registers the `plugindemo.motion` service in `init` (a static
//!   `#[repr(C)]` table, declared for C users in `include/plugindemo_motion.h`)
//!   so that plugins which `depend` on it, such as the C plugin `motionlog`,
//!   find it in their own `init`;
//! - counts controller cycles in `step` without allocating or locking;
//! - at `start`, writes `last_start.json` into its data directory and
//!   publishes `{"state":"running",...}` on the topic `plugindemo/state`;
//!   at `stop` it publishes `{"state":"stopped","cycles":N}`;
//! - logs every stage through the host;
//! - accepts `{"speed_override": 0.0..=1.0}` as configuration, also at runtime
//!   through `reconfigure`;
//! - talks to its client plugin on the teach pendant over the link (its
//!   manifest's `bridge`): the pendant's button arrives on
//!   `plugindemo/button`, the answer goes back on `plugindemo/motion`; the
//!   link's state arrives on `xplugin/link`.
//!
//! The library file is `libplugindemo_controller.so`; it is packaged as
//! `controller/plugindemo/plugindemo.so` (see `examples/build-examples`).
#![deny(missing_docs)]

mod config;
mod motion_service;

use config::Config;
use core::ffi::c_void;
use std::path::PathBuf;
use xplugin_abi::{status_name, Host, Plugin, PluginError, Subscription, XPLUGIN_ERR_IO};

/// Plugin name; equals the manifest's `name` and the package folder name.
const PLUGIN_NAME: &str = "plugindemo";
/// Plugin version; equals the manifest's `version`.
const PLUGIN_VERSION: &str = "1.0.0";
/// Topic on which the plugin announces its state changes.
pub const STATE_TOPIC: &str = "plugindemo/state";
/// File written into the data directory at every start.
const START_RECORD_FILE: &str = "last_start.json";
/// What the pendant's plugindemo sends when its button is pressed (crosses
/// the link: declared in the manifest's `bridge`).
pub const BUTTON_TOPIC: &str = "plugindemo/button";
/// The answer to the button, back to the pendant.
pub const MOTION_TOPIC: &str = "plugindemo/motion";
/// The host's link state topic.
const LINK_TOPIC: &str = "xplugin/link";

/// The running instance.
struct PluginDemoController {
    host: Host,
    config: Config,
    /// The button and link subscriptions, while started.
    subscriptions: Vec<Subscription>,
}

/// Answers the pendant's button: a message callback, called on the link's
/// thread (never inside `step`).
fn on_button(host: Host, payload: &[u8]) {
    let text = String::from_utf8_lossy(payload);
    let cycles = (motion_service::MOTION_SERVICE.get_cycle_count)();
    host.info(&format!("plugindemo: button from the pendant: {text}"));
    let answer = format!("motion started for \"{text}\" at cycle {cycles}");
    if let Err(status) = host.publish(MOTION_TOPIC, answer.as_bytes()) {
        host.warn(&format!(
            "plugindemo: cannot answer on {MOTION_TOPIC}: {}",
            status_name(status)
        ));
    }
}

impl PluginDemoController {
    /// Records the start in the data directory so an operator (and the
    /// integration tests) can see that the plugin ran with which settings.
    fn write_start_record(&self) -> Result<Option<PathBuf>, PluginError> {
        let Some(data_dir) = self.host.data_dir() else {
            self.host
                .warn("plugindemo: the host gave no data directory; start record not written");
            return Ok(None);
        };
        let path = data_dir.join(START_RECORD_FILE);
        let record = serde_json::json!({
            "plugin": PLUGIN_NAME,
            "version": PLUGIN_VERSION,
            "host_version": self.host.host_version(),
            "speed_override": self.config.speed_override,
        });
        std::fs::write(&path, format!("{record}\n")).map_err(|e| {
            PluginError::new(
                XPLUGIN_ERR_IO,
                format!(
                    "plugindemo: cannot write {}: {e}; check that the plugin's data directory exists and is writable",
                    path.display()
                ),
            )
        })?;
        Ok(Some(path))
    }

    fn publish_state(&self, state: &serde_json::Value) {
        let payload = state.to_string();
        if let Err(status) = self.host.publish(STATE_TOPIC, payload.as_bytes()) {
            // Publishing is informative; a host without subscribers or with
            // a full queue must not stop the controller.
            self.host.warn(&format!(
                "plugindemo: publishing on {STATE_TOPIC} failed: {}",
                status_name(status)
            ));
        }
    }
}

impl Plugin for PluginDemoController {
    fn init(host: Host, config_json: &str) -> Result<Self, PluginError> {
        let config = Config::parse(config_json)?;
        motion_service::reset(config.speed_override);
        let table: *const motion_service::MotionService = &motion_service::MOTION_SERVICE;
        // SAFETY: `register_service` needs the table to be what users of the
        // name expect and valid until our destroy: it is the `#[repr(C)]`
        // static the service's C header describes (checked by abi_layout),
        // so it lives as long as the never-unloaded library.
        unsafe {
            host.register_service(
                motion_service::MOTION_SERVICE_NAME,
                motion_service::MOTION_SERVICE_VERSION,
                table.cast::<c_void>(),
            )
        }
        .map_err(|status| {
            PluginError::new(
                status,
                format!(
                    "plugindemo: cannot register the service \"{}\": {}; is another plugin registering the same name?",
                    motion_service::MOTION_SERVICE_NAME,
                    status_name(status)
                ),
            )
        })?;
        host.info(&format!(
            "plugindemo {PLUGIN_VERSION}: initialised on host {}, service {} v{} registered, speed override {}",
            host.host_version().as_deref().unwrap_or("(unknown)"),
            motion_service::MOTION_SERVICE_NAME,
            motion_service::MOTION_SERVICE_VERSION,
            config.speed_override
        ));
        Ok(PluginDemoController {
            host,
            config,
            subscriptions: Vec::new(),
        })
    }

    fn start(&mut self) -> Result<(), PluginError> {
        let host = self.host;
        let subscribed = host
            .subscribe(BUTTON_TOPIC, move |_, payload| on_button(host, payload))
            .and_then(|button| {
                let link = host.subscribe(LINK_TOPIC, move |_, state| {
                    host.info(&format!(
                        "plugindemo: pendant link {}",
                        String::from_utf8_lossy(state)
                    ));
                })?;
                Ok([button, link])
            })
            .map_err(|status| {
                PluginError::new(
                    status,
                    format!("plugindemo: cannot subscribe: {}", status_name(status)),
                )
            })?;
        self.subscriptions.extend(subscribed);
        let record = self.write_start_record()?;
        self.publish_state(&serde_json::json!({
            "state": "running",
            "version": PLUGIN_VERSION,
            "speed_override": self.config.speed_override,
        }));
        let record = record
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "not written".to_string());
        self.host
            .info(&format!("plugindemo: started; start record {record}"));
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        self.subscriptions.clear();
        let cycles = (motion_service::MOTION_SERVICE.get_cycle_count)();
        self.publish_state(&serde_json::json!({"state": "stopped", "cycles": cycles}));
        self.host.info(&format!(
            "plugindemo: stopped after {cycles} controller cycles"
        ));
        Ok(())
    }

    fn reconfigure(&mut self, config_json: &str) -> Result<(), PluginError> {
        let config = Config::parse(config_json)?;
        motion_service::set_speed_override(config.speed_override);
        self.config = config;
        self.host.info(&format!(
            "plugindemo: reconfigured, speed override {}",
            config.speed_override
        ));
        Ok(())
    }

    const HAS_STEP: bool = true;

    fn step(&mut self, _cycle: u64, _now_ns: u64) -> Result<(), PluginError> {
        // Real-time path: one relaxed atomic add, nothing else.
        motion_service::count_cycle();
        Ok(())
    }
}

xplugin_abi::export_plugin!(
    PluginDemoController,
    kind = controller,
    name = "plugindemo",
    version = "1.0.0"
);
