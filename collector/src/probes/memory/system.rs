//! What the memory probes need from the machine: aligned regions with the pages asked for,
//! available memory, how much of a region the kernel backs with huge pages, the data caches'
//! sizes, and the buffer-size parameters both probes check the same way.

use std::alloc::Layout;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::ptr::NonNull;

use crate::probe::{ProbeError, parse_size};

pub(crate) const HUGE_PAGE: usize = 2 << 20;

/// Which pages a [`Region`] asks the kernel for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pages {
    /// Transparent huge pages (`MADV_HUGEPAGE`, 2 MiB-aligned).
    Huge,
    /// 4 KiB pages (`MADV_NOHUGEPAGE`).
    Small,
    /// No advice: the system's THP setting decides.
    Default,
}

/// Memory from the global allocator, 2 MiB-aligned (so the kernel can back it with transparent
/// huge pages), a whole number of pages, advised as asked. It starts uninitialised: write
/// before reading.
pub(crate) struct Region {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: a Region is plain memory owned by one value; who writes where is up to its users,
// who only ever hand disjoint parts to threads.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

impl Region {
    pub(crate) fn new(bytes: usize, pages: Pages) -> Result<Region, ProbeError> {
        // 2 MiB alignment whatever the pages: where a buffer starts in the address space can
        // matter (AMD's L1 way predictor hashes linear address bits 12–27), so it should not
        // depend on where the allocator happens to put it.
        let size = bytes.max(1).next_multiple_of(if pages == Pages::Huge { HUGE_PAGE } else { 4096 });
        let layout = Layout::from_size_align(size, HUGE_PAGE)
            .map_err(|e| ProbeError::Failed(format!("cannot allocate {}: {e}", fmt_size(size))))?;
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { std::alloc::alloc(layout) })
            .ok_or_else(|| ProbeError::Failed(format!("cannot allocate {}", fmt_size(size))))?;
        #[cfg(target_os = "linux")]
        {
            let advice = match pages {
                Pages::Huge => Some(libc::MADV_HUGEPAGE),
                Pages::Small => Some(libc::MADV_NOHUGEPAGE),
                Pages::Default => None,
            };
            if let Some(advice) = advice {
                // SAFETY: the range is memory we own; advice failing (no THP) changes nothing
                // else.
                unsafe { libc::madvise(ptr.as_ptr().cast(), size, advice) };
            }
        }
        Ok(Region { ptr, layout })
    }

    pub(crate) fn len(&self) -> usize {
        self.layout.size()
    }

    pub(crate) fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this very layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// Bytes of memory the system can give without swapping (`MemAvailable`).
pub(crate) fn mem_available() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| parse_meminfo(&t)).or_else(|| {
        let mut sys = sysinfo::System::new();
        sys.refresh_memory();
        Some(sys.available_memory()).filter(|&a| a > 0)
    })
}

fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Bytes of `region` the kernel backs with transparent huge pages, from `/proc/self/smaps`.
pub(crate) fn huge_page_bytes(region: &Region) -> Option<usize> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    huge_in_smaps(&smaps, region.as_ptr() as usize, region.len())
}

/// Sums `AnonHugePages` over the mappings that overlap `start..start + len`.
fn huge_in_smaps(smaps: &str, start: usize, len: usize) -> Option<usize> {
    let end = start + len;
    let (mut inside, mut total, mut seen) = (false, 0usize, false);
    for line in smaps.lines() {
        let first = line.split(' ').next().unwrap_or_default();
        if let Some((lo, hi)) = first.split_once('-')
            && let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
        {
            inside = lo < end && hi > start;
        } else if inside && let Some(rest) = line.strip_prefix("AnonHugePages:") {
            let kib: usize = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            total += kib * 1024;
            seen = true;
        }
    }
    seen.then_some(total.min(len))
}

/// Data cache sizes in bytes, for the sweep's half-cache points (and the bandwidth arrays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caches {
    pub l1d: usize,
    pub l2: usize,
    /// The last-level cache of one CPU (one instance: a socket, or a CCX on AMD).
    pub llc: usize,
    /// How many last-level cache instances the machine has (distinct `shared_cpu_list`s).
    pub llc_instances: usize,
    /// Read from sysfs; false when some size is a fallback.
    pub from_sysfs: bool,
}

impl Caches {
    pub const FALLBACK: Caches =
        Caches { l1d: 32 << 10, l2: 1 << 20, llc: 32 << 20, llc_instances: 1, from_sysfs: false };
}

/// This machine's caches, from `/sys/devices/system/cpu`, with fallbacks for what is missing.
pub(crate) fn caches() -> Caches {
    caches_from(Path::new("/sys/devices/system/cpu"))
}

/// Reads `cpu0/cache/index*/{level,type,size}` under `cpu_dir`. The last level is the highest
/// data or unified level (L2 where there is no L3); its instances are counted from every CPU's
/// `shared_cpu_list`. A size that cannot be read takes its fallback (32 KiB, 1 MiB, 32 MiB).
pub(crate) fn caches_from(cpu_dir: &Path) -> Caches {
    let read = |p: &Path| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    // (level, size, index directory name) of cpu0's data and unified caches.
    let mut found: Vec<(u32, usize, String)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(cpu_dir.join("cpu0/cache")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("index") {
                continue;
            }
            let dir = entry.path();
            let level = read(&dir.join("level")).and_then(|l| l.parse::<u32>().ok());
            let kind = read(&dir.join("type")).unwrap_or_default();
            let size = read(&dir.join("size")).and_then(|s| parse_cache_size(&s));
            if let (Some(level), Some(size), "Data" | "Unified") = (level, size, kind.as_str()) {
                found.push((level, size, name));
            }
        }
    }
    let at = |level: u32| found.iter().find(|f| f.0 == level).map(|f| f.1);
    let fb = Caches::FALLBACK;
    let (l1d, l2) = (at(1), at(2));
    let last = found.iter().filter(|f| f.0 >= 2).max_by_key(|f| f.0);
    let llc = last.map(|f| f.1);
    let llc_instances = last.map_or(1, |(_, _, index)| llc_instances(cpu_dir, index));
    Caches {
        l1d: l1d.unwrap_or(fb.l1d),
        l2: l2.unwrap_or(fb.l2),
        llc: llc.unwrap_or(fb.llc),
        llc_instances,
        from_sysfs: l1d.is_some() && l2.is_some() && llc.is_some(),
    }
}

/// Distinct `shared_cpu_list`s of cache `index` over all CPUs: one per cache instance.
fn llc_instances(cpu_dir: &Path, index: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(cpu_dir) else { return 1 };
    let lists: BTreeSet<String> = entries
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix("cpu").is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| {
            std::fs::read_to_string(e.path().join("cache").join(index).join("shared_cpu_list")).ok()
        })
        .map(|s| s.trim().to_string())
        .collect();
    lists.len().max(1)
}

/// Sysfs cache sizes: `32K`, `1024K`, `32768K`, also `2M`, `1G` or plain bytes.
pub(crate) fn parse_cache_size(text: &str) -> Option<usize> {
    let t = text.trim();
    let (num, mult) = match t.as_bytes().last()? {
        b'K' | b'k' => (&t[..t.len() - 1], 1 << 10),
        b'M' | b'm' => (&t[..t.len() - 1], 1 << 20),
        b'G' | b'g' => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.trim().parse::<usize>().ok().filter(|&n| n > 0).and_then(|n| n.checked_mul(mult))
}

/// `16384` → `16KiB`, `268435456` → `256MiB`; bytes when not a whole number of KiB.
pub(crate) fn fmt_size(bytes: usize) -> String {
    const UNITS: [(usize, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    UNITS
        .iter()
        .find(|(u, _)| bytes >= *u && bytes.is_multiple_of(*u))
        .map_or_else(|| format!("{bytes}B"), |(u, name)| format!("{}{name}", bytes / u))
}

/// A buffer-size parameter: `auto` (or unset) gives `auto`, halved while it exceeds `cap` but
/// never below 16 MiB; an explicit size must be within 1 MiB to 64 GiB and at most `cap`, else
/// the error says why in `too_big`'s words. Returned rounded down to a multiple of `multiple`.
pub(crate) fn size_param(
    params: &BTreeMap<String, String>,
    name: &str,
    auto: usize,
    cap: usize,
    multiple: usize,
    too_big: impl Fn(&str) -> String,
) -> Result<usize, ProbeError> {
    let err = |reason: String| ProbeError::Param { name: name.into(), reason };
    match params.get(name).map(String::as_str).unwrap_or_default() {
        "auto" | "" => {
            let mut size = auto;
            while size > cap && size > 16 << 20 {
                size /= 2;
            }
            Ok(size)
        }
        text => {
            let size = parse_size(text).map_err(err)?;
            if !(1 << 20..=64 << 30).contains(&size) {
                return Err(err(format!("`{text}` is not within 1 MiB to 64 GiB")));
            }
            if size > cap {
                return Err(err(too_big(text)));
            }
            Ok(size / multiple * multiple)
        }
    }
}

/// An `auto`/`off` parameter: true for `auto` (or unset).
pub(crate) fn switch_param(params: &BTreeMap<String, String>, name: &str) -> Result<bool, ProbeError> {
    match params.get(name).map(String::as_str).unwrap_or_default() {
        "auto" | "" => Ok(true),
        "off" => Ok(false),
        other => {
            Err(ProbeError::Param { name: name.into(), reason: format!("`{other}` is not `auto` or `off`") })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_smaps_are_parsed() {
        let meminfo =
            "MemTotal:       24684360 kB\nMemFree:        23553432 kB\nMemAvailable:   24254012 kB\n";
        assert_eq!(parse_meminfo(meminfo), Some(24254012 * 1024));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
        let smaps = "\
7f0000000000-7f0000400000 rw-p 00000000 00:00 0
Size:               4096 kB
AnonHugePages:      4096 kB
VmFlags: rd wr mr mw me ac hg
7f0000400000-7f0000800000 rw-p 00000000 00:00 0
AnonHugePages:      2048 kB
7f0000800000-7f0000801000 r--p 00000000 08:01 1234   /usr/lib/x.so
AnonHugePages:         0 kB
";
        assert_eq!(huge_in_smaps(smaps, 0x7f00_0000_0000, 8 << 20), Some(6 << 20));
        assert_eq!(huge_in_smaps(smaps, 0x7f00_0040_0000, 4 << 20), Some(2 << 20));
        assert_eq!(huge_in_smaps(smaps, 0x1000, 4096), None);
    }

    fn fake_cpu(root: &Path, cpu: usize, caches: &[(u32, &str, &str, &str)]) {
        for (i, (level, kind, size, shared)) in caches.iter().enumerate() {
            let dir = root.join(format!("cpu{cpu}/cache/index{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("level"), format!("{level}\n")).unwrap();
            std::fs::write(dir.join("type"), format!("{kind}\n")).unwrap();
            std::fs::write(dir.join("size"), format!("{size}\n")).unwrap();
            std::fs::write(dir.join("shared_cpu_list"), format!("{shared}\n")).unwrap();
        }
    }

    #[test]
    fn cache_sizes_come_from_sysfs_with_fallbacks() {
        assert_eq!(parse_cache_size("32K"), Some(32 << 10));
        assert_eq!(parse_cache_size("32768K"), Some(32 << 20));
        assert_eq!(parse_cache_size("2M"), Some(2 << 20));
        assert_eq!(parse_cache_size("4096"), Some(4096));
        assert_eq!(parse_cache_size("lots"), None);
        assert_eq!(parse_cache_size(""), None);

        let dir = tempfile::tempdir().unwrap();
        // Two CCX-like L3 instances over four CPUs; an instruction cache that must be ignored.
        for cpu in 0..4 {
            fake_cpu(
                dir.path(),
                cpu,
                &[
                    (1, "Data", "48K", &cpu.to_string()),
                    (1, "Instruction", "64K", &cpu.to_string()),
                    (2, "Unified", "1280K", &cpu.to_string()),
                    (3, "Unified", "32768K", if cpu < 2 { "0-1" } else { "2-3" }),
                ],
            );
        }
        std::fs::create_dir_all(dir.path().join("cpufreq")).unwrap();
        let c = caches_from(dir.path());
        assert_eq!(
            c,
            Caches { l1d: 48 << 10, l2: 1280 << 10, llc: 32 << 20, llc_instances: 2, from_sysfs: true }
        );

        // No L3: the L2 is the last level. No sysfs at all: the fallbacks.
        let dir = tempfile::tempdir().unwrap();
        fake_cpu(dir.path(), 0, &[(1, "Data", "64K", "0"), (2, "Unified", "2048K", "0-3")]);
        let c = caches_from(dir.path());
        assert_eq!((c.l1d, c.l2, c.llc, c.llc_instances), (64 << 10, 2 << 20, 2 << 20, 1));
        assert_eq!(caches_from(&dir.path().join("nothing")), Caches::FALLBACK);
    }
}
