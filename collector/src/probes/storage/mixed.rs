//! `storage.mixed`: random 4 KiB I/O, 70 % reads and 30 % writes at a queue depth (32 by
//! default), direct I/O: IOPS and completion-latency percentiles each way, as
//! `fio --rw=randrw --rwmixread=70 --bs=4k --iodepth=32 --direct=1 --norandommap` reports them.

use std::collections::BTreeMap;

use super::engine::{Pattern, Workload};
use super::rand4k::BLOCK;
use super::{DIRECT_PARAM, common_params, measure, record_direction, settings};
use crate::load::LoadMeter;
use crate::probe::{ParamSpec, Probe, ProbeContext, ProbeError, ProbeOutput};

pub struct Mixed;

const READ_PERCENT: u32 = 70;

static PARAMS: [ParamSpec; 8] = {
    let c = common_params("512MiB", "32");
    [c[0], c[1], c[2], c[3], c[4], c[5], c[6], DIRECT_PARAM]
};

impl Probe for Mixed {
    fn id(&self) -> &'static str {
        "storage.mixed"
    }

    fn params(&self) -> &'static [ParamSpec] {
        &PARAMS
    }

    fn check(&self, params: &BTreeMap<String, String>) -> Result<(), ProbeError> {
        settings(params).map(|_| ())
    }

    fn run(&self, ctx: &ProbeContext, out: &mut ProbeOutput) -> Result<(), ProbeError> {
        let super::Prepared { started: start, settings: s, engine, file, timing } =
            super::prepare(ctx, out, "mixed", 1)?;
        let params = s.params_text(BLOCK, &file, engine, &[("read_percent", READ_PERCENT.to_string())]);
        let workload = Workload {
            block: BLOCK,
            queue_depth: s.queue_depth,
            jobs: s.jobs,
            pattern: Pattern::Random,
            read_percent: READ_PERCENT,
        };
        let load = LoadMeter::start_io();
        let offset = start.elapsed().as_secs_f64();
        let slices = measure(ctx, &file, &workload, engine, &timing)?;
        let load = load.finish();
        record_direction(
            out,
            self.id(),
            &params,
            &slices,
            &timing,
            offset,
            load,
            ("read_iops", 1.0),
            true,
            &[("read_lat_p50", 50.0), ("read_lat_p99", 99.0)],
        );
        record_direction(
            out,
            self.id(),
            &params,
            &slices,
            &timing,
            offset,
            load,
            ("write_iops", 1.0),
            false,
            &[("write_lat_p50", 50.0), ("write_lat_p99", 99.0)],
        );
        (ctx.progress)(1.0);
        Ok(())
    }
}
