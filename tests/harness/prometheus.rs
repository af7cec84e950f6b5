//! A strict parser of the Prometheus text exposition format (0.0.4), for tests of `GET /metrics`.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context as _, anyhow, bail, ensure};

/// Every sample: (metric name, labels) → value.
pub type Series = HashMap<(String, BTreeMap<String, String>), f64>;

/// A strict parser of the text exposition format 0.0.4: every sample belongs to a family
/// declared by one `# TYPE` line before it, names and label names are valid, label values are
/// properly escaped, values are numbers, no series repeats, and histogram buckets are
/// cumulative and end with `+Inf` equal to `_count`.
pub fn parse(text: &str) -> anyhow::Result<Series> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut series = Series::new();
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let at = || format!("line {}: `{line}`", n + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(name), _) => ensure!(valid_name(name), "bad name, {}", at()),
                (Some("TYPE"), Some(name), Some(kind)) => {
                    ensure!(valid_name(name), "bad name, {}", at());
                    ensure!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "bad type, {}",
                        at()
                    );
                    ensure!(
                        types.insert(name.to_owned(), kind.to_owned()).is_none(),
                        "family declared twice, {}",
                        at()
                    );
                    current = Some(name.to_owned());
                }
                _ => bail!("bad comment, {}", at()),
            }
            continue;
        }
        ensure!(!line.trim().is_empty(), "blank line, {}", at());
        let (name, labels, value) = sample(line).with_context(at)?;
        let family = current.as_deref().with_context(|| format!("sample before any TYPE, {}", at()))?;
        let kind = types.get(family).map(String::as_str).unwrap_or_default();
        let fits = match kind {
            "histogram" => {
                [format!("{family}_bucket"), format!("{family}_sum"), format!("{family}_count")].contains(&name)
            }
            _ => name == family,
        };
        ensure!(fits, "sample `{name}` outside its family `{family}`, {}", at());
        ensure!(kind != "counter" || name.ends_with("_total"), "counter without _total, {}", at());
        ensure!(series.insert((name, labels), value).is_none(), "series repeated, {}", at());
    }
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let count_key = format!("{family}_count");
        for ((name, labels), count) in series.iter().filter(|((n, _), _)| *n == count_key) {
            let mut buckets: Vec<(f64, f64)> = series
                .iter()
                .filter(|((n, l), _)| *n == format!("{family}_bucket") && strip_le(l) == *labels)
                .map(|((_, l), v)| Ok((le(l)?, *v)))
                .collect::<anyhow::Result<_>>()?;
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            ensure!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{name}{labels:?}: buckets not cumulative");
            ensure!(
                buckets.last().map(|b| (b.0, b.1)) == Some((f64::INFINITY, *count)),
                "{name}{labels:?}: +Inf bucket != count"
            );
        }
    }
    Ok(series)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn sample(line: &str) -> anyhow::Result<(String, BTreeMap<String, String>, f64)> {
    let name_end = line.find(['{', ' ']).context("no value")?;
    let name = &line[..name_end];
    ensure!(valid_name(name), "bad metric name");
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        loop {
            let start = chars.peek().map(|(i, _)| *i).context("unterminated labels")?;
            if body[start..].starts_with('}') {
                rest = &body[start + 1..];
                break;
            }
            let eq = body[start..].find("=\"").context("label without =\"")? + start;
            let key = &body[start..eq];
            ensure!(valid_name(key) && !key.starts_with("__"), "bad label name `{key}`");
            while chars.peek().is_some_and(|(i, _)| *i < eq + 2) {
                chars.next();
            }
            let mut value = String::new();
            loop {
                match chars.next().context("unterminated label value")? {
                    (_, '\\') => match chars.next().context("dangling escape")?.1 {
                        'n' => value.push('\n'),
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        other => bail!("bad escape `\\{other}`"),
                    },
                    (_, '"') => break,
                    (_, '\n') => bail!("raw newline in label value"),
                    (_, c) => value.push(c),
                }
            }
            ensure!(labels.insert(key.to_owned(), value).is_none(), "label `{key}` repeated");
            match chars.next().context("unterminated labels")? {
                (_, ',') => {}
                (i, '}') => {
                    rest = &body[i + 1..];
                    break;
                }
                (_, c) => bail!("unexpected `{c}` after label"),
            }
        }
    }
    let value = rest.strip_prefix(' ').context("no space before value")?;
    ensure!(!value.contains(' '), "timestamps are not produced");
    Ok((name.to_owned(), labels, number(value)?))
}

fn number(text: &str) -> anyhow::Result<f64> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text.parse().map_err(|_| anyhow!("bad value `{text}`")),
    }
}

fn le(labels: &BTreeMap<String, String>) -> anyhow::Result<f64> {
    number(labels.get("le").context("bucket without le")?)
}

fn strip_le(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels.iter().filter(|(k, _)| *k != "le").map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The value of the series `name{labels}`, 0 when absent (a counter not yet moved).
pub fn value(series: &Series, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    series.get(&(name.to_owned(), labels)).copied().unwrap_or(0.0)
}
