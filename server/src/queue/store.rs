//! The spool: the only code that reads or writes files under `queue_directory`.
//!
//! Durability rules (DESIGN §5):
//! * `enqueue` writes `incoming/.tmp.ID`, fsyncs it, links it to `incoming/ID` (no-replace, so
//!   an ID is never reused while its file exists), unlinks the temp name and fsyncs the
//!   directory; only then does it return, and only then may the caller reply `250`. Directory
//!   fsyncs of concurrent enqueues are grouped: one fsync covers every link made before it began.
//! * `mark_done` rewrites one recipient's status byte in place and fdatasyncs before returning,
//!   so a delivered recipient is never attempted again, even after a crash.
//! * Moves between queues are renames. `defer` rewrites the attempt count and next-attempt time
//!   in place (and sets the file's mtime to the next attempt, as Postfix does) before the rename.
//! * A file that does not decode is moved to `corrupt/` with a log line; never a panic.
//! * `defer/ID` (Postfix's defer logfile) holds the last deferral reason of each pending
//!   recipient, one line `INDEX<TAB>DSN<TAB>ADDRESS<TAB>REASON`; written by qmgr after an attempt
//!   (temp file + rename), removed with the message. `postqueue -p` reads it, so the reasons
//!   survive a restart. It is advisory: a missing or damaged log only hides reasons.
//!
//! All methods block (file IO); async callers use `spawn_blocking`. The store decides nothing:
//! which queue a message belongs in and when is `qmgr`'s business.
//! Not done: Postfix's hashed queue subdirectories (`hash_queue_depth`); one flat directory each.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime};

use super::codec::{self, HeadAndEnvelope};
use super::{Envelope, Queue, QueueError, QueueId, QueuedMessage};

/// Prefix of files being written in `incoming/` (never valid queue IDs, so `scan` skips them).
const TMP_PREFIX: &str = ".tmp.";
/// The defer logs' directory under `queue_directory`.
pub const DEFER_DIR: &str = "defer";
/// Leftover temp files older than this are removed by `open` (a crash while writing).
const STALE_TMP: Duration = Duration::from_secs(3600);

pub struct Store {
    root: PathBuf,
    counter: AtomicU32,
    incoming_sync: DirSync,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating when missing) the queue directories under `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<Store, QueueError> {
        let root = root.as_ref().to_path_buf();
        for q in Queue::ALL {
            let dir = root.join(q.dir_name());
            fs::create_dir_all(&dir).map_err(QueueError::io(&dir))?;
        }
        let dir = root.join(DEFER_DIR);
        fs::create_dir_all(&dir).map_err(QueueError::io(&dir))?;
        open_maildrop(&root.join(Queue::Maildrop.dir_name()));
        let store = Store {
            incoming_sync: DirSync::new(root.join(Queue::Incoming.dir_name())),
            root,
            counter: AtomicU32::new(rand::random()),
        };
        store.remove_stale_temp_files();
        Ok(store)
    }

    /// The queue directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a message would live in `queue`.
    pub fn path(&self, queue: Queue, id: &QueueId) -> PathBuf {
        self.root.join(queue.dir_name()).join(id.as_str())
    }

    /// Writes a new message into `incoming/` durably and returns its ID.
    pub fn enqueue(&self, env: &Envelope, message: &[u8]) -> Result<QueueId, QueueError> {
        self.enqueue_in(Queue::Incoming, env, message)
    }

    /// Writes a new message into `queue` durably (`maildrop/` for sendmail) and returns its ID.
    pub fn enqueue_in(
        &self,
        queue: Queue,
        env: &Envelope,
        message: &[u8],
    ) -> Result<QueueId, QueueError> {
        let head = codec::encode_head(env, 0, SystemTime::UNIX_EPOCH, message.len() as u64)
            .map_err(QueueError::Encode)?;
        let dir = self.root.join(queue.dir_name());
        for _ in 0..1000 {
            let id = QueueId::generate(
                SystemTime::now(),
                self.counter.fetch_add(1, Ordering::Relaxed),
            );
            if self.locate(&id).is_some() {
                continue;
            }
            let tmp = dir.join(format!("{TMP_PREFIX}{id}"));
            let mut f = match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
            {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(QueueError::Io {
                        path: tmp,
                        source: e,
                    });
                }
            };
            let written = f
                .write_all(&head)
                .and_then(|()| f.write_all(message))
                .and_then(|()| f.write_all(codec::TRAILER))
                .and_then(|()| f.sync_all());
            drop(f);
            if let Err(source) = written {
                let _ = fs::remove_file(&tmp);
                return Err(QueueError::Io { path: tmp, source });
            }
            let dest = dir.join(id.as_str());
            let linked = fs::hard_link(&tmp, &dest);
            let _ = fs::remove_file(&tmp);
            match linked {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(QueueError::Io { path: dest, source }),
            }
            if queue == Queue::Incoming {
                self.incoming_sync.sync().map_err(QueueError::io(&dir))?;
            } else {
                match sync_dir(&dir) {
                    // An unprivileged sendmail may not open maildrop/ (mode 1733); its file
                    // is fsynced, and the rename into incoming/ is fsynced by pickup.
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
                    r => r.map_err(QueueError::io(&dir))?,
                }
            }
            return Ok(id);
        }
        Err(QueueError::Io {
            path: dir,
            source: std::io::Error::other("could not find an unused queue ID"),
        })
    }

    /// The queue a message is in, if any.
    pub fn locate(&self, id: &QueueId) -> Option<Queue> {
        const ORDER: [Queue; 6] = [
            Queue::Active,
            Queue::Incoming,
            Queue::Deferred,
            Queue::Hold,
            Queue::Maildrop,
            Queue::Corrupt,
        ];
        ORDER.into_iter().find(|q| self.path(*q, id).exists())
    }

    fn find(&self, id: &QueueId) -> Result<(Queue, PathBuf), QueueError> {
        let q = self
            .locate(id)
            .ok_or_else(|| QueueError::NotFound { id: id.clone() })?;
        Ok((q, self.path(q, id)))
    }

    /// The queue IDs in `queue`, sorted (temp files and foreign names are skipped).
    pub fn scan(&self, queue: Queue) -> Result<Vec<QueueId>, QueueError> {
        let dir = self.root.join(queue.dir_name());
        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).map_err(QueueError::io(&dir))? {
            let entry = entry.map_err(QueueError::io(&dir))?;
            if let Some(id) = entry.file_name().to_str().and_then(QueueId::parse) {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Reads a whole message. A file that does not decode is moved to `corrupt/`.
    pub fn load(&self, id: &QueueId) -> Result<QueuedMessage, QueueError> {
        let (queue, path) = self.find(id)?;
        let bytes = fs::read(&path).map_err(QueueError::io(&path))?;
        match codec::decode(&bytes) {
            Ok((f, used)) if used == bytes.len() => Ok(QueuedMessage {
                id: id.clone(),
                queue,
                envelope: f.envelope,
                attempts: f.head.attempts,
                next_attempt: f.head.next_attempt,
                delay_warned: f.head.flags & codec::FLAG_DELAY_WARNED != 0,
                content: f.content,
            }),
            Ok(_) => Err(self.quarantine(
                id,
                queue,
                codec::CodecError::Corrupt("data after the end marker".into()),
            )),
            Err(e) => Err(self.quarantine(id, queue, e)),
        }
    }

    /// Reads header and envelope only (`postqueue -p`, scheduling). Corrupt files move to `corrupt/`.
    pub fn load_envelope(&self, id: &QueueId) -> Result<(Queue, HeadAndEnvelope), QueueError> {
        let (queue, path) = self.find(id)?;
        let f = File::open(&path).map_err(QueueError::io(&path))?;
        match read_envelope(&f) {
            Ok(Ok(he)) => Ok((queue, he)),
            Ok(Err(e)) => Err(self.quarantine(id, queue, e)),
            Err(source) => Err(QueueError::Io { path, source }),
        }
    }

    /// Moves a damaged file to `corrupt/` and logs it; returns the error to hand on.
    fn quarantine(&self, id: &QueueId, from: Queue, source: codec::CodecError) -> QueueError {
        let dest = self.path(Queue::Corrupt, id);
        match fs::rename(self.path(from, id), &dest) {
            Ok(()) => tracing::warn!(
                "{id}: corrupt queue file moved from {} to corrupt/: {source}",
                from.dir_name()
            ),
            Err(e) => tracing::error!(
                "{id}: corrupt queue file in {}: {source}; cannot move it to corrupt/: {e}",
                from.dir_name()
            ),
        }
        QueueError::Corrupt {
            id: id.clone(),
            source,
        }
    }

    /// Marks recipient `index` done (delivered or bounced): rewrites its status byte in place
    /// and fdatasyncs before returning.
    pub fn mark_done(&self, id: &QueueId, index: usize) -> Result<(), QueueError> {
        let (queue, path) = self.find(id)?;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(QueueError::io(&path))?;
        let he = match read_envelope(&f) {
            Ok(Ok(he)) => he,
            Ok(Err(e)) => return Err(self.quarantine(id, queue, e)),
            Err(source) => return Err(QueueError::Io { path, source }),
        };
        let off = *he
            .status_offsets
            .get(index)
            .ok_or_else(|| QueueError::NoSuchRecipient {
                id: id.clone(),
                index,
            })?;
        f.write_all_at(&[codec::STATUS_DONE], off)
            .and_then(|()| f.sync_data())
            .map_err(QueueError::io(&path))
    }

    /// Records a failed attempt (attempts + 1, next attempt time, file mtime) and moves the
    /// message to `deferred/` — unless the administrator put it on hold meanwhile
    /// (`postsuper -h` during delivery), which then stays in `hold/`.
    pub fn defer(&self, id: &QueueId, next_attempt: SystemTime) -> Result<(), QueueError> {
        let (queue, path) = self.find(id)?;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(QueueError::io(&path))?;
        let mut head = [0u8; codec::HEAD_LEN];
        f.read_exact_at(&mut head, 0)
            .map_err(QueueError::io(&path))?;
        let h = match codec::decode_head(&head) {
            Ok(h) => h,
            Err(e) => return Err(self.quarantine(id, queue, e)),
        };
        let sched = codec::encode_schedule(h.attempts.saturating_add(1), next_attempt);
        f.write_all_at(&sched, codec::ATTEMPTS_OFFSET)
            .map_err(QueueError::io(&path))?;
        if let Err(e) = f.set_modified(next_attempt) {
            tracing::debug!("{id}: cannot set mtime: {e}");
        }
        f.sync_data().map_err(QueueError::io(&path))?;
        drop(f);
        if matches!(queue, Queue::Active | Queue::Incoming) {
            self.rename(id, queue, Queue::Deferred)?;
        }
        Ok(())
    }

    /// Sets `flag` (`codec::FLAG_*`) in a message's header, in place, synced.
    pub fn set_flag(&self, id: &QueueId, flag: u8) -> Result<(), QueueError> {
        let (queue, path) = self.find(id)?;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(QueueError::io(&path))?;
        let mut head = [0u8; codec::HEAD_LEN];
        f.read_exact_at(&mut head, 0)
            .map_err(QueueError::io(&path))?;
        let h = match codec::decode_head(&head) {
            Ok(h) => h,
            Err(e) => return Err(self.quarantine(id, queue, e)),
        };
        f.write_all_at(&[h.flags | flag], codec::FLAGS_OFFSET)
            .and_then(|()| f.sync_data())
            .map_err(QueueError::io(&path))
    }

    fn defer_log_path(&self, id: &QueueId) -> PathBuf {
        self.root.join(DEFER_DIR).join(id.as_str())
    }

    /// Replaces the defer log of a message (empty `records` removes it).
    pub fn write_defer_log(&self, id: &QueueId, records: &[DeferRecord]) -> Result<(), QueueError> {
        if records.is_empty() {
            return self.remove_defer_log(id);
        }
        let path = self.defer_log_path(id);
        let tmp = self.root.join(DEFER_DIR).join(format!("{TMP_PREFIX}{id}"));
        let text: String = records.iter().map(DeferRecord::to_line).collect();
        fs::write(&tmp, text).map_err(QueueError::io(&tmp))?;
        fs::rename(&tmp, &path).map_err(QueueError::io(&path))
    }

    /// The defer log of a message (empty when there is none; bad lines are skipped).
    pub fn read_defer_log(&self, id: &QueueId) -> Vec<DeferRecord> {
        fs::read_to_string(self.defer_log_path(id))
            .map(|t| t.lines().filter_map(DeferRecord::parse).collect())
            .unwrap_or_default()
    }

    /// Removes a message's defer log, if any.
    pub fn remove_defer_log(&self, id: &QueueId) -> Result<(), QueueError> {
        let path = self.defer_log_path(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(QueueError::Io { path, source }),
        }
    }

    /// Moves a message to another queue; returns where it was.
    pub fn move_to(&self, id: &QueueId, to: Queue) -> Result<Queue, QueueError> {
        let (from, _) = self.find(id)?;
        if from != to {
            self.rename(id, from, to)?;
        }
        Ok(from)
    }

    fn rename(&self, id: &QueueId, from: Queue, to: Queue) -> Result<(), QueueError> {
        let src = self.path(from, id);
        let dest = self.path(to, id);
        fs::rename(&src, &dest).map_err(QueueError::io(&src))?;
        let dir = self.root.join(to.dir_name());
        sync_dir(&dir).map_err(QueueError::io(&dir))
    }

    /// Deletes a message and its defer log (every recipient is done, or `postsuper -d`).
    pub fn remove(&self, id: &QueueId) -> Result<(), QueueError> {
        let (_, path) = self.find(id)?;
        fs::remove_file(&path).map_err(QueueError::io(&path))?;
        if let Err(e) = self.remove_defer_log(id) {
            tracing::warn!("{id}: {e}");
        }
        Ok(())
    }

    /// The next-attempt time recorded in a message's header.
    pub fn next_attempt(&self, id: &QueueId) -> Result<SystemTime, QueueError> {
        let (queue, path) = self.find(id)?;
        let f = File::open(&path).map_err(QueueError::io(&path))?;
        let mut head = [0u8; codec::HEAD_LEN];
        f.read_exact_at(&mut head, 0)
            .map_err(QueueError::io(&path))?;
        codec::decode_head(&head)
            .map(|h| h.next_attempt)
            .map_err(|e| self.quarantine(id, queue, e))
    }

    fn remove_stale_temp_files(&self) {
        let dir = self.root.join(Queue::Incoming.dir_name());
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with(TMP_PREFIX) {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_TMP);
            if old {
                tracing::info!(
                    "removing stale temporary queue file {}",
                    entry.path().display()
                );
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// One line of a defer log: why recipient `index` was deferred last time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeferRecord {
    pub index: usize,
    pub dsn: String,
    pub address: String,
    pub reason: String,
}

impl DeferRecord {
    fn to_line(&self) -> String {
        let clean = |s: &str| s.replace(['\t', '\r', '\n'], " ");
        format!(
            "{}\t{}\t{}\t{}\n",
            self.index,
            clean(&self.dsn),
            clean(&self.address),
            clean(&self.reason)
        )
    }

    fn parse(line: &str) -> Option<DeferRecord> {
        let mut it = line.splitn(4, '\t');
        Some(DeferRecord {
            index: it.next()?.parse().ok()?,
            dsn: it.next()?.to_string(),
            address: it.next()?.to_string(),
            reason: it.next()?.to_string(),
        })
    }
}

/// Reads and decodes header + envelope. Outer error: IO; inner: format.
fn read_envelope(f: &File) -> std::io::Result<Result<HeadAndEnvelope, codec::CodecError>> {
    let mut head = [0u8; codec::HEAD_LEN];
    match f.read_exact_at(&mut head, 0) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Ok(Err(codec::CodecError::Incomplete {
                needed: codec::HEAD_LEN,
            }));
        }
        Err(e) => return Err(e),
    }
    let h = match codec::decode_head(&head) {
        Ok(h) => h,
        Err(e) => return Ok(Err(e)),
    };
    let mut buf = vec![0u8; codec::HEAD_LEN + h.envelope_len as usize];
    match f.read_exact_at(&mut buf, 0) {
        Ok(()) => Ok(codec::decode_envelope(&buf)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Ok(Err(codec::CodecError::Incomplete { needed: buf.len() }))
        }
        Err(e) => Err(e),
    }
}

/// `maildrop/` is writable by every local user (mode 1733: write and enter, no listing, and
/// the sticky bit keeps users from removing each other's files), so that an unprivileged
/// `sendmail` can submit; queue files themselves are created 0600. Done only by the
/// directory's owner; a failure leaves the mode as it was.
fn open_maildrop(dir: &Path) {
    let Ok(meta) = fs::metadata(dir) else {
        return;
    };
    let me = fs::metadata("/proc/self").map(|m| m.uid()).ok();
    if Some(meta.uid()) == me && meta.permissions().mode() & 0o7777 != 0o1733 {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o1733));
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Group commit for directory fsyncs: a caller whose link happened before a sync began is
/// covered by that sync; otherwise it waits for the running one and starts the next itself.
struct DirSync {
    dir: PathBuf,
    state: Mutex<SyncState>,
    cv: Condvar,
}

#[derive(Default)]
struct SyncState {
    requested: u64,
    synced: u64,
    running: bool,
}

impl DirSync {
    fn new(dir: PathBuf) -> Self {
        DirSync {
            dir,
            state: Mutex::new(SyncState::default()),
            cv: Condvar::new(),
        }
    }

    fn sync(&self) -> std::io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.requested += 1;
        let me = st.requested;
        loop {
            if st.synced >= me {
                return Ok(());
            }
            if !st.running {
                st.running = true;
                let target = st.requested;
                drop(st);
                let result = sync_dir(&self.dir);
                st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                st.running = false;
                if result.is_ok() {
                    st.synced = st.synced.max(target);
                }
                self.cv.notify_all();
                result?;
                continue;
            }
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Recipient;
    use std::sync::Arc;

    fn env() -> Envelope {
        Envelope::new(
            "alice@example.com",
            vec![
                Recipient::new("bob@example.org"),
                Recipient::new("carol@example.org"),
            ],
            SystemTime::now(),
        )
    }

    #[test]
    fn open_creates_the_queue_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        Store::open(dir.path()).expect("opens");
        for q in Queue::ALL {
            assert!(dir.path().join(q.dir_name()).is_dir(), "{q:?}");
        }
    }

    #[test]
    fn enqueue_load_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = {
            let s = Store::open(dir.path()).expect("opens");
            s.enqueue(&env(), b"Subject: x\r\n\r\nhello\r\n")
                .expect("enqueues")
        };
        let s = Store::open(dir.path()).expect("reopens");
        assert_eq!(s.scan(Queue::Incoming).expect("scans"), vec![id.clone()]);
        let m = s.load(&id).expect("loads");
        assert_eq!(m.queue, Queue::Incoming);
        assert_eq!(m.envelope.sender, "alice@example.com");
        assert_eq!(m.envelope.recipients.len(), 2);
        assert_eq!(m.content, b"Subject: x\r\n\r\nhello\r\n");
        assert_eq!(m.attempts, 0);
        // no temp files left behind
        let names: Vec<_> = fs::read_dir(dir.path().join("incoming"))
            .expect("reads")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn done_recipient_stays_done_after_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("opens");
        let id = s.enqueue(&env(), b"body\r\n").expect("enqueues");
        assert_eq!(
            s.move_to(&id, Queue::Active).expect("moves"),
            Queue::Incoming
        );
        s.mark_done(&id, 1).expect("marks");
        drop(s);
        let s = Store::open(dir.path()).expect("reopens");
        let m = s.load(&id).expect("loads");
        assert_eq!(m.queue, Queue::Active);
        assert_eq!(
            m.envelope
                .recipients
                .iter()
                .map(|r| r.done)
                .collect::<Vec<_>>(),
            [false, true]
        );
        assert!(matches!(
            s.mark_done(&id, 2),
            Err(QueueError::NoSuchRecipient { index: 2, .. })
        ));
    }

    #[test]
    fn defer_records_schedule_and_moves() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("opens");
        let id = s.enqueue(&env(), b"body\r\n").expect("enqueues");
        s.move_to(&id, Queue::Active).expect("moves");
        let next = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        s.defer(&id, next).expect("defers");
        assert_eq!(s.locate(&id), Some(Queue::Deferred));
        assert_eq!(s.next_attempt(&id).expect("reads"), next);
        let m = s.load(&id).expect("loads");
        assert_eq!((m.attempts, m.next_attempt), (1, next));
        let mtime = fs::metadata(s.path(Queue::Deferred, &id))
            .and_then(|m| m.modified())
            .expect("mtime");
        assert_eq!(mtime, next);
        s.remove(&id).expect("removes");
        assert_eq!(s.locate(&id), None);
        assert!(matches!(s.load(&id), Err(QueueError::NotFound { .. })));
    }

    #[test]
    fn defer_log_flag_and_hold_survive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("opens");
        let id = s.enqueue(&env(), b"body\r\n").expect("enqueues");
        let rec = DeferRecord {
            index: 1,
            dsn: "4.4.1".into(),
            address: "carol@example.org".into(),
            reason: "connect to x: Connection\trefused".into(),
        };
        s.write_defer_log(&id, std::slice::from_ref(&rec))
            .expect("writes");
        let back = s.read_defer_log(&id);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].reason, "connect to x: Connection refused");
        assert_eq!(back[0].index, 1);
        assert!(!s.load(&id).expect("loads").delay_warned);
        s.set_flag(&id, codec::FLAG_DELAY_WARNED).expect("flags");
        assert!(s.load(&id).expect("loads").delay_warned);
        // A message put on hold during delivery stays on hold when deferred.
        s.move_to(&id, Queue::Hold).expect("holds");
        s.defer(&id, SystemTime::now()).expect("defers");
        assert_eq!(s.locate(&id), Some(Queue::Hold));
        s.remove(&id).expect("removes");
        assert!(s.read_defer_log(&id).is_empty());
        assert!(!dir.path().join("defer").join(id.as_str()).exists());
        let m = s
            .enqueue_in(Queue::Maildrop, &env(), b"x\r\n")
            .expect("maildrop");
        assert_eq!(s.locate(&m), Some(Queue::Maildrop));
    }

    #[test]
    fn corrupt_file_moves_to_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("opens");
        let id = s.enqueue(&env(), b"body\r\n").expect("enqueues");
        let path = s.path(Queue::Incoming, &id);
        let mut bytes = fs::read(&path).expect("reads");
        bytes.truncate(bytes.len() - 3);
        fs::write(&path, &bytes).expect("writes");
        assert!(matches!(s.load(&id), Err(QueueError::Corrupt { .. })));
        assert_eq!(s.locate(&id), Some(Queue::Corrupt));
        fs::write(dir.path().join("incoming/ABCDEF123456"), b"garbage").expect("writes");
        let bad = QueueId::parse("ABCDEF123456").expect("id");
        assert!(matches!(
            s.mark_done(&bad, 0),
            Err(QueueError::Corrupt { .. })
        ));
        assert_eq!(s.locate(&bad), Some(Queue::Corrupt));
    }

    #[test]
    fn concurrent_enqueues_get_distinct_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Arc::new(Store::open(dir.path()).expect("opens"));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    (0..25)
                        .map(|_| s.enqueue(&env(), b"x").expect("enqueues"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<QueueId> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("joins"))
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 200);
        assert_eq!(s.scan(Queue::Incoming).expect("scans").len(), 200);
    }
}
