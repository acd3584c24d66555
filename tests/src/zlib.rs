//! An independent zlib to check Weir's compressed bodies against: CPython's `zlib`
//! (python3 is on every machine the tests run on).

use std::io::Write;
use std::process::{Command, Stdio};

/// Inflate a zlib stream (RFC 1950) with CPython's `zlib.decompress`; panics (failing
/// the test) if python3 is missing or the stream is refused.
pub fn python_inflate(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, zlib; sys.stdout.buffer.write(zlib.decompress(sys.stdin.buffer.read()))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 (for the real zlib) is needed by this test: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(data)
            .unwrap_or_else(|e| panic!("write to python3: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    assert!(out.status.success(), "zlib.decompress refused the body");
    out.stdout
}
