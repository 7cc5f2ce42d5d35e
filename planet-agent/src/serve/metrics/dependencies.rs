//! planet-exporter's dependency families: `planet_upstream`,
//! `planet_downstream`, `planet_server_process`, `planet_hostname`.

use super::{
    Sink,
    family::{Family, Spec},
};
use crate::model::snapshot::Snapshot;

const DEPENDENCY_LABELS: &[&str] = &[
    "local_hostgroup",
    "remote_hostgroup",
    "local_address",
    "remote_address",
    "port",
    "protocol",
    "process_name",
];

pub const UPSTREAM: Spec = Spec::gauge(
    "planet_upstream",
    "Upstream dependency of this machine",
    DEPENDENCY_LABELS,
);
pub const DOWNSTREAM: Spec = Spec::gauge(
    "planet_downstream",
    "Downstream dependency of this machine",
    DEPENDENCY_LABELS,
);
pub const SERVER_PROCESS: Spec = Spec::gauge(
    "planet_server_process",
    "Server process that are listening on network interfaces",
    &["local_hostgroup", "bind", "process_name", "port"],
);
pub const HOSTNAME: Spec = Spec::gauge(
    "planet_hostname",
    "Hostname of the collected machine",
    &["local_hostgroup", "hostname", "domain", "ip"],
);

pub const SPECS: [&Spec; 3] = [&UPSTREAM, &DOWNSTREAM, &SERVER_PROCESS];

/// The `network_dependency` collector's families.
pub fn render(snapshot: &Snapshot, out: &mut dyn Sink) {
    let deps = &snapshot.dependencies;
    for (spec, list) in [(&UPSTREAM, &deps.upstream), (&DOWNSTREAM, &deps.downstream)] {
        let mut family = Family::new(spec);
        for d in list.iter() {
            family.push(
                &[
                    &d.local_hostgroup,
                    &d.remote_hostgroup,
                    &d.local_address,
                    &d.remote_address,
                    &d.port.to_string(),
                    d.protocol,
                    &d.process_name,
                ],
                1.0,
            );
        }
        out.family(family);
    }
    let local_hostgroup = local_host(snapshot)
        .map(|h| h.hostgroup.clone())
        .unwrap_or_default();
    let mut servers = Family::new(&SERVER_PROCESS);
    for s in &deps.servers {
        servers.push(
            &[
                &local_hostgroup,
                &s.bind,
                &s.process_name,
                &s.port.to_string(),
            ],
            1.0,
        );
    }
    out.family(servers);
}

/// The inventory entry of this host's own address.
fn local_host(snapshot: &Snapshot) -> Option<&crate::collect::inventory::Host> {
    snapshot.inventory.lookup(snapshot.local_ip?)
}

/// The `hostmeta` collector: `planet_hostname`. Fails when the OS hostname
/// cannot be read.
pub fn render_hostmeta(snapshot: &Snapshot, out: &mut dyn Sink) -> Result<(), std::io::Error> {
    let hostname = hostname()?;
    let host = local_host(snapshot);
    let mut family = Family::new(&HOSTNAME);
    family.push(
        &[
            host.map_or("", |h| &h.hostgroup),
            &hostname,
            host.map_or("", |h| &h.domain),
            host.map_or("", |h| &h.ip_address),
        ],
        1.0,
    );
    out.family(family);
    Ok(())
}

/// The kernel hostname (uname), like Go's `os.Hostname`.
pub fn hostname() -> Result<String, std::io::Error> {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for writes of its length.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}
