//! Wakes the agents' long polls. Whichever server dispatches tasks announces the hosts
//! (`ShipSignal::Dispatched`, over `NOTIFY` between servers); each server rings the bell of
//! those hosts whose agents wait on it. A lost wake-up only delays: polls end after a
//! heartbeat interval anyway and read the tasks table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gantry_store::ShipSignal;
use tokio::sync::{broadcast, watch, Notify};

#[derive(Default)]
pub struct Bell {
    hosts: Mutex<HashMap<String, Arc<Notify>>>,
    /// Bumped when an agent reports on a rollout's task: the orchestrator looks again.
    reports: Option<watch::Sender<u64>>,
}

impl Bell {
    pub fn new() -> Bell {
        let (reports, _) = watch::channel(0);
        Bell {
            hosts: Mutex::default(),
            reports: Some(reports),
        }
    }

    /// The notifier an agent's poll waits on.
    pub fn host(&self, name: &str) -> Arc<Notify> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts.entry(name.to_string()).or_default().clone()
    }

    pub fn ring(&self, names: &[String]) {
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        for name in names {
            if let Some(n) = hosts.get(name) {
                n.notify_one();
            }
        }
    }

    fn ring_all(&self) {
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        for n in hosts.values() {
            n.notify_one();
        }
    }

    pub fn reported(&self) {
        if let Some(r) = &self.reports {
            r.send_modify(|n| *n += 1);
        }
    }

    pub fn subscribe_reports(&self) -> Option<watch::Receiver<u64>> {
        self.reports.as_ref().map(|r| r.subscribe())
    }

    /// Follows the store's shipping signals until the channel closes.
    pub async fn follow(self: Arc<Self>, mut signals: broadcast::Receiver<ShipSignal>) {
        loop {
            match signals.recv().await {
                Ok(ShipSignal::Dispatched(hosts)) => self.ring(&hosts),
                Ok(ShipSignal::Reported(_)) => self.reported(),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.ring_all();
                    self.reported();
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}
