//! `scrim ropa`: the records of processing regenerated from what scrim
//! loads. Every purpose, basis, article, retention, recipient and rule of
//! the bundled rule files (read here independently, as TOML) must appear,
//! in Markdown and in JSON alike; from a config, the upstreams and routes
//! too; and the brief's purpose 2 row comes back from
//! rules/audience-analytics.toml.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{path_str, rules_dir, run_process, scrim, Output};

fn ropa(args: &[&str]) -> Output {
    let out = run_process(
        scrim().env_remove("SCRIM_CONFIG").arg("ropa").args(args),
        None,
    );
    assert!(
        out.status.success(),
        "scrim ropa {args:?} failed: {}",
        out.stderr
    );
    out
}

fn ropa_json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["--format", "json"]);
    let out = ropa(&a);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ropa JSON does not parse ({e}): {}", out.stdout_str()))
}

fn article(basis: &str) -> &'static str {
    match basis {
        "consent" => "art. 6(1)(a)",
        "contract" => "art. 6(1)(b)",
        "legal-obligation" => "art. 6(1)(c)",
        "vital-interest" => "art. 6(1)(d)",
        "public-task" => "art. 6(1)(e)",
        "legitimate-interest" => "art. 6(1)(f)",
        other => panic!("unknown legal basis {other}"),
    }
}

/// The words the report uses for an action.
fn effect_prefix(action: &str) -> &'static str {
    match action {
        "keep" => "forwarded as is",
        "drop" => "dropped",
        "pseudonymise" | "pseudonymize" => "pseudonymised (",
        "generalise" | "generalize" => "generalised (",
        "scrub" => "scrubbed",
        "replace" => "replaced",
        "decode" => "decoded (",
        "encrypt" => "encrypted",
        other => panic!("unknown action {other}"),
    }
}

/// A rule file as written: (purpose table, rules).
fn read_rule_file(p: &Path) -> (toml::Table, Vec<toml::Table>) {
    let text = std::fs::read_to_string(p).expect("the rule file reads");
    let v: toml::Table = toml::from_str(&text).expect("the rule file is TOML");
    let purpose = v["purpose"].as_table().expect("[purpose]").clone();
    let rules = v
        .get("rule")
        .and_then(|r| r.as_array())
        .map(|a| {
            a.iter()
                .map(|r| r.as_table().expect("[[rule]]").clone())
                .collect()
        })
        .unwrap_or_default();
    (purpose, rules)
}

fn bundled_rule_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(rules_dir())
        .expect("rules/ reads")
        .map(|e| e.expect("a dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
}

fn s<'a>(t: &'a toml::Table, k: &str) -> &'a str {
    t.get(k)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("`{k}` is a string in {t:?}"))
}

/// (target, selector) of a rule as written.
fn target_of(rule: &toml::Table) -> (&'static str, String) {
    for (key, target) in [
        ("field", "body"),
        ("query", "query"),
        ("header", "header"),
        ("cookie", "cookie"),
    ] {
        if let Some(v) = rule.get(key).and_then(|v| v.as_str()) {
            return (target, v.to_owned());
        }
    }
    panic!("a rule without a target: {rule:?}")
}

fn purpose_by_id<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["purposes"]
        .as_array()
        .expect("purposes is an array")
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("purpose `{id}` is not in the report"))
}

/// The summary table row of a purpose in the Markdown.
fn summary_row<'a>(md: &'a str, id: &str) -> &'a str {
    let mark = format!("(`{id}`)");
    md.lines()
        .take_while(|l| !l.starts_with("## "))
        .find(|l| l.starts_with("| ") && (l.contains(&mark) || l.contains(&format!("| `{id}` |"))))
        .unwrap_or_else(|| panic!("no summary row for `{id}` in:\n{md}"))
}

/// Checks one rule file's facts against the JSON report and the Markdown.
fn assert_file_in_report(file: &Path, source: &str, report: &Value, md: &str) {
    let (purpose, rules) = read_rule_file(file);
    let id = s(&purpose, "id");
    let basis = s(&purpose, "legal_basis");
    let p = purpose_by_id(report, id);
    let ctx = format!("{} (purpose {id})", file.display());
    assert_eq!(p["legal_basis"], basis, "{ctx}");
    assert_eq!(p["article"], article(basis), "{ctx}");
    assert_eq!(p["retention"], s(&purpose, "retention"), "{ctx}");
    let recipient = s(&purpose, "recipient");
    assert!(
        p["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == recipient),
        "{ctx}: recipient {recipient} missing from {}",
        p["recipients"]
    );
    let default = match purpose.get("default").and_then(|d| d.as_str()) {
        Some("keep") => "forwarded as is",
        _ => "dropped",
    };

    // The summary row: basis in words with its article, retention, recipient.
    let row = summary_row(md, id);
    let words = basis.replace('-', " ");
    assert!(
        row.contains(&format!("| {words}, {} |", article(basis))),
        "{ctx}: {row}"
    );
    assert!(
        row.contains(&format!("| {} |", s(&purpose, "retention"))),
        "{ctx}: {row}"
    );
    assert!(row.contains(recipient), "{ctx}: {row}");

    // This file's rule set, with every rule's selector and action.
    let set = p["rule_sets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rs| {
            rs["sources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == source)
        })
        .unwrap_or_else(|| panic!("{ctx}: no rule set from {source}"));
    assert_eq!(set["recipient"], recipient, "{ctx}");
    assert_eq!(set["default"], default, "{ctx}");
    let fields = set["fields"].as_array().unwrap();
    assert_eq!(fields.len(), rules.len(), "{ctx}: one field per rule");
    for (i, rule) in rules.iter().enumerate() {
        let rule_id = rule
            .get("id")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("rule[{}]", i + 1));
        let (target, selector) = target_of(rule);
        let action = s(rule, "action");
        let f = &fields[i];
        assert_eq!(f["rule"], rule_id, "{ctx}");
        assert_eq!(f["target"], target, "{ctx}: rule {rule_id}");
        assert_eq!(f["selector"], selector.as_str(), "{ctx}: rule {rule_id}");
        let effect = f["effect"].as_str().unwrap();
        assert!(
            effect.starts_with(effect_prefix(action)),
            "{ctx}: rule {rule_id} ({action}) shown as {effect}"
        );
        if let Some(kind) = rule.get("kind").and_then(|k| k.as_str()) {
            assert_eq!(f["kind"], kind, "{ctx}: rule {rule_id}");
            assert!(effect.contains(kind), "{ctx}: rule {rule_id}: {effect}");
        }
        // The Markdown row says the same.
        let md_row = format!(
            "| {target} | `{}` | {} | {} |",
            selector.replace('|', "\\|"),
            effect.replace('|', "\\|"),
            rule_id
        );
        assert!(md.contains(&md_row), "{ctx}: no row {md_row}");
    }
    assert!(
        md.contains(&format!(
            "| any other | (not named above) | {default} | default |"
        )),
        "{ctx}"
    );
}

#[test]
fn bundled_rules_every_purpose_basis_retention_recipient_and_rule() {
    let report = ropa_json(&[]);
    let md = ropa(&[]).stdout_str();
    let files = bundled_rule_files();
    assert_eq!(
        report["source"]["rules"].as_array().unwrap().len(),
        files.len()
    );
    let mut ids = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert_file_in_report(f, &format!("rules/{name}"), &report, &md);
        let (purpose, _) = read_rule_file(f);
        let id = s(&purpose, "id").to_owned();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    // Deduplicated by purpose id, numbered in order.
    let purposes = report["purposes"].as_array().unwrap();
    assert_eq!(purposes.len(), ids.len(), "one record per purpose id");
    for (i, p) in purposes.iter().enumerate() {
        assert_eq!(p["number"], i + 1);
        let row = summary_row(&md, p["id"].as_str().unwrap());
        assert!(row.starts_with(&format!("| {} | ", i + 1)), "{row}");
    }
}

#[test]
fn json_and_markdown_state_the_same_facts() {
    let report = ropa_json(&[]);
    let md = ropa(&[]).stdout_str();
    for p in report["purposes"].as_array().unwrap() {
        let id = p["id"].as_str().unwrap();
        let row = summary_row(&md, id);
        for fact in [
            p["legal_basis_text"].as_str().unwrap(),
            p["article"].as_str().unwrap(),
            p["retention"].as_str().unwrap(),
        ] {
            assert!(row.contains(fact), "{id}: {fact} missing from {row}");
        }
        for r in p["recipients"].as_array().unwrap() {
            assert!(row.contains(r.as_str().unwrap()), "{id}: {row}");
        }
        for c in p["data"].as_array().unwrap() {
            assert!(row.contains(c["category"].as_str().unwrap()), "{row}");
            for k in c["kinds"].as_array().unwrap() {
                assert!(row.contains(k.as_str().unwrap()), "{row}");
            }
        }
        assert!(md.contains(&format!("## {}. `{id}`", p["number"])));
        for rs in p["rule_sets"].as_array().unwrap() {
            for f in rs["fields"].as_array().unwrap() {
                let line = format!(
                    "| {} | `{}` | {} | {} |",
                    f["target"].as_str().unwrap(),
                    f["selector"].as_str().unwrap().replace('|', "\\|"),
                    f["effect"].as_str().unwrap().replace('|', "\\|"),
                    f["rule"].as_str().unwrap()
                );
                assert!(md.contains(&line), "{id}: no row {line}");
            }
        }
    }
}

#[test]
fn brief_purpose_2_row_is_regenerated_from_audience_analytics() {
    let md = ropa(&["rules/audience-analytics.toml"]).stdout_str();
    let row = summary_row(&md, "audience-measurement");
    // The brief: "improve the service and measure the audience | connection
    // data (timestamps, ..., IP address, ..., URL, ...) | legitimate
    // interest, art. 6(1)(f) | 13 months", to the analytics processor.
    assert!(
        row.starts_with("| 1 | Improve the service and measure the audience"),
        "{row}"
    );
    assert!(
        row.contains("connection data (ip, user agent, timestamps, url)"),
        "{row}"
    );
    assert!(
        row.contains("| legitimate interest, art. 6(1)(f) |"),
        "{row}"
    );
    assert!(row.contains("| 13 months |"), "{row}");
    assert!(row.ends_with("| analytics |"), "{row}");
    // Pseudonyms, not identities: the categories name what the rules touch.
    assert!(row.contains("contact data (email)"), "{row}");
    assert!(row.contains("identity (name)"), "{row}");
    assert!(row.contains("identifiers (id)"), "{row}");
    assert!(md.contains("- data no rule names: **dropped**"));
    // And the fields the brief's table lists for purpose 2 are there.
    for line in [
        "| body | `timestamp` | generalised (timestamp, to the hour) | event-time |",
        "| body | `**.ip` | generalised (ip, IPv4 /24, IPv6 /48) | ip |",
        "| body | `context.country` | forwarded as is | country |",
        "| body | `context.screen` | forwarded as is | screen |",
        "| header | `x-forwarded-for` | generalised (ip, IPv4 /24, IPv6 /48) | forwarded-for |",
    ] {
        assert!(md.contains(line), "missing {line}");
    }
    assert!(
        md.lines().any(|l| l.starts_with(
            "| body | `context.page.url` | pseudonymised (url, keeps parameters utm_source"
        )),
        "page URL"
    );
}

#[test]
fn from_a_config_with_upstreams_routes_and_deduplication() {
    let dir = tempfile::tempdir().unwrap();
    let audience = rules_dir().join("audience-analytics.toml");
    let support = rules_dir().join("support-chat.toml");
    let cfg = format!(
        r#"
[[listener]]
addr = "127.0.0.1:0"

[upstream.analytics]
url = "https://analytics.example.com/v1"

[upstream.crm]
url = "http://crm.internal:8080"

[[route]]
path_prefix = "/events/"
upstream = "analytics"
rules = '{audience}'

[[route]]
host = "beacon.example.com"
path = "/collect"
upstream = "analytics"
rules = '{audience}'

[[route]]
path_prefix = "/notes/"
upstream = "crm"
inline_rules = '''
[purpose]
id = "support-notes"
description = "Notes the support team keeps on a ticket"
legal_basis = "contract"
retention = "while-service-used"
recipient = "crm"
default = "keep"

[[rule]]
id = "no-phone"
field = "customer.phone"
action = "drop"

[[rule]]
id = "secret"
field = "note"
action = "encrypt"
'''
response_rules = '{support}'
"#,
        audience = audience.display(),
        support = support.display(),
    );
    let path = dir.path().join("scrim.toml");
    std::fs::write(&path, cfg).unwrap();
    let c = path_str(&path);
    let report = ropa_json(&["-c", c]);
    let md = ropa(&["-c", c]).stdout_str();

    assert_eq!(report["source"]["config"], c);
    let ids: Vec<&str> = report["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["audience-measurement", "support-notes", "support-chat"]
    );

    // Two routes, one rule file: one purpose, one rule set, both routes.
    let a = purpose_by_id(&report, "audience-measurement");
    assert_eq!(a["rule_sets"].as_array().unwrap().len(), 1);
    assert_eq!(
        a["upstreams"],
        serde_json::json!([{
            "name": "analytics",
            "host": "analytics.example.com",
            "routes": ["route 1 /events/* (requests)", "route 2 beacon.example.com/collect (requests)"],
        }])
    );
    assert_file_in_report(&audience, "route 1 /events/* (requests)", &report, &md);
    let row = summary_row(&md, "audience-measurement");
    assert!(
        row.ends_with("| analytics, via upstream `analytics` (analytics.example.com) |"),
        "{row}"
    );

    // Inline rules with default = keep and an encrypt rule.
    let n = purpose_by_id(&report, "support-notes");
    assert_eq!(n["legal_basis"], "contract");
    assert_eq!(n["article"], "art. 6(1)(b)");
    assert_eq!(n["retention"], "while-service-used");
    assert_eq!(n["rule_sets"][0]["default"], "forwarded as is");
    assert_eq!(
        n["data"],
        serde_json::json!([{"category": "reversible", "kinds": []}])
    );
    let row = summary_row(&md, "support-notes");
    assert!(
        row.contains("| contract, art. 6(1)(b) | while-service-used |"),
        "{row}"
    );
    assert!(md.contains("| body | `customer.phone` | dropped | no-phone |"));
    assert!(md.contains("| any other | (not named above) | forwarded as is | default |"));

    // Response rules are a purpose too, reached through the crm upstream.
    let sc = purpose_by_id(&report, "support-chat");
    assert_eq!(sc["upstreams"][0]["name"], "crm");
    assert_eq!(sc["upstreams"][0]["host"], "crm.internal");
    assert_eq!(
        sc["rule_sets"][0]["sources"],
        serde_json::json!(["route 3 /notes/* (responses)"])
    );
    assert_file_in_report(&support, "route 3 /notes/* (responses)", &report, &md);
}

#[test]
fn a_broken_rule_file_or_config_fails_with_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[purpose]\nid = \"x\"\nlegal_basis = \"consent\"\nrecipient = \"r\"\n",
    )
    .unwrap();
    let out = run_process(
        scrim()
            .env_remove("SCRIM_CONFIG")
            .args(["ropa", path_str(&bad)]),
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("no retention period"), "{}", out.stderr);
    assert!(out.stdout.is_empty());

    let cfg = dir.path().join("scrim.toml");
    std::fs::write(&cfg, "[[listener]]\naddr = \"nowhere\"\n").unwrap();
    let out = run_process(
        scrim()
            .env_remove("SCRIM_CONFIG")
            .args(["ropa", "-c", path_str(&cfg)]),
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr.contains("the configuration is invalid"),
        "{}",
        out.stderr
    );
}
