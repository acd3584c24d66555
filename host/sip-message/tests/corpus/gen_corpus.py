#!/usr/bin/env python3
"""Generate the weir-message test corpus (RFC 4475 torture-test style, written for Weir).

Run from anywhere: `python3 host/sip-message/tests/corpus/gen_corpus.py`. Messages are
written with exact CRLF line endings (unless a case is about bare LF or binary data);
`{CL}` is replaced with the byte length of the body. Only example.com, 192.0.2.x and
127.0.0.1 are used as addresses. `invalid/expected.tsv` lists, for each invalid file, the
expected ParseError reason and whether a partial message (answerable with a reply) is
expected.
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
VALID = os.path.join(HERE, "valid")
INVALID = os.path.join(HERE, "invalid")


def crlf(text):
    """Text with '\n' line ends -> bytes with CRLF, filling {CL} with the body length."""
    head, sep, body = text.partition("\n\n")
    head_b = head.replace("\n", "\r\n").encode("utf-8")
    body_b = body.replace("\n", "\r\n").encode("utf-8") if sep else b""
    head_b = head_b.replace(b"{CL}", str(len(body_b)).encode())
    return head_b + (b"\r\n\r\n" if sep else b"\r\n") + body_b


SDP = """v=0
o=alice 2890844526 2890844526 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 49170 RTP/AVP 0 8 97 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:97 iLBC/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
"""

SDP_BOB = """v=0
o=bob 2808844564 2808844564 IN IP4 192.0.2.30
s=-
c=IN IP4 192.0.2.30
t=0 0
m=audio 3456 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
"""

SDP_SHORT = """v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.3
s=-
c=IN IP4 192.0.2.4
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"""

valid = {}
invalid = {}  # name -> (bytes, reason, partial)

# ---------------------------------------------------------------------------------------
# Valid messages
# ---------------------------------------------------------------------------------------

valid["invite-sdp"] = crlf("""INVITE sip:bob@example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport
Max-Forwards: 70
Route: <sip:proxy.example.com;lr>
To: Bob <sip:bob@example.com>
From: Alice <sip:alice@example.com>;tag=1928301774
Call-ID: a84b4c76e66710@192.0.2.10
CSeq: 314159 INVITE
Contact: <sip:alice@192.0.2.10:5060;transport=udp>
Accept: application/sdp
Allow-Events: talk, hold, refer
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO, UPDATE
Supported: replaces, timer, 100rel
User-Agent: Weir-Test-UA/1.0
Session-Expires: 1800;refresher=uac
Content-Type: application/sdp
Content-Length: {CL}

""" + SDP)

valid["ok200-sdp"] = crlf("""SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK4b43c2ff8.1;received=192.0.2.20
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport=5060;received=192.0.2.10
Record-Route: <sip:192.0.2.20;lr>
To: Bob <sip:bob@example.com>;tag=a6c85cf
From: Alice <sip:alice@example.com>;tag=1928301774
Call-ID: a84b4c76e66710@192.0.2.10
CSeq: 314159 INVITE
Contact: <sip:bob@192.0.2.30:5060>
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE
Content-Type: application/sdp
Content-Length: {CL}

""" + SDP_BOB)

valid["ok200-no-body"] = crlf("""SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK4b43c2ff8.1;received=192.0.2.20
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport=5060;received=192.0.2.10
To: Bob <sip:bob@example.com>;tag=a6c85cf
From: Alice <sip:alice@example.com>;tag=1928301774
Call-ID: a84b4c76e66710@192.0.2.10
CSeq: 314160 BYE
Content-Length: 0

""")

# wsinv: whitespace, folding, odd case, empty values, separators.
valid["wsinv"] = crlf("""INVITE sip:vivekg@example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@example.com ;   tag    = 1918181833n
from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : {CL}
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;rport;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.0.2.111   ; branch=
 z9hG4bK30239
m:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33

""" + SDP_SHORT)

# intmeth: unknown method made of every token character; odd but legal URI and values.
# (RFC 4475's version also has a raw NUL in a quoted-pair; Weir rejects raw NUL, see
# invalid/nul-quoted-pair.sip.)
valid["intmeth"] = crlf("""!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0
Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~
To: "BEL:\\\x07 DEL:\\\x7f" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>
From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%="работающий";tag=_token~1'+`*%!-.
Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/"][?}{
CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~
Max-Forwards: 255
extensionHeader-!.%*+_`'~: \ufeff大停電
Content-Length: 0

""")

valid["esc01"] = crlf("""INVITE sip:sips%3Auser%40example.com@example.com SIP/2.0
To: sip:%75se%72@example.com
From: <sip:I%20have%20spaces@example.com>;tag=938
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.com;%6C%72;n%61me=v%61lue%25%31>
Content-Length: {CL}

""" + SDP_SHORT)

valid["escnull"] = crlf("""REGISTER sip:example.com SIP/2.0
To: sip:null-%00-null@example.com
From: sip:null-%00-null@example.com;tag=839923423
Max-Forwards: 70
Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsf0jwbj
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
CSeq: 3923239 REGISTER
Contact: <sip:%00@host5.example.com>
Contact: <sip:%00%00@host5.example.com>
L:0

""")

valid["esc02"] = crlf("""RE%47IST%45R sip:registrar.example.com SIP/2.0
To: "%Z%45" <sip:resource@example.com>
From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23
Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
Via: SIP/2.0/TCP host.example.com;rport;branch=z9hG4bK209asdfasdf
CSeq: 29344 RE%47IST%45R
Max-Forwards: 70
Contact: <sip:alias1@host1.example.com>
C%6Fntact: <sip:alias2@host2.example.com>
Contact: <sip:alias3@host3.example.com>
l: 0

""")

valid["lwsdisp"] = crlf("""OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: caller<sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: lwsdisp.1234abcd@funky.example.com
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw
l: 0

""")

longtag = "longreq" + "0123456789abcdef" * 256
longdisp = "I have a user name of " + "extreme " * 60 + "proportion"
vias = "".join(
    f"Via: SIP/2.0/TCP sip{n}.example.com:5060;branch=z9hG4bK{n:04d}{'a' * 40}\n" for n in range(40)
)
valid["longreq"] = crlf(f"""INVITE sip:user@example.com SIP/2.0
To: "{longdisp}" <sip:user@example.com:6000;unknownparam1=verylonghostname{'x' * 400};unknownparam2=fooo{'o' * 400};unknownparam3=bar>
From: sip:{'amazinglylongcallername' * 20}@example.com;tag={longtag}
Call-ID: longreq.{'onereallyreallyreallyreallylongcallid' * 30}
CSeq: 3882340 INVITE
Unknown-{'LongLongLong' * 60}-Name: unknown-{'long' * 100}-value; unknown-{'long' * 50}-parameter-name = unknown-{'long' * 50}-parameter-value
{vias}Max-Forwards: 70
Contact: <sip:amazinglylongcallername@host5.example.com>
Content-Type: application/sdp
l: {{CL}}

""" + SDP_SHORT)

# dblreq: two requests in one datagram; octets after Content-Length are discarded.
valid["dblreq"] = crlf("""REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=43251j3j324
Max-Forwards: 8
I: dblreq.0ha0isndaksdj99sdfafnl3lk233412
Contact: sip:j.user@host.example.com
CSeq: 8 REGISTER
Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492
Content-Length: 0

""") + crlf("""INVITE sip:joe@example.com SIP/2.0
t: sip:joe@example.com
From: sip:caller@example.com;tag=141334
Max-Forwards: 8
Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234
Content-Type: application/sdp
Content-Length: {CL}

""" + SDP_SHORT)

valid["semiuri"] = crlf("""OPTIONS sip:user;par=u%40example.com@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.com;tag=33242
Max-Forwards: 3
Call-ID: semiuri.0ha0isndaksdj
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
        multipart/mixed, multipart/signed,
        message/sip, message/sipfrag
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw
l: 0

""")

valid["transports"] = crlf("""OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: <sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID:  transports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw
Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee
l: 0

""")

binary_part = bytes(range(256)) + b"\r\n\r\n\x00\x00" + bytes(range(255, -1, -1))
mpart_body = (
    b"--boundary42\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
    b"--boundary42\r\nContent-Type: application/octet-stream\r\n\r\n" + binary_part +
    b"\r\n--boundary42--\r\n"
)
valid["mpart01"] = crlf("""MESSAGE sip:kumiko@example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.20;branch=z9hG4bKmp17
Max-Forwards: 70
To: <sip:kumiko@example.com>
From: <sip:nobuko@example.com>;tag=2fd3e8
Call-ID: mpart01.02bd3f@192.0.2.20
CSeq: 20 MESSAGE
MIME-Version: 1.0
Content-Type: multipart/mixed;boundary=boundary42
Content-Length: XXX""").replace(b"XXX", str(len(mpart_body)).encode()) + b"\r\n" + mpart_body

valid["unreason"] = crlf("""SIP/2.0 200 = 2**3 * 5**2 но сто девяносто девять - простое
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Call-ID: unreason.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.com;tag=2229
Content-Length: {CL}
Content-Type: application/sdp
Contact: <sip:user@host198.example.com>

""" + SDP_SHORT)

valid["noreason"] = crlf("""SIP/2.0 100 
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: noreason.asndj203insdf99223ndf
CSeq: 35 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.com>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>

""")

valid["noreason-nosp"] = crlf("""SIP/2.0 180
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: noreason2.asndj203insdf99223ndf
CSeq: 35 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.com>;tag=902jndnke3
Content-Length: 0

""")

valid["tel-uri"] = crlf("""INVITE tel:+1-201-555-0123 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKtel1
Max-Forwards: 70
From: <sip:alice@example.com>;tag=abc
To: <tel:+1-201-555-0123>
Call-ID: tel-uri-1@192.0.2.5
CSeq: 1 INVITE
Contact: <sip:alice@192.0.2.5>
Content-Length: 0

""")

valid["tel-uri-context"] = crlf("""OPTIONS tel:7042;phone-context=example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKtel2
Max-Forwards: 70
From: <tel:+1-201-555-0199>;tag=abc
To: tel:7042;phone-context=example.com
Call-ID: tel-uri-2@192.0.2.5
CSeq: 2 OPTIONS
Content-Length: 0

""")

valid["compact"] = crlf("""SUBSCRIBE sip:presence@example.com SIP/2.0
v: SIP/2.0/TCP 192.0.2.7:5060;branch=z9hG4bKcmp1
V: SIP/2.0/UDP 192.0.2.8;branch=z9hG4bKcmp0
f: "Carol" <sip:carol@example.com>;tag=cmp-77
t: <sip:presence@example.com>
i: compact-1@192.0.2.7
CSeq: 11 SUBSCRIBE
Max-Forwards: 70
m: <sip:carol@192.0.2.7:5060;transport=tcp>
k: eventlist, timer
o: presence
u: presence, dialog
x: 1800;refresher=uac
a: *;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"
j: *;video
d: proxy, recurse
b: <sip:referrer@example.com>
r: <sip:target@example.com>
y: eyJhbGciOiJFUzI1NiJ9.e30.c2ln
s: compact forms everywhere
e: identity
c: text/plain
l: {CL}

hello compact
""")

valid["folding"] = crlf("""NOTIFY sip:carol@192.0.2.7:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.40;branch=z9hG4bKfold1,
\tSIP/2.0/UDP 192.0.2.41;branch=z9hG4bKfold0
Max-Forwards:
   70
From:
\t<sip:presence@example.com>
\t;tag=ffd2
To: "Carol"
 <sip:carol@example.com>;tag=cmp-77
Call-ID: compact-1@192.0.2.7
CSeq: 12
 NOTIFY
Event: presence
Subscription-State: active;
    expires=3600
X-Blank-Continuation: a
   
 b
Content-Type: text/plain
Content-Length:
 {CL}

folded body
""")

valid["lf-only"] = (
    b"OPTIONS sip:user@example.com SIP/2.0\n"
    b"Via: SIP/2.0/UDP 192.0.2.3;branch=z9hG4bKlf1\n"
    b"Max-Forwards: 70\n"
    b"From: <sip:caller@example.com>;tag=lf\n"
    b"To: <sip:user@example.com>\n"
    b"Call-ID: lf-only@192.0.2.3\n"
    b"CSeq: 1 OPTIONS\n"
    b"Subject: bare LF\n  folded with LF\n"
    b"Content-Length: 5\n"
    b"\n"
    b"hello"
)

valid["leading-crlf"] = b"\r\n\r\n" + crlf("""OPTIONS sip:user@example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.3;branch=z9hG4bKlead
Max-Forwards: 70
From: <sip:caller@example.com>;tag=lead
To: <sip:user@example.com>
Call-ID: leading-crlf@192.0.2.3
CSeq: 1 OPTIONS
Content-Length: 0

""")

valid["register-auth"] = crlf("""REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/TLS 192.0.2.50:5061;branch=z9hG4bKreg2;rport
Max-Forwards: 70
From: Alice <sip:alice@example.com>;tag=reg2
To: Alice <sip:alice@example.com>
Call-ID: register-auth-1@192.0.2.50
CSeq: 2 REGISTER
Contact: <sip:alice@192.0.2.50:5061;transport=tls>;expires=3600;+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>";reg-id=1
Authorization: Digest username="alice", realm="example.com",
  nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="sip:example.com",
  response="e6f99bf42d6a1d9d6bc1e6a2cd6c9c5b", algorithm=MD5, qop=auth, nc=00000001, cnonce="0a4f113b"
Expires: 3600
Content-Length: 0

""")

valid["novelsc"] = crlf("""OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0
To: sip:user@example.com
From: sip:caller@example.com;tag=384
Max-Forwards: 3
Call-ID: novelsc.asdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234
Content-Length: 0

""")

valid["case-mix"] = crlf("""invite SIP:bob@Example.COM sip/2.0
vIa: sip/2.0/udp 192.0.2.60;BRANCH=z9hG4bKcase
fRoM: <sip:alice@example.com>;TAG=case1
TO: <sip:bob@example.com>
cALL-iD: case-mix@192.0.2.60
cseq: 1 invite
MAX-FORWARDS: 70
CONTENT-length: 0

""")

valid["unknown-headers"] = crlf("""PUBLISH sip:presentity@example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.70;branch=z9hG4bKunk
Max-Forwards: 70
From: <sip:presentity@example.com>;tag=unk
To: <sip:presentity@example.com>
Call-ID: unknown-headers@192.0.2.70
CSeq: 1 PUBLISH
Subject:
X-Empty:
X-Weird-Value: <>;;"quoted, with comma";=,=
P-Asserted-Identity: "Presentity" <sip:presentity@example.com>, <tel:+1-201-555-0100>
Event: presence
Expires: 3600
Content-Length: 0

""")

valid["lwsstart"] = crlf("""INVITE   sip:user@example.com   SIP/2.0
Max-Forwards: 8
To: sip:user@example.com
From: sip:caller@example.com;tag=8814
Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.com
CSeq: 1893884 INVITE
Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923
Contact: <sip:caller@host1.example.com>
Content-Length: 0

""")

valid["trws"] = crlf("""OPTIONS sip:remote-target@example.com SIP/2.0  
Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK299342093
To: <sip:remote-target@example.com>
From: <sip:local-resource@example.com>;tag=329429089
Call-ID: trws.oicu34958239neffasdhr2345r
Accept: application/sdp
CSeq: 238923 OPTIONS
Max-Forwards: 70
Content-Length: 0

""")

valid["baddate"] = crlf("""INVITE sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.com;tag=2234923
Max-Forwards: 70
Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234
CSeq: 1392934 INVITE
Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw
Date: Fri, 01 Jan 2010 16:00:00 EST
Contact: <sip:caller@host5.example.com>
Content-Length: 0

""")

valid["badaspec-lenient"] = crlf("""OPTIONS sip:user@example.com SIP/2.0
Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234
Max-Forwards: 70
From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423
To: "Watson, Thomas" < sip:t.watson@example.com >
Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3
Accept: application/sdp
CSeq: 3923239 OPTIONS
l: 0

""")

valid["zeromf"] = crlf("""OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.com;tag=3ghsd41
Call-ID: zeromf.jfasdlfnm2o2l43r5u0asdfas
CSeq: 39234321 OPTIONS
Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw2349i
Max-Forwards: 0
Content-Length: 0

""")

valid["inv2543"] = crlf("""INVITE sip:UserB@example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.15
From: <sip:UserA@example.com>
To: <sip:UserB@example.com>
Call-ID: 242526@192.0.2.15
CSeq: 1 INVITE
Content-Length: 0

""")

valid["no-content-length"] = crlf("""MESSAGE sip:user@example.com SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKnocl
Max-Forwards: 70
From: <sip:sender@example.com>;tag=nocl
To: <sip:user@example.com>
Call-ID: no-content-length@127.0.0.1
CSeq: 1 MESSAGE
Content-Type: text/plain

datagram body without Content-Length""")

bin_body = b"\x00\x01\x02\r\n\r\nINVITE sip:x SIP/2.0\r\n\xff\xfe\xfd" + bytes(range(128, 256))
valid["binary-body"] = crlf("""INFO sip:user@example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.80;branch=z9hG4bKbin
Max-Forwards: 70
From: <sip:sender@example.com>;tag=bin
To: <sip:user@example.com>;tag=bin2
Call-ID: binary-body@192.0.2.80
CSeq: 3 INFO
Content-Type: application/octet-stream
Content-Length: XXX""").replace(b"XXX", str(len(bin_body)).encode()) + b"\r\n" + bin_body

valid["same-cl-twice"] = crlf("""MESSAGE sip:user@example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.81;branch=z9hG4bKcl2
Max-Forwards: 70
From: <sip:sender@example.com>;tag=cl2
To: <sip:user@example.com>
Call-ID: same-cl-twice@192.0.2.81
CSeq: 1 MESSAGE
Content-Length: {CL}
l: {CL}
Content-Type: text/plain

four""")

valid["ringing-rr"] = crlf("""SIP/2.0 180 Ringing
Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK4b43c2ff8.1;received=192.0.2.20
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport=5060;received=192.0.2.10
Record-Route: <sip:192.0.2.21;lr>, <sip:192.0.2.20;lr;transport=udp>
Record-Route: <sips:proxy.example.com;lr>
To: Bob <sip:bob@example.com>;tag=a6c85cf
From: Alice <sip:alice@example.com>;tag=1928301774
Call-ID: a84b4c76e66710@192.0.2.10
CSeq: 314159 INVITE
Contact: <sip:bob@192.0.2.30>
Content-Length: 0

""")

valid["ack"] = crlf("""ACK sip:bob@192.0.2.30 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds9
Route: <sip:192.0.2.20;lr>
Max-Forwards: 70
To: Bob <sip:bob@example.com>;tag=a6c85cf
From: Alice <sip:alice@example.com>;tag=1928301774
Call-ID: a84b4c76e66710@192.0.2.10
CSeq: 314159 ACK
Content-Length: 0

""")

valid["cancel"] = crlf("""CANCEL sip:bob@example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport
Max-Forwards: 70
To: Bob <sip:bob@example.com>
From: Alice <sip:alice@example.com>;tag=1928301774
Call-ID: a84b4c76e66710@192.0.2.10
CSeq: 314159 CANCEL
Content-Length: 0

""")

valid["sips-ipv4-port"] = crlf("""BYE sips:bob@192.0.2.30:5061;transport=tls SIP/2.0
Via: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bKbye1
Max-Forwards: 70
Route: <sips:192.0.2.20:5061;lr>
To: Bob <sips:bob@example.com>;tag=a6c85cf
From: Alice <sips:alice@example.com>;tag=1928301774
Call-ID: sips-bye@192.0.2.10
CSeq: 314161 BYE
Content-Length: 0

""")

# ---------------------------------------------------------------------------------------
# Invalid messages: (bytes, expected reason, partial expected)
# ---------------------------------------------------------------------------------------

BASE_HEADERS = """Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKbase
Max-Forwards: 70
From: <sip:caller@example.com>;tag=base1
To: <sip:user@example.com>
Call-ID: base.{name}@192.0.2.15
CSeq: 1 OPTIONS
"""


def options(name, extra="", start="OPTIONS sip:user@example.com SIP/2.0", cl="Content-Length: 0\n", body="",
            headers=None):
    h = (headers if headers is not None else BASE_HEADERS).format(name=name)
    return crlf(start + "\n" + h + extra + cl + "\n" + body)


invalid["badinv01"] = (crlf("""OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.com;tag=323
Max-Forwards: 70
Call-ID: badinv01.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP 192.0.2.15;;,;,,
Contact: "Joe" <sip:joe@example.com>;;,;;,;
Content-Length: 0

"""), "Malformed Via", False)

invalid["clerr"] = (crlf("""INVITE sip:user@example.com SIP/2.0
Max-Forwards: 80
To: sip:j.user@example.com
From: sip:caller@example.com;tag=93942939o2
Contact: <sip:caller@hungry.example.com>
Call-ID: clerr.0ha0isndaksdjweiafasdk3
CSeq: 8 INVITE
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523
Content-Type: application/sdp
Content-Length: 9999

""" + SDP_SHORT), "Bad Content-Length", True)

invalid["ncl"] = (crlf("""INVITE sip:user@example.com SIP/2.0
Max-Forwards: 254
To: sip:j.user@example.com
From: sip:caller@example.com;tag=32394234
Call-ID: ncl.0ha0isndaksdj2193423r542w35
CSeq: 0 INVITE
Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw
Contact: <sip:caller@example.com>
Content-Type: application/sdp
Content-Length: -999

""" + SDP_SHORT), "Bad Content-Length", True)

invalid["cl-nonnumeric"] = (options("clnn", cl="Content-Length: twelve\n"), "Bad Content-Length", True)
invalid["cl-overflow"] = (options("clof", cl="Content-Length: 99999999999999999999999999\n"),
                          "Bad Content-Length", True)
invalid["cl-plus"] = (options("clplus", cl="l: +4\n", body="abcd"), "Bad Content-Length", True)

invalid["mcl01"] = (crlf("""OPTIONS sip:user@example.com SIP/2.0
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523
To: sip:j.user@example.com
From: sip:caller@example.com;tag=93942939o2
Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf
CSeq: 15932 OPTIONS
Content-Length: 13
Max-Forwards: 60
Content-Length: 5
Content-Type: text/plain

There's no way to know how many octets are supposed to be here.
"""), "Bad Content-Length", True)

invalid["scalar02"] = (crlf("""REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3
To: <sip:user@example.com>
From: <sip:user@example.com>;tag=239232jh3
CSeq: 36893488147419103232 REGISTER
Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32
Max-Forwards: 300
Expires: 1000000000000000000000000000000000000000000000000000000000000000000000000000000000000
Contact: <sip:user@host129.example.com>;expires=280297596632815
Content-Length: 0

"""), "Malformed CSeq", True)

invalid["maxfwd-300"] = (options("mf300", extra="Max-Forwards: 300\n",
                                 headers=BASE_HEADERS.replace("Max-Forwards: 70\n", "")),
                         "Malformed Max-Forwards", True)

invalid["quotbal"] = (crlf("""INVITE sip:user@example.com SIP/2.0
To: "Mr. J. User <sip:j.user@example.com>
From: sip:caller@example.com;tag=93334
Max-Forwards: 10
Call-ID: quotbal.aksdj
Contact: <sip:caller@host59.example.com>
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234
Content-Type: application/sdp
Content-Length: {CL}

""" + SDP_SHORT), "Malformed To", True)

invalid["ltgtruri"] = (crlf("""INVITE <sip:user@example.com> SIP/2.0
To: sip:user@example.com
From: sip:caller@example.com;tag=39291
Max-Forwards: 23
Call-ID: ltgtruri.1@192.0.2.5
CSeq: 1 INVITE
Via: SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKkdjuw
Contact: <sip:caller@host5.example.com>
Content-Type: application/sdp
Content-Length: {CL}

""" + SDP_SHORT), "Malformed Request-URI", True)

invalid["lwsruri"] = (crlf("""INVITE sip:user@example.com; lr SIP/2.0
To: sip:user@example.com;tag=3xfe-9921883-z9f
From: sip:caller@example.com;tag=231413434
Max-Forwards: 5
Call-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423
CSeq: 2130706432 INVITE
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395
Contact: <sip:caller@host1.example.com>
Content-Type: application/sdp
Content-Length: {CL}

""" + SDP_SHORT), "Malformed Request-URI", True)

invalid["escruri"] = (crlf("""INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0
To: sip:user@example.com
From: sip:caller@example.com;tag=341518
Max-Forwards: 7
Contact: <sip:caller@host39923.example.com>
Call-ID: escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5
CSeq: 39234 INVITE
Via: SIP/2.0/UDP host-of-the-hour.example.com;branch=z9hG4bKkdjuw
Content-Type: application/sdp
Content-Length: {CL}

""" + SDP_SHORT), "Malformed Request-URI", True)

invalid["baddn"] = (crlf("""OPTIONS sip:t.watson@example.com SIP/2.0
Via: SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: Bell, Alexander <sip:a.g.bell@example.com>;tag=43
To: Watson, Thomas <sip:t.watson@example.com>
Call-ID: baddn.31415@c.example.com
Accept: application/sdp
CSeq: 3923239 OPTIONS
l: 0

"""), "Malformed From", True)

invalid["badvers"] = (crlf("""OPTIONS sip:t.watson@example.com SIP/7.0
Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw
Max-Forwards:     70
From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe
To:      T. Watson <sip:t.watson@example.com>
Call-ID: badvers.31417@c.example.com
CSeq:    1 OPTIONS
l: 0

"""), "Unsupported SIP Version", False)  # its Via is SIP/7.0 too: no routable reply

invalid["badvers-sip2-via"] = (options("badvers2", start="OPTIONS sip:user@example.com SIP/7.0"),
                               "Unsupported SIP Version", True)

invalid["mismatch01"] = (crlf("""OPTIONS sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.com;tag=34525
Max-Forwards: 6
Call-ID: mismatch01.dj0234sxdfl3
CSeq: 8 INVITE
Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw
l: 0

"""), "CSeq Method Mismatch", True)

invalid["mismatch02"] = (crlf("""NEWMETHOD sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.com;tag=34525
Max-Forwards: 6
Call-ID: mismatch02.dj0234sxdfl3
CSeq: 8 INVITE
Contact: <sip:caller@host.example.com>
Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw
Content-Type: application/sdp
l: {CL}

""" + SDP_SHORT), "CSeq Method Mismatch", True)

invalid["bigcode"] = (crlf("""SIP/2.0 4294967301 better not break the receiver
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i
CSeq: 353494 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.com>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>

"""), "Malformed Status-Line", False)

invalid["bad-status-099"] = (crlf("""SIP/2.0 099 Too Low
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: low@192.0.2.105
CSeq: 1 INVITE
From: <sip:user@example.com>;tag=1
To: <sip:user@example.com>;tag=2
Content-Length: 0

"""), "Malformed Status-Line", False)

invalid["insuf"] = (crlf("""INVITE sip:user@example.com SIP/2.0
CSeq: 193942 INVITE
Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf
Content-Type: application/sdp
l: {CL}

""" + SDP_SHORT), "Missing From", False)

invalid["missing-via"] = (options("novia", headers=BASE_HEADERS.replace(
    "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKbase\n", "")), "Missing Via", False)
invalid["missing-callid"] = (options("nocid", headers=BASE_HEADERS.replace(
    "Call-ID: base.{name}@192.0.2.15\n", "")), "Missing Call-ID", False)
invalid["missing-cseq"] = (options("nocseq", headers=BASE_HEADERS.replace("CSeq: 1 OPTIONS\n", "")),
                           "Missing CSeq", False)
invalid["missing-to"] = (options("noto", headers=BASE_HEADERS.replace("To: <sip:user@example.com>\n", "")),
                         "Missing To", False)

invalid["callid-space"] = (options("cids", headers=BASE_HEADERS.replace(
    "Call-ID: base.{name}@192.0.2.15", "Call-ID: has a space")), "Malformed Call-ID", True)
invalid["cseq-no-method"] = (options("cseqnm", headers=BASE_HEADERS.replace("CSeq: 1 OPTIONS", "CSeq: 1")),
                             "Malformed CSeq", True)
invalid["via-bad-port"] = (options("vbp", headers=BASE_HEADERS.replace(
    "192.0.2.15;branch", "192.0.2.15:99999;branch")), "Malformed Via", False)

full = options("trunc", cl="Content-Length: 0\nSubject: this line is cut off before its end\n")
invalid["truncated"] = (full[: full.index(b"before its")], "Truncated Message", True)
invalid["truncated-start"] = (b"INVITE sip:user@exam", "Truncated Message", False)
invalid["no-blank-line"] = (options("nbl")[:-2], "Truncated Message", True)

state = 0x2545F4914F6CDD1D
garbage = bytearray()
for _ in range(700):
    state ^= (state << 13) & 0xFFFFFFFFFFFFFFFF
    state ^= state >> 7
    state ^= (state << 17) & 0xFFFFFFFFFFFFFFFF
    garbage.append(state & 0xFF)
garbage[0] = 0x9C  # make sure it does not start with CR/LF or a letter
invalid["binary-garbage"] = (bytes(garbage), "Malformed Start Line", False)
invalid["crlf-only"] = (b"\r\n\r\n\r\n\r\n", "Empty Message", False)
invalid["empty"] = (b"", "Empty Message", False)
invalid["http-request"] = (b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", "Malformed Request-Line", False)
invalid["bad-method-char"] = (options("bm", start="INV@TE sip:user@example.com SIP/2.0"),
                              "Malformed Request-Line", False)
invalid["scheme-less-ruri"] = (options("slr", start="OPTIONS user@example.com SIP/2.0"),
                               "Malformed Request-URI", True)
invalid["response-bad-version"] = (crlf("""SIP/3.0 200 OK
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: v3@192.0.2.105
CSeq: 1 INVITE
From: <sip:user@example.com>;tag=1
To: <sip:user@example.com>;tag=2
Content-Length: 0

"""), "Unsupported SIP Version", False)
invalid["response-missing-cseq"] = (crlf("""SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: nocseq@192.0.2.105
From: <sip:user@example.com>;tag=1
To: <sip:user@example.com>;tag=2
Content-Length: 0

"""), "Missing CSeq", False)

invalid["header-no-colon"] = (options("hnc", extra="This line has no colon\n"), "Malformed Header", True)
invalid["header-bad-name"] = (options("hbn", extra="X-Foo@bar: 1\n"), "Malformed Header", True)
invalid["header-space-in-name"] = (options("hsn", extra="Bad Name: 1\n"), "Malformed Header", True)
invalid["fold-first"] = (crlf("OPTIONS sip:user@example.com SIP/2.0\n  folded onto the start line\n" +
                              BASE_HEADERS.format(name="ff") + "Content-Length: 0\n\n"),
                         "Malformed Header", True)
invalid["nul-in-header"] = (options("nul").replace(b"Call-ID: base.nul", b"Call-ID: base.nul\x00x"),
                            "Malformed Header", False)
invalid["nul-quoted-pair"] = (options("nulqp", extra="Subject: \"x\\\x00y\"\n"), "Malformed Header", True)
invalid["invalid-utf8-header"] = (options("utf8", extra="Subject: caf\xe9\n").replace(b"caf\xc3\xa9", b"caf\xe9"),
                                  "Malformed Header", True)
invalid["stray-cr"] = (options("cr", extra="Subject: a\rb\n"), "Malformed Header", True)
invalid["ack-bad-cl"] = (crlf("""ACK sip:bob@192.0.2.30 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds9
Max-Forwards: 70
To: Bob <sip:bob@example.com>;tag=a6c85cf
From: Alice <sip:alice@example.com>;tag=1928301774
Call-ID: ack-bad-cl@192.0.2.10
CSeq: 314159 ACK
Content-Length: -1

"""), "Bad Content-Length", False)  # never answer an ACK

many = "".join(f"X-Header-{n}: value {n}\n" for n in range(300))
invalid["huge-header-count"] = (options("many", extra=many), "Too Many Headers", True)

big = "x" * 70000
invalid["oversize"] = (options("big", cl=f"Content-Length: {len(big)}\n", body=big), "Message Too Large", True)

# ---------------------------------------------------------------------------------------


def write_all():
    for d in (VALID, INVALID):
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            if f.endswith(".sip") or f == "expected.tsv":
                os.remove(os.path.join(d, f))
    for name, data in valid.items():
        with open(os.path.join(VALID, name + ".sip"), "wb") as f:
            f.write(data)
    with open(os.path.join(INVALID, "expected.tsv"), "w") as m:
        m.write("# file\texpected reason()\tpartial() is Some\n")
        for name, (data, reason, partial) in invalid.items():
            with open(os.path.join(INVALID, name + ".sip"), "wb") as f:
                f.write(data)
            m.write(f"{name}.sip\t{reason}\t{'yes' if partial else 'no'}\n")
    print(f"{len(valid)} valid, {len(invalid)} invalid")


if __name__ == "__main__":
    write_all()
