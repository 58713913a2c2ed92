//! Privacy controls beyond field rewriting:
//!
//! - [`consent`]: purposes on consent need a consent signal per request (a
//!   header, a cookie, or a body field per event); `Sec-GPC: 1` refuses.
//!   Without consent an event is withheld, and the client still gets a
//!   success status so that SDKs do not retry it.
//! - [`objections`]: the GDPR art. 21 register. Subjects who objected are
//!   stored only as keyed HMACs; their events are withheld from
//!   legitimate-interest purposes.
//! - [`guard`]: the leak guard, a last scan of what leaves for email
//!   addresses, IP addresses and the request's own identifiers repeated in
//!   free text; it scrubs them or refuses the request (422).
//! - [`shadow`]: a candidate rule file run beside the enforced one, its
//!   differences counted by path, nothing of it forwarded.

pub mod consent;
pub mod guard;
pub mod objections;
pub mod shadow;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::Stats;

/// Process-wide counts of what the privacy controls did. Counts only.
#[derive(Debug, Default)]
pub struct Counters {
    pub withheld_consent: AtomicU64,
    pub withheld_objection: AtomicU64,
    pub leaks_scrubbed: AtomicU64,
    pub leaks_refused: AtomicU64,
}

impl Counters {
    pub fn add(&self, s: &Stats) {
        self.withheld_consent
            .fetch_add(s.withheld_consent, Ordering::Relaxed);
        self.withheld_objection
            .fetch_add(s.withheld_objection, Ordering::Relaxed);
        self.leaks_scrubbed
            .fetch_add(s.leaks_scrubbed, Ordering::Relaxed);
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "withheld_consent": self.withheld_consent.load(Ordering::Relaxed),
            "withheld_objection": self.withheld_objection.load(Ordering::Relaxed),
            "leaks_scrubbed": self.leaks_scrubbed.load(Ordering::Relaxed),
            "leaks_refused": self.leaks_refused.load(Ordering::Relaxed),
        })
    }
}
