//! The `strata` binary: `serve` (default) and `check`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use strata::config::Config;
use strata::server::Server;

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
    /// Validate the configuration and print it with every default filled in.
    Check,
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
            print!("{}", settings.to_yaml());
            eprintln!("strata: {} is valid", cli.config.display());
            ExitCode::SUCCESS
        }
        Command::Serve => {
            let listen = settings.config.listen;
            let server = match Server::bind(settings, Some(cli.config.clone())) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("strata: cannot listen on {listen}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match server.start() {
                Ok(handle) => {
                    handle.wait();
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("strata: cannot start: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
