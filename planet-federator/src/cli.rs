//! Command line. Without a subcommand it is the original planet-federator
//! (same flags, same defaults); `edges` prints the dependency history and
//! `bigquery` replaces planet-federator-influxdb-to-bq. Go-style
//! single-dash long flags (`-cron-job-schedule "*/30 * * * * *"`,
//! `-log-disable-colors=true`) work as well as `--`.

use std::{net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use clap::{ArgAction, Args, Parser, Subcommand, builder::BoolishValueParser};
use jiff::SignedDuration;

use planet_cli::{errors, go_duration, go_flags::GoStyle, logging::LogArgs};

use crate::{
    influx::{ApiChoice, InfluxConfig},
    jobs::JobKind,
    promql::Preset,
    schedule::Schedule,
};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "planet-federator",
    about = "Aggregates planet-agent metrics from Prometheus into InfluxDB on a cron schedule, \
             keeps the service dependency history, and exports it for BigQuery",
    disable_version_flag = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub log: LogArgs,

    #[command(flatten)]
    pub influx: InfluxArgs,

    #[command(flatten)]
    pub run: RunArgs,

    /// Show version and exit
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub version: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print the service dependency list and what appeared or disappeared
    /// in a time window, from the stored history (table or JSON)
    Edges(EdgesArgs),
    /// Render the service dependency map of a time window from the stored
    /// history and traffic: SVG for people, DOT, Mermaid or JSON for tools
    Map(MapArgs),
    /// Write the hourly traffic and daily dependency aggregations as
    /// newline-delimited JSON plus BigQuery schema files, for `bq load`
    /// (replaces planet-federator-influxdb-to-bq)
    Bigquery(Box<BigqueryArgs>),
}

#[derive(Debug, Clone, Args)]
pub struct InfluxArgs {
    /// Target Influxdb HTTP Address to store pre-processed planet-exporter data
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:8086",
        value_name = "URL"
    )]
    pub influxdb_addr: String,

    /// InfluxDB write API: v1 (/write), v2 (/api/v2/write) or auto (ask /ping)
    #[arg(long, global = true, default_value = "auto", value_name = "API")]
    pub influxdb_api: ApiChoice,

    /// Target Influxdb token (v2; on InfluxDB 1.x "user:password")
    #[arg(
        long,
        global = true,
        default_value = "",
        value_name = "TOKEN",
        hide_default_value = true
    )]
    pub influxdb_token: String,

    /// Influxdb organization (v2)
    #[arg(long, global = true, default_value = "mothership", value_name = "ORG")]
    pub influxdb_org: String,

    /// Influxdb bucket (v2; on InfluxDB 1.x "database" or "database/retention-policy")
    #[arg(
        long,
        global = true,
        default_value = "mothership",
        value_name = "BUCKET"
    )]
    pub influxdb_bucket: String,

    /// InfluxDB 1.x database [default: the bucket's database part]
    #[arg(long, global = true, value_name = "DATABASE")]
    pub influxdb_database: Option<String>,

    /// InfluxDB 1.x retention policy [default: the bucket's part after '/', else the database's default]
    #[arg(long, global = true, value_name = "RP")]
    pub influxdb_retention_policy: Option<String>,

    /// InfluxDB 1.x user [default: the token's part before ':']
    #[arg(long, global = true, value_name = "USER")]
    pub influxdb_username: Option<String>,

    /// InfluxDB 1.x password [default: the token's part after ':']
    #[arg(long, global = true, value_name = "PASSWORD")]
    pub influxdb_password: Option<String>,
}

impl InfluxArgs {
    pub fn config(&self, timeout: Duration) -> InfluxConfig {
        InfluxConfig {
            addr: self.influxdb_addr.clone(),
            api: self.influxdb_api,
            token: self.influxdb_token.clone(),
            org: self.influxdb_org.clone(),
            bucket: self.influxdb_bucket.clone(),
            database: self.influxdb_database.clone(),
            retention_policy: self.influxdb_retention_policy.clone(),
            username: self.influxdb_username.clone(),
            password: self.influxdb_password.clone(),
            timeout,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Cron jobs schedule to pre-process planet-agent metrics: 6 fields with
    /// seconds (second minute hour day-of-month month day-of-week), @every
    /// <duration>, @hourly..., optional CRON_TZ=<zone> prefix; local time zone
    #[arg(long, default_value = "*/30 * * * * *", value_parser = parse_schedule, value_name = "CRON")]
    pub cron_job_schedule: Schedule,

    /// Timeout per federator job in second
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..), value_name = "SECONDS")]
    pub cron_job_timeout_second: u64,

    /// Cron jobs time offset. (e.g. '-1h5m' to query data from 1 hour 5 minutes ago)
    #[arg(long, default_value = "0s", value_parser = parse_offset, allow_hyphen_values = true, value_name = "DURATION")]
    pub cron_job_time_offset: SignedDuration,

    /// Points per InfluxDB write request (the original parsed this flag but
    /// never used it; its client wrote batches of 5000)
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..), value_name = "POINTS")]
    pub influxdb_batch_size: u64,

    /// Points kept in memory while InfluxDB is unreachable; beyond that new
    /// points are dropped (and counted)
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..), value_name = "POINTS")]
    pub influxdb_buffer_points: u64,

    /// Longest wait between write retries (backoff doubles from 1s up to this)
    #[arg(long, default_value = "30s", value_parser = parse_positive, value_name = "DURATION")]
    pub influxdb_retry_max_interval: Duration,

    /// Prometheus address containing planet-agent metrics
    #[arg(long, default_value = "http://127.0.0.1:9090/", value_name = "URL")]
    pub prometheus_addr: String,

    /// Evaluate the queries this long before the job time (the original's fixed 15s)
    #[arg(long, default_value = "15s", value_parser = parse_duration, value_name = "DURATION")]
    pub query_lag: Duration,

    /// Range of the traffic job's irate() (the original's 30s; needs two scrapes inside it)
    #[arg(long, default_value = "30s", value_parser = parse_positive, value_name = "DURATION")]
    pub query_rate_window: Duration,

    /// Range of the dependency jobs' max_over_time() (the original's 15s; needs a scrape inside it)
    #[arg(long, default_value = "15s", value_parser = parse_positive, value_name = "DURATION")]
    pub query_dependency_window: Duration,

    /// Built-in exclusion lists: planet-exporter (the original's hard-coded
    /// address and port regexes) or none
    #[arg(long, default_value = "planet-exporter", value_name = "PRESET")]
    pub exclude_preset: Preset,

    /// Also exclude remote addresses (remote_ip, remote_domain,
    /// remote_address) matching this anchored regex; repeatable
    #[arg(long, value_name = "REGEX")]
    pub exclude_address: Vec<String>,

    /// Also exclude dependency ports matching this anchored regex; repeatable
    #[arg(long, value_name = "REGEX")]
    pub exclude_port: Vec<String>,

    /// Keep the service dependency history (measurement service_edge)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "true", value_parser = BoolishValueParser::new())]
    pub history: bool,

    /// Rewrite an edge's last-seen time at most this often
    #[arg(long, default_value = "5m", value_parser = parse_positive, value_name = "DURATION")]
    pub history_resolution: Duration,

    /// Address for the federator's own /metrics ("" disables it)
    #[arg(long, default_value = "0.0.0.0:19101", value_parser = parse_listen, value_name = "ADDR")]
    pub listen_address: Listen,

    /// Jobs to run (comma-separated: traffic, upstream, downstream)
    #[arg(long, value_delimiter = ',', default_value = "traffic,upstream,downstream", value_parser = parse_job, value_name = "JOBS")]
    pub jobs: Vec<JobKind>,

    /// Run the jobs once now, flush, and exit (no schedule)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub once: bool,
}

/// `--listen-address`: an address, or disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

#[derive(Debug, Clone, Args)]
pub struct EdgesArgs {
    /// Window start: a duration before --until (24h, 7d, 90m) or a time (RFC 3339)
    #[arg(long, default_value = "24h", value_name = "WHEN")]
    pub since: String,

    /// Window end: "now" or a time (RFC 3339)
    #[arg(long, default_value = "now", value_name = "WHEN")]
    pub until: String,

    /// An edge unseen for this long is gone (keep it above the history resolution)
    #[arg(long, default_value = "15m", value_parser = parse_positive, value_name = "DURATION")]
    pub stale_after: Duration,

    /// Only this service's edges
    #[arg(long, value_name = "SERVICE")]
    pub service: Option<String>,

    /// Output format: table or json
    #[arg(long, default_value = "table", value_parser = ["table", "json"], value_name = "FORMAT")]
    pub format: String,
}

#[derive(Debug, Clone, Args)]
pub struct MapArgs {
    /// Window start: a duration before --until (24h, 7d, 90m) or a time (RFC 3339)
    #[arg(long, default_value = "24h", value_name = "WHEN")]
    pub since: String,

    /// Window end: "now" or a time (RFC 3339)
    #[arg(long, default_value = "now", value_name = "WHEN")]
    pub until: String,

    /// A dependency unseen for this long before --until is drawn as gone (dashed)
    #[arg(long, default_value = "15m", value_parser = parse_positive, value_name = "DURATION")]
    pub stale_after: Duration,

    /// Only this service and its neighbourhood (see --depth)
    #[arg(long, value_name = "SERVICE")]
    pub service: Option<String>,

    /// With --service: how many dependency hops around it, either direction
    #[arg(long, default_value_t = 1, value_name = "HOPS")]
    pub depth: usize,

    /// Only dependencies carrying at least this many bits/s on average
    /// (suffixes k, M, G: 500k, 1.5M); those without traffic data count as 0
    #[arg(long, value_parser = parse_bandwidth, value_name = "BPS")]
    pub min_bandwidth: Option<f64>,

    /// Output format: svg, dot, mermaid or json
    #[arg(long, default_value = "svg", value_parser = ["svg", "dot", "mermaid", "json"], value_name = "FORMAT")]
    pub format: String,

    /// Write to this file instead of standard output
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct BigqueryArgs {
    /// Traffic job schedule (hourly at HH:00:30, local time)
    #[arg(long, default_value = "30 0 * * * *", value_parser = parse_schedule, value_name = "CRON")]
    pub cron_job_schedule_traffic: Schedule,

    /// Dependency job schedule (daily at 11:00:30, local time)
    #[arg(long, default_value = "30 0 11 * * *", value_parser = parse_schedule, value_name = "CRON")]
    pub cron_job_schedule_dependency: Schedule,

    /// Timeout per job in second (also the InfluxDB request timeout)
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..), value_name = "SECONDS")]
    pub cron_job_timeout_second: u64,

    /// Shifts the job time: both the queried window and inventory_date
    #[arg(long, default_value = "0s", value_parser = parse_offset, allow_hyphen_values = true, value_name = "DURATION")]
    pub cron_job_time_offset: SignedDuration,

    /// BigQuery project, for the printed `bq load` commands
    #[arg(long, default_value = "", value_name = "PROJECT")]
    pub bq_project_id: String,

    /// BigQuery dataset, for the printed `bq load` commands
    #[arg(long, default_value = "", value_name = "DATASET")]
    pub bq_dataset_id: String,

    /// Traffic table: names the files
    #[arg(long, default_value = "planet_exporter_traffic", value_name = "TABLE")]
    pub bq_traffic_table_id: String,

    /// Dependency table: names the files
    #[arg(
        long,
        default_value = "planet_exporter_dependency",
        value_name = "TABLE"
    )]
    pub bq_dependency_table_id: String,

    /// Directory for the NDJSON and schema files
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub bq_output_dir: PathBuf,

    /// Run one job now and exit: traffic, dependency or all
    #[arg(long, value_parser = ["traffic", "dependency", "all"], value_name = "JOB")]
    pub once: Option<String>,
}

fn parse_schedule(s: &str) -> Result<Schedule, String> {
    Schedule::parse(s).map_err(|e| errors::chain(&e))
}

fn parse_offset(s: &str) -> Result<SignedDuration, String> {
    go_duration::parse_signed(s).map_err(|e| e.to_string())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    go_duration::parse(s).map_err(|e| e.to_string())
}

fn parse_positive(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

/// Bits per second: a number with an optional k, M or G (powers of 1000).
pub(crate) fn parse_bandwidth(s: &str) -> Result<f64, String> {
    let t = s.trim().trim_end_matches("bps").trim_end_matches("bit/s");
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('M') => (&t[..t.len() - 1], 1e6),
        Some('G') => (&t[..t.len() - 1], 1e9),
        _ => (t, 1.0),
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v * mult),
        _ => Err(format!(
            "{s:?} is not a bandwidth (bits/s, e.g. 250000, 500k, 1.5M)"
        )),
    }
}

fn parse_listen(s: &str) -> Result<Listen, String> {
    if s.is_empty() || s == "none" {
        return Ok(Listen(None));
    }
    SocketAddr::from_str(s)
        .map(|a| Listen(Some(a)))
        .map_err(|e| format!("{s:?}: {e}"))
}

fn parse_job(s: &str) -> Result<JobKind, String> {
    JobKind::ALL
        .into_iter()
        .find(|j| j.name() == s)
        .ok_or_else(|| format!("unknown job {s:?} (use traffic, upstream, downstream)"))
}

impl GoStyle for Cli {}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_go_style(std::iter::once("planet-federator").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_original() {
        let cli = parse(&[]);
        assert!(cli.command.is_none());
        assert_eq!(cli.run.cron_job_schedule.to_string(), "*/30 * * * * *");
        assert_eq!(cli.run.cron_job_timeout_second, 30);
        assert_eq!(cli.run.cron_job_time_offset, SignedDuration::ZERO);
        assert_eq!(cli.influx.influxdb_addr, "http://127.0.0.1:8086");
        assert_eq!(cli.influx.influxdb_token, "");
        assert_eq!(cli.influx.influxdb_org, "mothership");
        assert_eq!(cli.influx.influxdb_bucket, "mothership");
        assert_eq!(cli.run.prometheus_addr, "http://127.0.0.1:9090/");
        assert_eq!(cli.log.log_level, tracing::Level::INFO);
        assert!(!cli.log.log_disable_colors && !cli.log.log_disable_timestamp && !cli.version);
        assert_eq!(cli.run.exclude_preset, Preset::PlanetExporter);
        assert_eq!(cli.run.query_lag, Duration::from_secs(15));
        assert_eq!(cli.run.jobs, JobKind::ALL);
        assert!(cli.run.history);
    }

    #[test]
    fn go_style_command_line() {
        let cli = parse(&[
            "-cron-job-schedule",
            "*/10 * * * * *",
            "-cron-job-time-offset",
            "-1h5m",
            "-cron-job-timeout-second=20",
            "-prometheus-addr",
            "http://127.0.0.1:9091",
            "-influxdb-addr",
            "http://127.0.0.1:8087",
            "-influxdb-bucket",
            "planet/week",
            "-influxdb-token=alice:pw",
            "-influxdb-batch-size",
            "20",
            "-log-disable-colors",
            "-log-disable-timestamp=true",
            "-log-level",
            "warning",
        ]);
        assert_eq!(cli.run.cron_job_schedule.to_string(), "*/10 * * * * *");
        assert_eq!(
            cli.run.cron_job_time_offset,
            SignedDuration::from_secs(-3900)
        );
        assert_eq!(cli.run.cron_job_timeout_second, 20);
        assert_eq!(cli.run.prometheus_addr, "http://127.0.0.1:9091");
        assert_eq!(cli.influx.influxdb_bucket, "planet/week");
        assert_eq!(cli.influx.influxdb_token, "alice:pw");
        assert_eq!(cli.run.influxdb_batch_size, 20);
        assert!(cli.log.log_disable_colors && cli.log.log_disable_timestamp);
        assert_eq!(cli.log.log_level, tracing::Level::WARN);
    }

    #[test]
    fn version_flag_go_style() {
        assert!(parse(&["-version"]).version);
    }

    #[test]
    fn bad_cron_expression_is_a_clear_error() {
        let err = Cli::try_parse_go_style(["planet-federator", "-cron-job-schedule", "* * * * *"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected exactly 6"), "{err}");
        assert!(err.contains("cron-job-schedule"), "{err}");
    }

    #[test]
    fn exclusions_and_listen() {
        let cli = parse(&[
            "--exclude-preset",
            "none",
            "--exclude-address",
            "10\\..*",
            "--exclude-address",
            "svc-x.*",
            "--exclude-port",
            "22",
            "--listen-address",
            "",
            "--jobs",
            "traffic,downstream",
        ]);
        assert_eq!(cli.run.exclude_preset, Preset::None);
        assert_eq!(cli.run.exclude_address, ["10\\..*", "svc-x.*"]);
        assert_eq!(cli.run.exclude_port, ["22"]);
        assert_eq!(cli.run.listen_address, Listen(None));
        assert_eq!(cli.run.jobs, [JobKind::Traffic, JobKind::Downstream]);
    }

    #[test]
    fn subcommands_take_influx_flags_and_their_own() {
        let cli = parse(&[
            "edges",
            "-influxdb-addr",
            "http://127.0.0.1:1",
            "-since",
            "7d",
            "-format",
            "json",
        ]);
        assert_eq!(cli.influx.influxdb_addr, "http://127.0.0.1:1");
        let Some(Command::Edges(e)) = cli.command else {
            panic!("edges")
        };
        assert_eq!(e.since, "7d");
        assert_eq!(e.format, "json");

        let cli = parse(&[
            "bigquery",
            "-influxdb-database",
            "mothership",
            "-influxdb-username",
            "u",
            "-cron-job-time-offset",
            "-1h",
            "-once",
            "traffic",
        ]);
        let Some(Command::Bigquery(b)) = cli.command else {
            panic!("bigquery")
        };
        assert_eq!(b.cron_job_timeout_second, 300);
        assert_eq!(b.cron_job_schedule_traffic.to_string(), "30 0 * * * *");
        assert_eq!(b.cron_job_schedule_dependency.to_string(), "30 0 11 * * *");
        assert_eq!(b.cron_job_time_offset, SignedDuration::from_secs(-3600));
        assert_eq!(b.bq_traffic_table_id, "planet_exporter_traffic");
        assert_eq!(b.once.as_deref(), Some("traffic"));
        assert_eq!(cli.influx.influxdb_database.as_deref(), Some("mothership"));
    }

    #[test]
    fn map_flags() {
        let cli = parse(&[
            "map",
            "-service",
            "web",
            "-depth",
            "2",
            "-min-bandwidth",
            "1.5M",
            "-format",
            "mermaid",
            "-since",
            "1h",
        ]);
        let Some(Command::Map(m)) = cli.command else {
            panic!("map")
        };
        assert_eq!(m.service.as_deref(), Some("web"));
        assert_eq!(m.depth, 2);
        assert_eq!(m.min_bandwidth, Some(1_500_000.0));
        assert_eq!(m.format, "mermaid");
        assert_eq!(parse_bandwidth("500k"), Ok(500_000.0));
        assert_eq!(parse_bandwidth("1200"), Ok(1200.0));
        assert!(parse_bandwidth("-1").is_err() && parse_bandwidth("fast").is_err());
        let defaults = parse(&["map"]);
        let Some(Command::Map(m)) = defaults.command else {
            panic!("map")
        };
        assert_eq!(
            (m.format.as_str(), m.depth, m.since.as_str()),
            ("svg", 1, "24h")
        );
    }

    #[test]
    fn unknown_single_dash_words_are_left_alone() {
        let args = Cli::go_style_args(["x", "-1h5m", "-nope", "--", "-log-level"]);
        assert_eq!(args, ["x", "-1h5m", "-nope", "--", "-log-level"]);
    }
}
