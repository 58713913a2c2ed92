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
