//! The flags of the real-time cycle, shared by `boot` and `run`.

use xplugin_host::config::HostConfig;
use xplugin_host::cycle::{CycleSettings, OverrunPolicy};

/// How the real-time cycle runs; each flag overrides its configuration key.
#[derive(Debug, clap::Args)]
pub struct CycleArgs {
    /// Cycle period in microseconds (config `cycle_us`; default 1000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    cycle_us: Option<u64>,
    /// Cycle period in milliseconds (older spelling of --cycle-us).
    #[arg(long, conflicts_with = "cycle_us", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    cycle_ms: Option<u64>,
    /// SCHED_FIFO priority of the cycle thread, 1-99; 0 = normal scheduling
    /// (config `rt_priority`).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=99))]
    rt_priority: Option<u8>,
    /// Pin the cycle thread to this CPU (config `cpu`).
    #[arg(long)]
    cpu: Option<usize>,
    /// What a cycle that ends after the next deadline does: skip (jump to
    /// the next whole period) or catch-up (config `overrun_policy`).
    #[arg(long, value_parser = ["skip", "catch-up"])]
    overrun_policy: Option<String>,
}

impl CycleArgs {
    /// The cycle settings: flags, then configuration, then defaults.
    pub fn settings(&self, config: &HostConfig, cycles: Option<u64>) -> CycleSettings {
        let period_us = self
            .cycle_us
            .or(self.cycle_ms.map(|ms| ms * 1000))
            .or(config.cycle_us)
            .unwrap_or(1000);
        let rt_priority = self.rt_priority.or(config.rt_priority).unwrap_or(0);
        let policy = match self.overrun_policy.as_deref() {
            Some("catch-up") => OverrunPolicy::CatchUp,
            Some(_) => OverrunPolicy::Skip,
            None => config.overrun_policy.unwrap_or_default(),
        };
        // Memory is locked once per process, before the cycle's threads start.
        let memory_locked = if rt_priority > 0 {
            xplugin_host::cycle::rt::lock_memory()
        } else {
            Err("memory not locked (normal scheduling requested)".into())
        };
        CycleSettings {
            period_ns: period_us.saturating_mul(1000),
            rt_priority,
            cpu: self.cpu.or(config.cpu),
            policy,
            cycles,
            overrun_limit: config.overrun_limit.unwrap_or(3),
            memory_locked,
            ..CycleSettings::default()
        }
    }
}
