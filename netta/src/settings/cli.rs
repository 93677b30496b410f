//! Command-line interface (clap). Parsing only: the commands live in `app`.
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::core::event::{Proto, State};
use crate::host::ebpf::Transport;
use crate::settings::defaults::{self, defaults, Interval};

#[derive(Parser, Debug)]
#[command(
    name = "netta",
    version = version(),
    about = "Linux network connection tracer: every connection, both ends, the right process",
    long_about = "netta traces TCP and UDP connections with eBPF (falling back to polling /proc \
                  when eBPF cannot load) and keeps a live connection table. Without a command it \
                  opens the interactive menu."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
}

fn version() -> &'static str {
    if crate::host::ebpf::object().is_some() {
        concat!(env!("CARGO_PKG_VERSION"), " (eBPF object embedded)")
    } else {
        concat!(
            env!("CARGO_PKG_VERSION"),
            " (no eBPF object: /proc polling only)"
        )
    }
}

fn parse_interval(s: &str) -> Result<Interval, String> {
    parse_duration(s).map(Interval)
}

/// A period where `0` means "never".
fn parse_period_or_off(s: &str) -> Result<Interval, String> {
    if s.trim() == "0" {
        return Ok(Interval(Duration::ZERO));
    }
    humantime::parse_duration(s)
        .map(Interval)
        .map_err(|e| format!("{e} (try 2s, 30s, 1m, or 0 for off)"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (try 500ms, 2s, 1m)"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

fn parse_state(s: &str) -> Result<State, String> {
    State::parse(s).ok_or_else(|| {
        let names: Vec<_> = State::ALL.iter().map(|s| s.name().to_lowercase()).collect();
        format!("unknown state `{s}` (one of: {})", names.join(", "))
    })
}

fn parse_proto(s: &str) -> Result<Proto, String> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        _ => Err(format!("unknown protocol `{s}` (tcp or udp)")),
    }
}

fn parse_ring_size(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of bytes"))?;
    if !n.is_power_of_two() || n < 4096 {
        return Err("must be a power of two of at least 4096".into());
    }
    Ok(n)
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Do not load eBPF; poll /proc instead.
    #[arg(long, global = true)]
    pub no_ebpf: bool,
    /// Do not capture DNS responses, nor name connections by them.
    #[arg(long, global = true)]
    pub no_dns: bool,
    /// Keep each process's arguments (`process.args`): the first 1024 bytes,
    /// escaped. Off by default: arguments can hold secrets.
    #[arg(long, global = true)]
    pub process_args: bool,
    /// How kernel records reach user space.
    #[arg(long, global = true, value_enum, default_value_t = defaults().transport)]
    pub transport: Transport,
    /// Ring buffer size in bytes (power of two).
    #[arg(long, global = true, default_value_t = defaults().ring_size, value_parser = parse_ring_size)]
    pub ring_size: u32,
    /// How often /proc is re-read to heal anything events missed (eBPF mode).
    #[arg(long, global = true, default_value_t = Interval(defaults().reconcile_interval), value_parser = parse_interval)]
    pub reconcile_interval: Interval,
    /// How often /proc is polled when eBPF is unavailable.
    #[arg(long, global = true, default_value_t = Interval(defaults().poll_interval), value_parser = parse_interval)]
    pub poll_interval: Interval,
    /// A UDP flow idle this long is reported and forgotten.
    #[arg(long, global = true, default_value_t = Interval(defaults().udp_idle), value_parser = parse_interval)]
    pub udp_idle: Interval,
    /// How often open connections that moved data report their totals so far
    /// (`connection-updated` events); 0 turns them off.
    #[arg(long, global = true, default_value_t = Interval(defaults().update_interval), value_parser = parse_period_or_off)]
    pub update_interval: Interval,
    /// Most live connections kept; more are counted as evicted.
    #[arg(long, global = true, default_value_t = defaults().max_connections)]
    pub max_connections: usize,
    /// Most closed connections kept in memory and shown by history views
    /// (`netta agent` with its store keeps at most 1,000 in memory).
    #[arg(long, global = true, default_value_t = defaults().history_size)]
    pub history_size: usize,
    #[arg(long, global = true, value_name = "FILE", help = format!(
        "Configuration file (TOML); flags override it. Default: {} if present",
        defaults::CONFIG_PATH
    ))]
    pub config: Option<std::path::PathBuf>,
    /// Detection rules file (TOML): thresholds, windows and allowlists.
    #[arg(long, global = true, value_name = "FILE")]
    pub rules: Option<std::path::PathBuf>,
    /// The agent's API socket (clients attach to it; `netta agent` serves it).
    #[arg(long, global = true, value_name = "PATH", env = defaults::API_ENV)]
    pub api: Option<std::path::PathBuf>,
    /// Do not attach to a running agent: run one in this process.
    #[arg(long, global = true)]
    pub standalone: bool,
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Stream connection events as JSON lines (Elastic Common Schema) on stdout.
    ///
    /// One line per connection event, alert and DNS answer (docs/events.md), from
    /// the running agent when one answers on the API socket, else from an agent in
    /// this process. --sport, --dport, --src and --dst keep the lines whose
    /// `source`/`destination` pass: an alert has only `source.ip` (the suspect), a
    /// DNS answer has the server as its source. `events-lost` and `table-evicted`
    /// lines always pass, so a reader still learns what is missing.
    Events(EventsArgs),
    /// List live connections (or closed ones with --history).
    List(ListArgs),
    /// Traffic statistics: totals, protocols, states, top ports, IPs and processes.
    Stats(StatsArgs),
    /// Print a line of live counts every interval, then a summary.
    Monitor(MonitorArgs),
    /// Full-screen live view: connections with their rates, processes, alerts.
    Top(TopArgs),
    /// Look for suspicious activity.
    Detect(DetectArgs),
    /// Write a report of the connection table (CSV or JSON).
    Export(ExportArgs),
    /// Run headless as a service: stream events and alerts to sinks, serve metrics.
    Agent(AgentArgs),
    /// Say what this kernel and these privileges give: each hook, the transport,
    /// what is degraded and why. Exit 0 in full eBPF mode.
    Doctor {
        /// One JSON object instead of text.
        #[arg(short, long)]
        json: bool,
    },
    /// Stored connection history: what connected where, when, and which process.
    History(HistoryArgs),
    /// The `new-destination` baseline: what the agent has learned, or forget it.
    Baseline {
        #[command(subcommand)]
        action: BaselineAction,
    },
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page netta(8), or write every command's page to a directory.
    Manpage {
        /// Write netta.8, netta-list.8, ... (one page per command) into DIR and
        /// print their paths.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
    /// Generate a history store and time queries on it (for `cargo xtask bench`).
    #[command(hide = true)]
    StoreBench {
        /// Rows to generate (when DIR has no store yet).
        #[arg(long, default_value_t = 10_000_000)]
        rows: u64,
        #[arg(long)]
        dir: std::path::PathBuf,
    },
    /// Time one seeding of the table from /proc (for `cargo xtask bench`).
    #[command(hide = true)]
    SeedBench,
    /// Time live-counter refreshes on this machine's connections (for `cargo xtask bench-live`).
    #[command(hide = true)]
    LiveBench {
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// Time `top` frames on a synthetic table (for `cargo xtask bench-live`).
    #[command(hide = true)]
    TopBench {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long, default_value_t = 100)]
        frames: usize,
    },
}

#[derive(Subcommand, Debug)]
pub enum BaselineAction {
    /// Every learned destination (process, network, port) and the learning period.
    Show {
        /// JSON output.
        #[arg(short, long)]
        json: bool,
        /// Read a store file instead of asking the agent.
        #[arg(long, value_name = "FILE")]
        store: Option<std::path::PathBuf>,
    },
    /// Forget everything learned; learning starts again now.
    Reset {
        /// Reset a store file (no agent may be running on it).
        #[arg(long, value_name = "FILE")]
        store: Option<std::path::PathBuf>,
    },
}

#[derive(Args, Debug, Default)]
pub struct AgentArgs {
    /// Where JSON lines go (repeatable): stdout, file:PATH, tcp://HOST:PORT, unix:PATH.
    #[arg(long = "sink", value_name = "SPEC")]
    pub sinks: Vec<crate::settings::sink_spec::SinkSpec>,
    /// Serve Prometheus metrics on this address (for example 127.0.0.1:9750).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Also stream every raw TCP state transition.
    #[arg(long)]
    pub all_states: bool,
    #[arg(long, value_name = "DIR", help = format!(
        "Where the persistent history lives (default {})",
        defaults::STATE_DIR
    ))]
    pub state_dir: Option<std::path::PathBuf>,
    /// Keep no persistent history.
    #[arg(long)]
    pub no_store: bool,
    #[arg(long, value_parser = parse_duration, help = format!(
        "Drop stored history older than this (default {})",
        humantime::format_duration(defaults::RETENTION_AGE)
    ))]
    pub retention_age: Option<Duration>,
    #[arg(long, value_parser = parse_retention_size, help = format!(
        "Keep the store under this many bytes (default {})",
        defaults::RETENTION_BYTES
    ))]
    pub retention_size: Option<u64>,
}

fn parse_retention_size(s: &str) -> Result<u64, String> {
    let n: u64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of bytes"))?;
    if n < 1 << 20 {
        return Err("must be at least 1048576 bytes".into());
    }
    Ok(n)
}

fn parse_time(s: &str) -> Result<i64, String> {
    crate::core::when::parse_time(s, crate::core::when::now_us())
}

fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    crate::core::history_query::parse_net(s).map_err(|e| e.to_string())
}

/// `--sport`, `--dport`, `--src`, `--dst` (ss's names), for `list`, `events` and
/// `history`: the ends as event lines name them, not local and remote as in ss.
#[derive(Args, Debug, Default, Clone)]
pub struct EndsArgs {
    /// Only connections whose source port is this.
    ///
    /// The source is the side that started the connection (ECS `source`, as
    /// event lines and the history store have it): for a connection this host
    /// accepted, the remote client; for one it made, this host. Unlike ss, whose
    /// sport is always the local port.
    #[arg(long, value_name = "PORT")]
    pub sport: Option<u16>,
    /// Only connections whose destination port is this.
    ///
    /// The destination is the side that was connected to (ECS `destination`): a
    /// listener's own address, and the server's end of each of its connections, so
    /// `--dport 22` selects sshd's listener and every connection to it, in and out.
    #[arg(long, value_name = "PORT")]
    pub dport: Option<u16>,
    /// Only connections whose source address is in this network (an address or
    /// CIDR: 10.0.0.0/8, 2001:db8::/32).
    ///
    /// A connection whose direction netta does not know (open before netta
    /// started, seen only in /proc) passes --sport, --dport, --src and --dst
    /// either way round.
    #[arg(long, value_name = "ADDR|CIDR", value_parser = parse_net)]
    pub src: Option<ipnet::IpNet>,
    /// Only connections whose destination address is in this network (an
    /// address or CIDR).
    #[arg(long, value_name = "ADDR|CIDR", value_parser = parse_net)]
    pub dst: Option<ipnet::IpNet>,
}

impl EndsArgs {
    pub fn filter(&self) -> crate::core::filter::EndsFilter {
        crate::core::filter::EndsFilter {
            sport: self.sport,
            dport: self.dport,
            src: self.src,
            dst: self.dst,
        }
    }
}

fn parse_history_action(s: &str) -> Result<String, String> {
    crate::core::history_query::parse_action(s)
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "unknown action `{s}` (closed, failed, udp-flow, listen-start, listen-stop, open)"
            )
        })
}

fn parse_domain(s: &str) -> Result<String, String> {
    crate::core::history_query::parse_domain(s).map_err(|e| e.to_string())
}

/// A user name or a numeric uid.
fn parse_user(s: &str) -> Result<u32, String> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(n);
    }
    let shown = crate::core::sanitize::escape(s.as_bytes());
    let c = std::ffi::CString::new(s).map_err(|_| format!("unknown user `{shown}`"))?;
    // SAFETY: valid C string; the result is read at once.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        return Err(format!("unknown user `{shown}`"));
    }
    // SAFETY: non-null result of getpwnam.
    Ok(unsafe { (*pw).pw_uid })
}

#[derive(Args, Debug, Default)]
pub struct HistoryArgs {
    /// From this time: a duration back from now (10m, 2h) or RFC 3339.
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub since: Option<i64>,
    /// Up to this time: a duration back from now or RFC 3339.
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub until: Option<i64>,
    #[command(flatten)]
    pub owner: OwnerArgs,
    /// Source or destination port.
    #[arg(long)]
    pub port: Option<u16>,
    #[command(flatten)]
    pub ends: EndsArgs,
    #[arg(long, value_parser = parse_proto)]
    pub proto: Option<Proto>,
    /// Only connections to this DNS name or a name under it (example.com: also www.example.com).
    #[arg(long, value_parser = parse_domain)]
    pub domain: Option<String>,
    /// Only these actions (repeatable): closed, failed, udp-flow, listen-start, listen-stop,
    /// open (connections still open: their bytes so far).
    #[arg(long, value_parser = parse_history_action)]
    pub action: Vec<String>,
    /// At most this many rows (the newest).
    #[arg(long, default_value_t = crate::core::history_query::DEFAULT_LIMIT)]
    pub limit: u64,
    /// JSON output (one array).
    #[arg(short, long, conflicts_with = "csv")]
    pub json: bool,
    /// CSV output.
    #[arg(long)]
    pub csv: bool,
    /// Read this store file directly instead of asking the agent.
    #[arg(long, value_name = "FILE")]
    pub store: Option<std::path::PathBuf>,
}

impl HistoryArgs {
    pub fn query(&self) -> crate::core::history_query::Query {
        crate::core::history_query::Query {
            since_us: self.since,
            until_us: self.until,
            owner: self.owner.filter(),
            port: self.port,
            ends: self.ends.filter().query(),
            proto: self.proto.map(|p| p.name().to_string()),
            domain: self.domain.clone(),
            action: (!self.action.is_empty()).then(|| self.action.join(",")),
            limit: Some(self.limit),
        }
    }
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Watch events for this long first, so "since start" figures cover it.
    #[arg(long, value_parser = parse_duration)]
    pub watch: Option<Duration>,
    /// JSON output.
    #[arg(short, long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct MonitorArgs {
    /// How long to monitor.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// How often to print a line.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub interval: Duration,
    /// JSON lines output.
    #[arg(short, long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct TopArgs {
    /// How often the picture is refreshed.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// The first filter (`/` changes it).
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Args, Debug)]
pub struct DetectArgs {
    /// Observe live events for this long before reporting.
    #[arg(long, value_parser = parse_duration)]
    pub watch: Option<Duration>,
    /// JSON output.
    #[arg(short, long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Output file (default: network_analysis_YYYYMMDD_HHMMSS.csv).
    #[arg(long, short)]
    pub output: Option<std::path::PathBuf>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Csv)]
    pub format: ReportFormat,
    /// Export closed connections instead of live ones.
    #[arg(long)]
    pub history: bool,
    /// Watch events for this long first (useful with --history).
    #[arg(long, value_parser = parse_duration)]
    pub watch: Option<Duration>,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Also emit every raw TCP state transition (`state-changed`).
    #[arg(long)]
    pub all_states: bool,
    /// Stop after this long (default: until Ctrl+C or SIGTERM).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// First replay the agent's stored events from this time (10m, RFC 3339), then follow.
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub since: Option<i64>,
    #[command(flatten)]
    pub ends: EndsArgs,
}

#[derive(Args, Debug, Default, Clone)]
pub struct FilterArgs {
    /// Only this state (repeatable): established, listening, time_wait, ...
    #[arg(long, value_parser = parse_state)]
    pub state: Vec<State>,
    /// Only this protocol.
    #[arg(long, value_parser = parse_proto)]
    pub proto: Option<Proto>,
    /// Only connections with this local or remote port.
    #[arg(long)]
    pub port: Option<u16>,
    #[command(flatten)]
    pub owner: OwnerArgs,
    #[command(flatten)]
    pub ends: EndsArgs,
}

/// Who owns the connection (process, user, executable, namespace, container):
/// the filters `list`, `top` and `history` share.
#[derive(Args, Debug, Default, Clone)]
pub struct OwnerArgs {
    /// Only this process id.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Only processes whose name contains this.
    #[arg(long)]
    pub process: Option<String>,
    /// Only this user's processes (name or uid).
    #[arg(long, value_parser = parse_user)]
    pub user: Option<u32>,
    /// Only this executable: its path, or its file name (`python3`).
    #[arg(long, value_name = "PATH")]
    pub exe: Option<String>,
    /// Only this network namespace (its inode, as `ls -iL /proc/PID/ns/net` shows).
    #[arg(long, value_name = "INODE")]
    pub netns: Option<u32>,
    /// Only this container (the start of its id) or pod (its UID or name).
    #[arg(long, value_name = "ID")]
    pub container: Option<String>,
}

impl OwnerArgs {
    pub fn filter(&self) -> crate::core::owner_filter::OwnerFilter {
        crate::core::owner_filter::OwnerFilter {
            pid: self.pid,
            process: self.process.clone(),
            user: self.user.map(crate::core::owner_filter::User::Id),
            exe: self.exe.clone(),
            netns: self.netns,
            container: self.container.clone(),
        }
    }
}

impl FilterArgs {
    pub fn filter(&self) -> crate::core::filter::Filter {
        crate::core::filter::Filter {
            states: self.state.clone(),
            proto: self.proto,
            port: self.port,
            owner: self.owner.filter(),
            ends: self.ends.filter(),
        }
    }
}

#[derive(Args, Debug, Default)]
pub struct ListArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Closed connections (start, duration, bytes, process) instead of live ones.
    #[arg(long)]
    pub history: bool,
    /// Watch events for this long first, so short-lived connections appear in --history.
    #[arg(long, value_parser = parse_duration)]
    pub watch: Option<Duration>,
    /// JSON output.
    #[arg(short, long)]
    pub json: bool,
    /// Also each owner's user, parent, executable, network namespace, container and pod.
    #[arg(long, short = 'w', conflicts_with = "json")]
    pub wide: bool,
}

/// The file format of `netta export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Csv,
    Json,
}

impl ReportFormat {
    pub fn extension(self) -> &'static str {
        match self {
            ReportFormat::Csv => "csv",
            ReportFormat::Json => "json",
        }
    }
}

impl Global {
    /// Takes from the config file every setting not given on the command line.
    pub fn apply_config(&mut self, c: &crate::settings::file::Config, matches: &clap::ArgMatches) {
        let from_cli =
            |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        macro_rules! take {
            ($field:ident) => {
                take!($field, std::convert::identity)
            };
            ($field:ident, $wrap:expr) => {
                if let (false, Some(v)) = (from_cli(stringify!($field)), c.$field.clone()) {
                    self.$field = $wrap(v);
                }
            };
        }
        take!(transport);
        take!(ring_size);
        take!(reconcile_interval, Interval);
        take!(poll_interval, Interval);
        take!(udp_idle, Interval);
        take!(max_connections);
        take!(history_size);
        take!(no_ebpf);
        take!(process_args);
        let from_env =
            |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::EnvVariable);
        if !from_cli("api") && !from_env("api") && c.api.is_some() {
            self.api = c.api.clone();
        }
        if !from_cli("rules") && c.rules.is_some() {
            self.rules = c.rules.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// `-j` is `--json` on every command that has `--json`.
    #[test]
    fn every_json_flag_has_the_short_j() {
        fn walk(c: &clap::Command, found: &mut Vec<String>) {
            for a in c.get_arguments() {
                if a.get_long() == Some("json") {
                    assert_eq!(a.get_short(), Some('j'), "{} --json", c.get_name());
                    found.push(c.get_name().to_string());
                }
            }
            for s in c.get_subcommands() {
                walk(s, found);
            }
        }
        let mut found = Vec::new();
        walk(&Cli::command(), &mut found);
        found.sort();
        assert_eq!(
            found,
            ["detect", "doctor", "history", "list", "monitor", "show", "stats"]
        );
        let cli = Cli::try_parse_from([
            "netta",
            "list",
            "-j",
            "--dport",
            "22",
            "--src",
            "10.0.0.0/8",
        ])
        .unwrap();
        let Some(Command::List(l)) = cli.command else {
            panic!("list")
        };
        assert!(l.json);
        assert_eq!(l.filter.ends.dport, Some(22));
        assert!(Cli::try_parse_from(["netta", "events", "--dst", "300.1.1.1"]).is_err());
    }
}
