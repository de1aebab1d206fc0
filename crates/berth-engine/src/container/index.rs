//! The container index: every container by id and by name, and Docker's lookup order.

use std::collections::HashMap;
use std::sync::Arc;

use crate::container::Entry;
use crate::error::{EngineError, Result};
use crate::Engine;

#[derive(Default)]
pub(crate) struct ContainerIndex {
    pub(crate) by_id: HashMap<String, Arc<Entry>>,
    /// name (no slash) -> id
    pub(crate) names: HashMap<String, String>,
}

impl Engine {
    pub(crate) fn read_index(&self) -> std::sync::RwLockReadGuard<'_, ContainerIndex> {
        match self.inner.containers.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub(crate) fn write_index(&self) -> std::sync::RwLockWriteGuard<'_, ContainerIndex> {
        match self.inner.containers.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Docker's lookup order: full id, exact name, then a unique id prefix.
    pub(crate) fn lookup(&self, name_or_id: &str) -> Result<Arc<Entry>> {
        let reg = self.read_index();
        if let Some(c) = reg.by_id.get(name_or_id) {
            return Ok(c.clone());
        }
        let bare = name_or_id.strip_prefix('/').unwrap_or(name_or_id);
        if let Some(id) = reg.names.get(bare) {
            if let Some(c) = reg.by_id.get(id) {
                return Ok(c.clone());
            }
        }
        if !name_or_id.is_empty() && name_or_id.chars().all(|c| c.is_ascii_hexdigit()) {
            let mut found = reg
                .by_id
                .iter()
                .filter(|(id, _)| id.starts_with(name_or_id));
            if let Some((_, c)) = found.next() {
                if found.next().is_some() {
                    return Err(EngineError::NotFound(format!(
                        "multiple IDs found with provided prefix: {name_or_id}"
                    )));
                }
                return Ok(c.clone());
            }
        }
        Err(EngineError::no_such_container(name_or_id))
    }

    pub(crate) fn all_entries(&self) -> Vec<Arc<Entry>> {
        self.read_index().by_id.values().cloned().collect()
    }
}
