//! The selector language: which nodes of a document a rule applies to.
//!
//! ```text
//! selector := segment ( '.' segment | '[' index ']' )*
//! segment  := name | '"' quoted '"' | '*' | '**'
//! index    := digits | '*'
//! ```
//!
//! - `name` matches an object member (or a form / query field) of that name;
//! - `*` matches any object member or array element, one level;
//! - `[*]` matches any array element, `[3]` the fourth one;
//! - `**` matches zero or more levels of anything.
//!
//! Examples: `batch[*].context.ip`, `**.email`, `properties."first name"`.
//!
//! Selectors print back in canonical form (`Display`) and parse from it again
//! unchanged, which `check` relies on when it reports conflicts.

use std::fmt;
use std::str::FromStr;

/// One step of a selector.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// An object member or form field with exactly this name.
    Key(String),
    /// The array element at this index.
    Index(usize),
    /// `*`: any object member or array element.
    AnyChild,
    /// `[*]`: any array element.
    AnyIndex,
    /// `**`: zero or more levels of anything.
    AnyDepth,
}

/// A parsed selector: a non-empty sequence of segments.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Selector {
    segments: Vec<Segment>,
}

/// Why a selector did not parse. `offset` is a byte offset into the selector.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector at byte {offset}: {reason}")]
pub struct SelectorError {
    pub offset: usize,
    pub reason: &'static str,
}

/// One step of a concrete document path, as the walkers see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

// === impl Selector ===

impl Selector {
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// How specific the selector is, for choosing between two rules that both
    /// match a node: literal steps count most, single wildcards next, and
    /// `**` lowers the score.
    pub fn specificity(&self) -> (usize, usize, std::cmp::Reverse<usize>) {
        let mut literal = 0;
        let mut single = 0;
        let mut deep = 0;
        for s in &self.segments {
            match s {
                Segment::Key(_) | Segment::Index(_) => literal += 1,
                Segment::AnyChild | Segment::AnyIndex => single += 1,
                Segment::AnyDepth => deep += 1,
            }
        }
        (literal, single, std::cmp::Reverse(deep))
    }

    /// True if some concrete path could match both selectors. Exact for
    /// selectors without `**`; with `**` it answers conservatively `false`,
    /// and the engine resolves such overlaps at run time (stricter wins).
    pub fn overlaps(&self, other: &Selector) -> bool {
        if self.segments.contains(&Segment::AnyDepth) || other.segments.contains(&Segment::AnyDepth)
        {
            return self == other;
        }
        self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|(a, b)| segments_overlap(a, b))
    }

    /// Does this selector match the given concrete path? Used by tests and
    /// diagnostics; the hot path uses the compiled automaton in `plan`.
    pub fn matches(&self, path: &[Step<'_>]) -> bool {
        fn go(segs: &[Segment], path: &[Step<'_>]) -> bool {
            match segs.split_first() {
                None => path.is_empty(),
                Some((Segment::AnyDepth, rest)) => {
                    (0..=path.len()).any(|skip| go(rest, &path[skip..]))
                }
                Some((seg, rest)) => match path.split_first() {
                    Some((step, tail)) => seg.accepts(*step) && go(rest, tail),
                    None => false,
                },
            }
        }
        go(&self.segments, path)
    }
}

fn segments_overlap(a: &Segment, b: &Segment) -> bool {
    use Segment::*;
    match (a, b) {
        (AnyChild, _) | (_, AnyChild) => true,
        (AnyIndex, Index(_)) | (Index(_), AnyIndex) | (AnyIndex, AnyIndex) => true,
        (Key(x), Key(y)) => x == y,
        (Index(x), Index(y)) => x == y,
        _ => false,
    }
}

impl Segment {
    /// Does this (non-`**`) segment accept one path step?
    pub fn accepts(&self, step: Step<'_>) -> bool {
        match (self, step) {
            (Segment::Key(k), Step::Key(s)) => k == s,
            (Segment::Index(i), Step::Index(j)) => *i == j,
            (Segment::AnyChild, _) => true,
            (Segment::AnyIndex, Step::Index(_)) => true,
            _ => false,
        }
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Parser { src: s, pos: 0 }.parse()
    }
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, reason: &'static str) -> SelectorError {
        SelectorError {
            offset: self.pos,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn parse(mut self) -> Result<Selector, SelectorError> {
        if self.src.is_empty() {
            return Err(self.err("selector is empty"));
        }
        let mut segments = Vec::new();
        // A selector may start with an index (`[*].email` for a top-level array).
        if self.peek() == Some(b'[') {
            segments.push(self.index()?);
        } else {
            segments.push(self.segment()?);
        }
        while let Some(c) = self.peek() {
            match c {
                b'.' => {
                    self.pos += 1;
                    segments.push(self.segment()?);
                }
                b'[' => segments.push(self.index()?),
                _ => return Err(self.err("expected `.` or `[` between segments")),
            }
        }
        // `**.**` is the same as `**`; keep one so specificity stays honest.
        segments.dedup_by(|a, b| *a == Segment::AnyDepth && *b == Segment::AnyDepth);
        Ok(Selector { segments })
    }

    fn segment(&mut self) -> Result<Segment, SelectorError> {
        let rest = &self.src[self.pos..];
        if rest.starts_with("**") {
            self.pos += 2;
            return Ok(Segment::AnyDepth);
        }
        if rest.starts_with('*') {
            self.pos += 1;
            return Ok(Segment::AnyChild);
        }
        if rest.starts_with('"') {
            return self.quoted();
        }
        let len = rest.find(['.', '[', ']', '*', '"']).unwrap_or(rest.len());
        if len == 0 {
            return Err(self.err("expected a field name, `*` or `**`"));
        }
        let name = &rest[..len];
        if name.chars().any(char::is_whitespace) {
            return Err(self.err("field names with spaces must be quoted: \"first name\""));
        }
        self.pos += len;
        Ok(Segment::Key(name.to_owned()))
    }

    fn quoted(&mut self) -> Result<Segment, SelectorError> {
        let start = self.pos;
        self.pos += 1;
        let mut name = String::new();
        loop {
            let rest = &self.src[self.pos..];
            let Some(c) = rest.chars().next() else {
                self.pos = start;
                return Err(self.err("unterminated quoted name"));
            };
            self.pos += c.len_utf8();
            match c {
                '"' => break,
                '\\' => {
                    let Some(e) = self.src[self.pos..].chars().next() else {
                        return Err(self.err("dangling `\\` in quoted name"));
                    };
                    if e != '"' && e != '\\' {
                        return Err(self.err("only `\\\"` and `\\\\` are escapes in quoted names"));
                    }
                    self.pos += e.len_utf8();
                    name.push(e);
                }
                c => name.push(c),
            }
        }
        Ok(Segment::Key(name))
    }

    fn index(&mut self) -> Result<Segment, SelectorError> {
        debug_assert_eq!(self.peek(), Some(b'['));
        self.pos += 1;
        let rest = &self.src[self.pos..];
        let Some(end) = rest.find(']') else {
            return Err(self.err("unterminated `[`"));
        };
        let inner = &rest[..end];
        let seg = if inner == "*" {
            Segment::AnyIndex
        } else if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) {
            Segment::Index(
                inner
                    .parse()
                    .map_err(|_| self.err("array index is too large"))?,
            )
        } else {
            return Err(self.err("expected `[*]` or `[N]` with a number N"));
        };
        self.pos += end + 1;
        Ok(seg)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.segments.iter().enumerate() {
            let dot = if i == 0 { "" } else { "." };
            match seg {
                Segment::Key(k) if is_plain(k) => write!(f, "{dot}{k}")?,
                Segment::Key(k) => {
                    write!(f, "{dot}\"")?;
                    for c in k.chars() {
                        if c == '"' || c == '\\' {
                            f.write_str("\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                    f.write_str("\"")?;
                }
                Segment::Index(n) => write!(f, "[{n}]")?,
                Segment::AnyIndex => f.write_str("[*]")?,
                Segment::AnyChild => write!(f, "{dot}*")?,
                Segment::AnyDepth => write!(f, "{dot}**")?,
            }
        }
        Ok(())
    }
}

pub(crate) fn is_plain(k: &str) -> bool {
    !k.is_empty()
        && !k
            .chars()
            .any(|c| matches!(c, '.' | '[' | ']' | '*' | '"') || c.is_whitespace())
}

impl fmt::Display for Step<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Key(k) => write!(f, ".{k}"),
            Step::Index(i) => write!(f, "[{i}]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for s in [
            "batch[*].context.ip",
            "**.email",
            "a.*.b",
            "[*].user",
            "properties.\"first name\"",
            "x[3].y",
            "\"a.b\".c",
            "\"q\\\"x\"",
        ] {
            let sel: Selector = s.parse().unwrap();
            assert_eq!(sel.to_string(), s);
            assert_eq!(sel.to_string().parse::<Selector>().unwrap(), sel);
        }
    }

    #[test]
    fn errors_carry_offsets() {
        let e = "a..b".parse::<Selector>().unwrap_err();
        assert_eq!(e.offset, 2);
        let e = "a[x]".parse::<Selector>().unwrap_err();
        assert_eq!(e.offset, 2);
        assert!("".parse::<Selector>().is_err());
        assert!("a b".parse::<Selector>().is_err());
        assert!("\"abc".parse::<Selector>().is_err());
        assert!("a]".parse::<Selector>().is_err());
    }

    #[test]
    fn matching() {
        let s: Selector = "**.email".parse().unwrap();
        assert!(s.matches(&[Step::Key("email")]));
        assert!(s.matches(&[Step::Key("a"), Step::Index(2), Step::Key("email")]));
        assert!(!s.matches(&[Step::Key("emails")]));
        let s: Selector = "batch[*].ip".parse().unwrap();
        assert!(s.matches(&[Step::Key("batch"), Step::Index(0), Step::Key("ip")]));
        assert!(!s.matches(&[Step::Key("batch"), Step::Key("x"), Step::Key("ip")]));
    }

    #[test]
    fn overlap() {
        let a: Selector = "a.*.c".parse().unwrap();
        let b: Selector = "a.b.c".parse().unwrap();
        let c: Selector = "a.b.d".parse().unwrap();
        assert!(a.overlaps(&b));
        assert!(!b.overlaps(&c));
    }
}
