//! Logging and metrics.
//!
//! Logs: text or JSON lines on stderr, filtered by `RUST_LOG`, else the
//! config's `[log] level`, else `info`. The filter is swapped on reload, so
//! a level change needs no restart. Events name routes, statuses, reason
//! codes and the request id; no event carries a header value, a body, a
//! query string or a key, at any level.
//!
//! Metrics: [`metrics::Metrics`], Prometheus text on the admin listener.

pub mod metrics;

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

fn filter(level: Option<&str>) -> EnvFilter {
    match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::builder().parse_lossy(v),
        _ => EnvFilter::builder().parse_lossy(level.unwrap_or("info")),
    }
}

/// Installs the global subscriber; a second call is a no-op. `level` is the
/// config's `[log] level`; `RUST_LOG` wins over it.
pub fn init(format: LogFormat, level: Option<&str>) {
    let (layer, handle) = reload::Layer::new(filter(level));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let installed = match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(layer)
            .with(fmt)
            .try_init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(layer)
            .with(fmt.json().flatten_event(true).with_current_span(true))
            .try_init(),
    };
    if installed.is_ok() {
        let _ = FILTER.set(handle);
    }
}

/// Applies a reloaded config's `[log] level` (unless `RUST_LOG` is set).
pub fn set_level(level: Option<&str>) {
    if let Some(h) = FILTER.get() {
        if h.reload(filter(level)).is_err() {
            tracing::warn!("log level not changed: the subscriber is gone");
        }
    }
}
