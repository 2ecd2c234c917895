//! What a client may put in `stdout`/`stderr` (containerd's `pkg/process/io.go createIO`):
//! an absolute FIFO path or `fifo://path`, `file:///abs/path` (raw append; with `?format=cri`
//! the shim writes the CRI log format itself), `binary:///abs/logger?k=v` (a logging binary),
//! or empty (no stream).

use std::path::PathBuf;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    None,
    Fifo(PathBuf),
    File { path: PathBuf, cri: bool },
    Binary { path: PathBuf, args: Vec<String> },
}

/// Percent-decoding of a URI's path, as Go's `url.PathUnescape`: `+` is a plus.
fn path_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Percent-decoding of a query key or value, as Go's `url.QueryUnescape`: `+` is a space.
fn query_decode(s: &str) -> String {
    path_decode(&s.replace('+', " "))
}

/// `k=v&k2=v2` in order.
fn query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (query_decode(k), query_decode(v)),
            None => (query_decode(p), String::new()),
        })
        .collect()
}

pub fn parse(s: &str) -> Result<Target> {
    if s.is_empty() {
        return Ok(Target::None);
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return Ok(Target::Fifo(PathBuf::from(s)));
    };
    let (path, q) = match rest.split_once('?') {
        Some((p, q)) => (p, q),
        None => (rest, ""),
    };
    let path = PathBuf::from(path_decode(path));
    match scheme {
        "fifo" => Ok(Target::Fifo(path)),
        "file" | "binary" if !path.is_absolute() => {
            Err(Error::InvalidArgument(format!("{scheme} URI {s:?} needs an absolute path")))
        }
        "file" => {
            let cri = query(q).iter().any(|(k, v)| k == "format" && v == "cri");
            Ok(Target::File { path, cri })
        }
        "binary" => {
            let mut args = Vec::new();
            for (k, v) in query(q) {
                args.push(k);
                if !v.is_empty() {
                    args.push(v);
                }
            }
            Ok(Target::Binary { path, args })
        }
        other => Err(Error::InvalidArgument(format!("unsupported STDIO scheme {other:?} in {s:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert_eq!(parse("").unwrap(), Target::None);
        assert_eq!(parse("/run/x/c-stdout").unwrap(), Target::Fifo("/run/x/c-stdout".into()));
        assert_eq!(parse("fifo:///run/x").unwrap(), Target::Fifo("/run/x".into()));
        assert_eq!(
            parse("file:///var/log/pods/a/0.log?format=cri").unwrap(),
            Target::File { path: "/var/log/pods/a/0.log".into(), cri: true }
        );
        assert_eq!(parse("file:///tmp/o").unwrap(), Target::File { path: "/tmp/o".into(), cri: false });
        assert_eq!(
            parse("binary:///usr/bin/logger?id=x%20y&flag").unwrap(),
            Target::Binary {
                path: "/usr/bin/logger".into(),
                args: vec!["id".into(), "x y".into(), "flag".into()]
            }
        );
        assert!(parse("file://relative").is_err());
        // `+` is a space only in a query.
        assert_eq!(
            parse("file:///var/log/c++/a+b%2Bc.log").unwrap(),
            Target::File { path: "/var/log/c++/a+b+c.log".into(), cri: false }
        );
        assert_eq!(
            parse("binary:///opt/g++/logger?name=a+b&x=%2B").unwrap(),
            Target::Binary {
                path: "/opt/g++/logger".into(),
                args: vec!["name".into(), "a b".into(), "x".into(), "+".into()]
            }
        );
        assert!(parse("tcp://1.2.3.4:5").is_err());
    }
}
