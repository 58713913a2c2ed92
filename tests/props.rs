//! Property tests over generated webinar events and arbitrary bytes.
//!
//! - no raw personal value (email, Unicode name, IPv4, IPv6, id) placed at a
//!   path a rule covers reaches the output, in any case or encoding;
//! - the output parses as JSON, and the same input gives the same bytes;
//! - NDJSON pushed through `NdjsonStream` in arbitrary chunks equals the
//!   line-by-line result (and so does the real CLI on a file);
//! - arbitrary bytes in every format never panic, and never come out with an
//!   email-like value in them when no rule keeps one.
//!
//! `PROPTEST_CASES` sets the number of cases (default 64).

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Value};

use scrim::engine::{Engine, Format, NdjsonStream};

use crate::support::{
    assert_no_leak, engine, engine_for_rule_file, fixture, fixtures_dir, leak_of, line_by_line,
    rules_dir, run, run_process, scrim_with_key,
};

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    Config::with_cases(cases)
}

/// Rules covering every place the generator puts personal data.
const RULES: &str = r#"
[[rule]]
field = "event"
action = "keep"

[[rule]]
field = "**.email"
action = "pseudonymise"
kind = "email"

[[rule]]
field = "**.name"
action = "pseudonymise"
kind = "name"
label = "Participant"

[[rule]]
field = "**.ip"
action = "pseudonymise"
kind = "ip"

[[rule]]
field = "**.user_id"
action = "pseudonymise"
kind = "id"

[[rule]]
field = "**.message"
action = "scrub"

[[rule]]
field = "**.seen_from"
action = "generalise"
kind = "ip"
ipv4_prefix = 8
ipv6_prefix = 16

[[rule]]
field = "**.country"
action = "keep"

[[rule]]
field = "**.count"
action = "keep"
"#;

// === generators ===

/// A personal value as the input spells it, and the spellings that must
/// not reach the output.
#[derive(Clone, Debug)]
struct Personal {
    written: String,
    forbidden: Vec<String>,
}

fn unicode_letter() -> impl Strategy<Value = char> {
    prop::sample::select(vec![
        'ø', 'Ø', 'å', 'Å', 'æ', 'é', 'É', 'ë', 'Ë', 'ç', 'Ç', 'ñ', 'Ñ', 'ú', 'í', 'ü', 'ß',
    ])
}

fn ascii_word(min: usize, max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::char::range('a', 'z'), min..=max)
        .prop_map(|v| v.into_iter().collect())
}

/// A word with at least one non-ASCII letter, in random case.
fn unicode_word() -> impl Strategy<Value = String> {
    (
        ascii_word(1, 5),
        unicode_letter(),
        ascii_word(1, 5),
        any::<bool>(),
    )
        .prop_map(|(a, u, b, cap)| {
            let w = format!("{a}{u}{b}");
            if cap {
                let mut c = w.chars();
                let first = c.next().unwrap().to_uppercase().collect::<String>();
                first + c.as_str()
            } else {
                w
            }
        })
}

/// `Søren Ødegård`-like names: two or three words, one non-ASCII letter
/// in each, so that no ASCII text in the output can match one by chance.
fn name() -> impl Strategy<Value = Personal> {
    prop_oneof![
        Just("Søren Ødegård".to_owned()),
        Just("Zoë Çelik".to_owned()),
        Just("José Núñez".to_owned()),
        prop::collection::vec(unicode_word(), 2..=3).prop_map(|w| w.join(" ")),
    ]
    .prop_map(|n| Personal {
        forbidden: vec![n.clone(), n.split(' ').next().unwrap().to_owned()],
        written: n,
    })
}

/// Emails with Unicode or ASCII local parts, plus tags, random case.
fn email() -> impl Strategy<Value = Personal> {
    (
        prop_oneof![unicode_word(), ascii_word(2, 10)],
        prop::option::of(ascii_word(1, 6)),
        prop::option::of(ascii_word(2, 8)),
        ascii_word(2, 10),
        prop::sample::select(vec!["dk", "com", "es", "org", "co.uk"]),
        any::<u8>(),
    )
        .prop_map(|(local, dotted, tag, domain, tld, case)| {
            let mut local = local;
            if let Some(d) = dotted {
                local = format!("{local}.{d}");
            }
            let bare = format!("{local}@{domain}.{tld}");
            let mut written = match &tag {
                Some(t) => format!("{local}+{t}@{domain}.{tld}"),
                None => bare.clone(),
            };
            match case % 3 {
                0 => written = written.to_uppercase(),
                1 => {
                    // Capitalise the local part and the domain.
                    written = written
                        .split('@')
                        .map(|p| {
                            let mut c = p.chars();
                            c.next().map_or(String::new(), |f| {
                                f.to_uppercase().collect::<String>() + c.as_str()
                            })
                        })
                        .collect::<Vec<_>>()
                        .join("@");
                }
                _ => {}
            }
            Personal {
                forbidden: vec![written.clone(), bare],
                written,
            }
        })
}

fn ipv4() -> impl Strategy<Value = Personal> {
    // Avoid 0.x.y.z, which is not a host address anyone sends.
    (1u8..=255, any::<u8>(), any::<u8>(), 1u8..=254).prop_map(|(a, b, c, d)| {
        let ip = Ipv4Addr::new(a, b, c, d).to_string();
        Personal {
            forbidden: vec![ip.clone()],
            written: ip,
        }
    })
}

/// IPv6 with runs of zero groups (so `::` compression happens, at the
/// start, middle or end), written compressed, expanded, or upper-case.
fn ipv6() -> impl Strategy<Value = Personal> {
    (
        prop::array::uniform8(prop_oneof![2 => Just(0u16), 3 => any::<u16>()]),
        0u8..3,
    )
        .prop_filter("a host address", |(g, _)| {
            let a = Ipv6Addr::from(*g);
            // Not IPv4-mapped; and not already its own /16 network, which
            // generalisation would (rightly) give back unchanged.
            a.to_ipv4_mapped().is_none() && g[0] != 0 && g[1..].iter().any(|&x| x != 0)
        })
        .prop_map(|(g, style)| {
            let a = Ipv6Addr::from(g);
            let canonical = a.to_string();
            let written = match style {
                0 => canonical.clone(),
                1 => g
                    .iter()
                    .map(|x| format!("{x:04x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
                _ => canonical.to_uppercase(),
            };
            Personal {
                forbidden: vec![canonical, written.clone()],
                written,
            }
        })
}

fn user_id() -> impl Strategy<Value = Personal> {
    (10_000u32..99_999).prop_map(|n| {
        let id = format!("u-{n}");
        Personal {
            forbidden: vec![id.clone()],
            written: id,
        }
    })
}

/// Free text with emails and IPs in it (names in free text cannot be
/// found by pattern, a documented limit, so none are put there).
fn message() -> impl Strategy<Value = (String, Vec<Personal>)> {
    let filler = prop::sample::select(vec![
        "please send the slides to",
        "hello from",
        "my address is",
        "can you call me, I am at",
        "thanks!",
        "connecting from",
        "(see",
        "or",
    ]);
    let item = prop_oneof![
        filler.prop_map(|f| (f.to_owned(), None)),
        email().prop_map(|p| (p.written.clone(), Some(p))),
        ipv4().prop_map(|p| (p.written.clone(), Some(p))),
        ipv6().prop_map(|p| (p.written.clone(), Some(p))),
    ];
    let sep = prop::sample::select(vec![" ", ", ", " (", ") ", ": "]);
    prop::collection::vec((item, sep), 1..8).prop_map(|items| {
        let mut text = String::new();
        let mut personal = Vec::new();
        for ((word, p), sep) in items {
            text.push_str(&word);
            text.push_str(sep);
            personal.extend(p);
        }
        text.push_str("end.");
        (text, personal)
    })
}

/// Random extra structure with ASCII keys and values: nothing personal.
fn extra() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|n| json!(n)),
        "[a-z ]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("x_[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Where a personal value goes inside the extra structure.
#[derive(Clone, Debug)]
enum Slot {
    Email(Personal),
    Name(Personal),
    Ip(Personal),
    UserId(Personal),
    /// Under `email`, but as an array: a scalar rule on a container drops it.
    EmailList(Vec<Personal>),
}

fn slot() -> impl Strategy<Value = Slot> {
    prop_oneof![
        email().prop_map(Slot::Email),
        name().prop_map(Slot::Name),
        ipv4().prop_map(Slot::Ip),
        ipv6().prop_map(Slot::Ip),
        user_id().prop_map(Slot::UserId),
        prop::collection::vec(email(), 1..3).prop_map(Slot::EmailList),
    ]
}

/// One generated event and every personal value in it.
#[derive(Clone, Debug)]
struct Event {
    doc: Value,
    personal: Vec<Personal>,
}

/// Puts `(key, value)` into the `n`-th object of `v` (depth-first, modulo
/// the number of objects); returns false if `v` has no object.
fn insert_nth(v: &mut Value, n: usize, key: &str, value: Value) -> bool {
    fn paths(v: &Value, at: &mut Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
        match v {
            Value::Object(m) => {
                out.push(at.clone());
                for (k, x) in m {
                    at.push(PathStep::Key(k.clone()));
                    paths(x, at, out);
                    at.pop();
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    at.push(PathStep::Index(i));
                    paths(x, at, out);
                    at.pop();
                }
            }
            _ => {}
        }
    }
    let mut all = Vec::new();
    paths(v, &mut Vec::new(), &mut all);
    if all.is_empty() {
        return false;
    }
    let path = &all[n % all.len()];
    let mut cur = v;
    for step in path {
        cur = match step {
            PathStep::Key(k) => cur.get_mut(k.as_str()).unwrap(),
            PathStep::Index(i) => cur.get_mut(*i).unwrap(),
        };
    }
    cur.as_object_mut().unwrap().insert(key.to_owned(), value);
    true
}

#[derive(Clone, Debug)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn event() -> impl Strategy<Value = Event> {
    (
        email(),
        name(),
        prop_oneof![ipv4(), ipv6()],
        user_id(),
        message(),
        prop_oneof![ipv4(), ipv6()],
        prop::collection::vec((email(), prop_oneof![ipv4(), ipv6()], extra()), 0..3),
        extra(),
        prop::collection::vec((any::<usize>(), slot()), 0..5),
    )
        .prop_map(
            |(email, name, ip, uid, (msg, in_msg), seen, batch, mut extra, slots)| {
                let mut personal = vec![email.clone(), name.clone(), ip.clone(), uid.clone()];
                personal.extend(in_msg);
                // Generalised to /8 and /16: what remains identifies no one,
                // but the full address must not survive.
                personal.push(seen.clone());
                let batch: Vec<Value> = batch
                    .into_iter()
                    .map(|(e, i, x)| {
                        personal.push(e.clone());
                        personal.push(i.clone());
                        json!({"email": e.written, "context": {"ip": i.written}, "x_extra": x, "count": 1})
                    })
                    .collect();
                if !extra.is_object() {
                    extra = json!({ "x_wrapped": extra });
                }
                for (n, s) in slots {
                    let (key, value, ps) = match s {
                        Slot::Email(p) => ("email", json!(p.written), vec![p]),
                        Slot::Name(p) => ("name", json!(p.written), vec![p]),
                        Slot::Ip(p) => ("ip", json!(p.written), vec![p]),
                        Slot::UserId(p) => ("user_id", json!(p.written), vec![p]),
                        Slot::EmailList(ps) => {
                            let v = ps.iter().map(|p| json!(p.written)).collect();
                            ("email", Value::Array(v), ps)
                        }
                    };
                    assert!(insert_nth(&mut extra, n, key, value));
                    personal.extend(ps);
                }
                let doc = json!({
                    "event": "participant_joined",
                    "participant": {
                        "email": email.written,
                        "name": name.written,
                        "user_id": uid.written,
                        "role": "participant",
                    },
                    "context": {"ip": ip.written, "country": "DK", "seen_from": seen.written},
                    "properties": {"message": msg, "count": 3},
                    "batch": batch,
                    "extra": extra,
                });
                Event { doc, personal }
            },
        )
}

fn props_engine() -> Engine {
    engine(RULES)
}

fn forbidden(personal: &[Personal]) -> Vec<&str> {
    personal
        .iter()
        .flat_map(|p| p.forbidden.iter().map(String::as_str))
        .collect()
}

// === properties ===

proptest! {
    #![proptest_config(config())]

    #[test]
    fn no_raw_personal_value_survives_and_output_is_json(ev in event()) {
        let e = props_engine();
        let input = serde_json::to_vec(&ev.doc).unwrap();
        let out = run(&e, Format::Json, &input);
        let parsed: Value = serde_json::from_slice(&out).map_err(|er| {
            TestCaseError::fail(format!("not JSON ({er}): {}", String::from_utf8_lossy(&out)))
        })?;
        for raw in forbidden(&ev.personal) {
            if let Some(view) = leak_of(&out, raw) {
                return Err(TestCaseError::fail(format!(
                    "{raw:?} survived ({view}) in {}", String::from_utf8_lossy(&out)
                )));
            }
        }
        // What is kept is still there: the allow-list is not "drop all".
        prop_assert_eq!(&parsed["event"], "participant_joined");
        prop_assert_eq!(&parsed["context"]["country"], "DK");
        prop_assert!(parsed["participant"].get("role").is_none());
    }

    #[test]
    fn transform_is_deterministic(ev in event()) {
        let input = serde_json::to_vec(&ev.doc).unwrap();
        let a = run(&props_engine(), Format::Json, &input);
        let e = props_engine();
        let b = run(&e, Format::Json, &input);
        let c = run(&e, Format::Json, &input);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(&b, &c);
        // Pretty-printed input is the same document: the same output.
        let pretty = serde_json::to_vec_pretty(&ev.doc).unwrap();
        prop_assert_eq!(&run(&e, Format::Json, &pretty), &a);
    }

    #[test]
    fn ndjson_in_any_chunks_equals_line_by_line(
        events in prop::collection::vec(event(), 1..6),
        crlf in any::<bool>(),
        blank in any::<bool>(),
        trailing_newline in any::<bool>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let e = props_engine();
        let nl: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        let mut input = Vec::new();
        for (i, ev) in events.iter().enumerate() {
            if i > 0 {
                input.extend_from_slice(nl);
                if blank {
                    input.extend_from_slice(nl);
                }
            }
            input.extend_from_slice(&serde_json::to_vec(&ev.doc).unwrap());
        }
        if trailing_newline {
            input.extend_from_slice(nl);
        }
        let expected = line_by_line(&e, &input);
        prop_assert_eq!(expected.iter().filter(|&&b| b == b'\n').count(), events.len());

        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
        points.sort_unstable();
        points.dedup();
        let mut stream = NdjsonStream::new();
        let mut out = Vec::new();
        let mut from = 0;
        for p in points.into_iter().chain([input.len()]) {
            stream.push(&e, &input[from..p], &mut out).unwrap();
            from = p;
        }
        let stats = stream.finish(&e, &mut out).unwrap();
        prop_assert_eq!(&out, &expected);
        prop_assert!(stats.pseudonymised >= 4 * events.len() as u64);
        // The whole-body entry point agrees too.
        prop_assert_eq!(&run(&e, Format::Ndjson, &input), &expected);
        assert_no_leak(&out, &events.iter().flat_map(|ev| forbidden(&ev.personal)).collect::<Vec<_>>());
    }
}

// === arbitrary bytes ===

/// Rules with no `keep`: nothing may pass as it came.
const NO_KEEP_RULES: &str = r#"
[[rule]]
field = "**.email"
action = "pseudonymise"
kind = "email"

[[rule]]
field = "**.name"
action = "pseudonymise"
kind = "name"

[[rule]]
field = "**.ip"
action = "generalise"
kind = "ip"

[[rule]]
field = "**.ts"
action = "generalise"
kind = "timestamp"

[[rule]]
field = "**.ua"
action = "generalise"
kind = "user-agent"

[[rule]]
field = "**.msg"
action = "scrub"

[[rule]]
field = "**.url"
action = "pseudonymise"
kind = "url"

[[rule]]
field = "**.r"
action = "replace"
value = "gone"

[[rule]]
field = "**.d"
action = "decode"
encoding = "json"

[[rule]]
field = "**.b"
action = "decode"
encoding = "base64url-json"
"#;

/// Byte soup that is often almost JSON, NDJSON or a form. The email only
/// ever appears as a string *value* (`:"..."`), or inside a form value,
/// URL or text: an email as an object key is a separate, known case.
fn soup() -> impl Strategy<Value = (Vec<u8>, String)> {
    let email = (
        ascii_word(3, 8),
        ascii_word(3, 8),
        prop::sample::select(vec!["com", "dk"]),
    )
        .prop_map(|(l, d, t)| format!("{l}@{d}.{t}"));
    (
        email,
        prop::collection::vec(0u8..40, 0..40),
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(email, picks, noise)| {
            let mut out = Vec::new();
            let mut noise = noise.into_iter();
            for p in picks {
                let frag: Vec<u8> = match p {
                    0 => b"{".to_vec(),
                    1 => b"}".to_vec(),
                    2 => b"[".to_vec(),
                    3 => b"]".to_vec(),
                    4 => b",".to_vec(),
                    5 => b"\"".to_vec(),
                    6 => b":".to_vec(),
                    7 => b"\n".to_vec(),
                    8 => b"&".to_vec(),
                    9 => b"=".to_vec(),
                    10 => b"\"email\"".to_vec(),
                    11 => b"\"msg\"".to_vec(),
                    12 => b"\"url\"".to_vec(),
                    13 => b"\"ip\"".to_vec(),
                    14 => b"\"d\"".to_vec(),
                    15 => b"\"r\"".to_vec(),
                    16 => b"\"other\"".to_vec(),
                    17 => b"email=".to_vec(),
                    18 => b"msg=".to_vec(),
                    19 => b"url=".to_vec(),
                    20 => b"other=".to_vec(),
                    21 => b"%40".to_vec(),
                    22 => b"+".to_vec(),
                    23 => b"http://".to_vec(),
                    24 => b"https://x.example.com/".to_vec(),
                    25 => b"?ref=".to_vec(),
                    26 => b" ".to_vec(),
                    27 => b"\\\"".to_vec(),
                    28 => b"\"name\"".to_vec(),
                    29 => b"\"ts\"".to_vec(),
                    30 => b"\"b\"".to_vec(),
                    31 => b"1".to_vec(),
                    32 => b"null".to_vec(),
                    33..=35 => format!(":\"{email}\"").into_bytes(),
                    36 => {
                        format!(":\"see http://x.example.com/u/{email}/p?ref={email} or {email}\"")
                            .into_bytes()
                    }
                    37 => format!("={email}").into_bytes(),
                    38 => format!(
                        "=http%3A%2F%2Fx.example.com%2F{}",
                        email.replace('@', "%40")
                    )
                    .into_bytes(),
                    _ => noise.next().map(|b| vec![b]).unwrap_or_default(),
                };
                out.extend_from_slice(&frag);
            }
            (out, email)
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic_and_never_leak(
        (input, email) in soup(),
        cut in any::<prop::sample::Index>(),
    ) {
        let e = engine(NO_KEEP_RULES);
        for format in [Format::Json, Format::Ndjson, Format::Form] {
            let mut out = Vec::new();
            if e.transform(format, &input, &mut out).is_ok() {
                if let Some(view) = leak_of(&out, &email) {
                    return Err(TestCaseError::fail(format!(
                        "{format:?}: {email} survived ({view}): {} -> {}",
                        String::from_utf8_lossy(&input),
                        String::from_utf8_lossy(&out)
                    )));
                }
                if format != Format::Form {
                    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        prop_assert!(serde_json::from_slice::<Value>(line).is_ok());
                    }
                }
            }
        }
        // Streaming the soup in two pieces never panics either, and fails
        // or succeeds like the whole-body call.
        let at = cut.index(input.len() + 1);
        let mut s = NdjsonStream::new();
        let mut out = Vec::new();
        let streamed = s
            .push(&e, &input[..at], &mut out)
            .and_then(|()| s.push(&e, &input[at..], &mut out))
            .and_then(|()| s.finish(&e, &mut out));
        let whole = e.transform(Format::Ndjson, &input, &mut Vec::new());
        prop_assert_eq!(streamed.is_ok(), whole.is_ok());
        // Queries and headers too.
        if let Ok(text) = std::str::from_utf8(&input) {
            let mut q = String::new();
            if e.query(text, &mut q).is_ok() {
                prop_assert!(leak_of(q.as_bytes(), &email).is_none(), "{}", q);
            }
            prop_assert!(e.header("x-anything", text).is_none());
            prop_assert!(e.cookies(text).is_none());
        }
    }
}

// === the real CLI on an NDJSON file ===

#[test]
fn cli_ndjson_file_equals_the_engine_line_by_line() {
    let rules = rules_dir().join("audience-analytics.toml");
    let input = fixtures_dir().join("audience-batch.ndjson");
    let out = run_process(
        scrim_with_key()
            .arg("transform")
            .arg("--rules")
            .arg(&rules)
            .arg("--format")
            .arg("ndjson")
            .arg(&input),
        None,
    );
    assert!(out.status.success(), "{}", out.stderr);
    let expected = line_by_line(
        &engine_for_rule_file("audience-analytics.toml"),
        &fixture("audience-batch.ndjson"),
    );
    assert_eq!(out.stdout_str(), String::from_utf8(expected).unwrap());
    assert_eq!(out.stdout.iter().filter(|&&b| b == b'\n').count(), 4);
    assert_no_leak(
        &out.stdout,
        &[
            "søren.ødegård@example.dk",
            "Zoë Çelik",
            "José Núñez",
            "jose@example.es",
            "203.0.113.77",
            "8a2e:370:7334",
            "u-48213",
            "u-99120",
        ],
    );
    // The same through stdin, and with the format taken from the extension.
    let body = fixture("audience-batch.ndjson");
    let piped = run_process(
        scrim_with_key()
            .arg("transform")
            .arg("--rules")
            .arg(&rules)
            .arg("--format")
            .arg("ndjson"),
        Some(&body),
    );
    assert!(piped.status.success(), "{}", piped.stderr);
    assert_eq!(piped.stdout, out.stdout);
    let guessed = run_process(
        scrim_with_key()
            .arg("transform")
            .arg("--rules")
            .arg(&rules)
            .arg(&input),
        None,
    );
    assert_eq!(guessed.stdout, out.stdout);
}
