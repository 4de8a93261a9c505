//! The test file a storage probe works on: made only where it leaves enough free space, opened
//! for direct I/O where the filesystem allows, and removed whatever happens.
//!
//! Removal is `Drop`: a probe that returns, fails, is cancelled (Ctrl-C and SIGTERM cancel
//! between repetitions) or panics unwinds through it. Only SIGKILL or a power cut leave a file,
//! named `.fathom-storage-PID-…` so the next probe in that folder removes it once PID is gone.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::probe::ProbeError;

/// The prefix of every test file, for finding leftovers of a killed run.
const PREFIX: &str = ".fathom-storage-";

/// Free space on the filesystem holding `dir`, for unprivileged users (`f_bavail`), and its size.
pub fn free_space(dir: &Path) -> io::Result<(u64, u64)> {
    let path = CString::new(dir.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    // SAFETY: statvfs is plain data, filled by the call; `path` is NUL-terminated.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut s) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let frsize = s.f_frsize as u64;
    Ok((s.f_bavail as u64 * frsize, s.f_blocks as u64 * frsize))
}

/// The filesystem type's name where it changes what the figures mean.
pub fn filesystem_kind(dir: &Path) -> Option<&'static str> {
    let path = CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statfs is plain data, filled by the call; `path` is NUL-terminated.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut s) } != 0 {
        return None;
    }
    match s.f_type as i64 {
        0x0102_1994 => Some("tmpfs"),
        0x794c_7630 => Some("overlayfs"),
        0x6969 => Some("nfs"),
        _ => None,
    }
}

/// How much free space must remain after the test file: `auto` is 5 % of the filesystem, at
/// least 1 GiB (or half of a filesystem smaller than 2 GiB).
pub fn margin(min_free: Option<u64>, fs_size: u64) -> u64 {
    min_free.unwrap_or_else(|| (fs_size / 20).max((1u64 << 30).min(fs_size / 2)))
}

/// Refuses, before anything is written, a file of `size` bytes in `dir` that would leave less
/// than the margin free.
pub fn check_space(dir: &Path, size: u64, min_free: Option<u64>) -> Result<(), String> {
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let (free, total) = free_space(dir).map_err(|e| format!("free space of {}: {e}", dir.display()))?;
    let keep = margin(min_free, total);
    if free < size.saturating_add(keep) {
        return Err(format!(
            "refusing to write a {} test file in {}: {} free, and {} must stay free (min_free)",
            human(size),
            dir.display(),
            human(free),
            human(keep)
        ));
    }
    Ok(())
}

pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// Whether a process with this id is alive (a leftover's owner).
fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 checks for existence and permission only.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 || *libc::__errno_location() == libc::EPERM }
}

/// Removes test files that killed runs left in `dir`; returns how many.
pub fn remove_leftovers(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !alive(pid) && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// A test file; removed on drop.
pub struct TestFile {
    path: PathBuf,
    file: File,
    pub size: u64,
    /// Whether the file is open with O_DIRECT.
    pub direct: bool,
    /// What a reader of the figures should know (a fallback taken, tmpfs).
    pub notes: Vec<String>,
}

/// How the test file should be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direct {
    /// O_DIRECT where the filesystem supports it, else buffered (noted).
    Auto,
    On,
    Off,
}

impl TestFile {
    /// Creates `size` bytes of test file in `dir` (space allocated, nothing written yet).
    pub fn create(
        dir: &Path,
        tag: &str,
        size: u64,
        min_free: Option<u64>,
        direct: Direct,
    ) -> Result<TestFile, ProbeError> {
        // Leftovers first: a killed run's file must not count against the free space.
        let mut notes = Vec::new();
        let stale = remove_leftovers(dir);
        if stale > 0 {
            notes.push(format!("removed {stale} test file(s) a killed run had left in {}", dir.display()));
        }
        check_space(dir, size, min_free)
            .map_err(|reason| ProbeError::Param { name: "dir".into(), reason })?;
        let unique = format!("{PREFIX}{}-{tag}-{:x}", std::process::id(), rand::random::<u32>());
        let path = dir.join(unique);
        let open = |flags: i32| {
            OpenOptions::new().read(true).write(true).create_new(true).custom_flags(flags).open(&path)
        };
        let failed = |e: io::Error| ProbeError::Failed(format!("creating {}: {e}", path.display()));
        let (file, is_direct) = match direct {
            Direct::Off => (open(0).map_err(failed)?, false),
            Direct::On => (open(libc::O_DIRECT).map_err(failed)?, true),
            Direct::Auto => match open(libc::O_DIRECT) {
                Ok(f) => (f, true),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    // The kernel may have made the file before refusing O_DIRECT on it.
                    let _ = std::fs::remove_file(&path);
                    notes.push(format!(
                        "{} does not support O_DIRECT: buffered I/O, figures include the page cache",
                        dir.display()
                    ));
                    (open(0).map_err(failed)?, false)
                }
                Err(e) => return Err(failed(e)),
            },
        };
        // From here the file exists: removing it is Drop's job, even if allocation fails.
        let mut test = TestFile { path, file, size, direct: is_direct, notes };
        if let Some(kind) = filesystem_kind(dir) {
            test.notes.push(match kind {
                "tmpfs" => {
                    format!("{} is tmpfs: memory, not a device; fsync does nothing there", dir.display())
                }
                other => format!("{} is {other}", dir.display()),
            });
        }
        // fallocate itself, not posix_fallocate: where the filesystem has none, glibc's
        // emulation writes single bytes, which an O_DIRECT file refuses.
        // SAFETY: a plain syscall on our own descriptor.
        let allocated = unsafe { libc::fallocate(test.fd(), 0, 0, size as libc::off_t) } == 0;
        let error = io::Error::last_os_error();
        if !allocated && error.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(ProbeError::Failed(format!(
                "allocating {} in {}: {error}",
                human(size),
                test.path.display()
            )));
        }
        if !allocated {
            test.file
                .set_len(size)
                .map_err(|e| ProbeError::Failed(format!("sizing {}: {e}", test.path.display())))?;
        }
        Ok(test)
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the whole file once with incompressible data, so reads return real blocks (not
    /// holes or unwritten extents, which a filesystem answers without touching the device) and
    /// writes overwrite allocated, written blocks (a VM's virtual disk can take twice as long
    /// for blocks it has never seen written), then flushes it and, for buffered files, drops it
    /// from the page cache.
    pub fn fill(&self, cancel: &dyn Fn() -> Result<(), ProbeError>) -> Result<(), ProbeError> {
        fill_fd(self.fd(), self.size, self.direct, cancel).map_err(|e| match e {
            FillError::Cancelled(e) => e,
            FillError::Io(e) => ProbeError::Failed(format!("filling {}: {e}", self.path.display())),
        })
    }
}

pub enum FillError {
    Cancelled(ProbeError),
    Io(io::Error),
}

/// Writes `size` bytes of incompressible data from offset 0 in 1 MiB blocks, then fsyncs.
pub fn fill_fd(
    fd: RawFd,
    size: u64,
    direct: bool,
    cancel: &dyn Fn() -> Result<(), ProbeError>,
) -> Result<(), FillError> {
    let block = 1usize << 20;
    let mut buf = AlignedBuf::new(block);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut offset = 0u64;
    while offset < size {
        cancel().map_err(FillError::Cancelled)?;
        // A different block each time, so no layer below can deduplicate them.
        for chunk in buf.as_mut_slice().chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        let len = block.min((size - offset) as usize);
        // A direct write must be a whole number of blocks; sizes are rounded to 4 KiB.
        let len = if direct { len.next_multiple_of(4096).min(block) } else { len };
        pwrite_all(fd, &buf.as_slice()[..len], offset).map_err(FillError::Io)?;
        offset += len as u64;
    }
    // SAFETY: plain syscalls on the caller's descriptor.
    if unsafe { libc::fsync(fd) } != 0 {
        return Err(FillError::Io(io::Error::last_os_error()));
    }
    if !direct {
        // SAFETY: advisory, on the caller's descriptor.
        unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    Ok(())
}

impl Drop for TestFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!("could not remove the test file {}: {e}", self.path.display());
        }
    }
}

fn pwrite_all(fd: RawFd, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for its length.
        let n = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), offset as libc::off_t) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "pwrite wrote nothing"));
        }
        buf = &buf[n as usize..];
        offset += n as u64;
    }
    Ok(())
}

/// A buffer aligned to 4 KiB, as O_DIRECT needs.
pub struct AlignedBuf {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the buffer is plain memory owned by this value.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    pub fn new(len: usize) -> AlignedBuf {
        let layout = std::alloc::Layout::from_size_align(len.max(4096), 4096).expect("a valid layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        AlignedBuf { ptr, len }
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` holds `len` initialised bytes.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes it unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = std::alloc::Layout::from_size_align(self.len.max(4096), 4096).expect("a valid layout");
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_removed_when_dropped_and_leftovers_of_dead_runs_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let file = TestFile::create(dir.path(), "t", 1 << 20, Some(0), Direct::Auto).unwrap();
        let path = file.path().to_path_buf();
        assert!(path.exists());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
        file.fill(&|| Ok(())).unwrap();
        drop(file);
        assert!(!path.exists());
        // A leftover of a process that no longer exists (pid far above pid_max), and one of ours.
        let dead = dir.path().join(format!("{PREFIX}4000000000-x-1"));
        let ours = dir.path().join(format!("{PREFIX}{}-x-2", std::process::id()));
        std::fs::write(&dead, b"x").unwrap();
        std::fs::write(&ours, b"x").unwrap();
        assert_eq!(remove_leftovers(dir.path()), 1);
        assert!(!dead.exists() && ours.exists());
    }

    #[test]
    fn too_little_free_space_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (free, _) = free_space(dir.path()).unwrap();
        let err = TestFile::create(dir.path(), "t", free, None, Direct::Auto).err().unwrap().to_string();
        assert!(err.contains("refusing to write") && err.contains("must stay free"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing was written");
        let err = check_space(&dir.path().join("missing"), 1, None).unwrap_err();
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn margins_and_sizes_read_well() {
        assert_eq!(margin(None, 100 << 30), 5 << 30);
        assert_eq!(margin(None, 4 << 30), 1 << 30);
        assert_eq!(margin(None, 1 << 30), 512 << 20);
        assert_eq!(margin(Some(7), 100 << 30), 7);
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 29), "1.5 GiB");
    }
}
