//! The service thread: drains what the cycle thread queued and does the
//! work that may block or allocate — writing log lines, delivering messages
//! published from `step` to their subscribers, turning events into log lines
//! and notices.

use super::executor::{CycleEvent, CycleNotice};
use super::histogram::ns;
use super::outbox::{LogRecord, MessageRecord};
use super::stats::CycleStats;
use crate::services::Bus;
use std::sync::atomic::Ordering::Acquire;
use std::sync::Arc;
use std::time::Duration;
use xplugin_abi::*;

/// Stack of the service thread. Message callbacks of plugins run on it.
pub const STACK_SIZE: usize = 256 * 1024;
/// How long the service thread sleeps when the rings are empty.
const POLL: Duration = Duration::from_millis(2);

pub(crate) struct ServiceContext {
    pub(crate) stats: Arc<CycleStats>,
    pub(crate) names: Vec<String>,
    pub(crate) logs: rtrb::Consumer<LogRecord>,
    pub(crate) messages: rtrb::Consumer<MessageRecord>,
    pub(crate) events: rtrb::Consumer<CycleEvent>,
    pub(crate) notices: crossbeam_channel::Sender<CycleNotice>,
    pub(crate) bus: Arc<Bus>,
}

impl ServiceContext {
    pub(crate) fn run(mut self) {
        if let Some(j) = crate::journal::get() {
            j.register_thread(crate::journal::Role::Service);
        }
        loop {
            // Read `finished` before draining: what the cycle queued before
            // it finished is then drained by this round at the latest.
            let finished = self.stats.finished.load(Acquire);
            let mut did = self.drain_logs();
            did |= self.drain_messages();
            did |= self.drain_events();
            if finished && !did {
                return;
            }
            if !did {
                std::thread::sleep(POLL);
            }
        }
    }

    fn name(&self, slot: u16) -> &str {
        self.names
            .get(usize::from(slot))
            .map_or("?", String::as_str)
    }

    fn drain_logs(&mut self) -> bool {
        let mut any = false;
        while let Ok(r) = self.logs.pop() {
            any = true;
            let text = String::from_utf8_lossy(&r.text[..usize::from(r.len)]);
            let level = match r.level {
                XPLUGIN_LOG_ERROR => log::Level::Error,
                XPLUGIN_LOG_WARN => log::Level::Warn,
                XPLUGIN_LOG_INFO => log::Level::Info,
                XPLUGIN_LOG_DEBUG => log::Level::Debug,
                _ => log::Level::Trace,
            };
            let cut = if r.truncated { " [cut]" } else { "" };
            log::log!(target: "xplugin::plugin", level, "[{}] {text}{cut}", self.name(r.slot));
        }
        any
    }

    fn drain_messages(&mut self) -> bool {
        let mut any = false;
        while let Ok(m) = self.messages.pop() {
            any = true;
            // The cycle side checked the topic is UTF-8.
            if let Ok(topic) = std::str::from_utf8(&m.topic[..usize::from(m.topic_len)]) {
                let publisher = self.name(m.slot);
                if let Err(e) =
                    self.bus
                        .publish_from(publisher, topic, &m.data[..usize::from(m.len)])
                {
                    log::warn!(
                        "[{}] message from step not delivered: {e}",
                        self.name(m.slot)
                    );
                }
            }
        }
        any
    }

    fn drain_events(&mut self) -> bool {
        let mut any = false;
        while let Ok(e) = self.events.pop() {
            any = true;
            self.event(e);
        }
        any
    }

    fn event(&self, e: CycleEvent) {
        let more = |n: u64| {
            if n > 0 {
                format!(" ({n} more in the last second not logged)")
            } else {
                String::new()
            }
        };
        match e {
            CycleEvent::StepFailed {
                slot,
                status,
                cycle,
                suppressed,
            } => log::warn!(
                "plugin \"{}\" step {cycle} returned {} ({status}){}",
                self.name(slot),
                status_name(status),
                more(suppressed)
            ),
            CycleEvent::BudgetWarning {
                slot,
                step_ns,
                cycle,
                suppressed,
            } => {
                let budget = self
                    .stats
                    .plugins
                    .get(usize::from(slot))
                    .map_or(0, |p| p.budget_ns);
                log::warn!(
                    "plugin \"{}\" step {cycle} took {}, {}% of its budget of {}{}",
                    self.name(slot),
                    ns(step_ns),
                    step_ns * 100 / budget.max(1),
                    ns(budget),
                    more(suppressed)
                )
            }
            CycleEvent::Overrun {
                cycle,
                missed,
                late_ns,
                suppressed,
            } => log::warn!(
                "cycle {cycle} ended {} after its deadline: {missed} period(s) missed{}",
                ns(late_ns),
                more(suppressed)
            ),
            CycleEvent::TakenOut {
                slot,
                cycle,
                last_ns,
                consecutive,
            } => {
                let i = usize::from(slot);
                let report = self.stats.report();
                let budget_ns = self.stats.plugins.get(i).map_or(0, |p| p.budget_ns);
                let max_ns = self
                    .stats
                    .plugins
                    .get(i)
                    .and_then(|p| report.plugins.get(&p.name))
                    .map_or(0, |t| t.step_ns.max);
                let dependents = self
                    .stats
                    .plugins
                    .iter()
                    .enumerate()
                    .filter(|(j, p)| {
                        *j != i && p.state() == super::stats::SlotState::TakenOutDependency
                    })
                    .map(|(_, p)| p.name.clone())
                    .collect();
                let notice = CycleNotice::TakenOut {
                    plugin: self.name(slot).to_string(),
                    dependents,
                    cycle,
                    budget_ns,
                    last_ns,
                    max_ns: max_ns.max(last_ns),
                    consecutive,
                };
                log::error!("{notice}");
                let _ = self.notices.try_send(notice);
            }
        }
    }
}
