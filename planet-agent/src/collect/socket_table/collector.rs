//! The socket table collector: enumerates every task interval and sends
//! the table, with this host's address, to the model.

use std::{
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Instant,
};

use planet_cli::periodic::Periodic;

use super::{OwnerMethod, OwnerSource};
use crate::collect::{Input, Report, Reports, Run, local_addr};

/// Name of this task in self-metrics (planet-exporter's name for it).
pub const TASK_NAME: &str = "socketstat";

pub struct SocketTableCollector {
    /// `-local-address`: overrides the routing-table lookup.
    pub local_override: Option<IpAddr>,
    pub proc_root: PathBuf,
    /// Where socket owners come from (see [`OwnerSource::for_request`]);
    /// shared with the blocking collection jobs.
    pub owners: Arc<Mutex<OwnerSource>>,
    pub reports: Reports,
    /// The owner method last reported.
    pub method: Option<OwnerMethod>,
}

impl Periodic for SocketTableCollector {
    async fn run(&mut self) {
        let started = Instant::now();
        let (proc_root, override_ip, owners) = (
            self.proc_root.clone(),
            self.local_override,
            self.owners.clone(),
        );
        let result = tokio::task::spawn_blocking(move || {
            let mut owners = owners
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let table = super::collect_with(&proc_root, &mut owners);
            (
                table,
                owners.method(),
                override_ip.or_else(local_addr::detect),
            )
        })
        .await;
        let input = match result {
            Ok((table, method, local_ip)) => {
                if self.method.replace(method) != Some(method) {
                    self.reports
                        .send(Report::input(TASK_NAME, Input::OwnerMethod(method)))
                        .await;
                }
                match table {
                    Ok(table) => {
                        tracing::debug!(
                            listeners = table.listeners.len(),
                            connections = table.connections.len(),
                            "socket table collected"
                        );
                        Some(Input::SocketTable { table, local_ip })
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "socketstat collect failed; keeping the previous dependencies");
                        None
                    }
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "socketstat collect panicked");
                None
            }
        };
        let run = Run::since(started, input.is_some());
        self.reports.send(Report::ran(TASK_NAME, run, input)).await;
    }
}
