//! Listeners and connections: accept, optional TLS, then HTTP/1.1 or HTTP/2
//! (h2c with prior knowledge in clear, h2 by ALPN over TLS) through
//! hyper-util's auto builder. A semaphore bounds concurrent connections; a
//! shutdown signal stops accepting and drains open connections.

pub mod tls;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_io_timeout::TimeoutWriter;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info};

use crate::config::ProxyLimits;
use crate::proxy::ProxyService;

/// A bound listener, ready to serve.
pub struct Listener {
    pub tcp: TcpListener,
    pub tls: Option<TlsAcceptor>,
    /// The certificate behind `tls`, for reloads.
    pub cert: Option<Arc<tls::ReloadableCert>>,
}

impl Listener {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Serves connections until `shutdown` turns true, then drains for up to
/// `drain` and returns.
pub async fn serve(
    listener: Listener,
    service: ProxyService,
    limits: ProxyLimits,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32);
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    // Connection tasks, so that what the drain leaves open is closed.
    let mut conns = tokio::task::JoinSet::new();
    let addr = listener.local_addr().ok();
    info!(?addr, tls = listener.tls.is_some(), "listening");
    loop {
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.tcp.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = service.clone();
        let service = service.clone();
        let builder = builder.clone();
        let tls = listener.tls.clone();
        let watcher = graceful.watcher();
        let header_timeout = limits.header_timeout;
        let send_timeout = limits.send_timeout;
        conns.spawn(async move {
            let _permit = permit;
            // hyper's header timer also runs between keep-alive requests; an
            // idle connection that served requests is closed quietly, and only
            // a client that never finished its first request head gets a 408.
            let served = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let seen = served.clone();
            let hyper_svc = service_fn(move |req| {
                let svc = svc.clone();
                seen.store(true, std::sync::atomic::Ordering::Relaxed);
                async move { svc.handle(req, peer).await }
            });
            match tls {
                Some(acceptor) => {
                    let stream = with_send_timeout(stream, send_timeout);
                    let Ok(Ok(tls_stream)) =
                        tokio::time::timeout(header_timeout, acceptor.accept(stream)).await
                    else {
                        debug!("TLS handshake failed or timed out");
                        return;
                    };
                    let conn = builder.serve_connection(TokioIo::new(tls_stream), hyper_svc);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        note_send_timeout(&service, &*e);
                    }
                }
                None => {
                    // A second handle on the socket lets us answer 408 after
                    // hyper gives up on a slow request head (hyper closes
                    // silently there).
                    let spare = stream
                        .into_std()
                        .and_then(|s| s.try_clone().map(|c| (s, c)));
                    let Ok((main, spare)) = spare else { return };
                    let Ok(main) = TcpStream::from_std(main) else {
                        return;
                    };
                    let main = with_send_timeout(main, send_timeout);
                    let conn = builder.serve_connection(TokioIo::new(main), hyper_svc);
                    let res = watcher.watch(conn.into_owned()).await;
                    if let Err(e) = res {
                        note_send_timeout(&service, &*e);
                        let timed_out = e
                            .downcast_ref::<hyper::Error>()
                            .is_some_and(hyper::Error::is_timeout);
                        if timed_out && !served.load(std::sync::atomic::Ordering::Relaxed) {
                            if let Ok(mut s) = TcpStream::from_std(spare) {
                                let _ = s.write_all(REQUEST_TIMEOUT).await;
                                let _ = s.shutdown().await;
                            }
                        }
                    }
                }
            }
        });
    }
    // Close the socket first: new connections are refused at once instead
    // of waiting in the backlog, unserved, until the drain ends.
    drop(listener);
    info!(?addr, "draining connections");
    let _ = tokio::time::timeout(drain, graceful.shutdown()).await;
    // Past the drain, nothing is served any more: close what is left.
    conns.shutdown().await;
}

/// Counts a connection that ended on the send timeout: its error, or one
/// of the errors under it, is the writer's `TimedOut`.
fn note_send_timeout(service: &ProxyService, e: &(dyn std::error::Error + 'static)) {
    let mut cur = Some(e);
    while let Some(err) = cur {
        let io = err.downcast_ref::<std::io::Error>();
        if io.is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut) {
            debug!("a client stopped reading its response: connection closed");
            service.metrics().send_timeout();
            return;
        }
        cur = err.source();
    }
}

/// `stream` whose writes fail with `TimedOut` once one has waited `t` for
/// the client to read, which ends the connection. hyper has no such bound:
/// a client that stops reading a large or endless response (an event
/// stream) would otherwise keep its connection, the response and the
/// upstream connection it holds, for ever. Writes that go through at once,
/// the usual case, never touch the timer.
fn with_send_timeout(stream: TcpStream, t: Duration) -> Pin<Box<TimeoutWriter<TcpStream>>> {
    let mut w = TimeoutWriter::new(stream);
    w.set_timeout(Some(t));
    Box::pin(w)
}

const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\n\
content-type: application/json\r\n\
content-length: 74\r\n\
connection: close\r\n\
\r\n\
{\"error\":\"Request Timeout\",\"reason\":\"the client did not send the request\"}";

/// Why scrim could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    #[error(transparent)]
    Runtime(#[from] crate::snapshot::RuntimeError),
    #[error("cannot open the audit log {path}: {source}")]
    Audit {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Binds a listener (and loads its TLS files).
pub async fn bind(cfg: &crate::config::ListenerConfig) -> Result<Listener, StartError> {
    let tcp = TcpListener::bind(cfg.addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: cfg.addr,
            source,
        })?;
    let (tls, cert) = match &cfg.tls {
        Some(t) => {
            let (acceptor, cert) = tls::acceptor(&t.cert, &t.key)?;
            (Some(acceptor), Some(cert))
        }
        None => (None, None),
    };
    Ok(Listener { tcp, tls, cert })
}

/// A running scrim: its bound addresses and the handle that stops it.
pub struct Running {
    /// Bound addresses, in the order of the config's listeners.
    pub addrs: Vec<SocketAddr>,
    /// The admin API's address, when `[admin]` is configured.
    pub admin_addr: Option<SocketAddr>,
    pub runtime: Arc<crate::snapshot::Runtime>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    watcher: Option<tokio::task::JoinHandle<()>>,
    admin_shutdown: watch::Sender<bool>,
    admin_task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, drains open connections, and returns when done.
    pub async fn stop(self) {
        self.runtime.start_draining();
        if let Some(w) = &self.watcher {
            w.abort();
        }
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let _ = self.admin_shutdown.send(true);
        if let Some(t) = self.admin_task {
            let _ = t.await;
        }
    }
}

/// Binds every listener of `cfg` and serves them with the source's active
/// key, fixed for the life of the server.
pub async fn start(
    cfg: &crate::config::Config,
    keys: &dyn crate::keyring::KeySource,
    drain: Duration,
) -> Result<Running, StartError> {
    let fixed =
        crate::keyring::DevKeySource::fixed(keys).map_err(|e| StartError::Snapshot(e.into()))?;
    let rt = crate::snapshot::Runtime::new(cfg.clone(), crate::snapshot::Keys::Dev(fixed))?;
    start_runtime(rt, drain).await
}

/// Binds every listener of the runtime's config and serves them; with a key
/// ring, also watches it for rotations made elsewhere.
pub async fn start_runtime(
    rt: Arc<crate::snapshot::Runtime>,
    drain: Duration,
) -> Result<Running, StartError> {
    let cfg = rt.config();
    for w in crate::admin::startup_warnings(&cfg) {
        tracing::warn!("{w}");
    }
    let service = ProxyService::new(rt.clone());
    let (tx, rx) = watch::channel(false);
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    for l in &cfg.listeners {
        let listener = bind(l).await?;
        if let Some(cert) = &listener.cert {
            rt.add_cert(cert.clone());
        }
        addrs.push(listener.local_addr().map_err(|source| StartError::Bind {
            addr: l.addr,
            source,
        })?);
        tasks.push(tokio::spawn(serve(
            listener,
            service.clone(),
            cfg.limits.clone(),
            rx.clone(),
            drain,
        )));
    }
    let watcher = rt.spawn_key_watcher();
    let mut admin_addr = None;
    let (admin_tx, admin_rx) = watch::channel(false);
    let mut admin_task = None;
    if let Some(admin_cfg) = &cfg.admin {
        let listener = bind(&admin_cfg.listener).await?;
        if let Some(cert) = &listener.cert {
            rt.add_cert(cert.clone());
        }
        admin_addr = Some(listener.local_addr().map_err(|source| StartError::Bind {
            addr: admin_cfg.listener.addr,
            source,
        })?);
        let audit = crate::admin::audit::AuditLog::open(admin_cfg.audit_log.as_deref()).map_err(
            |source| StartError::Audit {
                path: admin_cfg
                    .audit_log
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                source,
            },
        )?;
        let admin = Arc::new(crate::admin::Admin {
            runtime: rt.clone(),
            config: admin_cfg.clone(),
            audit,
        });
        // The admin listener outlives the drain, so probes see readiness
        // turn false and metrics stay readable while requests finish.
        admin_task = Some(tokio::spawn(crate::admin::serve(
            admin,
            listener.tcp,
            listener.tls,
            admin_rx,
        )));
    }
    Ok(Running {
        addrs,
        admin_addr,
        runtime: rt,
        shutdown: tx,
        tasks,
        watcher,
        admin_shutdown: admin_tx,
        admin_task,
    })
}
