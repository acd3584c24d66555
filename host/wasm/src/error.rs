//! Errors of loading modules and building the runtime.

use std::fmt;
use std::path::PathBuf;

use crate::call::ModuleFailure;

/// Why the runtime could not be built or a module could not be loaded. Every
/// module-related variant names the module as `tenant/name`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runtime configuration is unusable.
    #[error("invalid runtime config: {reason}")]
    Config {
        /// What is wrong.
        reason: &'static str,
    },
    /// The wasmtime engine could not be created.
    #[error("cannot create the wasm engine: {source}")]
    Engine {
        /// The engine's error.
        #[source]
        source: WasmError,
    },
    /// The code cache directory cannot be created.
    #[error("cannot use the code cache directory {}: {source}", dir.display())]
    CacheDir {
        /// The directory.
        dir: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The module spec is unusable (name, tenant, limits).
    #[error("module `{module}`: invalid spec: {reason}")]
    InvalidSpec {
        /// `tenant/name` of the module.
        module: String,
        /// What is wrong.
        reason: String,
    },
    /// The component file cannot be read.
    #[error("module `{module}`: cannot read component {}: {source}", path.display())]
    ReadComponent {
        /// `tenant/name` of the module.
        module: String,
        /// The component file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The component file is larger than the runtime accepts.
    #[error("module `{module}`: component {} is {len} bytes, more than {max}", path.display())]
    ComponentTooLarge {
        /// `tenant/name` of the module.
        module: String,
        /// The component file.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The component does not validate or compile.
    #[error("module `{module}`: does not compile: {source}")]
    Compile {
        /// `tenant/name` of the module.
        module: String,
        /// The compiler's error.
        #[source]
        source: WasmError,
    },
    /// The component imports an interface Weir does not provide.
    #[error("module `{module}`: imports `{import}`, which Weir does not provide")]
    UnsupportedImport {
        /// `tenant/name` of the module.
        module: String,
        /// The import's name.
        import: String,
    },
    /// The component does not match the `weir:sip/module` world.
    #[error("module `{module}`: does not fit the weir:sip/module world: {source}")]
    Link {
        /// `tenant/name` of the module.
        module: String,
        /// The linker's error.
        #[source]
        source: WasmError,
    },
    /// The module's `init` refused its params.
    #[error("module `{module}`: init refused the params: {message}")]
    InitRefused {
        /// `tenant/name` of the module.
        module: String,
        /// The message `init` returned.
        message: String,
    },
    /// The first instance could not be created (trap, timeout or memory in
    /// instantiation or `init`).
    #[error("module `{module}`: cannot start an instance: {failure}")]
    Instantiate {
        /// `tenant/name` of the module.
        module: String,
        /// What went wrong.
        #[source]
        failure: ModuleFailure,
    },
}

/// An error from wasmtime, with its chain of causes flattened into one line.
///
/// `wasmtime::Error` does not implement [`std::error::Error`], so it cannot be a
/// `#[source]` as it is.
pub struct WasmError(wasmtime::Error);

impl WasmError {
    /// The wasmtime error.
    pub fn inner(&self) -> &wasmtime::Error {
        &self.0
    }
}

impl From<wasmtime::Error> for WasmError {
    fn from(e: wasmtime::Error) -> Self {
        WasmError(e)
    }
}

impl fmt::Display for WasmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&chain(&self.0))
    }
}

impl fmt::Debug for WasmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl std::error::Error for WasmError {}

/// `outer: cause: root cause`, as one line.
pub(crate) fn chain(e: &wasmtime::Error) -> String {
    let mut out = String::new();
    for (i, cause) in e.chain().enumerate() {
        if i > 0 {
            out.push_str(": ");
        }
        out.push_str(&cause.to_string());
    }
    out
}
