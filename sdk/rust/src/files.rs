//! Files the config grants the module (`files = { list = "dispatcher.list" }` in its
//! `[modules.NAME]` table), read-only: e.g. a dispatcher's gateway list. The host
//! re-reads a file when it changes on disk (checked about once a second) and bumps its
//! version, so a module reloads cheaply by comparing [`version`] with the version it
//! parsed last. Nothing else on disk is visible to a module.
//!
//! ```
//! use std::cell::Cell;
//! use weir_sdk::{files, testing};
//!
//! testing::set_file("list", "1 sip:10.0.0.1:5060\n1 sip:10.0.0.2:5060\n");
//!
//! let loaded = Cell::new(0u64); // a field of the module, in practice
//! if files::version("list") != Some(loaded.get()) {
//!     let file = files::read("list")?;
//!     let text = String::from_utf8_lossy(&file.content);
//!     assert_eq!(text.lines().count(), 2);
//!     loaded.set(file.version);
//! }
//! assert_eq!(loaded.get(), 1);
//! assert!(files::read("other").is_err()); // not granted
//! # Ok::<(), weir_sdk::Error>(())
//! ```
//!
//! In the native harness no file is granted until
//! [`testing::set_file`](crate::testing::set_file) provides one; each call bumps its
//! version.

#[cfg(target_arch = "wasm32")]
use crate::__private::bindings::weir::sip::files as backend;
use crate::__private::bindings::weir::sip::files::File as WitFile;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::mock::files as backend;
use crate::Error;

/// Largest file the host serves.
pub const MAX_SIZE: usize = 4 * 1024 * 1024;

/// A granted file as the host last read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Starts at 1 and increases whenever the content changed.
    pub version: u64,
    /// The file's bytes.
    pub content: Vec<u8>,
}

impl From<WitFile> for File {
    fn from(f: WitFile) -> Self {
        File {
            version: f.version,
            content: f.content,
        }
    }
}

/// The file granted as `name`. Fails with a [`HostError`](crate::HostError) if there is
/// no such grant or the file cannot be read (or is larger than [`MAX_SIZE`]); once read,
/// a file that later vanishes keeps its last content.
pub fn read(name: &str) -> Result<File, Error> {
    crate::error::host("files.read", backend::read(name)).map(File::from)
}

/// The current version of the file granted as `name`, cheap enough to ask on every
/// message; `None` if there is no such grant or it cannot be read.
pub fn version(name: &str) -> Option<u64> {
    backend::version(name)
}
