//! Timestamps as proto3 JSON writes them (RFC 3339 in UTC with `Z`), digit by digit: the text
//! of every timestamp a reader decodes from a payload and every timestamp column a rebuild
//! writes, where chrono's `fmt` path was a sixth of a fold (`perf` on `kefu-bench rebuild`).

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};

/// The longest text [`rfc3339`] writes: `9999-12-31T23:59:59.999999999Z`.
pub const RFC3339_MAX: usize = 30;

/// `t` as chrono's `to_rfc3339_opts(SecondsFormat::AutoSi, true)` writes it, for years 0 to
/// 9999 and no leap second; `None` otherwise (the caller lets chrono write those).
pub fn rfc3339<'b>(t: &DateTime<Utc>, buf: &'b mut [u8; RFC3339_MAX]) -> Option<&'b str> {
    let year = t.year();
    let nanos = t.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return None;
    }
    fn digits(buf: &mut [u8], value: u32) {
        let mut v = value;
        for b in buf.iter_mut().rev() {
            *b = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    digits(&mut buf[0..4], year as u32);
    buf[4] = b'-';
    digits(&mut buf[5..7], t.month());
    buf[7] = b'-';
    digits(&mut buf[8..10], t.day());
    buf[10] = b'T';
    digits(&mut buf[11..13], t.hour());
    buf[13] = b':';
    digits(&mut buf[14..16], t.minute());
    buf[16] = b':';
    digits(&mut buf[17..19], t.second());
    let mut end = 19;
    let (fraction, width) = if nanos == 0 {
        (0, 0)
    } else if nanos.is_multiple_of(1_000_000) {
        (nanos / 1_000_000, 3)
    } else if nanos.is_multiple_of(1_000) {
        (nanos / 1_000, 6)
    } else {
        (nanos, 9)
    };
    if width > 0 {
        buf[end] = b'.';
        digits(&mut buf[end + 1..end + 1 + width], fraction);
        end += 1 + width;
    }
    buf[end] = b'Z';
    std::str::from_utf8(&buf[..end + 1]).ok()
}

/// Calls `f` with `t`'s text: [`rfc3339`]'s, or chrono's where that declines.
pub(crate) fn with_text<R>(t: &DateTime<Utc>, f: impl FnOnce(&str) -> R) -> R {
    let mut buf = [0u8; RFC3339_MAX];
    match rfc3339(t, &mut buf) {
        Some(text) => f(text),
        None => f(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
    }
}
