//! `shoal`: one binary for the node daemon and its tools.
//!
//! - [`cli`]: the command line (clap), every flag also an `SHOAL_*` env var.
//! - [`config`]: the TOML config file and how flags override it.
//! - [`daemon`]: `shoal daemon`, wiring the store, upstreams and mirror.
//! - [`status`]: `shoal status`, a view of what the local daemon holds.
//! - [`logging`]: human or JSON logs.

mod cli;
mod config;
mod daemon;
mod logging;
mod status;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Daemon(args) => daemon::main(*args),
        cli::Command::Status(args) => status::main(args),
    }
}
