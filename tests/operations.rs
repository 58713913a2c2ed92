//! Running scrim in production: Prometheus metrics that move with the
//! traffic, logs without personal data at the most verbose level, reload on
//! SIGHUP under load (a broken config refused), SIGTERM under load (every
//! accepted request completes), certificates swapped by a reload.
//!
//! Two replicas on one ring (same output, a rotation reaching both) are
//! covered in `keyring.rs`, objections across replicas in `privacy.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, Request, StatusCode};
use serde_json::{json, Value};

use crate::keyring::{
    admin_call, bearer, config, free_ports, init_ring, kek_hex, route, rules, scrim_cmd,
    start_scrim, ChildGuard, EMAIL_RULES, OPERATOR_TOKEN, SECURITY_TOKEN,
};
use crate::proxy_support::{self as ps, HttpClient, Upstream, WAIT};

// === metrics ===================================================================

/// The value of the sample `series` (name and labels exactly as exposed).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().expect("a numeric sample"))
    })
}

#[track_caller]
fn assert_sample(text: &str, series: &str, want: f64) {
    match sample(text, series) {
        Some(v) => assert_eq!(v, want, "{series}"),
        None => panic!("no sample {series} in:\n{text}"),
    }
}

pub async fn metrics(client: &HttpClient, admin: SocketAddr) -> String {
    let r = admin_call(client, admin, Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let ctype = r.headers["content-type"].to_str().unwrap_or_default();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    r.text()
}

async fn post(client: &HttpClient, addr: SocketAddr, path: &str, body: &str) -> ps::Reply {
    let url = format!("http://{addr}{path}");
    ps::send(
        client,
        ps::post(&url, "application/json", ps::full(body.to_owned())),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_as_the_traffic_says() {
    let up = Upstream::start(ps::ok_responder()).await;
    let dir = ps::tempdir();
    let ring = init_ring(dir.path());
    let analytics = audience_rules();
    let guarded = rules(
        "support",
        "support",
        "13 months",
        "[[rule]]\nid = \"note\"\nfield = \"note\"\naction = \"keep\"\n",
    );
    let consent = "[purpose]\nid = \"webinar-analytics\"\nlegal_basis = \"consent\"\n\
         retention = \"6 months\"\nrecipient = \"analytics\"\n\n\
         [purpose.consent]\nheader = \"x-consent\"\n\n\
         [[rule]]\nid = \"n\"\nfield = \"n\"\naction = \"keep\"\n";
    let routes = format!(
        "[[route]]\nname = \"events\"\npath_prefix = \"/e\"\nupstream = \"up\"\n\
         inline_rules = '''\n{analytics}\n'''\n\n\
         [[route]]\nname = \"support\"\npath_prefix = \"/s\"\nupstream = \"up\"\n\
         leak_guard = \"refuse\"\ninline_rules = '''\n{guarded}\n'''\n\n\
         [[route]]\nname = \"consented\"\npath_prefix = \"/c\"\nupstream = \"up\"\n\
         inline_rules = '''\n{consent}\n'''\n\n"
    );
    let audit = dir.path().join("audit.log");
    let cfg = config(
        "127.0.0.1:0",
        &up.url(),
        &ring,
        "",
        &routes,
        Some(("127.0.0.1:0", &audit)),
    );
    let running = start_scrim(dir.path(), &cfg).await;
    let (proxy, admin) = (running.addrs[0], running.admin_addr.expect("admin"));
    let client = ps::h1_client();

    // Before any traffic: the reasons and outcomes exist at 0, version 1.
    let m = metrics(&client, admin).await;
    assert_sample(
        &m,
        "scrim_events_dropped_total{reason=\"fail_closed\"}",
        0.0,
    );
    assert_sample(&m, "scrim_reloads_total{outcome=\"refused\"}", 0.0);
    assert_sample(&m, "scrim_key_version", 1.0);

    // Three events forwarded: email pseudonymised, n kept, name dropped.
    let mut sent_bytes = 0;
    for n in 0..3 {
        let body =
            json!({"n": n, "email": format!("p{n}@example.org"), "name": "Zoë Çelik"}).to_string();
        sent_bytes += body.len();
        let r = post(&client, proxy, "/e/batch", &body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(r.headers.contains_key("x-scrim-request-id"));
    }
    // Malformed: refused, nothing forwarded (fail closed).
    let bad = r#"{"n": 1, "email": "broken@example.org""#;
    sent_bytes += bad.len();
    assert_eq!(
        post(&client, proxy, "/e/batch", bad).await.status,
        StatusCode::BAD_REQUEST
    );
    // The leak guard refuses an email left in a kept note.
    let leaky = r#"{"note": "write to olga.petrova@example.org"}"#;
    assert_eq!(
        post(&client, proxy, "/s/chat", leaky).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // No consent: withheld, answered 200.
    assert_eq!(
        post(&client, proxy, "/c/x", r#"{"n": 5}"#).await.status,
        StatusCode::OK
    );
    // No route.
    let r = ps::send(
        &client,
        Request::get(format!("http://{proxy}/nowhere"))
            .body(ps::empty())
            .expect("a request"),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let bodies = crate::keyring::upstream_bodies(&up, 3).await;
    assert_eq!(bodies.len(), 3, "only the three good events went upstream");
    let upstream_bytes: usize = bodies.iter().map(Vec::len).sum();

    let m = metrics(&client, admin).await;
    assert_sample(
        &m,
        "scrim_requests_total{route=\"events\",status=\"200\"}",
        3.0,
    );
    assert_sample(
        &m,
        "scrim_requests_total{route=\"events\",status=\"400\"}",
        1.0,
    );
    assert_sample(
        &m,
        "scrim_requests_total{route=\"support\",status=\"422\"}",
        1.0,
    );
    assert_sample(
        &m,
        "scrim_requests_total{route=\"consented\",status=\"200\"}",
        1.0,
    );
    assert_sample(
        &m,
        "scrim_requests_total{route=\"none\",status=\"404\"}",
        1.0,
    );
    assert_sample(
        &m,
        "scrim_fields_total{route=\"events\",action=\"pseudonymised\"}",
        3.0,
    );
    assert_sample(
        &m,
        "scrim_fields_total{route=\"events\",action=\"kept\"}",
        3.0,
    );
    assert_sample(
        &m,
        "scrim_fields_total{route=\"events\",action=\"dropped\"}",
        3.0,
    );
    assert_sample(
        &m,
        "scrim_events_dropped_total{reason=\"fail_closed\"}",
        1.0,
    );
    assert_sample(&m, "scrim_events_dropped_total{reason=\"leak_guard\"}", 1.0);
    assert_sample(&m, "scrim_events_dropped_total{reason=\"no_consent\"}", 1.0);
    assert_sample(&m, "scrim_events_dropped_total{reason=\"objection\"}", 0.0);
    assert_sample(
        &m,
        "scrim_request_bytes_total{route=\"events\"}",
        sent_bytes as f64,
    );
    assert_sample(
        &m,
        "scrim_upstream_bytes_total{route=\"events\"}",
        upstream_bytes as f64,
    );
    assert_sample(
        &m,
        "scrim_upstream_duration_seconds_count{route=\"events\"}",
        3.0,
    );
    assert_sample(
        &m,
        "scrim_added_duration_seconds_count{route=\"events\"}",
        3.0,
    );
    let added = sample(&m, "scrim_added_duration_seconds_sum{route=\"events\"}")
        .expect("an added-latency sum");
    assert!(added > 0.0 && added < 10.0, "added latency sum {added}");
    // No value of the traffic became a label or a sample.
    ps::assert_no_leak(
        "metrics",
        &m,
        &["example.org", "Zoë", "olga.petrova", "broken"],
    );

    // The admin API's privacy counts read the same counters.
    let r = admin_call(
        &client,
        admin,
        Method::GET,
        "/privacy",
        Some(&bearer(OPERATOR_TOKEN)),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).expect("JSON");
    assert_eq!(v["withheld_consent"], 1, "{v}");
    assert_eq!(v["withheld_objection"], 0, "{v}");
    assert_eq!(v["leaks_refused"], 1, "{v}");
    assert_eq!(v["leaks_scrubbed"], 0, "{v}");

    // A rotation moves the key version; reloads count by outcome.
    assert_eq!(crate::keyring::rotate_via_admin(&client, admin).await, 2);
    let reload = |token| {
        let client = client.clone();
        async move {
            admin_call(
                &client,
                admin,
                Method::POST,
                "/reload",
                Some(&bearer(token)),
                None,
            )
            .await
            .status
        }
    };
    assert_eq!(reload(OPERATOR_TOKEN).await, StatusCode::OK);
    let path = dir.path().join("scrim.toml");
    std::fs::write(&path, cfg.replace("inline_rules", "inline_rulez")).expect("break it");
    assert_ne!(reload(SECURITY_TOKEN).await, StatusCode::OK);
    let m = metrics(&client, admin).await;
    assert_sample(&m, "scrim_key_version", 2.0);
    assert_sample(&m, "scrim_reloads_total{outcome=\"ok\"}", 1.0);
    assert_sample(&m, "scrim_reloads_total{outcome=\"refused\"}", 1.0);
    ps::within("scrim to stop", WAIT, running.stop()).await;
}

// === logs ======================================================================

/// The bundled demo traffic at the most verbose level: every raw value the
/// demo sends is searched for in everything scrim logged.
#[test]
fn logs_carry_no_personal_data_at_the_most_verbose_level() {
    for format in ["text", "json"] {
        let out = crate::support::run_process(
            crate::support::scrim()
                .args(["demo", "--quiet", "--log-format", format])
                .env("RUST_LOG", "trace"),
            None,
        );
        assert!(out.status.success(), "{}", out.stderr);
        let log = &out.stderr;
        // The log is really at trace level and really covers the requests.
        let lines: Vec<&str> = log.lines().collect();
        assert!(lines.len() > 50, "only {} log lines:\n{log}", lines.len());
        assert!(lines.iter().any(|l| l.contains("TRACE")), "no trace lines");
        let forwarded: Vec<&&str> = lines.iter().filter(|l| l.contains("forwarded")).collect();
        assert_eq!(forwarded.len(), 8, "one line per demo request:\n{log}");
        if format == "json" {
            for l in &lines {
                let v: Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"));
                assert!(v["level"].is_string(), "{l}");
            }
            // The request id rides on every line a request produced.
            for l in &forwarded {
                let v: Value = serde_json::from_str(l).expect("JSON");
                let id = v["span"]["id"].as_str().unwrap_or_default();
                assert_eq!(id.len(), 16, "request id on {l}");
            }
        } else {
            for l in &forwarded {
                assert!(l.contains("request{id="), "request id on {l}");
            }
        }
        let leaked = scrim::cli::demo::leaked_values(log);
        assert!(
            leaked.is_empty(),
            "{format} log at trace level holds personal values {leaked:?}"
        );
    }
}

// === processes ================================================================

/// `scrim run` on `dir/NAME.toml`, logging to `dir/NAME.log` at `level`.
pub fn spawn_run(
    dir: &Path,
    name: &str,
    config: &str,
    level: &str,
    workers: Option<u16>,
) -> ChildGuard {
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, config).expect("write the config");
    let log = dir.join(format!("{name}.log"));
    let err = std::fs::File::create(&log).expect("create the log file");
    let mut cmd = scrim_cmd(&kek_hex());
    cmd.arg("run");
    if let Some(n) = workers {
        cmd.arg("--workers").arg(n.to_string());
    }
    let child = cmd
        .arg("-c")
        .arg(&cfg)
        .env("RUST_LOG", level)
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("the scrim binary starts");
    ChildGuard { child, stderr: log }
}

/// A `scrim run` process on a new ring in `dir`, with the admin API, on
/// free loopback ports, ready to serve.
/// Keep `dir` bound as long as the process runs: dropping it deletes the
/// config, the ring and the log.
pub struct Process {
    pub p: ChildGuard,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub client: HttpClient,
    /// The config it runs (`dir/scrim.toml`).
    pub config: String,
    pub dir: tempfile::TempDir,
}

/// Starts [`Process`]: `routes` to `upstream`, `limits` as the body of a
/// `[limits]` table (may be empty), logging at `level`.
pub async fn start_process(
    dir: tempfile::TempDir,
    upstream: &str,
    routes: &str,
    limits: &str,
    level: &str,
) -> Process {
    start_process_on(dir, upstream, routes, limits, level, None).await
}

/// [`start_process`] with `--workers` (`None`: scrim's default, as many as
/// the machine's cores).
pub async fn start_process_on(
    dir: tempfile::TempDir,
    upstream: &str,
    routes: &str,
    limits: &str,
    level: &str,
    workers: Option<u16>,
) -> Process {
    let ring = init_ring(dir.path());
    let ports = free_ports(2);
    let (proxy, admin) = (
        SocketAddr::from(([127, 0, 0, 1], ports[0])),
        SocketAddr::from(([127, 0, 0, 1], ports[1])),
    );
    let audit = dir.path().join("audit.log");
    let config = config(
        &proxy.to_string(),
        upstream,
        &ring,
        "",
        routes,
        Some((&admin.to_string(), &audit)),
    )
    .replacen("[keys]", &format!("[limits]\n{limits}\n\n[keys]"), 1);
    let mut p = spawn_run(dir.path(), "scrim", &config, level, workers);
    let client = ps::h1_client();
    crate::keyring::wait_ready(&client, &mut p, admin, "scrim").await;
    Process {
        p,
        proxy,
        admin,
        client,
        config,
        dir,
    }
}

pub fn signal(p: &ChildGuard, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &p.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {sig} failed");
}

/// Polls `/metrics` until `series` reaches `want`.
pub async fn wait_metric(
    client: &HttpClient,
    p: &mut ChildGuard,
    admin: SocketAddr,
    series: &str,
    want: f64,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        p.assert_running("scrim");
        let m = metrics(client, admin).await;
        if sample(&m, series) == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} did not reach {want}:\n{m}\nlog:\n{}",
            p.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends SIGHUP and waits until `scrim_reloads_total{outcome}` reaches
/// `count`.
pub async fn hup_and_wait(
    client: &HttpClient,
    p: &mut ChildGuard,
    admin: SocketAddr,
    outcome: &str,
    count: f64,
) {
    signal(p, "-HUP");
    let series = format!("scrim_reloads_total{{outcome=\"{outcome}\"}}");
    wait_metric(client, p, admin, &series, count).await;
}

/// The rule file most operations tests route `/` through.
fn audience_rules() -> String {
    rules("audience", "analytics", "13 months", EMAIL_RULES)
}

/// One request of a load run: its number, the reload phase it was sent in,
/// and its status (or the client's error).
type Sent = (usize, usize, Result<u16, String>);

/// Workers posting `{"n", "email", "stage", "extra"}` until `stop`; each
/// request records the phase current when it was sent.
fn load(
    client: &HttpClient,
    proxy: SocketAddr,
    workers: usize,
    phase: &Arc<AtomicUsize>,
    stop: &Arc<AtomicBool>,
    log: &Arc<Mutex<Vec<Sent>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let next = Arc::new(AtomicUsize::new(0));
    (0..workers)
        .map(|_| {
            let (client, phase, stop, log, next) = (
                client.clone(),
                phase.clone(),
                stop.clone(),
                log.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    let at = phase.load(Ordering::SeqCst);
                    let body = json!({
                        "n": n,
                        "email": format!("attendee{n}@example.org"),
                        "stage": "keynote",
                        "extra": "x",
                    })
                    .to_string();
                    let req = ps::post(
                        &format!("http://{proxy}/e/{n}"),
                        "application/json",
                        ps::full(body),
                    );
                    let res = tokio::time::timeout(WAIT, client.request(req)).await;
                    let status = match res {
                        Ok(Ok(r)) => {
                            let status = r.status().as_u16();
                            // An answer whose body is cut is a failure,
                            // not a success.
                            match http_body_util::BodyExt::collect(r.into_body()).await {
                                Ok(_) => Ok(status),
                                Err(e) => Err(format!("body cut after {status}: {e}")),
                            }
                        }
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("timed out".into()),
                    };
                    log.lock().unwrap().push((n, at, status));
                }
            })
        })
        .collect()
}

/// The keys of the event with `"n": n` as the upstream received it.
fn received_fields(up: &Upstream) -> HashMap<u64, Vec<String>> {
    up.requests()
        .into_iter()
        .filter(|r| r.complete)
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter_map(|v| {
            let n = v["n"].as_u64()?;
            let mut keys: Vec<String> = v.as_object()?.keys().cloned().collect();
            keys.sort();
            Some((n, keys))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload_under_load_applies_good_configs_and_refuses_a_broken_one() {
    sighup_reload_under_load(None).await;
}

/// The same on the single-threaded runtime (`--workers 1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload_under_load_on_one_worker() {
    sighup_reload_under_load(Some(1)).await;
}

async fn sighup_reload_under_load(scrim_workers: Option<u16>) {
    let up = Upstream::start(ps::ok_responder()).await;
    let dir = ps::tempdir();
    let keep = |fields: &[&str]| {
        let mut r = String::from(
            "[[rule]]\nid = \"email\"\nfield = \"email\"\naction = \"pseudonymise\"\nkind = \"email\"\n",
        );
        for f in fields {
            r.push_str(&format!(
                "\n[[rule]]\nid = \"{f}\"\nfield = \"{f}\"\naction = \"keep\"\n"
            ));
        }
        rules("audience", "analytics", "13 months", &r)
    };
    let rules_path = dir.path().join("rules.toml");
    std::fs::write(&rules_path, keep(&["n", "stage"])).expect("rules v1");
    let routes = format!(
        "[[route]]\nname = \"events\"\npath_prefix = \"/e\"\nupstream = \"up\"\nrules = {}\n\n",
        ps::toml_path(&rules_path)
    );
    let Process {
        mut p,
        proxy,
        admin,
        client,
        config: cfg,
        dir,
    } = start_process_on(dir, &up.url(), &routes, "", "info", scrim_workers).await;

    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let workers = load(&client, proxy, 4, &phase, &stop, &log);
    let wait_sent = |n: usize| {
        let log = log.clone();
        async move {
            ps::within("the load to go on", WAIT, async {
                while log.lock().unwrap().len() < n {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
        }
    };
    wait_sent(40).await;

    // Phase 1: rules v2 keep `extra` too.
    std::fs::write(&rules_path, keep(&["n", "stage", "extra"])).expect("rules v2");
    hup_and_wait(&client, &mut p, admin, "ok", 1.0).await;
    phase.store(1, Ordering::SeqCst);
    let at = log.lock().unwrap().len();
    wait_sent(at + 40).await;

    // A broken config is refused; v2 stays in force.
    let config_path = dir.path().join("scrim.toml");
    std::fs::write(
        &config_path,
        cfg.replace("upstream = \"up\"", "upstream = \"nowhere\""),
    )
    .expect("broken config");
    hup_and_wait(&client, &mut p, admin, "refused", 1.0).await;
    phase.store(2, Ordering::SeqCst);
    let at = log.lock().unwrap().len();
    wait_sent(at + 40).await;

    // Phase 3: the config restored, rules v3 drop `stage`; requests sent
    // until the reload is seen may meet either.
    phase.store(3, Ordering::SeqCst);
    std::fs::write(&config_path, &cfg).expect("config restored");
    std::fs::write(&rules_path, keep(&["n", "extra"])).expect("rules v3");
    hup_and_wait(&client, &mut p, admin, "ok", 2.0).await;
    phase.store(4, Ordering::SeqCst);
    let at = log.lock().unwrap().len();
    wait_sent(at + 40).await;

    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("a load worker");
    }
    p.assert_running("scrim after the reloads");
    let sent = log.lock().unwrap().clone();
    let failed: Vec<&Sent> = sent.iter().filter(|s| s.2 != Ok(200)).collect();
    assert!(failed.is_empty(), "failed requests: {failed:?}");

    let received = ps::within("every request to reach the upstream", WAIT, async {
        loop {
            let got = received_fields(&up);
            if got.len() >= sent.len() {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let v1 = ["email", "n", "stage"];
    let v2 = ["email", "extra", "n", "stage"];
    let v3 = ["email", "extra", "n"];
    let mut per_phase = [0usize; 5];
    for (n, at, _) in &sent {
        let keys = &received[&(*n as u64)];
        // Sent in a phase: under that phase's rules, or (in flight as the
        // reload landed) under the rules before it.
        let allowed: &[&[&str]] = match at {
            0 => &[&v1, &v2],
            1 => &[&v2],
            2 | 3 => &[&v2, &v3],
            _ => &[&v3],
        };
        assert!(
            allowed.iter().any(|a| keys == a),
            "request {n} sent in phase {at} reached the upstream with {keys:?}"
        );
        per_phase[*at] += 1;
    }
    for phase in [0, 1, 2, 4] {
        assert!(per_phase[phase] >= 40, "{per_phase:?}");
    }
    // After the refusal v2 stayed in force: of the requests sent before v3
    // was even written, only those still in flight when it was installed
    // (at most one per worker) can show it.
    let late = sent
        .iter()
        .filter(|(n, at, _)| *at == 2 && received[&(*n as u64)] == v3)
        .count();
    assert!(
        late <= 4,
        "{late} requests sent before v3 was written saw it"
    );
    let text = p.stderr_text();
    assert!(text.contains("reload refused"), "log:\n{text}");
    assert!(
        text.contains("nowhere"),
        "the refusal names the problem:\n{text}"
    );
    ps::assert_no_leak("log", &text, &["attendee", "example.org"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_completes_every_accepted_request_then_exits_zero() {
    sigterm_under_load(None).await;
}

/// The same on the single-threaded runtime (`--workers 1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_on_one_worker_completes_every_accepted_request() {
    sigterm_under_load(Some(1)).await;
}

async fn sigterm_under_load(scrim_workers: Option<u16>) {
    const IN_FLIGHT: usize = 12;
    // The upstream holds each request a while, so requests are in flight
    // when the signal lands.
    let held: ps::Responder = Arc::new(|_| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            ps::json_response(StatusCode::OK, r#"{"ok":true}"#)
        })
    });
    let up = Upstream::start(held).await;
    let Process {
        mut p,
        proxy,
        admin,
        client,
        dir: _dir,
        ..
    } = start_process_on(
        ps::tempdir(),
        &up.url(),
        &route("/", &audience_rules()),
        "drain_timeout_ms = 10000",
        "info",
        scrim_workers,
    )
    .await;

    // Requests in flight: each on its own connection.
    let mut inflight = Vec::new();
    for n in 0..IN_FLIGHT {
        let client = ps::h1_client();
        inflight.push(tokio::spawn(async move {
            let body = json!({"n": n, "email": format!("late{n}@example.org")}).to_string();
            let r = ps::post(
                &format!("http://{proxy}/e"),
                "application/json",
                ps::full(body),
            );
            let res = tokio::time::timeout(WAIT, client.request(r)).await;
            match res {
                Ok(Ok(r)) => {
                    let status = r.status().as_u16();
                    let body = http_body_util::BodyExt::collect(r.into_body())
                        .await
                        .map(|b| b.to_bytes());
                    (status, body.is_ok())
                }
                _ => (0, false),
            }
        }));
    }
    ps::within("the requests to reach the upstream", WAIT, async {
        while up.requests().len() < IN_FLIGHT {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // And a client that keeps sending through the shutdown.
    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let workers = load(&client, proxy, 2, &phase, &stop, &log);

    // The clock starts before the signal: scrim's deadline starts on delivery.
    let signalled = Instant::now();
    signal(&p, "-TERM");
    // While draining, readiness is false and the admin listener answers.
    let mut saw_unready = false;
    // Requests are held 600 ms, so the drain lasts at least that long.
    while signalled.elapsed() < Duration::from_millis(1500) {
        let r = tokio::time::timeout(
            Duration::from_millis(500),
            client.request(
                Request::get(format!("http://{admin}/readyz"))
                    .body(ps::empty())
                    .expect("a request"),
            ),
        )
        .await;
        if let Ok(Ok(r)) = r {
            if r.status() == StatusCode::SERVICE_UNAVAILABLE {
                saw_unready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (n, h) in inflight.into_iter().enumerate() {
        let (status, complete) = h.await.expect("a client task");
        assert_eq!(status, 200, "in-flight request {n} got {status}");
        assert!(complete, "in-flight request {n}: body cut short");
    }
    let status = ps::within("scrim to exit", WAIT, async {
        loop {
            if let Some(s) = p.child.try_wait().expect("try_wait") {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("a load worker");
    }
    assert_eq!(status.code(), Some(0), "log:\n{}", p.stderr_text());
    assert!(saw_unready, "readiness never turned false during the drain");
    // Every request the continuous client got an answer to was answered
    // in full and with success; the rest found the door closed.
    let sent = log.lock().unwrap().clone();
    let answered: Vec<&Sent> = sent.iter().filter(|s| s.2.is_ok()).collect();
    assert!(answered.iter().all(|s| s.2 == Ok(200)), "{answered:?}");
    for (n, _, s) in &sent {
        if let Err(e) = s {
            assert!(!e.contains("timed out"), "request {n} hung: {e}");
            assert!(
                !e.contains("body cut"),
                "request {n} answered, then cut: {e}"
            );
        }
    }
    // Nothing is listening any more.
    assert!(std::net::TcpStream::connect(proxy).is_err());
    let text = p.stderr_text();
    assert!(text.contains("draining"), "log:\n{text}");
    if let Some(n) = scrim_workers {
        assert!(text.contains(&format!("workers={n}")), "log:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_on_a_hung_request_at_the_drain_deadline() {
    let hung: ps::Responder = Arc::new(|_| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            ps::json_response(StatusCode::OK, "{}")
        })
    });
    let up = Upstream::start(hung).await;
    let Process {
        mut p,
        proxy,
        client,
        dir: _dir,
        ..
    } = start_process(
        ps::tempdir(),
        &up.url(),
        &route("/", &audience_rules()),
        "drain_timeout_ms = 500",
        "info",
    )
    .await;
    let c = client.clone();
    let pending = tokio::spawn(async move {
        let r = ps::post(
            &format!("http://{proxy}/e"),
            "application/json",
            ps::full("{\"n\":1}"),
        );
        tokio::time::timeout(WAIT, c.request(r)).await
    });
    ps::within("the request to reach the upstream", WAIT, async {
        while up.requests().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // The clock starts before the signal: scrim's deadline starts on delivery.
    let signalled = Instant::now();
    signal(&p, "-TERM");
    let status = ps::within("scrim to exit", WAIT, async {
        loop {
            if let Some(s) = p.child.try_wait().expect("try_wait") {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "log:\n{}", p.stderr_text());
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(5),
        "exited {took:?} after SIGTERM with a 500 ms drain deadline"
    );
    // The hung request was cut, not answered with success.
    let res = pending.await.expect("the client task");
    assert!(
        !matches!(res, Ok(Ok(ref r)) if r.status() == StatusCode::OK),
        "{res:?}"
    );
}

// === certificates ==============================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_the_listener_certificate_and_refuses_a_broken_one() {
    let up = Upstream::start(ps::ok_responder()).await;
    let dir = ps::tempdir();
    let ring = init_ring(dir.path());
    let (first, second) = (ps::test_cert(), ps::test_cert());
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &first.cert_pem).expect("cert");
    std::fs::write(&key, &first.key_pem).expect("key");
    let cfg = config(
        "127.0.0.1:0",
        &up.url(),
        &ring,
        "",
        &route("/", &audience_rules()),
        None,
    )
    .replacen(
        "addr = \"127.0.0.1:0\"",
        &format!(
            "addr = \"127.0.0.1:0\"\ntls = {{ cert = {}, key = {} }}",
            ps::toml_path(&cert),
            ps::toml_path(&key)
        ),
        1,
    );
    let running = start_scrim(dir.path(), &cfg).await;
    let url = format!("https://127.0.0.1:{}/e", running.addrs[0].port());
    let body = r#"{"n": 1, "email": "tls@example.org"}"#;
    let status = |c: &ps::TestCert| {
        let client = ps::https_client(c);
        let url = url.clone();
        async move {
            let r = ps::post(&url, "application/json", ps::full(body));
            tokio::time::timeout(WAIT, client.request(r))
                .await
                .expect("no hang")
                .map(|r| r.status())
        }
    };
    assert_eq!(status(&first).await.expect("first cert"), StatusCode::OK);
    assert!(status(&second).await.is_err(), "second cert not served yet");

    // Renewed files, reload: new connections get the new certificate.
    std::fs::write(&cert, &second.cert_pem).expect("cert");
    std::fs::write(&key, &second.key_pem).expect("key");
    running.runtime.reload().expect("the reload succeeds");
    assert_eq!(status(&second).await.expect("second cert"), StatusCode::OK);
    assert!(status(&first).await.is_err(), "first cert still served");

    // A key that does not match the certificate: refused, the served
    // certificate stays.
    std::fs::write(&key, &first.key_pem).expect("key");
    let err = running
        .runtime
        .reload()
        .expect_err("a mismatched key is refused");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(status(&second).await.expect("second cert"), StatusCode::OK);
    ps::within("scrim to stop", WAIT, running.stop()).await;
}

// === config ====================================================================

#[test]
fn log_and_route_name_settings_are_checked() {
    let dir = ps::tempdir();
    let base =
        "[[listener]]\naddr = \"127.0.0.1:0\"\n\n[upstream.up]\nurl = \"http://127.0.0.1:9\"\n\n";
    let rules = rules("p", "r", "13 months", EMAIL_RULES);
    let r = |name: &str| {
        format!(
            "[[route]]\nname = \"{name}\"\nupstream = \"up\"\ninline_rules = '''\n{rules}\n'''\n\n"
        )
    };
    let path = dir.path().join("scrim.toml");
    let bad_level = format!("{base}[log]\nlevel = \"scrim=loud\"\n\n{}", r("a"));
    let e = scrim::config::load_str(&bad_level, &path).expect_err("a bad level");
    assert!(e.to_string().contains("log.level"), "{e}");
    assert!(e.to_string().contains("scrim.toml:"), "{e}");
    let twice = format!("{base}{}{}", r("a"), r("a"));
    let e = scrim::config::load_str(&twice, &path).expect_err("two routes named a");
    assert!(e.to_string().contains("two routes are named `a`"), "{e}");
    let odd = format!("{base}{}", r("a b"));
    let e = scrim::config::load_str(&odd, &path).expect_err("a space in a name");
    assert!(e.to_string().contains("route name"), "{e}");
    let good = format!(
        "{base}[log]\nlevel = \"scrim=debug,info\"\nformat = \"json\"\n\n{}",
        r("a")
    );
    let c = scrim::config::load_str(&good, &path).expect("a good config");
    assert_eq!(c.log.level.as_deref(), Some("scrim=debug,info"));
    assert_eq!(c.routes[0].name.as_str(), "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_revokes_and_adds_admin_tokens() {
    let up = Upstream::start(ps::ok_responder()).await;
    let dir = ps::tempdir();
    let ring = init_ring(dir.path());
    let audit = dir.path().join("audit.log");
    let cfg = config(
        "127.0.0.1:0",
        &up.url(),
        &ring,
        "",
        &route("/", &audience_rules()),
        Some(("127.0.0.1:0", &audit)),
    );
    let running = start_scrim(dir.path(), &cfg).await;
    let admin = running.admin_addr.expect("admin");
    let client = ps::h1_client();
    let keys = |token: &str| {
        let client = client.clone();
        let auth = bearer(token);
        async move {
            admin_call(&client, admin, Method::GET, "/keys", Some(&auth), None)
                .await
                .status
        }
    };
    assert_eq!(keys(OPERATOR_TOKEN).await, StatusCode::OK);
    // The operator token is replaced by a new one.
    let new_token = "operator-token-rotated-5e0c";
    let rotated = cfg.replace(
        &crate::keyring::sha256_hex(OPERATOR_TOKEN),
        &crate::keyring::sha256_hex(new_token),
    );
    std::fs::write(dir.path().join("scrim.toml"), rotated).expect("new config");
    running.runtime.reload().expect("the reload succeeds");
    assert_eq!(keys(OPERATOR_TOKEN).await, StatusCode::UNAUTHORIZED);
    assert_eq!(keys(new_token).await, StatusCode::OK);
    ps::within("scrim to stop", WAIT, running.stop()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_says_when_a_change_needs_a_restart() {
    let up = Upstream::start(ps::ok_responder()).await;
    let Process {
        mut p,
        admin,
        client,
        config,
        dir,
        ..
    } = start_process(
        ps::tempdir(),
        &up.url(),
        &route("/", &audience_rules()),
        "",
        "info",
    )
    .await;
    let changed = config.replacen("[limits]\n", "[limits]\nmax_connections = 5\n", 1);
    assert_ne!(changed, config);
    std::fs::write(dir.path().join("scrim.toml"), changed).expect("new config");
    hup_and_wait(&client, &mut p, admin, "ok", 1.0).await;
    let log = p.stderr_text();
    assert!(log.contains("apply after a restart"), "log:\n{log}");
}
