//! Container operations beyond the lifecycle, one file each: pause/unpause (freezer), top, diff,
//! export, commit and update.

mod commit;
mod diff;
mod export;
mod pause;
mod top;
mod update;

pub use commit::CommitRequest;
pub use top::{filter_ps, TopResponse};
pub use update::UpdateConfig;

use std::sync::Arc;

use crate::container::{Entry, Status};
use crate::error::{EngineError, Result};
use crate::Engine;

fn not_running(id: &str) -> EngineError {
    EngineError::Conflict(format!("Container {id} is not running"))
}

impl Engine {
    fn running_entry(&self, name: &str) -> Result<Arc<Entry>> {
        let c = self.lookup(name)?;
        let st = c.snapshot().state.status;
        if !(st.is_running() || st == Status::Paused) {
            return Err(not_running(&c.id));
        }
        Ok(c)
    }
}
