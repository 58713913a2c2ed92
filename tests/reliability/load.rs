//! Load: a bounded run of continuous traffic through a `scrim run` process,
//! with a rule reload (SIGHUP) and a key rotation (admin API) in the middle;
//! and thousands of idle connections held open while new clients are served.
//!
//! `SCRIM_LOAD_SECS` sets the run's length (default 20 s, so CI stays
//! quick); the figures in docs/reliability.md say which length produced
//! them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::json;

use super::Cases;
use crate::keyring::{rotate_via_admin, rules};
use crate::operations::{hup_and_wait, start_process, Process};
use crate::proxy_support::{self as ps, Upstream, WAIT};

/// A request's number and its status (or the client's error).
type Outcome = (usize, Result<u16, String>);

/// Resident and peak resident set of a process, in KiB.
fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

/// Rules: email and IP pseudonymised, name as `Participant <token>`, the
/// chat message scrubbed, `n` and `stage` kept (and `extra` once reloaded).
fn load_rules(keep_extra: bool) -> String {
    let mut body = String::from(
        "[[rule]]\nid = \"email\"\nfield = \"email\"\naction = \"pseudonymise\"\nkind = \"email\"\n\n\
         [[rule]]\nid = \"ip\"\nfield = \"ip\"\naction = \"pseudonymise\"\nkind = \"ip\"\n\n\
         [[rule]]\nid = \"name\"\nfield = \"name\"\naction = \"pseudonymise\"\nkind = \"name\"\n\n\
         [[rule]]\nid = \"message\"\nfield = \"message\"\naction = \"scrub\"\n\n\
         [[rule]]\nid = \"n\"\nfield = \"n\"\naction = \"keep\"\n\n\
         [[rule]]\nid = \"stage\"\nfield = \"stage\"\naction = \"keep\"\n",
    );
    if keep_extra {
        body.push_str("\n[[rule]]\nid = \"extra\"\nfield = \"extra\"\naction = \"keep\"\n");
    }
    rules("webinar-analytics", "analytics", "13 months", &body)
}

/// The raw values of request `n`: none may reach the upstream.
fn personal(n: usize) -> [String; 4] {
    [
        format!("attendee.{n}@example.org"),
        format!("Attendee Number{n}"),
        format!("198.51.{}.{}", (n / 250) % 250, n % 250 + 1),
        format!("+45 20 {:02} {:02} {:02}", n % 97, n % 89, n % 83),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_load_with_a_reload_and_a_rotation_loses_and_leaks_nothing() {
    const WORKERS: usize = 8;
    let secs: u64 = std::env::var("SCRIM_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
        .max(6);
    let duration = Duration::from_secs(secs);

    let up = Upstream::start(ps::ok_responder()).await;
    let dir = ps::tempdir();
    let rules_path = dir.path().join("rules.toml");
    std::fs::write(&rules_path, load_rules(false)).expect("rules");
    let routes = format!(
        "[[route]]\nname = \"events\"\npath_prefix = \"/e\"\nupstream = \"up\"\nrules = {}\n\n",
        ps::toml_path(&rules_path)
    );
    let Process {
        mut p,
        proxy,
        admin,
        client,
        dir: _dir,
        ..
    } = start_process(dir, &up.url(), &routes, "", "warn").await;
    let pid = p.child.id();

    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (client, stop, next, outcomes) =
            (client.clone(), stop.clone(), next.clone(), outcomes.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let [email, name, ip, phone] = personal(n);
                let body = json!({
                    "n": n,
                    "email": email,
                    "name": name,
                    "ip": ip,
                    "stage": "keynote",
                    "extra": "x",
                    "message": format!("call me on {phone} or write to {email}"),
                    "unlisted": {"email": email},
                })
                .to_string();
                let req = ps::post(
                    &format!("http://{proxy}/e/{n}"),
                    "application/json",
                    ps::full(body),
                );
                let status = match tokio::time::timeout(WAIT, client.request(req)).await {
                    Ok(Ok(r)) => {
                        let s = r.status().as_u16();
                        match http_body_util::BodyExt::collect(r.into_body()).await {
                            Ok(_) => Ok(s),
                            Err(e) => Err(format!("body cut after {s}: {e}")),
                        }
                    }
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out".into()),
                };
                outcomes.lock().unwrap().push((n, status));
            }
        }));
    }

    // Memory, sampled through the run; the reload at 1/3, the rotation at 2/3.
    let started = Instant::now();
    let mut samples: Vec<(Duration, u64)> = Vec::new();
    let mut peak = 0;
    let (mut reloaded, mut rotated) = (false, false);
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(250)).await;
        p.assert_running("scrim under load");
        if let Some((rss, hwm)) = rss_kib(pid) {
            samples.push((started.elapsed(), rss));
            peak = peak.max(hwm);
        }
        if !reloaded && started.elapsed() >= duration / 3 {
            std::fs::write(&rules_path, load_rules(true)).expect("rules v2");
            hup_and_wait(&client, &mut p, admin, "ok", 1.0).await;
            reloaded = true;
        }
        if !rotated && started.elapsed() >= duration * 2 / 3 {
            assert_eq!(rotate_via_admin(&client, admin).await, 2);
            rotated = true;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("a load worker");
    }
    let elapsed = started.elapsed();
    let outcomes = outcomes.lock().unwrap().clone();
    let failed: Vec<_> = outcomes.iter().filter(|o| o.1 != Ok(200)).collect();

    // Every answered request reached the upstream, once, and nothing raw.
    let received = ps::within("the upstream to hold every request", WAIT, async {
        loop {
            let r = up.requests();
            if r.len() >= outcomes.len() && r.iter().all(|r| r.complete) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let mut seen = vec![0u32; outcomes.len()];
    let mut leaked = 0usize;
    let (mut with_extra, mut v2_tokens) = (0usize, 0usize);
    for r in &received {
        let text = String::from_utf8_lossy(&r.body);
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON upstream");
        let n = v["n"].as_u64().expect("n kept") as usize;
        if let Some(c) = seen.get_mut(n) {
            *c += 1;
        }
        if personal(n).iter().any(|raw| text.contains(raw.as_str()))
            || text.contains("example.org")
            || v.get("unlisted").is_some()
        {
            leaked += 1;
        }
        with_extra += usize::from(v.get("extra").is_some());
        v2_tokens += usize::from(v["email"].as_str().is_some_and(|e| e.starts_with("k2_")));
    }
    let lost = seen.iter().filter(|&&c| c != 1).count();

    // Flat memory: the resident set at the end against the one once warm
    // (after the first fifth of the run).
    let warm = samples
        .iter()
        .find(|(t, _)| *t >= elapsed / 5)
        .map_or(0, |s| s.1);
    let end = samples.last().map_or(0, |s| s.1);
    let growth = end.saturating_sub(warm);

    let mut c = Cases::new(
        "Load",
        "sustained load with a rule reload and a key rotation",
    );
    c.check(
        "no request failed",
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} failed, e.g. {:?}",
                failed.len(),
                &failed[..failed.len().min(5)]
            ))
        },
    );
    c.check(
        "every request reached the upstream exactly once",
        if lost == 0 && received.len() == outcomes.len() {
            Ok(())
        } else {
            Err(format!("{lost} lost or duplicated of {}", outcomes.len()))
        },
    );
    c.check(
        "no raw value reached the upstream",
        if leaked == 0 {
            Ok(())
        } else {
            Err(format!("{leaked} bodies with raw values"))
        },
    );
    c.check(
        "the reload and the rotation applied",
        if with_extra > 0 && v2_tokens > 0 {
            Ok(())
        } else {
            Err(format!(
                "{with_extra} with the reloaded rules, {v2_tokens} under key 2"
            ))
        },
    );
    c.check(
        "memory stays flat",
        if samples.len() < 4 {
            Err(format!("only {} memory samples", samples.len()))
        } else if growth < 16 * 1024 {
            Ok(())
        } else {
            Err(format!(
                "resident set grew {} MiB after warm-up",
                mib(growth)
            ))
        },
    );
    let requests = outcomes.len();
    c.finish_with(json!({
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "duration_s": elapsed.as_secs(),
        "concurrent_clients": WORKERS,
        "requests": requests,
        "requests_per_s": (requests as f64 / elapsed.as_secs_f64()).round(),
        "failed": failed.len(),
        "lost": lost,
        "leaked": leaked,
        "rss_warm_mib": mib(warm),
        "rss_end_mib": mib(end),
        "peak_rss_mib": mib(peak),
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_do_not_stop_new_ones() {
    const IDLE: usize = 3000;
    let up = Upstream::start(ps::ok_responder()).await;
    // Idle clients are not cut by the header timeout during the test.
    let Process {
        mut p,
        proxy,
        dir: _dir,
        ..
    } = start_process(
        ps::tempdir(),
        &up.url(),
        &crate::keyring::route("/", &load_rules(false)),
        "header_timeout_ms = 60000",
        "warn",
    )
    .await;
    let pid = p.child.id();
    let before = rss_kib(pid).map_or(0, |r| r.0);

    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(
            tokio::net::TcpStream::connect(proxy)
                .await
                .expect("an idle connection"),
        );
    }
    // Let scrim accept them all.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut c = Cases::new("Load", "thousands of idle connections held open");
    for n in 0..20 {
        let fresh = ps::h1_client();
        let [email, ..] = personal(n);
        let body = json!({"n": n, "email": email}).to_string();
        let req = ps::post(
            &format!("http://{proxy}/e/{n}"),
            "application/json",
            ps::full(body),
        );
        let t = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(5), fresh.request(req)).await;
        let outcome = match r {
            Ok(Ok(r)) if r.status() == StatusCode::OK => Ok(()),
            Ok(Ok(r)) => Err(format!("status {}", r.status())),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer in {:?}", t.elapsed())),
        };
        c.check(&format!("new client {n} with {IDLE} idle open"), outcome);
    }
    let during = rss_kib(pid).map_or(0, |r| r.0);
    c.check(
        "scrim still runs",
        match p.child.try_wait() {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    drop(idle);
    c.finish_with(json!({
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "idle_connections": IDLE,
        "rss_before_mib": mib(before),
        "rss_with_idle_mib": mib(during),
    }));
}
