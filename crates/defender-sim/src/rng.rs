//! Small deterministic random numbers for the tenant generator.
//!
//! Everything the simulator generates is a pure function of the seed and an index, so that a
//! machine's vulnerabilities can be re-derived on demand instead of being stored. A SplitMix64
//! stream per (seed, stream, index) is cheap to create (no state tables) and good enough for
//! synthetic data; `rand`'s generators would work too but their output is not promised stable
//! across versions, and a changed tenant for the same seed would break recorded fixtures.

/// A SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

/// One round of the SplitMix64 finaliser: a good 64-bit mixing function.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hash of a few integers, used for per-row attributes that need no stream.
pub fn hash3(a: u64, b: u64, c: u64) -> u64 {
    mix64(mix64(mix64(a) ^ b.wrapping_mul(0xA24B_AED4_963E_E407)) ^ c)
}

impl Rng {
    /// A stream for (seed, stream id, index); different streams of one index are independent.
    pub fn for_item(seed: u64, stream: u64, index: u64) -> Self {
        Rng(hash3(seed, stream, index))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n); n must be > 0.
    pub fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift: unbiased enough for synthetic data and branch-free.
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in [lo, hi] (inclusive).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Index into `weights` chosen proportionally to the weights.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|w| *w as u64).sum();
        let mut x = self.below(total.max(1));
        for (i, w) in weights.iter().enumerate() {
            if x < *w as u64 {
                return i;
            }
            x -= *w as u64;
        }
        weights.len() - 1
    }

    /// Exponentially distributed with the given mean.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -(1.0 - self.f64()).ln() * mean
    }

    pub fn hex(&mut self, len: usize) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(len);
        let mut bits = 0u64;
        let mut left = 0;
        for _ in 0..len {
            if left == 0 {
                bits = self.next_u64();
                left = 16;
            }
            s.push(HEX[(bits & 15) as usize] as char);
            bits >>= 4;
            left -= 1;
        }
        s
    }

    /// A GUID-shaped string (version 4 layout) from this stream.
    pub fn guid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format_guid(a, b)
    }
}

pub fn format_guid(a: u64, b: u64) -> String {
    let b = (b & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    let a = (a & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xFFFF,
        a & 0xFFFF,
        b >> 48,
        b & 0xFFFF_FFFF_FFFF
    )
}

/// A random (non-deterministic) GUID for trace ids, action ids and the like.
pub fn random_guid() -> String {
    format_guid(rand::random(), rand::random())
}

/// An invertible permutation of u32, keyed by the seed. Machine ids embed `permute(index)` so
/// that a machine id maps back to its index without a hash map over 500,000 ids.
#[derive(Debug, Clone, Copy)]
pub struct Permutation {
    key: u32,
}

const M1: u32 = 0x2C1B_3C6D;
const M2: u32 = 0x297A_2D39;

fn inverse_odd(a: u32) -> u32 {
    // Newton iteration for the inverse modulo 2^32 (a is odd).
    let mut x = a;
    for _ in 0..5 {
        x = x.wrapping_mul(2u32.wrapping_sub(a.wrapping_mul(x)));
    }
    x
}

fn unxorshift(y: u32, s: u32) -> u32 {
    let mut x = y;
    for _ in 0..(32 / s + 1) {
        x = y ^ (x >> s);
    }
    x
}

impl Permutation {
    pub fn new(seed: u64) -> Self {
        Permutation { key: mix64(seed ^ 0x5EED) as u32 }
    }

    pub fn forward(&self, i: u32) -> u32 {
        let mut x = i ^ self.key;
        x = x.wrapping_mul(M1);
        x ^= x >> 12;
        x = x.wrapping_mul(M2);
        x ^= x >> 15;
        x
    }

    pub fn inverse(&self, y: u32) -> u32 {
        let mut x = unxorshift(y, 15);
        x = x.wrapping_mul(inverse_odd(M2));
        x = unxorshift(x, 12);
        x = x.wrapping_mul(inverse_odd(M1));
        x ^ self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_round_trips() {
        let p = Permutation::new(42);
        for i in [0u32, 1, 2, 77, 499_999, u32::MAX] {
            assert_eq!(p.inverse(p.forward(i)), i);
        }
    }

    #[test]
    fn streams_are_deterministic() {
        let mut a = Rng::for_item(1, 2, 3);
        let mut b = Rng::for_item(1, 2, 3);
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(Rng::for_item(1, 2, 3).next_u64(), Rng::for_item(1, 2, 4).next_u64());
    }
}
