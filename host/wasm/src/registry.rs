//! Name -> module map whose entries can be replaced atomically.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::module::LoadedModule;

/// The modules in service, by name. Weir registers each module under its config name
/// (`[modules.NAME]`, unique across tenants; [`LoadedModule::name`]), which is also
/// the name the module services call back with.
///
/// Readers get an `Arc<LoadedModule>` and keep it for the whole call, so replacing a
/// module never disturbs a call in progress: in-flight calls finish on the old
/// version, whose instances are freed when the last call drops its `Arc`. Writers
/// copy the map and swap it in (copy-on-write), so a read never waits for a load.
#[derive(Default)]
pub struct ModuleRegistry {
    modules: RwLock<Arc<HashMap<String, Arc<LoadedModule>>>>,
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
        previous
    }

    /// Replaces the whole set at once (a config reload); returns the previous set.
    pub fn replace_all(
        &self,
        modules: HashMap<String, Arc<LoadedModule>>,
    ) -> Arc<HashMap<String, Arc<LoadedModule>>> {
        let mut guard = self.modules.write().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *guard, Arc::new(modules))
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

    fn read(&self) -> Arc<HashMap<String, Arc<LoadedModule>>> {
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
