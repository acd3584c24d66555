//! The on-disk code cache: a second load of the same component skips compilation,
//! and a damaged entry is ignored and rebuilt.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use common::*;
use weir_wasm::{CacheOutcome, Verdict};

fn fresh_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn entries(dir: &PathBuf) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect()
}

#[test]
fn second_load_hits_the_cache() {
    let wasm = misbehave_wasm();
    let dir = fresh_dir("cache-hit");

    let (rt, _) = runtime_with(Some(dir.clone()));
    let t = Instant::now();
    let cold = rt.load(&spec("m", "t", "ok")).unwrap();
    let cold_total = t.elapsed();
    assert_eq!(cold.load_info().cache, CacheOutcome::Miss);
    assert_eq!(entries(&dir).len(), 1);

    // A new runtime (a restart) with the same engine configuration.
    let (rt2, _) = runtime_with(Some(dir.clone()));
    let t = Instant::now();
    let warm = rt2.load(&spec("m", "t", "ok")).unwrap();
    let warm_total = t.elapsed();
    assert_eq!(warm.load_info().cache, CacheOutcome::Hit);
    let mut msg = invite();
    assert_eq!(warm.on_request(&mut msg, &ctx()), Ok(Verdict::Continue));

    let (c, w) = (cold.load_info(), warm.load_info());
    println!(
        "component {} bytes; cold load {cold_total:?} (compile {:?}, start {:?}); \
         cached load {warm_total:?} (cache read {:?}, start {:?})",
        c.component_bytes, c.code_time, c.start_time, w.code_time, w.start_time
    );
    assert!(
        w.code_time < c.code_time,
        "cache read slower than compiling"
    );

    let (rt3, _) = runtime_with(None);
    let uncached = rt3.load(&spec("m", "t", "ok")).unwrap();
    assert_eq!(uncached.load_info().cache, CacheOutcome::Disabled);
    drop(wasm);
}

#[test]
fn damaged_entries_are_rebuilt() {
    let dir = fresh_dir("cache-damaged");
    let (rt, _) = runtime_with(Some(dir.clone()));
    rt.load(&spec("m", "t", "ok")).unwrap();
    let entry = entries(&dir).pop().unwrap();
    let good = fs::read(&entry).unwrap();

    let damage: [(&str, Vec<u8>); 3] = [
        ("truncated", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("flipped byte", {
            let mut b = good.clone();
            b[good.len() / 3] ^= 0xff;
            b
        }),
    ];
    for (what, bytes) in damage {
        fs::write(&entry, bytes).unwrap();
        let (rt, _) = runtime_with(Some(dir.clone()));
        let m = rt.load(&spec("m", "t", "ok")).unwrap();
        assert_eq!(m.load_info().cache, CacheOutcome::Miss, "{what}");
        let mut msg = invite();
        assert_eq!(
            m.on_request(&mut msg, &ctx()),
            Ok(Verdict::Continue),
            "{what}"
        );
        assert_eq!(fs::read(&entry).unwrap(), good, "{what}: entry rewritten");
    }
    let (rt, _) = runtime_with(Some(dir.clone()));
    assert_eq!(
        rt.load(&spec("m", "t", "ok")).unwrap().load_info().cache,
        CacheOutcome::Hit
    );
    // No temporary files left behind.
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
}
