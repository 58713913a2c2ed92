//! Consent, the objection register and the leak guard, end to end through
//! a real scrim in front of a recording upstream.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use serde_json::Value;

use crate::proxy_support::*;
use scrim::engine::spec::Kind;
use scrim::snapshot::{Keys, Runtime};

fn consent_rules(signal: &str) -> String {
    format!(
        "[purpose]\nid = \"webinar-analytics\"\nlegal_basis = \"consent\"\nretention = \"6 months\"\n\
         recipient = \"analytics\"\n\n[purpose.consent]\n{signal}\n\n\
         [[rule]]\nfield = \"event\"\naction = \"keep\"\n\
         [[rule]]\nfield = \"email\"\naction = \"pseudonymise\"\nkind = \"email\"\n"
    )
}

fn route(rules: &str, extra: &str) -> String {
    format!("[[route]]\npath_prefix = \"/\"\nupstream = \"up\"\n{extra}\ninline_rules = '''\n{rules}\n'''\n")
}

/// scrim on one listener, in front of `up`, with `routes`.
async fn start(up: &Upstream, routes: &str) -> Proxy {
    Proxy::start(
        tempdir(),
        &format!(
            "[[listener]]\naddr = \"127.0.0.1:0\"\n[upstream.up]\nurl = \"{}\"\n{routes}",
            up.url()
        ),
    )
    .await
}

async fn post_json(proxy: &Proxy, body: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = post(&proxy.url("/e"), "application/json", full(body.to_owned()));
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    send(&h1_client(), req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_by_header_cookie_and_gpc() {
    let up = Upstream::start(ok_responder()).await;
    let routes = route(&consent_rules("header = \"x-consent\""), "");
    let proxy = start(&up, &routes).await;
    let body = r#"{"event":"joined","email":"jose@example.es"}"#;

    // Absent, refused and GPC: success for the client, nothing upstream.
    for headers in [
        vec![],
        vec![("x-consent", "no")],
        vec![("x-consent", "granted"), ("sec-gpc", "1")],
    ] {
        let r = post_json(&proxy, body, &headers).await;
        assert_eq!(r.status, StatusCode::OK, "{headers:?}");
        assert_eq!(r.text(), "{}");
    }
    assert_eq!(up.requests().len(), 0, "nothing forwarded without consent");

    let r = post_json(&proxy, body, &[("x-consent", "Granted")]).await;
    assert_eq!(r.status, StatusCode::OK);
    let got = up.only_request().await;
    let v: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(v["event"], "joined");
    assert!(v["email"].as_str().unwrap().starts_with("k1_"));
    // The consent header itself is not forwarded (no rule names it).
    assert!(got.header("x-consent").is_none());
    proxy.stop().await;

    // Cookie signal.
    let up = Upstream::start(ok_responder()).await;
    let routes = route(&consent_rules("cookie = \"consent_analytics\""), "");
    let proxy = start(&up, &routes).await;
    post_json(&proxy, body, &[("cookie", "a=b; consent_analytics=0")]).await;
    assert_eq!(up.requests().len(), 0);
    post_json(&proxy, body, &[("cookie", "a=b; consent_analytics=yes")]).await;
    assert_eq!(up.requests().len(), 1);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_by_body_field_is_decided_per_event() {
    let up = Upstream::start(ok_responder()).await;
    let routes = route(&consent_rules("field = \"consent.analytics\""), "");
    let proxy = start(&up, &routes).await;
    let lines = concat!(
        "{\"event\":\"a\",\"email\":\"one@example.es\",\"consent\":{\"analytics\":true}}\n",
        "{\"event\":\"b\",\"email\":\"two@example.es\",\"consent\":{\"analytics\":false}}\n",
        "{\"event\":\"c\",\"email\":\"three@example.es\"}\n",
        "{\"event\":\"d\",\"email\":\"four@example.es\",\"consent\":{\"analytics\":\"granted\"}}\n",
    );
    let req = post(&proxy.url("/e"), "application/x-ndjson", full(lines));
    let r = send(&h1_client(), req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let got = up.only_request().await;
    let text = String::from_utf8(got.body.clone()).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "d"], "only events with consent are forwarded");
    assert!(!text.contains("example.es"));

    // A single JSON event without consent: success, nothing forwarded.
    let r = post_json(&proxy, r#"{"event":"x","email":"five@example.es"}"#, &[]).await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "{}"));
    assert_eq!(up.requests().len(), 1);
    proxy.stop().await;
}

/// A consent read from a field decides Sentry events and envelopes too: an
/// envelope is one event, withheld whole when its event item lacks consent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_by_body_field_decides_sentry_events_and_envelopes() {
    let up = Upstream::start(ok_responder()).await;
    let rules = "[purpose]\nid = \"errors\"\nlegal_basis = \"consent\"\nretention = \"30 days\"\n\
                 recipient = \"error-tracking\"\n\n[purpose.consent]\nfield = \"tags.consent\"\n\n\
                 [[rule]]\nfield = \"envelope.event_id\"\naction = \"keep\"\n\
                 [[rule]]\nfield = \"event.message\"\naction = \"keep\"\n\
                 [[rule]]\nfield = \"event.user.email\"\naction = \"pseudonymise\"\nkind = \"email\"\n";
    let routes = format!(
        "[[route]]\npath_prefix = \"/api/1/envelope/\"\nupstream = \"up\"\ninline_rules = '''\n{rules}\n'''\n\
         [[route]]\npath_prefix = \"/api/1/store/\"\nupstream = \"up\"\nbody_format = \"sentry-event\"\n\
         inline_rules = '''\n{rules}\n'''\n"
    );
    let proxy = start(&up, &routes).await;
    let event = |consent: &str| {
        format!(r#"{{"message":"boom","user":{{"email":"ann@example.es"}}{consent}}}"#)
    };
    let granted = event(r#","tags":{"consent":"granted"}"#);
    let refused = event("");
    let envelope = |ev: &str| {
        format!(
            "{{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}}\n{{\"type\":\"event\"}}\n{ev}\n"
        )
    };
    let client = h1_client();
    let mut forwarded = 0;
    for (path, ctype, body, consents) in [
        (
            "/api/1/envelope/",
            "application/x-sentry-envelope",
            envelope(&granted),
            true,
        ),
        (
            "/api/1/envelope/",
            "application/x-sentry-envelope",
            envelope(&refused),
            false,
        ),
        ("/api/1/store/", "application/json", granted.clone(), true),
        ("/api/1/store/", "application/json", refused.clone(), false),
    ] {
        let r = send(&client, post(&proxy.url(path), ctype, full(body))).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
        let reqs = up.requests();
        if consents {
            forwarded += 1;
            assert_eq!(reqs.len(), forwarded, "{path}: forwarded with consent");
            let text = String::from_utf8(reqs[forwarded - 1].body.clone()).unwrap();
            assert!(
                text.contains("boom") && !text.contains("ann@example.es"),
                "{text}"
            );
        } else {
            assert_eq!(r.text(), "{}", "{path}: answered as success");
            assert_eq!(
                reqs.len(),
                forwarded,
                "{path}: nothing forwarded without consent"
            );
        }
    }
    proxy.stop().await;
}

/// Two replicas on one register: an objection added through one is honoured
/// by the other within the reload interval; consent purposes are unaffected;
/// withdrawing it restores forwarding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objections_are_honoured_on_every_replica_and_withdrawn() {
    let up = Upstream::start(ok_responder()).await;
    let dir = tempdir();
    let li = "[purpose]\nid = \"audience\"\nlegal_basis = \"legitimate-interest\"\nretention = \"13 months\"\n\
              recipient = \"analytics\"\n\n[[rule]]\nfield = \"event\"\naction = \"keep\"\n\
              [[rule]]\nfield = \"user.email\"\naction = \"pseudonymise\"\nkind = \"email\"\n\
              [[rule]]\nfield = \"user.id\"\naction = \"pseudonymise\"\nkind = \"id\"\n";
    let contract = li
        .replace("legitimate-interest", "contract")
        .replace("audience", "service");
    let cfg_text = format!(
        "[[listener]]\naddr = \"127.0.0.1:0\"\n[keys]\nreload_interval_ms = 50\n\
         [privacy]\nobjections = \"objections.json\"\n[upstream.up]\nurl = \"{}\"\n\
         [[route]]\npath_prefix = \"/li/\"\nupstream = \"up\"\ninline_rules = '''\n{li}\n'''\n\
         [[route]]\npath_prefix = \"/contract/\"\nupstream = \"up\"\ninline_rules = '''\n{contract}\n'''\n",
        up.url()
    );
    let path = dir.path().join("scrim.toml");
    std::fs::write(&path, &cfg_text).unwrap();
    let start = || async {
        let cfg = scrim::config::load(&path).unwrap();
        let rt = Runtime::new(cfg, Keys::Dev(keys())).unwrap();
        scrim::server::start_runtime(rt, Duration::from_millis(100))
            .await
            .unwrap()
    };
    let a = start().await;
    let b = start().await;
    let client = h1_client();
    let send_to = |addr: std::net::SocketAddr, path: &'static str, body: &'static str| {
        let client = client.clone();
        async move {
            let req = Request::post(format!("http://{addr}{path}"))
                .header("content-type", "application/json")
                .body(full(Bytes::from_static(body.as_bytes())))
                .unwrap();
            send(&client, req).await
        }
    };
    let soren = r#"{"event":"joined","user":{"email":"Soren@Example.dk","id":"u-1"}}"#;
    let other = r#"{"event":"joined","user":{"email":"zoe@example.com","id":"u-2"}}"#;

    send_to(a.addrs[0], "/li/e", soren).await;
    assert_eq!(up.requests().len(), 1, "forwarded before the objection");

    assert!(a
        .runtime
        .object(Kind::Email, " soren@example.dk", true)
        .unwrap());
    let register = std::fs::read_to_string(dir.path().join("objections.json")).unwrap();
    assert!(!register.to_lowercase().contains("soren") && !register.contains("example"));

    let r = send_to(a.addrs[0], "/li/e", soren).await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "{}"));
    assert_eq!(
        up.requests().len(),
        1,
        "withheld on the replica that wrote it"
    );
    send_to(a.addrs[0], "/li/e", other).await;
    assert_eq!(up.requests().len(), 2, "other subjects still flow");
    send_to(a.addrs[0], "/contract/e", soren).await;
    assert_eq!(
        up.requests().len(),
        3,
        "objection applies to legitimate interest only"
    );

    // Replica B picks the register up within its reload interval.
    let mut withheld_on_b = false;
    for _ in 0..40 {
        let before = up.requests().len();
        send_to(b.addrs[0], "/li/e", soren).await;
        if up.requests().len() == before {
            withheld_on_b = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(withheld_on_b, "replica B never honoured the objection");
    assert!(
        b.runtime
            .metrics
            .dropped_count(scrim::telemetry::metrics::Dropped::Objection)
            >= 1
    );

    assert!(a
        .runtime
        .object(Kind::Email, "soren@example.dk", false)
        .unwrap());
    let before = up.requests().len();
    send_to(a.addrs[0], "/li/e", soren).await;
    assert_eq!(
        up.requests().len(),
        before + 1,
        "forwarded again once withdrawn"
    );
    a.stop().await;
    b.stop().await;
}

const GUARDED: &str = "[[rule]]\nfield = \"name\"\naction = \"pseudonymise\"\nkind = \"name\"\n\
                       [[rule]]\nfield = \"email\"\naction = \"pseudonymise\"\nkind = \"email\"\n\
                       [[rule]]\nfield = \"note\"\naction = \"keep\"\n\
                       [[rule]]\nquery = \"ref\"\naction = \"keep\"\n";
const LEAKY: &str = r#"{"name":"José Núñez","email":"jose@example.es","note":"josé núñez wrote from jose@example.es at 198.51.100.7, v1.2"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leak_guard_scrubs_what_the_rules_let_through() {
    let up = Upstream::start(ok_responder()).await;
    let rules = rule_file("guarded", "analytics", "drop", GUARDED);
    let proxy = Proxy::start(
        tempdir(),
        &format!(
            "[[listener]]\naddr = \"127.0.0.1:0\"\n[upstream.up]\nurl = \"{}\"\n{}",
            up.url(),
            route(&rules, "")
        ),
    )
    .await;
    let req = post(
        &proxy.url("/e?ref=mail%20from%20jose%40example.es"),
        "application/json",
        full(LEAKY),
    );
    let r = send(&h1_client(), req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let got = up.only_request().await;
    let v: Value = serde_json::from_slice(&got.body).unwrap();
    let note = v["note"].as_str().unwrap();
    // The note's repeated name becomes the name's own pseudonym; the email
    // and the IP become pseudonyms; the version number is not an IP.
    assert!(note.starts_with(v["name"].as_str().unwrap()), "{note}");
    assert!(note.contains(v["email"].as_str().unwrap()), "{note}");
    assert!(note.ends_with(", v1.2"), "{note}");
    let all = format!(
        "{} {}",
        got.path_and_query,
        String::from_utf8_lossy(&got.body)
    );
    assert_no_leak(
        "upstream",
        &all,
        &[
            "jose@example.es",
            "jose%40example.es",
            "198.51.100.7",
            "núñez",
            "Núñez",
        ],
    );
    assert!(
        got.path_and_query.contains("ref="),
        "{}",
        got.path_and_query
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leak_guard_in_refuse_mode_answers_422_naming_the_path() {
    let up = Upstream::start(ok_responder()).await;
    let rules = rule_file("guarded", "analytics", "drop", GUARDED);
    let proxy = Proxy::start(
        tempdir(),
        &format!(
            "[[listener]]\naddr = \"127.0.0.1:0\"\n[upstream.up]\nurl = \"{}\"\n{}",
            up.url(),
            route(&rules, "leak_guard = \"refuse\"")
        ),
    )
    .await;
    let r = send(
        &h1_client(),
        post(&proxy.url("/e"), "application/json", full(LEAKY)),
    )
    .await;
    assert_error_reply(&r, 422, &["jose@example.es", "198.51.100.7", "núñez"]);
    assert!(r.text().contains("`note`"), "{}", r.text());
    // A clean event passes.
    let clean = r#"{"name":"José Núñez","email":"jose@example.es","note":"no personal data"}"#;
    let r = send(
        &h1_client(),
        post(&proxy.url("/e"), "application/json", full(clean)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(up.requests().len(), 1, "only the clean event was forwarded");
    proxy.stop().await;
}

/// Shadow mode: the candidate's differences are reported by path, and only
/// the enforced output is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_rules_report_differences_and_forward_nothing_of_their_own() {
    let up = Upstream::start(ok_responder()).await;
    let dir = tempdir();
    let enforced = rule_file(
        "audience",
        "analytics",
        "drop",
        "[[rule]]\nfield = \"event\"\naction = \"keep\"\n\
         [[rule]]\nfield = \"email\"\naction = \"pseudonymise\"\nkind = \"email\"\n",
    );
    let candidate = rule_file(
        "audience",
        "analytics",
        "drop",
        "[[rule]]\nfield = \"event\"\naction = \"keep\"\n\
         [[rule]]\nfield = \"email\"\naction = \"pseudonymise\"\nkind = \"email\"\n\
         [[rule]]\nfield = \"plan\"\naction = \"keep\"\n",
    );
    std::fs::write(dir.path().join("enforced.toml"), enforced).unwrap();
    std::fs::write(dir.path().join("candidate.toml"), candidate).unwrap();
    let path = dir.path().join("scrim.toml");
    std::fs::write(
        &path,
        format!(
            "[[listener]]\naddr = \"127.0.0.1:0\"\n[upstream.up]\nurl = \"{}\"\n\
             [[route]]\npath_prefix = \"/\"\nupstream = \"up\"\nrules = \"enforced.toml\"\n\
             shadow_rules = \"candidate.toml\"\n",
            up.url()
        ),
    )
    .unwrap();
    let rt = Runtime::new(scrim::config::load(&path).unwrap(), Keys::Dev(keys())).unwrap();
    let running = scrim::server::start_runtime(rt, Duration::from_millis(100))
        .await
        .unwrap();
    let url = format!("http://{}/e", running.addrs[0]);
    for body in [
        r#"{"event":"a","email":"jose@example.es","plan":"pro"}"#,
        r#"{"event":"b","email":"jose@example.es"}"#,
    ] {
        let r = send(&h1_client(), post(&url, "application/json", full(body))).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    // The enforced output reached the upstream, once per request.
    assert_eq!(up.requests().len(), 2);
    for rec in up.requests() {
        let v: Value = serde_json::from_slice(&rec.body).unwrap();
        assert!(
            v.get("plan").is_none(),
            "the candidate's output leaked upstream"
        );
    }
    let report = running.runtime.shadow.snapshot();
    let r = &report[&1];
    assert_eq!((r.compared, r.differing), (2, 1));
    assert_eq!(
        r.paths.keys().map(String::as_str).collect::<Vec<_>>(),
        ["$.plan (only candidate)"]
    );
    assert!(!format!("{report:?}").contains("pro\""));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leak_guard_covers_the_path_no_rule_names() {
    let up = Upstream::start(ok_responder()).await;
    let rules = rule_file("guarded", "analytics", "drop", GUARDED);
    let config = |extra: &str| {
        format!(
            "[[listener]]\naddr = \"127.0.0.1:0\"\n[upstream.up]\nurl = \"{}\"\n{}",
            up.url(),
            route(&rules, extra)
        )
    };
    let proxy = Proxy::start(tempdir(), &config("")).await;
    let leaky_path = "/users/Jose%40Example.es/sessions/198.51.100.7/v1.2/report";
    let r = send(
        &h1_client(),
        post(
            &proxy.url(leaky_path),
            "application/json",
            full(r#"{"note":"x"}"#),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let got = up.only_request().await;
    assert_no_leak(
        "upstream path",
        &got.path_and_query,
        &["jose@example.es", "Jose%40Example.es", "198.51.100.7"],
    );
    // The segments around stay as they were; the email and the address
    // become pseudonyms in place; a version number is not an address.
    let segs: Vec<&str> = got.path_and_query.split('/').collect();
    assert_eq!(segs[1], "users");
    assert!(
        segs[2].ends_with("@pseudonym.invalid"),
        "{}",
        got.path_and_query
    );
    assert_eq!(segs[3], "sessions");
    assert_ne!(segs[4], "198.51.100.7");
    assert!(segs[4].parse::<std::net::IpAddr>().is_ok(), "{}", segs[4]);
    assert_eq!(&segs[5..], ["v1.2", "report"]);
    // A path with nothing personal passes untouched.
    let r = send(
        &h1_client(),
        post(
            &proxy.url("/v2/events/2026-11-29"),
            "application/json",
            full("{}"),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(up
        .requests()
        .iter()
        .any(|q| q.path_and_query == "/v2/events/2026-11-29"));
    proxy.stop().await;

    // Refuse mode: 422, nothing forwarded.
    let before = up.requests().len();
    let proxy = Proxy::start(tempdir(), &config("leak_guard = \"refuse\"")).await;
    let r = send(
        &h1_client(),
        post(&proxy.url(leaky_path), "application/json", full("{}")),
    )
    .await;
    assert_error_reply(&r, 422, &["jose", "198.51.100.7"]);
    assert!(r.text().contains("request path"), "{}", r.text());
    assert_eq!(up.requests().len(), before);
    proxy.stop().await;
}
