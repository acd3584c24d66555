//! Messages the transaction layer writes itself: the hop-by-hop ACK (§17.1.1.3), CANCEL
//! (§9.1), local replies, and the Via edits of §16.7.

use weir_message::{names_equal, CSeq, Message, Method, Text, Via};

/// Reason phrase of the automatic 100 (Kamailio `auto_inv_100_reason`).
pub const TRYING_REASON: &str = "trying -- your call is important to us";
/// Reason phrase of the 200 to a CANCEL that found branches to cancel.
pub const CANCELING_REASON: &str = "canceling";
/// Reason phrase of the 200 to a CANCEL that found nothing left to cancel.
pub const NO_MORE_BRANCHES_REASON: &str = "ok -- no more pending branches";
/// Reason phrase of a locally generated 487.
pub const CANCELED_REASON: &str = "Request canceled";
/// Reason header value of CANCELs caused by a 2xx on a sibling branch.
pub const COMPLETED_ELSEWHERE: &str = "SIP;cause=200;text=\"Call completed elsewhere\"";

/// The first via-parm of the first Via line, as a string.
fn top_via_only(msg: &Message) -> Option<String> {
    let first = msg.headers.get("Via")?;
    Via::parse(first).ok().map(|v| v.to_string())
}

/// Copy every line named `name` from `src` to `dst`.
fn copy_all(src: &Message, dst: &mut Message, name: &str) {
    for h in src.headers.iter().filter(|h| names_equal(&h.name, name)) {
        dst.headers.push(h.name.clone(), h.value.clone());
    }
}

fn copy_first(src: &Message, dst: &mut Message, name: &str) {
    if let Some(v) = src.headers.get(name) {
        dst.headers.push(name, v);
    }
}

/// A request derived from the INVITE we sent on a branch: same Request-URI, top Via
/// only (same branch), Max-Forwards, Route set, From, Call-ID and CSeq number.
fn derived(invite: &Message, method: Method, to: Option<&str>) -> Message {
    let uri = invite.request_uri().unwrap_or_default().to_string();
    let mut m = Message::new_request(method.clone(), uri);
    if let Some(via) = top_via_only(invite) {
        m.headers.push("Via", via);
    }
    m.headers.push(
        "Max-Forwards",
        invite.headers.get("Max-Forwards").unwrap_or("70"),
    );
    copy_all(invite, &mut m, "Route");
    copy_first(invite, &mut m, "From");
    match to {
        Some(t) => m.headers.push("To", t),
        None => copy_first(invite, &mut m, "To"),
    }
    copy_first(invite, &mut m, "Call-ID");
    let seq = invite.cseq().map(|c| c.seq).unwrap_or(0);
    m.headers.push("CSeq", CSeq { seq, method }.to_string());
    m
}

/// The ACK a client INVITE transaction sends for a non-2xx final (RFC 3261 §17.1.1.3):
/// built from the INVITE as sent, with the To of the response (its tag).
pub fn ack_for(invite: &Message, response: &Message) -> Message {
    derived(invite, Method::Ack, response.headers.get("To"))
}

/// The CANCEL for a branch (RFC 3261 §9.1), built from the INVITE as sent (Kamailio
/// `reparse_invite`), with an optional `Reason` value (RFC 3326).
pub fn cancel_for(invite: &Message, reason: Option<&str>) -> Message {
    let mut m = derived(invite, Method::Cancel, None);
    if let Some(r) = reason {
        m.headers.push("Reason", r);
    }
    m
}

/// Reason value for CANCELs caused by a final reply on a sibling branch (Kamailio
/// `local_cancel_reason`): `SIP;cause=<code>`, with the text for a 2xx.
pub fn cancel_reason(code: u16) -> String {
    if (200..300).contains(&code) {
        COMPLETED_ELSEWHERE.to_string()
    } else {
        format!("SIP;cause={code}")
    }
}

/// Remove the first via-parm of the first Via line (RFC 3261 §16.7 step 9).
pub fn pop_top_via(msg: &mut Message) {
    pop_top_via_with(msg, Via::rest_of_line);
}

/// [`pop_top_via`] for a response whose top via-parm was parsed already (its client
/// transaction was matched by that Via's branch): only the via-parms after it on the
/// line are checked.
pub(crate) fn pop_parsed_top_via(msg: &mut Message) {
    pop_top_via_with(msg, Via::rest_after_parsed_first);
}

fn pop_top_via_with(msg: &mut Message, rest_of_line: fn(&Text) -> Option<Text>) {
    let Some(pos) = msg.headers.position("Via") else {
        return;
    };
    let Some(h) = msg.headers.get_at(pos) else {
        return;
    };
    // Several via-parms on the line (SIPp echoes every Via on one): the others are kept
    // as they were written (as Kamailio does). A line with one via-parm, or that does
    // not parse, goes whole.
    match rest_of_line(&h.value) {
        Some(rest) => {
            msg.headers.set_value_at(pos, rest);
        }
        None => {
            msg.headers.remove_at(pos);
        }
    }
}

/// What a transaction keeps of the request it received: the start line and the lines
/// [`Message::reply`] copies (every Via, From, To, Call-ID, CSeq), in order. Its local
/// replies come out exactly as from the whole request, without a copy of the rest.
pub(crate) fn reply_source(req: &Message) -> Message {
    let kept = ["via", "from", "to", "call-id", "cseq"];
    // Room for the usual lines at once (collecting a Vec keeps its buffer).
    let mut lines = Vec::with_capacity(8);
    lines.extend(
        req.headers
            .iter()
            .filter(|h| kept.iter().any(|k| names_equal(&h.name, k)))
            .cloned(),
    );
    Message {
        start: req.start.clone(),
        headers: lines.into_iter().collect(),
        body: Default::default(),
    }
}

/// A reply the table generates from the request it received.
pub(crate) fn local_reply(
    req: &Message,
    code: u16,
    reason: &str,
    to_tag: &str,
    server: Option<&str>,
) -> Message {
    let mut r = req.reply(code, reason, (code > 100).then_some(to_tag));
    if let Some(s) = server {
        r.headers.push("Server", s);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::req;

    fn sent_invite() -> Message {
        let mut inv = req("INVITE", "z9hG4bKup", "Route: <sip:p2.example.com;lr>\r\n");
        inv.headers
            .insert(0, "Via", "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKw1x");
        inv
    }

    #[test]
    fn ack_is_built_from_the_sent_invite() {
        let inv = sent_invite();
        let resp = inv.reply(486, "", Some("callee"));
        let ack = ack_for(&inv, &resp);
        assert_eq!(ack.method(), Some(&Method::Ack));
        assert_eq!(ack.request_uri(), inv.request_uri());
        let vias: Vec<_> = ack.headers.get_all("Via").collect();
        assert_eq!(vias, ["SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKw1x"]);
        assert_eq!(ack.headers.get("Route"), Some("<sip:p2.example.com;lr>"));
        assert_eq!(ack.to_tag().as_deref(), Some("callee"));
        assert_eq!(ack.from_tag(), inv.from_tag());
        assert_eq!(ack.call_id(), inv.call_id());
        assert_eq!(ack.headers.get("CSeq"), Some("1 ACK"));
        assert!(ack.validate_request().is_ok());
    }

    #[test]
    fn cancel_keeps_branch_and_carries_reason() {
        let inv = sent_invite();
        let c = cancel_for(&inv, Some(COMPLETED_ELSEWHERE));
        assert_eq!(c.method(), Some(&Method::Cancel));
        assert_eq!(
            c.top_via().unwrap().branch(),
            Some("z9hG4bKw1x"),
            "same branch as the INVITE"
        );
        assert_eq!(c.headers.get_all("Via").count(), 1);
        assert_eq!(c.headers.get("CSeq"), Some("1 CANCEL"));
        assert_eq!(c.to_tag(), None);
        assert_eq!(
            c.headers.get("Reason"),
            Some("SIP;cause=200;text=\"Call completed elsewhere\"")
        );
        assert!(c.validate_request().is_ok());
    }

    #[test]
    fn reply_source_replies_like_the_request() {
        let inv = req(
            "INVITE",
            "z9hG4bKup",
            "Route: <sip:p2.example.com;lr>\r\nContact: <sip:a@192.0.2.1>\r\n\
             Timestamp: 54\r\nRecord-Route: <sip:p1.example.com;lr>\r\nv: SIP/2.0/UDP b\r\n",
        );
        let src = reply_source(&inv);
        assert_eq!(src.start, inv.start);
        assert!(src.headers.get("Contact").is_none() && src.headers.get("Route").is_none());
        for code in [100, 180, 200, 487, 603] {
            assert_eq!(
                local_reply(&src, code, "", "t1", Some("weir")),
                local_reply(&inv, code, "", "t1", Some("weir")),
                "{code}"
            );
        }
    }

    #[test]
    fn reasons() {
        assert_eq!(cancel_reason(200), COMPLETED_ELSEWHERE);
        assert_eq!(cancel_reason(603), "SIP;cause=603");
    }

    #[test]
    fn pops_one_via_parm() {
        let mut m = Message::new_response(200, "OK");
        m.headers.push(
            "Via",
            "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2",
        );
        m.headers.push("Via", "SIP/2.0/UDP c;branch=z9hG4bK3");
        pop_top_via(&mut m);
        assert_eq!(m.headers.get("Via"), Some("SIP/2.0/UDP b;branch=z9hG4bK2"));
        pop_top_via(&mut m);
        assert_eq!(m.headers.get("Via"), Some("SIP/2.0/UDP c;branch=z9hG4bK3"));
        pop_top_via(&mut m);
        assert_eq!(m.headers.get("Via"), None);
        // Alone on its line (as the proxy writes it): the line goes, the next stays.
        let mut m = Message::new_response(200, "OK");
        m.headers.push("Via", "SIP/2.0/UDP a;branch=z9hG4bK1");
        m.headers
            .push("Via", "SIP/2.0/UDP b;branch=z9hG4bK2, SIP/2.0/UDP c");
        pop_top_via(&mut m);
        assert_eq!(
            m.headers.get_all("Via").collect::<Vec<_>>(),
            ["SIP/2.0/UDP b;branch=z9hG4bK2, SIP/2.0/UDP c"]
        );
        // The same Vias as a parse of the whole line gives, kept as written.
        for line in [
            "SIP/2.0/UDP a;branch=z9hG4bK1 ,SIP/2.0/udp  b:05060 ; received=x;branch=z9hG4bK2",
            "SIP/2.0/UDP a;branch=z9hG4bK1;q=\"x,y\", SIP/2.0/UDP b;n=\"\\\",\", SIP/2.0/TCP c",
            "SIP/2.0/UDP a;branch=z9hG4bK1,",
            "SIP/2.0/UDP a;branch=z9hG4bK1,, SIP/2.0/UDP b",
            "SIP/2.0/UDP a;branch=z9hG4bK1 x, SIP/2.0/UDP b",
            "SIP/2.0/UDP a;q=\"no comma, here\"",
            "garbage, SIP/2.0/UDP b",
            "SIP/2.0/UDP a;branch=z9hG4bK1, junk",
            "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/udp  b ;x=1",
        ] {
            let mut m = Message::new_response(200, "OK");
            m.headers.push("Via", line);
            // A matched response's top via-parm parsed: the cheaper pop does the same.
            if weir_message::ViaRef::parse(line).is_ok() {
                let mut cheap = m.clone();
                cheap.headers.push("Via", "SIP/2.0/UDP d");
                let mut full = cheap.clone();
                pop_parsed_top_via(&mut cheap);
                pop_top_via(&mut full);
                assert_eq!(cheap, full, "{line}");
            }
            let want = match Via::parse_list(line) {
                Ok(v) if v.len() > 1 => Some(v.get(1..).unwrap_or(&[]).to_vec()),
                _ => None,
            };
            pop_top_via(&mut m);
            let got = m.headers.get("Via");
            assert_eq!(got.map(|g| Via::parse_list(g).unwrap()), want, "{line}");
            if let Some(g) = got {
                assert!(line.ends_with(g), "kept verbatim: {g:?} of {line:?}");
            }
        }
        // Unparseable: removed, as before.
        let mut m = Message::new_response(200, "OK");
        m.headers.push("Via", "garbage");
        m.headers.push("Via", "SIP/2.0/UDP c;branch=z9hG4bK3");
        pop_top_via(&mut m);
        assert_eq!(m.headers.get("Via"), Some("SIP/2.0/UDP c;branch=z9hG4bK3"));
    }
}
