//! A journey's `webhook` step: render the body from the profile and the triggering event,
//! call the service through the SSRF-guarded client with a timeout and retries, and map fields
//! of its JSON answer into traits (ingested as missive's own identify, their source recorded
//! as `webhook:SERVICE`). At least once: a crash after the call and before the journey's
//! commit repeats it, so every request carries an `Idempotency-Key` (instance, step, visit)
//! the service can deduplicate on. The journey runner waits for the call: timeouts are capped
//! at 10 s a try.

use std::time::Duration;

use missive_core::Profile;
use missive_journey::WebhookCall;
use missive_store::JourneyInstance;
use serde_json::{Map, Value, json};

use super::Journeys;

/// What a call came to.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Outcome {
    /// A 2xx answer (its JSON body, if any).
    Answered(Value),
    Failed(String),
}

/// The data a webhook body is rendered with.
fn body_data(journey: &str, step: &str, instance: &JourneyInstance, p: &Profile) -> Value {
    let traits: Map<String, Value> = p
        .traits
        .iter()
        .map(|(k, t)| (k.clone(), t.value.clone()))
        .collect();
    json!({
        "profile": {
            "id": p.id.as_str(),
            "email": p.email(),
            "user_id": p.identities.user_ids.iter().next(),
            "traits": traits,
        },
        "event": instance.context.get("event").cloned().unwrap_or(Value::Null),
        "journey": {"name": journey, "step": step, "instance_id": instance.id},
    })
}

/// The traits a JSON answer maps to (pointers that find nothing are left out).
pub(super) fn mapped_traits(call: &WebhookCall, answer: &Value) -> Map<String, Value> {
    call.traits
        .iter()
        .filter_map(|(name, pointer)| {
            answer
                .pointer(pointer)
                .filter(|v| !v.is_null())
                .map(|v| (name.clone(), v.clone()))
        })
        .collect()
}

/// The service a call's traits are recorded from: configured, else the URL's host.
fn service(call: &WebhookCall) -> String {
    call.service.clone().unwrap_or_else(|| {
        url::Url::parse(&call.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown".into())
    })
}

impl Journeys {
    /// Runs a webhook step for `instance`; maps the answer into traits. Failures are logged
    /// and counted, never errors of the journey pass.
    pub(super) async fn call_webhook(
        &self,
        journey: &str,
        step: &str,
        visits: u64,
        call: &WebhookCall,
        instance: &JourneyInstance,
        profile: &Profile,
    ) -> Outcome {
        let outcome = self.request(journey, step, visits, call, instance, profile).await;
        match &outcome {
            Outcome::Answered(answer) => {
                metrics::counter!("missive_journey_webhooks_total", "outcome" => "answered").increment(1);
                let traits = mapped_traits(call, answer);
                if !traits.is_empty() {
                    let msg = json!({
                        "type": "identify",
                        "traits": traits,
                        "messageId": format!("webhook-{}-{step}-{visits}", instance.id),
                        "context": {"missive": {"source": format!("webhook:{}", service(call))}},
                    });
                    let _ = crate::own_events::ingest(&self.engine, profile, msg, "journey webhook").await;
                }
            }
            Outcome::Failed(why) => {
                metrics::counter!("missive_journey_webhooks_total", "outcome" => "failed").increment(1);
                tracing::warn!(journey, step, instance = %instance.id, error = %why, "journey webhook failed");
            }
        }
        outcome
    }

    async fn request(
        &self,
        journey: &str,
        step: &str,
        visits: u64,
        call: &WebhookCall,
        instance: &JourneyInstance,
        profile: &Profile,
    ) -> Outcome {
        let Some(http) = &self.http else {
            return Outcome::Failed("no HTTP client (TLS could not be set up)".into());
        };
        let url = match url::Url::parse(&call.url) {
            Ok(u) => u,
            Err(e) => return Outcome::Failed(format!("url: {e}")),
        };
        if let Err(e) = self.guard.check_url(&url) {
            return Outcome::Failed(e.to_string());
        }
        let body = match &call.body {
            Some(source) => match render(
                source,
                &body_data(journey, step, instance, profile),
                self.engine.clock().now(),
            ) {
                Ok(b) => Some(b),
                Err(e) => return Outcome::Failed(format!("body: {e}")),
            },
            None => None,
        };
        let method = reqwest::Method::from_bytes(call.method.as_bytes()).unwrap_or(reqwest::Method::POST);
        let timeout = Duration::from_millis(u64::from(
            call.timeout_ms
                .unwrap_or(5_000)
                .min(missive_journey::MAX_WEBHOOK_TIMEOUT_MS),
        ));
        let tries = 1 + call.retries.unwrap_or(2).min(3);
        let mut last = String::new();
        for attempt in 0..tries {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * (1 << attempt))).await;
            }
            let mut req = http
                .request(method.clone(), url.clone())
                .timeout(timeout)
                .header("idempotency-key", format!("{}:{step}:{visits}", instance.id));
            for (k, v) in &call.headers {
                req = req.header(k, v);
            }
            if let Some(b) = &body {
                req = req.header("content-type", "application/json").body(b.clone());
            }
            match req.send().await {
                Ok(resp) if resp.status().is_success() => {
                    let answer = resp.json::<Value>().await.unwrap_or(Value::Null);
                    return Outcome::Answered(answer);
                }
                Ok(resp) if resp.status().is_client_error() && resp.status().as_u16() != 429 => {
                    // The service refused the request itself: trying again will not help.
                    return Outcome::Failed(format!("HTTP {}", resp.status().as_u16()));
                }
                Ok(resp) => last = format!("HTTP {}", resp.status().as_u16()),
                Err(e) if crate::webhooks::http::refused_by_guard(&e) => {
                    return Outcome::Failed(crate::webhooks::error_chain(&e));
                }
                Err(e) if e.is_timeout() => last = format!("no answer within {} ms", timeout.as_millis()),
                Err(e) => last = crate::webhooks::error_chain(&e),
            }
        }
        Outcome::Failed(format!("{tries} tries; last: {last}"))
    }
}

/// Renders a webhook body (lenient: an unknown variable renders empty, as in e-mails).
fn render(source: &str, data: &Value, now: chrono::DateTime<chrono::Utc>) -> Result<String, String> {
    let template = missive_liquid::Template::parse(source).map_err(|e| e.to_string())?;
    let mut globals = missive_liquid::Object::new();
    if let Value::Object(m) = data {
        for (k, v) in m {
            globals.insert(k.clone(), missive_liquid::Value::from(v));
        }
    }
    let env = missive_liquid::Env {
        strict_variables: false,
        strict_filters: true,
        limits: missive_liquid::Limits::default(),
        partials: &missive_liquid::NoPartials,
        time_zone: chrono_tz::UTC,
        now,
        currency: "USD".into(),
        escape_output: false,
    };
    template.render(&globals, &env).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_into_traits_by_pointer_and_bodies_render_json_safely() {
        let call: WebhookCall = serde_json::from_value(json!({
            "url": "https://loyalty.example/points",
            "traits": {"loyalty_tier": "/member/tier", "points": "/points", "missing": "/nope"},
        }))
        .unwrap();
        let answer = json!({"member": {"tier": "gold"}, "points": 1200});
        assert_eq!(
            Value::Object(mapped_traits(&call, &answer)),
            json!({"loyalty_tier": "gold", "points": 1200})
        );
        assert_eq!(service(&call), "loyalty.example");
        let data =
            json!({"profile": {"email": "a\"b@example.com"}, "event": {"properties": {"total": 12.5}}});
        let body = render(
            r#"{"email": {{ profile.email | json }}, "total": {{ event.properties.total }}}"#,
            &data,
            chrono::Utc::now(),
        )
        .unwrap();
        let parsed: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed, json!({"email": "a\"b@example.com", "total": 12.5}));
    }
}
