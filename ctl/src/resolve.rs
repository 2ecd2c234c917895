//! Which container or pod a word on berthctl's command line means, as docker and nerdctl users
//! expect: its exact ID, else an exact name, else a unique ID prefix. A word that means several
//! is answered with all of them, so the caller can list the candidates instead of guessing.

use berth_proto::runtime::v1 as cri;

/// Something a command line can name: a container or a pod.
pub trait Named {
    fn id(&self) -> &str;
    /// Whether `name` is one of its names.
    fn is_named(&self, name: &str) -> bool;
}

impl Named for cri::Container {
    fn id(&self) -> &str {
        &self.id
    }

    /// The CRI metadata name: the one `berthctl run --name` and kubelet give.
    fn is_named(&self, name: &str) -> bool {
        self.metadata.as_ref().is_some_and(|m| m.name == name)
    }
}

impl Named for cri::PodSandbox {
    fn id(&self) -> &str {
        &self.id
    }

    /// The CRI metadata name, or `namespace/name` (pods of two namespaces may share a name).
    fn is_named(&self, name: &str) -> bool {
        self.metadata.as_ref().is_some_and(|m| {
            m.name == name
                || name.split_once('/').is_some_and(|(namespace, n)| m.namespace == namespace && m.name == n)
        })
    }
}

/// How a word matched, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MatchedBy {
    Id,
    Name,
    IdPrefix,
}

impl MatchedBy {
    fn matches(self, item: &impl Named, wanted: &str) -> bool {
        match self {
            MatchedBy::Id => item.id() == wanted,
            MatchedBy::Name => item.is_named(wanted),
            MatchedBy::IdPrefix => item.id().starts_with(wanted),
        }
    }
}

/// What a word means among a list of containers or pods.
#[derive(Debug, PartialEq)]
pub enum Resolution<'a, T> {
    NotFound,
    One(&'a T, MatchedBy),
    /// Several match at the strongest level anything matched at.
    Ambiguous(Vec<&'a T>, MatchedBy),
}

impl<T> Resolution<'_, T> {
    /// How it matched; `None` when nothing did.
    pub fn matched_by(&self) -> Option<MatchedBy> {
        match self {
            Resolution::NotFound => None,
            Resolution::One(_, by) | Resolution::Ambiguous(_, by) => Some(*by),
        }
    }
}

/// What `wanted` names among `items`: an exact ID first, then an exact name, then an ID prefix.
/// A stronger match hides weaker ones: a container named `abc` wins over IDs starting `abc`.
pub fn resolve<'a, T: Named>(wanted: &str, items: &'a [T]) -> Resolution<'a, T> {
    // An empty prefix would match everything.
    if wanted.is_empty() {
        return Resolution::NotFound;
    }
    for by in [MatchedBy::Id, MatchedBy::Name, MatchedBy::IdPrefix] {
        let mut found: Vec<&T> = items.iter().filter(|item| by.matches(*item, wanted)).collect();
        match found.len() {
            0 => continue,
            1 => return Resolution::One(found.remove(0), by),
            _ => return Resolution::Ambiguous(found, by),
        }
    }
    Resolution::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: &str, name: &str) -> cri::Container {
        cri::Container {
            id: id.to_string(),
            metadata: Some(cri::ContainerMetadata { name: name.to_string(), attempt: 0 }),
            ..Default::default()
        }
    }

    fn pod(id: &str, namespace: &str, name: &str) -> cri::PodSandbox {
        cri::PodSandbox {
            id: id.to_string(),
            metadata: Some(cri::PodSandboxMetadata {
                name: name.to_string(),
                namespace: namespace.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The IDs a resolution names, and how they matched.
    fn ids<T: Named>(resolution: Resolution<'_, T>) -> (Vec<String>, Option<MatchedBy>) {
        let by = resolution.matched_by();
        let ids = match resolution {
            Resolution::NotFound => vec![],
            Resolution::One(item, _) => vec![item.id().to_string()],
            Resolution::Ambiguous(items, _) => items.iter().map(|i| i.id().to_string()).collect(),
        };
        (ids, by)
    }

    #[test]
    fn containers_by_id_then_name_then_unique_prefix() {
        let containers = [
            container("aa11", "web"),
            container("aa22", "db"),
            container("bb33", "aa11x"),
            container("cc44", "cc"),
            container("dd55", "twin"),
            container("dd66", "twin"),
            container("ee77", "aa1"),
        ];
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let table: [(&str, &[&str], Option<MatchedBy>); 12] = [
            ("aa11", &["aa11"], Some(MatchedBy::Id)),
            ("web", &["aa11"], Some(MatchedBy::Name)),
            ("aa2", &["aa22"], Some(MatchedBy::IdPrefix)),
            ("b", &["bb33"], Some(MatchedBy::IdPrefix)),
            // Two IDs start with it: the candidates, not a guess.
            ("aa", &["aa11", "aa22"], Some(MatchedBy::IdPrefix)),
            ("twin", &["dd55", "dd66"], Some(MatchedBy::Name)),
            ("dd", &["dd55", "dd66"], Some(MatchedBy::IdPrefix)),
            // A name beats the IDs it is a prefix of; an ID beats a name.
            ("aa1", &["ee77"], Some(MatchedBy::Name)),
            ("cc", &["cc44"], Some(MatchedBy::Name)),
            // A name is matched whole, never as a prefix.
            ("we", &[], None),
            ("nosuch", &[], None),
            ("", &[], None),
        ];
        for (wanted, expected, by) in table {
            assert_eq!(ids(resolve(wanted, &containers)), (strings(expected), by), "{wanted:?}");
        }
        // An exact ID wins even when it is also another container's name.
        let clash = [container("bb33", "x"), container("ff88", "bb33")];
        assert_eq!(ids(resolve("bb33", &clash)), (strings(&["bb33"]), Some(MatchedBy::Id)));
    }

    #[test]
    fn pods_by_name_or_namespace_and_name() {
        let pods = [pod("p1", "default", "web"), pod("p2", "team", "web"), pod("p3", "team", "db")];
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let table: [(&str, &[&str], Option<MatchedBy>); 6] = [
            ("web", &["p1", "p2"], Some(MatchedBy::Name)),
            ("team/web", &["p2"], Some(MatchedBy::Name)),
            ("default/web", &["p1"], Some(MatchedBy::Name)),
            ("db", &["p3"], Some(MatchedBy::Name)),
            ("other/db", &[], None),
            ("p3", &["p3"], Some(MatchedBy::Id)),
        ];
        for (wanted, expected, by) in table {
            assert_eq!(ids(resolve(wanted, &pods)), (strings(expected), by), "{wanted:?}");
        }
    }
}
