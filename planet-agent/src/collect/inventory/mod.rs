//! The inventory: IP addresses and CIDR networks mapped to a domain and a
//! hostgroup. It is fetched from an HTTP(S) endpoint or a local file and
//! refreshed periodically.
//!
//! Pipeline: [`fetch`] (bytes, bounded) → [`parse`] (hosts, pure) →
//! [`Inventory::with_localhost`] (lookup structure, pure) →
//! [`InventoryCollector`] (reports it to the model, which keeps the last
//! good inventory on any failure).
//!
//! # Formats
//!
//! - `arrayjson`: one JSON array of host objects. `null` means no hosts.
//!   Data after the array is ignored with a warning, as in planet-exporter.
//!   An empty body is an error.
//! - `ndjson`: host objects one after another, separated by whitespace.
//!   The format is not line-based, so pretty-printed objects work. An empty
//!   body means no hosts.
//!
//! A host object has the string fields `ip_address`, `domain` and
//! `hostgroup`:
//!
//! - missing fields and `null` values are empty;
//! - keys match ASCII case-insensitively, like Go's `encoding/json`;
//! - a repeated key takes its last value.
//!
//! In both formats, an entry that is valid JSON but not a usable host object
//! is **skipped and counted** ([`Parsed::skipped`]). That covers an unknown
//! field, a wrong type, or a value that is not an object. planet-exporter
//! rejected the whole arrayjson body for a single such entry. Only a JSON
//! *syntax* error fails the refresh, in both formats: an HTML error page or
//! a truncated body.
//!
//! # Matching rules (planet-exporter §3.4, with the improvements noted)
//!
//! - Hosts whose domain and hostgroup are both empty carry no information
//!   and are ignored.
//! - An `ip_address` containing `/` is a CIDR network. Host bits are masked
//!   (`10.1.2.3/16` is 10.1.0.0/16). An invalid CIDR is ignored.
//! - Anything else is an exact key. For a duplicate key the last entry wins.
//!   *Improvement:* a key that parses as an IP address is normalised, so
//!   `::0001` matches `::1` and `::ffff:10.0.0.1` matches `10.0.0.1`. A key
//!   that is not an IP address keeps matching literally through
//!   [`Inventory::lookup_str`].
//! - Lookup: the exact address wins, even over a more specific network.
//!   Otherwise the longest matching prefix wins, and among equal prefixes
//!   the first one listed. A `/0` matches its whole family.
//! - IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) count as IPv4 in keys,
//!   networks (`::ffff:10.0.0.0/104` is 10.0.0.0/8) and lookups. Otherwise
//!   IPv4 networks never match IPv6 addresses, and vice versa.
//! - Every successful load appends `127.0.0.1 → localhost/localhost` after
//!   the fetched hosts ([`Inventory::with_localhost`]), so it overrides an
//!   inventory entry for 127.0.0.1. Before the first success the inventory
//!   is empty, with no localhost entry (planet-exporter §2.3).
//!
//! # planet-exporter bugs this module avoids
//!
//! - ndjson looped forever at 100 % CPU on a JSON syntax error, freezing
//!   every task. Here a syntax error ends the parse with an error.
//! - ndjson reused one record for all entries, so a field missing from an
//!   entry kept the previous entry's value. Here every entry is decoded
//!   fresh.
//! - The HTTP status was not checked, so a 404 or 500 body was parsed.
//!   Here only 2xx is accepted.
//! - Bodies had no size limit. Here the body is streamed and the fetch stops
//!   at `max_bytes` (default 16 MiB).
//! - Exact keys were raw strings, so they only matched Go's textual form of
//!   an address.

mod collector;
mod fetch;
mod lookup;
mod parse;

use std::time::SystemTime;

pub use collector::{
    DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT, InventoryCollector, InventoryConfig, MIN_REFRESH,
    RefreshError, TASK_NAME,
};
pub use fetch::{AddressError, FetchError, Source, fetch};
pub use lookup::{Inventory, LOCALHOST};
#[doc(hidden)]
pub use lookup::{probe_addresses, reference_lookup};
pub use parse::{Format, ParseError, Parsed, UnknownFormat, parse};

/// One inventory entry as the fleet's inventory service lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Host {
    /// As written in the inventory: an IP or a CIDR such as `10.3.0.0/16`.
    pub ip_address: String,
    /// DNS-style name of the host (e.g. `xyz.service.consul`); may be empty.
    pub domain: String,
    /// Group the host belongs to (e.g. a service name); may be empty.
    pub hostgroup: String,
}

impl Host {
    /// A host from its three fields.
    pub fn new(
        ip_address: impl Into<String>,
        domain: impl Into<String>,
        hostgroup: impl Into<String>,
    ) -> Self {
        Self {
            ip_address: ip_address.into(),
            domain: domain.into(),
            hostgroup: hostgroup.into(),
        }
    }

    /// Whether the entry carries neither a domain nor a hostgroup. Such
    /// entries are ignored ("unknown hosts provide zero value").
    pub fn is_uninformative(&self) -> bool {
        self.domain.is_empty() && self.hostgroup.is_empty()
    }
}

/// What the inventory task reports about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InventoryStatus {
    /// Entries in the inventory in use, including the localhost entry.
    pub entries: usize,
    /// When the inventory in use was loaded; `None` before the first
    /// successful refresh.
    pub last_success: Option<SystemTime>,
    /// Failed refreshes since start.
    pub failures: u64,
    /// The error chain of the most recent refresh if it failed; cleared by
    /// a successful refresh.
    pub last_error: Option<String>,
}
