//! `application/x-www-form-urlencoded` bodies and query strings.
//!
//! Both are flat documents whose members are the fields, in order; repeated
//! names are separate members with the same path. A field rule with
//! `decode` opens embedded JSON (Snowplow's `ue_px`, `cx`) and the selector
//! continues inside it: `ue_px.data.data.email`.

use std::borrow::Cow;

use percent_encoding::percent_decode;

use super::error::{EngineError, Reason};
use super::json::{Ctx, Produced, Scalar};
use super::selector::Step;

/// Walks a form or query string, appending the encoded result to `out`.
pub(crate) fn walk(cx: &mut Ctx<'_>, input: &[u8], out: &mut String) -> Result<(), EngineError> {
    let root = cx.auto.start(&mut cx.stack);
    let keep = cx.rules.default_keep();
    let start = out.len();
    let mut ser = form_urlencoded::Serializer::for_suffix(std::mem::take(out), start);
    let mut offset = 0;
    for pair in input.split(|&b| b == b'&') {
        let at = offset;
        offset += pair.len() + 1;
        if pair.is_empty() {
            continue;
        }
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        let key = decode(k).map_err(|()| EngineError::at(at, Reason::InvalidUtf8))?;
        let value =
            decode(v).map_err(|()| EngineError::at(at + k.len() + 1, Reason::InvalidUtf8))?;
        if value.len() > cx.limits.max_string_len {
            return Err(EngineError::at(
                at,
                Reason::StringTooLong {
                    limit: cx.limits.max_string_len,
                },
            ));
        }
        let base = cx.stack.len();
        let (states, rule, dead) = cx.child(&root, Step::Key(&key), keep);
        let path = cx.unknown.as_deref_mut().map(|u| u.push_key(&key));
        if rule.is_none() && !keep {
            cx.note_unknown();
        }
        if dead {
            cx.stats.dropped += 1;
        } else {
            match cx.scalar(rule, keep, states, Scalar::Str(&value)) {
                Ok(Some(Produced::Text(t))) => {
                    let shown = cx.scrub_key(&key);
                    let mut found = 0;
                    let none = Default::default();
                    let guarded = crate::privacy::guard::text(
                        &t,
                        cx.seen.as_ref().unwrap_or(&none),
                        cx.guard,
                        cx.pseudo,
                        &mut found,
                    )
                    .map_err(|_| {
                        EngineError::at(
                            at,
                            Reason::Leak {
                                path: shown.to_string(),
                            },
                        )
                    })?;
                    cx.stats.leaks_scrubbed += u64::from(found);
                    ser.append_pair(&shown, &guarded);
                    if let Some(prev) = cx.bridge.take() {
                        ser.append_pair(&format!("{shown}{}", super::BRIDGE_SUFFIX), &prev);
                    }
                    drop(guarded);
                    // The buffer the value was produced in serves the next
                    // one (see `Ctx::scratch`), as in the JSON walk.
                    if let Cow::Owned(buf) = t {
                        cx.scratch = buf;
                    }
                }
                Ok(Some(Produced::Literal(l))) => {
                    let l = String::from_utf8_lossy(&l).into_owned();
                    ser.append_pair(&cx.scrub_key(&key), &l);
                }
                Ok(None) => {}
                Err(r) => return Err(EngineError::at(at, r)),
            }
        }
        if let (Some(u), Some(m)) = (cx.unknown.as_deref_mut(), path) {
            u.pop(m);
        }
        cx.stack.truncate(base);
    }
    cx.stack.clear();
    *out = ser.finish();
    Ok(())
}

/// `+` is a space, then percent-decoding; the result must be UTF-8.
fn decode(raw: &[u8]) -> Result<Cow<'_, str>, ()> {
    let plus_free: Cow<'_, [u8]> = if raw.contains(&b'+') {
        Cow::Owned(
            raw.iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(raw)
    };
    let decoded: Cow<'_, [u8]> = percent_decode(&plus_free).into();
    match decoded {
        Cow::Borrowed(_) => match plus_free {
            Cow::Borrowed(b) => std::str::from_utf8(b).map(Cow::Borrowed).map_err(|_| ()),
            Cow::Owned(b) => String::from_utf8(b).map(Cow::Owned).map_err(|_| ()),
        },
        Cow::Owned(b) => String::from_utf8(b).map(Cow::Owned).map_err(|_| ()),
    }
}
