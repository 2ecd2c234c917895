//! Rules for names and labels, the same as containerd's so clients see the same answers.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// Longest identifier containerd accepts.
const MAX_IDENTIFIER_LEN: usize = 76;
/// Longest `key=value` label containerd accepts.
const MAX_LABEL_LEN: usize = 4096;

/// Accepts `[A-Za-z0-9]+([._-][A-Za-z0-9]+)*` of at most 76 characters: `what` names the
/// kind of thing in the error.
pub fn validate_identifier(what: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::InvalidArgument(format!("{what} name must not be empty")));
    }
    if id.len() > MAX_IDENTIFIER_LEN {
        return Err(Error::InvalidArgument(format!(
            "{what} name {id:?} is longer than {MAX_IDENTIFIER_LEN} characters"
        )));
    }
    let mut previous_was_separator = true;
    for c in id.chars() {
        let is_separator = matches!(c, '.' | '_' | '-');
        if !(c.is_ascii_alphanumeric() || is_separator) || (is_separator && previous_was_separator) {
            return Err(Error::InvalidArgument(format!(
                "{what} name {id:?} must be letters and digits, joined by single '.', '_' or '-'"
            )));
        }
        previous_was_separator = is_separator;
    }
    if previous_was_separator {
        return Err(Error::InvalidArgument(format!("{what} name {id:?} must not end with a separator")));
    }
    Ok(())
}

/// Label keys must be non-empty and `key=value` at most 4096 bytes.
pub fn validate_labels(labels: &HashMap<String, String>) -> Result<()> {
    for (key, value) in labels {
        if key.is_empty() {
            return Err(Error::InvalidArgument("label key must not be empty".to_string()));
        }
        if key.len() + value.len() > MAX_LABEL_LEN {
            return Err(Error::InvalidArgument(format!(
                "label {key:?} is longer than {MAX_LABEL_LEN} bytes with its value"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for good in ["default", "k8s.io", "a", "a-b_c.d", "A1"] {
            validate_identifier("namespace", good).unwrap();
        }
        for bad in ["", "-a", "a-", "a..b", "a/b", "with space", &"x".repeat(77)] {
            assert!(validate_identifier("namespace", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn labels() {
        validate_labels(&HashMap::from([("k".to_string(), "v".to_string())])).unwrap();
        assert!(validate_labels(&HashMap::from([(String::new(), "v".to_string())])).is_err());
        assert!(validate_labels(&HashMap::from([("k".to_string(), "v".repeat(4096))])).is_err());
    }
}
