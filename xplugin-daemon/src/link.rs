//! The pendant link's requests, answered by the daemon with the same code
//! paths as the admin socket: the install transactions of
//! [`xplugin_host::install`] (the controller verifies everything a pendant
//! sends, as itself), the daemon's status, and applying by the daemon's
//! policy. The link's frames, handshake and threads are
//! [`xplugin_link::server`]; none of it runs on the cycle thread.
//!
//! A pendant may decide only the transactions it prepared itself: their
//! holder names its key (`pendant 3f2a-... (ADDR) request R`).

use crate::daemon::{Admin, DaemonOptions};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use xplugin_host::bridge::Bridge;
use xplugin_host::config::ApplyPolicy;
use xplugin_host::install::{InstallError, InstallHost, InstallReport, InstallRequest};
use xplugin_host::verify::Policy;
use xplugin_link::bridge::BridgeDecl;
use xplugin_link::message::{
    wire, ConfigReply, ControllerStatus, Hello, RemotePlugin, RemoteTransaction, TransactionReply,
};
use xplugin_link::server::{Answer, BridgeAttach, LinkHandler, Pendant, Server, ServerOptions};
use xplugin_link::upload::Uploads;
use xplugin_model::manifest::Side;
use xplugin_model::{Failure, Problem, ProblemCode};
use xplugin_store::{Store, TransactionRecord};

/// Starts the pendant link when `listen` is configured (or given); `None`
/// when it is not: no network port is opened then. `bridge` is the daemon's
/// plugin message bridge, made exactly when `listen` is.
///
/// # Errors
/// A message naming the address when it cannot listen.
pub(crate) fn start(
    opts: &DaemonOptions,
    admin: Arc<Admin>,
    bridge: Option<Arc<Bridge>>,
) -> Result<Option<Server>, String> {
    let (Some(listen), Some(bridge)) = (opts.config.listen.as_deref(), bridge) else {
        return Ok(None);
    };
    let address = xplugin_link::address::normalize(listen).map_err(|e| e.to_string())?;
    let max = opts.config.limits.max_package_bytes;
    let options = ServerOptions {
        listen: address.clone(),
        root: admin.root().to_path_buf(),
        device_id: xplugin_host::device::device_identity(&opts.config).ok(),
        uploads: Uploads::new(
            admin.root(),
            max,
            opts.config
                .upload_quota_bytes
                .unwrap_or_else(|| max.saturating_mul(2)),
        ),
    };
    let handler = Arc::new(Link {
        admin,
        bridge,
        hashes: Mutex::new((None, BTreeMap::new())),
    });
    let server = Server::start(options, handler).map_err(|e| {
        format!(
            "cannot serve the pendant link on {address}: {e}; fix --listen / `listen` (ADDR:PORT)"
        )
    })?;
    log::info!("pendant link listening on {}", server.local_addr());
    Ok(Some(server))
}

struct Link {
    admin: Arc<Admin>,
    bridge: Arc<Bridge>,
    /// Library hashes of the running generation, computed once per
    /// generation.
    hashes: Mutex<(Option<u64>, BTreeMap<String, String>)>,
}

fn problems(e: &dyn Failure) -> Vec<Problem> {
    e.problems().0
}

fn reply(report: &InstallReport, apply: Option<serde_json::Value>) -> TransactionReply {
    TransactionReply {
        transaction: report.transaction.clone(),
        state: report.state.as_str().to_string(),
        holder: report.holder.clone(),
        base_generation: report.base_generation,
        new_generation: report.new_generation,
        expires_unix: report.expires_unix,
        reason: report.reason.clone(),
        problems: wire(&report.problems),
        prepared_set: report.prepared_set.clone(),
        text: report.to_string(),
        report: serde_json::to_value(report).unwrap_or_default(),
        apply,
    }
}

fn record_reply(record: &TransactionRecord) -> TransactionReply {
    TransactionReply {
        transaction: record.id.clone(),
        state: record.state.as_str().to_string(),
        holder: record.holder.clone(),
        base_generation: record.base_generation,
        new_generation: record.new_generation,
        expires_unix: record.expires_unix,
        reason: record.reason.clone(),
        problems: Vec::new(),
        prepared_set: BTreeMap::new(),
        text: format!("transaction {}: {}\n", record.id, record.state),
        report: serde_json::to_value(record).unwrap_or_default(),
        apply: None,
    }
}

/// The holder a pendant's transactions carry.
fn holder(pendant: &Pendant, request: &str) -> String {
    format!("{} request {request}", pendant.describe())
}

fn sha256_file(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    xplugin_link::upload::hash_file(&mut f).ok()
}

impl Link {
    /// Refuses a decision on a transaction this pendant did not prepare.
    fn own(&self, pendant: &Pendant, id: &str) -> Result<(), Vec<Problem>> {
        let store = Store::open(self.admin.root()).map_err(|e| problems(&e))?;
        let record = store.transaction(id).map_err(|e| problems(&e))?;
        let mine = format!("pendant {} ", pendant.key.fingerprint());
        if record.holder.starts_with(&mine) {
            return Ok(());
        }
        Err(vec![Problem::new(
            ProblemCode::LinkRoleDenied,
            format!("transaction {id}"),
            format!(
                "transaction {id} is held by {}, not by this pendant ({})",
                record.holder,
                pendant.key.fingerprint()
            ),
            "decide it where it was prepared (`xplugin-controller commit ID` / `abort ID` on the controller)",
        )])
    }

    fn library_hashes(&self, generation: Option<u64>) -> BTreeMap<String, String> {
        let mut cache = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
        if cache.0 != generation || generation.is_none() {
            let dir = generation.map(|g| {
                self.admin
                    .root()
                    .join(xplugin_store::GENERATIONS_DIR)
                    .join(g.to_string())
                    .join("plugins")
            });
            let mut map = BTreeMap::new();
            if let Some(Ok(entries)) = dir.as_ref().map(std::fs::read_dir) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if let Some(h) = sha256_file(&e.path().join(format!("{name}.so"))) {
                        map.insert(name, h);
                    }
                }
            }
            *cache = (generation, map);
        }
        cache.1.clone()
    }
}

impl LinkHandler for Link {
    fn hello(&self) -> Hello {
        let config = self.admin.config();
        Hello::this_host(
            "xplugin-controller",
            Some(self.admin.host_version().to_string()),
            xplugin_host::device::device_identity(&config).ok(),
        )
    }

    fn status(&self) -> Answer<ControllerStatus> {
        let status = self.admin.status();
        let hashes = self.library_hashes(status.generation.running);
        let committed_transaction = Store::open(self.admin.root())
            .ok()
            .and_then(|s| s.current().ok().flatten())
            .and_then(|g| g.state.transaction);
        Ok(ControllerStatus {
            running: status.generation.running,
            committed: status.generation.committed,
            committed_transaction,
            prepared: status
                .generation
                .prepared
                .as_ref()
                .map(|t| RemoteTransaction {
                    id: t.id.clone(),
                    state: t.state.as_str().to_string(),
                    holder: t.holder.clone(),
                    expires_unix: t.expires_unix,
                }),
            host_version: Some(status.host_version.clone()),
            plugins: status
                .plugins
                .iter()
                .map(|p| RemotePlugin {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    state: p.state.as_str().to_string(),
                    reason: p.reason.clone(),
                    library_sha256: hashes.get(&p.name).cloned(),
                })
                .collect(),
            apply: serde_json::to_value(&status.apply).unwrap_or_default(),
            text: status.to_string(),
        })
    }

    fn prepare(
        &self,
        pendant: &Pendant,
        package: &Path,
        label: &str,
        force: bool,
        allow_downgrade: bool,
        request: &str,
    ) -> Answer<TransactionReply> {
        let config = self.admin.config();
        let host = InstallHost {
            root: self.admin.root().to_path_buf(),
            host_version: self.admin.host_version().clone(),
            config: &config,
        };
        let request = InstallRequest {
            holder: holder(pendant, request),
            policy: Policy {
                force,
                allow_downgrade,
            },
            timeout: config.transaction_timeout_s.map_or(
                xplugin_store::transaction::DEFAULT_TIMEOUT,
                Duration::from_secs,
            ),
            label: label.to_string(),
        };
        log::info!("link: {} prepares {label}", pendant.describe());
        match xplugin_host::install::install_file(&host, package, &request, false) {
            Ok(report) => Ok(reply(&report, None)),
            Err(InstallError::Refused { report }) => Err(report.problems.clone()),
            Err(e) => Err(problems(&e)),
        }
    }

    fn commit(&self, pendant: &Pendant, id: &str, apply: Option<&str>) -> Answer<TransactionReply> {
        self.own(pendant, id)?;
        let requested = match apply {
            None => None,
            Some(a) => Some(ApplyPolicy::parse(a).ok_or_else(|| {
                vec![Problem::new(
                    ProblemCode::UsageInvalidArgument,
                    "apply",
                    format!("\"{a}\" is not an apply policy"),
                    "use now, when-idle or next-boot",
                )]
            })?),
        };
        log::info!("link: {} commits transaction {id}", pendant.describe());
        let report =
            xplugin_host::install::commit(self.admin.root(), id).map_err(|e| problems(&e))?;
        let outcome = self.admin.apply(requested);
        Ok(reply(&report, serde_json::to_value(&outcome).ok()))
    }

    fn abort(&self, pendant: &Pendant, id: &str, reason: &str) -> Answer<TransactionReply> {
        self.own(pendant, id)?;
        log::info!("link: {} aborts transaction {id}", pendant.describe());
        xplugin_host::install::abort(self.admin.root(), id, reason)
            .map(|r| reply(&r, None))
            .map_err(|e| problems(&e))
    }

    fn outcome(&self, id: &str) -> Answer<TransactionReply> {
        xplugin_host::install::outcome(self.admin.root(), id)
            .map(|r| reply(&r, None))
            .map_err(|e| problems(&e))
    }

    fn config_show(&self, plugin: &str) -> Answer<ConfigReply> {
        let shown = xplugin_host::plugin_config::show(self.admin.root(), Side::Controller, plugin)
            .map_err(|e| problems(&e))?;
        Ok(ConfigReply {
            text: shown.to_string(),
            report: serde_json::to_value(&shown).unwrap_or_default(),
        })
    }

    fn config_set(
        &self,
        pendant: &Pendant,
        plugin: &str,
        assignments: &[String],
    ) -> Answer<ConfigReply> {
        log::info!(
            "link: {} changes the configuration of {plugin}",
            pendant.describe()
        );
        let report = self
            .admin
            .config_change(self.admin.root(), plugin, assignments)
            .map_err(|e| problems(&e))?;
        Ok(ConfigReply {
            text: report.to_string(),
            report: serde_json::to_value(&report).unwrap_or_default(),
        })
    }

    fn bridge_open(&self, pendant: &Pendant, plugins: &[BridgeDecl]) -> Answer<BridgeAttach> {
        let bridge = self.bridge.clone();
        let (opened, outbound, id) = bridge
            .open(&pendant.describe(), &pendant.key.to_string(), plugins)
            .map_err(|p| vec![p])?;
        log::info!(
            "link: {} opened the plugin message bridge: {} route(s), {} refused",
            pendant.describe(),
            opened.routes.len(),
            opened.problems.len()
        );
        let sink = bridge.sink(id);
        Ok(BridgeAttach {
            opened,
            outbound,
            sink,
            closed: Box::new(move |why| bridge.detach(id, why)),
        })
    }

    fn lookup(&self, request: &str) -> Answer<TransactionReply> {
        let store = Store::open(self.admin.root()).map_err(|e| problems(&e))?;
        let records = store.transactions().map_err(|e| problems(&e))?;
        let suffix = format!(" request {request}");
        records
            .iter()
            .rev()
            .find(|r| !request.is_empty() && r.holder.ends_with(&suffix))
            .map(record_reply)
            .ok_or_else(|| {
                vec![Problem::new(
                    ProblemCode::StoreTransactionNotFound,
                    format!("request {request}"),
                    "no transaction on this controller was prepared for that request",
                    "nothing was prepared for it; import again",
                )]
            })
    }
}
