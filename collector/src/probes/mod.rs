//! The probe registry: every probe the collector can run, one module each.
//!
//! Adding a probe is one module under its category and one line in [`all`].

pub mod cpu;
pub mod memory;
pub mod network;
pub mod storage;

use std::collections::BTreeMap;

use crate::probe::{ParamSpec, Probe, ProbeError};

/// Every registered probe, in the order suites run them.
pub fn all() -> Vec<Box<dyn Probe>> {
    vec![
        Box::new(cpu::flops::Flops),
        Box::new(cpu::aes_gcm::AesGcm),
        Box::new(cpu::compress::Compress),
        Box::new(cpu::scaling::Scaling),
        Box::new(memory::bandwidth::MemoryBandwidth),
        Box::new(memory::latency::MemoryLatency),
        Box::new(storage::seq::Seq),
        Box::new(storage::rand4k::Rand4k),
        Box::new(storage::mixed::Mixed),
        Box::new(storage::fsync::Fsync),
        Box::new(network::tcp::Tcp),
        Box::new(network::latency::Latency),
        Box::new(network::udp::Udp),
    ]
}

pub fn find(id: &str) -> Option<Box<dyn Probe>> {
    all().into_iter().find(|p| p.id() == id)
}

/// The parameters every probe takes: how much effort, not what is measured.
pub const EFFORT_PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "budget",
        default: "",
        help: "time budget for the whole probe, e.g. 5s (default: the suite's)",
        identity: false,
    },
    ParamSpec {
        name: "warmup",
        default: "",
        help: "warm-up per metric before timing, e.g. 300ms",
        identity: false,
    },
    ParamSpec {
        name: "min_reps",
        default: "",
        help: "repetitions before the noise target may stop a metric",
        identity: false,
    },
    ParamSpec {
        name: "max_reps",
        default: "",
        help: "repetitions after which a metric stops regardless",
        identity: false,
    },
    ParamSpec {
        name: "target_cv",
        default: "",
        help: "stop once the coefficient of variation is below this, e.g. 0.02",
        identity: false,
    },
];

/// The `threads` parameter: a count, or `all` for every logical CPU.
pub fn threads_param(params: &BTreeMap<String, String>) -> Result<usize, ProbeError> {
    thread_count(params, "threads")
}

/// A thread-count parameter called `name`: a count, or `all` (or unset) for every logical CPU.
pub fn thread_count(params: &BTreeMap<String, String>, name: &str) -> Result<usize, ProbeError> {
    match params.get(name).map(String::as_str).unwrap_or_default() {
        "all" | "" => Ok(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
        n => n.parse::<usize>().ok().filter(|&n| (1..=4096).contains(&n)).ok_or_else(|| ProbeError::Param {
            name: name.into(),
            reason: format!("`{n}` is not a thread count (1–4096 or `all`)"),
        }),
    }
}
