//! `/metrics` in Prometheus text format: counts by configured connector
//! and outcome, a render latency histogram, reloads and refusals. Labels
//! hold connector ids from the configuration and fixed words only: never
//! a secret name, never a value.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the render latency buckets, in seconds.
const BUCKETS: [f64; 10] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25, 1.0,
];

/// Everything counted since start-up.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    /// Per configured connector: renders by outcome, and latency.
    /// By tenant, then connector (configured ids only).
    connectors: BTreeMap<String, BTreeMap<String, ConnectorCounts>>,
    responses: BTreeMap<u16, u64>,
    reloads: BTreeMap<&'static str, u64>,
    refused: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Default)]
struct ConnectorCounts {
    outcomes: BTreeMap<&'static str, u64>,
    latency: Histogram,
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Counts) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A render of a configured connector of a configured tenant ended
    /// with `outcome`.
    pub fn render(&self, tenant: &str, connector: &str, outcome: &'static str, took: Duration) {
        self.with(|c| {
            // The entries exist after the connector's first render: no
            // allocation per request.
            if !c.connectors.contains_key(tenant) {
                c.connectors.insert(tenant.to_string(), BTreeMap::new());
            }
            let Some(of_tenant) = c.connectors.get_mut(tenant) else {
                return;
            };
            if !of_tenant.contains_key(connector) {
                of_tenant.insert(connector.to_string(), ConnectorCounts::default());
            }
            let Some(counts) = of_tenant.get_mut(connector) else {
                return;
            };
            *counts.outcomes.entry(outcome).or_default() += 1;
            let histogram = &mut counts.latency;
            let seconds = took.as_secs_f64();
            for (bucket, bound) in histogram.buckets.iter_mut().zip(BUCKETS) {
                if seconds <= bound {
                    *bucket += 1;
                }
            }
            histogram.count += 1;
            histogram.sum += seconds;
        });
    }

    /// A response was sent with this status.
    pub fn response(&self, status: u16) {
        self.with(|c| *c.responses.entry(status).or_default() += 1);
    }

    /// A reload ended with `outcome` (`ok` or `refused`).
    pub fn reload(&self, outcome: &'static str) {
        self.with(|c| *c.reloads.entry(outcome).or_default() += 1);
    }

    /// A request or connection was refused for `why` (`token`,
    /// `forwarded`, `connections`, `busy`, ...).
    pub fn refused(&self, why: &'static str) {
        self.with(|c| *c.refused.entry(why).or_default() += 1);
    }

    /// The text format, with the host's own counts.
    pub fn render_text(&self, host: &keyward_host::Stats) -> String {
        self.with(|c| {
            let mut out = String::new();
            out.push_str("# HELP keyward_cache_reads_total Cache reads by result.\n");
            out.push_str("# TYPE keyward_cache_reads_total counter\n");
            for (result, n) in [
                ("hit", host.cache.hits),
                ("miss", host.cache.misses),
                ("stale", host.cache.stale_served),
            ] {
                let _ = writeln!(out, "keyward_cache_reads_total{{result=\"{result}\"}} {n}");
            }
            out.push_str(
                "# HELP keyward_upstream_calls_total Calls that reached the backend, by operation and outcome (a batch counts one per secret).\n",
            );
            out.push_str("# TYPE keyward_upstream_calls_total counter\n");
            for (operation, outcome, n) in &host.upstream {
                let _ = writeln!(
                    out,
                    "keyward_upstream_calls_total{{operation=\"{operation}\",outcome=\"{outcome}\"}} {n}"
                );
            }
            out.push_str("# HELP keyward_decisions_total Policy decisions by kind (denied, rate_limited, ...).\n");
            out.push_str("# TYPE keyward_decisions_total counter\n");
            for (kind, n) in &host.decisions {
                let _ = writeln!(out, "keyward_decisions_total{{decision=\"{kind}\"}} {n}");
            }
            out.push_str(
                "# HELP keyward_render_paths_total Renders by how the connector ran: sync (no fiber), rerun (began sync, reached an import that may wait, ran again async), async.\n",
            );
            out.push_str("# TYPE keyward_render_paths_total counter\n");
            let paths = &host.render_paths;
            for (path, n) in [
                ("sync", paths.sync),
                ("rerun", paths.rerun),
                ("async", paths.async_only),
            ] {
                let _ = writeln!(out, "keyward_render_paths_total{{path=\"{path}\"}} {n}");
            }
            out.push_str(
                "# HELP keyward_render_plans_total Renders by how render plans served them: hit (the connector did not run), recorded (it ran and its plan was kept), skipped (it ran unrecorded: opted out, revealed, listed, invalidated or trapped).\n",
            );
            out.push_str("# TYPE keyward_render_plans_total counter\n");
            let plans = &host.render_plans;
            for (outcome, n) in [
                ("hit", plans.hit),
                ("recorded", plans.recorded),
                ("skipped", plans.skipped),
            ] {
                let _ = writeln!(out, "keyward_render_plans_total{{outcome=\"{outcome}\"}} {n}");
            }
            out.push_str("# HELP keyward_renders_total Renders by tenant, connector and outcome.\n");
            out.push_str("# TYPE keyward_renders_total counter\n");
            let connectors = || {
                c.connectors.iter().flat_map(|(tenant, of_tenant)| {
                    of_tenant
                        .iter()
                        .map(move |(connector, counts)| (tenant, connector, counts))
                })
            };
            for (tenant, connector, counts) in connectors() {
                let labels = format!("tenant=\"{tenant}\",connector=\"{connector}\"");
                for (outcome, n) in &counts.outcomes {
                    let _ = writeln!(out, "keyward_renders_total{{{labels},outcome=\"{outcome}\"}} {n}");
                }
            }
            out.push_str("# HELP keyward_render_seconds Render latency by tenant and connector.\n");
            out.push_str("# TYPE keyward_render_seconds histogram\n");
            for (tenant, connector, counts) in connectors() {
                let labels = format!("tenant=\"{tenant}\",connector=\"{connector}\"");
                let h = &counts.latency;
                for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                    let _ = writeln!(out, "keyward_render_seconds_bucket{{{labels},le=\"{bound}\"}} {n}");
                }
                let _ = writeln!(
                    out,
                    "keyward_render_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(out, "keyward_render_seconds_sum{{{labels}}} {}", h.sum);
                let _ = writeln!(out, "keyward_render_seconds_count{{{labels}}} {}", h.count);
            }
            out.push_str("# HELP keyward_http_responses_total Responses by status.\n");
            out.push_str("# TYPE keyward_http_responses_total counter\n");
            for (status, n) in &c.responses {
                let _ = writeln!(out, "keyward_http_responses_total{{status=\"{status}\"}} {n}");
            }
            out.push_str("# HELP keyward_reloads_total Configuration reloads by outcome.\n");
            out.push_str("# TYPE keyward_reloads_total counter\n");
            for (outcome, n) in &c.reloads {
                let _ = writeln!(out, "keyward_reloads_total{{outcome=\"{outcome}\"}} {n}");
            }
            out.push_str("# HELP keyward_refused_total Requests and connections refused, by why.\n");
            out.push_str("# TYPE keyward_refused_total counter\n");
            for (why, n) in &c.refused {
                let _ = writeln!(out, "keyward_refused_total{{why=\"{why}\"}} {n}");
            }
            out
        })
    }
}
