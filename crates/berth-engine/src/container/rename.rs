//! `rename`: the index, the record and the embedded resolver's name.

use crate::error::{EngineError, Result};
use crate::Engine;

impl Engine {
    pub async fn rename(&self, name: &str, new_name: &str) -> Result<()> {
        let c = self.lookup(name)?;
        let new =
            crate::container::names::validate(new_name).map_err(EngineError::InvalidParameter)?;
        let old = c.snapshot().name;
        if old == new {
            return Err(EngineError::Conflict(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        // The new name is reserved (both names lead to the container meanwhile), the record
        // written, and only then the old name let go: a failed write leaves the old name alone.
        {
            let mut reg = self.write_index();
            if let Some(other) = reg.names.get(&new) {
                return Err(EngineError::Conflict(format!(
                    "Conflict. The container name \"/{new}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            reg.names.insert(new.clone(), c.id.clone());
        }
        let saved = c.update(|r| r.name = new.clone());
        {
            let mut reg = self.write_index();
            let gone = if saved.is_ok() { &old } else { &new };
            if reg.names.get(gone) == Some(&c.id) {
                reg.names.remove(gone);
            }
        }
        saved?;
        self.net_rename(&c.id, &new);
        self.emit_container(&c.id, "rename", &[("oldName", format!("/{old}"))]);
        Ok(())
    }
}
