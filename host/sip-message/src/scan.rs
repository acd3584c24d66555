//! Line splitting for the header block: one forward pass, eight bytes at a time.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Index of the first byte at or after `i` that is LF, CR or NUL (or `b.len()`).
///
/// Eight bytes at a time: a word is skipped when none of its bytes is below 14 (which
/// covers LF, CR and NUL); otherwise the lowest such byte, which the bit trick locates
/// exactly, is examined and the scan resumes after it (HT and other controls below 14
/// are not special).
#[inline]
pub(crate) fn find_special(b: &[u8], mut i: usize) -> usize {
    loop {
        let word = b
            .get(i..i.saturating_add(8))
            .and_then(|c| <[u8; 8]>::try_from(c).ok());
        let Some(arr) = word else {
            while let Some(&c) = b.get(i) {
                if c == b'\n' || c == b'\r' || c == 0 {
                    return i;
                }
                i += 1;
            }
            return i;
        };
        let w = u64::from_le_bytes(arr);
        let m = w.wrapping_sub(LO * 14) & !w & HI;
        if m == 0 {
            i += 8;
            continue;
        }
        let j = i + (m.trailing_zeros() / 8) as usize;
        match b.get(j) {
            Some(b'\n' | b'\r' | 0) | None => return j,
            Some(_) => i = j + 1,
        }
    }
}

/// One line of input without its terminator.
pub(crate) struct Line<'a> {
    /// Line content (a stray CR or a NUL inside is kept and flagged in `bad`).
    pub(crate) bytes: &'a [u8],
    /// Offset of the first byte of the line in the buffer.
    pub(crate) start: usize,
    /// Ended by LF or CRLF (false: ran into the end of the buffer).
    pub(crate) terminated: bool,
    /// Contains a NUL or a CR that is not part of the line terminator.
    pub(crate) bad: bool,
}

/// Splits a buffer into lines ended by CRLF or bare LF.
pub(crate) struct Lines<'a> {
    pub(crate) buf: &'a [u8],
    /// Offset of the next line.
    pub(crate) pos: usize,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(buf: &'a [u8], pos: usize) -> Self {
        Lines { buf, pos }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    #[inline]
    fn next(&mut self) -> Option<Line<'a>> {
        let b = self.buf;
        let start = self.pos;
        if start >= b.len() {
            return None;
        }
        let mut i = start;
        let mut bad = false;
        loop {
            i = find_special(b, i);
            let (end, next, terminated) = match b.get(i) {
                None => (i, i, false),
                Some(b'\n') => (i, i + 1, true),
                Some(b'\r') => match b.get(i + 1) {
                    Some(b'\n') => (i, i + 2, true),
                    // A CR at the very end may be the first half of a CRLF.
                    None => (i, b.len(), false),
                    Some(_) => {
                        bad = true;
                        i += 1;
                        continue;
                    }
                },
                Some(_) => {
                    bad = true;
                    i += 1;
                    continue;
                }
            };
            self.pos = next;
            return Some(Line {
                bytes: b.get(start..end).unwrap_or(&[]),
                start,
                terminated,
                bad,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(b: &[u8]) -> Vec<(Vec<u8>, bool, bool)> {
        Lines::new(b, 0)
            .map(|l| (l.bytes.to_vec(), l.terminated, l.bad))
            .collect()
    }

    #[test]
    fn splits_crlf_lf_and_flags() {
        assert_eq!(
            collect(b"a\r\nbb\ncc\r\n\r\ntail"),
            vec![
                (b"a".to_vec(), true, false),
                (b"bb".to_vec(), true, false),
                (b"cc".to_vec(), true, false),
                (b"".to_vec(), true, false),
                (b"tail".to_vec(), false, false),
            ]
        );
        assert_eq!(
            collect(b"x\ry\0z\r\nend\r"),
            vec![
                (b"x\ry\0z".to_vec(), true, true),
                (b"end".to_vec(), false, false)
            ]
        );
        assert!(collect(b"").is_empty());
    }

    #[test]
    fn find_special_long_runs() {
        let mut v = vec![b'a'; 100];
        assert_eq!(find_special(&v, 0), 100);
        v[5] = b'\t';
        v[12] = 0x0b;
        v[13] = 0x0d;
        assert_eq!(find_special(&v, 0), 13);
        v[13] = b'a';
        assert_eq!(find_special(&v, 0), 100);
        for pos in [0, 7, 8, 9, 63, 95, 96, 99] {
            for c in [b'\n', b'\r', 0] {
                v[pos] = c;
                assert_eq!(find_special(&v, 0), pos);
                assert_eq!(find_special(&v, pos), pos);
                v[pos] = b'a';
            }
        }
        assert_eq!(find_special(&v, 200), 200);
    }
}
