//! The admin API over real sockets: bearer tokens and roles on every
//! endpoint (401 and 403 that say nothing about what was wrong), the audit
//! log, reveal of `encrypt` tokens across a rotation and a retirement, and
//! subject look-ups that match what the proxy emitted (API and CLI).

use std::net::SocketAddr;
use std::path::PathBuf;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use scrim::server::Running;

use crate::keyring::{
    admin_call, assert_no_secret, audit_lines, bearer, config, email_token, init_ring, json_of,
    kek, kek_hex, materials, parse, rotate_via_admin, route, rules, run_bounded, scrim_cmd,
    start_scrim, through, EMAIL_RULES, NOTE_RULE, OPERATOR_TOKEN, PRIVACY_TOKEN, REFUSAL_TIMEOUT,
    SECURITY_TOKEN,
};
use crate::proxy_support::{self as ps, HttpClient, Reply, Upstream, WAIT};

/// scrim with two purposes (both with an `encrypt` rule `secret-note`), the
/// admin API and an audit log.
struct Env {
    up: Upstream,
    _dir: tempfile::TempDir,
    ring: PathBuf,
    audit: PathBuf,
    cfg_path: PathBuf,
    running: Running,
    client: HttpClient,
    proxy: SocketAddr,
    admin: SocketAddr,
}

const SUPPORT: &str = "support-notes";
const AUDIENCE: &str = "audience-measurement";

async fn start() -> Env {
    let up = Upstream::start(ps::ok_responder()).await;
    let dir = ps::tempdir();
    let ring = init_ring(dir.path());
    let audit = dir.path().join("audit.log");
    let routes = format!(
        "{}{}[privacy]\nobjections = \"objections.json\"\n\n",
        route(
            "/support/",
            &rules(
                SUPPORT,
                "crm",
                "13 months",
                &format!("{EMAIL_RULES}{NOTE_RULE}")
            ),
        ),
        route(
            "/events/",
            &rules(
                AUDIENCE,
                "analytics",
                "13 months",
                &format!("{EMAIL_RULES}{NOTE_RULE}")
            ),
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
    Env {
        proxy: running.addrs[0],
        admin: running.admin_addr.expect("the admin API is configured"),
        cfg_path: dir.path().join("scrim.toml"),
        up,
        _dir: dir,
        ring,
        audit,
        running,
        client: ps::h1_client(),
    }
}

impl Env {
    async fn call(
        &self,
        method: Method,
        path: &str,
        authorization: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        admin_call(&self.client, self.admin, method, path, authorization, body).await
    }

    /// Sends `v` to `path` and returns what the upstream received, as JSON.
    async fn through(&self, path: &str, v: &Value) -> Value {
        parse(&through(&self.client, &self.up, self.proxy, path, v).await)
    }

    async fn reveal(&self, purpose: &str, field: &str, token: &str) -> Reply {
        self.call(
            Method::POST,
            "/reveal",
            Some(&bearer(SECURITY_TOKEN)),
            Some(&json!({"purpose": purpose, "field": field, "token": token})),
        )
        .await
    }

    async fn stop(self) {
        ps::within("scrim to stop", WAIT, self.running.stop()).await;
    }
}

struct Tok {
    id: &'static str,
    role: &'static str,
    secret: &'static str,
}

const SEC: Tok = Tok {
    id: "sec-1",
    role: "security",
    secret: SECURITY_TOKEN,
};
const PO: Tok = Tok {
    id: "po-1",
    role: "privacy-officer",
    secret: PRIVACY_TOKEN,
};
const OPS: Tok = Tok {
    id: "ops-1",
    role: "operator",
    secret: OPERATOR_TOKEN,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_checks_token_and_role_and_is_audited() {
    let env = start().await;
    // A real reversible token for the reveal call.
    let sent = env
        .through(
            "/support/ticket",
            &json!({"email": "alice@example.com", "note": "call back after 5"}),
        )
        .await;
    let note = sent["note"].as_str().expect("an encrypted note").to_owned();
    assert!(note.starts_with("e1_"), "{note}");

    struct Call {
        method: Method,
        path: &'static str,
        action: &'static str,
        body: Option<Value>,
        allowed: Vec<Tok>,
        forbidden: Vec<Tok>,
    }
    // In this order: reveal before the rotation, retire after it.
    let calls = vec![
        Call {
            method: Method::GET,
            path: "/keys",
            action: "keys.list",
            body: None,
            allowed: vec![SEC, OPS],
            forbidden: vec![PO],
        },
        Call {
            method: Method::POST,
            path: "/lookup",
            action: "lookup",
            body: Some(json!({"kind": "email", "value": "alice@example.com"})),
            allowed: vec![SEC, PO],
            forbidden: vec![OPS],
        },
        Call {
            method: Method::POST,
            path: "/reload",
            action: "reload",
            body: None,
            allowed: vec![SEC, OPS],
            forbidden: vec![PO],
        },
        Call {
            method: Method::POST,
            path: "/reveal",
            action: "reveal",
            body: Some(json!({"purpose": SUPPORT, "field": "secret-note", "token": note})),
            allowed: vec![SEC],
            forbidden: vec![PO, OPS],
        },
        Call {
            method: Method::POST,
            path: "/objections",
            action: "objections.add",
            body: Some(json!({"kind": "email", "value": "alice@example.com"})),
            allowed: vec![SEC, PO],
            forbidden: vec![OPS],
        },
        Call {
            method: Method::DELETE,
            path: "/objections",
            action: "objections.remove",
            body: Some(json!({"kind": "email", "value": "alice@example.com"})),
            allowed: vec![SEC, PO],
            forbidden: vec![OPS],
        },
        Call {
            method: Method::GET,
            path: "/privacy",
            action: "privacy.stats",
            body: None,
            allowed: vec![SEC, PO, OPS],
            forbidden: vec![],
        },
        Call {
            method: Method::GET,
            path: "/shadow",
            action: "shadow",
            body: None,
            allowed: vec![SEC, PO, OPS],
            forbidden: vec![],
        },
        Call {
            method: Method::POST,
            path: "/keys/rotate",
            action: "keys.rotate",
            body: None,
            allowed: vec![SEC],
            forbidden: vec![PO, OPS],
        },
        Call {
            method: Method::POST,
            path: "/keys/1/retire",
            action: "keys.retire",
            body: None,
            allowed: vec![SEC],
            forbidden: vec![PO, OPS],
        },
    ];

    // (action, outcome, token id, role) per call, in order.
    let mut expected: Vec<(&str, &str, Option<&str>, Option<&str>)> = Vec::new();
    let mut unauthorized: Vec<(String, Vec<u8>)> = Vec::new();
    let mut forbidden: Vec<(String, Vec<u8>)> = Vec::new();
    let mut ok_bodies: Vec<(String, Value)> = Vec::new();
    for c in &calls {
        let wrong_auth = [
            None,
            Some("Bearer not-a-known-token".to_owned()),
            Some(format!("Bearer {}x", SECURITY_TOKEN)),
            Some(format!("Basic {}", SECURITY_TOKEN)),
            Some(SECURITY_TOKEN.to_owned()),
            Some("Bearer ".to_owned()),
        ];
        for auth in &wrong_auth {
            let r = env
                .call(c.method.clone(), c.path, auth.as_deref(), c.body.as_ref())
                .await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{} {} with {auth:?}: {}",
                c.method,
                c.path,
                r.text()
            );
            unauthorized.push((format!("{} {} {auth:?}", c.method, c.path), r.body));
            expected.push((c.action, "unauthenticated", None, None));
        }
        for t in &c.forbidden {
            let r = env
                .call(
                    c.method.clone(),
                    c.path,
                    Some(&bearer(t.secret)),
                    c.body.as_ref(),
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::FORBIDDEN,
                "{} {} as {}: {}",
                c.method,
                c.path,
                t.role,
                r.text()
            );
            forbidden.push((format!("{} {} as {}", c.method, c.path, t.role), r.body));
            expected.push((c.action, "forbidden", Some(t.id), Some(t.role)));
        }
        for t in &c.allowed {
            let r = env
                .call(
                    c.method.clone(),
                    c.path,
                    Some(&bearer(t.secret)),
                    c.body.as_ref(),
                )
                .await;
            assert!(
                r.status.is_success(),
                "{} {} as {}: {} {}",
                c.method,
                c.path,
                t.role,
                r.status,
                r.text()
            );
            ok_bodies.push((
                format!("{} {} as {}", c.method, c.path, t.role),
                json_of(&r),
            ));
            expected.push((c.action, "ok", Some(t.id), Some(t.role)));
        }
    }

    // 401 and 403 bodies: one each, whatever was wrong, naming nothing.
    let (first_401, first_403) = (&unauthorized[0].1, &forbidden[0].1);
    for (what, b) in &unauthorized {
        assert_eq!(
            b,
            first_401,
            "401 bodies differ ({what}): {}",
            String::from_utf8_lossy(b)
        );
    }
    for (what, b) in &forbidden {
        assert_eq!(
            b,
            first_403,
            "403 bodies differ ({what}): {}",
            String::from_utf8_lossy(b)
        );
    }
    assert_ne!(first_401, first_403);
    for body in [first_401, first_403] {
        let text = String::from_utf8_lossy(body).to_lowercase();
        let v: Value = serde_json::from_slice(body).expect("error bodies are JSON");
        assert!(v["error"].is_string() && v["reason"].is_string(), "{text}");
        for word in [
            "missing",
            "unknown",
            "wrong",
            "expired",
            "malformed",
            "scheme",
            "basic",
            "role",
            "security",
            "operator",
            "privacy",
            "sec-1",
            "po-1",
            "ops-1",
        ] {
            assert!(!text.contains(word), "the refusal says {word:?}: {text}");
        }
        for t in [SECURITY_TOKEN, PRIVACY_TOKEN, OPERATOR_TOKEN] {
            assert!(!text.contains(t), "the refusal echoes a token: {text}");
        }
    }

    // What the allowed calls answered.
    let get = |what: &str| {
        ok_bodies
            .iter()
            .find(|(w, _)| w == what)
            .unwrap_or_else(|| panic!("no answer for {what}"))
            .1
            .clone()
    };
    let list = get("GET /keys as security");
    assert_eq!(list["versions"][0]["id"], 1);
    assert_eq!(list["versions"][0]["state"], "active");
    assert!(
        list["versions"][0].get("sealed").is_none(),
        "GET /keys shows material: {list}"
    );
    let rows = get("POST /lookup as privacy-officer");
    assert_eq!(rows["pseudonyms"].as_array().unwrap().len(), 2, "{rows}");
    assert_eq!(
        get("POST /reveal as security")["value"],
        "call back after 5"
    );
    assert_eq!(get("POST /keys/rotate as security")["active"], 2);
    assert_eq!(get("POST /keys/1/retire as security")["retired"], 1);
    assert_eq!(get("POST /reload as operator")["status"], "reloaded");

    // No answer carries key material.
    let mats = materials(&env.ring);
    for (what, v) in &ok_bodies {
        for (_, m) in &mats {
            assert_no_secret(what, &v.to_string(), m);
        }
    }

    // The probes need no token, and are not audited.
    let audited = audit_lines(&env.audit).len();
    for auth in [None, Some("Bearer not-a-known-token")] {
        let r = env.call(Method::GET, "/healthz", auth, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(json_of(&r)["status"], "ok");
        let r = env.call(Method::GET, "/readyz", auth, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(json_of(&r)["key_version"], 2);
    }
    assert_eq!(audit_lines(&env.audit).len(), audited);

    // One audit line per call, refused ones included.
    let lines = audit_lines(&env.audit);
    assert_eq!(
        lines.len(),
        expected.len(),
        "audit lines: {lines:#?}\nexpected: {expected:#?}"
    );
    for (i, (line, (action, outcome, id, role))) in lines.iter().zip(&expected).enumerate() {
        let what = format!("audit line {i}: {line}");
        assert_eq!(line["action"], *action, "{what}");
        assert_eq!(line["outcome"], *outcome, "{what}");
        assert_eq!(line["token_id"], json!(id), "{what}");
        assert_eq!(line["role"], json!(role), "{what}");
        assert!(line["time"].is_string(), "{what}");
        let text = line.to_string();
        for t in [SECURITY_TOKEN, PRIVACY_TOKEN, OPERATOR_TOKEN] {
            assert!(!text.contains(t), "the audit log holds a token: {what}");
        }
        for (_, m) in &mats {
            assert_no_secret(&what, &text, m);
        }
        if *action == "lookup" && *outcome == "ok" {
            let target = line["target"].as_str().expect("a look-up names its target");
            assert!(target.starts_with("email "), "{what}");
            let lower = target.to_lowercase();
            assert!(
                !lower.contains("alice") && !lower.contains("example.com"),
                "the audit log names the subject: {what}"
            );
        }
    }
    let rotate_ok = lines
        .iter()
        .find(|l| l["action"] == "keys.rotate" && l["outcome"] == "ok")
        .unwrap();
    assert_eq!(rotate_ok["target"], "version 2");
    let retire_ok = lines
        .iter()
        .find(|l| l["action"] == "keys.retire" && l["outcome"] == "ok")
        .unwrap();
    assert_eq!(retire_ok["target"], "version 1");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&env.audit).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the audit log's mode");
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_operations_that_cannot_happen_are_refused_and_audited() {
    let env = start().await;
    let sec = bearer(SECURITY_TOKEN);
    // The active version cannot be retired; an unknown one neither.
    for (path, reason) in [
        ("/keys/1/retire", "version 1 is active"),
        ("/keys/9/retire", "no key version 9"),
    ] {
        let r = env.call(Method::POST, path, Some(&sec), None).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{path}: {}", r.text());
        assert!(r.text().contains(reason), "{path}: {}", r.text());
    }
    let r = env
        .call(Method::POST, "/keys/one/retire", Some(&sec), None)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let r = env
        .call(
            Method::POST,
            "/lookup",
            Some(&sec),
            Some(&json!({"kind": "url", "value": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let lines = audit_lines(&env.audit);
    let outcomes: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["action"].as_str().unwrap(),
                l["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("keys.retire", "failed"),
            ("keys.retire", "failed"),
            ("keys.retire", "bad_request"),
            ("lookup", "bad_request"),
        ]
    );
    let ring = scrim::keyring::ring::KeyRing::load(&env.ring, &kek()).unwrap();
    assert_eq!(ring.versions().len(), 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reveal_round_trip_until_the_version_is_retired() {
    let env = start().await;
    let secret = "Ring me on +44 20 7946 0958, ask for Alice";
    let sent = env
        .through(
            "/support/ticket",
            &json!({"email": "alice@example.com", "note": secret}),
        )
        .await;
    let old = sent["note"].as_str().expect("an encrypted note").to_owned();
    assert!(old.starts_with("e1_"), "{old}");
    assert!(!old.contains("Alice") && !old.contains("7946"), "{old}");

    let r = env.reveal(SUPPORT, "secret-note", &old).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(json_of(&r), json!({"value": secret}));

    // Bound to purpose and field: another field, another purpose (one this
    // scrim serves, with a rule of the same id), or no such purpose: 422.
    for (purpose, field, token) in [
        (SUPPORT, "email", old.as_str()),
        (SUPPORT, "secret-notes", old.as_str()),
        (AUDIENCE, "secret-note", old.as_str()),
        ("no-such-purpose", "secret-note", old.as_str()),
        (SUPPORT, "secret-note", "k1_4m0fmq5tb1kg8b6d0pc0kv3n4o"),
    ] {
        let r = env.reveal(purpose, field, token).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{purpose}/{field}: {}",
            r.text()
        );
        assert!(
            !r.text().contains("Alice") && !r.text().contains("7946"),
            "a refused reveal shows the value: {}",
            r.text()
        );
    }

    // After a rotation the old version is previous: still revealable; new
    // tokens carry version 2.
    assert_eq!(rotate_via_admin(&env.client, env.admin).await, 2);
    let r = env.reveal(SUPPORT, "secret-note", &old).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(json_of(&r)["value"], secret);
    let sent = env
        .through(
            "/support/ticket",
            &json!({"email": "alice@example.com", "note": secret}),
        )
        .await;
    let new = sent["note"].as_str().unwrap().to_owned();
    assert!(new.starts_with("e2_"), "{new}");

    // Retiring version 1 ends its tokens for good.
    let r = env
        .call(
            Method::POST,
            "/keys/1/retire",
            Some(&bearer(SECURITY_TOKEN)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = env.reveal(SUPPORT, "secret-note", &old).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert!(r.text().contains("retired"), "{}", r.text());
    let r = env.reveal(SUPPORT, "secret-note", &new).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(json_of(&r)["value"], secret);

    // `scrim reveal` agrees, from the ring on disk.
    let cfg = env.cfg_path.clone();
    let (new2, old2) = (new.clone(), old.clone());
    let (ok, refused) = tokio::task::spawn_blocking(move || {
        let run = |token: &str| {
            run_bounded(
                scrim_cmd(&kek_hex())
                    .args([
                        "reveal",
                        "--purpose",
                        SUPPORT,
                        "--field",
                        "secret-note",
                        "-c",
                    ])
                    .arg(&cfg)
                    .arg(token),
                REFUSAL_TIMEOUT,
            )
        };
        (run(&new2), run(&old2))
    })
    .await
    .unwrap();
    assert!(ok.status.success(), "{}", ok.stderr);
    assert_eq!(ok.stdout.trim_end(), secret);
    assert_eq!(refused.status.code(), Some(1), "{}", refused.stdout);
    assert!(refused.stderr.contains("retired"), "{}", refused.stderr);
    assert!(!refused.stderr.contains("Alice"), "{}", refused.stderr);

    // Reveals are audited with the token (a pseudonym), never the value.
    let lines = audit_lines(&env.audit);
    let reveals: Vec<&Value> = lines
        .iter()
        .filter(|l| l["action"].as_str().unwrap().ends_with("reveal"))
        .collect();
    assert_eq!(reveals.len(), 11, "{reveals:#?}");
    for l in &lines {
        let t = l.to_string();
        assert!(!t.contains("Alice") && !t.contains("7946"), "{t}");
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_finds_the_pseudonym_the_proxy_emitted() {
    let env = start().await;
    let sent = env
        .through(
            "/events/page",
            &json!({"email": "Alice.Example@Example.com", "n": 1}),
        )
        .await;
    let (token, version) = email_token(&sent);
    assert_eq!(version, 1);

    let lookup = |value: &'static str, tok: &'static str| {
        let env = &env;
        async move {
            let r = env
                .call(
                    Method::POST,
                    "/lookup",
                    Some(&bearer(tok)),
                    Some(&json!({"kind": "email", "value": value})),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            json_of(&r)["pseudonyms"].as_array().unwrap().clone()
        }
    };
    // Another case, surrounding whitespace: the same subject.
    let rows = lookup("  alice.EXAMPLE@example.COM \t", PRIVACY_TOKEN).await;
    assert_eq!(rows.len(), 2, "two purposes, one held version: {rows:#?}");
    let row = rows
        .iter()
        .find(|r| r["purpose"] == AUDIENCE && r["version"] == 1)
        .unwrap_or_else(|| panic!("no row for {AUDIENCE} v1: {rows:#?}"));
    assert_eq!(row["pseudonym"], token.as_str(), "{rows:#?}");
    assert_eq!(row["recipient"], "analytics");
    assert_eq!(row["kind"], "email");
    let other = rows.iter().find(|r| r["purpose"] == SUPPORT).unwrap();
    assert_ne!(
        other["pseudonym"],
        token.as_str(),
        "purposes are unlinkable"
    );

    // The CLI, from the config and the ring, prints the same.
    let cfg = env.cfg_path.clone();
    let out = tokio::task::spawn_blocking(move || {
        run_bounded(
            scrim_cmd(&kek_hex())
                .args(["lookup", "--kind", "email", "-c"])
                .arg(&cfg)
                .arg("ALICE.example@example.com "),
            REFUSAL_TIMEOUT,
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    let cli_rows: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let cli_rows_set: Vec<String> = cli_rows.iter().map(Value::to_string).collect();
    let api_rows_set: Vec<String> = rows.iter().map(Value::to_string).collect();
    assert_eq!(cli_rows_set, api_rows_set, "CLI and API disagree");

    // After a rotation: both versions, the active one first, and the new
    // version's row is what the proxy now emits.
    assert_eq!(rotate_via_admin(&env.client, env.admin).await, 2);
    let sent = env
        .through(
            "/events/page",
            &json!({"email": "alice.example@example.com"}),
        )
        .await;
    let (token2, version2) = email_token(&sent);
    assert_eq!(version2, 2);
    let rows = lookup("Alice.Example@Example.com", SECURITY_TOKEN).await;
    assert_eq!(rows.len(), 4, "{rows:#?}");
    assert_eq!(rows[0]["version"], 2, "the active version first: {rows:#?}");
    let find = |v: u64| {
        rows.iter()
            .find(|r| r["purpose"] == AUDIENCE && r["version"] == v)
            .unwrap()["pseudonym"]
            .clone()
    };
    assert_eq!(find(2), token2.as_str());
    assert_eq!(find(1), token.as_str());

    // The audit log names neither the email nor its parts.
    let log = std::fs::read_to_string(&env.audit).unwrap().to_lowercase();
    assert!(
        !log.contains("alice") && !log.contains("example.com"),
        "{log}"
    );
    let lookups = audit_lines(&env.audit)
        .into_iter()
        .filter(|l| l["action"].as_str().unwrap().ends_with("lookup"))
        .count();
    assert_eq!(lookups, 3, "two API look-ups and one CLI look-up");
    env.stop().await;
}
