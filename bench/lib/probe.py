#!/usr/bin/env python3
"""Response-time probe for bench.py --mode stateful: complete calls, one at a time, at a
low rate through a proxy to the SIPp UAS, timed in microseconds (SIPp's own response
times, -trace_rtt, count whole milliseconds: on loopback nearly all are 0).

    probe.py PROXY_PORT LOCAL_PORT RATE SECONDS OUT.json

Each call: INVITE (SDP as SIPp's) -> 100/180 ignored -> 200: "setup" = INVITE sent to
200 received; ACK and BYE along the route set (Record-Route of the 200, Request-URI =
its Contact), BYE sent to 200 received: "bye". No retransmissions: a call whose
response does not come within 2 s is counted as failed. Standard library only.
"""

import json
import os
import re
import socket
import sys
import time

HOST = "127.0.0.1"


def main():
    proxy_port, lport, rate, seconds, out = (int(sys.argv[1]), int(sys.argv[2]),
                                             float(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST, lport))
    dest = (HOST, proxy_port)
    res = {"setup_us": [], "bye_us": [], "ok": 0, "failed": 0, "errors": []}
    tag0 = os.urandom(3).hex()
    sdp = ("v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n"
           "c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    ruri = f"sip:service@{HOST}:{proxy_port}"
    frm = f"sipp <sip:probe@{HOST}:{lport}>"
    end = time.monotonic() + seconds
    n = 0
    nxt = time.monotonic()

    def wait_for(call_id, method, deadline):
        """The final response to `method` of this call, or None on timeout."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            s.settimeout(left)
            try:
                data = s.recv(65535).decode(errors="replace")
            except socket.timeout:
                return None
            if not data.startswith("SIP/2.0 "):
                continue
            head = data.split("\r\n\r\n", 1)[0]
            if (re.search(rf"^(Call-ID|i):\s*{re.escape(call_id)}\s*$", head, re.M | re.I)
                    and re.search(rf"^CSeq:\s*\d+\s+{method}\s*$", head, re.M | re.I)):
                code = int(data.split()[1])
                if code >= 200:
                    return head

    while time.monotonic() < end:
        n += 1
        call_id = f"probe-{tag0}-{n}@{HOST}"
        ftag = f"{tag0}{n}"
        branch = f"z9hG4bK-probe-{tag0}-{n}"
        inv = (f"INVITE {ruri} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {HOST}:{lport};branch={branch}-i\r\n"
               f"From: {frm};tag={ftag}\r\nTo: service <{ruri}>\r\nCall-ID: {call_id}\r\n"
               f"CSeq: 1 INVITE\r\nContact: sip:probe@{HOST}:{lport}\r\nMax-Forwards: 70\r\n"
               f"Subject: Performance Test\r\nContent-Type: application/sdp\r\n"
               f"Content-Length: {len(sdp)}\r\n\r\n{sdp}")
        t0 = time.perf_counter_ns()
        s.sendto(inv.encode(), dest)
        head = wait_for(call_id, "INVITE", time.monotonic() + 2.0)
        t1 = time.perf_counter_ns()
        if head is None or not head.startswith("SIP/2.0 200"):
            res["failed"] += 1
            res["errors"].append(f"call {n}: INVITE: {head.splitlines()[0] if head else 'no final in 2 s'}")
            nxt += 1.0 / rate
            time.sleep(max(0.0, nxt - time.monotonic()))
            continue
        to = re.search(r"^(?:To|t):\s*(.*)$", head, re.M | re.I).group(1).strip()
        rr = [v.strip() for v in re.findall(r"^Record-Route:\s*(.*)$", head, re.M | re.I)]
        routes = ", ".join(rr)
        m = re.search(r"^(?:Contact|m):\s*<?([^>;\s]+[^>\s]*)>?", head, re.M | re.I)
        target = m.group(1) if m else ruri
        route_line = f"Route: {routes}\r\n" if routes else ""

        def indialog(method, cseq, br):
            return (f"{method} {target} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {HOST}:{lport};branch={br}\r\n{route_line}"
                    f"From: {frm};tag={ftag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n"
                    f"CSeq: {cseq} {method}\r\nContact: sip:probe@{HOST}:{lport}\r\n"
                    f"Max-Forwards: 70\r\nSubject: Performance Test\r\nContent-Length: 0\r\n\r\n")

        s.sendto(indialog("ACK", 1, branch + "-a").encode(), dest)
        t2 = time.perf_counter_ns()
        s.sendto(indialog("BYE", 2, branch + "-b").encode(), dest)
        head = wait_for(call_id, "BYE", time.monotonic() + 2.0)
        t3 = time.perf_counter_ns()
        if head is None or not head.startswith("SIP/2.0 200"):
            res["failed"] += 1
            res["errors"].append(f"call {n}: BYE: {head.splitlines()[0] if head else 'no final in 2 s'}")
        else:
            res["ok"] += 1
            res["setup_us"].append(round((t1 - t0) / 1000, 1))
            res["bye_us"].append(round((t3 - t2) / 1000, 1))
        nxt += 1.0 / rate
        time.sleep(max(0.0, nxt - time.monotonic()))
    res["errors"] = res["errors"][:20]
    with open(out, "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    main()
