//! The standard Liquid filters, resolved to [`Filter`] at parse time, plus missive's e-mail
//! filters (implemented in [`crate::email`]).

use std::cmp::Ordering;
use std::sync::Arc;

use base64::Engine as _;

use crate::Env;
use crate::value::{Num, Value, liquid_cmp, liquid_eq, to_num};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filter {
    Abs,
    Append,
    AtLeast,
    AtMost,
    Base64Decode,
    Base64Encode,
    Base64UrlSafeDecode,
    Base64UrlSafeEncode,
    Capitalize,
    Ceil,
    Compact,
    Concat,
    Date,
    Default,
    DividedBy,
    Downcase,
    Escape,
    EscapeOnce,
    Find,
    FindIndex,
    First,
    Floor,
    Has,
    Join,
    Json,
    Last,
    Lstrip,
    Map,
    Minus,
    Modulo,
    Money,
    MoneyWithCurrency,
    NewlineToBr,
    Plus,
    Pluralize,
    Prepend,
    Raw,
    Reject,
    Remove,
    RemoveFirst,
    RemoveLast,
    Replace,
    ReplaceFirst,
    ReplaceLast,
    Reverse,
    Round,
    Rstrip,
    Size,
    Slice,
    Sort,
    SortNatural,
    Split,
    Strip,
    StripHtml,
    StripNewlines,
    Sum,
    Times,
    Truncate,
    Truncatewords,
    Uniq,
    Upcase,
    UrlDecode,
    UrlEncode,
    UrlParam,
    Where,
    /// Not a known filter: skipped, or an error with `strict_filters`.
    Unknown,
}

impl Filter {
    pub(crate) fn lookup(name: &str) -> Filter {
        use Filter::*;
        match name {
            "abs" => Abs,
            "append" => Append,
            "at_least" => AtLeast,
            "at_most" => AtMost,
            "base64_decode" => Base64Decode,
            "base64_encode" => Base64Encode,
            "base64_url_safe_decode" => Base64UrlSafeDecode,
            "base64_url_safe_encode" => Base64UrlSafeEncode,
            "capitalize" => Capitalize,
            "ceil" => Ceil,
            "compact" => Compact,
            "concat" => Concat,
            "date" => Date,
            "default" => Default,
            "divided_by" => DividedBy,
            "downcase" => Downcase,
            "escape" => Escape,
            "escape_once" => EscapeOnce,
            "find" => Find,
            "find_index" => FindIndex,
            "first" => First,
            "floor" => Floor,
            "has" => Has,
            "join" => Join,
            "json" => Json,
            "last" => Last,
            "lstrip" => Lstrip,
            "map" => Map,
            "minus" => Minus,
            "modulo" => Modulo,
            "money" => Money,
            "money_with_currency" => MoneyWithCurrency,
            "newline_to_br" => NewlineToBr,
            "plus" => Plus,
            "pluralize" => Pluralize,
            "prepend" => Prepend,
            "raw" => Raw,
            "reject" => Reject,
            "remove" => Remove,
            "remove_first" => RemoveFirst,
            "remove_last" => RemoveLast,
            "replace" => Replace,
            "replace_first" => ReplaceFirst,
            "replace_last" => ReplaceLast,
            "reverse" => Reverse,
            "round" => Round,
            "rstrip" => Rstrip,
            "size" => Size,
            "slice" => Slice,
            "sort" => Sort,
            "sort_natural" => SortNatural,
            "split" => Split,
            "strip" => Strip,
            "strip_html" => StripHtml,
            "strip_newlines" => StripNewlines,
            "sum" => Sum,
            "times" => Times,
            "truncate" => Truncate,
            "truncatewords" => Truncatewords,
            "uniq" => Uniq,
            "upcase" => Upcase,
            "url_decode" => UrlDecode,
            "url_encode" => UrlEncode,
            "url_param" => UrlParam,
            "where" => Where,
            _ => Unknown,
        }
    }

    /// Minimum and maximum positional arguments, and the keyword arguments accepted.
    pub(crate) fn arity(self) -> (usize, usize, &'static [&'static str]) {
        use Filter::*;
        match self {
            Abs | Base64Decode | Base64Encode | Base64UrlSafeDecode | Base64UrlSafeEncode | Capitalize
            | Ceil | Downcase | Escape | EscapeOnce | First | Floor | Json | Last | Lstrip | NewlineToBr
            | Raw | Reverse | Rstrip | Size | Strip | StripHtml | StripNewlines | Upcase | UrlDecode
            | UrlEncode => (0, 0, &[]),
            Append | AtLeast | AtMost | Concat | DividedBy | Map | Minus | Modulo | Plus | Prepend
            | Remove | RemoveFirst | RemoveLast | Split | Times => (1, 1, &[]),
            Compact | Join | Round | Sort | SortNatural | Sum | Uniq | Money | MoneyWithCurrency => {
                (0, 1, &[])
            }
            Default => (0, 1, &["allow_false"]),
            Date | Find | FindIndex | Has | Reject | Where | Replace | ReplaceFirst | Slice => (1, 2, &[]),
            ReplaceLast | Pluralize | UrlParam => (2, 2, &[]),
            Truncate | Truncatewords => (0, 2, &[]),
            Unknown => (0, usize::MAX, &[]),
        }
    }
}

type R = Result<Value, String>;

fn arg(args: &[Value], i: usize) -> &Value {
    static NIL: Value = Value::Nil;
    args.get(i).unwrap_or(&NIL)
}

fn s(v: String) -> Value {
    Value::string(v)
}

pub(crate) fn apply(f: Filter, input: Value, args: &[Value], kwargs: &[(&str, Value)], env: &Env<'_>) -> R {
    use Filter::*;
    let a0 = arg(args, 0);
    let a1 = arg(args, 1);
    Ok(match f {
        Raw | Unknown => input,
        Abs => match to_num(&input) {
            Num::Int(i) => Value::Int(i.saturating_abs()),
            Num::Float(x) => Value::Float(x.abs()),
        },
        Append => s(format!("{}{}", input.to_str(), a0.to_str())),
        Prepend => s(format!("{}{}", a0.to_str(), input.to_str())),
        AtLeast | AtMost => {
            let x = to_num(&input);
            let y = to_num(a0);
            let pick_y = if f == AtLeast {
                y.as_f64() > x.as_f64()
            } else {
                y.as_f64() < x.as_f64()
            };
            if pick_y { y.to_value() } else { x.to_value() }
        }
        Base64Encode => s(base64::engine::general_purpose::STANDARD.encode(input.to_str().as_bytes())),
        Base64UrlSafeEncode => s(base64::engine::general_purpose::URL_SAFE.encode(input.to_str().as_bytes())),
        Base64Decode => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(input.to_str().as_bytes())
                .map_err(|_| "invalid base64 input".to_string())?;
            s(String::from_utf8_lossy(&bytes).into_owned())
        }
        Base64UrlSafeDecode => {
            let text = input.to_str();
            let trimmed = text.trim_end_matches('=');
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(trimmed.as_bytes())
                .map_err(|_| "invalid base64 input".to_string())?;
            s(String::from_utf8_lossy(&bytes).into_owned())
        }
        Capitalize => {
            let t = input.to_str();
            let mut c = t.chars();
            match c.next() {
                Some(first) => s(first
                    .to_uppercase()
                    .chain(c.as_str().to_lowercase().chars())
                    .collect()),
                None => Value::str(""),
            }
        }
        Ceil => round_to_int(&input, f64::ceil),
        Floor => round_to_int(&input, f64::floor),
        Round => round(&input, a0),
        Compact => {
            let items = flat(&input);
            let kept: Vec<Value> = if a0.is_nil() && args.is_empty() {
                items.into_iter().filter(|v| !v.is_nil()).collect()
            } else {
                let key = a0.to_str();
                items
                    .into_iter()
                    .filter(|v| match v {
                        Value::Object(o) => o.get(&key).is_some_and(|x| !x.is_nil()),
                        Value::Nil => false,
                        _ => true,
                    })
                    .collect()
            };
            arr(kept)
        }
        Concat => {
            let Value::Array(extra) = a0 else {
                return Err(format!("expected an array argument, got {}", a0.type_name()));
            };
            let mut items = flat(&input);
            items.extend(extra.iter().cloned());
            arr(items)
        }
        Date => crate::email::date(&input, a0, args.get(1), env)?,
        Default => {
            let allow_false = kwargs.iter().any(|(k, v)| *k == "allow_false" && v.is_truthy());
            let use_default = match &input {
                Value::Nil => true,
                Value::Bool(false) => !allow_false,
                other => other.is_empty_value(),
            };
            if use_default { a0.clone() } else { input }
        }
        Plus | Minus | Times | DividedBy | Modulo => arith(f, to_num(&input), to_num(a0))?.to_value(),
        Downcase => s(input.to_str().to_lowercase()),
        Upcase => s(input.to_str().to_uppercase()),
        Escape => {
            let mut out = String::new();
            escape_into(&input.to_str(), &mut out);
            s(out)
        }
        EscapeOnce => s(escape_once(&input.to_str())),
        Find | FindIndex | Has | Reject | Where => property_filter(f, &input, args)?,
        First => match &input {
            Value::Array(a) => a.first().cloned().unwrap_or_default(),
            Value::Object(o) => o.pairs().next().unwrap_or_default(),
            Value::Str(t) => t.chars().next().map(|c| s(c.to_string())).unwrap_or_default(),
            _ => Value::Nil,
        },
        Last => match &input {
            Value::Array(a) => a.last().cloned().unwrap_or_default(),
            Value::Str(t) => t.chars().last().map(|c| s(c.to_string())).unwrap_or_default(),
            _ => Value::Nil,
        },
        Join => match &input {
            Value::Array(_) => {
                let sep = if args.is_empty() { " ".into() } else { a0.to_str() };
                let mut out = String::new();
                for (i, v) in flat(&input).iter().enumerate() {
                    if i > 0 {
                        out.push_str(&sep);
                    }
                    v.render_to(&mut out);
                }
                s(out)
            }
            other => other.clone(),
        },
        Json => s(crate::email::to_json(&input)),
        Lstrip => s(input.to_str().trim_start_matches(ruby_ws).to_string()),
        Rstrip => s(input.to_str().trim_end_matches(ruby_ws).to_string()),
        Strip => s(input.to_str().trim_matches(ruby_ws).to_string()),
        Map => {
            let items = match &input {
                Value::Array(_) | Value::Object(_) | Value::Nil => flat(&input),
                other => return Err(format!("cannot map over {}", other.type_name())),
            };
            let key = a0.to_str();
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(match &item {
                    Value::Object(o) => o.get(&key).cloned().unwrap_or_default(),
                    Value::Nil => Value::Nil,
                    other => return Err(format!("cannot read '{key}' of {}", other.type_name())),
                });
            }
            arr(out)
        }
        Money | MoneyWithCurrency => crate::email::money(&input, a0, f == MoneyWithCurrency, env),
        Pluralize => {
            let n = to_num(&input).as_f64();
            if n == 1.0 { a0.clone() } else { a1.clone() }
        }
        UrlParam => s(crate::email::url_param(
            &input.to_str(),
            &a0.to_str(),
            &a1.to_str(),
        )),
        NewlineToBr => s(input.to_str().replace("\r\n", "\n").replace('\n', "<br />\n")),
        StripNewlines => s(input.to_str().replace(['\r', '\n'], "")),
        Remove => s(input.to_str().replace(&*a0.to_str(), "")),
        RemoveFirst => s(replace_first(&input.to_str(), &a0.to_str(), "")),
        RemoveLast => s(replace_last(&input.to_str(), &a0.to_str(), "")),
        Replace => s(input.to_str().replace(&*a0.to_str(), &a1.to_str())),
        ReplaceFirst => s(replace_first(&input.to_str(), &a0.to_str(), &a1.to_str())),
        ReplaceLast => s(replace_last(&input.to_str(), &a0.to_str(), &a1.to_str())),
        Reverse => match &input {
            Value::Array(_) => {
                let mut items = flat(&input);
                items.reverse();
                arr(items)
            }
            other => other.clone(),
        },
        Size => match &input {
            Value::Array(a) => int(a.len()),
            Value::Object(o) => match o.get("size") {
                Some(v) => v.clone(),
                None => int(o.len()),
            },
            Value::Str(t) => int(t.chars().count()),
            _ => Value::Int(0),
        },
        Slice => slice(&input, a0, args.get(1))?,
        Sort => sort(&input, args.first(), false)?,
        SortNatural => sort(&input, args.first(), true)?,
        Split => {
            let text = input.to_str();
            let sep = a0.to_str();
            let mut parts: Vec<Value> = if sep.is_empty() {
                text.chars().map(|c| s(c.to_string())).collect()
            } else if &*sep == " " {
                text.split(ruby_ws)
                    .filter(|p| !p.is_empty())
                    .map(Value::str)
                    .collect()
            } else {
                text.split(&*sep).map(Value::str).collect()
            };
            while parts
                .last()
                .is_some_and(|p| matches!(p, Value::Str(x) if x.is_empty()))
            {
                parts.pop();
            }
            arr(parts)
        }
        StripHtml => s(strip_html(&input.to_str())),
        Sum => sum(&input, args.first())?,
        Truncate => {
            let text = input.to_str();
            let n = if args.is_empty() { 50 } else { strict_int(a0)? };
            let ellipsis = if args.len() > 1 { a1.to_str() } else { "...".into() };
            let len = text.chars().count();
            let n = usize::try_from(n.max(0)).unwrap_or(0);
            if len <= n {
                input
            } else {
                let keep = n.saturating_sub(ellipsis.chars().count());
                let mut out: String = text.chars().take(keep).collect();
                out.push_str(&ellipsis);
                s(out)
            }
        }
        Truncatewords => {
            let text = input.to_str();
            let n = if args.is_empty() { 15 } else { strict_int(a0)? };
            let n = usize::try_from(n.max(1)).unwrap_or(1);
            let ellipsis = if args.len() > 1 { a1.to_str() } else { "...".into() };
            let words: Vec<&str> = text
                .split(ruby_ws)
                .filter(|w| !w.is_empty())
                .take(n + 1)
                .collect();
            if words.len() <= n {
                input
            } else {
                let mut out = words[..n].join(" ");
                out.push_str(&ellipsis);
                s(out)
            }
        }
        Uniq => {
            let items = flat(&input);
            let mut out: Vec<Value> = Vec::new();
            // Keyed by type and JSON, so that uniq stays linear on big arrays.
            let mut keys: std::collections::HashSet<String> = std::collections::HashSet::new();
            for item in items {
                let key = match (&item, args.first()) {
                    (Value::Object(o), Some(k)) => o.get(&k.to_str()).cloned().unwrap_or_default(),
                    _ => item.clone(),
                };
                if keys.insert(format!("{}:{}", key.type_name(), crate::email::to_json(&key))) {
                    out.push(item);
                }
            }
            if matches!(input, Value::Array(_)) || input.is_nil() {
                arr(out)
            } else {
                input
            }
        }
        UrlEncode => s(url_encode(&input.to_str())),
        UrlDecode => s(url_decode(&input.to_str())),
    })
}

fn int(n: usize) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

fn arr(v: Vec<Value>) -> Value {
    Value::Array(Arc::new(v))
}

fn ruby_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' | '\0')
}

/// Flattens nested arrays; nil is an empty list and anything else a list of one.
/// A cheap upper bound of the size a value renders to.
fn approx_len(v: &Value) -> usize {
    match v {
        Value::Nil => 0,
        Value::Bool(_) => 5,
        Value::Int(_) | Value::Float(_) => 24,
        Value::Str(s) => s.len(),
        Value::Array(a) => a.iter().map(approx_len).fold(a.len(), usize::saturating_add),
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| k.len() + approx_len(v) + 8)
            .fold(0, usize::saturating_add),
    }
}

/// Refuses, before any work is done, a filter whose result would exceed the sandbox: a
/// string larger than `max_bytes`, or an array of more than `max_items` items. Without this a
/// legal 2 MB string could be multiplied (`replace`, `join`, `split`) into terabytes before
/// the size of the result is ever looked at.
pub(crate) fn check_expansion(
    f: Filter,
    input: &Value,
    args: &[Value],
    max_bytes: usize,
    max_items: u64,
) -> Result<(), String> {
    use Filter::*;
    let arg_len = |i: usize| args.get(i).map_or(0, approx_len);
    let text_len = || approx_len(input);
    let count = |needle: &str| {
        let hay = input.to_str();
        if needle.is_empty() {
            hay.chars().count() + 1
        } else {
            hay.matches(needle).count()
        }
    };
    let bytes = match f {
        Replace => {
            let n = count(&args.first().map(Value::to_str).unwrap_or_default());
            text_len().saturating_add(n.saturating_mul(arg_len(1)))
        }
        ReplaceFirst | ReplaceLast => text_len().saturating_add(arg_len(1)),
        Append | Prepend | Concat => text_len().saturating_add(arg_len(0)),
        Join => {
            let n = match input {
                Value::Array(a) => a.len(),
                _ => 1,
            };
            text_len().saturating_add(n.saturating_mul(args.first().map_or(1, approx_len)))
        }
        NewlineToBr => text_len().saturating_add(count("\n").saturating_mul(6)),
        Escape | EscapeOnce | UrlEncode => text_len().saturating_mul(6),
        Base64Encode | Base64UrlSafeEncode => text_len().saturating_mul(4) / 3 + 4,
        Split => {
            let sep = args.first().map(Value::to_str).unwrap_or_default();
            let parts = count(&sep).saturating_add(1) as u64;
            if parts > max_items {
                return Err(format!("split would make {parts} items, more than {max_items}"));
            }
            0
        }
        _ => 0,
    };
    if bytes > max_bytes {
        return Err(format!("the result would exceed {max_bytes} bytes"));
    }
    Ok(())
}

fn flat(v: &Value) -> Vec<Value> {
    fn go(v: &Value, out: &mut Vec<Value>, depth: usize) {
        match v {
            Value::Array(a) if depth < 64 => {
                for x in a.iter() {
                    go(x, out, depth + 1);
                }
            }
            other => out.push(other.clone()),
        }
    }
    let mut out = Vec::new();
    match v {
        Value::Nil => {}
        Value::Array(a) if a.iter().all(|x| !matches!(x, Value::Array(_))) => out.extend(a.iter().cloned()),
        other => go(other, &mut out, 0),
    }
    out
}

/// An integer argument that must really be one (`slice`, `truncate`): nil, a float or text
/// that is not an integer is an error, as in Ruby (and the golden suite). An integer beyond
/// 64 bits (a Ruby big integer, read here as a whole float) saturates, which gives Ruby's
/// result for any string or array a template can hold.
fn strict_int(v: &Value) -> Result<i64, String> {
    const BEYOND_I64: f64 = i64::MAX as f64;
    match v {
        Value::Int(i) => Ok(*i),
        Value::Float(f) if f.fract() == 0.0 && f.abs() >= BEYOND_I64 => {
            Ok(if *f > 0.0 { i64::MAX } else { i64::MIN })
        }
        Value::Str(t) if t.trim().bytes().all(|b| b.is_ascii_digit()) && !t.trim().is_empty() => {
            Ok(t.trim().parse::<i64>().unwrap_or(i64::MAX))
        }
        Value::Str(t) => t
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("invalid integer '{t}'")),
        other => Err(format!("expected an integer, got {}", other.type_name())),
    }
}

fn round_to_int(v: &Value, f: fn(f64) -> f64) -> Value {
    match to_num(v) {
        Num::Int(i) => Value::Int(i),
        Num::Float(x) => float_to_int(f(x)),
    }
}

fn float_to_int(x: f64) -> Value {
    if x.is_finite() && x.abs() < 9.2e18 {
        Value::Int(x as i64)
    } else {
        Value::Float(x)
    }
}

fn round(v: &Value, digits: &Value) -> Value {
    let d = match to_num(digits) {
        Num::Int(i) => i,
        Num::Float(f) => f as i64,
    };
    match to_num(v) {
        Num::Int(i) => {
            if d >= 0 {
                Value::Int(i)
            } else {
                let p = 10f64.powi(i32::try_from(-d).unwrap_or(i32::MAX));
                float_to_int(((i as f64) / p).round() * p)
            }
        }
        Num::Float(x) => {
            if d <= 0 {
                let p = 10f64.powi(i32::try_from(-d).unwrap_or(i32::MAX));
                float_to_int((x / p).round() * p)
            } else {
                let p = 10f64.powi(i32::try_from(d.min(15)).unwrap_or(15));
                let r = (x * p).round() / p;
                Value::Float(if r.is_finite() { r } else { x })
            }
        }
    }
}

/// Decimal places in the shortest representation of `f`, standing in for Ruby Liquid's
/// BigDecimal arithmetic (so that `10.1 | minus: 2.2` is `7.9`, not `7.8999999999999995`).
fn decimals(f: f64) -> Option<usize> {
    let t = format!("{f}");
    if t.contains('e') {
        return None;
    }
    Some(t.split_once('.').map_or(0, |(_, frac)| frac.len()))
}

fn arith(f: Filter, a: Num, b: Num) -> Result<Num, String> {
    if let (Num::Int(x), Num::Int(y)) = (a, b) {
        let r = match f {
            Filter::Plus => x.checked_add(y),
            Filter::Minus => x.checked_sub(y),
            Filter::Times => x.checked_mul(y),
            Filter::DividedBy => {
                if y == 0 {
                    return Err("divided by 0".into());
                }
                x.checked_div(y).map(|q| {
                    if x % y != 0 && ((x < 0) != (y < 0)) {
                        q - 1
                    } else {
                        q
                    }
                })
            }
            _ => {
                if y == 0 {
                    return Err("divided by 0".into());
                }
                x.checked_rem(y)
                    .map(|r| if r != 0 && ((r < 0) != (y < 0)) { r + y } else { r })
            }
        };
        if let Some(r) = r {
            return Ok(Num::Int(r));
        }
    }
    let (x, y) = (a.as_f64(), b.as_f64());
    let (dx, dy) = (decimals(x), decimals(y));
    let (r, places) = match f {
        Filter::Plus => (x + y, dx.zip(dy).map(|(p, q)| p.max(q))),
        Filter::Minus => (x - y, dx.zip(dy).map(|(p, q)| p.max(q))),
        Filter::Times => (x * y, dx.zip(dy).map(|(p, q)| p + q)),
        Filter::DividedBy => {
            if y == 0.0 {
                return Err("divided by 0".into());
            }
            (x / y, None)
        }
        _ => {
            if y == 0.0 {
                return Err("divided by 0".into());
            }
            (x - y * (x / y).floor(), dx.zip(dy).map(|(p, q)| p.max(q)))
        }
    };
    let r = match places {
        Some(p) if p <= 15 && r.is_finite() => format!("{r:.p$}").parse().unwrap_or(r),
        _ => r,
    };
    Ok(Num::Float(r))
}

pub(crate) use missive_core::html::escape_into;

fn escape_once(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let Some(c) = rest.chars().next() else { break };
        if c == '&' && entity_len(rest).is_some() {
            let n = entity_len(rest).unwrap_or(1);
            out.push_str(&rest[..n]);
            i += n;
            continue;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
        i += c.len_utf8();
    }
    out
}

/// Length of an HTML entity (`&amp;`, `&#20;`, `&#x1F;`) at the start of `s`.
fn entity_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 1;
    if b.get(1) == Some(&b'#') {
        i = 2;
        let hex = matches!(b.get(2), Some(b'x' | b'X'));
        if hex {
            i = 3;
        }
        let start = i;
        while i < b.len()
            && (if hex {
                b[i].is_ascii_hexdigit()
            } else {
                b[i].is_ascii_digit()
            })
        {
            i += 1;
        }
        if i == start {
            return None;
        }
    } else {
        while i < b.len() && b[i].is_ascii_alphanumeric() {
            i += 1;
        }
        if i == 1 {
            return None;
        }
    }
    (b.get(i) == Some(&b';')).then_some(i + 1)
}

fn replace_first(text: &str, pat: &str, with: &str) -> String {
    match text.find(pat) {
        Some(i) => format!("{}{}{}", &text[..i], with, &text[i + pat.len()..]),
        None => text.to_string(),
    }
}

fn replace_last(text: &str, pat: &str, with: &str) -> String {
    match text.rfind(pat) {
        Some(i) => format!("{}{}{}", &text[..i], with, &text[i + pat.len()..]),
        None => text.to_string(),
    }
}

fn slice(input: &Value, start: &Value, len: Option<&Value>) -> R {
    let start = strict_int(start)?;
    let len = match len {
        None | Some(Value::Nil) => 1,
        Some(v) => strict_int(v)?,
    };
    let window = |n: usize| -> Option<(usize, usize)> {
        let n = i64::try_from(n).ok()?;
        let from = if start < 0 { start + n } else { start };
        if from < 0 || from >= n || len <= 0 {
            return None;
        }
        let to = from.saturating_add(len).min(n);
        Some((usize::try_from(from).ok()?, usize::try_from(to).ok()?))
    };
    Ok(match input {
        Value::Array(a) => match window(a.len()) {
            Some((f, t)) => arr(a[f..t].to_vec()),
            None => arr(Vec::new()),
        },
        other => {
            let text = other.to_str();
            let chars: Vec<char> = text.chars().collect();
            match window(chars.len()) {
                Some((f, t)) => s(chars[f..t].iter().collect()),
                None => Value::str(""),
            }
        }
    })
}

fn sort(input: &Value, key: Option<&Value>, natural: bool) -> R {
    if !matches!(input, Value::Array(_)) {
        return Ok(input.clone());
    }
    let mut items = flat(input);
    let key = key.filter(|k| !k.is_nil()).map(|k| k.to_str().into_owned());
    let prop = |v: &Value| -> Value {
        match (&key, v) {
            (Some(k), Value::Object(o)) => o.get(k).cloned().unwrap_or_default(),
            (Some(_), _) => Value::Nil,
            (None, v) => v.clone(),
        }
    };
    let mut failed = false;
    items.sort_by(|a, b| {
        let (x, y) = (prop(a), prop(b));
        match (x.is_nil(), y.is_nil()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            _ => {}
        }
        if natural {
            return x.to_str().to_lowercase().cmp(&y.to_str().to_lowercase());
        }
        liquid_cmp(&x, &y).unwrap_or_else(|| {
            failed = true;
            Ordering::Equal
        })
    });
    if failed {
        return Err("cannot sort values of different types".into());
    }
    Ok(arr(items))
}

fn sum(input: &Value, key: Option<&Value>) -> R {
    let items = flat(input);
    let mut total = Num::Int(0);
    for item in &items {
        let v = match key {
            Some(k) => match item {
                Value::Object(o) => o.get(&k.to_str()).cloned().unwrap_or_default(),
                other => return Err(format!("cannot read property of {}", other.type_name())),
            },
            None => match item {
                Value::Object(_) | Value::Array(_) => Value::Int(0),
                other => other.clone(),
            },
        };
        total = arith(Filter::Plus, total, to_num(&v))?;
    }
    Ok(total.to_value())
}

enum Prop {
    Val(Value),
    /// The item cannot be searched (nil, a boolean): the whole filter yields nil.
    Abort,
}

fn fetch_prop(item: &Value, key: &Value) -> Result<Prop, String> {
    Ok(Prop::Val(match item {
        Value::Object(o) => match key {
            Value::Nil => Value::Nil,
            k => o.get(&k.to_str()).cloned().unwrap_or_default(),
        },
        Value::Str(t) => match key {
            Value::Str(k) => {
                if t.contains(&**k) {
                    key.clone()
                } else {
                    Value::Nil
                }
            }
            Value::Int(i) => usize::try_from(*i)
                .ok()
                .and_then(|i| t.chars().nth(i))
                .map(|c| Value::string(c.to_string()))
                .unwrap_or_default(),
            _ => return Ok(Prop::Abort),
        },
        Value::Int(n) => match key {
            Value::Int(bit) if (0..64).contains(bit) => Value::Int((n >> bit) & 1),
            Value::Int(_) => Value::Int(0),
            other => return Err(format!("cannot read '{}' of an integer", other.to_str())),
        },
        Value::Nil | Value::Bool(_) => return Ok(Prop::Abort),
        other => return Err(format!("cannot read a property of {}", other.type_name())),
    }))
}

/// `find`, `find_index`, `has`, `reject` and `where`: select items by a property's value (or its
/// truthiness when no value is given).
fn property_filter(f: Filter, input: &Value, args: &[Value]) -> R {
    let key = arg(args, 0);
    let target = args.get(1).filter(|t| !t.is_nil());
    let items: Vec<Value> = match input {
        Value::Nil => return Ok(Value::Nil),
        Value::Array(_) => flat(input),
        Value::Object(_) | Value::Str(_) => vec![input.clone()],
        other if f == Filter::Where => return Err(format!("cannot filter {}", other.type_name())),
        other => vec![other.clone()],
    };
    if key.is_nil() && matches!(f, Filter::Where | Filter::Reject) {
        return Ok(Value::Nil);
    }
    let mut kept = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let v = match fetch_prop(item, key)? {
            Prop::Val(v) => v,
            Prop::Abort => return Ok(Value::Nil),
        };
        let hit = match target {
            None => v.is_truthy(),
            Some(t) => liquid_eq(&v, t),
        };
        match f {
            Filter::Find if hit => return Ok(item.clone()),
            Filter::FindIndex if hit => return Ok(int(i)),
            Filter::Has if hit => return Ok(Value::Bool(true)),
            Filter::Where if hit => kept.push(item.clone()),
            Filter::Reject if !hit => kept.push(item.clone()),
            _ => {}
        }
    }
    Ok(match f {
        Filter::Has => Value::Bool(false),
        Filter::Where | Filter::Reject => arr(kept),
        _ => Value::Nil,
    })
}

fn strip_html(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    // Once a closer is missing after some point it is missing after every later point: not
    // searching again keeps this linear on hostile input (`<<<<<…`).
    let mut missing = [false; 4];
    let mut find = |rest: &str, which: usize, closer: &str| {
        if missing[which] {
            return None;
        }
        let found = rest.find(closer).map(|e| e + closer.len());
        missing[which] = found.is_none();
        found
    };
    while i < text.len() {
        let rest = &lower[i..];
        let skip_to = if rest.starts_with("<script") {
            find(rest, 0, "</script>")
        } else if rest.starts_with("<style") {
            find(rest, 1, "</style>")
        } else if rest.starts_with("<!--") {
            find(rest, 2, "-->")
        } else if rest.starts_with('<') {
            find(rest, 3, ">")
        } else {
            None
        };
        match skip_to {
            Some(n) => i += n,
            None => {
                let c = text[i..].chars().next().unwrap_or(' ');
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn url_decode(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match u8::from_str_radix(text.get(i + 1..i + 3).unwrap_or("zz"), 16) {
                Ok(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
