//! Signed .lic licenses for xplugin packages.
#![deny(missing_docs)]
