//! The product-analytics processor rule files (`rules/segment.toml`,
//! `posthog.toml`, `mixpanel.toml`, `amplitude.toml`, `snowplow.toml`) on
//! payloads in each processor's documented wire format: the output keeps the
//! shape the recipient accepts, pseudonyms stand where the people were, and
//! no raw personal value survives anywhere a recipient could read it (looked
//! for through percent-encoding, form fields, URL queries, JSON strings and
//! base64 of any alphabet, recursively). Then `json-or-base64`, and the
//! route-declared body format (`body_format`) that lets sendBeacon's
//! `text/plain` JSON through, end to end.

use std::collections::BTreeSet;

use data_encoding::{Encoding, BASE64, BASE64URL, BASE64URL_NOPAD, BASE64_NOPAD};
use http::StatusCode;
use serde_json::{json, Value};

use scrim::engine::{Engine, Format, Retention};

use crate::proxy_support as px;
use crate::support::{engine_for_rule_file, fixture, is_email_token, is_token, run, run_json};

/// The personal values the fixtures and payloads below carry. None may reach
/// a recipient in any spelling.
const PERSONAL: &[&str] = &[
    "søren.ødegård@example.dk",
    "Søren Ødegård",
    "Søren",
    "Ødegård",
    "José Núñez",
    "Núñez",
    "jose@example.es",
    "203.0.113.77",
    "198.51.100.23",
    "8a2e:370:7334",
    "+45 20 30 40 50",
    "20 30 40 50",
    "u-48213",
    "u-99120",
    "visitor-8812",
    "d-77",
    "s-4242",
    "a1b2c3d4-0000-4000-8000-00000000d077",
    "hunter2",
    "passport",
    "Aarhus",
    "Midtjylland",
    "56.1567",
    "AEBE52E7-03EE-455A-B3C4-E57283966239",
    "mp-deprecated-api-key",
    "seg-client-write-key",
];

const EMAIL: &str = "søren.ødegård@example.dk";
const NAME: &str = "Søren Ødegård";
const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                  (KHTML, like Gecko) Chrome/120.0.6099.129 Safari/537.36";
/// A page URL with the person in its query, percent-encoded as browsers do.
const PAGE: &str = "https://webinars.example.com/join/w-2026-11?email=s%C3%B8ren.%C3%B8deg%C3%A5rd%40example.dk&name=S%C3%B8ren%20%C3%98deg%C3%A5rd&utm_source=newsletter";

// === looking everywhere ===

const BASE64S: [&Encoding; 4] = [&BASE64, &BASE64_NOPAD, &BASE64URL, &BASE64URL_NOPAD];

/// Every text a recipient could read in `out`: the text itself and,
/// recursively, its percent-decoding, its form fields, its URL query and
/// fragment, its JSON strings and keys, and the UTF-8 inside any base64.
fn views(out: &[u8]) -> BTreeSet<String> {
    let mut acc = BTreeSet::new();
    expand(&String::from_utf8_lossy(out), &mut acc, 0);
    acc
}

fn expand(s: &str, acc: &mut BTreeSet<String>, depth: usize) {
    if depth > 8 || s.is_empty() || !acc.insert(s.to_owned()) {
        return;
    }
    let mut more: Vec<String> = Vec::new();
    let pd = percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned();
    more.push(pd);
    if s.contains('=') {
        for (k, v) in form_urlencoded::parse(s.as_bytes()) {
            more.push(k.into_owned());
            more.push(v.into_owned());
        }
    }
    if let Ok(u) = url::Url::parse(s) {
        for (k, v) in u.query_pairs() {
            more.push(k.into_owned());
            more.push(v.into_owned());
        }
        more.extend(u.fragment().map(str::to_owned));
        more.push(u.path().to_owned());
    }
    if let Ok(v) = serde_json::from_str::<Value>(s) {
        let mut strings = Vec::new();
        crate::support::collect_strings(&v, &mut strings);
        more.extend(strings);
    }
    for enc in BASE64S {
        if let Ok(bytes) = enc.decode(s.trim().as_bytes()) {
            if let Ok(t) = String::from_utf8(bytes) {
                more.push(t);
            }
        }
    }
    for m in more {
        expand(&m, acc, depth + 1);
    }
}

/// Panics if any personal value shows up in any view of `out`.
fn assert_clean(what: &str, out: &[u8]) {
    let views = views(out);
    for raw in PERSONAL {
        let low = raw.to_lowercase();
        if let Some(v) = views.iter().find(|v| v.to_lowercase().contains(&low)) {
            panic!(
                "{what}: {raw:?} reached the recipient, in {v:?}\nfull output: {}",
                String::from_utf8_lossy(out)
            );
        }
    }
}

#[test]
fn the_leak_check_looks_inside_encodings() {
    // An email in base64url JSON in a JSON array in standard base64 in a form,
    // and a name percent-encoded in a URL inside the same JSON.
    let inner = BASE64URL_NOPAD.encode(json!({ "e": EMAIL }).to_string().as_bytes());
    let doc = json!({"data": [{"cx": inner}], "u": "https://x.example/?n=S%C3%B8ren"});
    let outer = form(&[("data", &BASE64.encode(doc.to_string().as_bytes()))]);
    let seen = views(&outer);
    assert!(seen.iter().any(|v| v.contains(EMAIL)), "{seen:?}");
    assert!(seen.iter().any(|v| v.contains("Søren")), "{seen:?}");
    let caught = std::panic::catch_unwind(|| assert_clean("test", &outer));
    assert!(caught.is_err());
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer}: {v}"))
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn assert_person_token(name: &str, label: &str) {
    assert!(
        name.strip_prefix(label)
            .and_then(|t| t.strip_prefix(' '))
            .is_some_and(is_token),
        "{name:?} is not `{label} <token>`"
    );
}

/// A URL kept in shape: host and path as sent, `email` and `name` tokens,
/// utm kept, nothing else. Returns the email parameter's token.
fn assert_page_url(u: &str, host: &str, path: &str) -> String {
    let url = url::Url::parse(u).unwrap_or_else(|e| panic!("{u}: {e}"));
    assert_eq!(url.host_str(), Some(host), "{u}");
    assert_eq!(url.path(), path, "{u}");
    assert_eq!(url.fragment(), None, "{u}");
    let params: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        names
            .iter()
            .all(|n| ["email", "name", "utm_source"].contains(n)),
        "unexpected parameters in {u}"
    );
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if let Some(utm) = get("utm_source") {
        assert_eq!(utm, "newsletter");
    }
    if let Some(n) = get("name") {
        assert!(is_token(&n), "{u}");
    }
    let email = get("email").unwrap_or_else(|| panic!("no email parameter in {u}"));
    assert!(is_email_token(&email, "pseudonym.invalid"), "{u}");
    email
}

fn form_pairs(out: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(out).into_owned().collect()
}

fn form_get<'a>(pairs: &'a [(String, String)], k: &str) -> &'a str {
    pairs
        .iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no `{k}` in {pairs:?}"))
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
        .into_bytes()
}

/// The token the engine gives `value` under the rule at `field` of a
/// one-member document (to compare pseudonyms across shapes and files).
fn token_of(e: &Engine, field: &str, value: &str) -> String {
    let mut doc = json!({});
    let mut at = &mut doc;
    let parts: Vec<&str> = field.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        let next = if i + 1 == parts.len() {
            json!(value)
        } else {
            json!({})
        };
        at[*p] = next;
        at = &mut at[*p];
    }
    let v = run_json(e, &doc.to_string());
    let pointer = format!("/{}", parts.join("/"));
    s(&v, &pointer).to_owned()
}

// === Segment ===

#[test]
fn segment_batch_of_identify_track_page_alias() {
    let e = engine_for_rule_file("segment.toml");
    assert_eq!(e.rules().purpose.recipient, "segment");
    let out = run(&e, Format::Json, &fixture("segment.json"));
    assert_clean("segment batch", &out);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        keys(&v),
        BTreeSet::from(["batch", "sentAt"]),
        "writeKey dropped"
    );
    assert_eq!(v["sentAt"], "2026-11-29T14:00:00Z");
    let batch = v["batch"].as_array().unwrap();
    let types: Vec<&str> = batch.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["identify", "track", "page", "alias"]);
    for (i, m) in batch.iter().enumerate() {
        assert_eq!(m["messageId"], format!("ajs-m-{}", i + 1));
    }
    let person = s(&v, "/batch/0/userId");
    assert!(is_token(person));
    for m in batch {
        assert_eq!(m["userId"], person, "one person, one token: {m}");
    }
    let anon = s(&v, "/batch/0/anonymousId");
    assert!(is_token(anon) && anon != person);
    assert_eq!(batch[3]["previousId"], anon, "alias joins the anonymous id");

    // identify: traits pseudonymised, the plan kept, the day of creation.
    let identify = &batch[0];
    assert_eq!(identify["timestamp"], "2026-11-29T13:00:00Z", "UTC hour");
    let traits = &identify["traits"];
    let email = s(traits, "/email");
    assert!(is_email_token(email, "pseudonym.invalid"));
    for k in ["name", "firstName", "lastName"] {
        assert_person_token(s(traits, &format!("/{k}")), "Person");
    }
    assert!(is_token(s(traits, "/phone")));
    assert_eq!(traits["plan"], "pro");
    assert_eq!(traits["createdAt"], "2026-03-04T00:00:00Z");
    assert_eq!(
        keys(traits),
        BTreeSet::from([
            "createdAt",
            "email",
            "firstName",
            "lastName",
            "name",
            "phone",
            "plan"
        ]),
        "password and address dropped"
    );
    assert_eq!(
        keys(&identify["context"]),
        BTreeSet::from(["ip", "library", "locale", "userAgent"]),
        "location dropped"
    );
    assert_eq!(identify["context"]["ip"], "203.0.113.0");
    assert_eq!(identify["context"]["userAgent"], "Chrome/120");
    assert_eq!(
        identify["context"]["library"],
        json!({"name": "analytics.js", "version": "next-1.70.0"})
    );

    // track: the event, its properties, context.traits with the same tokens.
    let track = &batch[1];
    assert_eq!(track["event"], "Webinar Joined");
    let props = &track["properties"];
    assert_eq!(props["webinar_id"], "w-2026-11");
    assert_eq!(props["duration_s"], 12);
    assert_eq!(props["email"], email, "the same email, the same token");
    assert_person_token(s(props, "/name"), "Participant");
    let message = s(props, "/message");
    assert!(message.starts_with("mail me at k7_"), "{message}");
    assert!(props.get("passport").is_none());
    assert_eq!(track["context"]["ip"], "2001:db8:85a3::");
    assert_eq!(track["context"]["traits"]["email"], email);

    // page: name and category kept, URLs in shape, titles and search gone.
    let page = &batch[2];
    assert_eq!(page["name"], "Live room");
    assert_eq!(page["category"], "Webinar");
    for at in [&page["properties"], &page["context"]["page"]] {
        let url_email = assert_page_url(s(at, "/url"), "webinars.example.com", "/join/w-2026-11");
        assert_eq!(url_email, email, "the URL's email joins with the traits'");
        assert_eq!(at["path"], "/join/w-2026-11");
        let refr = url::Url::parse(s(at, "/referrer")).unwrap();
        assert_eq!(refr.host_str(), Some("mail.example.dk"));
        assert_eq!(refr.query_pairs().count(), 2);
        assert!(
            at.get("title").is_none() && at.get("search").is_none(),
            "{at}"
        );
    }
    assert_eq!(
        page["context"]["campaign"],
        json!({"source": "newsletter", "medium": "email"})
    );
    assert_eq!(page["context"]["ip"], "198.51.100.0");
}

#[test]
fn segment_single_message_endpoints() {
    // POST /v1/track, /v1/identify, /v1/page: one message at the top level,
    // as analytics.js and the HTTP API send them.
    let e = engine_for_rule_file("segment.toml");
    let batch = run_json(&e, &String::from_utf8(fixture("segment.json")).unwrap());
    let person = s(&batch, "/batch/0/userId").to_owned();
    let email = s(&batch, "/batch/0/traits/email").to_owned();

    let track = json!({
        "type": "track", "messageId": "ajs-next-1", "event": "Poll Answered",
        "userId": "u-48213", "anonymousId": "visitor-8812", "writeKey": "seg-client-write-key",
        "timestamp": "2026-11-29T14:37:12.123Z", "sentAt": "2026-11-29T14:37:12.200Z",
        "properties": {"webinar_id": "w-2026-11", "email": EMAIL, "secret": "hunter2"},
        "context": {"ip": "203.0.113.77", "userAgent": UA,
                    "page": {"url": PAGE, "referrer": "https://mail.example.dk/?name=Jos%C3%A9%20N%C3%BA%C3%B1ez",
                             "title": "Søren Ødegård"}},
        "integrations": {"All": true}
    });
    let identify = json!({
        "type": "identify", "messageId": "ajs-next-2", "userId": "u-48213",
        "traits": {"email": EMAIL, "name": NAME, "plan": "pro"},
        "context": {"ip": "198.51.100.23"}
    });
    let page = json!({
        "type": "page", "messageId": "ajs-next-3", "userId": "u-48213", "name": "Live room",
        "properties": {"url": PAGE, "path": "/join/w-2026-11", "title": "Join as Søren Ødegård"}
    });
    for msg in [&track, &identify, &page] {
        let out = run(&e, Format::Json, msg.to_string().as_bytes());
        assert_clean("segment message", &out);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["userId"], person.as_str(), "the batch's token: {v}");
        assert_eq!(v["type"], msg["type"]);
        assert_eq!(v["messageId"], msg["messageId"]);
        assert!(v.get("writeKey").is_none());
    }
    let t = run_json(&e, &track.to_string());
    assert_eq!(t["event"], "Poll Answered");
    assert_eq!(t["sentAt"], "2026-11-29T14:00:00Z");
    assert_eq!(
        t["properties"],
        json!({"webinar_id": "w-2026-11", "email": email})
    );
    assert_eq!(t["integrations"], json!({"All": true}));
    assert_eq!(t["context"]["userAgent"], "Chrome/120");
    assert_page_url(
        s(&t, "/context/page/url"),
        "webinars.example.com",
        "/join/w-2026-11",
    );
    let refr = url::Url::parse(s(&t, "/context/page/referrer")).unwrap();
    let (k, tok) = refr.query_pairs().next().unwrap();
    assert_eq!(k, "name");
    assert!(is_token(&tok));
    assert!(t["context"]["page"].get("title").is_none());
    let i = run_json(&e, &identify.to_string());
    assert_eq!(i["traits"]["email"], email.as_str());
    assert_eq!(i["traits"]["plan"], "pro");
    assert_eq!(i["context"]["ip"], "198.51.100.0");
    let p = run_json(&e, &page.to_string());
    assert_eq!(p["name"], "Live room");
    assert_eq!(keys(&p["properties"]), BTreeSet::from(["path", "url"]));
}

// === PostHog ===

#[test]
fn posthog_batch_with_set_ip_and_urls() {
    let e = engine_for_rule_file("posthog.toml");
    assert_eq!(e.rules().purpose.recipient, "posthog");
    let out = run(&e, Format::Json, &fixture("posthog.json"));
    assert_clean("posthog batch", &out);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        keys(&v),
        BTreeSet::from(["api_key", "batch", "historical_migration", "sent_at"])
    );
    assert_eq!(
        v["api_key"], "phc_project_key",
        "PostHog needs its project key"
    );
    assert_eq!(v["sent_at"], "2026-11-29T14:00:00Z");
    let batch = v["batch"].as_array().unwrap();
    assert_eq!(batch.len(), 4);
    let person = s(&v, "/batch/0/distinct_id");
    assert!(is_token(person));
    for ev in batch {
        assert_eq!(ev["distinct_id"], person);
        assert!(ev["uuid"].as_str().unwrap().starts_with("0193a1b2-"));
        assert!(s(ev, "/timestamp").ends_with(":00:00Z"), "{ev}");
    }
    let joined = &batch[0]["properties"];
    assert_eq!(joined["$ip"], "203.0.113.0");
    let email = s(joined, "/email");
    assert!(is_email_token(email, "pseudonym.invalid"));
    assert_person_token(s(joined, "/name"), "Participant");
    assert_eq!(
        assert_page_url(
            s(joined, "/$current_url"),
            "webinars.example.com",
            "/join/w-2026-11"
        ),
        email
    );
    let refr = url::Url::parse(s(joined, "/$referrer")).unwrap();
    assert!(
        refr.query_pairs().all(|(_, v)| v.starts_with("k7_")),
        "{refr}"
    );
    assert_eq!(
        joined["$initial_referrer"], "$direct",
        "PostHog's sentinel stays"
    );
    assert_eq!(joined["$raw_user_agent"], "Chrome/120");
    assert_eq!(joined["$host"], "webinars.example.com");
    assert_eq!(joined["token"], "phc_project_key");
    assert!(is_token(s(joined, "/$device_id")) && is_token(s(joined, "/$session_id")));
    assert_eq!(
        joined["$set"],
        json!({"email": email, "name": joined["$set"]["name"], "plan": "pro"}),
        "city dropped"
    );
    assert_person_token(s(joined, "/$set/name"), "Person");
    assert_eq!(joined["$set_once"], json!({"first_webinar": "w-2026-11"}));
    assert!(joined.get("password").is_none());
    // A $set event: person properties at the top level.
    let set = &batch[1];
    assert_eq!(set["$set"]["email"], email);
    assert!(is_email_token(
        s(set, "/$set_once/email"),
        "pseudonym.invalid"
    ));
    assert_ne!(set["$set_once"]["email"], email, "another person");
    // $create_alias: both ids, each the token its id has elsewhere.
    let alias = &batch[2]["properties"];
    assert_eq!(alias["distinct_id"], person);
    assert_eq!(alias["alias"], joined["$device_id"]);
    // Free text scrubbed, the second address generalised.
    let chat = &batch[3]["properties"];
    assert_eq!(chat["$ip"], "198.51.100.0");
    assert!(s(chat, "/message").starts_with("I am k7_"));
}

#[test]
fn posthog_single_capture() {
    // POST /capture/ (or /i/v0/e/): one event at the top level.
    let e = engine_for_rule_file("posthog.toml");
    let batch = run_json(&e, &String::from_utf8(fixture("posthog.json")).unwrap());
    let capture = json!({
        "api_key": "phc_project_key",
        "event": "$pageview",
        "distinct_id": "u-48213",
        "timestamp": "2026-11-29T14:37:12.123Z",
        "uuid": "0193a1b2-0000-7000-8000-0000000000aa",
        "properties": {
            "$ip": "203.0.113.77", "$current_url": PAGE, "$pathname": "/join/w-2026-11",
            "$referrer": "$direct", "$set": {"email": EMAIL, "name": NAME},
            "$browser": "Chrome", "$os": "Windows", "$screen_width": 1920,
            "$geoip_city_name": "Aarhus"
        },
        "$set": {"email": EMAIL}
    });
    let out = run(&e, Format::Json, capture.to_string().as_bytes());
    assert_clean("posthog capture", &out);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        keys(&v),
        BTreeSet::from([
            "$set",
            "api_key",
            "distinct_id",
            "event",
            "properties",
            "timestamp",
            "uuid"
        ])
    );
    assert_eq!(v["distinct_id"], batch["batch"][0]["distinct_id"]);
    assert_eq!(v["$set"]["email"], batch["batch"][0]["properties"]["email"]);
    assert_eq!(v["timestamp"], "2026-11-29T14:00:00Z");
    let p = &v["properties"];
    assert_eq!(p["$ip"], "203.0.113.0");
    assert_eq!(p["$pathname"], "/join/w-2026-11");
    assert_eq!(p["$referrer"], "$direct");
    assert_eq!(p["$screen_width"], 1920);
    assert!(p.get("$geoip_city_name").is_none());
    assert_page_url(
        s(p, "/$current_url"),
        "webinars.example.com",
        "/join/w-2026-11",
    );
}

// === Mixpanel ===

#[test]
fn mixpanel_track_form_with_a_json_batch() {
    let e = engine_for_rule_file("mixpanel.toml");
    assert_eq!(e.rules().purpose.recipient, "mixpanel");
    let out = run(&e, Format::Form, &fixture("mixpanel.form"));
    assert_clean("mixpanel /track", &out);
    let pairs = form_pairs(&out);
    let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["data", "verbose", "ip"],
        "api_key dropped, order kept"
    );
    assert_eq!(form_get(&pairs, "ip"), "1");
    let data = form_get(&pairs, "data");
    assert!(data.starts_with('['), "JSON in, JSON out: {data}");
    let events: Value = serde_json::from_str(data).unwrap();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 2);
    let p = &events[0]["properties"];
    assert_eq!(events[0]["event"], "Webinar Joined");
    assert_eq!(p["token"], "mp_project_token", "Mixpanel needs its token");
    assert_eq!(p["$insert_id"], "8c2f0e1a9b3d4c5e");
    assert_eq!(p["time"], 1_764_424_800, "seconds, floored to the hour");
    let person = s(p, "/distinct_id");
    assert!(is_token(person));
    assert_eq!(p["$user_id"], person);
    assert!(is_token(s(p, "/$device_id")) && p["$device_id"] != person);
    assert_eq!(p["ip"], "203.0.113.0");
    let email = s(p, "/email");
    assert_eq!(
        assert_page_url(
            s(p, "/$current_url"),
            "webinars.example.com",
            "/join/w-2026-11"
        ),
        email
    );
    assert_eq!(p["$initial_referrer"], "$direct");
    assert_eq!(p["$referring_domain"], "mail.example.dk");
    assert_person_token(s(p, "/name"), "Participant");
    assert!(p.get("password").is_none());
    let chat = &events[1]["properties"];
    assert_eq!(chat["distinct_id"], person);
    assert_eq!(chat["time"], 1_764_424_800);
    assert!(s(chat, "/message").starts_with("write to k7_"));
    assert!(chat.get("$city").is_none());
}

#[test]
fn mixpanel_track_form_with_base64_comes_back_base64() {
    // mixpanel-js sends `data` as standard base64 of one event, padded or not.
    let e = engine_for_rule_file("mixpanel.toml");
    let event = |insert_id: &str| {
        json!({"event": "Webinar Joined", "properties": {
            "token": "mp_project_token", "distinct_id": "u-48213", "time": 1764427032123u64,
            "$insert_id": insert_id, "$current_url": PAGE, "ip": "203.0.113.77", "email": EMAIL,
            "$browser": "Chrome", "mp_lib": "web", "$lib_version": "2.60.0", "$os": "Windows",
            "$screen_height": 1080
        }})
        .to_string()
    };
    // A length that base64 pads, so padded and unpadded input differ.
    let text = ["x1", "x12", "x123"]
        .into_iter()
        .map(event)
        .find(|t| t.len() % 3 != 0)
        .unwrap();
    let plain_json = run(&e, Format::Form, &form(&[("data", &text)]));
    for (enc, padded) in [(&BASE64, true), (&BASE64_NOPAD, false)] {
        let body = form(&[("data", &enc.encode(text.as_bytes())), ("verbose", "1")]);
        let out = run(&e, Format::Form, &body);
        assert_clean("mixpanel base64 /track", &out);
        let pairs = form_pairs(&out);
        let data = form_get(&pairs, "data");
        // Strict decoders: padded base64 must be padded, unpadded must not be.
        let inner = enc
            .decode(data.as_bytes())
            .expect("the same base64 comes back");
        assert_eq!(enc.encode(&inner), data);
        if !padded {
            assert!(!data.contains('='), "{data}");
        }
        let v: Value = serde_json::from_slice(&inner).unwrap();
        assert_eq!(v["event"], "Webinar Joined");
        let p = &v["properties"];
        assert!(is_token(s(p, "/distinct_id")));
        assert_eq!(
            p["time"], 1_764_424_800_000u64,
            "milliseconds stay milliseconds"
        );
        assert_eq!(p["ip"], "203.0.113.0");
        assert_eq!(p["$screen_height"], 1080);
        assert!(is_email_token(s(p, "/email"), "pseudonym.invalid"));
        // The same event as JSON text gives the same JSON inside.
        let json_form = form_pairs(&plain_json);
        let json_v: Value = serde_json::from_str(form_get(&json_form, "data")).unwrap();
        assert_eq!(json_v, v);
    }
    // Not JSON, not base64 of JSON: the field is dropped, nothing raw passes.
    let out = run(
        &e,
        Format::Form,
        &form(&[("data", "email=jose@example.es"), ("verbose", "1")]),
    );
    assert_eq!(form_pairs(&out), vec![("verbose".into(), "1".into())]);
}

#[test]
fn mixpanel_engage_and_groups() {
    let e = engine_for_rule_file("mixpanel.toml");
    let track = run(&e, Format::Form, &fixture("mixpanel.form"));
    let track_data: Value = serde_json::from_str(form_get(&form_pairs(&track), "data")).unwrap();
    let person = s(&track_data, "/0/properties/distinct_id").to_owned();
    let email = s(&track_data, "/0/properties/email").to_owned();

    // POST /engage: a profile update, as the Python SDK's people_set sends it.
    let engage = json!({
        "$token": "mp_project_token", "$time": 1764427032.5, "$distinct_id": "u-48213",
        "$ip": "203.0.113.77", "$ignore_time": true,
        "$set": {"$email": EMAIL, "$name": NAME, "$first_name": "Søren", "$last_name": "Ødegård",
                 "$phone": "+45 20 30 40 50", "$created": "2026-03-04T10:11:12", "plan": "pro",
                 "$city": "Aarhus", "$avatar": "https://cdn.example/s%C3%B8ren.png"},
        "$set_once": {"first_webinar": "w-2026-11", "$email": EMAIL}
    });
    let unset = json!([
        {"$token": "mp_project_token", "$distinct_id": "u-48213", "$add": {"webinars_attended": 1}},
        {"$token": "mp_project_token", "$distinct_id": "u-48213", "$unset": ["plan"]}
    ]);
    let out = run(
        &e,
        Format::Form,
        &form(&[("data", &engage.to_string()), ("verbose", "1"), ("ip", "0")]),
    );
    assert_clean("mixpanel /engage", &out);
    let v: Value = serde_json::from_str(form_get(&form_pairs(&out), "data")).unwrap();
    assert_eq!(v["$token"], "mp_project_token");
    assert_eq!(
        v["$distinct_id"],
        person.as_str(),
        "the profile joins its events"
    );
    assert_eq!(v["$time"], 1_764_424_800);
    assert_eq!(v["$ip"], "203.0.113.0");
    assert_eq!(v["$ignore_time"], true);
    let set = &v["$set"];
    assert_eq!(set["$email"], email.as_str());
    for k in ["$name", "$first_name", "$last_name"] {
        assert_person_token(s(set, &format!("/{k}")), "Person");
    }
    assert!(is_token(s(set, "/$phone")));
    assert_eq!(set["$created"], "2026-03-04T00:00:00Z");
    assert_eq!(set["plan"], "pro");
    assert!(set.get("$city").is_none() && set.get("$avatar").is_none());
    assert_eq!(
        v["$set_once"],
        json!({"first_webinar": "w-2026-11", "$email": email})
    );
    let out = run(&e, Format::Form, &form(&[("data", &unset.to_string())]));
    let v: Value = serde_json::from_str(form_get(&form_pairs(&out), "data")).unwrap();
    assert_eq!(v[0]["$add"], json!({"webinars_attended": 1}));
    assert_eq!(v[1]["$unset"], json!(["plan"]));
    assert_eq!(v[1]["$distinct_id"], person.as_str());

    // POST /groups: an organisation's profile.
    let groups = json!({
        "$token": "mp_project_token", "$time": 1764427032.5, "$group_key": "company",
        "$group_id": "acme", "$set": {"plan": "enterprise", "$name": "Søren Ødegård"}
    });
    let out = run(&e, Format::Form, &form(&[("data", &groups.to_string())]));
    assert_clean("mixpanel /groups", &out);
    let v: Value = serde_json::from_str(form_get(&form_pairs(&out), "data")).unwrap();
    assert_eq!(v["$group_key"], "company");
    assert_eq!(v["$group_id"], "acme");
    assert_eq!(v["$set"]["plan"], "enterprise");
    assert_person_token(s(&v, "/$set/$name"), "Person");
}

#[test]
fn mixpanel_import_drops_the_deprecated_key_and_keeps_merge_ids_joined() {
    let e = engine_for_rule_file("mixpanel.toml");
    let events = json!([
        {"event": "Webinar Held", "properties": {"token": "mp_project_token", "time": 1700000000,
         "distinct_id": "u-48213", "$insert_id": "imp-1", "mp_lib": "python", "$lib_version": "5.4.1"}},
        {"event": "$merge", "properties": {"token": "mp_project_token",
         "$distinct_ids": ["u-48213", "visitor-8812"]}}
    ]);
    let body = form(&[
        ("data", &events.to_string()),
        ("verbose", "1"),
        ("ip", "0"),
        ("api_key", "mp-deprecated-api-key"),
    ]);
    let out = run(&e, Format::Form, &body);
    assert_clean("mixpanel /import", &out);
    let pairs = form_pairs(&out);
    assert!(pairs.iter().all(|(k, _)| k != "api_key"));
    let v: Value = serde_json::from_str(form_get(&pairs, "data")).unwrap();
    assert_eq!(v[0]["properties"]["time"], 1_699_999_200);
    let person = s(&v, "/0/properties/distinct_id");
    let merged = v[1]["properties"]["$distinct_ids"].as_array().unwrap();
    assert_eq!(merged[0], person);
    assert!(is_token(merged[1].as_str().unwrap()) && merged[1] != person);
}

#[test]
fn mixpanel_get_track_query() {
    // GET /track?data=<base64>&ip=1&_=<cache buster>: mixpanel-js with api_method GET.
    let e = engine_for_rule_file("mixpanel.toml");
    let event = json!({"event": "Page Viewed", "properties": {
        "token": "mp_project_token", "distinct_id": "u-48213", "time": 1764427032,
        "$current_url": PAGE, "$referrer": "https://mail.example.dk/?email=jose%40example.es",
        "$insert_id": "q-1", "email": EMAIL, "$os": "Windows"
    }});
    let data = BASE64.encode(event.to_string().as_bytes());
    let query = String::from_utf8(form(&[
        ("data", &data),
        ("ip", "1"),
        ("_", "1764427032123"),
        ("verbose", "1"),
    ]))
    .unwrap();
    let mut out = String::new();
    e.query(&query, &mut out).unwrap();
    assert_clean("mixpanel GET /track", out.as_bytes());
    let pairs = form_pairs(out.as_bytes());
    let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["data", "ip", "verbose"], "the cache buster dropped");
    let inner = BASE64.decode(form_get(&pairs, "data").as_bytes()).unwrap();
    let v: Value = serde_json::from_slice(&inner).unwrap();
    let p = &v["properties"];
    assert_eq!(v["event"], "Page Viewed");
    assert_eq!(p["time"], 1_764_424_800);
    assert_eq!(p["$os"], "Windows");
    let email = assert_page_url(
        s(p, "/$current_url"),
        "webinars.example.com",
        "/join/w-2026-11",
    );
    assert_eq!(p["email"], email.as_str());
    // The query's tokens are the body's: one purpose, one recipient.
    let body = run(&e, Format::Form, &fixture("mixpanel.form"));
    let body_v: Value = serde_json::from_str(form_get(&form_pairs(&body), "data")).unwrap();
    assert_eq!(p["distinct_id"], body_v[0]["properties"]["distinct_id"]);
}

// === Amplitude ===

#[test]
fn amplitude_http_v2_batch() {
    let e = engine_for_rule_file("amplitude.toml");
    assert_eq!(e.rules().purpose.recipient, "amplitude");
    let out = run(&e, Format::Json, &fixture("amplitude.json"));
    assert_clean("amplitude /2/httpapi", &out);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(keys(&v), BTreeSet::from(["api_key", "events", "options"]));
    assert_eq!(v["api_key"], "amp_project_key", "Amplitude needs its key");
    assert_eq!(v["options"], json!({"min_id_length": 5}));
    let events = v["events"].as_array().unwrap();
    let ev = &events[0];
    assert_eq!(
        keys(ev),
        BTreeSet::from([
            "country",
            "device_id",
            "device_model",
            "event_id",
            "event_properties",
            "event_type",
            "groups",
            "insert_id",
            "ip",
            "language",
            "library",
            "os_name",
            "os_version",
            "platform",
            "session_id",
            "time",
            "user_agent",
            "user_id",
            "user_properties",
        ]),
        "region, city, coordinates, carrier and advertising ids dropped"
    );
    let person = s(ev, "/user_id");
    assert!(is_token(person) && person.len() >= 5);
    assert!(is_token(s(ev, "/device_id")));
    assert_eq!(ev["event_type"], "Webinar Joined");
    assert_eq!(ev["time"], 1_764_424_800_000u64);
    assert_eq!(ev["session_id"], 1_764_424_800_000u64);
    assert_eq!(ev["insert_id"], "5f0adeff-6668-4427-8d02-57d803a2b841");
    assert_eq!(ev["event_id"], 7);
    assert_eq!(ev["ip"], "203.0.113.0");
    assert_eq!(ev["user_agent"], "Chrome/120");
    assert_eq!(ev["library"], "amplitude-ts/2.11.0");
    assert_eq!(ev["groups"], json!({"company": "acme"}));
    let props = &ev["event_properties"];
    let email = s(props, "/email");
    assert!(is_email_token(email, "pseudonym.invalid"));
    assert_person_token(s(props, "/name"), "Participant");
    assert_eq!(
        assert_page_url(
            s(props, "/page_url"),
            "webinars.example.com",
            "/join/w-2026-11"
        ),
        email
    );
    assert!(props.get("password").is_none());
    assert_eq!(
        ev["user_properties"],
        json!({"plan": "pro", "email": email})
    );
    let identify = &events[1];
    assert_eq!(identify["event_type"], "$identify");
    assert_eq!(identify["user_id"], person);
    assert_eq!(identify["ip"], "198.51.100.0");
    let set = &identify["user_properties"]["$set"];
    assert_eq!(set["email"], email);
    assert_person_token(s(set, "/name"), "Person");
    assert!(set.get("phone").is_none(), "no rule names it");
    assert_eq!(
        identify["user_properties"]["$setOnce"]["first_webinar"],
        "w-2026-11"
    );
}

// === Snowplow ===

/// Decodes a base64url value (padded or not) to JSON.
fn b64url_json(v: &str) -> Value {
    let enc = if v.ends_with('=') {
        &BASE64URL
    } else {
        &BASE64URL_NOPAD
    };
    serde_json::from_slice(&enc.decode(v.as_bytes()).unwrap()).unwrap()
}

/// The self-describing event and its contexts as the rules must leave them.
fn assert_snowplow_inner(ue: &Value, cx: &Value, uid: &str) {
    assert_eq!(
        ue["schema"],
        "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
    );
    assert_eq!(
        ue["data"]["schema"],
        "iglu:com.example/webinar_action/jsonschema/1-0-0"
    );
    let d = &ue["data"]["data"];
    assert_eq!(
        keys(d),
        BTreeSet::from(["action", "email", "name", "user_id", "webinar_id"]),
        "ip dropped"
    );
    assert_eq!(d["action"], "raise_hand");
    assert!(is_email_token(s(d, "/email"), "pseudonym.invalid"));
    assert_person_token(s(d, "/name"), "Participant");
    assert_eq!(d["user_id"], uid, "the event's user id joins uid");
    let contexts = cx["data"].as_array().unwrap();
    assert_eq!(contexts.len(), 2);
    assert!(is_token(s(&contexts[0], "/data/id")));
    let participant = &contexts[1]["data"];
    assert_eq!(
        keys(participant),
        BTreeSet::from(["email", "id", "name", "role"]),
        "bio dropped"
    );
    assert_eq!(participant["role"], "host");
}

#[test]
fn snowplow_post_payload_data() {
    let e = engine_for_rule_file("snowplow.toml");
    assert_eq!(e.rules().purpose.recipient, "web-analytics");
    let out = run(&e, Format::Json, &fixture("snowplow.json"));
    assert_clean("snowplow tp2", &out);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(keys(&v), BTreeSet::from(["data", "schema"]));
    assert_eq!(
        v["schema"],
        "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
    );
    let events = v["data"].as_array().unwrap();
    assert_eq!(events.len(), 4);
    let uid = s(&events[0], "/uid").to_owned();
    assert!(is_token(&uid));
    for ev in events {
        assert_eq!(ev["uid"], uid.as_str());
        for k in ["duid", "nuid", "sid"] {
            assert!(is_token(s(ev, &format!("/{k}"))), "{k}: {ev}");
        }
        assert_eq!(ev["ip"], "203.0.113.0");
        assert_eq!(ev["ua"], "Chrome/120");
        assert_eq!(ev["dtm"], ev["stm"], "both in the same hour");
        assert_eq!(ev["dtm"], "1764424800000");
        for k in [
            "p", "tv", "tna", "aid", "vid", "lang", "res", "tz", "cookie", "e", "eid",
        ] {
            assert!(ev.get(k).is_some_and(Value::is_string), "{k} kept: {ev}");
        }
        assert!(ev.get("fp").is_none(), "the fingerprint is dropped");
    }
    // Page view: URL and referrer in shape, the title scrubbed.
    let pv = &events[0];
    let email = assert_page_url(s(pv, "/url"), "webinars.example.com", "/join/w-2026-11");
    let refr = url::Url::parse(s(pv, "/refr")).unwrap();
    assert_eq!(refr.host_str(), Some("mail.example.dk"));
    assert!(refr.query_pairs().all(|(_, v)| v.starts_with("k7_")));
    assert_eq!(pv["page"], format!("Join as {email}"));
    // Self-describing events: base64url (unpadded and padded come back as
    // they came) and plain JSON.
    let cx0 = s(pv, "/cx");
    assert!(!cx0.ends_with('='));
    let ue1 = s(&events[1], "/ue_px");
    assert!(ue1.ends_with('='), "padding kept: {ue1}");
    assert_snowplow_inner(&b64url_json(ue1), &b64url_json(s(&events[1], "/cx")), &uid);
    assert_eq!(b64url_json(cx0), b64url_json(s(&events[1], "/cx")));
    let ue2: Value = serde_json::from_str(s(&events[2], "/ue_pr")).unwrap();
    let co2: Value = serde_json::from_str(s(&events[2], "/co")).unwrap();
    assert_snowplow_inner(&ue2, &co2, &uid);
    assert_eq!(
        ue2,
        b64url_json(ue1),
        "one event, one result, either encoding"
    );
    assert_eq!(
        s(&ue2, "/data/data/email"),
        email,
        "the event's email joins the URL's"
    );
    // Structured event: category and action kept, free text scrubbed.
    let se = &events[3];
    assert_eq!(
        (se["se_ca"].as_str(), se["se_ac"].as_str()),
        (Some("webinar"), Some("ask"))
    );
    assert!(s(se, "/se_la").starts_with("question from k7_"));
    assert!(
        s(se, "/se_pr")
            .parse::<std::net::Ipv4Addr>()
            .unwrap()
            .octets()[0]
            >= 240
    );
    assert_eq!(se["se_va"], "1");
}

#[test]
fn snowplow_get_pixel_query() {
    // GET /i?...: the tracker parameters in the query, ue_px and cx inside.
    let e = engine_for_rule_file("snowplow.toml");
    let post: Value = serde_json::from_slice(&fixture("snowplow.json")).unwrap();
    let ev = &post["data"][1];
    let mut pairs: Vec<(String, String)> = ev
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    pairs.push((
        "refr".into(),
        "https://mail.example.dk/?name=Jos%C3%A9+N%C3%BA%C3%B1ez".into(),
    ));
    pairs.push(("f_pdf".into(), "1".into()));
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&pairs)
        .finish();
    let mut out = String::new();
    e.query(&query, &mut out).unwrap();
    assert_clean("snowplow GET /i", out.as_bytes());
    let got = form_pairs(out.as_bytes());
    let names: BTreeSet<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        !names.contains("fp") && !names.contains("f_pdf"),
        "{names:?}"
    );
    for k in [
        "e", "eid", "aid", "uid", "ip", "ua", "dtm", "url", "refr", "ue_px", "cx",
    ] {
        assert!(names.contains(k), "{k} missing: {names:?}");
    }
    let uid = form_get(&got, "uid");
    assert!(is_token(uid));
    assert_eq!(form_get(&got, "ip"), "203.0.113.0");
    assert_eq!(form_get(&got, "dtm"), "1764424800000");
    assert_page_url(
        form_get(&got, "url"),
        "webinars.example.com",
        "/join/w-2026-11",
    );
    assert_snowplow_inner(
        &b64url_json(form_get(&got, "ue_px")),
        &b64url_json(form_get(&got, "cx")),
        uid,
    );
    // The query's pseudonyms are the POST body's.
    let body = run_json(&e, &String::from_utf8(fixture("snowplow.json")).unwrap());
    assert_eq!(body["data"][1]["uid"], uid);
}

#[test]
fn snowplow_shares_its_pseudonyms_with_the_pixel_file() {
    // snowplow.toml and snowplow-pixel.toml name one purpose and one
    // recipient (the same collector): one person, one token across both.
    let full = engine_for_rule_file("snowplow.toml");
    let pixel = engine_for_rule_file("snowplow-pixel.toml");
    assert_eq!(full.rules().purpose.id, pixel.rules().purpose.id);
    assert_eq!(
        full.rules().purpose.recipient,
        pixel.rules().purpose.recipient
    );
    let mut a = String::new();
    full.query("uid=u-48213", &mut a).unwrap();
    let b = run(&pixel, Format::Form, b"uid=u-48213");
    assert_eq!(a.as_bytes(), b.as_slice());
    // ...and not with the product-analytics recipients.
    let segment = engine_for_rule_file("segment.toml");
    let seg = token_of(&segment, "userId", "u-48213");
    assert_ne!(format!("uid={seg}"), a);
}

// === every processor file: minimised, not emptied ===

#[test]
fn processor_files_are_allow_lists_for_product_analytics() {
    for (file, recipient, basis, months) in [
        ("segment.toml", "segment", "legitimate-interest", 13),
        ("posthog.toml", "posthog", "legitimate-interest", 13),
        ("mixpanel.toml", "mixpanel", "legitimate-interest", 13),
        ("amplitude.toml", "amplitude", "legitimate-interest", 13),
        ("snowplow.toml", "web-analytics", "consent", 6),
    ] {
        let e = engine_for_rule_file(file);
        let p = &e.rules().purpose;
        assert_eq!(p.recipient, recipient, "{file}");
        assert_eq!(p.legal_basis.as_str(), basis, "{file}");
        assert!(!e.rules().default_keep(), "{file} must be an allow-list");
        assert_eq!(p.retention, Retention::Months(months), "{file}");
        // Unknown members never pass.
        let out = run(
            &e,
            Format::Json,
            br#"{"unknown": "jose@example.es", "batch": [{"x": "u-48213"}]}"#,
        );
        assert_clean(file, &out);
    }
}

// === body_format ===

fn route_config(extra: &str) -> String {
    let rules = crate::support::rules_dir().join("segment.toml");
    format!(
        "[[listener]]\naddr = \"127.0.0.1:0\"\n\n[upstream.up]\nurl = \"http://127.0.0.1:9\"\n\n\
         [[route]]\npath = \"/v1/t\"\nupstream = \"up\"\nrules = {}\n{extra}\n",
        px::toml_path(&rules)
    )
}

#[test]
fn body_format_is_validated_with_its_line_and_column() {
    let path = std::path::Path::new("scrim.toml");
    for (value, want) in [
        ("json", Format::Json),
        ("ndjson", Format::Ndjson),
        ("form", Format::Form),
    ] {
        let cfg =
            scrim::config::load_str(&route_config(&format!("body_format = \"{value}\"")), path)
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.routes[0].body_format, Some(want));
    }
    let cfg = scrim::config::load_str(&route_config(""), path).unwrap();
    assert_eq!(cfg.routes[0].body_format, None, "the Content-Type decides");
    let text = route_config("body_format = \"text\"");
    let err = scrim::config::load_str(&text, path)
        .unwrap_err()
        .to_string();
    let line = text
        .lines()
        .position(|l| l.starts_with("body_format"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!(
            "scrim.toml:{line}:15: error: `text` is not a body format"
        )),
        "{err}"
    );
    assert!(
        err.contains("help: use \"json\", \"ndjson\" or \"form\""),
        "{err}"
    );
}

const BEACON_SECRETS: &[&str] = &["søren.ødegård@example.dk", "u-48213", "203.0.113.77"];

fn beacon_body() -> String {
    json!({
        "type": "track", "event": "Webinar Left", "messageId": "ajs-next-9",
        "userId": "u-48213", "writeKey": "seg-client-write-key",
        "properties": {"webinar_id": "w-2026-11", "email": EMAIL},
        "context": {"ip": "203.0.113.77", "page": {"url": PAGE}}
    })
    .to_string()
}

async fn beacon_proxy(up: &px::Upstream, extra: &str) -> px::Proxy {
    let rules = crate::support::rules_dir().join("segment.toml");
    let config = format!(
        "[[listener]]\naddr = \"127.0.0.1:0\"\n\n[upstream.up]\nurl = \"{}\"\n\n\
         [[route]]\npath = \"/v1/t\"\nmethods = [\"POST\"]\nupstream = \"up\"\nrules = {}\n{extra}\n",
        up.url(),
        px::toml_path(&rules)
    );
    px::Proxy::start(px::tempdir(), &config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_beacon_text_plain_is_read_as_the_route_declares() {
    let up = px::Upstream::start(px::ok_responder()).await;
    let proxy = beacon_proxy(&up, "body_format = \"json\"").await;
    // navigator.sendBeacon(url, JSON.stringify(msg)) sends text/plain;charset=UTF-8.
    let reply = px::send(
        &px::h1_client(),
        px::post(
            &proxy.url("/v1/t"),
            "text/plain;charset=UTF-8",
            px::full(beacon_body()),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let rec = up.only_request().await;
    assert!(rec.complete);
    px::assert_no_leak("upstream", &rec.everything(), BEACON_SECRETS);
    // The vendor gets the content type it was sent, and JSON it can read.
    assert_eq!(rec.header("content-type"), Some("text/plain;charset=UTF-8"));
    assert_eq!(
        rec.header("content-length"),
        Some(rec.body.len().to_string().as_str())
    );
    let expected = px::engine(
        &std::fs::read_to_string(crate::support::rules_dir().join("segment.toml")).unwrap(),
    );
    let mut want = Vec::new();
    expected
        .transform(Format::Json, beacon_body().as_bytes(), &mut want)
        .unwrap();
    assert_eq!(
        rec.body, want,
        "the same rewrite as an application/json body"
    );
    let v: Value = serde_json::from_slice(&rec.body).unwrap();
    assert!(v["userId"].as_str().unwrap().starts_with("k1_"));
    assert_eq!(v["context"]["ip"], "203.0.113.0");
    assert!(v.get("writeKey").is_none());
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_beacon_text_plain_without_a_declared_format_is_415() {
    let up = px::Upstream::start(px::ok_responder()).await;
    let proxy = beacon_proxy(&up, "").await;
    let reply = px::send(
        &px::h1_client(),
        px::post(&proxy.url("/v1/t"), "text/plain", px::full(beacon_body())),
    )
    .await;
    px::assert_error_reply(&reply, 415, BEACON_SECRETS);
    up.assert_untouched();
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_format_that_does_not_parse_is_400_and_not_forwarded() {
    let up = px::Upstream::start(px::ok_responder()).await;
    let proxy = beacon_proxy(&up, "body_format = \"json\"").await;
    let client = px::h1_client();
    // A form body, or truncated JSON, on a JSON route: refused, never forwarded raw.
    for body in [
        "userId=u-48213&email=s%C3%B8ren.%C3%B8deg%C3%A5rd%40example.dk".to_owned(),
        beacon_body()[..60].to_owned(),
    ] {
        let reply = px::send(
            &client,
            px::post(&proxy.url("/v1/t"), "text/plain", px::full(body)),
        )
        .await;
        px::assert_error_reply(&reply, 400, BEACON_SECRETS);
    }
    // The declared format wins over a Content-Type that says otherwise.
    let reply = px::send(
        &client,
        px::post(
            &proxy.url("/v1/t"),
            "application/x-www-form-urlencoded",
            px::full("userId=u-48213"),
        ),
    )
    .await;
    px::assert_error_reply(&reply, 400, BEACON_SECRETS);
    up.assert_untouched();
    proxy.stop().await;
}
