//! Numbers written into header text without `core::fmt`: the proxy writes a branch, a
//! Via and a Record-Route for every request it forwards, and `format!` with padded
//! hex costs several hundred instructions per number there.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Append `v` in lowercase hex, zero-padded to at least `min_digits` (at most 16).
///
/// ```
/// let mut s = String::from("x");
/// weir_message::push_hex(&mut s, 0x2a, 4);
/// weir_message::push_hex(&mut s, 0xdead_beef, 1);
/// assert_eq!(s, "x002adeadbeef");
/// ```
pub fn push_hex(out: &mut String, v: u64, min_digits: usize) {
    // Significant digits, at least one (zero is "0").
    let digits = (16 - v.leading_zeros() as usize / 4).max(1);
    for shift in (0..digits.max(min_digits.min(16))).rev() {
        // The mask keeps the index below 16.
        let d = HEX.get(((v >> (shift * 4)) & 0xf) as usize).copied();
        out.push(char::from(d.unwrap_or(b'0')));
    }
}

/// Append `v` in decimal.
///
/// ```
/// let mut s = String::from(":");
/// weir_message::push_dec(&mut s, 5060);
/// weir_message::push_dec(&mut s, 0);
/// assert_eq!(s, ":50600");
/// ```
pub fn push_dec(out: &mut String, v: u64) {
    // The largest power of ten not above v (1 for 0), then one digit per power.
    let mut p = 1u64;
    while v / p >= 10 {
        p *= 10;
    }
    loop {
        // (v / p) % 10 < 10: a digit.
        out.push(char::from(b'0' + ((v / p) % 10) as u8));
        if p == 1 {
            break;
        }
        p /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_decimal_match_fmt() {
        for v in [
            0u64,
            1,
            9,
            10,
            15,
            16,
            255,
            4096,
            5060,
            65535,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            for w in [0, 1, 8, 16, 20] {
                let mut s = String::new();
                push_hex(&mut s, v, w);
                assert_eq!(s, format!("{v:0w$x}", w = w.min(16)), "{v} {w}");
            }
            let mut s = String::new();
            push_dec(&mut s, v);
            assert_eq!(s, v.to_string());
        }
    }
}
