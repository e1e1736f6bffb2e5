//! What a relay's answer means for a message (pure): whether a refusal is about the recipient,
//! and the answer as recorded, without the address.

/// Whether a permanent refusal is about the recipient (unknown, disabled mailbox), which
/// suppresses the address, rather than about the relay, the sender or the content.
pub(crate) fn refuses_recipient(code: Option<u16>, enhanced: Option<&str>) -> bool {
    match enhanced {
        Some(e) => e.starts_with("5.1.") || e == "5.2.1",
        None => matches!(code, Some(550 | 551 | 553)),
    }
}

/// The relay's answer as recorded on the message. Relays often name the address
/// (`450 <ann@example.com>: greylisted`): it is replaced, since only its hash may be kept and
/// listings show the detail.
pub(crate) fn relay_detail(code: Option<u16>, enhanced: Option<&str>, text: &str, address: &str) -> String {
    let detail = describe(code, enhanced, text);
    if address.is_empty() {
        return detail;
    }
    // Relays may change the case of an address; the local part rarely matters to them.
    let lower = detail.to_ascii_lowercase();
    let needle = address.to_ascii_lowercase();
    let mut out = String::with_capacity(detail.len());
    let mut rest = 0;
    for (at, _) in lower.match_indices(&needle) {
        out.push_str(&detail[rest..at]);
        out.push_str("<recipient>");
        rest = at + needle.len();
    }
    out.push_str(&detail[rest..]);
    out
}

fn describe(code: Option<u16>, enhanced: Option<&str>, text: &str) -> String {
    match (code, enhanced) {
        (Some(c), Some(e)) if !text.starts_with(e) => format!("{c} {e} {text}"),
        (Some(c), _) => format!("{c} {text}"),
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_answers_never_keep_the_address() {
        for (text, expected) in [
            (
                "<ann@example.com>: greylisted, try later",
                "450 <<recipient>>: greylisted, try later",
            ),
            ("Recipient ANN@Example.com busy", "450 Recipient <recipient> busy"),
            ("mailbox full", "450 mailbox full"),
        ] {
            assert_eq!(relay_detail(Some(450), None, text, "ann@example.com"), expected);
        }
    }
}
