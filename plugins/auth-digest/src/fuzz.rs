//! Deterministic pseudo-random inputs for the differential tests of the byte scanners
//! (each checked against the straightforward version it replaced, on many inputs built
//! from the pieces that matter to it).

/// A xorshift64* generator: the same inputs on every run.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value but 0).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() >> 33) as usize % n
    }

    /// Up to `max` pieces picked from `pieces`, concatenated.
    pub fn text(&mut self, pieces: &[&str], max: usize) -> String {
        let n = self.below(max + 1);
        (0..n).map(|_| pieces[self.below(pieces.len())]).collect()
    }

    /// Up to `max` random bytes.
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}
