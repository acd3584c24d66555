//! Where the binaries and modules under test are. Each can be overridden by an
//! environment variable; otherwise the release build in the workspace target directory
//! is used (`scripts/setup` builds all of them).

use std::path::{Path, PathBuf};

/// The workspace root (parent of this crate).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The cargo target directory (`CARGO_TARGET_DIR` or `<root>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                repo_root().join(d)
            }
        }
        None => repo_root().join("target"),
    }
}

fn must_exist(p: PathBuf, what: &str, env: &str) -> PathBuf {
    assert!(
        p.is_file(),
        "{what} not found at {} (run scripts/setup, or set {env})",
        p.display()
    );
    p
}

fn from_env(env: &str) -> Option<PathBuf> {
    std::env::var_os(env)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The `weir` binary: `WEIR_BIN`, else `target/release/weir`.
pub fn weir_bin() -> PathBuf {
    let p = from_env("WEIR_BIN").unwrap_or_else(|| target_dir().join("release/weir"));
    must_exist(p, "the weir binary", "WEIR_BIN")
}

/// The header-ops module: `WEIR_HEADER_OPS_WASM`, else the release wasm32-wasip2 build.
pub fn header_ops_wasm() -> PathBuf {
    let p = from_env("WEIR_HEADER_OPS_WASM")
        .unwrap_or_else(|| target_dir().join("wasm32-wasip2/release/header_ops.wasm"));
    must_exist(p, "header_ops.wasm", "WEIR_HEADER_OPS_WASM")
}

/// A module from `plugins/` by crate name (`auth-xkeys`, `sdpops`, ...):
/// `WEIR_<NAME>_WASM` (upper case, `-` as `_`), else the release wasm32-wasip2 build.
pub fn plugin_wasm(crate_name: &str) -> PathBuf {
    let file = crate_name.replace('-', "_");
    let env = format!("WEIR_{}_WASM", file.to_ascii_uppercase());
    let p = from_env(&env)
        .unwrap_or_else(|| target_dir().join(format!("wasm32-wasip2/release/{file}.wasm")));
    must_exist(p, &format!("{file}.wasm"), &env)
}

/// The misbehave test module: `WEIR_MISBEHAVE_WASM`, else the newest of the workspace
/// target and the guest's own target directory (`scripts/setup` builds it with
/// `--manifest-path`, which uses the guest's own `target/`).
pub fn misbehave_wasm() -> PathBuf {
    if let Some(p) = from_env("WEIR_MISBEHAVE_WASM") {
        return must_exist(p, "the misbehave module", "WEIR_MISBEHAVE_WASM");
    }
    let rel = "wasm32-wasip2/release/weir_test_misbehave.wasm";
    let candidates = [
        target_dir().join(rel),
        repo_root().join("tests/guests/misbehave/target").join(rel),
    ];
    let newest = candidates
        .iter()
        .filter_map(|p| {
            let m = std::fs::metadata(p).ok()?.modified().ok()?;
            Some((m, p.clone()))
        })
        .max_by_key(|(m, _)| *m)
        .map(|(_, p)| p);
    must_exist(
        newest.unwrap_or_else(|| candidates[0].clone()),
        "weir_test_misbehave.wasm",
        "WEIR_MISBEHAVE_WASM",
    )
}

/// The sipp executable: `SIPP`, else `sipp` on PATH.
pub fn sipp_bin() -> PathBuf {
    from_env("SIPP").unwrap_or_else(|| PathBuf::from("sipp"))
}

/// The example configs shipped in `config/`.
pub fn example_configs() -> Vec<PathBuf> {
    let dir = repo_root().join("config");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    out.sort();
    out
}

/// The parser's corpus of invalid messages, if the message crate ships one.
pub fn invalid_corpus_dir() -> Option<PathBuf> {
    let d = repo_root().join("host/sip-message/tests/corpus/invalid");
    d.is_dir().then_some(d)
}

/// A scratch directory, removed on drop (kept when `WEIR_TEST_KEEP` is set, for
/// post-mortems).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A new empty directory under the system temp dir, named after `label`.
    pub fn new(label: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("weir-systest-{label}-{}", crate::token()));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("WEIR_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
