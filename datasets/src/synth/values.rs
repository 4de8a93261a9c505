//! One night of the fleet: the runs, and every metric's repetitions with realistic noise.
//!
//! Noise is lognormal around the level: a part shared by the metrics of one probe run (a slow
//! disk night is slow on IOPS and latency alike) and a part of each metric's own, together at
//! the catalogue's `typical_cv`. About 2 % of probe runs are disturbed by other processes: a
//! high `foreign_cpu` and a value 5–25 % worse. Another 0.4 % are disturbed in a way the
//! collector cannot see (a neighbour's I/O burst, a throttled host): 15–40 % worse for that one
//! run, with a quiet `foreign_cpu` and no flag, as real fleets have them; such a night is not a
//! change point.

use chrono::{DateTime, Days, Duration, NaiveTime, Utc};
use rand::RngExt;
use rand::rngs::StdRng;
use rand_distr::StandardNormal;

use super::fleet::{Host, Night, SITES, probe_params, probe_seconds};
use super::{Fleet, Stream, rng_for};
use crate::catalogue::{METRICS, PROBES};
use crate::records::{Measurement, MeasurementsBuilder, RunRecord, RunStatus, Sample, SamplesBuilder};
use crate::schema::SCHEMA_VERSION;

/// Repetitions per probe run, as in a quick-like nightly run.
pub(super) const REPETITIONS: usize = 5;
const DISTURBED_RATE: f64 = 0.02;
/// Runs spoiled unseen: worse by `UNSEEN_WORSE`, not flagged.
const UNSEEN_RATE: f64 = 0.004;
const UNSEEN_WORSE: std::ops::Range<f64> = 0.15..0.40;
/// Share of the run-to-run log-sigma taken by the level; the median of the repetitions adds
/// the rest, so the values' CV comes out at `typical_cv`.
const RUN_SIGMA: f64 = 0.96;
/// Weight of the per-probe shared part of the noise (the own part has sqrt(1 − w²)).
const SHARED: f64 = 0.6;
/// Nightly runs start at 02:00 UTC ± this many seconds.
const JITTER_S: i64 = 15 * 60;

/// The rows of one night, ready to write.
pub(super) struct NightRows {
    pub runs: Vec<RunRecord>,
    pub measurements: MeasurementsBuilder,
    pub samples: SamplesBuilder,
}

/// Measurement and sample rows by site and metric, with the text columns filled in once, so
/// a night allocates no strings per row.
struct Templates {
    measurements: Vec<Vec<Measurement>>,
    samples: Vec<Vec<Sample>>,
}

impl Templates {
    fn new() -> Templates {
        let per_site = |site: &str| -> (Vec<Measurement>, Vec<Sample>) {
            METRICS
                .iter()
                .map(|spec| {
                    let params = probe_params(spec.probe, site);
                    let m = Measurement {
                        probe: spec.probe.into(),
                        category: spec.category().as_str().into(),
                        metric: spec.metric.into(),
                        unit: spec.unit.into(),
                        higher_is_better: spec.higher_is_better,
                        params: params.clone(),
                        value: 0.0,
                        mean: None,
                        stddev: None,
                        cv: None,
                        min: None,
                        max: None,
                        n: REPETITIONS as i32,
                        disturbed: false,
                        foreign_cpu: None,
                    };
                    let s = Sample {
                        probe: spec.probe.into(),
                        metric: spec.metric.into(),
                        params,
                        seq: 0,
                        t_offset_s: 0.0,
                        value: 0.0,
                        in_window: true,
                    };
                    (m, s)
                })
                .unzip()
        };
        let (measurements, samples) = SITES.iter().map(|(site, _)| per_site(site)).unzip();
        Templates { measurements, samples }
    }
}

/// How one probe run went for every metric in it.
struct ProbeRun {
    disturbed: bool,
    foreign_cpu: f64,
    /// How much worse the run is (0 when quiet), flagged or not.
    worse: f64,
    /// The shared standard-normal draw of this probe run.
    shared: f64,
}

impl ProbeRun {
    fn draw(rng: &mut StdRng) -> ProbeRun {
        let disturbed = rng.random_bool(DISTURBED_RATE);
        if disturbed {
            let foreign_cpu: f64 = rng.random_range(0.15..0.6);
            let worse =
                (0.05 + 0.2 * (foreign_cpu - 0.15) / 0.45 * rng.random_range(0.7..1.3_f64)).clamp(0.05, 0.25);
            ProbeRun { disturbed, foreign_cpu, worse, shared: rng.sample(StandardNormal) }
        } else {
            let foreign_cpu = rng.random_range(0.0..0.03);
            let worse = if rng.random_bool(UNSEEN_RATE) { rng.random_range(UNSEEN_WORSE) } else { 0.0 };
            ProbeRun { disturbed, foreign_cpu, worse, shared: rng.sample(StandardNormal) }
        }
    }
}

/// Fills `reps` with one probe run's repetitions of metric `index` at `level`.
fn repetitions(rng: &mut StdRng, index: usize, level: f64, run: &ProbeRun, reps: &mut [f64; REPETITIONS]) {
    let spec = &METRICS[index];
    let cv = spec.typical_cv;
    if cv == 0.0 {
        *reps = [level; REPETITIONS];
        return;
    }
    let direction = if spec.higher_is_better { 1.0 } else { -1.0 };
    let own: f64 = rng.sample(StandardNormal);
    let z = SHARED * direction * run.shared + (1.0 - SHARED * SHARED).sqrt() * own;
    let mut center = level * (RUN_SIGMA * cv * z).exp();
    let mut within = cv / 2.0;
    if run.worse > 0.0 {
        center *= if spec.higher_is_better { 1.0 - run.worse } else { 1.0 + run.worse };
        within *= 2.0;
    }
    for r in reps.iter_mut() {
        let z: f64 = rng.sample(StandardNormal);
        *r = center * (within * z).exp();
    }
}

/// Median, mean, sample standard deviation, min and max of the repetitions.
fn fill_stats(m: &mut Measurement, reps: &[f64; REPETITIONS]) {
    let s = crate::stats::summarize(reps).expect("repetitions are never empty");
    m.value = s.median;
    m.mean = Some(s.mean);
    m.stddev = Some(s.stddev);
    m.cv = s.cv;
    m.min = Some(s.min);
    m.max = Some(s.max);
}

/// A UUIDv7 from the start time and the night's generator: ordered like real ids, and
/// reproducible.
fn run_id(started: DateTime<Utc>, rng: &mut StdRng) -> String {
    let mut bytes = [0u8; 10];
    rng.fill(&mut bytes);
    let millis = u64::try_from(started.timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid().to_string()
}

/// Every host's run of `night`, with measurements (and samples when the fleet keeps them).
pub(super) fn night(fleet: &Fleet, night: u32) -> NightRows {
    let mut templates = Templates::new();
    let mut rows = NightRows {
        runs: Vec::with_capacity(fleet.hosts.len()),
        measurements: MeasurementsBuilder::default(),
        samples: SamplesBuilder::default(),
    };
    let date = fleet.first + Days::new(u64::from(night));
    let two_am = date.and_time(NaiveTime::from_hms_opt(2, 0, 0).expect("valid time")).and_utc();
    for (h, host) in fleet.hosts.iter().enumerate() {
        if host.nights[night as usize] == Night::Off {
            continue;
        }
        let mut rng = rng_for(fleet.seed, Stream::Values, h as u64, u64::from(night));
        let started =
            two_am + Duration::microseconds(rng.random_range(-JITTER_S * 1_000_000..=JITTER_S * 1_000_000));
        let mut run = RunRecord {
            run_id: run_id(started, &mut rng),
            host: host.name.clone(),
            role: host.role.into(),
            labels: host.labels(),
            tags: host
                .tags
                .get(&night)
                .map(|v| [("upgrade".to_string(), v.clone())].into())
                .unwrap_or_default(),
            suite: "standard".into(),
            schedule: Some("nightly".into()),
            started_at: started,
            finished_at: started,
            status: RunStatus::Ok,
            status_reason: None,
            collector_version: env!("CARGO_PKG_VERSION").into(),
            schema_version: SCHEMA_VERSION,
            facts: host.facts(night),
        };
        let skipped = match &host.nights[night as usize] {
            Night::Failed { reason } => {
                run.status = RunStatus::Failed;
                run.status_reason = Some(reason.clone());
                run.finished_at = started + Duration::milliseconds(rng.random_range(20_000..240_000));
                rows.runs.push(run);
                continue;
            }
            Night::Partial { skipped, reason } => {
                run.status = RunStatus::Partial;
                run.status_reason = Some(reason.clone());
                *skipped
            }
            _ => 0,
        };
        let elapsed = probe_runs(fleet, host, night, skipped, &run, &mut rng, &mut templates, &mut rows);
        run.finished_at = started + Duration::milliseconds((elapsed * 1000.0) as i64);
        rows.runs.push(run);
    }
    rows
}

/// Runs every probe not in `skipped` in catalogue order; returns the seconds they took.
#[allow(clippy::too_many_arguments)]
fn probe_runs(
    fleet: &Fleet,
    host: &Host,
    night: u32,
    skipped: u32,
    run: &RunRecord,
    rng: &mut StdRng,
    templates: &mut Templates,
    rows: &mut NightRows,
) -> f64 {
    let mut elapsed = rng.random_range(1.0..3.0);
    let mut reps = [0.0; REPETITIONS];
    for (p, probe) in PROBES.iter().enumerate() {
        if skipped & (1 << p) != 0 {
            continue;
        }
        let seconds = probe_seconds(probe.id) * rng.random_range(0.95..1.05);
        let pr = ProbeRun::draw(rng);
        for &i in &fleet.probe_metrics[p] {
            repetitions(rng, i, host.level(i, night), &pr, &mut reps);
            let m = &mut templates.measurements[host.site][i];
            fill_stats(m, &reps);
            m.disturbed = pr.disturbed;
            m.foreign_cpu = Some(pr.foreign_cpu);
            rows.measurements.append(run, m);
            if fleet.samples {
                let s = &mut templates.samples[host.site][i];
                for (seq, value) in reps.iter().enumerate() {
                    s.seq = seq as i32;
                    s.t_offset_s = elapsed + seconds * (seq as f64 + 1.0) / (REPETITIONS as f64 + 1.0);
                    s.value = *value;
                    rows.samples.append(&run.run_id, s);
                }
            }
        }
        elapsed += seconds + rng.random_range(0.2..1.0);
    }
    elapsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_repetitions() {
        let mut m = Templates::new().measurements[0][0].clone();
        fill_stats(&mut m, &[3.0, 1.0, 2.0, 5.0, 4.0]);
        assert_eq!(m.value, 3.0);
        assert_eq!((m.min, m.max, m.mean), (Some(1.0), Some(5.0), Some(3.0)));
        assert!((m.stddev.unwrap() - 2.5f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn disturbed_runs_are_worse_in_the_bad_direction() {
        let mut rng = rng_for(1, Stream::Values, 0, 0);
        let quiet = ProbeRun { disturbed: false, foreign_cpu: 0.01, worse: 0.0, shared: 0.0 };
        let bad = ProbeRun { disturbed: true, foreign_cpu: 0.4, worse: 0.2, shared: 0.0 };
        for (i, spec) in METRICS.iter().enumerate().filter(|(_, s)| s.typical_cv > 0.0 && s.typical_cv < 0.2)
        {
            let (mut a, mut b) = ([0.0; REPETITIONS], [0.0; REPETITIONS]);
            let (mut qa, mut qb) = (0.0, 0.0);
            for _ in 0..200 {
                repetitions(&mut rng, i, 100.0, &quiet, &mut a);
                repetitions(&mut rng, i, 100.0, &bad, &mut b);
                qa += a[2];
                qb += b[2];
            }
            let worse = if spec.higher_is_better { qb < qa } else { qb > qa };
            assert!(worse, "{}.{}", spec.probe, spec.metric);
        }
    }
}
