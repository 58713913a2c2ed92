//! Sentry envelopes: what the Sentry SDKs send to `/api/{project}/envelope/`
//! (`Content-Type: application/x-sentry-envelope`).
//!
//! ```text
//! {"event_id":"9ec7…","dsn":"https://public@sentry.example/42"}\n      envelope header
//! {"type":"event","length":41,"content_type":"application/json"}\n      item header
//! {"message":"hello","user":{"email":"…"}}\n                            payload
//! {"type":"attachment","length":7,"filename":"a.txt"}\n                 item header
//! Hello\r\n\n                                                           payload (7 bytes)
//! ```
//!
//! A payload is `length` bytes when its header says so (it may then contain
//! newlines), else the rest of the line. A newline (or the end of the body)
//! follows every payload.
//!
//! **Selectors** name the item type as their first step: `event.user.email`,
//! `transaction.request.url`, `session.attrs.ip_address`,
//! `sessions.aggregates[*].did`. The envelope header is [`HEADER`]:
//! `envelope.dsn`, `envelope.trace.public_key`.
//!
//! **The store endpoint** (`/api/{project}/store/`) takes one event as a
//! JSON object: [`Format::SentryEvent`](super::Format::SentryEvent) walks it
//! as an envelope's `event` item, so one rule file serves both endpoints.
//!
//! **Allow-list, item by item**: an item whose type no rule names is dropped
//! whole, its header with it. A JSON item is walked like a JSON document
//! (the one-pass walk of `json.rs`, started at the states its type leads to).
//! Opaque items (attachments, minidumps, replay recordings: see
//! [`OPAQUE_TYPES`], or any item whose `content_type` is not JSON) are never
//! opened: they pass unchanged only where a rule keeps their type
//! (`field = "attachment"`, `action = "keep"`), else they are dropped.
//!
//! **Item headers** are rebuilt: `type`, a recomputed `length`, and of the
//! rest only `content_type`, `filename` (scrubbed like free text) and
//! `attachment_type`. Everything else (`item_count`, custom headers) goes.
//!
//! The output is a valid envelope: a header line (at least `{}`), then the
//! kept items, each `length`-framed and followed by a newline. A broken
//! envelope is an [`EngineError`] with the byte offset of the problem.

use super::error::{EngineError, Reason};
use super::json::{write_json_str, Ctx};
use super::plan::Action;
use super::selector::Step;
use super::{Engine, Stats, UnknownFields};

/// The first selector step that names the envelope header.
pub const HEADER: &str = "envelope";

/// The item type of an error event; the store endpoint's body is one.
pub const EVENT: &str = "event";

/// Item types whose payload is not JSON. Never opened, never partially kept.
pub const OPAQUE_TYPES: &[&str] = &[
    "attachment",
    "form_data",
    "replay_recording",
    "replay_video",
    "statsd",
    "unreal_report",
];

impl Engine {
    /// Transforms one Sentry envelope, appending to `out`, with an optional
    /// unknown-field collector (paths start with the item type, as the
    /// selectors do). On error `out` may hold a partial result and must be
    /// discarded.
    pub(crate) fn envelope_with(
        &self,
        input: &[u8],
        out: &mut Vec<u8>,
        unknown: Option<&mut UnknownFields>,
    ) -> Result<Stats, EngineError> {
        let start = out.len();
        let mut cx = self.ctx(false, std::mem::take(out), unknown);
        let res = walk(&mut cx, input);
        *out = std::mem::take(&mut cx.out);
        let consented = res?;
        // One envelope is one event: a subject's objection, or an event
        // without consent, withholds it all. The leak guard ran item by item.
        self.finish_event(cx.objected, || consented, None, out, start, cx.stats)
    }

    /// Transforms one Sentry event as the store endpoint takes it (a JSON
    /// object), by the same selectors as an envelope's [`EVENT`] item.
    pub(crate) fn sentry_event_with(
        &self,
        input: &[u8],
        out: &mut Vec<u8>,
        unknown: Option<&mut UnknownFields>,
    ) -> Result<Stats, EngineError> {
        let start = out.len();
        let mut cx = self.ctx(false, std::mem::take(out), unknown);
        let keep = cx.rules.default_keep;
        let root = cx.auto.start(&mut cx.stack);
        let (states, rule, _) = cx.child(&root, Step::Key(EVENT), keep);
        let mark = cx.unknown.as_deref_mut().map(|u| u.push_key(EVENT));
        let res = cx.document_at(input, states, rule);
        if let (Some(u), Some(m)) = (cx.unknown.as_deref_mut(), mark) {
            u.pop(m);
        }
        cx.stack.clear();
        // An event nothing may keep is still an object.
        if let Ok(false) = res {
            cx.out.extend_from_slice(b"{}");
        }
        *out = std::mem::take(&mut cx.out);
        res?;
        self.finish_event(
            cx.objected,
            || super::event_consents(&self.rules, input),
            cx.seen.as_ref(),
            out,
            start,
            cx.stats,
        )
    }
}

/// An item header, as far as scrim reads it.
struct ItemHeader {
    ty: String,
    length: Option<usize>,
    content_type: Option<String>,
    filename: Option<String>,
    attachment_type: Option<String>,
}

/// Walks an envelope into `cx.out`; `Ok(false)` when an event item (an
/// `event` or a `transaction`) does not grant a consent read from a field.
fn walk(cx: &mut Ctx<'_>, input: &[u8]) -> Result<bool, EngineError> {
    let keep = cx.rules.default_keep;

    // --- the envelope header ------------------------------------------------
    let (line, mut pos) = line_at(input, 0);
    let Some(first) = line.iter().position(|b| !b.is_ascii_whitespace()) else {
        return Err(malformed(0, "the envelope header is missing"));
    };
    if line[first] != b'{' {
        return Err(malformed(first, "the envelope header is not a JSON object"));
    }
    let root = cx.auto.start(&mut cx.stack);
    let (states, rule, _) = cx.child(&root, Step::Key(HEADER), keep);
    let mark = cx.unknown.as_deref_mut().map(|u| u.push_key(HEADER));
    if !cx.document_at(line, states, rule)? {
        cx.out.extend_from_slice(b"{}");
    }
    if let (Some(u), Some(m)) = (cx.unknown.as_deref_mut(), mark) {
        u.pop(m);
    }
    cx.stack.clear();
    cx.out.push(b'\n');

    // --- the items ----------------------------------------------------------
    let mut payload_out = Vec::new();
    let mut consented = true;
    loop {
        while pos < input.len() && input[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if pos >= input.len() {
            return Ok(consented);
        }
        let head_at = pos;
        let (line, after_head) = line_at(input, pos);
        let head = item_header(line, head_at)?;
        let (payload_at, payload, next) = match head.length {
            Some(n) => {
                let end = after_head
                    .checked_add(n)
                    .filter(|&e| e <= input.len())
                    .ok_or_else(|| {
                        malformed(
                            head_at,
                            "an item's length runs past the end of the envelope",
                        )
                    })?;
                let next = match &input[end..] {
                    [] => end,
                    [b'\n', ..] => end + 1,
                    [b'\r', b'\n', ..] => end + 2,
                    _ => {
                        return Err(malformed(
                            end,
                            "an item's payload is longer than its length",
                        ))
                    }
                };
                (after_head, &input[after_head..end], next)
            }
            None => {
                let (p, next) = line_at(input, after_head);
                (after_head, p, next)
            }
        };
        pos = next;
        if matches!(head.ty.as_str(), EVENT | "transaction")
            && !super::event_consents(cx.rules, payload)
        {
            consented = false;
        }
        item(cx, &head, payload_at, payload, keep, &mut payload_out)?;
    }
}

/// Decides one item and writes it (header line, payload, newline) or
/// drops it whole.
fn item(
    cx: &mut Ctx<'_>,
    head: &ItemHeader,
    payload_at: usize,
    payload: &[u8],
    keep: bool,
    scratch: &mut Vec<u8>,
) -> Result<(), EngineError> {
    let root = cx.auto.start(&mut cx.stack);
    let (states, rule, dead) = cx.child(&root, Step::Key(&head.ty), keep);
    let mark = cx.unknown.as_deref_mut().map(|u| u.push_key(&head.ty));
    let res = decide(
        cx, head, payload_at, payload, keep, states, rule, dead, scratch,
    );
    if let (Some(u), Some(m)) = (cx.unknown.as_deref_mut(), mark) {
        u.pop(m);
    }
    cx.stack.clear();
    let kept: &[u8] = match res? {
        Some(Payload::Rewritten) => scratch,
        Some(Payload::AsIs) => {
            cx.stats.kept += 1;
            payload
        }
        None => {
            cx.stats.dropped += 1;
            return Ok(());
        }
    };
    cx.out.extend_from_slice(b"{\"type\":");
    write_json_str(&mut cx.out, &head.ty);
    cx.out.extend_from_slice(b",\"length\":");
    cx.out.extend_from_slice(kept.len().to_string().as_bytes());
    if let Some(ct) = &head.content_type {
        cx.out.extend_from_slice(b",\"content_type\":");
        write_json_str(&mut cx.out, ct);
    }
    if let Some(name) = &head.filename {
        let shown = cx.scrub_key(name);
        cx.out.extend_from_slice(b",\"filename\":");
        write_json_str(&mut cx.out, &shown);
    }
    if let Some(at) = &head.attachment_type {
        cx.out.extend_from_slice(b",\"attachment_type\":");
        write_json_str(&mut cx.out, at);
    }
    cx.out.extend_from_slice(b"}\n");
    cx.out.extend_from_slice(kept);
    cx.out.push(b'\n');
    scratch.clear();
    Ok(())
}

enum Payload {
    /// The walk's output, in the scratch buffer.
    Rewritten,
    /// The input bytes, unchanged (a kept opaque item).
    AsIs,
}

#[allow(clippy::too_many_arguments)]
fn decide(
    cx: &mut Ctx<'_>,
    head: &ItemHeader,
    payload_at: usize,
    payload: &[u8],
    keep: bool,
    states: super::plan::States,
    rule: Option<super::plan::RuleIdx>,
    dead: bool,
    scratch: &mut Vec<u8>,
) -> Result<Option<Payload>, EngineError> {
    let action = rule.map(|r| &cx.rules.rules[r as usize].action);
    if rule.is_none() && states.is_empty() && !keep {
        cx.note_unknown();
    }
    // The header's name is not an item type: such an item never passes.
    if head.ty == HEADER {
        return Ok(None);
    }
    if is_opaque(&head.ty, head.content_type.as_deref()) {
        let kept = match action {
            Some(Action::Keep) => true,
            None => keep,
            Some(_) => false,
        };
        return Ok(kept.then_some(Payload::AsIs));
    }
    if dead {
        return Ok(None);
    }
    if payload.iter().all(u8::is_ascii_whitespace) {
        scratch.clear();
        return Ok(Some(Payload::Rewritten));
    }
    let saved = std::mem::replace(&mut cx.out, std::mem::take(scratch));
    cx.out.clear();
    let res = cx.document_at(payload, states, rule);
    *scratch = std::mem::replace(&mut cx.out, saved);
    match res {
        Ok(true) => {
            // The leak guard per item, before the item's length is written.
            if let Some(seen) = &cx.seen {
                let mut found = 0;
                crate::privacy::guard::json(scratch, 0, seen, cx.guard, cx.pseudo, &mut found)
                    .map_err(|leak| {
                        EngineError::at(
                            payload_at,
                            Reason::Leak {
                                path: format!("{}.{}", head.ty, leak.path),
                            },
                        )
                    })?;
                cx.stats.leaks_scrubbed += u64::from(found);
            }
            Ok(Some(Payload::Rewritten))
        }
        Ok(false) => Ok(None),
        Err(mut e) => {
            e.offset += payload_at;
            Err(e)
        }
    }
}

/// Is this item's payload something other than JSON?
pub fn is_opaque(ty: &str, content_type: Option<&str>) -> bool {
    if OPAQUE_TYPES.contains(&ty) {
        return true;
    }
    let Some(ct) = content_type else {
        return false;
    };
    let ct = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    !(ct == "application/json"
        || ct == "text/json"
        || (ct.starts_with("application/") && ct.ends_with("+json")))
}

/// Reads an item header line; `at` is its offset in the envelope.
fn item_header(line: &[u8], at: usize) -> Result<ItemHeader, EngineError> {
    let value: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
        let mut err = EngineError::from_json(&e, line, None);
        err.offset += at;
        err
    })?;
    let serde_json::Value::Object(mut map) = value else {
        return Err(malformed(at, "an item header is not a JSON object"));
    };
    let text = |v: Option<serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => Some(s),
        _ => None,
    };
    let Some(ty) = text(map.remove("type")) else {
        return Err(malformed(at, "an item header has no `type`"));
    };
    let length = match map.remove("length") {
        None | Some(serde_json::Value::Null) => None,
        Some(n) => Some(
            n.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| malformed(at, "an item's `length` is not a byte count"))?,
        ),
    };
    Ok(ItemHeader {
        ty,
        length,
        content_type: text(map.remove("content_type")),
        filename: text(map.remove("filename")),
        attachment_type: text(map.remove("attachment_type")),
    })
}

/// The line starting at `from` (without its `\n`) and the offset after it.
fn line_at(input: &[u8], from: usize) -> (&[u8], usize) {
    let rest = &input[from.min(input.len())..];
    match rest.iter().position(|&b| b == b'\n') {
        Some(nl) => (&rest[..nl], from + nl + 1),
        None => (rest, input.len()),
    }
}

fn malformed(offset: usize, what: &'static str) -> EngineError {
    EngineError::at(offset, Reason::Envelope(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_by_type_or_content_type() {
        assert!(is_opaque("attachment", Some("application/json")));
        assert!(is_opaque("attachment", None));
        assert!(is_opaque("custom", Some("text/plain")));
        assert!(!is_opaque("event", Some("application/json")));
        assert!(!is_opaque("event", None));
        assert!(!is_opaque(
            "log",
            Some("application/vnd.sentry.items.log+json; charset=utf-8")
        ));
    }

    #[test]
    fn lines() {
        assert_eq!(line_at(b"ab\ncd", 0), (&b"ab"[..], 3));
        assert_eq!(line_at(b"ab\ncd", 3), (&b"cd"[..], 5));
        assert_eq!(line_at(b"ab\n", 3), (&b""[..], 3));
    }
}
