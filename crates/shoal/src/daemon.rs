//! `shoal daemon`: resolve the config, open the store, bind the listeners
//! and run the mirror until SIGTERM or Ctrl-C, then drain.

use anyhow::Context;
use prometheus_client::registry::Registry;
use shoal_origin::Upstreams;
use shoal_storage::Store;
use tokio::net::TcpListener;

use crate::cli::DaemonArgs;
use crate::config;

/// Entry point of `shoal daemon`.
pub(crate) fn main(args: DaemonArgs) -> anyhow::Result<()> {
    let cfg = config::resolve(&args)?;
    crate::logging::init(cfg.log_format);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(run(cfg))
}

async fn run(cfg: config::Resolved) -> anyhow::Result<()> {
    if let Some(src) = &cfg.source {
        tracing::info!(file = %src.display(), "config loaded");
    }
    let root = cfg.store.root.clone();
    std::fs::create_dir_all(&root)
        .with_context(|| format!("creating the data dir {} (set --data-dir or SHOAL_DATA_DIR)", root.display()))?;
    let store_cfg = cfg.store.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(store_cfg))
        .await?
        .with_context(|| format!("opening the store in {}", root.display()))?;
    let upstreams = Upstreams::new(cfg.upstreams.clone()).context("configuring the upstream registries")?;
    let mirror = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding the mirror to {} (in use? set --listen)", cfg.listen))?;
    let mut admin = Vec::with_capacity(cfg.metrics_listen.len());
    for addr in &cfg.metrics_listen {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding metrics to {addr} (in use? set --metrics-listen)"))?;
        admin.push(l);
    }
    tracing::info!(
        data_dir = %cfg.store.root.display(),
        quota = cfg.store.quota,
        default_registry = %cfg.upstreams.default_registry,
        "starting shoal daemon"
    );
    let swarm = if crate::swarm_setup::enabled(&cfg.swarm) {
        Some(
            crate::swarm_setup::build(&cfg.swarm, cfg.swarm_tuning.clone())
                .await
                .context("joining the swarm ([swarm] config)")?,
        )
    } else {
        tracing::info!("swarm off: a standalone mirror (enable with --swarm and certificates from `shoal certs`)");
        None
    };
    shoal_peer::run(cfg.daemon, store, upstreams, Registry::default(), mirror, admin, swarm, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
    }
}
