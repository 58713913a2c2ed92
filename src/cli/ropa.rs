//! `scrim ropa`: the records of processing (GDPR art. 30) as the running
//! configuration enforces them, not as a document says.
//!
//! The source is what scrim itself loads: a config (`-c`), its routes and
//! the rule files they name (request and response rules), or rule files
//! given on the command line (by default every `*.toml` in ./rules).
//! Purposes are listed once each, by purpose id, in the order first met.
//! For each: description, legal basis and its article, retention,
//! recipient (and, from a config, the upstreams and routes that reach it),
//! the categories of data derived from what the rules pseudonymise,
//! generalise, scrub or encrypt, and every rule's field with its action,
//! then what happens to data no rule names.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::engine::plan::{GeneraliseSpec, PseudoSpec, RuleView, UrlSpec};
use crate::engine::spec::{Granularity, IpMode, Kind};
use crate::engine::{compile_file, Action, CompiledRules};

#[derive(Args, Debug)]
pub struct RopaArgs {
    /// Rule files to describe; by default every `*.toml` in ./rules.
    #[arg(conflicts_with = "config")]
    files: Vec<PathBuf>,
    /// Describe what this config enforces: its routes and their rule files.
    #[arg(short, long, env = "SCRIM_CONFIG")]
    config: Option<PathBuf>,
    /// Markdown (a summary table, then one table of fields per purpose) or
    /// JSON (the same facts, a stable structure).
    #[arg(long, value_enum, default_value_t = RopaFormat::Md)]
    format: RopaFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RopaFormat {
    Md,
    Json,
}

pub fn run(a: RopaArgs) -> anyhow::Result<ExitCode> {
    let (source, sets) = match &a.config {
        Some(c) => match crate::config::load(c) {
            Ok(cfg) => (Source::Config(c.display().to_string()), from_config(&cfg)),
            Err(e) => {
                eprintln!("{e}");
                eprintln!("{}: the configuration is invalid", c.display());
                return Ok(ExitCode::FAILURE);
            }
        },
        None => {
            let files = if a.files.is_empty() {
                rule_files(Path::new("rules"))?
            } else {
                a.files.clone()
            };
            let mut sets = Vec::new();
            let mut failed = false;
            for f in &files {
                match compile_file(f) {
                    Ok(r) => sets.push(RuleSet {
                        rules: Arc::new(r),
                        source: f.display().to_string(),
                        via: None,
                    }),
                    Err(e) => {
                        eprintln!("{e}");
                        failed = true;
                    }
                }
            }
            if failed {
                eprintln!("fix the rule files first (`scrim check`)");
                return Ok(ExitCode::FAILURE);
            }
            let names = files.iter().map(|f| f.display().to_string()).collect();
            (Source::Rules(names), sets)
        }
    };
    let records = Records {
        source,
        purposes: records(&sets),
    };
    let text = match a.format {
        RopaFormat::Json => format!("{}\n", serde_json::to_string_pretty(&records)?),
        RopaFormat::Md => markdown(&records),
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // `scrim ropa | head` is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn rule_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("no files given and cannot read {}/", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no .toml files in {}/", dir.display());
    Ok(files)
}

/// One compiled rule file and where it came from.
struct RuleSet {
    rules: Arc<CompiledRules>,
    /// The rule file, or the route whose inline rules these are.
    source: String,
    via: Option<Upstream>,
}

fn from_config(cfg: &crate::config::Config) -> Vec<RuleSet> {
    let mut out = Vec::new();
    // A pass-through route processes no personal data by the operator's
    // declaration; `scrim check` lists it.
    for r in cfg.routes.iter().filter(|r| !r.pass_through) {
        let path = match &r.path {
            crate::config::PathMatch::Exact(p) => p.clone(),
            crate::config::PathMatch::Prefix(p) => format!("{p}*"),
        };
        let route = match &r.host {
            Some(h) => format!("route {} {h}{path}", r.index),
            None => format!("route {} {path}", r.index),
        };
        let sets = std::iter::once((&r.rules, "requests"))
            .chain(r.response_rules.as_ref().map(|rr| (rr, "responses")));
        for (rules, what) in sets {
            out.push(RuleSet {
                rules: rules.clone(),
                source: format!("{route} ({what})"),
                via: Some(Upstream {
                    name: r.upstream.name.clone(),
                    host: r.upstream.authority.host().to_owned(),
                    routes: vec![format!("{route} ({what})")],
                }),
            });
        }
    }
    out
}

// === the records ===

#[derive(Serialize)]
struct Records {
    source: Source,
    purposes: Vec<Record>,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Source {
    /// The config file.
    Config(String),
    /// The rule files.
    Rules(Vec<String>),
}

#[derive(Serialize)]
struct Record {
    /// 1-based, in the order purposes were first met.
    number: usize,
    id: String,
    description: Option<String>,
    /// As the rule file writes it: `legitimate-interest`.
    legal_basis: &'static str,
    /// In words: `legitimate interest`.
    legal_basis_text: String,
    /// `art. 6(1)(f)`.
    article: &'static str,
    retention: String,
    /// Every recipient that receives data for this purpose.
    recipients: Vec<String>,
    /// From a config: the upstreams this purpose's data goes to.
    upstreams: Vec<Upstream>,
    /// Categories of personal data, from the kinds the rules handle.
    data: Vec<Category>,
    /// Rule files of this purpose that disagree with the first one on the
    /// legal basis or retention: a record to correct.
    conflicts: Vec<String>,
    /// The rule files (or routes) stating this purpose, each with its fields.
    rule_sets: Vec<RuleSetRecord>,
}

#[derive(Serialize)]
struct RuleSetRecord {
    /// Rule files, or routes of a config.
    sources: Vec<String>,
    /// This file's own description, when it differs from the purpose's.
    description: Option<String>,
    recipient: String,
    upstreams: Vec<Upstream>,
    /// What happens to data no rule names: `dropped` or `forwarded as is`.
    default: &'static str,
    fields: Vec<Field>,
}

#[derive(Serialize, Clone, PartialEq, Eq)]
struct Upstream {
    name: String,
    host: String,
    routes: Vec<String>,
}

#[derive(Serialize)]
struct Category {
    category: &'static str,
    kinds: Vec<&'static str>,
}

#[derive(Serialize, PartialEq)]
struct Field {
    rule: String,
    /// `body`, `query`, `header` or `cookie`.
    target: &'static str,
    /// The selector or name as written in the rule file.
    selector: String,
    /// The rule file's action name: `keep`, `pseudonymise`, ...
    action: &'static str,
    /// What the recipient gets, in words: `pseudonymised (email)`.
    effect: String,
    kind: Option<&'static str>,
    /// The action's options, by name.
    options: BTreeMap<String, serde_json::Value>,
}

fn records(sets: &[RuleSet]) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    let mut members: Vec<Vec<&CompiledRules>> = Vec::new();
    for set in sets {
        let p = &set.rules.purpose;
        let mut rs = RuleSetRecord {
            sources: vec![set.source.clone()],
            description: p.description.clone(),
            recipient: p.recipient.clone(),
            upstreams: set.via.iter().cloned().collect(),
            default: if set.rules.default_keep() {
                "forwarded as is"
            } else {
                "dropped"
            },
            fields: set.rules.describe().map(field).collect(),
        };
        let i = match out.iter().position(|r| r.id == p.id) {
            Some(i) => i,
            None => {
                out.push(Record {
                    number: out.len() + 1,
                    id: p.id.clone(),
                    description: p.description.clone(),
                    legal_basis: p.legal_basis.as_str(),
                    legal_basis_text: p.legal_basis.as_str().replace('-', " "),
                    article: p.legal_basis.article(),
                    retention: p.retention.to_string(),
                    recipients: Vec::new(),
                    upstreams: Vec::new(),
                    data: Vec::new(),
                    conflicts: Vec::new(),
                    rule_sets: Vec::new(),
                });
                members.push(Vec::new());
                out.len() - 1
            }
        };
        let r = &mut out[i];
        members[i].push(&set.rules);
        if rs.description == r.description {
            rs.description = None;
        }
        if r.description.is_none() {
            r.description = p.description.clone();
        }
        if p.legal_basis.as_str() != r.legal_basis {
            r.conflicts.push(format!(
                "{} states legal basis {} ({})",
                set.source,
                p.legal_basis.as_str(),
                p.legal_basis.article()
            ));
        }
        if p.retention.to_string() != r.retention {
            r.conflicts
                .push(format!("{} states retention {}", set.source, p.retention));
        }
        if !r.recipients.contains(&p.recipient) {
            r.recipients.push(p.recipient.clone());
        }
        if let Some(via) = &set.via {
            add_upstream(&mut r.upstreams, via);
        }
        // The same rules reached through several routes: one rule set.
        match r.rule_sets.iter_mut().find(|x| {
            x.recipient == rs.recipient
                && x.description == rs.description
                && x.default == rs.default
                && x.fields == rs.fields
        }) {
            Some(x) => {
                for src in rs.sources {
                    if !x.sources.contains(&src) {
                        x.sources.push(src);
                    }
                }
                for u in &rs.upstreams {
                    add_upstream(&mut x.upstreams, u);
                }
            }
            None => r.rule_sets.push(rs),
        }
    }
    for (r, m) in out.iter_mut().zip(&members) {
        r.data = categories(m);
    }
    out
}

fn add_upstream(list: &mut Vec<Upstream>, via: &Upstream) {
    match list
        .iter_mut()
        .find(|u| u.name == via.name && u.host == via.host)
    {
        Some(u) => {
            for r in &via.routes {
                if !u.routes.contains(r) {
                    u.routes.push(r.clone());
                }
            }
        }
        None => list.push(via.clone()),
    }
}

/// Categories in a fixed order, each with the kinds that put it there.
fn categories(sets: &[&CompiledRules]) -> Vec<Category> {
    let mut kinds: Vec<Kind> = Vec::new();
    let mut scrub = false;
    let mut encrypt = false;
    for r in sets.iter().flat_map(|s| s.describe()) {
        match r.action {
            Action::Pseudonymise(p) => kinds.push(p.kind),
            Action::Generalise(GeneraliseSpec::Ip { .. }) => kinds.push(Kind::Ip),
            Action::Generalise(GeneraliseSpec::Timestamp(_)) => kinds.push(Kind::Timestamp),
            Action::Generalise(GeneraliseSpec::UserAgent) => kinds.push(Kind::UserAgent),
            Action::Scrub(_) => scrub = true,
            Action::Encrypt => encrypt = true,
            _ => {}
        }
    }
    let table: [(&str, &[Kind]); 4] = [
        ("contact data", &[Kind::Email, Kind::Phone]),
        ("identity", &[Kind::Name]),
        ("identifiers", &[Kind::Id]),
        (
            "connection data",
            &[Kind::Ip, Kind::UserAgent, Kind::Timestamp, Kind::Url],
        ),
    ];
    let mut out = Vec::new();
    for (category, members) in table {
        let found: Vec<&'static str> = members
            .iter()
            .filter(|k| kinds.contains(k))
            .map(|k| kind_word(*k))
            .collect();
        if !found.is_empty() {
            out.push(Category {
                category,
                kinds: found,
            });
        }
    }
    if scrub {
        out.push(Category {
            category: "free text",
            kinds: Vec::new(),
        });
    }
    if encrypt {
        out.push(Category {
            category: "reversible",
            kinds: Vec::new(),
        });
    }
    out
}

fn kind_word(k: Kind) -> &'static str {
    match k {
        Kind::Timestamp => "timestamps",
        Kind::UserAgent => "user agent",
        k => k.as_str(),
    }
}

fn field(r: RuleView<'_>) -> Field {
    let mut options = BTreeMap::new();
    let mut opt = |k: &str, v: serde_json::Value| {
        options.insert(k.to_owned(), v);
    };
    let (effect, kind) = match r.action {
        Action::Keep => ("forwarded as is".to_owned(), None),
        Action::Drop => ("dropped".to_owned(), None),
        Action::Pseudonymise(p) => {
            let mut extra = pseudo_options(p, &mut opt);
            extra.insert(0, p.kind.as_str().to_owned());
            (
                format!("pseudonymised ({})", extra.join(", ")),
                Some(p.kind.as_str()),
            )
        }
        Action::Generalise(g) => match g {
            GeneraliseSpec::Ip {
                v4_prefix,
                v6_prefix,
            } => {
                opt("ipv4_prefix", (*v4_prefix).into());
                opt("ipv6_prefix", (*v6_prefix).into());
                (
                    format!("generalised (ip, IPv4 /{v4_prefix}, IPv6 /{v6_prefix})"),
                    Some(Kind::Ip.as_str()),
                )
            }
            GeneraliseSpec::Timestamp(to) => {
                let to = match to {
                    Granularity::Hour => "hour",
                    Granularity::Day => "day",
                };
                opt("to", to.into());
                (
                    format!("generalised (timestamp, to the {to})"),
                    Some(Kind::Timestamp.as_str()),
                )
            }
            GeneraliseSpec::UserAgent => (
                "generalised (user-agent, family and major version)".to_owned(),
                Some(Kind::UserAgent.as_str()),
            ),
        },
        Action::Scrub(u) => {
            let extra = url_options(u, &mut opt);
            let mut e = "scrubbed (emails, IPs, phone numbers and personal URL parameters \
                         in the text replaced)"
                .to_owned();
            if !extra.is_empty() {
                e = format!("{e}; {}", extra.join(", "));
            }
            (e, None)
        }
        Action::Replace { text, json } => {
            opt(
                "value",
                serde_json::from_slice(json).unwrap_or(serde_json::Value::Null),
            );
            (format!("replaced by the constant {text:?}"), None)
        }
        Action::Decode(enc) => {
            let enc = kebab(&format!("{enc:?}"));
            opt("encoding", enc.clone().into());
            (format!("decoded ({enc}); the rules continue inside"), None)
        }
        Action::Encrypt => (
            "encrypted (reversible token; only the security role can reveal it)".to_owned(),
            None,
        ),
    };
    Field {
        rule: r.id.to_owned(),
        target: r.target.as_str(),
        selector: r.selector.to_owned(),
        action: r.action.name(),
        effect,
        kind,
        options,
    }
}

fn pseudo_options(p: &PseudoSpec, opt: &mut impl FnMut(&str, serde_json::Value)) -> Vec<String> {
    let mut words = Vec::new();
    if p.kind == Kind::Email {
        if p.email.keep_domain {
            opt("keep_domain", true.into());
            words.push("keeps the real domain".to_owned());
        }
        if let Some(d) = &p.email.domain {
            opt("domain", d.clone().into());
            words.push(format!("domain {d}"));
        }
        if p.email.strip_plus_tag {
            opt("strip_plus_tag", true.into());
            words.push("plus tag stripped".to_owned());
        }
    }
    if let Some(l) = &p.label {
        opt("label", l.clone().into());
        words.push(format!("label {l:?}"));
    }
    if p.kind == Kind::Ip && p.ip_mode == IpMode::PrefixPreserving {
        opt("ip_mode", "prefix-preserving".into());
        words.push("prefix-preserving".to_owned());
    }
    if p.kind == Kind::Url {
        words.extend(url_options(&p.url, opt));
    }
    if p.bridge {
        opt("bridge", true.into());
        words.push("bridged across key rotations".to_owned());
    }
    words
}

fn url_options(u: &UrlSpec, opt: &mut impl FnMut(&str, serde_json::Value)) -> Vec<String> {
    let mut words = Vec::new();
    if !u.keep_params.is_empty() {
        opt("keep_params", u.keep_params.clone().into());
        words.push(format!("keeps parameters {}", u.keep_params.join(" ")));
    }
    if !u.pseudonymise_params.is_empty() {
        opt("pseudonymise_params", u.pseudonymise_params.clone().into());
        words.push(format!(
            "pseudonymises parameters {}",
            u.pseudonymise_params.join(" ")
        ));
    }
    if u.keep_fragment {
        opt("keep_fragment", true.into());
        words.push("keeps the fragment".to_owned());
    }
    words
}

/// `Base64urlJson` -> `base64url-json`: an enum's Debug name as the rule
/// file spells it.
fn kebab(camel: &str) -> String {
    let mut s = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                s.push('-');
            }
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

// === Markdown ===

fn markdown(r: &Records) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Records of processing\n");
    let from = match &r.source {
        Source::Config(c) => format!("the configuration `{c}` and the rules its routes apply"),
        Source::Rules(files) => format!(
            "the rule files {}",
            files
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let _ = writeln!(
        s,
        "Generated by `scrim ropa` from {from}: what scrim enforces, rule by rule.\n"
    );
    let _ = writeln!(
        s,
        "| # | purpose | data | legal basis | retention | recipient |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for p in &r.purposes {
        let purpose = match &p.description {
            Some(d) => format!("{d} (`{}`)", p.id),
            None => format!("`{}`", p.id),
        };
        let data = if p.data.is_empty() {
            "-".to_owned()
        } else {
            p.data.iter().map(category).collect::<Vec<_>>().join(", ")
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {}, {} | {} | {} |",
            p.number,
            cell(&purpose),
            cell(&data),
            p.legal_basis_text,
            p.article,
            cell(&p.retention),
            cell(&recipient(p)),
        );
    }
    for p in &r.purposes {
        let _ = writeln!(s, "\n## {}. `{}`\n", p.number, p.id);
        if let Some(d) = &p.description {
            let _ = writeln!(s, "{d}\n");
        }
        let _ = writeln!(
            s,
            "- legal basis: {} (`{}`), GDPR {}",
            p.legal_basis_text, p.legal_basis, p.article
        );
        let _ = writeln!(s, "- retention: {}", p.retention);
        let _ = writeln!(s, "- recipients: {}", p.recipients.join(", "));
        for c in &p.conflicts {
            let _ = writeln!(s, "- **conflict**: {c}");
        }
        for rs in &p.rule_sets {
            let _ = writeln!(
                s,
                "\n### {}: to `{}`\n",
                rs.sources.join(", "),
                rs.recipient
            );
            if let Some(d) = &rs.description {
                let _ = writeln!(s, "{d}\n");
            }
            for u in &rs.upstreams {
                let _ = writeln!(
                    s,
                    "- upstream `{}` ({}): {}",
                    u.name,
                    u.host,
                    u.routes.join("; ")
                );
            }
            let _ = writeln!(s, "- data no rule names: **{}**\n", rs.default);
            let _ = writeln!(s, "| target | field | action | rule |");
            let _ = writeln!(s, "|---|---|---|---|");
            for f in &rs.fields {
                let _ = writeln!(
                    s,
                    "| {} | `{}` | {} | {} |",
                    f.target,
                    cell(&f.selector),
                    cell(&f.effect),
                    cell(&f.rule)
                );
            }
            let _ = writeln!(
                s,
                "| any other | (not named above) | {} | default |",
                rs.default
            );
        }
    }
    s
}

fn category(c: &Category) -> String {
    if c.kinds.is_empty() {
        c.category.to_owned()
    } else {
        format!("{} ({})", c.category, c.kinds.join(", "))
    }
}

fn recipient(p: &Record) -> String {
    let who = p.recipients.join(", ");
    if p.upstreams.is_empty() {
        return who;
    }
    let ups: Vec<String> = p
        .upstreams
        .iter()
        .map(|u| format!("upstream `{}` ({})", u.name, u.host))
        .collect();
    format!("{who}, via {}", ups.join(", "))
}

/// A table cell: pipes escaped, newlines folded.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kebab_matches_rule_file_spelling() {
        assert_eq!(kebab("Base64urlJson"), "base64url-json");
        assert_eq!(kebab("Json"), "json");
        assert_eq!(kebab("JsonOrBase64"), "json-or-base64");
    }
}
