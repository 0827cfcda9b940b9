//! The mount tables in `/proc/PID/mountinfo`.

use std::{ffi::OsStr, os::unix::ffi::OsStrExt, path::PathBuf};

/// One line of a mount table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The mount's id (as statx's `STATX_MNT_ID` reports it).
    pub id: u64,
    /// The file system's device, `major:minor` (`s_dev`).
    pub dev: (u32, u32),
    /// The directory of the file system mounted (`/` for its root, a
    /// deeper one for a bind mount of a subdirectory).
    pub root: PathBuf,
    /// Where it is mounted, as the namespace's processes see it.
    pub point: PathBuf,
    pub fstype: String,
    /// An overlay's upper directory (`upperdir=`), as its mounter named
    /// it.
    pub upper: Option<PathBuf>,
}

/// The lines of a mount table that parse.
pub fn parse(text: &str) -> impl Iterator<Item = Mount> + '_ {
    text.lines().filter_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        let mut fields = mount.split(' ');
        let id = fields.next()?.parse().ok()?;
        let (major, minor) = fields.nth(1)?.split_once(':')?;
        let root = unescape_octal(fields.next()?);
        let point = unescape_octal(fields.next()?);
        let mut fs = fs.split(' ');
        let fstype = fs.next()?.to_string();
        // The options escape `,` in a value, so a split is exact.
        let upper = (fstype == "overlay")
            .then(|| {
                fs.nth(1)?
                    .split(',')
                    .find_map(|o| o.strip_prefix("upperdir="))
            })
            .flatten()
            .map(unescape_octal);
        Some(Mount {
            id,
            dev: (major.parse().ok()?, minor.parse().ok()?),
            root,
            point,
            fstype,
            upper,
        })
    })
}

/// Mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (b[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    PathBuf::from(OsStr::from_bytes(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_field_and_unescapes_paths() {
        let info = "35 23 0:31 / /sys/fs/cgroup/uni\\040fied rw - cgroup2 cgroup2 rw\n\
                    612 29 8:1 /srv/media/music /mnt/music rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    garbage\n\
                    700 29 0:52 / /m rw - overlay overlay rw,lowerdir=/l,upperdir=/u\\054p,workdir=/w\n";
        let mounts: Vec<Mount> = parse(info).collect();
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].upper, None);
        assert_eq!(mounts[2].upper, Some(PathBuf::from("/u,p")));
        assert_eq!(mounts[0].point, PathBuf::from("/sys/fs/cgroup/uni fied"));
        assert_eq!(mounts[0].fstype, "cgroup2");
        assert_eq!(
            mounts[1],
            Mount {
                id: 612,
                dev: (8, 1),
                root: "/srv/media/music".into(),
                point: "/mnt/music".into(),
                fstype: "ext4".into(),
                upper: None,
            }
        );
    }
}
