//! missive's e-mail filters: `money`, `money_with_currency`, `date` in the recipient's time
//! zone, `url_param` and `json`.

use std::fmt::Write as _;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;

use crate::Env;
use crate::value::{Num, Value, format_float, to_num};

/// Symbol and minor-unit digits of common ISO 4217 currencies.
const CURRENCIES: &[(&str, &str, u32)] = &[
    ("USD", "$", 2),
    ("EUR", "€", 2),
    ("GBP", "£", 2),
    ("JPY", "¥", 0),
    ("CAD", "$", 2),
    ("AUD", "$", 2),
    ("NZD", "$", 2),
    ("SGD", "$", 2),
    ("HKD", "$", 2),
    ("MXN", "$", 2),
    ("CLP", "$", 0),
    ("COP", "$", 2),
    ("ARS", "$", 2),
    ("BRL", "R$", 2),
    ("CHF", "CHF", 2),
    ("SEK", "kr", 2),
    ("NOK", "kr", 2),
    ("DKK", "kr", 2),
    ("ISK", "kr", 0),
    ("PLN", "zł", 2),
    ("CZK", "Kč", 2),
    ("HUF", "Ft", 2),
    ("RON", "lei", 2),
    ("INR", "₹", 2),
    ("CNY", "¥", 2),
    ("KRW", "₩", 0),
    ("TWD", "NT$", 2),
    ("THB", "฿", 2),
    ("PHP", "₱", 2),
    ("VND", "₫", 0),
    ("IDR", "Rp", 2),
    ("MYR", "RM", 2),
    ("ILS", "₪", 2),
    ("TRY", "₺", 2),
    ("RUB", "₽", 2),
    ("UAH", "₴", 2),
    ("ZAR", "R", 2),
    ("NGN", "₦", 2),
    ("AED", "AED", 2),
    ("SAR", "SAR", 2),
];

/// `money` / `money_with_currency`: the input is an amount in major units (`19.99`), as in
/// Segment's e-commerce events and product feeds (Shopify's own filter takes cents; missive's
/// data does not come from Shopify's database).
pub(crate) fn money(input: &Value, code: &Value, with_currency: bool, env: &Env<'_>) -> Value {
    if input.is_nil() {
        return Value::Nil;
    }
    let code = if code.is_nil() {
        env.currency.to_ascii_uppercase()
    } else {
        code.to_str().trim().to_ascii_uppercase()
    };
    let known = CURRENCIES.iter().find(|(c, _, _)| *c == code);
    let digits = known.map_or(2, |k| k.2);
    let scale = 10u128.pow(digits);
    let minor: i128 = match to_num(input) {
        Num::Int(i) => i128::from(i) * scale as i128,
        Num::Float(f) if f.is_finite() => (f * scale as f64).round() as i128,
        Num::Float(_) => 0,
    };
    let negative = minor < 0;
    let minor = minor.unsigned_abs();
    let (whole, frac) = (minor / scale, minor % scale);
    let mut amount = group_thousands(whole);
    if digits > 0 {
        let _ = write!(amount, ".{frac:0width$}", width = digits as usize);
    }
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    match known {
        Some((_, symbol, _)) => {
            out.push_str(symbol);
            if symbol.chars().all(char::is_alphabetic) {
                out.push(' ');
            }
            out.push_str(&amount);
            if with_currency {
                out.push(' ');
                out.push_str(&code);
            }
        }
        None => {
            out.push_str(&amount);
            out.push(' ');
            out.push_str(&code);
        }
    }
    Value::string(out)
}

fn group_thousands(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `date`: formats a timestamp in the recipient's zone (or the zone named by the second
/// argument) with Ruby's `strftime` directives. Input that is not a date is returned as is.
pub(crate) fn date(
    input: &Value,
    format: &Value,
    zone: Option<&Value>,
    env: &Env<'_>,
) -> Result<Value, String> {
    if input.is_nil() || (matches!(input, Value::Str(s) if s.is_empty())) {
        return Ok(Value::Nil);
    }
    if format.is_nil() {
        return Ok(input.clone());
    }
    let fmt = format.to_str();
    if fmt.is_empty() {
        return Ok(input.clone());
    }
    let tz = match zone {
        Some(z) if !z.is_nil() => {
            let name = z.to_str();
            TimeZone::get(&name).map_err(|_| format!("unknown time zone '{name}'"))?
        }
        _ => env.time_zone.clone(),
    };
    let Some(ts) = parse_time(input, &tz, env.now) else {
        return Ok(input.clone());
    };
    let zoned = ts.to_zoned(tz);
    jiff::fmt::strtime::format(fmt.as_bytes(), &zoned)
        .map(Value::string)
        .map_err(|e| format!("invalid date format: {e}"))
}

fn parse_time(input: &Value, tz: &TimeZone, now: Timestamp) -> Option<Timestamp> {
    match input {
        Value::Int(secs) => Timestamp::from_second(*secs).ok(),
        Value::Float(secs) => Timestamp::from_second(*secs as i64).ok(),
        Value::Str(s) => parse_time_str(s.trim(), tz, now),
        _ => None,
    }
}

const DATE_TIME_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S %z",
    "%Y-%m-%d %H:%M:%S %Z",
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%a, %d %b %Y %H:%M:%S %z",
    "%d %b %Y %H:%M:%S %z",
];

const LOCAL_DATE_TIME_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%B %d, %Y %H:%M",
    "%b %d, %Y %H:%M",
    "%Y/%m/%d %H:%M:%S",
];

const DATE_FORMATS: &[&str] = &[
    "%B %d, %Y",
    "%b %d, %Y",
    "%B %d %Y",
    "%b %d %Y",
    "%d %B %Y",
    "%d %b %Y",
    "%Y/%m/%d",
    "%Y%m%d",
];

fn parse_time_str(s: &str, tz: &TimeZone, now: Timestamp) -> Option<Timestamp> {
    if s.eq_ignore_ascii_case("now") || s.eq_ignore_ascii_case("today") {
        return Some(now);
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().ok().and_then(|n| Timestamp::from_second(n).ok());
    }
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Some(ts);
    }
    if let Ok(dt) = s.parse::<DateTime>() {
        return dt.to_zoned(tz.clone()).ok().map(|z| z.timestamp());
    }
    if let Ok(d) = s.parse::<Date>() {
        return d.to_zoned(tz.clone()).ok().map(|z| z.timestamp());
    }
    for f in DATE_TIME_FORMATS {
        if let Ok(z) = jiff::fmt::strtime::parse(f, s).and_then(|t| t.to_zoned()) {
            return Some(z.timestamp());
        }
    }
    for f in LOCAL_DATE_TIME_FORMATS {
        if let Ok(dt) = jiff::fmt::strtime::parse(f, s).and_then(|t| t.to_datetime()) {
            return dt.to_zoned(tz.clone()).ok().map(|z| z.timestamp());
        }
    }
    for f in DATE_FORMATS {
        if let Ok(d) = jiff::fmt::strtime::parse(f, s).and_then(|t| t.to_date()) {
            return d.to_zoned(tz.clone()).ok().map(|z| z.timestamp());
        }
    }
    None
}

/// `url_param`: appends `key=value` (percent-encoded) to a URL's query, before any fragment.
pub(crate) fn url_param(url: &str, key: &str, value: &str) -> String {
    let (base, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len() + key.len() + value.len() + 2);
    out.push_str(base);
    if !base.contains('?') {
        out.push('?');
    } else if !base.ends_with('?') && !base.ends_with('&') {
        out.push('&');
    }
    percent_encode_into(key, &mut out);
    out.push('=');
    percent_encode_into(value, &mut out);
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

fn percent_encode_into(text: &str, out: &mut String) {
    for b in text.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
}

/// `json`: the value as JSON, objects keeping their key order.
pub(crate) fn to_json(v: &Value) -> String {
    let mut out = String::new();
    write_json(v, &mut out, 0);
    out
}

fn write_json(v: &Value, out: &mut String, depth: usize) {
    match v {
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) if f.is_finite() => format_float(*f, out),
        Value::Float(_) => out.push_str("null"),
        Value::Str(s) => write_json_str(s, out),
        Value::Array(a) if depth < 64 => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(x, out, depth + 1);
            }
            out.push(']');
        }
        Value::Object(o) if depth < 64 => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_str(k, out);
                out.push(':');
                write_json(x, out, depth + 1);
            }
            out.push('}');
        }
        _ => out.push_str("null"),
    }
}

fn write_json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Escaped so that JSON dropped into a <script> block cannot close it.
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
