//! Users and groups: the CRI security context or the image's `User`, resolved against the
//! image's /etc/passwd and /etc/group.

use berth_proto::runtime::v1 as cri;
use oci_spec::runtime::User;

use super::{ImageUserFiles, SpecError};

/// runc refuses ids above `i32::MAX`.
const MAX_ID: i64 = i32::MAX as i64;

/// One side of a `user[:group]` string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdRef {
    Id(u32),
    Name(String),
}

/// A user as it resolved in an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    /// The explicit group, else the user's group in /etc/passwd, else 0.
    pub gid: u32,
    /// The user's name when /etc/passwd knows it.
    pub username: Option<String>,
    /// Groups of /etc/group that list the user as a member (the image's supplemental groups).
    pub image_groups: Vec<u32>,
}

fn parse_id(s: &str, what: &str, whole: &str) -> Result<IdRef, SpecError> {
    if s.is_empty() {
        return Err(SpecError::InvalidUser { user: whole.into(), reason: format!("empty {what}") });
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<i64>() {
            Ok(v) if v <= MAX_ID => Ok(IdRef::Id(v as u32)),
            _ => Err(SpecError::InvalidUser { user: whole.into(), reason: format!("{what} out of range") }),
        };
    }
    Ok(IdRef::Name(s.to_string()))
}

/// Splits an image `User` (`""`, `uid`, `name`, `uid:gid`, `name:group`, mixed) into its parts.
/// An empty string is root.
pub fn parse_user(user: &str) -> Result<(IdRef, Option<IdRef>), SpecError> {
    if user.is_empty() {
        return Ok((IdRef::Id(0), None));
    }
    match user.split_once(':') {
        None => Ok((parse_id(user, "user", user)?, None)),
        Some((u, g)) if !g.contains(':') => {
            Ok((parse_id(u, "user", user)?, Some(parse_id(g, "group", user)?)))
        }
        Some(_) => Err(SpecError::InvalidUser { user: user.into(), reason: "expected user[:group]".into() }),
    }
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn lines(file: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(file)
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

fn passwd_entries(file: &[u8]) -> impl Iterator<Item = PasswdEntry<'_>> {
    lines(file).filter_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _password = f.next()?;
        let uid = f.next()?.parse().ok()?;
        let gid = f.next()?.parse().ok()?;
        Some(PasswdEntry { name, uid, gid })
    })
}

fn group_entries(file: &[u8]) -> impl Iterator<Item = GroupEntry<'_>> {
    lines(file).filter_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _password = f.next()?;
        let gid = f.next()?.parse().ok()?;
        let members = f.next().unwrap_or("").split(',').map(str::trim).filter(|m| !m.is_empty()).collect();
        Some(GroupEntry { name, gid, members })
    })
}

/// Resolves `user` (`user[:group]`, names or ids) against the image's files.
///
/// A numeric uid the image does not know is still valid (gid 0); a name it does not know is an
/// error, as is a group name.
pub fn resolve_user(user: &str, files: &ImageUserFiles) -> Result<ResolvedUser, SpecError> {
    let (u, g) = parse_user(user)?;
    resolve_parts(&u, g.as_ref(), files)
}

fn resolve_parts(u: &IdRef, g: Option<&IdRef>, files: &ImageUserFiles) -> Result<ResolvedUser, SpecError> {
    let passwd = files.passwd.as_deref().unwrap_or_default();
    let (uid, mut gid, username) = match u {
        IdRef::Id(uid) => match passwd_entries(passwd).find(|e| e.uid == *uid) {
            Some(e) => (*uid, e.gid, Some(e.name.to_string())),
            None => (*uid, 0, None),
        },
        IdRef::Name(name) => match passwd_entries(passwd).find(|e| e.name == name) {
            Some(e) => (e.uid, e.gid, Some(name.clone())),
            None => return Err(SpecError::UnknownUser(name.clone())),
        },
    };
    let group = files.group.as_deref().unwrap_or_default();
    match g {
        Some(IdRef::Id(id)) => gid = *id,
        Some(IdRef::Name(name)) => {
            gid = group_entries(group)
                .find(|e| e.name == name)
                .ok_or_else(|| SpecError::UnknownGroup(name.clone()))?
                .gid
        }
        None => {}
    }
    let image_groups = match &username {
        Some(name) => {
            group_entries(group).filter(|e| e.members.contains(&name.as_str())).map(|e| e.gid).collect()
        }
        None => Vec::new(),
    };
    Ok(ResolvedUser { uid, gid, username, image_groups })
}

fn to_id(v: i64, err: impl Fn(i64) -> SpecError) -> Result<u32, SpecError> {
    if (0..=MAX_ID).contains(&v) { Ok(v as u32) } else { Err(err(v)) }
}

/// The OCI user of a container: the security context's run_as_username / run_as_user /
/// run_as_group, else the image's `User`; its groups are the primary gid, the image's groups
/// for the user (unless the policy is Strict) and the context's supplemental groups.
pub fn container_user(
    sc: Option<&cri::LinuxContainerSecurityContext>,
    image_user: &str,
    files: &ImageUserFiles,
) -> Result<(User, ResolvedUser), SpecError> {
    let group = sc
        .and_then(|sc| sc.run_as_group.as_ref())
        .map(|g| to_id(g.value, SpecError::InvalidGroupId))
        .transpose()?
        .map(IdRef::Id);
    let user = match sc {
        Some(sc) if !sc.run_as_username.is_empty() => Some(IdRef::Name(sc.run_as_username.clone())),
        Some(sc) => match &sc.run_as_user {
            Some(u) => Some(IdRef::Id(to_id(u.value, |v| SpecError::InvalidUser {
                user: v.to_string(),
                reason: "uid out of range".into(),
            })?)),
            None => None,
        },
        None => None,
    };
    let resolved = match user {
        Some(u) => resolve_parts(&u, group.as_ref(), files)?,
        None => match sc.and_then(|sc| sc.run_as_group.as_ref()) {
            // Which user would the group go with? containerd refuses this too.
            Some(g) => return Err(SpecError::GroupWithoutUser(g.value)),
            None => resolve_user(image_user, files)?,
        },
    };

    let strict =
        sc.is_some_and(|sc| sc.supplemental_groups_policy == cri::SupplementalGroupsPolicy::Strict as i32);
    let mut gids = vec![resolved.gid];
    if !strict {
        gids.extend(&resolved.image_groups);
    }
    for g in sc.map(|sc| sc.supplemental_groups.as_slice()).unwrap_or_default() {
        gids.push(to_id(*g, SpecError::InvalidGroupId)?);
    }
    gids.sort_unstable();
    gids.dedup();

    let mut oci = User::default();
    oci.set_uid(resolved.uid);
    oci.set_gid(resolved.gid);
    oci.set_additional_gids(Some(gids));
    Ok((oci, resolved))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn files() -> ImageUserFiles {
        ImageUserFiles {
            passwd: Some(
                b"root:x:0:0:root:/root:/bin/sh\n\
                  # a comment\n\
                  app:x:1000:1000::/home/app:/bin/sh\n\
                  nobody:x:65534:65534::/:/bin/false\n"
                    .to_vec(),
            ),
            group: Some(
                b"root:x:0:\n\
                  app:x:1000:\n\
                  extra:x:50000:app,other\n\
                  wheel:x:10:root\n\
                  staff:x:2000:\n"
                    .to_vec(),
            ),
        }
    }

    fn sc() -> cri::LinuxContainerSecurityContext {
        cri::LinuxContainerSecurityContext::default()
    }

    #[test]
    fn parse_user_forms() {
        assert_eq!(parse_user("").unwrap(), (IdRef::Id(0), None));
        assert_eq!(parse_user("12").unwrap(), (IdRef::Id(12), None));
        assert_eq!(
            parse_user("app:staff").unwrap(),
            (IdRef::Name("app".into()), Some(IdRef::Name("staff".into())))
        );
        assert_eq!(parse_user("1:2").unwrap(), (IdRef::Id(1), Some(IdRef::Id(2))));
        assert!(parse_user("a:b:c").is_err());
        assert!(parse_user("99999999999").is_err());
        assert!(parse_user(":5").is_err());
    }

    #[test]
    fn image_user_by_name_resolves_uid_gid_and_groups() {
        let r = resolve_user("app", &files()).unwrap();
        assert_eq!((r.uid, r.gid, r.username.as_deref()), (1000, 1000, Some("app")));
        assert_eq!(r.image_groups, [50000]);
    }

    #[test]
    fn image_user_name_and_group_name() {
        let r = resolve_user("app:staff", &files()).unwrap();
        assert_eq!((r.uid, r.gid), (1000, 2000));
        assert!(matches!(resolve_user("app:nogroup", &files()), Err(SpecError::UnknownGroup(_))));
    }

    #[test]
    fn unknown_name_is_an_error_but_unknown_uid_is_not() {
        assert!(matches!(resolve_user("ghost", &files()), Err(SpecError::UnknownUser(n)) if n == "ghost"));
        assert!(matches!(resolve_user("ghost", &ImageUserFiles::default()), Err(SpecError::UnknownUser(_))));
        let r = resolve_user("4242", &files()).unwrap();
        assert_eq!((r.uid, r.gid, r.username), (4242, 0, None));
    }

    #[test]
    fn empty_image_user_is_root_with_roots_groups() {
        let (u, _) = container_user(None, "", &files()).unwrap();
        assert_eq!((u.uid(), u.gid()), (0, 0));
        assert_eq!(u.additional_gids().as_deref(), Some(&[0, 10][..]));
    }

    #[test]
    fn run_as_user_overrides_image_user_and_takes_gid_from_passwd() {
        let mut sc = sc();
        sc.run_as_user = Some(cri::Int64Value { value: 1000 });
        let (u, _) = container_user(Some(&sc), "nobody", &files()).unwrap();
        assert_eq!((u.uid(), u.gid()), (1000, 1000));
    }

    #[test]
    fn run_as_username_must_exist() {
        let mut sc = sc();
        sc.run_as_username = "app".into();
        let (u, _) = container_user(Some(&sc), "", &files()).unwrap();
        assert_eq!(u.uid(), 1000);
        sc.run_as_username = "ghost".into();
        assert!(matches!(container_user(Some(&sc), "", &files()), Err(SpecError::UnknownUser(_))));
    }

    #[test]
    fn run_as_group_sets_gid_and_needs_a_user() {
        let mut sc = sc();
        sc.run_as_group = Some(cri::Int64Value { value: 3000 });
        assert!(matches!(container_user(Some(&sc), "app", &files()), Err(SpecError::GroupWithoutUser(3000))));
        sc.run_as_user = Some(cri::Int64Value { value: 1000 });
        let (u, _) = container_user(Some(&sc), "", &files()).unwrap();
        assert_eq!((u.uid(), u.gid()), (1000, 3000));
        assert_eq!(u.additional_gids().as_deref(), Some(&[3000, 50000][..]));
    }

    #[test]
    fn supplemental_groups_merge_with_image_groups() {
        let mut sc = sc();
        sc.run_as_user = Some(cri::Int64Value { value: 1000 });
        sc.supplemental_groups = vec![1234, 5678];
        let (u, _) = container_user(Some(&sc), "", &files()).unwrap();
        assert_eq!(u.additional_gids().as_deref(), Some(&[1000, 1234, 5678, 50000][..]));
    }

    #[test]
    fn strict_policy_ignores_image_groups() {
        let mut sc = sc();
        sc.run_as_user = Some(cri::Int64Value { value: 1000 });
        sc.supplemental_groups = vec![1234];
        sc.supplemental_groups_policy = cri::SupplementalGroupsPolicy::Strict as i32;
        let (u, _) = container_user(Some(&sc), "", &files()).unwrap();
        assert_eq!(u.additional_gids().as_deref(), Some(&[1000, 1234][..]));
    }

    #[test]
    fn negative_ids_are_refused() {
        let mut sc = sc();
        sc.run_as_user = Some(cri::Int64Value { value: -1 });
        assert!(container_user(Some(&sc), "", &files()).is_err());
        sc.run_as_user = Some(cri::Int64Value { value: 1 });
        sc.supplemental_groups = vec![-5];
        assert!(matches!(container_user(Some(&sc), "", &files()), Err(SpecError::InvalidGroupId(-5))));
    }
}
