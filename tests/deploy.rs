//! The units in `deploy/` as an operator installs them: `systemd-analyze verify` accepts every
//! one without a warning (a setting systemd ignores, such as `RuntimeMaxSec=` on a oneshot
//! service, is a warning), and every `ExecStart=` command line is one the collector accepts.

use std::process::Command;

use fathom_e2e::{bin, repo_root, run, stderr};

const INSTALLED: &str = "/usr/local/bin/fathom-collector";

fn units() -> Vec<(String, String)> {
    let mut units: Vec<(String, String)> = std::fs::read_dir(repo_root().join("deploy"))
        .unwrap()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(e.path()).unwrap()))
        .filter(|(name, _)| name.ends_with(".service") || name.ends_with(".timer"))
        .collect();
    units.sort();
    units
}

#[test]
fn systemd_accepts_every_unit_without_a_warning() {
    let collector = bin("fathom-collector").get_program().to_string_lossy().into_owned();
    let dir = tempfile::tempdir().unwrap();
    let units = units();
    assert!(units.len() >= 5, "the daemon unit, the timer pair and the flush pair: {units:?}");
    for (name, text) in &units {
        std::fs::write(dir.path().join(name), text.replace(INSTALLED, &collector)).unwrap();
    }
    let paths: Vec<_> = units.iter().map(|(name, _)| dir.path().join(name)).collect();
    let out = run(Command::new("systemd-analyze").args(["verify", "--man=no"]).args(&paths));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out).trim(), "", "systemd-analyze warned");
}

#[test]
fn every_exec_start_is_a_command_line_the_collector_accepts() {
    let mut checked = 0;
    for (name, text) in units() {
        for line in text.lines().filter_map(|l| l.strip_prefix("ExecStart=")) {
            let args: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(args[0], INSTALLED, "{name}");
            // `--help` after the arguments: clap parses those before it prints the help.
            let out = run(bin("fathom-collector").args(&args[1..]).arg("--help"));
            assert!(out.status.success(), "{name}: {line}: {}", stderr(&out));
            checked += 1;
        }
    }
    assert_eq!(checked, 3, "the daemon, the timer's run and the spool flush");
}
