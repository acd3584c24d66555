//! Name -> module map whose entries can be replaced atomically.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use weir_metrics::{CachePadded, STRIPES};

use crate::module::LoadedModule;

type Modules = Arc<HashMap<String, Arc<LoadedModule>>>;

/// One thread slot's copy of the map, with the generation it was read at, alone on its
/// cache line.
type ThreadCopy = CachePadded<Mutex<Option<(u64, Modules)>>>;

/// The modules in service, by name. Weir registers each module under its config name
/// (`[modules.NAME]`, unique across tenants; [`LoadedModule::name`]), which is also
/// the name the module services call back with.
///
/// Readers get an `Arc<LoadedModule>` and keep it for the whole call, so replacing a
/// module never disturbs a call in progress: in-flight calls finish on the old
/// version, whose instances are freed when the last call drops its `Arc`. Writers
/// copy the map and swap it in (copy-on-write), so a read never waits for a load.
///
/// [`ModuleRegistry::with`], the per-message path, reads a per-thread copy of the map
/// (one per [`weir_metrics::thread_slot`]) checked against a generation number that
/// every change bumps: a call then takes no lock and no reference count that the other
/// receive threads also touch. A thread's copy keeps the modules it last saw alive until
/// that thread's next call after a change.
#[derive(Default)]
pub struct ModuleRegistry {
    modules: RwLock<Modules>,
    /// Bumped by every change, after the new map is in place.
    generation: AtomicU64,
    copies: [ThreadCopy; STRIPES],
}

impl ModuleRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The module registered under `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedModule>> {
        self.read().get(name).cloned()
    }

    /// Run `f` with the module registered under `name` (`None` if there is none), read
    /// from this thread's copy of the map, refreshed first if the registry changed. The
    /// module stays alive for the whole of `f`, as with [`get`](Self::get). A nested
    /// call (from within `f`) or a thread sharing its slot with a busy one reads the
    /// shared map instead.
    pub fn with<T>(&self, name: &str, f: impl FnOnce(Option<&Arc<LoadedModule>>) -> T) -> T {
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(copy) = self.copies.get(weir_metrics::thread_slot()) {
            if let Some(mut c) = crate::try_lock(&copy.0) {
                if !matches!(&*c, Some((g, _)) if *g == generation) {
                    *c = Some((generation, self.read()));
                }
                if let Some((_, map)) = &*c {
                    return f(map.get(name));
                }
            }
        }
        f(self.read().get(name))
    }

    /// Registers `module` under `name`; returns the module it replaces.
    pub fn replace(
        &self,
        name: impl Into<String>,
        module: Arc<LoadedModule>,
    ) -> Option<Arc<LoadedModule>> {
        let mut guard = self.modules.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = HashMap::clone(&guard);
        let previous = next.insert(name.into(), module);
        *guard = Arc::new(next);
        self.generation.fetch_add(1, Ordering::AcqRel);
        previous
    }

    /// Removes `name`; returns the module that was registered.
    pub fn remove(&self, name: &str) -> Option<Arc<LoadedModule>> {
        let mut guard = self.modules.write().unwrap_or_else(PoisonError::into_inner);
        if !guard.contains_key(name) {
            return None;
        }
        let mut next = HashMap::clone(&guard);
        let previous = next.remove(name);
        *guard = Arc::new(next);
        self.generation.fetch_add(1, Ordering::AcqRel);
        previous
    }

    /// Replaces the whole set at once (a config reload); returns the previous set.
    pub fn replace_all(
        &self,
        modules: HashMap<String, Arc<LoadedModule>>,
    ) -> Arc<HashMap<String, Arc<LoadedModule>>> {
        let mut guard = self.modules.write().unwrap_or_else(PoisonError::into_inner);
        let previous = std::mem::replace(&mut *guard, Arc::new(modules));
        self.generation.fetch_add(1, Ordering::AcqRel);
        previous
    }

    /// The current set, consistent at one instant.
    pub fn snapshot(&self) -> Arc<HashMap<String, Arc<LoadedModule>>> {
        self.read()
    }

    /// Number of registered modules.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// True when no module is registered.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    fn read(&self) -> Modules {
        self.modules
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl std::fmt::Debug for ModuleRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snapshot = self.read();
        let mut names: Vec<&String> = snapshot.keys().collect();
        names.sort();
        f.debug_struct("ModuleRegistry")
            .field("modules", &names)
            .finish()
    }
}
