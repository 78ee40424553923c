//! /proc/self/mountinfo: which mount a path is on, and what is mounted there.

use std::path::{Path, PathBuf};

use crate::fate::inputs::Mount;

/// Every mount of this process's mount namespace, in mount order; empty where
/// /proc/self/mountinfo cannot be read (not Linux).
pub fn read() -> Vec<Mount> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|text| parse(&text))
        .unwrap_or_default()
}

/// Parses mountinfo text (see proc(5)):
/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    let (head, tail) = line.split_once(" - ")?;
    let head: Vec<&str> = head.split(' ').collect();
    let mut tail = tail.split(' ');
    let device = head.get(2)?.to_string();
    let point = PathBuf::from(unescape(head.get(4)?));
    let fs_type = tail.next()?.to_string();
    let source = unescape(tail.next()?);
    Some(Mount {
        point,
        device,
        fs_type,
        source,
    })
}

/// Mountinfo writes space, tab, newline and backslash as octal escapes (`\040`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match octal {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount that `path` (absolute, symlinks resolved) is on: the deepest mount point above it,
/// preferring mounts of `device` (its stat `st_dev`), and the later of stacked mounts.
pub fn mount_of<'a>(mounts: &'a [Mount], path: &Path, device: &str) -> Option<&'a Mount> {
    let above = |m: &&Mount| path.starts_with(&m.point);
    let deepest = |list: Vec<&'a Mount>| {
        // `max_by_key` keeps the last of equals: the mount stacked on top.
        list.into_iter().max_by_key(|m| m.point.components().count())
    };
    deepest(mounts.iter().filter(above).filter(|m| m.device == device).collect())
        .or_else(|| deepest(mounts.iter().filter(above).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334492k,mode=755
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684092k
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684092k
44 27 0:50 / /mnt/my\\040backups rw shared:7 - nfs4 nas:/export/backups rw,vers=4.2
";

    #[test]
    fn parses_and_finds_the_mount_of_a_path() {
        let mounts = parse(SAMPLE);
        assert_eq!(mounts.len(), 5);
        assert_eq!(mounts[4].point, PathBuf::from("/mnt/my backups"));
        assert_eq!(mounts[4].source, "nas:/export/backups");
        assert_eq!(mounts[4].fs_type, "nfs4");

        let root = mount_of(&mounts, Path::new("/tmp/x"), "254:0").unwrap();
        assert_eq!(
            (root.point.as_path(), root.source.as_str()),
            (Path::new("/"), "/dev/vda")
        );
        // Two mounts stacked on /dev/shm: the one whose device stat reports wins.
        let shm = mount_of(&mounts, Path::new("/dev/shm/repo"), "0:27").unwrap();
        assert_eq!(shm.device, "0:27");
        let nfs = mount_of(&mounts, Path::new("/mnt/my backups/lifeboat"), "0:50").unwrap();
        assert_eq!(nfs.source, "nas:/export/backups");
    }
}
