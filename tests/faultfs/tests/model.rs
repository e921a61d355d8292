//! The fault file system against a model of what a disk promises.
//!
//! Every test mounts a fresh backing directory through FUSE and drives it with
//! ordinary system calls. The randomized test keeps its own small model (each
//! file's bytes as written and as last synced, the names as they are and as
//! last synced) and, after every power cut, compares what the mount shows with
//! what the model says survives. The other tests pin one rule each.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use veritrail_faultfs::{Cut, Mount, PAGE};

fn mount() -> (tempfile::TempDir, Mount) {
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: the fault tests need FUSE (.ci/install-deps installs fuse3)"
    );
    let dir = tempfile::TempDir::new().expect("dir");
    let backing = dir.path().join("backing");
    let mountpoint = dir.path().join("mnt");
    std::fs::create_dir(&backing).expect("mkdir");
    std::fs::create_dir(&mountpoint).expect("mkdir");
    let mount = Mount::new(&backing, &mountpoint).expect("mount (needs /dev/fuse and root)");
    (dir, mount)
}

fn sync_dir(path: &Path) {
    File::open(path)
        .expect("open dir")
        .sync_all()
        .expect("sync dir");
}

fn write_file(path: &Path, bytes: &[u8]) -> File {
    let mut file = File::create(path).expect("create");
    file.write_all(bytes).expect("write");
    file
}

fn read(path: &Path) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => panic!("read {}: {e}", path.display()),
    }
}

/// What the mount shows in its root: file names and contents.
fn listing(root: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(root)
        .expect("list")
        .map(|e| {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(e.path()).expect("read");
            (name, bytes)
        })
        .collect()
}

#[test]
fn a_new_file_survives_only_once_its_directory_is_synced() {
    let (_dir, mut mount) = mount();
    let root = mount.path().to_owned();
    write_file(&root.join("lost"), b"synced data, unsynced name")
        .sync_all()
        .expect("sync");
    mount.power_cut(Cut::Clean).expect("cut");
    assert_eq!(read(&root.join("lost")), None);

    write_file(&root.join("kept"), b"synced data, synced name")
        .sync_all()
        .expect("sync");
    sync_dir(&root);
    mount.power_cut(Cut::Clean).expect("cut");
    assert_eq!(
        read(&root.join("kept")).as_deref(),
        Some(&b"synced data, synced name"[..])
    );
}

#[test]
fn unsynced_bytes_are_lost_and_synced_ones_kept() {
    let (_dir, mut mount) = mount();
    let root = mount.path().to_owned();
    let file = write_file(&root.join("f"), b"durable");
    file.sync_all().expect("sync");
    sync_dir(&root);
    file.write_all_at(b"DUR", 0).expect("overwrite");
    file.write_all_at(b" and more", 7).expect("append");
    assert_eq!(
        read(&root.join("f")).as_deref(),
        Some(&b"DURable and more"[..])
    );
    drop(file);
    mount.power_cut(Cut::Clean).expect("cut");
    assert_eq!(read(&root.join("f")).as_deref(), Some(&b"durable"[..]));

    // A truncation is a write too.
    let file = OpenOptions::new()
        .write(true)
        .open(root.join("f"))
        .expect("open");
    file.set_len(3).expect("truncate");
    drop(file);
    mount.power_cut(Cut::Clean).expect("cut");
    assert_eq!(read(&root.join("f")).as_deref(), Some(&b"durable"[..]));
}

#[test]
fn a_rename_or_removal_is_undone_until_its_directory_is_synced() {
    let (_dir, mut mount) = mount();
    let root = mount.path().to_owned();
    write_file(&root.join("current"), b"old")
        .sync_all()
        .expect("sync");
    sync_dir(&root);
    // The write-then-rename idiom without the directory sync.
    write_file(&root.join("current.tmp"), b"new")
        .sync_all()
        .expect("sync");
    std::fs::rename(root.join("current.tmp"), root.join("current")).expect("rename");
    mount.power_cut(Cut::Clean).expect("cut");
    assert_eq!(read(&root.join("current")).as_deref(), Some(&b"old"[..]));
    assert_eq!(
        read(&root.join("current.tmp")),
        None,
        "its creation was not durable either"
    );

    // With it, the new name holds.
    write_file(&root.join("current.tmp"), b"new")
        .sync_all()
        .expect("sync");
    std::fs::rename(root.join("current.tmp"), root.join("current")).expect("rename");
    sync_dir(&root);
    mount.power_cut(Cut::Clean).expect("cut");
    assert_eq!(read(&root.join("current")).as_deref(), Some(&b"new"[..]));

    // A removal comes back, with its durable bytes.
    std::fs::remove_file(root.join("current")).expect("remove");
    mount.power_cut(Cut::Clean).expect("cut");
    assert_eq!(read(&root.join("current")).as_deref(), Some(&b"new"[..]));
    std::fs::remove_file(root.join("current")).expect("remove");
    sync_dir(&root);
    mount.power_cut(Cut::Clean).expect("cut");
    assert_eq!(read(&root.join("current")), None);

    // A directory made and not synced in its parent takes what it holds.
    std::fs::create_dir(root.join("sub")).expect("mkdir");
    write_file(&root.join("sub/x"), b"x")
        .sync_all()
        .expect("sync");
    sync_dir(&root.join("sub"));
    mount.power_cut(Cut::Clean).expect("cut");
    assert!(!root.join("sub").exists());
}

#[test]
fn a_torn_cut_keeps_whole_pages_of_old_or_new_bytes() {
    let (_dir, mut mount) = mount();
    let root = mount.path().to_owned();
    let (mut kept, mut lost, mut grown, mut shrunk) = (0, 0, 0, 0);
    for seed in 0..16 {
        let path = root.join(format!("f{seed}"));
        write_file(&path, &vec![b'a'; 8 * PAGE as usize])
            .sync_all()
            .expect("sync");
        sync_dir(&root);
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.write_all_at(&vec![b'b'; 8 * PAGE as usize], 0)
            .expect("overwrite");
        file.write_all_at(&vec![b'c'; 4 * PAGE as usize], 8 * PAGE)
            .expect("append");
        drop(file);
        let report = mount.power_cut(Cut::Torn { seed }).expect("cut");
        kept += report.pages_kept;
        lost += report.pages_lost;
        let bytes = read(&path).expect("the file's name was durable");
        match bytes.len() as u64 {
            n if n == 8 * PAGE => shrunk += 1,
            n if n == 12 * PAGE => grown += 1,
            n => panic!("seed {seed}: size {n} is neither the durable nor the written one"),
        }
        for (i, page) in bytes.chunks(PAGE as usize).enumerate() {
            let allowed: &[u8] = if i < 8 { b"ab" } else { b"c\0" };
            assert!(
                allowed.iter().any(|b| page.iter().all(|x| x == b)),
                "seed {seed}: page {i} is not one whole old or new page"
            );
        }
    }
    assert!(
        kept > 0 && lost > 0,
        "torn cuts keep some pages and lose others"
    );
    assert!(
        grown > 0 && shrunk > 0,
        "a file's growth survives some cuts and not others"
    );
}

#[test]
fn a_hole_cut_loses_the_first_unsynced_page_only() {
    let (_dir, mut mount) = mount();
    let root = mount.path().to_owned();
    let path = root.join("log");
    write_file(&path, &vec![b'a'; 4 * PAGE as usize])
        .sync_all()
        .expect("sync");
    sync_dir(&root);
    let file = OpenOptions::new().write(true).open(&path).expect("open");
    file.write_all_at(&vec![b'b'; 3 * PAGE as usize], PAGE)
        .expect("overwrite");
    file.write_all_at(&vec![b'c'; 2 * PAGE as usize], 4 * PAGE)
        .expect("append");
    drop(file);
    let report = mount.power_cut(Cut::Hole).expect("cut");
    assert_eq!((report.pages_lost, report.pages_kept), (1, 4), "{report:?}");
    let bytes = read(&path).expect("durable name");
    assert_eq!(bytes.len() as u64, 6 * PAGE);
    let pages: Vec<u8> = bytes.chunks(PAGE as usize).map(|p| p[0]).collect();
    assert_eq!(
        pages, b"aabbcc",
        "page 1, the first written since the sync, is lost"
    );
}

#[test]
fn a_failed_fsync_drops_the_unsynced_pages() {
    let (_dir, mut mount) = mount();
    let root = mount.path().to_owned();
    let file = write_file(&root.join("f"), b"old");
    file.sync_all().expect("sync");
    sync_dir(&root);
    file.write_all_at(b"new", 0).expect("write");
    mount.faults(|f| f.sync_errors = true);
    let error = file.sync_all().expect_err("the sync fails");
    assert_eq!(error.raw_os_error(), Some(libc_eio()), "{error}");
    mount.faults(|f| f.sync_errors = false);
    // Linux's behaviour: the pages are clean now, with the bytes lost; a
    // second sync succeeds and makes nothing new durable.
    file.sync_all().expect("a later sync");
    assert_eq!(read(&root.join("f")).as_deref(), Some(&b"old"[..]));
    drop(file);
    mount.power_cut(Cut::Clean).expect("cut");
    assert_eq!(read(&root.join("f")).as_deref(), Some(&b"old"[..]));
}

fn libc_eio() -> i32 {
    5
}

#[test]
fn space_runs_out_and_chosen_files_fail_to_read() {
    let (_dir, mount) = mount();
    let root = mount.path().to_owned();
    write_file(&root.join("table.sst"), b"rows")
        .sync_all()
        .expect("sync");
    mount.faults(|f| f.space_left = Some(3 * PAGE));
    let stat = rustix::fs::statvfs(&root).expect("statvfs");
    assert!(
        stat.f_bavail * stat.f_frsize <= 3 * PAGE,
        "statfs reports the space left"
    );
    let mut file = File::create(root.join("big")).expect("create");
    let error = file
        .write_all(&vec![0; 8 * PAGE as usize])
        .expect_err("no space");
    assert_eq!(error.raw_os_error(), Some(28), "{error}"); // ENOSPC
    mount.faults(|f| f.space_left = None);
    file.write_all(b"room again").expect("write");

    mount.faults(|f| f.read_errors = vec![".sst".into()]);
    let error = std::fs::read(root.join("table.sst")).expect_err("EIO");
    assert_eq!(error.raw_os_error(), Some(libc_eio()), "{error}");
    mount.faults(|f| f.read_errors.clear());
    assert_eq!(read(&root.join("table.sst")).as_deref(), Some(&b"rows"[..]));
}

/// One file of the model: its bytes as written, and as last synced.
#[derive(Debug, Clone, Default)]
struct ModelFile {
    current: Vec<u8>,
    durable: Vec<u8>,
}

/// Random creates, writes, truncations, syncs, renames and removals in one
/// directory, with clean power cuts in between; after each cut the mount
/// holds exactly the durable names, each with its durable bytes.
#[test]
fn random_operations_survive_cuts_as_the_model_says() {
    for seed in 0..12u64 {
        let (_dir, mut mount) = mount();
        let root = mount.path().to_owned();
        let mut rng = StdRng::seed_from_u64(seed);
        // Inodes by number; names as they are and as last synced.
        let mut files: Vec<ModelFile> = Vec::new();
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        let mut durable_names: BTreeMap<String, usize> = BTreeMap::new();
        for step in 0..200 {
            let name = format!("n{}", rng.random_range(0..6));
            let path = root.join(&name);
            match rng.random_range(0..100) {
                0..20 if !names.contains_key(&name) => {
                    File::create(&path).expect("create");
                    files.push(ModelFile::default());
                    names.insert(name, files.len() - 1);
                }
                0..45 if names.contains_key(&name) => {
                    let file = &mut files[names[&name]];
                    let offset = rng.random_range(0..=file.current.len() + 100);
                    let len = rng.random_range(1..3 * PAGE as usize);
                    let byte = rng.random_range(1..=255u8);
                    let bytes = vec![byte; len];
                    OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .expect("open")
                        .write_all_at(&bytes, offset as u64)
                        .expect("write");
                    if file.current.len() < offset + len {
                        file.current.resize(offset + len, 0);
                    }
                    file.current[offset..offset + len].copy_from_slice(&bytes);
                }
                45..50 if names.contains_key(&name) => {
                    let file = &mut files[names[&name]];
                    let len = rng.random_range(0..=file.current.len() + 10);
                    OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .expect("open")
                        .set_len(len as u64)
                        .expect("truncate");
                    file.current.resize(len, 0);
                }
                50..65 if names.contains_key(&name) => {
                    File::open(&path).expect("open").sync_all().expect("sync");
                    let file = &mut files[names[&name]];
                    file.durable = file.current.clone();
                }
                65..75 if names.contains_key(&name) => {
                    let to = format!("n{}", rng.random_range(0..6));
                    std::fs::rename(&path, root.join(&to)).expect("rename");
                    let inode = names.remove(&name).expect("named");
                    names.insert(to, inode);
                }
                75..82 if names.contains_key(&name) => {
                    std::fs::remove_file(&path).expect("remove");
                    names.remove(&name);
                }
                82..92 => {
                    sync_dir(&root);
                    durable_names = names.clone();
                }
                92..100 => {
                    mount.power_cut(Cut::Clean).expect("cut");
                    let expected: BTreeMap<String, Vec<u8>> = durable_names
                        .iter()
                        .map(|(n, i)| (n.clone(), files[*i].durable.clone()))
                        .collect();
                    let found = listing(&root);
                    assert_eq!(
                        found.keys().collect::<Vec<_>>(),
                        expected.keys().collect::<Vec<_>>(),
                        "seed {seed} step {step}: names after the cut"
                    );
                    for (n, bytes) in &expected {
                        assert!(
                            found[n] == *bytes,
                            "seed {seed} step {step}: {n} holds {} bytes, the model {}",
                            found[n].len(),
                            bytes.len()
                        );
                    }
                    names = durable_names.clone();
                    for file in &mut files {
                        file.current = file.durable.clone();
                    }
                }
                _ => {}
            }
        }
    }
}
