//! containerd's list filters, the subset its clients send: `,`-joined conditions that must
//! all hold (`field==value`, `field!=value`, or a bare `field` that must be present); several
//! filters select what any one of them selects. Fields are dotted paths such as `name`,
//! `labels.team` or `labels."containerd.io/gc.root"`. Regular expressions (`~=`) are refused.

use tonic::Status;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    Equals(Vec<String>, String),
    NotEquals(Vec<String>, String),
    Present(Vec<String>),
}

/// One filter: conditions that must all hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    conditions: Vec<Condition>,
}

/// Splits `labels."a.b/c".x` into `["labels", "a.b/c", "x"]`.
fn field_path(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.trim().chars() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    parts
}

fn unquote(value: &str) -> String {
    let value = value.trim();
    value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value).to_string()
}

impl Filter {
    pub fn parse(text: &str) -> Result<Self, Status> {
        let mut conditions = Vec::new();
        for part in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let condition = if part.contains("~=") {
                return Err(Status::invalid_argument(format!(
                    "filter {text:?}: regular expressions (~=) are not supported by berth"
                )));
            } else if let Some((field, value)) = part.split_once("!=") {
                Condition::NotEquals(field_path(field), unquote(value))
            } else if let Some((field, value)) = part.split_once("==") {
                Condition::Equals(field_path(field), unquote(value))
            } else if part.contains(['=', '!', '~']) {
                return Err(Status::invalid_argument(format!("filter {text:?}: use ==, != or a bare field")));
            } else {
                Condition::Present(field_path(part))
            };
            conditions.push(condition);
        }
        Ok(Self { conditions })
    }

    /// Whether an object matches; `field` answers the value at a path, if it has one.
    pub fn matches(&self, field: &dyn Fn(&[String]) -> Option<String>) -> bool {
        self.conditions.iter().all(|condition| match condition {
            Condition::Equals(path, value) => field(path).as_deref() == Some(value.as_str()),
            Condition::NotEquals(path, value) => field(path).as_deref() != Some(value.as_str()),
            Condition::Present(path) => field(path).is_some(),
        })
    }
}

/// Parses a request's filters; an empty list selects everything.
pub struct Filters(Vec<Filter>);

impl Filters {
    pub fn parse(filters: &[String]) -> Result<Self, Status> {
        Ok(Self(
            filters
                .iter()
                .filter(|f| !f.trim().is_empty())
                .map(|f| Filter::parse(f))
                .collect::<Result<_, _>>()?,
        ))
    }

    pub fn matches(&self, field: &dyn Fn(&[String]) -> Option<String>) -> bool {
        self.0.is_empty() || self.0.iter().any(|filter| filter.matches(field))
    }
}

/// The field adaptor for objects with a name and labels (the usual case).
pub fn name_and_labels<'a>(
    name_field: &'a str,
    name: &'a str,
    labels: &'a std::collections::HashMap<String, String>,
) -> impl Fn(&[String]) -> Option<String> + 'a {
    move |path: &[String]| match path {
        [field] if field == name_field => Some(name.to_string()),
        [labels_field, key] if labels_field == "labels" => labels.get(key).cloned(),
        [labels_field, rest @ ..] if labels_field == "labels" && !rest.is_empty() => {
            labels.get(&rest.join(".")).cloned()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn parses_and_matches() {
        let labels = HashMap::from([("containerd.io/gc.root".to_string(), "x".to_string())]);
        let adaptor = name_and_labels("name", "docker.io/library/busybox:latest", &labels);
        let matches = |f: &str| Filters::parse(&[f.to_string()]).unwrap().matches(&adaptor);
        assert!(matches("name==docker.io/library/busybox:latest"));
        assert!(matches(r#"labels."containerd.io/gc.root""#));
        assert!(matches(r#"labels."containerd.io/gc.root"==x,name!=other"#));
        assert!(!matches("name==other"));
        assert!(!matches("labels.absent"));
        assert!(Filters::parse(&["name~=b.*".to_string()]).is_err());
        assert!(Filters::parse(&[]).unwrap().matches(&adaptor));
    }
}
