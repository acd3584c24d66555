//! What the caller hands the runtime: runtime config, module specs, params, limits.

use std::path::PathBuf;
use std::time::Duration;

/// Process-wide runtime settings.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Directory of the compiled-code cache; `None` compiles every load. The caller
    /// picks the default (e.g. a `cache/` directory beside the config).
    pub cache_dir: Option<PathBuf>,
    /// Longest sleep of the call watchdog while modules are being called; it also
    /// sleeps no longer than the shortest module timeout, so deadlines hold whatever
    /// this is.
    pub epoch_tick: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            epoch_tick: Duration::from_millis(1),
        }
    }
}

/// One module to load: which component, for which tenant, with which params and limits.
#[derive(Clone, Debug)]
pub struct ModuleSpec {
    /// Module name, unique within the tenant: `[A-Za-z0-9._-]`, 1 to 64 bytes.
    pub name: String,
    /// Owning tenant: same alphabet and length as `name`.
    pub tenant: String,
    /// Path of the `.wasm` component.
    pub component: PathBuf,
    /// Params handed to `init` of every instance.
    pub params: Vec<Param>,
    /// Resource limits of each instance and call.
    pub limits: ModuleLimits,
    /// URL prefixes the module may reach with `weir:sip/http`; empty: none.
    pub http_allow: Vec<String>,
    /// Files the module may read with `weir:sip/files`, by grant name.
    pub files: Vec<(String, PathBuf)>,
}

impl ModuleSpec {
    /// A spec with no params and default limits.
    pub fn new(
        name: impl Into<String>,
        tenant: impl Into<String>,
        component: impl Into<PathBuf>,
    ) -> Self {
        ModuleSpec {
            name: name.into(),
            tenant: tenant.into(),
            component: component.into(),
            params: Vec::new(),
            limits: ModuleLimits::default(),
            http_allow: Vec::new(),
            files: Vec::new(),
        }
    }

    /// Adds one param.
    pub fn param(mut self, key: impl Into<String>, value: ParamValue) -> Self {
        self.params.push(Param {
            key: key.into(),
            value,
        });
        self
    }
}

/// One module param (`params` table of a route; nested tables flattened to `a.b`).
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// The key.
    pub key: String,
    /// The value.
    pub value: ParamValue,
}

/// A typed param value, as in the WIT `param-value`.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    /// A string.
    Text(String),
    /// An integer.
    Integer(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Boolean(bool),
    /// A list of strings.
    TextList(Vec<String>),
    /// A list of integers.
    IntegerList(Vec<i64>),
}

/// Per-module limits.
#[derive(Clone, Debug)]
pub struct ModuleLimits {
    /// Largest linear memory of one instance, in bytes. Growing beyond traps and the
    /// call fails with [`ModuleFailure::OutOfMemory`](crate::ModuleFailure::OutOfMemory).
    pub memory_bytes: usize,
    /// Wall-clock budget of one call (instantiation and `init` get ten times this).
    pub timeout: Duration,
    /// Most instances alive at once (idle plus in a call); beyond,
    /// [`ModuleFailure::Busy`](crate::ModuleFailure::Busy).
    pub max_instances: usize,
}

impl Default for ModuleLimits {
    fn default() -> Self {
        ModuleLimits {
            memory_bytes: 16 * 1024 * 1024,
            timeout: Duration::from_millis(10),
            max_instances: 64,
        }
    }
}
