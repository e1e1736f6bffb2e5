//! missive-content: what an e-mail says, per recipient.
//!
//! It owns e-mail templates (subject, preheader, HTML and text bodies in Liquid; MJML or HTML
//! layout compiled once per version, CSS inlined, a text part derived when none is written),
//! content blocks (reusable modules chosen per recipient by slot, target, priority, dates and
//! required data), rule-based and best-seller product recommendations over a catalogue, the
//! variables a template sees (with `journey.cart`, the cart a journey's e-commerce events
//! make: [`cart`]), and lint.
//!
//! It is pure: it takes profiles, events, catalogue and segment decisions as data and returns
//! rendered text. It does not load anything, evaluate segment expressions (the caller answers
//! "does this recipient match that target?") or send anything. Liquid itself is
//! `missive-liquid`.

pub mod blocks;
pub mod cart;
pub mod clients;
pub mod data;
pub mod filters;
pub mod layout;
pub mod lint;
pub mod recs;
pub mod rules;
pub mod template;
mod text;

pub use blocks::{BlockSource, BlockTarget, CompiledBlock, MatrixRow, Selection, decision_matrix};
pub use data::{EventData, MessageContext, build_data};
pub use lint::{LintIssue, Severity, lint};
pub use recs::{Catalog, Popularity, Product, RecommendationRequest};
pub use template::{CompiledTemplate, Layout, RenderOptions, RenderedEmail, TemplateSource};

/// What can go wrong compiling or rendering content.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ContentError {
    #[error("invalid MJML: {0}")]
    Mjml(String),
    #[error("{0}")]
    Layout(String),
    #[error("{part}: {error}")]
    Liquid {
        /// `subject`, `preheader`, `html`, `text` or `block <name>`.
        part: String,
        error: missive_liquid::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl ContentError {
    pub(crate) fn liquid(part: impl Into<String>, error: missive_liquid::Error) -> Self {
        ContentError::Liquid {
            part: part.into(),
            error,
        }
    }
}
