//! Figures and verdicts: latency percentiles from an hdrhistogram, correctness checks,
//! and the human table every scenario prints.

use std::fmt;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The largest latency a histogram holds (60 s, in µs); longer ones are clamped.
const MAX_LATENCY_US: u64 = 60_000_000;
/// Failures listed per check (the rest are counted).
const MAX_FAILURES: usize = 20;

/// An empty latency histogram: microseconds, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant histogram bounds are valid")
}

/// Records a latency in µs (at least 1, at most the histogram's bound).
pub fn record(histogram: &mut Histogram<u64>, micros: u64) {
    histogram.saturating_record(micros.max(1));
}

/// Adds `from` into `into` (same bounds, so this cannot fail; a mismatch would only lose samples).
pub fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    let _ = into.add(from);
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// Summarises a histogram of microseconds.
    pub fn of(histogram: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        if histogram.is_empty() {
            return Latency::default();
        }
        Latency {
            count: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            max_ms: ms(histogram.max()),
        }
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return write!(f, "no samples");
        }
        write!(
            f,
            "p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3} ms  (n={})",
            self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms, self.count
        )
    }
}

/// The correctness verdict of a run: it passes unless something failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checks {
    pub passed: bool,
    pub failures: Vec<String>,
    /// Failures beyond those listed.
    pub more_failures: usize,
}

impl Checks {
    pub fn new() -> Checks {
        Checks { passed: true, failures: Vec::new(), more_failures: 0 }
    }

    pub fn fail(&mut self, what: impl Into<String>) {
        self.passed = false;
        if self.failures.len() < MAX_FAILURES {
            self.failures.push(what.into());
        } else {
            self.more_failures += 1;
        }
    }

    /// Fails unless `ok`.
    pub fn ensure(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.fail(what());
        }
    }

    pub fn absorb(&mut self, other: Checks) {
        for failure in other.failures {
            self.fail(failure);
        }
        self.more_failures += other.more_failures;
    }
}

impl Default for Checks {
    fn default() -> Self {
        Checks::new()
    }
}

/// A titled two-column table.
pub struct Table {
    title: String,
    rows: Vec<(String, String)>,
}

impl Table {
    pub fn new(title: impl Into<String>) -> Table {
        Table { title: title.into(), rows: Vec::new() }
    }

    pub fn row(&mut self, label: impl Into<String>, value: impl fmt::Display) -> &mut Table {
        self.rows.push((label.into(), value.to_string()));
        self
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.title)?;
        let width = self.rows.iter().map(|(label, _)| label.chars().count()).max().unwrap_or(0);
        for (label, value) in &self.rows {
            writeln!(f, "  {label:<width$}  {value}")?;
        }
        Ok(())
    }
}

/// `count` events over `seconds`, per second (0 when no time passed).
pub fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        (count as f64 / seconds * 10.0).round() / 10.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_reported_in_milliseconds() {
        let mut h = histogram();
        for us in 1..=1000 {
            record(&mut h, us);
        }
        let latency = Latency::of(&h);
        assert_eq!(latency.count, 1000);
        assert!((latency.p50_ms - 0.5).abs() < 0.01, "{latency:?}");
        assert!((latency.max_ms - 1.0).abs() < 0.01, "{latency:?}");
    }

    #[test]
    fn checks_fail_and_count_beyond_the_listed_failures() {
        let mut checks = Checks::new();
        assert!(checks.passed);
        for i in 0..(MAX_FAILURES + 3) {
            checks.fail(format!("failure {i}"));
        }
        assert!(!checks.passed);
        assert_eq!(checks.failures.len(), MAX_FAILURES);
        assert_eq!(checks.more_failures, 3);
    }
}
