//! Names reserved by sandboxes and containers: one owner per name, as kubelet relies on.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::CriError;

#[derive(Default)]
pub struct NameRegistry {
    names: Mutex<HashMap<String, String>>,
}

impl NameRegistry {
    /// Reserves `name` for `id`. Reserving it again for the same id is fine; a name another
    /// id holds is AlreadyExists naming that owner.
    pub fn reserve(&self, name: &str, id: &str) -> Result<(), CriError> {
        let mut names = self.names.lock().map_err(|_| CriError::internal("name registry poisoned"))?;
        match names.get(name) {
            Some(owner) if owner != id => {
                Err(CriError::already_exists(format!("the name {name:?} is reserved for {owner:?}")))
            }
            _ => {
                names.insert(name.to_string(), id.to_string());
                Ok(())
            }
        }
    }

    /// The id holding `name`, if any.
    pub fn owner(&self, name: &str) -> Option<String> {
        self.names.lock().ok()?.get(name).cloned()
    }

    pub fn release(&self, name: &str) {
        if let Ok(mut names) = self.names.lock() {
            names.remove(name);
        }
    }

    /// Every reserved name.
    #[cfg(test)]
    pub fn reserved(&self) -> Vec<String> {
        self.names.lock().map(|names| names.keys().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn one_owner_per_name() {
        let names = NameRegistry::default();
        names.reserve("a", "1").unwrap();
        names.reserve("a", "1").unwrap();
        let err = names.reserve("a", "2").unwrap_err();
        assert_eq!(err.code(), tonic::Code::AlreadyExists);
        assert!(err.message().contains("\"1\""));
        names.release("a");
        names.reserve("a", "2").unwrap();
        assert_eq!(names.owner("a").as_deref(), Some("2"));
    }
}
