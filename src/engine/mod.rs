//! The rule engine: a payload carrying personal data in, a minimised one out.
//!
//! No network and no async here: the proxy and `scrim transform` share this
//! code. The flow is
//!
//! ```text
//! rules/*.toml --spec--> RuleFile --compile--> CompiledRules ─┐
//! key source ---------------------------------> Pseudonymiser ├─> Engine
//! payload --json/ndjson/form--> walk (plan decides per path) ─┘     │
//!                                        output + Stats <───────────┘
//! ```
//!
//! Everything no rule names is dropped unless the rule file says
//! `default = "keep"`. A body that does not parse is an error, never passed
//! through.

pub mod compile;
pub mod embedded;
pub mod envelope;
pub mod error;
pub mod form;
pub mod generalise;
pub mod json;
pub mod ndjson;
pub mod plan;
pub mod scrub;
pub mod selector;
pub mod spec;
pub mod sse;
pub mod unknown;

use std::sync::Arc;

pub use compile::{compile_file, compile_str, CompileError, Diagnostic};
pub use error::{EngineError, Reason};
pub use ndjson::NdjsonStream;
pub use plan::{Action, CompiledRules, Purpose, Retention};
pub use sse::SseStream;
pub use unknown::{UnknownFields, UnknownTally};

use crate::keyring::{KeyError, KeySource};
use crate::pseudo::Pseudonymiser;
use json::{Ctx, Produced, Scalar};

/// Payload formats the engine reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Ndjson,
    Form,
    /// A Sentry envelope (`application/x-sentry-envelope`): selectors start
    /// with the item type (`event.user.email`), `envelope.` for its header.
    SentryEnvelope,
    /// One Sentry event as JSON, as the older store endpoint takes it
    /// (`/api/{project}/store/`): walked as an envelope's `event` item, so
    /// one rule file serves both endpoints.
    SentryEvent,
}

/// Bounds on input, each a typed error when crossed.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Deepest nesting of objects and arrays (default 128).
    pub max_depth: usize,
    /// Longest single string, in bytes after unescaping (default 1 MiB).
    pub max_string_len: usize,
    /// Longest NDJSON line (default 4 MiB).
    pub max_line_len: usize,
}

/// Highest accepted `max_depth`: the walk recurses once per level, and this
/// keeps it far inside a 2 MiB thread stack.
pub const MAX_DEPTH_CEILING: usize = 512;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 128,
            max_string_len: 1 << 20,
            max_line_len: 4 << 20,
        }
    }
}

/// What one transform did, by action. Counts of values, not the values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub kept: u64,
    pub dropped: u64,
    pub pseudonymised: u64,
    pub generalised: u64,
    /// Personal values replaced inside free text.
    pub scrubbed: u64,
    pub replaced: u64,
    /// Embedded payloads opened and re-encoded.
    pub decoded: u64,
    /// Values turned into reversible tokens.
    pub encrypted: u64,
    /// Events withheld: no consent.
    pub withheld_consent: u64,
    /// Events withheld: the subject objected.
    pub withheld_objection: u64,
    /// Personal values the leak guard found after the rules and scrubbed.
    pub leaks_scrubbed: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Self) {
        self.kept += o.kept;
        self.dropped += o.dropped;
        self.pseudonymised += o.pseudonymised;
        self.generalised += o.generalised;
        self.scrubbed += o.scrubbed;
        self.replaced += o.replaced;
        self.decoded += o.decoded;
        self.encrypted += o.encrypted;
        self.withheld_consent += o.withheld_consent;
        self.withheld_objection += o.withheld_objection;
        self.leaks_scrubbed += o.leaks_scrubbed;
    }
}

/// Compiled rules bound to a key: ready to transform. Cheap to share
/// (`Arc`) and immutable; a new key version or rule set means a new Engine.
#[derive(Debug)]
pub struct Engine {
    rules: Arc<CompiledRules>,
    pseudo: Pseudonymiser,
    limits: Limits,
    /// The previous key version's pseudonymiser, for rules that bridge.
    previous: Option<Pseudonymiser>,
    guard: crate::privacy::guard::LeakMode,
    objections: Option<Arc<crate::privacy::objections::Objections>>,
}

/// The suffix of the member that carries a bridged (previous-version) token.
pub const BRIDGE_SUFFIX: &str = "_previous";

impl Engine {
    /// Binds rules to the source's active key. Derives all per-kind keys
    /// now, so that transforms do no key work.
    pub fn new(
        rules: Arc<CompiledRules>,
        keys: &dyn KeySource,
        limits: Limits,
    ) -> Result<Self, KeyError> {
        let key = keys.active()?;
        let pseudo = Pseudonymiser::new(&key, &rules.purpose.id, &rules.purpose.recipient);
        let mut limits = limits;
        limits.max_depth = limits.max_depth.clamp(1, MAX_DEPTH_CEILING);
        Ok(Self {
            rules,
            pseudo,
            limits,
            previous: None,
            guard: crate::privacy::guard::LeakMode::Off,
            objections: None,
        })
    }

    /// Bridges rotations: rules with `bridge = true` also emit tokens under
    /// `previous`. Callers pass a key only during the grace period.
    pub fn with_previous(mut self, previous: Option<&crate::keyring::KeyMaterial>) -> Self {
        self.previous = previous
            .filter(|_| self.rules.bridges())
            .map(|k| Pseudonymiser::new(k, &self.rules.purpose.id, &self.rules.purpose.recipient));
        self
    }

    pub fn rules(&self) -> &CompiledRules {
        &self.rules
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn pseudonymiser(&self) -> &Pseudonymiser {
        &self.pseudo
    }

    /// The key version tokens are made under.
    pub fn key_version(&self) -> u32 {
        self.pseudo.version()
    }

    fn ctx<'a>(
        &'a self,
        query: bool,
        out: Vec<u8>,
        mut unknown: Option<&'a mut UnknownFields>,
    ) -> Ctx<'a> {
        if let Some(u) = unknown.as_deref_mut() {
            u.begin(if query {
                plan::Target::Query
            } else {
                plan::Target::Body
            });
        }
        Ctx {
            unknown,
            rules: &self.rules,
            auto: if query {
                &self.rules.query
            } else {
                &self.rules.body
            },
            pseudo: &self.pseudo,
            previous: self.previous.as_ref(),
            bridge: None,
            objections: self.objections.as_deref(),
            objected: false,
            seen: (self.guard != crate::privacy::guard::LeakMode::Off).then(Default::default),
            guard: self.guard,
            limits: &self.limits,
            // Only sets past the determinised ones go here: rarely used.
            stack: Vec::new(),
            depth: 0,
            stats: Stats::default(),
            out,
            fail: None,
            scratch: String::new(),
        }
    }

    /// Transforms a whole payload of the given format, appending to `out`.
    /// On error `out` may hold a partial result and must be discarded.
    pub fn transform(
        &self,
        format: Format,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Stats, EngineError> {
        self.transform_with(format, input, out, None)
    }

    /// [`transform`](Self::transform), also recording in `unknown` the
    /// names (never the values) of the members dropped because no rule
    /// named them. The plain transform does none of this work.
    pub fn transform_reporting(
        &self,
        format: Format,
        input: &[u8],
        out: &mut Vec<u8>,
        unknown: &mut UnknownFields,
    ) -> Result<Stats, EngineError> {
        self.transform_with(format, input, out, Some(unknown))
    }

    fn transform_with(
        &self,
        format: Format,
        input: &[u8],
        out: &mut Vec<u8>,
        mut unknown: Option<&mut UnknownFields>,
    ) -> Result<Stats, EngineError> {
        match format {
            Format::Json => self.json_with(input, out, unknown),
            Format::SentryEnvelope => self.envelope_with(input, out, unknown),
            Format::SentryEvent => self.sentry_event_with(input, out, unknown),
            Format::Ndjson => {
                let mut s = NdjsonStream::new();
                s.push_with(self, input, out, unknown.as_deref_mut())?;
                s.finish_with(self, out, unknown)
            }
            Format::Form => {
                let text = std::str::from_utf8(input)
                    .map_err(|e| EngineError::at(e.valid_up_to(), Reason::InvalidUtf8))?;
                let mut s = String::with_capacity(text.len());
                let stats = self.form_str(text, &mut s, false, unknown)?;
                out.extend_from_slice(s.as_bytes());
                Ok(stats)
            }
        }
    }

    /// One JSON document.
    ///
    /// An event withheld for missing consent or an objection writes nothing
    /// and is counted in [`Stats::withheld_consent`] or
    /// [`Stats::withheld_objection`]. The leak guard runs on what remains.
    pub fn json(&self, input: &[u8], out: &mut Vec<u8>) -> Result<Stats, EngineError> {
        self.json_with(input, out, None)
    }

    /// [`json`](Self::json) with an optional unknown-field collector.
    pub(crate) fn json_with(
        &self,
        input: &[u8],
        out: &mut Vec<u8>,
        unknown: Option<&mut UnknownFields>,
    ) -> Result<Stats, EngineError> {
        let start = out.len();
        let mut cx = self.ctx(false, std::mem::take(out), unknown);
        let res = cx.document(input);
        *out = cx.out;
        res?;
        self.finish_event(
            cx.objected,
            || event_consents(&self.rules, input),
            cx.seen.as_ref(),
            out,
            start,
            cx.stats,
        )
    }

    /// The end of one event written at `out[start..]` (a JSON document, a
    /// Sentry event or envelope), in this order: withheld whole when its
    /// subject objected or it does not grant consent (counted in `stats`),
    /// else the leak guard over it (`seen` is `None` when the guard is off
    /// or has already run, item by item).
    pub(crate) fn finish_event(
        &self,
        objected: bool,
        consented: impl FnOnce() -> bool,
        seen: Option<&crate::privacy::guard::Seen>,
        out: &mut Vec<u8>,
        start: usize,
        mut stats: Stats,
    ) -> Result<Stats, EngineError> {
        if objected {
            out.truncate(start);
            stats.withheld_objection += 1;
        } else if !consented() {
            out.truncate(start);
            stats.withheld_consent += 1;
        } else if let Some(seen) = seen {
            let mut found = 0;
            crate::privacy::guard::json(out, start, seen, self.guard, &self.pseudo, &mut found)
                .map_err(|leak| EngineError::at(0, Reason::Leak { path: leak.path }))?;
            stats.leaks_scrubbed += u64::from(found);
        }
        Ok(stats)
    }

    /// Scans a text about to leave (a header value, a form or query value)
    /// with the leak guard. `Err` in refuse mode when something was found.
    pub fn guard_text<'t>(
        &self,
        t: &'t str,
        stats: &mut Stats,
    ) -> Result<std::borrow::Cow<'t, str>, EngineError> {
        let mut found = 0;
        let out = crate::privacy::guard::text(
            t,
            &Default::default(),
            self.guard,
            &self.pseudo,
            &mut found,
        )
        .map_err(|_| {
            EngineError::at(
                0,
                Reason::Leak {
                    path: "value".into(),
                },
            )
        })?;
        stats.leaks_scrubbed += u64::from(found);
        Ok(out)
    }

    /// Sets the leak guard's mode (off by default at this level; the proxy
    /// turns it on per route).
    pub fn with_guard(mut self, mode: crate::privacy::guard::LeakMode) -> Self {
        self.guard = mode;
        self
    }

    /// Withholds events of subjects in the objection register, for
    /// legitimate-interest purposes only.
    pub fn with_objections(
        mut self,
        register: Option<Arc<crate::privacy::objections::Objections>>,
    ) -> Self {
        let applies = self.rules.purpose.legal_basis == spec::LegalBasis::LegitimateInterest;
        self.objections = register.filter(|r| applies && !r.is_empty());
        self
    }

    /// A query string (without `?`), by the file's `query` rules.
    pub fn query(&self, query: &str, out: &mut String) -> Result<Stats, EngineError> {
        self.form_str(query, out, true, None)
    }

    /// [`query`](Self::query), recording unnamed parameters in `unknown`.
    pub fn query_reporting(
        &self,
        query: &str,
        out: &mut String,
        unknown: &mut UnknownFields,
    ) -> Result<Stats, EngineError> {
        self.form_str(query, out, true, Some(unknown))
    }

    fn form_str(
        &self,
        input: &str,
        out: &mut String,
        query: bool,
        unknown: Option<&mut UnknownFields>,
    ) -> Result<Stats, EngineError> {
        let start = out.len();
        let mut cx = self.ctx(query, Vec::new(), unknown);
        form::walk(&mut cx, input.as_bytes(), out)?;
        let mut stats = cx.stats;
        // A form body is one event: withheld whole, like a JSON document.
        let field_consent =
            self.rules.consent.as_ref().filter(|c| {
                !query && matches!(c.signal, crate::privacy::consent::Signal::Field(_))
            });
        if cx.objected {
            out.truncate(start);
            stats.withheld_objection += 1;
        } else if let Some(consent) = field_consent {
            let pairs: Vec<(String, String)> = form_urlencoded::parse(input.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if !consent.form_granted(&pairs) {
                out.truncate(start);
                stats.withheld_consent += 1;
            }
        }
        Ok(stats)
    }

    /// A header value by the file's `header` rules. `None`: do not forward.
    pub fn header(&self, name: &str, value: &str) -> Option<String> {
        let idx = self.rules.headers.get(&name.to_ascii_lowercase()).copied();
        self.single(idx, value)
    }

    /// A `Cookie` header by the file's `cookie` rules, cookie by cookie.
    /// `None` when no cookie is left.
    pub fn cookies(&self, header: &str) -> Option<String> {
        self.cookies_reporting(header, None)
    }

    /// [`cookies`](Self::cookies), recording in `unknown` the names of the
    /// cookies dropped because no rule named them.
    pub fn cookies_reporting(
        &self,
        header: &str,
        mut unknown: Option<&mut UnknownFields>,
    ) -> Option<String> {
        let mut out = String::new();
        for pair in header.split(';') {
            let pair = pair.trim();
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if name.is_empty() {
                continue;
            }
            let idx = self.rules.cookies.get(name).copied();
            if idx.is_none() && !self.rules.default_keep {
                if let Some(u) = unknown.as_deref_mut() {
                    u.record(plan::Target::Cookie, name);
                }
            }
            if let Some(v) = self.single(idx, value) {
                if !out.is_empty() {
                    out.push_str("; ");
                }
                out.push_str(name);
                out.push('=');
                out.push_str(&v);
            }
        }
        (!out.is_empty()).then_some(out)
    }

    fn single(&self, idx: Option<plan::RuleIdx>, value: &str) -> Option<String> {
        let mut cx = self.ctx(false, Vec::new(), None);
        if idx.is_none() && !self.rules.default_keep {
            return None;
        }
        let out = match cx.scalar(
            idx,
            self.rules.default_keep,
            plan::States::EMPTY,
            Scalar::Str(value),
        ) {
            Ok(Some(Produced::Text(t))) => t.into_owned(),
            Ok(Some(Produced::Literal(l))) => String::from_utf8_lossy(&l).into_owned(),
            _ => return None,
        };
        // A header the guard refuses is not forwarded (fail closed).
        self.guard_text(&out, &mut Stats::default())
            .ok()
            .map(|t| t.into_owned())
    }
}

/// Does this JSON event grant consent, where the purpose reads consent from
/// a field of each event? Other signals (a header, a cookie) are decided on
/// the request before any event is read: `true` here.
pub(crate) fn event_consents(rules: &CompiledRules, event: &[u8]) -> bool {
    rules.consent.as_ref().is_none_or(|c| c.json_granted(event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::{DevKeySource, KeyMaterial};

    #[test]
    fn bridging_emits_the_previous_token_beside_the_new_one() {
        let rules = compile_str(
            r#"
[purpose]
id = "p"
legal_basis = "contract"
retention = "1 day"
recipient = "r"
[[rule]]
field = "email"
action = "pseudonymise"
kind = "email"
bridge = true
[[rule]]
field = "name"
action = "pseudonymise"
kind = "name"
"#,
            "t",
        )
        .unwrap();
        let rules = Arc::new(rules);
        let new = DevKeySource::from_bytes(2, &[2; 32]).unwrap();
        let old = KeyMaterial::new(1, vec![1; 32]).unwrap();
        let engine = Engine::new(rules.clone(), &new, Limits::default())
            .unwrap()
            .with_previous(Some(&old));
        let mut out = Vec::new();
        engine
            .json(br#"{"email":"a@b.dk","name":"Zo\u00eb"}"#, &mut out)
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v["email"].as_str().unwrap().starts_with("k2_"));
        assert!(v["email_previous"].as_str().unwrap().starts_with("k1_"));
        // Only the bridging rule gets a sibling.
        assert!(v.get("name_previous").is_none());
        // The previous token equals what version 1 alone makes.
        let v1 = Engine::new(
            rules,
            &DevKeySource::from_bytes(1, &[1; 32]).unwrap(),
            Limits::default(),
        )
        .unwrap();
        let mut out1 = Vec::new();
        v1.json(br#"{"email":"a@b.dk"}"#, &mut out1).unwrap();
        let v1: serde_json::Value = serde_json::from_slice(&out1).unwrap();
        assert_eq!(v["email_previous"], v1["email"]);
    }
}
