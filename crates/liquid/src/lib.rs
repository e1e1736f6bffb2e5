//! missive-liquid: a Shopify-compatible Liquid template engine, written for e-mail.
//!
//! It owns parsing and rendering of Liquid text: the standard tags and filters of Shopify
//! Liquid, missive's e-mail filters (`money`, `date` in the recipient's time zone,
//! `pluralize`, `url_param`), the `{% block "slot" %}` tag whose content the caller chooses,
//! and a sandbox (limits on output, loop iterations, nesting and time; no file or network
//! access: partials come only from the caller's [`Partials`]).
//!
//! It does not know about profiles, segments, MJML or HTML layout: `missive-content` builds
//! the data and picks the blocks.
//!
//! Undefined variables render as nothing (so `{{ first_name | default: "there" }}` works);
//! [`Env::strict_variables`] turns them into errors for linting, and
//! [`Template::render_with_diagnostics`] lists them without failing.
//!
//! Behaviour the caller should know:
//! - Syntax is always strict (Liquid's strict mode, plus filter arity checked at parse time).
//! - Unknown filters parse; at render they are skipped, an [`ErrorKind::UnknownFilter`] error
//!   with [`Env::strict_filters`], or listed by `render_with_diagnostics`.
//! - [`Env::escape_output`] HTML-escapes every `{{ }}`/`echo` result unless its last filter is
//!   `raw`, `escape` or `escape_once` (`json` output is escaped too: inside an attribute its quotes would end the value).
//! - `{% render %}` isolates locals, counters and cycles but, as Shopify themes do, still sees
//!   the globals.
//! - [`Limits`]: output bytes count everything written, captures included, and any filter result
//!   longer than the output limit fails; iterations are counted across all loops and ranges
//!   larger than the iteration limit are refused before allocating; the clock is read every
//!   256 iterations or partial renders; blocks nest at most 100 deep per template and 200 deep
//!   across partials.

use std::collections::BTreeSet;
use std::sync::Arc;

pub use value::{Object, Value};

use ast::Pos;

mod analysis;
mod ast;
mod email;
mod filters;
mod parse;
mod render;
mod value;

/// A parse or render error, with the 1-based line and column of the offending token (parse
/// errors) or of the tag or output that failed (render errors; an error inside a partial is
/// placed at the `include`/`render` tag and names the partial's own line and column in its
/// message). Sandbox limits hit between tags may have no location.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
}

impl Error {
    /// Gives a render error the place of the tag that failed, unless it has one already.
    pub(crate) fn at(mut self, pos: Pos) -> Error {
        if self.line.is_none() && pos.line > 0 {
            self.line = Some(pos.line);
            self.column = Some(pos.column);
        }
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The template text is not valid Liquid.
    Syntax,
    /// A filter or tag failed at render time (divided_by 0, a bad argument, …).
    Render,
    /// `strict_variables` is on and a variable is undefined.
    UndefinedVariable,
    /// An unknown filter name.
    UnknownFilter,
    /// A sandbox limit was hit (output size, loop iterations, nesting depth, time).
    Limit,
}

/// Sandbox limits for one render.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_output_bytes: usize,
    /// Total iterations across all `for`/`tablerow` loops of one render.
    pub max_loop_iterations: u64,
    /// Nesting of `include`/`render`/`block`.
    pub max_depth: usize,
    /// Wall-clock budget for one render.
    pub max_duration: Option<std::time::Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_output_bytes: 2 * 1024 * 1024,
            max_loop_iterations: 100_000,
            max_depth: 10,
            max_duration: Some(std::time::Duration::from_millis(250)),
        }
    }
}

/// Why a partial could not be had.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PartialError {
    #[error("not found")]
    NotFound,
    /// The name is not allowed (e.g. it leaves the partials folder).
    #[error("refused: {0}")]
    Refused(String),
    /// The partial exists but is not valid Liquid.
    #[error("invalid: {0}")]
    Invalid(Box<Error>),
}

/// Where `include`, `render` and `block` find their templates. Nothing else is reachable.
pub trait Partials: Sync {
    /// `{% include 'name' %}` / `{% render 'name' %}`.
    fn partial(&self, name: &str) -> Result<Arc<Template>, PartialError>;
    /// `{% block "slot" %}`: the content the caller chose for this slot, or `None` to render
    /// nothing.
    fn block(&self, slot: &str) -> Option<Arc<Template>> {
        let _ = slot;
        None
    }
}

/// No partials at all.
pub struct NoPartials;
impl Partials for NoPartials {
    fn partial(&self, _name: &str) -> Result<Arc<Template>, PartialError> {
        Err(PartialError::NotFound)
    }
}

/// The environment of one render.
pub struct Env<'a> {
    pub strict_variables: bool,
    pub strict_filters: bool,
    pub limits: Limits,
    pub partials: &'a dyn Partials,
    /// The recipient's time zone, used by `date`.
    pub time_zone: chrono_tz::Tz,
    /// What `"now"` and `"today"` mean (the engine reads no clock).
    pub now: chrono::DateTime<chrono::Utc>,
    /// ISO 4217 code used by `money` when no currency is given.
    pub currency: String,
    /// HTML-escape (`& < > " '`) the result of every `{{ … }}` and `echo`, unless its last
    /// filter is `raw`, `escape` or `escape_once`. For HTML bodies; off for subjects and
    /// text bodies. Template text and what partials and blocks render are not escaped again.
    pub escape_output: bool,
}

/// What a lenient render noticed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diagnostics {
    /// Paths of variables that were undefined when rendered, e.g. `customer.first_name`.
    pub undefined_variables: BTreeSet<String>,
    /// Unknown filter names (rendered as if absent).
    pub unknown_filters: BTreeSet<String>,
}

/// A parsed template, ready to render many times. `Send + Sync`.
#[derive(Debug)]
pub struct Template {
    nodes: ast::Block,
    /// Source length, to pre-size the output buffer.
    source_len: usize,
}

impl Template {
    /// Parses Liquid source. Syntax errors carry the 1-based line and column.
    pub fn parse(source: &str) -> Result<Template, Error> {
        let nodes = parse::parse(source)?;
        Ok(Template {
            nodes,
            source_len: source.len(),
        })
    }

    /// Renders with `globals`. Undefined variables render as nothing unless
    /// `env.strict_variables`; unknown filters are skipped unless `env.strict_filters`.
    pub fn render(&self, globals: &Object, env: &Env<'_>) -> Result<String, Error> {
        let mut r = render::Renderer::new(env, globals, false);
        self.render_with(&mut r)
    }

    /// Renders leniently (whatever the strict flags say) and lists the undefined variables and
    /// unknown filters met on the way. Other errors (bad filter input, limits) still fail.
    pub fn render_with_diagnostics(
        &self,
        globals: &Object,
        env: &Env<'_>,
    ) -> Result<(String, Diagnostics), Error> {
        let mut r = render::Renderer::new(env, globals, true);
        let out = self.render_with(&mut r)?;
        Ok((out, r.diag.take().unwrap_or_default()))
    }

    fn render_with(&self, r: &mut render::Renderer<'_>) -> Result<String, Error> {
        let mut out = String::with_capacity(self.source_len + self.source_len / 2);
        let mut scope = render::Scope::new();
        r.render_block(&mut scope, &self.nodes, &mut out)?;
        Ok(out)
    }

    /// Variable paths the template reads from its globals (not locals it assigns), e.g.
    /// `customer.first_name`, `cart.items`. Best effort: see the `analysis` module for limits.
    pub fn variables(&self) -> BTreeSet<String> {
        let mut a = analysis::Analyzer::default();
        a.block(&self.nodes);
        a.out
    }
}
