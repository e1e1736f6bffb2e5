//! Prometheus metrics: one process-wide recorder, rendered at `/metrics`. Labels never carry
//! personal data: routes are the matched templates, never the raw path.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::AppState;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder on first call; later calls (several servers in one test process)
/// share it.
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("missive_commit_batch_events".into()),
                        &[1.0, 10.0, 100.0, 1000.0, 5000.0, 10000.0],
                    )
                })
                .map(|b| b.build_recorder());
            match recorder {
                Ok(r) => {
                    let handle = r.handle();
                    match metrics::set_global_recorder(r) {
                        Ok(()) => Some(handle),
                        Err(_) => {
                            tracing::warn!(
                                "a metrics recorder was installed already; /metrics will be empty"
                            );
                            None
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not built");
                    None
                }
            }
        })
        .clone()
}

pub async fn render(State(state): State<AppState>) -> Response {
    if let Some(bytes) = resident_bytes() {
        metrics::gauge!("process_resident_memory_bytes").set(bytes as f64);
    }
    match &state.metrics {
        Some(h) => (
            [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable\n",
        )
            .into_response(),
    }
}

pub async fn track_http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let started = Instant::now();
    // Route templates only (`/v1/profiles/{key}`): no personal data in spans.
    let span = tracing::info_span!("request", method = %req.method(), route = %route, status = tracing::field::Empty);
    let res = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    span.record("status", res.status().as_u16());
    let status = res.status().as_u16().to_string();
    metrics::histogram!("missive_http_request_seconds", "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("missive_http_requests_total", "route" => route, "status" => status).increment(1);
    res
}

/// The process's resident memory, from `/proc/self/status` (Linux; `None` elsewhere). Read by
/// hand: one line of one file does not warrant a process-metrics crate.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn resident_memory_is_read_from_the_vm_rss_line() {
        let status = "Name:\tmissive\nVmPeak:\t  900 kB\nVmRSS:\t  123456 kB\nThreads:\t9\n";
        assert_eq!(super::parse_vm_rss(status), Some(123_456 * 1024));
        assert_eq!(super::parse_vm_rss("Name:\tx\n"), None);
    }
}
