//! The built-in compression corpus: what servers actually compress — logs, JSON and binary
//! records — generated deterministically, so every host compresses the same bytes.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const WORDS: &[&str] = &[
    "request",
    "completed",
    "user",
    "session",
    "cache",
    "miss",
    "hit",
    "upstream",
    "timeout",
    "retry",
    "connection",
    "closed",
    "opened",
    "GET",
    "POST",
    "/api/v1/orders",
    "/healthz",
    "/api/v1/users",
    "backend",
    "pool",
    "queue",
    "latency",
    "bytes",
    "status",
    "worker",
    "shard",
    "replica",
    "commit",
    "rollback",
    "snapshot",
    "token",
    "expired",
    "granted",
];
const LEVELS: &[&str] = &["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"];

/// `size` bytes: about 45 % log lines, 35 % JSON records and 20 % binary records, interleaved
/// in 64 KiB chunks as a real data stream would be.
pub fn builtin(size: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(0xfa7_40de_u64);
    let mut out = Vec::with_capacity(size + 4096);
    let mut t: u64 = 1_760_000_000_000;
    let mut counter: u32 = 0;
    while out.len() < size {
        let chunk_end = out.len() + 64 * 1024;
        let kind = rng.random_range(0..100);
        while out.len() < chunk_end.min(size) {
            t += rng.random_range(0..40);
            match kind {
                0..45 => log_line(&mut rng, t, &mut out),
                45..80 => json_record(&mut rng, t, &mut out),
                _ => binary_record(&mut rng, &mut counter, &mut out),
            }
        }
    }
    out.truncate(size);
    out
}

fn word(rng: &mut StdRng) -> &'static str {
    WORDS[rng.random_range(0..WORDS.len())]
}

fn log_line(rng: &mut StdRng, t: u64, out: &mut Vec<u8>) {
    let line = format!(
        "{}.{:03} {} [{}] {} {} {} ip=10.{}.{}.{} took={}ms id={:016x}\n",
        t / 1000,
        t % 1000,
        LEVELS[rng.random_range(0..LEVELS.len())],
        word(rng),
        word(rng),
        word(rng),
        word(rng),
        rng.random_range(0..4),
        rng.random_range(0..256),
        rng.random_range(1..255),
        rng.random_range(0..900),
        rng.random::<u64>() & 0xffff_ffff_ffff,
    );
    out.extend_from_slice(line.as_bytes());
}

fn json_record(rng: &mut StdRng, t: u64, out: &mut Vec<u8>) {
    let line = format!(
        "{{\"ts\":{t},\"event\":\"{}\",\"user_id\":{},\"path\":\"{}\",\"status\":{},\"bytes\":{},\"tags\":[\"{}\",\"{}\"],\"ok\":{}}}\n",
        word(rng),
        rng.random_range(1000..99999),
        word(rng),
        [200, 200, 200, 201, 304, 404, 500][rng.random_range(0..7)],
        rng.random_range(0..65536),
        word(rng),
        word(rng),
        rng.random_bool(0.9),
    );
    out.extend_from_slice(line.as_bytes());
}

/// Fixed-width records with slowly changing counters and a little entropy, like metrics
/// blocks or index pages.
fn binary_record(rng: &mut StdRng, counter: &mut u32, out: &mut Vec<u8>) {
    *counter = counter.wrapping_add(rng.random_range(1..4));
    out.extend_from_slice(&counter.to_le_bytes());
    out.extend_from_slice(&(rng.random_range(0..1024u32)).to_le_bytes());
    out.extend_from_slice(&[0, 0, 1, 0]);
    out.extend_from_slice(&rng.random::<u32>().to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_compressible_like_real_data() {
        let a = builtin(1 << 20);
        assert_eq!(a.len(), 1 << 20);
        assert_eq!(a, builtin(1 << 20));
        let packed = zstd::bulk::compress(&a, 3).unwrap();
        let ratio = a.len() as f64 / packed.len() as f64;
        assert!((2.0..10.0).contains(&ratio), "zstd -3 ratio {ratio}");
    }
}
