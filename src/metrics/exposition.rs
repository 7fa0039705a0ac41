//! The Prometheus text exposition (format 0.0.4): a few lines of text per
//! metric. Simpler than adapting the daemon's plain atomic counters to a
//! metrics registry's collector API; `prometheus-client` would add a
//! registry and a second copy of each value for no gain here.

use std::fmt::Write as _;

use super::Histogram;

/// Builds a text exposition.
#[derive(Default)]
pub(crate) struct Exposition {
    out: String,
}

/// The Prometheus type of a labelled metric ([`Exposition::labelled`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// Monotonic since start.
    Counter,
    /// A value now.
    Gauge,
}

impl Exposition {
    /// A counter (monotonic since start): a count, or seconds as a float.
    pub(crate) fn counter(
        &mut self,
        name: &str,
        help: &str,
        value: impl std::fmt::Display,
    ) -> &mut Self {
        let _ = writeln!(
            self.out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
        self
    }

    /// A counter or gauge with one label, one sample per value.
    pub(crate) fn labelled(
        &mut self,
        kind: Kind,
        name: &str,
        help: &str,
        label: &str,
        values: &[(impl std::fmt::Display, u64)],
    ) -> &mut Self {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (key, value) in values {
            let _ = writeln!(self.out, "{name}{{{label}=\"{key}\"}} {value}");
        }
        self
    }

    /// A gauge (a value now).
    pub(crate) fn gauge(&mut self, name: &str, help: &str, value: f64) -> &mut Self {
        let _ = writeln!(
            self.out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
        self
    }

    /// A histogram.
    pub(crate) fn histogram(&mut self, name: &str, help: &str, h: &Histogram) -> &mut Self {
        h.render(&mut self.out, name, help);
        self
    }

    /// The text.
    pub(crate) fn finish(self) -> String {
        self.out
    }
}
