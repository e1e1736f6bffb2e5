//! The API's error codes: one list for every error body (`{"code": …}`) and every rejected
//! event of a batch, so that clients can match on them and docs/errors.md can describe each.
//! A test checks that the catalogue there names exactly these.

use serde::Serialize;

macro_rules! codes {
    ($($variant:ident => $text:literal,)*) => {
        /// A machine-readable reason, stable across versions (new codes may be added).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code, in the catalogue's order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as clients see it (`invalid_value`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                }
            }
        }
    };
}

// Written once here; the text is what the API has always answered.
codes! {
    // A request's body or an event in it.
    InvalidBody => "invalid_body",
    InvalidJson => "invalid_json",
    InvalidGzip => "invalid_gzip",
    UnsupportedEncoding => "unsupported_encoding",
    MessageTooLarge => "message_too_large",
    BatchTooLarge => "batch_too_large",
    InvalidMessage => "invalid_message",
    InvalidType => "invalid_type",
    InvalidValue => "invalid_value",
    MissingField => "missing_field",
    MissingIdentity => "missing_identity",
    InvalidTimestamp => "invalid_timestamp",
    InvalidAmount => "invalid_amount",
    InvalidCursor => "invalid_cursor",
    InvalidId => "invalid_id",
    InvalidName => "invalid_name",
    Erased => "erased",
    // Access.
    Unauthorized => "unauthorized",
    Forbidden => "forbidden",
    RateLimited => "rate_limited",
    InvalidRole => "invalid_role",
    InvalidLabel => "invalid_label",
    LastAdminKey => "last_admin_key",
    // What a request names.
    NotFound => "not_found",
    ProfileNotFound => "profile_not_found",
    SegmentNotFound => "segment_not_found",
    // Segments.
    SegmentParseError => "segment_parse_error",
    SegmentTypeError => "segment_type_error",
    SegmentInUse => "segment_in_use",
    SegmentDependencyError => "segment_dependency_error",
    // Templates, blocks and the catalogue.
    TemplateInvalid => "template_invalid",
    MjmlInvalid => "mjml_invalid",
    LiquidSyntaxError => "liquid_syntax_error",
    LiquidRenderError => "liquid_render_error",
    TemplateLimitExceeded => "template_limit_exceeded",
    TooManyProducts => "too_many_products",
    // Journeys, broadcasts, delivery.
    JourneyInvalid => "journey_invalid",
    BroadcastInvalid => "broadcast_invalid",
    BroadcastState => "broadcast_state",
    ExperimentInvalid => "experiment_invalid",
    ExperimentState => "experiment_state",
    ExperimentExists => "experiment_exists",
    SourceSignature => "source_signature",
    SourceTopic => "source_topic",
    SourceUnmapped => "source_unmapped",
    WebhookInvalid => "webhook_invalid",
    WebhookExists => "webhook_exists",
    ModelInvalid => "model_invalid",
    ModelRefused => "model_refused",
    ModelBusy => "model_busy",
    RecommendationsNotTrained => "recommendations_not_trained",
    DeliveryOff => "delivery_off",
    Suppressed => "suppressed",
    RecipientNotConsented => "recipient_not_consented",
    RelayRefused => "relay_refused",
    NotAReport => "not_a_report",
    // Privacy.
    InvalidConsent => "invalid_consent",
    RetentionNotConfigured => "retention_not_configured",
    // The server.
    Internal => "internal",
    Unavailable => "unavailable",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            let s = c.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{s}");
        }
    }

    /// docs/errors.md lists every code, and only these.
    #[test]
    fn the_catalogue_in_the_docs_names_exactly_these_codes() {
        let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/errors.md"));
        let documented: Vec<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split_once('`').map(|(code, _)| code))
            .collect();
        let known: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        let missing: Vec<_> = known.iter().filter(|c| !documented.contains(c)).collect();
        let unknown: Vec<_> = documented.iter().filter(|c| !known.contains(c)).collect();
        assert!(missing.is_empty(), "codes not in docs/errors.md: {missing:?}");
        assert!(
            unknown.is_empty(),
            "docs/errors.md lists codes that do not exist: {unknown:?}"
        );
    }
}
