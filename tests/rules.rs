//! The shipped rule files: each passes `scrim check` and transforms its
//! fixture (`tests/fixtures/<rule file stem>.*`) into exactly what its
//! purpose allows. Then `scrim check` on broken files: exit 1 and
//! `file:line:col: error:` diagnostics with a `help:` line.

use serde_json::{json, Value};

use scrim::engine::{compile_str, Engine, Format};

use crate::support::{
    assert_no_leak, engine_for_rule_file, fixture, fixtures_dir, is_email_token, is_token,
    path_str, rules_dir, run, run_process, scrim, temp_file,
};

/// Every file in `rules/`, sorted.
fn rule_files() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(rules_dir())
        .expect("rules/ exists")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    v.sort();
    v
}

/// The fixture of a rule file: same stem, any extension.
fn fixture_for(rule_file: &str) -> Option<String> {
    let stem = rule_file.strip_suffix(".toml")?;
    std::fs::read_dir(fixtures_dir())
        .ok()?
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.rsplit_once('.').is_some_and(|(s, _)| s == stem))
}

/// Transforms a JSON fixture and returns the output bytes and parsed value.
fn json_fixture(e: &Engine, name: &str) -> (Vec<u8>, Value) {
    let out = run(e, Format::Json, &fixture(name));
    let v = serde_json::from_slice(&out).expect("the output is JSON");
    (out, v)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer}: {v}"))
}

fn assert_absent(v: &Value, pointers: &[&str]) {
    for p in pointers {
        assert!(v.pointer(p).is_none(), "{p} survived: {v}");
    }
}

/// The email token an engine gives `raw` under its `**.email`-style rule,
/// computed through a one-field document.
fn email_token(e: &Engine, field_doc: Value, pointer: &str) -> String {
    let out = run(e, Format::Json, field_doc.to_string().as_bytes());
    let v: Value = serde_json::from_slice(&out).unwrap();
    str_at(&v, pointer).to_owned()
}

// === every rule file ===

#[test]
fn every_rule_file_passes_scrim_check() {
    let files = rule_files();
    assert!(files.len() >= 4, "{files:?}");
    let mut cmd = scrim();
    cmd.arg("check");
    for f in &files {
        cmd.arg(rules_dir().join(f));
    }
    let out = run_process(&mut cmd, None);
    assert!(out.status.success(), "check failed:\n{}", out.stderr);
    let stdout = out.stdout_str();
    for f in &files {
        let line = stdout
            .lines()
            .find(|l| l.contains(f.as_str()))
            .unwrap_or_else(|| panic!("no line for {f}:\n{stdout}"));
        assert!(line.contains(": ok: purpose `"), "{line}");
        assert!(line.contains("art. 6(1)"), "{line}");
    }
    // Without arguments `check` reads ./rules (the binary runs in the crate root).
    let out = run_process(scrim().arg("check"), None);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout_str().lines().count(), files.len());
}

#[test]
fn every_rule_file_has_a_fixture() {
    for f in rule_files() {
        assert!(
            fixture_for(&f).is_some(),
            "rules/{f} has no fixture in tests/fixtures/ (same stem, any extension)"
        );
    }
}

#[test]
fn every_fixture_transforms_without_raw_personal_data() {
    // The personal values the fixtures carry, in every spelling they use.
    let personal = [
        "søren.ødegård@example.dk",
        "Søren Ødegård",
        "Ødegård",
        "zoe.celik",
        "Zoë Çelik",
        "José Núñez",
        "Núñez",
        "jose@example.es",
        "host.person@example.com",
        "203.0.113.77",
        "198.51.100.23",
        "8a2e:370:7334",
        "+45 20 30 40 50",
        "612 345 678",
        "u-48213",
        "u-99120",
        "visitor-8812",
        "d-77",
        "hunter2",
        "passport",
        "Aarhus",
    ];
    for f in rule_files() {
        let fx = fixture_for(&f).unwrap();
        let format = match fx.rsplit_once('.').unwrap().1 {
            "json" => Format::Json,
            "ndjson" => Format::Ndjson,
            "form" => Format::Form,
            "envelope" => Format::SentryEnvelope,
            other => panic!("unknown fixture extension {other}"),
        };
        let e = engine_for_rule_file(&f);
        let out = run(&e, format, &fixture(&fx));
        assert_no_leak(&out, &personal);
        // Look inside base64url payloads too (the pixel's `ue_px` and `cx`).
        if format == Format::Form {
            for (_, v) in form_urlencoded::parse(&out) {
                if let Ok(inner) = data_encoding::BASE64URL_NOPAD.decode(v.as_bytes()) {
                    assert_no_leak(&inner, &personal);
                }
            }
        }
    }
}

// === audience-analytics.toml ===

#[test]
fn audience_analytics_fixture() {
    let e = engine_for_rule_file("audience-analytics.toml");
    assert_eq!(e.rules().purpose.id, "audience-measurement");
    assert_eq!(e.rules().purpose.recipient, "analytics");
    assert!(!e.rules().default_keep());
    let (_, v) = json_fixture(&e, "audience-analytics.json");

    // Kept as sent.
    assert_eq!(v["event"], "participant_joined");
    assert_eq!(v["type"], "track");
    assert_eq!(v["webinar"]["id"], "w-2026-11");
    assert_eq!(v["webinar"]["slides"], 42);
    assert_eq!(v["participant"]["role"], "participant");
    assert_eq!(v["context"]["country"], "DK");
    assert_eq!(v["context"]["screen"], "1920x1080");
    assert_eq!(
        v["properties"],
        json!({
            "message": v["properties"]["message"],
            "poll_id": "p-7",
            "answer": "B",
            "duration_s": 1528,
            "feature": "reactions"
        })
    );
    // Generalised.
    assert_eq!(v["timestamp"], "2026-11-29T13:00:00Z");
    assert_eq!(v["context"]["ip"], "203.0.113.0");
    assert_eq!(v["context"]["user_agent"], "Chrome/120");
    assert_eq!(v["co_hosts"][0]["ip"], "2001:db8:85a3::");
    // Pseudonymised.
    let soren = str_at(&v, "/participant/email");
    assert!(is_email_token(soren, "pseudonym.invalid"), "{soren}");
    assert!(is_email_token(
        str_at(&v, "/webinar/host_email"),
        "pseudonym.invalid"
    ));
    assert!(is_token(str_at(&v, "/participant/user_id")));
    assert!(is_token(str_at(&v, "/co_hosts/0/user_id")));
    for p in ["/participant/name", "/co_hosts/0/name"] {
        let name = str_at(&v, p);
        assert!(
            name.strip_prefix("Participant ").is_some_and(is_token),
            "{p}: {name}"
        );
    }
    assert!(is_email_token(
        str_at(&v, "/co_hosts/0/email"),
        "pseudonym.invalid"
    ));
    // The email in the webinar title is scrubbed to the same token as the
    // participant's email field: pseudonyms join across fields.
    assert_eq!(
        str_at(&v, "/webinar/title"),
        format!("Q&A with {soren}"),
        "scrubbed title"
    );
    let message = str_at(&v, "/properties/message");
    assert!(message.starts_with("Call me on k7_"), "{message}");
    assert!(message.contains(" or mail k7_"), "{message}");
    let url = url::Url::parse(str_at(&v, "/context/page/url")).unwrap();
    assert_eq!(url.host_str(), Some("webinars.example.com"));
    assert_eq!(url.path(), "/join/w-2026-11");
    assert_eq!(url.fragment(), None);
    let params: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(params.len(), 2, "{url}");
    assert!(is_email_token(&params[0].1, "pseudonym.invalid"));
    assert_eq!(params[1], ("utm_source".into(), "newsletter".into()));
    // Dropped: nothing names them.
    assert_absent(
        &v,
        &[
            "/participant/phone",
            "/participant/password",
            "/context/locale",
            "/context/page/title",
            "/properties/free_text",
            "/co_hosts/0/bio",
        ],
    );
}

#[test]
fn audience_analytics_headers_query_and_cookies() {
    let e = engine_for_rule_file("audience-analytics.toml");
    let ua = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 \
              (KHTML, like Gecko) Version/17.1 Safari/605.1.15";
    assert_eq!(e.header("User-Agent", ua).as_deref(), Some("Safari/17"));
    assert_eq!(e.header("Accept-Language", "da").as_deref(), Some("da"));
    assert_eq!(
        e.header("X-Forwarded-For", "203.0.113.77").as_deref(),
        Some("203.0.113.0")
    );
    // A list of hops is not one IP: not forwarded rather than forwarded raw.
    assert_eq!(e.header("X-Forwarded-For", "203.0.113.77, 10.0.0.1"), None);
    assert_eq!(e.header("X-Real-IP", "203.0.113.77"), None);
    assert_eq!(e.header("Referer", "https://x/?email=a@b.dk"), None);
    let mut q = String::new();
    e.query(
        "utm_source=newsletter&email=jose%40example.es&name=Jos%C3%A9&utm_medium=mail",
        &mut q,
    )
    .unwrap();
    let pairs: Vec<(String, String)> = form_urlencoded::parse(q.as_bytes()).into_owned().collect();
    assert_eq!(pairs.len(), 2, "{q}");
    assert_eq!(pairs[0], ("utm_source".into(), "newsletter".into()));
    // The query email token is the body email token: same purpose, same kind.
    let body = email_token(
        &e,
        json!({"participant": {"email": "jose@example.es"}}),
        "/participant/email",
    );
    assert_eq!(pairs[1], ("email".into(), body));
    let c = e.cookies("session=s-1; ajs_user_id=u-48213").unwrap();
    let token = c.strip_prefix("session=").unwrap();
    assert!(is_token(token), "{c}");
}

// === error-tracking.toml ===

#[test]
fn error_tracking_fixture() {
    let e = engine_for_rule_file("error-tracking.toml");
    assert_eq!(e.rules().purpose.recipient, "error-tracking");
    let (_, v) = json_fixture(&e, "error-tracking.json");
    for (k, want) in [
        ("event_id", json!("9f2c1e0d8a4b4f0c9e1d2c3b4a5f6e7d")),
        ("level", json!("error")),
        ("platform", json!("javascript")),
        ("release", json!("webinar-app@4.2.0")),
        ("environment", json!("production")),
        ("timestamp", json!(1764427032)),
        (
            "tags",
            json!({"browser": "Chrome 120", "webinar": "w-2026-11"}),
        ),
    ] {
        assert_eq!(v[k], want, "{k}");
    }
    // Scrubbed free text keeps its words.
    let message = str_at(&v, "/message");
    assert!(
        message.starts_with("Failed to join webinar for k7_"),
        "{message}"
    );
    assert!(
        message.contains("@pseudonym.invalid from 247."),
        "{message}"
    );
    let exc = &v["exception"]["values"][0];
    assert_eq!(exc["type"], "TypeError");
    let value = exc["value"].as_str().unwrap();
    assert!(
        value.starts_with("cannot read 'stream' of undefined (user 247."),
        "{value}"
    );
    // Stack frames stay, their local variables do not.
    let frame = &exc["stacktrace"]["frames"][0];
    assert_eq!(
        *frame,
        json!({"function": "joinRoom", "filename": "room.js", "lineno": 42})
    );
    // The user: pseudonyms, an IP token in reserved space, no name.
    assert!(is_token(str_at(&v, "/user/id")));
    let email = str_at(&v, "/user/email");
    assert!(is_email_token(email, "pseudonym.invalid"));
    assert!(message.contains(email), "the message joins with user.email");
    let ip: std::net::Ipv4Addr = str_at(&v, "/user/ip_address").parse().unwrap();
    assert_eq!(ip.octets()[0], 0xF7);
    assert!(
        message.contains(&ip.to_string()),
        "the message joins with user.ip_address"
    );
    assert_absent(&v, &["/user/username", "/user/geo"]);
    // The request: URL with the email parameter tokenised, other params
    // dropped; the method; no headers, no body.
    let url = url::Url::parse(str_at(&v, "/request/url")).unwrap();
    let params: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(params, vec![("email".to_owned(), email.to_owned())]);
    assert_eq!(v["request"]["method"], "GET");
    assert_absent(&v, &["/request/headers", "/request/data", "/contexts"]);
    // Breadcrumbs: category kept, message scrubbed, data dropped.
    let crumbs = v["breadcrumbs"]["values"].as_array().unwrap();
    assert_eq!(crumbs.len(), 2);
    assert_eq!(crumbs[0]["category"], "ui.click");
    assert!(crumbs[0]["message"]
        .as_str()
        .unwrap()
        .starts_with("clicked join as k7_"));
    assert!(crumbs[0].get("data").is_none());
    assert_eq!(
        crumbs[1],
        json!({"category": "navigation", "message": "to /join/w-2026-11"})
    );
}

// === support-chat.toml ===

#[test]
fn support_chat_fixture() {
    let e = engine_for_rule_file("support-chat.toml");
    assert_eq!(e.rules().purpose.recipient, "support");
    let (_, v) = json_fixture(&e, "support-chat.json");
    assert_eq!(v["conversation_id"], "c-1207");
    assert_eq!(v["sent_at"], "2026-11-29T14:41:03Z");
    // keep_domain: a token at the real (lower-cased) domain.
    let email = str_at(&v, "/author/email");
    assert!(is_email_token(email, "example.com"), "{email}");
    let name = str_at(&v, "/author/name");
    assert!(
        name.strip_prefix("Visitor ").is_some_and(is_token),
        "{name}"
    );
    assert!(is_token(str_at(&v, "/author/phone")));
    assert_absent(&v, &["/author/id", "/visitor_ip"]);
    let body = str_at(&v, "/body");
    // Names in free text cannot be found by pattern (a documented limit);
    // the emails, phone numbers and IPs can.
    assert!(
        body.starts_with("Hi, I am Zoë. My colleague José (k7_"),
        "{body}"
    );
    assert!(body.contains("@pseudonym.invalid, k7_"), "{body}");
    let (_, ip) = body
        .rsplit_once(") cannot join from ")
        .unwrap_or_else(|| panic!("{body}"));
    let ip: std::net::Ipv4Addr = ip.strip_suffix('.').unwrap().parse().unwrap();
    assert_eq!(ip.octets()[0], 0xF7, "an IPv4 token: {body}");
    assert_eq!(v["attachments"], "[attachment removed]");
    assert_eq!(
        str_at(&v, "/page").split_once('=').map(|(a, _)| a),
        Some("https://webinars.example.com/help?email")
    );
    let page = url::Url::parse(str_at(&v, "/page")).unwrap();
    assert_eq!(page.fragment(), None);
    assert_eq!(page.query_pairs().count(), 1, "lang is not kept: {page}");
    // Domain separation: the support token of Zoë's address differs from the
    // analytics one.
    let analytics = engine_for_rule_file("audience-analytics.toml");
    let a = email_token(
        &analytics,
        json!({"participant": {"email": "zoe.celik+support@example.com"}}),
        "/participant/email",
    );
    let s = email_token(
        &e,
        json!({"author": {"email": "zoe.celik+support@example.com"}}),
        "/author/email",
    );
    assert_eq!(s, email);
    assert_ne!(a.split('@').next(), s.split('@').next());
}

// === snowplow-pixel.toml ===

#[test]
fn snowplow_pixel_fixture() {
    let e = engine_for_rule_file("snowplow-pixel.toml");
    assert_eq!(e.rules().purpose.recipient, "web-analytics");
    let out = run(&e, Format::Form, &fixture("snowplow-pixel.form"));
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&out).into_owned().collect();
    let get = |k: &str| -> &str {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no `{k}` in {pairs:?}"))
    };
    let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["e", "aid", "uid", "ip", "dtm", "res", "url", "page", "ue_px", "cx"],
        "order kept, unnamed fields (tv, duid, refr) dropped"
    );
    assert_eq!(get("e"), "ue");
    assert_eq!(get("aid"), "webinars");
    assert_eq!(get("res"), "1920x1080");
    assert!(is_token(get("uid")));
    assert_eq!(get("ip"), "203.0.113.0");
    assert_eq!(get("dtm"), "1764424800000");
    let url = url::Url::parse(get("url")).unwrap();
    let params: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(
        params.len(),
        1,
        "utm_source is not kept by this file: {url}"
    );
    assert!(is_email_token(&params[0].1, "pseudonym.invalid"));
    let page = get("page");
    assert!(
        page.starts_with("Join as k7_") && page.ends_with("@pseudonym.invalid"),
        "{page}"
    );

    let ue: Value = serde_json::from_slice(
        &data_encoding::BASE64URL_NOPAD
            .decode(get("ue_px").as_bytes())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        ue["schema"],
        "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
    );
    assert_eq!(
        ue["data"]["schema"],
        "iglu:com.example/webinar_action/jsonschema/1-0-0"
    );
    let data = &ue["data"]["data"];
    assert_eq!(data["action"], "raise_hand");
    assert_eq!(data["webinar_id"], "w-2026-11");
    assert!(is_email_token(
        data["email"].as_str().unwrap(),
        "pseudonym.invalid"
    ));
    assert!(
        data.get("name").is_none() && data.get("ip").is_none(),
        "{data}"
    );
    // The event's email and the URL's email are one person: one token.
    assert_eq!(data["email"].as_str().unwrap(), params[0].1);
    assert!(page.contains(&params[0].1));

    let cx: Value = serde_json::from_slice(
        &data_encoding::BASE64URL_NOPAD
            .decode(get("cx").as_bytes())
            .unwrap(),
    )
    .unwrap();
    let contexts = cx["data"].as_array().unwrap();
    assert_eq!(contexts.len(), 2);
    assert!(is_token(contexts[0]["data"]["id"].as_str().unwrap()));
    assert!(contexts[0]["data"].get("email").is_none());
    assert!(is_token(contexts[1]["data"]["id"].as_str().unwrap()));
    assert!(contexts[1]["data"].get("owner").is_none());
    assert_eq!(
        contexts[1]["schema"],
        "iglu:com.example/device/jsonschema/1-0-0"
    );
}

#[test]
fn snowplow_pixel_query_string() {
    let e = engine_for_rule_file("snowplow-pixel.toml");
    let form = String::from_utf8(fixture("snowplow-pixel.form")).unwrap();
    let mut q = String::new();
    e.query(&form, &mut q).unwrap();
    let pairs: Vec<(String, String)> = form_urlencoded::parse(q.as_bytes()).into_owned().collect();
    let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["e", "ue_px"], "only the query rules apply: {q}");
    let ue: Value = serde_json::from_slice(
        &data_encoding::BASE64URL_NOPAD
            .decode(pairs[1].1.as_bytes())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        ue["data"]["schema"],
        "iglu:com.example/webinar_action/jsonschema/1-0-0"
    );
    assert!(is_email_token(
        ue["data"]["data"]["email"].as_str().unwrap(),
        "pseudonym.invalid"
    ));
    assert!(ue["data"]["data"].get("action").is_none());
    assert_no_leak(q.as_bytes(), &["u-48213", "203.0.113.77", "jose"]);
}

// === `scrim check` on broken files ===

const PURPOSE: &str = "[purpose]\nid = \"p\"\nlegal_basis = \"contract\"\nretention = \"6 months\"\nrecipient = \"r\"\n\n";

/// Runs `scrim check` on `text`; asserts exit 1 and returns stderr and the path.
fn check_fails(text: &str) -> (String, String) {
    let (_dir, path) = temp_file("bad.toml", text.as_bytes());
    let out = run_process(scrim().arg("check").arg(&path), None);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(
        out.stderr.contains("1 of 1 files failed the check"),
        "{}",
        out.stderr
    );
    (out.stderr, path_str(&path).to_owned())
}

/// Asserts a diagnostic at `line:col` whose message contains `message`,
/// followed by a `help:` line containing `help`.
fn assert_diagnostic(stderr: &str, path: &str, line: usize, col: usize, message: &str, help: &str) {
    let head = format!("{path}:{line}:{col}: error: ");
    let lines: Vec<&str> = stderr.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with(&head) && l.contains(message))
        .unwrap_or_else(|| panic!("no `{head}...{message}` in:\n{stderr}"));
    let h = lines
        .get(i + 1)
        .unwrap_or_else(|| panic!("no help line after `{}`", lines[i]));
    assert!(h.trim_start().starts_with("help: "), "{h}");
    assert!(h.contains(help), "`{help}` not in `{h}`");
}

#[test]
fn check_reports_an_unknown_action() {
    let text = format!("{PURPOSE}[[rule]]\nfield = \"user.email\"\naction = \"obfuscate\"\n");
    let (err, path) = check_fails(&text);
    assert_diagnostic(
        &err,
        &path,
        9,
        10,
        "unknown variant `obfuscate`",
        "use one of the values",
    );
    assert!(
        err.contains("pseudonymise"),
        "the message lists the actions: {err}"
    );
}

#[test]
fn check_reports_a_malformed_selector_at_its_column() {
    let text = format!("{PURPOSE}[[rule]]\nfield = \"user..email\"\naction = \"keep\"\n");
    let (err, path) = check_fails(&text);
    // Column 15 is the second `.`: `field = "` is 9 columns, `user.` 5 more.
    assert_diagnostic(
        &err,
        &path,
        8,
        15,
        "invalid selector `user..email`: expected a field name",
        "selectors look like",
    );
    let text = format!(
        "{PURPOSE}[[rule]]\nfield = \"user.email\"\naction = \"keep\"\n\n\
         [[rule]]\nquery = \"batch[x].ip\"\naction = \"drop\"\n"
    );
    let (err, path) = check_fails(&text);
    assert_diagnostic(
        &err,
        &path,
        12,
        16,
        "expected `[*]` or `[N]`",
        "selectors look like",
    );
    let text = format!("{PURPOSE}[[rule]]\nfield = \"first name\"\naction = \"keep\"\n");
    let (err, path) = check_fails(&text);
    assert_diagnostic(&err, &path, 8, 10, "must be quoted", "selectors look like");
}

#[test]
fn check_reports_conflicting_rules() {
    let text = format!(
        "{PURPOSE}[[rule]]\nfield = \"*.email\"\naction = \"pseudonymise\"\nkind = \"email\"\n\n\
         [[rule]]\nid = \"user-all\"\nfield = \"user.*\"\naction = \"keep\"\n"
    );
    let (err, path) = check_fails(&text);
    assert_diagnostic(
        &err,
        &path,
        14,
        9,
        "this rule and `rule[1]` (line 7) both select `user.*` with actions `pseudonymise` and `keep`",
        "make one selector more specific",
    );
    // The same selector twice, even with the same action.
    let text = format!(
        "{PURPOSE}[[rule]]\nfield = \"**.ip\"\naction = \"drop\"\n\n\
         [[rule]]\nfield = \"**.ip\"\naction = \"drop\"\n"
    );
    let (err, path) = check_fails(&text);
    assert_diagnostic(
        &err,
        &path,
        12,
        9,
        "both select `**.ip`",
        "keep one of them",
    );
}

#[test]
fn check_reports_a_missing_legal_basis_and_retention() {
    let text =
        "[purpose]\nid = \"p\"\nrecipient = \"r\"\n\n[[rule]]\nfield = \"a\"\naction = \"keep\"\n";
    let (err, path) = check_fails(text);
    assert_diagnostic(
        &err,
        &path,
        1,
        1,
        "the purpose has no legal basis",
        "add legal_basis = ",
    );
    assert_diagnostic(
        &err,
        &path,
        1,
        1,
        "the purpose has no retention period",
        "add retention = \"13 months\"",
    );
    let text = "[purpose]\nid = \"p\"\nlegal_basis = \"contract\"\nretention = \"a while\"\nrecipient = \"r\"\n";
    let (err, path) = check_fails(text);
    assert_diagnostic(
        &err,
        &path,
        4,
        13,
        "retention is not a period",
        "\"6 months\"",
    );
    let text = "[purpose]\nid = \"p\"\nlegal_basis = \"because\"\nretention = \"1 year\"\nrecipient = \"r\"\n";
    let (err, path) = check_fails(text);
    assert_diagnostic(
        &err,
        &path,
        3,
        15,
        "unknown variant `because`",
        "use one of the values",
    );
}

#[test]
fn check_refuses_the_hash_and_mask_actions() {
    let text = format!("{PURPOSE}[[rule]]\nfield = \"user.email\"\naction = \"hash\"\n");
    let (err, path) = check_fails(&text);
    assert_diagnostic(
        &err,
        &path,
        9,
        10,
        "`hash` is not supported",
        "action = \"pseudonymise\"",
    );
    assert!(err.contains("keyed HMAC"), "{err}");
    let text = format!("{PURPOSE}[[rule]]\nfield = \"user.email\"\naction = \"mask\"\n");
    let (err, path) = check_fails(&text);
    assert_diagnostic(&err, &path, 9, 10, "`mask` is not supported", "\"drop\"");
}

#[test]
fn check_reports_options_and_kinds_that_do_not_fit() {
    let text = format!(
        "{PURPOSE}[[rule]]\nfield = \"a\"\naction = \"keep\"\nkind = \"email\"\n\n\
         [[rule]]\nfield = \"b\"\naction = \"pseudonymise\"\nkind = \"timestamp\"\n\n\
         [[rule]]\nfield = \"c\"\naction = \"generalise\"\nkind = \"ip\"\nipv4_prefix = 33\n"
    );
    let (err, path) = check_fails(&text);
    assert_diagnostic(
        &err,
        &path,
        10,
        8,
        "action `keep` takes no kind",
        "remove `kind`",
    );
    assert_diagnostic(
        &err,
        &path,
        15,
        8,
        "kind `timestamp` cannot be pseudonymised",
        "generalise",
    );
    assert_diagnostic(
        &err,
        &path,
        21,
        15,
        "ipv4_prefix must be 1 to 32",
        "default is 24",
    );
    let text = format!("{PURPOSE}[[rule]]\npath = \"a.b\"\naction = \"keep\"\n");
    let (err, path) = check_fails(&text);
    assert_diagnostic(&err, &path, 8, 1, "unknown field `path`", "field = ...");
}

#[test]
fn check_keeps_going_over_several_files_and_fails_if_any_fails() {
    let (_dir, bad) = temp_file(
        "bad.toml",
        format!("{PURPOSE}[[rule]]\nfield = \"a\"\naction = \"hash\"\n").as_bytes(),
    );
    let good = rules_dir().join("support-chat.toml");
    let out = run_process(scrim().arg("check").arg(&good).arg(&bad), None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout_str().contains("support-chat.toml: ok:"),
        "{}",
        out.stdout_str()
    );
    assert!(
        out.stderr
            .contains(&format!("{}:9:10: error:", bad.display())),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("1 of 2 files failed the check"),
        "{}",
        out.stderr
    );
    // A file that does not exist is an error too, not a panic.
    let out = run_process(scrim().arg("check").arg("/nonexistent/rules.toml"), None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr.contains("cannot read the file"),
        "{}",
        out.stderr
    );
}

#[test]
fn compile_str_reports_every_problem_of_a_file() {
    let text = format!(
        "{PURPOSE}[[rule]]\nfield = \"a..b\"\naction = \"keep\"\n\n\
         [[rule]]\nfield = \"c\"\naction = \"hash\"\n"
    );
    let e = compile_str(&text, "two.toml").unwrap_err();
    let at: Vec<(usize, usize)> = e.diagnostics.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(at, vec![(8, 12), (13, 10)]);
    assert!(e.diagnostics.iter().all(|d| d.help.is_some()));
    let shown = e.to_string();
    assert!(
        shown.starts_with("two.toml:8:12: error: invalid selector"),
        "{shown}"
    );
    assert_eq!(shown.matches("\n  help: ").count(), 2, "{shown}");
}
