//! `storage.rand4k`: 4 KiB random read, then random write, IOPS at a queue depth (32 by
//! default) with direct I/O, and completion-latency percentiles, as
//! `fio --rw=randread|randwrite --bs=4k --iodepth=32 --direct=1 --ioengine=io_uring
//! --norandommap` reports them (`iops`, `clat_ns.percentile`).

use std::collections::BTreeMap;

use super::engine::{Pattern, Workload};
use super::{DIRECT_PARAM, common_params, measure, record_direction, settings};
use crate::load::LoadMeter;
use crate::probe::{ParamSpec, Probe, ProbeContext, ProbeError, ProbeOutput};

pub struct Rand4k;

pub const BLOCK: usize = 4096;

static PARAMS: [ParamSpec; 8] = {
    let c = common_params("512MiB", "32");
    [c[0], c[1], c[2], c[3], c[4], c[5], c[6], DIRECT_PARAM]
};

impl Probe for Rand4k {
    fn id(&self) -> &'static str {
        "storage.rand4k"
    }

    fn params(&self) -> &'static [ParamSpec] {
        &PARAMS
    }

    fn check(&self, params: &BTreeMap<String, String>) -> Result<(), ProbeError> {
        settings(params).map(|_| ())
    }

    fn run(&self, ctx: &ProbeContext, out: &mut ProbeOutput) -> Result<(), ProbeError> {
        let super::Prepared { started: start, settings: s, engine, file, timing } =
            super::prepare(ctx, out, "rand4k", 2)?;
        let params = s.params_text(BLOCK, &file, engine, &[]);
        for (i, read) in [true, false].into_iter().enumerate() {
            let workload = Workload {
                block: BLOCK,
                queue_depth: s.queue_depth,
                jobs: s.jobs,
                pattern: Pattern::Random,
                read_percent: if read { 100 } else { 0 },
            };
            let load = LoadMeter::start_io();
            let offset = start.elapsed().as_secs_f64();
            let slices = measure(ctx, &file, &workload, engine, &timing)?;
            let (iops, lat) = if read {
                (
                    "read_iops",
                    [
                        ("read_lat_p50", 50.0),
                        ("read_lat_p95", 95.0),
                        ("read_lat_p99", 99.0),
                        ("read_lat_p999", 99.9),
                    ],
                )
            } else {
                (
                    "write_iops",
                    [
                        ("write_lat_p50", 50.0),
                        ("write_lat_p95", 95.0),
                        ("write_lat_p99", 99.0),
                        ("write_lat_p999", 99.9),
                    ],
                )
            };
            record_direction(
                out,
                self.id(),
                &params,
                &slices,
                &timing,
                offset,
                load.finish(),
                (iops, 1.0),
                read,
                &lat,
            );
            (ctx.progress)((i + 1) as f64 / 2.0);
        }
        Ok(())
    }
}
