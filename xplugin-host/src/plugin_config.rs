//! Plugin configuration (the SPEC's `config` extension, after the Fledge
//! model): a manifest's `config` object declares typed items
//! ([`xplugin_model::config_schema`]); the value a plugin receives in
//! `init` is an object of item name to typed value.
