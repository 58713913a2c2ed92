//! Sentry envelopes (`Format::SentryEnvelope`) and the store endpoint
//! (`Format::SentryEvent`): the documented envelope format in and out, the
//! shipped `rules/sentry.toml` on it, framing (`length` with newlines inside,
//! items without `length`, a last item without a newline), the allow-list
//! item by item (unknown types and attachments dropped whole, never
//! partially), errors with byte offsets; then through the proxy (gzip in,
//! gzip out; malformed: 400 and nothing forwarded; the store route).

use std::io::Read;

use http::{Request, StatusCode};
use serde_json::{json, Value};

use crate::proxy_support as ps;
use crate::support::{
    assert_no_leak, engine, engine_for_rule_file, engine_from_toml, fixture, is_email_token,
    is_token, rule_file, rules_dir, run, run_process, scrim_with_key, temp_file,
};
use scrim::engine::{Engine, Format, Reason};

// --- helpers -------------------------------------------------------------------

/// One parsed item: its header and its payload bytes.
#[derive(Debug)]
struct Item {
    header: Value,
    payload: Vec<u8>,
}

impl Item {
    fn ty(&self) -> &str {
        self.header["type"].as_str().expect("every item has a type")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!(
                "the {} payload is not JSON ({e}): {}",
                self.ty(),
                String::from_utf8_lossy(&self.payload)
            )
        })
    }
}

/// Parses an envelope strictly, the way Sentry's ingestion reads one, and
/// checks what scrim promises about its output: every item carries a
/// `length` that frames its payload exactly, and a newline follows it.
fn parse(out: &[u8]) -> (Value, Vec<Item>) {
    let text = || String::from_utf8_lossy(out).into_owned();
    let nl = out
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or_else(|| panic!("no envelope header line: {}", text()));
    let header: Value = serde_json::from_slice(&out[..nl]).expect("the header is JSON");
    assert!(header.is_object(), "header {header}");
    let mut pos = nl + 1;
    let mut items = Vec::new();
    while pos < out.len() {
        let nl = pos
            + out[pos..]
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or_else(|| panic!("an item header without newline: {}", text()));
        let head: Value = serde_json::from_slice(&out[pos..nl]).expect("an item header is JSON");
        let len = head["length"]
            .as_u64()
            .unwrap_or_else(|| panic!("scrim writes a length on every item: {head}"))
            as usize;
        let start = nl + 1;
        assert!(start + len < out.len(), "length past the end: {}", text());
        assert_eq!(out[start + len], b'\n', "a newline after the payload");
        items.push(Item {
            header: head,
            payload: out[start..start + len].to_vec(),
        });
        pos = start + len + 1;
    }
    (header, items)
}

fn envelope_of(engine: &Engine, input: &[u8]) -> (Vec<u8>, Value, Vec<Item>) {
    let out = run(engine, Format::SentryEnvelope, input);
    let (h, items) = parse(&out);
    (out, h, items)
}

fn error_of(engine: &Engine, input: &[u8]) -> scrim::engine::EngineError {
    let mut out = Vec::new();
    match engine.transform(Format::SentryEnvelope, input, &mut out) {
        Ok(_) => panic!(
            "accepted {:?} as {:?}",
            String::from_utf8_lossy(input),
            String::from_utf8_lossy(&out)
        ),
        Err(e) => e,
    }
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

fn is_ipv4_token(s: &str) -> bool {
    s.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|ip| ip.octets()[0] >= 240)
}

/// The personal values of `tests/fixtures/sentry.envelope`, in every
/// spelling it uses.
const PERSONAL: &[&str] = &[
    "søren.ødegård@example.dk",
    "s%C3%B8ren.%C3%B8deg%C3%A5rd%40example.dk",
    "Søren Ødegård",
    "Ødegård",
    "soren-laptop",
    "Zoë Çelik",
    "José Núñez",
    "jose@example.es",
    "203.0.113.77",
    "198.51.100.23",
    "+45 20 30 40 50",
    "u-48213",
    "hunter2",
    "Aarhus",
    "participants.txt",
];

/// A rule file under the test purpose with these rules.
fn rules(text: &str) -> Engine {
    engine(text)
}

// --- the shipped rule file on the documented format -----------------------------

#[test]
fn sentry_rule_file_on_a_documented_envelope() {
    let e = engine_for_rule_file("sentry.toml");
    assert_eq!(e.rules().purpose.id, "error-tracking");
    assert_eq!(e.rules().purpose.recipient, "error-tracking");
    let input = fixture("sentry.envelope");
    let (out, header, items) = envelope_of(&e, &input);
    assert_no_leak(&out, PERSONAL);
    for item in &items {
        assert_no_leak(&item.payload, PERSONAL);
    }

    // The header: what identifies the event, project and release.
    assert_eq!(header["event_id"], "9ec79c33ec9942ab8353589fcb2e04dc");
    assert_eq!(
        header["dsn"],
        "https://e12d836b15bb49d7bbf99e64295d995b@sentry.example.com/42"
    );
    assert_eq!(header["sent_at"], "2026-11-29T14:03:12.000Z");
    assert_eq!(header["sdk"]["name"], "sentry.javascript.browser");
    assert_eq!(header["trace"]["release"], "webinar-app@4.2.0");
    let user_id = str_at(&header, "/trace/user_id");
    assert!(is_token(user_id), "{user_id}");
    assert_absent(&header, &["/trace/user_segment"]);

    // The attachment (opaque, no keep rule) and the unknown item type are
    // gone, headers and all; the rest keep their order.
    let types: Vec<&str> = items.iter().map(Item::ty).collect();
    assert_eq!(types, ["event", "session", "user_report", "client_report"]);
    for item in &items {
        let keys: Vec<&str> = item
            .header
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert!(
            keys.iter()
                .all(|k| ["type", "length", "content_type"].contains(k)),
            "{}",
            item.header
        );
    }
    assert_eq!(items[0].header["content_type"], "application/json");

    // The event (length-framed, pretty-printed: newlines inside).
    let ev = items[0].json();
    for (k, want) in [
        ("event_id", json!("9ec79c33ec9942ab8353589fcb2e04dc")),
        ("timestamp", json!(1764427392.5)),
        ("platform", json!("javascript")),
        ("level", json!("error")),
        ("logger", json!("webinar.room")),
        ("release", json!("webinar-app@4.2.0")),
        ("environment", json!("production")),
        (
            "tags",
            json!({"webinar": "w-2026-11", "browser": "Firefox 121"}),
        ),
        (
            "sdk",
            json!({"name": "sentry.javascript.browser", "version": "8.0.0"}),
        ),
    ] {
        assert_eq!(ev[k], want, "{k}");
    }
    let email = str_at(&ev, "/user/email");
    assert!(is_email_token(email, "pseudonym.invalid"), "{email}");
    assert_eq!(
        str_at(&ev, "/user/id"),
        user_id,
        "the header's user id joins"
    );
    let ip = str_at(&ev, "/user/ip_address");
    assert!(is_ipv4_token(ip), "{ip}");
    assert_absent(
        &ev,
        &[
            "/user/username",
            "/user/name",
            "/user/geo",
            "/server_name",
            "/extra",
            "/logentry/params",
            "/contexts/device",
            "/contexts/trace/data",
        ],
    );
    assert_eq!(
        str_at(&ev, "/message"),
        format!("Failed to join webinar for {email} from {ip}")
    );
    assert_eq!(
        str_at(&ev, "/logentry/formatted"),
        format!("Failed to join webinar for {email}")
    );
    assert_eq!(ev["logentry"]["message"], "Failed to join webinar for %s");
    let exc = &ev["exception"]["values"][0];
    assert_eq!(exc["type"], "TypeError");
    assert_eq!(
        exc["value"],
        format!("cannot read 'stream' of undefined (user {ip})")
    );
    assert_eq!(
        exc["mechanism"],
        json!({"type": "onerror", "handled": false})
    );
    let frame = &exc["stacktrace"]["frames"][0];
    assert_eq!(
        *frame,
        json!({
            "function": "joinRoom", "filename": "room.js",
            "abs_path": "https://webinars.example.com/static/room.js",
            "lineno": 42, "colno": 7, "in_app": true,
            "context_line": format!("  join(user) // {email}"),
            "pre_context": ["function joinRoom(user) {"], "post_context": ["}"]
        })
    );
    // The request: URL with the email parameter tokenised (lang and the
    // fragment dropped), an allow-list of headers, no body, cookies or env.
    let req = &ev["request"];
    let url = url::Url::parse(str_at(req, "/url")).unwrap();
    assert_eq!(url.path(), "/join/w-2026-11");
    assert_eq!(url.fragment(), None);
    let params: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(params, [("email".to_owned(), email.to_owned())]);
    assert_eq!(req["method"], "GET");
    let headers = req["headers"].as_object().unwrap();
    let mut names: Vec<&str> = headers.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["Referer", "User-Agent"], "{req}");
    assert_eq!(headers["User-Agent"], "Firefox/121");
    assert!(
        str_at(req, "/headers/Referer").contains("email=k7_"),
        "{req}"
    );
    assert_absent(
        req,
        &["/query_string", "/cookies", "/data", "/env", "/fragment"],
    );
    // Breadcrumbs: free text scrubbed, data only for HTTP.
    let crumbs = ev["breadcrumbs"]["values"].as_array().unwrap();
    assert_eq!(
        crumbs[0],
        json!({"timestamp": 1764427390, "category": "ui.click",
               "message": format!("clicked join as {email}")})
    );
    assert_eq!(crumbs[1]["type"], "http");
    assert_eq!(crumbs[1]["data"]["method"], "GET");
    assert_eq!(crumbs[1]["data"]["status_code"], 403);
    assert!(str_at(&crumbs[1], "/data/url").contains("email=k7_"));
    assert_eq!(ev["contexts"]["os"], json!({"name": "Linux"}));
    assert_eq!(ev["contexts"]["browser"]["version"], "121.0");
    assert_eq!(ev["contexts"]["trace"]["op"], "ui.action");

    // The session (no length in the input): the same pseudonyms.
    let s = items[1].json();
    assert_eq!(s["did"], user_id);
    assert_eq!(s["attrs"]["ip_address"], ip);
    assert_eq!(s["attrs"]["user_agent"], "Firefox/121");
    assert_eq!(s["sid"], "7c7b6e2a-8f4e-4b7e-9d8b-2f4a5c6d7e8f");
    assert_eq!(s["status"], "ok");
    assert_eq!(s["errors"], 1);

    // User feedback: the name goes, the email and the comment are pseudonymised.
    let r = items[2].json();
    assert_absent(&r, &["/name"]);
    assert!(is_email_token(str_at(&r, "/email"), "pseudonym.invalid"));
    assert!(str_at(&r, "/comments").starts_with("Call me on k7_"), "{r}");

    // The last item had no newline in the input; it has one now.
    assert_eq!(
        items[3].json(),
        json!({"timestamp": 1764427392, "discarded_events": [
            {"reason": "queue_overflow", "category": "error", "quantity": 1}]})
    );
    assert!(out.ends_with(b"\n"));
}

#[test]
fn store_event_is_read_like_the_envelope_event_item() {
    // One rule file serves both endpoints: the store endpoint's event gives
    // exactly the bytes of the envelope's event item.
    let e = engine_for_rule_file("sentry.toml");
    let input = fixture("sentry.envelope");
    let (_, _, items) = envelope_of(&e, &input);
    let (_, raw_items) = raw_items(&input);
    let raw_event = &raw_items[0];
    let store = run(&e, Format::SentryEvent, raw_event);
    assert_eq!(
        String::from_utf8_lossy(&store),
        String::from_utf8_lossy(&items[0].payload)
    );
    assert_no_leak(&store, PERSONAL);
    // An event nothing keeps is still an object; a broken one is an error.
    assert_eq!(run(&e, Format::SentryEvent, br#"{"extra":{"a":1}}"#), b"{}");
    let mut out = Vec::new();
    let err = e
        .transform(Format::SentryEvent, b"{\"user\":", &mut out)
        .unwrap_err();
    // Where a plain JSON document reports the same error.
    let json_err = e
        .transform(Format::Json, b"{\"user\":", &mut out)
        .unwrap_err();
    assert_eq!(err, json_err);
}

/// The raw payloads of an input envelope, by a minimal reading (tests only).
fn raw_items(input: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let nl = input.iter().position(|&b| b == b'\n').unwrap();
    let mut pos = nl + 1;
    let mut out = Vec::new();
    while pos < input.len() {
        let nl = pos + input[pos..].iter().position(|&b| b == b'\n').unwrap();
        let head: Value = serde_json::from_slice(&input[pos..nl]).unwrap();
        let start = nl + 1;
        let end = match head["length"].as_u64() {
            Some(n) => start + n as usize,
            None => input[start..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(input.len(), |p| start + p),
        };
        out.push(input[start..end].to_vec());
        pos = end + 1;
    }
    (input[..nl].to_vec(), out)
}

// --- framing ----------------------------------------------------------------------

const KEEP_ALL_EVENTS: &str = r#"
[[rule]]
field = "event"
action = "keep"

[[rule]]
field = "event.user.email"
action = "pseudonymise"
kind = "email"
"#;

#[test]
fn lengths_are_recomputed_and_newlines_inside_payloads_survive() {
    let e = rules(KEEP_ALL_EVENTS);
    // A pretty-printed event framed by length, then one without length,
    // then one at the end without a trailing newline.
    let pretty = "{\n  \"user\": {\"email\": \"a@b.dk\"},\n  \"level\": \"error\"\n}";
    let input = format!(
        "{{}}\n{{\"type\":\"event\",\"length\":{}}}\n{pretty}\n\
         {{\"type\":\"event\"}}\n{{\"level\":\"info\"}}\n\
         {{\"type\":\"event\",\"length\":16}}\n{{\"level\":\"warn\"}}",
        pretty.len()
    );
    let (out, header, items) = envelope_of(&e, input.as_bytes());
    assert_eq!(header, json!({}));
    assert_eq!(items.len(), 3, "{}", String::from_utf8_lossy(&out));
    let first = items[0].json();
    assert!(is_email_token(
        str_at(&first, "/user/email"),
        "pseudonym.invalid"
    ));
    assert_eq!(items[1].json(), json!({"level": "info"}));
    assert_eq!(items[2].json(), json!({"level": "warn"}));
    assert_no_leak(&out, &["a@b.dk"]);
    // CRLF after a framed payload and blank lines between items are read;
    // the output uses plain newlines.
    let crlf =
        b"{}\r\n{\"type\":\"event\",\"length\":2}\r\n{}\r\n\n\n{\"type\":\"event\"}\r\n{}\r\n";
    let (out, _, items) = envelope_of(&e, crlf);
    assert_eq!(items.len(), 2);
    assert!(!out.contains(&b'\r'), "{}", String::from_utf8_lossy(&out));
    // Only a header: a valid envelope without items.
    assert_eq!(run(&e, Format::SentryEnvelope, b"{\"a\":1}"), b"{}\n");
    assert_eq!(
        run(&e, Format::SentryEnvelope, b"{\"event_id\":\"x\"}\n"),
        b"{}\n"
    );
}

#[test]
fn attachments_pass_whole_or_not_at_all() {
    let payload: &[u8] = b"line one: a@b.dk\r\n\n{\"type\":\"event\"}\n\xff\x00binary";
    let envelope = |ct: &str| {
        let mut v = format!(
            "{{\"event_id\":\"e1\"}}\n{{\"type\":\"attachment\",\"length\":{},\
             \"content_type\":\"{ct}\",\"filename\":\"notes-a@b.dk.txt\",\
             \"attachment_type\":\"event.attachment\",\"x_custom\":\"a@b.dk\"}}\n",
            payload.len()
        )
        .into_bytes();
        v.extend_from_slice(payload);
        v.extend_from_slice(b"\n{\"type\":\"event\"}\n{\"level\":\"error\"}\n");
        v
    };
    let kept = rules(
        r#"
[[rule]]
field = "attachment"
action = "keep"
[[rule]]
field = "event.level"
action = "keep"
"#,
    );
    for ct in ["text/plain", "application/json", "application/octet-stream"] {
        let (out, _, items) = envelope_of(&kept, &envelope(ct));
        assert_eq!(items.len(), 2, "{}", String::from_utf8_lossy(&out));
        assert_eq!(items[0].ty(), "attachment");
        assert_eq!(items[0].payload, payload, "kept byte for byte");
        assert_eq!(items[0].header["length"], payload.len());
        assert_eq!(items[0].header["content_type"], ct);
        assert_eq!(items[0].header["attachment_type"], "event.attachment");
        let name = items[0].header["filename"].as_str().unwrap();
        assert!(
            name.contains("k7_") && !name.contains("a@b.dk"),
            "the file name is scrubbed: {name}"
        );
        assert!(items[0].header.get("x_custom").is_none());
        assert_eq!(items[1].json(), json!({"level": "error"}));
    }
    // No keep rule for the type, or a rule on something inside it, or any
    // other action: the attachment is dropped, never opened.
    for text in [
        "[[rule]]\nfield = \"event.level\"\naction = \"keep\"\n",
        "[[rule]]\nfield = \"attachment.type\"\naction = \"keep\"\n",
        "[[rule]]\nfield = \"attachment\"\naction = \"scrub\"\n",
        "[[rule]]\nfield = \"attachment\"\naction = \"drop\"\n",
        "[[rule]]\nfield = \"attachment\"\naction = \"replace\"\nvalue = \"x\"\n",
    ] {
        let e = rules(text);
        let (out, _, items) = envelope_of(&e, &envelope("application/json"));
        assert!(
            items.iter().all(|i| i.ty() != "attachment"),
            "{text}: {}",
            String::from_utf8_lossy(&out)
        );
        assert_no_leak(&out, &["a@b.dk", "line one"]);
    }
    // The shipped file drops attachments.
    let e = engine_for_rule_file("sentry.toml");
    let (out, _, items) = envelope_of(&e, &envelope("text/plain"));
    assert!(items.iter().all(|i| i.ty() != "attachment"));
    assert_no_leak(&out, &["a@b.dk", "line one"]);
}

#[test]
fn items_no_rule_names_are_dropped_whole() {
    let e = rules(
        r#"
[[rule]]
field = "event.level"
action = "keep"
[[rule]]
field = "envelope.event_id"
action = "keep"
"#,
    );
    let profile = r#"{"user":"a@b.dk","x":1}"#;
    let input = format!(
        "{{\"event_id\":\"e1\",\"dsn\":\"https://k@h/1\"}}\n\
         {{\"type\":\"profile\",\"length\":{}}}\n{profile}\n\
         {{\"type\":\"transaction\"}}\n{{\"level\":\"error\",\"user\":{{\"email\":\"a@b.dk\"}}}}\n\
         {{\"type\":\"envelope\"}}\n{{\"event_id\":\"a@b.dk\"}}\n\
         {{\"type\":\"event\"}}\n{{\"level\":\"error\",\"user\":{{\"email\":\"a@b.dk\"}}}}\n",
        profile.len()
    );
    let input = input.as_bytes();
    let (out, header, items) = envelope_of(&e, input);
    assert_eq!(header, json!({"event_id": "e1"}));
    // `envelope` names the header, never an item.
    assert_eq!(items.len(), 1, "{}", String::from_utf8_lossy(&out));
    assert_eq!(items[0].json(), json!({"level": "error"}));
    assert_no_leak(&out, &["a@b.dk", "profile", "transaction"]);
    // A type whose only rule drops it, or makes a scalar of an object: gone.
    for action in [
        "action = \"drop\"",
        "action = \"pseudonymise\"\nkind = \"id\"",
    ] {
        let e = rules(&format!("[[rule]]\nfield = \"event\"\n{action}\n"));
        let (_, _, items) = envelope_of(&e, input);
        assert!(items.is_empty(), "{action}");
    }
    // A file whose default is keep passes everything, lengths rebuilt.
    let keep = engine_from_toml(
        &rule_file("p", "r", "")
            .replace("recipient = \"r\"", "recipient = \"r\"\ndefault = \"keep\""),
    );
    let (_, header, items) = envelope_of(&keep, input);
    assert_eq!(header["dsn"], "https://k@h/1");
    let types: Vec<&str> = items.iter().map(Item::ty).collect();
    assert_eq!(types, ["profile", "transaction", "event"]);
}

#[test]
fn malformed_envelopes_are_errors_with_offsets() {
    let e = engine_for_rule_file("sentry.toml");
    let secret = "søren.ødegård@example.dk";
    let ev = format!("{{\"user\":{{\"email\":\"{secret}\"}}}}");
    let cases: Vec<(String, usize, &str)> = vec![
        (String::new(), 0, "malformed_envelope"),
        ("\n\n".into(), 0, "malformed_envelope"),
        (format!("[\"{secret}\"]\n"), 0, "malformed_envelope"),
        (format!("  \"{secret}\"\n"), 2, "malformed_envelope"),
        // The trailing comma's `}`: 6 bytes, the secret's 27, `",`.
        (format!("{{\"a\":\"{secret}\",}}\n"), 35, "malformed"),
        (
            format!("{{}}\n{{\"type\":\"event\"\n{ev}\n"),
            17,
            "malformed",
        ),
        (format!("{{}}\n[1]\n{ev}\n"), 3, "malformed_envelope"),
        (
            "{}\n{\"length\":2}\n{}\n".to_owned(),
            3,
            "malformed_envelope",
        ),
        (
            "{}\n{\"type\":\"event\",\"length\":-1}\n{}\n".to_owned(),
            3,
            "malformed_envelope",
        ),
        // The length runs past the end.
        (
            format!("{{}}\n{{\"type\":\"event\",\"length\":999}}\n{ev}\n"),
            3,
            "malformed_envelope",
        ),
        // The payload is longer than its length: no newline where it ends.
        (
            format!(
                "{{}}\n{{\"type\":\"event\",\"length\":{}}}\n{ev}xx\n",
                ev.len()
            ),
            // `{}\n` and the 28-byte item header line and its newline.
            3 + 29 + ev.len(),
            "malformed_envelope",
        ),
        // A JSON item that is not JSON: the offset points into the payload.
        (
            format!("{{}}\n{{\"type\":\"event\"}}\n{{\"user\": {secret}}}\n"),
            29,
            "malformed",
        ),
        (
            // The payload starts at 33; like any JSON error, the offset is
            // where the parser stopped: its last byte.
            "{}\n{\"type\":\"session\",\"length\":5}\n{\"a\":\n".to_owned(),
            37,
            "malformed",
        ),
    ];
    for (input, offset, code) in &cases {
        let err = error_of(&e, input.as_bytes());
        assert_eq!(err.reason.code(), *code, "{input:?}: {err}");
        assert_eq!(err.offset, *offset, "{input:?}: {err}");
        let shown = err.to_string();
        assert!(shown.starts_with(&format!("byte {offset}: ")), "{shown}");
        assert!(
            !shown.contains("example.dk"),
            "the error quotes input: {shown}"
        );
    }
    assert!(matches!(
        error_of(&e, b"{}\n{\"type\":\"event\",\"length\":99}\n{}\n").reason,
        Reason::Envelope(_)
    ));
}

#[test]
fn transform_reads_envelope_files() {
    let (_dir, path) = temp_file("in.envelope", &fixture("sentry.envelope"));
    let out = run_process(
        scrim_with_key()
            .arg("transform")
            .arg("--rules")
            .arg(rules_dir().join("sentry.toml"))
            .arg(&path),
        None,
    );
    assert!(out.status.success(), "{}", out.stderr);
    let (_, items) = parse(&out.stdout);
    assert_eq!(items.len(), 4);
    assert_no_leak(&out.stdout, PERSONAL);
    let out = run_process(
        scrim_with_key()
            .args(["transform", "--format", "sentry-envelope", "--rules"])
            .arg(rules_dir().join("sentry.toml")),
        Some(b"{}\n{\"type\":\"event\",\"length\":5}\n{}\n"),
    );
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("byte 3: malformed envelope"),
        "{}",
        out.stderr
    );
}

// --- through the proxy --------------------------------------------------------------

const SENTRY: &str = include_str!("../rules/sentry.toml");
const AUTH: &str = "Sentry sentry_key=e12d836b15bb49d7bbf99e64295d995b, sentry_version=7, \
                    sentry_client=sentry.javascript.browser/8.0.0";

fn sentry_config(up: &ps::Upstream) -> String {
    let rules = ps::toml_path(&rules_dir().join("sentry.toml"));
    format!(
        "[[listener]]\naddr = \"127.0.0.1:0\"\n\n[upstream.sentry]\nurl = \"{}\"\n\n\
         [[route]]\npath = \"/api/42/envelope/\"\nmethods = [\"POST\"]\nupstream = \"sentry\"\n\
         rules = {rules}\n\n\
         [[route]]\npath = \"/api/42/store/\"\nmethods = [\"POST\"]\nupstream = \"sentry\"\n\
         rules = {rules}\nbody_format = \"sentry-event\"\n",
        up.url()
    )
}

fn sentry_responder() -> ps::Responder {
    std::sync::Arc::new(|_| {
        Box::pin(async {
            ps::json_response(
                StatusCode::OK,
                r#"{"id":"9ec79c33ec9942ab8353589fcb2e04dc"}"#,
            )
        })
    })
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("the upstream body is gzip");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_rewrites_a_gzip_envelope() {
    let up = ps::Upstream::start(sentry_responder()).await;
    let proxy = ps::Proxy::start(ps::tempdir(), &sentry_config(&up)).await;
    let input = fixture("sentry.envelope");
    let req = Request::post(
        proxy.url("/api/42/envelope/?sentry_key=e12d836b15bb49d7bbf99e64295d995b&user=u-48213"),
    )
    .header("content-type", "application/x-sentry-envelope")
    .header("content-encoding", "gzip")
    .header("x-sentry-auth", AUTH)
    .header("cookie", "session=hunter2")
    .header("x-forwarded-for", "203.0.113.77")
    .body(ps::full(ps::gzip(&input)))
    .unwrap();
    let reply = ps::send(&ps::h1_client(), req).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.text(), r#"{"id":"9ec79c33ec9942ab8353589fcb2e04dc"}"#);

    let rec = up.only_request().await;
    assert!(rec.complete);
    assert_eq!(
        rec.path_and_query,
        "/api/42/envelope/?sentry_key=e12d836b15bb49d7bbf99e64295d995b"
    );
    assert_eq!(rec.header("content-encoding"), Some("gzip"));
    assert_eq!(
        rec.header("content-type"),
        Some("application/x-sentry-envelope")
    );
    assert_eq!(
        rec.header("x-sentry-auth"),
        Some(AUTH),
        "Sentry needs its key"
    );
    assert_eq!(
        rec.header("content-length"),
        Some(rec.body.len().to_string().as_str())
    );
    for gone in ["cookie", "x-forwarded-for"] {
        assert!(
            rec.headers.get(gone).is_none(),
            "{gone} reached the upstream"
        );
    }
    let body = gunzip(&rec.body);
    let mut expected = Vec::new();
    ps::engine(SENTRY)
        .transform(Format::SentryEnvelope, &input, &mut expected)
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&body),
        String::from_utf8_lossy(&expected)
    );
    let (_, items) = parse(&body);
    assert_eq!(items.len(), 4);
    assert_no_leak(&body, PERSONAL);
    ps::assert_no_leak(
        "the upstream request",
        &rec.everything(),
        &["u-48213", "hunter2", "203.0.113.77"],
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_refuses_a_malformed_envelope_and_forwards_nothing() {
    let up = ps::Upstream::start(sentry_responder()).await;
    let proxy = ps::Proxy::start(ps::tempdir(), &sentry_config(&up)).await;
    let secret = "søren.ødegård@example.dk";
    for (body, gz) in [
        (
            format!("{{}}\n{{\"type\":\"event\",\"length\":400}}\n{{\"user\":\"{secret}\"}}\n"),
            false,
        ),
        (
            format!("{{}}\n{{\"type\":\"event\"}}\n{{\"user\":{secret}}}\n"),
            true,
        ),
    ] {
        let raw = if gz {
            ps::gzip(body.as_bytes())
        } else {
            body.into_bytes()
        };
        let mut req = Request::post(proxy.url("/api/42/envelope/"))
            .header("content-type", "application/x-sentry-envelope")
            .header("x-sentry-auth", AUTH);
        if gz {
            req = req.header("content-encoding", "gzip");
        }
        let reply = ps::send(&ps::h1_client(), req.body(ps::full(raw)).unwrap()).await;
        ps::assert_error_reply(&reply, 400, &[secret, "example.dk"]);
        let v: Value = serde_json::from_slice(&reply.body).unwrap();
        assert!(
            v["reason"].as_str().unwrap().starts_with("byte "),
            "the reason names the offset: {v}"
        );
    }
    up.assert_untouched();
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_store_endpoint_uses_the_same_rule_file() {
    let up = ps::Upstream::start(sentry_responder()).await;
    let proxy = ps::Proxy::start(ps::tempdir(), &sentry_config(&up)).await;
    let (_, raw_items) = raw_items(&fixture("sentry.envelope"));
    let event = raw_items[0].clone();
    let req = Request::post(proxy.url("/api/42/store/"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .header("x-sentry-auth", AUTH)
        .body(ps::full(ps::gzip(&event)))
        .unwrap();
    let reply = ps::send(&ps::h1_client(), req).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let rec = up.only_request().await;
    assert_eq!(rec.header("content-type"), Some("application/json"));
    assert_eq!(rec.header("x-sentry-auth"), Some(AUTH));
    let body = gunzip(&rec.body);
    let mut expected = Vec::new();
    ps::engine(SENTRY)
        .transform(Format::SentryEvent, &event, &mut expected)
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&body),
        String::from_utf8_lossy(&expected)
    );
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(str_at(&v, "/user/email").starts_with("k1_"));
    assert_no_leak(&body, PERSONAL);
    proxy.stop().await;
}
