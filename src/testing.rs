//! Helpers for the unit tests.

/// A deterministic xorshift64 generator: the same numbers on every run, so
/// a case that fails among thousands of random ones can be reproduced.
pub(crate) fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}
