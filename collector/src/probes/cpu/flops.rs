//! `cpu.flops`: peak floating-point throughput in f64 and f32, on one thread and on all.
//!
//! The kernel keeps many independent fused multiply-add chains in vector registers, so no load,
//! store or dependency limits it: what is left is the FMA units. The instruction set is chosen
//! at run time (AVX-512, AVX2 + FMA, SSE2; NEON on aarch64), and a plain scalar kernel is there
//! for everything else. An FMA counts as two FLOPs, as likwid-bench and LINPACK count it.
//!
//! Beside the measured figure the probe reports the theoretical peak it implies: cores × clock
//! × FLOPs per cycle. The clock is measured with a chain of dependent integer adds (one per
//! cycle on every core we know), never read from `/proc/cpuinfo`, which in a VM shows the TSC
//! frequency instead of the clock the core actually runs at.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fathom_datasets::params::canonical;

use crate::load::LoadMeter;
use crate::measure::{Shares, parallel_throughput_mbps, repeat, slice_for, throughput_mbps};
use crate::probe::{ParamSpec, Probe, ProbeContext, ProbeError, ProbeOutput, Repetitions};
use crate::probes::threads_param;

pub struct Flops;

const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "isa",
        default: "auto",
        help: "instruction set: auto (the widest this CPU has), avx512, avx2, sse2, neon or scalar",
        identity: true,
    },
    ParamSpec {
        name: "threads",
        default: "all",
        help: "threads for the *_mt metrics: a number or `all`",
        identity: true,
    },
];

/// An instruction set the kernel is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2Fma,
    Sse2,
    Neon,
    Scalar,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2Fma => "avx2",
            Isa::Sse2 => "sse2",
            Isa::Neon => "neon",
            Isa::Scalar => "scalar",
        }
    }

    fn parse(text: &str) -> Option<Isa> {
        [Isa::Avx512, Isa::Avx2Fma, Isa::Sse2, Isa::Neon, Isa::Scalar].into_iter().find(|i| i.name() == text)
    }

    pub fn supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => {
                std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Sse2 => true,
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => true,
            Isa::Scalar => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The widest instruction set this CPU runs.
    pub fn best() -> Isa {
        [Isa::Avx512, Isa::Avx2Fma, Isa::Neon, Isa::Sse2]
            .into_iter()
            .find(|i| i.supported())
            .unwrap_or(Isa::Scalar)
    }

    /// f64 FLOPs one core can retire per cycle with this instruction set: lanes × 2 (an FMA is
    /// two FLOPs) × the vector pipes that execute it. Pipes are the common case of each family,
    /// from the vendors' optimisation manuals: two FMA pipes for AVX2 and AVX-512 on Intel
    /// server cores and AMD Zen 2 and later, except that Zen 4 splits a 512-bit FMA over both
    /// 256-bit pipes, so AVX-512 gains it nothing; one add and one multiply pipe for SSE2; two
    /// 128-bit FMA pipes for NEON. A core with fewer pipes shows up as a measured figure well
    /// below this peak, which is exactly what the peak is reported for.
    pub fn f64_flops_per_cycle(self) -> f64 {
        match self {
            Isa::Avx512 if zen4() => 16.0,
            Isa::Avx512 => 32.0,
            Isa::Avx2Fma => 16.0,
            Isa::Sse2 => 4.0,
            Isa::Neon => 8.0,
            Isa::Scalar => 2.0,
        }
    }
}

/// AMD family 19h with AVX-512 is Zen 4, whose 512-bit FMAs are double-pumped on 256-bit units.
fn zen4() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let v = std::arch::x86_64::__cpuid(0);
        let vendor = [v.ebx.to_le_bytes(), v.edx.to_le_bytes(), v.ecx.to_le_bytes()].concat();
        let signature = std::arch::x86_64::__cpuid(1).eax;
        let family = ((signature >> 8) & 0xf) + ((signature >> 20) & 0xff);
        vendor == b"AuthenticAMD" && family == 0x19 && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Independent FMA chains per kernel iteration: enough to hide a 4–5 cycle FMA latency on two
/// pipes, few enough (with the two constants) to stay in the 16 registers of AVX2.
const CHAINS: usize = 12;

/// Runs `iters` iterations of the kernel and returns the FLOPs done.
fn kernel(isa: Isa, f32: bool, iters: u64) -> u64 {
    let lanes = |bytes: u64| if f32 { bytes / 4 } else { bytes / 8 };
    let (flops_per_iter, result) = match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` was checked with `supported` before any kernel runs.
        Isa::Avx512 => {
            (lanes(64) * 2, unsafe { if f32 { x86::avx512_f32(iters) } else { x86::avx512_f64(iters) } })
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => {
            (lanes(32) * 2, unsafe { if f32 { x86::avx2_f32(iters) } else { x86::avx2_f64(iters) } })
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Sse2 => {
            (lanes(16) * 2, unsafe { if f32 { x86::sse2_f32(iters) } else { x86::sse2_f64(iters) } })
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => {
            (lanes(16) * 2, unsafe { if f32 { arm::neon_f32(iters) } else { arm::neon_f64(iters) } })
        }
        _ => (2, if f32 { scalar::<f32>(iters) as f64 } else { scalar::<f64>(iters) }),
    };
    std::hint::black_box(result);
    flops_per_iter * CHAINS as u64 * iters
}

/// The same chains on scalars: the floor every CPU has.
fn scalar<T: Copy + std::ops::Mul<Output = T> + std::ops::Add<Output = T> + From<f32>>(iters: u64) -> T {
    let (m, a) = (T::from(std::hint::black_box(0.999_999)), T::from(std::hint::black_box(1e-6)));
    let mut acc: [T; CHAINS] = std::array::from_fn(|i| T::from(1.0 + i as f32));
    for _ in 0..iters {
        for x in &mut acc {
            *x = *x * m + a;
        }
    }
    acc.into_iter().fold(T::from(0.0), |s, x| s + x)
}

/// One kernel per instruction set and precision: `CHAINS` accumulators, each updated with
/// acc = acc × m + a, which stays finite (it converges to a / (1 − m)).
macro_rules! fma_kernel {
    ($name:ident, $feature:literal, $t:ty, $s:ty, $set1:ident, $fma:expr, $reduce:expr) => {
        #[target_feature(enable = $feature)]
        pub unsafe fn $name(iters: u64) -> f64 {
            // Opaque constants and distinct starting values: otherwise the compiler sees twelve
            // identical chains and computes one.
            let m = $set1(std::hint::black_box(0.999_999 as $s));
            let a = $set1(std::hint::black_box(1e-6 as $s));
            let mut acc: [$t; CHAINS] = std::array::from_fn(|i| $set1(1.0 + i as $s));
            for _ in 0..iters {
                // Fully unrolled by the compiler: CHAINS is a constant.
                for x in &mut acc {
                    *x = $fma(*x, m, a);
                }
            }
            let mut sum = 0.0;
            for x in acc {
                sum += $reduce(x);
            }
            sum
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::CHAINS;
    use std::arch::x86_64::*;

    fn first_f64(x: __m128d) -> f64 {
        unsafe { _mm_cvtsd_f64(x) }
    }
    fn first_f32(x: __m128) -> f64 {
        unsafe { _mm_cvtss_f32(x) as f64 }
    }

    fma_kernel!(
        avx512_f64,
        "avx512f",
        __m512d,
        f64,
        _mm512_set1_pd,
        |x, m, a| _mm512_fmadd_pd(x, m, a),
        |x| { _mm512_reduce_add_pd(x) }
    );
    fma_kernel!(
        avx512_f32,
        "avx512f",
        __m512,
        f32,
        _mm512_set1_ps,
        |x, m, a| _mm512_fmadd_ps(x, m, a),
        |x| { _mm512_reduce_add_ps(x) as f64 }
    );
    fma_kernel!(
        avx2_f64,
        "avx2,fma",
        __m256d,
        f64,
        _mm256_set1_pd,
        |x, m, a| _mm256_fmadd_pd(x, m, a),
        |x| { first_f64(_mm256_castpd256_pd128(x)) }
    );
    fma_kernel!(avx2_f32, "avx2,fma", __m256, f32, _mm256_set1_ps, |x, m, a| _mm256_fmadd_ps(x, m, a), |x| {
        first_f32(_mm256_castps256_ps128(x))
    });
    // SSE2 has no FMA: a multiply and an add per lane, on separate pipes.
    fma_kernel!(
        sse2_f64,
        "sse2",
        __m128d,
        f64,
        _mm_set1_pd,
        |x, m, a| _mm_add_pd(_mm_mul_pd(x, m), a),
        first_f64
    );
    fma_kernel!(
        sse2_f32,
        "sse2",
        __m128,
        f32,
        _mm_set1_ps,
        |x, m, a| _mm_add_ps(_mm_mul_ps(x, m), a),
        first_f32
    );
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::CHAINS;
    use std::arch::aarch64::*;

    fma_kernel!(neon_f64, "neon", float64x2_t, f64, vdupq_n_f64, |x, m, a| vfmaq_f64(a, x, m), |x| {
        vgetq_lane_f64::<0>(x)
    });
    fma_kernel!(neon_f32, "neon", float32x4_t, f32, vdupq_n_f32, |x, m, a| vfmaq_f32(a, x, m), |x| {
        vgetq_lane_f32::<0>(x) as f64
    });
}

/// Dependent integer adds per loop iteration of the clock measurement.
const CHAIN: u64 = 200;

/// Runs `loops` × [`CHAIN`] dependent adds; each waits for the one before, so they take one
/// cycle each and the loop counter runs beside them for free.
#[allow(unused_variables)]
fn add_chain(loops: u64) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let mut x = 0u64;
        // SAFETY: register-only arithmetic and a local loop.
        unsafe {
            std::arch::asm!(
                "2:",
                ".rept 200",
                "add {x}, {one}",
                ".endr",
                "dec {n}",
                "jnz 2b",
                x = inout(reg) x,
                one = in(reg) 1u64,
                n = inout(reg) loops => _,
                options(nomem, nostack),
            );
        }
        std::hint::black_box(x);
        true
    }
    #[cfg(target_arch = "aarch64")]
    {
        let mut x = 0u64;
        // SAFETY: register-only arithmetic and a local loop.
        unsafe {
            std::arch::asm!(
                "2:",
                ".rept 200",
                "add {x}, {x}, {one}",
                ".endr",
                "subs {n}, {n}, #1",
                "b.ne 2b",
                x = inout(reg) x,
                one = in(reg) 1u64,
                n = inout(reg) loops => _,
                options(nomem, nostack),
            );
        }
        std::hint::black_box(x);
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    false
}

/// The core clock in GHz over about `slice`, or `None` where there is no add-chain kernel.
pub fn measure_clock_ghz(slice: Duration) -> Option<f64> {
    if !add_chain(1) {
        return None;
    }
    let loops = 10_000;
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < slice {
        add_chain(loops);
        done += loops;
    }
    Some((done * CHAIN) as f64 / start.elapsed().as_secs_f64() / 1e9)
}

impl Probe for Flops {
    fn id(&self) -> &'static str {
        "cpu.flops"
    }

    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn check(&self, params: &BTreeMap<String, String>) -> Result<(), ProbeError> {
        settings(params).map(|_| ())
    }

    /// The instruction set actually used, not `auto`: a host whose best ISA changes starts a
    /// new series instead of showing a jump.
    fn params_text(&self, ctx: &ProbeContext) -> String {
        let isa = settings(&ctx.params).map(|(isa, _)| isa.name()).unwrap_or("unknown");
        canonical([("isa", isa), ("threads", ctx.param("threads"))])
    }

    fn run(&self, ctx: &ProbeContext, out: &mut ProbeOutput) -> Result<(), ProbeError> {
        let (isa, threads) = settings(&ctx.params)?;
        let params = self.params_text(ctx);
        let start = Instant::now();
        // The clock gets a tenth of the budget, each of the four FLOP figures the rest evenly.
        let mut shares = Shares::new(ctx.effort.budget, 40);
        let clock_budget = shares.take(4);
        let slice = slice_for(ctx.effort.budget * 9 / 40, &ctx.effort);

        let load = LoadMeter::start();
        let clock_slice = slice_for(clock_budget, &ctx.effort);
        let clock = match measure_clock_ghz(Duration::ZERO) {
            Some(_) => {
                Some(repeat(ctx, clock_budget, start, || Ok(measure_clock_ghz(clock_slice).unwrap_or(0.0)))?)
            }
            None => None,
        };
        let clock_load = load.finish();
        (ctx.progress)(0.1);

        let mut measured = Vec::new();
        for (i, (metric, f32, n)) in [
            ("gflops_f64_1t", false, 1),
            ("gflops_f32_1t", true, 1),
            ("gflops_f64_mt", false, threads),
            ("gflops_f32_mt", true, threads),
        ]
        .into_iter()
        .enumerate()
        {
            // About 0.1–0.5 ms per call: short enough to stop on time, long enough to amortise.
            let iters = 20_000;
            let load = LoadMeter::start();
            let budget = shares.take(9);
            let reps = repeat(ctx, budget, start, || {
                let mflops = if n == 1 {
                    throughput_mbps(slice, || kernel(isa, f32, iters) as usize)
                } else {
                    parallel_throughput_mbps(n, slice, |_| Box::new(move || kernel(isa, f32, iters) as usize))
                };
                Ok(mflops / 1e3)
            })?;
            out.record(self.id(), metric, &params, &reps, load.finish());
            measured.push(reps);
            (ctx.progress)(0.1 + 0.9 * (i + 1) as f64 / 4.0);
        }

        if let Some(clock) = clock {
            out.record(self.id(), "clock_ghz", &params, &clock, clock_load);
            let ghz = fathom_datasets::stats::median(clock.steady()).unwrap_or(0.0);
            let cores = threads.min(crate::host::physical_cores());
            let per_core = ghz * isa.f64_flops_per_cycle();
            let at = start.elapsed().as_secs_f64();
            let fixed = |v: f64| Repetitions::once(v, at);
            out.record(self.id(), "peak_f64_1t", &params, &fixed(per_core), clock_load);
            out.record(self.id(), "peak_f32_1t", &params, &fixed(2.0 * per_core), clock_load);
            out.record(self.id(), "peak_f64_mt", &params, &fixed(per_core * cores as f64), clock_load);
            out.record(self.id(), "peak_f32_mt", &params, &fixed(2.0 * per_core * cores as f64), clock_load);
            let f64_1t = fathom_datasets::stats::median(measured[0].steady()).unwrap_or(0.0);
            out.notes.push(format!(
                "{} at {ghz:.2} GHz: {:.0} f64 FLOPs/cycle nominal, {:.1} measured on one thread; peak_*_mt counts {cores} cores",
                isa.name(),
                isa.f64_flops_per_cycle(),
                f64_1t / ghz.max(1e-9),
            ));
        } else {
            out.notes.push(format!("{}; no clock kernel on this architecture, so no peak", isa.name()));
        }
        Ok(())
    }
}

/// The instruction set and the thread count of the `_mt` metrics.
fn settings(params: &BTreeMap<String, String>) -> Result<(Isa, usize), ProbeError> {
    let text = params.get("isa").map(String::as_str).unwrap_or_default();
    let isa = match text {
        "auto" | "" => Isa::best(),
        name => {
            let isa = Isa::parse(name).ok_or_else(|| ProbeError::Param {
                name: "isa".into(),
                reason: format!("`{name}` is not one of auto, avx512, avx2, sse2, neon, scalar"),
            })?;
            if !isa.supported() {
                return Err(ProbeError::Param {
                    name: "isa".into(),
                    reason: format!("this CPU cannot run `{name}` (best available: {})", Isa::best().name()),
                });
            }
            isa
        }
    };
    Ok((isa, threads_param(params)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_kernel_counts_its_flops_and_stays_finite() {
        for isa in [Isa::Avx512, Isa::Avx2Fma, Isa::Sse2, Isa::Neon, Isa::Scalar] {
            if !isa.supported() {
                continue;
            }
            let lanes = match isa {
                Isa::Avx512 => 8,
                Isa::Avx2Fma => 4,
                Isa::Sse2 | Isa::Neon => 2,
                Isa::Scalar => 1,
            };
            let expected = if isa == Isa::Scalar { 2 } else { lanes * 2 };
            assert_eq!(kernel(isa, false, 10), expected * CHAINS as u64 * 10, "{isa:?}");
            let f32_lanes = if isa == Isa::Scalar { 1 } else { 2 };
            assert_eq!(kernel(isa, true, 10), f32_lanes * expected * CHAINS as u64 * 10, "{isa:?}");
        }
    }

    #[test]
    fn a_wider_isa_is_faster_than_scalar() {
        // Measured, not assumed: the best kernel must beat the scalar one by a clear margin.
        let rate = |isa| throughput_mbps(Duration::from_millis(60), || kernel(isa, false, 5_000) as usize);
        let (best, scalar) = (rate(Isa::best()), rate(Isa::Scalar));
        if Isa::best() != Isa::Scalar {
            assert!(best > 1.5 * scalar, "{best} vs {scalar} MFLOP/s");
        }
    }

    #[test]
    fn the_clock_is_plausible() {
        if let Some(ghz) = measure_clock_ghz(Duration::from_millis(50)) {
            assert!((0.3..8.0).contains(&ghz), "{ghz} GHz");
        }
    }

    #[test]
    fn unknown_and_unsupported_isas_are_refused_by_name() {
        let p = |v: &str| BTreeMap::from([("isa".to_string(), v.to_string())]);
        let err = settings(&p("avx1024")).unwrap_err().to_string();
        assert!(err.contains("`isa`") && err.contains("avx1024"), "{err}");
        let foreign = if cfg!(target_arch = "x86_64") { "neon" } else { "avx512" };
        assert!(settings(&p(foreign)).unwrap_err().to_string().contains("cannot run"));
        assert_eq!(settings(&p("auto")).unwrap().0, Isa::best());
    }
}
