//! End-to-end tests of the synthetic fleet: written into in-memory datasets and read back.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use chrono::{DateTime, NaiveDate};

use super::*;
use crate::catalogue::metric;
use crate::read::read_parquet;
use crate::schema::col;
use crate::store::DateRange;
use crate::validate::validate;

fn options(hosts: usize, days: u32, seed: u64) -> SynthOptions {
    SynthOptions { hosts, days, seed, end: NaiveDate::from_ymd_opt(2026, 3, 31).unwrap(), samples: false }
}

async fn make(name: &str, opts: &SynthOptions) -> (Dataset, SynthSummary) {
    let ds = Dataset::create(&format!("memory://synth-{name}")).unwrap();
    let summary = generate(&ds, opts).await.unwrap();
    (ds, summary)
}

async fn read_table(ds: &Dataset, table: Table) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for f in ds.list_files(table, DateRange::default()).await.unwrap() {
        out.extend(read_parquet(ds.get(&f.location).await.unwrap()).unwrap());
    }
    out
}

async fn truth(ds: &Dataset) -> GroundTruth {
    serde_json::from_slice(&ds.get(&ds.child(GROUND_TRUTH_FILE)).await.unwrap()).unwrap()
}

fn strings<'a>(b: &'a RecordBatch, name: &str) -> impl Iterator<Item = &'a str> + 'a {
    let c = b.column_by_name(name).unwrap().as_string::<i32>();
    (0..c.len()).map(move |i| c.value(i))
}

fn floats(b: &RecordBatch, name: &str) -> Vec<f64> {
    b.column_by_name(name).unwrap().as_primitive::<Float64Type>().values().to_vec()
}

fn dates(b: &RecordBatch) -> Vec<NaiveDate> {
    let c = b.column_by_name(col::STARTED_AT).unwrap().as_primitive::<TimestampMicrosecondType>();
    c.values().iter().map(|&t| DateTime::from_timestamp_micros(t).unwrap().date_naive()).collect()
}

/// One measurement row, as much of it as the tests look at.
struct Row {
    host: String,
    probe: String,
    metric: String,
    date: NaiveDate,
    value: f64,
    disturbed: bool,
    foreign_cpu: f64,
}

async fn measurements(ds: &Dataset) -> Vec<Row> {
    let mut rows = Vec::new();
    for b in read_table(ds, Table::Measurements).await {
        let disturbed = b.column_by_name(col::DISTURBED).unwrap().as_boolean().clone();
        let hosts = strings(&b, col::HOST);
        let probes = strings(&b, col::PROBE);
        let metrics = strings(&b, col::METRIC);
        let (values, foreign, days) = (floats(&b, col::VALUE), floats(&b, col::FOREIGN_CPU), dates(&b));
        for (i, ((host, probe), metric)) in hosts.zip(probes).zip(metrics).enumerate() {
            rows.push(Row {
                host: host.into(),
                probe: probe.into(),
                metric: metric.into(),
                date: days[i],
                value: values[i],
                disturbed: disturbed.value(i),
                foreign_cpu: foreign[i],
            });
        }
    }
    rows
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// Host → hardware class index, from the `hw_class` label of the runs.
async fn classes_of(ds: &Dataset) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for b in read_table(ds, Table::Runs).await {
        let labels = b.column_by_name(col::LABELS).unwrap().as_map();
        for (i, host) in strings(&b, col::HOST).enumerate() {
            let entry = labels.value(i);
            let (keys, values) = (entry.column(0).as_string::<i32>(), entry.column(1).as_string::<i32>());
            let class =
                (0..keys.len()).find(|&k| keys.value(k) == "hw_class").map(|k| values.value(k)).unwrap();
            out.insert(host.to_string(), HARDWARE_CLASSES.iter().position(|c| c.name == class).unwrap());
        }
    }
    out
}

/// The first date any event touches each host × probe × metric.
fn first_event(truth: &GroundTruth) -> HashMap<(String, String, String), NaiveDate> {
    let mut out: HashMap<_, NaiveDate> = HashMap::new();
    for e in &truth.events {
        let d = out.entry((e.host.clone(), e.probe.clone(), e.metric.clone())).or_insert(e.date);
        *d = (*d).min(e.date);
    }
    out
}

#[tokio::test]
async fn same_seed_same_dataset_other_seed_differs() {
    let opts = options(12, 40, 7);
    let (a, sa) = make("det-a", &opts).await;
    let (b, sb) = make("det-b", &opts).await;
    let (c, _) = make("det-c", &SynthOptions { seed: 8, ..opts.clone() }).await;
    assert_eq!(sa, sb);
    let truth_bytes = |ds: Dataset| async move { ds.get(&ds.child(GROUND_TRUTH_FILE)).await.unwrap() };
    assert_eq!(truth_bytes(a.clone()).await, truth_bytes(b.clone()).await);
    assert_ne!(truth_bytes(a.clone()).await, truth_bytes(c.clone()).await);
    for table in [Table::Runs, Table::Measurements] {
        let (ra, rb, rc) =
            (read_table(&a, table).await, read_table(&b, table).await, read_table(&c, table).await);
        assert!(!ra.is_empty());
        assert_eq!(ra, rb, "{table}");
        assert_ne!(ra, rc, "{table}");
    }
}

#[tokio::test]
async fn a_small_fleet_validates_and_covers_the_catalogue() {
    let opts = SynthOptions { samples: true, ..options(12, 40, 1) };
    let (ds, summary) = make("validate", &opts).await;
    let report = validate(&ds).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.rows, [summary.runs, summary.measurements, summary.samples]);
    assert_eq!(report.uncommitted_runs, 0);
    assert_eq!(summary.samples, summary.measurements * 5);
    assert!(summary.runs < 12 * 40, "some nights are missing");
    assert!(summary.runs > 12 * 40 * 8 / 10);
    assert_eq!(ds.list_files(Table::Runs, DateRange::default()).await.unwrap().len(), 40);
    let truth = truth(&ds).await;
    assert_eq!(summary.events, truth.events.len());
    assert_eq!(truth.classes.len(), HARDWARE_CLASSES.len());

    let rows = measurements(&ds).await;
    let seen: BTreeSet<(&str, &str)> = rows.iter().map(|r| (r.probe.as_str(), r.metric.as_str())).collect();
    let all: BTreeSet<(&str, &str)> = METRICS.iter().map(|m| (m.probe, m.metric)).collect();
    assert_eq!(seen, all);
    assert!(rows.iter().all(|r| r.value > 0.0 && r.value.is_finite()));
    for r in rows.iter().filter(|r| r.metric == "efficiency_mt" || r.metric == "error_rate") {
        assert!(r.value < 1.0, "{} {}", r.metric, r.value);
    }

    // Repetitions come in order, and the row's value is their median.
    let samples = read_table(&ds, Table::Samples).await;
    let b = &samples[0];
    let t = floats(b, col::T_OFFSET_S);
    assert!(t[..5].windows(2).all(|w| w[0] < w[1]), "{t:?}");
    let mut first = floats(b, col::VALUE)[..5].to_vec();
    let m = read_table(&ds, Table::Measurements).await;
    assert_eq!(floats(&m[0], col::VALUE)[0], median(&mut first));
}

#[tokio::test]
async fn ground_truth_has_the_documented_shape() {
    let (ds, _) = make("shape", &options(30, 120, 3)).await;
    let json: serde_json::Value =
        serde_json::from_slice(&ds.get(&ds.child(GROUND_TRUTH_FILE)).await.unwrap()).unwrap();
    assert_eq!(json["seed"], 3);
    assert_eq!(json["hosts"], 30);
    assert_eq!(json["days"], 120);
    assert_eq!(json["end"], "2026-03-31");
    assert_eq!(json["classes"][0], HARDWARE_CLASSES[0].name);
    let events = json["events"].as_array().unwrap();
    let kinds: BTreeSet<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, BTreeSet::from(["drift", "outlier_host", "step", "upgrade"]));
    for e in events {
        let drift = e["kind"] == "drift";
        assert_eq!(e.get("end_date").is_some(), drift, "{e}");
        assert_eq!(e.get("tag").is_some(), e["kind"] == "upgrade", "{e}");
        assert!(e["date"].as_str().unwrap().len() == 10 && e["params"].as_str().is_some());
        let spec = metric(e["probe"].as_str().unwrap(), e["metric"].as_str().unwrap()).unwrap();
        assert!(spec.typical_cv > 0.0, "no events on ratio metrics");
    }
    assert!(events.iter().any(|e| e["kind"] == "upgrade" && e["magnitude"] == 0.0));
    let first = NaiveDate::from_ymd_opt(2026, 3, 31).unwrap() - chrono::Days::new(119);
    for e in truth(&ds).await.events {
        match e.kind {
            EventKind::OutlierHost => assert_eq!(e.date, first),
            EventKind::Step | EventKind::Drift => assert!(e.date >= first + chrono::Days::new(20)),
            EventKind::Upgrade => {}
        }
    }
}

/// Before any event touches them, class medians of host medians are strictly ordered on every
/// non-ratio metric, and ratio metrics are the same everywhere.
#[tokio::test]
async fn classes_are_strictly_ordered_and_noise_is_typical() {
    let (ds, _) = make("order", &options(40, 60, 5)).await;
    let (truth, class_of, rows) = (truth(&ds).await, classes_of(&ds).await, measurements(&ds).await);
    let touched = first_event(&truth);
    let mut series: BTreeMap<(&str, &str, &str), Vec<&Row>> = BTreeMap::new();
    for r in &rows {
        let key = (r.host.clone(), r.probe.clone(), r.metric.clone());
        if touched.get(&key).is_none_or(|d| r.date < *d) {
            series.entry((r.probe.as_str(), r.metric.as_str(), r.host.as_str())).or_default().push(r);
        }
    }
    let mut disturbed = 0;
    for r in &rows {
        assert!(if r.disturbed { (0.15..0.6).contains(&r.foreign_cpu) } else { r.foreign_cpu < 0.03 });
        disturbed += usize::from(r.disturbed);
    }
    let share = disturbed as f64 / rows.len() as f64;
    assert!((0.01..0.035).contains(&share), "disturbed share {share}");

    for spec in METRICS {
        let mut by_class = vec![Vec::new(); HARDWARE_CLASSES.len()];
        let mut cvs = Vec::new();
        let of_metric = series
            .range((spec.probe, spec.metric, "")..)
            .take_while(|(k, _)| (k.0, k.1) == (spec.probe, spec.metric));
        for ((_, _, host), rs) in of_metric {
            let quiet: Vec<f64> = rs.iter().filter(|r| !r.disturbed).map(|r| r.value).collect();
            if quiet.len() < 10 {
                continue;
            }
            let mean = quiet.iter().sum::<f64>() / quiet.len() as f64;
            let sd =
                (quiet.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (quiet.len() - 1) as f64).sqrt();
            cvs.push(sd / mean);
            by_class[class_of[*host]].push(median(&mut quiet.clone()));
        }
        let name = format!("{}.{}", spec.probe, spec.metric);
        let class_medians: Vec<f64> = by_class.iter_mut().map(|v| median(v)).collect();
        if spec.typical_cv == 0.0 {
            assert!(cvs.iter().all(|&cv| cv < 1e-12), "{name}");
            assert!(class_medians.iter().all(|&m| m == spec.reference), "{name}");
            continue;
        }
        for k in 0..class_medians.len() - 1 {
            let (a, b) = (class_medians[k], class_medians[k + 1]);
            assert!(if spec.higher_is_better { a > b } else { a < b }, "{name}: {class_medians:?}");
        }
        let cv = median(&mut cvs);
        let ratio = cv / spec.typical_cv;
        assert!((0.5..2.0).contains(&ratio), "{name}: quiet CV {cv:.4} vs typical {}", spec.typical_cv);
    }
}

#[tokio::test]
async fn large_steps_are_visible_with_their_magnitude() {
    let (ds, _) = make("steps", &options(40, 120, 11)).await;
    let (truth, rows) = (truth(&ds).await, measurements(&ds).await);
    let mut per_series: HashMap<(&str, &str, &str), usize> = HashMap::new();
    for e in &truth.events {
        *per_series.entry((&e.host, &e.probe, &e.metric)).or_default() += 1;
    }
    let last = truth.end - chrono::Days::new(15);
    let steps: Vec<_> = truth
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Step && e.magnitude.abs() >= 0.25 && e.date <= last)
        .filter(|e| per_series[&(e.host.as_str(), e.probe.as_str(), e.metric.as_str())] == 1)
        .collect();
    assert!(!steps.is_empty(), "no clean large step to check");
    for e in steps {
        let series = rows.iter().filter(|r| r.host == e.host && r.probe == e.probe && r.metric == e.metric);
        let (mut before, mut after): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
        for r in series.filter(|r| !r.disturbed) {
            if r.date < e.date { before.push(r.value) } else { after.push(r.value) }
        }
        let seen = median(&mut after) / median(&mut before) - 1.0;
        assert!((seen - e.magnitude).abs() < 0.04 + 0.15 * e.magnitude.abs(), "{e:?}: seen {seen:.3}");
    }
    // A drift has reached its magnitude from its end date on.
    let drifts = truth.events.iter().filter(|e| e.kind == EventKind::Drift);
    for e in drifts.filter(|e| per_series[&(e.host.as_str(), e.probe.as_str(), e.metric.as_str())] == 1) {
        let end = e.end_date.unwrap();
        let series = rows.iter().filter(|r| r.host == e.host && r.probe == e.probe && r.metric == e.metric);
        let (mut before, mut after): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
        for r in series.filter(|r| !r.disturbed) {
            if r.date < e.date {
                before.push(r.value)
            } else if r.date >= end {
                after.push(r.value)
            }
        }
        if after.len() < 10 {
            continue;
        }
        let seen = median(&mut after) / median(&mut before) - 1.0;
        assert!((seen - e.magnitude).abs() < 0.04 + 0.15 * e.magnitude.abs(), "{e:?}: seen {seen:.3}");
    }
}

#[tokio::test]
async fn upgrades_are_tagged_once_per_host_and_statuses_vary() {
    let (ds, summary) = make("upgrades", &options(40, 120, 2)).await;
    let truth = truth(&ds).await;
    let mut expected: BTreeMap<String, BTreeMap<String, NaiveDate>> = BTreeMap::new();
    for e in truth.events.iter().filter(|e| e.kind == EventKind::Upgrade) {
        expected.entry(e.tag.clone().unwrap()).or_default().insert(e.host.clone(), e.date);
    }
    assert!(expected.len() >= 3, "{:?}", expected.keys());
    let mut found: BTreeMap<String, BTreeMap<String, Vec<NaiveDate>>> = BTreeMap::new();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut kernels: BTreeMap<(String, NaiveDate), String> = BTreeMap::new();
    for b in read_table(&ds, Table::Runs).await {
        let tags = b.column_by_name(col::TAGS).unwrap().as_map();
        let days = dates(&b);
        let kernel: Vec<&str> = strings(&b, col::KERNEL).collect();
        for (i, (host, status)) in strings(&b, col::HOST).zip(strings(&b, col::STATUS)).enumerate() {
            *statuses.entry(status.into()).or_default() += 1;
            kernels.insert((host.into(), days[i]), kernel[i].into());
            let entry = tags.value(i);
            let (keys, values) = (entry.column(0).as_string::<i32>(), entry.column(1).as_string::<i32>());
            for k in 0..keys.len() {
                let tag = format!("{}={}", keys.value(k), values.value(k));
                found.entry(tag).or_default().entry(host.into()).or_default().push(days[i]);
            }
        }
    }
    for (tag, hosts) in &expected {
        let got = &found[tag];
        assert_eq!(got.keys().collect::<Vec<_>>(), hosts.keys().collect::<Vec<_>>(), "{tag}");
        for (host, date) in hosts {
            assert_eq!(got[host], vec![*date], "{tag} on {host}");
        }
    }
    assert_eq!(found.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    let (host, date) = expected["upgrade=kernel-6.8"].iter().next().unwrap();
    assert_eq!(kernels[&(host.clone(), *date)], "6.8.0-48-generic");
    assert!(kernels.iter().any(|((h, d), k)| h == host && d < date && k != "6.8.0-48-generic"));

    assert_eq!(statuses.values().sum::<u64>(), summary.runs);
    assert!(summary.runs < 40 * 120);
    assert!(statuses.get("failed").is_some_and(|&n| n >= 1), "{statuses:?}");
    assert!(statuses.get("partial").is_some_and(|&n| n >= 1), "{statuses:?}");
    let ok = statuses["ok"];
    let full = METRICS.len() as u64;
    assert!(summary.measurements > ok * full && summary.measurements < (ok + statuses["partial"]) * full);
}

#[tokio::test]
async fn bad_options_are_refused() {
    let ds = Dataset::create("memory://synth-bad").unwrap();
    assert!(matches!(generate(&ds, &options(0, 10, 1)).await, Err(SynthError::Options(_))));
    assert!(matches!(generate(&ds, &options(3, 0, 1)).await, Err(SynthError::Options(_))));
    let tiny = generate(&ds, &options(1, 1, 1)).await.unwrap();
    assert_eq!((tiny.hosts, tiny.events), (1, 0));
}

/// The size the CLI is expected to handle: `cargo test -p fathom-datasets synth::tests::timing
/// -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a timing run, minutes in debug builds"]
async fn timing_200_hosts_365_days() {
    let dir = tempfile::tempdir().unwrap();
    let ds = Dataset::create(dir.path().to_str().unwrap()).unwrap();
    let started = std::time::Instant::now();
    let summary = generate(&ds, &options(200, 365, 1)).await.unwrap();
    let elapsed = started.elapsed();
    let truth = truth(&ds).await;
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for e in &truth.events {
        *kinds.entry(format!("{:?}", e.kind)).or_default() += 1;
    }
    println!("{summary:?} in {elapsed:.2?}; events by kind {kinds:?}");
}

#[tokio::test]
async fn some_bad_nights_go_unflagged_and_come_back() {
    let (ds, _) = make("unseen", &options(30, 120, 4)).await;
    let rows = measurements(&ds).await;
    // Quiet metrics only (CV ≤ 2 %), where a 15 % excursion is never noise.
    let quiet: HashMap<(&str, &str), bool> = METRICS
        .iter()
        .map(|m| ((m.probe, m.metric), m.typical_cv > 0.0 && m.typical_cv <= 0.02 && m.higher_is_better))
        .collect();
    let mut series: HashMap<(&str, &str, &str), Vec<&Row>> = HashMap::new();
    for r in &rows {
        if quiet[&(r.probe.as_str(), r.metric.as_str())] {
            series.entry((&r.host, &r.probe, &r.metric)).or_default().push(r);
        }
    }
    let (mut unflagged_bad, mut total) = (0usize, 0usize);
    for rs in series.values_mut() {
        rs.sort_by_key(|r| r.date);
        for i in 2..rs.len().saturating_sub(2) {
            // Against the median of the two nights either side: one bad night, then back.
            let mut around: Vec<f64> = [i - 2, i - 1, i + 1, i + 2].iter().map(|&j| rs[j].value).collect();
            let level = median(&mut around);
            total += 1;
            if !rs[i].disturbed && rs[i].value < 0.86 * level {
                unflagged_bad += 1;
            }
        }
    }
    let share = unflagged_bad as f64 / total as f64;
    assert!((0.002..0.007).contains(&share), "unflagged bad nights: {share:.4} of {total}");
}
