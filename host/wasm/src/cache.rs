//! On-disk cache of compiled components.
//!
//! An entry is named by `sha256(engine compatibility hash, sha256(component))`, so a
//! different wasmtime version, engine setting or CPU feature set never reads another's
//! entry. The file is the serialized component followed by the SHA-256 of those bytes;
//! it is written to a temporary file and renamed into place, so readers see a whole
//! entry or none. An entry that is truncated, fails its checksum or is refused by
//! wasmtime is deleted and rebuilt.

use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::error::chain;

const DIGEST_LEN: usize = 32;
/// Changes when the entry format changes.
const FORMAT: &[u8] = b"weir-wasm code cache v1\0";

pub(crate) struct CodeCache {
    dir: PathBuf,
    engine_key: [u8; DIGEST_LEN],
}

/// Feeds `Hash` output into SHA-256, to turn wasmtime's compatibility hash (only
/// available as `impl Hash`) into stable bytes.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        // Unused: the digest is read with `finalize`.
        0
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

impl CodeCache {
    /// Opens (creating it if needed) the cache directory for this engine.
    pub(crate) fn open(dir: PathBuf, engine: &Engine) -> io::Result<CodeCache> {
        fs::create_dir_all(&dir)?;
        let mut h = Sha256Hasher(Sha256::new());
        h.write(FORMAT);
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(CodeCache {
            dir,
            engine_key: h.0.finalize().into(),
        })
    }

    /// The entry name of a component's bytes.
    pub(crate) fn key(&self, wasm: &[u8]) -> String {
        let mut h = Sha256::new();
        h.update(self.engine_key);
        h.update(Sha256::digest(wasm));
        hex(&h.finalize())
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.cwasm"))
    }

    /// The cached component, if a sound entry exists.
    pub(crate) fn load(&self, engine: &Engine, key: &str) -> Option<Component> {
        let path = self.path(key);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "code cache entry unreadable");
                return None;
            }
        };
        let Some(split) = bytes.len().checked_sub(DIGEST_LEN) else {
            discard(&path, "truncated");
            return None;
        };
        let (code, digest) = bytes.split_at(split);
        if Sha256::digest(code).as_slice() != digest {
            discard(&path, "checksum mismatch");
            return None;
        }
        match deserialize_verified(engine, code) {
            Ok(component) => Some(component),
            Err(e) => {
                discard(&path, &chain(&e));
                None
            }
        }
    }

    /// Writes an entry; a failure only costs a recompilation next time.
    pub(crate) fn store(&self, key: &str, component: &Component) {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let tmp = self.dir.join(format!(
            ".{key}.{}.{}.tmp",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let written = component
            .serialize()
            .map_err(|e| io::Error::other(chain(&e)))
            .and_then(|mut code| {
                let digest = Sha256::digest(&code);
                code.extend_from_slice(&digest);
                let mut file = File::create(&tmp)?;
                file.write_all(&code)?;
                file.sync_all()?;
                fs::rename(&tmp, self.path(key))
            });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            tracing::warn!(dir = %self.dir.display(), error = %e, "code cache entry not written");
        }
    }
}

fn discard(path: &Path, why: &str) {
    tracing::warn!(path = %path.display(), reason = why, "code cache entry ignored and rebuilt");
    let _ = fs::remove_file(path);
}

/// The only unsafe code of the crate.
#[allow(unsafe_code)]
fn deserialize_verified(engine: &Engine, code: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` maps its input as executable code and trusts it
    // to be wasmtime's own output. `code` is read from Weir's own cache directory,
    // from an entry `CodeCache::store` wrote (temp file + rename, so never partial)
    // with `Component::serialize` of an engine whose compatibility hash is part of the
    // entry's name, and its SHA-256 trailer was verified just now on these very bytes
    // (no re-read from disk after the check). wasmtime additionally checks the header,
    // version and engine settings and returns an error on any mismatch.
    unsafe { Component::deserialize(engine, code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_pairs() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
    }
}
