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
        {
            let mut reg = self.write_index();
            if let Some(other) = reg.names.get(&new) {
                return Err(EngineError::Conflict(format!(
                    "Conflict. The container name \"/{new}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            reg.names.remove(&old);
            reg.names.insert(new.clone(), c.id.clone());
        }
        c.update(|r| r.name = new.clone())?;
        self.net_rename(&c.id, &new);
        self.emit_container(&c.id, "rename", &[("oldName", format!("/{old}"))]);
        Ok(())
    }
}
