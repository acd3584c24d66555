//! SDP parsing and editing, byte for byte, with the semantics of Kamailio's sdpops.
//!
//! The body is split into lines that keep their own line ends (CRLF, LF, or none on a
//! last line), so every line the edits do not touch is written back exactly as it came.
//! Edits only delete: whole lines, whole media sections, and payload types from `m=`
//! lines (the PT and the space before it, as Kamailio's `sdp_remove_str_codec_id` does).
//!
//! Nothing here panics on any input: every index is checked, and a body that is not
//! SDP as Kamailio's parser understands it is reported as [`Malformed`] and left alone.

use std::fmt;

/// Kamailio's static name -> payload type table (`sdpops_data.c`). A name found here
/// resolves to these ids only: dynamic payload types with the same encoding name are
/// not looked up ("the static table is exclusive").
pub const STATIC_CODECS: &[(&str, &[&str])] = &[
    ("PCMU", &["0"]),
    ("GSM", &["3"]),
    ("G723", &["4"]),
    ("DVI4", &["5", "6", "16", "17"]),
    ("LPC", &["7"]),
    ("PCMA", &["8"]),
    ("G722", &["9"]),
    ("L16", &["10", "11"]),
    ("QCELP", &["12"]),
    ("CN", &["13"]),
    ("MPA", &["14"]),
    ("G728", &["15"]),
    ("G729", &["18"]),
];

/// Kamailio stops looking for dynamic payload types of one name after this many; a name
/// with more matches resolves to nothing (`SDPOPS_CIDS_SIZE`).
pub const MAX_IDS_PER_NAME: usize = 16;

/// Kamailio builds the resolved id list (`"8,3,101"`) in a buffer of this size; a list
/// that does not fit fails the whole operation (`SDPOPS_MAX_LIST_SIZE`).
pub const MAX_ID_LIST: usize = 128;

/// The attribute lines that follow a payload type (`sdp_remove_str_codec_id_attrs`).
const PT_ATTRS: [&[u8]; 3] = [b"a=rtpmap:", b"a=fmtp:", b"a=rtcp-fb:"];

// === Ops ===

/// The edits to make, validated and normalised by the module's `init`.
#[derive(Debug, Default, Clone)]
pub struct Ops {
    /// Media types whose sections are removed (`sdp_remove_media`), lower case.
    pub remove_media: Vec<String>,
    /// Transport protocols whose sections are removed (`sdp_remove_transport`), lower
    /// case.
    pub remove_transport: Vec<String>,
    /// Payload types to remove (`sdp_remove_codecs_by_id`).
    pub remove_ids: Vec<String>,
    /// Encoding names to remove (`sdp_remove_codecs_by_name`).
    pub remove_names: Vec<String>,
    /// Payload types to keep (`sdp_keep_codecs_by_id`); `None`: no keep step.
    pub keep_ids: Option<Vec<String>>,
    /// Encoding names to keep (`sdp_keep_codecs_by_name`); `None`: no keep step.
    pub keep_names: Option<Vec<String>>,
    /// Restrict the codec edits and `line_prefixes` to streams of this media type.
    pub media_type: Option<String>,
    /// Line prefixes to remove (`sdp_remove_line_by_prefix`), case-sensitive.
    pub line_prefixes: Vec<String>,
}

impl Ops {
    /// True if no edit is configured.
    pub fn is_empty(&self) -> bool {
        self.remove_media.is_empty()
            && self.remove_transport.is_empty()
            && self.remove_ids.is_empty()
            && self.remove_names.is_empty()
            && self.keep_ids.is_none()
            && self.keep_names.is_none()
            && self.line_prefixes.is_empty()
    }
}

// === Malformed ===

/// Why a body is not SDP that the module edits (mirrors what makes Kamailio's
/// `parse_sdp` fail, so Kamailio would not have edited it either).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// No `v=` line.
    NoVersion,
    /// No `o=` line after `v=`.
    NoOrigin,
    /// No `m=` line after `o=`.
    NoMedia,
    /// The `m=` line (1-based line number) lacks media, port or protocol.
    BadMediaLine(usize),
    /// The stream of the `m=` line (1-based line number) has no `c=` line of its own
    /// and the session has none either.
    NoConnection(usize),
    /// The `c=` line (1-based line number) is not `c=<nettype> IP4|IP6 <address>`.
    BadConnection(usize),
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::NoVersion => write!(f, "no v= line"),
            Malformed::NoOrigin => write!(f, "no o= line after v="),
            Malformed::NoMedia => write!(f, "no m= line after o="),
            Malformed::BadMediaLine(n) => {
                write!(f, "line {n}: m= line without media, port and protocol")
            }
            Malformed::NoConnection(n) => {
                write!(f, "line {n}: stream without a c= line (and no session c=)")
            }
            Malformed::BadConnection(n) => {
                write!(f, "line {n}: c= line is not `IN IP4|IP6 <address>`")
            }
        }
    }
}

/// An operation that was skipped, as Kamailio's call would have failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// The ids resolved from `remove_codecs_by_name` do not fit Kamailio's list.
    RemoveListTooLong,
    /// The ids resolved from `keep_codecs_by_name` do not fit Kamailio's list.
    KeepListTooLong,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let param = match self {
            Skipped::RemoveListTooLong => "remove_codecs_by_name",
            Skipped::KeepListTooLong => "keep_codecs_by_name",
        };
        write!(
            f,
            "{param} skipped: the resolved payload types exceed {MAX_ID_LIST} characters"
        )
    }
}

// === Sdp ===

/// One line: its text without the line end, and the line end itself.
#[derive(Debug)]
struct Line<'a> {
    text: &'a [u8],
    eol: &'a [u8],
    removed: bool,
}

/// One payload type token of an `m=` line.
#[derive(Debug)]
struct Fmt {
    /// Byte range of the token within the `m=` line's text.
    start: usize,
    end: usize,
    removed: bool,
}

/// One media description: the `m=` line and the lines up to the next `m=` line.
#[derive(Debug)]
struct Stream<'a> {
    /// Index of the `m=` line.
    m: usize,
    /// Index one past the last line of the section.
    end: usize,
    media: &'a [u8],
    proto: &'a [u8],
    fmts: Vec<Fmt>,
    removed: bool,
}

/// A parsed SDP body with its pending edits.
#[derive(Debug)]
pub struct Sdp<'a> {
    lines: Vec<Line<'a>>,
    streams: Vec<Stream<'a>>,
    changed: bool,
}

impl<'a> Sdp<'a> {
    /// Parse `body` the way Kamailio's `parse_sdp_session` accepts it: a `v=` line, an
    /// `o=` line after it, at least one `m=` line after that, each `m=` line with media,
    /// port and protocol, and a `c=` line for each stream (its own, or the session's).
    pub fn parse(body: &'a [u8]) -> Result<Sdp<'a>, Malformed> {
        let lines = split_lines(body);
        let find = |from: usize, to: usize, kind: u8| {
            (from..to).find(|&i| lines.get(i).is_some_and(|l| is_kind(l.text, kind)))
        };
        let v = find(0, lines.len(), b'v').ok_or(Malformed::NoVersion)?;
        let o = find(v, lines.len(), b'o').ok_or(Malformed::NoOrigin)?;
        let first_m = find(o, lines.len(), b'm').ok_or(Malformed::NoMedia)?;
        let session_c = match find(o, first_m, b'c') {
            Some(c) => {
                check_connection(&lines, c)?;
                true
            }
            None => false,
        };
        let m_lines: Vec<usize> = (first_m..lines.len())
            .filter(|&i| lines.get(i).is_some_and(|l| is_kind(l.text, b'm')))
            .collect();
        let mut streams = Vec::with_capacity(m_lines.len());
        for (k, &m) in m_lines.iter().enumerate() {
            let end = m_lines.get(k + 1).copied().unwrap_or(lines.len());
            match find(m + 1, end, b'c') {
                Some(c) => check_connection(&lines, c)?,
                None if session_c => {}
                None => return Err(Malformed::NoConnection(m + 1)),
            }
            let text = lines.get(m).map_or(&[][..], |l| l.text);
            let stream = parse_m_line(text, m, end).ok_or(Malformed::BadMediaLine(m + 1))?;
            streams.push(stream);
        }
        Ok(Sdp {
            lines,
            streams,
            changed: false,
        })
    }

    /// Apply `ops` in a fixed order: remove media sections (by media type, then by
    /// transport), remove codecs, keep codecs, remove lines by prefix. Codec names are
    /// resolved to payload types against the body as it came in, before any edit, as
    /// each Kamailio call sees the unmodified SDP. Returns the operations skipped.
    pub fn apply(&mut self, ops: &Ops) -> Vec<Skipped> {
        let mut skipped = Vec::new();
        let mut remove: Vec<&[u8]> = ops.remove_ids.iter().map(|s| s.as_bytes()).collect();
        if !ops.remove_names.is_empty() {
            match self.resolve(&ops.remove_names) {
                Some(ids) => remove.extend(ids),
                None => skipped.push(Skipped::RemoveListTooLong),
            }
        }
        let keep: Option<Vec<&[u8]>> = match (&ops.keep_ids, &ops.keep_names) {
            (None, None) => None,
            (ids, names) => {
                let mut keep: Vec<&[u8]> = ids.iter().flatten().map(|s| s.as_bytes()).collect();
                if let Some(names) = names {
                    match self.resolve(names) {
                        Some(ids) => keep.extend(ids),
                        None => skipped.push(Skipped::KeepListTooLong),
                    }
                }
                // Nothing to keep by: Kamailio's call fails and changes nothing.
                (!keep.is_empty()).then_some(keep)
            }
        };

        for k in 0..self.streams.len() {
            let Some(s) = self.streams.get(k) else { break };
            let (media, proto) = (s.media, s.proto);
            if ops.remove_media.iter().any(|t| eq_ic(media, t.as_bytes()))
                || ops
                    .remove_transport
                    .iter()
                    .any(|t| eq_ic(proto, t.as_bytes()))
            {
                self.remove_stream(k);
            }
        }

        for k in 0..self.streams.len() {
            if !self.selected(k, ops.media_type.as_deref()) {
                continue;
            }
            for id in &remove {
                self.remove_pt(k, id);
            }
            if let Some(keep) = &keep {
                self.keep_pts(k, keep);
            }
        }

        for prefix in &ops.line_prefixes {
            self.remove_prefix(prefix.as_bytes(), ops.media_type.as_deref());
        }
        skipped
    }

    /// True once an edit changed something.
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// The body with the edits applied.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.lines.iter().map(|l| l.text.len() + 2).sum());
        let mut streams = self.streams.iter().filter(|s| !s.removed).peekable();
        for (i, line) in self.lines.iter().enumerate() {
            if line.removed {
                continue;
            }
            match streams.next_if(|s| s.m == i) {
                Some(s) if s.fmts.iter().any(|f| f.removed) => {
                    write_m_line(&mut out, line.text, &s.fmts);
                }
                _ => out.extend_from_slice(line.text),
            }
            out.extend_from_slice(line.eol);
        }
        out
    }

    // --- name resolution ---

    /// Kamailio's `sdpops_build_ids_list`: each name resolves through the static table
    /// (exclusively), or else to every payload type of an `m=` line whose `a=rtpmap` in
    /// that stream has this encoding name (case-insensitive), in any stream; a name
    /// with more than [`MAX_IDS_PER_NAME`] of them, or none, is skipped. `None` when
    /// the list would not fit [`MAX_ID_LIST`] (the operation then does nothing).
    fn resolve(&self, names: &[String]) -> Option<Vec<&'a [u8]>> {
        let mut ids: Vec<&'a [u8]> = Vec::new();
        let mut len = 0;
        for name in names {
            let found = match static_ids(name) {
                Some(st) => st.iter().map(|id| id.as_bytes()).collect(),
                None => self.dynamic_ids(name.as_bytes()),
            };
            for id in found {
                if len + id.len() >= MAX_ID_LIST {
                    return None;
                }
                len += id.len() + 1;
                ids.push(id);
            }
        }
        Some(ids)
    }

    /// Payload types whose rtpmap encoding name is `name`, over all streams; empty if
    /// more than [`MAX_IDS_PER_NAME`].
    fn dynamic_ids(&self, name: &[u8]) -> Vec<&'a [u8]> {
        let mut out: Vec<&'a [u8]> = Vec::new();
        for s in &self.streams {
            let Some(m_text) = self.lines.get(s.m).map(|l| l.text) else {
                continue;
            };
            for f in &s.fmts {
                let Some(pt) = m_text.get(f.start..f.end) else {
                    continue;
                };
                if self.encoding(s, pt).is_some_and(|enc| eq_ic(enc, name)) {
                    if out.len() == MAX_IDS_PER_NAME {
                        return Vec::new();
                    }
                    out.push(pt);
                }
            }
        }
        out
    }

    /// The encoding name of the last `a=rtpmap:<pt> <name>/...` line of the stream.
    fn encoding(&self, s: &Stream<'a>, pt: &[u8]) -> Option<&'a [u8]> {
        let lines = self.lines.get(s.m + 1..s.end)?;
        lines.iter().rev().find_map(|l| {
            let rest = strip_prefix_ic(l.text, b"a=rtpmap:")?;
            let rest = rest.strip_prefix(pt)?;
            let rest = rest.strip_prefix(b" ")?;
            let rest = trim_start(rest);
            let slash = rest.iter().position(|&b| b == b'/')?;
            rest.get(..slash)
        })
    }

    // --- edits ---

    fn selected(&self, k: usize, media_type: Option<&str>) -> bool {
        self.streams
            .get(k)
            .is_some_and(|s| !s.removed && media_type.is_none_or(|t| eq_ic(s.media, t.as_bytes())))
    }

    /// `sdp_remove_media` / `sdp_remove_transport`: the `m=` line and every line up to
    /// the next `m=` line or the end of the body.
    fn remove_stream(&mut self, k: usize) {
        let Some(s) = self.streams.get_mut(k) else {
            return;
        };
        s.removed = true;
        let (from, to) = (s.m, s.end);
        for l in self.lines.get_mut(from..to).into_iter().flatten() {
            l.removed = true;
        }
        self.changed = true;
    }

    /// `sdp_remove_codecs_by_id` for one id in one stream: the first occurrence in the
    /// `m=` line, and every rtpmap/fmtp/rtcp-fb line of that id in the stream.
    fn remove_pt(&mut self, k: usize, id: &[u8]) {
        let Some(s) = self.streams.get_mut(k) else {
            return;
        };
        let m_text = self.lines.get(s.m).map_or(&[][..], |l| l.text);
        if let Some(f) = s
            .fmts
            .iter_mut()
            .find(|f| !f.removed && m_text.get(f.start..f.end) == Some(id))
        {
            f.removed = true;
            self.changed = true;
        }
        let (from, to) = (s.m + 1, s.end);
        self.remove_pt_attrs(from, to, id);
    }

    /// `sdp_keep_codecs_by_id` in one stream: every payload type of the `m=` line that
    /// is not in `keep` goes, with its attribute lines.
    fn keep_pts(&mut self, k: usize, keep: &[&[u8]]) {
        let Some(s) = self.streams.get_mut(k) else {
            return;
        };
        let m_text = self.lines.get(s.m).map_or(&[][..], |l| l.text);
        let mut gone: Vec<&'a [u8]> = Vec::new();
        for f in s.fmts.iter_mut().filter(|f| !f.removed) {
            let Some(pt) = m_text.get(f.start..f.end) else {
                continue;
            };
            if !keep.contains(&pt) {
                f.removed = true;
                gone.push(pt);
            }
        }
        if gone.is_empty() {
            return;
        }
        self.changed = true;
        let (from, to) = (s.m + 1, s.end);
        for pt in gone {
            self.remove_pt_attrs(from, to, pt);
        }
    }

    /// Remove lines `a=rtpmap:<id> `, `a=fmtp:<id> `, `a=rtcp-fb:<id> ` in `from..to`:
    /// the prefix matched case-insensitively, the id exactly, then a space.
    fn remove_pt_attrs(&mut self, from: usize, to: usize, id: &[u8]) {
        for l in self.lines.get_mut(from..to).into_iter().flatten() {
            if l.removed {
                continue;
            }
            let hit = PT_ATTRS.iter().any(|prefix| {
                strip_prefix_ic(l.text, prefix)
                    .and_then(|rest| rest.strip_prefix(id))
                    .is_some_and(|rest| rest.first() == Some(&b' '))
            });
            if hit {
                l.removed = true;
                self.changed = true;
            }
        }
    }

    /// `sdp_remove_line_by_prefix`: case-sensitive, over the whole body or the streams
    /// of `media_type`. Kamailio only looks at `<letter>=` lines, and so does this.
    fn remove_prefix(&mut self, prefix: &[u8], media_type: Option<&str>) {
        let ranges: Vec<(usize, usize)> = match media_type {
            None => vec![(0, self.lines.len())],
            Some(t) => (0..self.streams.len())
                .filter(|&k| self.selected(k, Some(t)))
                .filter_map(|k| self.streams.get(k).map(|s| (s.m, s.end)))
                .collect(),
        };
        for (from, to) in ranges {
            for l in self.lines.get_mut(from..to).into_iter().flatten() {
                if !l.removed && l.text.get(1) == Some(&b'=') && l.text.starts_with(prefix) {
                    l.removed = true;
                    self.changed = true;
                }
            }
        }
        // An `m=` line removed by prefix takes its payload edits with it.
        for s in &mut self.streams {
            if self.lines.get(s.m).is_some_and(|l| l.removed) {
                s.removed = true;
            }
        }
    }
}

// === helpers ===

/// The ids of a name in the static table (case-insensitive).
pub fn static_ids(name: &str) -> Option<&'static [&'static str]> {
    STATIC_CODECS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, ids)| *ids)
}

/// Split into lines that keep their line ends. A final line without a line end is kept;
/// an empty remainder after the last line end is not a line.
fn split_lines(body: &[u8]) -> Vec<Line<'_>> {
    let mut lines = Vec::with_capacity(body.len() / 24 + 1);
    let mut rest = body;
    while !rest.is_empty() {
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => rest.split_at(i + 1),
            None => (rest, &[][..]),
        };
        let text_len = if line.ends_with(b"\r\n") {
            line.len() - 2
        } else if line.ends_with(b"\n") {
            line.len() - 1
        } else {
            line.len()
        };
        let (text, eol) = line.split_at(text_len);
        lines.push(Line {
            text,
            eol,
            removed: false,
        });
        rest = next;
    }
    lines
}

/// True for a `<kind>=` line.
fn is_kind(text: &[u8], kind: u8) -> bool {
    text.first() == Some(&kind) && text.get(1) == Some(&b'=')
}

/// `c=<nettype> <addrtype> <address>` with IP4 or IP6, as Kamailio's `extract_mediaip`.
fn check_connection(lines: &[Line<'_>], c: usize) -> Result<(), Malformed> {
    let text = lines.get(c).map_or(&[][..], |l| l.text);
    let mut words = text
        .get(2..)
        .unwrap_or_default()
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty());
    let ok = words.next().is_some()
        && words
            .next()
            .is_some_and(|t| eq_ic(t, b"IP4") || eq_ic(t, b"IP6"))
        && words.next().is_some();
    if ok {
        Ok(())
    } else {
        Err(Malformed::BadConnection(c + 1))
    }
}

/// `m=<media> <port> <proto> <fmt> ...`; `None` without media, port or proto.
fn parse_m_line(text: &[u8], m: usize, end: usize) -> Option<Stream<'_>> {
    let body = text.get(2..)?;
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < body.len() {
        if body.get(i) == Some(&b' ') {
            i += 1;
            continue;
        }
        let start = i;
        while i < body.len() && body.get(i) != Some(&b' ') {
            i += 1;
        }
        tokens.push((start + 2, i + 2));
    }
    let word = |k: usize| tokens.get(k).and_then(|&(s, e)| text.get(s..e));
    let media = word(0)?;
    let port = word(1)?;
    let proto = word(2)?;
    if !port.first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let fmts = tokens
        .iter()
        .skip(3)
        .map(|&(start, end)| Fmt {
            start,
            end,
            removed: false,
        })
        .collect();
    Some(Stream {
        m,
        end,
        media,
        proto,
        fmts,
        removed: false,
    })
}

/// The `m=` line without its removed payload types, each taken with the space before it.
fn write_m_line(out: &mut Vec<u8>, text: &[u8], fmts: &[Fmt]) {
    let mut at = 0;
    for f in fmts.iter().filter(|f| f.removed) {
        let cut = f.start.saturating_sub(1).max(at);
        out.extend_from_slice(text.get(at..cut).unwrap_or_default());
        at = f.end.max(at);
    }
    out.extend_from_slice(text.get(at..).unwrap_or_default());
}

/// ASCII case-insensitive equality.
fn eq_ic(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// `text` without `prefix`, compared case-insensitively.
fn strip_prefix_ic<'t>(text: &'t [u8], prefix: &[u8]) -> Option<&'t [u8]> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text.get(prefix.len()..))
        .flatten()
}

/// `s` without leading spaces and tabs.
fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    s.get(n..).unwrap_or_default()
}
