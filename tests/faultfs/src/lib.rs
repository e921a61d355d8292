//! A file system that promises what a disk promises, and nothing more.
//!
//! The fault tests mount a node's data directory through [`FaultFs`], a FUSE
//! pass-through over a real directory (the *backing* directory). Every
//! operation reaches the backing directory at once, so the node reads what it
//! wrote, as it would through a page cache. What is not yet *durable* is
//! remembered, and a [`Cut`] takes it away again, the way losing power does:
//!
//! - **Data.** A file's bytes are durable up to its last successful `fsync` or
//!   `fdatasync`. Before the first write to a page after that, the page's
//!   durable bytes (and the file's durable size) are kept; a cut puts them
//!   back.
//! - **Names.** Creating, renaming, linking and removing a file or directory
//!   is durable once the directory that holds the name has been synced
//!   (`fsync` of the directory; both directories for a rename). Until then a
//!   cut undoes it: a new file disappears, a renamed one gets its old name
//!   back, a removed one returns (removed files wait in a hidden directory
//!   until their removal is durable).
//! - **A torn cut** ([`Cut::Torn`]) keeps a random part of what was not
//!   durable, seeded: each unsynced page survives or not, a file's unsynced
//!   growth survives or not, and the names undone are a random suffix of the
//!   unsynced ones (a metadata journal keeps its order).
//!
//! Faults that need no cut are set on a running mount ([`Faults`]): `ENOSPC`
//! once a byte budget is spent (`statfs` then reports the budget as the free
//! space), `EIO` on reads or writes of chosen files, a delay per sync, and a
//! failing `fsync`. A failed `fsync` behaves as Linux's does: the unsynced
//! pages are dropped (the file reads its durable bytes again) and the error is
//! reported once, so a program that retries the sync does not make the lost
//! writes durable.
//!
//! A cut needs the file system unmounted (the kernel's caches go with it):
//! [`Mount::power_cut`] unmounts, rolls back and mounts again. Stop every
//! process that uses the mount first.
//!
//! This crate lives in the test harness: the product never runs on it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, MountOption, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    TimeOrNow, WriteFlags,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The granularity of torn writes: what a disk writes all or nothing.
pub const PAGE: u64 = 4096;

/// The hidden directory, in the backing root, of removed files whose removal
/// is not durable yet.
const TRASH: &str = ".faultfs-removed";

/// Attributes and names are never cached by the kernel: a cut changes them
/// behind its back (the mount is renewed then too, but a test may look at
/// the backing directory in between).
const TTL: Duration = Duration::ZERO;

/// How a power cut treats what was not durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Everything not durable is lost.
    Clean,
    /// A random part of what was not durable survives, chosen by `seed`.
    Torn { seed: u64 },
    /// One torn cut in particular, the hardest for a log: every file keeps
    /// its growth and all its unsynced pages but the first, a hole in the
    /// middle of what it wrote last. Names are undone as in a clean cut.
    Hole,
}

/// What a cut took away.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CutReport {
    /// Files whose unsynced bytes were rolled back, in whole or in part.
    pub files: usize,
    /// Unsynced pages lost, and (torn cuts only) kept.
    pub pages_lost: usize,
    pub pages_kept: usize,
    /// Name changes (create, rename, link, remove) undone, and kept.
    pub names_undone: usize,
    pub names_kept: usize,
    /// The paths of the name changes undone, relative to the mount, newest
    /// first, and of the files whose bytes were rolled back.
    pub undone: Vec<String>,
    pub rolled_back: Vec<String>,
}

/// Faults a running mount injects. Set through [`Mount::faults`].
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Writes (and new names) fail with `ENOSPC` once this many more bytes
    /// have been written; `None`: no limit.
    pub space_left: Option<u64>,
    /// Reads of files whose name contains one of these fail with `EIO`.
    pub read_errors: Vec<String>,
    /// Writes to files whose name contains one of these fail with `EIO`.
    pub write_errors: Vec<String>,
    /// Each `fsync`, `fdatasync` and directory sync takes this long.
    pub sync_delay: Duration,
    /// Every sync fails with `EIO` (and drops the file's unsynced pages).
    pub sync_errors: bool,
}

/// A FUSE mount of a backing directory. Unmounted when dropped.
#[derive(Debug)]
pub struct Mount {
    backing: PathBuf,
    mountpoint: PathBuf,
    shared: Arc<Shared>,
    session: Option<BackgroundSession>,
}

impl Mount {
    /// Mounts `backing` (which must exist) at `mountpoint` (an empty
    /// directory).
    pub fn new(backing: &Path, mountpoint: &Path) -> io::Result<Mount> {
        let backing = backing.canonicalize()?;
        std::fs::create_dir_all(backing.join(TRASH))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(&backing)?),
            faults: Mutex::default(),
        });
        let mut mount = Mount {
            backing,
            mountpoint: mountpoint.to_owned(),
            shared,
            session: None,
        };
        mount.mount()?;
        Ok(mount)
    }

    fn mount(&mut self) -> io::Result<()> {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("veritrail-faultfs".into()),
            MountOption::RW,
            MountOption::NoExec,
        ];
        let fs = FaultFs {
            shared: Arc::clone(&self.shared),
        };
        self.session = Some(fuser::spawn_mount(fs, &self.mountpoint, &config)?);
        Ok(())
    }

    fn unmount(&mut self) -> io::Result<()> {
        match self.session.take().map(BackgroundSession::umount_and_join) {
            // The session ends with the device's disconnection when the
            // unmount comes before or during the kernel's handshake.
            Some(Err(e))
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::NotConnected
                ) =>
            {
                Err(e)
            }
            _ => Ok(()),
        }
    }

    /// The directory the mount shows.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// The directory beneath, holding what the mount shows.
    pub fn backing(&self) -> &Path {
        &self.backing
    }

    /// Changes the faults injected from now on.
    pub fn faults(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.shared.faults());
    }

    /// Loses power: unmounts, takes away what was not durable as `cut` says,
    /// and mounts again. Every process using the mount must have stopped.
    pub fn power_cut(&mut self, cut: Cut) -> io::Result<CutReport> {
        self.unmount()?;
        let report = self.shared.state().cut(cut)?;
        *self.shared.faults() = Faults::default();
        self.mount()?;
        Ok(report)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = self.unmount();
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    faults: Mutex<Faults>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The durable bytes of a file that has unsynced writes.
#[derive(Debug)]
struct Unsynced {
    /// The file's durable size.
    size: u64,
    /// For each page written since the last sync: its durable bytes (shorter
    /// than a page at the durable end, empty past it).
    pages: BTreeMap<u64, Vec<u8>>,
}

/// A name change that is not durable yet.
#[derive(Debug)]
struct NameChange {
    op: NameOp,
    /// The directories (inode numbers) still to be synced before it is.
    waiting_for: HashSet<u64>,
}

#[derive(Debug)]
enum NameOp {
    Created(PathBuf),
    MadeDir(PathBuf),
    Linked(PathBuf),
    /// `displaced`: where the file that `to` named before went (the trash).
    Renamed {
        from: PathBuf,
        to: PathBuf,
        displaced: Option<PathBuf>,
    },
    /// The file now waits in the trash.
    Removed {
        path: PathBuf,
        trash: PathBuf,
    },
    RemovedDir(PathBuf),
}

#[derive(Debug)]
struct State {
    backing: PathBuf,
    /// The backing root's own inode number, shown as FUSE's root (1).
    root_ino: u64,
    /// Where each inode the kernel knows is, in the backing directory.
    paths: HashMap<u64, PathBuf>,
    handles: HashMap<u64, (u64, File)>,
    next_handle: u64,
    unsynced: HashMap<u64, Unsynced>,
    names: Vec<NameChange>,
    trash_seq: u64,
}

fn errno(e: &io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

fn time(t: io::Result<SystemTime>) -> SystemTime {
    t.unwrap_or(UNIX_EPOCH)
}

impl State {
    fn new(backing: &Path) -> io::Result<State> {
        let root_ino = std::fs::metadata(backing)?.ino();
        let mut paths = HashMap::new();
        paths.insert(INodeNo::ROOT.0, backing.to_owned());
        Ok(State {
            backing: backing.to_owned(),
            root_ino,
            paths,
            handles: HashMap::new(),
            next_handle: 1,
            unsynced: HashMap::new(),
            names: Vec::new(),
            trash_seq: 0,
        })
    }

    /// FUSE's inode number for a backing inode number: the root is 1.
    fn ino(&self, backing_ino: u64) -> u64 {
        if backing_ino == self.root_ino {
            INodeNo::ROOT.0
        } else if backing_ino == INodeNo::ROOT.0 {
            self.root_ino
        } else {
            backing_ino
        }
    }

    fn path(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        self.paths.get(&ino.0).cloned().ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        if parent == INodeNo::ROOT && name == TRASH {
            return Err(Errno::ENOENT);
        }
        Ok(self.path(parent)?.join(name))
    }

    fn attr(&self, meta: &std::fs::Metadata) -> FileAttr {
        let kind = FileType::from_std(meta.file_type()).unwrap_or(FileType::RegularFile);
        FileAttr {
            ino: INodeNo(self.ino(meta.ino())),
            size: meta.len(),
            blocks: meta.blocks(),
            atime: time(meta.accessed()),
            mtime: time(meta.modified()),
            ctime: UNIX_EPOCH + Duration::from_secs(meta.ctime().max(0) as u64),
            crtime: UNIX_EPOCH,
            kind,
            perm: (meta.mode() & 0o7777) as u16,
            nlink: meta.nlink() as u32,
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: meta.rdev() as u32,
            blksize: PAGE as u32,
            flags: 0,
        }
    }

    /// Looks `path` up and remembers where its inode is.
    fn entry(&mut self, path: PathBuf) -> Result<FileAttr, Errno> {
        let meta = std::fs::symlink_metadata(&path).map_err(|e| errno(&e))?;
        let attr = self.attr(&meta);
        self.paths.insert(attr.ino.0, path);
        Ok(attr)
    }

    fn remember(&mut self, op: NameOp, dirs: &[INodeNo]) {
        self.names.push(NameChange {
            op,
            waiting_for: dirs.iter().map(|d| d.0).collect(),
        });
    }

    /// Moves `path` into the trash, keeping its inode (open files stay open).
    fn trash_file(&mut self, path: &Path) -> io::Result<PathBuf> {
        self.trash_seq += 1;
        let trash = self.backing.join(TRASH).join(self.trash_seq.to_string());
        std::fs::rename(path, &trash)?;
        for p in self.paths.values_mut() {
            if p == path {
                *p = trash.clone();
            }
        }
        Ok(trash)
    }

    /// Every remembered path under `from` is now under `to`.
    fn moved(&mut self, from: &Path, to: &Path) {
        for p in self.paths.values_mut() {
            if let Ok(rest) = p.strip_prefix(from) {
                *p = if rest.as_os_str().is_empty() {
                    to.to_owned()
                } else {
                    to.join(rest)
                };
            }
        }
    }

    /// Keeps the durable bytes of the pages `[offset, offset + len)` of
    /// `ino` before they are first overwritten after a sync.
    fn keep_durable(&mut self, ino: u64, file: &File, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let current = file.metadata()?.len();
        let unsynced = self.unsynced.entry(ino).or_insert_with(|| Unsynced {
            size: current,
            pages: BTreeMap::new(),
        });
        for page in offset / PAGE..=(offset + len - 1) / PAGE {
            if unsynced.pages.contains_key(&page) {
                continue;
            }
            let start = page * PAGE;
            let end = (start + PAGE).min(unsynced.size).min(current);
            let mut bytes = vec![0; end.saturating_sub(start) as usize];
            if !bytes.is_empty() {
                file.read_exact_at(&mut bytes, start)?;
            }
            unsynced.pages.insert(page, bytes);
        }
        Ok(())
    }

    /// Truncates or extends `path` to `size`, keeping what a cut restores.
    fn set_size(&mut self, ino: u64, path: &Path, size: u64) -> io::Result<()> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let current = file.metadata()?.len();
        if size < current {
            self.keep_durable(ino, &file, size, current - size)?;
        } else {
            self.keep_durable(ino, &file, current, 0)?;
            self.unsynced.entry(ino).or_insert(Unsynced {
                size: current,
                pages: BTreeMap::new(),
            });
        }
        file.set_len(size)
    }

    /// A sync of file `ino` succeeded: its bytes are durable.
    fn synced(&mut self, ino: u64) {
        self.unsynced.remove(&ino);
    }

    /// A sync of file `ino` failed: its unsynced pages are gone (Linux marks
    /// them clean after reporting the error).
    fn sync_failed(&mut self, ino: u64) -> io::Result<()> {
        if let Some(unsynced) = self.unsynced.remove(&ino)
            && let Some(path) = self.paths.get(&ino)
        {
            let mut rng = StdRng::seed_from_u64(0);
            restore(
                path,
                &unsynced,
                Cut::Clean,
                &mut rng,
                &mut CutReport::default(),
            )?;
        }
        Ok(())
    }

    /// Directory `ino` was synced: the name changes in it are durable once
    /// every directory they touch is.
    fn dir_synced(&mut self, ino: u64) {
        let mut durable = Vec::new();
        for (i, change) in self.names.iter_mut().enumerate() {
            change.waiting_for.remove(&ino);
            if change.waiting_for.is_empty() {
                durable.push(i);
            }
        }
        for i in durable.into_iter().rev() {
            let change = self.names.remove(i);
            // A removal made durable: the file goes for good once closed.
            if let NameOp::Removed { trash, .. } = &change.op {
                self.forget_trash(trash);
            }
            if let NameOp::Renamed {
                displaced: Some(trash),
                ..
            } = &change.op
            {
                self.forget_trash(trash);
            }
        }
    }

    /// A removal became durable: the file in the trash goes, unless it is
    /// still open (it then waits for the next cut). Its inode number may be
    /// given to a new file, so nothing about it may stay behind.
    fn forget_trash(&mut self, trash: &Path) {
        let inos: Vec<u64> = self
            .paths
            .iter()
            .filter(|(_, p)| *p == trash)
            .map(|(ino, _)| *ino)
            .collect();
        let open = inos
            .iter()
            .any(|ino| self.handles.values().any(|(h, _)| h == ino));
        if !open && std::fs::remove_file(trash).is_ok() {
            for ino in inos {
                self.paths.remove(&ino);
                self.unsynced.remove(&ino);
            }
        }
    }

    fn shown(&self, path: &Path) -> String {
        path.strip_prefix(&self.backing)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// Takes away what was not durable.
    fn cut(&mut self, cut: Cut) -> io::Result<CutReport> {
        let mut report = CutReport::default();
        let seed = match cut {
            Cut::Clean | Cut::Hole => 0,
            Cut::Torn { seed } => seed,
        };
        let mut rng = StdRng::seed_from_u64(seed);
        self.handles.clear();
        // Bytes first, while every inode's path is known.
        let mut unsynced: Vec<(u64, Unsynced)> = self.unsynced.drain().collect();
        unsynced.sort_by_key(|(ino, _)| *ino);
        for (ino, bytes) in unsynced {
            let Some(path) = self.paths.get(&ino) else {
                continue;
            };
            if path.exists() {
                report.files += 1;
                report.rolled_back.push(self.shown(path));
                restore(path, &bytes, cut, &mut rng, &mut report)?;
            }
        }
        // Then names, newest first. A torn cut keeps the oldest ones.
        let names = std::mem::take(&mut self.names);
        let keep = match cut {
            Cut::Clean | Cut::Hole => 0,
            Cut::Torn { .. } => rng.random_range(0..=names.len()),
        };
        report.names_kept = keep;
        for change in names.into_iter().skip(keep).rev() {
            report.names_undone += 1;
            report
                .undone
                .push(format!("{:?}", change.op).replace(&self.backing.display().to_string(), ""));
            undo(&change.op)?;
        }
        // What remains in the trash was removed for good.
        let trash = self.backing.join(TRASH);
        std::fs::remove_dir_all(&trash)?;
        std::fs::create_dir_all(&trash)?;
        self.paths.clear();
        self.paths.insert(INodeNo::ROOT.0, self.backing.clone());
        Ok(report)
    }
}

/// Puts back the durable bytes of the file at `path`, all of them (a clean
/// cut) or a random part (a torn one).
fn restore(
    path: &Path,
    unsynced: &Unsynced,
    cut: Cut,
    rng: &mut StdRng,
    report: &mut CutReport,
) -> io::Result<()> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let current = file.metadata()?.len();
    let torn = matches!(cut, Cut::Torn { .. });
    let hole = cut == Cut::Hole;
    // The file's growth past its durable size survives a torn cut or not;
    // the pages inside it then survive or not one by one.
    let size = if hole || (torn && rng.random_bool(0.5)) {
        current
    } else {
        unsynced.size
    };
    let first = unsynced.pages.keys().next().copied();
    if size > current {
        file.set_len(size)?;
    }
    for (page, durable) in &unsynced.pages {
        let start = page * PAGE;
        if start >= size {
            report.pages_lost += 1;
            continue;
        }
        let kept = if hole {
            Some(*page) != first
        } else {
            torn && rng.random_bool(0.5)
        };
        if kept {
            report.pages_kept += 1;
            continue;
        }
        report.pages_lost += 1;
        // The durable bytes, and zeros for the rest of the page up to the
        // size: a page past the durable end that did not make it reads as a
        // hole.
        let end = (start + PAGE).min(size);
        let mut bytes = durable.clone();
        bytes.resize((end - start) as usize, 0);
        file.write_all_at(&bytes, start)?;
    }
    file.set_len(size)?;
    Ok(())
}

/// Undoes one name change that was not durable.
fn undo(op: &NameOp) -> io::Result<()> {
    // A path already gone (a later change moved it elsewhere and was made
    // durable) is left as it is.
    let gone = |r: io::Result<()>| match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    match op {
        NameOp::Created(path) | NameOp::Linked(path) => gone(std::fs::remove_file(path)),
        NameOp::MadeDir(path) => gone(std::fs::remove_dir_all(path)),
        NameOp::Renamed {
            from,
            to,
            displaced,
        } => {
            gone(std::fs::rename(to, from))?;
            if let Some(trash) = displaced {
                gone(std::fs::rename(trash, to))?;
            }
            Ok(())
        }
        NameOp::Removed { path, trash } => gone(std::fs::rename(trash, path)),
        NameOp::RemovedDir(path) => match std::fs::create_dir(path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        },
    }
}

/// The FUSE side: every call locks the state; the session runs one thread.
#[derive(Debug)]
struct FaultFs {
    shared: Arc<Shared>,
}

fn named(path: &Path, patterns: &[String]) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    patterns.iter().any(|p| name.contains(p.as_str()))
}

impl FaultFs {
    /// Charges `bytes` against the space left, or refuses with ENOSPC.
    fn charge(&self, bytes: u64) -> Result<(), Errno> {
        let mut faults = self.shared.faults();
        match &mut faults.space_left {
            Some(left) if *left < bytes.max(1) => Err(Errno::ENOSPC),
            Some(left) => {
                *left -= bytes;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Applies the sync faults: the delay, then `Err` if syncs fail.
    fn sync_faults(&self) -> Result<(), ()> {
        let (delay, fail) = {
            let faults = self.shared.faults();
            (faults.sync_delay, faults.sync_errors)
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        if fail { Err(()) } else { Ok(()) }
    }
}

impl Filesystem for FaultFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut state = self.shared.state();
        match state.child(parent, name).and_then(|p| state.entry(p)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let state = self.shared.state();
        let meta = match fh.and_then(|fh| state.handles.get(&fh.0)) {
            Some((_, file)) => file.metadata(),
            None => match state.path(ino) {
                Ok(path) => std::fs::symlink_metadata(path),
                Err(e) => return reply.error(e),
            },
        };
        match meta {
            Ok(meta) => reply.attr(&TTL, &state.attr(&meta)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut state = self.shared.state();
        let result = (|| -> Result<FileAttr, Errno> {
            let path = state.path(ino)?;
            let io = |e: io::Error| errno(&e);
            if let Some(size) = size {
                state.set_size(ino.0, &path, size).map_err(io)?;
            }
            if let Some(mode) = mode {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(io)?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::chown(&path, uid, gid).map_err(io)?;
            }
            if let Some(mtime) = mtime {
                let when = match mtime {
                    TimeOrNow::SpecificTime(t) => t,
                    TimeOrNow::Now => SystemTime::now(),
                };
                File::open(&path)
                    .and_then(|f| f.set_modified(when))
                    .map_err(io)?;
            }
            let meta = std::fs::symlink_metadata(&path).map_err(io)?;
            Ok(state.attr(&meta))
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        if let Err(e) = self.charge(PAGE) {
            return reply.error(e);
        }
        let mut state = self.shared.state();
        let result = (|| -> Result<FileAttr, Errno> {
            let path = state.child(parent, name)?;
            std::fs::create_dir(&path).map_err(|e| errno(&e))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !umask))
                .map_err(|e| errno(&e))?;
            state.remember(NameOp::MadeDir(path.clone()), &[parent]);
            state.entry(path)
        })();
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.shared.state();
        let result = (|| -> Result<(), Errno> {
            let path = state.child(parent, name)?;
            let meta = std::fs::symlink_metadata(&path).map_err(|e| errno(&e))?;
            if meta.is_dir() {
                return Err(Errno::EISDIR);
            }
            let trash = state.trash_file(&path).map_err(|e| errno(&e))?;
            state.remember(NameOp::Removed { path, trash }, &[parent]);
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.shared.state();
        let result = (|| -> Result<(), Errno> {
            let path = state.child(parent, name)?;
            std::fs::remove_dir(&path).map_err(|e| errno(&e))?;
            state.paths.retain(|_, p| p != &path);
            state.remember(NameOp::RemovedDir(path), &[parent]);
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut state = self.shared.state();
        let result = (|| -> Result<(), Errno> {
            if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
                return Err(Errno::EINVAL);
            }
            let from = state.child(parent, name)?;
            let to = state.child(newparent, newname)?;
            std::fs::symlink_metadata(&from).map_err(|e| errno(&e))?;
            let displaced = match std::fs::symlink_metadata(&to) {
                Ok(_) if flags.contains(RenameFlags::RENAME_NOREPLACE) => {
                    return Err(Errno::EEXIST);
                }
                // A directory replaced must be empty; rename(2) says so.
                Ok(meta) if meta.is_dir() => {
                    std::fs::remove_dir(&to).map_err(|e| errno(&e))?;
                    None
                }
                Ok(_) => Some(state.trash_file(&to).map_err(|e| errno(&e))?),
                Err(_) => None,
            };
            std::fs::rename(&from, &to).map_err(|e| errno(&e))?;
            state.moved(&from, &to);
            state.remember(
                NameOp::Renamed {
                    from,
                    to,
                    displaced,
                },
                &[parent, newparent],
            );
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let mut state = self.shared.state();
        let result = (|| -> Result<FileAttr, Errno> {
            let original = state.path(ino)?;
            let path = state.child(newparent, newname)?;
            std::fs::hard_link(&original, &path).map_err(|e| errno(&e))?;
            state.remember(NameOp::Linked(path.clone()), &[newparent]);
            let meta = std::fs::symlink_metadata(&path).map_err(|e| errno(&e))?;
            Ok(state.attr(&meta))
        })();
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut state = self.shared.state();
        let result = (|| -> Result<u64, Errno> {
            let path = state.path(ino)?;
            let mut options = OpenOptions::new();
            // Read access always: a write first reads the durable bytes it
            // is about to cover.
            options.read(true);
            if flags.acc_mode() != OpenAccMode::O_RDONLY {
                options.write(true);
            }
            // Writes arrive with their offsets, appends included; truncation
            // arrives as a setattr.
            let file = options.open(&path).map_err(|e| errno(&e))?;
            let handle = state.next_handle;
            state.next_handle += 1;
            state.handles.insert(handle, (ino.0, file));
            Ok(handle)
        })();
        match result {
            Ok(handle) => reply.opened(FileHandle(handle), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let state = self.shared.state();
        let read_errors = self.shared.faults().read_errors.clone();
        if let Ok(path) = state.path(ino)
            && named(&path, &read_errors)
        {
            return reply.error(Errno::EIO);
        }
        let Some((_, file)) = state.handles.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let mut bytes = vec![0; size as usize];
        let mut filled = 0;
        while filled < bytes.len() {
            match file.read_at(&mut bytes[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return reply.error(errno(&e)),
            }
        }
        reply.data(&bytes[..filled]);
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut state = self.shared.state();
        let write_errors = self.shared.faults().write_errors.clone();
        if let Ok(path) = state.path(ino)
            && named(&path, &write_errors)
        {
            return reply.error(Errno::EIO);
        }
        if let Err(e) = self.charge(data.len() as u64) {
            return reply.error(e);
        }
        let file = match state.handles.get(&fh.0) {
            Some((_, file)) => file.try_clone(),
            None => return reply.error(Errno::EBADF),
        };
        let result = file.and_then(|file| {
            state.keep_durable(ino.0, &file, offset, data.len() as u64)?;
            file.write_all_at(data, offset)
        });
        match result {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.shared.state().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let failed = self.sync_faults().is_err();
        let mut state = self.shared.state();
        if failed {
            let _ = state.sync_failed(ino.0);
            return reply.error(Errno::EIO);
        }
        state.synced(ino.0);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let state = self.shared.state();
        let path = match state.path(ino) {
            Ok(path) => path,
            Err(e) => return reply.error(e),
        };
        let listing = match std::fs::read_dir(&path) {
            Ok(listing) => listing,
            Err(e) => return reply.error(errno(&e)),
        };
        let mut entries: Vec<(u64, FileType, std::ffi::OsString)> = vec![
            (ino.0, FileType::Directory, ".".into()),
            (INodeNo::ROOT.0, FileType::Directory, "..".into()),
        ];
        let mut found = Vec::new();
        for entry in listing.flatten() {
            if ino == INodeNo::ROOT && entry.file_name() == TRASH {
                continue;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let kind = FileType::from_std(meta.file_type()).unwrap_or(FileType::RegularFile);
            found.push((state.ino(meta.ino()), kind, entry.file_name()));
        }
        found.sort_by(|a, b| a.2.cmp(&b.2));
        entries.extend(found);
        for (i, (entry_ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*entry_ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        if self.sync_faults().is_err() {
            return reply.error(Errno::EIO);
        }
        self.shared.state().dir_synced(ino.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let backing = self.shared.state().backing.clone();
        let space_left = self.shared.faults().space_left;
        match rustix::fs::statvfs(&backing) {
            Ok(s) => {
                let unit = s.f_frsize.max(1);
                let (mut free, mut avail) = (s.f_bfree, s.f_bavail);
                if let Some(left) = space_left {
                    free = free.min(left / unit);
                    avail = avail.min(left / unit);
                }
                reply.statfs(
                    s.f_blocks,
                    free,
                    avail,
                    s.f_files,
                    s.f_ffree,
                    s.f_bsize as u32,
                    s.f_namemax as u32,
                    unit as u32,
                );
            }
            Err(e) => reply.error(Errno::from_i32(e.raw_os_error())),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        if let Err(e) = self.charge(PAGE) {
            return reply.error(e);
        }
        let mut state = self.shared.state();
        let result = (|| -> Result<(FileAttr, u64), Errno> {
            let path = state.child(parent, name)?;
            let existed = std::fs::symlink_metadata(&path).is_ok();
            let mut options = OpenOptions::new();
            options
                .read(true)
                .write(true)
                .create(true)
                .mode(mode & !umask & 0o7777);
            if flags & libc::O_EXCL != 0 {
                options.create_new(true);
            }
            let file = options.open(&path).map_err(|e| errno(&e))?;
            if !existed {
                state.remember(NameOp::Created(path.clone()), &[parent]);
            }
            let meta = file.metadata().map_err(|e| errno(&e))?;
            let attr = state.attr(&meta);
            state.paths.insert(attr.ino.0, path);
            let handle = state.next_handle;
            state.next_handle += 1;
            state.handles.insert(handle, (attr.ino.0, file));
            Ok((attr, handle))
        })();
        match result {
            Ok((attr, handle)) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(handle),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }
}
