//! Rule file text -> [`CompiledRules`], or every problem with a line number
//! and what to write instead. All validation happens here, once; the hot
//! path trusts what it is given.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;

use super::plan::{
    Action, Automaton, CompiledRule, CompiledRules, EmailSpec, GeneraliseSpec, PseudoSpec, Purpose,
    Rank, Retention, RuleIdx, UrlSpec,
};
use super::selector::Selector;
use super::spec::{ActionName, Encoding, Granularity, IpMode, Kind, RuleFile, RuleSpec};

/// One problem found in a rule file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// What to write instead, when there is one thing to suggest.
    pub help: Option<String>,
}

/// All problems of one file. `Display` prints `file:line:col: error: ...`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct CompileError {
    pub file: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: error: {}",
                self.file, d.line, d.column, d.message
            )?;
            if let Some(h) = &d.help {
                write!(f, "\n  help: {h}")?;
            }
        }
        Ok(())
    }
}

const MAX_RULES: usize = u16::MAX as usize;

/// Reads and compiles a rule file from disk.
pub fn compile_file(path: &Path) -> Result<CompiledRules, CompileError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| CompileError {
        file: name.clone(),
        diagnostics: vec![Diagnostic {
            line: 0,
            column: 0,
            message: format!("cannot read the file: {e}"),
            help: None,
        }],
    })?;
    compile_str(&text, &name)
}

/// Compiles rule file text; `name` is used in diagnostics.
pub fn compile_str(text: &str, name: &str) -> Result<CompiledRules, CompileError> {
    let mut cx = Cx {
        text,
        diags: Vec::new(),
    };
    let file: RuleFile = match toml::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let (message, help) = explain_toml(e.message());
            cx.error(span, message, help);
            return Err(cx.into_error(name));
        }
    };
    match cx.compile(file) {
        Some(rules) if cx.diags.is_empty() => Ok(rules),
        _ => Err(cx.into_error(name)),
    }
}

/// Turns serde's messages into ones that say what to write.
fn explain_toml(msg: &str) -> (String, Option<String>) {
    let msg = msg.trim().to_owned();
    if msg.starts_with("unknown variant") {
        (msg, Some("use one of the values listed above".into()))
    } else if msg.starts_with("unknown field") {
        let help = if msg.contains("`select`") || msg.contains("`path`") {
            Some("name the target with `field = ...` (body), `query`, `header` or `cookie`".into())
        } else {
            Some("remove it, or check its spelling against the fields listed above".into())
        };
        (msg, help)
    } else if msg.contains("missing field `purpose`") {
        (
            msg,
            Some(
                "start the file with a [purpose] table: id, legal_basis, retention, recipient"
                    .into(),
            ),
        )
    } else {
        (msg, None)
    }
}

struct Cx<'a> {
    text: &'a str,
    diags: Vec<Diagnostic>,
}

impl Cx<'_> {
    fn error(&mut self, span: Range<usize>, message: String, help: Option<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.diags.push(Diagnostic {
            line,
            column,
            message,
            help,
        });
    }

    fn into_error(mut self, name: &str) -> CompileError {
        self.diags.sort_by_key(|d| (d.line, d.column));
        CompileError {
            file: name.to_owned(),
            diagnostics: self.diags,
        }
    }

    fn compile(&mut self, file: RuleFile) -> Option<CompiledRules> {
        let purpose_span = file.purpose.span();
        let p = file.purpose.into_inner();

        let id = p.id.get_ref().clone();
        if !valid_ident(&id) {
            self.error(
                p.id.span(),
                "purpose id must be 1-64 characters of a-z, 0-9, `-` or `_`".into(),
                Some("for example id = \"audience-measurement\"".into()),
            );
        }
        let recipient = p.recipient.get_ref().clone();
        if !valid_ident(&recipient) {
            self.error(
                p.recipient.span(),
                "recipient must be 1-64 characters of a-z, 0-9, `-` or `_`".into(),
                Some("for example recipient = \"analytics\"".into()),
            );
        }
        let legal_basis = match &p.legal_basis {
            Some(b) => Some(*b.get_ref()),
            None => {
                self.error(
                    purpose_span.clone(),
                    "the purpose has no legal basis".into(),
                    Some(
                        "add legal_basis = \"contract\", \"legitimate-interest\", \"consent\" \
                         or \"legal-obligation\""
                            .into(),
                    ),
                );
                None
            }
        };
        let consent = self.consent(&p, &purpose_span, legal_basis);
        let retention = match &p.retention {
            Some(r) => match parse_retention(r.get_ref()) {
                Some(r) => Some(r),
                None => {
                    self.error(
                        r.span(),
                        "retention is not a period".into(),
                        Some(
                            "write a number and a unit, e.g. \"13 months\", \"6 months\", \
                             \"1 year\", \"30 days\", or \"while-service-used\""
                                .into(),
                        ),
                    );
                    None
                }
            },
            None => {
                self.error(
                    purpose_span,
                    "the purpose has no retention period".into(),
                    Some("add retention = \"13 months\" (or the period your records state)".into()),
                );
                None
            }
        };

        if file.rules.len() > MAX_RULES {
            self.error(0..0, format!("more than {MAX_RULES} rules"), None);
            return None;
        }

        let mut rules = Vec::with_capacity(file.rules.len());
        let mut body = Vec::new();
        let mut query = Vec::new();
        let mut headers: HashMap<String, RuleIdx> = HashMap::new();
        let mut cookies: HashMap<String, RuleIdx> = HashMap::new();
        // For conflict detection: (target, selector, rule index, span).
        let mut seen: Vec<(Target, Selector, usize, Range<usize>)> = Vec::new();
        let mut ids: HashMap<String, Range<usize>> = HashMap::new();

        for (i, spanned) in file.rules.iter().enumerate() {
            let span = spanned.span();
            let r = spanned.get_ref();
            let rule_id = r.id.clone().unwrap_or_else(|| format!("rule[{}]", i + 1));
            if let Some(prev) = ids.insert(rule_id.clone(), span.clone()) {
                let (line, _) = line_col(self.text, prev.start);
                self.error(
                    span.clone(),
                    format!("rule id `{rule_id}` is already used by the rule on line {line}"),
                    Some("give each rule its own id".into()),
                );
            }
            let Some((target, sel_span)) = self.target(r, &span) else {
                continue;
            };
            let Some(action) = self.action(r, &span) else {
                continue;
            };
            let idx = rules.len() as RuleIdx;
            let specificity = match &target {
                Target::Body(s) | Target::Query(s) => s.specificity(),
                _ => (1, 0, std::cmp::Reverse(0)),
            };
            if matches!(target, Target::Header(_) | Target::Cookie(_))
                && matches!(action, Action::Decode(_))
            {
                self.error(
                    span.clone(),
                    "`decode` applies to body and query fields, not headers or cookies".into(),
                    None,
                );
                continue;
            }
            // Conflicts: two rules that can select one node with the same
            // specificity but different actions.
            let sel_for_conflict = match &target {
                Target::Body(s) | Target::Query(s) => s.clone(),
                Target::Header(h) | Target::Cookie(h) => {
                    Selector::from_str_unchecked(&format!("\"{}\"", h.replace('"', "\\\"")))
                }
            };
            for (t, s, j, other_span) in &seen {
                if t.same_kind(&target)
                    && s.overlaps(&sel_for_conflict)
                    && s.specificity() == sel_for_conflict.specificity()
                {
                    let other: &CompiledRule = &rules[*j];
                    if other.action.name() != action.name() || s == &sel_for_conflict {
                        let (line, _) = line_col(self.text, other_span.start);
                        self.error(
                            sel_span.clone(),
                            format!(
                                "this rule and `{}` (line {line}) both select `{}` with actions \
                                 `{}` and `{}`",
                                other.id,
                                sel_for_conflict,
                                other.action.name(),
                                action.name()
                            ),
                            Some("keep one of them, or make one selector more specific".into()),
                        );
                    }
                }
            }
            seen.push((target.clone(), sel_for_conflict, idx as usize, span.clone()));
            let rank = Rank {
                specificity,
                strictness: action.strictness(),
            };
            let (kind, selector) = target.describe(r);
            match target {
                Target::Body(s) => body.push((idx, s)),
                Target::Query(s) => query.push((idx, s)),
                Target::Header(h) => {
                    headers.insert(h, idx);
                }
                Target::Cookie(c) => {
                    cookies.insert(c, idx);
                }
            }
            rules.push(CompiledRule {
                id: rule_id,
                target: kind,
                selector,
                action,
                rank,
            });
        }

        Some(CompiledRules {
            purpose: Purpose {
                id,
                description: p.description,
                legal_basis: legal_basis?,
                retention: retention?,
                recipient,
            },
            body: Automaton::new(body, &rules),
            query: Automaton::new(query, &rules),
            rules,
            headers,
            cookies,
            default_keep: p.default == super::spec::Default::Keep,
            consent,
        })
    }

    fn consent(
        &mut self,
        p: &super::spec::PurposeSpec,
        purpose_span: &Range<usize>,
        basis: Option<super::spec::LegalBasis>,
    ) -> Option<crate::privacy::consent::ConsentSpec> {
        use crate::privacy::consent::{ConsentSpec, Signal, DEFAULT_GRANTED};
        let Some(c) = &p.consent else {
            if basis == Some(super::spec::LegalBasis::Consent) {
                self.error(
                    purpose_span.clone(),
                    "a purpose on consent needs a consent signal".into(),
                    Some(
                        "add [purpose.consent] with header = \"x-consent\", cookie = \"consent\" \
                         or field = \"context.consent.analytics\""
                            .into(),
                    ),
                );
            }
            return None;
        };
        let span = c.span();
        let c = c.get_ref();
        let signal = match (&c.header, &c.cookie, &c.field) {
            (Some(h), None, None) if !h.is_empty() && h.bytes().all(is_token_char) => {
                Signal::Header(h.to_ascii_lowercase())
            }
            (None, Some(k), None) if !k.is_empty() => Signal::Cookie(k.clone()),
            (None, None, Some(f)) => match f.get_ref().parse::<Selector>() {
                Ok(s) => Signal::Field(s),
                Err(e) => {
                    self.error(
                        f.span(),
                        format!("invalid consent selector: {}", e.reason),
                        None,
                    );
                    return None;
                }
            },
            _ => {
                self.error(
                    span,
                    "[purpose.consent] names exactly one of header, cookie or field".into(),
                    None,
                );
                return None;
            }
        };
        Some(ConsentSpec {
            signal,
            granted: c
                .granted
                .clone()
                .unwrap_or_else(|| DEFAULT_GRANTED.iter().map(|s| s.to_string()).collect()),
        })
    }

    fn target(&mut self, r: &RuleSpec, span: &Range<usize>) -> Option<(Target, Range<usize>)> {
        let given: Vec<(&str, &toml::Spanned<String>)> = [
            ("field", &r.field),
            ("query", &r.query),
            ("header", &r.header),
            ("cookie", &r.cookie),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.as_ref().map(|v| (n, v)))
        .collect();
        let (name, value) = match given.as_slice() {
            [one] => *one,
            [] => {
                self.error(
                    span.clone(),
                    "the rule selects nothing".into(),
                    Some(
                        "add one of field = \"**.email\" (body), query = \"email\", \
                         header = \"user-agent\" or cookie = \"sid\""
                            .into(),
                    ),
                );
                return None;
            }
            [_, (second, v), ..] => {
                self.error(
                    v.span(),
                    format!("a rule has one target, but this one also has `{second}`"),
                    Some("split it into two [[rule]] entries".into()),
                );
                return None;
            }
        };
        let vspan = value.span();
        let raw = value.get_ref();
        let target = match name {
            "field" | "query" => match raw.parse::<Selector>() {
                Ok(s) if name == "field" => Target::Body(s),
                Ok(s) => Target::Query(s),
                Err(e) => {
                    // +1 for the opening quote of the TOML string.
                    let at = vspan.start + 1 + e.offset;
                    self.error(
                        at..at,
                        format!("invalid selector `{raw}`: {}", e.reason),
                        Some(
                            "selectors look like `user.email`, `batch[*].context.ip`, `**.email` \
                             or `properties.\"first name\"`"
                                .into(),
                        ),
                    );
                    return None;
                }
            },
            "header" => {
                if raw.is_empty() || !raw.bytes().all(is_token_char) {
                    self.error(vspan.clone(), format!("`{raw}` is not a header name"), None);
                    return None;
                }
                Target::Header(raw.to_ascii_lowercase())
            }
            _ => {
                if raw.is_empty() || raw.contains([';', '=', ' ']) {
                    self.error(vspan.clone(), format!("`{raw}` is not a cookie name"), None);
                    return None;
                }
                Target::Cookie(raw.clone())
            }
        };
        Some((target, vspan))
    }

    fn action(&mut self, r: &RuleSpec, span: &Range<usize>) -> Option<Action> {
        let name = *r.action.get_ref();
        let aspan = r.action.span();
        let kind = r.kind.as_ref().map(|k| *k.get_ref());
        let kspan = r.kind.as_ref().map(|k| k.span()).unwrap_or(span.clone());
        let before = self.diags.len();

        // Options that belong to one action or kind, checked uniformly.
        let opts: [(&str, bool, bool); 14] = [
            (
                "bridge",
                r.bridge.is_some(),
                name == ActionName::Pseudonymise,
            ),
            (
                "keep_domain",
                r.keep_domain.is_some(),
                email_kind(name, kind),
            ),
            ("domain", r.domain.is_some(), email_kind(name, kind)),
            (
                "strip_plus_tag",
                r.strip_plus_tag.is_some(),
                email_kind(name, kind),
            ),
            (
                "label",
                r.label.is_some(),
                name == ActionName::Pseudonymise && kind == Some(Kind::Name),
            ),
            (
                "ip_mode",
                r.ip_mode.is_some(),
                name == ActionName::Pseudonymise && kind == Some(Kind::Ip),
            ),
            (
                "ipv4_prefix",
                r.ipv4_prefix.is_some(),
                name == ActionName::Generalise && kind == Some(Kind::Ip),
            ),
            (
                "ipv6_prefix",
                r.ipv6_prefix.is_some(),
                name == ActionName::Generalise && kind == Some(Kind::Ip),
            ),
            (
                "to",
                r.to.is_some(),
                name == ActionName::Generalise && kind == Some(Kind::Timestamp),
            ),
            ("value", r.value.is_some(), name == ActionName::Replace),
            ("encoding", r.encoding.is_some(), name == ActionName::Decode),
            ("keep_params", r.keep_params.is_some(), url_like(name, kind)),
            (
                "pseudonymise_params",
                r.pseudonymise_params.is_some(),
                url_like(name, kind),
            ),
            (
                "keep_fragment",
                r.keep_fragment.is_some(),
                url_like(name, kind),
            ),
        ];
        for (opt, given, fits) in opts {
            if given && !fits {
                self.error(
                    span.clone(),
                    format!(
                        "`{opt}` does not apply to action `{}`{}",
                        name.as_str(),
                        kind.map(|k| format!(" with kind `{}`", k.as_str()))
                            .unwrap_or_default()
                    ),
                    Some(format!(
                        "remove `{opt}`, or change the action or kind it belongs to"
                    )),
                );
            }
        }
        let needs_kind = matches!(name, ActionName::Pseudonymise | ActionName::Generalise);
        if kind.is_some() && !needs_kind {
            self.error(
                kspan.clone(),
                format!("action `{}` takes no kind", name.as_str()),
                Some("remove `kind`".into()),
            );
        }

        let url = UrlSpec {
            keep_params: r.keep_params.clone().unwrap_or_default(),
            pseudonymise_params: r.pseudonymise_params.clone().unwrap_or_default(),
            keep_fragment: r.keep_fragment.unwrap_or(false),
            keep_unnamed_params: name == ActionName::Scrub,
        };
        let action = match name {
            ActionName::Keep => Action::Keep,
            ActionName::Drop => Action::Drop,
            ActionName::Hash => {
                self.error(
                    aspan,
                    "`hash` is not supported: an unkeyed hash of an email or name is reversed \
                     by hashing a list of candidates"
                        .into(),
                    Some(
                        "write action = \"pseudonymise\" with a kind; it uses a keyed HMAC".into(),
                    ),
                );
                return None;
            }
            ActionName::Mask => {
                self.error(
                    aspan,
                    "`mask` is not supported: masked values keep most of what identifies".into(),
                    Some("write action = \"pseudonymise\", \"generalise\" or \"drop\"".into()),
                );
                return None;
            }
            ActionName::Pseudonymise => {
                let kind = match kind {
                    None => Kind::Id,
                    Some(k @ (Kind::Timestamp | Kind::UserAgent)) => {
                        self.error(
                            kspan,
                            format!("kind `{}` cannot be pseudonymised", k.as_str()),
                            Some(format!(
                                "use action = \"generalise\" for kind `{}`",
                                k.as_str()
                            )),
                        );
                        return None;
                    }
                    Some(k) => k,
                };
                let domain = r.domain.as_ref().map(|d| (d.span(), d.get_ref().clone()));
                if let Some((dspan, d)) = &domain {
                    if !valid_domain(d) {
                        self.error(
                            dspan.clone(),
                            format!("`{d}` is not a domain name"),
                            Some("for example domain = \"pseudonym.invalid\"".into()),
                        );
                    }
                }
                if r.keep_domain == Some(true) && domain.is_some() {
                    self.error(
                        span.clone(),
                        "`keep_domain = true` and `domain` contradict each other".into(),
                        Some("keep one of them".into()),
                    );
                }
                Action::Pseudonymise(PseudoSpec {
                    kind,
                    email: EmailSpec {
                        keep_domain: r.keep_domain.unwrap_or(false),
                        domain: domain.map(|(_, d)| d),
                        strip_plus_tag: r.strip_plus_tag.unwrap_or(false),
                    },
                    label: r.label.clone(),
                    bridge: r.bridge.unwrap_or(false),
                    ip_mode: r
                        .ip_mode
                        .as_ref()
                        .map(|m| *m.get_ref())
                        .unwrap_or(IpMode::Token),
                    url,
                })
            }
            ActionName::Generalise => match kind {
                Some(Kind::Ip) => {
                    let v4 = r.ipv4_prefix.as_ref().map(|p| (*p.get_ref(), p.span()));
                    let v6 = r.ipv6_prefix.as_ref().map(|p| (*p.get_ref(), p.span()));
                    if let Some((p, s)) = v4.clone() {
                        if !(1..=32).contains(&p) {
                            self.error(
                                s,
                                "ipv4_prefix must be 1 to 32".into(),
                                Some("the default is 24".into()),
                            );
                        }
                    }
                    if let Some((p, s)) = v6.clone() {
                        if !(1..=128).contains(&p) {
                            self.error(
                                s,
                                "ipv6_prefix must be 1 to 128".into(),
                                Some("the default is 48".into()),
                            );
                        }
                    }
                    Action::Generalise(GeneraliseSpec::Ip {
                        v4_prefix: v4.map(|p| p.0).unwrap_or(24),
                        v6_prefix: v6.map(|p| p.0).unwrap_or(48),
                    })
                }
                Some(Kind::Timestamp) => Action::Generalise(GeneraliseSpec::Timestamp(
                    r.to.as_ref()
                        .map(|t| *t.get_ref())
                        .unwrap_or(Granularity::Hour),
                )),
                Some(Kind::UserAgent) => Action::Generalise(GeneraliseSpec::UserAgent),
                Some(k) => {
                    self.error(
                        kspan,
                        format!("kind `{}` cannot be generalised", k.as_str()),
                        Some(
                            "generalise takes kind = \"ip\", \"timestamp\" or \"user-agent\"; \
                             use pseudonymise for the others"
                                .into(),
                        ),
                    );
                    return None;
                }
                None => {
                    self.error(
                        aspan,
                        "generalise needs a kind".into(),
                        Some("add kind = \"ip\", \"timestamp\" or \"user-agent\"".into()),
                    );
                    return None;
                }
            },
            ActionName::Scrub => Action::Scrub(url),
            ActionName::Encrypt => Action::Encrypt,
            ActionName::Replace => {
                let Some(v) = &r.value else {
                    self.error(
                        aspan,
                        "replace needs a value".into(),
                        Some("add value = \"redacted\" (any TOML value)".into()),
                    );
                    return None;
                };
                let json = match serde_json::to_vec(v) {
                    Ok(j) => j,
                    Err(_) => {
                        self.error(
                            span.clone(),
                            "the replacement value has no JSON form (a TOML date?)".into(),
                            Some("use a string, number, boolean, array or table".into()),
                        );
                        return None;
                    }
                };
                let text = match v {
                    toml::Value::String(s) => s.clone(),
                    _ => String::from_utf8_lossy(&json).into_owned(),
                };
                Action::Replace { json, text }
            }
            ActionName::Decode => Action::Decode(
                r.encoding
                    .as_ref()
                    .map(|e| *e.get_ref())
                    .unwrap_or(Encoding::Json),
            ),
        };
        (self.diags.len() == before).then_some(action)
    }
}

fn email_kind(name: ActionName, kind: Option<Kind>) -> bool {
    name == ActionName::Pseudonymise && kind == Some(Kind::Email)
}

fn url_like(name: ActionName, kind: Option<Kind>) -> bool {
    name == ActionName::Scrub || (name == ActionName::Pseudonymise && kind == Some(Kind::Url))
}

#[derive(Clone, Debug)]
enum Target {
    Body(Selector),
    Query(Selector),
    Header(String),
    Cookie(String),
}

impl Target {
    fn same_kind(&self, other: &Target) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }

    /// The public target and the selector or name as the rule wrote it.
    fn describe(&self, r: &RuleSpec) -> (super::plan::Target, String) {
        use super::plan::Target as T;
        let (t, given) = match self {
            Target::Body(_) => (T::Body, &r.field),
            Target::Query(_) => (T::Query, &r.query),
            Target::Header(_) => (T::Header, &r.header),
            Target::Cookie(_) => (T::Cookie, &r.cookie),
        };
        let written = given.as_ref().map(|s| s.get_ref().clone());
        (t, written.unwrap_or_default())
    }
}

impl Selector {
    /// For names that are known to parse (quoted header and cookie names).
    fn from_str_unchecked(s: &str) -> Selector {
        s.parse().expect("a quoted name is a valid selector")
    }
}

fn valid_ident(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn valid_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_retention(s: &str) -> Option<Retention> {
    let s = s.trim();
    if s == "while-service-used" {
        return Some(Retention::WhileServiceUsed);
    }
    let (n, unit) = s.split_once(' ')?;
    let n: u32 = n.parse().ok().filter(|&n| n > 0)?;
    match unit.trim() {
        "day" | "days" => Some(Retention::Days(n)),
        "month" | "months" => Some(Retention::Months(n)),
        "year" | "years" => Some(Retention::Years(n)),
        _ => None,
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, unit) = match self {
            Retention::Days(n) => (n, "day"),
            Retention::Months(n) => (n, "month"),
            Retention::Years(n) => (n, "year"),
            Retention::WhileServiceUsed => return f.write_str("while-service-used"),
        };
        write!(f, "{n} {unit}{}", if *n == 1 { "" } else { "s" })
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
