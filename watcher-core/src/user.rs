//! `--user`: running the action as another user, with that user's groups
//! and no capabilities.

use std::{
    ffi::{CStr, CString, OsString},
    io,
    os::unix::ffi::OsStringExt as _,
};

use crate::escape::escape;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("no user named {}", escape(.0.as_bytes()))]
    Unknown(String),
    #[error("cannot look up user {}: {source}", escape(name.as_bytes()))]
    Lookup {
        name: String,
        #[source]
        source: io::Error,
    },
}

/// Who the action runs as.
#[derive(Clone, Debug)]
pub struct RunAs {
    pub name: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub groups: Vec<libc::gid_t>,
    pub home: OsString,
}

/// Looks up a user by name, or by number.
pub fn lookup(name: &str) -> Result<RunAs, UserError> {
    let lookup_err = |source| UserError::Lookup {
        name: name.to_owned(),
        source,
    };
    // SAFETY: passwd is plain data (integers and pointers); all zeros is a
    // valid value, which getpwnam_r fills in.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let rc = match name.parse::<libc::uid_t>() {
        // SAFETY: valid out pointers and buffer length.
        Ok(uid) => unsafe {
            libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found)
        },
        Err(_) => {
            let cname = CString::new(name).map_err(|_| UserError::Unknown(name.to_owned()))?;
            // SAFETY: as above, with a NUL-terminated name.
            unsafe {
                libc::getpwnam_r(
                    cname.as_ptr(),
                    &mut pwd,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut found,
                )
            }
        }
    };
    if rc != 0 {
        return Err(lookup_err(io::Error::from_raw_os_error(rc)));
    }
    if found.is_null() {
        return Err(UserError::Unknown(name.to_owned()));
    }
    // SAFETY: getpwnam_r filled `pwd` with pointers into `buf`.
    let (user, home) = unsafe { (CStr::from_ptr(pwd.pw_name), CStr::from_ptr(pwd.pw_dir)) };
    let mut groups = vec![0 as libc::gid_t; 256];
    let mut count = groups.len() as libc::c_int;
    // SAFETY: `groups` holds `count` entries; getgrouplist updates `count`.
    if unsafe { libc::getgrouplist(user.as_ptr(), pwd.pw_gid, groups.as_mut_ptr(), &mut count) } < 0
    {
        return Err(lookup_err(io::Error::other(
            "the user is in more than 256 groups",
        )));
    }
    groups.truncate(count.max(0) as usize);
    Ok(RunAs {
        name: user.to_string_lossy().into_owned(),
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
        groups,
        home: OsString::from_vec(home.to_bytes().to_vec()),
    })
}

impl RunAs {
    /// Makes `cmd` switch to this user in the child, after fork and before
    /// exec. Going from root to another uid clears every capability.
    pub fn apply(&self, cmd: &mut tokio::process::Command) {
        let Self {
            name,
            uid,
            gid,
            groups,
            home,
        } = self.clone();
        cmd.env("USER", &name)
            .env("LOGNAME", &name)
            .env("HOME", &home);
        // SAFETY: the closure only makes async-signal-safe syscalls and
        // allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                let check = |rc: libc::c_int| {
                    if rc == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::last_os_error())
                    }
                };
                check(libc::setgroups(groups.len(), groups.as_ptr()))?;
                check(libc::setgid(gid))?;
                check(libc::setuid(uid))
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_by_name_and_number() {
        let root = lookup("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(lookup("0").unwrap().name, "root");
        assert!(matches!(
            lookup("no-such-user-here"),
            Err(UserError::Unknown(_))
        ));
        assert!(matches!(lookup("bad\0name"), Err(UserError::Unknown(_))));
    }
}
