//! The unknown-field report over real sockets: body fields (JSON, NDJSON
//! streamed, form), query parameters, headers and cookies that no rule
//! names are counted per route by name, never by value; what an explicit
//! `drop` rule removes is not reported; a key that is itself an email shows
//! only as a placeholder; `GET /unknown-fields` checks roles and is audited.

use std::collections::BTreeMap;

use http::{Method, Request, StatusCode};
use serde_json::{json, Value};

use crate::keyring::{
    admin_call, audit_lines, bearer, config, init_ring, json_of, route, rules, start_scrim,
    OPERATOR_TOKEN, PRIVACY_TOKEN, SECURITY_TOKEN,
};
use crate::proxy_support::{self as ps, Upstream, WAIT};

const RULES: &str = r#"
[[rule]]
id = "event"
field = "event"
action = "keep"

[[rule]]
id = "email"
field = "user.email"
action = "pseudonymise"
kind = "email"

[[rule]]
id = "batch-event"
field = "batch[*].event"
action = "keep"

[[rule]]
id = "attendee-role"
field = "attendees.*.role"
action = "keep"

[[rule]]
id = "password"
field = "password"
action = "drop"

[[rule]]
id = "utm"
query = "utm_source"
action = "keep"

[[rule]]
id = "query-token"
query = "token"
action = "drop"

[[rule]]
id = "ua"
header = "user-agent"
action = "generalise"
kind = "user-agent"

[[rule]]
id = "auth"
header = "authorization"
action = "drop"

[[rule]]
id = "session"
cookie = "session"
action = "pseudonymise"
kind = "id"

[[rule]]
id = "tracking"
cookie = "tracking"
action = "drop"
"#;

/// Every value sent below: none may appear in the report.
const VALUES: &[&str] = &[
    "alice",
    "FOOVALUE",
    "DEEPVALUE",
    "PHONEVALUE",
    "NICKVALUE",
    "hunter2",
    "SECRETTOKEN",
    "CAMPAIGNVALUE",
    "QEMAILVALUE",
    "søren",
    "example.dk",
    "bob@example.org",
    "example.org",
    "DEBUGVALUE",
    "TENANTVALUE",
    "SECRETAUTH",
    "SESSIONVALUE",
    "TRACKVALUE",
    "GAVALUE",
    "192.0.2.33",
    "LONGVALUE",
    "NDVALUE",
    "FORMVALUE",
];

fn counts(route: &Value) -> BTreeMap<(String, String), u64> {
    route["fields"]
        .as_array()
        .expect("fields is an array")
        .iter()
        .map(|f| {
            (
                (
                    f["target"].as_str().unwrap().to_owned(),
                    f["name"].as_str().unwrap().to_owned(),
                ),
                f["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unnamed_fields_are_counted_by_name_never_by_value() {
    let up = Upstream::start(ps::ok_responder()).await;
    let dir = ps::tempdir();
    let ring = init_ring(dir.path());
    let audit = dir.path().join("audit.log");
    let routes = format!(
        "{}{}",
        route(
            "/events/",
            &rules("audience-measurement", "analytics", "13 months", RULES)
        ),
        route(
            "/quiet/",
            &rules("support-chat", "support", "6 months", RULES)
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

    // Nothing yet: every route listed, with no fields.
    let r = admin_call(
        &client,
        admin,
        Method::GET,
        "/unknown-fields",
        Some(&bearer(PRIVACY_TOKEN)),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = json_of(&r);
    assert_eq!(v["routes"].as_array().unwrap().len(), 2);
    assert_eq!(v["routes"][0]["route"], 1);
    assert_eq!(v["routes"][0]["path"], "/events/*");
    assert_eq!(v["routes"][0]["fields"], json!([]));

    // A JSON event, twice, with unnamed members at several depths, in an
    // array, under a map keyed by email, and under an overlong key.
    let long_key = "k".repeat(80);
    let body = json!({
        "event": "join",
        "user": {"email": "alice@example.com", "phone": "PHONEVALUE", "nickname": "NICKVALUE"},
        "password": "hunter2",
        "batch": [
            {"event": "a", "foo": "FOOVALUE0"},
            {"event": "b", "foo": "FOOVALUE1", "bar": {"deep": "DEEPVALUE"}},
        ],
        "attendees": {"bob@example.org": {"role": "host", "phone": "PHONEVALUE"}},
        long_key.clone(): "LONGVALUE",
    });
    let query = "utm_source=news&token=SECRETTOKEN&campaign_id=CAMPAIGNVALUE\
                 &s%C3%B8ren%40example.dk=QEMAILVALUE";
    for _ in 0..2 {
        let req = Request::post(format!("http://{proxy}/events/join?{query}"))
            .header("content-type", "application/json")
            .header(
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
            )
            .header("authorization", "Bearer SECRETAUTH")
            .header("x-debug-user", "DEBUGVALUE")
            .header("x-tenant", "TENANTVALUE")
            .header("x-forwarded-for", "192.0.2.33")
            .header(
                "cookie",
                "session=SESSIONVALUE; tracking=TRACKVALUE; _ga=GAVALUE",
            )
            .body(ps::full(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        let reply = ps::send(&client, req).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    // A streamed NDJSON batch and a form: the same report.
    let nd = "{\"event\":\"x\",\"ndfoo\":\"NDVALUE1\"}\n{\"event\":\"y\",\"ndfoo\":\"NDVALUE2\"}\n";
    let reply = ps::send(
        &client,
        ps::post(
            &format!("http://{proxy}/events/batch"),
            "application/x-ndjson",
            ps::full(nd),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = ps::send(
        &client,
        ps::post(
            &format!("http://{proxy}/events/pixel"),
            "application/x-www-form-urlencoded",
            ps::full("event=view&formfoo=FORMVALUE&password=hunter2"),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    ps::within("the upstream to get 4 requests", WAIT, async {
        while up.requests().len() < 4 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;

    let r = admin_call(
        &client,
        admin,
        Method::GET,
        "/unknown-fields",
        Some(&bearer(PRIVACY_TOKEN)),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let text = r.text();
    let v = json_of(&r);
    let got = counts(&v["routes"][0]);
    let want: BTreeMap<(String, String), u64> = [
        ("body", "user.phone", 2),
        ("body", "user.nickname", 2),
        // Indices normalised: batch[0].foo and batch[1].foo are one name.
        ("body", "batch[*].foo", 4),
        // A subtree no rule reaches is one name, not one per leaf.
        ("body", "batch[*].bar", 2),
        // A key that is itself personal: a placeholder, never the key.
        ("body", "attendees.<email>.phone", 2),
        ("body", "<long>", 2),
        ("body", "ndfoo", 2),
        ("body", "formfoo", 1),
        ("query", "campaign_id", 2),
        ("query", "<email>", 2),
        ("header", "x-debug-user", 2),
        ("header", "x-tenant", 2),
        ("header", "x-forwarded-for", 2),
        ("cookie", "_ga", 2),
    ]
    .into_iter()
    .map(|(t, n, c)| ((t.to_owned(), n.to_owned()), c))
    .collect();
    assert_eq!(got, want, "report: {text}");
    assert_eq!(v["routes"][0]["overflow"], 0);
    // The quiet route saw nothing.
    assert_eq!(v["routes"][1]["fields"], json!([]), "{text}");

    // Names only: no value, no raw personal key, and nothing an explicit
    // `drop` rule removed (password, token, authorization, tracking).
    for value in VALUES {
        assert!(!text.contains(value), "the report holds {value:?}: {text}");
    }
    assert!(!text.contains(&long_key));
    for dropped in [
        "password",
        "\"token\"",
        "authorization",
        "tracking",
        "session",
    ] {
        assert!(
            !text.contains(dropped),
            "explicitly handled {dropped} reported: {text}"
        );
    }

    // Roles: security and operator may read it too; no token: 401.
    for tok in [SECURITY_TOKEN, OPERATOR_TOKEN] {
        let r = admin_call(
            &client,
            admin,
            Method::GET,
            "/unknown-fields",
            Some(&bearer(tok)),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(counts(&json_of(&r)["routes"][0]), want);
    }
    let r = admin_call(&client, admin, Method::GET, "/unknown-fields", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = admin_call(
        &client,
        admin,
        Method::GET,
        "/unknown-fields",
        Some("Bearer not-a-token"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Audited like every other call.
    let lines = audit_lines(&audit);
    let calls: Vec<(String, String, Value)> = lines
        .iter()
        .filter(|l| l["action"] == "unknown-fields")
        .map(|l| {
            (
                l["outcome"].as_str().unwrap().to_owned(),
                l["role"].to_string(),
                l["token_id"].clone(),
            )
        })
        .collect();
    assert_eq!(calls.len(), 6, "{lines:#?}");
    assert_eq!(calls.iter().filter(|c| c.0 == "ok").count(), 4);
    assert_eq!(calls.iter().filter(|c| c.0 == "unauthenticated").count(), 2);
    assert!(calls.iter().any(|c| c.2 == "po-1"));
    for l in &lines {
        let t = l.to_string();
        for value in VALUES {
            assert!(!t.contains(value), "the audit log holds {value:?}: {t}");
        }
    }

    ps::within("scrim to stop", WAIT, running.stop()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_survive_a_key_rotation() {
    let up = Upstream::start(ps::ok_responder()).await;
    let dir = ps::tempdir();
    let ring = init_ring(dir.path());
    let audit = dir.path().join("audit.log");
    let routes = route(
        "/events/",
        &rules("audience-measurement", "analytics", "13 months", RULES),
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
    let admin = running.admin_addr.unwrap();
    let client = ps::h1_client();
    let send = || async {
        let reply = ps::send(
            &client,
            ps::post(
                &format!("http://{proxy}/events/x"),
                "application/json",
                ps::full(r#"{"event":"e","extra":"FOOVALUE"}"#),
            ),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
    };
    send().await;
    let r = admin_call(
        &client,
        admin,
        Method::POST,
        "/keys/rotate",
        Some(&bearer(SECURITY_TOKEN)),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    send().await;
    let r = admin_call(
        &client,
        admin,
        Method::GET,
        "/unknown-fields",
        Some(&bearer(OPERATOR_TOKEN)),
        None,
    )
    .await;
    let v = json_of(&r);
    assert_eq!(
        v["routes"][0]["fields"],
        json!([{"target": "body", "name": "extra", "count": 2}]),
        "{}",
        r.text()
    );
    ps::within("scrim to stop", WAIT, running.stop()).await;
}
