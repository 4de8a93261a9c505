//! `--param PROBE.NAME=VALUE`, `--label k=v` and `--tag k=v`: parsed and checked before anything
//! runs, so a typo costs a second, not a night.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

use crate::probe::{Effort, Probe, ProbeError, parse_duration};
use crate::probes::{self, EFFORT_PARAMS};

/// Overrides by probe id, then parameter name.
pub type Overrides = BTreeMap<String, BTreeMap<String, String>>;

/// `k=v` with a non-empty key.
pub fn parse_pair(text: &str, flag: &str) -> Result<(String, String)> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => bail!("malformed {flag} `{text}`: expected KEY=VALUE"),
    }
}

/// Parses every `--param` and checks that the probe and the parameter exist.
pub fn parse_overrides(items: &[String]) -> Result<Overrides> {
    let mut out = Overrides::new();
    for item in items {
        let malformed = || {
            anyhow::anyhow!(
                "malformed --param `{item}`: expected PROBE.NAME=VALUE, e.g. cpu.aes_gcm.buffer=64KiB"
            )
        };
        let (key, value) = item.split_once('=').ok_or_else(malformed)?;
        let (probe_id, name) = key.rsplit_once('.').ok_or_else(malformed)?;
        if name.is_empty() || !probe_id.contains('.') {
            return Err(malformed());
        }
        let Some(probe) = probes::find(probe_id) else {
            bail!("--param `{item}`: unknown probe `{probe_id}` (see `fathom-collector probes`)");
        };
        let known = probe.params().iter().chain(EFFORT_PARAMS).map(|p| p.name);
        if !known.clone().any(|n| n == name) {
            let names: Vec<_> = known.collect();
            bail!(
                "--param `{item}`: probe {probe_id} has no parameter `{name}` (it has: {})",
                names.join(", ")
            );
        }
        out.entry(probe_id.to_string()).or_default().insert(name.to_string(), value.to_string());
    }
    Ok(out)
}

/// The probe's parameters: its defaults with the overrides on top (effort knobs excluded).
pub fn resolve(probe: &dyn Probe, overrides: &Overrides) -> BTreeMap<String, String> {
    let given = overrides.get(probe.id());
    probe
        .params()
        .iter()
        .map(|p| {
            let value = given.and_then(|g| g.get(p.name)).cloned().unwrap_or_else(|| p.default.to_string());
            (p.name.to_string(), value)
        })
        .collect()
}

/// Checks every probe's effort and parameter values before anything runs.
pub fn check_all(probes: &[Box<dyn Probe>], base: Effort, overrides: &Overrides) -> Result<()> {
    for probe in probes {
        effort(base, probe.id(), overrides)?;
        match probe.check(&resolve(probe.as_ref(), overrides)) {
            Ok(()) => {}
            Err(ProbeError::Param { name, reason }) => bail!("--param {}.{name}: {reason}", probe.id()),
            Err(e) => bail!("{}: {e}", probe.id()),
        }
    }
    Ok(())
}

/// The suite's effort with the probe's effort overrides applied.
pub fn effort(base: Effort, probe_id: &str, overrides: &Overrides) -> Result<Effort> {
    let mut e = base;
    let Some(given) = overrides.get(probe_id) else { return Ok(e) };
    let bad = |name: &str, v: &str, why: String| anyhow::anyhow!("--param {probe_id}.{name}={v}: {why}");
    for (name, v) in given {
        match name.as_str() {
            "budget" => e.budget = parse_duration(v).map_err(|r| bad(name, v, r))?,
            "warmup" => e.warmup = parse_duration(v).map_err(|r| bad(name, v, r))?,
            "min_reps" => e.min_reps = v.parse().map_err(|_| bad(name, v, "not a count".into()))?,
            "max_reps" => e.max_reps = v.parse().map_err(|_| bad(name, v, "not a count".into()))?,
            "target_cv" => {
                e.target_cv = v.parse().map_err(|_| bad(name, v, "not a fraction like 0.02".into()))?
            }
            _ => {}
        }
    }
    if e.budget.is_zero() {
        bail!("--param {probe_id}.budget: must be more than zero");
    }
    if !(e.target_cv > 0.0 && e.target_cv < 1.0) {
        bail!("--param {probe_id}.target_cv: must be a fraction between 0 and 1, e.g. 0.02");
    }
    if e.min_reps == 0 || e.max_reps < e.min_reps {
        bail!("--param {probe_id}: need 1 <= min_reps <= max_reps (got {} and {})", e.min_reps, e.max_reps);
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::Suite;

    #[test]
    fn good_overrides_parse() {
        let o =
            parse_overrides(&["cpu.aes_gcm.buffer=64KiB".into(), "cpu.aes_gcm.budget=1s".into()]).unwrap();
        let probe = probes::find("cpu.aes_gcm").unwrap();
        assert_eq!(resolve(probe.as_ref(), &o)["buffer"], "64KiB");
        assert_eq!(resolve(probe.as_ref(), &o)["threads"], "all");
        let e = effort(Suite::Quick.effort(), "cpu.aes_gcm", &o).unwrap();
        assert_eq!(e.budget, std::time::Duration::from_secs(1));
    }

    #[test]
    fn bad_overrides_say_what_is_wrong() {
        let err = |s: &str| parse_overrides(&[s.to_string()]).unwrap_err().to_string();
        assert!(err("cpu.aes_gcm.buffer").contains("malformed --param"));
        assert!(err("buffer=1").contains("malformed --param"));
        assert!(err("gpu.magic.x=1").contains("unknown probe `gpu.magic`"));
        assert!(err("cpu.aes_gcm.bufer=1").contains("has no parameter `bufer`"));
        for bad in ["min_reps=0", "target_cv=-1", "target_cv=NaN", "budget=0s", "budget=99999999999999999999"]
        {
            let o = parse_overrides(&[format!("cpu.aes_gcm.{bad}")]).unwrap();
            assert!(effort(Suite::Quick.effort(), "cpu.aes_gcm", &o).is_err(), "{bad}");
        }
    }

    #[test]
    fn pairs() {
        assert_eq!(parse_pair("site=fra1", "--label").unwrap(), ("site".into(), "fra1".into()));
        assert!(parse_pair("=x", "--label").is_err());
        assert!(parse_pair("nothing", "--tag").unwrap_err().to_string().contains("--tag"));
    }
}
