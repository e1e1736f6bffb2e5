//! Bulk import of Segment-format JSONL and of CSV transaction logs, through the same pipeline
//! as live events. Re-running an import adds nothing: every line gets a message id derived
//! from its content (and its rank among identical lines), unless it carries its own.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use missive_core::message::{parse_time, validate_message};
use missive_core::{Event, EventKind};
use serde_json::{Map, Value, json};
use tokio::task::JoinSet;

use crate::{Engine, EngineError};

/// How to read the file.
#[derive(Debug, Clone)]
pub enum ImportFormat {
    /// One Segment message per line, each with its `type`.
    Jsonl,
    /// One transaction per row, turned into a track event.
    Csv(CsvMapping),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimiter {
    Char(u8),
    /// Any run of spaces or tabs (CDNOW's layout).
    Whitespace,
}

/// Which column holds what. A column is named by its header or by its 0-based index.
#[derive(Debug, Clone)]
pub struct CsvMapping {
    pub delimiter: Delimiter,
    pub has_header: bool,
    pub user_col: String,
    pub time_col: String,
    /// chrono format of the time column (`%Y%m%d`); RFC 3339 when `None`.
    pub time_format: Option<String>,
    pub amount_col: Option<String>,
    pub quantity_col: Option<String>,
    /// The event each row becomes; `Order Completed` feeds the order aggregates.
    pub event: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line: u64,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub lines: u64,
    pub stored: u64,
    pub duplicates: u64,
    /// Events naming a person who was erased: not stored.
    pub erased: u64,
    pub bad: u64,
    /// The first bad lines, with their reasons (all are counted in `bad`).
    pub bad_lines: Vec<BadLine>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("column {0:?} is not in the header")]
    UnknownColumn(String),
    #[error("engine: {0}")]
    Engine(#[from] std::sync::Arc<EngineError>),
}

const CHUNK: usize = 2_000;
const IN_FLIGHT: usize = 4;
const BAD_LINES_KEPT: usize = 100;

/// Imports `path`; `progress` is called with the bytes read so far after each chunk.
pub async fn import_file(
    engine: &Engine,
    path: &Path,
    format: &ImportFormat,
    mut progress: impl FnMut(u64, &ImportReport),
) -> Result<ImportReport, ImportError> {
    let io_err = |source| ImportError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut report = ImportReport::default();
    let mut seen: HashMap<u64, u32> = HashMap::new();
    let mut header: Option<Vec<String>> = None;
    let mut columns: Option<Columns> = None;
    let mut chunk: Vec<Event> = Vec::with_capacity(CHUNK);
    let mut inflight: JoinSet<Result<crate::IngestOutcome, std::sync::Arc<EngineError>>> = JoinSet::new();
    let mut bytes = 0u64;
    let mut line = String::new();
    let mut line_no = 0u64;
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(io_err)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        line_no += 1;
        let text = line.trim_end_matches(['\r', '\n']);
        if text.trim().is_empty() {
            continue;
        }
        if let ImportFormat::Csv(m) = format
            && columns.is_none()
        {
            if m.has_header && header.is_none() {
                header = Some(split_fields(text, m.delimiter));
                continue;
            }
            columns = Some(Columns::resolve(m, header.as_deref())?);
        }
        report.lines += 1;
        let fields_key = match format {
            ImportFormat::Jsonl => text.to_owned(),
            ImportFormat::Csv(m) => split_fields(text, m.delimiter).join("\t"),
        };
        let digest = twox_hash::XxHash3_64::oneshot(fields_key.as_bytes());
        let rank = seen.entry(digest).or_insert(0);
        let message_id = format!("imp-{digest:016x}-{rank}");
        *rank += 1;
        let parsed = match format {
            ImportFormat::Jsonl => jsonl_event(text, &message_id),
            ImportFormat::Csv(m) => {
                let cols = columns
                    .as_ref()
                    .ok_or_else(|| ImportError::UnknownColumn(m.user_col.clone()))?;
                csv_event(&split_fields(text, m.delimiter), cols, m, &message_id)
            }
        };
        match parsed {
            Ok(e) => chunk.push(e),
            Err(reason) => {
                report.bad += 1;
                if report.bad_lines.len() < BAD_LINES_KEPT {
                    report.bad_lines.push(BadLine {
                        line: line_no,
                        reason,
                    });
                }
            }
        }
        if chunk.len() >= CHUNK {
            submit(engine, &mut inflight, &mut chunk, &mut report).await?;
            progress(bytes, &report);
        }
    }
    submit(engine, &mut inflight, &mut chunk, &mut report).await?;
    while let Some(done) = inflight.join_next().await {
        record(done, &mut report)?;
    }
    progress(bytes, &report);
    Ok(report)
}

async fn submit(
    engine: &Engine,
    inflight: &mut JoinSet<Result<crate::IngestOutcome, std::sync::Arc<EngineError>>>,
    chunk: &mut Vec<Event>,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    if !chunk.is_empty() {
        let events = std::mem::replace(chunk, Vec::with_capacity(CHUNK));
        let engine = engine.clone();
        inflight.spawn(async move { engine.ingest(events).await });
    }
    while inflight.len() >= IN_FLIGHT {
        if let Some(done) = inflight.join_next().await {
            record(done, report)?;
        }
    }
    Ok(())
}

fn record(
    done: Result<Result<crate::IngestOutcome, std::sync::Arc<EngineError>>, tokio::task::JoinError>,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let outcome = done.map_err(|e| {
        std::sync::Arc::new(EngineError::Store(missive_store::StoreError::Task(e.to_string())))
    })??;
    report.stored += outcome.stored as u64;
    report.duplicates += outcome.duplicates as u64;
    report.erased += outcome.erased.len() as u64;
    Ok(())
}

fn split_fields(text: &str, d: Delimiter) -> Vec<String> {
    match d {
        Delimiter::Whitespace => text.split_whitespace().map(str::to_owned).collect(),
        Delimiter::Char(c) => {
            let mut rdr = csv::ReaderBuilder::new()
                .has_headers(false)
                .delimiter(c)
                .from_reader(text.as_bytes());
            rdr.records()
                .next()
                .and_then(Result::ok)
                .map(|r| r.iter().map(|f| f.trim().to_owned()).collect())
                .unwrap_or_default()
        }
    }
}

fn jsonl_event(text: &str, message_id: &str) -> Result<Event, String> {
    let mut v: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    if let Value::Object(m) = &mut v
        && !m.contains_key("messageId")
    {
        m.insert("messageId".into(), Value::String(message_id.to_owned()));
    }
    validate_message(v, None, None, Utc::now()).map_err(|r| {
        if r.field.is_empty() {
            r.message
        } else {
            format!("{}: {}", r.field, r.message)
        }
    })
}

struct Columns {
    user: usize,
    time: usize,
    amount: Option<usize>,
    quantity: Option<usize>,
}

impl Columns {
    fn resolve(m: &CsvMapping, header: Option<&[String]>) -> Result<Self, ImportError> {
        let find = |name: &str| -> Result<usize, ImportError> {
            if let Some(h) = header
                && let Some(i) = h.iter().position(|c| c == name)
            {
                return Ok(i);
            }
            name.parse::<usize>()
                .map_err(|_| ImportError::UnknownColumn(name.to_owned()))
        };
        Ok(Self {
            user: find(&m.user_col)?,
            time: find(&m.time_col)?,
            amount: m.amount_col.as_deref().map(find).transpose()?,
            quantity: m.quantity_col.as_deref().map(find).transpose()?,
        })
    }
}

/// One transaction row, read by a [`CsvMapping`].
#[derive(Debug, Clone, PartialEq)]
pub struct CsvRow {
    pub user: String,
    pub timestamp: DateTime<Utc>,
    pub amount: Option<f64>,
    pub quantity: Option<f64>,
}

fn csv_row(fields: &[String], c: &Columns, m: &CsvMapping) -> Result<CsvRow, String> {
    let get = |i: usize, what: &str| {
        fields
            .get(i)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("missing {what} (column {i})"))
    };
    let user = get(c.user, "user id")?;
    let raw_time = get(c.time, "time")?;
    let timestamp = match &m.time_format {
        None => parse_time(raw_time).ok_or_else(|| format!("time {raw_time:?} is not ISO-8601"))?,
        Some(f) => NaiveDateTime::parse_from_str(raw_time, f)
            .map(|t| t.and_utc())
            .or_else(|_| {
                NaiveDate::parse_from_str(raw_time, f).map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
            })
            .map_err(|_| format!("time {raw_time:?} does not match {f:?}"))?,
    };
    let number = |i: Option<usize>, what: &str| -> Result<Option<f64>, String> {
        i.map(|i| {
            let raw = get(i, what)?;
            raw.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("{what} {raw:?} is not a number"))
        })
        .transpose()
    };
    Ok(CsvRow {
        user: user.clone(),
        timestamp,
        amount: number(c.amount, "amount")?,
        quantity: number(c.quantity, "quantity")?,
    })
}

/// Every row of a CSV transaction file, read by `m` without ingesting anything (for models
/// trained from files); rows that do not read are counted in the report, with reasons.
pub fn read_csv_rows(
    path: &std::path::Path,
    m: &CsvMapping,
) -> Result<(Vec<CsvRow>, ImportReport), ImportError> {
    use std::io::BufRead as _;
    let io_err = |source| ImportError::Io {
        path: path.display().to_string(),
        source,
    };
    let reader = std::io::BufReader::new(std::fs::File::open(path).map_err(io_err)?);
    let (mut rows, mut report) = (Vec::new(), ImportReport::default());
    let (mut header, mut columns): (Option<Vec<String>>, Option<Columns>) = (None, None);
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(io_err)?;
        let text = line.trim_end_matches('\r');
        if text.trim().is_empty() {
            continue;
        }
        if m.has_header && header.is_none() {
            header = Some(split_fields(text, m.delimiter));
            continue;
        }
        let cols = match &columns {
            Some(c) => c,
            None => columns.insert(Columns::resolve(m, header.as_deref())?),
        };
        report.lines += 1;
        match csv_row(&split_fields(text, m.delimiter), cols, m) {
            Ok(r) => rows.push(r),
            Err(reason) => {
                report.bad += 1;
                if report.bad_lines.len() < BAD_LINES_KEPT {
                    report.bad_lines.push(BadLine {
                        line: i as u64 + 1,
                        reason,
                    });
                }
            }
        }
    }
    Ok((rows, report))
}

fn csv_event(fields: &[String], c: &Columns, m: &CsvMapping, message_id: &str) -> Result<Event, String> {
    let row = csv_row(fields, c, m)?;
    let (user, timestamp) = (&row.user, row.timestamp);
    let mut props = Map::new();
    if let Some(amount) = row.amount {
        props.insert("revenue".into(), json!(amount));
    }
    if let Some(q) = row.quantity {
        props.insert("quantity".into(), json!(q));
    }
    let msg = json!({
        "type": "track",
        "userId": user,
        "event": m.event,
        "messageId": message_id,
        "timestamp": timestamp.to_rfc3339(),
        "properties": props,
        "context": {"library": {"name": "missive-import"}},
    });
    validate_message(msg, Some(EventKind::Track), None, Utc::now()).map_err(|r| r.message)
}
