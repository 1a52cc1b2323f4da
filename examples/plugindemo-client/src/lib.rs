//! `plugindemo` client plugin, version 3.0.1: the Rust example of an xplugin
//! client (teach pendant) plugin.
//!
//! Its manifest `plugindemo.json` is the vendor's commented client format with
//! `depend: ["uikit"]` (a second client plugin) and `ctrlDepend:
//! ["plugindemo"]` (the controller plugin of the same package). In `init` it
//! finds the `uikit.widgets` service that uikit registered and adds a button;
//! the render stage (ABI 1.1 `render`) shows its panel where the pendant
//! says (headless hosts such as `xplugin-client run` pass no toolkit: the
//! plugin notes it and runs without a panel); the periodic `idle` hook
//! counts UI idle ticks, reported at `stop`.
//!
//! Over the pendant link (its manifest's `bridge`): when the link to the
//! controller comes up (`xplugin/link`), the button is "pressed" once (this
//! example has no screen): `plugindemo/button` goes to the controller's
//! plugindemo, whose answer arrives on `plugindemo/motion` and is logged.
//!
//! The library file is `libplugindemo_client.so`; it is packaged as
//! `client/plugindemo/plugindemo.so` beside `libxplugin.so`.
#![deny(missing_docs)]

// The service layout is defined once, by its provider; include it by path so
// provider and user cannot disagree.
#[path = "../../uikit-client/src/widgets_service.rs"]
mod widgets_service;

use std::ffi::CString;
use widgets_service::{WidgetsService, WIDGETS_SERVICE_NAME, WIDGETS_SERVICE_VERSION};
use xplugin_abi::{
    status_name, Host, Plugin, PluginError, RenderContext, Subscription, XPLUGIN_ERR_DEPENDENCY,
    XPLUGIN_ERR_INVALID_ARG, XPLUGIN_OK, XPLUGIN_TOOLKIT_NONE,
};

/// Label of the button this plugin adds to the pendant UI.
const BUTTON_LABEL: &str = "Start demo motion";

/// The button's message to the controller plugin (crosses the link).
const BUTTON_TOPIC: &str = "plugindemo/button";
/// The controller plugin's answer.
const MOTION_TOPIC: &str = "plugindemo/motion";
/// The host's link state topic.
const LINK_TOPIC: &str = "xplugin/link";

/// The running instance.
struct PluginDemoClient {
    host: Host,
    button_id: u32,
    idle_ticks: u64,
    subscriptions: Vec<Subscription>,
}

/// Finds uikit's widget table and checks that it is a version this plugin
/// was written for.
fn find_widgets(host: &Host) -> Result<&'static WidgetsService, PluginError> {
    let (iface, version) = host.find_service(WIDGETS_SERVICE_NAME).map_err(|status| {
        PluginError::new(
            XPLUGIN_ERR_DEPENDENCY,
            format!(
                "plugindemo (client): service \"{WIDGETS_SERVICE_NAME}\" not found ({}); it is registered by the client plugin uikit: install uikit and keep \"uikit\" in this plugin's depend list",
                status_name(status)
            ),
        )
    })?;
    if iface.is_null() || version != WIDGETS_SERVICE_VERSION {
        return Err(PluginError::new(
            XPLUGIN_ERR_DEPENDENCY,
            format!(
                "plugindemo (client): service \"{WIDGETS_SERVICE_NAME}\" has interface version {version}, expected {WIDGETS_SERVICE_VERSION}; install a uikit release with widgets interface {WIDGETS_SERVICE_VERSION}"
            ),
        ));
    }
    // SAFETY: non-NULL (checked above); the provider registered a table of
    // this interface version, which starts with its `struct_size` in every
    // revision, valid until the provider's destroy, which runs after ours
    // (reverse load order). Only that field is read, by value, before the
    // size says the whole struct is there.
    let struct_size = unsafe { (*iface.cast::<WidgetsService>()).struct_size };
    if (struct_size as usize) < core::mem::size_of::<WidgetsService>() {
        return Err(PluginError::new(
            XPLUGIN_ERR_DEPENDENCY,
            format!(
                "plugindemo (client): service \"{WIDGETS_SERVICE_NAME}\" table is {} bytes, expected at least {}; the uikit build is broken",
                struct_size,
                core::mem::size_of::<WidgetsService>()
            ),
        ));
    }
    // SAFETY: as above, and `struct_size` covers every field of
    // `WidgetsService`. The table is the provider's static and nothing writes
    // to it; 'static is as long as this plugin can use it (the provider is
    // destroyed after us and its library is never unloaded).
    Ok(unsafe { &*iface.cast::<WidgetsService>() })
}

impl Plugin for PluginDemoClient {
    fn init(host: Host, _config_json: &str) -> Result<Self, PluginError> {
        let widgets = find_widgets(&host)?;
        let owner = CString::new("plugindemo").map_err(|e| e.to_string())?;
        let label = CString::new(BUTTON_LABEL).map_err(|e| e.to_string())?;
        let mut button_id = 0u32;
        // SAFETY: `add_button` comes from the checked table above (its
        // contract in uikit_widgets.h); `owner` and `label` are
        // NUL-terminated and outlive the call; `button_id` is a writable
        // local.
        let status =
            unsafe { (widgets.add_button)(owner.as_ptr(), label.as_ptr(), &mut button_id) };
        if status != XPLUGIN_OK {
            return Err(PluginError::new(
                if status < 0 {
                    status
                } else {
                    XPLUGIN_ERR_INVALID_ARG
                },
                format!(
                    "plugindemo (client): uikit refused the button {BUTTON_LABEL:?}: {}",
                    status_name(status)
                ),
            ));
        }
        host.info(&format!(
            "plugindemo (client) 3.0.1: button {button_id} {BUTTON_LABEL:?} added through {WIDGETS_SERVICE_NAME} ({} widget(s) in total)",
            (widgets.widget_count)()
        ));
        Ok(PluginDemoClient {
            host,
            button_id,
            idle_ticks: 0,
            subscriptions: Vec::new(),
        })
    }

    fn start(&mut self) -> Result<(), PluginError> {
        let host = self.host;
        let button = self.button_id;
        let subscribed = host
            .subscribe(MOTION_TOPIC, move |_, answer| {
                host.info(&format!(
                    "plugindemo (client): the controller answered: {}",
                    String::from_utf8_lossy(answer)
                ));
            })
            .and_then(|motion| {
                let link = host.subscribe(LINK_TOPIC, move |_, state| {
                    host.info(&format!(
                        "plugindemo (client): controller link {}",
                        String::from_utf8_lossy(state)
                    ));
                    if state.starts_with(b"up") {
                        // The operator presses the button (headless: once per link).
                        let press = format!("button {button} {BUTTON_LABEL:?} pressed");
                        if let Err(s) = host.publish(BUTTON_TOPIC, press.as_bytes()) {
                            host.warn(&format!(
                                "plugindemo (client): cannot send the button: {}",
                                status_name(s)
                            ));
                        }
                    }
                })?;
                Ok([motion, link])
            })
            .map_err(|status| {
                PluginError::new(
                    status,
                    format!(
                        "plugindemo (client): cannot subscribe: {}",
                        status_name(status)
                    ),
                )
            })?;
        self.subscriptions.extend(subscribed);
        self.host.info(&format!(
            "plugindemo (client): ready, button {} live",
            self.button_id
        ));
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        self.subscriptions.clear();
        self.host.info(&format!(
            "plugindemo (client): detaching after {} idle tick(s)",
            self.idle_ticks
        ));
        Ok(())
    }

    const HAS_RENDER: bool = true;

    fn render(&mut self, ctx: &RenderContext) -> Result<(), PluginError> {
        if ctx.toolkit == XPLUGIN_TOOLKIT_NONE || ctx.parent.is_null() {
            self.host.info(
                "plugindemo (client): render: headless host, no panel (button stays in uikit)",
            );
        } else {
            // A real pendant build attaches its panel to `ctx.parent` here
            // (a QWidget* or HWND, as `ctx.toolkit` says); this example has
            // no UI toolkit of its own.
            self.host.info(&format!(
                "plugindemo (client): render: panel {}x{} for toolkit {}",
                ctx.width, ctx.height, ctx.toolkit
            ));
        }
        Ok(())
    }

    const HAS_IDLE: bool = true;

    fn idle(&mut self) -> Result<(), PluginError> {
        self.idle_ticks = self.idle_ticks.saturating_add(1);
        Ok(())
    }
}

xplugin_abi::export_plugin!(
    PluginDemoClient,
    kind = client,
    name = "plugindemo",
    version = "3.0.1"
);
