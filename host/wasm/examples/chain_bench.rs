//! Added per-request cost of the issue-5 module chain: auth-xkeys (add), pipelimit
//! (TAILDROP, never over the limit), sdpops (keep PCMA and GSM, remove video) and
//! gzcompress (compress for an accepting next hop) called in sequence on an INVITE with
//! a typical audio+video SDP, against the empty chain, on one thread with warm
//! instances. This is what the four modules add to a request; the proxy's own work is
//! the same with and without them.
//!
//! ```text
//! scripts/setup   # builds the modules
//! cargo run --release -p weir-wasm --example chain_bench [-- CALLS]
//! ```
//!
//! Each call gets a fresh clone of the parsed INVITE (cloned outside the timed region).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_message::{Limits, Message};
use weir_wasm::{
    CallContext, KvLimits, LoadedModule, MemoryKv, ModuleSpec, ParamValue, Runtime, RuntimeConfig,
    Transport, Verdict,
};

const SDP: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.1\r\n\
s=-\r\n\
c=IN IP4 192.0.2.1\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 3 18 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:3 GSM/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
m=video 51372 RTP/AVP 96 97\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n\
a=rtpmap:97 VP8/90000\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=sendrecv\r\n";

fn invite() -> String {
    format!(
        "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.0.2.1>\r\n\
User-Agent: Bench/1.0\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\
\r\n{SDP}",
        SDP.len()
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn wasm(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target_dir.join(format!("wasm32-wasip2/release/{name}.wasm"))
}

fn text(s: &str) -> ParamValue {
    ParamValue::Text(s.to_string())
}

fn list(items: &[&str]) -> ParamValue {
    ParamValue::TextList(items.iter().map(|s| s.to_string()).collect())
}

fn load(runtime: &Runtime) -> Result<Vec<Arc<LoadedModule>>, Box<dyn std::error::Error>> {
    let specs = [
        ModuleSpec::new("xkeys", "bench", wasm("auth_xkeys"))
            .param("mode", text("add"))
            .param("key_id", text("core"))
            .param("data", text("$si:$fu:$ru:$cs"))
            .param("keys", list(&["id=core;name=k1;value=secret"])),
        ModuleSpec::new("limit", "bench", wasm("pipelimit"))
            .param("timer_interval", ParamValue::Integer(1))
            .param("pipes.all.algorithm", text("TAILDROP"))
            .param("pipes.all.limit", ParamValue::Integer(1_000_000_000)),
        ModuleSpec::new("sdp", "bench", wasm("sdpops"))
            .param("keep_codecs_by_name", list(&["PCMA", "GSM"]))
            .param("remove_media", list(&["video"])),
        ModuleSpec::new("gz", "bench", wasm("gzcompress"))
            .param("compress", text("always"))
            .param("min_size", ParamValue::Integer(128)),
    ];
    let mut out = Vec::new();
    for mut s in specs {
        // A generous deadline: this measures cost, not the deadline, and the machine
        // may be busy (a timed-out call would abort the run).
        s.limits.timeout = Duration::from_secs(1);
        let name = s.name.clone();
        out.push(runtime.load(&s).map_err(|e| format!("{name}: {e}"))?);
    }
    Ok(out)
}

fn run(
    chain: &[Arc<LoadedModule>],
    parsed: &Message,
    ctx: &CallContext<'_>,
    calls: usize,
) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let mut msg = parsed.clone();
        let t = Instant::now();
        for m in chain {
            match m
                .on_request(&mut msg, ctx)
                .map_err(|e| format!("{}: {e:?}", m.name()))?
            {
                Verdict::Continue => {}
                other => return Err(format!("{}: unexpected verdict {other:?}", m.name()).into()),
            }
        }
        samples.push(t.elapsed());
    }
    samples.sort_unstable();
    Ok(samples)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let calls: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let runtime = Runtime::new(RuntimeConfig::default(), MemoryKv::new(KvLimits::default()))?;
    let chain = load(&runtime)?;
    let ctx = CallContext::new("192.0.2.1:5060".parse()?, Transport::Udp, "udp0");
    let text = invite();
    let parsed = Message::parse(text.as_bytes(), &Limits::default())?;
    // Warm up, and show what the chain does to the request once.
    run(&chain, &parsed, &ctx, calls / 10)?;
    let mut shown = parsed.clone();
    for m in &chain {
        m.on_request(&mut shown, &ctx)?;
    }
    println!(
        "request body {} -> {} bytes after the chain",
        parsed.body.len(),
        shown.body.len()
    );
    let empty = run(&[], &parsed, &ctx, calls)?;
    println!(
        "empty chain      : median {:?}  p90 {:?}  p99 {:?}",
        percentile(&empty, 0.5),
        percentile(&empty, 0.9),
        percentile(&empty, 0.99)
    );
    for m in &chain {
        let s = run(std::slice::from_ref(m), &parsed, &ctx, calls)?;
        println!(
            "{:<17}: median {:?}  p90 {:?}  p99 {:?}",
            m.name(),
            percentile(&s, 0.5),
            percentile(&s, 0.9),
            percentile(&s, 0.99)
        );
    }
    let all = run(&chain, &parsed, &ctx, calls)?;
    println!(
        "all four         : median {:?}  p90 {:?}  p99 {:?}  ({calls} calls)",
        percentile(&all, 0.5),
        percentile(&all, 0.9),
        percentile(&all, 0.99)
    );
    Ok(())
}
