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

use std::sync::Arc;

pub use compile::{compile_file, compile_str, CompileError, Diagnostic};
pub use error::{EngineError, Reason};
pub use ndjson::NdjsonStream;
pub use plan::{Action, CompiledRules, Purpose, Retention};
pub use sse::SseStream;

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
pub const MAX_DEPTH_CEILING: usize = 1024;

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

    fn ctx(&self, query: bool, out: Vec<u8>) -> Ctx<'_> {
        Ctx {
            rules: &self.rules,
            auto: if query {
                &self.rules.query
            } else {
                &self.rules.body
            },
            pseudo: &self.pseudo,
            previous: self.previous.as_ref(),
            bridge: None,
            limits: &self.limits,
            stack: Vec::with_capacity(32),
            depth: 0,
            stats: Stats::default(),
            out,
            fail: None,
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
        match format {
            Format::Json => self.json(input, out),
            Format::SentryEnvelope => self.envelope(input, out),
            Format::SentryEvent => self.sentry_event(input, out),
            Format::Ndjson => {
                let mut s = NdjsonStream::new();
                s.push(self, input, out)?;
                s.finish(self, out)
            }
            Format::Form => {
                let text = std::str::from_utf8(input)
                    .map_err(|e| EngineError::at(e.valid_up_to(), Reason::InvalidUtf8))?;
                let mut s = String::with_capacity(text.len());
                let stats = self.form_str(text, &mut s, false)?;
                out.extend_from_slice(s.as_bytes());
                Ok(stats)
            }
        }
    }

    /// One JSON document.
    pub fn json(&self, input: &[u8], out: &mut Vec<u8>) -> Result<Stats, EngineError> {
        let mut cx = self.ctx(false, std::mem::take(out));
        let res = cx.document(input);
        *out = cx.out;
        res.map(|()| cx.stats)
    }

    /// A query string (without `?`), by the file's `query` rules.
    pub fn query(&self, query: &str, out: &mut String) -> Result<Stats, EngineError> {
        self.form_str(query, out, true)
    }

    fn form_str(&self, input: &str, out: &mut String, query: bool) -> Result<Stats, EngineError> {
        let mut cx = self.ctx(query, Vec::new());
        form::walk(&mut cx, input.as_bytes(), out)?;
        Ok(cx.stats)
    }

    /// A header value by the file's `header` rules. `None`: do not forward.
    pub fn header(&self, name: &str, value: &str) -> Option<String> {
        let idx = self.rules.headers.get(&name.to_ascii_lowercase()).copied();
        self.single(idx, value)
    }

    /// A `Cookie` header by the file's `cookie` rules, cookie by cookie.
    /// `None` when no cookie is left.
    pub fn cookies(&self, header: &str) -> Option<String> {
        let mut out = String::new();
        for pair in header.split(';') {
            let pair = pair.trim();
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if name.is_empty() {
                continue;
            }
            let idx = self.rules.cookies.get(name).copied();
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
        let mut cx = self.ctx(false, Vec::new());
        if idx.is_none() && !self.rules.default_keep {
            return None;
        }
        match cx.scalar(idx, self.rules.default_keep, 0..0, Scalar::Str(value)) {
            Ok(Some(Produced::Text(t))) => Some(t.into_owned()),
            Ok(Some(Produced::Literal(l))) => Some(String::from_utf8_lossy(&l).into_owned()),
            _ => None,
        }
    }
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
legal_basis = "consent"
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
