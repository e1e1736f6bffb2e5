//! missive's e-mail filters: `money`, `money_with_currency`, `date` in the recipient's time
//! zone, `url_param` and `json`.

use std::fmt::Write as _;

use chrono::{
    DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, Offset as _, TimeZone as _, Timelike, Utc,
};
use chrono_tz::{OffsetName as _, Tz};

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

/// `date`: formats a timestamp with Ruby's `strftime` directives. An input written with a
/// numeric offset (`2020-06-15 14:30:45 -0400`) keeps it, as in Ruby; an instant in UTC
/// (`…Z`, `UTC`), a Unix time, `now` and an input with no zone are shown in the recipient's
/// zone; a zone argument overrides both. Input that is not a date is returned as is.
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
    let forced = match zone {
        Some(z) if !z.is_nil() => {
            let name = z.to_str();
            Some(missive_core::zone::zone_named(&name).ok_or_else(|| format!("unknown time zone '{name}'"))?)
        }
        _ => None,
    };
    let Some(parsed) = parse_time(input, env.time_zone, env.now) else {
        return Ok(input.clone());
    };
    let local = match (forced, parsed.offset) {
        (Some(tz), _) => Local::in_zone(parsed.at, tz),
        (None, Some(offset)) => Local::at_offset(parsed.at, offset),
        (None, None) => Local::in_zone(parsed.at, env.time_zone),
    };
    Ok(Value::string(strftime(&fmt, &local)))
}

/// A parsed date: the instant, and the offset it was written with when it had a numeric one.
struct Parsed {
    at: DateTime<Utc>,
    offset: Option<FixedOffset>,
}

fn instant(at: DateTime<Utc>) -> Parsed {
    Parsed { at, offset: None }
}

/// An instant as a clock shows it somewhere: the local date and time, and the zone's
/// abbreviation (`CET`; a fixed offset is named by itself, `-04:00`).
pub(crate) struct Local {
    at: DateTime<FixedOffset>,
    abbreviation: String,
}

impl Local {
    pub(crate) fn in_zone(at: DateTime<Utc>, zone: Tz) -> Self {
        let local = at.with_timezone(&zone);
        let offset = local.offset();
        // A zone the database gives no letters (`+00` in the Azores' summer) is named by its
        // offset, zero included.
        let abbreviation = offset.abbreviation().map_or_else(
            || numeric_offset_name(offset.fix().local_minus_utc()),
            str::to_string,
        );
        Self {
            at: local.fixed_offset(),
            abbreviation,
        }
    }

    fn at_offset(at: DateTime<Utc>, offset: FixedOffset) -> Self {
        Self {
            at: at.with_timezone(&offset),
            abbreviation: offset_name(offset.local_minus_utc()),
        }
    }
}

/// The name `%Z` shows for a fixed offset: `UTC` for zero, else the offset as short as it
/// goes (`-04`, `+05:30`), as the tz database writes zones that have no abbreviation.
fn offset_name(seconds: i32) -> String {
    if seconds == 0 {
        return "UTC".into();
    }
    numeric_offset_name(seconds)
}

/// An offset as the tz database writes a zone without letters: `+00`, `-04`, `+05:30`.
fn numeric_offset_name(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.unsigned_abs();
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    match (m, sec) {
        (0, 0) => format!("{sign}{h:02}"),
        (_, 0) => format!("{sign}{h:02}:{m:02}"),
        _ => format!("{sign}{h:02}:{m:02}:{sec:02}"),
    }
}

fn parse_time(input: &Value, tz: Tz, now: DateTime<Utc>) -> Option<Parsed> {
    match input {
        Value::Int(secs) => unix_seconds(*secs).map(instant),
        Value::Float(secs) => unix_seconds(*secs as i64).map(instant),
        Value::Str(s) => parse_time_str(s.trim(), tz, now),
        _ => None,
    }
}

/// Unix seconds within the years -9999 to 9999; beyond (milliseconds given as seconds, say)
/// the input is not a date and is returned as written.
fn unix_seconds(secs: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(secs, 0).filter(|t| (-9999..=9999).contains(&t.year()))
}

/// Formats with a numeric offset (`%#z` reads `-0400`, `-04:00` and `-04`).
const OFFSET_FORMATS: &[&str] = &[
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M%#z",
    "%Y-%m-%d %H:%M:%S %#z",
    "%Y-%m-%d %H:%M %#z",
    "%a, %d %b %Y %H:%M:%S %z",
    "%d %b %Y %H:%M:%S %z",
    "%a %b %d %H:%M:%S %z %Y",
];

const ISO_LOCAL_FORMATS: &[&str] = &[
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
];

const LOCAL_DATE_TIME_FORMATS: &[&str] = &[
    "%B %d, %Y %H:%M",
    "%b %d, %Y %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    // asctime: `Mon Jun 15 12:00:00 2020`.
    "%a %b %d %H:%M:%S %Y",
    "%a, %d %b %Y %H:%M:%S",
    "%d %b %Y %H:%M:%S",
];

const DATE_FORMATS: &[&str] = &[
    "%Y-%m-%d",
    "%B %d, %Y",
    "%b %d, %Y",
    "%B %d %Y",
    "%b %d %Y",
    "%d %B %Y",
    "%d %b %Y",
    "%Y/%m/%d",
    "%Y%m%d",
];

/// Zone names Ruby's `Time.parse` knows, as fixed offsets in hours.
const ZONE_NAMES: &[(&str, i8)] = &[
    ("UTC", 0),
    ("UT", 0),
    ("GMT", 0),
    ("Z", 0),
    ("EST", -5),
    ("EDT", -4),
    ("CST", -6),
    ("CDT", -5),
    ("MST", -7),
    ("MDT", -6),
    ("PST", -8),
    ("PDT", -7),
];

fn parse_time_str(s: &str, tz: Tz, now: DateTime<Utc>) -> Option<Parsed> {
    if s.eq_ignore_ascii_case("now") || s.eq_ignore_ascii_case("today") {
        return Some(instant(now));
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().ok().and_then(unix_seconds).map(instant);
    }
    // A trailing zone name: `2020-06-15 12:00:00 UTC`, `… EST`, `… America/New_York`.
    if let Some((rest, name)) = s.rsplit_once(' ')
        && !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'/' || b == b'_')
        && !rest.trim().is_empty()
        && let Some(local) = parse_naive(rest.trim())
    {
        let parsed = match ZONE_NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some((_, 0)) => Some(instant(local.and_utc())),
            Some((_, hours)) => FixedOffset::east_opt(i32::from(*hours) * 3600)
                .and_then(|o| o.from_local_datetime(&local).single())
                .map(|at| Parsed {
                    at: at.to_utc(),
                    offset: Some(*at.offset()),
                }),
            None if name.contains('/') => missive_core::zone::zone_named(name)
                .and_then(|zone| missive_core::zone::from_local(local, zone))
                .map(instant),
            None => None,
        };
        if parsed.is_some() {
            return parsed;
        }
    }
    // ISO 8601 / RFC 3339 with `Z` (an instant, shown in the recipient's zone) or a numeric
    // offset (kept); an RFC 9557 annotation (`[Europe/Paris]`) is read past.
    let iso = s.split_once('[').map_or(s, |(before, _)| before);
    if let Some(utc) = iso.strip_suffix(['Z', 'z'])
        && let Some(local) = parse_iso_naive(utc)
    {
        return Some(instant(local.and_utc()));
    }
    for f in OFFSET_FORMATS {
        if let Ok(at) = DateTime::parse_from_str(iso, f) {
            return Some(Parsed {
                at: at.to_utc(),
                offset: Some(*at.offset()),
            });
        }
    }
    parse_naive(iso).and_then(|local| missive_core::zone::from_local(local, tz).map(instant))
}

/// ISO 8601 date and time with no zone: `T` or a space between, seconds and fraction optional.
fn parse_iso_naive(s: &str) -> Option<NaiveDateTime> {
    ISO_LOCAL_FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
}

/// A date or date and time with no zone (a date alone is its midnight).
fn parse_naive(s: &str) -> Option<NaiveDateTime> {
    parse_iso_naive(s)
        .or_else(|| {
            LOCAL_DATE_TIME_FORMATS
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        })
        .or_else(|| {
            DATE_FORMATS
                .iter()
                .find_map(|f| NaiveDate::parse_from_str(s, f).ok())
                .map(|d| d.and_time(chrono::NaiveTime::MIN))
        })
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Ruby's `Time#strftime`. Hand-written because chrono's differs from Ruby's in
/// what Liquid authors see: `%c`, `%x`, `%X`, `%r`, `%D`, `%v`, `%+`, the flags `-`, `_`,
/// `0`, `^`, `#`, widths, and unknown directives (Ruby prints them as written; chrono fails).
pub(crate) fn strftime(fmt: &str, t: &Local) -> String {
    let mut out = String::with_capacity(fmt.len() + 16);
    let mut rest = fmt;
    while let Some(p) = rest.find('%') {
        out.push_str(&rest[..p]);
        let spec = &rest[p..];
        let (used, text) = directive(spec, t);
        match text {
            Some(text) => out.push_str(&text),
            // Unknown: as written (only the `%`, then go on after it).
            None => out.push_str(&spec[..used]),
        }
        rest = &spec[used..];
    }
    out.push_str(rest);
    out
}

#[derive(Default, Clone, Copy)]
struct Flags {
    no_pad: bool,
    space: bool,
    zero: bool,
    upper: bool,
    swap: bool,
    colons: usize,
    width: Option<usize>,
}

/// One directive at the start of `spec` (which starts with `%`): how many bytes it takes, and
/// its text (`None` when unknown).
fn directive(spec: &str, t: &Local) -> (usize, Option<String>) {
    let b = spec.as_bytes();
    let mut i = 1;
    let mut f = Flags::default();
    while let Some(&c) = b.get(i) {
        match c {
            b'-' => f.no_pad = true,
            b'_' => f.space = true,
            b'0' => f.zero = true,
            b'^' => f.upper = true,
            b'#' => f.swap = true,
            _ => break,
        }
        i += 1;
    }
    let w_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    if i > w_start {
        f.width = spec[w_start..i].parse().ok();
    }
    while b.get(i) == Some(&b':') {
        f.colons += 1;
        i += 1;
    }
    let Some(conv) = spec[i..].chars().next() else {
        return (spec.len(), None);
    };
    let used = i + conv.len_utf8();
    if f.colons > 0 && conv != 'z' {
        return (1, None);
    }
    match conversion(conv, f, t) {
        Some(text) => (used, Some(text)),
        None => (1, None),
    }
}

fn conversion(conv: char, f: Flags, local: &Local) -> Option<String> {
    let num = |n: i64, width: usize, pad: char| Some(pad_num(n, f, width, pad));
    let name = |s: &str| Some(pad_text(case(s, f), f));
    let composite = |fmt: &str| Some(pad_text(case(&strftime(fmt, local), f), f));
    let t = &local.at;
    let month = t.month0() as usize;
    let wday = t.weekday().num_days_from_sunday() as usize;
    let hour12 = match t.hour() % 12 {
        0 => 12,
        h => h,
    };
    let yday = i64::from(t.ordinal());
    match conv {
        'Y' => {
            let y = i64::from(t.year());
            num(y, if y < 0 { 5 } else { 4 }, '0')
        }
        'C' => num(i64::from(t.year()).div_euclid(100), 2, '0'),
        'y' => num(i64::from(t.year()).rem_euclid(100), 2, '0'),
        'm' => num(i64::from(t.month()), 2, '0'),
        'B' => name(MONTHS[month]),
        'b' | 'h' => name(&MONTHS[month][..3]),
        'd' => num(i64::from(t.day()), 2, '0'),
        'e' => num(i64::from(t.day()), 2, ' '),
        'j' => num(yday, 3, '0'),
        'H' => num(i64::from(t.hour()), 2, '0'),
        'k' => num(i64::from(t.hour()), 2, ' '),
        'I' => num(i64::from(hour12), 2, '0'),
        'l' => num(i64::from(hour12), 2, ' '),
        'M' => num(i64::from(t.minute()), 2, '0'),
        'S' => num(i64::from(t.second()), 2, '0'),
        'L' | 'N' => {
            let nanos = format!("{:09}", t.nanosecond() % 1_000_000_000);
            let digits = f.width.unwrap_or(if conv == 'L' { 3 } else { 9 });
            let mut s: String = nanos.chars().take(digits).collect();
            while s.len() < digits {
                s.push('0');
            }
            Some(s)
        }
        'p' | 'P' => {
            let pm = t.hour() >= 12;
            let text = match (pm, conv == 'P' || f.swap) {
                (true, true) => "pm",
                (true, false) => "PM",
                (false, true) => "am",
                (false, false) => "AM",
            };
            let f = Flags { swap: false, ..f };
            Some(pad_text(case(text, f), f))
        }
        'A' => name(DAYS[wday]),
        'a' => name(&DAYS[wday][..3]),
        'u' => num(i64::from(t.weekday().number_from_monday()), 1, '0'),
        'w' => num(wday as i64, 1, '0'),
        'U' => num((yday - 1 + 7 - wday as i64) / 7, 2, '0'),
        'W' => num((yday - 1 + 7 - ((wday as i64 + 6) % 7)) / 7, 2, '0'),
        'G' => num(i64::from(t.iso_week().year()), 4, '0'),
        'g' => num(i64::from(t.iso_week().year()).rem_euclid(100), 2, '0'),
        'V' => num(i64::from(t.iso_week().week()), 2, '0'),
        's' => num(t.timestamp(), 1, '0'),
        'Q' => num(t.timestamp_millis(), 1, '0'),
        'z' => Some(offset_text(t.offset().local_minus_utc(), f.colons)),
        'Z' => name(&local.abbreviation),
        'n' => Some("\n".into()),
        't' => Some("\t".into()),
        '%' => Some("%".into()),
        'c' => composite("%a %b %e %H:%M:%S %Y"),
        'D' | 'x' => composite("%m/%d/%y"),
        'F' => composite("%Y-%m-%d"),
        'r' => composite("%I:%M:%S %p"),
        'R' => composite("%H:%M"),
        'T' | 'X' => composite("%H:%M:%S"),
        'v' => composite("%e-%^b-%4Y"),
        '+' => composite("%a %b %e %H:%M:%S %Z %Y"),
        _ => None,
    }
}

fn case(s: &str, f: Flags) -> String {
    if f.upper || f.swap {
        s.to_uppercase()
    } else {
        s.to_string()
    }
}

fn pad_num(n: i64, f: Flags, default_width: usize, default_pad: char) -> String {
    let digits = n.unsigned_abs().to_string();
    let sign = if n < 0 { "-" } else { "" };
    if f.no_pad {
        return format!("{sign}{digits}");
    }
    let pad = if f.space {
        ' '
    } else if f.zero {
        '0'
    } else {
        default_pad
    };
    let width = f.width.unwrap_or(default_width);
    let len = sign.len() + digits.len();
    let fill: String = std::iter::repeat_n(pad, width.saturating_sub(len)).collect();
    if pad == '0' {
        format!("{sign}{fill}{digits}")
    } else {
        format!("{fill}{sign}{digits}")
    }
}

fn pad_text(s: String, f: Flags) -> String {
    let Some(width) = f.width else { return s };
    let len = s.chars().count();
    if f.no_pad || len >= width {
        return s;
    }
    let pad = if f.zero { '0' } else { ' ' };
    let fill: String = std::iter::repeat_n(pad, width - len).collect();
    format!("{fill}{s}")
}

/// `%z` (`-0400`), `%:z` (`-04:00`), `%::z` (`-04:00:00`).
fn offset_text(seconds: i32, colons: usize) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.unsigned_abs();
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    let body = match colons {
        0 => format!("{h:02}{m:02}"),
        1 => format!("{h:02}:{m:02}"),
        _ => format!("{h:02}:{m:02}:{sec:02}"),
    };
    format!("{sign}{body}")
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
