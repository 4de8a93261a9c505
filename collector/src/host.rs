//! Host facts recorded with every run: what the machine is, so comparisons can name it.

use fathom_datasets::HostFacts;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

/// The machine's name as the collector reports it by default.
pub fn hostname() -> String {
    System::host_name().unwrap_or_else(|| "localhost".to_string())
}

/// Physical cores (SMT siblings share one core's execution units), or the logical CPUs where
/// the OS does not say.
pub fn physical_cores() -> usize {
    System::physical_core_count()
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .max(1)
}

pub fn facts() -> HostFacts {
    let sys = System::new_with_specifics(
        RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing())
            .with_memory(MemoryRefreshKind::nothing().with_ram()),
    );
    let threads = sys.cpus().len().max(1);
    let model = sys.cpus().first().map(|c| c.brand().trim().to_string()).unwrap_or_default();
    HostFacts {
        cpu_model: model,
        cpu_cores: System::physical_core_count().unwrap_or(threads) as i32,
        cpu_threads: threads as i32,
        cpu_flags: cpu_flags(),
        mem_bytes: sys.total_memory() as i64,
        os: System::long_os_version().unwrap_or_else(|| std::env::consts::OS.to_string()),
        kernel: System::kernel_version().unwrap_or_default(),
        virtualization: virtualization(),
    }
}

/// The instruction-set features that decide what probes can use (AES-NI, AVX-512, …), as the
/// CPU reports them at run time.
pub fn cpu_flags() -> Vec<String> {
    let mut flags = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! detect {
            ($($f:tt),*) => { $( if std::arch::is_x86_feature_detected!($f) { flags.push($f.to_string()); } )* };
        }
        detect!(
            "sse2",
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "bmi2",
            "aes",
            "pclmulqdq",
            "vaes",
            "vpclmulqdq",
            "sha",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512dq",
            "avx512vnni"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        macro_rules! detect {
            ($($f:tt),*) => { $( if std::arch::is_aarch64_feature_detected!($f) { flags.push($f.to_string()); } )* };
        }
        detect!("neon", "aes", "pmull", "sha2", "sha3", "sve", "sve2");
    }
    flags
}

/// `none` on bare metal, else the hypervisor's name as the firmware reports it.
fn virtualization() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hypervisor = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|l| l.split_whitespace().any(|f| f == "hypervisor"));
    if !hypervisor {
        return if cpuinfo.is_empty() { "unknown".into() } else { "none".into() };
    }
    let read = |f: &str| std::fs::read_to_string(format!("/sys/class/dmi/id/{f}")).unwrap_or_default();
    let vendor = format!("{} {}", read("sys_vendor"), read("product_name")).to_lowercase();
    let known = [
        ("qemu", "kvm"),
        ("kvm", "kvm"),
        ("vmware", "vmware"),
        ("virtualbox", "virtualbox"),
        ("microsoft", "hyperv"),
        ("xen", "xen"),
        ("amazon", "kvm"),
        ("google", "kvm"),
    ];
    known
        .iter()
        .find(|(needle, _)| vendor.contains(needle))
        .map(|(_, name)| name.to_string())
        .unwrap_or_else(|| "vm".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_plausible() {
        let f = facts();
        assert!(f.cpu_threads >= 1 && f.cpu_cores >= 1 && f.cpu_cores <= f.cpu_threads);
        assert!(f.mem_bytes > 0);
        #[cfg(target_arch = "x86_64")]
        assert!(f.cpu_flags.iter().any(|x| x == "sse2"));
        assert!(!f.virtualization.is_empty());
    }
}
