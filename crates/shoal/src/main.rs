//! `shoal`: one binary for the node daemon and its tools.
//!
//! - [`cli`]: the command line (clap), every flag also an `SHOAL_*` env var.
//! - [`config`]: the TOML config file and how flags override it.
//! - [`daemon`]: `shoal daemon`, wiring the store, upstreams and mirror.
//! - [`prewarm`]: `shoal prewarm`, filling this node's store, or many nodes' through
//!   the scheduler, before a rollout.
//! - [`get_cmd`]: `shoal get`, any large file through the daemon and the swarm.
//! - [`status`]: `shoal status`, a view of what the local daemon holds.
//! - [`scheduler_cmd`]: `shoal scheduler`, a scheduler replica.
//! - [`harbor_args`]: its `--harbor-*` flags (Harbor's preheat API).
//! - [`demo`]: `shoal demo`, a whole swarm in one process.
//! - [`simulate_cmd`]: `shoal simulate`, a deterministic swarm simulation.
//! - [`certs_cmd`]: `shoal certs`, the cluster CA and node certificates.
//! - [`containerd_cmd`]: `shoal containerd configure`, hosts.toml files for containerd.
//! - [`listen`]: listen addresses as flags and the config file write them.
//! - [`logging`]: human or JSON logs.
//! - [`swarm_setup`]: the `[swarm]` config made into a swarm membership.

mod certs_cmd;
mod cli;
mod config;
mod containerd_cmd;
mod daemon;
mod demo;
mod get_cmd;
mod harbor_args;
mod huge_pages;
mod listen;
mod logging;
mod prewarm;
mod scheduler_cmd;
mod simulate_cmd;
mod status;
mod swarm_setup;

use clap::Parser;

/// jemalloc, with its background thread purging freed pages: after a burst
/// (hundreds of slow clients, a cold pull) the memory goes back to the
/// system within seconds of the load, where glibc's malloc kept what it
/// had spread over its per-thread arenas for the life of the process.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain, whatever RUST_BACKTRACE says.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Daemon(args) => daemon::main(*args),
        cli::Command::Get(args) => get_cmd::main(args),
        cli::Command::Status(args) => status::main(args),
        cli::Command::Prewarm(args) => prewarm::main(args),
        cli::Command::Certs(cmd) => certs_cmd::main(cmd),
        cli::Command::Demo(args) => demo::main(args),
        cli::Command::Simulate(args) => simulate_cmd::main(args),
        cli::Command::Scheduler(args) => scheduler_cmd::main(args),
        cli::Command::Containerd(cmd) => containerd_cmd::main(cmd),
    }
}
