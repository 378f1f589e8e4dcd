//! The `strata` binary: `serve` (default), `check`, `warm` and `bench` (and the hidden `load`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use strata::config::Config;
use strata::server::Server;

/// mimalloc instead of the system allocator: a request allocates a few small short-lived
/// buffers (reply slots, key lists, replica state), and glibc's malloc spent a sixth of the
/// replicated write path's time on them (measured with perf; docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// strata: a Redis-protocol cache proxy sharding keys over plain Redis nodes.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (when no subcommand is given, `serve` runs with it).
    #[arg(long, short, global = true, default_value = "config.yaml")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Serve,
    /// Validate the configuration and print it with every default filled in, then the
    /// resolved layers.
    Check,
    /// Load a JSON-lines file of entries through a running strata (STRATA WARM per entry).
    Warm {
        /// The file: one `{"key": "..", "value": "..", "ttl": "5m"}` object per line; `ttl`
        /// is optional (the layer's default TTL applies without it).
        #[arg(long)]
        file: PathBuf,
        /// The strata to load through; default: `listen` from the configuration.
        #[arg(long)]
        addr: Option<String>,
        /// Entries in flight at once.
        #[arg(long, default_value_t = 256)]
        pipeline: usize,
    },
    /// Benchmark Redis-protocol endpoints side by side (strata, Redis, twemproxy): throughput,
    /// latency percentiles, hit rates and errors, with the ratios of each target to the
    /// first. Needs no configuration file.
    Bench(Box<BenchArgs>),
    /// The load of scripts/failover-check.sh, against the strata running with the
    /// configuration: clients write and read back their keys while a node is SIGKILLed.
    /// Exit 0 when nothing acknowledged was lost, 1 when something failed, 2 on an error.
    #[command(hide = true)]
    Load {
        /// Length of the load, seconds.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// When the node is killed, seconds after the start.
        #[arg(long, default_value_t = 10)]
        kill_at: u64,
        /// The failover window after the kill, seconds.
        #[arg(long, default_value_t = 3)]
        window: u64,
        /// Concurrent client connections.
        #[arg(long, default_value_t = 8)]
        workers: usize,
        /// Keys per worker.
        #[arg(long, default_value_t = 1000)]
        keys: u64,
        /// The node's redis-server process, SIGKILLed at --kill-at.
        #[arg(long)]
        kill_pid: u32,
        /// The node's id in the configuration.
        #[arg(long, default_value = "node2")]
        kill_node: String,
        /// The layer the keys are written in.
        #[arg(long, default_value = "fc")]
        layer: String,
    },
}

/// `strata bench`'s command line (docs/benchmarks.md has examples).
#[derive(clap::Args)]
struct BenchArgs {
    /// Where to send the load: `host:port` or `name=host:port`; repeat it for several targets,
    /// alternated round by round (ratios are against the first).
    #[arg(long = "target", default_value = "127.0.0.1:6380")]
    targets: Vec<String>,
    /// write (SET), read (GET; keys written first), mixed (GET and SET; keys written first) or
    /// router (the model-router simulation; docs/benchmarks.md).
    #[arg(long, default_value = "mixed")]
    workload: WorkloadArg,
    /// Share of GETs in the mixed workload, 0 to 1.
    #[arg(long, default_value_t = 0.7)]
    read_ratio: f64,
    /// Connections per target (default 50; 4 router workers for --workload router).
    #[arg(long)]
    clients: Option<usize>,
    /// Requests a connection sends before reading their replies.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Open loop: send this many requests per second per target (all connections together),
    /// on a fixed schedule, and time replies from when they were due (coordinated omission
    /// corrected). Without it, each connection sends as fast as replies come back.
    #[arg(long)]
    rate: Option<f64>,
    /// Size of the key space.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// How keys are picked: `uniform` or `zipf:<s>` (e.g. zipf:0.99).
    #[arg(long, default_value = "uniform")]
    key_dist: String,
    /// Keys are `<prefix><n>`.
    #[arg(long, default_value = "key:")]
    key_prefix: String,
    /// Spread the keys over strata's layers by weight, e.g. `route=40,result=30,meta=20,load=10`
    /// (keys `<layer>:<prefix><n>`; hit rates reported per layer).
    #[arg(long)]
    layer_mix: Option<String>,
    /// Value size in bytes, fixed (`3`) or a range (`64-4096`).
    #[arg(long, default_value = "3")]
    value_size: String,
    /// Requests per target and round (all connections together).
    #[arg(long, default_value_t = 100_000, conflicts_with = "duration")]
    requests: u64,
    /// Length of each measured phase instead of --requests, e.g. `10s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<std::time::Duration>,
    /// Rounds; each runs every target once.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Load before each measured phase, not counted, e.g. `2s`.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    warmup: std::time::Duration,
    /// Threads of the load generator.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seed of the random streams (the same seed sends the same requests).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Longest wait for a connection or for a pipeline's replies.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    timeout: std::time::Duration,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also draw the report as charts in this SVG file: latency percentile curves per target
    /// and kind, or for --workload router the response times with and without the cache and
    /// the result layer's hit rate over time (docs/benchmarks.md).
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Router: distinct queries (Zipf popularity).
    #[arg(long, default_value_t = 10_000, help_heading = "Router workload")]
    queries: u64,
    /// Router: Zipf exponent of query popularity.
    #[arg(long, default_value_t = 1.0, help_heading = "Router workload")]
    zipf: f64,
    /// Router: models a query may be routed to.
    #[arg(long, default_value_t = 8, help_heading = "Router workload")]
    models: u64,
    /// Router: simulated cost of a routing decision (a route: miss), ms.
    #[arg(long, default_value_t = 3.0, help_heading = "Router workload")]
    route_ms: f64,
    /// Router: simulated cost of a model metadata lookup (a meta: miss), ms.
    #[arg(long, default_value_t = 1.0, help_heading = "Router workload")]
    meta_ms: f64,
    /// Router: simulated cost of reading a model's load (a load: miss), ms.
    #[arg(long, default_value_t = 0.4, help_heading = "Router workload")]
    load_ms: f64,
    /// Router: median of the simulated inference time (log-normal), ms.
    #[arg(long, default_value_t = 17.0, help_heading = "Router workload")]
    inference_ms: f64,
    /// Router: sigma of the inference time's log-normal distribution.
    #[arg(long, default_value_t = 0.92, help_heading = "Router workload")]
    inference_sigma: f64,
    /// Router: share of queries that also refresh their model's load: entry.
    #[arg(long, default_value_t = 0.05, help_heading = "Router workload")]
    load_update: f64,
    /// Router: size of an answer (result:), bytes, fixed or a range.
    #[arg(long, default_value = "500-4000", help_heading = "Router workload")]
    result_size: String,
    /// Router: distinct answers per query (each asking picks one): above 1, answers are
    /// reused less often than routing decisions.
    #[arg(long, default_value_t = 1, help_heading = "Router workload")]
    result_variants: u64,
    /// Router: simulated seconds per real second (costs slept and TTLs written divided by it).
    #[arg(long, default_value_t = 1.0, help_heading = "Router workload")]
    time_scale: f64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum WorkloadArg {
    Write,
    Read,
    Mixed,
    Router,
}

impl BenchArgs {
    fn options(self) -> Result<strata::bench::BenchOptions, strata::bench::BenchError> {
        use strata::bench::{BenchOptions, Length, Mix, Workload};
        let mix = match self.workload {
            WorkloadArg::Write => Mix::Write,
            WorkloadArg::Read => Mix::Read,
            WorkloadArg::Mixed | WorkloadArg::Router => Mix::Mixed {
                read_ratio: self.read_ratio,
            },
        };
        let router = match self.workload {
            WorkloadArg::Router => {
                let size: strata::bench::ValueSize = self.result_size.parse()?;
                Some(strata::bench::RouterSpec {
                    queries: self.queries,
                    zipf: self.zipf,
                    models: self.models,
                    route_ms: self.route_ms,
                    meta_ms: self.meta_ms,
                    load_ms: self.load_ms,
                    inference_median_ms: self.inference_ms,
                    inference_sigma: self.inference_sigma,
                    load_update: self.load_update,
                    result_size: (size.min, size.max),
                    result_variants: self.result_variants,
                    time_scale: self.time_scale,
                    ..Default::default()
                })
            }
            _ => None,
        };
        let clients = self
            .clients
            .unwrap_or(if router.is_some() { 4 } else { 50 });
        let targets = self
            .targets
            .iter()
            .map(|t| t.parse())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BenchOptions {
            targets,
            workload: Workload {
                mix,
                keys: self.keys,
                key_dist: self.key_dist.parse()?,
                key_prefix: self.key_prefix,
                value_size: self.value_size.parse()?,
                layers: self.layer_mix.as_deref().map(str::parse).transpose()?,
            },
            router,
            clients,
            pipeline: self.pipeline,
            rate: self.rate,
            length: match self.duration {
                Some(d) => Length::Duration(d),
                None => Length::Requests(self.requests),
            },
            rounds: self.rounds,
            warmup: self.warmup,
            threads: self.threads,
            seed: self.seed,
            timeout: self.timeout,
            json: self.json,
            svg: self.svg,
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        })
    }
}

/// `strata bench`: exit 0 when every request was answered without an error, 1 when some
/// failed, 2 when the bench could not run.
fn bench(args: BenchArgs) -> ExitCode {
    let report = args.options().and_then(|opts| strata::bench::run(&opts));
    match report {
        Ok(report) => {
            let _ = write!(std::io::stdout(), "{}", report.table());
            if report.failed_requests() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("strata bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// Where a local client reaches a proxy listening on `listen` (a wildcard address is
/// reached on loopback).
fn connect_addr(listen: std::net::SocketAddr) -> String {
    let ip = match listen.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    std::net::SocketAddr::new(ip, listen.port()).to_string()
}

/// Exit code for a bad configuration (EX_USAGE, as sysexits.h has it).
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // The bench is a client of any endpoint: it needs no configuration file.
    let command = match cli.command.unwrap_or(Command::Serve) {
        Command::Bench(args) => return bench(*args),
        other => other,
    };
    let settings = match Config::load(&cli.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("strata: bad configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match command {
        // Handled above, before the configuration is read.
        Command::Bench(_) => ExitCode::from(2),
        Command::Check => {
            // A reader that stops early (`strata check | head`) is not a bad config: a closed
            // stdout ends the output, not the process with a panic.
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "{}{}", settings.to_yaml(), settings.layers_yaml())
                .and_then(|()| out.flush());
            eprintln!("strata: {} is valid", cli.config.display());
            ExitCode::SUCCESS
        }
        Command::Warm {
            file,
            addr,
            pipeline,
        } => {
            let addr = addr.unwrap_or_else(|| connect_addr(settings.config.listen));
            let opts = strata::warm::WarmOptions {
                addr,
                file,
                pipeline: pipeline.max(1),
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            match strata::warm::run(&opts) {
                Ok(summary) => {
                    let _ = writeln!(std::io::stdout(), "{summary}");
                    if summary.failed == 0 && summary.invalid == 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("strata warm: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Load {
            seconds,
            kill_at,
            window,
            workers,
            keys,
            kill_pid,
            kill_node,
            layer,
        } => {
            let opts = strata::load::LoadOptions {
                addr: connect_addr(settings.config.listen),
                admin: settings.config.admin_listen.map(connect_addr),
                seconds,
                kill_at,
                window,
                workers,
                keys,
                kill_pid,
                kill_node,
                layer,
            };
            match strata::load::run(&settings.config, &opts) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("strata load: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Serve => {
            // Bound only once the signal handlers are in place: a client (or a supervisor's
            // SIGTERM) can reach strata as soon as it listens.
            let path = cli.config.clone();
            let start = || Server::bind(settings, Some(path))?.start();
            match strata::signals::serve_until_signalled(start) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("strata: cannot start: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
