//! The `strata` binary: `serve` (default), `check` and `warm` (and the hidden `load`).

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
    let settings = match Config::load(&cli.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("strata: bad configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
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
