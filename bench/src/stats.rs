//! Latency histogram and the report line. The histogram is log-linear (≈1.5 % resolution,
//! exact below 128 ns) over shared atomics, so every connection records into one fixed
//! 30 KB table instead of keeping samples: memory stays flat whatever N and the duration.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
const LINEAR: usize = 2 * SUB;
const BUCKETS: usize = LINEAR + (64 - 7) * SUB;

pub struct Histogram {
    counts: Box<[AtomicU64]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

fn bucket_of(v: u64) -> usize {
    if v < LINEAR as u64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= 7
    let m = (v >> (e - SUB_BITS)) as usize; // in SUB..2*SUB
    LINEAR + (e as usize - 7) * SUB + (m - SUB)
}

/// A representative value (the middle) of bucket `b`.
fn value_of(b: usize) -> u64 {
    if b < LINEAR {
        return b as u64;
    }
    let e = (b - LINEAR) / SUB + 7;
    let m = ((b - LINEAR) % SUB + SUB) as u64;
    let width = 1u64 << (e - SUB_BITS as usize);
    (m << (e - SUB_BITS as usize)) + width / 2
}

impl Histogram {
    pub fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The `q`-quantile (0..=1) in nanoseconds, or None when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (b, c) in self.counts.iter().enumerate() {
            seen += c.load(Ordering::Relaxed);
            if seen >= rank {
                return Some(value_of(b));
            }
        }
        None
    }
}

/// Builds one flat JSON object by hand (no serde: the report is a handful of scalars).
#[derive(Default)]
pub struct Json(String);

impl Json {
    fn key(&mut self, k: &str) {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        let _ = write!(self.0, "\"{k}\":");
    }

    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        self.0.push('"');
        for c in v.chars() {
            match c {
                '"' => self.0.push_str("\\\""),
                '\\' => self.0.push_str("\\\\"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(self.0, "\\u{:04x}", c as u32);
                }
                c => self.0.push(c),
            }
        }
        self.0.push('"');
        self
    }

    pub fn opt_str(&mut self, k: &str, v: Option<&str>) -> &mut Self {
        match v {
            Some(s) => self.str(k, s),
            None => self.raw(k, "null"),
        }
    }

    pub fn int(&mut self, k: &str, v: u64) -> &mut Self {
        self.raw(k, &v.to_string())
    }

    pub fn num(&mut self, k: &str, v: f64) -> &mut Self {
        if v.is_finite() {
            self.raw(k, &format!("{v:.3}"))
        } else {
            self.raw(k, "null")
        }
    }

    pub fn opt_num(&mut self, k: &str, v: Option<f64>) -> &mut Self {
        match v {
            Some(v) => self.num(k, v),
            None => self.raw(k, "null"),
        }
    }

    fn raw(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        self.0.push_str(v);
        self
    }

    pub fn finish(&mut self) -> String {
        if self.0.is_empty() {
            self.0.push('{');
        }
        self.0.push('}');
        std::mem::take(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in (0..20_000u64).chain([1 << 20, 1 << 30, u64::MAX / 2, u64::MAX]) {
            let b = bucket_of(v);
            assert!(b >= last && b < BUCKETS, "v {v}");
            last = b;
            let rep = value_of(b) as f64;
            assert!(
                (rep - v as f64).abs() <= v as f64 * 0.02 + 1.0,
                "v {v} rep {rep}"
            );
        }
    }

    #[test]
    fn quantiles() {
        let h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5).unwrap() as f64 / 1000.0;
        let p99 = h.quantile(0.99).unwrap() as f64 / 1000.0;
        assert!((p50 - 50.0).abs() < 1.0, "{p50}");
        assert!((p99 - 99.0).abs() < 2.0, "{p99}");
    }

    #[test]
    fn json_escapes() {
        let s = Json::default()
            .str("a", "x\"y\n")
            .int("b", 3)
            .opt_num("c", None)
            .finish();
        assert_eq!(s, r#"{"a":"x\"y\u000a","b":3,"c":null}"#);
    }
}
