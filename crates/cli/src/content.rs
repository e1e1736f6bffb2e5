//! `missive render`, `missive template …`, `missive block …` and `missive catalog import`.
//!
//! `render` is pure (a Liquid file and a JSON file in, text out), so any Liquid conformance
//! suite can drive missive's Liquid from outside. The others work on the store directly: stop
//! `missive serve` first, or use the HTTP API of the running server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use missive_content::blocks::BlockSource;
use missive_content::template::{Layout, TemplateSource};
use missive_liquid::{Env, Object, PartialError, Partials, Template, Value};
use missive_sending::content::{ContentService, ContentServiceError, PreviewEvent, StoredTemplate};

use crate::config::Config;
use crate::operator::audit;
use crate::stores::open_store;

#[derive(clap::Args, Debug)]
pub struct RenderArgs {
    /// The Liquid template file.
    #[arg(long)]
    pub template: PathBuf,
    /// A JSON object with the template's variables.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Directory of partials for `include` and `render`: `{% render 'x' %}` reads DIR/x.liquid,
    /// `{% render 'sections/hero' %}` DIR/sections/hero.liquid; nothing outside DIR.
    #[arg(long)]
    pub partials: Option<PathBuf>,
    /// HTML-escape every output, as in HTML bodies.
    #[arg(long)]
    pub escape: bool,
    /// Fail on undefined variables (lint mode).
    #[arg(long)]
    pub strict: bool,
    /// Fail on unknown filters (otherwise they are skipped).
    #[arg(long)]
    pub strict_filters: bool,
    /// What `"now"` and `"today"` mean for `date`, as an RFC 3339 instant
    /// (`2024-05-17T09:30:00Z`), for reproducible output; default: the system clock.
    #[arg(long)]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// The recipient's time zone for `date`.
    #[arg(long, default_value = "UTC")]
    pub time_zone: String,
}

#[derive(clap::Subcommand, Debug)]
pub enum TemplateCommand {
    /// Save (create or replace) a template; the layout follows the file: .mjml or .html.
    Save {
        /// The template's name: letters, digits, `-` and `_`.
        name: String,
        /// The body: MJML or HTML with Liquid.
        body: PathBuf,
        /// The subject line (Liquid), e.g. '{{ customer.first_name }}, your cart is waiting'.
        #[arg(long)]
        subject: String,
        /// The preheader: the preview text inboxes show after the subject (Liquid).
        #[arg(long, default_value = "")]
        preheader: String,
        /// A plain-text part; derived from the HTML when absent.
        #[arg(long)]
        text: Option<PathBuf>,
        /// A transactional e-mail (no consent needed, no unsubscribe link required).
        #[arg(long)]
        transactional: bool,
    },
    /// List the saved templates.
    List,
    /// Delete a template.
    Delete {
        /// The template's name.
        name: String,
    },
    /// Render a saved template for a real profile: subject, blocks chosen, data used, lint.
    Preview {
        /// The template's name.
        name: String,
        /// A profile id, user_id:…, email:…, anonymous_id:… or a bare value.
        #[arg(long)]
        profile: String,
        /// A JSON file with the triggering event ({"name": …, "properties": {…}}); default: the
        /// profile's latest track event.
        #[arg(long)]
        event: Option<PathBuf>,
        /// Write preview.html and preview.txt into this directory.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum BlockCommand {
    /// Save (create or replace) a block from a JSON file: {"slot", "target", "priority",
    /// "active_from", "active_until", "requires", "html", "text"}.
    Save {
        /// The block's name: letters, digits, `-` and `_`.
        name: String,
        /// A JSON file: {"slot", "target", "priority", "html", …} (docs/content.md).
        file: PathBuf,
    },
    /// List the blocks.
    List,
    /// Delete a block.
    Delete {
        /// The block's name.
        name: String,
    },
    /// Which block each saved segment gets in a slot.
    Matrix {
        /// The slot, as a template names it in `{% block "SLOT" %}`.
        slot: String,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum CatalogCommand {
    /// Load products from a JSON array or JSON-lines file (created or replaced by id).
    Import {
        /// A JSON array of products, or one product per line.
        file: PathBuf,
    },
}

/// Partials read from a directory: `name` → `DIR/name.liquid` (or `DIR/name`); `a/b` is
/// `DIR/a/b.liquid`. Names that could leave the directory (`..`, absolute paths,
/// backslashes) are refused, and so is a file whose real path (symbolic links followed) is
/// outside it.
struct DirPartials(Option<PathBuf>);

impl Partials for DirPartials {
    fn partial(&self, name: &str) -> Result<Arc<Template>, PartialError> {
        let Some(dir) = self.0.as_ref() else {
            return Err(PartialError::NotFound);
        };
        let parts: Vec<&str> = name.split('/').collect();
        if name.contains('\\') || parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
            return Err(PartialError::Refused(
                "a partial name is a path inside the partials folder: no '..', '.', empty parts, leading '/' or '\\'"
                    .into(),
            ));
        }
        let relative: PathBuf = parts.iter().collect();
        let candidates = [
            dir.join(format!("{}.liquid", relative.display())),
            dir.join(&relative),
        ];
        let Some(path) = candidates.into_iter().find(|p| p.is_file()) else {
            return Err(PartialError::NotFound);
        };
        let inside = match (dir.canonicalize(), path.canonicalize()) {
            (Ok(d), Ok(p)) => p.starts_with(d),
            _ => false,
        };
        if !inside {
            return Err(PartialError::Refused(
                "it resolves outside the partials folder".into(),
            ));
        }
        let source = std::fs::read_to_string(&path).map_err(|e| PartialError::Refused(e.to_string()))?;
        Template::parse(&source)
            .map(Arc::new)
            .map_err(|e| PartialError::Invalid(Box::new(e)))
    }
}

/// The template's variables from JSON text: the same path as the engine's data (serde_json
/// with `preserve_order`, then [`Value::from`]), so objects keep the order written.
fn data_from_json(text: &str) -> anyhow::Result<Object> {
    let json: serde_json::Value = serde_json::from_str(text)?;
    match Value::from(&json) {
        Value::Object(o) => Ok(Arc::unwrap_or_clone(o)),
        _ => bail!("the data must be a JSON object"),
    }
}

pub fn render(args: RenderArgs) -> anyhow::Result<()> {
    let source = std::fs::read_to_string(&args.template)
        .with_context(|| format!("reading {}", args.template.display()))?;
    let data: Object = match &args.data {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            data_from_json(&text).with_context(|| format!("{}", path.display()))?
        }
        None => Object::new(),
    };
    if let Some(dir) = &args.partials
        && !dir.is_dir()
    {
        bail!("--partials: {} is not a directory", dir.display());
    }
    let template = Template::parse(&source).map_err(|e| located(&args.template, &e))?;
    let time_zone = missive_core::zone::zone_named(&args.time_zone).with_context(|| {
        format!(
            "--time-zone: {:?} is not an IANA time zone like \"Europe/Paris\"",
            args.time_zone
        )
    })?;
    let partials = DirPartials(args.partials);
    let env = Env {
        strict_variables: args.strict,
        strict_filters: args.strict_filters,
        limits: missive_liquid::Limits::default(),
        partials: &partials,
        time_zone,
        now: args.now.unwrap_or_else(chrono::Utc::now),
        currency: "USD".into(),
        escape_output: args.escape,
    };
    let out = template
        .render(&data, &env)
        .map_err(|e| located(&args.template, &e))?;
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

fn located(path: &Path, e: &missive_liquid::Error) -> anyhow::Error {
    match (e.line, e.column) {
        (Some(l), Some(c)) => anyhow::anyhow!("{}:{l}:{c}: {}", path.display(), e.message),
        _ => anyhow::anyhow!("{}: {}", path.display(), e.message),
    }
}

pub async fn template(cfg: Config, cmd: TemplateCommand) -> anyhow::Result<()> {
    match cmd {
        TemplateCommand::Save {
            name,
            body,
            subject,
            preheader,
            text,
            transactional,
        } => {
            let layout = match body.extension().and_then(|e| e.to_str()) {
                Some("mjml") => Layout::Mjml,
                Some("html" | "htm" | "liquid") => Layout::Html,
                _ => bail!(
                    "{}: name the body .mjml or .html so the layout is known",
                    body.display()
                ),
            };
            let body_text =
                std::fs::read_to_string(&body).with_context(|| format!("reading {}", body.display()))?;
            let text = match text {
                Some(p) => {
                    Some(std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?)
                }
                None => None,
            };
            let store = open_store(&cfg).await?;
            let content = ContentService::new(store.clone(), cfg.content_config());
            let stored = StoredTemplate {
                source: TemplateSource {
                    subject,
                    preheader,
                    layout,
                    body: body_text,
                    text,
                },
                marketing: !transactional,
            };
            let version = content
                .save_template(&name, stored, chrono::Utc::now())
                .await
                .map_err(explain)?;
            let (_, compiled, _) = content.compiled_template(&name).await?;
            audit(
                &store,
                "template.save",
                format!("template:{name}"),
                format!("version {version}"),
            )
            .await?;
            println!("saved {name:?} version {version}");
            if !compiled.slots.is_empty() {
                println!("  block slots: {}", compiled.slots.join(", "));
            }
            Ok(())
        }
        TemplateCommand::List => {
            let store = open_store(&cfg).await?;
            let content = ContentService::new(store, cfg.content_config());
            for d in content.list_templates().await? {
                println!("{}\tv{}\t{}", d.name, d.version, d.updated_at.to_rfc3339());
            }
            Ok(())
        }
        TemplateCommand::Delete { name } => {
            let store = open_store(&cfg).await?;
            ContentService::new(store.clone(), cfg.content_config())
                .delete_template(&name)
                .await?;
            audit(
                &store,
                "template.delete",
                format!("template:{name}"),
                String::new(),
            )
            .await?;
            println!("deleted {name:?}");
            Ok(())
        }
        TemplateCommand::Preview {
            name,
            profile,
            event,
            out,
        } => {
            let event: Option<PreviewEvent> = match event {
                Some(p) => {
                    let text =
                        std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
                    Some(
                        serde_json::from_str(&text)
                            .with_context(|| format!("{}: not an event", p.display()))?,
                    )
                }
                None => None,
            };
            let engine = crate::operator::start_engine(&cfg).await?;
            let content = ContentService::new(engine.store().clone(), cfg.content_config());
            let options = missive_sending::content::PreviewOptions {
                event,
                journey_events: None,
                experiment: None,
                now: None,
            };
            let result = content.preview(&engine, &name, &profile, options).await;
            // A preview shows a person's data: recorded by profile id, never by the key given.
            let audited = match &result {
                Ok(p) => {
                    audit(
                        engine.store(),
                        "profile.preview",
                        format!("profile:{}", p.profile_id),
                        format!("template {name}"),
                    )
                    .await
                }
                Err(_) => Ok(()),
            };
            engine.shutdown().await;
            let preview = result.map_err(explain)?;
            audited?;
            println!(
                "template: {} v{}  profile: {}",
                preview.template, preview.version, preview.profile_id
            );
            println!("subject:  {}", preview.email.subject);
            for (slot, block) in &preview.email.blocks {
                println!("block {slot}: {}", block.as_deref().unwrap_or("(none matched)"));
            }
            println!("data used:");
            for (path, value) in &preview.data_used {
                println!("  {path} = {value}");
            }
            if preview.lint.is_empty() {
                println!("lint: clean");
            }
            for issue in &preview.lint {
                println!("lint {:?} {}: {}", issue.severity, issue.code, issue.message);
            }
            match out {
                Some(dir) => {
                    std::fs::create_dir_all(&dir)?;
                    std::fs::write(dir.join("preview.html"), &preview.email.html)?;
                    std::fs::write(dir.join("preview.txt"), &preview.email.text)?;
                    println!("wrote {0}/preview.html and {0}/preview.txt", dir.display());
                }
                None => println!("--- text part ---\n{}", preview.email.text),
            }
            Ok(())
        }
    }
}

pub async fn block(cfg: Config, cmd: BlockCommand) -> anyhow::Result<()> {
    let store = open_store(&cfg).await?;
    let content = ContentService::new(store.clone(), cfg.content_config());
    match cmd {
        BlockCommand::Save { name, file } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let block: BlockSource =
                serde_json::from_str(&text).with_context(|| format!("{}: not a block", file.display()))?;
            let version = content
                .save_block(&name, block, chrono::Utc::now())
                .await
                .map_err(explain)?;
            audit(
                &store,
                "block.save",
                format!("block:{name}"),
                format!("version {version}"),
            )
            .await?;
            println!("saved block {name:?} version {version}");
        }
        BlockCommand::List => {
            for d in content.list_blocks().await? {
                let b: BlockSource = serde_json::from_value(d.body)?;
                println!(
                    "{}\tslot={}\tpriority={}\ttarget={}",
                    d.name,
                    b.slot,
                    b.priority,
                    target_text(&b)
                );
            }
        }
        BlockCommand::Delete { name } => {
            content.delete_block(&name).await?;
            audit(&store, "block.delete", format!("block:{name}"), String::new()).await?;
            println!("deleted block {name:?}");
        }
        BlockCommand::Matrix { slot } => {
            let rows = content.block_matrix(&slot, chrono::Utc::now()).await?;
            println!("slot {slot:?}");
            for r in rows {
                let who = r
                    .segment
                    .as_deref()
                    .map_or("(in no targeted segment)".to_string(), |s| format!("segment {s}"));
                let what = r.block.as_deref().unwrap_or("(nothing)");
                if r.unless_matching.is_empty() {
                    println!("  {who:<32} → {what}");
                } else {
                    println!(
                        "  {who:<32} → {what}, unless they match {}",
                        r.unless_matching.join(" or ")
                    );
                }
            }
        }
    }
    Ok(())
}

fn target_text(b: &BlockSource) -> String {
    match &b.target {
        missive_content::BlockTarget::Everyone => "everyone".into(),
        missive_content::BlockTarget::Segment(s) => format!("segment {s}"),
        missive_content::BlockTarget::Expression(e) => format!("expression {e:?}"),
        missive_content::BlockTarget::Variant { experiment, variant } => {
            format!("variant {variant:?} of experiment {experiment:?}")
        }
    }
}

pub async fn catalog(cfg: Config, cmd: CatalogCommand) -> anyhow::Result<()> {
    let CatalogCommand::Import { file } = cmd;
    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let mut products = Vec::new();
    if text.trim_start().starts_with('[') {
        products =
            serde_json::from_str(&text).with_context(|| format!("{}: not a JSON array", file.display()))?;
    } else {
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            match serde_json::from_str(line) {
                Ok(v) => products.push(v),
                Err(e) => eprintln!("line {}: not JSON ({e}); skipped", n + 1),
            }
        }
    }
    let store = open_store(&cfg).await?;
    let content = ContentService::new(store.clone(), cfg.content_config());
    let mut saved = 0;
    let mut rejected = Vec::new();
    let total = products.len();
    let mut offset = 0;
    for chunk in products.chunks(5_000) {
        let (n, mut r) = content.put_products(chunk.to_vec(), chrono::Utc::now()).await?;
        saved += n;
        for x in &mut r {
            x.index += offset;
        }
        rejected.extend(r);
        offset += chunk.len();
    }
    audit(
        &store,
        "catalog.import",
        "catalog".into(),
        format!("{saved} products saved, {} rejected", rejected.len()),
    )
    .await?;
    for r in &rejected {
        eprintln!(
            "product #{} ({}): {}",
            r.index + 1,
            r.id.as_deref().unwrap_or("no id"),
            r.reason
        );
    }
    println!("{saved} of {total} products saved, {} rejected", rejected.len());
    Ok(())
}

/// A content error with its location, for the terminal.
fn explain(e: ContentServiceError) -> anyhow::Error {
    match &e {
        ContentServiceError::Content(missive_content::ContentError::Liquid { part, error }) => {
            match (error.line, error.column) {
                (Some(l), Some(c)) => anyhow::anyhow!("{part}, line {l}, column {c}: {}", error.message),
                _ => anyhow::anyhow!("{e}"),
            }
        }
        _ => anyhow::Error::new(e),
    }
}
