//! Files the operator names — the configuration, the secrets file, token
//! files, components — read only if they are regular files of bounded
//! size. A FIFO, a device or a directory put there by mistake is an error
//! naming the file, never a process blocked on an open, and `/dev/zero` is
//! not read until memory runs out.

use std::fs::{File, Metadata};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The whole of the regular file at `path`, at most `max_bytes` of it.
/// `what` names the file in errors ("the component"); `setting`, if any,
/// names the bound. Opened without blocking (so that a FIFO swapped in
/// after the check cannot block the open) and checked again once open.
pub fn read_regular(
    path: &Path,
    max_bytes: u64,
    what: &str,
    setting: Option<&str>,
) -> Result<Vec<u8>, String> {
    let (file, metadata) = open_regular(path, what)?;
    let too_large = |size: u64| {
        let setting = setting.map(|s| format!(" ({s})")).unwrap_or_default();
        format!("{what} is {size} bytes; at most {max_bytes} are allowed{setting}")
    };
    if metadata.len() > max_bytes {
        return Err(too_large(metadata.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {what}: {e}"))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// [`read_regular`] as UTF-8 text.
pub fn read_regular_text(
    path: &Path,
    max_bytes: u64,
    what: &str,
    setting: Option<&str>,
) -> Result<String, String> {
    String::from_utf8(read_regular(path, max_bytes, what, setting)?)
        .map_err(|_| format!("{what} is not UTF-8 text"))
}

/// The regular file at `path`, open for reading, and its metadata.
pub fn open_regular(path: &Path, what: &str) -> Result<(File, Metadata), String> {
    let unreadable = |e: std::io::Error| format!("cannot read {what}: {e}");
    let metadata = std::fs::metadata(path).map_err(unreadable)?;
    if !metadata.is_file() {
        return Err(not_regular(what, &metadata));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(unreadable)?;
    let metadata = file.metadata().map_err(unreadable)?;
    if !metadata.is_file() {
        return Err(not_regular(what, &metadata));
    }
    Ok((file, metadata))
}

fn not_regular(what: &str, metadata: &Metadata) -> String {
    let file_type = metadata.file_type();
    let kind = if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_char_device() || file_type.is_block_device() {
        "a device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    format!("{what} must be a regular file; this is {kind}")
}

/// Replaces the file at `path` with `bytes` so that a reader (or a crash)
/// sees the old file or the new one, never a part: written to a temporary
/// file beside it, flushed to disk, renamed over it, and the directory
/// flushed so that the rename survives a crash.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} names no file", path.display()))?;
    let temporary = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let failed = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.map_err(failed)
}

/// Removes the file at `path` and flushes its directory, so that the
/// removal survives a crash.
pub fn remove_durably(path: &Path) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::remove_file(path)
        .and_then(|()| File::open(dir)?.sync_all())
        .map_err(|e| format!("cannot remove {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_bound_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        std::fs::write(&file, "12345").expect("write");
        assert_eq!(
            read_regular(&file, 5, "the file", None),
            Ok(b"12345".to_vec())
        );
        assert_eq!(
            read_regular(&file, 4, "the file", Some("x.max_kb")),
            Err("the file is 5 bytes; at most 4 are allowed (x.max_kb)".into())
        );
        assert_eq!(
            read_regular(dir.path(), 4, "the file", None),
            Err("the file must be a regular file; this is a directory".into())
        );
        assert_eq!(
            read_regular(Path::new("/dev/zero"), 4, "the file", None),
            Err("the file must be a regular file; this is a device".into())
        );
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            assert_eq!(
                read_regular(&fifo, 4, "the file", None),
                Err("the file must be a regular file; this is a FIFO".into())
            );
        }
    }

    #[test]
    fn files_are_replaced_whole_and_removed_durably() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acme.toml");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["acme.toml"]);
        remove_durably(&path).unwrap();
        assert!(!path.exists());
        assert!(
            remove_durably(&path)
                .unwrap_err()
                .starts_with("cannot remove")
        );
        let missing = dir.path().join("missing/acme.toml");
        assert!(
            write_atomically(&missing, b"x")
                .unwrap_err()
                .starts_with("cannot write")
        );
    }
}
