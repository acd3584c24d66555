//! Transaction keys (RFC 3261 §17.1.3, §17.2.3) and where messages come from.

use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::net::SocketAddr;

use weir_message::{HeaderError, Message, Method};

use crate::error::{Error, Result};

/// RFC 3261 magic cookie: a branch starting with it is globally unique.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// The transport a message travelled on. Only reliability matters here: on reliable
/// transports nothing is retransmitted and the absorb timers (D, I, J, K) are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: unreliable, retransmissions on.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// SCTP.
    Sctp,
    /// WebSocket.
    Ws,
    /// Secure WebSocket.
    Wss,
}

impl Transport {
    /// Whether the transport delivers reliably (everything but UDP).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

/// The far end of one side of a transaction: where a request came from, or where a
/// branch goes. `listener` is opaque here: the proxy's index of the socket to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    /// Remote address.
    pub addr: SocketAddr,
    /// Transport.
    pub transport: Transport,
    /// The proxy's listener (local socket) index.
    pub listener: usize,
}

/// A fast hash for ids Weir makes itself ([`TxId`], timer ids), never for anything a peer
/// chooses (branches, Call-IDs: those use [`PeerHash`], seeded at random per process).
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher(u64);

impl IdHasher {
    fn add(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // murmur3's finaliser: ids differ in their high bits (a shard's ids share their
        // low 8), and the table's bucket index takes the low ones.
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.add(u64::from(*b));
        }
    }
    fn write_u8(&mut self, v: u8) {
        self.add(u64::from(v));
    }
    fn write_u16(&mut self, v: u16) {
        self.add(u64::from(v));
    }
    fn write_u32(&mut self, v: u32) {
        self.add(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }
    fn write_usize(&mut self, v: usize) {
        self.add(v as u64);
    }
    fn write_isize(&mut self, v: isize) {
        self.add(v as u64);
    }
}

/// [`IdHasher`] for `HashMap`s keyed by our own ids.
pub type IdHash = BuildHasherDefault<IdHasher>;

/// The hash for maps keyed by what peers choose (branches, hosts, Call-IDs): foldhash
/// with random seeds (ADR 0008), several times cheaper than the standard library's
/// SipHash on these short keys. A map made with `Default` gets its own seed.
pub type PeerHash = foldhash::fast::RandomState;

/// One seed per process for [`ServerKey::shard_hash`] / [`ClientKey::shard_hash`], which
/// must agree across calls (the shard of a key) but need not across runs.
static SHARD_HASH: std::sync::LazyLock<PeerHash> = std::sync::LazyLock::new(PeerHash::default);

fn shard_hasher() -> foldhash::fast::FoldHasher<'static> {
    use std::hash::BuildHasher;
    SHARD_HASH.build_hasher()
}

/// Identifies one transaction in a [`TransactionTable`](crate::TransactionTable). Never
/// reused, so a stale id simply finds nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub(crate) u64);

impl TxId {
    /// Bits of the id that select the shard.
    pub(crate) const SHARD_BITS: u32 = 8;

    pub(crate) fn new(shard: usize, seq: u64) -> TxId {
        // shard < 256 by construction (TableConfig::shards is clamped).
        TxId((seq << Self::SHARD_BITS) | (shard as u64 & 0xff))
    }

    pub(crate) fn shard(self) -> usize {
        (self.0 & 0xff) as usize
    }

    /// The id as a number (for modules: `message.transaction-id`); never 0.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The id a number from [`as_u64`](Self::as_u64) stands for. A number that was
    /// never an id simply finds no transaction.
    pub fn from_u64(n: u64) -> TxId {
        TxId(n)
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "T{:x}", self.0)
    }
}

/// The method part of a key: ACK matches its INVITE (§17.2.3); CANCEL has its own
/// transaction.
fn key_method(m: &Method) -> Method {
    match m {
        Method::Ack => Method::Invite,
        other => other.clone(),
    }
}

/// Key of a server transaction.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ServerKey {
    /// §17.2.3: top-Via branch (with the magic cookie), sent-by and method.
    Rfc3261 {
        /// The sent-by host, lowercased, then the branch, compared exactly: one block
        /// for both (one allocation per request less, one free less per reaped
        /// transaction). Equal exactly when both parts are, given `host_len`.
        host_branch: Box<str>,
        /// Where the branch starts in `host_branch`.
        host_len: usize,
        /// sent-by port as written.
        port: Option<u16>,
        /// Request method (ACK counted as INVITE).
        method: Method,
    },
    /// RFC 2543 fallback for branches without the cookie: Request-URI, From tag,
    /// Call-ID, CSeq number and the whole top Via.
    Rfc2543 {
        /// Request-URI as written.
        request_uri: String,
        /// From tag.
        from_tag: Option<String>,
        /// Call-ID.
        call_id: String,
        /// CSeq number.
        cseq: u32,
        /// Top via-parm, re-serialised.
        via: String,
        /// Request method (ACK counted as INVITE).
        method: Method,
    },
}

impl ServerKey {
    /// The key of a request (ACK keyed as its INVITE).
    pub fn of(req: &Message) -> Result<ServerKey> {
        let method = req
            .method()
            .ok_or(Error::WrongKind("response where a request was expected"))?;
        // Borrowed: only what the key keeps is copied.
        let top = req.top_via_ref()?;
        match top.branch() {
            Some(b) if b.starts_with(MAGIC_COOKIE) => Ok(ServerKey::Rfc3261 {
                host_branch: {
                    let mut s = String::with_capacity(top.host.len() + b.len());
                    s.push_str(top.host);
                    s.make_ascii_lowercase();
                    s.push_str(b);
                    s.into_boxed_str()
                },
                host_len: top.host.len(),
                port: top.port,
                method: key_method(method),
            }),
            _ => Ok(ServerKey::Rfc2543 {
                request_uri: req.request_uri().unwrap_or_default().to_string(),
                from_tag: req.from_tag(),
                call_id: req
                    .call_id()
                    .ok_or(HeaderError::Missing { name: "Call-ID" })?
                    .to_string(),
                cseq: req.cseq()?.seq,
                via: req.top_via()?.to_string(),
                method: key_method(method),
            }),
        }
    }

    /// The same transaction key for another method (CANCEL → its INVITE).
    pub fn with_method(&self, m: Method) -> ServerKey {
        let mut k = self.clone();
        match &mut k {
            ServerKey::Rfc3261 { method, .. } | ServerKey::Rfc2543 { method, .. } => *method = m,
        }
        k
    }

    /// The method of the key.
    pub fn method(&self) -> &Method {
        match self {
            ServerKey::Rfc3261 { method, .. } | ServerKey::Rfc2543 { method, .. } => method,
        }
    }

    /// Whether this is an RFC 2543 (cookie-less) key.
    pub fn is_rfc2543(&self) -> bool {
        matches!(self, ServerKey::Rfc2543 { .. })
    }

    /// Hash of the whole key (method included), for the shard's index of server
    /// transactions; a transaction keeps it, so removing it needs no hashing.
    pub(crate) fn table_hash(&self) -> u64 {
        let mut h = shard_hasher();
        self.hash(&mut h);
        h.finish()
    }

    /// Hash of everything but the method, so an INVITE, its ACK and its CANCEL land in
    /// the same shard and are handled under one lock.
    pub(crate) fn shard_hash(&self) -> u64 {
        let mut h = shard_hasher();
        match self {
            ServerKey::Rfc3261 {
                host_branch,
                host_len,
                port,
                ..
            } => {
                host_branch.hash(&mut h);
                host_len.hash(&mut h);
                port.hash(&mut h);
            }
            ServerKey::Rfc2543 {
                request_uri,
                from_tag,
                call_id,
                cseq,
                via,
                ..
            } => {
                request_uri.hash(&mut h);
                from_tag.hash(&mut h);
                call_id.hash(&mut h);
                cseq.hash(&mut h);
                via.hash(&mut h);
            }
        }
        h.finish()
    }
}

/// The end of a branch that names its transaction, `.<n>t<id>` in hex: the proxy
/// appends it to the branches it generates for
/// [`TransactionTable::forward`](crate::TransactionTable::forward), `n` making each
/// branch unique. A response whose
/// branch names a live transaction is matched in that transaction's own branches
/// (Kamailio puts its hash index and label in the branch for the same reason), with no
/// client index to insert into, look up and clean: the index remains for branches
/// made any other way. The name is only a hint: a branch matches a client
/// transaction only if it is exactly that transaction's branch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BranchSuffix {
    /// The transaction the branch belongs to.
    pub tx: TxId,
    /// Unique per branch (the proxy's counter).
    pub n: u64,
}

impl BranchSuffix {
    /// The longest suffix: a dot, 16 hex digits, `t`, 16 hex digits.
    pub const MAX_LEN: usize = 34;

    /// The transaction a branch names, if it ends like a [`BranchSuffix`].
    pub fn tx_of(branch: &str) -> Option<TxId> {
        // From the end: the id's hex digits, `t`, the counter's, `.`.
        let mut bytes = branch.bytes().rev();
        let mut id = 0u64;
        let mut digits = 0;
        loop {
            let b = bytes.next()?;
            if b == b't' {
                break;
            }
            let d = char::from(b).to_digit(16)?;
            if digits == 16 {
                return None;
            }
            id |= u64::from(d) << (4 * digits);
            digits += 1;
        }
        if digits == 0 {
            return None;
        }
        let mut n_digits = 0;
        loop {
            let b = bytes.next()?;
            if b == b'.' {
                break;
            }
            if !b.is_ascii_hexdigit() || n_digits == 16 {
                return None;
            }
            n_digits += 1;
        }
        (n_digits > 0).then_some(TxId(id))
    }
}

impl BranchSuffix {
    /// Append the suffix to `out` (as its `Display` does, without `core::fmt`).
    pub fn push_to(&self, out: &mut String) {
        out.push('.');
        weir_message::push_hex(out, self.n, 1);
        out.push('t');
        weir_message::push_hex(out, self.tx.0, 1);
    }
}

impl fmt::Display for BranchSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, ".{:x}t{:x}", self.n, self.tx.0)
    }
}

/// Key of a client transaction (§17.1.3): the branch Weir put in its Via, and the CSeq
/// method (a branch's INVITE and its CANCEL share the branch).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey {
    /// Our branch.
    pub branch: String,
    /// CSeq method.
    pub method: Method,
}

impl ClientKey {
    /// Key of a request we are about to send: its top Via branch and its method.
    pub fn of_request(req: &Message) -> Result<ClientKey> {
        let method = req
            .method()
            .ok_or(Error::WrongKind("response where a request was expected"))?
            .clone();
        let branch = req
            .top_via_ref()?
            .branch()
            .map(str::to_string)
            .ok_or(Error::BadBranch)?;
        if branch.is_empty() {
            return Err(Error::BadBranch);
        }
        Ok(ClientKey { branch, method })
    }

    /// Key a response matches: its top Via branch and its CSeq method.
    pub fn of_response(resp: &Message) -> Result<ClientKey> {
        if resp.is_request() {
            return Err(Error::WrongKind("request where a response was expected"));
        }
        let branch = resp
            .top_via_ref()?
            .branch()
            .map(str::to_string)
            .ok_or(Error::BadBranch)?;
        Ok(ClientKey {
            branch,
            method: resp.cseq()?.method,
        })
    }

    pub(crate) fn shard_hash(&self) -> u64 {
        let mut h = shard_hasher();
        self.branch.hash(&mut h);
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::req;

    #[test]
    fn ack_and_invite_share_a_key_cancel_does_not() {
        let inv = req("INVITE", "z9hG4bKabc", "");
        let ack = req("ACK", "z9hG4bKabc", "");
        let cancel = req("CANCEL", "z9hG4bKabc", "");
        let k = ServerKey::of(&inv).unwrap();
        assert_eq!(k, ServerKey::of(&ack).unwrap());
        let kc = ServerKey::of(&cancel).unwrap();
        assert_ne!(k, kc);
        assert_eq!(kc.with_method(Method::Invite), k);
        assert_eq!(k.shard_hash(), kc.shard_hash());
        assert!(!k.is_rfc2543());
    }

    #[test]
    fn sent_by_is_part_of_the_key() {
        let a = req("OPTIONS", "z9hG4bKabc", "");
        let mut b = a.clone();
        let v = b
            .headers
            .get("Via")
            .unwrap()
            .replace("192.0.2.1", "192.0.2.99");
        b.headers.set("Via", v);
        assert_ne!(ServerKey::of(&a).unwrap(), ServerKey::of(&b).unwrap());
    }

    #[test]
    fn host_and_branch_compare_as_two_parts() {
        let key = |via: &str| {
            let mut m = req("OPTIONS", "z9hG4bKabc", "");
            m.headers.set("Via", via);
            ServerKey::of(&m).unwrap()
        };
        // The host without regard to case, the branch exactly.
        assert_eq!(
            key("SIP/2.0/UDP Host.Example:5060;branch=z9hG4bKabc"),
            key("SIP/2.0/UDP host.example:5060;branch=z9hG4bKabc")
        );
        assert_ne!(
            key("SIP/2.0/UDP host.example:5060;branch=z9hG4bKabc"),
            key("SIP/2.0/UDP host.example:5060;branch=z9hG4bKABC")
        );
        // The same bytes end to end, split elsewhere: different keys.
        assert_ne!(
            key("SIP/2.0/UDP hostz9hG4bK;branch=z9hG4bKabc"),
            key("SIP/2.0/UDP host;branch=z9hG4bKz9hG4bKabc")
        );
        assert_ne!(
            key("SIP/2.0/UDP host.example:5060;branch=z9hG4bKabc"),
            key("SIP/2.0/UDP host.example:5061;branch=z9hG4bKabc")
        );
    }

    #[test]
    fn rfc2543_fallback_uses_dialog_fields() {
        let inv = req("INVITE", "old1", "");
        let k = ServerKey::of(&inv).unwrap();
        assert!(k.is_rfc2543());
        let ack = req("ACK", "old1", "");
        assert_eq!(k, ServerKey::of(&ack).unwrap());
        let mut other = inv.clone();
        other.headers.set("CSeq", "2 INVITE");
        assert_ne!(k, ServerKey::of(&other).unwrap());
    }

    #[test]
    fn client_keys() {
        let inv = req("INVITE", "z9hG4bKw1", "");
        let k = ClientKey::of_request(&inv).unwrap();
        assert_eq!(k.branch, "z9hG4bKw1");
        let resp = inv.reply(180, "", Some("t"));
        assert_eq!(ClientKey::of_response(&resp).unwrap(), k);
        assert!(ClientKey::of_response(&inv).is_err());
    }

    #[test]
    fn a_branch_suffix_names_its_transaction() {
        let tx = TxId::new(3, 0x1234_5678_9abc);
        let b = format!("z9hG4bKw0x00ff{}", BranchSuffix { tx, n: 42 });
        assert_eq!(b, format!("z9hG4bKw0x00ff.2at{:x}", tx.as_u64()));
        assert_eq!(BranchSuffix::tx_of(&b), Some(tx));
        let full = format!("z9hG4bKw0x00ff{}", BranchSuffix { tx, n: u64::MAX });
        let mut pushed = String::from("z9hG4bKw0x00ff");
        BranchSuffix { tx, n: u64::MAX }.push_to(&mut pushed);
        assert_eq!(pushed, full);
        assert!(full.len() <= "z9hG4bKw0x00ff".len() + BranchSuffix::MAX_LEN);
        assert_eq!(BranchSuffix::tx_of(&full), Some(tx));
        for other in [
            "z9hG4bKabc",
            "z9hG4bKw1",
            "z9hG4bK.t1x",
            "z9hG4bK.1t",
            "z9hG4bK.t1",
            "z9hG4bKt1",
        ] {
            assert_eq!(BranchSuffix::tx_of(other), None, "{other}");
        }
    }

    #[test]
    fn tx_id_packs_the_shard() {
        let id = TxId::new(7, 42);
        assert_eq!(id.shard(), 7);
        assert_ne!(id, TxId::new(7, 43));
        assert_eq!(id.to_string(), format!("T{:x}", (42u64 << 8) | 7));
    }
}
