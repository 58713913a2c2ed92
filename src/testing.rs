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

/// A text of a random number (in `lengths`) of pieces drawn from `pieces`:
/// the random inputs the equivalence tests compare two implementations on.
pub(crate) fn random_text<T: AsRef<str>>(
    next: &mut impl FnMut() -> u64,
    pieces: &[T],
    lengths: std::ops::Range<u64>,
) -> String {
    let n = lengths.start + next() % (lengths.end - lengths.start);
    (0..n)
        .map(|_| pieces[(next() % pieces.len() as u64) as usize].as_ref())
        .collect()
}
