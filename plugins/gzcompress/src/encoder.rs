//! A small zlib (RFC 1950) / deflate (RFC 1951) encoder for SIP-sized bodies.
//!
//! miniz_oxide's compressor allocates and zeroes some 300 KB of tables per stream
//! (a 32 KB-window hash table and dictionary), which costs far more than compressing a
//! few hundred bytes of SDP. This encoder sizes everything by the input instead:
//!
//! - LZ77 with hash chains: the hash head table has one entry per input byte rounded up
//!   to a power of two (256 to 16 384 entries), the chain links one per input byte (at
//!   most a 32 KB ring); both are cleared per body, so a 500-byte SDP clears ~4 KB.
//!   Matches are 3 to 258 bytes at distances up to 32 767. The search effort (chain
//!   length, lazy matching, "nice" length) follows zlib's table for each level.
//! - Each block (up to [`BLOCK_TOKENS`] symbols) is written as whichever of dynamic
//!   Huffman, fixed Huffman or stored is the shortest, as zlib does.
//! - The zlib header (`78 01`/`78 5e`/`78 9c`/`78 da` by level, as zlib writes it) and
//!   the Adler-32 trailer, so zlib's `uncompress` (Kamailio) inflates the stream.
//!
//! Nothing here panics: indexing is bounded by construction and checked with `get`
//! where it is not obvious.

/// Shortest and longest match (RFC 1951).
const MIN_MATCH: usize = 3;
const MAX_MATCH: usize = 258;
/// Farthest match distance: one less than the 32 KB window, so a ring of chain links
/// 32 KB long never hands out an overwritten link.
const MAX_DIST: usize = 32_767;
/// zlib's TOO_FAR: a 3-byte match farther than this costs more than three literals.
const TOO_FAR: usize = 4096;
/// Symbols (literals and matches) per block before a new block (and new Huffman
/// codes) starts.
const BLOCK_TOKENS: usize = 16_384;
/// Blocks covering less input than this are never given dynamic Huffman codes:
/// building and sending them costs more time (measured in wasm: ~15 µs for a
/// 473-byte SDP, against ~5 µs for LZ77 plus fixed codes) than the ~10% of output
/// they save on such small bodies.
const DYNAMIC_MIN_INPUT: usize = 1024;
/// Largest stored block (RFC 1951 LEN is 16 bits).
const MAX_STORED: usize = 65_535;

/// Literal/length alphabet size (0..=285 used; 286 and 287 only in the fixed code).
const LITLEN: usize = 286;
/// Distance alphabet size.
const DISTS: usize = 30;
/// Code length alphabet size.
const CODELENS: usize = 19;
/// Order in which code length code lengths are sent (RFC 1951 3.2.7).
const CL_ORDER: [usize; CODELENS] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; DISTS] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; DISTS] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// Search effort per level, zlib's `configuration_table`: a match at least `good`
/// long quarters the chain searched for a better one; a match at least `lazy` long is
/// taken without looking one byte further (0: never look, zlib's `deflate_fast`); a
/// match `nice` long ends the search; at most `chain` candidates are tried.
#[derive(Clone, Copy)]
struct Effort {
    good: usize,
    lazy: usize,
    nice: usize,
    chain: usize,
}

fn effort(level: u8) -> Effort {
    let (good, lazy, nice, chain) = match level {
        0 | 1 => (4, 0, 8, 4),
        2 => (4, 0, 16, 8),
        3 => (4, 0, 32, 32),
        4 => (4, 4, 16, 16),
        5 => (8, 16, 32, 32),
        6 => (8, 16, 128, 128),
        7 => (8, 32, 128, 256),
        8 => (32, 128, 258, 1024),
        _ => (32, 258, 258, 4096),
    };
    Effort {
        good,
        lazy,
        nice,
        chain,
    }
}

/// Compress `data` into a zlib stream. `level` is zlib's, 1 (fast) to 9 (small);
/// out-of-range values are clamped.
pub fn compress(data: &[u8], level: u8) -> Vec<u8> {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => compress_with(&mut scratch, data, level),
        // Not reentered in practice; a fresh scratch is only slower.
        Err(_) => compress_with(&mut Scratch::new(), data, level),
    })
}

/// Buffers kept between bodies by an instance (single-threaded), so that a body costs
/// no allocation or clearing beyond what its own size needs. They grow to what the
/// largest body needed: at most ~260 KB (a 32 KB ring of chain links, a 16 K-entry
/// hash table, one block of symbols).
struct Scratch {
    head: Vec<u32>,
    prev: Vec<u32>,
    tokens: Vec<Token>,
    huffman: HuffmanScratch,
    runs: Vec<(u8, u8)>,
}

impl Scratch {
    const fn new() -> Self {
        Self {
            head: Vec::new(),
            prev: Vec::new(),
            tokens: Vec::new(),
            huffman: HuffmanScratch {
                leaves: Vec::new(),
                weight: Vec::new(),
                parent: Vec::new(),
            },
            runs: Vec::new(),
        }
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = const { std::cell::RefCell::new(Scratch::new()) };
}

fn compress_with(scratch: &mut Scratch, data: &[u8], level: u8) -> Vec<u8> {
    let level = level.clamp(1, 9);
    let mut w = BitWriter::with_capacity(data.len() / 2 + 64);
    // CMF 0x78: deflate, 32 KB window. FLG: FLEVEL as zlib sets it, FCHECK so that
    // CMF*256 + FLG is a multiple of 31.
    let flevel: u16 = match level {
        1 => 0,
        2..=5 => 1,
        6 => 2,
        _ => 3,
    };
    let header = (0x78u16 << 8) | (flevel << 6);
    let header = header + (31 - header % 31) % 31;
    w.bytes(&header.to_be_bytes());

    let mut lz = Lz77::new(
        data,
        effort(level),
        std::mem::take(&mut scratch.head),
        std::mem::take(&mut scratch.prev),
    );
    let mut block = Block::new(std::mem::take(&mut scratch.tokens));
    loop {
        let done = lz.fill(&mut block);
        block.write(&mut w, data, done, scratch);
        if done {
            break;
        }
        block.reset(lz.pos);
    }
    scratch.head = lz.head;
    scratch.prev = lz.prev;
    scratch.tokens = block.tokens;
    let mut out = w.finish();
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

/// Adler-32 (RFC 1950 8.2).
pub fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    // The largest n with 255 n (n + 1) / 2 + (n + 1)(MOD - 1) < 2^32.
    const NMAX: usize = 5552;
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(NMAX) {
        for &byte in chunk {
            a += u32::from(byte);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

// === LZ77 ===

/// One symbol of a block: a literal byte, or a match (length 3..=258, distance
/// 1..=32 767) packed as `1 << 31 | (length - 3) << 16 | distance`.
type Token = u32;

const MATCH_FLAG: u32 = 1 << 31;

struct Lz77<'a> {
    data: &'a [u8],
    effort: Effort,
    /// Per hash: the last position with it, plus one (0: none).
    head: Vec<u32>,
    /// Per position (mod the ring): the previous position with the same hash, plus one.
    prev: Vec<u32>,
    hash_shift: u32,
    ring_mask: usize,
    /// Next position to encode.
    pos: usize,
    /// A match found at `pos - 1` waiting to see whether `pos` has a longer one
    /// (lazy matching): (length, distance).
    pending: Option<(usize, usize)>,
}

impl<'a> Lz77<'a> {
    /// `head` and `prev` are reused buffers: `head` is cleared (as many entries as
    /// the input needs), `prev` need not be, as every link is written (when its
    /// position is inserted) before it is followed.
    fn new(data: &'a [u8], effort: Effort, mut head: Vec<u32>, mut prev: Vec<u32>) -> Self {
        let n = data.len().max(1);
        let hash_size = n.next_power_of_two().clamp(256, 16_384);
        let ring = n.next_power_of_two().min(32_768);
        head.clear();
        head.resize(hash_size, 0);
        if prev.len() < ring {
            prev.resize(ring, 0);
        }
        Self {
            data,
            effort,
            head,
            prev,
            hash_shift: 32 - hash_size.trailing_zeros(),
            ring_mask: ring - 1,
            pos: 0,
            pending: None,
        }
    }

    /// Insert `pos` (which has at least 3 bytes ahead) into its hash chain and return
    /// the previous head of that chain (position plus one, 0: none).
    #[inline]
    fn insert(&mut self, pos: usize) -> u32 {
        let Some(b) = self.data.get(pos..pos + MIN_MATCH) else {
            return 0;
        };
        let key = u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16;
        let h = (key.wrapping_mul(0x9E37_79B1) >> self.hash_shift) as usize;
        let Some(slot) = self.head.get_mut(h) else {
            return 0;
        };
        let before = *slot;
        *slot = pos as u32 + 1;
        if let Some(link) = self.prev.get_mut(pos & self.ring_mask) {
            *link = before;
        }
        before
    }

    /// The longest match for `pos` among the chain starting at `cand`, longer than
    /// `at_least`: (length, distance), length 0 if none.
    fn longest(&self, pos: usize, mut cand: u32, at_least: usize) -> (usize, usize) {
        let data = self.data;
        let max_len = (data.len() - pos).min(MAX_MATCH);
        if max_len < MIN_MATCH {
            return (0, 0);
        }
        let here = &data[pos..pos + max_len];
        let mut best = at_least.max(MIN_MATCH - 1);
        let mut best_dist = 0;
        if best >= max_len {
            return (0, 0);
        }
        let mut chain = self.effort.chain;
        if at_least >= self.effort.good {
            chain >>= 2;
        }
        let nice = self.effort.nice.min(max_len);
        while cand != 0 && chain > 0 {
            let c = cand as usize - 1;
            let dist = pos - c;
            if dist > MAX_DIST {
                break;
            }
            let there = &data[c..c + max_len];
            // The byte that would make this match the best is checked first.
            if there[best] == here[best] && there[0] == here[0] {
                let len = there.iter().zip(here).take_while(|(a, b)| a == b).count();
                if len > best {
                    best = len;
                    best_dist = dist;
                    if len >= nice {
                        break;
                    }
                }
            }
            let next = self.prev.get(c & self.ring_mask).copied().unwrap_or(0);
            // Links only go back; anything else is a stale ring entry.
            if next >= cand {
                break;
            }
            cand = next;
            chain -= 1;
        }
        if best_dist == 0 || (best == MIN_MATCH && best_dist > TOO_FAR) {
            (0, 0)
        } else {
            (best, best_dist)
        }
    }

    /// Insert the positions a match covers after its first, up to `end`.
    fn skip_to(&mut self, end: usize) {
        while self.pos < end {
            self.insert(self.pos);
            self.pos += 1;
        }
    }

    /// Add symbols to `block` until it is full or the input ends; true at the end.
    fn fill(&mut self, block: &mut Block) -> bool {
        let n = self.data.len();
        let lazy = self.effort.lazy;
        while self.pos < n {
            // A block ends between symbols, never inside a lazy decision, so that
            // it covers exactly the input from `start` to `pos`.
            if block.tokens.len() >= BLOCK_TOKENS && self.pending.is_none() {
                return false;
            }
            let pos = self.pos;
            let cand = self.insert(pos);
            match self.pending.take() {
                Some((plen, pdist)) => {
                    let (len, dist) = if plen < lazy {
                        self.longest(pos, cand, plen)
                    } else {
                        (0, 0)
                    };
                    if len > plen {
                        // A longer match one byte on: the byte before goes as a literal.
                        block.literal(self.data[pos - 1]);
                        self.pending = Some((len, dist));
                        self.pos += 1;
                    } else {
                        block.matched(plen, pdist);
                        self.pos += 1;
                        self.skip_to(pos - 1 + plen);
                    }
                }
                None => {
                    let (len, dist) = self.longest(pos, cand, 0);
                    if len == 0 {
                        block.literal(self.data[pos]);
                        self.pos += 1;
                    } else if len >= lazy {
                        block.matched(len, dist);
                        self.pos += 1;
                        self.skip_to(pos + len);
                    } else {
                        self.pending = Some((len, dist));
                        self.pos += 1;
                    }
                }
            }
        }
        // A pending match always ends before the input does, so none is left here;
        // flush one anyway rather than lose it.
        if let Some((plen, pdist)) = self.pending.take() {
            block.matched(plen, pdist);
        }
        true
    }
}

// === Blocks ===

struct Block {
    tokens: Vec<Token>,
    lit_freq: [u32; LITLEN],
    dist_freq: [u32; DISTS],
    /// Where the block's input starts, and how many bytes it covers (for a stored
    /// block).
    start: usize,
    len: usize,
}

impl Block {
    fn new(mut tokens: Vec<Token>) -> Self {
        tokens.clear();
        Self {
            tokens,
            lit_freq: [0; LITLEN],
            dist_freq: [0; DISTS],
            start: 0,
            len: 0,
        }
    }

    fn reset(&mut self, start: usize) {
        self.tokens.clear();
        self.lit_freq = [0; LITLEN];
        self.dist_freq = [0; DISTS];
        self.start = start;
        self.len = 0;
    }

    #[inline]
    fn literal(&mut self, byte: u8) {
        self.tokens.push(u32::from(byte));
        self.lit_freq[usize::from(byte)] += 1;
        self.len += 1;
    }

    #[inline]
    fn matched(&mut self, len: usize, dist: usize) {
        self.tokens
            .push(MATCH_FLAG | ((len - MIN_MATCH) as u32) << 16 | dist as u32);
        self.lit_freq[257 + len_code(len)] += 1;
        self.dist_freq[dist_code(dist)] += 1;
        self.len += len;
    }

    /// Write the block (and its end-of-block code) in the shortest of the three forms.
    fn write(&mut self, w: &mut BitWriter, data: &[u8], last: bool, scratch: &mut Scratch) {
        self.lit_freq[256] += 1;
        let bfinal = u32::from(last);

        // Extra bits are the same in both Huffman forms.
        let extra: u64 = self.lit_freq[257..]
            .iter()
            .zip(LEN_EXTRA)
            .chain(self.dist_freq.iter().zip(DIST_EXTRA))
            .map(|(&f, e)| u64::from(f) * u64::from(e))
            .sum();

        let fixed_bits =
            3 + extra + cost(&self.lit_freq, &FIXED_LIT.1) + cost(&self.dist_freq, &FIXED_DIST.1);

        let input = data
            .get(self.start..self.start + self.len)
            .unwrap_or_default();
        let stored_chunks = input.len().div_ceil(MAX_STORED).max(1) as u64;
        // Worst-case alignment padding, then LEN/NLEN and the bytes, per chunk.
        let stored_bits = stored_chunks * (3 + 7 + 32) + 8 * input.len() as u64;

        if self.len < DYNAMIC_MIN_INPUT {
            if stored_bits < fixed_bits {
                write_stored(w, input, last);
            } else {
                w.put(bfinal | 1 << 1, 3);
                self.write_tokens(w, &FIXED_LIT, &FIXED_DIST);
            }
            return;
        }
        let hs = &mut scratch.huffman;
        let lit_lens = code_lengths::<LITLEN>(&self.lit_freq, 15, hs);
        let dist_lens = code_lengths::<DISTS>(&self.dist_freq, 15, hs);
        let header =
            DynamicHeader::new(&lit_lens, &dist_lens, std::mem::take(&mut scratch.runs), hs);
        let dynamic_bits = 3
            + extra
            + header.bits()
            + cost(&self.lit_freq, &lit_lens)
            + cost(&self.dist_freq, &dist_lens);

        if stored_bits < fixed_bits.min(dynamic_bits) {
            write_stored(w, input, last);
        } else if dynamic_bits < fixed_bits {
            w.put(bfinal | 2 << 1, 3);
            header.write(w);
            let lit = Codes::new(&lit_lens);
            let dist = Codes::new(&dist_lens);
            self.write_tokens(w, &lit, &dist);
        } else {
            w.put(bfinal | 1 << 1, 3);
            self.write_tokens(w, &FIXED_LIT, &FIXED_DIST);
        }
        scratch.runs = header.runs;
    }

    fn write_tokens<const L: usize, const D: usize>(
        &self,
        w: &mut BitWriter,
        lit: &Codes<L>,
        dist: &Codes<D>,
    ) {
        for &t in &self.tokens {
            if t & MATCH_FLAG == 0 {
                lit.put(w, t as usize);
            } else {
                let len = ((t >> 16) & 0x1ff) as usize + MIN_MATCH;
                let d = (t & 0xffff) as usize;
                let lc = len_code(len);
                lit.put(w, 257 + lc);
                w.put(
                    (len - usize::from(LEN_BASE[lc])) as u32,
                    u32::from(LEN_EXTRA[lc]),
                );
                let dc = dist_code(d);
                dist.put(w, dc);
                w.put(
                    (d - usize::from(DIST_BASE[dc])) as u32,
                    u32::from(DIST_EXTRA[dc]),
                );
            }
        }
        lit.put(w, 256);
    }
}

fn write_stored(w: &mut BitWriter, input: &[u8], last: bool) {
    let mut chunks = input.chunks(MAX_STORED).peekable();
    if chunks.peek().is_none() {
        w.put(u32::from(last), 3);
        w.align();
        w.bytes(&[0, 0, 0xff, 0xff]);
        return;
    }
    while let Some(chunk) = chunks.next() {
        let final_chunk = last && chunks.peek().is_none();
        w.put(u32::from(final_chunk), 3);
        w.align();
        let len = chunk.len() as u16;
        w.bytes(&len.to_le_bytes());
        w.bytes(&(!len).to_le_bytes());
        w.bytes(chunk);
    }
}

/// Length symbol (0 for 257) of a match length 3..=258.
#[inline]
fn len_code(len: usize) -> usize {
    let l = len - MIN_MATCH;
    if l < 8 {
        l
    } else if len == MAX_MATCH {
        28
    } else {
        let nb = usize::BITS - 1 - l.leading_zeros();
        let nb = nb as usize;
        4 * (nb - 1) + ((l >> (nb - 2)) & 3)
    }
}

/// Distance symbol of a distance 1..=32 768.
#[inline]
fn dist_code(dist: usize) -> usize {
    let d = dist - 1;
    if d < 4 {
        d
    } else {
        let nb = (usize::BITS - 1 - d.leading_zeros()) as usize;
        2 * nb + ((d >> (nb - 1)) & 1)
    }
}

/// Bits the symbols of `freq` take with code lengths `lens`.
fn cost(freq: &[u32], lens: &[u8]) -> u64 {
    freq.iter()
        .zip(lens)
        .map(|(&f, &l)| u64::from(f) * u64::from(l))
        .sum()
}

// === Huffman codes ===

/// Code lengths for `freq`, none longer than `limit`. At least two symbols get a code
/// (as zlib does: a single used code still takes one bit, and the code is complete).
fn code_lengths<const N: usize>(freq: &[u32; N], limit: u32, hs: &mut HuffmanScratch) -> [u8; N] {
    let mut lens = [0u8; N];
    let mut f = *freq;
    let used = f.iter().filter(|&&x| x > 0).count();
    if used < 2 {
        // One or no symbol: two one-bit codes, the used one and symbol 0 or 1.
        let first = f.iter().position(|&x| x > 0).unwrap_or(0);
        let other = usize::from(first == 0);
        lens[first] = 1;
        lens[other] = 1;
        return lens;
    }
    loop {
        if huffman(&f, &mut lens, hs) <= limit {
            return lens;
        }
        // Too deep: flatten the frequencies and build again. With all frequencies 1
        // the depth is ceil(log2(used)), within every limit used here.
        for x in f.iter_mut().filter(|x| **x > 0) {
            *x = (*x >> 1) | 1;
        }
    }
}

/// Buffers for [`huffman`], reused.
struct HuffmanScratch {
    leaves: Vec<u64>,
    weight: Vec<u64>,
    parent: Vec<u16>,
}

/// Huffman code lengths for the non-zero frequencies in `freq` (at least two), into
/// `lens`; returns the longest. Two-queue construction over the sorted leaves.
fn huffman<const N: usize>(freq: &[u32; N], lens: &mut [u8; N], hs: &mut HuffmanScratch) -> u32 {
    // Leaves as `frequency << 16 | symbol`, sorted: by frequency, then symbol.
    let leaves = &mut hs.leaves;
    leaves.clear();
    for (s, &f) in freq.iter().enumerate() {
        if f > 0 {
            leaves.push(u64::from(f) << 16 | s as u64);
        }
    }
    leaves.sort_unstable();
    let n = leaves.len();
    if n < 2 {
        return 0;
    }
    // Nodes 0..n are the leaves, n..2n-1 the internal nodes in creation order, each
    // as heavy as the one before or heavier.
    let weight = &mut hs.weight;
    let parent = &mut hs.parent;
    weight.clear();
    weight.extend(leaves.iter().map(|&l| l >> 16));
    parent.clear();
    parent.resize(2 * n - 1, 0);
    let (mut leaf, mut inner) = (0, n);
    for k in n..2 * n - 1 {
        let mut pick = |weight: &Vec<u64>| {
            if leaf < n && (inner >= k || weight[leaf] <= weight[inner]) {
                leaf += 1;
                leaf - 1
            } else {
                inner += 1;
                inner - 1
            }
        };
        let a = pick(weight);
        let b = pick(weight);
        weight.push(weight[a] + weight[b]);
        parent[a] = k as u16;
        parent[b] = k as u16;
    }
    // Depths, from the root (the last node) down: parents come after their children.
    // `weight` is reused for them.
    let root = 2 * n - 2;
    weight[root] = 0;
    for i in (0..root).rev() {
        weight[i] = weight[usize::from(parent[i])] + 1;
    }
    lens.fill(0);
    let mut longest = 0;
    for (&l, &depth) in leaves.iter().zip(weight.iter()) {
        let depth = depth.min(255) as u8;
        if let Some(len) = lens.get_mut((l & 0xffff) as usize) {
            *len = depth;
        }
        longest = longest.max(u32::from(depth));
    }
    longest
}

/// Canonical codes (bit-reversed, ready to send LSB first) and their lengths.
struct Codes<const N: usize>([u16; N], [u8; N]);

impl<const N: usize> Codes<N> {
    const fn new(lens: &[u8; N]) -> Self {
        // Four histograms, so that runs of equal lengths (mostly zeros) do not make
        // one long chain of increments to the same counter.
        let mut counts = [[0u16; 16]; 4];
        let mut i = 0;
        while i < N {
            counts[i % 4][lens[i] as usize] += 1;
            i += 1;
        }
        let mut count = [0u16; 16];
        let mut b = 1;
        while b < 16 {
            count[b] = counts[0][b] + counts[1][b] + counts[2][b] + counts[3][b];
            b += 1;
        }
        let mut next = [0u16; 16];
        let mut code = 0u16;
        let mut bits = 1;
        while bits < 16 {
            code = (code + count[bits - 1]) << 1;
            next[bits] = code;
            bits += 1;
        }
        let mut codes = [0u16; N];
        let mut i = 0;
        while i < N {
            let len = lens[i] as usize;
            if len > 0 {
                codes[i] = next[len].reverse_bits() >> (16 - len);
                next[len] += 1;
            }
            i += 1;
        }
        Self(codes, *lens)
    }

    #[inline]
    fn put(&self, w: &mut BitWriter, sym: usize) {
        if let (Some(&code), Some(&len)) = (self.0.get(sym), self.1.get(sym)) {
            w.put(u32::from(code), u32::from(len));
        }
    }
}

/// The fixed literal/length code (RFC 1951 3.2.6), all 288 symbols.
static FIXED_LIT: Codes<288> = Codes::new(&{
    let mut l = [8u8; 288];
    let mut i = 144;
    while i < 256 {
        l[i] = 9;
        i += 1;
    }
    while i < 280 {
        l[i] = 7;
        i += 1;
    }
    l
});

/// The fixed distance code: 5 bits each.
static FIXED_DIST: Codes<30> = Codes::new(&[5; 30]);

/// The code lengths of a dynamic block, run-length coded (RFC 1951 3.2.7), and the
/// code that sends them.
struct DynamicHeader {
    hlit: usize,
    hdist: usize,
    hclen: usize,
    /// (symbol 0..=18, extra bits value).
    runs: Vec<(u8, u8)>,
    cl_lens: [u8; CODELENS],
}

impl DynamicHeader {
    fn new(
        lit: &[u8; LITLEN],
        dist: &[u8; DISTS],
        mut runs: Vec<(u8, u8)>,
        hs: &mut HuffmanScratch,
    ) -> Self {
        let hlit = 257.max(LITLEN - lit.iter().rev().take_while(|&&l| l == 0).count());
        let hdist = 1.max(DISTS - dist.iter().rev().take_while(|&&l| l == 0).count());
        let mut buf = [0u8; LITLEN + DISTS];
        buf[..hlit].copy_from_slice(&lit[..hlit]);
        buf[hlit..hlit + hdist].copy_from_slice(&dist[..hdist]);
        let all = &buf[..hlit + hdist];
        runs.clear();
        let mut cl_freq = [0u32; CODELENS];
        let mut i = 0;
        while i < all.len() {
            let l = all[i];
            let run = all[i..].iter().take_while(|&&x| x == l).count();
            let mut left = run;
            if l == 0 {
                while left >= 11 {
                    let r = left.min(138);
                    runs.push((18, (r - 11) as u8));
                    left -= r;
                }
                if left >= 3 {
                    runs.push((17, (left - 3) as u8));
                    left = 0;
                }
            } else {
                runs.push((l, 0));
                left -= 1;
                while left >= 3 {
                    let r = left.min(6);
                    runs.push((16, (r - 3) as u8));
                    left -= r;
                }
            }
            for _ in 0..left {
                runs.push((l, 0));
            }
            i += run;
        }
        for &(s, _) in &runs {
            cl_freq[usize::from(s)] += 1;
        }
        let cl_lens = code_lengths::<CODELENS>(&cl_freq, 7, hs);
        let hclen = 4.max(
            CODELENS
                - CL_ORDER
                    .iter()
                    .rev()
                    .take_while(|&&s| cl_lens[s] == 0)
                    .count(),
        );
        Self {
            hlit,
            hdist,
            hclen,
            runs,
            cl_lens,
        }
    }

    /// Bits the header takes after BTYPE.
    fn bits(&self) -> u64 {
        let runs: u64 = self
            .runs
            .iter()
            .map(|&(s, _)| {
                u64::from(self.cl_lens[usize::from(s)])
                    + match s {
                        16 => 2,
                        17 => 3,
                        18 => 7,
                        _ => 0,
                    }
            })
            .sum();
        5 + 5 + 4 + 3 * self.hclen as u64 + runs
    }

    fn write(&self, w: &mut BitWriter) {
        w.put((self.hlit - 257) as u32, 5);
        w.put((self.hdist - 1) as u32, 5);
        w.put((self.hclen - 4) as u32, 4);
        for &s in &CL_ORDER[..self.hclen] {
            w.put(u32::from(self.cl_lens[s]), 3);
        }
        let cl = Codes::new(&self.cl_lens);
        for &(s, extra) in &self.runs {
            cl.put(w, usize::from(s));
            match s {
                16 => w.put(u32::from(extra), 2),
                17 => w.put(u32::from(extra), 3),
                18 => w.put(u32::from(extra), 7),
                _ => {}
            }
        }
    }
}

// === Bits ===

/// Writes bits LSB first (RFC 1951 3.1.1).
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter {
    fn with_capacity(cap: usize) -> Self {
        Self {
            out: Vec::with_capacity(cap),
            acc: 0,
            n: 0,
        }
    }

    /// Append the low `count` (at most 16) bits of `bits`.
    #[inline]
    fn put(&mut self, bits: u32, count: u32) {
        self.acc |= u64::from(bits & ((1 << count) - 1)) << self.n;
        self.n += count;
        if self.n >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.n -= 32;
        }
    }

    /// Pad to a byte boundary and write out every whole byte.
    fn align(&mut self) {
        let bytes = self.n.div_ceil(8);
        for _ in 0..bytes {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
        }
        self.acc = 0;
        self.n = 0;
    }

    /// Whole bytes, after aligning.
    fn bytes(&mut self, b: &[u8]) {
        self.align();
        self.out.extend_from_slice(b);
    }

    fn finish(mut self) -> Vec<u8> {
        self.align();
        self.out
    }
}
