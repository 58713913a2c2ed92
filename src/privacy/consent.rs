//! Consent signals, declared per purpose in the rule file:
//!
//! ```toml
//! [purpose.consent]
//! header = "x-consent-analytics"     # or cookie = "consent", or field = "context.consent.analytics"
//! granted = ["1", "true", "yes", "granted"]   # the default
//! ```
//!
//! A header or cookie decides for the whole request; a body field decides
//! per event (per JSON document or NDJSON line). `Sec-GPC: 1` (Global
//! Privacy Control) always counts as refusal.

use http::HeaderMap;
use serde_json::Value;

use crate::engine::selector::{Segment, Selector};

#[derive(Debug, Clone)]
pub enum Signal {
    Header(String),
    Cookie(String),
    Field(Selector),
}

#[derive(Debug, Clone)]
pub struct ConsentSpec {
    pub signal: Signal,
    /// Values that mean "granted", compared case-insensitively.
    pub granted: Vec<String>,
}

pub const DEFAULT_GRANTED: &[&str] = &["1", "true", "yes", "granted", "opt-in"];

/// What the request's headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Granted,
    Refused,
    /// The signal is a body field: decided per event.
    PerEvent,
}

impl ConsentSpec {
    fn is_granted(&self, v: &str) -> bool {
        let v = v.trim();
        self.granted.iter().any(|g| g.eq_ignore_ascii_case(v))
    }

    /// Decides from the request head. Absent counts as refused: consent is
    /// opt-in.
    pub fn decide(&self, headers: &HeaderMap) -> Decision {
        if gpc(headers) {
            return Decision::Refused;
        }
        let granted = match &self.signal {
            Signal::Header(name) => headers
                .get_all(name.as_str())
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| self.is_granted(v))),
            Signal::Cookie(name) => headers
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|c| c.trim().split_once('='))
                .any(|(k, v)| k == name && self.is_granted(v)),
            Signal::Field(_) => return Decision::PerEvent,
        };
        if granted {
            Decision::Granted
        } else {
            Decision::Refused
        }
    }

    /// For a field signal: does this JSON event grant consent?
    pub fn event_granted(&self, doc: &Value) -> bool {
        let Signal::Field(sel) = &self.signal else {
            return true;
        };
        let mut found = Vec::new();
        collect(doc, sel.segments(), &mut found);
        found.into_iter().any(|v| match v {
            Value::String(s) => self.is_granted(s),
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_u64() == Some(1),
            _ => false,
        })
    }

    /// For a field signal: does this JSON event, as bytes, grant consent?
    /// `true` for the other signals, which the request's headers decide.
    pub fn json_granted(&self, event: &[u8]) -> bool {
        if !matches!(self.signal, Signal::Field(_)) {
            return true;
        }
        serde_json::from_slice::<Value>(event).is_ok_and(|v| self.event_granted(&v))
    }

    /// For a field signal in a form or query string (flat names).
    pub fn form_granted(&self, pairs: &[(String, String)]) -> bool {
        let Signal::Field(sel) = &self.signal else {
            return true;
        };
        let Some(Segment::Key(name)) = sel.segments().first() else {
            return false;
        };
        pairs.iter().any(|(k, v)| k == name && self.is_granted(v))
    }
}

/// `Sec-GPC: 1`: the browser's Global Privacy Control refusal.
pub fn gpc(headers: &HeaderMap) -> bool {
    headers
        .get("sec-gpc")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "1")
}

fn collect<'v>(v: &'v Value, segs: &[Segment], out: &mut Vec<&'v Value>) {
    let Some((seg, rest)) = segs.split_first() else {
        out.push(v);
        return;
    };
    match seg {
        Segment::AnyDepth => {
            collect(v, rest, out);
            match v {
                Value::Object(m) => m.values().for_each(|c| collect(c, segs, out)),
                Value::Array(a) => a.iter().for_each(|c| collect(c, segs, out)),
                _ => {}
            }
        }
        Segment::Key(k) => {
            if let Some(c) = v.get(k.as_str()) {
                collect(c, rest, out);
            }
        }
        Segment::Index(i) => {
            if let Some(c) = v.get(*i) {
                collect(c, rest, out);
            }
        }
        Segment::AnyIndex => {
            if let Value::Array(a) = v {
                a.iter().for_each(|c| collect(c, rest, out));
            }
        }
        Segment::AnyChild => match v {
            Value::Object(m) => m.values().for_each(|c| collect(c, rest, out)),
            Value::Array(a) => a.iter().for_each(|c| collect(c, rest, out)),
            _ => {}
        },
    }
}
