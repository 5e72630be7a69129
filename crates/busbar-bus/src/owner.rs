//! Who owns a subscription: the API (made over HTTP or the CLI, changed and deleted there) or the
//! configuration file that declares it (`[[subscriptions]]` in `busbar.toml`). The file is the
//! truth for its subscriptions: the API may pause, resume, reset and replay them, but not change
//! or delete them (that would be undone by the next start, which applies the file again).
//!
//! Ownership is not stored: each start marks what its file declares, so a subscription dropped
//! from the file is the API's again (kept, not deleted).

use crate::error::{BusError, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Who may change or delete a subscription, as `GET /subscriptions/{name}` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    Api,
    Config,
}

/// The subscriptions a configuration file declares: name → the file.
#[derive(Default)]
pub(crate) struct Owners(Mutex<BTreeMap<String, String>>);

impl Owners {
    /// Marks `names` as declared in `file`, replacing earlier marks.
    pub fn set(&self, names: impl IntoIterator<Item = String>, file: &str) {
        let owned = names.into_iter().map(|n| (n, file.to_string())).collect();
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = owned;
    }

    /// The file declaring `name`, if one does.
    pub fn file_of(&self, name: &str) -> Option<String> {
        let owned = self.0.lock().unwrap_or_else(|e| e.into_inner());
        owned.get(name).cloned()
    }

    /// Refuses a change to `name` when a file owns it.
    pub fn check(&self, name: &str) -> Result<()> {
        match self.file_of(name) {
            Some(file) => Err(BusError::OwnedByConfig {
                name: name.into(),
                file,
            }),
            None => Ok(()),
        }
    }
}
