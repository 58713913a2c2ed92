//! Helpers for the proxy's end-to-end tests (`proxy.rs`): a recording
//! upstream (plain or TLS) that streams what it receives to the test, scrim
//! started from config text on ephemeral ports, real clients (HTTP/1.1, h2c,
//! h2 over TLS, raw TCP), test certificates, and leak checks.

#![allow(dead_code)] // not every test uses every helper

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use scrim::engine::{compile_str, Engine, Limits};
use scrim::keyring::DevKeySource;
use scrim::server::Running;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type TestBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// Every bounded wait in these tests: long enough for a loaded CI machine,
/// short enough that a hang fails the test instead of the suite.
pub const WAIT: Duration = Duration::from_secs(10);

/// The key every proxy and every expected-output engine uses (tokens `k1_`).
pub fn keys() -> DevKeySource {
    DevKeySource::from_bytes(1, &[7u8; 32]).expect("a 32-byte key is long enough")
}

/// An engine for `rules` under the test key: what scrim should produce.
pub fn engine(rules: &str) -> Engine {
    let compiled = compile_str(rules, "expected.toml").expect("the test rules compile");
    Engine::new(Arc::new(compiled), &keys(), Limits::default()).expect("the test key is active")
}

pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A bounded wait on a future; panics with `what` on timeout.
pub async fn within<F: Future>(what: &str, d: Duration, f: F) -> F::Output {
    match tokio::time::timeout(d, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {d:?} waiting for {what}"),
    }
}

// --- bodies ----------------------------------------------------------------

pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> TestBody {
    full(Bytes::new())
}

/// A body fed through a channel: each `send` is one data frame, dropping the
/// sender ends the body, sending `Err` aborts it.
pub fn channel_body() -> (mpsc::Sender<Result<Bytes, BoxError>>, TestBody) {
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, BoxError>>(16);
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    });
    (tx, StreamBody::new(stream).boxed_unsync())
}

// --- the recording upstream -----------------------------------------------

/// One request as the upstream saw it. `body` grows while the request
/// streams; `complete` is set when the body ended cleanly, `aborted` when it
/// ended with an error (the proxy cut it).
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub path_and_query: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub complete: bool,
    pub aborted: bool,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Path, every header name and value, and the body (lossy UTF-8): all
    /// the upstream learned, for leak checks.
    pub fn everything(&self) -> String {
        let mut s = format!("{} {}\n", self.method, self.path_and_query);
        for (k, v) in &self.headers {
            s.push_str(k.as_str());
            s.push_str(": ");
            s.push_str(&String::from_utf8_lossy(v.as_bytes()));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&String::from_utf8_lossy(&self.body));
        s
    }
}

pub type ReplyFuture = Pin<Box<dyn Future<Output = Response<TestBody>> + Send>>;
/// How the upstream answers a request, once its body has been read.
pub type Responder = Arc<dyn Fn(Recorded) -> ReplyFuture + Send + Sync>;

pub fn json_response(status: StatusCode, body: &str) -> Response<TestBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(body.to_owned()))
        .expect("a valid response")
}

/// Answers every request `200 {"ok":true}`.
pub fn ok_responder() -> Responder {
    Arc::new(|_| Box::pin(async { json_response(StatusCode::OK, r#"{"ok":true}"#) }))
}

struct UpState {
    log: Mutex<Vec<Recorded>>,
    accepted: AtomicUsize,
    chunks: mpsc::UnboundedSender<Bytes>,
    respond: Responder,
}

/// A real HTTP server on 127.0.0.1:0 (HTTP/1.1 and h2c, or TLS with ALPN)
/// that records every request and publishes every body frame to the test
/// as it arrives.
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<UpState>,
    chunks: mpsc::UnboundedReceiver<Bytes>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start(respond: Responder) -> Upstream {
        Self::start_inner(respond, None).await
    }

    pub async fn start_tls(respond: Responder, tls: rustls::ServerConfig) -> Upstream {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        Self::start_inner(respond, Some(acceptor)).await
    }

    async fn start_inner(respond: Responder, tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(UpState {
            log: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
            chunks: tx,
            respond,
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                st.accepted.fetch_add(1, Ordering::SeqCst);
                let st = st.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(st.clone(), req));
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            state,
            chunks: rx,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far (heads arrive before bodies complete).
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.log.lock().unwrap().clone()
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// The one request received, once its body has ended (cleanly or not).
    pub async fn only_request(&self) -> Recorded {
        within("the upstream to finish reading the request", WAIT, async {
            loop {
                {
                    let log = self.state.log.lock().unwrap();
                    assert!(log.len() <= 1, "the upstream got {} requests", log.len());
                    if let Some(r) = log.first().filter(|r| r.complete || r.aborted) {
                        return r.clone();
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }

    /// Body bytes as they arrive, until `done` holds for everything received
    /// so far (through this call). Panics after [`WAIT`].
    pub async fn body_until(&mut self, seen: &mut Vec<u8>, done: impl Fn(&[u8]) -> bool) {
        within("the upstream to receive body bytes", WAIT, async {
            while !done(seen) {
                let chunk = self.chunks.recv().await.expect("the upstream is running");
                seen.extend_from_slice(&chunk);
            }
        })
        .await
    }

    /// Asserts the upstream saw nothing: no connection, no request.
    pub fn assert_untouched(&self) {
        assert!(
            self.requests().is_empty(),
            "the upstream received {:?}",
            self.requests()
        );
        assert_eq!(
            self.accepted(),
            0,
            "scrim opened a connection to the upstream"
        );
    }
}

async fn handle(
    st: Arc<UpState>,
    req: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    let (parts, mut body) = req.into_parts();
    let idx = {
        let mut log = st.log.lock().unwrap();
        log.push(Recorded {
            method: parts.method.clone(),
            path_and_query: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            version: parts.version,
            headers: parts.headers.clone(),
            body: Vec::new(),
            complete: false,
            aborted: false,
        });
        log.len() - 1
    };
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    st.log.lock().unwrap()[idx].body.extend_from_slice(&data);
                    let _ = st.chunks.send(data);
                }
            }
            Some(Err(_)) => {
                st.log.lock().unwrap()[idx].aborted = true;
                break;
            }
            None => {
                st.log.lock().unwrap()[idx].complete = true;
                break;
            }
        }
    }
    let rec = st.log.lock().unwrap()[idx].clone();
    Ok((st.respond)(rec).await)
}

/// A raw HTTP/1.1 upstream: answers every request `200 {}` without
/// `Connection: close`, so the proxy may keep the connection; with `close`
/// it then closes it anyway, as an upstream does at its keep-alive limit.
/// Each answer waits `delay`. Returns its address, the number of
/// connections it accepted and the number still open.
pub async fn counting_upstream(
    close: bool,
    delay: Duration,
) -> (std::net::SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let (count, still) = (accepted.clone(), open.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            still.fetch_add(1, Ordering::SeqCst);
            let still = still.clone();
            tokio::spawn(async move {
                while read_request(&mut s).await.is_some() {
                    tokio::time::sleep(delay).await;
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                    if s.write_all(answer).await.is_err() || close {
                        break;
                    }
                }
                still.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, accepted, open)
}

/// An upstream whose answer to `/pass/endless` is a body that never ends
/// (64 KiB chunks for as long as they are taken), to `/pass/big` [`BIG`]
/// bytes;
/// other paths get `{}`.
pub async fn endless_upstream() -> Upstream {
    let respond: Responder = Arc::new(|rec: Recorded| {
        Box::pin(async move {
            if rec.path_and_query.ends_with("/big") {
                return http::Response::builder()
                    .header("content-type", "application/octet-stream")
                    .body(full(vec![b'x'; BIG]))
                    .expect("a valid response");
            }
            if !rec.path_and_query.ends_with("/endless") {
                return json_response(StatusCode::OK, "{}");
            }
            let chunk = Bytes::from(vec![b'x'; 64 << 10]);
            let frames = futures_util::stream::repeat_with(move || {
                Ok::<_, BoxError>(Frame::data(chunk.clone()))
            });
            http::Response::builder()
                .header("content-type", "application/octet-stream")
                .body(BodyExt::boxed_unsync(StreamBody::new(frames)))
                .expect("a valid response")
        })
    });
    Upstream::start(respond).await
}

/// The size of [`endless_upstream`]'s `/big` answer: 2 MiB.
pub const BIG: usize = 2 << 20;

/// An h2c client (prior knowledge) whose streams all start with a window
/// of 0: response heads come, no data can, while the connection itself
/// flows. Sending on the channel opens every stream's window (1 MiB).
pub async fn h2_shut_window_client(
    addr: SocketAddr,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::sync::oneshot::Sender<()>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, mut conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    let (open_window, opened) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        tokio::select! {
            _ = &mut conn => return,
            _ = opened => {}
        }
        let _ = conn.set_initial_window_size(1 << 20);
        let _ = conn.await;
    });
    (client, open_window)
}

/// Reads an h2 response body to its end without keeping it: `Ok` when the
/// stream ended whole, `Err` when it was reset.
pub async fn h2_stream_end(body: &mut h2::RecvStream) -> Result<(), h2::Error> {
    while let Some(data) = body.data().await {
        data?;
    }
    Ok(())
}

// --- scrim -------------------------------------------------------------------

/// A running scrim and the directory its config (and rule, cert files) live in.
pub struct Proxy {
    pub addr: SocketAddr,
    pub addrs: Vec<SocketAddr>,
    pub dir: TempDir,
    running: Option<Running>,
}

impl Proxy {
    /// Writes `config` to `dir/scrim.toml`, loads it with `config::load_str`
    /// (relative paths resolve in `dir`) and starts scrim with the test key.
    pub async fn start(dir: TempDir, config: &str) -> Proxy {
        Self::start_with_drain(dir, config, Duration::from_millis(200)).await
    }

    /// [`Proxy::start`] with the time `stop` lets open connections drain.
    pub async fn start_with_drain(dir: TempDir, config: &str, drain: Duration) -> Proxy {
        let path = dir.path().join("scrim.toml");
        std::fs::write(&path, config).expect("write the config");
        let cfg = match scrim::config::load_str(config, &path) {
            Ok(c) => c,
            Err(e) => panic!("the test config is invalid:\n{e}\n---\n{config}"),
        };
        let running = scrim::server::start(&cfg, &keys(), drain)
            .await
            .unwrap_or_else(|e| panic!("scrim did not start: {e}"));
        Proxy {
            addr: running.addrs[0],
            addrs: running.addrs.clone(),
            dir,
            running: Some(running),
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    /// The Prometheus text of scrim's metrics, as `/metrics` serves it.
    pub fn metrics(&self) -> String {
        let running = self.running.as_ref().expect("scrim is running");
        running.runtime.metrics.render()
    }

    /// The running scrim's runtime: reload, rotate, its snapshot.
    pub fn runtime(&self) -> &Arc<scrim::snapshot::Runtime> {
        &self.running.as_ref().expect("scrim is running").runtime
    }

    /// Stops scrim; fails if it does not stop within [`WAIT`].
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            within("scrim to stop", WAIT, r.stop()).await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // A test that panicked leaves the listener tasks to the runtime's
        // shutdown; dropping the handle closes the shutdown channel too.
        drop(self.running.take());
    }
}

pub fn tempdir() -> TempDir {
    tempfile::tempdir().expect("a temp dir")
}

/// A TOML literal for a path (forward slashes, single quotes).
pub fn toml_path(p: &Path) -> String {
    format!("'{}'", p.display())
}

/// A `[purpose]` table for test rule files, then `rules`.
pub fn rule_file(purpose: &str, recipient: &str, default: &str, rules: &str) -> String {
    format!(
        "[purpose]\nid = \"{purpose}\"\nlegal_basis = \"legitimate-interest\"\n\
         retention = \"13 months\"\nrecipient = \"{recipient}\"\ndefault = \"{default}\"\n\n{rules}"
    )
}

// --- clients -------------------------------------------------------------------

pub type HttpClient = Client<HttpConnector, TestBody>;

pub fn h1_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// HTTP/2 with prior knowledge over plain TCP (h2c).
pub fn h2c_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A response read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends a request and reads the whole response, within [`WAIT`].
pub async fn send<C>(client: &Client<C, TestBody>, req: Request<TestBody>) -> Reply
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    within("the proxy's response", WAIT, async {
        let res = client
            .request(req)
            .await
            .expect("the request reaches scrim");
        let (parts, body) = res.into_parts();
        let body = body
            .collect()
            .await
            .expect("the response body arrives")
            .to_bytes()
            .to_vec();
        Reply {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        }
    })
    .await
}

pub fn post(url: &str, content_type: &str, body: TestBody) -> Request<TestBody> {
    Request::post(url)
        .header("content-type", content_type)
        .body(body)
        .expect("a valid request")
}

// --- raw TCP -------------------------------------------------------------------

/// A response as read off a raw socket.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

/// Reads one HTTP/1.1 response (with `Content-Length`) or up to EOF.
pub async fn read_raw_response(stream: &mut TcpStream) -> RawReply {
    within("a response on the raw socket", WAIT, async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let len = head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                });
                if let Some(len) = len {
                    if buf.len() >= end + 4 + len {
                        return raw_reply(head, buf[end + 4..end + 4 + len].to_vec());
                    }
                }
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = find(&buf, b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(&buf)));
        raw_reply(
            String::from_utf8_lossy(&buf[..end]).into_owned(),
            buf[end + 4..].to_vec(),
        )
    })
    .await
}

fn raw_reply(head: String, body: Vec<u8>) -> RawReply {
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {head:?}"));
    RawReply { status, head, body }
}

/// Where `needle` first occurs in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `b` gzipped (fast: some tests compress large bodies).
pub fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// One chunk of a chunked HTTP/1.1 body.
pub fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

/// Reads one request (head and body, by Content-Length or to the last
/// chunk) from a raw upstream's connection; `None` at EOF.
pub async fn read_request(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let len = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let body = &buf[head_end..];
        let done = match len {
            Some(n) => body.len() >= n,
            None => !chunked || body.ends_with(b"0\r\n\r\n"),
        };
        if done {
            return Some(buf);
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return Some(buf),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

pub async fn raw_connect(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect to scrim");
    s.set_nodelay(true).expect("nodelay");
    s.flush().await.expect("flush");
    s
}

// --- TLS -------------------------------------------------------------------------

/// A self-signed certificate for 127.0.0.1 and localhost, as PEM.
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn test_cert() -> TestCert {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("rcgen makes a certificate");
    TestCert {
        cert_pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
    }
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls client trusting only `cert`, ALPN h2 then http/1.1.
pub fn tls_client_config(cert: &TestCert) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut cert.cert_pem.as_bytes()) {
        roots
            .add(c.expect("a PEM certificate"))
            .expect("a usable root");
    }
    rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .expect("ring supports the defaults")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A rustls server for `cert` with ALPN h2 and http/1.1.
pub fn tls_server_config(cert: &TestCert) -> rustls::ServerConfig {
    let certs = rustls_pemfile::certs(&mut cert.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certificates");
    let key = rustls_pemfile::private_key(&mut cert.key_pem.as_bytes())
        .expect("a PEM key")
        .expect("a private key");
    let mut cfg = rustls::ServerConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .expect("ring supports the defaults")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("a valid certificate and key");
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg
}

pub type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, TestBody>;

/// A client over TLS trusting `cert`, offering h2 and http/1.1 by ALPN.
pub fn https_client(cert: &TestCert) -> HttpsClient {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_client_config(cert))
        .https_only()
        .enable_all_versions()
        .build();
    Client::builder(TokioExecutor::new()).build(https)
}

// --- leak checks ---------------------------------------------------------------

/// Asserts none of `secrets` appears in `hay`, looking through case,
/// percent-encoding (`%40`, `+`) and JSON escapes of `@`.
#[track_caller]
pub fn assert_no_leak(what: &str, hay: &str, secrets: &[&str]) {
    let decoded = percent_encoding::percent_decode_str(&hay.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned();
    let unescaped = hay.replace("\\u0040", "@");
    for view in [hay, decoded.as_str(), unescaped.as_str()] {
        let view = view.to_lowercase();
        for s in secrets {
            assert!(
                !view.contains(&s.to_lowercase()),
                "{what} leaks {s:?}:\n{hay}"
            );
        }
    }
}

/// Asserts a scrim error response: the status, `Content-Type: application/json`
/// (when headers are given), a body that is exactly `{"error","reason"}` with
/// the status text, and no trace of `secrets`.
#[track_caller]
pub fn assert_error_body(status: u16, got_status: u16, body: &[u8], secrets: &[&str]) {
    let text = String::from_utf8_lossy(body);
    assert_eq!(got_status, status, "status; body: {text}");
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("the error body is not JSON ({e}): {text}"));
    let obj = v.as_object().expect("the error body is an object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["error", "reason"], "error body keys: {text}");
    let expected = StatusCode::from_u16(status)
        .unwrap()
        .canonical_reason()
        .unwrap();
    assert_eq!(obj["error"], expected, "error text: {text}");
    let reason = obj["reason"].as_str().expect("reason is a string");
    assert!(!reason.is_empty(), "an empty reason: {text}");
    assert_no_leak("the error body", &text, secrets);
}

/// [`assert_error_body`] for a hyper reply, also checking its content type.
#[track_caller]
pub fn assert_error_reply(reply: &Reply, status: u16, secrets: &[&str]) {
    assert_eq!(
        reply
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "error content type; body {}",
        reply.text()
    );
    assert_error_body(status, reply.status.as_u16(), &reply.body, secrets);
}

/// An address with nothing listening: the port is bound (so no other test
/// can take it) but not listening, so connections are refused. Keep the
/// socket alive as long as the address is used.
pub fn dead_addr() -> (tokio::net::TcpSocket, SocketAddr) {
    let sock = tokio::net::TcpSocket::new_v4().expect("a socket");
    sock.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    let addr = sock.local_addr().expect("addr");
    (sock, addr)
}
