//! The resume journal (`--state PATH`): an append-only file of the memberships confirmed
//! added, written after each completed request, so that a run killed at any moment can be
//! re-run and send only what was not confirmed.
//!
//! Format: a header line that ties the journal to its input and target, then one membership
//! index per line (`u` and an index for an organization user created or updated by
//! `--provision-users`), and `complete` once the run that wrote it settled every membership
//! (such a journal, like one for another input, is set aside, never resumed). A run holds the
//! journal's advisory lock (`flock`) from open to exit. Indexes are positions in the plan,
//! which the fingerprint pins down: the same memberships (and users) in the same order, sent
//! to the same base URL and API version. A torn last line (the process died mid-write) is
//! dropped when the journal is opened again.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::plan::Plan;

const MAGIC: &str = "velt-group-sync state v1";

/// FNV-1a over the target, `terms` (what else changes what a line means: the API version,
/// the mode, what is sent about users) and every membership in plan order: stable across
/// builds and platforms, which `std`'s hashers do not promise.
pub fn fingerprint(plan: &Plan, base_url: &str, terms: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(base_url.trim_end_matches('/').as_bytes());
    eat(b"\0");
    eat(terms.as_bytes());
    for m in &plan.memberships {
        let g = plan.group_of(m);
        eat(b"\n");
        eat(g.org.as_bytes());
        eat(b"\0");
        eat(g.id.as_bytes());
        eat(b"\0");
        eat(plan.user(m).as_bytes());
    }
    // The users provisioned, with what is sent about them: a changed name is another run.
    if let Some(accounts) = &plan.accounts {
        for a in &accounts.list {
            eat(b"\nuser\0");
            eat(accounts.org_of(a).as_bytes());
            for field in [&a.user, &a.name, &a.email] {
                eat(b"\0");
                eat(field.as_bytes());
            }
        }
    }
    h
}

/// What a journal line names: a membership of the plan, or one of its organization users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Membership(u32),
    Account(u32),
}

/// What a journal says earlier runs confirmed.
#[derive(Debug, Default)]
pub struct Confirmed {
    /// Memberships confirmed added.
    pub memberships: Vec<u32>,
    /// Organization users (`Accounts::list` indexes) confirmed created or updated.
    pub accounts: Vec<u32>,
}

impl Confirmed {
    pub fn len(&self) -> usize {
        self.memberships.len() + self.accounts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Opens (or creates) the journal file and takes its advisory lock, or says who holds it.
fn open_locked(path: &Path) -> Result<File, Error> {
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // New journals hold membership indexes only, but beside the report they stay private.
        options.mode(crate::files::PRIVATE);
    }
    let file = options.open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source: crate::files::unwritable(path, &source, "the --state journal", "--state path"),
    })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Config(format!(
            "{}: another run{} holds this --state journal (it is locked); wait for it to \
             finish, or give this run its own --state path",
            path.display(),
            holder(&file).map_or(String::new(), |pid| format!(" (PID {pid})"))
        ))),
        Err(std::fs::TryLockError::Error(source)) => Err(Error::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The PID of the process holding `file`'s lock, from `/proc/locks` (Linux; `None` elsewhere
/// or when it cannot be told).
fn holder(file: &File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().ok()?;
    let dev = meta.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let id = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        // `1: FLOCK  ADVISORY  WRITE 12345 08:01:1234567 0 EOF`
        let fields: Vec<&str> = line.split_whitespace().collect();
        let at = fields.iter().position(|f| *f == id)?;
        (fields.get(1) == Some(&"FLOCK")).then(|| fields.get(at.checked_sub(1)?)?.parse().ok())?
    })
}

/// Renames the journal to `PATH.prev`, replacing an older one; returns the new name.
fn set_aside(path: &Path) -> io::Result<PathBuf> {
    let mut prev = path.as_os_str().to_owned();
    prev.push(".prev");
    let prev = PathBuf::from(prev);
    std::fs::rename(path, &prev)?;
    Ok(prev)
}

pub struct Journal {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
}

/// The last line of a journal whose run settled every membership: it is not resumed again.
const COMPLETE: &str = "complete";

impl Journal {
    /// Opens or creates the journal, locked for this run, with the indexes already confirmed.
    ///
    /// Only the interrupted or incomplete run that wrote a journal is resumed from it: a
    /// journal for another input or target, or one whose run completed, is set aside as
    /// `PATH.prev` (replacing an older one) and the run starts afresh. Another run holding
    /// the journal is an error (exit 2), before anything is sent.
    pub fn open(
        path: &Path,
        fingerprint: u64,
        memberships: usize,
        accounts: usize,
    ) -> Result<(Journal, Confirmed), Error> {
        let io_err = |source: io::Error| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        // A FIFO would block the run before it sends (deaf to SIGTERM), a device would never
        // hold an earlier run, a directory is a mistake: only a regular file is a journal.
        if let Ok(m) = std::fs::metadata(path)
            && !m.is_file()
        {
            return Err(Error::Config(format!(
                "{}: --state must be a regular file, or a path that does not exist yet (this is \
                 a {}); give the journal a path of its own",
                path.display(),
                if m.is_dir() {
                    "directory"
                } else {
                    "FIFO, socket or device"
                }
            )));
        }
        let header = format!("{MAGIC} fingerprint={fingerprint:016x} memberships={memberships}\n");
        let mut file = open_locked(path)?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(io_err)?;
        let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let completed = text[..whole]
            .strip_suffix(b"\n")
            .is_some_and(|t| t.ends_with(COMPLETE.as_bytes()));
        if !text.is_empty() && (completed || !text.starts_with(header.as_bytes())) {
            let why = if completed {
                "its run completed"
            } else {
                "it was written for another input or target"
            };
            let prev = set_aside(path).map_err(io_err)?;
            tracing::info!(
                event = "state_set_aside",
                path = %path.display(),
                moved_to = %prev.display(),
                message = %format!("not resuming from the journal: {why}; starting afresh"),
            );
            // The lock stays with the old file; the new one is locked afresh.
            file = open_locked(path)?;
            text.clear();
        }
        let mut confirmed = Confirmed::default();
        if text.is_empty() {
            file.write_all(header.as_bytes()).map_err(io_err)?;
            file.sync_data().map_err(io_err)?;
        } else {
            let shown = path.display();
            // Only whole lines count: a line cut short by a crash is dropped and overwritten.
            for (n, line) in text[header.len()..whole]
                .split(|&b| b == b'\n')
                .enumerate()
                .filter(|(_, l)| !l.is_empty())
            {
                let (list, text, len) = match line.strip_prefix(b"u") {
                    Some(rest) => (&mut confirmed.accounts, rest, accounts),
                    None => (&mut confirmed.memberships, line, memberships),
                };
                let index = std::str::from_utf8(text)
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok())
                    .filter(|&i| (i as usize) < len)
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "{shown}:{}: not an index of this run's memberships or users; the state file is damaged: delete it to start over",
                            n + 2
                        ))
                    })?;
                list.push(index);
            }
            if whole < text.len() {
                file.set_len(whole as u64).map_err(io_err)?;
                file.seek(SeekFrom::End(0)).map_err(io_err)?;
            }
        }
        Ok((Journal::with(path, file), confirmed))
    }

    fn with(path: &Path, file: File) -> Journal {
        Journal {
            path: path.to_path_buf(),
            file,
            buf: Vec::new(),
        }
    }

    /// Marks the run that wrote the journal as complete: every membership settled, so the
    /// next run starts afresh instead of resuming (a night's export differs from the last).
    pub fn complete(&mut self) -> io::Result<()> {
        self.file.write_all(format!("{COMPLETE}\n").as_bytes())?;
        self.file.sync_data()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends confirmed memberships and organization users (created or updated) in one
    /// write, so a crash loses at most this batch.
    pub fn record(&mut self, keys: impl IntoIterator<Item = Key>) -> io::Result<()> {
        self.buf.clear();
        for key in keys {
            let (prefix, i) = match key {
                Key::Membership(m) => ("", m),
                Key::Account(a) => ("u", a),
            };
            self.buf.extend_from_slice(prefix.as_bytes());
            self.buf.extend_from_slice(i.to_string().as_bytes());
            self.buf.push(b'\n');
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.buf)?;
        self.file.flush()
    }

    /// Forces the journal to disk (at the end of a run).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopening_keeps_whole_lines_and_drops_a_torn_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let (mut j, done) = Journal::open(&path, 42, 100, 10).unwrap();
        assert!(done.is_empty());
        j.record([3, 7].map(Key::Membership)).unwrap();
        drop(j);
        // A crash in the middle of writing "12\n".
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"1")
            .unwrap();
        let (mut j, done) = Journal::open(&path, 42, 100, 10).unwrap();
        assert_eq!(done.memberships, [3, 7]);
        j.record([Key::Membership(12)]).unwrap();
        drop(j);
        let (_, done) = Journal::open(&path, 42, 100, 10).unwrap();
        assert_eq!(done.memberships, [3, 7, 12]);
    }

    #[test]
    fn a_journal_of_another_run_or_a_completed_one_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let (mut j, _) = Journal::open(&path, 42, 100, 10).unwrap();
        j.record([Key::Membership(5)]).unwrap();
        drop(j);
        // Another input: set aside, a fresh journal.
        let (j, done) = Journal::open(&path, 43, 100, 10).unwrap();
        assert!(done.is_empty());
        drop(j);
        let prev = dir.path().join("state.prev");
        assert!(std::fs::read_to_string(&prev).unwrap().ends_with("\n5\n"));
        // The same input, interrupted: resumed.
        let (mut j, done) = Journal::open(&path, 43, 100, 10).unwrap();
        assert!(done.is_empty());
        j.record([Key::Membership(7)]).unwrap();
        drop(j);
        let (mut j, done) = Journal::open(&path, 43, 100, 10).unwrap();
        assert_eq!(done.memberships, [7]);
        // Completed: not resumed again.
        j.complete().unwrap();
        drop(j);
        let (_j, done) = Journal::open(&path, 43, 100, 10).unwrap();
        assert!(done.is_empty());
        assert!(
            std::fs::read_to_string(&prev)
                .unwrap()
                .ends_with("\n7\ncomplete\n")
        );
    }

    #[test]
    fn a_held_journal_is_refused_naming_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let (_held, _) = Journal::open(&path, 42, 100, 10).unwrap();
        let err = Journal::open(&path, 42, 100, 10).err().unwrap().to_string();
        // The holder is this very process, told by its PID.
        let pid = std::process::id();
        assert!(
            err.contains(&format!(
                "state: another run (PID {pid}) holds this --state journal"
            )),
            "{err}"
        );
    }
}
