//! Byte scanning shared by the parsers (credentials.rs, uri.rs).
//!
//! The module runs as Cranelift-compiled WebAssembly with epoch interruption: every loop
//! iteration pays an epoch check, and a large function keeps its loop variables on the
//! stack (some 20 instructions per byte in a simple loop inside a parser). So the
//! searches here are small functions of their own, not inlined into the parsers, that
//! look at eight bytes per iteration (one 64-bit word, tested without branches). A call
//! costs some 50 instructions: worth it for the long runs of credentials values, not
//! for the short parts of a URI (uri.rs loops in line).

/// A byte-class table: for each byte value, the classes (bits) it belongs to.
pub type Classes = [u8; 256];

/// The end of the run of bytes of `b` from `i` that have a bit of `class` in `table`
/// (`b.len()` if the run reaches the end). Runs are short (param names, tokens): one
/// byte per iteration.
#[inline(never)]
pub fn skip(b: &[u8], i: usize, table: &Classes, class: u8) -> usize {
    let rest = b.get(i..).unwrap_or_default();
    i + rest
        .iter()
        .position(|&c| table[usize::from(c)] & class == 0)
        .unwrap_or(rest.len())
}

/// The end of the run of bytes of `b` from `i` that are none of `"`, `\`, CR and LF
/// (the text of a quoted string without escapes): the bulk of a credentials value
/// (nonce, response, uri).
pub fn skip_plain(b: &[u8], i: usize) -> usize {
    i + find_any(b.get(i..).unwrap_or_default(), [b'"', b'\\', b'\r', b'\n'])
}

/// The index of the first byte of `b` that is one of `set` (`b.len()` if none). Eight
/// bytes per iteration, with no table.
#[inline(never)]
pub fn find_any<const K: usize>(b: &[u8], set: [u8; K]) -> usize {
    let mut words = b.chunks_exact(8);
    let mut n = 0;
    for c in &mut words {
        let m = flags(word(c), &set);
        if m != 0 {
            // The lowest flagged byte is exact (a borrow only flags later bytes).
            return n + (m.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    // The last bytes, padded: a flag in the padding only gives `tail.len()`.
    let tail = words.remainder();
    let mut w = [0u8; 8];
    w.get_mut(..tail.len())
        .unwrap_or_default()
        .copy_from_slice(tail);
    let m = flags(u64::from_le_bytes(w), &set);
    n + ((m.trailing_zeros() / 8) as usize).min(tail.len())
}

/// Bit 0x80 of the lowest byte of `w` that is one of `set` is set, and no bit below it
/// (0 if there is none).
#[inline(always)]
fn flags<const K: usize>(w: u64, set: &[u8; K]) -> u64 {
    set.iter().fold(0, |m, &c| m | has_byte(w, c))
}

/// The high bit of each byte of a word.
pub const HIGH: u64 = 0x8080_8080_8080_8080;
/// One in each byte of a word.
pub const EACH: u64 = 0x0101_0101_0101_0101;

/// Eight bytes as a little-endian word.
#[inline(always)]
pub fn word(c: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(c);
    u64::from_le_bytes(w)
}

/// Bit 0x80 set in the bytes of `w` that are `c`: exact up to the first one, which is
/// all [`find_any`] needs (a borrow can flag a later byte too).
#[inline(always)]
fn has_byte(w: u64, c: u8) -> u64 {
    let x = w ^ (EACH * u64::from(c));
    x.wrapping_sub(EACH) & !x & HIGH
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::Rng;

    #[test]
    fn skips_agree_with_bytewise() {
        let mut table = [0u8; 256];
        for (c, t) in table.iter_mut().enumerate() {
            *t = (c % 7 == 0) as u8 | ((c % 3 != 0) as u8) << 1;
        }
        let mut rng = Rng::new(0x5eed_0007);
        for _ in 0..50_000 {
            let b = rng.bytes(40);
            for class in [1, 2, 3] {
                for start in [0, 1, 5, b.len()] {
                    let start = start.min(b.len());
                    let expect = b[start..]
                        .iter()
                        .position(|&c| table[usize::from(c)] & class == 0)
                        .map_or(b.len(), |p| start + p);
                    assert_eq!(skip(&b, start, &table, class), expect);
                }
            }
            let special = [b'"', b'\\', b'\r', b'\n', b'a', b'\x80'];
            let mut q = rng.bytes(40);
            for c in &mut q {
                if rng.below(8) == 0 {
                    *c = special[rng.below(special.len())];
                }
            }
            for start in [0, 1, 9, q.len()] {
                let start = start.min(q.len());
                let expect = q[start..]
                    .iter()
                    .position(|c| matches!(c, b'"' | b'\\' | b'\r' | b'\n'))
                    .map_or(q.len(), |p| start + p);
                assert_eq!(skip_plain(&q, start), expect, "{q:?} {start}");
            }
            let at = |set: &[u8]| q.iter().position(|c| set.contains(c)).unwrap_or(q.len());
            assert_eq!(find_any(&q, [b'a']), at(b"a"));
            assert_eq!(find_any(&q, [0, b'\x80']), at(&[0, 0x80]));
            assert_eq!(find_any(&q, [b'"', b'a', b'\r']), at(b"\"a\r"));
        }
        // Every byte value at every position of a word, and in the tail.
        for c in 0..=255u8 {
            for pos in 0..10 {
                let mut s = [b'a'; 10];
                s[pos] = c;
                let first = if c == b'a' { 0 } else { pos };
                assert_eq!(find_any(&s, [c]), first);
                assert_eq!(find_any(&s, [b'"', c]), first);
            }
        }
        assert_eq!(find_any(b"", [b'a']), 0);
    }
}
