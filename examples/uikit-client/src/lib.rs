//! `uikit` client plugin, version 1.2.0: a second client plugin that the
//! plugindemo client plugin `depend`s on.
//!
//! It registers the `uikit.widgets` service (declared for C users in
//! `include/uikit_widgets.h`) in `init`, so that its dependents, initialised
//! after it, can add buttons to the pendant UI. At `stop` it logs the widgets
//! it was given.
//!
//! The library file is `libuikit_client.so`; it is packaged as
//! `client/uikit/uikit.so` beside `libxplugin.so`.
#![deny(missing_docs)]

mod widgets;
mod widgets_service;

use core::ffi::c_void;
use widgets_service::{WidgetsService, WIDGETS_SERVICE_NAME, WIDGETS_SERVICE_VERSION};
use xplugin_abi::{status_name, Host, Plugin, PluginError};

/// The running instance.
struct Uikit {
    host: Host,
}

impl Plugin for Uikit {
    fn init(host: Host, _config_json: &str) -> Result<Self, PluginError> {
        widgets::clear();
        let table: *const WidgetsService = &widgets::WIDGETS_SERVICE;
        // SAFETY: `register_service` needs the table to be what users of the
        // name expect and valid until our destroy: it is the `#[repr(C)]`
        // static the service's C header describes (checked by abi_layout),
        // so it lives as long as the never-unloaded library.
        unsafe {
            host.register_service(
                WIDGETS_SERVICE_NAME,
                WIDGETS_SERVICE_VERSION,
                table.cast::<c_void>(),
            )
        }
        .map_err(|status| {
            PluginError::new(
                status,
                format!(
                    "uikit: cannot register the service \"{WIDGETS_SERVICE_NAME}\": {}; is another plugin registering the same name?",
                    status_name(status)
                ),
            )
        })?;
        host.info(&format!(
            "uikit 1.2.0: service {WIDGETS_SERVICE_NAME} v{WIDGETS_SERVICE_VERSION} registered"
        ));
        Ok(Uikit { host })
    }

    fn start(&mut self) -> Result<(), PluginError> {
        self.host.info("uikit: UI ready");
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PluginError> {
        let widgets = widgets::snapshot();
        let list: Vec<String> = widgets
            .iter()
            .map(|w| format!("{}:{:?}", w.owner, w.label))
            .collect();
        self.host.info(&format!(
            "uikit: stopping with {} widget(s) [{}]",
            widgets.len(),
            list.join(", ")
        ));
        Ok(())
    }
}

impl Drop for Uikit {
    fn drop(&mut self) {
        widgets::clear();
    }
}

xplugin_abi::export_plugin!(Uikit, kind = client, name = "uikit", version = "1.2.0");
