//! The one-pass JSON walk.
//!
//! The input is never built into a `serde_json::Value`. A `DeserializeSeed`
//! drives serde_json's parser and writes the output as it goes: object keys
//! and unescaped strings are borrowed from the input, subtrees that nothing
//! can keep are skipped with `IgnoredAny` without allocating, and a container
//! that ends up empty under the `drop` default is cut back out of the output
//! buffer. This is why a transform that does the work is faster than a plain
//! parse-to-`Value`-and-serialise round trip.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::error::{EngineError, Reason};
use super::plan::{Action, Automaton, CompiledRules, RuleIdx, State, States, UrlSpec};
use super::selector::Step;
use super::spec::Kind;
use super::unknown::UnknownFields;
use super::{embedded, generalise, scrub, Limits, Stats};
use crate::pseudo::Pseudonymiser;

/// Everything one walk needs, owned for its duration.
pub(crate) struct Ctx<'e> {
    pub rules: &'e CompiledRules,
    pub auto: &'e Automaton,
    pub pseudo: &'e Pseudonymiser,
    /// The objection register, for legitimate-interest purposes.
    pub objections: Option<&'e crate::privacy::objections::Objections>,
    /// Set when a pseudonymised email or id belongs to a subject who
    /// objected: the whole event is withheld.
    pub objected: bool,
    /// Raw values pseudonymised in this event, for the leak guard; `None`
    /// when the guard is off.
    pub seen: Option<crate::privacy::guard::Seen>,
    pub guard: crate::privacy::guard::LeakMode,
    /// Set while a rotation is being bridged.
    pub previous: Option<&'e Pseudonymiser>,
    /// The previous version's token of the value just produced, when its rule
    /// bridges; the container writing the member emits it beside.
    pub bridge: Option<String>,
    pub limits: &'e Limits,
    pub stack: Vec<State>,
    pub depth: usize,
    pub stats: Stats,
    pub out: Vec<u8>,
    /// Set before a visitor returns a custom error, so the caller can report
    /// the real reason (serde's custom errors carry only a message).
    pub fail: Option<Reason>,
    /// Opt-in unknown-field report: when set, the walk keeps the path it is
    /// on and records every member dropped because no rule named it.
    pub unknown: Option<&'e mut UnknownFields>,
    /// One buffer that pseudonyms and scrubbed texts are produced in and
    /// that comes back once they are written: no allocation per value.
    pub scratch: String,
}

/// A value produced for a scalar.
pub(crate) enum Produced<'a> {
    /// A string, to be escaped (JSON) or percent-encoded (form).
    Text(Cow<'a, str>),
    /// A JSON literal: number, boolean, null, or a replacement constant.
    Literal(Cow<'a, [u8]>),
}

#[derive(Clone, Copy)]
pub(crate) enum Scalar<'a> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(&'a str),
}

/// Runs `$body` with `$de` bound to a serde_json deserializer over `$input`
/// (bytes), recursion limit off (our own depth limit replaces serde_json's
/// fixed one). Valid UTF-8, the rule, is checked once here, so the parser
/// need not check every string again; anything else goes to the byte parser,
/// which reports where the bad byte is.
macro_rules! with_deserializer {
    ($input:expr, |$de:ident| $body:expr) => {
        match std::str::from_utf8($input) {
            Ok(text) => {
                let mut $de = serde_json::Deserializer::from_str(text);
                $de.disable_recursion_limit();
                $body
            }
            Err(_) => {
                let mut $de = serde_json::Deserializer::from_slice($input);
                $de.disable_recursion_limit();
                $body
            }
        }
    };
}

impl<'e> Ctx<'e> {
    /// Walks one JSON document, appending its transform to `self.out`.
    pub fn document(&mut self, input: &[u8]) -> Result<(), EngineError> {
        let states = self.auto.start(&mut self.stack);
        let winner = self.auto.winner(&self.rules.rules, &self.stack, &states);
        let keep = self.rules.default_keep;
        let res = with_deserializer!(input, |de| Node {
            cx: self,
            states,
            keep,
            rule: winner,
            root: true,
        }
        .deserialize(&mut de)
        .and_then(|wrote| de.end().map(|_| wrote)));
        self.stack.clear();
        match res {
            Ok(true) => Ok(()),
            // A root that produced nothing: a dropped scalar document.
            Ok(false) => {
                self.out.extend_from_slice(b"null");
                Ok(())
            }
            Err(e) => Err(EngineError::from_json(&e, input, self.fail.take())),
        }
    }

    /// Walks one JSON document that sits below a path of its container (a
    /// Sentry envelope item under its type): `states` are the automaton
    /// states already on the stack for that path, `rule` the rule winning
    /// there. The caller owns the stack. Returns whether anything was
    /// written; error offsets are into `input`.
    pub(crate) fn document_at(
        &mut self,
        input: &[u8],
        states: States,
        rule: Option<RuleIdx>,
    ) -> Result<bool, EngineError> {
        let keep = self.rules.default_keep;
        let res = with_deserializer!(input, |de| Node {
            cx: self,
            states,
            keep,
            rule,
            root: true,
        }
        .deserialize(&mut de)
        .and_then(|wrote| de.end().map(|_| wrote)));
        res.map_err(|e| EngineError::from_json(&e, input, self.fail.take()))
    }

    fn action(&self, rule: Option<RuleIdx>) -> Option<&'e Action> {
        rule.map(|r| &self.rules.rules[r as usize].action)
    }

    /// Applies the node's rule to a scalar. `None`: the value is dropped.
    pub fn scalar<'a>(
        &mut self,
        rule: Option<RuleIdx>,
        keep: bool,
        states: States,
        v: Scalar<'a>,
    ) -> Result<Option<Produced<'a>>, Reason>
    where
        'e: 'a,
    {
        let action = match self.action(rule) {
            Some(a) => a,
            None if keep => &Action::Keep,
            None => {
                self.stats.dropped += 1;
                return Ok(None);
            }
        };
        let produced = match (action, v) {
            (Action::Drop, _) => None,
            (Action::Keep, v) => {
                self.stats.kept += 1;
                Some(literal(v))
            }
            (Action::Replace { json, text }, v) => {
                self.stats.replaced += 1;
                Some(match v {
                    Scalar::Str(_) if json.first() == Some(&b'"') => {
                        Produced::Text(Cow::Borrowed(text.as_str()))
                    }
                    _ => Produced::Literal(Cow::Borrowed(json.as_slice())),
                })
            }
            // Booleans and null identify no one; they keep their value.
            (_, v @ (Scalar::Null | Scalar::Bool(_))) => Some(literal(v)),
            (Action::Pseudonymise(spec), v) => {
                let text = scalar_text(v);
                let mut token = self.take_scratch();
                let ok = self.pseudo.apply_into(spec, &text, &mut token);
                if let Some(objections) = self.objections {
                    if objections.contains(spec.kind, &text) {
                        self.objected = true;
                    }
                }
                if let (Some(seen), true) = (self.seen.as_mut(), ok) {
                    if matches!(spec.kind, Kind::Email | Kind::Name | Kind::Id | Kind::Phone) {
                        seen.push(&text, &token);
                    }
                }
                if spec.bridge {
                    self.bridge = self.previous.and_then(|p| p.apply(spec, &text));
                }
                self.count(ok, |s| &mut s.pseudonymised);
                if ok {
                    Some(Produced::Text(Cow::Owned(token)))
                } else {
                    self.scratch = token;
                    None
                }
            }
            (Action::Generalise(spec), Scalar::Str(s)) => {
                let out = generalise::text(spec, s);
                self.count(out.is_some(), |s| &mut s.generalised);
                out.map(|t| Produced::Text(Cow::Owned(t)))
            }
            (Action::Generalise(spec), v) => {
                let n = match v {
                    Scalar::U64(n) => n as f64,
                    Scalar::I64(n) => n as f64,
                    Scalar::F64(n) => n,
                    _ => f64::NAN,
                };
                let out = generalise::number(spec, n);
                self.count(out.is_some(), |s| &mut s.generalised);
                out.map(|n| {
                    let lit = if n.fract() == 0.0 && n.abs() < 9.0e15 {
                        format!("{}", n as i64)
                    } else {
                        format!("{n}")
                    };
                    Produced::Literal(Cow::Owned(lit.into_bytes()))
                })
            }
            (Action::Scrub(url), v) => {
                let text = scalar_text(v);
                let mut found = scrub::Found::default();
                let mut out = self.take_scratch();
                let replaced = scrub::scrub_into(self.pseudo, url, &text, &mut found, &mut out);
                self.stats.scrubbed += found.replaced as u64;
                if replaced {
                    Some(Produced::Text(Cow::Owned(out)))
                } else {
                    self.scratch = out;
                    Some(literal(v))
                }
            }
            (Action::Decode(enc), Scalar::Str(s)) => {
                let Some((bytes, wrapping)) = embedded::decode(*enc, s) else {
                    self.stats.dropped += 1;
                    return Ok(None);
                };
                let saved = std::mem::take(&mut self.out);
                let saved_depth = self.depth;
                let res = self.embedded(&bytes, states, keep);
                self.depth = saved_depth;
                let inner = std::mem::replace(&mut self.out, saved);
                match res {
                    Ok(()) => {
                        self.stats.decoded += 1;
                        Some(Produced::Text(Cow::Owned(embedded::encode(
                            wrapping, &inner,
                        ))))
                    }
                    // A broken embedded payload is dropped, not forwarded and
                    // not fatal for the rest of the document.
                    Err(_) => {
                        self.fail = None;
                        self.stats.dropped += 1;
                        None
                    }
                }
            }
            (Action::Decode(_), v) if keep => Some(literal(v)),
            (Action::Decode(_), _) => None,
            (Action::Encrypt, v) => {
                let field = rule.map_or("", |r| self.rules.rules[r as usize].id.as_str());
                let token = self
                    .pseudo
                    .encrypt(field, &scalar_text(v))
                    .map_err(|_| Reason::Internal)?;
                self.stats.encrypted += 1;
                Some(Produced::Text(Cow::Owned(token)))
            }
        };
        Ok(produced)
    }

    /// The reusable buffer for a value being produced, empty.
    fn take_scratch(&mut self) -> String {
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        // Once per document, room for the usual token or short text, so
        // that it is not regrown a few bytes at a time.
        s.reserve(128);
        s
    }

    /// An object key or form field name as it may leave: a key that is
    /// itself personal (a map keyed by email or IP) is pseudonymised like
    /// free text. Selectors still match the original key.
    #[inline]
    pub(crate) fn scrub_key<'k>(&mut self, key: &'k str) -> Cow<'k, str> {
        // Most keys hold nothing: decided here, in the walk's loop.
        if !scrub::may_hold_personal(key) {
            return Cow::Borrowed(key);
        }
        self.scrub_personal_key(key)
    }

    #[inline(never)]
    fn scrub_personal_key<'k>(&mut self, key: &'k str) -> Cow<'k, str> {
        static KEY_TEXT: UrlSpec = UrlSpec {
            keep_params: Vec::new(),
            pseudonymise_params: Vec::new(),
            keep_fragment: false,
            keep_unnamed_params: true,
        };
        let mut found = scrub::Found::default();
        let out = scrub::scrub(self.pseudo, &KEY_TEXT, key, &mut found);
        self.stats.scrubbed += u64::from(found.replaced);
        out
    }

    /// Records the node the walk is on as dropped-because-unnamed.
    #[inline]
    pub(crate) fn note_unknown(&mut self) {
        if let Some(u) = self.unknown.as_deref_mut() {
            u.record_here();
        }
    }

    fn count(&mut self, ok: bool, field: impl FnOnce(&mut Stats) -> &mut u64) {
        if ok {
            *field(&mut self.stats) += 1;
        } else {
            // The value could not take its kind's shape: fail closed.
            self.stats.dropped += 1;
        }
    }

    /// Walks JSON found inside a string, continuing the path of the string.
    fn embedded(&mut self, input: &[u8], states: States, keep: bool) -> Result<(), Reason> {
        let rules = self.rules;
        let winner = self
            .auto
            .winner(&rules.rules, &self.stack, &states)
            .filter(|&r| !matches!(rules.rules[r as usize].action, Action::Decode(_)));
        let res = with_deserializer!(input, |de| Node {
            cx: self,
            states,
            keep,
            rule: winner,
            root: true,
        }
        .deserialize(&mut de)
        .and_then(|_| de.end()));
        res.map_err(|_| {
            self.fail
                .take()
                .unwrap_or(Reason::Malformed("embedded".into()))
        })
    }

    fn enter(&mut self) -> Result<(), Reason> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(Reason::TooDeep {
                limit: self.limits.max_depth,
            });
        }
        Ok(())
    }

    fn raise<E: de::Error>(&mut self, reason: Reason) -> E {
        self.fail = Some(reason);
        E::custom("scrim")
    }

    /// Decides a child: its states, winning rule, and whether it is dead
    /// (nothing below it can be emitted).
    pub(crate) fn child(
        &mut self,
        parent: &States,
        step: Step<'_>,
        keep: bool,
    ) -> (States, Option<RuleIdx>, bool) {
        let states = self.auto.step(&mut self.stack, parent, step);
        self.decide(states, keep)
    }

    /// [`child`](Self::child) by an object key, and whether the key is
    /// known to leave as it is (see [`Automaton::step_key`]).
    #[inline]
    fn child_key(
        &mut self,
        parent: &States,
        key: &str,
        keep: bool,
    ) -> (States, Option<RuleIdx>, bool, bool) {
        let (states, plain) = self.auto.step_key(&mut self.stack, parent, key);
        let (states, winner, dead) = self.decide(states, keep);
        (states, winner, dead, plain)
    }

    #[inline]
    fn decide(&self, states: States, keep: bool) -> (States, Option<RuleIdx>, bool) {
        let winner = self.auto.winner(&self.rules.rules, &self.stack, &states);
        let dead = match winner {
            Some(r) => matches!(self.rules.rules[r as usize].action, Action::Drop),
            None => states.is_empty() && !keep,
        };
        (states, winner, dead)
    }
}

fn scalar_text(v: Scalar<'_>) -> Cow<'_, str> {
    match v {
        Scalar::Str(s) => Cow::Borrowed(s),
        Scalar::U64(n) => Cow::Owned(n.to_string()),
        Scalar::I64(n) => Cow::Owned(n.to_string()),
        Scalar::F64(n) => Cow::Owned(n.to_string()),
        Scalar::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
        Scalar::Null => Cow::Borrowed("null"),
    }
}

fn literal(v: Scalar<'_>) -> Produced<'_> {
    match v {
        Scalar::Str(s) => Produced::Text(Cow::Borrowed(s)),
        Scalar::Null => Produced::Literal(Cow::Borrowed(b"null")),
        Scalar::Bool(true) => Produced::Literal(Cow::Borrowed(b"true")),
        Scalar::Bool(false) => Produced::Literal(Cow::Borrowed(b"false")),
        Scalar::U64(n) => Produced::Literal(Cow::Owned(n.to_string().into_bytes())),
        Scalar::I64(n) => Produced::Literal(Cow::Owned(n.to_string().into_bytes())),
        Scalar::F64(n) => Produced::Literal(Cow::Owned(
            serde_json::to_vec(&n).unwrap_or_else(|_| b"null".to_vec()),
        )),
    }
}

pub(crate) fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly these bytes; tokens, URLs and most text
    // have none, and checking is several times cheaper than its escaper.
    if needs_escape(s.as_bytes()) {
        serde_json::to_writer(out, s).expect("writing to a Vec cannot fail");
    } else {
        write_unescaped_json_str(out, s);
    }
}

/// An integer in decimal, as `to_string` writes it, without allocating.
fn write_number<T: serde::Serialize>(out: &mut Vec<u8>, n: T) {
    serde_json::to_writer(out, &n).expect("writing to a Vec cannot fail");
}

/// Whether `s` holds a byte serde_json escapes: `"`, `\` or a control
/// character. Sixteen bytes at a time without early exit, which vectorises.
fn needs_escape(s: &[u8]) -> bool {
    let special = |b: u8| (b < 0x20) | (b == b'"') | (b == b'\\');
    let mut chunks = s.chunks_exact(16);
    for chunk in &mut chunks {
        if chunk.iter().fold(false, |hit, &b| hit | special(b)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| special(b))
}

/// Writes a string that holds no `"`, `\` or control character, so needs no
/// escaping. Strings serde_json borrowed from the input are such strings:
/// they had no escape sequence there, and serde_json refuses raw control
/// characters in strings.
fn write_unescaped_json_str(out: &mut Vec<u8>, s: &str) {
    debug_assert!(!s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20));
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

// === impl Node ===

/// One node of the document being walked.
struct Node<'c, 'e> {
    cx: &'c mut Ctx<'e>,
    states: States,
    /// Inherited: an ancestor was kept whole (or the file default is keep).
    keep: bool,
    rule: Option<RuleIdx>,
    root: bool,
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    /// Whether anything was written.
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl Node<'_, '_> {
    /// `borrowed`: `v` is a string serde_json borrowed from the input.
    fn emit<E: de::Error>(self, v: Scalar<'_>, borrowed: bool) -> Result<bool, E> {
        let cx = self.cx;
        if self.rule.is_none() && !self.keep && !self.root {
            cx.note_unknown();
        }
        if let Scalar::Str(s) = v {
            if s.len() > cx.limits.max_string_len {
                return Err(cx.raise(Reason::StringTooLong {
                    limit: cx.limits.max_string_len,
                }));
            }
        }
        // Kept values, the bulk of most documents, are written straight from
        // the input: what `scalar` does for them without its `Cow`s and
        // number-to-string allocations.
        let kept = match cx.action(self.rule) {
            Some(Action::Keep) => true,
            None => self.keep,
            Some(_) => false,
        };
        if kept {
            match v {
                Scalar::Str(s) if borrowed => write_unescaped_json_str(&mut cx.out, s),
                Scalar::Str(s) => write_json_str(&mut cx.out, s),
                Scalar::Null => cx.out.extend_from_slice(b"null"),
                Scalar::Bool(true) => cx.out.extend_from_slice(b"true"),
                Scalar::Bool(false) => cx.out.extend_from_slice(b"false"),
                Scalar::U64(n) => write_number(&mut cx.out, n),
                Scalar::I64(n) => write_number(&mut cx.out, n),
                Scalar::F64(n) => {
                    if serde_json::to_writer(&mut cx.out, &n).is_err() {
                        cx.out.extend_from_slice(b"null");
                    }
                }
            }
            cx.stats.kept += 1;
            return Ok(true);
        }
        match cx.scalar(self.rule, self.keep, self.states, v) {
            // A value passed through unchanged (`scrub` found nothing).
            Ok(Some(Produced::Text(Cow::Borrowed(t))))
                if borrowed && matches!(v, Scalar::Str(s) if std::ptr::eq(s, t)) =>
            {
                write_unescaped_json_str(&mut cx.out, t);
                Ok(true)
            }
            Ok(Some(Produced::Text(t))) => {
                write_json_str(&mut cx.out, &t);
                if let Cow::Owned(buf) = t {
                    cx.scratch = buf;
                }
                Ok(true)
            }
            Ok(Some(Produced::Literal(l))) => {
                cx.out.extend_from_slice(&l);
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(r) => Err(cx.raise(r)),
        }
    }

    /// For a container: keep its children by default, and must it appear
    /// even if empty? `None` if the rule is a scalar action (type mismatch).
    fn container_mode(&self) -> Option<(bool, bool)> {
        match self.cx.action(self.rule) {
            Some(Action::Keep) => Some((true, true)),
            None | Some(Action::Decode(_)) => Some((self.keep, self.keep || self.root)),
            Some(Action::Replace { .. }) => None,
            Some(_) => None,
        }
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        self.emit(Scalar::Bool(v), false)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        self.emit(Scalar::I64(v), false)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        self.emit(Scalar::U64(v), false)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
        self.emit(Scalar::F64(v), false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        self.emit(Scalar::Null, false)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        self.emit(Scalar::Str(v), false)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<bool, E> {
        self.emit(Scalar::Str(v), true)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let Some((keep, must_emit)) = self.container_mode() else {
            return self.replace_container(|| {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(())
            });
        };
        let cx = self.cx;
        cx.enter().map_err(|r| cx.raise(r))?;
        let mark = cx.out.len();
        cx.out.push(b'{');
        let mut empty = true;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let base = cx.stack.len();
            let (states, rule, dead, plain_key) = cx.child_key(&self.states, &key, keep);
            let path = cx.unknown.as_deref_mut().map(|u| u.push_key(&key));
            if dead {
                map.next_value::<IgnoredAny>()?;
                cx.stats.dropped += 1;
                if rule.is_none() {
                    cx.note_unknown();
                }
            } else {
                let entry = cx.out.len();
                if !empty {
                    cx.out.push(b',');
                }
                let shown = if plain_key {
                    Cow::Borrowed(&*key)
                } else {
                    cx.scrub_key(&key)
                };
                match (&key, &shown) {
                    // Borrowed from the input, so free of escapes, and kept.
                    (Cow::Borrowed(_), Cow::Borrowed(k)) => {
                        write_unescaped_json_str(&mut cx.out, k)
                    }
                    _ => write_json_str(&mut cx.out, &shown),
                }
                cx.out.push(b':');
                let wrote = map.next_value_seed(Node {
                    cx: &mut *cx,
                    states,
                    keep,
                    rule,
                    root: false,
                })?;
                let bridged = cx.bridge.take();
                if wrote {
                    empty = false;
                    if let Some(prev) = bridged {
                        cx.out.push(b',');
                        write_json_str(&mut cx.out, &format!("{shown}{}", super::BRIDGE_SUFFIX));
                        cx.out.push(b':');
                        write_json_str(&mut cx.out, &prev);
                    }
                } else {
                    cx.out.truncate(entry);
                }
            }
            if let (Some(u), Some(m)) = (cx.unknown.as_deref_mut(), path) {
                u.pop(m);
            }
            cx.stack.truncate(base);
        }
        cx.depth -= 1;
        cx.out.push(b'}');
        if empty && !must_emit {
            cx.out.truncate(mark);
            return Ok(false);
        }
        Ok(true)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let Some((keep, must_emit)) = self.container_mode() else {
            return self.replace_container(|| {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(())
            });
        };
        let cx = self.cx;
        cx.enter().map_err(|r| cx.raise(r))?;
        let mark = cx.out.len();
        cx.out.push(b'[');
        let mut empty = true;
        let mut i = 0usize;
        loop {
            let base = cx.stack.len();
            let (states, rule, dead) = cx.child(&self.states, Step::Index(i), keep);
            let path = cx.unknown.as_deref_mut().map(|u| u.push_index());
            let more = if dead {
                let skipped = seq.next_element::<IgnoredAny>()?;
                if skipped.is_some() {
                    cx.stats.dropped += 1;
                    if rule.is_none() {
                        cx.note_unknown();
                    }
                }
                skipped.is_some()
            } else {
                let entry = cx.out.len();
                if !empty {
                    cx.out.push(b',');
                }
                match seq.next_element_seed(Node {
                    cx: &mut *cx,
                    states,
                    keep,
                    rule,
                    root: false,
                })? {
                    Some(true) => {
                        empty = false;
                        true
                    }
                    Some(false) => {
                        cx.out.truncate(entry);
                        true
                    }
                    None => {
                        cx.out.truncate(entry);
                        false
                    }
                }
            };
            if let (Some(u), Some(m)) = (cx.unknown.as_deref_mut(), path) {
                u.pop(m);
            }
            cx.stack.truncate(base);
            if !more {
                break;
            }
            i += 1;
        }
        cx.depth -= 1;
        cx.out.push(b']');
        if empty && !must_emit {
            cx.out.truncate(mark);
            return Ok(false);
        }
        Ok(true)
    }
}

impl Node<'_, '_> {
    /// A container where a scalar rule applies: `replace` writes its
    /// constant, every other scalar action drops the whole container, since
    /// a token of a structure would be meaningless and keeping it would leak.
    fn replace_container<E>(self, skip: impl FnOnce() -> Result<(), E>) -> Result<bool, E> {
        skip()?;
        match self.cx.action(self.rule) {
            Some(Action::Replace { json, .. }) => {
                self.cx.stats.replaced += 1;
                self.cx.out.extend_from_slice(json);
                Ok(true)
            }
            _ => {
                self.cx.stats.dropped += 1;
                Ok(false)
            }
        }
    }
}

/// Object keys, borrowed from the input when they contain no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for s in [
            "",
            "plain",
            "k1_4m0fmq5tb1kg8b6d0pc0kv3n4o@pseudonym.invalid",
            "quote \" here",
            "back\\slash",
            "tab\tnew\nline",
            "\u{1}\u{1f}",
            "\u{7f} del",
            "søren ødegård 日本",
            "https://x.io/p?a=1&b=%40",
            "a long string of thirty-two bytes\"",
            "a long string of thirty-two bytes!",
            "0123456789abcdef\n0123456789abcdef",
        ] {
            let mut ours = Vec::new();
            write_json_str(&mut ours, s);
            assert_eq!(ours, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }
}
