//! The unknown-field report: the names, never the values, of the body
//! members, query parameters, headers and cookies that arrived and were
//! dropped because no rule named them (not those an explicit `drop` rule
//! removed). It tells the privacy officer what the platform sends that the
//! records of processing do not cover, so the rules can follow the traffic.
//!
//! Opt-in: a walk given an [`UnknownFields`] keeps the path of the node it
//! is on and records each dropped unnamed member; a walk without one does
//! no extra work and allocates nothing for it.
//!
//! Names are shown as selectors (`batch[*].context.foo`, `props."a b"`),
//! array indices normalised to `[*]`, and a key that is itself personal (a
//! map keyed by email or IP) or longer than [`MAX_KEY_LEN`] characters is
//! replaced by a placeholder (`<email>`, `<ip>`, `<phone>`, `<url>`,
//! `<long>`). At most [`MAX_PATHS`] distinct names are kept; the rest are
//! counted as overflow.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use super::plan::Target;
use super::{scrub, selector};

/// Distinct names kept per collector and per route.
pub const MAX_PATHS: usize = 256;
/// Longer keys are shown as `<long>`.
pub const MAX_KEY_LEN: usize = 64;

/// Unnamed fields dropped by one or more transforms, with the path of the
/// node the walk is on.
#[derive(Debug, Default)]
pub struct UnknownFields {
    /// Raw key text of the current path's key segments, back to back.
    buf: String,
    segs: Vec<Seg>,
    counts: Counts,
    /// What the walk in progress reads (body or query).
    target: Target,
    /// The name being recorded, reused so a name seen before costs no
    /// allocation.
    scratch: String,
}

#[derive(Debug, Clone, Copy)]
enum Seg {
    /// `buf[start..end]`.
    Key {
        start: usize,
        end: usize,
    },
    Index,
}

/// Where the path was before a push; `pop` restores it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    segs: usize,
    buf: usize,
}

impl UnknownFields {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets what the next walk reads and starts its path at the root.
    pub(crate) fn begin(&mut self, target: Target) {
        self.target = target;
        self.buf.clear();
        self.segs.clear();
    }

    pub(crate) fn push_key(&mut self, key: &str) -> Mark {
        let mark = self.mark();
        let start = self.buf.len();
        self.buf.push_str(key);
        self.segs.push(Seg::Key {
            start,
            end: self.buf.len(),
        });
        mark
    }

    pub(crate) fn push_index(&mut self) -> Mark {
        let mark = self.mark();
        self.segs.push(Seg::Index);
        mark
    }

    pub(crate) fn pop(&mut self, m: Mark) {
        self.segs.truncate(m.segs);
        self.buf.truncate(m.buf);
    }

    fn mark(&self) -> Mark {
        Mark {
            segs: self.segs.len(),
            buf: self.buf.len(),
        }
    }

    /// Records the node the walk is on (nothing at the document root).
    pub(crate) fn record_here(&mut self) {
        if self.segs.is_empty() {
            return;
        }
        let mut name = std::mem::take(&mut self.scratch);
        name.clear();
        for (i, seg) in self.segs.iter().enumerate() {
            match *seg {
                Seg::Index => name.push_str("[*]"),
                Seg::Key { start, end } => {
                    if i > 0 {
                        name.push('.');
                    }
                    push_key(&mut name, &self.buf[start..end]);
                }
            }
        }
        self.add(self.target, &name);
        self.scratch = name;
    }

    /// Records a header or cookie name (or a top-level field) dropped
    /// because no rule named it.
    pub fn record(&mut self, target: Target, name: &str) {
        self.add(target, &shown_key(name));
    }

    fn add(&mut self, target: Target, name: &str) {
        self.counts.add(target, name, 1);
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Occurrences that did not fit under [`MAX_PATHS`] distinct names.
    pub fn overflow(&self) -> u64 {
        self.counts.overflow
    }

    /// `(target, name, count)`, sorted by target then name.
    pub fn fields(&self) -> Vec<(Target, &str, u64)> {
        let mut v: Vec<_> = self.counts.iter().collect();
        v.sort();
        v
    }

    /// Forgets what was recorded. The names stay, counted zero, so the
    /// next request that drops the same fields (the usual case: a platform
    /// sends the same shape every time) allocates nothing; past
    /// [`MAX_PATHS`] kept names they go too.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.segs.clear();
        self.counts.clear_keeping_names();
    }

    /// A cleared collector from this thread's pool, given back (cleared)
    /// when dropped: one per request would otherwise allocate its maps and
    /// every name again.
    pub fn lend() -> Lent {
        let u = POOL
            .with(|p| p.try_borrow_mut().ok().and_then(|mut p| p.pop()))
            .unwrap_or_default();
        Lent(Some(u))
    }
}

/// Collectors kept per thread for [`UnknownFields::lend`].
const POOL_SIZE: usize = 16;

thread_local! {
    static POOL: std::cell::RefCell<Vec<UnknownFields>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// An [`UnknownFields`] lent by [`UnknownFields::lend`].
#[derive(Debug)]
pub struct Lent(Option<UnknownFields>);

impl std::ops::Deref for Lent {
    type Target = UnknownFields;
    fn deref(&self) -> &UnknownFields {
        self.0.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Lent {
    fn deref_mut(&mut self) -> &mut UnknownFields {
        self.0.as_mut().expect("present until dropped")
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let Some(mut u) = self.0.take() else {
            return;
        };
        u.clear();
        // `try_with`: a thread being torn down has no pool any more.
        let _ = POOL.try_with(|p| {
            if let Ok(mut p) = p.try_borrow_mut() {
                if p.len() < POOL_SIZE {
                    p.push(u);
                }
            }
        });
    }
}

/// Every target, in report order (the index of each is `Target as usize`).
const ALL_TARGETS: [Target; 4] = [Target::Body, Target::Query, Target::Header, Target::Cookie];

/// Per target (`Target as usize`), name -> count, at most [`MAX_PATHS`]
/// names counted; what comes past them is overflow. FNV: names are short
/// and bounded in number, so flooding is bounded. A zero count is a name
/// kept from before [`Counts::clear_keeping_names`], not counted.
#[derive(Debug, Default)]
struct Counts {
    counts: [HashMap<String, u64, Fnv>; 4],
    distinct: usize,
    overflow: u64,
}

impl Counts {
    fn add(&mut self, target: Target, name: &str, n: u64) {
        let slot = &mut self.counts[target as usize];
        // Looked up by `&str`: a name seen before costs no allocation.
        if let Some(c) = slot.get_mut(name) {
            if *c == 0 {
                if self.distinct >= MAX_PATHS {
                    self.overflow = self.overflow.saturating_add(n);
                    return;
                }
                self.distinct += 1;
            }
            *c = c.saturating_add(n);
        } else if self.distinct < MAX_PATHS {
            slot.insert(name.to_owned(), n);
            self.distinct += 1;
        } else {
            self.overflow = self.overflow.saturating_add(n);
        }
    }

    fn is_empty(&self) -> bool {
        self.distinct == 0 && self.overflow == 0
    }

    /// `(target, name, count)` of the names counted, in no order.
    fn iter(&self) -> impl Iterator<Item = (Target, &str, u64)> {
        ALL_TARGETS.into_iter().flat_map(move |t| {
            self.counts[t as usize]
                .iter()
                .filter(|(_, c)| **c > 0)
                .map(move |(n, c)| (t, n.as_str(), *c))
        })
    }

    /// Zeroes the counts, keeping the names (so counting them again
    /// allocates nothing) unless there are more than [`MAX_PATHS`].
    fn clear_keeping_names(&mut self) {
        let kept: usize = self.counts.iter().map(HashMap::len).sum();
        for c in &mut self.counts {
            if kept > MAX_PATHS {
                c.clear();
            } else {
                c.values_mut().for_each(|n| *n = 0);
            }
        }
        self.distinct = 0;
        self.overflow = 0;
    }
}

/// A key as it may appear in the report: a placeholder when it is personal
/// or too long, quoted like a selector when it is not a plain name.
pub fn shown_key(key: &str) -> Cow<'_, str> {
    if is_plain_name(key) {
        return Cow::Borrowed(key);
    }
    if key.chars().count() > MAX_KEY_LEN {
        return Cow::Borrowed("<long>");
    }
    if let Some(kind) = scrub::personal_kind(key) {
        return Cow::Owned(format!("<{kind}>"));
    }
    if selector::is_plain(key) {
        return Cow::Borrowed(key);
    }
    let mut s = String::with_capacity(key.len() + 2);
    s.push('"');
    for c in key.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    Cow::Owned(s)
}

/// The common case, decided in one pass without a branch per byte: a
/// short ASCII name of letters, digits, `_`, `-`, `$` with too few digits to
/// be a phone number.
fn is_plain_name(key: &str) -> bool {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return false;
    }
    let (mut plain, mut digits) = (PLAIN_NAME, 0u32);
    for &b in key.as_bytes() {
        let class = KEY_BYTE[usize::from(b)];
        plain &= class;
        digits += u32::from(class >> 1);
    }
    plain == PLAIN_NAME && digits < 8
}

/// [`KEY_BYTE`]'s bit for a byte a plain name may hold; its next bit marks
/// a digit.
const PLAIN_NAME: u8 = 1;

/// Per byte: [`PLAIN_NAME`] for ASCII letters, `_`, `-` and `$`, that plus
/// 2 for digits, 0 for the rest.
static KEY_BYTE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c.is_ascii_digit() {
            PLAIN_NAME | 2
        } else if c.is_ascii_alphabetic() || matches!(c, b'_' | b'-' | b'$') {
            PLAIN_NAME
        } else {
            0
        };
        b += 1;
    }
    t
};

fn push_key(out: &mut String, key: &str) {
    out.push_str(&shown_key(key));
}

/// Names are probed and inserted at most [`MAX_PATHS`] times per tally, so
/// the unkeyed hash cannot be flooded.
type Fnv = std::hash::BuildHasherDefault<super::plan::Fnv1a>;

const _: () = assert!(
    Target::Cookie as usize == 3,
    "UnknownFields::counts has 4 slots"
);

/// Unknown fields of one route, accumulated over requests and kept across
/// key rotations and reloads. One lock per request that had any.
#[derive(Debug, Default)]
pub struct UnknownTally {
    inner: Mutex<Counts>,
}

impl UnknownTally {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one request's (or stream's) findings. Cheap when there are none.
    pub fn merge(&self, u: &UnknownFields) {
        if u.is_empty() {
            return;
        }
        let Ok(mut t) = self.inner.lock() else {
            return;
        };
        // In any order: no sort, no allocation for names seen before.
        for (target, name, n) in u.counts.iter() {
            t.add(target, name, n);
        }
        t.overflow = t.overflow.saturating_add(u.counts.overflow);
    }

    /// `(target, name, count)` sorted by target then name, and the overflow.
    pub fn report(&self) -> (Vec<(Target, String, u64)>, u64) {
        let Ok(t) = self.inner.lock() else {
            return (Vec::new(), 0);
        };
        let mut v: Vec<_> = t
            .iter()
            .map(|(target, n, c)| (target, n.to_owned(), c))
            .collect();
        v.sort();
        (v, t.overflow)
    }
}

/// The tallies of every route, by a label naming the route (position and
/// match), so that counts survive key rotations and reloads that keep the
/// route. Looked up only when a request had something to record.
#[derive(Debug, Default)]
pub struct UnknownRegistry {
    tallies: Mutex<HashMap<String, Arc<UnknownTally>>>,
}

impl UnknownRegistry {
    /// The tally for `label`, created on first use.
    pub fn tally(&self, label: &str) -> Arc<UnknownTally> {
        let mut t = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(x) = t.get(label) {
            return x.clone();
        }
        let x = Arc::new(UnknownTally::new());
        t.insert(label.to_owned(), x.clone());
        x
    }

    /// The tally for `label` if anything was ever recorded under it.
    pub fn get(&self, label: &str) -> Option<Arc<UnknownTally>> {
        let t = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        t.get(label).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise_indices_and_hide_personal_keys() {
        let mut u = UnknownFields::new();
        for i in 0..3 {
            let a = u.push_key("batch");
            let b = u.push_index();
            let c = u.push_key("foo");
            u.record_here();
            u.pop(c);
            let c = u.push_key("søren@example.dk");
            u.record_here();
            u.pop(c);
            let c = u.push_key("first name");
            let _ = i;
            u.record_here();
            u.pop(c);
            u.pop(b);
            u.pop(a);
        }
        let x = "x".repeat(65);
        u.record(Target::Query, &x);
        u.record(Target::Header, "192.0.2.1");
        assert_eq!(
            u.fields(),
            vec![
                (Target::Body, "batch[*].\"first name\"", 3),
                (Target::Body, "batch[*].<email>", 3),
                (Target::Body, "batch[*].foo", 3),
                (Target::Query, "<long>", 1),
                (Target::Header, "<ip>", 1),
            ]
        );
        assert!(u.buf.is_empty() && u.segs.is_empty());
    }

    #[test]
    fn plain_names_are_told_as_the_byte_test_told_them() {
        // The test `shown_key` made before its byte table.
        fn plain(key: &str) -> bool {
            let mut digits = 0;
            !key.is_empty()
                && key.len() <= MAX_KEY_LEN
                && key.bytes().all(|b| {
                    digits += usize::from(b.is_ascii_digit());
                    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'$')
                })
                && digits < 8
        }
        // Eight digits or more leave the fast path: a phone number as a key.
        assert_eq!(shown_key("004545123456"), "<phone>");
        assert_eq!(shown_key("user_id-7"), "user_id-7");
        // Mostly bytes of plain names, digits often: phone-like keys too.
        let pieces = [
            "a", "Z", "q", "0", "7", "1", "4", "9", "_", "-", "$", "+", ".", " ", "@", "é",
            "\u{7f}",
        ];
        let mut next = crate::testing::xorshift(0x0c0f_fee5_ba11);
        for lengths in [0..20, 55..70] {
            for _ in 0..20_000 {
                let key = crate::testing::random_text(&mut next, &pieces, lengths.clone());
                assert_eq!(is_plain_name(&key), plain(&key), "{key:?}");
            }
        }
    }

    #[test]
    fn distinct_names_are_capped() {
        let mut u = UnknownFields::new();
        for i in 0..(MAX_PATHS + 10) {
            u.record(Target::Query, &format!("p{i}"));
        }
        u.record(Target::Query, "p0");
        assert_eq!(u.fields().len(), MAX_PATHS);
        assert_eq!(u.overflow(), 10);
        let t = UnknownTally::new();
        t.merge(&u);
        t.merge(&u);
        let (fields, overflow) = t.report();
        assert_eq!(fields.len(), MAX_PATHS);
        assert_eq!(overflow, 20);
        assert!(fields.contains(&(Target::Query, "p0".into(), 4)));
    }

    #[test]
    fn a_cleared_or_lent_collector_counts_afresh() {
        let mut u = UnknownFields::new();
        u.record(Target::Query, "a");
        u.record(Target::Header, "b");
        u.clear();
        assert!(u.is_empty());
        assert!(u.fields().is_empty());
        u.record(Target::Header, "b");
        u.record(Target::Header, "c");
        assert_eq!(
            u.fields(),
            vec![(Target::Header, "b", 1), (Target::Header, "c", 1)]
        );
        // The names kept at zero are neither merged nor counted as distinct.
        let t = UnknownTally::new();
        t.merge(&u);
        assert_eq!(t.report().0.len(), 2);
        for i in 0..MAX_PATHS + 5 {
            u.record(Target::Query, &format!("p{i}"));
        }
        assert_eq!(u.fields().len(), MAX_PATHS);
        assert_eq!(u.overflow(), 7);
        // Past the cap the kept names go, so the maps stay bounded.
        u.clear();
        assert_eq!(u.counts.counts.iter().map(HashMap::len).sum::<usize>(), 0);
        drop(u);

        let mut lent = UnknownFields::lend();
        lent.record(Target::Cookie, "x");
        drop(lent);
        let again = UnknownFields::lend();
        assert!(again.is_empty() && again.fields().is_empty());
    }
}
