//! Where the files a run leaves behind go (the report, the metrics file): checked before
//! anything is sent, and written at the end without ever breaking what the path names.
//!
//! A regular file (or a path with nothing there yet) is replaced atomically: a temporary file
//! beside it, fsync, rename. A symlink to a regular file is followed, so the link stays a
//! link. Anything else (`/dev/null`, `/dev/stdout`, a FIFO, or a symlink to one) is opened and
//! written in place: renaming over a device node would replace it with a regular file.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tempfile::NamedTempFile;

/// Temporary files of ours older than this, beside a new one, are from a killed run.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// A new file that holds e-mail addresses (the report, the journal): its owner only.
pub const PRIVATE: u32 = 0o600;
/// A new file others must read (the metrics file, for node_exporter).
pub const READABLE: u32 = 0o644;

/// Why `path` (the file `what`, named by `flag`) cannot be written, with what to do: when its
/// folder does not exist (a fresh host), the folder and the command that creates it.
pub fn unwritable(path: &Path, source: &io::Error, what: &str, flag: &str) -> io::Error {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !p.exists());
    let message = match folder {
        Some(dir) => format!(
            "cannot write {what}: the folder {} does not exist; create it (mkdir -p {}) or choose another {flag}",
            dir.display(),
            dir.display()
        ),
        None => format!("cannot write {what} there: {source}; choose another {flag}"),
    };
    io::Error::new(source.kind(), message)
}

/// A file to be written at the end of the run.
#[derive(Debug)]
pub enum Destination {
    /// Replaced atomically: `temp` is renamed onto `target` (the path with symlinks resolved).
    Replace {
        target: PathBuf,
        temp: NamedTempFile,
    },
    /// Not a regular file: opened for writing and written in place.
    InPlace(PathBuf),
}

impl Destination {
    /// Checks that `path` can take the file, and makes the temporary file now, so that a bad
    /// path fails the run before anything is sent. `prefix` names our temporary files.
    /// `mode`: the permissions of a new file (`0o600` for what holds e-mail addresses); an
    /// existing file keeps its own, so an operator's `chmod` is never undone.
    pub fn prepare(path: &Path, prefix: &str, mode: u32) -> io::Result<Destination> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "it is a directory; name a file (inside it, for example)",
            )),
            Ok(m) if !m.is_file() || is_special(path) => {
                // Opened now only to check the permission; a FIFO would block until read.
                if !is_fifo(&m) {
                    OpenOptions::new().write(true).open(path)?;
                }
                Ok(Destination::InPlace(path.to_path_buf()))
            }
            Ok(m) => {
                let target = std::fs::canonicalize(path)?;
                Destination::beside(target, prefix, mode_of(&m).unwrap_or(mode))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Destination::beside(path.to_path_buf(), prefix, mode)
            }
            Err(e) => Err(e),
        }
    }

    fn beside(target: PathBuf, prefix: &str, mode: u32) -> io::Result<Destination> {
        let temp = temp_beside(&target, prefix, mode)?;
        remove_stale(&target, prefix, &temp);
        Ok(Destination::Replace { target, temp })
    }

    /// Writes the file with `write`, then puts it in place.
    pub fn commit(
        self,
        write: impl FnOnce(&mut BufWriter<&mut File>) -> io::Result<()>,
    ) -> io::Result<()> {
        match self {
            Destination::Replace { target, mut temp } => {
                let mut out = BufWriter::with_capacity(256 * 1024, temp.as_file_mut());
                write(&mut out)?;
                out.flush()?;
                drop(out);
                temp.as_file().sync_all()?;
                temp.persist(&target).map_err(|e| e.error)?;
                Ok(())
            }
            Destination::InPlace(path) => {
                let mut file = OpenOptions::new().write(true).open(&path)?;
                let mut out = BufWriter::with_capacity(256 * 1024, &mut file);
                write(&mut out)?;
                out.flush()
            }
        }
    }
}

/// Paths that are devices or process files by name, whatever they resolve to: `/dev/stdout`
/// redirected to a regular file must still be written through the descriptor.
fn is_special(path: &Path) -> bool {
    path.starts_with("/dev") || path.starts_with("/proc")
}

fn is_fifo(meta: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        meta.file_type().is_fifo()
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        false
    }
}

/// A temporary file in `path`'s directory, so that renaming it onto `path` is atomic, with an
/// ordinary file's mode (0666 minus the umask), not the 0600 of temporary files: other users
/// (a metrics collector, an auditor) may need to read the result.
pub(crate) fn temp_beside(path: &Path, prefix: &str, mode: u32) -> io::Result<NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(mode & 0o600));
    }
    let temp = builder.tempfile_in(directory_of(path))?;
    // Exactly `mode`, whatever the umask (an existing file's mode, kept as it was).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    Ok(temp)
}

/// A file's permission bits.
fn mode_of(meta: &std::fs::Metadata) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Some(meta.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Removes temporary files a killed run left beside `target`: ours by name and owner (the same
/// as `fresh`, just made), and older than an hour so that a run in progress keeps its own.
fn remove_stale(target: &Path, prefix: &str, fresh: &NamedTempFile) {
    let Ok(entries) = std::fs::read_dir(directory_of(target)) else {
        return;
    };
    let owner = fresh.as_file().metadata().ok().map(|m| owner_of(&m));
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(prefix) || !name.ends_with(".tmp") || entry.path() == fresh.path() {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let old = meta
            .modified()
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > STALE_AFTER);
        if meta.is_file() && old && Some(owner_of(&meta)) == owner {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::info!(
                    event = "stale_temp_removed",
                    path = %entry.path().display(),
                    message = "removed a temporary file left by a run that was killed"
                ),
                Err(e) => {
                    tracing::debug!(event = "stale_temp_kept", path = %entry.path().display(), message = %e)
                }
            }
        }
    }
}

#[cfg(unix)]
fn owner_of(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::MetadataExt;
    meta.uid()
}

#[cfg(not(unix))]
fn owner_of(_: &std::fs::Metadata) -> u32 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(d: Destination, text: &str) {
        d.commit(|w| w.write_all(text.as_bytes())).unwrap();
    }

    #[test]
    fn a_symlink_to_a_regular_file_stays_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.csv");
        std::fs::write(&real, "old").unwrap();
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write(Destination::prepare(&link, ".t", 0o600).unwrap(), "new");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
    }

    #[test]
    fn a_device_is_written_in_place_and_a_directory_refused() {
        let d = Destination::prepare(Path::new("/dev/null"), ".t", 0o600).unwrap();
        assert!(matches!(d, Destination::InPlace(_)));
        write(d, "gone");
        assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
        let dir = tempfile::tempdir().unwrap();
        let err = Destination::prepare(dir.path(), ".t", 0o600).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
    }

    #[test]
    fn stale_temporary_files_of_ours_are_removed_fresh_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".tabc.tmp");
        let recent = dir.path().join(".tdef.tmp");
        let other = dir.path().join("other.tmp");
        for p in [&stale, &recent, &other] {
            std::fs::write(p, "x").unwrap();
        }
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        for p in [&stale, &other] {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(two_hours_ago)
                .unwrap();
        }
        let d = Destination::prepare(&dir.path().join("r.csv"), ".t", 0o600).unwrap();
        assert!(!stale.exists());
        assert!(recent.exists() && other.exists());
        write(d, "ok");
    }
}
