//! Faults: the upstream refusing connections, hanging, resetting mid-body,
//! answering slowly and saturated by many clients at once; the client disconnecting mid-stream; the key ring's
//! disk full or read-only during a rotation; scrim killed with SIGKILL during
//! rotations and restarted.
//!
//! After each fault the test checks what the report promises: scrim serves
//! the next valid request, every request answered 2xx reached its upstream
//! exactly once and rewritten (no raw value), and the key ring is intact.
//!
//! What is real and what is injected:
//! - upstream faults are real sockets: a bound port that does not listen
//!   (connection refused), raw TCP servers that hang, or send half a response
//!   and then close (FIN) or reset (RST, `SO_LINGER` 0);
//! - client disconnects are raw TCP clients that close or reset mid-body,
//!   and an HTTP/2 client that resets its stream;
//! - "disk full" is the kernel's ENOSPC: the ring's temporary file
//!   (`<ring>.tmp.<pid>`, opened without `O_EXCL`) is pre-created as a
//!   symlink to `/dev/full`;
//! - "read-only" is real where it can be: the ring's directory made
//!   immutable (`chattr +i`, root only; creating the temporary file then
//!   fails with EPERM); a read-only mount needs privileges CI cannot count
//!   on, so EROFS itself is injected with `SCRIM_FAIL_POINT=temp-create-erofs`,
//!   which fails the temporary file's creation exactly where the kernel would;
//! - SIGKILL is real, sent to a `scrim run` process at random points while
//!   rotations run back to back through its admin API.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use scrim::keyring::ring::KeyRing;
use scrim::keyring::store::State;

use super::{ensure, Cases, Res};
use crate::keyring::{
    admin_call, bearer, config, init_ring, kek, kek_hex, rules, run_bounded, scrim_cmd,
    spawn_scrim, start_scrim, ChildGuard, EMAIL_RULES, REFUSAL_TIMEOUT, SECURITY_TOKEN,
};
use crate::proxy_support::{self as ps, HttpClient, Proxy, Responder, TestBody, Upstream, WAIT};

// === shared: config, events, delivery ======================================

fn event_rules() -> String {
    rules(
        "audience-measurement",
        "analytics",
        "13 months",
        EMAIL_RULES,
    )
}

fn route_to(prefix: &str, upstream: &str, extra: &str) -> String {
    format!(
        "[[route]]\npath_prefix = \"{prefix}\"\nupstream = \"{upstream}\"\n{extra}\
         inline_rules = '''\n{}\n'''\n\n",
        event_rules()
    )
}

/// `/ok/` to the healthy upstream `up`, `/bad/` to the faulty `bad`
/// (with `bad_extra` settings), plus `routes_extra`.
fn two_upstreams(ok: &str, bad: &str, bad_extra: &str, routes_extra: &str) -> String {
    format!(
        "[[listener]]\naddr = \"127.0.0.1:0\"\n\n\
         [upstream.up]\nurl = \"{ok}\"\n\n\
         [upstream.bad]\nurl = \"{bad}\"\n{bad_extra}\n\n{}{}{routes_extra}",
        route_to("/ok/", "up", ""),
        route_to("/bad/", "bad", ""),
    )
}

fn raw_email(n: u64) -> String {
    format!("Person.{n}@Example.org")
}

fn event(n: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({"n": n, "email": raw_email(n), "name": "Raw Name"})).unwrap()
}

/// Sends a request and reads the whole answer; never panics.
async fn try_send(
    client: &HttpClient,
    req: Request<TestBody>,
) -> Result<(StatusCode, Vec<u8>), String> {
    let fut = async {
        let res = client
            .request(req)
            .await
            .map_err(|e| format!("no response: {e}"))?;
        let (parts, body) = res.into_parts();
        let b = body
            .collect()
            .await
            .map_err(|e| format!("{} then the body failed: {e}", parts.status))?
            .to_bytes()
            .to_vec();
        Ok((parts.status, b))
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .map_err(|_| format!("no answer within {WAIT:?}"))?
}

async fn send_event(
    client: &HttpClient,
    addr: SocketAddr,
    path: &str,
    n: u64,
) -> Result<(StatusCode, Vec<u8>), String> {
    let req = ps::post(
        &format!("http://{addr}{path}"),
        "application/json",
        ps::full(event(n)),
    );
    try_send(client, req).await
}

/// An error answer: `status`, a JSON `{"error","reason"}` with a short
/// reason, and nothing of the request in it.
fn error_answer(got: &Result<(StatusCode, Vec<u8>), String>, status: u16, n: u64) -> Res {
    let (s, body) = got.as_ref().map_err(|e| e.clone())?;
    let text = String::from_utf8_lossy(body);
    ensure(s.as_u16() == status, || {
        format!("expected {status}, got {s}: {text}")
    })?;
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON ({e}): {text}"))?;
    let reason = v["reason"].as_str().unwrap_or_default();
    ensure(!reason.is_empty() && reason.len() < 200, || {
        format!("no short reason: {text}")
    })?;
    let lower = text.to_lowercase();
    ensure(
        !lower.contains(&raw_email(n).to_lowercase()) && !lower.contains("raw name"),
        || format!("the error quotes the request: {text}"),
    )
}

/// Every `n` answered 2xx reached `up` exactly once, complete, with the
/// email pseudonymised and nothing raw (waits up to [`WAIT`]).
async fn delivered(up: &Upstream, ns: &[u64]) -> Res {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut seen: HashMap<u64, usize> = HashMap::new();
        let mut bad = Vec::new();
        for r in up.requests().iter().filter(|r| r.complete) {
            let Ok(v) = serde_json::from_slice::<Value>(&r.body) else {
                continue;
            };
            let Some(n) = v["n"].as_u64() else { continue };
            *seen.entry(n).or_default() += 1;
            let all = r.everything().to_lowercase();
            let token = v["email"].as_str().unwrap_or_default();
            if !token.ends_with("@pseudonym.invalid")
                || all.contains(&raw_email(n).to_lowercase())
                || all.contains("raw name")
            {
                bad.push(format!(
                    "request {n} arrived raw or damaged: {}",
                    r.everything()
                ));
            }
        }
        if !bad.is_empty() {
            return Err(bad.join("; "));
        }
        let missing: Vec<u64> = ns
            .iter()
            .copied()
            .filter(|n| seen.get(n) != Some(&1))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let counts: Vec<(u64, usize)> = missing
                .iter()
                .map(|n| (*n, seen.get(n).copied().unwrap_or(0)))
                .collect();
            return Err(format!(
                "answered 2xx but not delivered exactly once (n, times): {counts:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The requests answered 2xx so far, and the next `n`.
#[derive(Default)]
struct Ledger {
    ok: Vec<u64>,
    next: u64,
}

impl Ledger {
    fn next(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// A valid request to `/ok/`: 200, and it reached `up` rewritten.
    async fn serves(&mut self, client: &HttpClient, proxy: SocketAddr, up: &Upstream) -> Res {
        let n = self.next();
        let (s, body) = send_event(client, proxy, "/ok/e", n).await?;
        ensure(s == StatusCode::OK, || {
            format!(
                "the next valid request got {s}: {}",
                String::from_utf8_lossy(&body)
            )
        })?;
        self.ok.push(n);
        delivered(up, &[n]).await
    }

    /// Every request answered 2xx so far reached `up` intact.
    async fn none_lost(&self, up: &Upstream) -> Res {
        ensure(!self.ok.is_empty(), || "no request was answered 2xx".into())?;
        delivered(up, &self.ok).await
    }
}

// === raw TCP upstreams ======================================================

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Reads each request and answers 200 (keep-alive).
    Answer,
    /// Reads the request, never answers.
    Hang,
    /// Never reads, never answers.
    HangUnread,
    /// Sends the head and half the body, then closes (FIN) or resets (RST).
    Partial { chunked: bool, rst: bool },
    /// Resets the connection once the request is read.
    ResetAtRequest,
}

/// The body the partial responses promise: 2000 bytes, of which 1000 come.
const PROMISED: usize = 2000;

struct RawUp {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawUp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn raw_upstream(listener: TcpListener, fault: Fault) -> RawUp {
    let addr = listener.local_addr().unwrap();
    let requests: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let log = requests.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let (log, held) = (log.clone(), held.clone());
            tokio::spawn(async move {
                if let Fault::HangUnread = fault {
                    held.lock().unwrap().push(s);
                    return;
                }
                while let Some(req) = ps::read_request(&mut s).await {
                    log.lock().unwrap().push(req);
                    match fault {
                        Fault::Answer => {
                            let body = r#"{"ok":true}"#;
                            let res = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                 content-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if s.write_all(res.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        Fault::Hang | Fault::HangUnread => {
                            held.lock().unwrap().push(s);
                            return;
                        }
                        Fault::ResetAtRequest => {
                            let _ = s.set_zero_linger();
                            return;
                        }
                        Fault::Partial { chunked, rst } => {
                            let half = format!(r#"{{"data":"{}"#, "x".repeat(PROMISED / 2 - 9));
                            let res = if chunked {
                                format!(
                                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                     transfer-encoding: chunked\r\n\r\n{:x}\r\n{half}\r\n",
                                    half.len()
                                )
                            } else {
                                format!(
                                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                     content-length: {PROMISED}\r\n\r\n{half}"
                                )
                            };
                            let _ = s.write_all(res.as_bytes()).await;
                            let _ = s.flush().await;
                            tokio::time::sleep(Duration::from_millis(75)).await;
                            if rst {
                                let _ = s.set_zero_linger();
                            } else {
                                let _ = s.shutdown().await;
                            }
                            return;
                        }
                    }
                }
            });
        }
    });
    RawUp {
        addr,
        requests,
        task,
    }
}

async fn raw_upstream_on_new_port(fault: Fault) -> RawUp {
    raw_upstream(TcpListener::bind("127.0.0.1:0").await.unwrap(), fault).await
}

// === the upstream refusing connections =======================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_refusing_connections() {
    let mut c = Cases::new("Faults", "upstream refusing connections");
    let up = Upstream::start(ps::ok_responder()).await;
    let (sock, dead) = ps::dead_addr();
    let proxy = Proxy::start(
        ps::tempdir(),
        &two_upstreams(&up.url(), &format!("http://{dead}"), "", ""),
    )
    .await;
    let (h1, h2) = (ps::h1_client(), ps::h2c_client());
    let mut ledger = Ledger::default();

    for (name, client) in [("HTTP/1.1", &h1), ("h2c", &h2)] {
        let n = ledger.next();
        let t = Instant::now();
        let got = send_event(client, proxy.addr, "/bad/e", n).await;
        let r = error_answer(&got, 502, n).and_then(|_| {
            ensure(t.elapsed() < Duration::from_secs(3), || {
                format!("a refused connection took {:?} to report", t.elapsed())
            })
        });
        c.check(&format!("{name}: 502 with a short reason, at once"), r);
        c.check(
            &format!("{name}: scrim serves the next request"),
            ledger.serves(client, proxy.addr, &up).await,
        );
    }

    // 16 requests to the refusing upstream interleaved with 16 valid ones.
    let mut tasks = Vec::new();
    for i in 0..32 {
        let n = ledger.next();
        let client = h1.clone();
        let addr = proxy.addr;
        let path = if i % 2 == 0 { "/bad/e" } else { "/ok/e" };
        tasks.push(tokio::spawn(async move {
            (n, path, send_event(&client, addr, path, n).await)
        }));
    }
    let mut r = Ok(());
    for t in tasks {
        let (n, path, got) = t.await.unwrap();
        let one = if path == "/bad/e" {
            error_answer(&got, 502, n)
        } else {
            match &got {
                Ok((s, _)) if *s == StatusCode::OK => {
                    ledger.ok.push(n);
                    Ok(())
                }
                other => Err(format!("valid request {n}: {other:?}")),
            }
        };
        if let Err(e) = one {
            r = Err(format!("{path} {n}: {e}"));
        }
    }
    c.check(
        "32 concurrent requests: each to the refusing upstream 502, each valid one 200",
        r,
    );

    // The upstream comes back on the same port: scrim uses it at once.
    let back = raw_upstream(sock.listen(64).unwrap(), Fault::Answer).await;
    let n = ledger.next();
    let got = send_event(&h1, proxy.addr, "/bad/e", n).await;
    let r = match got {
        Ok((s, _)) if s == StatusCode::OK => {
            let reqs = back.requests.lock().unwrap().clone();
            let last = reqs
                .last()
                .map(|b| String::from_utf8_lossy(b).to_lowercase());
            match last {
                Some(t) if t.contains("@pseudonym.invalid") && !t.contains("person.") => Ok(()),
                other => Err(format!("the upstream got {other:?}")),
            }
        }
        other => Err(format!("after the upstream came back: {other:?}")),
    };
    c.check(
        "the upstream comes back: the next request reaches it, rewritten",
        r,
    );
    c.check(
        "every request answered 2xx reached the upstream once, rewritten",
        ledger.none_lost(&up).await,
    );
    proxy.stop().await;
    c.finish();
}

// === the upstream hanging ======================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_hanging() {
    let mut c = Cases::new("Faults", "upstream hanging (accepts, never answers)");
    // Long enough that a loaded CI machine serves the valid requests well
    // within it, yet a request stuck behind a hung one would wait it out.
    const TIMEOUT: Duration = Duration::from_millis(1000);
    let up = Upstream::start(ps::ok_responder()).await;
    let hang = raw_upstream_on_new_port(Fault::Hang).await;
    let unread = raw_upstream_on_new_port(Fault::HangUnread).await;
    let extra_up = format!(
        "[upstream.unread]\nurl = \"http://{}\"\nresponse_timeout_ms = {}\n\n{}",
        unread.addr,
        TIMEOUT.as_millis(),
        route_to("/unread/", "unread", "")
    );
    let proxy = Proxy::start(
        ps::tempdir(),
        &two_upstreams(
            &up.url(),
            &format!("http://{}", hang.addr),
            &format!("response_timeout_ms = {}", TIMEOUT.as_millis()),
            &extra_up,
        ),
    )
    .await;
    let (h1, h2) = (ps::h1_client(), ps::h2c_client());
    let mut ledger = Ledger::default();

    let within_timeout = |t: Duration| {
        ensure(t >= TIMEOUT - Duration::from_millis(50), || {
            format!("504 after {t:?}, before the timeout")
        })
        .and_then(|_| {
            ensure(t < TIMEOUT + Duration::from_secs(3), || {
                format!("504 only after {t:?}")
            })
        })
    };
    for (name, client, path) in [
        ("HTTP/1.1, request read", &h1, "/bad/e"),
        ("h2c, request read", &h2, "/bad/e"),
        ("HTTP/1.1, request never read", &h1, "/unread/e"),
    ] {
        let n = ledger.next();
        let t = Instant::now();
        let got = send_event(client, proxy.addr, path, n).await;
        let r = error_answer(&got, 504, n).and_then(|_| within_timeout(t.elapsed()));
        c.check(&format!("{name}: 504 at the response timeout"), r);
        c.check(
            &format!("{name}: scrim serves the next request"),
            ledger.serves(client, proxy.addr, &up).await,
        );
    }
    let r = {
        let got = hang.requests.lock().unwrap().clone();
        let all = got
            .iter()
            .map(|b| String::from_utf8_lossy(b).to_lowercase())
            .collect::<String>();
        ensure(
            got.len() == 2 && !all.contains("person.") && !all.contains("raw name"),
            || format!("the hanging upstream got {} requests: {all}", got.len()),
        )
    };
    c.check("what the hanging upstream read was rewritten", r);

    // Eight requests hang at once; valid requests are served meanwhile, fast.
    let mut hung = Vec::new();
    for _ in 0..8 {
        let n = ledger.next();
        let (client, addr) = (h1.clone(), proxy.addr);
        hung.push(tokio::spawn(async move {
            (n, send_event(&client, addr, "/bad/e", n).await)
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    let mut r = Ok(());
    for _ in 0..4 {
        if let Err(e) = ledger.serves(&h1, proxy.addr, &up).await {
            r = Err(e);
        }
    }
    let r = r.and_then(|_| {
        ensure(t.elapsed() < TIMEOUT, || {
            format!("valid requests waited {:?} behind hung ones", t.elapsed())
        })
    });
    c.check("valid requests are served while 8 others hang", r);
    let mut r = Ok(());
    for h in hung {
        let (n, got) = h.await.unwrap();
        if let Err(e) = error_answer(&got, 504, n) {
            r = Err(format!("hung request {n}: {e}"));
        }
    }
    c.check("each of the 8 hung requests is answered 504", r);
    c.check(
        "every request answered 2xx reached the upstream once, rewritten",
        ledger.none_lost(&up).await,
    );
    proxy.stop().await;
    c.finish();
}

// === the upstream resetting mid-body ==========================================

/// A response streamed to the client must not end cleanly when the
/// upstream's did not: the client sees an error, never a short body as if
/// it were whole.
fn truncation_signalled(got: &Result<(StatusCode, Vec<u8>), String>) -> Res {
    match got {
        Err(e) => ensure(
            e.contains("body failed") || e.contains("no response"),
            || format!("unexpected failure: {e}"),
        ),
        Ok((s, body)) if *s == StatusCode::OK => Err(format!(
            "a truncated response reached the client as complete ({} of {PROMISED} bytes)",
            body.len()
        )),
        Ok((s, body)) if s.is_server_error() => {
            ensure(body.len() < 300, || "a long error body".into())
        }
        Ok((s, _)) => Err(format!("unexpected status {s}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_resetting_mid_body() {
    let mut c = Cases::new("Faults", "upstream resetting mid-body");
    let up = Upstream::start(ps::ok_responder()).await;
    let dir = ps::tempdir();
    // A response rule file: the response is buffered and rewritten.
    std::fs::write(dir.path().join("resp.toml"), event_rules()).unwrap();
    let mut extra = String::new();
    let mut raws = Vec::new();
    let faults = [
        (
            "content-length, then RST",
            Fault::Partial {
                chunked: false,
                rst: true,
            },
            "",
        ),
        (
            "content-length, then FIN",
            Fault::Partial {
                chunked: false,
                rst: false,
            },
            "",
        ),
        (
            "chunked, then RST",
            Fault::Partial {
                chunked: true,
                rst: true,
            },
            "",
        ),
        (
            "chunked, then FIN",
            Fault::Partial {
                chunked: true,
                rst: false,
            },
            "",
        ),
        (
            "content-length, then RST, under response_rules",
            Fault::Partial {
                chunked: false,
                rst: true,
            },
            "response_rules = \"resp.toml\"\n",
        ),
        (
            "chunked, then FIN, under response_rules",
            Fault::Partial {
                chunked: true,
                rst: false,
            },
            "response_rules = \"resp.toml\"\n",
        ),
    ];
    for (i, (_, fault, route_extra)) in faults.iter().enumerate() {
        let raw = raw_upstream_on_new_port(*fault).await;
        extra.push_str(&format!(
            "[upstream.f{i}]\nurl = \"http://{}\"\n\n{}",
            raw.addr,
            route_to(&format!("/f{i}/"), &format!("f{i}"), route_extra)
        ));
        raws.push(raw);
    }
    let reset = raw_upstream_on_new_port(Fault::ResetAtRequest).await;
    let proxy = Proxy::start(
        dir,
        &two_upstreams(&up.url(), &format!("http://{}", reset.addr), "", &extra),
    )
    .await;
    let (h1, h2) = (ps::h1_client(), ps::h2c_client());
    let mut ledger = Ledger::default();

    let n = ledger.next();
    let got = send_event(&h1, proxy.addr, "/bad/e", n).await;
    c.check(
        "reset before any response: 502 with a short reason",
        error_answer(&got, 502, n),
    );
    c.check(
        "after a reset before the response: scrim serves the next request",
        ledger.serves(&h1, proxy.addr, &up).await,
    );
    for (i, (name, _, _)) in faults.iter().enumerate() {
        for (proto, client) in [("HTTP/1.1", &h1), ("h2c", &h2)] {
            let n = ledger.next();
            let got = send_event(client, proxy.addr, &format!("/f{i}/e"), n).await;
            c.check(
                &format!("{name}, {proto} client: the truncation reaches the client as an error"),
                truncation_signalled(&got),
            );
        }
        c.check(
            &format!("{name}: scrim serves the next request"),
            ledger.serves(&h1, proxy.addr, &up).await,
        );
    }
    c.check(
        "every request answered 2xx reached the upstream once, rewritten",
        ledger.none_lost(&up).await,
    );
    proxy.stop().await;
    c.finish();
}

// === the upstream answering slowly ============================================

fn big_body() -> String {
    let items: Vec<String> = (0..4000).map(|i| format!("{{\"i\":{i}}}")).collect();
    format!("{{\"items\":[{}]}}", items.join(","))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_answering_slowly() {
    let mut c = Cases::new("Faults", "upstream answering slowly (within the timeout)");
    const SLOW_HEAD: Duration = Duration::from_millis(600);
    let body = big_body();
    let b = body.clone();
    // `/ok/slow-head`: 600 ms before the head; `/ok/dribble`: the head at
    // once, then the body in 20 pieces over 1.5 s, longer than the response
    // timeout (1.2 s, which bounds the wait for the head only). A valid
    // request must not wait behind them: under 600 ms, loose enough for a
    // loaded machine.
    let responder: Responder = Arc::new(move |rec| {
        let body = b.clone();
        Box::pin(async move {
            if rec.path_and_query.starts_with("/ok/slow-head") {
                tokio::time::sleep(SLOW_HEAD).await;
                return ps::json_response(StatusCode::OK, &body);
            }
            if rec.path_and_query.starts_with("/ok/dribble") {
                let (tx, stream) = ps::channel_body();
                tokio::spawn(async move {
                    let bytes = Bytes::from(body);
                    let step = bytes.len().div_ceil(20);
                    for piece in bytes.chunks(step) {
                        tokio::time::sleep(Duration::from_millis(75)).await;
                        if tx.send(Ok(Bytes::copy_from_slice(piece))).await.is_err() {
                            return;
                        }
                    }
                });
                return Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/json")
                    .body(stream)
                    .unwrap();
            }
            ps::json_response(StatusCode::OK, r#"{"ok":true}"#)
        })
    });
    let up = Upstream::start(responder).await;
    let proxy = Proxy::start(
        ps::tempdir(),
        &format!(
            "[[listener]]\naddr = \"127.0.0.1:0\"\n\n\
             [upstream.up]\nurl = \"{}\"\nresponse_timeout_ms = 1200\n\n{}",
            up.url(),
            route_to("/ok/", "up", "")
        ),
    )
    .await;
    let (h1, h2) = (ps::h1_client(), ps::h2c_client());
    let mut ledger = Ledger::default();

    let full_body =
        |got: &Result<(StatusCode, Vec<u8>), String>, min: Duration, t: Duration| match got {
            Ok((s, b)) if *s == StatusCode::OK && b == body.as_bytes() => ensure(t >= min, || {
                format!("answered after {t:?}, faster than the upstream")
            }),
            Ok((s, b)) => Err(format!("{s} with {} of {} bytes", b.len(), body.len())),
            Err(e) => Err(e.clone()),
        };
    for (name, path, min) in [
        ("head after 600 ms", "/ok/slow-head", SLOW_HEAD),
        (
            "body dribbled over 1.5 s, past the response timeout",
            "/ok/dribble",
            Duration::from_millis(1400),
        ),
    ] {
        for (proto, client) in [("HTTP/1.1", &h1), ("h2c", &h2)] {
            let n = ledger.next();
            let t = Instant::now();
            let got = send_event(client, proxy.addr, path, n).await;
            let r = full_body(&got, min, t.elapsed());
            if r.is_ok() {
                ledger.ok.push(n);
            }
            c.check(&format!("{name}, {proto}: 200 with the whole body"), r);
        }
    }

    // Eight slow answers at once, and valid requests meanwhile.
    let mut slow = Vec::new();
    for i in 0..8 {
        let n = ledger.next();
        let (client, addr) = (h1.clone(), proxy.addr);
        let path = if i % 2 == 0 {
            "/ok/slow-head"
        } else {
            "/ok/dribble"
        };
        slow.push(tokio::spawn(async move {
            let t = Instant::now();
            (n, send_event(&client, addr, path, n).await, t.elapsed())
        }));
    }
    let t = Instant::now();
    let r = ledger.serves(&h1, proxy.addr, &up).await.and_then(|_| {
        ensure(t.elapsed() < SLOW_HEAD, || {
            format!("a valid request waited {:?} behind slow ones", t.elapsed())
        })
    });
    c.check("a valid request is served while 8 slow ones are pending", r);
    let mut r = Ok(());
    for s in slow {
        let (n, got, t) = s.await.unwrap();
        match full_body(&got, SLOW_HEAD, t) {
            Ok(()) => ledger.ok.push(n),
            Err(e) => r = Err(format!("slow request {n}: {e}")),
        }
    }
    c.check("8 concurrent slow answers: each 200 with the whole body", r);
    c.check(
        "every request answered 2xx reached the upstream once, rewritten",
        ledger.none_lost(&up).await,
    );
    proxy.stop().await;
    c.finish();
}

// === an upstream saturated by many clients at once ==========================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_saturated_by_many_clients() {
    let mut c = Cases::new(
        "Faults",
        "upstream saturated: 40 clients at once, 4 connections allowed",
    );
    const CAP: usize = 4;
    const CLIENTS: usize = 40;
    const ANSWER: Duration = Duration::from_millis(300);
    // The slow upstream takes 300 ms per answer and counts how many it holds
    // at once; with 4 connections, 40 requests need 3 s, past the response
    // timeout (1.5 s) for those at the back of the queue.
    let (now, most) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let responder: Responder = {
        let (now, most) = (now.clone(), most.clone());
        Arc::new(move |_| {
            let (now, most) = (now.clone(), most.clone());
            Box::pin(async move {
                let held = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(held, Ordering::SeqCst);
                tokio::time::sleep(ANSWER).await;
                now.fetch_sub(1, Ordering::SeqCst);
                ps::json_response(StatusCode::OK, r#"{"ok":true}"#)
            })
        })
    };
    let bad = Upstream::start(responder).await;
    let up = Upstream::start(ps::ok_responder()).await;
    let extra = format!("max_connections = {CAP}\nresponse_timeout_ms = 1500");
    let proxy = Proxy::start(
        ps::tempdir(),
        &two_upstreams(&up.url(), &bad.url(), &extra, ""),
    )
    .await;
    let client = ps::h1_client();
    let mut ledger = Ledger::default();
    let mut saturated = Ledger::default();

    let mut sent = Vec::new();
    for _ in 0..CLIENTS {
        let n = saturated.next();
        let (client, addr) = (client.clone(), proxy.addr);
        sent.push(tokio::spawn(async move {
            (n, send_event(&client, addr, "/bad/e", n).await)
        }));
    }
    // While the slow upstream's connections are all busy, another
    // upstream's requests do not wait behind them.
    tokio::time::sleep(ANSWER / 2).await;
    let t = Instant::now();
    // Queued behind them it would wait seconds; a loaded machine may
    // take a few hundred milliseconds anyway.
    let r = ledger.serves(&client, proxy.addr, &up).await.and_then(|_| {
        ensure(t.elapsed() < Duration::from_secs(1), || {
            format!("a request to another upstream waited {:?}", t.elapsed())
        })
    });
    c.check("another upstream's request is served meanwhile", r);

    let (mut answered, mut timed_out, mut other) = (0, 0, Vec::new());
    for s in sent {
        let (n, got) = s.await.unwrap();
        match &got {
            Ok((s, _)) if *s == StatusCode::OK => {
                answered += 1;
                saturated.ok.push(n);
            }
            _ => match error_answer(&got, 504, n) {
                Ok(()) => timed_out += 1,
                Err(e) => other.push(format!("request {n}: {e}")),
            },
        }
    }
    c.check(
        "every request answered 200, or 504 with a short reason and nothing raw",
        ensure(other.is_empty(), || other.join("; ")),
    );
    c.check(
        "the requests the queue could carry within the timeout were answered 200",
        ensure(answered >= 2 * CAP, || {
            format!("{answered} answered 200, {timed_out} timed out")
        }),
    );
    c.check(
        "those past the timeout were answered 504",
        ensure(timed_out > 0, || {
            format!("none timed out: {answered} answered 200")
        }),
    );
    let most = most.load(Ordering::SeqCst);
    c.check(
        "the slow upstream never held more than max_connections requests",
        ensure(most == CAP as u64, || format!("it held {most} at once")),
    );
    c.check(
        "every request answered 2xx reached the slow upstream once, rewritten",
        saturated.none_lost(&bad).await,
    );
    c.check(
        "the next valid request is served",
        ledger.serves(&client, proxy.addr, &up).await,
    );
    proxy.stop().await;
    c.finish_with(json!({
        "clients": CLIENTS,
        "max_connections": CAP,
        "answered_200": answered,
        "answered_504": timed_out,
        "most_at_once_upstream": most,
    }));
}

// === clients that stop reading their response ===============================

/// A raw client that sends `GET path`, reads `read_first` bytes (0:
/// nothing) and no more. Its receive buffer is the system's (a small one
/// would make draining it afterwards, to see the connection end, take
/// minutes of zero-window probes).
async fn stalled_client(addr: SocketAddr, path: &str, read_first: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = vec![0u8; read_first];
    let _ = tokio::time::timeout(WAIT, s.read_exact(&mut got)).await;
    s
}

/// Whether `s` is closed by the peer within `limit`: reading what it was
/// sent ends in EOF or a reset.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Res {
    let mut sink = vec![0u8; 1 << 20];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    ensure(closed.is_ok(), || format!("still open after {limit:?}"))
}

/// Waits until `reached` requests for `/endless` have reached the upstream
/// (so the stalled one held the one connection) and that connection has
/// been let go: nothing is read meanwhile, as reading would unstall it.
async fn held_then_freed(up: &ps::Upstream, proxy: &Proxy, reached: usize) -> Res {
    let busy = "scrim_upstream_busy{upstream=\"up\"}";
    let t = Instant::now();
    loop {
        let got = up
            .requests()
            .iter()
            .filter(|r| r.path_and_query.ends_with("/endless"))
            .count();
        let m = proxy.metrics();
        if got >= reached && crate::operations::sample(&m, busy) == Some(0.0) {
            return Ok(());
        }
        if t.elapsed() > Duration::from_secs(5) {
            return Err(format!("after 5 s: {got} of {reached} reached; {m}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading() {
    let mut c = Cases::new(
        "Faults",
        "clients that stop reading their response (send timeout 400 ms, 1 upstream connection)",
    );
    let up = ps::endless_upstream().await;
    let routes = "[[route]]\npath_prefix = \"/pass/\"\nupstream = \"up\"\npass_through = true\n";
    let cfg = format!(
        "[[listener]]\naddr = \"127.0.0.1:0\"\n\n[limits]\nsend_timeout_ms = 400\n\n\
         [upstream.up]\nurl = \"{}\"\nmax_connections = 1\nresponse_timeout_ms = 5000\n\n{routes}",
        up.url()
    );
    let proxy = Proxy::start(ps::tempdir(), &cfg).await;
    let client = ps::h1_client();
    let next_is_served = |what: &'static str| {
        let (client, url) = (client.clone(), proxy.url("/pass/small"));
        async move {
            let t = Instant::now();
            let get = Request::get(url).body(ps::empty()).unwrap();
            let r = ps::send(&client, get).await;
            ensure(r.status == StatusCode::OK, || {
                format!("{what}: answered {}", r.status)
            })?;
            ensure(t.elapsed() < Duration::from_secs(3), || {
                format!(
                    "{what}: waited {:?} for the upstream connection",
                    t.elapsed()
                )
            })
        }
    };

    // An endless body its client never reads, and one its client reads
    // 1 MiB of, then stops.
    let mut endless_reached = 0;
    for (read_first, what) in [
        (0, "an endless body, never read"),
        (1 << 20, "an endless body, read 1 MiB then stopped"),
    ] {
        let mut s = stalled_client(proxy.addr, "/pass/endless", read_first).await;
        endless_reached += 1;
        c.check(
            &format!("{what}: the upstream connection is let go"),
            held_then_freed(&up, &proxy, endless_reached).await,
        );
        c.check(
            &format!("{what}: the client's connection is closed"),
            closed_within(&mut s, Duration::from_secs(5)).await,
        );
        c.check(
            &format!("{what}: the next request gets the upstream connection"),
            next_is_served(what).await,
        );
    }

    // An h2 stream whose window stays shut while its connection flows: the
    // socket's timeout cannot see it, the stream's watchdog does.
    let (mut h2, open_window) = ps::h2_shut_window_client(proxy.addr).await;
    let what = "an h2 stream behind a shut window";
    let get = Request::get(proxy.url("/pass/endless")).body(()).unwrap();
    let (response, _) = h2.send_request(get, true).unwrap();
    let head = ps::within("the h2 stream's head", WAIT, response).await;
    c.check(
        &format!("{what}: the upstream connection is let go"),
        held_then_freed(&up, &proxy, endless_reached + 1).await,
    );
    c.check(
        &format!("{what}: the next request gets the upstream connection"),
        next_is_served(what).await,
    );
    // Once its window opens, the stream ends in a reset, not as a short
    // body passed off as the whole response.
    let _ = open_window.send(());
    let reset = async {
        let mut body = head.map_err(|e| e.to_string())?.into_body();
        let end = tokio::time::timeout(Duration::from_secs(5), ps::h2_stream_end(&mut body))
            .await
            .map_err(|_| "still open 5 s after its window opened".to_string())?;
        ensure(end.is_err(), || "ended as a whole response".to_string())
    };
    c.check(&format!("{what}: the stream is reset"), reset.await);

    // A client that reads slowly but keeps reading gets the whole body,
    // however long that takes in all.
    let get = Request::get(proxy.url("/pass/big"))
        .body(ps::empty())
        .unwrap();
    let slow = async {
        let res = client.request(get).await.map_err(|e| e.to_string())?;
        let mut body = res.into_body();
        let (t, mut got) = (Instant::now(), 0);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("after {got} bytes: {e}"))?;
            got += frame.data_ref().map_or(0, Bytes::len);
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        ensure(got == ps::BIG, || format!("{got} of {} bytes", ps::BIG))?;
        ensure(t.elapsed() > Duration::from_millis(400), || {
            format!("read in {:?}, not slower than the timeout", t.elapsed())
        })
    };
    c.check(
        "a slow reader that keeps reading gets all 2 MiB",
        ps::within("the slow reader", WAIT, slow).await,
    );
    c.check("the proxy still serves", next_is_served("afterwards").await);
    let m = proxy.metrics();
    let cut = crate::operations::sample(&m, "scrim_send_timeouts_total");
    c.check(
        "scrim_send_timeouts_total counts the three cut off, not the slow reader",
        ensure(cut == Some(3.0), || format!("{cut:?}")),
    );
    proxy.stop().await;
    c.finish();
}

// === the client disconnecting mid-stream ======================================

const LINE_1: &str = "{\"n\":1,\"email\":\"Stream.One@Example.org\",\"name\":\"Raw Name\"}\n";
const LINE_2: &str = "{\"n\":2,\"email\":\"Stream.Two@Example.org\",\"name\":\"Raw Name\"}\n";
const HALF: &str = "{\"n\":3,\"email\":\"Half.Line@Example.org\",\"na";
const STREAM_RAW: &[&str] = &[
    "stream.one@example.org",
    "stream.two@example.org",
    "half.line@example.org",
    "raw name",
];

/// Waits until `up` holds `count` requests and the last one's body holds
/// `lines` newlines; returns its index.
async fn upstream_lines(up: &Upstream, count: usize, lines: usize) -> Result<usize, String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let reqs = up.requests();
        if reqs.len() >= count
            && reqs[count - 1].body.iter().filter(|b| **b == b'\n').count() >= lines
        {
            return Ok(count - 1);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the upstream never got {lines} lines of request {count}: {:?}",
                reqs.get(count - 1)
                    .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Request `idx` ended aborted (never complete) and carried only rewritten
/// lines, and no more than `lines` of them.
async fn aborted_clean(up: &Upstream, idx: usize, lines: usize) -> Res {
    let deadline = Instant::now() + WAIT;
    let rec = loop {
        let r = up.requests()[idx].clone();
        if r.complete || r.aborted {
            break r;
        }
        if Instant::now() > deadline {
            return Err("the upstream's body neither ended nor aborted".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    ensure(rec.aborted && !rec.complete, || {
        format!(
            "the upstream saw a completed body: {}",
            String::from_utf8_lossy(&rec.body)
        )
    })?;
    let all = rec.everything().to_lowercase();
    for raw in STREAM_RAW {
        ensure(!all.contains(raw), || {
            format!("{raw:?} reached the upstream: {all}")
        })?;
    }
    let body = String::from_utf8_lossy(&rec.body).into_owned();
    ensure(
        body.lines().count() <= lines
            && body.lines().all(|l| {
                serde_json::from_str::<Value>(l).is_ok_and(|v| {
                    v["email"]
                        .as_str()
                        .is_some_and(|e| e.ends_with("@pseudonym.invalid"))
                })
            }),
        || format!("the upstream got more than {lines} rewritten lines: {body}"),
    )
}

#[derive(Clone, Copy)]
enum Cut {
    Fin,
    Rst,
}

/// A raw HTTP/1.1 client streams `first` (whole NDJSON lines), waits until
/// the upstream has them, sends `then`, and cuts the connection.
async fn raw_stream_cut(
    proxy: SocketAddr,
    up: &Upstream,
    chunked: bool,
    then: &str,
    cut: Cut,
) -> Res {
    let count = up.requests().len() + 1;
    let mut s = ps::raw_connect(proxy).await;
    let framing = if chunked {
        "transfer-encoding: chunked".to_owned()
    } else {
        format!("content-length: {}", 10_000)
    };
    let head = format!(
        "POST /stream/batch HTTP/1.1\r\nhost: scrim\r\ncontent-type: application/x-ndjson\r\n\
         {framing}\r\n\r\n"
    );
    let first = format!("{LINE_1}{LINE_2}");
    let frame = |t: &str| if chunked { ps::chunk(t) } else { t.to_owned() };
    s.write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(frame(&first).as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let idx = upstream_lines(up, count, 2).await?;
    if !then.is_empty() {
        s.write_all(frame(then).as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        s.flush().await.map_err(|e| e.to_string())?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match cut {
        Cut::Fin => {
            let _ = s.shutdown().await;
            drop(s);
        }
        Cut::Rst => {
            let _ = s.set_zero_linger();
            drop(s);
        }
    }
    aborted_clean(up, idx, 2).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnecting_mid_stream() {
    let mut c = Cases::new("Faults", "client disconnecting mid-stream");
    let up = Upstream::start(ps::ok_responder()).await;
    let stream_up = Upstream::start(ps::ok_responder()).await;
    let proxy = Proxy::start(
        ps::tempdir(),
        &format!(
            "[[listener]]\naddr = \"127.0.0.1:0\"\n\n\
             [upstream.up]\nurl = \"{}\"\n\n[upstream.st]\nurl = \"{}\"\n\n{}{}",
            up.url(),
            stream_up.url(),
            route_to("/ok/", "up", ""),
            route_to("/stream/", "st", "")
        ),
    )
    .await;
    let h1 = ps::h1_client();
    let mut ledger = Ledger::default();

    for (name, chunked, then, cut) in [
        (
            "chunked NDJSON, FIN in the middle of a line",
            true,
            HALF,
            Cut::Fin,
        ),
        (
            "chunked NDJSON, RST in the middle of a line",
            true,
            HALF,
            Cut::Rst,
        ),
        (
            "chunked NDJSON, FIN after whole lines, no last chunk",
            true,
            "",
            Cut::Fin,
        ),
        (
            "NDJSON with a Content-Length, FIN short of it",
            false,
            HALF,
            Cut::Fin,
        ),
        (
            "NDJSON with a Content-Length, RST short of it",
            false,
            HALF,
            Cut::Rst,
        ),
    ] {
        c.check(
            &format!("{name}: the upstream sees an aborted body, only rewritten lines"),
            raw_stream_cut(proxy.addr, &stream_up, chunked, then, cut).await,
        );
        c.check(
            &format!("{name}: scrim serves the next request"),
            ledger.serves(&h1, proxy.addr, &up).await,
        );
    }

    // HTTP/2: the client resets its stream (the body ends with an error).
    let r = async {
        let count = stream_up.requests().len() + 1;
        let (tx, body) = ps::channel_body();
        let req = ps::post(
            &format!("http://{}/stream/batch", proxy.addr),
            "application/x-ndjson",
            body,
        );
        let client = ps::h2c_client();
        let pending = tokio::spawn(async move { try_send(&client, req).await });
        tx.send(Ok(Bytes::from(format!("{LINE_1}{LINE_2}"))))
            .await
            .map_err(|e| e.to_string())?;
        let idx = upstream_lines(&stream_up, count, 2).await?;
        let _ = tx.send(Ok(Bytes::from_static(HALF.as_bytes()))).await;
        let _ = tx.send(Err("the client gives up".into())).await;
        drop(tx);
        let _ = pending.await;
        aborted_clean(&stream_up, idx, 2).await
    }
    .await;
    c.check(
        "h2c: the client resets its stream mid-line: the upstream sees an aborted body",
        r,
    );
    c.check(
        "h2c reset: scrim serves the next request",
        ledger.serves(&h1, proxy.addr, &up).await,
    );

    // A buffered JSON body cut short never reaches the upstream at all.
    let r = async {
        let before = up.requests().len();
        let mut s = ps::raw_connect(proxy.addr).await;
        let body = String::from_utf8(event(999)).unwrap();
        let head = format!(
            "POST /ok/e HTTP/1.1\r\nhost: scrim\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{}",
            body.len(),
            &body[..body.len() / 2]
        );
        s.write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        s.shutdown().await.map_err(|e| e.to_string())?;
        drop(s);
        tokio::time::sleep(Duration::from_millis(200)).await;
        ensure(up.requests().len() == before, || {
            "half a JSON body was forwarded".into()
        })
    }
    .await;
    c.check(
        "JSON with a Content-Length, FIN halfway: nothing forwarded",
        r,
    );

    // And a whole stream still goes through.
    let r = async {
        let count = stream_up.requests().len() + 1;
        let req = ps::post(
            &format!("http://{}/stream/batch", proxy.addr),
            "application/x-ndjson",
            ps::full(format!("{LINE_1}{LINE_2}")),
        );
        let (s, _) = try_send(&h1, req).await?;
        ensure(s == StatusCode::OK, || format!("a whole stream got {s}"))?;
        upstream_lines(&stream_up, count, 2).await?;
        let rec = stream_up.requests()[count - 1].clone();
        ensure(rec.complete, || "the whole stream did not complete".into())
    }
    .await;
    c.check(
        "a whole NDJSON stream afterwards: 200, complete upstream",
        r,
    );
    c.check(
        "every request answered 2xx reached the upstream once, rewritten",
        ledger.none_lost(&up).await,
    );
    proxy.stop().await;
    c.finish();
}

// === the ring's disk full or read-only during a rotation =====================

fn ring_state(ring: &Path) -> Result<Vec<(u32, State)>, String> {
    KeyRing::load(ring, &kek())
        .map(|r| r.versions().iter().map(|v| (v.id, v.state)).collect())
        .map_err(|e| format!("the ring does not load: {e}"))
}

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains(".tmp."))
        .collect()
}

/// The admin call was refused with 500 and a short reason naming `cause`.
fn refused(r: &ps::Reply, cause: &str) -> Res {
    let text = r.text();
    ensure(r.status == StatusCode::INTERNAL_SERVER_ERROR, || {
        format!("expected 500, got {}: {text}", r.status)
    })?;
    let v: Value = serde_json::from_slice(&r.body).map_err(|e| format!("{e}: {text}"))?;
    let reason = v["reason"].as_str().unwrap_or_default();
    ensure(
        reason.contains(cause) && reason.contains("not changed") && reason.len() < 200,
        || format!("the reason does not say {cause:?} and not changed, briefly: {text}"),
    )
}

/// The email token's version for one request through `/`.
async fn served_version(
    client: &HttpClient,
    proxy: SocketAddr,
    up: &Upstream,
    n: u64,
) -> Result<u32, String> {
    let before = up.requests().len();
    let (s, body) = send_event(client, proxy, "/e", n).await?;
    ensure(s == StatusCode::OK, || {
        format!("{s}: {}", String::from_utf8_lossy(&body))
    })?;
    delivered(up, &[n]).await?;
    let reqs = up.requests();
    let v: Value = serde_json::from_slice(&reqs[before].body).map_err(|e| e.to_string())?;
    let email = v["email"].as_str().unwrap_or_default();
    scrim::pseudo::token::version_of(email.split('@').next().unwrap_or_default())
        .ok_or_else(|| format!("not a keyed token: {email}"))
}

struct Immutable<'a>(&'a Path);

impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_disk_full_or_read_only_during_a_rotation() {
    let mut c = Cases::new(
        "Faults",
        "key ring's disk full or read-only during a rotation",
    );
    let up = Upstream::start(ps::ok_responder()).await;
    let dir = ps::tempdir();
    let ring_dir = dir.path().join("keys");
    std::fs::create_dir(&ring_dir).unwrap();
    let ring = init_ring(&ring_dir);
    let audit = dir.path().join("audit.log");
    let cfg = config(
        "127.0.0.1:0",
        &up.url(),
        &ring,
        "",
        &crate::keyring::route("/", &event_rules()),
        Some(("127.0.0.1:0", &audit)),
    );
    let running = start_scrim(dir.path(), &cfg).await;
    let (proxy, admin) = (running.addrs[0], running.admin_addr.unwrap());
    let client = ps::h1_client();
    let sec = bearer(SECURITY_TOKEN);
    let mut n = 0u64;
    let mut next = || {
        n += 1;
        n
    };
    // This process writes the ring: its temporary file is `ring.json.tmp.<pid>`.
    let temp = ring_dir.join(format!("ring.json.tmp.{}", std::process::id()));

    // One failed operation: refused with `cause`, ring byte-identical, no
    // temporary file left, scrim still serving with `version`.
    let after_failure = |r: ps::Reply, before: Vec<u8>, cause: &'static str| {
        let ring = ring.clone();
        let ring_dir = ring_dir.clone();
        async move {
            refused(&r, cause)?;
            ensure(std::fs::read(&ring).unwrap() == before, || {
                "the ring file changed".into()
            })?;
            ring_state(&ring)?;
            let left = temp_files(&ring_dir);
            ensure(left.is_empty(), || {
                format!("temporary files left: {left:?}")
            })
        }
    };

    // 1. Disk full (real ENOSPC from /dev/full) during a rotation.
    std::os::unix::fs::symlink("/dev/full", &temp).unwrap();
    let before = std::fs::read(&ring).unwrap();
    let r = admin_call(
        &client,
        admin,
        Method::POST,
        "/keys/rotate",
        Some(&sec),
        None,
    )
    .await;
    let mut res = after_failure(r, before, "No space left on device").await;
    if res.is_ok() {
        res = served_version(&client, proxy, &up, next())
            .await
            .and_then(|v| ensure(v == 1, || format!("served with version {v}, not 1")));
    }
    let _ = std::fs::remove_file(&temp);
    c.check(
        "disk full (ENOSPC) during a rotation: 500, ring unchanged, still serving v1",
        res,
    );

    // Disk fixed: the rotation works.
    let r = admin_call(
        &client,
        admin,
        Method::POST,
        "/keys/rotate",
        Some(&sec),
        None,
    )
    .await;
    let res = ensure(r.status == StatusCode::OK, || {
        format!("{}: {}", r.status, r.text())
    })
    .and_then(|_| ring_state(&ring))
    .and_then(|s| {
        ensure(s == vec![(1, State::Previous), (2, State::Active)], || {
            format!("ring after the rotation: {s:?}")
        })
    });
    let res = match res {
        Ok(()) => served_version(&client, proxy, &up, next())
            .await
            .and_then(|v| ensure(v == 2, || format!("served with version {v}, not 2"))),
        e => e,
    };
    c.check(
        "disk freed: the next rotation works and scrim serves v2",
        res,
    );

    // 2. Disk full during a retirement.
    std::os::unix::fs::symlink("/dev/full", &temp).unwrap();
    let before = std::fs::read(&ring).unwrap();
    let r = admin_call(
        &client,
        admin,
        Method::POST,
        "/keys/1/retire",
        Some(&sec),
        None,
    )
    .await;
    let mut res = after_failure(r, before, "No space left on device").await;
    if res.is_ok() {
        res = served_version(&client, proxy, &up, next())
            .await
            .and_then(|v| ensure(v == 2, || format!("served with version {v}")));
    }
    let _ = std::fs::remove_file(&temp);
    c.check(
        "disk full during a retirement: 500, ring unchanged, still serving",
        res,
    );

    // 3. Read-only: the ring's directory immutable (real, EPERM).
    let chattr = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&ring_dir)
        .stderr(Stdio::null())
        .status();
    let guard = Immutable(&ring_dir);
    let res = if !chattr.is_ok_and(|s| s.success()) {
        Err("chattr +i failed on the ring's directory (needs root and a file system with attributes)".into())
    } else {
        let before = std::fs::read(&ring).unwrap();
        let r = admin_call(
            &client,
            admin,
            Method::POST,
            "/keys/rotate",
            Some(&sec),
            None,
        )
        .await;
        let mut res = after_failure(r, before.clone(), "Operation not permitted").await;
        if res.is_ok() {
            res = served_version(&client, proxy, &up, next())
                .await
                .and_then(|v| ensure(v == 2, || format!("served with version {v}")));
        }
        // The CLI refuses the same way, and changes nothing.
        if res.is_ok() {
            let out = run_bounded(
                scrim_cmd(&kek_hex())
                    .args(["keys", "rotate", "--ring"])
                    .arg(&ring),
                REFUSAL_TIMEOUT,
            );
            res = ensure(
                out.status.code() == Some(1)
                    && out.stderr.contains("Operation not permitted")
                    && std::fs::read(&ring).unwrap() == before,
                || format!("`scrim keys rotate`: {:?} {}", out.status, out.stderr),
            );
        }
        res
    };
    drop(guard);
    c.check(
        "read-only directory (chattr +i, EPERM) during a rotation: 500 and CLI exit 1, ring unchanged, still serving",
        res,
    );
    let r = admin_call(
        &client,
        admin,
        Method::POST,
        "/keys/rotate",
        Some(&sec),
        None,
    )
    .await;
    let res = ensure(r.status == StatusCode::OK, || {
        format!("{}: {}", r.status, r.text())
    })
    .and_then(|_| ring_state(&ring))
    .and_then(|s| {
        ensure(s.len() == 3 && s[2] == (3, State::Active), || {
            format!("{s:?}")
        })
    });
    c.check("directory writable again: the next rotation works", res);
    ps::within("scrim to stop", WAIT, running.stop()).await;

    // 4. Read-only file system (EROFS, injected): a `scrim run` process whose
    // ring writes fail; a replica without the fault rotates, and the faulty
    // one follows (reads still work).
    let res = erofs_replicas(&up, dir.path(), &ring).await;
    c.check(
        "read-only file system (EROFS, injected) in one replica: 500, ring unchanged, it serves and follows a rotation made elsewhere",
        res,
    );
    c.finish();
}

async fn erofs_replicas(up: &Upstream, dir: &Path, ring: &Path) -> Res {
    let ports = crate::keyring::free_ports(4);
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let routes = crate::keyring::route("/", &event_rules());
    let cfg = |l: u16, a: u16, name: &str| {
        config(
            &addr(l).to_string(),
            &up.url(),
            ring,
            "",
            &routes,
            Some((&addr(a).to_string(), &dir.join(format!("{name}-audit.log")))),
        )
    };
    let client = ps::h1_client();
    let sec = bearer(SECURITY_TOKEN);
    // The faulty replica: spawned like `spawn_scrim`, with the fail point.
    let path = dir.join("erofs.toml");
    std::fs::write(&path, cfg(ports[0], ports[1], "erofs")).unwrap();
    let log = dir.join("erofs.log");
    let child = scrim_cmd(&kek_hex())
        .args(["run", "--drain-secs", "0", "-c"])
        .arg(&path)
        .env("SCRIM_FAIL_POINT", "temp-create-erofs")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut faulty = ChildGuard { child, stderr: log };
    let mut healthy = spawn_scrim(dir, "healthy", &cfg(ports[2], ports[3], "healthy"));
    crate::keyring::wait_ready(&client, &mut faulty, addr(ports[1]), "the faulty replica").await;
    crate::keyring::wait_ready(&client, &mut healthy, addr(ports[3]), "the healthy replica").await;
    let start = ring_state(ring)?;
    let active = start.iter().find(|v| v.1 == State::Active).unwrap().0;

    let before = std::fs::read(ring).unwrap();
    let r = admin_call(
        &client,
        addr(ports[1]),
        Method::POST,
        "/keys/rotate",
        Some(&sec),
        None,
    )
    .await;
    refused(&r, "Read-only file system")?;
    ensure(std::fs::read(ring).unwrap() == before, || {
        "the ring changed".into()
    })?;
    let v = served_version(&client, addr(ports[0]), up, 10_001).await?;
    ensure(v == active, || {
        format!("the faulty replica serves v{v}, not v{active}")
    })?;

    let r = admin_call(
        &client,
        addr(ports[3]),
        Method::POST,
        "/keys/rotate",
        Some(&sec),
        None,
    )
    .await;
    ensure(r.status == StatusCode::OK, || {
        format!("the healthy replica's rotation: {}", r.text())
    })?;
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut n = 10_002;
    loop {
        faulty.assert_running("the faulty replica");
        let v = served_version(&client, addr(ports[0]), up, n).await?;
        if v == active + 1 {
            break;
        }
        ensure(Instant::now() < deadline, || {
            format!("the faulty replica still serves v{v} 3 s after the rotation")
        })?;
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ring_state(ring).map(|_| ())
}

// === SIGKILL during a rotation, then restart ==================================

const FIXED_EMAIL: &str = "Fixed.Subject@Example.org";

async fn ready(client: &HttpClient, p: &mut ChildGuard, admin: SocketAddr) -> Res {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(Some(status)) = p.child.try_wait() {
            return Err(format!("scrim exited ({status}): {}", p.stderr_text()));
        }
        let req = Request::get(format!("http://{admin}/readyz"))
            .body(ps::empty())
            .unwrap();
        if let Ok(Ok(res)) = tokio::time::timeout(Duration::from_secs(1), client.request(req)).await
        {
            if res.status() == StatusCode::OK {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("not ready within {WAIT:?}: {}", p.stderr_text()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// version -> the token of [`FIXED_EMAIL`] under it, from every request the
/// upstream received; an error if one version gave two tokens.
fn tokens_by_version(up: &Upstream) -> Result<BTreeMap<u32, String>, String> {
    let mut map: BTreeMap<u32, String> = BTreeMap::new();
    for r in up.requests().iter().filter(|r| r.complete) {
        let Ok(v) = serde_json::from_slice::<Value>(&r.body) else {
            continue;
        };
        if v["fixed"] != json!(true) {
            continue;
        }
        let email = v["email"].as_str().unwrap_or_default().to_owned();
        let local = email.split('@').next().unwrap_or_default();
        let Some(ver) = scrim::pseudo::token::version_of(local) else {
            return Err(format!("not a keyed token: {email}"));
        };
        if let Some(prev) = map.insert(ver, email.clone()) {
            if prev != email {
                return Err(format!("version {ver} gave two tokens: {prev} and {email}"));
            }
        }
    }
    Ok(map)
}

fn fixed_event(n: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({"n": n, "email": FIXED_EMAIL, "fixed": true})).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_rotation_then_restart() {
    let mut c = Cases::new(
        "Faults",
        "scrim killed with SIGKILL during rotations, then restarted",
    );
    // Every request is about one subject (`fixed` marks them, `n` counts),
    // so each version's token for it can be compared across restarts.
    let up = Upstream::start(ps::ok_responder()).await;
    let dir = ps::tempdir();
    let ring = init_ring(dir.path());
    let routes = crate::keyring::route("/", &event_rules().replace(
        "[[rule]]\nid = \"n\"",
        "[[rule]]\nid = \"fixed\"\nfield = \"fixed\"\naction = \"keep\"\n\n[[rule]]\nid = \"n\"",
    ));
    let client = ps::h1_client();
    let counter = Arc::new(AtomicU64::new(0));
    let ok: Arc<Mutex<Vec<u64>>> = Arc::default();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut highest_acked = 1u64;
    let mut last_active = 1u32;
    const ROUNDS: usize = 6;
    for round in 0..=ROUNDS {
        let ports = crate::keyring::free_ports(2);
        let (proxy, admin) = (
            SocketAddr::from(([127, 0, 0, 1], ports[0])),
            SocketAddr::from(([127, 0, 0, 1], ports[1])),
        );
        let cfg = config(
            &proxy.to_string(),
            &up.url(),
            &ring,
            "",
            &routes,
            Some((&admin.to_string(), &dir.path().join("audit.log"))),
        );
        let mut p = spawn_scrim(dir.path(), &format!("round-{round}"), &cfg);
        // Restarted on the ring the last kill left: it loads, its active
        // version is the newest, and old tokens are unchanged.
        let restart = async {
            ready(&client, &mut p, admin).await?;
            let state = ring_state(&ring)?;
            let ids: Vec<u32> = state.iter().map(|v| v.0).collect();
            let active = state.iter().filter(|v| v.1 == State::Active).count();
            let top = *ids.last().unwrap();
            ensure(
                ids == (1..=top).collect::<Vec<_>>()
                    && active == 1
                    && state.last().unwrap().1 == State::Active,
                || format!("versions not monotonic or not one active: {state:?}"),
            )?;
            ensure(top >= last_active && top as u64 >= highest_acked, || {
                format!("active v{top} after v{last_active} and an acknowledged v{highest_acked}")
            })?;
            last_active = top;
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1_000_000;
            let req = ps::post(
                &format!("http://{proxy}/e"),
                "application/json",
                ps::full(fixed_event(n)),
            );
            let (s, _) = try_send(&client, req).await?;
            ensure(s == StatusCode::OK, || format!("after the restart: {s}"))?;
            ok.lock().unwrap().push(n);
            delivered_fixed(&up, &[n]).await?;
            let map = tokens_by_version(&up)?;
            ensure(map.contains_key(&top), || {
                format!("no token under v{top}: {map:?}")
            })
        }
        .await;
        let label = if round == 0 {
            "first start".to_owned()
        } else {
            format!("restart {round}")
        };
        c.check(
            &format!("{label}: the ring loads (MAC valid), versions monotonic, one active, it serves, tokens per version unchanged"),
            restart,
        );
        if round == ROUNDS {
            // The last restart also rotates.
            let r = admin_call(
                &client,
                admin,
                Method::POST,
                "/keys/rotate",
                Some(&bearer(SECURITY_TOKEN)),
                None,
            )
            .await;
            c.check(
                "after the last restart a rotation works",
                ensure(r.status == StatusCode::OK, || {
                    format!("{}: {}", r.status, r.text())
                }),
            );
            break;
        }

        // Rotations back to back, traffic alongside, then SIGKILL.
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
        let rotator = {
            let (stop, acked, client) = (stop.clone(), acked.clone(), client.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let req = Request::post(format!("http://{admin}/keys/rotate"))
                        .header("authorization", bearer(SECURITY_TOKEN))
                        .body(ps::empty())
                        .unwrap();
                    match try_send(&client, req).await {
                        Ok((s, b)) if s == StatusCode::OK => {
                            let v: Value = serde_json::from_slice(&b).unwrap_or_default();
                            if let Some(a) = v["active"].as_u64() {
                                acked.lock().unwrap().push(a);
                            }
                        }
                        _ => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
            })
        };
        let mut senders = Vec::new();
        for _ in 0..2 {
            let (stop, ok, client, counter) =
                (stop.clone(), ok.clone(), client.clone(), counter.clone());
            senders.push(tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1_000_000;
                    let req = ps::post(
                        &format!("http://{proxy}/e"),
                        "application/json",
                        ps::full(fixed_event(n)),
                    );
                    match try_send(&client, req).await {
                        Ok((s, _)) if s.is_success() => ok.lock().unwrap().push(n),
                        _ => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
            }));
        }
        // At least one rotation is through, then a random point among the
        // ones that follow.
        let deadline = Instant::now() + WAIT;
        while acked.lock().unwrap().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let delay = Duration::from_millis(rand() % 700);
        tokio::time::sleep(delay).await;
        let _ = p.child.kill(); // SIGKILL
        let _ = p.child.wait();
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.store(true, Ordering::SeqCst);
        let _ = rotator.await;
        for s in senders {
            let _ = s.await;
        }
        let acked = acked.lock().unwrap().clone();
        highest_acked = highest_acked.max(acked.iter().copied().max().unwrap_or(0));
        let res = async {
            let state = ring_state(&ring)?;
            let top = state.last().map(|v| v.0).unwrap_or(0);
            ensure(top as u64 >= highest_acked, || {
                format!("an acknowledged rotation to v{highest_acked} was lost: the ring ends at v{top}")
            })?;
            ensure(!acked.is_empty(), || "no rotation ran before the kill".into())?;
            let sent = ok.lock().unwrap().clone();
            delivered_fixed(&up, &sent).await?;
            tokens_by_version(&up).map(|_| ())
        }
        .await;
        c.check(
            &format!(
                "kill {}: SIGKILL {} ms after the first of back-to-back rotations ({} acknowledged): ring intact, no acknowledged rotation or 2xx request lost",
                round + 1,
                delay.as_millis(),
                acked.len()
            ),
            res,
        );
    }
    c.finish();
}

/// Like [`delivered`], for the fixed-subject events.
async fn delivered_fixed(up: &Upstream, ns: &[u64]) -> Res {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut seen: HashMap<u64, usize> = HashMap::new();
        for r in up.requests().iter().filter(|r| r.complete) {
            let text = String::from_utf8_lossy(&r.body).to_lowercase();
            if text.contains("fixed.subject@example.org") {
                return Err(format!("the raw email reached the upstream: {text}"));
            }
            if let Ok(v) = serde_json::from_slice::<Value>(&r.body) {
                if let Some(n) = v["n"].as_u64() {
                    *seen.entry(n).or_default() += 1;
                }
            }
        }
        let missing: Vec<u64> = ns
            .iter()
            .copied()
            .filter(|n| seen.get(n) != Some(&1))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "answered 2xx, not delivered exactly once: {missing:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// === the upstream stalling mid-body ==========================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_stalling_mid_body() {
    let mut c = Cases::new(
        "Faults",
        "upstream stalling mid-body (head sent, then silence)",
    );
    const TIMEOUT: Duration = Duration::from_millis(500);
    let body = big_body();
    let b = body.clone();
    // `/bad/`: the head and half the body at once, then nothing, for good.
    let responder: Responder = Arc::new(move |rec| {
        let body = b.clone();
        Box::pin(async move {
            if !rec.path_and_query.starts_with("/bad/") {
                return ps::json_response(StatusCode::OK, r#"{"ok":true}"#);
            }
            let (tx, stream) = ps::channel_body();
            tokio::spawn(async move {
                let half = Bytes::from(body).slice(..PROMISED / 2);
                let _ = tx.send(Ok(half)).await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(tx);
            });
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .header("content-length", PROMISED.to_string())
                .body(stream)
                .unwrap()
        })
    });
    let up = Upstream::start(responder).await;
    let proxy = Proxy::start(
        ps::tempdir(),
        &two_upstreams(
            &up.url(),
            &up.url(),
            &format!("response_timeout_ms = {}", TIMEOUT.as_millis()),
            "",
        ),
    )
    .await;
    let (h1, h2) = (ps::h1_client(), ps::h2c_client());
    let mut ledger = Ledger::default();
    for (name, client) in [("HTTP/1.1", &h1), ("h2c", &h2), ("HTTP/1.1 again", &h1)] {
        let n = ledger.next();
        let t = Instant::now();
        let got = send_event(client, proxy.addr, "/bad/e", n).await;
        let took = t.elapsed();
        let r = truncation_signalled(&got).and_then(|_| {
            ensure(took < TIMEOUT + Duration::from_secs(3), || {
                format!("the stalled response held the client {took:?}")
            })
        });
        c.check(&format!("{name}: cut after the idle timeout"), r);
        c.check(
            &format!("{name}: then served"),
            ledger.serves(&h1, proxy.addr, &up).await,
        );
    }
    c.check("every 2xx delivered", ledger.none_lost(&up).await);
    proxy.stop().await;
    c.finish();
}
