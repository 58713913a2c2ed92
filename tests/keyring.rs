//! The key ring end to end: rotation while traffic flows (no request lost,
//! tokens switch version at the rotation), two `scrim run` processes on one
//! ring, crash safety of the atomic write, refusal of every damaged ring
//! without touching it, no key material in `Debug` or errors, and scheduled
//! rotation and retirement. Also the shared helpers of `admin.rs`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use data_encoding::{BASE64, BASE64URL_NOPAD, BASE64_NOPAD, HEXLOWER, HEXUPPER};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use scrim::engine::spec::Kind;
use scrim::keyring::kek::Kek;
use scrim::keyring::ring::KeyRing;
use scrim::keyring::store::{self, RingFile, State, StoredVersion};
use scrim::keyring::{KeyError, KeyMaterial, KeyRingError};
use scrim::server::Running;
use scrim::snapshot::{Keys, Runtime};

use crate::proxy_support::{self as ps, HttpClient, Reply, Upstream, WAIT};

// === shared helpers (also used by admin.rs) =================================

/// The KEK of every test ring (32 bytes).
pub const KEK_BYTES: [u8; 32] = *b"keyring-tests-kek-0123456789abcd";
/// Some other KEK.
pub const OTHER_KEK_BYTES: [u8; 32] = *b"keyring-tests-kek-WRONG-WRONG-WR";

pub const SECURITY_TOKEN: &str = "security-token-7c1e0a5f";
pub const PRIVACY_TOKEN: &str = "privacy-token-93b2f4e1";
pub const OPERATOR_TOKEN: &str = "operator-token-4d8a61c7";

/// How long a `scrim` process that should refuse to start may take.
pub const REFUSAL_TIMEOUT: Duration = Duration::from_secs(10);

pub fn kek() -> Kek {
    Kek::from_bytes(KEK_BYTES)
}

pub fn kek_hex() -> String {
    HEXLOWER.encode(&KEK_BYTES)
}

/// A new ring (one active version) at `dir/ring.json`.
pub fn init_ring(dir: &Path) -> PathBuf {
    let p = dir.join("ring.json");
    KeyRing::init(&p, &kek()).expect("a new ring");
    p
}

pub fn sha256_hex(s: &str) -> String {
    HEXLOWER.encode(&Sha256::digest(s.as_bytes()))
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A rule file: `[purpose]` with this retention, then `body`.
pub fn rules(purpose: &str, recipient: &str, retention: &str, body: &str) -> String {
    format!(
        "[purpose]\nid = \"{purpose}\"\nlegal_basis = \"legitimate-interest\"\n\
         retention = \"{retention}\"\nrecipient = \"{recipient}\"\n\n{body}"
    )
}

/// `email` pseudonymised (default domain), `n` kept, everything else dropped.
pub const EMAIL_RULES: &str = "[[rule]]\nid = \"email\"\nfield = \"email\"\n\
     action = \"pseudonymise\"\nkind = \"email\"\n\n\
     [[rule]]\nid = \"n\"\nfield = \"n\"\naction = \"keep\"\n";

/// `note` encrypted under the rule id `secret-note`.
pub const NOTE_RULE: &str =
    "\n[[rule]]\nid = \"secret-note\"\nfield = \"note\"\naction = \"encrypt\"\n";

/// A `[[route]]` to upstream `up` under `prefix` with inline rules.
pub fn route(prefix: &str, rules: &str) -> String {
    format!(
        "[[route]]\npath_prefix = \"{prefix}\"\nupstream = \"up\"\n\
         inline_rules = '''\n{rules}\n'''\n\n"
    )
}

/// A whole config: one listener, the ring (reload every 100 ms, plus
/// `keys_extra`), upstream `up`, `routes`, and optionally the admin API with
/// one token per role (`sec-1`, `po-1`, `ops-1`).
pub fn config(
    listen: &str,
    upstream: &str,
    ring: &Path,
    keys_extra: &str,
    routes: &str,
    admin: Option<(&str, &Path)>,
) -> String {
    let mut c = format!(
        "[[listener]]\naddr = \"{listen}\"\n\n\
         [keys]\nring = {}\nreload_interval_ms = 100\n{keys_extra}\n\n\
         [upstream.up]\nurl = \"{upstream}\"\n\n{routes}",
        ps::toml_path(ring)
    );
    if let Some((addr, audit)) = admin {
        c.push_str(&format!(
            "[admin]\naddr = \"{addr}\"\naudit_log = {}\n\n\
             [[admin.token]]\nid = \"sec-1\"\nrole = \"security\"\nsha256 = \"{}\"\n\n\
             [[admin.token]]\nid = \"po-1\"\nrole = \"privacy-officer\"\nsha256 = \"{}\"\n\n\
             [[admin.token]]\nid = \"ops-1\"\nrole = \"operator\"\nsha256 = \"{}\"\n",
            ps::toml_path(audit),
            sha256_hex(SECURITY_TOKEN),
            sha256_hex(PRIVACY_TOKEN),
            sha256_hex(OPERATOR_TOKEN),
        ));
    }
    c
}

/// Writes `config` to `dir/scrim.toml` and starts scrim in this process on
/// the ring it names, with the test KEK.
pub async fn start_scrim(dir: &Path, config: &str) -> Running {
    let path = dir.join("scrim.toml");
    std::fs::write(&path, config).expect("write the config");
    let cfg = scrim::config::load(&path)
        .unwrap_or_else(|e| panic!("the test config is invalid:\n{e}\n---\n{config}"));
    let ring = cfg.keys.ring.clone().expect("the test config names a ring");
    let rt = Runtime::new(
        cfg,
        Keys::Ring {
            path: ring,
            kek: kek(),
        },
    )
    .unwrap_or_else(|e| panic!("the runtime did not start: {e}"));
    scrim::server::start_runtime(rt, Duration::from_millis(200))
        .await
        .unwrap_or_else(|e| panic!("scrim did not start: {e}"))
}

/// One admin call, read to the end.
pub async fn admin_call(
    client: &HttpClient,
    addr: SocketAddr,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(a) = authorization {
        b = b.header("authorization", a);
    }
    let body = match body {
        Some(v) => {
            b = b.header("content-type", "application/json");
            ps::full(serde_json::to_vec(v).expect("JSON serialises"))
        }
        None => ps::empty(),
    };
    ps::send(client, b.body(body).expect("a valid request")).await
}

/// `POST /keys/rotate` as security; returns the new active version.
pub async fn rotate_via_admin(client: &HttpClient, admin: SocketAddr) -> u64 {
    let r = admin_call(
        client,
        admin,
        Method::POST,
        "/keys/rotate",
        Some(&bearer(SECURITY_TOKEN)),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "rotate: {}", r.text());
    json_of(&r)["active"]
        .as_u64()
        .unwrap_or_else(|| panic!("rotate answered {}", r.text()))
}

pub fn json_of(r: &Reply) -> Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} {}", r.status, r.text()))
}

/// Sends `v` as JSON to `addr` + `path`; asserts 200.
pub async fn send_json(client: &HttpClient, addr: SocketAddr, path: &str, v: &Value) {
    let url = format!("http://{addr}{path}");
    let body = ps::full(serde_json::to_vec(v).expect("JSON serialises"));
    let r = ps::send(client, ps::post(&url, "application/json", body)).await;
    assert_eq!(r.status, StatusCode::OK, "proxy answered {}", r.text());
}

/// Waits until the upstream holds at least `n` requests, all complete; returns
/// their bodies in arrival order.
pub async fn upstream_bodies(up: &Upstream, n: usize) -> Vec<Vec<u8>> {
    ps::within("the upstream to receive the requests", WAIT, async {
        loop {
            let reqs = up.requests();
            if reqs.len() >= n && reqs.iter().all(|r| r.complete) {
                return reqs.into_iter().map(|r| r.body).collect();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// Sends `v` through scrim and returns the body the upstream received for it
/// (requests are sent one at a time).
pub async fn through(
    client: &HttpClient,
    up: &Upstream,
    proxy: SocketAddr,
    path: &str,
    v: &Value,
) -> Vec<u8> {
    let before = up.requests().len();
    send_json(client, proxy, path, v).await;
    let bodies = upstream_bodies(up, before + 1).await;
    assert_eq!(
        bodies.len(),
        before + 1,
        "one request, one upstream request"
    );
    bodies[before].clone()
}

pub fn parse(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "the upstream body is not JSON ({e}): {}",
            String::from_utf8_lossy(body)
        )
    })
}

/// The email token's local part and key version (`k<v>_...@pseudonym.invalid`).
pub fn email_token(v: &Value) -> (String, u32) {
    let email = v["email"]
        .as_str()
        .unwrap_or_else(|| panic!("no email in {v}"));
    let (local, domain) = email
        .split_once('@')
        .unwrap_or_else(|| panic!("not an email token: {email}"));
    assert_eq!(domain, "pseudonym.invalid", "in {email}");
    let version = scrim::pseudo::token::version_of(local)
        .unwrap_or_else(|| panic!("not a keyed token: {email}"));
    (local.to_owned(), version)
}

/// Every text form a secret could take in a log line: hex, base64 (padded,
/// unpadded, URL-safe), their first 16 characters, and `{:?}` of its bytes.
pub fn secret_forms(secret: &[u8]) -> Vec<String> {
    let mut forms = Vec::new();
    for full in [
        HEXLOWER.encode(secret),
        HEXUPPER.encode(secret),
        BASE64.encode(secret),
        BASE64_NOPAD.encode(secret),
        BASE64URL_NOPAD.encode(secret),
    ] {
        forms.push(full[..16].to_owned());
        forms.push(full);
    }
    let dbg = format!("{:?}", &secret[..8]);
    forms.push(dbg.trim_end_matches(']').to_owned());
    forms.push(String::from_utf8_lossy(secret).into_owned());
    forms
}

/// Panics if `text` holds any form of `secret`.
pub fn assert_no_secret(what: &str, text: &str, secret: &[u8]) {
    for f in secret_forms(secret) {
        assert!(
            !text.contains(&f),
            "{what} shows key material ({f:?}): {text}"
        );
    }
}

/// The material of every held version, opened straight from the file.
pub fn materials(ring: &Path) -> Vec<(u32, Vec<u8>)> {
    let file: RingFile =
        serde_json::from_slice(&std::fs::read(ring).expect("read the ring")).expect("ring JSON");
    file.versions
        .iter()
        .filter_map(|v| {
            store::open(&kek(), v)
                .expect("the version opens")
                .map(|m| (v.id, m.to_vec()))
        })
        .collect()
}

/// The audit log as JSON values, one per line.
pub fn audit_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}")))
        .collect()
}

/// The `scrim` binary with the test KEK and no other key in its environment.
pub fn scrim_cmd(kek_hex: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_scrim"));
    c.env_remove("SCRIM_KEY")
        .env_remove("SCRIM_KEY_VERSION")
        .env_remove("SCRIM_CONFIG")
        .env_remove("SCRIM_FAIL_POINT")
        .env("SCRIM_KEK", kek_hex)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null());
    c
}

pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to the end; kills it and fails the test after `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Finished {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the scrim binary starts");
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = read(Box::new(child.stdout.take().expect("piped")));
    let err = read(Box::new(child.stderr.take().expect("piped")));
    let status = crate::support::wait_bounded(&mut child, limit);
    Finished {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// A child process killed when dropped, so a failing test leaves none behind.
pub struct ChildGuard {
    pub child: Child,
    pub stderr: PathBuf,
}

impl ChildGuard {
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Panics (with its log) if the process has exited.
    pub fn assert_running(&mut self, what: &str) {
        if let Some(status) = self.child.try_wait().expect("try_wait works") {
            panic!("{what} exited ({status}); its log:\n{}", self.stderr_text());
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` distinct free loopback ports (bound together, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

// === rotation while traffic flows ==========================================

/// One client request: its `n`, whether it started after the rotation
/// answered, and its status (or the client's error).
type Outcome = (usize, bool, Result<u16, String>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_loses_no_request_and_switches_version() {
    const CONCURRENCY: usize = 8;
    const ROTATE_AFTER: usize = 100; // upstream arrivals before the rotation
    const MIN_TOTAL: usize = 240;
    const MIN_AFTER: usize = 100; // requests started after the rotation answered
    const CAP: usize = 20_000;

    let up = Upstream::start(ps::ok_responder()).await;
    let dir = ps::tempdir();
    let ring = init_ring(dir.path());
    let audit = dir.path().join("audit.log");
    let routes = route(
        "/",
        &rules(
            "audience-measurement",
            "analytics",
            "13 months",
            EMAIL_RULES,
        ),
    );
    let cfg = config(
        "127.0.0.1:0",
        &up.url(),
        &ring,
        "",
        &routes,
        Some(("127.0.0.1:0", &audit)),
    );
    let running = start_scrim(dir.path(), &cfg).await;
    let proxy = running.addrs[0];
    let admin = running.admin_addr.expect("the admin API is configured");
    let client = ps::h1_client();

    let next = Arc::new(AtomicUsize::new(0));
    let after = Arc::new(AtomicUsize::new(0));
    let rotated = Arc::new(AtomicBool::new(false));
    let results: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (next, after, rotated, results, client) = (
            next.clone(),
            after.clone(),
            rotated.clone(),
            results.clone(),
            client.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let sent = next.load(Ordering::SeqCst);
                if sent >= CAP || (sent >= MIN_TOTAL && after.load(Ordering::SeqCst) >= MIN_AFTER) {
                    break;
                }
                let n = next.fetch_add(1, Ordering::SeqCst);
                let post_rotation = rotated.load(Ordering::SeqCst);
                if post_rotation {
                    after.fetch_add(1, Ordering::SeqCst);
                }
                let body = json!({"n": n, "email": format!("User{n}@Example.com")});
                let req = ps::post(
                    &format!("http://{proxy}/collect"),
                    "application/json",
                    ps::full(serde_json::to_vec(&body).expect("JSON")),
                );
                let res = tokio::time::timeout(WAIT, async {
                    let res = client.request(req).await.map_err(|e| e.to_string())?;
                    let status = res.status().as_u16();
                    res.into_body().collect().await.map_err(|e| e.to_string())?;
                    Ok::<u16, String>(status)
                })
                .await
                .unwrap_or_else(|_| Err("timed out".into()));
                results.lock().unwrap().push((n, post_rotation, res));
            }
        }));
    }

    ps::within("traffic before the rotation", WAIT, async {
        while up.requests().len() < ROTATE_AFTER {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert_eq!(rotate_via_admin(&client, admin).await, 2);
    rotated.store(true, Ordering::SeqCst);
    for w in workers {
        ps::within("the client tasks to finish", WAIT * 3, w)
            .await
            .expect("a client task does not panic");
    }

    let results = results.lock().unwrap().clone();
    let total = results.len();
    assert!(total >= MIN_TOTAL, "only {total} requests were sent");
    assert!(
        total < CAP,
        "the clients hit the cap: the rotation never took"
    );
    let failed: Vec<_> = results.iter().filter(|r| r.2 != Ok(200)).collect();
    assert!(failed.is_empty(), "requests failed: {failed:?}");

    let bodies = upstream_bodies(&up, total).await;
    assert_eq!(
        bodies.len(),
        total,
        "every request reached the upstream once"
    );
    let rt = running.runtime.clone();
    let mut seen = BTreeSet::new();
    let mut versions = Vec::with_capacity(total);
    let mut version_of_n = vec![0u32; total];
    for b in &bodies {
        let v = parse(b);
        let n = v["n"].as_u64().expect("n is kept") as usize;
        assert!(seen.insert(n), "request {n} reached the upstream twice");
        let (local, version) = email_token(&v);
        assert!(
            version == 1 || version == 2,
            "request {n} got version {version}"
        );
        // The token is the one a look-up gives for that version.
        let rows = rt.lookup(Kind::Email, &format!("user{n}@example.com"));
        let row = rows
            .iter()
            .find(|r| r.version == version && r.purpose == "audience-measurement")
            .unwrap_or_else(|| panic!("no look-up row for version {version}: {rows:?}"));
        assert_eq!(row.pseudonym, local, "request {n}");
        versions.push(version);
        version_of_n[n] = version;
    }
    assert_eq!(seen.len(), total);

    let first_k2 = versions
        .iter()
        .position(|&v| v == 2)
        .expect("no k2 token reached the upstream after the rotation");
    assert!(
        first_k2 >= ROTATE_AFTER,
        "a k2 token arrived at position {first_k2}, before the rotation was asked for"
    );
    assert!(versions[..first_k2].iter().all(|&v| v == 1));
    let k1_after_k2 = versions[first_k2..].iter().filter(|&&v| v == 1).count();
    assert!(
        k1_after_k2 <= CONCURRENCY,
        "{k1_after_k2} k1 tokens arrived after the first k2 (at most {CONCURRENCY} were in flight)"
    );
    let late: Vec<usize> = results
        .iter()
        .filter(|r| r.1 && version_of_n[r.0] != 2)
        .map(|r| r.0)
        .collect();
    assert!(
        late.is_empty(),
        "requests started after the rotation answered still got k1: {late:?}"
    );
    let k2 = versions.iter().filter(|&&v| v == 2).count();
    assert!(k2 >= MIN_AFTER, "only {k2} k2 tokens");

    let disk = KeyRing::load(&ring, &kek()).expect("the ring loads");
    assert_eq!(disk.active_version().id, 2);
    ps::within("scrim to stop", WAIT, running.stop()).await;
}

// === two processes, one ring ================================================

pub fn spawn_scrim(dir: &Path, name: &str, config: &str) -> ChildGuard {
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, config).expect("write the config");
    let log = dir.join(format!("{name}.log"));
    let err = std::fs::File::create(&log).expect("create the log file");
    let child = scrim_cmd(&kek_hex())
        .args(["run", "--drain-secs", "0", "-c"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("the scrim binary starts");
    ChildGuard { child, stderr: log }
}

pub async fn wait_ready(client: &HttpClient, p: &mut ChildGuard, admin: SocketAddr, name: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        p.assert_running(name);
        let req = Request::get(format!("http://{admin}/readyz"))
            .body(ps::empty())
            .expect("a valid request");
        let ok = tokio::time::timeout(Duration::from_secs(1), client.request(req)).await;
        if let Ok(Ok(res)) = ok {
            if res.status() == StatusCode::OK {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{name} was not ready within {WAIT:?}; its log:\n{}",
            p.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A rotation keeps the upstream's pool: the request after it goes over the
/// kept connection, and with `max_connections = 1` it waits for the request
/// still running on that connection instead of opening a second one.
#[tokio::test]
async fn a_rotation_keeps_the_upstream_connections_and_their_cap() {
    // Each answer takes 1.5 s: the rotation and the next request happen
    // well within the answer in flight, even on a loaded machine.
    let (up, accepted, _) = ps::counting_upstream(false, Duration::from_millis(1500)).await;
    let dir = ps::tempdir();
    let ring = init_ring(dir.path());
    let url = format!("http://{up}");
    let routes = route(
        "/e/",
        &rules(
            "audience-measurement",
            "analytics",
            "13 months",
            EMAIL_RULES,
        ),
    );
    let cfg = config("127.0.0.1:0", &url, &ring, "", &routes, None).replace(
        &format!("url = \"{url}\"\n"),
        &format!("url = \"{url}\"\nmax_connections = 1\n"),
    );
    let running = start_scrim(dir.path(), &cfg).await;
    let addr = running.addrs[0];
    let client = ps::h1_client();
    let event = json!({"email": "ana@example.com", "n": 1});
    send_json(&client, addr, "/e/x", &event).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // A request on the kept connection when the key rotates...
    let first = tokio::spawn({
        let (client, event) = (client.clone(), event.clone());
        async move { send_json(&client, addr, "/e/x", &event).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(running.runtime.rotate().expect("the ring rotates"), 2);
    assert_eq!(running.runtime.snapshot().routes[0].engine.key_version(), 2);
    // ...and one under the new key, made while the first is answered.
    send_json(&client, addr, "/e/x", &event).await;
    first.await.expect("the first request ends");

    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one connection throughout"
    );
    let m = running.runtime.metrics.render();
    let waits = "scrim_upstream_waits_total{upstream=\"up\"}";
    assert_eq!(
        crate::operations::sample(&m, waits),
        Some(1.0),
        "the second waited for the first: {m}"
    );
    ps::within("scrim to stop", WAIT, running.stop()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_ring_agree_and_follow_a_rotation() {
    let up = Upstream::start(ps::ok_responder()).await;
    let dir = ps::tempdir();
    let ring = init_ring(dir.path());
    let routes = route(
        "/",
        &rules(
            "audience-measurement",
            "analytics",
            "13 months",
            EMAIL_RULES,
        ),
    );
    let ports = free_ports(4);
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let mut procs = Vec::new();
    for (name, listen, admin) in [("a", ports[0], ports[1]), ("b", ports[2], ports[3])] {
        let audit = dir.path().join(format!("{name}-audit.log"));
        let cfg = config(
            &addr(listen).to_string(),
            &up.url(),
            &ring,
            "",
            &routes,
            Some((&addr(admin).to_string(), &audit)),
        );
        procs.push(spawn_scrim(dir.path(), name, &cfg));
    }
    let client = ps::h1_client();
    let (proxy_a, admin_a) = (addr(ports[0]), addr(ports[1]));
    let (proxy_b, admin_b) = (addr(ports[2]), addr(ports[3]));
    let (pa, pb) = procs.split_at_mut(1);
    let (a, b) = (&mut pa[0], &mut pb[0]);
    wait_ready(&client, a, admin_a, "process A").await;
    wait_ready(&client, b, admin_b, "process B").await;

    let input = json!({"n": 1, "email": "Carol.Example@Example.net", "name": "Carol"});
    let out_a = through(&client, &up, proxy_a, "/e", &input).await;
    let out_b = through(&client, &up, proxy_b, "/e", &input).await;
    assert_eq!(
        String::from_utf8_lossy(&out_a),
        String::from_utf8_lossy(&out_b),
        "two processes on one ring disagree"
    );
    assert_eq!(email_token(&parse(&out_a)).1, 1);

    // Rotate through A's admin API: A switches at once...
    assert_eq!(rotate_via_admin(&client, admin_a).await, 2);
    let rotated_at = Instant::now();
    let out_a2 = through(&client, &up, proxy_a, "/e", &input).await;
    assert_eq!(
        email_token(&parse(&out_a2)).1,
        2,
        "A after its own rotation"
    );

    // ...and B within its reload interval (100 ms), polled for up to 2 s.
    let out_b2 = loop {
        b.assert_running("process B");
        let out = through(&client, &up, proxy_b, "/e", &input).await;
        if email_token(&parse(&out)).1 == 2 {
            break out;
        }
        assert!(
            rotated_at.elapsed() < Duration::from_secs(2),
            "B still emits version 1 {:?} after the rotation; its log:\n{}",
            rotated_at.elapsed(),
            b.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        String::from_utf8_lossy(&out_a2),
        String::from_utf8_lossy(&out_b2),
        "after the rotation the two processes disagree"
    );
    assert_ne!(out_a, out_a2, "the rotation changed nothing");

    // Identical input, identical output, once more, on both.
    let again_a = through(&client, &up, proxy_a, "/e", &input).await;
    let again_b = through(&client, &up, proxy_b, "/e", &input).await;
    assert_eq!(again_a, out_a2);
    assert_eq!(again_b, out_a2);
    a.assert_running("process A");
    b.assert_running("process B");
    // `procs` drops here: both processes are killed, also on failure above.
}

// === crash safety ============================================================

#[test]
fn crash_between_temp_write_and_rename_keeps_the_old_ring() {
    let dir = ps::tempdir();
    let ring = init_ring(dir.path());
    let before = std::fs::read(&ring).unwrap();

    let out = run_bounded(
        scrim_cmd(&kek_hex())
            .args(["keys", "rotate", "--ring"])
            .arg(&ring)
            .env("SCRIM_FAIL_POINT", "after-temp-write"),
        REFUSAL_TIMEOUT,
    );
    assert!(
        !out.status.success(),
        "the rotation should have died: {}",
        out.stdout
    );
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(6),
            "expected SIGABRT, got {:?}; stderr: {}",
            out.status,
            out.stderr
        );
    }

    // The abort came after the temporary file was complete: it holds the
    // rotated ring, which never replaced the real one.
    let temps: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ring.json.tmp."))
        })
        .collect();
    assert_eq!(
        temps.len(),
        1,
        "one temporary file left by the crash: {temps:?}"
    );
    let temp: RingFile = serde_json::from_slice(&std::fs::read(&temps[0]).unwrap())
        .expect("the temporary file was written completely");
    assert_eq!(temp.versions.len(), 2);

    assert_eq!(
        std::fs::read(&ring).unwrap(),
        before,
        "the ring changed although the rename never happened"
    );
    let loaded = KeyRing::load(&ring, &kek()).expect("the old ring still loads");
    let ids: Vec<(u32, State)> = loaded.versions().iter().map(|v| (v.id, v.state)).collect();
    assert_eq!(ids, vec![(1, State::Active)]);

    // A later rotation works (the dead process's lock went with it).
    let out = run_bounded(
        scrim_cmd(&kek_hex())
            .args(["keys", "rotate", "--ring"])
            .arg(&ring),
        REFUSAL_TIMEOUT,
    );
    assert!(out.status.success(), "rotate failed: {}", out.stderr);
    let loaded = KeyRing::load(&ring, &kek()).expect("the rotated ring loads");
    let ids: Vec<(u32, State)> = loaded.versions().iter().map(|v| (v.id, v.state)).collect();
    assert_eq!(ids, vec![(1, State::Previous), (2, State::Active)]);
    assert!(out.stdout.contains("active"), "list output: {}", out.stdout);
}

// === refusals ================================================================

/// A ring with versions 1 (previous) and 2 (active).
fn two_version_ring() -> (tempfile::TempDir, PathBuf) {
    let dir = ps::tempdir();
    let ring = init_ring(dir.path());
    KeyRing::rotate(&ring, &kek()).expect("rotate");
    (dir, ring)
}

/// The ring MAC as `store` computes it, recomputed from outside.
fn ring_mac(kek: &[u8; 32], versions: &[StoredVersion]) -> String {
    use hmac::{KeyInit, Mac};
    let hk = hkdf::Hkdf::<Sha256>::new(Some(b"scrim/kek/v1"), kek);
    let mut key = [0u8; 32];
    hk.expand(b"ring-mac", &mut key).expect("32 bytes");
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&key).expect("any key");
    mac.update(store::FORMAT.as_bytes());
    mac.update(&store::FORMAT_VERSION.to_be_bytes());
    mac.update(&serde_json::to_vec(versions).expect("versions serialise"));
    BASE64.encode(&mac.finalize().into_bytes())
}

fn ring_json(ring: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(ring).unwrap()).expect("ring JSON")
}

fn write_json(ring: &Path, v: &Value) {
    std::fs::write(ring, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

/// Every way of using the damaged ring at `ring` (opened with `kek_bytes`) is
/// refused with an error `is_expected` accepts and whose message holds
/// `message`, and the file stays byte-identical throughout.
fn assert_refused(
    dir: &Path,
    ring: &Path,
    kek_bytes: [u8; 32],
    is_expected: fn(&KeyRingError) -> bool,
    message: &str,
) {
    let before = std::fs::read(ring).unwrap();
    let unchanged = |after: &str| {
        assert!(
            std::fs::read(ring).unwrap() == before,
            "the ring file changed after {after}"
        )
    };
    let k = Kek::from_bytes(kek_bytes);
    let material: Vec<Vec<u8>> = {
        // What the good ring held, to check the errors never show it.
        let good: Option<RingFile> = serde_json::from_slice(&before).ok();
        good.map(|f| {
            f.versions
                .iter()
                .filter_map(|v| store::open(&kek(), v).ok().flatten().map(|m| m.to_vec()))
                .collect()
        })
        .unwrap_or_default()
    };
    let check = |what: &str, e: KeyRingError| {
        assert!(is_expected(&e), "{what}: unexpected error {e:?}");
        let text = format!("{e} / {e:?}");
        assert!(text.contains(message), "{what}: {text:?} lacks {message:?}");
        assert_no_secret(what, &text, &kek_bytes);
        assert_no_secret(what, &text, &KEK_BYTES);
        for m in &material {
            assert_no_secret(what, &text, m);
        }
    };

    check("load", KeyRing::load(ring, &k).unwrap_err());
    unchanged("load");
    check("rotate", KeyRing::rotate(ring, &k).unwrap_err());
    unchanged("rotate");
    check("retire", KeyRing::retire(ring, &k, 1).unwrap_err());
    unchanged("retire");
    check(
        "rotate_if",
        KeyRing::rotate_if(ring, &k, |_| true).unwrap_err(),
    );
    unchanged("rotate_if");

    // `scrim run` on it exits non-zero at once with the reason.
    let kek_text = HEXLOWER.encode(&kek_bytes);
    let cfg_path = dir.join("refused.toml");
    let routes = route(
        "/",
        &rules(
            "audience-measurement",
            "analytics",
            "13 months",
            EMAIL_RULES,
        ),
    );
    std::fs::write(
        &cfg_path,
        config("127.0.0.1:0", "http://127.0.0.1:9", ring, "", &routes, None),
    )
    .unwrap();
    let out = run_bounded(
        scrim_cmd(&kek_text).arg("run").arg("-c").arg(&cfg_path),
        REFUSAL_TIMEOUT,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "scrim run on a refused ring: {:?}\n{}",
        out.status,
        out.stderr
    );
    assert!(
        out.stderr.contains("error:") && out.stderr.contains(message),
        "scrim run did not say why ({message:?}): {}",
        out.stderr
    );
    assert_no_secret("scrim run's stderr", &out.stderr, &kek_bytes);
    unchanged("scrim run");

    // So does `scrim keys rotate`.
    let out = run_bounded(
        scrim_cmd(&kek_text)
            .args(["keys", "rotate", "--ring"])
            .arg(ring),
        REFUSAL_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(1), "keys rotate: {}", out.stderr);
    assert!(out.stderr.contains(message), "keys rotate: {}", out.stderr);
    unchanged("scrim keys rotate");
}

#[test]
fn wrong_kek_is_refused() {
    let (dir, ring) = two_version_ring();
    assert_refused(
        dir.path(),
        &ring,
        OTHER_KEK_BYTES,
        |e| matches!(e, KeyRingError::Integrity { .. }),
        "failed its integrity check",
    );
}

#[test]
fn tampered_ciphertext_is_refused() {
    let (dir, ring) = two_version_ring();
    let mut v = ring_json(&ring);
    let sealed = v["versions"][0]["sealed"].as_str().unwrap().to_owned();
    let mut chars: Vec<char> = sealed.chars().collect();
    chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
    v["versions"][0]["sealed"] = Value::String(chars.into_iter().collect());
    write_json(&ring, &v);
    assert_refused(
        dir.path(),
        &ring,
        KEK_BYTES,
        |e| matches!(e, KeyRingError::Integrity { .. }),
        "failed its integrity check",
    );
}

#[test]
fn swapped_versions_are_refused() {
    let (dir, ring) = two_version_ring();
    let mut v = ring_json(&ring);
    let a = v["versions"][0]["sealed"].clone();
    let b = v["versions"][1]["sealed"].clone();
    assert_ne!(a, b);
    v["versions"][0]["sealed"] = b;
    v["versions"][1]["sealed"] = a;
    write_json(&ring, &v);
    assert_refused(
        dir.path(),
        &ring,
        KEK_BYTES,
        |e| matches!(e, KeyRingError::Integrity { .. }),
        "failed its integrity check",
    );
}

/// Even with a MAC that matches (someone holding the KEK's MAC subkey), a
/// sealed blob moved to another version does not open: the version id is in
/// its associated data.
#[test]
fn swapped_versions_with_a_valid_mac_still_do_not_open() {
    let (dir, ring) = two_version_ring();
    let mut file: RingFile = serde_json::from_slice(&std::fs::read(&ring).unwrap()).unwrap();
    assert_eq!(
        ring_mac(&KEK_BYTES, &file.versions),
        file.mac,
        "the test's MAC is not the ring's: the check below would prove nothing"
    );
    let (a, b) = (
        file.versions[0].sealed.clone(),
        file.versions[1].sealed.clone(),
    );
    file.versions[0].sealed = b;
    file.versions[1].sealed = a;
    file.mac = ring_mac(&KEK_BYTES, &file.versions);
    std::fs::write(&ring, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
    assert_refused(
        dir.path(),
        &ring,
        KEK_BYTES,
        |e| matches!(e, KeyRingError::Sealed { id: 1 }),
        "does not open under this KEK",
    );
}

#[test]
fn truncated_ring_is_refused() {
    let (dir, ring) = two_version_ring();
    let bytes = std::fs::read(&ring).unwrap();
    std::fs::write(&ring, &bytes[..bytes.len() / 2]).unwrap();
    assert_refused(
        dir.path(),
        &ring,
        KEK_BYTES,
        |e| matches!(e, KeyRingError::Corrupt { why, .. } if why == "truncated"),
        "is truncated; it was not changed",
    );
}

#[test]
fn empty_ring_file_is_refused() {
    let (dir, ring) = two_version_ring();
    std::fs::write(&ring, b"").unwrap();
    assert_refused(
        dir.path(),
        &ring,
        KEK_BYTES,
        |e| matches!(e, KeyRingError::Corrupt { .. }),
        "it was not changed",
    );
}

#[test]
fn unknown_format_version_is_refused() {
    let (dir, ring) = two_version_ring();
    let mut v = ring_json(&ring);
    v["format_version"] = json!(2);
    write_json(&ring, &v);
    assert_refused(
        dir.path(),
        &ring,
        KEK_BYTES,
        |e| matches!(e, KeyRingError::UnknownFormat { version: 2, .. }),
        "key ring format version 2",
    );
}

#[test]
fn retiring_the_active_version_is_refused() {
    let dir = ps::tempdir();
    let ring = init_ring(dir.path());
    let before = std::fs::read(&ring).unwrap();
    assert!(matches!(
        KeyRing::retire(&ring, &kek(), 1),
        Err(KeyRingError::RetireActive { id: 1 })
    ));
    assert!(matches!(
        KeyRing::retire(&ring, &kek(), 9),
        Err(KeyRingError::NoSuchVersion { id: 9 })
    ));
    assert_eq!(std::fs::read(&ring).unwrap(), before);

    let out = run_bounded(
        scrim_cmd(&kek_hex())
            .args(["keys", "retire", "1", "--ring"])
            .arg(&ring),
        REFUSAL_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("version 1 is active; rotate first, then retire it"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(&ring).unwrap(), before);
}

#[test]
fn retired_material_is_gone_from_the_file() {
    let (_dir, ring) = two_version_ring();
    let v1_sealed = ring_json(&ring)["versions"][0]["sealed"]
        .as_str()
        .expect("version 1 is sealed")
        .to_owned();
    let v1_material = materials(&ring)
        .into_iter()
        .find(|(id, _)| *id == 1)
        .unwrap()
        .1;

    let ring_after = KeyRing::retire(&ring, &kek(), 1).expect("retire version 1");
    assert!(ring_after.get(1).is_none());

    let text = std::fs::read_to_string(&ring).unwrap();
    assert!(
        !text.contains(&v1_sealed),
        "the retired sealed material is still in the file"
    );
    assert_no_secret("the ring file", &text, &v1_material);
    let v = ring_json(&ring);
    let versions = v["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["id"], 1);
    assert_eq!(versions[0]["state"], "retired");
    assert_eq!(versions[0]["sealed"], Value::Null);
    assert!(versions[0]["retired"].is_string(), "retirement time: {v}");
    assert_eq!(versions[1]["state"], "active");
    assert!(versions[1]["sealed"].is_string());

    let loaded = KeyRing::load(&ring, &kek()).expect("the ring loads");
    assert!(loaded.get(1).is_none(), "retired material came back");
    assert_eq!(loaded.held().count(), 1);
    let before = std::fs::read(&ring).unwrap();
    assert!(matches!(
        KeyRing::retire(&ring, &kek(), 1),
        Err(KeyRingError::AlreadyRetired { id: 1 })
    ));
    assert_eq!(std::fs::read(&ring).unwrap(), before);
}

// === key material never leaks ===============================================

#[test]
fn key_material_never_shows_in_debug_or_errors() {
    let (dir, ring) = two_version_ring();
    let mats = materials(&ring);
    assert_eq!(mats.len(), 2);

    let loaded = KeyRing::load(&ring, &kek()).unwrap();
    let mut shown = vec![
        ("KeyRing", format!("{loaded:?} {loaded:#?}")),
        ("Kek", format!("{:?} {:#?}", kek(), kek())),
        (
            "HeldVersion",
            format!("{:?}", loaded.versions().first().unwrap()),
        ),
        ("active material", format!("{:?}", loaded.get(2).unwrap())),
    ];
    for (id, m) in &mats {
        let km = KeyMaterial::new(*id, m.clone()).unwrap();
        shown.push(("KeyMaterial", format!("{km:?} {km:#?}")));
    }

    // Errors, from every kind of failure that saw key material.
    let wrong = KeyRing::load(&ring, &Kek::from_bytes(OTHER_KEK_BYTES)).unwrap_err();
    let active = KeyRing::retire(&ring, &kek(), 2).unwrap_err();
    let kek_file = dir.path().join("short.kek");
    std::fs::write(&kek_file, HEXLOWER.encode(&KEK_BYTES[..31])).unwrap();
    let short_kek = Kek::from_file(&kek_file).unwrap_err();
    assert!(matches!(short_kek, KeyError::KekLength { len: 31, .. }));
    std::fs::write(&kek_file, "not a kek but a secret-ish string!!").unwrap();
    let bad_kek = Kek::from_file(&kek_file).unwrap_err();
    let short_key = KeyMaterial::new(1, KEK_BYTES[..20].to_vec()).unwrap_err();
    for (what, e) in [
        ("wrong KEK", format!("{wrong} {wrong:?}")),
        ("retire active", format!("{active} {active:?}")),
        ("short KEK", format!("{short_kek} {short_kek:?}")),
        ("bad KEK", format!("{bad_kek} {bad_kek:?}")),
        ("short key", format!("{short_key} {short_key:?}")),
    ] {
        shown.push((what, e));
    }
    assert!(!shown.last().unwrap().1.contains("secret-ish"));
    assert!(!format!("{bad_kek}").contains("secret-ish"));

    for (what, text) in &shown {
        assert_no_secret(what, text, &KEK_BYTES);
        for (_, m) in &mats {
            assert_no_secret(what, text, m);
        }
    }
    // The sanity of the check itself: the forms do catch a leak.
    assert!(secret_forms(&mats[0].1)
        .iter()
        .any(|f| format!("{:?}", mats[0].1).contains(f.as_str())));

    // The file holds only sealed material; `scrim keys list` prints none.
    let file = std::fs::read_to_string(&ring).unwrap();
    let out = run_bounded(
        scrim_cmd(&kek_hex())
            .args(["keys", "list", "--ring"])
            .arg(&ring),
        REFUSAL_TIMEOUT,
    );
    assert!(out.status.success(), "{}", out.stderr);
    for (_, m) in &mats {
        assert_no_secret("the ring file", &file, m);
        assert_no_secret("keys list", &format!("{}{}", out.stdout, out.stderr), m);
    }
    assert_no_secret("the ring file", &file, &KEK_BYTES);
    assert_no_secret(
        "keys list",
        &format!("{}{}", out.stdout, out.stderr),
        &KEK_BYTES,
    );
}

#[cfg(unix)]
#[test]
fn ring_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = ps::tempdir();
    let ring = init_ring(dir.path());
    assert_eq!(mode(&ring), 0o600, "after init");
    KeyRing::rotate(&ring, &kek()).unwrap();
    assert_eq!(mode(&ring), 0o600, "after rotate");
    KeyRing::retire(&ring, &kek(), 1).unwrap();
    assert_eq!(mode(&ring), 0o600, "after retire");

    // Made by the CLI, too.
    let cli_ring = dir.path().join("cli-ring.json");
    let out = run_bounded(
        scrim_cmd(&kek_hex())
            .args(["keys", "init", "--ring"])
            .arg(&cli_ring),
        REFUSAL_TIMEOUT,
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(mode(&cli_ring), 0o600, "after `scrim keys init`");
    // `keys init` never overwrites.
    let before = std::fs::read(&cli_ring).unwrap();
    let out = run_bounded(
        scrim_cmd(&kek_hex())
            .args(["keys", "init", "--ring"])
            .arg(&cli_ring),
        REFUSAL_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
    assert_eq!(std::fs::read(&cli_ring).unwrap(), before);
}

// === scheduled rotation and retirement =====================================

async fn wait_for_version(rt: &Runtime, above: u32, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let id = rt.ring().expect("a ring").active_version().id;
        if id > above {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "the active version is still {id} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_rotation_needs_no_call() {
    let up = Upstream::start(ps::ok_responder()).await;
    let dir = ps::tempdir();
    let ring = init_ring(dir.path());
    let routes = route(
        "/",
        &rules(
            "audience-measurement",
            "analytics",
            "13 months",
            EMAIL_RULES,
        ),
    );
    let cfg = config(
        "127.0.0.1:0",
        &up.url(),
        &ring,
        "rotate_every = \"1 second\"",
        &routes,
        None,
    );
    let running = start_scrim(dir.path(), &cfg).await;
    let rt = running.runtime.clone();
    assert_eq!(
        rt.config().keys.rotate_every,
        Some(Duration::from_secs(1)),
        "the config's period"
    );
    assert_eq!(rt.ring().unwrap().active_version().id, 1);
    let client = ps::h1_client();
    let out = through(
        &client,
        &up,
        running.addrs[0],
        "/e",
        &json!({"email": "dora@example.org"}),
    )
    .await;
    assert_eq!(email_token(&parse(&out)).1, 1);

    wait_for_version(&rt, 1, Duration::from_secs(3)).await;

    let out = through(
        &client,
        &up,
        running.addrs[0],
        "/e",
        &json!({"email": "dora@example.org"}),
    )
    .await;
    assert!(
        email_token(&parse(&out)).1 >= 2,
        "the proxy still emits version 1 after the scheduled rotation: {}",
        String::from_utf8_lossy(&out)
    );
    let disk = KeyRing::load(&ring, &kek()).unwrap();
    assert!(disk.active_version().id >= 2);
    assert_eq!(disk.versions()[0].state, State::Previous);
    ps::within("scrim to stop", WAIT, running.stop()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_retire_keeps_versions_within_the_retention() {
    let up = Upstream::start(ps::ok_responder()).await;
    let dir = ps::tempdir();
    let ring = init_ring(dir.path());
    let routes = route(
        "/",
        &rules("audience-measurement", "analytics", "1 day", EMAIL_RULES),
    );
    let cfg = config(
        "127.0.0.1:0",
        &up.url(),
        &ring,
        "rotate_every = \"1 second\"\nauto_retire = true",
        &routes,
        None,
    );
    let running = start_scrim(dir.path(), &cfg).await;
    let rt = running.runtime.clone();
    assert!(rt.config().keys.auto_retire);

    wait_for_version(&rt, 1, Duration::from_secs(3)).await;
    // Several more maintenance passes (every 100 ms) with version 1 just
    // superseded: a day has not passed, so nothing may be retired.
    tokio::time::sleep(Duration::from_millis(600)).await;

    let held = rt.ring().unwrap();
    assert!(
        held.versions().iter().all(|v| v.state != State::Retired),
        "a version was retired inside its retention: {:?}",
        held.versions()
    );
    assert!(held.get(1).is_some(), "version 1's material is gone");
    let disk = KeyRing::load(&ring, &kek()).unwrap();
    assert!(disk.active_version().id >= 2);
    for v in disk.versions() {
        assert_ne!(v.state, State::Retired, "on disk: {:?}", disk.versions());
    }
    assert!(disk.get(1).is_some());
    ps::within("scrim to stop", WAIT, running.stop()).await;
}
