//! Engine errors: where (a byte offset, and a line for NDJSON) and why.
//! Never any input bytes: an error message can end up in a log or a response,
//! and the input is personal data.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct EngineError {
    /// Byte offset into the document (into the line, for NDJSON).
    pub offset: usize,
    /// 1-based line number, for NDJSON.
    pub line: Option<u64>,
    pub reason: Reason,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The JSON syntax error, as a fixed description from the parser.
    Malformed(String),
    /// A Sentry envelope whose framing is broken (header line, item header,
    /// item length); a fixed description.
    Envelope(&'static str),
    TooDeep {
        limit: usize,
    },
    StringTooLong {
        limit: usize,
    },
    LineTooLong {
        limit: usize,
    },
    InvalidUtf8,
    /// Not the input's fault (the system random generator failed).
    Internal,
    /// The leak guard (refuse mode) found personal data at this path after
    /// the rules ran.
    Leak {
        path: String,
    },
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}, ")?;
        }
        write!(f, "byte {}: {}", self.offset, self.reason)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Malformed(m) => write!(f, "malformed JSON: {m}"),
            Reason::Envelope(m) => write!(f, "malformed envelope: {m}"),
            Reason::TooDeep { limit } => write!(f, "nesting deeper than {limit} levels"),
            Reason::StringTooLong { limit } => write!(f, "a string is longer than {limit} bytes"),
            Reason::LineTooLong { limit } => write!(f, "a line is longer than {limit} bytes"),
            Reason::InvalidUtf8 => f.write_str("invalid UTF-8"),
            Reason::Internal => f.write_str("internal error"),
            Reason::Leak { path } => write!(f, "personal data left after the rules at `{path}`"),
        }
    }
}

impl Reason {
    /// A short stable code, for metrics labels and HTTP error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Malformed(_) => "malformed",
            Reason::Envelope(_) => "malformed_envelope",
            Reason::TooDeep { .. } => "too_deep",
            Reason::StringTooLong { .. } => "string_too_long",
            Reason::LineTooLong { .. } => "line_too_long",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::Internal => "internal",
            Reason::Leak { .. } => "leak_guard",
        }
    }
}

impl EngineError {
    pub(crate) fn at(offset: usize, reason: Reason) -> Self {
        Self {
            offset,
            line: None,
            reason,
        }
    }

    /// Converts a serde_json error. Only syntax and end-of-input messages
    /// are kept: they are fixed strings from the parser. Anything else is
    /// reported without its text, since a data error could quote input.
    pub(crate) fn from_json(e: &serde_json::Error, input: &[u8], pending: Option<Reason>) -> Self {
        let offset = offset_of(input, e.line(), e.column());
        if let Some(reason) = pending {
            return Self::at(offset, reason);
        }
        use serde_json::error::Category;
        let reason = match e.classify() {
            Category::Syntax | Category::Eof => {
                let msg = e.to_string();
                let msg = match msg.rfind(" at line ") {
                    Some(i) => msg[..i].to_owned(),
                    None => msg,
                };
                if msg.contains("invalid unicode code point") {
                    Reason::InvalidUtf8
                } else {
                    Reason::Malformed(msg)
                }
            }
            Category::Io | Category::Data => Reason::Malformed("invalid value".into()),
        };
        Self::at(offset, reason)
    }
}

/// serde_json reports 1-based line and column (bytes); turn them into a byte
/// offset so that errors point the same way for every format.
fn offset_of(input: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match input[start..].iter().position(|&b| b == b'\n') {
            Some(p) => start += p + 1,
            None => break,
        }
    }
    (start + column.saturating_sub(1)).min(input.len())
}
