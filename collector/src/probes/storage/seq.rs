//! `storage.seq`: sequential write, then read, MB/s with 1 MiB blocks and direct I/O, as
//! `fio --rw=write|read --bs=1M --direct=1 --ioengine=io_uring --iodepth=8` measures them.
//!
//! The file is written whole first, so writes overwrite written blocks and every read hits
//! real blocks rather than holes.

use std::collections::BTreeMap;

use super::engine::{Pattern, Workload};
use super::{DIRECT_PARAM, common_params, measure, record_direction, settings};
use crate::load::LoadMeter;
use crate::probe::{ParamSpec, Probe, ProbeContext, ProbeError, ProbeOutput};

pub struct Seq;

const BLOCK: usize = 1 << 20;

static PARAMS: [ParamSpec; 8] = {
    let c = common_params("512MiB", "8");
    [c[0], c[1], c[2], c[3], c[4], c[5], c[6], DIRECT_PARAM]
};

impl Probe for Seq {
    fn id(&self) -> &'static str {
        "storage.seq"
    }

    fn params(&self) -> &'static [ParamSpec] {
        &PARAMS
    }

    fn check(&self, params: &BTreeMap<String, String>) -> Result<(), ProbeError> {
        settings(params).map(|_| ())
    }

    fn run(&self, ctx: &ProbeContext, out: &mut ProbeOutput) -> Result<(), ProbeError> {
        let super::Prepared { started: start, settings: s, engine, file, timing } =
            super::prepare(ctx, out, "seq", 2)?;
        let params = s.params_text(BLOCK, &file, engine, &[]);
        let workload = |read_percent| Workload {
            block: BLOCK,
            queue_depth: s.queue_depth,
            jobs: s.jobs,
            pattern: Pattern::Sequential,
            read_percent,
        };
        for (i, (metric, read)) in [("write_bw", false), ("read_bw", true)].into_iter().enumerate() {
            let load = LoadMeter::start_io();
            let offset = start.elapsed().as_secs_f64();
            let slices = measure(ctx, &file, &workload(if read { 100 } else { 0 }), engine, &timing)?;
            let mb_per_op = BLOCK as f64 / 1e6;
            record_direction(
                out,
                self.id(),
                &params,
                &slices,
                &timing,
                offset,
                load.finish(),
                (metric, mb_per_op),
                read,
                &[],
            );
            (ctx.progress)((i + 1) as f64 / 2.0);
        }
        Ok(())
    }
}
