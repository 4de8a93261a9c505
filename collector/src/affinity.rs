//! Which CPUs a thread runs on: probes that use several threads pin one to each CPU, so the
//! scheduler neither stacks two on one CPU nor moves a thread mid-measurement.

/// The CPUs this process may run on (all CPUs where that cannot be read).
pub fn allowed_cpus() -> Vec<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: cpu_set_t is plain data; sched_getaffinity fills at most its size.
        let cpus = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) == 0 {
                (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
            } else {
                Vec::new()
            }
        };
        if !cpus.is_empty() {
            return cpus;
        }
    }
    (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
}

/// The CPU the calling thread runs on now.
pub fn current_cpu() -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: no arguments, no memory.
        let cpu = unsafe { libc::sched_getcpu() };
        return usize::try_from(cpu).ok();
    }
    #[allow(unreachable_code)]
    None
}

/// Pins the calling thread to `cpu`; false where that is not possible.
pub fn pin_current_thread(cpu: usize) -> bool {
    #[cfg(target_os = "linux")]
    {
        if cpu >= libc::CPU_SETSIZE as usize {
            return false;
        }
        // SAFETY: cpu_set_t is plain data and `cpu` is within it.
        return unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0
        };
    }
    #[allow(unreachable_code)]
    {
        let _ = cpu;
        false
    }
}
