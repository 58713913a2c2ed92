//! The compiled, hot-path form of a rule file.
//!
//! Selectors become one automaton per target (body, query). A walker keeps the
//! set of live automaton states for the node it is on; stepping into a child
//! costs O(live states), not O(rules), and a subtree with no live state and a
//! `drop` default is skipped without being looked at.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;

use super::selector::{Segment, Selector, Step};
use super::spec::{Encoding, Granularity, IpMode, Kind, LegalBasis};

/// A rule file after validation: what the engine executes.
#[derive(Debug)]
pub struct CompiledRules {
    pub purpose: Purpose,
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) body: Automaton,
    pub(crate) query: Automaton,
    /// Lower-cased header name -> rule.
    pub(crate) headers: HashMap<String, RuleIdx>,
    pub(crate) cookies: HashMap<String, RuleIdx>,
    pub(crate) default_keep: bool,
    /// The consent signal of a consent purpose.
    pub consent: Option<crate::privacy::consent::ConsentSpec>,
}

/// The record of processing a rule file states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Purpose {
    pub id: String,
    pub description: Option<String>,
    pub legal_basis: LegalBasis,
    pub retention: Retention,
    pub recipient: String,
}

/// How long the recipient may keep what it receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    Days(u32),
    Months(u32),
    Years(u32),
    WhileServiceUsed,
}

impl Retention {
    /// The period as a duration (months of 30 days, years of 365); `None`
    /// for as long as the service is used.
    pub fn as_duration(self) -> Option<std::time::Duration> {
        let days = match self {
            Retention::Days(n) => u64::from(n),
            Retention::Months(n) => u64::from(n) * 30,
            Retention::Years(n) => u64::from(n) * 365,
            Retention::WhileServiceUsed => return None,
        };
        Some(std::time::Duration::from_secs(days * 86_400))
    }
}

pub type RuleIdx = u16;

#[derive(Debug)]
pub(crate) struct CompiledRule {
    /// `id` from the file, or `rule[N]` (1-based) when it had none.
    pub id: String,
    /// What the rule applies to and its selector (or name) as written: kept
    /// for the records of processing (`scrim ropa`), unused on the hot path.
    pub target: Target,
    pub selector: String,
    pub action: Action,
    /// Ranks rules that match one node: higher wins.
    pub rank: Rank,
}

/// The part of a request a rule (or an unnamed field) belongs to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// JSON, NDJSON lines, form fields (`field = ...`).
    #[default]
    Body,
    Query,
    Header,
    Cookie,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Body => "body",
            Target::Query => "query",
            Target::Header => "header",
            Target::Cookie => "cookie",
        }
    }
}

/// One rule as the records of processing show it.
#[derive(Clone, Copy, Debug)]
pub struct RuleView<'a> {
    pub id: &'a str,
    pub target: Target,
    /// The selector (body, query) or name (header, cookie) as written.
    pub selector: &'a str,
    pub action: &'a Action,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Rank {
    pub specificity: (usize, usize, std::cmp::Reverse<usize>),
    pub strictness: u8,
}

/// An action with its options resolved.
#[derive(Debug)]
pub enum Action {
    Keep,
    Drop,
    Pseudonymise(PseudoSpec),
    Generalise(GeneraliseSpec),
    Scrub(UrlSpec),
    /// The constant, pre-serialised as JSON and, for strings, as plain text.
    Replace {
        json: Vec<u8>,
        text: String,
    },
    Decode(Encoding),
    /// A reversible token bound to the purpose and this rule's id.
    Encrypt,
}

#[derive(Debug, Clone)]
pub struct PseudoSpec {
    pub kind: Kind,
    pub email: EmailSpec,
    pub label: Option<String>,
    /// Emit the previous key version's token beside the new one.
    pub bridge: bool,
    pub ip_mode: IpMode,
    pub url: UrlSpec,
}

#[derive(Debug, Clone, Default)]
pub struct EmailSpec {
    pub keep_domain: bool,
    pub domain: Option<String>,
    pub strip_plus_tag: bool,
}

/// What happens to the parts of a URL.
#[derive(Debug, Clone, Default)]
pub struct UrlSpec {
    pub keep_params: Vec<String>,
    pub pseudonymise_params: Vec<String>,
    pub keep_fragment: bool,
    /// In `scrub` text, parameters named nowhere are kept (the text is not an
    /// allow-list document); in a `url` field they are dropped.
    pub keep_unnamed_params: bool,
}

#[derive(Debug, Clone)]
pub enum GeneraliseSpec {
    Ip { v4_prefix: u8, v6_prefix: u8 },
    Timestamp(Granularity),
    UserAgent,
}

impl Action {
    /// Used to break ties between equally specific rules: the stricter wins,
    /// because an ambiguity must never widen what leaves.
    pub(crate) fn strictness(&self) -> u8 {
        match self {
            Action::Drop => 7,
            Action::Replace { .. } => 6,
            Action::Pseudonymise(_) => 5,
            Action::Generalise(_) => 4,
            Action::Scrub(_) => 3,
            Action::Decode(_) => 2,
            Action::Encrypt => 5,
            Action::Keep => 1,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::Pseudonymise(_) => "pseudonymise",
            Action::Generalise(_) => "generalise",
            Action::Scrub(_) => "scrub",
            Action::Replace { .. } => "replace",
            Action::Decode(_) => "decode",
            Action::Encrypt => "encrypt",
        }
    }
}

impl CompiledRules {
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Every rule in file order: id, target, selector as written, action
    /// with its options. For `check`, the demo and `scrim ropa`.
    pub fn describe(&self) -> impl Iterator<Item = RuleView<'_>> {
        self.rules.iter().map(|r| RuleView {
            id: r.id.as_str(),
            target: r.target,
            selector: r.selector.as_str(),
            action: &r.action,
        })
    }

    pub fn header_rule(&self, name: &str) -> Option<&Action> {
        let idx = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.headers.get(&name.to_ascii_lowercase())
        } else {
            self.headers.get(name)
        };
        idx.map(|&i| &self.rules[i as usize].action)
    }

    /// Does any rule ask for bridging across key rotations?
    pub fn bridges(&self) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(&r.action, Action::Pseudonymise(p) if p.bridge))
    }

    pub fn default_keep(&self) -> bool {
        self.default_keep
    }
}

// === Automaton ===

/// A state is "rule r has matched the first `pos` segments of its selector".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct State {
    rule: RuleIdx,
    pos: u16,
}

/// The live states of the node a walk is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum States {
    /// A state set the automaton determinised when it was built.
    Dfa(u32),
    /// A set past the determinised ones (only for very large rule files):
    /// states on the walker's stack, stepped one by one.
    Nfa(Range<usize>),
}

impl States {
    /// No state: nothing below can match any selector.
    pub(crate) const EMPTY: States = States::Dfa(EMPTY);

    pub(crate) fn is_empty(&self) -> bool {
        match self {
            States::Dfa(id) => *id == EMPTY,
            States::Nfa(r) => r.is_empty(),
        }
    }
}

/// The empty set's id: interned first.
const EMPTY: u32 = 0;

/// A transition to a set that was not determinised.
const UNDETERMINISED: u32 = u32::MAX;

/// At most this many sets are determinised per automaton; rule files are
/// far below it, and a larger one steps state by state beyond it.
const MAX_DFA_STATES: usize = 4096;

/// A bound on the work of determinising (set size squared times the
/// transitions worked out, see `determinise`), so that a huge rule file
/// compiles in about the time it did before sets were determinised: past
/// it, sets step state by state.
const DETERMINISE_BUDGET: usize = 1 << 24;

/// One determinised state set and its transitions.
#[derive(Debug, Default)]
struct DfaState {
    /// The states, in the order stepping state by state produces them (the
    /// winner among equally ranked rules is the first, so the order is kept).
    nfa: Vec<State>,
    /// The winning rule among the states that completed their selector.
    winner: Option<RuleIdx>,
    /// Keys some selector names at one of the states, and where they lead;
    /// empty when there are many and `keys_hashed` holds them.
    keys: Vec<(Box<str>, KeyEdge)>,
    /// The same, hashed, when there are more than [`LINEAR_KEYS`].
    keys_hashed: Option<HashMap<Box<str>, KeyEdge, BuildHasherDefault<KeyHasher>>>,
    other_key: u32,
    indices: Vec<(usize, u32)>,
    other_index: u32,
}

/// Where a named key leads, and whether it can leave as it is.
#[derive(Clone, Copy, Debug)]
struct KeyEdge {
    to: u32,
    /// The key holds nothing the walk would scrub from an object key
    /// (`scrub::may_hold_personal` is false), decided once here instead
    /// of for every member of every document.
    plain: bool,
}

/// Above this many named keys a state looks keys up by hash.
const LINEAR_KEYS: usize = 8;

/// Selectors of one target compiled together.
///
/// Stepping is determinised up front: every set of states a walk can be in
/// is numbered with its transitions (each key or index a selector names at
/// one of its states, and any other key or index), so stepping into a child
/// is one look-up instead of a pass over the live states.
#[derive(Debug, Default)]
pub(crate) struct Automaton {
    selectors: Vec<(RuleIdx, Vec<Segment>)>,
    /// The closed start state set.
    start: Vec<State>,
    dfa: Vec<DfaState>,
    start_id: u32,
}

impl Automaton {
    /// `rules` are the rules `selectors` index into, for their ranks.
    pub(crate) fn new(selectors: Vec<(RuleIdx, Selector)>, rules: &[CompiledRule]) -> Self {
        let selectors: Vec<(RuleIdx, Vec<Segment>)> = selectors
            .into_iter()
            .map(|(r, s)| (r, s.segments().to_vec()))
            .collect();
        let mut a = Automaton {
            selectors,
            ..Default::default()
        };
        let mut start = Vec::new();
        for i in 0..a.selectors.len() {
            a.push_closed(
                &mut start,
                State {
                    rule: i as RuleIdx,
                    pos: 0,
                },
            );
        }
        a.start = start;
        a.determinise(MAX_DFA_STATES, DETERMINISE_BUDGET, rules);
        a
    }

    /// Numbers every state set reachable from the start set, breadth first,
    /// up to `max` sets and within `budget` (a set whose transitions would
    /// take more than what is left keeps none: it steps state by state).
    fn determinise(&mut self, max: usize, mut budget: usize, rules: &[CompiledRule]) {
        // The empty set and the start set are always numbered.
        let max = max.max(2);
        let mut ids: HashMap<Vec<State>, u32> = HashMap::new();
        let mut dfa: Vec<DfaState> = Vec::new();
        let mut intern = |set: Vec<State>, dfa: &mut Vec<DfaState>| -> u32 {
            if let Some(&id) = ids.get(&set) {
                return id;
            }
            if dfa.len() >= max {
                return UNDETERMINISED;
            }
            let id = dfa.len() as u32;
            ids.insert(set.clone(), id);
            let winner = self.winner_of(rules, &set);
            dfa.push(DfaState {
                nfa: set,
                winner,
                ..Default::default()
            });
            id
        };
        intern(Vec::new(), &mut dfa);
        let start = self.start.clone();
        let start_id = intern(start, &mut dfa);
        let mut next = 0;
        while next < dfa.len() {
            let set = dfa[next].nfa.clone();
            let mut keys: Vec<&str> = Vec::new();
            let mut indices: Vec<usize> = Vec::new();
            for st in &set {
                match self.selectors[st.rule as usize].1.get(st.pos as usize) {
                    Some(Segment::Key(k)) => keys.push(k.as_str()),
                    Some(Segment::Index(i)) => indices.push(*i),
                    _ => {}
                }
            }
            keys.sort_unstable();
            keys.dedup();
            indices.sort_unstable();
            indices.dedup();
            // Each step scans the set, and each state it adds is checked
            // against those added before it.
            let cost = (keys.len() + indices.len() + 2)
                .saturating_mul(set.len().max(1))
                .saturating_mul(set.len().max(1));
            if cost > budget {
                let state = &mut dfa[next];
                state.other_key = UNDETERMINISED;
                state.other_index = UNDETERMINISED;
                next += 1;
                continue;
            }
            budget -= cost;
            // A key no state names: only wildcards accept it.
            let mut other = String::from("\0");
            while keys.binary_search(&other.as_str()).is_ok() {
                other.push('\0');
            }
            let other_index = (0..).find(|i| indices.binary_search(i).is_err());
            let other_index = other_index.expect("some index is not named");
            let step = |step: Step<'_>| {
                let mut stack = set.clone();
                let to = self.step_nfa(&mut stack, 0..set.len(), step);
                stack[to].to_vec()
            };
            let key_targets: Vec<(Box<str>, KeyEdge)> = keys
                .iter()
                .map(|&k| {
                    let edge = KeyEdge {
                        to: intern(step(Step::Key(k)), &mut dfa),
                        plain: !super::scrub::may_hold_personal(k),
                    };
                    (Box::from(k), edge)
                })
                .collect();
            let other_key = intern(step(Step::Key(&other)), &mut dfa);
            let index_targets: Vec<(usize, u32)> = indices
                .iter()
                .map(|&i| (i, intern(step(Step::Index(i)), &mut dfa)))
                .collect();
            let other_index = intern(step(Step::Index(other_index)), &mut dfa);
            let state = &mut dfa[next];
            if key_targets.len() > LINEAR_KEYS {
                state.keys_hashed = Some(key_targets.into_iter().collect());
            } else {
                state.keys = key_targets;
            }
            state.other_key = other_key;
            state.indices = index_targets;
            state.other_index = other_index;
            next += 1;
        }
        self.start_id = start_id;
        self.dfa = dfa;
    }

    /// The start states, for a walk that begins: its stack, which holds only
    /// sets past the determinised ones, starts empty.
    pub(crate) fn start(&self, stack: &mut Vec<State>) -> States {
        stack.clear();
        States::Dfa(self.start_id)
    }

    /// The states reached from `from` by one path step (pushed on `stack`
    /// when they were not determinised).
    pub(crate) fn step(&self, stack: &mut Vec<State>, from: &States, step: Step<'_>) -> States {
        self.step_noting(stack, from, step).0
    }

    /// [`step`](Self::step) by an object key, and whether the key is one a
    /// selector names that needs no scrubbing (`false` when unsure).
    pub(crate) fn step_key(
        &self,
        stack: &mut Vec<State>,
        from: &States,
        key: &str,
    ) -> (States, bool) {
        self.step_noting(stack, from, Step::Key(key))
    }

    fn step_noting(&self, stack: &mut Vec<State>, from: &States, step: Step<'_>) -> (States, bool) {
        let id = match *from {
            States::Dfa(id) => id,
            States::Nfa(ref r) => {
                return (States::Nfa(self.step_nfa(stack, r.clone(), step)), false)
            }
        };
        let d = &self.dfa[id as usize];
        let (to, plain) = match step {
            Step::Key(k) => match &d.keys_hashed {
                Some(map) => map.get(k).copied(),
                None => d
                    .keys
                    .iter()
                    .find(|(name, _)| name.len() == k.len() && **name == *k)
                    .map(|&(_, edge)| edge),
            }
            .map_or((d.other_key, false), |e| (e.to, e.plain)),
            Step::Index(i) => (
                d.indices
                    .iter()
                    .find(|&&(n, _)| n == i)
                    .map_or(d.other_index, |&(_, to)| to),
                false,
            ),
        };
        if to != UNDETERMINISED {
            return (States::Dfa(to), plain);
        }
        let begin = stack.len();
        stack.extend_from_slice(&d.nfa);
        (
            States::Nfa(self.step_nfa(stack, begin..stack.len(), step)),
            plain,
        )
    }

    /// [`Automaton::step`] state by state.
    fn step_nfa(&self, stack: &mut Vec<State>, from: Range<usize>, step: Step<'_>) -> Range<usize> {
        let begin = stack.len();
        for i in from {
            let st = stack[i];
            let segs = &self.selectors[st.rule as usize].1;
            let Some(seg) = segs.get(st.pos as usize) else {
                continue;
            };
            match seg {
                Segment::AnyDepth => self.push_closed_from(stack, begin, st),
                seg if seg.accepts(step) => self.push_closed_from(
                    stack,
                    begin,
                    State {
                        rule: st.rule,
                        pos: st.pos + 1,
                    },
                ),
                _ => {}
            }
        }
        begin..stack.len()
    }

    /// The winning rule among the states that completed their selector.
    /// `rules` must be those the automaton was built with.
    pub(crate) fn winner(
        &self,
        rules: &[CompiledRule],
        stack: &[State],
        at: &States,
    ) -> Option<RuleIdx> {
        match at {
            States::Dfa(id) => self.dfa[*id as usize].winner,
            States::Nfa(r) => self.winner_of(rules, &stack[r.clone()]),
        }
    }

    /// The winner among `states`: the highest rank, the first of equals.
    fn winner_of(&self, rules: &[CompiledRule], states: &[State]) -> Option<RuleIdx> {
        let mut best: Option<RuleIdx> = None;
        for st in states {
            let (rule, segs) = &self.selectors[st.rule as usize];
            if st.pos as usize != segs.len() {
                continue;
            }
            best = match best {
                Some(b) if rules[b as usize].rank >= rules[*rule as usize].rank => Some(b),
                _ => Some(*rule),
            };
        }
        best
    }

    fn push_closed_from(&self, stack: &mut Vec<State>, begin: usize, st: State) {
        self.push_closed_range(stack, begin, st)
    }

    fn push_closed(&self, out: &mut Vec<State>, st: State) {
        self.push_closed_range(out, 0, st)
    }

    /// Pushes `st` and, through `**` (which may match zero levels), the states
    /// after it; skips states already present since `begin`.
    fn push_closed_range(&self, out: &mut Vec<State>, begin: usize, mut st: State) {
        loop {
            if !out[begin..].contains(&st) {
                out.push(st);
            }
            let segs = &self.selectors[st.rule as usize].1;
            match segs.get(st.pos as usize) {
                Some(Segment::AnyDepth) => st.pos += 1,
                _ => return,
            }
        }
    }
}

/// For the key tables of states that name many keys: a key is read as at most two overlapping words and mixed with
/// two multiplications, where FNV-1a would take one dependent multiplication
/// per byte.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        const K0: u64 = 0x9e37_79b9_7f4a_7c15;
        const K1: u64 = 0xbf58_476d_1ce4_e5b9;
        let n = bytes.len();
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let half = |at: usize| {
            u64::from(u32::from_le_bytes(
                bytes[at..at + 4].try_into().expect("4 bytes"),
            ))
        };
        let (a, b) = match n {
            8.. => (word(0), word(n - 8)),
            4..8 => (half(0), half(n - 4)),
            _ => (
                bytes.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)),
                0,
            ),
        };
        let h = (self.0 ^ a ^ (n as u64).wrapping_mul(K0)).wrapping_mul(K1) ^ b.rotate_left(29);
        let h = h.wrapping_mul(K0);
        self.0 = h ^ (h >> 31);
    }
}

/// FNV-1a, for small maps: the capped unknown-field counts.
pub(crate) struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto_ranked(sels: &[&str], rules: &[CompiledRule]) -> Automaton {
        Automaton::new(
            sels.iter()
                .enumerate()
                .map(|(i, s)| (i as RuleIdx, s.parse().unwrap()))
                .collect(),
            rules,
        )
    }

    /// Rules for `sels`, ranked with ties, so that the order of the states
    /// decides some winners.
    fn ranked(sels: &[&str]) -> Vec<CompiledRule> {
        sels.iter()
            .enumerate()
            .map(|(i, sel)| CompiledRule {
                id: format!("r{i}"),
                target: Target::Body,
                selector: (*sel).to_owned(),
                action: Action::Keep,
                rank: Rank {
                    specificity: (i % 2, 0, std::cmp::Reverse(0)),
                    strictness: (i % 3) as u8,
                },
            })
            .collect()
    }

    fn auto(sels: &[&str]) -> Automaton {
        auto_ranked(sels, &ranked(sels))
    }

    fn states_of<'s>(a: &'s Automaton, stack: &'s [State], at: &States) -> &'s [State] {
        match at {
            States::Dfa(id) => &a.dfa[*id as usize].nfa,
            States::Nfa(r) => &stack[r.clone()],
        }
    }

    fn completed(a: &Automaton, path: &[Step<'_>]) -> Vec<RuleIdx> {
        let mut stack = Vec::new();
        let mut at = a.start(&mut stack);
        for s in path {
            at = a.step(&mut stack, &at, *s);
        }
        let mut v: Vec<RuleIdx> = states_of(a, &stack, &at)
            .iter()
            .filter(|st| st.pos as usize == a.selectors[st.rule as usize].1.len())
            .map(|st| a.selectors[st.rule as usize].0)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Along random paths, the determinised steps give the very sets (in
    /// the same order) that stepping state by state gives, also when the
    /// determinised sets run out and the walk continues on the stack.
    #[test]
    fn determinised_steps_are_the_state_by_state_steps() {
        const SELS: &[&str] = &[
            "**.email",
            "a.b",
            "a.*",
            "*.c",
            "\"\0\"",
            "a",
            "[*].u",
            "x.**.y",
            "a[1]",
            "a[*].b",
            "**",
            "x.**.y.**.z",
            "c[0].c",
            // With the keys above, more than `LINEAR_KEYS` named at the
            // root: its keys are looked up by hash.
            "d",
            "e.d",
            "f",
            "g[0]",
            "h.**.a",
        ];
        const KEYS: &[&str] = &[
            "a", "b", "c", "d", "e", "h", "u", "x", "y", "z", "email", "zzz", "", "\0", "\0\0",
        ];
        let mut xorshift = crate::testing::xorshift(0x9e37_79b9_7f4a_7c15);
        let mut next = move |n: usize| (xorshift() % n as u64) as usize;
        let rules = ranked(SELS);
        // The winner as it was found before the sets were determinised: over
        // every state of the set, in order.
        let reference_winner = |a: &Automaton, set: &[State]| a.winner_of(&rules, set);
        let mut undetermined = 0;
        let mut plain_keys = 0;
        for (max, budget) in [
            (MAX_DFA_STATES, DETERMINISE_BUDGET),
            (1, DETERMINISE_BUDGET),
            (2, DETERMINISE_BUDGET),
            (3, DETERMINISE_BUDGET),
            (5, DETERMINISE_BUDGET),
            (8, DETERMINISE_BUDGET),
            (MAX_DFA_STATES, 0),
            (MAX_DFA_STATES, 2_000),
            (MAX_DFA_STATES, 20_000),
        ] {
            for take in [1, 2, 3, 5, SELS.len()] {
                let mut a = auto_ranked(&SELS[..take], &rules);
                a.determinise(max, budget, &rules);
                for _ in 0..300 {
                    let mut stack = Vec::new();
                    let mut at = a.start(&mut stack);
                    let mut reference = a.start.clone();
                    for _ in 0..next(7) {
                        let step = if next(3) == 0 {
                            Step::Index(next(3))
                        } else {
                            Step::Key(KEYS[next(KEYS.len())])
                        };
                        let (next_at, plain) = match step {
                            Step::Key(k) => a.step_key(&mut stack, &at, k),
                            Step::Index(_) => (a.step(&mut stack, &at, step), false),
                        };
                        if let (true, Step::Key(k)) = (plain, step) {
                            assert!(!crate::engine::scrub::may_hold_personal(k), "{k:?}");
                            plain_keys += 1;
                        }
                        at = next_at;
                        undetermined += usize::from(matches!(at, States::Nfa(_)));
                        let len = reference.len();
                        let to = a.step_nfa(&mut reference, 0..len, step);
                        reference = reference[to].to_vec();
                        assert_eq!(states_of(&a, &stack, &at), &reference[..], "{max} {step:?}");
                        assert_eq!(at.is_empty(), reference.is_empty());
                        assert_eq!(
                            a.winner(&rules, &stack, &at),
                            reference_winner(&a, &reference)
                        );
                    }
                }
            }
        }
        assert!(undetermined > 1000, "{undetermined}");
        assert!(plain_keys > 1000, "{plain_keys}");
        let all = auto_ranked(SELS, &rules);
        assert!(all.dfa[all.start_id as usize].keys_hashed.is_some());
    }

    #[test]
    fn automaton_agrees_with_reference_matcher() {
        let sels = [
            "**.email",
            "batch[*].context.ip",
            "a.*.c",
            "**",
            "x.**.y",
            "[*].u",
            "a[1]",
        ];
        let a = auto(&sels);
        let parsed: Vec<Selector> = sels.iter().map(|s| s.parse().unwrap()).collect();
        let paths: Vec<Vec<Step<'static>>> = vec![
            vec![],
            vec![Step::Key("email")],
            vec![Step::Key("a"), Step::Key("b"), Step::Key("c")],
            vec![Step::Key("a"), Step::Index(1)],
            vec![Step::Key("a"), Step::Index(1), Step::Key("c")],
            vec![
                Step::Key("batch"),
                Step::Index(4),
                Step::Key("context"),
                Step::Key("ip"),
            ],
            vec![Step::Key("x"), Step::Key("y")],
            vec![
                Step::Key("x"),
                Step::Key("q"),
                Step::Index(0),
                Step::Key("y"),
            ],
            vec![Step::Index(0), Step::Key("u")],
            vec![Step::Key("z"), Step::Key("x"), Step::Key("email")],
        ];
        for p in &paths {
            let expect: Vec<RuleIdx> = parsed
                .iter()
                .enumerate()
                .filter(|(_, s)| s.matches(p))
                .map(|(i, _)| i as RuleIdx)
                .collect();
            assert_eq!(completed(&a, p), expect, "path {p:?}");
        }
    }
}
