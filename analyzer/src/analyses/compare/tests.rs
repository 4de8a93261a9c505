use super::*;
use crate::analyses::recommend::advise;
use crate::runs::Facts;
use fathom_datasets::catalogue::METRICS;

/// A side's stat for a catalogue metric, with `runs` quiet runs.
fn stat(probe: &str, metric: &str, params: &str, value: f64, runs: usize) -> SeriesStat {
    let spec = catalogue::metric(probe, metric).unwrap();
    SeriesStat {
        host: None,
        probe: probe.into(),
        metric: metric.into(),
        params: params.into(),
        measured_params: params.into(),
        unit: spec.unit.into(),
        higher_is_better: spec.higher_is_better,
        category: spec.category().as_str().into(),
        value,
        runs,
        hosts: 1,
        sample: runs,
        between_cv: None,
        within_cv: Some(spec.typical_cv),
        noise: spec.typical_cv.max(0.005),
        disturbed_runs: 0,
    }
}

/// Both sides of a comparison whose category ratios are exactly `ratios` (cpu, memory,
/// storage, network): every key metric of a category is scaled by its ratio, in the metric's
/// own direction.
fn scenario(ratios: [f64; 4]) -> (Vec<SeriesStat>, Vec<SeriesStat>) {
    let (mut source, mut target) = (Vec::new(), Vec::new());
    for spec in METRICS.iter().filter(|m| m.key) {
        let Some(i) = SCORED.iter().position(|c| *c == spec.category()) else { continue };
        let r = ratios[i];
        let t = if spec.higher_is_better { spec.reference * r } else { spec.reference / r };
        source.push(stat(spec.probe, spec.metric, "", spec.reference, 5));
        target.push(stat(spec.probe, spec.metric, "", t, 5));
    }
    (source, target)
}

fn hosts(cores: i32, mem_gib: i64) -> Vec<HostRuns> {
    vec![HostRuns {
        host: "h".into(),
        runs: 5,
        latest_run: String::new(),
        labels: Default::default(),
        facts: Facts {
            cpu_model: "Some CPU".into(),
            cpu_cores: cores,
            cpu_threads: cores * 2,
            mem_bytes: mem_gib << 30,
            ..Facts::default()
        },
    }]
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn scenario_one_target_faster_is_excellent() {
    let (s, t) = scenario([1.2, 1.2, 1.2, 1.2]);
    let c = compare(&s, &t, &Weights::default(), 5);
    assert!(close(c.overall_score.unwrap(), 1.2), "{:?}", c.overall_score);
    assert_eq!(c.rating, Some(Rating::Excellent));
    assert!(c.categories.iter().all(|k| k.rating == Rating::Excellent && k.mark == "✅"));
    let a = advise(&c, &hosts(8, 64), &hosts(16, 128));
    let texts: Vec<&str> = a.recommendations.iter().map(|l| l.text.as_str()).collect();
    assert!(texts.contains(&"Target exceeds source performance"), "{texts:?}");
    assert!(texts.contains(&"Excellent candidate for failover"));
    assert!(
        a.warnings.is_empty() && a.required_upgrades.is_empty() && a.critical_warnings.is_empty(),
        "{a:?}"
    );
}

#[test]
fn scenario_two_target_adequate_warns_about_databases_and_memory() {
    // 0.3 × 0.85 + 0.2 × 0.70 + 0.4 × 0.65 + 0.1 × 0.95 = 0.75
    let (s, t) = scenario([0.85, 0.70, 0.65, 0.95]);
    let c = compare(&s, &t, &Weights::default(), 5);
    assert!(close(c.overall_score.unwrap(), 0.75), "{:?}", c.overall_score);
    assert_eq!(c.rating, Some(Rating::Adequate));
    let rating = |cat: &str| c.category(cat).unwrap().rating;
    assert_eq!(
        [rating("cpu"), rating("memory"), rating("storage"), rating("network")],
        [Rating::Good, Rating::Adequate, Rating::Adequate, Rating::Good]
    );
    let a = advise(&c, &hosts(8, 64), &hosts(8, 48));
    let lines: Vec<String> = a.recommendations.iter().map(|l| format!("{} {}", l.mark, l.text)).collect();
    assert!(lines.contains(&"✅ CPU: 85% - Good for most workloads".to_string()), "{lines:?}");
    assert!(lines.contains(&"⚠️ Storage: 65% - May impact database performance".to_string()), "{lines:?}");
    assert!(lines.contains(&"⚠️ Memory: 70% - Consider increasing RAM allocation".to_string()), "{lines:?}");
    assert!(
        a.warnings
            .iter()
            .any(|w| w.starts_with("Storage IOPS 35% lower than source") && w.contains("database")),
        "{:?}",
        a.warnings
    );
    assert!(
        a.suggestions
            .iter()
            .any(|s| s.starts_with("Increase memory allocation by 33% (48 GiB on the target, 64 GiB")),
        "{:?}",
        a.suggestions
    );
    assert!(a.suggestions.iter().any(|s| s == "Storage-intensive VMs may see performance degradation"));
    assert!(a.required_upgrades.is_empty() && a.critical_warnings.is_empty(), "{a:?}");
}

#[test]
fn scenario_three_target_inadequate_requires_upgrades_naming_both_hosts() {
    // 0.3 × 0.40 + 0.2 × 0.80 + 0.4 × 0.30 + 0.1 × 0.50 = 0.45
    let (mut s, mut t) = scenario([0.40, 0.80, 0.30, 0.50]);
    // An NVMe source and a SATA-class target.
    for (side, iops) in [(&mut s, 300_000.0), (&mut t, 90_000.0)] {
        let m = side.iter_mut().find(|m| m.probe == "storage.rand4k" && m.metric == "read_iops").unwrap();
        m.value = iops;
        m.params = "block_size=4KiB,queue_depth=32".into();
    }
    let c = compare(&s, &t, &Weights::default(), 5);
    assert!(close(c.overall_score.unwrap(), 0.45), "{:?}", c.overall_score);
    assert_eq!(c.rating, Some(Rating::Poor));
    let a = advise(&c, &hosts(8, 64), &hosts(4, 64));
    assert!(
        a.critical_warnings.iter().any(|w| w == "Target NOT recommended for production failover"),
        "{a:?}"
    );
    assert!(
        a.required_upgrades.contains(&"CPU: Minimum 8 cores (currently 4 cores)".to_string()),
        "{:?}",
        a.required_upgrades
    );
    assert!(
        a.required_upgrades.contains(&"Storage: NVMe SSD required (currently SATA/SAS SSD)".to_string()),
        "{:?}",
        a.required_upgrades
    );
    let lines: Vec<String> = a.recommendations.iter().map(|l| format!("{} {}", l.mark, l.text)).collect();
    assert!(lines.contains(&"❌ CPU: 40% - Insufficient for production workload".to_string()), "{lines:?}");
    assert!(lines.contains(&"✅ Memory: 80% - Adequate".to_string()), "{lines:?}");
    assert!(a.warnings[0].starts_with("Target may not handle production load"), "{:?}", a.warnings);
    assert!(
        a.warnings.iter().any(|w| w.starts_with("Storage IOPS") && w.contains("severe")),
        "{:?}",
        a.warnings
    );
}

#[test]
fn lower_is_better_metrics_are_inverted() {
    // Latency twice as high on the target: half as good.
    let s = vec![stat("memory.latency", "latency", "", 100.0, 5)];
    let t = vec![stat("memory.latency", "latency", "", 200.0, 5)];
    let c = compare(&s, &t, &Weights::default(), 5);
    let m = c.metric("memory.latency", "latency").unwrap();
    assert!(close(m.ratio, 0.5));
    assert!(m.interval[0] < 0.5 && 0.5 < m.interval[1]);
    assert!(close(c.category("memory").unwrap().ratio, 0.5));
}

#[test]
fn a_missing_category_renormalises_the_weights_and_says_so() {
    let (s, t) = scenario([1.0, 0.5, 0.8, 1.0]);
    let drop_network =
        |v: Vec<SeriesStat>| v.into_iter().filter(|m| m.category != "network").collect::<Vec<_>>();
    let c = compare(&drop_network(s), &drop_network(t), &Weights::default(), 5);
    assert_eq!(c.missing_categories, vec!["network".to_string()]);
    assert!(c.weights_renormalized);
    // (0.3 × 1.0 + 0.2 × 0.5 + 0.4 × 0.8) / 0.9
    assert!(close(c.overall_score.unwrap(), 0.72 / 0.9), "{:?}", c.overall_score);
    assert!(close(c.categories.iter().map(|k| k.weight).sum::<f64>(), 1.0));
    // A zero weight on the missing category renormalises nothing.
    let w = Weights::parse("network=0").unwrap();
    let (s, t) = scenario([1.0, 0.5, 0.8, 1.0]);
    let c = compare(&drop_network(s), &drop_network(t), &w, 5);
    assert!(!c.weights_renormalized);
}

#[test]
fn different_parameters_are_not_compared_but_listed() {
    let s = vec![
        stat("storage.rand4k", "read_iops", "block_size=4KiB,queue_depth=32", 100_000.0, 5),
        stat("storage.seq", "read_bw", "block_size=1MiB", 2000.0, 5),
        stat("cpu.flops", "gflops_f64_mt", "isa=avx2", 500.0, 5),
    ];
    let t = vec![
        stat("storage.rand4k", "read_iops", "block_size=4KiB,queue_depth=1", 20_000.0, 5),
        stat("storage.seq", "read_bw", "block_size=1MiB", 1800.0, 5),
        stat("memory.bandwidth", "copy", "", 50.0, 5),
    ];
    let c = compare(&s, &t, &Weights::default(), 5);
    assert!(c.metric("storage.rand4k", "read_iops").is_none());
    assert!(c.metric("storage.seq", "read_bw").is_some());
    let nc = |p: &str| c.not_comparable.iter().find(|n| n.probe == p).unwrap();
    assert_eq!(nc("storage.rand4k").reason, "measured with different parameters");
    assert_eq!(nc("storage.rand4k").source_params, vec!["block_size=4KiB,queue_depth=32"]);
    assert_eq!(nc("storage.rand4k").target_params, vec!["block_size=4KiB,queue_depth=1"]);
    assert_eq!(nc("cpu.flops").reason, "measured on the source only");
    assert_eq!(nc("memory.bandwidth").reason, "measured on the target only");
    // Storage rests on read_bw alone; cpu, memory and network are missing.
    assert!(close(c.category("storage").unwrap().ratio, 0.9));
    assert_eq!(c.missing_categories, vec!["cpu", "memory", "network"]);
    assert!(close(c.overall_score.unwrap(), 0.9));
}

#[test]
fn location_parameters_do_not_make_series_differ() {
    assert_eq!(
        comparable_params("duration_s=10,peer=peer-fra1.internal,streams=4"),
        "duration_s=10,streams=4"
    );
    assert_eq!(
        comparable_params("block_size=4KiB,dir=/mnt/data,queue_depth=32"),
        "block_size=4KiB,queue_depth=32"
    );
    assert_eq!(comparable_params("peer=x"), "");
    assert_eq!(comparable_params("peerless=1"), "peerless=1");
}

#[test]
fn few_or_noisy_runs_widen_the_interval_and_lower_the_confidence() {
    let quiet = compare(
        &[stat("cpu.flops", "gflops_f64_mt", "", 500.0, 5)],
        &[stat("cpu.flops", "gflops_f64_mt", "", 450.0, 5)],
        &Weights::default(),
        5,
    );
    let mut one = stat("cpu.flops", "gflops_f64_mt", "", 450.0, 1);
    one.noise = 0.12;
    let noisy = compare(&[stat("cpu.flops", "gflops_f64_mt", "", 500.0, 5)], &[one], &Weights::default(), 5);
    let (q, n) = (
        quiet.metric("cpu.flops", "gflops_f64_mt").unwrap(),
        noisy.metric("cpu.flops", "gflops_f64_mt").unwrap(),
    );
    assert_eq!(q.confidence, Confidence::High);
    assert_eq!(n.confidence, Confidence::Low);
    assert!(n.interval[1] - n.interval[0] > 5.0 * (q.interval[1] - q.interval[0]));
    assert!(n.notes.iter().any(|x| x == "target: 1 run, run-to-run spread not assessed"), "{:?}", n.notes);
    assert!(n.notes.iter().any(|x| x.starts_with("target: noisy")), "{:?}", n.notes);
    let o = noisy.overall_interval.unwrap();
    assert!(o[0] < 0.9 && 0.9 < o[1]);
}

#[test]
fn weights_parse_with_clear_errors() {
    let w = Weights::parse("cpu=0.5, storage=0.3").unwrap();
    assert_eq!((w.of("cpu"), w.of("memory"), w.of("storage"), w.of("network")), (0.5, 0.2, 0.3, 0.1));
    assert!(Weights::parse("disk=0.4").unwrap_err().contains("unknown category \"disk\""));
    assert!(Weights::parse("cpu=lots").unwrap_err().contains("not a number"));
    assert!(Weights::parse("cpu=-1").unwrap_err().contains("≥ 0"));
    assert!(Weights::parse("cpu").unwrap_err().contains("CATEGORY=WEIGHT"));
    assert!(Weights::parse("cpu=0,memory=0,storage=0,network=0").unwrap_err().contains("above 0"));
}

#[test]
fn ratings_follow_the_seed_thresholds() {
    let r = |x| Rating::of(x);
    assert_eq!(
        [r(1.2), r(1.0), r(0.99), r(0.8), r(0.6), r(0.59), r(0.4), r(0.39)],
        [
            Rating::Excellent,
            Rating::Excellent,
            Rating::Good,
            Rating::Good,
            Rating::Adequate,
            Rating::Poor,
            Rating::Poor,
            Rating::Critical
        ]
    );
}

/// The Polars side: last K runs per host, undisturbed ones first, location params dropped.
#[test]
fn side_stats_take_the_median_of_the_last_runs_preferring_undisturbed_ones() {
    // Host a: 7 runs of read_iops, the newest disturbed; host b: 2 runs, both disturbed.
    let mut rows: Vec<(&str, String, i64, f64, bool, &str)> = Vec::new();
    for night in 0..7 {
        let disturbed = night == 6;
        let value = if disturbed { 10.0 } else { 100.0 + night as f64 };
        rows.push(("a", format!("a{night}"), night, value, disturbed, "dir=/mnt/a,queue_depth=32"));
    }
    rows.push(("b", "b0".into(), 0, 50.0, true, "dir=/srv,queue_depth=32"));
    rows.push(("b", "b1".into(), 1, 60.0, true, "dir=/srv,queue_depth=32"));
    let n = rows.len();
    let measurements = df!(
        col::RUN_ID => rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
        col::HOST => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        col::PROBE => vec!["storage.rand4k"; n],
        col::METRIC => vec!["read_iops"; n],
        col::PARAMS => rows.iter().map(|r| r.5).collect::<Vec<_>>(),
        col::UNIT => vec!["IOPS"; n],
        col::HIGHER_IS_BETTER => vec![true; n],
        col::CATEGORY => vec!["storage"; n],
        col::STARTED_AT => rows.iter().map(|r| r.2 * 86_400_000_000).collect::<Vec<_>>(),
        col::VALUE => rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        col::CV => vec![0.01; n],
        col::DISTURBED => rows.iter().map(|r| r.4).collect::<Vec<_>>()
    )
    .unwrap()
    .lazy();
    let runs: Vec<RunInfo> = rows
        .iter()
        .map(|r| {
            let mut info = crate::runs::tests::run_info(r.0, "target");
            info.run_id = r.1.clone();
            info.started_at = r.2 * 86_400_000_000;
            info
        })
        .collect();
    let refs: Vec<&RunInfo> = runs.iter().collect();
    let per_host = side_stats(measurements.clone(), &refs, 3, true).unwrap();
    assert_eq!(per_host.len(), 2, "{per_host:?}");
    let a = &per_host[0];
    // Nights 3, 4, 5: the last three undisturbed runs.
    assert_eq!((a.host.as_deref(), a.value, a.runs, a.disturbed_runs), (Some("a"), 104.0, 3, 0));
    assert_eq!(a.params, "queue_depth=32");
    let b = &per_host[1];
    assert_eq!((b.value, b.runs, b.disturbed_runs), (55.0, 2, 2));
    // K = 1 searches each host's latest three runs: a's newest is disturbed, the one before wins.
    let newest = side_stats(measurements.clone(), &refs, 1, true).unwrap();
    assert_eq!((newest[0].value, newest[0].runs), (105.0, 1));
    // Pooled: a's three and b's two runs, one series.
    let pooled = side_stats(measurements, &refs, 3, false).unwrap();
    assert_eq!(pooled.len(), 1);
    // The median of the two host medians (104 and 55), a sample of two hosts.
    assert_eq!((pooled[0].value, pooled[0].runs, pooled[0].hosts, pooled[0].sample), (79.5, 5, 2, 2));
    // Two hosts: their standard deviation over the median.
    let sd = (104.0f64 - 55.0).abs() / 2f64.sqrt();
    assert!((pooled[0].between_cv.unwrap() - sd / 79.5).abs() < 1e-9, "{:?}", pooled[0].between_cv);
}

#[test]
fn a_strong_category_does_not_hide_a_weak_one() {
    // Network five times faster lifts the mean above 1 while storage is critical.
    let (s, t) = scenario([0.9, 0.9, 0.35, 5.0]);
    let c = compare(&s, &t, &Weights::default(), 5);
    assert!(c.overall_score.unwrap() >= 1.0, "{:?}", c.overall_score);
    let a = advise(&c, &hosts(8, 64), &hosts(8, 64));
    let texts: Vec<&str> = a.recommendations.iter().map(|l| l.text.as_str()).collect();
    assert!(!texts.contains(&"Excellent candidate for failover"), "{texts:?}");
    assert!(
        texts
            .iter()
            .any(|t| t
                .starts_with("Target exceeds source performance overall, but not everywhere: storage 35%")),
        "{texts:?}"
    );
    assert!(a.critical_warnings.iter().any(|w| w.contains("storage 35%")), "{:?}", a.critical_warnings);
}

#[test]
fn a_category_is_the_geometric_mean_of_its_key_metrics() {
    // Storage: read_bw twice as good, write_bw half as good: they cancel (an arithmetic mean
    // would say 1.25); the other key metrics are not measured.
    let s =
        vec![stat("storage.seq", "read_bw", "", 1000.0, 5), stat("storage.seq", "write_bw", "", 1000.0, 5)];
    let t =
        vec![stat("storage.seq", "read_bw", "", 2000.0, 5), stat("storage.seq", "write_bw", "", 500.0, 5)];
    let c = compare(&s, &t, &Weights::default(), 5);
    let storage = c.category("storage").unwrap();
    assert!(close(storage.ratio, 1.0), "{}", storage.ratio);
    assert_eq!((storage.metrics.len(), storage.key_metrics_expected), (2, 6));
}

#[test]
fn capability_parameters_are_compared_and_noted() {
    let mut s = vec![stat("cpu.flops", "gflops_f64_mt", "threads=all", 800.0, 5)];
    let mut t = vec![stat("cpu.flops", "gflops_f64_mt", "threads=all", 400.0, 5)];
    s[0].measured_params = "isa=avx512,threads=all".into();
    t[0].measured_params = "isa=avx2,threads=all".into();
    let c = compare(&s, &t, &Weights::default(), 5);
    let m = c.metric("cpu.flops", "gflops_f64_mt").unwrap();
    assert!(close(m.ratio, 0.5));
    assert!(
        m.notes.contains(&"source ran with isa=avx512, target with isa=avx2".to_string()),
        "{:?}",
        m.notes
    );
    assert_eq!(
        comparable_params("block=4KiB,direct=off,engine=threads,queue_depth=32"),
        "block=4KiB,queue_depth=32"
    );
    assert_eq!(
        capability_params("block=4KiB,direct=off,engine=threads,queue_depth=32"),
        "direct=off,engine=threads"
    );
}

#[test]
fn pooled_sides_count_hosts_not_rows_and_streams_do_not_crowd_each_other_out() {
    // Three hosts whose medians are 90, 100 and 130, five nightly runs each.
    let mut rows: Vec<(String, String, i64, f64, &str)> = Vec::new();
    for (h, level) in [("a", 90.0), ("b", 100.0), ("c", 130.0)] {
        for night in 0..5 {
            rows.push((h.to_string(), format!("{h}{night}"), night, level, "queue_depth=32"));
        }
    }
    // Host b moved its test to another directory for its latest run: that variant is used.
    rows.push(("b".into(), "b-moved".into(), 9, 200.0, "dir=/new,queue_depth=32"));
    let n = rows.len();
    let measurements = df!(
        col::RUN_ID => rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
        col::HOST => rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        col::PROBE => vec!["storage.rand4k"; n],
        col::METRIC => vec!["read_iops"; n],
        col::PARAMS => rows.iter().map(|r| r.4).collect::<Vec<_>>(),
        col::UNIT => vec!["IOPS"; n],
        col::HIGHER_IS_BETTER => vec![true; n],
        col::CATEGORY => vec!["storage"; n],
        col::STARTED_AT => rows.iter().map(|r| r.2 * 86_400_000_000).collect::<Vec<_>>(),
        col::VALUE => rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        col::CV => vec![0.01; n],
        col::DISTURBED => vec![false; n]
    )
    .unwrap()
    .lazy();
    let mut runs: Vec<RunInfo> = rows
        .iter()
        .map(|r| {
            let mut info = crate::runs::tests::run_info(&r.0, "target");
            info.run_id = r.1.clone();
            info.started_at = r.2 * 86_400_000_000;
            info.schedule = "nightly".into();
            info
        })
        .collect();
    // Host a's hourly network-only schedule ran 20 times since: it must not crowd out the
    // nightly suite's storage runs (its runs have no storage rows).
    for k in 0..20 {
        let mut info = crate::runs::tests::run_info("a", "target");
        info.run_id = format!("a-net{k}");
        info.started_at = (10 + k) * 86_400_000_000;
        info.schedule = "hourly-network".into();
        runs.push(info);
    }
    let refs: Vec<&RunInfo> = runs.iter().collect();
    let per_host = side_stats(measurements.clone(), &refs, 5, true).unwrap();
    let a = per_host.iter().find(|s| s.host.as_deref() == Some("a")).unwrap();
    assert_eq!((a.value, a.runs), (90.0, 5), "the hourly runs crowded out the nightly ones");
    let b = per_host.iter().find(|s| s.host.as_deref() == Some("b")).unwrap();
    assert_eq!((b.value, b.runs, b.measured_params.as_str()), (200.0, 1, "dir=/new,queue_depth=32"));
    let pooled = side_stats(measurements, &refs, 5, false).unwrap();
    assert_eq!(pooled.len(), 1);
    // Hosts at 90, 130 and b at its new place, 200: the median 130, a sample of three hosts.
    assert_eq!((pooled[0].value, pooled[0].hosts, pooled[0].sample, pooled[0].runs), (130.0, 3, 3, 11));
    assert!(pooled[0].between_cv.unwrap() > 0.2, "{:?}", pooled[0].between_cv);
}

#[test]
fn different_units_are_not_compared() {
    let s = vec![stat("storage.rand4k", "read_lat_p99", "", 300.0, 5)];
    let mut t = vec![stat("storage.rand4k", "read_lat_p99", "", 300_000.0, 5)];
    t[0].unit = "ns".into();
    let mut s = s;
    s[0].unit = "us".into();
    let c = compare(&s, &t, &Weights::default(), 5);
    assert!(c.metrics.is_empty());
    assert_eq!(c.not_comparable[0].reason, "recorded in different units: us on the source, ns on the target");
}
