//! "Send this template to me now": a marketer's test send to their own address. It renders the
//! template as the real message would be (optionally with a real profile's data and an event),
//! signs it and hands it to the relay at once. It bypasses the rules that are about the
//! recipient as a customer (consent, topics, frequency choices and cap, quiet hours) and says
//! which; it never bypasses the suppression list, and it is refused for the address of a
//! customer who has not consented to marketing e-mail (a test send is for the tester). A test send is not a customer's message: it
//! is not queued, counted or tracked (its links go straight to their targets), its
//! unsubscribe and preference links belong to no one, and its subject says `[test]`.

use missive_core::{EmailAddress, MessageClass, MessageSource, Profile, ProfileId};
use missive_delivery::{Envelope, OutgoingEmail, SendOutcome, build_message};
use missive_engine::profiles::ProfileKey;
use missive_store::{OutboxMessage, OutboxStatus};
use serde::Serialize;

use crate::content::{ContentServiceError, MessageLinks, PreviewEvent};
use crate::policy::address_hash;
use crate::sender::Sender;

/// What to send, to whom, with which data.
#[derive(Debug, Clone, Default)]
pub struct TestSend {
    pub template: String,
    /// The marketer's own address.
    pub to: String,
    /// Render with this person's data (a profile id, user id or e-mail address); default: a
    /// person with no data.
    pub profile: Option<String>,
    /// The triggering event and a journey's events, as for a preview.
    pub event: Option<PreviewEvent>,
    pub journey_events: Option<Vec<PreviewEvent>>,
}

/// What a test send did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TestSent {
    pub to: String,
    pub template: String,
    pub message_id: String,
    /// The profile whose data was used, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_id: Option<String>,
    /// The send-time rules in force that this send did not apply (`consent`, `topic`,
    /// `frequency_preference`, `frequency_cap`, `quiet_hours`, `global_holdout`); suppression
    /// always applies.
    pub bypassed: Vec<&'static str>,
    /// Links go straight to their targets, and no open pixel is added.
    pub tracked: bool,
    /// The relay's answer.
    pub relay: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TestSendError {
    #[error("to: {0}")]
    Address(String),
    #[error("{0} is on the suppression list ({1}); a test send never bypasses it")]
    Suppressed(String, String),
    #[error(
        "{0} belongs to a customer who has not consented to marketing e-mail: send the test to your own address"
    )]
    CustomerWithoutConsent(String),
    #[error("no profile has that id, user id, anonymous id or e-mail address: {0}")]
    ProfileNotFound(String),
    #[error(transparent)]
    Content(#[from] ContentServiceError),
    #[error("the relay did not take the message: {0}")]
    Relay(String),
    #[error("the message could not be built: {0}")]
    Build(String),
    #[error(transparent)]
    Store(#[from] missive_store::StoreError),
    #[error(transparent)]
    Engine(#[from] std::sync::Arc<missive_engine::EngineError>),
}

impl Sender {
    /// Sends `request` now (see the module documentation for what it bypasses).
    pub async fn send_test(&self, request: TestSend) -> Result<TestSent, TestSendError> {
        let to = EmailAddress::parse(&request.to).map_err(|e| TestSendError::Address(e.to_string()))?;
        let store = self.engine().store();
        if let Some(s) = store
            .delivery()
            .suppression(&address_hash(self.hash_key(), to.as_str()))
            .await?
        {
            return Err(TestSendError::Suppressed(to.as_str().to_owned(), s.reason));
        }
        self.engine().sync().await?;
        let owner = self
            .engine()
            .profiles()
            .find(&ProfileKey::Identity(missive_core::IdentityKey::email(&to)))
            .await?;
        if owner.is_some_and(|p| !p.consents(missive_core::Purpose::EmailMarketing)) {
            return Err(TestSendError::CustomerWithoutConsent(to.as_str().to_owned()));
        }
        let now = self.engine().clock().now();
        let profile = match &request.profile {
            Some(key) => self
                .engine()
                .profiles()
                .find(&ProfileKey::parse(key))
                .await?
                .ok_or_else(|| TestSendError::ProfileNotFound(key.clone()))?,
            None => Profile::new(ProfileId::generate(), now),
        };
        let (_, _, marketing) = self.content().compiled_template(&request.template).await?;
        let id = format!("msg_test_{}", uuid::Uuid::now_v7().simple());
        let journey =
            crate::content::preview_journey(request.journey_events.as_deref(), request.event.as_ref());
        let message = OutboxMessage {
            id: id.clone(),
            idempotency_key: id.clone(),
            profile_id: profile.id.clone(),
            template: request.template.clone(),
            class: if marketing {
                MessageClass::Marketing
            } else {
                MessageClass::Transactional
            },
            source: MessageSource::Other("test".into()),
            step: None,
            context: serde_json::json!({"event": request.event, "journey": journey}),
            status: OutboxStatus::Queued,
            attempts: 0,
            next_attempt_at: now,
            created_at: now,
            sent_at: None,
            recipient: None,
            detail: None,
        };
        // Links that belong to no one: following them changes nobody's choices.
        let nobody = ProfileId::generate();
        let base = self.config().public_url.trim_end_matches('/');
        let links = MessageLinks {
            unsubscribe: self.links().unsubscribe_url(base, nobody.as_str(), &id),
            preferences: self.links().preferences_url(
                base,
                nobody.as_str(),
                (now + chrono::TimeDelta::days(1)).timestamp(),
            ),
        };
        let zone = missive_core::zone::time_zone_of(&profile, self.engine().config().default_time_zone);
        let email = self
            .content()
            .compose(&profile, &message, &links, zone, now, None)
            .await?;
        let config = self.config();
        let outgoing = OutgoingEmail {
            message_id: id.clone(),
            from_name: config.from_name.clone(),
            from_address: config.from_address.clone(),
            reply_to: None,
            to_address: to.as_str().to_owned(),
            to_name: None,
            subject: format!("[test] {}", email.subject),
            html: email.html,
            text: email.text,
            list_unsubscribe_url: None,
            list_unsubscribe_mailto: None,
            extra_headers: vec![("X-Missive-Source".into(), "test".into())],
        };
        let bytes = build_message(&outgoing, &config.message_id_domain, now)
            .map_err(|e| TestSendError::Build(e.to_string()))?;
        let bytes = match self.dkim() {
            Some(signer) => signer
                .sign(&bytes)
                .map_err(|e| TestSendError::Build(e.to_string()))?,
            None => bytes,
        };
        let envelope = Envelope::new(config.bounce_address.clone(), to.as_str().to_owned());
        let relay = match self.transport().send(&envelope, &bytes).await {
            SendOutcome::Delivered { response } => response,
            SendOutcome::Transient { message, .. } | SendOutcome::Permanent { message, .. } => {
                return Err(TestSendError::Relay(message));
            }
        };
        let policy = &config.policy;
        let mut bypassed = vec!["consent", "topic", "frequency_preference"];
        if policy.frequency_cap > 0 {
            bypassed.push("frequency_cap");
        }
        if policy.quiet_hours.is_some() {
            bypassed.push("quiet_hours");
        }
        if policy.global_holdout_percent > 0.0 {
            bypassed.push("global_holdout");
        }
        if !marketing {
            // Transactional messages are under none of those rules anyway.
            bypassed.clear();
        }
        tracing::info!(message = %id, template = %request.template, "test send");
        Ok(TestSent {
            to: to.as_str().to_owned(),
            template: request.template,
            message_id: id,
            profile_id: request.profile.map(|_| profile.id.to_string()),
            bypassed,
            tracked: false,
            relay,
        })
    }
}
