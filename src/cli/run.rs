//! `scrim run`: load the config, bind the listeners, serve; SIGHUP reloads
//! (config, rules, certificates, key ring: all or nothing), SIGTERM and
//! SIGINT stop accepting and drain.

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
    /// Log format on stderr (default: the config's `[log] format`, else text).
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Longest wait for requests in flight on shutdown, in seconds (default:
    /// the config's `[limits] drain_timeout_ms`, else 30).
    #[arg(long)]
    drain_secs: Option<u64>,
    /// Threads that serve requests (default: the cores scrim may use, as
    /// its CPU affinity and cgroup quota say). With 1, scrim runs on a
    /// single-threaded runtime, which spends less per request than a
    /// work-stealing one of one thread: the setting for a process pinned
    /// to one core, or one replica per core.
    #[arg(long, env = "SCRIM_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
}

pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = config::load(&a.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    telemetry::init(
        a.log_format.or(cfg.log.format).unwrap_or(LogFormat::Text),
        cfg.log.level.as_deref(),
    );
    let drain = a
        .drain_secs
        .map(Duration::from_secs)
        .unwrap_or(cfg.limits.drain_timeout);
    let keys = match (&cfg.keys.ring, &cfg.keys.file) {
        (Some(ring), _) => Keys::Ring {
            path: ring.clone(),
            kek: Kek::load(cfg.keys.kek_file.as_deref())?,
        },
        (None, Some(p)) => Keys::Dev(DevKeySource::from_file(p)?),
        (None, None) => Keys::Dev(DevKeySource::from_env()?),
    };
    let workers = a.workers.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    let rt = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    }
    .enable_all()
    .build()
    .context("cannot start the async runtime")?;
    rt.block_on(async {
        let routes = cfg.routes.len();
        for r in cfg.routes.iter().filter(|r| r.pass_through) {
            tracing::warn!(route = %r.name, "pass-through route: its requests are forwarded unchanged, without rules or leak guard");
        }
        let rt = Runtime::new(cfg, keys)?;
        let running = crate::server::start_runtime(rt, drain).await?;
        tracing::info!(addrs = ?running.addrs, admin = ?running.admin_addr, routes, workers, "scrim is running");
        serve_signals(&running.runtime).await;
        tracing::info!(drain_secs = drain.as_secs_f64(), "shutting down: draining requests in flight");
        running.stop().await;
        tracing::info!("stopped");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Reloads on SIGHUP until SIGTERM or SIGINT arrives.
async fn serve_signals(rt: &std::sync::Arc<Runtime>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!("cannot install signal handlers; stop scrim with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return,
                _ = term.recv() => return,
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    let rt = rt.clone();
                    // Reading files and compiling rules is blocking work.
                    let _ = tokio::task::spawn_blocking(move || rt.reload()).await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = rt;
        let _ = tokio::signal::ctrl_c().await;
    }
}
