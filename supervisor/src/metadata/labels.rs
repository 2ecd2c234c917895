//! Label updates by field paths, the way containerd's services apply an update mask.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// Applies `labels` to `current` under `paths`: no paths replaces all labels; `labels`
/// replaces all; `labels.<key>` sets (or, when absent from `labels`, removes) one key. Other
/// paths are refused; `what` names the object in the error.
pub fn apply_label_update(
    current: &mut HashMap<String, String>,
    labels: &HashMap<String, String>,
    paths: &[String],
    what: &str,
) -> Result<()> {
    if paths.is_empty() {
        *current = labels.clone();
        return Ok(());
    }
    for path in paths {
        if path == "labels" {
            *current = labels.clone();
        } else if let Some(key) = path.strip_prefix("labels.") {
            match labels.get(key) {
                Some(value) => current.insert(key.to_string(), value.clone()),
                None => current.remove(key),
            };
        } else {
            return Err(Error::InvalidArgument(format!("cannot update {path:?} field on {what}")));
        }
    }
    Ok(())
}
