//! Render collected OpenTelemetry metrics in the Prometheus text exposition format 0.0.4.
//!
//! Names follow the OpenTelemetry-to-Prometheus conventions: dots become underscores, the unit
//! `s` adds `_seconds`, monotonic sums are counters ending in `_total`, non-monotonic sums and
//! gauges are gauges, histograms get cumulative `_bucket{le}` series plus `_sum` and `_count`.

use std::fmt::Write as _;

use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, Metric, MetricData, ResourceMetrics};

/// A number as Prometheus writes it.
trait Sample: Copy {
    fn text(self) -> String;
}

impl Sample for u64 {
    fn text(self) -> String {
        self.to_string()
    }
}

impl Sample for i64 {
    fn text(self) -> String {
        self.to_string()
    }
}

impl Sample for f64 {
    fn text(self) -> String {
        if self.is_nan() {
            "NaN".into()
        } else if self.is_infinite() {
            if self > 0.0 { "+Inf".into() } else { "-Inf".into() }
        } else {
            self.to_string()
        }
    }
}

/// The whole exposition for `metrics`, one family per metric, series sorted by labels.
pub(super) fn render(metrics: &ResourceMetrics) -> String {
    let mut out = String::new();
    for scope in metrics.scope_metrics() {
        for metric in scope.metrics() {
            match metric.data() {
                AggregatedMetrics::F64(data) => family(&mut out, metric, data),
                AggregatedMetrics::U64(data) => family(&mut out, metric, data),
                AggregatedMetrics::I64(data) => family(&mut out, metric, data),
            }
        }
    }
    out
}

fn family<T: Sample>(out: &mut String, metric: &Metric, data: &MetricData<T>) {
    let mut name = sanitize(metric.name());
    if metric.unit() == "s" && !name.ends_with("_seconds") {
        name.push_str("_seconds");
    }
    let help = metric.description().replace('\\', "\\\\").replace('\n', "\\n");
    // `fmt::Write` into a `String` cannot fail.
    match data {
        MetricData::Sum(sum) => {
            let (kind, name) = if sum.is_monotonic() { ("counter", format!("{name}_total")) } else { ("gauge", name) };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            let mut points: Vec<(String, String)> =
                sum.data_points().map(|p| (labels(p.attributes(), None), p.value().text())).collect();
            points.sort();
            for (labels, value) in points {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        }
        MetricData::Gauge(gauge) => {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            let mut points: Vec<(String, String)> =
                gauge.data_points().map(|p| (labels(p.attributes(), None), p.value().text())).collect();
            points.sort();
            for (labels, value) in points {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        }
        MetricData::Histogram(histogram) => {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            let mut points: Vec<_> = histogram.data_points().map(|p| (labels(p.attributes(), None), p)).collect();
            points.sort_by(|a, b| a.0.cmp(&b.0));
            for (plain, point) in points {
                let mut cumulative = 0u64;
                let bounds = point.bounds().map(Sample::text).chain(std::iter::once("+Inf".to_owned()));
                for (le, count) in bounds.zip(point.bucket_counts()) {
                    cumulative += count;
                    let _ = writeln!(out, "{name}_bucket{} {cumulative}", labels(point.attributes(), Some(&le)));
                }
                let _ = writeln!(out, "{name}_sum{plain} {}", point.sum().text());
                let _ = writeln!(out, "{name}_count{plain} {}", point.count());
            }
        }
        // Not produced by our instruments (no exponential histogram is configured).
        MetricData::ExponentialHistogram(_) => {}
    }
}

/// `{k="v",...}` sorted by key, with `le` last when given; empty when there is no label.
fn labels<'a>(attributes: impl Iterator<Item = &'a KeyValue>, le: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> =
        attributes.map(|kv| (sanitize(kv.key.as_str()), kv.value.to_string())).collect();
    pairs.sort();
    if let Some(le) = le {
        pairs.push(("le".into(), le.into()));
    }
    if pairs.is_empty() {
        return String::new();
    }
    let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    format!("{{{}}}", body.join(","))
}

/// A valid Prometheus metric or label name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn sanitize(name: &str) -> String {
    let mut out: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == ':' { c } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) || out.is_empty() {
        out.insert(0, '_');
    }
    out
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_names_sanitized() {
        let kvs = [KeyValue::new("b.key", "x\"y\\z\nw"), KeyValue::new("a", "1")];
        assert_eq!(labels(kvs.iter(), Some("0.5")), r#"{a="1",b_key="x\"y\\z\nw",le="0.5"}"#);
        assert_eq!(sanitize("toolgate.http.requests"), "toolgate_http_requests");
        assert_eq!(sanitize("9lives"), "_9lives");
    }

    #[test]
    fn special_floats_use_prometheus_spelling() {
        assert_eq!(f64::INFINITY.text(), "+Inf");
        assert_eq!(f64::NEG_INFINITY.text(), "-Inf");
        assert_eq!(f64::NAN.text(), "NaN");
        assert_eq!(0.25f64.text(), "0.25");
    }
}
