//! The rule engine through its public API: one table case per action and
//! kind, then normalisation, domain separation, key versions, defaults,
//! selectors, precedence, headers, cookies, query strings, and bad input.

use std::sync::Arc;

use data_encoding::{BASE64, BASE64URL_NOPAD};
use serde_json::{json, Value};

use scrim::engine::{compile_str, Engine, EngineError, Format, Limits, NdjsonStream, Reason};
use scrim::pseudo::token::version_of;

use crate::support::{
    assert_no_leak, engine, engine_from_toml, engine_from_toml_with, is_email_token, is_token,
    keys, run, run_json, KEY_VERSION,
};

const CHROME_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                         (KHTML, like Gecko) Chrome/120.0.6099.129 Safari/537.36";

// === table: one case per action and kind ===

/// What the transformed value at `/v` must be.
enum Out {
    /// Exactly this JSON value.
    Is(Value),
    /// Removed from the document.
    Absent,
    /// An email token `k7_...@<domain>`.
    EmailToken(&'static str),
    /// A bare token `k7_...`, after an optional `label `.
    Token(Option<&'static str>),
    /// An IPv4 token in 240.0.0.0/4 whose first octet carries the key version.
    Ipv4Token,
    /// An IPv6 token in 2001:db8::/32 whose third group is the key version.
    Ipv6Token,
    /// A string satisfying the predicate.
    Str(fn(&str) -> bool, &'static str),
}

struct Case {
    name: &'static str,
    /// `[[rule]]` tables; the document's field is `v`.
    rules: &'static str,
    /// The value of `v` in the input document `{"v": ..., "other": "x"}`.
    input: Value,
    out: Out,
    /// Raw values that must not appear anywhere in the output.
    raw: &'static [&'static str],
}

fn rule(action_and_options: &str) -> String {
    format!("[[rule]]\nfield = \"v\"\n{action_and_options}\n")
}

fn cases() -> Vec<Case> {
    let decode_inner =
        "[[rule]]\nfield = \"v.email\"\naction = \"pseudonymise\"\nkind = \"email\"\n\
                        [[rule]]\nfield = \"v.event\"\naction = \"keep\"\n";
    let embedded = r#"{"event":"join","email":"José.Núñez@Example.es","name":"José Núñez"}"#;
    // Leaked so the table can hold `&'static str` rule texts built at run time.
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    vec![
        Case {
            name: "keep passes a string",
            rules: leak(rule("action = \"keep\"")),
            input: json!("webinar started"),
            out: Out::Is(json!("webinar started")),
            raw: &[],
        },
        Case {
            name: "keep passes a container whole",
            rules: leak(rule("action = \"keep\"")),
            input: json!({"a": [1, 2.5, null, true], "b": {"c": "d"}}),
            out: Out::Is(json!({"a": [1, 2.5, null, true], "b": {"c": "d"}})),
            raw: &[],
        },
        Case {
            name: "drop removes a value",
            rules: leak(rule("action = \"drop\"")),
            input: json!("søren.ødegård@example.dk"),
            out: Out::Absent,
            raw: &["søren.ødegård@example.dk"],
        },
        Case {
            name: "drop removes a subtree",
            rules: leak(rule("action = \"drop\"")),
            input: json!({"email": "zoe@example.com", "deep": [{"ip": "203.0.113.9"}]}),
            out: Out::Absent,
            raw: &["zoe@example.com", "203.0.113.9"],
        },
        Case {
            name: "pseudonymise email: token at pseudonym.invalid",
            rules: leak(rule("action = \"pseudonymise\"\nkind = \"email\"")),
            input: json!("Søren.Ødegård@Example.dk"),
            out: Out::EmailToken("pseudonym.invalid"),
            raw: &["søren.ødegård", "Søren.Ødegård@Example.dk"],
        },
        Case {
            name: "pseudonymise email with keep_domain keeps the (lower-cased) domain",
            rules: leak(rule(
                "action = \"pseudonymise\"\nkind = \"email\"\nkeep_domain = true",
            )),
            input: json!("Zoe.Celik@Example.COM"),
            out: Out::EmailToken("example.com"),
            raw: &["zoe.celik"],
        },
        Case {
            name: "pseudonymise email with a chosen domain",
            rules: leak(rule(
                "action = \"pseudonymise\"\nkind = \"email\"\ndomain = \"users.example.invalid\"",
            )),
            input: json!("jose@example.es"),
            out: Out::EmailToken("users.example.invalid"),
            raw: &["jose@example.es", "example.es"],
        },
        Case {
            name: "pseudonymise name",
            rules: leak(rule("action = \"pseudonymise\"\nkind = \"name\"")),
            input: json!("Zoë Çelik"),
            out: Out::Token(None),
            raw: &["Zoë", "Çelik"],
        },
        Case {
            name: "pseudonymise name with a label",
            rules: leak(rule(
                "action = \"pseudonymise\"\nkind = \"name\"\nlabel = \"Participant\"",
            )),
            input: json!("Søren Ødegård"),
            out: Out::Token(Some("Participant")),
            raw: &["Søren", "Ødegård"],
        },
        Case {
            name: "pseudonymise ipv4",
            rules: leak(rule("action = \"pseudonymise\"\nkind = \"ip\"")),
            input: json!("203.0.113.77"),
            out: Out::Ipv4Token,
            raw: &["203.0.113.77", "203.0.113."],
        },
        Case {
            name: "pseudonymise ipv6",
            rules: leak(rule("action = \"pseudonymise\"\nkind = \"ip\"")),
            input: json!("2001:db8:85a3::8a2e:370:7334"),
            out: Out::Ipv6Token,
            raw: &["2001:db8:85a3::8a2e:370:7334", "8a2e:370:7334"],
        },
        Case {
            name: "pseudonymise ip prefix-preserving stays an IP of the same family",
            rules: leak(rule(
                "action = \"pseudonymise\"\nkind = \"ip\"\nip_mode = \"prefix-preserving\"",
            )),
            input: json!("198.51.100.10"),
            out: Out::Str(
                |s| matches!(s.parse(), Ok(std::net::IpAddr::V4(_))),
                "an IPv4 address",
            ),
            raw: &["198.51.100.10"],
        },
        Case {
            name: "pseudonymise ip drops what is not an IP",
            rules: leak(rule("action = \"pseudonymise\"\nkind = \"ip\"")),
            input: json!("søren@example.dk"),
            out: Out::Absent,
            raw: &["søren@example.dk"],
        },
        Case {
            name: "pseudonymise id (string)",
            rules: leak(rule("action = \"pseudonymise\"\nkind = \"id\"")),
            input: json!("u-48213"),
            out: Out::Token(None),
            raw: &["u-48213", "48213"],
        },
        Case {
            name: "pseudonymise id (number becomes a token string)",
            rules: leak(rule("action = \"pseudonymise\"\nkind = \"id\"")),
            input: json!(48213),
            out: Out::Token(None),
            raw: &["48213"],
        },
        Case {
            name: "pseudonymise without kind is an id",
            rules: leak(rule("action = \"pseudonymise\"")),
            input: json!("u-99120"),
            out: Out::Token(None),
            raw: &["u-99120"],
        },
        Case {
            name: "pseudonymise phone",
            rules: leak(rule("action = \"pseudonymise\"\nkind = \"phone\"")),
            input: json!("+45 20 30 40 50"),
            out: Out::Token(None),
            raw: &["+45 20 30 40 50", "20 30 40 50", "4520304050"],
        },
        Case {
            name: "pseudonymise url: userinfo, personal params and fragment go",
            rules: leak(rule(
                "action = \"pseudonymise\"\nkind = \"url\"\nkeep_params = [\"utm_source\"]",
            )),
            input: json!(
                "https://soren:hunter2@webinars.example.com/join/w-2026-11?email=jose%40example.es&utm_source=newsletter&token=abc123#name=Jos%C3%A9"
            ),
            out: Out::Str(
                |s| {
                    let u = url::Url::parse(s).expect("still a URL");
                    let pairs: Vec<(String, String)> = u.query_pairs().into_owned().collect();
                    u.username().is_empty()
                        && u.password().is_none()
                        && u.fragment().is_none()
                        && u.host_str() == Some("webinars.example.com")
                        && u.path() == "/join/w-2026-11"
                        && pairs.len() == 2
                        && pairs[0].0 == "email"
                        && is_email_token(&pairs[0].1, "pseudonym.invalid")
                        && pairs[1] == ("utm_source".into(), "newsletter".into())
                },
                "the URL without userinfo, token or fragment, email tokenised",
            ),
            raw: &["jose@example.es", "jose%40example.es", "hunter2", "abc123", "José"],
        },
        Case {
            name: "pseudonymise url: a relative URL stays relative",
            rules: leak(rule("action = \"pseudonymise\"\nkind = \"url\"")),
            input: json!("/join/w-1?email=jose%40example.es&ref=x#top"),
            out: Out::Str(
                |s| {
                    s.strip_prefix("/join/w-1?email=")
                        .and_then(|t| t.strip_suffix("%40pseudonym.invalid"))
                        .is_some_and(is_token)
                },
                "/join/w-1?email=<token>%40pseudonym.invalid",
            ),
            raw: &["jose", "ref=x", "#top"],
        },
        Case {
            // Regression: a scheme-relative URL used to panic the engine
            // (slicing the joined URL at the length of the relative base).
            name: "pseudonymise url: a scheme-relative URL keeps its own host",
            rules: leak(rule("action = \"pseudonymise\"\nkind = \"url\"")),
            input: json!("//u:pw@cdn.example.com/p?email=jose%40example.es"),
            out: Out::Str(
                |s| {
                    s.strip_prefix("//cdn.example.com/p?email=")
                        .and_then(|t| t.strip_suffix("%40pseudonym.invalid"))
                        .is_some_and(is_token)
                },
                "//cdn.example.com/p?email=<token>%40pseudonym.invalid",
            ),
            raw: &["jose", "u:pw"],
        },
        Case {
            name: "pseudonymise url drops what is not a URL",
            rules: leak(rule("action = \"pseudonymise\"\nkind = \"url\"")),
            input: json!("http://[::1/join?email=jose@example.es"),
            out: Out::Absent,
            raw: &["jose@example.es"],
        },
        Case {
            name: "generalise ipv4 to /24",
            rules: leak(rule("action = \"generalise\"\nkind = \"ip\"")),
            input: json!("203.0.113.77"),
            out: Out::Is(json!("203.0.113.0")),
            raw: &["203.0.113.77"],
        },
        Case {
            name: "generalise ipv4 to a chosen prefix",
            rules: leak(rule(
                "action = \"generalise\"\nkind = \"ip\"\nipv4_prefix = 16",
            )),
            input: json!("203.0.113.77"),
            out: Out::Is(json!("203.0.0.0")),
            raw: &["203.0.113"],
        },
        Case {
            name: "generalise ipv6 to /48",
            rules: leak(rule("action = \"generalise\"\nkind = \"ip\"")),
            input: json!("2001:db8:85a3:1234::8a2e:370:7334"),
            out: Out::Is(json!("2001:db8:85a3::")),
            raw: &["8a2e:370:7334", "1234"],
        },
        Case {
            name: "generalise ipv4-mapped ipv6 as ipv4",
            rules: leak(rule("action = \"generalise\"\nkind = \"ip\"")),
            input: json!("::ffff:203.0.113.77"),
            out: Out::Is(json!("203.0.113.0")),
            raw: &["203.0.113.77"],
        },
        Case {
            name: "generalise timestamp to the hour, in UTC",
            rules: leak(rule(
                "action = \"generalise\"\nkind = \"timestamp\"\nto = \"hour\"",
            )),
            input: json!("2026-11-29T14:37:12.345+01:00"),
            out: Out::Is(json!("2026-11-29T13:00:00Z")),
            raw: &["14:37", "37:12"],
        },
        Case {
            name: "generalise timestamp to the day",
            rules: leak(rule(
                "action = \"generalise\"\nkind = \"timestamp\"\nto = \"day\"",
            )),
            input: json!("2026-11-29 14:37:12"),
            out: Out::Is(json!("2026-11-29T00:00:00Z")),
            raw: &["14:37:12"],
        },
        Case {
            name: "generalise epoch seconds stay epoch seconds",
            rules: leak(rule("action = \"generalise\"\nkind = \"timestamp\"")),
            input: json!(1_764_427_032u64),
            out: Out::Is(json!(1_764_424_800u64)),
            raw: &["1764427032"],
        },
        Case {
            name: "generalise epoch milliseconds stay milliseconds",
            rules: leak(rule(
                "action = \"generalise\"\nkind = \"timestamp\"\nto = \"day\"",
            )),
            input: json!(1_764_427_032_123u64),
            out: Out::Is(json!(1_764_374_400_000u64)),
            raw: &["1764427032123"],
        },
        Case {
            name: "generalise timestamp drops what is not a time",
            rules: leak(rule("action = \"generalise\"\nkind = \"timestamp\"")),
            input: json!("whenever søren@example.dk"),
            out: Out::Absent,
            raw: &["søren@example.dk"],
        },
        Case {
            name: "generalise user agent to family and major version",
            rules: leak(rule("action = \"generalise\"\nkind = \"user-agent\"")),
            input: json!(CHROME_UA),
            out: Out::Is(json!("Chrome/120")),
            raw: &["6099", "Windows NT 10.0"],
        },
        Case {
            name: "scrub replaces emails, phones and IPs inside text",
            rules: leak(rule("action = \"scrub\"")),
            input: json!(
                "Hi, I am at Søren.Ødegård@Example.dk, call +45 20 30 40 50, my IP is 203.0.113.77. Thanks!"
            ),
            out: Out::Str(
                |s| {
                    s.starts_with("Hi, I am at k7_")
                        && s.contains("@pseudonym.invalid, call k7_")
                        && s.contains(", my IP is 247.")
                        && s.ends_with(". Thanks!")
                },
                "the text with tokens in place",
            ),
            raw: &["Søren.Ødegård@Example.dk", "20 30 40 50", "203.0.113.77"],
        },
        Case {
            name: "scrub leaves text without personal data alone",
            rules: leak(rule("action = \"scrub\"")),
            input: json!("See you at 10:30 on 2026-11-29, room 4."),
            out: Out::Is(json!("See you at 10:30 on 2026-11-29, room 4.")),
            raw: &[],
        },
        Case {
            name: "replace a string with a constant",
            rules: leak(rule("action = \"replace\"\nvalue = \"[removed]\"")),
            input: json!("Zoë Çelik"),
            out: Out::Is(json!("[removed]")),
            raw: &["Zoë"],
        },
        Case {
            name: "replace a container with a constant",
            rules: leak(rule("action = \"replace\"\nvalue = 0")),
            input: json!({"name": "José Núñez", "files": ["cv.pdf"]}),
            out: Out::Is(json!(0)),
            raw: &["José", "cv.pdf"],
        },
        Case {
            name: "decode json: rules continue inside the string",
            rules: leak(format!(
                "{}{decode_inner}",
                rule("action = \"decode\"\nencoding = \"json\"")
            )),
            input: json!(embedded),
            out: Out::Str(
                |s| {
                    let v: Value = serde_json::from_str(s).expect("still JSON");
                    v["event"] == "join"
                        && v.get("name").is_none()
                        && is_email_token(v["email"].as_str().unwrap(), "pseudonym.invalid")
                },
                "JSON text with the email tokenised and the name dropped",
            ),
            raw: &["josé.núñez@example.es", "José Núñez"],
        },
        Case {
            name: "decode base64-json keeps its padding",
            rules: leak(format!(
                "{}{decode_inner}",
                rule("action = \"decode\"\nencoding = \"base64-json\"")
            )),
            input: json!(BASE64.encode(embedded.as_bytes())),
            out: Out::Str(
                |s| {
                    let bytes = BASE64.decode(s.as_bytes()).expect("padded base64");
                    let v: Value = serde_json::from_slice(&bytes).expect("JSON inside");
                    v["event"] == "join"
                        && v.get("name").is_none()
                        && is_email_token(v["email"].as_str().unwrap(), "pseudonym.invalid")
                },
                "padded base64 of JSON with the email tokenised",
            ),
            raw: &[],
        },
        Case {
            name: "decode base64url-json without padding",
            rules: leak(format!(
                "{}{decode_inner}",
                rule("action = \"decode\"\nencoding = \"base64url-json\"")
            )),
            input: json!(BASE64URL_NOPAD.encode(embedded.as_bytes())),
            out: Out::Str(
                |s| {
                    let bytes = BASE64URL_NOPAD.decode(s.as_bytes()).expect("base64url");
                    let v: Value = serde_json::from_slice(&bytes).expect("JSON inside");
                    v["event"] == "join"
                        && v.get("name").is_none()
                        && is_email_token(v["email"].as_str().unwrap(), "pseudonym.invalid")
                },
                "unpadded base64url of JSON with the email tokenised",
            ),
            raw: &[],
        },
        Case {
            name: "decode drops a value that is not what the rule says",
            rules: leak(format!(
                "{}{decode_inner}",
                rule("action = \"decode\"\nencoding = \"base64url-json\"")
            )),
            input: json!("not base64 at all: søren@example.dk"),
            out: Out::Absent,
            raw: &["søren@example.dk"],
        },
        Case {
            name: "decode drops embedded JSON that does not parse",
            rules: leak(format!(
                "{}{decode_inner}",
                rule("action = \"decode\"\nencoding = \"json\"")
            )),
            input: json!(r#"{"email":"søren@example.dk","#),
            out: Out::Absent,
            raw: &["søren@example.dk"],
        },
    ]
}

fn check_case(c: &Case) {
    let e = engine(c.rules);
    let doc = json!({"v": c.input, "other": "not named by any rule"}).to_string();
    let bytes = run(&e, Format::Json, doc.as_bytes());
    let out: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|err| panic!("{}: output is not JSON: {err}", c.name));
    assert!(
        out.get("other").is_none(),
        "{}: an unnamed field survived: {out}",
        c.name
    );
    let got = out.get("v");
    let fail = |what: &str| -> ! { panic!("{}: expected {what}, got {out}", c.name) };
    match (&c.out, got) {
        (Out::Absent, None) => {}
        (Out::Absent, Some(_)) => fail("no `v`"),
        (Out::Is(want), Some(v)) if v == want => {}
        (Out::Is(want), _) => fail(&format!("`v` = {want}")),
        (Out::EmailToken(domain), Some(Value::String(s))) if is_email_token(s, domain) => {}
        (Out::EmailToken(domain), _) => fail(&format!("an email token at {domain}")),
        (Out::Token(None), Some(Value::String(s))) if is_token(s) => {}
        (Out::Token(Some(label)), Some(Value::String(s)))
            if s.strip_prefix(label)
                .and_then(|t| t.strip_prefix(' '))
                .is_some_and(is_token) => {}
        (Out::Token(_), _) => fail("a token"),
        (Out::Ipv4Token, Some(Value::String(s))) => match s.parse() {
            Ok(std::net::IpAddr::V4(a)) if a.octets()[0] == 0xF0 | KEY_VERSION as u8 => {}
            _ => fail("an IPv4 token in 240.0.0.0/4"),
        },
        (Out::Ipv6Token, Some(Value::String(s))) => match s.parse() {
            Ok(std::net::IpAddr::V6(a)) if a.segments()[..3] == [0x2001, 0xdb8, 7] => {}
            _ => fail("an IPv6 token in 2001:db8:7::/48"),
        },
        (Out::Str(pred, what), Some(Value::String(s))) if pred(s) => {
            let _ = what;
        }
        (Out::Str(_, what), _) => fail(what),
        (_, _) => fail("a string"),
    }
    assert_no_leak(&bytes, c.raw);
}

#[test]
fn every_action_and_kind_transforms_as_documented() {
    let cases = cases();
    assert!(cases.len() >= 30);
    for c in &cases {
        check_case(c);
    }
}

#[test]
fn actions_are_counted_in_stats() {
    let e = engine(
        "[[rule]]\nfield = \"k\"\naction = \"keep\"\n\
         [[rule]]\nfield = \"p\"\naction = \"pseudonymise\"\nkind = \"email\"\n\
         [[rule]]\nfield = \"g\"\naction = \"generalise\"\nkind = \"ip\"\n\
         [[rule]]\nfield = \"s\"\naction = \"scrub\"\n\
         [[rule]]\nfield = \"r\"\naction = \"replace\"\nvalue = \"x\"\n",
    );
    let mut out = Vec::new();
    let stats = e
        .json(
            br#"{"k":1,"p":"a@b.dk","g":"192.0.2.1","s":"mail a@b.dk","r":"y","gone":2}"#,
            &mut out,
        )
        .unwrap();
    assert_eq!(stats.kept, 1);
    assert_eq!(stats.pseudonymised, 1);
    assert_eq!(stats.generalised, 1);
    assert_eq!(stats.scrubbed, 1);
    assert_eq!(stats.replaced, 1);
    assert_eq!(stats.dropped, 1);
}

// === normalisation: spellings of one value give one token ===

fn token_of(e: &Engine, v: &str) -> String {
    let doc = json!({ "v": v }).to_string();
    let out = run_json(e, &doc);
    out["v"]
        .as_str()
        .unwrap_or_else(|| panic!("no token for {v:?}: {out}"))
        .to_owned()
}

#[test]
fn unicode_names_normalise_to_one_token_per_person() {
    let e = engine("[[rule]]\nfield = \"v\"\naction = \"pseudonymise\"\nkind = \"name\"\n");
    let groups: &[&[&str]] = &[
        &[
            "Søren Ødegård",
            "  søren   ødegård ",
            "SØREN ØDEGÅRD",
            "Søren\tØdegård",
        ],
        &[
            "Zoë Çelik",
            "zoë çelik",
            "ZOË ÇELIK",
            "Zoe\u{308} C\u{327}elik",
        ],
        &[
            "José Núñez",
            "Jose\u{301} Nu\u{301}n\u{303}ez",
            "JOSÉ NÚÑEZ",
        ],
    ];
    let mut per_group = Vec::new();
    for g in groups {
        let t = token_of(&e, g[0]);
        assert!(is_token(&t), "{t}");
        for spelling in &g[1..] {
            assert_eq!(token_of(&e, spelling), t, "{spelling:?} vs {:?}", g[0]);
        }
        per_group.push(t);
    }
    per_group.sort();
    per_group.dedup();
    assert_eq!(per_group.len(), groups.len(), "different people collide");
    // Accents are not folded away: another name is another person.
    assert_ne!(token_of(&e, "Zoe Celik"), token_of(&e, "Zoë Çelik"));
}

#[test]
fn emails_ignore_case_and_surrounding_space() {
    let e = engine("[[rule]]\nfield = \"v\"\naction = \"pseudonymise\"\nkind = \"email\"\n");
    let t = token_of(&e, "søren.ødegård@example.dk");
    assert!(is_email_token(&t, "pseudonym.invalid"), "{t}");
    for s in [
        "Søren.Ødegård@Example.dk ",
        "SØREN.ØDEGÅRD@EXAMPLE.DK",
        " søren.ødegård@example.dk",
    ] {
        assert_eq!(token_of(&e, s), t, "{s:?}");
    }
    // Without strip_plus_tag a tag is part of the address.
    assert_ne!(token_of(&e, "zoe.celik+webinars@example.com"), {
        token_of(&e, "zoe.celik@example.com")
    });
    assert_eq!(
        token_of(&e, "Zoe.Celik+Webinars@Example.COM"),
        token_of(&e, "zoe.celik+webinars@example.com")
    );
}

#[test]
fn strip_plus_tag_gives_the_untagged_token() {
    let e = engine(
        "[[rule]]\nfield = \"v\"\naction = \"pseudonymise\"\nkind = \"email\"\nstrip_plus_tag = true\n",
    );
    let plain = token_of(&e, "zoe.celik@example.com");
    for s in [
        "zoe.celik+webinars@example.com",
        "Zoe.Celik+Webinars@Example.COM",
        "ZOE.CELIK+NEWS@EXAMPLE.COM",
        "zoe.celik+@example.com",
    ] {
        assert_eq!(token_of(&e, s), plain, "{s:?}");
    }
    assert_ne!(token_of(&e, "zoe.celik2@example.com"), plain);
}

#[test]
fn ip_spellings_share_a_token() {
    let e = engine("[[rule]]\nfield = \"v\"\naction = \"pseudonymise\"\nkind = \"ip\"\n");
    let v6 = token_of(&e, "2001:db8:85a3::8a2e:370:7334");
    for s in [
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "2001:DB8:85A3::8A2E:370:7334",
        " 2001:db8:85a3:0:0:8a2e:370:7334 ",
    ] {
        assert_eq!(token_of(&e, s), v6, "{s:?}");
    }
    let v4 = token_of(&e, "192.0.2.44");
    assert!(v4.parse::<std::net::Ipv4Addr>().is_ok(), "{v4}");
    assert_eq!(token_of(&e, "::ffff:192.0.2.44"), v4);
    assert_eq!(token_of(&e, "::FFFF:c000:022c"), v4);
    assert_ne!(token_of(&e, "192.0.2.45"), v4);
    // Generalisation treats the mapped form as IPv4 too.
    let g = engine("[[rule]]\nfield = \"v\"\naction = \"generalise\"\nkind = \"ip\"\n");
    assert_eq!(token_of(&g, "::ffff:192.0.2.44"), "192.0.2.0");
    assert_eq!(
        token_of(&g, "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
        token_of(&g, "2001:db8:85a3::8a2e:370:7334")
    );
}

#[test]
fn phone_spellings_share_a_token() {
    let e = engine("[[rule]]\nfield = \"v\"\naction = \"pseudonymise\"\nkind = \"phone\"\n");
    let t = token_of(&e, "+45 20 30 40 50");
    assert_eq!(token_of(&e, "+45 20-30-40-50"), t);
    assert_eq!(token_of(&e, "+45 (20) 30.40.50"), t);
    assert_ne!(token_of(&e, "45 20 30 40 50"), t, "the + is significant");
}

// === domain separation and key versions ===

const EMAIL_RULE: &str = "[[rule]]\nfield = \"v\"\naction = \"pseudonymise\"\nkind = \"email\"\n\
                          [[rule]]\nfield = \"n\"\naction = \"pseudonymise\"\nkind = \"name\"\n\
                          [[rule]]\nfield = \"i\"\naction = \"pseudonymise\"\nkind = \"id\"\n\
                          [[rule]]\nfield = \"ip\"\naction = \"pseudonymise\"\nkind = \"ip\"\n";

fn tokens(e: &Engine) -> Value {
    run_json(
        e,
        r#"{"v":"søren.ødegård@example.dk","n":"Søren Ødegård","i":"u-48213","ip":"203.0.113.77"}"#,
    )
}

fn engine_for(purpose: &str, recipient: &str) -> Engine {
    engine_from_toml(&crate::support::rule_file(purpose, recipient, EMAIL_RULE))
}

#[test]
fn same_purpose_and_recipient_give_the_same_tokens() {
    let a = tokens(&engine_for("audience-measurement", "analytics"));
    let b = tokens(&engine_for("audience-measurement", "analytics"));
    assert_eq!(a, b);
    assert!(is_email_token(
        a["v"].as_str().unwrap(),
        "pseudonym.invalid"
    ));
}

#[test]
fn two_purposes_give_unlinkable_tokens() {
    let a = tokens(&engine_for("audience-measurement", "analytics"));
    let b = tokens(&engine_for("support-chat", "analytics"));
    for f in ["v", "n", "i", "ip"] {
        assert_ne!(a[f], b[f], "field {f} links across purposes");
    }
}

#[test]
fn two_recipients_give_unlinkable_tokens() {
    let a = tokens(&engine_for("audience-measurement", "analytics"));
    let b = tokens(&engine_for("audience-measurement", "support"));
    for f in ["v", "n", "i", "ip"] {
        assert_ne!(a[f], b[f], "field {f} links across recipients");
    }
}

#[test]
fn kinds_are_separated_for_the_same_text() {
    let e = engine(
        "[[rule]]\nfield = \"a\"\naction = \"pseudonymise\"\nkind = \"id\"\n\
         [[rule]]\nfield = \"b\"\naction = \"pseudonymise\"\nkind = \"name\"\n",
    );
    let out = run_json(&e, r#"{"a":"jose","b":"jose"}"#);
    assert_ne!(out["a"], out["b"]);
}

#[test]
fn tokens_carry_the_key_version() {
    let text = crate::support::rule_file("p", "r", EMAIL_RULE);
    let v7 = tokens(&engine_from_toml_with(&text, 7, Limits::default()));
    let v3 = tokens(&engine_from_toml_with(&text, 3, Limits::default()));
    let local = |v: &Value| {
        v["v"]
            .as_str()
            .unwrap()
            .split('@')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(version_of(&local(&v7)), Some(7));
    assert_eq!(version_of(&local(&v3)), Some(3));
    assert_eq!(version_of(v7["n"].as_str().unwrap()), Some(7));
    assert_eq!(version_of(v3["i"].as_str().unwrap()), Some(3));
    // Another secret is another epoch, whatever its version number.
    let other = Engine::new(
        Arc::new(compile_str(&text, "x").unwrap()),
        &scrim::keyring::DevKeySource::from_bytes(7, &[0x42; 32]).unwrap(),
        Limits::default(),
    )
    .unwrap();
    let other = tokens(&other);
    assert_eq!(version_of(&local(&other)), Some(7));
    assert_ne!(local(&other), local(&v7));
    // IP tokens carry the version in their reserved prefix.
    let ip7: std::net::Ipv4Addr = v7["ip"].as_str().unwrap().parse().unwrap();
    let ip3: std::net::Ipv4Addr = v3["ip"].as_str().unwrap().parse().unwrap();
    assert_eq!(ip7.octets()[0], 0xF7);
    assert_eq!(ip3.octets()[0], 0xF3);
    assert_eq!(
        Engine::new(
            Arc::new(compile_str(&text, "x").unwrap()),
            &crate::support::keys_v(3),
            Limits::default()
        )
        .unwrap()
        .key_version(),
        3
    );
    // Not-a-token strings are not mistaken for tokens.
    for s in ["k7_short", "hello", "k07_4m0fmq5tb1kg8b6d0pc0kv3n4o", "k_x"] {
        assert_eq!(version_of(s), None, "{s}");
    }
}

// === defaults ===

#[test]
fn default_drop_keeps_only_what_rules_name() {
    let e = engine("[[rule]]\nfield = \"event\"\naction = \"keep\"\n");
    let out = run_json(
        &e,
        r#"{"event":"join","email":"jose@example.es","nested":{"event":"x","ip":"203.0.113.7"},"list":[1,2]}"#,
    );
    assert_eq!(out, json!({"event": "join"}));
}

#[test]
fn default_drop_on_a_document_with_nothing_named() {
    let e = engine("[[rule]]\nfield = \"event\"\naction = \"keep\"\n");
    assert_eq!(run_json(&e, r#"{"email":"jose@example.es"}"#), json!({}));
    assert_eq!(run_json(&e, r#"["jose@example.es"]"#), json!([]));
    assert_eq!(run_json(&e, r#""jose@example.es""#), Value::Null);
}

#[test]
fn default_keep_must_be_written_and_passes_unnamed_data() {
    let text = "[purpose]\nid = \"p\"\nlegal_basis = \"contract\"\nretention = \"30 days\"\n\
                recipient = \"r\"\ndefault = \"keep\"\n\n\
                [[rule]]\nfield = \"user.email\"\naction = \"pseudonymise\"\nkind = \"email\"\n\
                [[rule]]\nfield = \"user.password\"\naction = \"drop\"\n";
    let e = engine_from_toml(text);
    assert!(e.rules().default_keep());
    let out = run_json(
        &e,
        r#"{"event":"join","user":{"email":"jose@example.es","password":"hunter2","role":"host"},"n":[1,{"a":null}]}"#,
    );
    assert_eq!(out["event"], "join");
    assert_eq!(out["user"]["role"], "host");
    assert_eq!(out["n"], json!([1, {"a": null}]));
    assert!(out["user"].get("password").is_none());
    assert!(is_email_token(
        out["user"]["email"].as_str().unwrap(),
        "pseudonym.invalid"
    ));
    assert!(!engine("").rules().default_keep());
}

// === selectors ===

#[test]
fn any_depth_selector_matches_every_level() {
    let e = engine("[[rule]]\nfield = \"**.email\"\naction = \"pseudonymise\"\nkind = \"email\"\n");
    let out = run_json(
        &e,
        r#"{"email":"a@x.dk","u":{"email":"b@x.dk","x":1},"l":[{"email":"c@x.dk"},[{"deep":{"email":"d@x.dk"}}]],"emails":"e@x.dk"}"#,
    );
    let bytes = serde_json::to_vec(&out).unwrap();
    assert_no_leak(&bytes, &["a@x.dk", "b@x.dk", "c@x.dk", "d@x.dk", "e@x.dk"]);
    for p in ["/email", "/u/email", "/l/0/email", "/l/1/0/deep/email"] {
        let v = out
            .pointer(p)
            .unwrap_or_else(|| panic!("{p} missing: {out}"));
        assert!(
            is_email_token(v.as_str().unwrap(), "pseudonym.invalid"),
            "{p}"
        );
    }
    assert!(out.pointer("/u/x").is_none());
    assert!(out.get("emails").is_none(), "`emails` is not `email`");
}

#[test]
fn array_selectors_match_elements_only() {
    let e = engine(
        "[[rule]]\nfield = \"batch[*].ip\"\naction = \"generalise\"\nkind = \"ip\"\n\
         [[rule]]\nfield = \"batch[1].event\"\naction = \"keep\"\n\
         [[rule]]\nfield = \"[*].id\"\naction = \"keep\"\n",
    );
    let out = run_json(
        &e,
        r#"{"batch":[{"ip":"192.0.2.1","event":"a"},{"ip":"192.0.2.2","event":"b"}],"other":{"batch":{"x":{"ip":"192.0.2.3"}}}}"#,
    );
    assert_eq!(
        out,
        json!({"batch": [{"ip": "192.0.2.0"}, {"ip": "192.0.2.0", "event": "b"}]})
    );
    // `[*]` does not match object members.
    let out = run_json(&e, r#"{"batch":{"k":{"ip":"192.0.2.9"}}}"#);
    assert_eq!(out, json!({}));
    // A top-level array.
    let out = run_json(&e, r#"[{"id":1,"x":2},{"id":3}]"#);
    assert_eq!(out, json!([{"id": 1}, {"id": 3}]));
}

#[test]
fn single_wildcard_and_quoted_names() {
    let e = engine(
        "[[rule]]\nfield = \"a.*.b\"\naction = \"keep\"\n\
         [[rule]]\nfield = 'properties.\"first name\"'\naction = \"pseudonymise\"\nkind = \"name\"\n",
    );
    let out = run_json(
        &e,
        r#"{"a":{"x":{"b":1,"c":2},"y":[{"b":3}],"z":{"q":{"b":4}}},"properties":{"first name":"Zoë","last name":"Çelik"}}"#,
    );
    assert_eq!(out["a"], json!({"x": {"b": 1}}));
    assert!(is_token(out["properties"]["first name"].as_str().unwrap()));
    assert!(out["properties"].get("last name").is_none());
}

#[test]
fn more_specific_rule_wins() {
    let e = engine(
        "[[rule]]\nfield = \"**.email\"\naction = \"pseudonymise\"\nkind = \"email\"\n\
         [[rule]]\nfield = \"support.email\"\naction = \"keep\"\n",
    );
    let out = run_json(
        &e,
        r#"{"support":{"email":"help@example.com"},"user":{"email":"jose@example.es"}}"#,
    );
    assert_eq!(out["support"]["email"], "help@example.com");
    assert!(is_email_token(
        out["user"]["email"].as_str().unwrap(),
        "pseudonym.invalid"
    ));
}

#[test]
fn stricter_action_wins_between_equally_specific_rules() {
    // Each pair of selectors is equally specific and both match
    // `user.email`; `check` accepts them because they contain `**`, and the
    // engine resolves the overlap with the stricter action, whatever the rule
    // order. Strictness: drop > replace > pseudonymise > generalise > scrub >
    // keep.
    let selectors = [("**.user.email", "user.**.email"), ("**.email", "user.**")];
    let actions = [
        ("drop", "action = \"drop\""),
        ("replace", "action = \"replace\"\nvalue = \"x\""),
        (
            "pseudonymise",
            "action = \"pseudonymise\"\nkind = \"email\"",
        ),
        ("generalise", "action = \"generalise\"\nkind = \"ip\""),
        ("scrub", "action = \"scrub\""),
        ("keep", "action = \"keep\""),
    ];
    let input = r#"{"user":{"email":"jose@example.es","role":"host"}}"#;
    for (sel_a, sel_b) in selectors {
        for (i, (strict, strict_rule)) in actions.iter().enumerate() {
            for (lax, lax_rule) in &actions[i + 1..] {
                // `user.**` also selects the `user` object itself; a scalar
                // action there drops the object, which is not what is tested.
                if sel_b == "user.**" && *lax != "keep" {
                    continue;
                }
                for swap in [false, true] {
                    let (sa, sb) = if swap { (sel_b, sel_a) } else { (sel_a, sel_b) };
                    let rules = format!(
                        "[[rule]]\nfield = \"{sa}\"\n{}\n[[rule]]\nfield = \"{sb}\"\n{}\n",
                        if swap { lax_rule } else { strict_rule },
                        if swap { strict_rule } else { lax_rule },
                    );
                    let e = engine(&rules);
                    let bytes = run(&e, Format::Json, input.as_bytes());
                    let out: Value = serde_json::from_slice(&bytes).unwrap();
                    let email = out.pointer("/user/email").and_then(Value::as_str);
                    let why = format!("{strict} must beat {lax}:\n{rules}\n=> {out}");
                    match *strict {
                        "drop" | "generalise" => assert_eq!(email, None, "{why}"),
                        "replace" => assert_eq!(email, Some("x"), "{why}"),
                        "pseudonymise" => assert!(
                            email.is_some_and(|s| is_email_token(s, "pseudonym.invalid")),
                            "{why}"
                        ),
                        "scrub" => assert!(
                            email.is_some_and(|s| is_email_token(s, "pseudonym.invalid")),
                            "{why}"
                        ),
                        _ => unreachable!(),
                    }
                    assert_no_leak(&bytes, &["jose@example.es"]);
                }
            }
        }
    }
}

// === headers, cookies, query strings ===

#[test]
fn headers_follow_header_rules_case_insensitively() {
    let e = engine(
        "[[rule]]\nheader = \"User-Agent\"\naction = \"generalise\"\nkind = \"user-agent\"\n\
         [[rule]]\nheader = \"x-forwarded-for\"\naction = \"generalise\"\nkind = \"ip\"\n\
         [[rule]]\nheader = \"x-user\"\naction = \"pseudonymise\"\nkind = \"email\"\n\
         [[rule]]\nheader = \"accept-language\"\naction = \"keep\"\n\
         [[rule]]\nheader = \"x-debug\"\naction = \"drop\"\n",
    );
    assert_eq!(
        e.header("user-agent", CHROME_UA).as_deref(),
        Some("Chrome/120")
    );
    assert_eq!(
        e.header("USER-AGENT", CHROME_UA).as_deref(),
        Some("Chrome/120")
    );
    assert_eq!(
        e.header("X-Forwarded-For", "203.0.113.77").as_deref(),
        Some("203.0.113.0")
    );
    let user = e.header("X-User", "Jose@Example.es").unwrap();
    assert!(is_email_token(&user, "pseudonym.invalid"), "{user}");
    assert_eq!(
        e.header("Accept-Language", "da-DK,da;q=0.9").as_deref(),
        Some("da-DK,da;q=0.9")
    );
    assert_eq!(e.header("x-debug", "1"), None);
    assert_eq!(e.header("authorization", "Bearer secret"), None);
    assert_eq!(e.header("x-forwarded-for", "not an ip"), None);
    assert_eq!(
        e.rules().header_rule("USER-AGENT").map(|a| a.name()),
        Some("generalise")
    );
}

#[test]
fn unnamed_headers_pass_only_under_default_keep() {
    let text = "[purpose]\nid = \"p\"\nlegal_basis = \"contract\"\nretention = \"30 days\"\n\
                recipient = \"r\"\ndefault = \"keep\"\n\n\
                [[rule]]\nheader = \"authorization\"\naction = \"drop\"\n";
    let e = engine_from_toml(text);
    assert_eq!(e.header("x-request-id", "abc").as_deref(), Some("abc"));
    assert_eq!(e.header("Authorization", "Bearer secret"), None);
}

#[test]
fn cookies_are_filtered_one_by_one() {
    let e = engine(
        "[[rule]]\ncookie = \"session\"\naction = \"pseudonymise\"\nkind = \"id\"\n\
         [[rule]]\ncookie = \"theme\"\naction = \"keep\"\n\
         [[rule]]\ncookie = \"email\"\naction = \"pseudonymise\"\nkind = \"email\"\n",
    );
    let out = e
        .cookies("_ga=GA1.2.99; session=abc123; theme=dark; email=jose@example.es;tracking=u-48213")
        .unwrap();
    let pairs: Vec<(&str, &str)> = out
        .split("; ")
        .map(|p| p.split_once('=').unwrap())
        .collect();
    assert_eq!(pairs.len(), 3, "{out}");
    assert_eq!(pairs[0].0, "session");
    assert!(is_token(pairs[0].1), "{out}");
    assert_eq!(pairs[1], ("theme", "dark"));
    assert_eq!(pairs[2].0, "email");
    assert!(is_email_token(pairs[2].1, "pseudonym.invalid"), "{out}");
    assert_no_leak(
        out.as_bytes(),
        &["abc123", "jose@example.es", "u-48213", "GA1"],
    );
    assert_eq!(e.cookies("_ga=1; tracking=2"), None);
    assert_eq!(e.cookies(""), None);
    assert_eq!(e.cookies(";;=;"), None);
    // Cookie names are case-sensitive.
    assert_eq!(e.cookies("Session=abc123"), None);
}

#[test]
fn query_strings_follow_query_rules() {
    let e = engine(
        "[[rule]]\nquery = \"email\"\naction = \"pseudonymise\"\nkind = \"email\"\n\
         [[rule]]\nquery = \"utm_source\"\naction = \"keep\"\n\
         [[rule]]\nquery = \"ts\"\naction = \"generalise\"\nkind = \"timestamp\"\n\
         [[rule]]\nfield = \"name\"\naction = \"keep\"\n",
    );
    let mut out = String::new();
    let stats = e
        .query(
            "email=Jose%40Example.es&utm_source=news+letter&name=Jos%C3%A9+N%C3%BA%C3%B1ez&ts=1764427032&x=1&email=zoe%2Bw%40example.com",
            &mut out,
        )
        .unwrap();
    let pairs: Vec<(String, String)> = form_urlencoded::parse(out.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(pairs.len(), 4, "{out}");
    assert_eq!(pairs[0].0, "email");
    assert!(is_email_token(&pairs[0].1, "pseudonym.invalid"), "{out}");
    assert_eq!(pairs[1], ("utm_source".into(), "news letter".into()));
    assert_eq!(pairs[2], ("ts".into(), "1764424800".into()));
    assert_eq!(pairs[3].0, "email");
    assert!(is_email_token(&pairs[3].1, "pseudonym.invalid"), "{out}");
    assert_ne!(pairs[0].1, pairs[3].1);
    assert_eq!(stats.pseudonymised, 2);
    // `field` rules are body rules: `name` is not kept in the query.
    assert_no_leak(
        out.as_bytes(),
        &["José", "jose@example.es", "zoe+w@example.com"],
    );
    // The same email in the body and the query gives the same token.
    let body = e.transform(Format::Form, b"email=jose%40example.es", &mut Vec::new());
    assert!(body.is_ok());
}

#[test]
fn form_bodies_follow_field_rules_and_decode_embedded_json() {
    let e = engine(
        "[[rule]]\nfield = \"e\"\naction = \"keep\"\n\
         [[rule]]\nfield = \"uid\"\naction = \"pseudonymise\"\nkind = \"id\"\n\
         [[rule]]\nfield = \"ue_px\"\naction = \"decode\"\nencoding = \"base64url-json\"\n\
         [[rule]]\nfield = \"ue_px.data.email\"\naction = \"pseudonymise\"\nkind = \"email\"\n\
         [[rule]]\nfield = \"ue_px.data.action\"\naction = \"keep\"\n",
    );
    let ue = BASE64URL_NOPAD.encode(
        br#"{"data":{"action":"raise_hand","email":"jose@example.es","name":"Jos\u00e9"}}"#,
    );
    let input = format!("e=ue&uid=u-48213&ue_px={ue}&ip=203.0.113.77");
    let out = run(&e, Format::Form, input.as_bytes());
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&out).into_owned().collect();
    assert_eq!(pairs.len(), 3, "{}", String::from_utf8_lossy(&out));
    assert_eq!(pairs[0], ("e".into(), "ue".into()));
    assert!(is_token(&pairs[1].1));
    assert_eq!(pairs[2].0, "ue_px");
    let inner: Value =
        serde_json::from_slice(&BASE64URL_NOPAD.decode(pairs[2].1.as_bytes()).unwrap()).unwrap();
    assert_eq!(inner["data"]["action"], "raise_hand");
    assert!(inner["data"].get("name").is_none());
    assert!(is_email_token(
        inner["data"]["email"].as_str().unwrap(),
        "pseudonym.invalid"
    ));
    assert_no_leak(&out, &["u-48213", "203.0.113.77", "jose@example.es"]);
}

// === bad input: typed errors with positions, never the value ===

const SECRET_EMAIL: &str = "søren.ødegård@example.dk";

fn keep_all() -> Engine {
    engine("[[rule]]\nfield = \"**\"\naction = \"keep\"\n")
}

fn err(e: &Engine, format: Format, input: &[u8]) -> EngineError {
    let mut out = Vec::new();
    match e.transform(format, input, &mut out) {
        Ok(_) => panic!("accepted bad input, gave {}", String::from_utf8_lossy(&out)),
        Err(err) => {
            let text = err.to_string();
            for needle in [SECRET_EMAIL, "søren", "example.dk", "hunter2"] {
                assert!(
                    !text.to_lowercase().contains(needle),
                    "error text quotes the input: {text}"
                );
            }
            assert!(!format!("{err:?}").contains(SECRET_EMAIL));
            err
        }
    }
}

#[test]
fn malformed_json_reports_the_byte_offset() {
    let e = keep_all();
    // Trailing comma: the error is at the `}` after it.
    let doc = format!(r#"{{"email":"{SECRET_EMAIL}","pw":"hunter2",}}"#);
    let at = doc.rfind('}').unwrap();
    let er = err(&e, Format::Json, doc.as_bytes());
    assert_eq!(er.reason.code(), "malformed");
    assert_eq!(er.offset, at, "{er}");
    assert_eq!(er.line, None);
    assert!(
        er.to_string()
            .starts_with(&format!("byte {at}: malformed JSON")),
        "{er}"
    );

    // A bare (unquoted) email: the error points into it, without quoting it.
    let doc = format!(r#"{{"email": {SECRET_EMAIL}}}"#);
    let er = err(&e, Format::Json, doc.as_bytes());
    assert!(matches!(er.reason, Reason::Malformed(_)), "{er}");
    assert!((10..=11).contains(&er.offset), "{er}");

    // Truncated document: the offset is the last byte read.
    let doc = format!(r#"{{"user":{{"email":"{SECRET_EMAIL}""#);
    let er = err(&e, Format::Json, doc.as_bytes());
    assert!(matches!(er.reason, Reason::Malformed(_)));
    assert_eq!(er.offset, doc.len() - 1, "{er}");
    assert!(er.to_string().contains("EOF"), "{er}");

    // Trailing data after a complete document.
    let doc = format!(r#"{{"email":"{SECRET_EMAIL}"}} x"#);
    let er = err(&e, Format::Json, doc.as_bytes());
    assert!(matches!(er.reason, Reason::Malformed(_)));
    assert_eq!(er.offset, doc.len() - 1, "{er}");

    // On a multi-line document the offset counts from the start, not the line.
    let doc = format!("{{\n  \"email\": \"{SECRET_EMAIL}\",\n  ]\n}}");
    let er = err(&e, Format::Json, doc.as_bytes());
    assert_eq!(er.offset, doc.find(']').unwrap(), "{er}");

    // Empty input.
    let er = err(&e, Format::Json, b"");
    assert_eq!(er.offset, 0);
    assert!(matches!(er.reason, Reason::Malformed(_)));
}

#[test]
fn malformed_json_fails_even_where_everything_is_dropped() {
    // The allow-list would drop the field anyway; the body is still refused.
    let e = engine("[[rule]]\nfield = \"event\"\naction = \"keep\"\n");
    let doc = format!(r#"{{"event":"x","user":{{"email":"{SECRET_EMAIL}",]}}}}"#);
    let er = err(&e, Format::Json, doc.as_bytes());
    assert!(matches!(er.reason, Reason::Malformed(_)));
    assert_eq!(er.offset, doc.find(']').unwrap());
}

#[test]
fn invalid_utf8_is_a_typed_error() {
    let e = keep_all();
    // Latin-1 ø inside a string value.
    let mut doc = br#"{"ok":"x","email":"s"#.to_vec();
    let bad_at = doc.len();
    doc.push(0xF8);
    doc.extend_from_slice("ren.ødegård@example.dk\"}".as_bytes());
    let er = err(&e, Format::Json, &doc);
    assert_eq!(er.reason, Reason::InvalidUtf8, "{er}");
    assert!(
        (bad_at..=bad_at + 1).contains(&er.offset),
        "offset {} for a bad byte at {bad_at}",
        er.offset
    );
    assert_eq!(er.reason.code(), "invalid_utf8");

    // A form body.
    let mut form = b"email=jose%40example.es&name=Jos".to_vec();
    let bad_at = form.len();
    form.push(0xE9);
    let er = err(&e, Format::Form, &form);
    assert_eq!(er.reason, Reason::InvalidUtf8);
    assert_eq!(er.offset, bad_at);
    // Percent-encoded invalid UTF-8 in a form value: the offset is the value's.
    let er = err(&e, Format::Form, b"a=1&email=s%F8ren%40example.dk");
    assert_eq!(er.reason, Reason::InvalidUtf8);
    assert_eq!(er.offset, 10, "{er}");
}

fn nested(depth: usize, inner: &str) -> String {
    let mut s = String::new();
    for _ in 0..depth {
        s.push_str("{\"a\":");
    }
    s.push_str(inner);
    for _ in 0..depth {
        s.push('}');
    }
    s
}

#[test]
fn nesting_deeper_than_the_default_limit_is_refused() {
    let e = keep_all();
    assert_eq!(e.limits().max_depth, 128);
    let inner = format!("\"{SECRET_EMAIL}\"");
    // 128 levels pass.
    let ok = nested(128, &inner);
    let out = run(&e, Format::Json, ok.as_bytes());
    assert_eq!(out, ok.as_bytes());
    // 129 do not; the offset is at the 129th opening brace.
    let deep = nested(129, &inner);
    let er = err(&e, Format::Json, deep.as_bytes());
    assert_eq!(er.reason, Reason::TooDeep { limit: 128 }, "{er}");
    let open_129 = 128 * "{\"a\":".len();
    assert!(
        (open_129..=open_129 + 1).contains(&er.offset),
        "offset {} vs brace at {open_129}",
        er.offset
    );
    assert_eq!(
        er.to_string(),
        format!("byte {}: nesting deeper than 128 levels", er.offset)
    );
    // Arrays count too.
    let arrays = format!("{}{}", "[".repeat(129), "]".repeat(129));
    let er = err(&e, Format::Json, arrays.as_bytes());
    assert_eq!(er.reason, Reason::TooDeep { limit: 128 });
    assert!((128..=129).contains(&er.offset), "{er}");
}

#[test]
fn a_custom_depth_limit_is_enforced() {
    let text = crate::support::rule_file("p", "r", "[[rule]]\nfield = \"**\"\naction = \"keep\"\n");
    let limits = Limits {
        max_depth: 3,
        ..Limits::default()
    };
    let e = engine_from_toml_with(&text, KEY_VERSION, limits);
    let inner = format!("\"{SECRET_EMAIL}\"");
    run(&e, Format::Json, nested(3, &inner).as_bytes());
    let er = err(&e, Format::Json, nested(4, &inner).as_bytes());
    assert_eq!(er.reason, Reason::TooDeep { limit: 3 });
    // Mixed objects and arrays.
    let er = err(&e, Format::Json, br#"[{"a":[{"b":1}]}]"#);
    assert_eq!(er.reason, Reason::TooDeep { limit: 3 });
    assert!((7..=8).contains(&er.offset), "{er}");
    // Inside a decoded embedded document the levels keep counting.
    let e = engine_from_toml_with(
        &crate::support::rule_file(
            "p",
            "r",
            "[[rule]]\nfield = \"v\"\naction = \"decode\"\n\
             [[rule]]\nfield = \"v.**\"\naction = \"keep\"\n",
        ),
        KEY_VERSION,
        Limits {
            max_depth: 3,
            ..Limits::default()
        },
    );
    let doc = json!({"v": r#"{"a":{"b":1}}"#}).to_string();
    assert_eq!(run_json(&e, &doc)["v"], r#"{"a":{"b":1}}"#);
    let doc = json!({"v": r#"{"a":{"b":{"c":"x"}}}"#}).to_string();
    assert!(
        run_json(&e, &doc).get("v").is_none(),
        "too deep inside: dropped"
    );
}

#[test]
fn the_deepest_allowed_nesting_fits_a_small_thread_stack() {
    // The ceiling is there so the recursive walk cannot overflow a 2 MiB
    // stack (the default for spawned threads and test threads).
    let text = crate::support::rule_file("p", "r", "[[rule]]\nfield = \"**\"\naction = \"keep\"\n");
    let limits = Limits {
        max_depth: usize::MAX,
        ..Limits::default()
    };
    let e = engine_from_toml_with(&text, KEY_VERSION, limits);
    let ceiling = scrim::engine::MAX_DEPTH_CEILING;
    assert_eq!(e.limits().max_depth, ceiling);
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let ok = format!("{}{}", "[".repeat(ceiling), "]".repeat(ceiling));
            let mut out = Vec::new();
            e.transform(Format::Json, ok.as_bytes(), &mut out).unwrap();
            assert_eq!(out, ok.as_bytes());
            let deep = format!("{}{}", "[".repeat(ceiling + 1), "]".repeat(ceiling + 1));
            let er = e
                .transform(Format::Json, deep.as_bytes(), &mut Vec::new())
                .unwrap_err();
            assert_eq!(er.reason, Reason::TooDeep { limit: ceiling });
        })
        .unwrap();
    handle.join().unwrap();
}

#[test]
fn very_deep_nesting_anywhere_never_crashes() {
    // 100 000 levels: kept paths hit the limit; dropped subtrees are skipped
    // without recursion. Either way no stack overflow and no raw value out.
    let deep = format!(
        "{{\"event\":\"x\",\"junk\":{}\"{SECRET_EMAIL}\"{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    for e in [
        keep_all(),
        engine("[[rule]]\nfield = \"event\"\naction = \"keep\"\n"),
    ] {
        let mut out = Vec::new();
        if e.transform(Format::Json, deep.as_bytes(), &mut out).is_ok() {
            assert_no_leak(&out, &[SECRET_EMAIL]);
        }
    }
    let e = keep_all();
    let er = err(&e, Format::Json, deep.as_bytes());
    assert_eq!(er.reason, Reason::TooDeep { limit: 128 });
}

#[test]
fn a_string_over_the_limit_is_refused() {
    let text = crate::support::rule_file("p", "r", "[[rule]]\nfield = \"**\"\naction = \"keep\"\n");
    let limits = Limits {
        max_string_len: 32,
        ..Limits::default()
    };
    let e = engine_from_toml_with(&text, KEY_VERSION, limits);
    let fits = format!("{{\"a\":\"{}\"}}", "x".repeat(32));
    run(&e, Format::Json, fits.as_bytes());
    let long = format!("{SECRET_EMAIL} wrote a long message");
    assert!(long.len() > 32);
    let doc = format!(r#"{{"ok":1,"msg":"{long}"}}"#);
    let er = err(&e, Format::Json, doc.as_bytes());
    assert_eq!(er.reason, Reason::StringTooLong { limit: 32 }, "{er}");
    let start = doc.find(&long).unwrap();
    assert!(
        (start - 1..=start + long.len() + 1).contains(&er.offset),
        "offset {} outside the string at {start}",
        er.offset
    );
    assert_eq!(er.reason.code(), "string_too_long");
    // The limit counts bytes after unescaping, and applies in forms too.
    let er = err(
        &e,
        Format::Form,
        format!("ok=1&msg={}", "%41".repeat(33)).as_bytes(),
    );
    assert_eq!(er.reason, Reason::StringTooLong { limit: 32 });
    assert_eq!(er.offset, 5);
}

#[test]
fn an_ndjson_line_over_the_limit_is_refused_with_its_line_number() {
    let text = crate::support::rule_file("p", "r", "[[rule]]\nfield = \"**\"\naction = \"keep\"\n");
    let limits = Limits {
        max_line_len: 64,
        ..Limits::default()
    };
    let e = engine_from_toml_with(&text, KEY_VERSION, limits);
    let short = r#"{"event":"a"}"#;
    let long = format!(
        r#"{{"event":"b","email":"{SECRET_EMAIL}","pad":"{}"}}"#,
        "x".repeat(40)
    );
    assert!(long.len() > 64);
    let input = format!("{short}\n{long}\n{short}\n");
    let er = err(&e, Format::Ndjson, input.as_bytes());
    assert_eq!(er.reason, Reason::LineTooLong { limit: 64 });
    assert_eq!(er.line, Some(2));
    assert_eq!(er.offset, 64);
    assert_eq!(
        er.to_string(),
        "line 2, byte 64: a line is longer than 64 bytes"
    );
    // A last line without newline, and one arriving in small chunks, too.
    let input = format!("{short}\n{short}\n{long}");
    assert_eq!(err(&e, Format::Ndjson, input.as_bytes()).line, Some(3));
    let mut s = NdjsonStream::new();
    let mut out = Vec::new();
    let mut failed = None;
    for chunk in input.as_bytes().chunks(5) {
        if let Err(er) = s.push(&e, chunk, &mut out) {
            failed = Some(er);
            break;
        }
    }
    let er = failed.expect("the long line fails while it streams in");
    assert_eq!(er.line, Some(3));
    assert_eq!(er.reason, Reason::LineTooLong { limit: 64 });
    assert!(!er.to_string().contains("søren"));
    assert_no_leak(&out, &[SECRET_EMAIL]);
}

#[test]
fn ndjson_errors_name_the_line_and_the_offset_within_it() {
    let e = keep_all();
    let input = format!(
        "{{\"a\":1}}\n\n{{\"a\":2}}\r\n{{\"email\":\"{SECRET_EMAIL}\" \"x\"}}\n{{\"a\":3}}\n"
    );
    let er = err(&e, Format::Ndjson, input.as_bytes());
    assert_eq!(er.line, Some(4), "{er}");
    let bad_line = input.lines().nth(3).unwrap();
    assert_eq!(er.offset, bad_line.find(" \"x\"").unwrap() + 1, "{er}");
    assert!(er.to_string().starts_with("line 4, byte "), "{er}");
    // Good lines before it were transformed; blank lines skipped, CRLF taken.
    let out = run(
        &e,
        Format::Ndjson,
        b"{\"a\":1}\n\n{\"a\":2}\r\n   \n{\"a\":3}",
    );
    assert_eq!(out, b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n");
}

#[test]
fn error_text_never_contains_input_for_any_reason() {
    let e = engine_from_toml_with(
        &crate::support::rule_file("p", "r", "[[rule]]\nfield = \"**\"\naction = \"keep\"\n"),
        KEY_VERSION,
        Limits {
            max_depth: 4,
            max_string_len: 16,
            max_line_len: 4096,
        },
    );
    let bad: Vec<(Format, Vec<u8>)> = vec![
        (
            Format::Json,
            format!(r#"{{"email":"{SECRET_EMAIL}""#).into_bytes(),
        ),
        (
            Format::Json,
            format!(r#"{{"email":{SECRET_EMAIL}}}"#).into_bytes(),
        ),
        (
            Format::Json,
            format!(r#"{{"{SECRET_EMAIL}":tru}}"#).into_bytes(),
        ),
        (
            Format::Json,
            format!(r#"{{"{SECRET_EMAIL}" 1}}"#).into_bytes(),
        ),
        (
            Format::Json,
            format!(r#"{{"e":"{SECRET_EMAIL}\q"}}"#).into_bytes(),
        ),
        (
            Format::Json,
            format!(r#"{{"e":"\ud800{SECRET_EMAIL}"}}"#).into_bytes(),
        ),
        (
            Format::Json,
            format!(r#"[[[[["{SECRET_EMAIL}"]]]]]"#).into_bytes(),
        ),
        (Format::Json, format!(r#"["{SECRET_EMAIL}"]"#).into_bytes()),
        (
            Format::Json,
            format!(r#"{{"n":1e999,"e":"{SECRET_EMAIL}"}}"#).into_bytes(),
        ),
        (
            Format::Ndjson,
            format!("{{}}\n{{\"e\":\"{SECRET_EMAIL}\",}}\n").into_bytes(),
        ),
        (Format::Form, format!("e={SECRET_EMAIL}&x=%ff").into_bytes()),
        (Format::Form, format!("e={SECRET_EMAIL}").into_bytes()),
    ];
    for (format, input) in bad {
        let er = err(&e, format, &input);
        assert!(!er.to_string().is_empty());
    }
}

#[test]
fn nothing_panics_on_odd_input() {
    let engines = [
        keep_all(),
        engine(
            "[[rule]]\nfield = \"**.email\"\naction = \"pseudonymise\"\nkind = \"email\"\n\
             [[rule]]\nfield = \"**.ip\"\naction = \"pseudonymise\"\nkind = \"ip\"\n\
             [[rule]]\nfield = \"**.ts\"\naction = \"generalise\"\nkind = \"timestamp\"\n\
             [[rule]]\nfield = \"**.ua\"\naction = \"generalise\"\nkind = \"user-agent\"\n\
             [[rule]]\nfield = \"**.url\"\naction = \"pseudonymise\"\nkind = \"url\"\n\
             [[rule]]\nfield = \"**.msg\"\naction = \"scrub\"\n\
             [[rule]]\nfield = \"**.d\"\naction = \"decode\"\nencoding = \"base64-json\"\n\
             [[rule]]\nfield = \"**.g\"\naction = \"generalise\"\nkind = \"ip\"\n",
        ),
    ];
    let inputs: &[&[u8]] = &[
        b"",
        b" ",
        b"null",
        b"0",
        b"-0",
        b"1e308",
        b"-1e-400",
        b"18446744073709551616",
        b"\"\"",
        b"\"\\u0000\"",
        b"\xEF\xBB\xBF{}",
        b"{\"ts\":-1,\"ts\":1e300,\"ts\":\"9999-99-99\",\"ts\":18446744073709551615}",
        b"{\"ts\":\"99999999999999999\",\"g\":\"::\",\"g\":\"0.0.0.0\",\"ip\":\"255.255.255.255\"}",
        b"{\"url\":\"http://[::1\",\"url\":\"mailto:a@b.dk\",\"url\":\"//x\",\"url\":\"\"}",
        b"{\"msg\":\"http:// https://@ a@b.c 1.2.3.4.5 ::: 999.1.1.1 +++1234567890123456789\"}",
        b"{\"d\":\"====\",\"d\":\"e30\",\"d\":\"e30=\",\"d\":\"bnVsbA==\",\"d\":\"W10=\",\"d\":1}",
        b"{\"ua\":\"\",\"ua\":\"\\u0000\",\"email\":\"@\",\"email\":\"\",\"email\":[],\"email\":{}}",
        b"[{\"email\":{\"email\":{\"email\":\"a@b.dk\"}}}]",
        b"\n\n\r\n{}\r\n",
        b"%",
        b"%zz=%",
        b"=&&=&a&a=b=c",
        b"email=%40&ip=%5B%3A%3A%5D&d=%00",
    ];
    for e in &engines {
        for input in inputs {
            for format in [Format::Json, Format::Ndjson, Format::Form] {
                let mut out = Vec::new();
                if e.transform(format, input, &mut out).is_ok() && format != Format::Form {
                    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        serde_json::from_slice::<Value>(line).unwrap_or_else(|er| {
                            panic!(
                                "{:?} gave invalid JSON ({er}): {}",
                                String::from_utf8_lossy(input),
                                String::from_utf8_lossy(&out)
                            )
                        });
                    }
                }
            }
        }
    }
}

#[test]
fn engine_needs_a_usable_key() {
    let rules = Arc::new(compile_str(&crate::support::rule_file("p", "r", ""), "x").unwrap());
    assert!(Engine::new(rules, &keys(), Limits::default()).is_ok());
    assert!(scrim::keyring::DevKeySource::from_bytes(1, &[0u8; 16]).is_err());
}

#[test]
fn emails_inside_urls_do_not_survive_scrub_or_url_rules() {
    let e = engine(
        "[[rule]]\nfield = \"s\"\naction = \"scrub\"\n\
         [[rule]]\nfield = \"u\"\naction = \"pseudonymise\"\nkind = \"url\"\n\
         [[rule]]\nfield = \"e\"\naction = \"pseudonymise\"\nkind = \"email\"\n",
    );
    let email_token = run_json(&e, r#"{"e":"jose@example.es"}"#)["e"]
        .as_str()
        .unwrap()
        .to_owned();
    // In the path of a URL in free text.
    let bytes = run(
        &e,
        Format::Json,
        br#"{"s":"see https://x.example.com/users/jose@example.es/profile, thanks"}"#,
    );
    assert_no_leak(&bytes, &["jose@example.es"]);
    let out: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        out["s"],
        format!("see https://x.example.com/users/{email_token}/profile, thanks")
    );
    // In a parameter that scrub keeps because no rule names it.
    let bytes = run(
        &e,
        Format::Json,
        br#"{"s":"see https://x.example.com/p?ref=Jose%40Example.es&page=2 ok"}"#,
    );
    assert_no_leak(&bytes, &["jose@example.es"]);
    let out: Value = serde_json::from_slice(&bytes).unwrap();
    let text = out["s"].as_str().unwrap();
    let url = url::Url::parse(text.split(' ').nth(1).unwrap()).unwrap();
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(pairs[0], ("ref".into(), email_token.clone()), "{text}");
    assert_eq!(pairs[1], ("page".into(), "2".into()));
    // In the path of a URL field, encoded or not; a handle is not an email.
    for u in [
        "https://x.example.com/users/jose@example.es/profile",
        "https://x.example.com/users/JOSE%40example.es/profile",
    ] {
        let bytes = run(&e, Format::Json, json!({ "u": u }).to_string().as_bytes());
        assert_no_leak(&bytes, &["jose@example.es"]);
        let out: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            out["u"],
            format!("https://x.example.com/users/{email_token}/profile"),
            "{u}"
        );
    }
    let out = run_json(&e, r#"{"u":"https://social.example/@jose/posts"}"#);
    assert_eq!(out["u"], "https://social.example/@jose/posts");
}

#[test]
fn scrub_finds_ipv6_addresses_that_end_in_a_double_colon() {
    // Regression (found by the property tests): the detector wanted a hex
    // digit last, so `2001:db8:85a3::` and `d713:ea34::` stayed in the text.
    let e = engine("[[rule]]\nfield = \"s\"\naction = \"scrub\"\n");
    for (text, raw) in [
        ("from 2001:db8:85a3:: today", "2001:db8:85a3::"),
        ("from d713:ea34:: (home)", "d713:ea34::"),
        ("list: d713:ea34::: end", "d713:ea34::"),
        ("net 2001:DB8:1::, ok", "2001:DB8:1::"),
        ("at fe80::1: ok", "fe80::1"),
    ] {
        let bytes = run(
            &e,
            Format::Json,
            json!({ "s": text }).to_string().as_bytes(),
        );
        assert_no_leak(&bytes, &[raw]);
        let out: Value = serde_json::from_slice(&bytes).unwrap();
        let s = out["s"].as_str().unwrap();
        assert!(s.contains("2001:db8:7:"), "{text} -> {s}");
        // Only the address changed: the words around it stay.
        let (before, after) = text.split_once(raw).unwrap();
        assert!(s.starts_with(before) && s.ends_with(after), "{text} -> {s}");
    }
    let out = run_json(&e, r#"{"s":"See you at 10:30: bring coffee"}"#);
    assert_eq!(out["s"], "See you at 10:30: bring coffee");
}

/// Regression: a key was written as is when a rule matched below it.
#[test]
fn an_email_used_as_an_object_key_does_not_pass_raw() {
    let e = engine("[[rule]]\nfield = \"**.joined\"\naction = \"keep\"\n");
    let bytes = run(
        &e,
        Format::Json,
        br#"{"participants":{"jose@example.es":{"joined":true}}}"#,
    );
    assert_no_leak(&bytes, &["jose@example.es"]);
    // The member stays, under the email's pseudonym, so it can still be joined.
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let keys: Vec<&String> = v["participants"].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 1);
    assert!(
        keys[0].starts_with("k7_") && keys[0].ends_with("@pseudonym.invalid"),
        "{keys:?}"
    );
    assert_eq!(v["participants"][keys[0]]["joined"], true);
}
