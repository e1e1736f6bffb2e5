//! Composing one queued message: the one call the sender makes to the content side. The
//! template variables (`event`, `unsubscribe_url`, `preferences_url`, recommendations,
//! blocks) are named here and in `missive_content::data`, never in the sender.

use missive_store::OutboxMessage;

use super::*;

/// The links of a message that only the sender can sign.
#[derive(Debug, Clone)]
pub struct MessageLinks {
    pub unsubscribe: String,
    pub preferences: String,
}

impl ContentService {
    /// Renders `message` for `profile` at `now`: its template's current version, the data
    /// (the triggering event from the message's context, recommendations, the signed links),
    /// the blocks chosen for this person, in the person's time zone `zone`.
    pub async fn compose(
        &self,
        profile: &Profile,
        message: &OutboxMessage,
        links: &MessageLinks,
        zone: missive_core::zone::Tz,
        now: DateTime<Utc>,
    ) -> Result<RenderedEmail, ContentServiceError> {
        let (_, compiled, _) = self.compiled_template(&message.template).await?;
        let event: Option<PreviewEvent> = message
            .context
            .get("event")
            .filter(|e| !e.is_null())
            .and_then(|e| serde_json::from_value(e.clone()).ok());
        let mut data = self
            .data_for(
                profile,
                event.as_ref(),
                message.context.get("journey"),
                None,
                &message.id,
                now,
            )
            .await?;
        data.insert("unsubscribe_url", Value::from(links.unsubscribe.as_str()));
        data.insert("preferences_url", Value::from(links.preferences.as_str()));
        let selection = self.choose_blocks(profile, &compiled.slots, &data, now).await?;
        let (email, _, _) = self.render_blocking(compiled, data, selection, zone, now).await?;
        Ok(email)
    }
}
