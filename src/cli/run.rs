//! `scrim run`: load the config, bind the listeners, serve until SIGINT or
//! SIGTERM, then drain.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::config;
use crate::keyring::kek::Kek;
use crate::keyring::DevKeySource;
use crate::snapshot::{Keys, Runtime};
use crate::telemetry::{self, LogFormat};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The config file.
    #[arg(short, long, env = "SCRIM_CONFIG", default_value = "scrim.toml")]
    config: PathBuf,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Longest wait for open connections to finish on shutdown, in seconds.
    #[arg(long, default_value_t = 30)]
    drain_secs: u64,
}

pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    telemetry::init(a.log_format);
    let cfg = config::load(&a.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let keys = match (&cfg.keys.ring, &cfg.keys.file) {
        (Some(ring), _) => Keys::Ring {
            path: ring.clone(),
            kek: Kek::load(cfg.keys.kek_file.as_deref())?,
        },
        (None, Some(p)) => Keys::Dev(DevKeySource::from_file(p)?),
        (None, None) => Keys::Dev(DevKeySource::from_env()?),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let routes = cfg.routes.len();
        let rt = Runtime::new(cfg, keys)?;
        let running = crate::server::start_runtime(rt, Duration::from_secs(a.drain_secs)).await?;
        tracing::info!(addrs = ?running.addrs, routes, "scrim is running");
        shutdown_signal().await;
        tracing::info!("shutting down");
        running.stop().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler cannot fail on unix");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
