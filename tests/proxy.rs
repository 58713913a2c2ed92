//! The proxy end to end over real sockets: scrim started from config text on
//! 127.0.0.1:0, in front of a recording upstream started in the test, driven
//! by real clients (HTTP/1.1, h2c, h2 over TLS, raw TCP for slow clients).
//!
//! Every test asserts on what the upstream actually received, byte for byte
//! where the expected output can be computed with the same rules and key.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use regex::Regex;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::operations::sample;
use crate::proxy_support::*;
use scrim::engine::{Engine, Format};

// --- shared fixtures -------------------------------------------------------------

const AUDIENCE: &str = include_str!("../rules/audience-analytics.toml");

/// `X-Forwarded-For` generalised to /24, unless the shipped file has its own rule.
const XFF_RULE: &str = r#"
[[rule]]
id = "xff"
header = "x-forwarded-for"
action = "generalise"
kind = "ip"
"#;

/// Header rules the shipped file does not have, so the JSON test can cover
/// kept and pseudonymised custom headers.
const EXTRA_HEADER_RULES: &str = r#"
[[rule]]
id = "request-id"
header = "x-request-id"
action = "keep"

[[rule]]
id = "trace"
header = "x-trace"
action = "keep"

[[rule]]
id = "user-email-header"
header = "x-user-email"
action = "pseudonymise"
kind = "email"
"#;

const EMAIL: &str = "Alice.Example@corp.example";
const NAME: &str = "Alice Example";
const CLIENT_IP: &str = "203.0.113.77";
const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                  (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36";

/// Personal or secret values the tests send; none may reach an upstream.
const SECRETS: &[&str] = &[
    "alice.example@corp.example",
    "alice example",
    "203.0.113.77",
    "198.51.100.23",
    "203.0.113.9",
    "hunter2",
    "sess-abc123secret",
    "tok-secret-abc",
    "170 1234567",
    "s3cr3t-query",
    "client-supplied-key",
    "user-8812",
    "c2VjcmV0",
];

fn event_json() -> String {
    serde_json::json!({
        "event": "webinar.joined",
        "timestamp": "2024-05-01T10:23:45Z",
        "user_id": "user-8812",
        "email": EMAIL,
        "name": NAME,
        "participant": {"role": "attendee", "name": NAME, "phone": "+49 170 1234567"},
        "context": {
            "ip": CLIENT_IP,
            "user_agent": UA,
            "country": "DE",
            "page": {"url": "https://app.example/w/42?email=alice.example%40corp.example&utm_source=mail"}
        },
        "properties": {"message": "please mail alice.example@corp.example", "duration_s": 1800},
        "password": "hunter2",
        "unnamed": {"nested": "value"}
    })
    .to_string()
}

fn audience_engine() -> Engine {
    engine(AUDIENCE)
}

fn transform(engine: &Engine, format: Format, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    engine
        .transform(format, input, &mut out)
        .expect("the expected output transforms");
    out
}

fn email_token() -> Regex {
    Regex::new(r"^k1_[0-9a-z]+@pseudonym\.invalid$").unwrap()
}

/// A config with one listener, `[limits]`, upstream `up` and `routes`.
fn config(up_url: &str, upstream_extra: &str, limits: &str, routes: &str) -> String {
    format!(
        "[[listener]]\naddr = \"127.0.0.1:0\"\n\n[limits]\n{limits}\n\n\
         [upstream.up]\nurl = \"{up_url}\"\n{upstream_extra}\n\n{routes}\n"
    )
}

/// One route passing `/pass/` through to the upstream `up`.
const PASS_ROUTE: &str =
    "[[route]]\npath_prefix = \"/pass/\"\nupstream = \"up\"\npass_through = true\n";

/// POSTs [`event_json`] to `path` of `proxy`.
async fn send_event(client: &HttpClient, proxy: &Proxy, path: &str) -> Reply {
    send(
        client,
        post(&proxy.url(path), "application/json", full(event_json())),
    )
    .await
}

/// `/collect/` through the shipped audience-analytics rule file.
fn audience_route() -> String {
    format!(
        "[[route]]\npath_prefix = \"/collect/\"\nupstream = \"up\"\nrules = {}\n",
        toml_path(&manifest_dir().join("rules/audience-analytics.toml"))
    )
}

async fn audience_proxy(up: &Upstream, upstream_extra: &str, limits: &str) -> Proxy {
    Proxy::start(
        tempdir(),
        &config(&up.url(), upstream_extra, limits, &audience_route()),
    )
    .await
}

fn as_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(body).into_owned()
        )
    })
}

// --- HTTP/1.1, headers, query, path ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_json_request_is_rewritten_end_to_end() {
    std::env::set_var("SCRIM_E2E_PROXY_TEST_API_KEY_5D1C", "sk-e2e-upstream-key");
    let up = Upstream::start(ok_responder()).await;
    let xff = if AUDIENCE.contains("header = \"x-forwarded-for\"") {
        ""
    } else {
        XFF_RULE
    };
    let rules = format!("{AUDIENCE}\n{xff}{EXTRA_HEADER_RULES}");
    let cfg = config(
        &format!("{}/base/", up.url()),
        "headers = { \"X-Api-Key\" = \"${SCRIM_E2E_PROXY_TEST_API_KEY_5D1C}\" }",
        "",
        &format!(
            "[[route]]\npath_prefix = \"/collect/\"\nmethods = [\"POST\"]\n\
             rewrite = \"/v2/ingest/\"\nupstream = \"up\"\ninline_rules = '''\n{rules}\n'''\n"
        ),
    );
    let proxy = Proxy::start(tempdir(), &cfg).await;
    let expect = engine(&rules);

    let query = "email=Alice.Example%40corp.example&utm_source=newsletter&token=s3cr3t-query";
    let body = event_json();
    let cookie = "session=sess-abc123secret; theme=dark; _ga=GA1.2.99999";
    let req = Request::post(proxy.url(&format!("/collect/events?{query}")))
        .header("content-type", "application/json")
        .header("user-agent", UA)
        .header("cookie", cookie)
        .header("authorization", "Bearer tok-secret-abc")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("x-forwarded-for", "198.51.100.23, 203.0.113.9")
        .header("x-request-id", "req-42")
        .header("connection", "x-trace")
        .header("x-trace", "trace-named-by-connection")
        .header("te", "trailers")
        .header("x-user-email", EMAIL)
        .header("x-api-key", "client-supplied-key")
        .header("x-unlisted", "alice.example@corp.example")
        .header("accept-language", "de-DE")
        .body(full(body.clone()))
        .unwrap();
    let reply = send(&h1_client(), req).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.text(), r#"{"ok":true}"#);

    let rec = up.only_request().await;
    assert!(rec.complete);
    assert_eq!(rec.method, "POST");

    // Path: the prefix rewritten and the upstream's base path in front;
    // query: through the query rules.
    let mut expected_query = String::new();
    expect.query(query, &mut expected_query).unwrap();
    assert!(
        expected_query.contains("utm_source=newsletter"),
        "{expected_query}"
    );
    assert!(!expected_query.contains("token"), "{expected_query}");
    assert_eq!(
        rec.path_and_query,
        format!("/base/v2/ingest/events?{expected_query}")
    );

    // Body: exactly what the engine makes of it, re-framed.
    let expected_body = transform(&expect, Format::Json, body.as_bytes());
    assert_eq!(
        String::from_utf8_lossy(&rec.body),
        String::from_utf8_lossy(&expected_body)
    );
    let v = as_json(&rec.body);
    let token = v["email"].as_str().expect("email is forwarded as a token");
    assert!(email_token().is_match(token), "{token}");
    assert_eq!(v["event"], "webinar.joined");
    assert_eq!(v["context"]["country"], "DE");
    assert_eq!(v["participant"]["role"], "attendee");
    assert!(v.get("password").is_none(), "unnamed field forwarded: {v}");
    assert!(v.get("unnamed").is_none(), "unnamed field forwarded: {v}");
    assert!(v["participant"].get("phone").is_none(), "{v}");
    assert_eq!(
        rec.header("content-length"),
        Some(rec.body.len().to_string().as_str()),
        "Content-Length must be the rewritten body's"
    );
    assert_ne!(rec.body.len(), body.len());
    assert_eq!(rec.header("content-type"), Some("application/json"));

    // Headers.
    assert_eq!(rec.header("host"), Some(up.addr.to_string().as_str()));
    let api_keys: Vec<_> = rec.headers.get_all("x-api-key").iter().collect();
    assert_eq!(api_keys, ["sk-e2e-upstream-key"], "injected header wins");
    let ua = expect.header("user-agent", UA).unwrap();
    assert_ne!(ua, UA);
    assert_eq!(rec.header("user-agent"), Some(ua.as_str()));
    let cookies = expect.cookies(cookie).unwrap();
    assert!(cookies.starts_with("session=k1_"), "{cookies}");
    assert!(!cookies.contains("theme") && !cookies.contains("_ga"));
    assert_eq!(rec.header("cookie"), Some(cookies.as_str()));
    let xff: Vec<String> = ["198.51.100.23", "203.0.113.9", "127.0.0.1"]
        .iter()
        .map(|ip| expect.header("x-forwarded-for", ip).unwrap())
        .collect();
    assert_eq!(rec.header("x-forwarded-for"), Some(xff.join(", ").as_str()));
    assert_eq!(
        rec.header("x-forwarded-for"),
        Some("198.51.100.0, 203.0.113.0, 127.0.0.0")
    );
    assert_eq!(rec.header("x-request-id"), Some("req-42"));
    assert_eq!(
        rec.header("x-user-email"),
        Some(token),
        "a header and a body field with one email and kind get one token"
    );
    assert_eq!(rec.header("accept-language"), Some("de-DE"));
    for gone in [
        "authorization",
        "proxy-authorization",
        "connection",
        "x-trace",
        "te",
        "keep-alive",
        "x-unlisted",
    ] {
        assert!(
            rec.headers.get(gone).is_none(),
            "{gone} reached the upstream"
        );
    }
    let allowed = [
        "host",
        "content-type",
        "content-length",
        "user-agent",
        "cookie",
        "x-forwarded-for",
        "x-request-id",
        "x-user-email",
        "x-api-key",
        "accept-language",
    ];
    for name in rec.headers.keys() {
        assert!(
            allowed.contains(&name.as_str()),
            "unexpected header {name} upstream"
        );
    }

    assert_no_leak("the upstream request", &rec.everything(), SECRETS);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_never_pass_even_with_default_keep() {
    let up = Upstream::start(ok_responder()).await;
    let rules = rule_file("ops", "ops", "keep", "");
    let routes = format!("[[route]]\nupstream = \"up\"\ninline_rules = '''\n{rules}\n'''\n");
    let proxy = Proxy::start(tempdir(), &config(&up.url(), "", "", &routes)).await;
    let req = Request::get(proxy.url("/anything"))
        .header("connection", "x-named-hop")
        .header("x-named-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("te", "trailers")
        .header("x-custom", "passes")
        .body(empty())
        .unwrap();
    let reply = send(&h1_client(), req).await;
    assert_eq!(reply.status, StatusCode::OK);
    let rec = up.only_request().await;
    assert_eq!(rec.header("x-custom"), Some("passes"), "default keep works");
    for hop in [
        "connection",
        "x-named-hop",
        "keep-alive",
        "proxy-authorization",
        "te",
    ] {
        assert!(rec.headers.get(hop).is_none(), "{hop} reached the upstream");
    }
    assert_eq!(rec.path_and_query, "/anything");
}

// --- h2c and TLS --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_multiplexes_rewritten_requests() {
    let up = Upstream::start(ok_responder()).await;
    let proxy = audience_proxy(&up, "", "").await;
    let client = h2c_client();
    let a = r#"{"event":"a","email":"alice.example@corp.example","password":"hunter2"}"#;
    let b = r#"{"event":"b","email":"bob@corp.example","name":"Alice Example"}"#;
    let (ra, rb) = tokio::join!(
        send(
            &client,
            post(&proxy.url("/collect/a"), "application/json", full(a))
        ),
        send(
            &client,
            post(&proxy.url("/collect/b"), "application/json", full(b))
        ),
    );
    for r in [&ra, &rb] {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.version, Version::HTTP_2);
    }
    let expect = audience_engine();
    let mut reqs = within("both requests upstream", WAIT, async {
        loop {
            let r = up.requests();
            if r.len() == 2 && r.iter().all(|r| r.complete) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    reqs.sort_by(|x, y| x.path_and_query.cmp(&y.path_and_query));
    assert_eq!(reqs[0].path_and_query, "/collect/a");
    assert_eq!(reqs[0].body, transform(&expect, Format::Json, a.as_bytes()));
    assert_eq!(reqs[1].path_and_query, "/collect/b");
    assert_eq!(reqs[1].body, transform(&expect, Format::Json, b.as_bytes()));
    for r in &reqs {
        assert_no_leak(
            "h2c upstream",
            &r.everything(),
            &[SECRETS, &["bob@"]].concat(),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_negotiates_h2_by_alpn_and_falls_back_to_http1() {
    let up = Upstream::start(ok_responder()).await;
    let cert = test_cert();
    let dir = tempdir();
    std::fs::write(dir.path().join("cert.pem"), &cert.cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &cert.key_pem).unwrap();
    // Relative TLS paths resolve next to the config file.
    let cfg = config(&up.url(), "", "", &audience_route()).replacen(
        "addr = \"127.0.0.1:0\"",
        "addr = \"127.0.0.1:0\"\ntls = { cert = \"cert.pem\", key = \"key.pem\" }",
        1,
    );
    let proxy = Proxy::start(dir, &cfg).await;
    let url = format!("https://127.0.0.1:{}/collect/tls", proxy.addr.port());
    let body = r#"{"event":"tls","email":"alice.example@corp.example","name":"Alice Example"}"#;

    let reply = send(
        &https_client(&cert),
        post(&url, "application/json", full(body)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.version, Version::HTTP_2, "ALPN must pick h2");

    // A client that offers only http/1.1 gets HTTP/1.1 over TLS.
    let h1_only = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_client_config(&cert))
        .https_only()
        .enable_http1()
        .build();
    let h1_client: HttpsClient =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(h1_only);
    let reply = send(&h1_client, post(&url, "application/json", full(body))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.version, Version::HTTP_11);

    // Plain HTTP on the TLS port is not served.
    let plain = tokio::time::timeout(
        WAIT,
        h1_client_plain_get(&format!("http://127.0.0.1:{}/collect/x", proxy.addr.port())),
    )
    .await
    .expect("a plain request to a TLS port ends");
    assert!(plain.is_err(), "plain HTTP answered on a TLS listener");

    let reqs = up.requests();
    assert_eq!(reqs.len(), 2);
    let expected = transform(&audience_engine(), Format::Json, body.as_bytes());
    for r in &reqs {
        assert_eq!(r.body, expected);
        assert_no_leak("TLS upstream", &r.everything(), SECRETS);
    }
}

async fn h1_client_plain_get(url: &str) -> Result<StatusCode, hyper_util::client::legacy::Error> {
    h1_client()
        .request(Request::get(url).body(empty()).unwrap())
        .await
        .map(|r| r.status())
}

/// scrim with `routes`, in front of the TLS upstream `up`, trusting `cert`
/// through `ca_file`.
async fn trusting_tls_upstream(cert: &TestCert, up: &Upstream, routes: &str) -> Proxy {
    let dir = tempdir();
    std::fs::write(dir.path().join("upstream-ca.pem"), &cert.cert_pem).unwrap();
    let cfg = config(
        &format!("https://127.0.0.1:{}", up.addr.port()),
        "ca_file = \"upstream-ca.pem\"",
        "",
        routes,
    );
    Proxy::start(dir, &cfg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_upstream_is_verified_against_its_ca_file() {
    let cert = test_cert();
    let up = Upstream::start_tls(ok_responder(), tls_server_config(&cert)).await;
    let proxy = trusting_tls_upstream(&cert, &up, &audience_route()).await;
    let body = r#"{"event":"x","email":"alice.example@corp.example"}"#;
    let reply = send(
        &h1_client(),
        post(&proxy.url("/collect/t"), "application/json", full(body)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let rec = up.only_request().await;
    assert_eq!(rec.version, Version::HTTP_2, "scrim offers h2 to upstreams");
    assert_eq!(
        rec.body,
        transform(&audience_engine(), Format::Json, body.as_bytes())
    );

    // Without the CA the same upstream is refused (502), never sent data.
    let other = Upstream::start_tls(ok_responder(), tls_server_config(&test_cert())).await;
    let cfg = config(
        &format!("https://127.0.0.1:{}", other.addr.port()),
        "",
        "",
        &audience_route(),
    );
    let proxy = Proxy::start(tempdir(), &cfg).await;
    let reply = send(
        &h1_client(),
        post(&proxy.url("/collect/t"), "application/json", full(body)),
    )
    .await;
    assert_error_reply(&reply, 502, SECRETS);
    assert!(other.requests().is_empty());
}

// --- content encodings ----------------------------------------------------------

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("the upstream body is valid gzip");
    out
}

fn zstd_enc(b: &[u8]) -> Vec<u8> {
    zstd::encode_all(b, 3).unwrap()
}

fn zstd_dec(b: &[u8]) -> Vec<u8> {
    zstd::decode_all(b).expect("the upstream body is valid zstd")
}

async fn compressed_body_round_trip(
    coding: &str,
    enc: fn(&[u8]) -> Vec<u8>,
    dec: fn(&[u8]) -> Vec<u8>,
) {
    let up = Upstream::start(ok_responder()).await;
    let proxy = audience_proxy(&up, "", "").await;
    let body = event_json();
    let req = Request::post(proxy.url("/collect/z"))
        .header("content-type", "application/json")
        .header("content-encoding", coding)
        .body(full(enc(body.as_bytes())))
        .unwrap();
    let reply = send(&h1_client(), req).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let rec = up.only_request().await;
    assert_eq!(rec.header("content-encoding"), Some(coding));
    assert_eq!(
        rec.header("content-length"),
        Some(rec.body.len().to_string().as_str())
    );
    let decoded = dec(&rec.body);
    assert_eq!(
        String::from_utf8_lossy(&decoded),
        String::from_utf8_lossy(&transform(
            &audience_engine(),
            Format::Json,
            body.as_bytes()
        ))
    );
    assert_no_leak(
        "decoded upstream body",
        &String::from_utf8_lossy(&decoded),
        SECRETS,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_request_body_is_rewritten_and_re_gzipped() {
    compressed_body_round_trip("gzip", gzip, gunzip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_request_body_is_rewritten_and_re_zstded() {
    compressed_body_round_trip("zstd", zstd_enc, zstd_dec).await;
}

// --- streaming ------------------------------------------------------------------

const NDJSON_1: &str =
    "{\"event\":\"joined\",\"email\":\"alice.example@corp.example\",\"password\":\"hunter2\"}\n";
const NDJSON_2: &str =
    "{\"event\":\"left\",\"name\":\"Alice Example\",\"user_id\":\"user-8812\"}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_request_streams_line_by_line() {
    let mut up = Upstream::start(ok_responder()).await;
    let proxy = audience_proxy(&up, "", "").await;
    let expect = audience_engine();
    let (tx, body) = channel_body();
    let req = post(&proxy.url("/collect/batch"), "application/x-ndjson", body);
    let client = h1_client();
    let pending = tokio::spawn(async move { send(&client, req).await });

    tx.send(Ok(Bytes::from_static(NDJSON_1.as_bytes())))
        .await
        .unwrap();
    let mut seen = Vec::new();
    up.body_until(&mut seen, |b| b.contains(&b'\n')).await;
    // Line 1 is upstream, rewritten, while line 2 has not been sent yet.
    assert_eq!(
        String::from_utf8_lossy(&seen),
        String::from_utf8_lossy(&transform(&expect, Format::Ndjson, NDJSON_1.as_bytes()))
    );
    assert!(!pending.is_finished());
    assert!(!up.requests()[0].complete);

    tx.send(Ok(Bytes::from_static(NDJSON_2.as_bytes())))
        .await
        .unwrap();
    drop(tx);
    let reply = within("the streamed request", WAIT, pending).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let rec = up.only_request().await;
    assert!(rec.complete);
    let all = format!("{NDJSON_1}{NDJSON_2}");
    assert_eq!(
        String::from_utf8_lossy(&rec.body),
        String::from_utf8_lossy(&transform(&expect, Format::Ndjson, all.as_bytes()))
    );
    assert!(
        rec.headers.get("content-length").is_none(),
        "streamed: chunked"
    );
    assert_no_leak("the streamed upstream body", &rec.everything(), SECRETS);
}

const SSE_RESPONSE_RULES: &str = r#"
[[rule]]
field = "**.email"
action = "pseudonymise"
kind = "email"

[[rule]]
field = "n"
action = "keep"
"#;

/// An upstream whose one response is `text/event-stream`, fed by the test.
fn sse_upstream_responder() -> (mpsc::Sender<Bytes>, Responder) {
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let slot = Arc::new(Mutex::new(Some(rx)));
    let responder: Responder = Arc::new(move |_| {
        let rx = slot.lock().unwrap().take();
        Box::pin(async move {
            let Some(mut rx) = rx else {
                return json_response(StatusCode::CONFLICT, r#"{"once":true}"#);
            };
            let stream = futures_util::stream::poll_fn(move |cx| {
                rx.poll_recv(cx)
                    .map(|o| o.map(|b| Ok::<_, BoxError>(Frame::data(b))))
            });
            http::Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(StreamBody::new(stream).boxed_unsync())
                .unwrap()
        })
    });
    (tx, responder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_response_is_rewritten_event_by_event() {
    let (events, responder) = sse_upstream_responder();
    let up = Upstream::start(responder).await;
    let dir = tempdir();
    let resp_rules = rule_file("live-feed", "browser", "drop", SSE_RESPONSE_RULES);
    std::fs::write(dir.path().join("sse-response.toml"), &resp_rules).unwrap();
    let req_rules = rule_file("live-feed", "upstream", "drop", "");
    let routes = format!(
        "[[route]]\npath = \"/events\"\nmethods = [\"GET\"]\nupstream = \"up\"\n\
         response_rules = \"sse-response.toml\"\ninline_rules = '''\n{req_rules}\n'''\n"
    );
    let proxy = Proxy::start(dir, &config(&up.url(), "", "", &routes)).await;
    let expect = engine(&resp_rules);
    let data1 = r#"{"email":"alice.example@corp.example","n":1,"secret":"hunter2"}"#;
    let data3 = r#"{"email":"bob@corp.example","n":3}"#;
    let event1 = format!(
        "data: {}\n\n",
        String::from_utf8(transform(&expect, Format::Json, data1.as_bytes())).unwrap()
    );

    events
        .send(Bytes::from(format!("data: {data1}\n\n")))
        .await
        .unwrap();
    let res = within(
        "the SSE response head",
        WAIT,
        h1_client().request(Request::get(proxy.url("/events")).body(empty()).unwrap()),
    )
    .await
    .expect("scrim answers");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    assert!(res.headers().get("content-length").is_none());
    let mut body = res.into_body();
    let mut got = Vec::new();
    within("the first rewritten event", WAIT, async {
        while !got.windows(2).any(|w| w == b"\n\n") {
            let frame = body.frame().await.expect("the stream is open").unwrap();
            if let Ok(d) = frame.into_data() {
                got.extend_from_slice(&d);
            }
        }
    })
    .await;
    // The client holds event 1 while the upstream has not produced the rest.
    assert_eq!(String::from_utf8_lossy(&got), event1);
    let token = as_json(&got[6..got.len() - 2])["email"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(email_token().is_match(&token), "{token}");

    for ev in [
        ": keep-alive from alice.example@corp.example\n\n".to_owned(),
        "event: note\ndata: not json, says alice.example@corp.example\n\n".to_owned(),
        format!("id: 3\ndata: {data3}\n\n"),
    ] {
        tokio::time::sleep(Duration::from_millis(20)).await;
        events.send(Bytes::from(ev)).await.unwrap();
    }
    drop(events);
    let rest = within("the end of the SSE stream", WAIT, body.collect())
        .await
        .expect("the stream ends cleanly")
        .to_bytes();
    got.extend_from_slice(&rest);
    let event3 = format!(
        "id: 3\ndata: {}\n\n",
        String::from_utf8(transform(&expect, Format::Json, data3.as_bytes())).unwrap()
    );
    assert_eq!(
        String::from_utf8_lossy(&got),
        format!("{event1}:\n\n{event3}"),
        "comment text and the non-JSON event are gone"
    );
    assert_no_leak(
        "the SSE stream",
        &String::from_utf8_lossy(&got),
        &[SECRETS, &["bob@corp.example", "not json", "event: note"]].concat(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_response_is_rewritten_with_a_new_length() {
    let responder: Responder = Arc::new(|_| {
        Box::pin(async {
            let mut r = json_response(
                StatusCode::CREATED,
                r#"{"email":"alice.example@corp.example","n":7,"internal":"hunter2"}"#,
            );
            r.headers_mut()
                .insert("x-upstream", http::HeaderValue::from_static("yes"));
            r
        })
    });
    let up = Upstream::start(responder).await;
    let dir = tempdir();
    let resp_rules = rule_file("api", "browser", "drop", SSE_RESPONSE_RULES);
    std::fs::write(dir.path().join("resp.toml"), &resp_rules).unwrap();
    let routes = format!(
        "[[route]]\npath = \"/me\"\nupstream = \"up\"\nresponse_rules = \"resp.toml\"\n\
         inline_rules = '''\n{}\n'''\n",
        rule_file("api", "upstream", "drop", "")
    );
    let proxy = Proxy::start(dir, &config(&up.url(), "", "", &routes)).await;
    let reply = send(
        &h1_client(),
        Request::get(proxy.url("/me")).body(empty()).unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.headers.get("x-upstream").unwrap(), "yes");
    let v = as_json(&reply.body);
    assert!(email_token().is_match(v["email"].as_str().unwrap()), "{v}");
    assert_eq!(v["n"], 7);
    assert!(v.get("internal").is_none());
    assert_eq!(
        reply.headers.get("content-length").unwrap(),
        &reply.body.len().to_string()
    );
}

// --- fail closed ------------------------------------------------------------------

const PERSONAL: &[&str] = &["alice.example@corp.example", "alice example"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400_and_not_forwarded() {
    let up = Upstream::start(ok_responder()).await;
    let proxy = audience_proxy(&up, "", "").await;
    let body = r#"{"email":"alice.example@corp.example","name":"Alice Example","x":"#;
    let reply = send(
        &h1_client(),
        post(&proxy.url("/collect/e"), "application/json", full(body)),
    )
    .await;
    assert_error_reply(&reply, 400, PERSONAL);
    up.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_content_type_is_415_and_not_forwarded() {
    let up = Upstream::start(ok_responder()).await;
    let proxy = audience_proxy(&up, "", "").await;
    let client = h1_client();
    let reply = send(
        &client,
        post(
            &proxy.url("/collect/e"),
            "text/plain",
            full("alice.example@corp.example"),
        ),
    )
    .await;
    assert_error_reply(&reply, 415, PERSONAL);
    // No Content-Type at all is no better.
    let req = Request::post(proxy.url("/collect/e"))
        .body(full(r#"{"email":"alice.example@corp.example"}"#))
        .unwrap();
    let reply = send(&client, req).await;
    assert_error_reply(&reply, 415, PERSONAL);
    up.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_content_encoding_is_415_and_not_forwarded() {
    let up = Upstream::start(ok_responder()).await;
    let proxy = audience_proxy(&up, "", "").await;
    let req = Request::post(proxy.url("/collect/e"))
        .header("content-type", "application/json")
        .header("content-encoding", "compress")
        .body(full(r#"{"email":"alice.example@corp.example"}"#))
        .unwrap();
    let reply = send(&h1_client(), req).await;
    assert_error_reply(&reply, 415, PERSONAL);
    up.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_max_body_bytes_is_413_declared_or_chunked() {
    let up = Upstream::start(ok_responder()).await;
    let proxy = audience_proxy(&up, "", "max_body_bytes = 1024").await;
    let big = format!(
        r#"{{"email":"alice.example@corp.example","pad":"{}"}}"#,
        "x".repeat(4096)
    );
    // Declared length over the limit.
    let reply = send(
        &h1_client(),
        post(
            &proxy.url("/collect/e"),
            "application/json",
            full(big.clone()),
        ),
    )
    .await;
    assert_error_reply(&reply, 413, PERSONAL);
    // Chunked, no length: refused while reading.
    let (tx, body) = channel_body();
    let client = h1_client();
    let req = post(&proxy.url("/collect/e"), "application/json", body);
    let pending = tokio::spawn(async move { send(&client, req).await });
    for part in big.as_bytes().chunks(800) {
        if tx.send(Ok(Bytes::copy_from_slice(part))).await.is_err() {
            break;
        }
    }
    drop(tx);
    let reply = within("the chunked 413", WAIT, pending).await.unwrap();
    assert_error_reply(&reply, 413, PERSONAL);
    // `Expect: 100-continue` with a length over the limit: refused before
    // the client sends a byte of the body.
    let mut s = raw_connect(proxy.addr).await;
    s.write_all(
        b"POST /collect/e HTTP/1.1\r\nHost: scrim\r\nContent-Type: application/json\r\n\
          Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let r = read_raw_response(&mut s).await;
    assert_error_body(413, r.status, &r.body, PERSONAL);
    up.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_bomb_is_413_and_not_forwarded() {
    let up = Upstream::start(ok_responder()).await;
    let proxy = audience_proxy(&up, "", "max_decoded_bytes = 1048576").await;
    // 20 MiB of valid JSON that compresses to almost nothing.
    let mut doc = Vec::with_capacity(20 << 20);
    doc.extend_from_slice(br#"{"email":"alice.example@corp.example","z":["#);
    while doc.len() < 20 << 20 {
        doc.extend_from_slice(b"0,");
    }
    doc.extend_from_slice(b"0]}");
    for (coding, enc) in [("gzip", gzip as fn(&[u8]) -> Vec<u8>), ("zstd", zstd_enc)] {
        let bomb = enc(&doc);
        assert!(
            bomb.len() < 256 << 10,
            "{coding} bomb is {} bytes",
            bomb.len()
        );
        let req = Request::post(proxy.url("/collect/e"))
            .header("content-type", "application/json")
            .header("content-encoding", coding)
            .body(full(bomb))
            .unwrap();
        let reply = send(&h1_client(), req).await;
        assert_error_reply(&reply, 413, PERSONAL);
    }
    up.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_body_is_408_and_not_forwarded() {
    let up = Upstream::start(ok_responder()).await;
    let proxy = audience_proxy(&up, "", "body_timeout_ms = 300").await;
    let mut s = raw_connect(proxy.addr).await;
    let start = Instant::now();
    s.write_all(
        b"POST /collect/e HTTP/1.1\r\nHost: scrim\r\nContent-Type: application/json\r\n\
          Content-Length: 200\r\n\r\n{\"email\":\"alice.example@corp",
    )
    .await
    .unwrap();
    let r = read_raw_response(&mut s).await;
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "answered before the body timeout: {:?}",
        start.elapsed()
    );
    assert_error_body(408, r.status, &r.body, PERSONAL);
    assert!(
        r.head.to_ascii_lowercase().contains("application/json"),
        "{}",
        r.head
    );
    up.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_headers_are_408_and_not_forwarded() {
    let up = Upstream::start(ok_responder()).await;
    let proxy = audience_proxy(&up, "", "header_timeout_ms = 300").await;
    let mut s = raw_connect(proxy.addr).await;
    let start = Instant::now();
    s.write_all(
        b"POST /collect/e HTTP/1.1\r\nHost: scrim\r\nX-User-Email: alice.example@corp.example\r\n",
    )
    .await
    .unwrap();
    let r = read_raw_response(&mut s).await;
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "answered before the header timeout: {:?}",
        start.elapsed()
    );
    assert_error_body(408, r.status, &r.body, PERSONAL);
    assert!(
        r.head.to_ascii_lowercase().contains("application/json"),
        "{}",
        r.head
    );
    up.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_404_and_not_forwarded() {
    let up = Upstream::start(ok_responder()).await;
    let proxy = audience_proxy(&up, "", "").await;
    let client = h1_client();
    for path in [
        "/elsewhere?email=alice.example%40corp.example",
        "/collect",
        "/collectx/e",
        "/collect/../admin",
        "/collect/%2e%2e/admin",
    ] {
        let reply = send(
            &client,
            post(
                &proxy.url(path),
                "application/json",
                full(r#"{"email":"alice.example@corp.example"}"#),
            ),
        )
        .await;
        assert_error_reply(&reply, 404, PERSONAL);
    }
    up.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_is_502() {
    let (_reserved, dead) = dead_addr();
    let cfg = config(
        &format!("http://{dead}"),
        "connect_timeout_ms = 2000",
        "",
        &audience_route(),
    );
    let proxy = Proxy::start(tempdir(), &cfg).await;
    let reply = send(
        &h1_client(),
        post(
            &proxy.url("/collect/e"),
            "application/json",
            full(r#"{"email":"alice.example@corp.example"}"#),
        ),
    )
    .await;
    assert_error_reply(&reply, 502, PERSONAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_is_504() {
    let responder: Responder = Arc::new(|_| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            json_response(StatusCode::OK, r#"{"late":true}"#)
        })
    });
    let up = Upstream::start(responder).await;
    let proxy = audience_proxy(&up, "response_timeout_ms = 300", "").await;
    let start = Instant::now();
    let reply = send(
        &h1_client(),
        post(
            &proxy.url("/collect/e"),
            "application/json",
            full(r#"{"email":"alice.example@corp.example"}"#),
        ),
    )
    .await;
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    assert_error_reply(&reply, 504, PERSONAL);
    // The upstream got the request (it is the slow one), rewritten.
    let rec = up.only_request().await;
    assert_no_leak("the slow upstream's request", &rec.everything(), PERSONAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_with_a_malformed_second_line_is_400_and_the_line_never_leaves() {
    let mut up = Upstream::start(ok_responder()).await;
    let proxy = audience_proxy(&up, "", "").await;
    let (tx, body) = channel_body();
    let req = post(&proxy.url("/collect/batch"), "application/x-ndjson", body);
    let client = h1_client();
    let pending = tokio::spawn(async move { send(&client, req).await });
    tx.send(Ok(Bytes::from_static(NDJSON_1.as_bytes())))
        .await
        .unwrap();
    let mut seen = Vec::new();
    up.body_until(&mut seen, |b| b.contains(&b'\n')).await;
    let bad = "{\"email\":\"bob.raw@corp.example\",\"name\":\"Bob Raw\" oops}\n";
    let _ = tx.send(Ok(Bytes::from_static(bad.as_bytes()))).await;
    let _ = tx
        .send(Ok(Bytes::from_static(b"{\"event\":\"after\"}\n")))
        .await;
    drop(tx);
    let reply = within("the refused stream", WAIT, pending).await.unwrap();
    assert_error_reply(&reply, 400, &["bob.raw@corp.example", "bob raw"]);
    let rec = up.only_request().await;
    assert!(
        rec.aborted,
        "the upstream must see an aborted body, not a complete one"
    );
    assert!(!rec.complete);
    assert_eq!(
        String::from_utf8_lossy(&rec.body),
        String::from_utf8_lossy(&transform(
            &audience_engine(),
            Format::Ndjson,
            NDJSON_1.as_bytes()
        )),
        "only the rewritten first line"
    );
    assert_no_leak(
        "the aborted upstream request",
        &rec.everything(),
        &[SECRETS, &["bob.raw", "bob raw", "oops"]].concat(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_stream_that_stalls_past_the_body_timeout_is_408() {
    let mut up = Upstream::start(ok_responder()).await;
    let proxy = audience_proxy(&up, "", "body_timeout_ms = 300").await;
    let (tx, body) = channel_body();
    let req = post(&proxy.url("/collect/batch"), "application/x-ndjson", body);
    let client = h1_client();
    let pending = tokio::spawn(async move { send(&client, req).await });
    tx.send(Ok(Bytes::from_static(NDJSON_1.as_bytes())))
        .await
        .unwrap();
    let mut seen = Vec::new();
    up.body_until(&mut seen, |b| b.contains(&b'\n')).await;
    // Then nothing: the client holds the body open.
    let reply = within("the stalled stream's answer", WAIT, pending)
        .await
        .unwrap();
    assert_error_reply(&reply, 408, PERSONAL);
    let rec = up.only_request().await;
    assert!(
        rec.aborted && !rec.complete,
        "a stalled body must not end cleanly upstream"
    );
    drop(tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_that_cannot_be_rewritten_is_502_and_never_passes_raw() {
    let responder: Responder = Arc::new(|rec| {
        Box::pin(async move {
            let raw = r#"{"email":"alice.example@corp.example","name":"Alice Example""#;
            match rec.path_and_query.as_str() {
                "/html" => http::Response::builder()
                    .header("content-type", "text/html")
                    .body(full("<p>alice.example@corp.example</p>"))
                    .unwrap(),
                "/enc" => http::Response::builder()
                    .header("content-type", "application/json")
                    .header("content-encoding", "x-unknown")
                    .body(full(raw))
                    .unwrap(),
                _ => json_response(StatusCode::OK, raw),
            }
        })
    });
    let up = Upstream::start(responder).await;
    let dir = tempdir();
    let resp_rules = rule_file("api", "browser", "drop", SSE_RESPONSE_RULES);
    std::fs::write(dir.path().join("resp.toml"), &resp_rules).unwrap();
    let routes = format!(
        "[[route]]\nupstream = \"up\"\nresponse_rules = \"resp.toml\"\n\
         inline_rules = '''\n{}\n'''\n",
        rule_file("api", "upstream", "drop", "")
    );
    let proxy = Proxy::start(dir, &config(&up.url(), "", "", &routes)).await;
    let client = h1_client();
    for path in ["/malformed", "/html", "/enc"] {
        let reply = send(
            &client,
            Request::get(proxy.url(path)).body(empty()).unwrap(),
        )
        .await;
        assert_error_reply(&reply, 502, PERSONAL);
    }
    assert_eq!(up.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_refuses_new_connections_drains_in_flight_and_then_ends_streams() {
    let (events, sse) = sse_upstream_responder();
    let responder: Responder = Arc::new(move |rec| {
        if rec.path_and_query == "/events" {
            return sse(rec);
        }
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            json_response(StatusCode::OK, r#"{"ok":true}"#)
        })
    });
    let up = Upstream::start(responder).await;
    let routes = format!(
        "{}\n[[route]]\npath = \"/events\"\nupstream = \"up\"\ninline_rules = '''\n{}\n'''\n",
        audience_route(),
        rule_file("feed", "upstream", "drop", "")
    );
    let drain = Duration::from_millis(3000);
    let proxy =
        Proxy::start_with_drain(tempdir(), &config(&up.url(), "", "", &routes), drain).await;
    let addr = proxy.addr;

    // An open event stream that the upstream never ends.
    events
        .send(Bytes::from_static(b"data: {}\n\n"))
        .await
        .unwrap();
    let res = within(
        "the stream's head",
        WAIT,
        h1_client().request(Request::get(proxy.url("/events")).body(empty()).unwrap()),
    )
    .await
    .unwrap();
    let mut stream = res.into_body();
    let first = within("the first event", WAIT, stream.frame()).await;
    assert!(matches!(first, Some(Ok(_))));

    // A request in flight when stop is called.
    let client = h1_client();
    let url = proxy.url("/collect/slow");
    let in_flight = tokio::spawn(async move {
        send(
            &client,
            post(&url, "application/json", full(r#"{"event":"e"}"#)),
        )
        .await
    });
    within("the slow request upstream", WAIT, async {
        while !up
            .requests()
            .iter()
            .any(|r| r.path_and_query == "/collect/slow")
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;

    let started = Instant::now();
    let stopping = tokio::spawn(proxy.stop());
    // New connections are refused at once, not parked in the backlog until
    // the drain ends.
    within(
        "the listener to close",
        Duration::from_millis(2500),
        async {
            loop {
                match tokio::net::TcpStream::connect(addr).await {
                    Err(_) => return,
                    Ok(mut s) => {
                        // Accepted by the kernel: must still be served, or closed.
                        let _ = s
                            .write_all(b"GET /collect/x HTTP/1.1\r\nHost: a\r\n\r\n")
                            .await;
                        let mut buf = [0u8; 64];
                        match tokio::time::timeout(
                            Duration::from_millis(1500),
                            tokio::io::AsyncReadExt::read(&mut s, &mut buf),
                        )
                        .await
                        {
                            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                            Err(_) => panic!("a new connection hangs while scrim drains"),
                        }
                    }
                }
            }
        },
    )
    .await;
    // The in-flight request completes.
    let reply = within("the in-flight request", WAIT, in_flight)
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    // Stop returns once the drain time is up (the stream never ends)...
    within("stop", WAIT, stopping).await.unwrap();
    assert!(started.elapsed() >= drain - Duration::from_millis(100));
    // ...and the stream it could not drain is closed, not served on.
    let end = within(
        "the undrained stream to close after stop",
        Duration::from_secs(2),
        async {
            loop {
                match stream.frame().await {
                    Some(Ok(_)) => continue,
                    other => return other.map(|r| r.map(|_| ())),
                }
            }
        },
    )
    .await;
    assert!(
        !matches!(end, Some(Ok(()))),
        "the stream is still being served"
    );
    drop(events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_cookie_fields_reach_an_http1_upstream_as_one_cookie_header() {
    let up = Upstream::start(ok_responder()).await;
    let rules =
        format!("{AUDIENCE}\n[[rule]]\nid = \"lang\"\ncookie = \"lang\"\naction = \"keep\"\n");
    let routes = format!(
        "[[route]]\npath_prefix = \"/collect/\"\nupstream = \"up\"\ninline_rules = '''\n{rules}\n'''\n"
    );
    let proxy = Proxy::start(tempdir(), &config(&up.url(), "", "", &routes)).await;
    // HTTP/2 clients send each cookie as its own field (RFC 9113 8.2.3).
    let req = Request::get(proxy.url("/collect/c"))
        .header("cookie", "session=sess-abc123secret")
        .header("cookie", "theme=dark")
        .header("cookie", "lang=de")
        .body(empty())
        .unwrap();
    let reply = send(&h2c_client(), req).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let rec = up.only_request().await;
    assert_eq!(rec.version, Version::HTTP_11);
    let cookies: Vec<&str> = rec
        .headers
        .get_all("cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let expected = engine(&rules)
        .cookies("session=sess-abc123secret; theme=dark; lang=de")
        .unwrap();
    assert!(expected.ends_with("; lang=de"), "{expected}");
    assert_eq!(
        cookies,
        [expected.as_str()],
        "HTTP/1.1 allows one Cookie header: the fields must be joined with \"; \""
    );
    assert_no_leak("the cookie header", &rec.everything(), SECRETS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_upload_longer_than_the_response_timeout_is_not_a_504() {
    let up = Upstream::start(ok_responder()).await;
    let proxy = audience_proxy(&up, "response_timeout_ms = 300", "body_timeout_ms = 2000").await;
    let (tx, body) = channel_body();
    let req = post(&proxy.url("/collect/batch"), "application/x-ndjson", body);
    let client = h1_client();
    let pending = tokio::spawn(async move { send(&client, req).await });
    // A client streaming steadily for three times the response timeout: the
    // upstream cannot answer before the body ends, so it is not late.
    let mut all = String::new();
    for i in 0..9 {
        let line = format!("{{\"event\":\"e{i}\",\"email\":\"alice.example@corp.example\"}}\n");
        all.push_str(&line);
        if tx.send(Ok(Bytes::from(line))).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(tx);
    let reply = within("the streamed upload", WAIT, pending).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let rec = up.only_request().await;
    assert!(rec.complete);
    assert_eq!(
        rec.body,
        transform(&audience_engine(), Format::Ndjson, all.as_bytes())
    );
}

/// A client-side streaming compressor: each `push` is flushed so it can be
/// decoded at once; `finish` ends the stream.
enum Compressor {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Compressor {
    fn new(coding: &str) -> Self {
        match coding {
            "gzip" => Compressor::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            )),
            _ => Compressor::Zstd(zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap()),
        }
    }

    fn push(&mut self, data: &[u8]) -> Bytes {
        let buf = match self {
            Compressor::Gzip(e) => {
                e.write_all(data).unwrap();
                e.flush().unwrap();
                e.get_mut()
            }
            Compressor::Zstd(e) => {
                e.write_all(data).unwrap();
                e.flush().unwrap();
                e.get_mut()
            }
        };
        Bytes::from(std::mem::take(buf))
    }

    fn finish(self) -> Bytes {
        Bytes::from(match self {
            Compressor::Gzip(e) => e.finish().unwrap(),
            Compressor::Zstd(e) => e.finish().unwrap(),
        })
    }
}

/// Decodes as much of a (possibly unfinished) compressed stream as it can.
fn decode_prefix(coding: &str, b: &[u8]) -> Vec<u8> {
    match coding {
        "gzip" => {
            let mut d = flate2::write::GzDecoder::new(Vec::new());
            let _ = d.write_all(b);
            let _ = d.flush();
            d.get_ref().clone()
        }
        _ => {
            let mut d = zstd::stream::write::Decoder::new(Vec::new()).unwrap();
            let _ = d.write_all(b);
            let _ = d.flush();
            d.get_ref().clone()
        }
    }
}

async fn compressed_ndjson_streams(coding: &'static str) {
    let mut up = Upstream::start(ok_responder()).await;
    let proxy = audience_proxy(&up, "", "").await;
    let expect = audience_engine();
    let (tx, body) = channel_body();
    let req = Request::post(proxy.url("/collect/batch"))
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", coding)
        .body(body)
        .unwrap();
    let client = h1_client();
    let pending = tokio::spawn(async move { send(&client, req).await });

    let mut enc = Compressor::new(coding);
    tx.send(Ok(enc.push(NDJSON_1.as_bytes()))).await.unwrap();
    // What the upstream holds so far decodes to the rewritten line 1: scrim
    // flushes its encoder per line instead of holding the line back.
    let mut seen = Vec::new();
    up.body_until(&mut seen, |b| decode_prefix(coding, b).contains(&b'\n'))
        .await;
    assert_eq!(
        String::from_utf8_lossy(&decode_prefix(coding, &seen)),
        String::from_utf8_lossy(&transform(&expect, Format::Ndjson, NDJSON_1.as_bytes()))
    );
    assert!(!pending.is_finished());

    tx.send(Ok(enc.push(NDJSON_2.as_bytes()))).await.unwrap();
    tx.send(Ok(enc.finish())).await.unwrap();
    drop(tx);
    let reply = within("the compressed stream", WAIT, pending)
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let rec = up.only_request().await;
    assert!(rec.complete);
    assert_eq!(rec.header("content-encoding"), Some(coding));
    let full_decode = match coding {
        "gzip" => gunzip(&rec.body),
        _ => zstd_dec(&rec.body),
    };
    let all = format!("{NDJSON_1}{NDJSON_2}");
    assert_eq!(
        String::from_utf8_lossy(&full_decode),
        String::from_utf8_lossy(&transform(&expect, Format::Ndjson, all.as_bytes()))
    );
    assert_no_leak(
        "the decoded stream",
        &String::from_utf8_lossy(&full_decode),
        SECRETS,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_ndjson_request_streams_line_by_line() {
    compressed_ndjson_streams("gzip").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_ndjson_request_streams_line_by_line() {
    compressed_ndjson_streams("zstd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_sse_response_is_rewritten_event_by_event() {
    let (events, responder) = sse_upstream_responder();
    let responder: Responder = Arc::new(move |rec| {
        let fut = responder(rec);
        Box::pin(async move {
            let mut res = fut.await;
            res.headers_mut()
                .insert("content-encoding", http::HeaderValue::from_static("gzip"));
            res
        })
    });
    let up = Upstream::start(responder).await;
    let dir = tempdir();
    let resp_rules = rule_file("live-feed", "browser", "drop", SSE_RESPONSE_RULES);
    std::fs::write(dir.path().join("sse-response.toml"), &resp_rules).unwrap();
    let routes = format!(
        "[[route]]\npath = \"/events\"\nupstream = \"up\"\nresponse_rules = \"sse-response.toml\"\n\
         inline_rules = '''\n{}\n'''\n",
        rule_file("live-feed", "upstream", "drop", "")
    );
    let proxy = Proxy::start(dir, &config(&up.url(), "", "", &routes)).await;
    let expect = engine(&resp_rules);
    let data1 = r#"{"email":"alice.example@corp.example","n":1}"#;
    let data2 = r#"{"email":"bob@corp.example","n":2}"#;
    let rewritten = |d: &str| {
        format!(
            "data: {}\n\n",
            String::from_utf8(transform(&expect, Format::Json, d.as_bytes())).unwrap()
        )
    };

    let mut enc = Compressor::new("gzip");
    events
        .send(enc.push(format!("data: {data1}\n\n").as_bytes()))
        .await
        .unwrap();
    let res = within(
        "the SSE response head",
        WAIT,
        h1_client().request(Request::get(proxy.url("/events")).body(empty()).unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers().get("content-encoding").unwrap(), "gzip");
    let mut body = res.into_body();
    let mut got = Vec::new();
    within("the first rewritten event", WAIT, async {
        while !decode_prefix("gzip", &got).ends_with(b"\n\n") {
            let frame = body.frame().await.expect("the stream is open").unwrap();
            if let Ok(d) = frame.into_data() {
                got.extend_from_slice(&d);
            }
        }
    })
    .await;
    // Event 1 arrived, decodable, before the upstream produced event 2.
    assert_eq!(
        String::from_utf8_lossy(&decode_prefix("gzip", &got)),
        rewritten(data1)
    );
    events
        .send(enc.push(format!("data: {data2}\n\n").as_bytes()))
        .await
        .unwrap();
    events.send(enc.finish()).await.unwrap();
    drop(events);
    let rest = within("the end of the stream", WAIT, body.collect())
        .await
        .unwrap()
        .to_bytes();
    got.extend_from_slice(&rest);
    let all = gunzip(&got);
    assert_eq!(
        String::from_utf8_lossy(&all),
        format!("{}{}", rewritten(data1), rewritten(data2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_upload_to_an_upstream_that_never_answers_is_504() {
    let responder: Responder = Arc::new(|_| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            json_response(StatusCode::OK, r#"{"late":true}"#)
        })
    });
    let up = Upstream::start(responder).await;
    let proxy = audience_proxy(&up, "response_timeout_ms = 300", "").await;
    let (tx, body) = channel_body();
    let req = post(&proxy.url("/collect/batch"), "application/x-ndjson", body);
    let client = h1_client();
    let start = Instant::now();
    let pending = tokio::spawn(async move { send(&client, req).await });
    tx.send(Ok(Bytes::from_static(NDJSON_1.as_bytes())))
        .await
        .unwrap();
    drop(tx);
    let reply = within("the 504", WAIT, pending).await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    assert_error_reply(&reply, 504, PERSONAL);
    let rec = up.only_request().await;
    assert!(rec.complete);
    assert_no_leak("the slow upstream's request", &rec.everything(), SECRETS);
}

/// A streamed body may be far larger than `max_decoded_bytes`: the cap bounds
/// what one chunk expands to (memory), not the stream (regression: the cap
/// used to count the whole stream, cutting long NDJSON uploads and SSE feeds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_ndjson_larger_than_the_decoded_cap_passes() {
    let up = Upstream::start(ok_responder()).await;
    let proxy = audience_proxy(&up, "", "max_decoded_bytes = 65536").await;
    let expect = audience_engine();
    let line = "{\"event\":\"feature_used\",\"participant\":{\"email\":\"alice.example@corp.example\"},\"properties\":{\"feature\":\"reactions\"}}\n";
    let lines = 8_000; // about 1 MiB decoded, 16 times the cap
    let (tx, body) = channel_body();
    let mut req = post(&proxy.url("/collect/batch"), "application/x-ndjson", body);
    req.headers_mut()
        .insert("content-encoding", http::HeaderValue::from_static("gzip"));
    let client = h1_client();
    let pending = tokio::spawn(async move { send(&client, req).await });
    // One gzip stream, sent in many chunks of about 100 lines each.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for i in 0..lines {
        std::io::Write::write_all(&mut enc, line.as_bytes()).unwrap();
        if i % 100 == 99 {
            std::io::Write::flush(&mut enc).unwrap();
            let chunk = std::mem::take(enc.get_mut());
            tx.send(Ok(Bytes::from(chunk))).await.unwrap();
        }
    }
    let rest = enc.finish().unwrap();
    tx.send(Ok(Bytes::from(rest))).await.unwrap();
    drop(tx);
    let reply = within("the large streamed request", WAIT, pending)
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let rec = up.only_request().await;
    let got = gunzip(&rec.body);
    let one = transform(&expect, Format::Ndjson, line.as_bytes());
    assert_eq!(got.len(), one.len() * lines, "every line arrived rewritten");
    assert!(got.chunks(one.len()).all(|c| c == one.as_slice()));
}

// === pass-through routes ========================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_through_route_forwards_unchanged_and_only_where_declared() {
    let up = Upstream::start(Arc::new(|_| {
        Box::pin(async {
            http::Response::builder()
                .status(StatusCode::CREATED)
                .header("content-type", "application/octet-stream")
                .header("x-upstream", "yes")
                .body(full(&b"\x00raw response\xff"[..]))
                .unwrap()
        })
    }))
    .await;
    let routes = format!(
        "[[route]]\npath_prefix = \"/assets/\"\nupstream = \"up\"\npass_through = true\n\n{}",
        audience_route()
    );
    let proxy = Proxy::start(tempdir(), &config(&up.url(), "", "", &routes)).await;
    let body = gzip(b"anything at all, even ann@example.org");
    let mut req = post(
        &proxy.url("/assets/app.js?v=3&user=ann%40example.org"),
        "application/x-whatever",
        full(body.clone()),
    );
    for (k, v) in [
        ("content-encoding", "gzip"),
        ("cookie", "session=abc"),
        ("x-custom", "kept"),
        ("connection", "x-hop"),
        ("x-hop", "dropped"),
    ] {
        req.headers_mut().insert(
            http::HeaderName::from_static(k),
            http::HeaderValue::from_static(v),
        );
    }
    let r = send(&h1_client(), req).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body, b"\x00raw response\xff");
    assert_eq!(r.headers["x-upstream"], "yes");
    let got = up.only_request().await;
    assert_eq!(got.body, body, "the body leaves byte for byte");
    assert_eq!(
        got.path_and_query,
        "/assets/app.js?v=3&user=ann%40example.org"
    );
    assert_eq!(got.header("cookie"), Some("session=abc"));
    assert_eq!(got.header("x-custom"), Some("kept"));
    assert_eq!(got.header("content-encoding"), Some("gzip"));
    assert_eq!(got.header("x-hop"), None, "hop-by-hop headers never pass");
    assert_eq!(
        got.header("host"),
        Some(up.addr.to_string().as_str()),
        "the upstream's host, not the client's"
    );
    // Beside it, a route with rules still rewrites.
    let r = send_event(&h1_client(), &proxy, "/collect/e").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let reqs = up.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        as_json(&reqs[1].body),
        as_json(&transform(
            &audience_engine(),
            Format::Json,
            event_json().as_bytes()
        )),
        "the /collect/ route still applies its rules"
    );
    proxy.stop().await;

    // Pass-through takes no rules, and a route without either is refused.
    let dir = tempdir();
    let path = dir.path().join("scrim.toml");
    let both = config(
        &up.url(),
        "",
        "",
        "[[route]]\npath_prefix = \"/a/\"\nupstream = \"up\"\npass_through = true\nleak_guard = \"refuse\"\n",
    );
    let e = scrim::config::load_str(&both, &path).expect_err("pass-through with a leak guard");
    assert!(e.to_string().contains("forwards requests unchanged"), "{e}");
    let none = config(
        &up.url(),
        "",
        "",
        "[[route]]\npath_prefix = \"/a/\"\nupstream = \"up\"\n",
    );
    let e = scrim::config::load_str(&none, &path).expect_err("a route without rules");
    assert!(e.to_string().contains("pass_through = true"), "{e}");
}

#[tokio::test]
async fn upstream_connections_are_kept_and_one_the_upstream_closed_is_not_reused() {
    for close in [false, true] {
        let (addr, accepted, _) = counting_upstream(close, Duration::ZERO).await;
        let routes = format!(
            "[[route]]\npath_prefix = \"/pass/\"\nupstream = \"up\"\npass_through = true\n\n{}",
            audience_route()
        );
        let proxy = Proxy::start(
            tempdir(),
            &config(&format!("http://{addr}"), "", "", &routes),
        )
        .await;
        let client = h1_client();
        for i in 0..20 {
            let path = if i % 2 == 0 { "/pass/x" } else { "/collect/e" };
            let r = send_event(&client, &proxy, path).await;
            assert_eq!(r.status, StatusCode::OK, "request {i}, close={close}");
            assert_eq!(r.body, b"{}");
            if close {
                // Time for the proxy to see the close of an idle connection.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let n = accepted.load(Ordering::SeqCst);
        if close {
            assert_eq!(n, 20, "a connection the upstream closed is never reused");
        } else {
            assert_eq!(
                n, 1,
                "one kept connection serves requests one after another"
            );
        }
        proxy.stop().await;
    }
}

/// A proxy whose `/pass/` route passes through to the raw upstream at
/// `addr`, with `upstream_extra` in the upstream's table.
async fn pass_through_to(addr: std::net::SocketAddr, upstream_extra: &str) -> Proxy {
    Proxy::start(
        tempdir(),
        &config(&format!("http://{addr}"), upstream_extra, "", PASS_ROUTE),
    )
    .await
}

/// `n` pass-through requests at once, each answered 200.
async fn burst(client: &HttpClient, proxy: &Proxy, n: usize) {
    let sends = (0..n).map(|_| send_event(client, proxy, "/pass/x"));
    for r in futures_util::future::join_all(sends).await {
        assert_eq!(r.status, StatusCode::OK);
    }
}

/// Waits (up to 5 s) until at most `want` upstream connections are open,
/// and returns how many are.
async fn open_settles(open: &AtomicUsize, want: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while open.load(Ordering::SeqCst) > want && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    open.load(Ordering::SeqCst)
}

#[tokio::test]
async fn after_a_burst_at_most_max_idle_upstream_connections_stay_open() {
    let (addr, accepted, open) = counting_upstream(false, Duration::from_millis(300)).await;
    let proxy = pass_through_to(addr, "max_idle_connections = 2").await;
    let client = h1_client();
    // Eight at once: each needs its own upstream connection.
    burst(&client, &proxy, 8).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 8);
    // The six past the cap are closed; the two kept serve what follows.
    assert_eq!(open_settles(&open, 2).await, 2, "connections left open");
    for _ in 0..3 {
        burst(&client, &proxy, 1).await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        8,
        "the kept ones were reused"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn kept_upstream_connections_close_after_the_idle_timeout_without_traffic() {
    let (addr, accepted, open) = counting_upstream(false, Duration::from_millis(100)).await;
    let proxy = pass_through_to(addr, "idle_timeout_ms = 300").await;
    burst(&h1_client(), &proxy, 3).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    assert_eq!(open.load(Ordering::SeqCst), 3, "kept for the next request");
    // No request comes: the sweep, not a checkout, closes them.
    assert_eq!(
        open_settles(&open, 0).await,
        0,
        "idle connections left open"
    );
    proxy.stop().await;
}

/// Past `max_connections` busy upstream connections, requests wait their
/// turn: the upstream never has more at once, and every request is answered.
#[tokio::test]
async fn requests_past_max_connections_wait_for_a_busy_upstream_connection() {
    let (addr, accepted, _) = counting_upstream(false, Duration::from_millis(300)).await;
    let proxy = pass_through_to(addr, "max_connections = 2").await;
    let client = h1_client();
    let started = Instant::now();
    let (_, m) = tokio::join!(burst(&client, &proxy, 6), async {
        // Half way through the first turn: two busy, four waiting.
        tokio::time::sleep(Duration::from_millis(150)).await;
        proxy.metrics()
    });
    // Six of 300 ms each, two at a time: three turns.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "six requests took {:?} on two connections",
        started.elapsed()
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "connections opened");
    let busy = "scrim_upstream_busy{upstream=\"up\"}";
    let waits = "scrim_upstream_waits_total{upstream=\"up\"}";
    assert_eq!(sample(&m, busy), Some(2.0), "{m}");
    assert_eq!(sample(&m, waits), Some(4.0), "{m}");
    let m = proxy.metrics();
    assert_eq!(sample(&m, busy), Some(0.0), "every slot given back: {m}");
    assert_eq!(sample(&m, waits), Some(4.0), "{m}");
    proxy.stop().await;
}

/// POSTs [`event_json`] to `/pass/x` and returns the response once its head
/// (200) is in, its body unread.
async fn event_head(
    client: &HttpClient,
    proxy: &Proxy,
    what: &str,
) -> http::Response<hyper::body::Incoming> {
    let post = post(
        &proxy.url("/pass/x"),
        "application/json",
        full(event_json()),
    );
    let res = within(what, WAIT, client.request(post))
        .await
        .expect("the request reaches scrim");
    assert_eq!(res.status(), StatusCode::OK, "{what}");
    res
}

/// A raw HTTP/1.1 upstream: its first answer, of `content_type`, has a body
/// that comes in five chunks 200 ms apart; later answers are whole. Returns
/// its address and the number of requests it has read.
async fn slow_first_body_upstream(
    content_type: &'static str,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                while read_request(&mut s).await.is_some() {
                    if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n\
                             transfer-encoding: chunked\r\n\r\n"
                        );
                        let _ = s.write_all(head.as_bytes()).await;
                        for i in 0..5 {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            let _ = s.write_all(format!("1\r\n{i}\r\n").as_bytes()).await;
                        }
                        let _ = s.write_all(b"0\r\n\r\n").await;
                    } else {
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
                        let _ = s.write_all(answer).await;
                    }
                }
            });
        }
    });
    (addr, requests)
}

/// Through `max_connections = 1` (and `upstream_extra`): the response to a
/// first request, whose body (of `content_type`) takes a second, and to a
/// second request sent once the first's head is back, its body whole or
/// `streamed` (chunked). Checks that the first body arrived whole; returns
/// the second's reply and how many requests the upstream had read 500 ms in.
async fn behind_a_slow_body(
    content_type: &'static str,
    upstream_extra: &str,
    streamed: bool,
) -> (Reply, usize) {
    let (addr, requests) = slow_first_body_upstream(content_type).await;
    let extra = format!("max_connections = 1\n{upstream_extra}");
    let proxy = pass_through_to(addr, &extra).await;
    let client = h1_client();
    let first = event_head(&client, &proxy, "the head of the first response").await;
    let second = tokio::spawn({
        let client = client.clone();
        let url = proxy.url("/pass/y");
        let body = if streamed {
            let event = event_json();
            let half = event.len() / 2;
            let chunks = [event[..half].to_owned(), event[half..].to_owned()]
                .map(|c| Ok::<_, BoxError>(Frame::data(Bytes::from(c))));
            StreamBody::new(futures_util::stream::iter(chunks)).boxed_unsync()
        } else {
            full(event_json())
        };
        async move { send(&client, post(&url, "application/json", body)).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let midway = requests.load(Ordering::SeqCst);
    let body = within("the first body", WAIT, first.into_body().collect())
        .await
        .expect("the first body arrives")
        .to_bytes();
    assert_eq!(&body[..], b"01234", "the first body, cut");
    let second = within("the second response", WAIT, second).await.unwrap();
    proxy.stop().await;
    (second, midway)
}

/// A connection is busy until its response body has been read, so it holds
/// its slot until then: the next request reaches the upstream only after.
#[tokio::test]
async fn an_upstream_connection_is_busy_until_its_response_body_ends() {
    let (second, midway) = behind_a_slow_body("application/json", "", false).await;
    assert_eq!(midway, 1, "a second request went out during the first body");
    assert_eq!(second.status, StatusCode::OK, "{}", second.text());
}

/// An event stream lasts as long as its client listens: it gives its slot
/// back with its head, so other requests do not wait for it to end.
#[tokio::test]
async fn an_upstream_event_stream_does_not_hold_a_connection_slot() {
    let (second, midway) = behind_a_slow_body("text/event-stream", "", false).await;
    assert_eq!(midway, 2, "the second request waited for the stream to end");
    assert_eq!(second.status, StatusCode::OK, "{}", second.text());
}

/// A request whose body still streams from its client holds no slot: a
/// client that trickles its upload must not hold back every other request to
/// the upstream (a whole body is read before its request takes a slot).
#[tokio::test]
async fn a_request_whose_body_streams_does_not_wait_for_a_connection_slot() {
    let (second, midway) = behind_a_slow_body("application/json", "", true).await;
    assert_eq!(midway, 2, "the streamed request waited for a slot");
    assert_eq!(second.status, StatusCode::OK, "{}", second.text());
}

/// The wait for a connection counts against the response timeout: a request
/// queued past it is answered 504; the one ahead of it, whose body keeps
/// coming, is not cut.
#[tokio::test]
async fn waiting_for_an_upstream_connection_counts_against_the_response_timeout() {
    let (second, midway) =
        behind_a_slow_body("application/json", "response_timeout_ms = 600", false).await;
    assert_eq!(midway, 1);
    assert_eq!(
        second.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        second.text()
    );
}

/// Loads, as `scrim.toml`, a config of [`PASS_ROUTE`] to an upstream with
/// `upstream_extra`, and `limits`.
fn load_pass(
    upstream_extra: &str,
    limits: &str,
) -> Result<scrim::config::Config, scrim::config::ConfigError> {
    let dir = tempdir();
    let text = config("http://127.0.0.1:9", upstream_extra, limits, PASS_ROUTE);
    scrim::config::load_str(&text, &dir.path().join("scrim.toml"))
}

#[test]
fn max_connections_of_zero_is_refused() {
    let e = load_pass("max_connections = 0", "").expect_err("no connection allowed");
    assert!(e.to_string().contains("max_connections = 0"), "{e}");
    assert!(e.to_string().contains("at least 1"), "{e}");
    let c = load_pass("max_connections = 1", "").expect("one connection");
    assert_eq!(c.upstreams["up"].max_connections, 1);
}

#[test]
fn a_send_timeout_of_zero_is_refused() {
    let e = load_pass("", "send_timeout_ms = 0").expect_err("every waiting write would fail");
    let e = e.to_string();
    assert!(e.contains("scrim.toml:5:"), "names the line: {e}");
    assert!(
        e.contains("send_timeout_ms = 0") && e.contains("at least 1000"),
        "{e}"
    );
    let c = load_pass("", "").expect("the default");
    assert_eq!(c.limits.send_timeout, Duration::from_secs(60));
}

/// scrim passing `/pass/` through to [`endless_upstream`] over at most one
/// upstream connection, with the given send timeout (ms).
async fn one_connection_to_an_endless_upstream(send_timeout_ms: u64) -> (Upstream, Proxy) {
    let up = endless_upstream().await;
    let cfg = config(
        &up.url(),
        "max_connections = 1\nresponse_timeout_ms = 5000",
        &format!("send_timeout_ms = {send_timeout_ms}"),
        PASS_ROUTE,
    );
    let proxy = Proxy::start(tempdir(), &cfg).await;
    (up, proxy)
}

/// A request behind a stalled one gets the upstream's one connection
/// within 3 s: the stall let it go.
async fn the_next_request_is_served_at_once(proxy: &Proxy) {
    let started = Instant::now();
    let reply = send_event(&h1_client(), proxy, "/pass/x").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the next request waited {:?}",
        started.elapsed()
    );
}

/// A client that stops reading its response is cut off once a write to it
/// has waited `send_timeout_ms`: the response stops holding the upstream's
/// one connection (`max_connections = 1`), and the next request gets it.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_frees_the_upstream_connection() {
    let (_up, proxy) = one_connection_to_an_endless_upstream(300).await;

    // A raw client that sends one request and never reads.
    let mut stalled = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stalled
        .write_all(b"GET /pass/endless HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    // The endless body takes the one slot.
    let busy = "scrim_upstream_busy{upstream=\"up\"}";
    within("the endless body to hold the slot", WAIT, async {
        while sample(&proxy.metrics(), busy) != Some(1.0) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    the_next_request_is_served_at_once(&proxy).await;
    // The stalled client's connection was closed: reading what it was sent
    // ends (EOF or reset), it does not hang.
    let mut sink = vec![0u8; 1 << 20];
    let drained = within("the stalled connection to close", WAIT, async {
        loop {
            match stalled.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    });
    drained.await;
    let m = proxy.metrics();
    assert_eq!(sample(&m, busy), Some(0.0));
    assert_eq!(sample(&m, "scrim_send_timeouts_total"), Some(1.0), "{m}");

    // A client that reads slowly but keeps reading is not cut off, however
    // long the whole response takes: 2 MiB, a pause after every frame.
    let client = h1_client();
    let get = Request::get(proxy.url("/pass/big")).body(empty()).unwrap();
    let res = within("the big response", WAIT, client.request(get))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let started = Instant::now();
    let mut body = res.into_body();
    let mut got = 0;
    while let Some(frame) = within("a frame", WAIT, body.frame()).await {
        got += frame
            .expect("the body does not fail")
            .data_ref()
            .map_or(0, Bytes::len);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(got, BIG);
    assert!(
        started.elapsed() > Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    proxy.stop().await;
}

/// An h2 client that keeps its connection flowing but opens no window on
/// one stream stalls that stream alone, where the socket's send timeout
/// cannot see it: the stream's upstream connection is let go after
/// `send_timeout_ms` all the same, and the stream ends in an error, never
/// as a whole response.
#[tokio::test]
async fn an_h2_stream_its_client_stops_reading_frees_the_upstream_connection() {
    let (_up, proxy) = one_connection_to_an_endless_upstream(500).await;

    let (mut client, open_window) = h2_shut_window_client(proxy.addr).await;
    let get = Request::get(proxy.url("/pass/endless")).body(()).unwrap();
    let (response, _) = client.send_request(get, true).unwrap();
    let res = within("the stalled stream's head", WAIT, response)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let busy = "scrim_upstream_busy{upstream=\"up\"}";
    assert_eq!(sample(&proxy.metrics(), busy), Some(1.0));

    the_next_request_is_served_at_once(&proxy).await;
    let m = proxy.metrics();
    assert_eq!(sample(&m, busy), Some(0.0));
    assert_eq!(sample(&m, "scrim_send_timeouts_total"), Some(1.0), "{m}");

    // With its window open at last, the stream is reset: the client is
    // not handed a short body as if it were the whole response.
    open_window.send(()).unwrap();
    let mut body = res.into_body();
    let end = within("the stalled stream to end", WAIT, h2_stream_end(&mut body)).await;
    assert!(end.is_err(), "{end:?}");

    // An h2 client that reads slowly but keeps reading, 16 KiB every
    // 20 ms, gets all of it, however long that takes in all. (The pause
    // that counts against the timeout is the time the client takes to read
    // what opens its window again: half of it, 32 KiB here.)
    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let get = Request::get(proxy.url("/pass/big")).body(()).unwrap();
    let (response, _) = client.send_request(get, true).unwrap();
    let res = within("the big response", WAIT, response).await.unwrap();
    let started = Instant::now();
    let mut body = res.into_body();
    let (mut got, mut paced) = (0, 0);
    while let Some(data) = within("a frame", WAIT, body.data()).await {
        let data = data.expect("the slow reader is not cut off");
        got += data.len();
        if got - paced >= 16 << 10 {
            paced = got;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        body.flow_control().release_capacity(data.len()).unwrap();
    }
    assert_eq!(got, BIG);
    assert!(
        started.elapsed() > Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        sample(&proxy.metrics(), "scrim_send_timeouts_total"),
        Some(1.0)
    );
    proxy.stop().await;
}

/// A reload that leaves the upstream as it was keeps its connections; one
/// that changes it (here its `max_connections`) gives it a new pool, and
/// the old pool's connection closes.
#[tokio::test]
async fn a_reload_keeps_an_unchanged_upstreams_connections_and_renews_a_changed_one() {
    let (addr, accepted, open) = counting_upstream(false, Duration::ZERO).await;
    let proxy = pass_through_to(addr, "").await;
    let client = h1_client();
    burst(&client, &proxy, 1).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    let before = proxy.runtime().snapshot();
    proxy.runtime().reload().expect("the same config reloads");
    assert!(!Arc::ptr_eq(&before, &proxy.runtime().snapshot()));
    drop(before);
    burst(&client, &proxy, 1).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "the kept connection");

    let path = proxy.dir.path().join("scrim.toml");
    let cfg = std::fs::read_to_string(&path).unwrap();
    let url = format!("url = \"http://{addr}\"\n");
    let changed = cfg.replace(&url, &format!("{url}max_connections = 3\n"));
    assert_ne!(cfg, changed);
    std::fs::write(&path, changed).unwrap();
    proxy
        .runtime()
        .reload()
        .expect("the changed config reloads");
    burst(&client, &proxy, 1).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "a new pool");
    assert_eq!(open_settles(&open, 1).await, 1, "the old pool closed");
    proxy.stop().await;
}

/// The CA file is compared by its contents: once it is replaced, a reload
/// trusts the new file, though the config's text is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_after_the_ca_file_changed_trusts_the_new_one() {
    let cert = test_cert();
    let up = Upstream::start_tls(ok_responder(), tls_server_config(&cert)).await;
    let proxy = trusting_tls_upstream(&cert, &up, &audience_route()).await;
    let client = h1_client();
    let body = r#"{"event":"x","email":"alice.example@corp.example"}"#;
    let event = || post(&proxy.url("/collect/t"), "application/json", full(body));
    assert_eq!(send(&client, event()).await.status, StatusCode::OK);

    let ca = proxy.dir.path().join("upstream-ca.pem");
    std::fs::write(&ca, test_cert().cert_pem).unwrap();
    proxy.runtime().reload().expect("another CA reloads");
    assert_error_reply(&send(&client, event()).await, 502, SECRETS);

    std::fs::write(&ca, &cert.cert_pem).unwrap();
    proxy.runtime().reload().expect("the upstream's CA reloads");
    assert_eq!(send(&client, event()).await.status, StatusCode::OK);
    assert_eq!(up.requests().len(), 2, "nothing reached it untrusted");
    // One connection per pool; the middle one's ended at its handshake.
    assert_eq!(up.accepted(), 3);
    proxy.stop().await;
}

/// Over TLS, scrim speaks what the upstream picks by ALPN and keeps the
/// connection: HTTP/1.1 reuses kept connections, h2 shares one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_upstream_connections_are_kept_for_http1_and_shared_for_h2() {
    for (alpn, version) in [
        (vec![b"http/1.1".to_vec()], Version::HTTP_11),
        (vec![b"h2".to_vec(), b"http/1.1".to_vec()], Version::HTTP_2),
    ] {
        let cert = test_cert();
        let mut server = tls_server_config(&cert);
        server.alpn_protocols = alpn;
        let up = Upstream::start_tls(ok_responder(), server).await;
        let routes = format!(
            "[[route]]\npath_prefix = \"/pass/\"\nupstream = \"up\"\npass_through = true\n\n{}",
            audience_route()
        );
        let proxy = trusting_tls_upstream(&cert, &up, &routes).await;
        let client = h1_client();
        // One first, so that the protocol is known; then some at once.
        burst(&client, &proxy, 1).await;
        for _ in 0..3 {
            burst(&client, &proxy, 1).await;
            let r = send_event(&client, &proxy, "/collect/t").await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        }
        let requests = up.requests();
        assert_eq!(requests.len(), 7);
        assert!(requests.iter().all(|r| r.version == version), "{version:?}");
        assert_eq!(up.accepted(), 1, "{version:?}: one connection, kept");
        if version == Version::HTTP_2 {
            burst(&client, &proxy, 6).await;
            assert_eq!(up.accepted(), 1, "h2 requests at once share it");
        }
        proxy.stop().await;
    }
}

/// An h2 upstream over TLS that misbehaves as servers going away or
/// overloaded do: its first connection answers the first request's HEADERS
/// with `GOAWAY` (last stream 0: nothing processed) and closes; on the next
/// connection it refuses the second and fourth streams (`REFUSED_STREAM`)
/// and records the body of every other. Returns its port, the bodies and
/// the connections accepted.
async fn refusing_h2_upstream(
    cert: &TestCert,
) -> (u16, Arc<Mutex<Vec<Vec<u8>>>>, Arc<AtomicUsize>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut server = tls_server_config(cert);
    server.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let accepted = Arc::new(AtomicUsize::new(0));
    let (log, count) = (bodies.clone(), accepted.clone());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let first = count.fetch_add(1, Ordering::SeqCst) == 0;
            let mut tls = acceptor.accept(tcp).await.unwrap();
            if first {
                // The frames by hand: h2's server cannot send a GOAWAY below
                // a stream it has read. SETTINGS (empty), then, once the
                // client's HEADERS (type 1) came, GOAWAY(last 0, NO_ERROR).
                tls.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
                let mut preface = [0u8; 24];
                tls.read_exact(&mut preface).await.unwrap();
                loop {
                    let mut head = [0u8; 9];
                    tls.read_exact(&mut head).await.unwrap();
                    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                    let mut payload = vec![0u8; len];
                    tls.read_exact(&mut payload).await.unwrap();
                    if head[3] == 1 {
                        break;
                    }
                }
                let goaway = [0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                tls.write_all(&goaway).await.unwrap();
                tls.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let log = log.clone();
            tokio::spawn(async move {
                let mut conn = h2::server::handshake(tls).await.unwrap();
                let mut streams = 0;
                while let Some(stream) = conn.accept().await {
                    let Ok((req, mut respond)) = stream else {
                        return;
                    };
                    streams += 1;
                    if streams == 2 || streams == 4 {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        continue;
                    }
                    let log = log.clone();
                    tokio::spawn(async move {
                        let mut body = req.into_body();
                        let mut got = Vec::new();
                        while let Some(chunk) = body.data().await {
                            let chunk = chunk.unwrap();
                            let _ = body.flow_control().release_capacity(chunk.len());
                            got.extend_from_slice(&chunk);
                        }
                        log.lock().unwrap().push(got);
                        let mut send = respond
                            .send_response(http::Response::new(()), false)
                            .unwrap();
                        send.send_data(Bytes::from_static(b"{}"), true).unwrap();
                    });
                }
            });
        }
    });
    (port, bodies, accepted)
}

/// A request the h2 upstream refused unprocessed (GOAWAY below its stream,
/// REFUSED_STREAM) goes again when its body is held whole; a streamed body
/// cannot go twice, and its client is told (502).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_an_h2_upstream_refused_unprocessed_go_again() {
    let cert = test_cert();
    let (port, bodies, accepted) = refusing_h2_upstream(&cert).await;
    let dir = tempdir();
    std::fs::write(dir.path().join("upstream-ca.pem"), &cert.cert_pem).unwrap();
    let routes = format!(
        "[[route]]\npath_prefix = \"/pass/\"\nupstream = \"up\"\npass_through = true\n\n{}",
        audience_route()
    );
    let cfg = config(
        &format!("https://127.0.0.1:{port}"),
        "ca_file = \"upstream-ca.pem\"",
        "",
        &routes,
    );
    let proxy = Proxy::start(dir, &cfg).await;
    let client = h1_client();

    // Pass-through, with a Content-Length: GOAWAY, then again on a new
    // connection.
    let event = event_json();
    let r = send_event(&client, &proxy, "/pass/x").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // Pseudonymised: REFUSED_STREAM, then again.
    let body = r#"{"event":"x","email":"alice.example@corp.example"}"#;
    let r = send(
        &client,
        post(&proxy.url("/collect/t"), "application/json", full(body)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Streamed (chunked, no length): refused, and not sent again.
    let chunks = futures_util::stream::iter(
        [&event[..10], &event[10..]]
            .map(|c| Ok::<_, BoxError>(Frame::data(Bytes::copy_from_slice(c.as_bytes())))),
    );
    let r = send(
        &client,
        post(
            &proxy.url("/pass/x"),
            "application/json",
            StreamBody::new(chunks).boxed_unsync(),
        ),
    )
    .await;
    assert_error_reply(&r, 502, SECRETS);

    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(
        bodies,
        vec![
            event.as_bytes().to_vec(),
            transform(&audience_engine(), Format::Json, body.as_bytes())
        ],
        "each body arrived once, whole"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    proxy.stop().await;
}

/// Requests waiting for the shared h2 connection to reopen fail with the
/// attempt they waited for: a queue of them to an upstream that stopped
/// answering costs one connect timeout, not one each in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_for_an_h2_reconnect_fail_with_it() {
    let cert = test_cert();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut server = tls_server_config(&cert);
    server.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    // The first connection serves one request and closes; later ones are
    // accepted and never answered (the TLS handshake hangs).
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            if count.fetch_add(1, Ordering::SeqCst) > 0 {
                held.push(tcp);
                continue;
            }
            let tls = acceptor.accept(tcp).await.unwrap();
            tokio::spawn(async move {
                let mut conn = h2::server::handshake(tls).await.unwrap();
                if let Some(Ok((_req, mut respond))) = conn.accept().await {
                    let mut send = respond
                        .send_response(http::Response::new(()), false)
                        .unwrap();
                    send.send_data(Bytes::from_static(b"{}"), true).unwrap();
                }
                conn.graceful_shutdown();
                while conn.accept().await.is_some() {}
            });
        }
    });
    let dir = tempdir();
    std::fs::write(dir.path().join("upstream-ca.pem"), &cert.cert_pem).unwrap();
    let cfg = config(
        &format!("https://127.0.0.1:{port}"),
        "ca_file = \"upstream-ca.pem\"\nconnect_timeout_ms = 400",
        "",
        PASS_ROUTE,
    );
    let proxy = Proxy::start(dir, &cfg).await;
    let client = h1_client();
    let one = || {
        send(
            &client,
            post(&proxy.url("/pass/x"), "application/json", full("{}")),
        )
    };
    assert_eq!(one().await.status, StatusCode::OK);
    // Until scrim has seen the first connection close.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let replies = futures_util::future::join_all((0..6).map(|_| one())).await;
    for r in &replies {
        assert_error_reply(r, 502, SECRETS);
    }
    let attempts = accepted.load(Ordering::SeqCst) - 1;
    assert!(
        (1..=2).contains(&attempts),
        "{attempts} connect attempts for 6 requests waiting together"
    );
    proxy.stop().await;
}

/// A response whose client went away before its body was read whole leaves
/// its upstream connection closed, not kept: the next request goes on a new
/// one and is answered in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_connection_whose_response_was_cut_is_not_kept() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    // The first connection answers with 10 of 100 body bytes, then waits;
    // later ones answer whole.
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let first = count.fetch_add(1, Ordering::SeqCst) == 0;
            tokio::spawn(async move {
                while read_request(&mut s).await.is_some() {
                    let answer: &[u8] = if first {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789"
                    } else {
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
                    };
                    if s.write_all(answer).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let proxy = pass_through_to(addr, "").await;
    // The client reads the head of the cut response and goes away.
    let client = h1_client();
    let res = event_head(&client, &proxy, "the head of the cut response").await;
    drop(res);
    drop(client);
    // The next requests go on a new connection, which is kept.
    let client = h1_client();
    for _ in 0..2 {
        let r = send_event(&client, &proxy, "/pass/x").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, b"{}");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
    proxy.stop().await;
}
