//! `xplugin-pack`: the vendor tool. Generates signing keys, issues licenses
//! for plugin folders, packs `plugindemo.zip` in the vendor layout, and
//! verifies or inspects packages the way a device will.
//!
//! Exit status: 0 on success, 1 on any refusal or failed check, 2 on a
//! command-line usage error. Errors go to stderr as problems (each with its
//! `what to do:` line); `--json` prints one JSON document on stdout, for a
//! failure `{"ok": false, "error", "problems": [...]}`.

mod cmd_device;
mod cmd_keygen;
mod cmd_license;
mod cmd_pack;
mod error;
mod folder;
mod libraries;
mod report;

use clap::{Parser, Subcommand, ValueEnum};
use error::PackError;
use std::path::PathBuf;
use std::process::ExitCode;

/// The vendor tool of xplugin: keys, licenses, packing, inspection.
#[derive(Debug, Parser)]
#[command(name = "xplugin-pack", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Side of a plugin on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SideArg {
    /// Teach pendant / HMI plugin.
    Client,
    /// Controller plugin.
    Controller,
}

impl From<SideArg> for xplugin_model::Side {
    fn from(s: SideArg) -> Self {
        match s {
            SideArg::Client => xplugin_model::Side::Client,
            SideArg::Controller => xplugin_model::Side::Controller,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a vendor signing key: DIR/KEYID.key (mode 0600, keep it
    /// secret) and DIR/KEYID.pub (install it in devices' trust stores).
    Keygen {
        /// Directory to write the key files into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Key id (default: derived from the public key, `xk-<hex>`).
        #[arg(long)]
        key_id: Option<String>,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Issue a license for a plugin folder: hashes NAME.json and every
    /// library in it, signs, and writes NAME.lic into the folder.
    License(cmd_license::LicenseArgs),
    /// Build plugindemo.zip (client.zip and/or controller.zip, one folder per
    /// plugin) with deterministic timestamps.
    Pack(cmd_pack::PackArgs),
    /// Verify the licenses of a package or of one plugin folder against a
    /// trust store and a device id, as the device will.
    Verify(report::VerifyArgs),
    /// Show every plugin of a package: version, side, libraries with
    /// architecture and ABI version, and license status.
    Inspect(report::InspectArgs),
    /// Print the device id a license is bound to, for this machine or for
    /// a given machine-id file or serial.
    DeviceId(cmd_device::DeviceIdArgs),
}

fn run(cli: Cli) -> Result<(), PackError> {
    match cli.command {
        Command::Keygen { out, key_id, json } => cmd_keygen::run(&out, key_id.as_deref(), json),
        Command::License(args) => cmd_license::run(&args),
        Command::Pack(args) => cmd_pack::run(&args),
        Command::Verify(args) => report::run_verify(&args),
        Command::Inspect(args) => report::run_inspect(&args),
        Command::DeviceId(args) => cmd_device::run(&args),
    }
}

impl Command {
    /// Whether the command was asked for one JSON document.
    fn json(&self) -> bool {
        match self {
            Command::Keygen { json, .. } => *json,
            Command::License(a) => a.json,
            Command::Pack(a) => a.json,
            Command::Verify(a) => a.json,
            Command::Inspect(a) => a.json,
            Command::DeviceId(a) => a.json,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.command.json();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A failed verify/inspect has printed its report document already.
            if json && !matches!(e, PackError::Failed(_)) {
                let doc = xplugin_model::failure_json(&e);
                println!("{doc:#}");
            }
            eprintln!("{}", xplugin_model::failure_text("xplugin-pack", &e));
            ExitCode::from(1)
        }
    }
}
