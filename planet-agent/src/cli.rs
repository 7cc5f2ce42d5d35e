//! Command line: planet-exporter's flags (same names, defaults and meaning)
//! plus the in-process flow task's own. Go-style single-dash long flags
//! (`-task-interval 7s`, `-task-flow-enabled=false`) work as well as `--`.

use std::{ffi::OsString, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{ArgAction, Parser, builder::BoolishValueParser};

use planet_cli::{
    go_duration,
    go_flags::{self, GoStyle},
    logging::LogArgs,
};

use crate::{collect::ebpf::ModeRequest, collect::socket_table::OwnerRequest};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "planet-agent",
    about = "Per-host network dependency agent: which services this host calls, which call it, \
             through which process and port, with bytes each way",
    disable_version_flag = true
)]
pub struct Cli {
    /// Address to which exporter will bind its HTTP interface
    #[arg(long, default_value = "0.0.0.0:19100", value_name = "ADDR")]
    pub listen_address: SocketAddr,

    #[command(flatten)]
    pub log: LogArgs,

    /// Show version and exit
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub version: bool,

    /// Try every flow probe mode on this kernel, print which attach (and why
    /// the others cannot), and exit
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub check_flow_modes: bool,

    /// Interval between collection of expensive data into memory (Go duration)
    #[arg(long, default_value = "7s", value_parser = parse_interval, value_name = "DURATION")]
    pub task_interval: Duration,

    /// Enable the in-process eBPF flow task (exact bytes per process and peer)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "true", value_parser = BoolishValueParser::new())]
    pub task_flow_enabled: bool,

    /// Probe mode of the flow task: auto, tracepoint, fentry or kprobe
    #[arg(long, default_value = "auto", value_name = "MODE")]
    pub task_flow_mode: ModeRequest,

    /// Capacity of the kernel flow map (live TCP flows tracked at once)
    #[arg(long, default_value_t = planet_common::names::FLOWS_MAX_ENTRIES, value_name = "N")]
    pub task_flow_max_flows: u32,

    /// Have the kernel time every run of the flow programs (BPF_ENABLE_STATS,
    /// needs CAP_SYS_ADMIN) for planet_flow_program_run*; it costs two clock
    /// reads per probed event
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub task_flow_program_stats: bool,

    /// Where the kernel's BTF is read for type layouts (struct offsets the
    /// eBPF programs use). Another file (e.g. from BTFHub) serves kernels
    /// that do not publish their own; a path that does not exist means no
    /// BTF: the flow task then reads trace records and socket owners come
    /// from /proc
    #[arg(long, default_value = crate::collect::ebpf::layout::KERNEL_BTF_PATH, value_name = "PATH")]
    pub kernel_btf: PathBuf,

    /// Enable socketstat collector task
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "true", value_parser = BoolishValueParser::new())]
    pub task_socketstat_enabled: bool,

    /// How the socketstat task finds each socket's process: auto (the eBPF
    /// task_file iterator where it loads, else /proc), ebpf_iter or proc_walk
    #[arg(long, default_value = "auto", value_name = "METHOD")]
    pub task_socketstat_owners: OwnerRequest,

    /// Enable darkstat collector task
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub task_darkstat_enabled: bool,

    /// Darkstat target address
    #[arg(long, default_value = "", value_name = "URL")]
    pub task_darkstat_addr: String,

    /// Enable the external ebpf_exporter collector task
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub task_ebpf_enabled: bool,

    /// External ebpf_exporter target address
    #[arg(
        long,
        default_value = "http://localhost:9435/metrics",
        value_name = "URL"
    )]
    pub task_ebpf_addr: String,

    /// Time limit for one darkstat or ebpf_exporter scrape, connect to last byte (Go duration)
    #[arg(long, default_value = "10s", value_parser = parse_interval, value_name = "DURATION")]
    pub task_scrape_timeout: Duration,

    /// Largest darkstat or ebpf_exporter response accepted, in bytes
    #[arg(long, default_value_t = crate::collect::scrapes::scrape::DEFAULT_MAX_BYTES, value_name = "BYTES")]
    pub task_scrape_max_bytes: usize,

    /// Enable inventory collector task
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub task_inventory_enabled: bool,

    /// HTTP endpoint that returns the inventory data
    #[arg(long, default_value = "", value_name = "URL")]
    pub task_inventory_addr: String,

    /// Inventory format to parse the returned inventory data (arrayjson or ndjson)
    #[arg(long, default_value = "arrayjson", value_name = "FORMAT")]
    pub task_inventory_format: String,

    /// Interval between inventory refreshes (Go duration; default 25 × task interval)
    #[arg(long, value_parser = parse_interval, value_name = "DURATION")]
    pub task_inventory_interval: Option<Duration>,

    /// Time limit for one inventory fetch, connect to last byte (Go duration)
    #[arg(long, default_value = "10s", value_parser = parse_interval, value_name = "DURATION")]
    pub task_inventory_timeout: Duration,

    /// Largest inventory body accepted, in bytes
    #[arg(long, default_value_t = 16 << 20, value_name = "BYTES")]
    pub task_inventory_max_bytes: usize,

    /// How long an edge stays visible after its last activity: a closed connection in planet_upstream/planet_downstream, an idle byte series in the byte families (Go duration)
    #[arg(long, default_value = "2m", value_parser = parse_interval, value_name = "DURATION")]
    pub task_dependency_retention: Duration,

    /// Most series one metric family shows; beyond it the lightest edges are folded into an "other" series
    #[arg(long, default_value_t = crate::model::cardinality::DEFAULT_MAX_SERIES, value_parser = parse_max_series, value_name = "N")]
    pub metrics_max_series_per_family: usize,

    /// Path to a configuration file that can enable TLS or authentication (Prometheus exporter-toolkit format)
    #[arg(long = "web.config.file", value_name = "PATH")]
    pub web_config_file: Option<std::path::PathBuf>,

    /// This host's own address, instead of the default-route interface's
    #[arg(long, value_name = "IP")]
    pub local_address: Option<std::net::IpAddr>,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = go_duration::parse(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("the task interval must be greater than zero".into());
    }
    Ok(d)
}

fn parse_max_series(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    if n < 2 {
        return Err("at least 2 series (an edge's or the other series' egress and ingress)".into());
    }
    Ok(n)
}

impl Cli {
    /// The cardinality budget the flags set.
    pub fn budget(&self) -> crate::model::cardinality::Budget {
        crate::model::cardinality::Budget {
            max_series: self.metrics_max_series_per_family,
            retention: self.task_dependency_retention,
        }
    }

    /// The inventory refresh interval: the flag, or 25 × the task interval
    /// as in planet-exporter.
    pub fn inventory_interval(&self) -> Duration {
        self.task_inventory_interval
            .unwrap_or(self.task_interval * 25)
    }
}

impl GoStyle for Cli {
    /// Rewrites Go-style `-long-flag[=v]` to `--long-flag[=v]`, so Go users'
    /// command lines keep working, and unknown ones are reported by their
    /// full name: any single-dash word of two or more characters that starts
    /// with a letter is taken for a long flag. Short flags (`-h`), values
    /// and everything after `--` are left alone.
    fn go_style_args<I, T>(args: I) -> Vec<OsString>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        go_flags::rewrite(args, |name| {
            name.len() > 1 && name.starts_with(|c: char| c.is_ascii_alphabetic())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_go_style(std::iter::once("planet-agent").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_planet_exporter() {
        let cli = parse(&[]);
        assert_eq!(cli.listen_address, "0.0.0.0:19100".parse().unwrap());
        assert_eq!(cli.task_interval, Duration::from_secs(7));
        assert!(cli.task_socketstat_enabled);
        assert!(!cli.task_darkstat_enabled);
        assert!(!cli.task_ebpf_enabled);
        assert_eq!(cli.task_ebpf_addr, "http://localhost:9435/metrics");
        assert!(!cli.task_inventory_enabled);
        assert_eq!(cli.task_inventory_format, "arrayjson");
        assert_eq!(cli.log.log_level, tracing::Level::INFO);
        assert!(cli.task_flow_enabled);
        assert_eq!(cli.task_flow_mode, ModeRequest::Auto);
        assert_eq!(cli.task_socketstat_owners, OwnerRequest::Auto);
        assert_eq!(cli.inventory_interval(), Duration::from_secs(175));
        assert_eq!(cli.task_inventory_timeout, Duration::from_secs(10));
        assert_eq!(cli.local_address, None);
        assert_eq!(cli.task_scrape_timeout, Duration::from_secs(10));
        assert_eq!(cli.task_scrape_max_bytes, 64 << 20);
        assert_eq!(cli.web_config_file, None);
        assert_eq!(cli.budget(), crate::model::cardinality::Budget::default());
        assert_eq!(cli.task_dependency_retention, Duration::from_secs(120));
    }

    #[test]
    fn go_style_single_dash_flags() {
        let cli = parse(&[
            "-task-interval",
            "1m30s",
            "-task-flow-enabled=false",
            "-listen-address=127.0.0.1:9999",
            "-task-darkstat-enabled",
            "-log-level",
            "WARNING",
            "-task-flow-mode",
            "tracepoint",
            "-local-address",
            "fd00::5",
            "-task-inventory-interval=1m",
            "-web.config.file=/etc/planet/web.yml",
        ]);
        assert_eq!(
            cli.web_config_file.as_deref(),
            Some(std::path::Path::new("/etc/planet/web.yml"))
        );
        assert_eq!(cli.local_address, Some("fd00::5".parse().unwrap()));
        assert_eq!(cli.inventory_interval(), Duration::from_secs(60));
        assert_eq!(cli.task_interval, Duration::from_secs(90));
        assert!(!cli.task_flow_enabled);
        assert_eq!(cli.listen_address, "127.0.0.1:9999".parse().unwrap());
        assert!(cli.task_darkstat_enabled);
        assert_eq!(cli.log.log_level, tracing::Level::WARN);
        assert_eq!(
            cli.task_flow_mode,
            ModeRequest::Only(crate::collect::ebpf::ProbeMode::Tracepoint)
        );
    }

    #[test]
    fn double_dash_flags() {
        let cli = parse(&[
            "--task-interval=2s",
            "--task-socketstat-enabled=false",
            "--task-socketstat-owners=proc_walk",
            "--version",
        ]);
        assert_eq!(
            cli.task_socketstat_owners,
            OwnerRequest::Only(crate::collect::socket_table::OwnerMethod::ProcWalk)
        );
        assert_eq!(cli.task_interval, Duration::from_secs(2));
        assert!(!cli.task_socketstat_enabled);
        assert!(cli.version);
    }

    #[test]
    fn rejects_bad_values() {
        for args in [
            &["-task-interval", "0s"][..],
            &["-task-interval", "soon"],
            &["-task-flow-mode", "uprobe"],
            &["-task-socketstat-owners", "netlink"],
            &["-log-level", "loud"],
            &["-listen-address", "nowhere"],
            &["-no-such-flag"],
            &["-metrics-max-series-per-family", "1"],
            &["-metrics-max-series-per-family", "many"],
        ] {
            let argv = std::iter::once("planet-agent").chain(args.iter().copied());
            assert!(Cli::try_parse_go_style(argv).is_err(), "{args:?}");
        }
    }

    #[test]
    fn unknown_flags_are_named_in_full() {
        let argv = ["planet-agent", "-no-such-flag"];
        let err = Cli::try_parse_go_style(argv).unwrap_err().to_string();
        assert!(err.contains("--no-such-flag"), "{err}");
    }

    #[test]
    fn values_that_look_like_flags_are_left_alone() {
        let args = Cli::go_style_args(["planet-agent", "--", "-task-interval"]);
        assert_eq!(args[2], "-task-interval");
    }
}
