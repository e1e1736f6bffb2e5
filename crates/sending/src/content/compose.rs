//! Composing one queued message: the one call the sender makes to the content side. The
//! template variables (`event`, `unsubscribe_url`, `preferences_url`, recommendations,
//! blocks) are named here and in `missive_content::data`, never in the sender.

use missive_store::OutboxMessage;

use super::*;

/// The experiment variant a message carries: the `experiment` template variable
/// (`experiment.name`, `experiment.variant`) and, in a subject-line experiment, the subject it is
/// sent with instead of the template's.
#[derive(Debug, Clone, Copy)]
pub struct Variation<'a> {
    pub experiment: &'a str,
    pub variant: &'a str,
    pub subject: Option<&'a str>,
}

/// The links of a message that only the sender can sign.
#[derive(Debug, Clone)]
pub struct MessageLinks {
    pub unsubscribe: String,
    pub preferences: String,
}

impl ContentService {
    /// Renders `message` for `profile` at `now`: its template's current version, the data
    /// (the triggering event from the message's context, recommendations, the signed links),
    /// the blocks chosen for this person, in the person's time zone `zone`, and the experiment
    /// variant the message got, if any.
    pub async fn compose(
        &self,
        profile: &Profile,
        message: &OutboxMessage,
        links: &MessageLinks,
        zone: missive_core::zone::Tz,
        now: DateTime<Utc>,
        variation: Option<Variation<'_>>,
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
                self.recs_wanted(&compiled).await?,
                now,
            )
            .await?;
        data.insert("unsubscribe_url", Value::from(links.unsubscribe.as_str()));
        data.insert("preferences_url", Value::from(links.preferences.as_str()));
        if let Some(v) = variation {
            let mut experiment = missive_liquid::Object::new();
            experiment.insert("name", Value::from(v.experiment));
            experiment.insert("variant", Value::from(v.variant));
            data.insert("experiment", Value::from(experiment));
        }
        let selection = self.choose_blocks(profile, &compiled.slots, &data, now).await?;
        let (mut email, _, data) = self.render_blocking(compiled, data, selection, zone, now).await?;
        if let Some(subject) = variation.and_then(|v| v.subject) {
            let opts = missive_content::RenderOptions {
                limits: self.config.limits,
                time_zone: zone,
                now,
                currency: &self.config.currency,
            };
            email.subject = missive_content::template::Subject::parse(subject)?.render(&data, &opts)?;
        }
        Ok(email)
    }
}
