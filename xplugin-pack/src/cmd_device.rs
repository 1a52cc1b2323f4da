//! `xplugin-pack device-id [--machine-id-file F | --serial S]`.

use crate::error::PackError;
use clap::Args;
use std::path::PathBuf;
use xplugin_license::{device_id, DeviceIdSource};

/// Arguments of `device-id`.
#[derive(Debug, Args)]
pub struct DeviceIdArgs {
    /// Machine-id file to derive the id from (default /etc/machine-id).
    #[arg(long, conflicts_with = "serial")]
    pub machine_id_file: Option<PathBuf>,
    /// Serial number configured as the device identity instead.
    #[arg(long)]
    pub serial: Option<String>,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// The identity source the arguments name.
pub fn source(machine_id_file: Option<&PathBuf>, serial: Option<&String>) -> DeviceIdSource {
    match (machine_id_file, serial) {
        (_, Some(s)) => DeviceIdSource::Serial(s.clone()),
        (Some(f), None) => DeviceIdSource::MachineIdFile(f.clone()),
        (None, None) => DeviceIdSource::default(),
    }
}

/// Prints the device id.
///
/// # Errors
///
/// [`PackError::Device`] when the source is unreadable or unusable.
pub fn run(args: &DeviceIdArgs) -> Result<(), PackError> {
    let src = source(args.machine_id_file.as_ref(), args.serial.as_ref());
    let id = device_id(&src)?;
    if args.json {
        let from = match &src {
            DeviceIdSource::MachineIdFile(p) => serde_json::json!({"machine_id_file": p}),
            DeviceIdSource::Serial(_) => serde_json::json!({"serial": true}),
        };
        println!("{:#}", serde_json::json!({"device_id": id, "source": from}));
    } else {
        println!("{id}");
    }
    Ok(())
}
