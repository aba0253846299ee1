//! Business calendars and SLA clock arithmetic.
//!
//! An SLA clock counts either every second ([`Clock::Calendar`], 24×7) or only the working time
//! of a [`BusinessCalendar`] ([`Clock::Business`]): working periods per weekday in local
//! wall-clock time of an IANA time zone, holidays, and extra working days (调休, a weekend day
//! made a working day). On top of that, [`active_elapsed`] and [`deadline`] leave out the
//! intervals in which a clock was paused (e.g. while a request waits on the customer).
//!
//! Rules the arithmetic follows:
//! - **Which periods a date has**: a holiday has none; otherwise an extra working day has its
//!   own periods; otherwise the periods of its weekday.
//! - **Midnight**: `24:00` is not a time of day. A period whose `end` is `00:00` runs to the
//!   midnight that ends its day (`22:00`–`00:00` is two hours; `00:00`–`00:00` is the whole day).
//! - **Daylight saving time**: local times are turned into instants one by one. A local time
//!   that does not exist (clocks spring forward) becomes the earliest instant after it, i.e. the
//!   moment of the change; an ambiguous local time (clocks fall back) becomes the earlier of its
//!   two instants. So `09:00`–`17:00` stays eight real hours on change days whenever the change
//!   happens outside the period, and a period spanning the change is as long as the wall clock
//!   says it is (e.g. `01:00`–`04:00` is two real hours on a spring-forward day in Berlin).
//! - **Precision**: instants and durations keep chrono's nanoseconds; nothing is rounded.
//! - **Cost**: the arithmetic walks day by day (a handful of time-zone look-ups per day), never
//!   minute by minute; [`Clock::add`] gives up after twenty years of calendar time.
//!
//! Nothing here reads the clock: callers pass "now" in.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use chrono::{
    DateTime, Datelike, Duration, MappedLocalTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::DomainError;

/// Minutes in a (wall-clock) day; a period end of `00:00` counts as this.
const MINUTES_PER_DAY: u32 = 24 * 60;

/// How many days [`Clock::add`] searches before giving up: twenty years and a margin.
const ADD_HORIZON_DAYS: usize = 20 * 366 + 3;

/// A wall-clock time of day written "HH:MM" (24 h). Serialises as that string.
///
/// `24:00` is not accepted: a [`WorkingPeriod`] that runs to midnight ends at `00:00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay(pub NaiveTime);

impl TimeOfDay {
    /// Parses `HH:MM` (the hour may have one digit); `field` names the input in the error.
    pub fn parse(field: &str, raw: &str) -> Result<Self, DomainError> {
        let value = raw.trim();
        let bad = || DomainError::invalid(field, format!("`{value}` is not a time of day; write HH:MM, e.g. 09:00"));
        let (h, m) = value.split_once(':').ok_or_else(bad)?;
        let digits =
            |s: &str, min: usize, max: usize| (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(h, 1, 2) || !digits(m, 2, 2) {
            return Err(bad());
        }
        let hour: u32 = h.parse().map_err(|_| bad())?;
        let minute: u32 = m.parse().map_err(|_| bad())?;
        if hour == 24 && minute == 0 {
            return Err(DomainError::invalid(
                field,
                "24:00 is not a time of day; a period that runs to midnight ends at 00:00",
            ));
        }
        if hour > 23 || minute > 59 {
            return Err(DomainError::invalid(field, format!("`{value}` is out of range 00:00 to 23:59")));
        }
        NaiveTime::from_hms_opt(hour, minute, 0).map(TimeOfDay).ok_or_else(bad)
    }

    /// Minutes since midnight (seconds ignored).
    fn minutes(self) -> u32 {
        self.0.hour() * 60 + self.0.minute()
    }

    /// Whether the time has no seconds or fractions, i.e. survives the "HH:MM" form.
    fn is_whole_minute(self) -> bool {
        self.0.second() == 0 && self.0.nanosecond() == 0
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0.hour(), self.0.minute())
    }
}

impl Serialize for TimeOfDay {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        TimeOfDay::parse("time", &raw).map_err(serde::de::Error::custom)
    }
}

/// One working period within a day, [start, end) in local wall-clock time. end > start.
///
/// An `end` of `00:00` means the midnight at the end of the day (there is no `24:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkingPeriod {
    /// First working minute (inclusive).
    pub start: TimeOfDay,
    /// End of the period (exclusive); `00:00` is the following midnight.
    pub end: TimeOfDay,
}

impl WorkingPeriod {
    /// Start and end in minutes since the day's midnight, `end` of `00:00` being 1440.
    fn minutes(self) -> (u32, u32) {
        let end = match self.end.minutes() {
            0 => MINUTES_PER_DAY,
            m => m,
        };
        (self.start.minutes(), end)
    }
}

/// The working periods of one day (possibly empty = not a working day).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkingDay {
    /// Periods in order, not overlapping.
    #[serde(default)]
    pub periods: Vec<WorkingPeriod>,
}

/// A holiday: a date on which nobody works, whatever the weekday.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holiday {
    /// The local date.
    pub date: NaiveDate,
    /// What it is called, for people (e.g. 国庆节).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A date worked although its weekday normally is not (调休), with its own periods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtraWorkingDay {
    /// The local date.
    pub date: NaiveDate,
    /// Why it is worked, for people (e.g. 国庆节调休).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The working periods of that date (at least one when validated).
    #[serde(default)]
    pub periods: Vec<WorkingPeriod>,
}

/// A business calendar as stored in events (JSON field names are camelCase;
/// `weekly` has exactly 7 entries, Monday first; `timeZone` is an IANA name such as "Asia/Shanghai").
///
/// Deserialising does not validate (stored events are trusted); [`BusinessCalendar::new`] does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CalendarDefinition {
    /// IANA time zone of the wall-clock times, e.g. `Asia/Shanghai`.
    pub time_zone: String,
    /// Working periods per weekday, Monday first; exactly seven entries.
    pub weekly: Vec<WorkingDay>,
    /// Dates without working time.
    #[serde(default)]
    pub holidays: Vec<Holiday>,
    /// Dates with their own working periods regardless of the weekday.
    #[serde(default)]
    pub extra_working_days: Vec<ExtraWorkingDay>,
}

impl CalendarDefinition {
    /// Checks a definition: known IANA zone (field "timeZone"), exactly 7 weekly entries ("weekly"),
    /// every period start < end, periods of a day sorted and not overlapping ("weekly[2].periods[1]" style field paths),
    /// no date both a holiday and an extra working day, at least some working time in a normal week.
    ///
    /// Also refused: times with seconds (they would not survive "HH:MM"), a date listed twice as a
    /// holiday or as an extra working day, and an extra working day without periods.
    pub fn validate(&self) -> Result<(), DomainError> {
        Compiled::from_definition(self).map(drop)
    }

    /// The default calendar: Asia/Shanghai, Monday–Friday 09:00–12:00 and 13:00–18:00, no holidays.
    pub fn standard() -> Self {
        let hm = |h: u32| TimeOfDay(NaiveTime::from_hms_opt(h, 0, 0).unwrap_or(NaiveTime::MIN));
        let office = WorkingDay {
            periods: vec![WorkingPeriod { start: hm(9), end: hm(12) }, WorkingPeriod { start: hm(13), end: hm(18) }],
        };
        let mut weekly = vec![office; 5];
        weekly.extend([WorkingDay::default(), WorkingDay::default()]);
        CalendarDefinition {
            time_zone: "Asia/Shanghai".to_string(),
            weekly,
            holidays: Vec::new(),
            extra_working_days: Vec::new(),
        }
    }
}

/// A working period as minutes since the day's midnight, end exclusive and at most 1440.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

/// The checked, indexed form of a definition.
#[derive(Debug, Clone)]
struct Compiled {
    zone: Tz,
    weekly: [Vec<Span>; 7],
    holidays: HashSet<NaiveDate>,
    extra: HashMap<NaiveDate, Vec<Span>>,
}

impl Compiled {
    fn from_definition(def: &CalendarDefinition) -> Result<Self, DomainError> {
        let zone: Tz = def.time_zone.parse().map_err(|_| {
            DomainError::invalid("timeZone", format!("`{}` is not an IANA time zone name", def.time_zone))
        })?;
        if def.weekly.len() != 7 {
            return Err(DomainError::invalid(
                "weekly",
                format!("has {} entries; expected 7, Monday first", def.weekly.len()),
            ));
        }
        let mut weekly: [Vec<Span>; 7] = Default::default();
        for (i, day) in def.weekly.iter().enumerate() {
            weekly[i] = check_periods(&format!("weekly[{i}]"), &day.periods)?;
        }
        if weekly.iter().all(Vec::is_empty) {
            return Err(DomainError::invalid("weekly", "a normal week has no working time"));
        }
        let mut holidays = HashSet::with_capacity(def.holidays.len());
        for (i, holiday) in def.holidays.iter().enumerate() {
            if !holidays.insert(holiday.date) {
                return Err(DomainError::invalid(
                    format!("holidays[{i}].date"),
                    format!("{} is listed as a holiday twice", holiday.date),
                ));
            }
        }
        let mut extra = HashMap::with_capacity(def.extra_working_days.len());
        for (i, day) in def.extra_working_days.iter().enumerate() {
            let path = format!("extraWorkingDays[{i}]");
            if holidays.contains(&day.date) {
                return Err(DomainError::invalid(
                    format!("{path}.date"),
                    format!("{} is both a holiday and an extra working day", day.date),
                ));
            }
            if day.periods.is_empty() {
                return Err(DomainError::invalid(
                    format!("{path}.periods"),
                    "an extra working day needs at least one working period",
                ));
            }
            let spans = check_periods(&path, &day.periods)?;
            if extra.insert(day.date, spans).is_some() {
                return Err(DomainError::invalid(
                    format!("{path}.date"),
                    format!("{} is listed as an extra working day twice", day.date),
                ));
            }
        }
        Ok(Compiled { zone, weekly, holidays, extra })
    }
}

/// Checks the periods of one day; `path` is e.g. `weekly[2]`.
fn check_periods(path: &str, periods: &[WorkingPeriod]) -> Result<Vec<Span>, DomainError> {
    let mut spans: Vec<Span> = Vec::with_capacity(periods.len());
    for (j, period) in periods.iter().enumerate() {
        let field = format!("{path}.periods[{j}]");
        for (name, time) in [("start", period.start), ("end", period.end)] {
            if !time.is_whole_minute() {
                return Err(DomainError::invalid(
                    format!("{field}.{name}"),
                    "must be a whole minute (HH:MM, no seconds)",
                ));
            }
        }
        let (start, end) = period.minutes();
        if start >= end {
            return Err(DomainError::invalid(
                field,
                format!(
                    "starts at {} and ends at {}; a period must end after it starts (end at 00:00 for midnight)",
                    period.start, period.end
                ),
            ));
        }
        if let Some(previous) = spans.last()
            && start < previous.end
        {
            return Err(DomainError::invalid(
                field,
                format!(
                    "starts at {}, before the previous period ends at {}; periods must be in order and not overlap",
                    period.start,
                    periods[j - 1].end
                ),
            ));
        }
        spans.push(Span { start, end });
    }
    Ok(spans)
}

/// A validated calendar ready for arithmetic (zone parsed, days indexed).
///
/// Cheap to clone: the indexed form is shared.
#[derive(Debug, Clone)]
pub struct BusinessCalendar {
    inner: Arc<Inner>,
}

/// What a [`BusinessCalendar`] shares between its clones.
#[derive(Debug)]
struct Inner {
    definition: CalendarDefinition,
    compiled: Compiled,
}

impl BusinessCalendar {
    /// Validates `definition` (see [`CalendarDefinition::validate`]) and indexes it.
    pub fn new(definition: &CalendarDefinition) -> Result<Self, DomainError> {
        let compiled = Compiled::from_definition(definition)?;
        Ok(BusinessCalendar { inner: Arc::new(Inner { definition: definition.clone(), compiled }) })
    }

    /// The definition this calendar was built from.
    pub fn definition(&self) -> &CalendarDefinition {
        &self.inner.definition
    }

    /// The parsed time zone.
    pub fn zone(&self) -> Tz {
        self.inner.compiled.zone
    }

    /// The working intervals of a local date as instants, in order (empty on days off). Useful to
    /// show opening hours; periods shortened to nothing by a DST change are left out.
    pub fn working_intervals_on(&self, date: NaiveDate) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        self.intervals_on(date).collect()
    }

    /// The spans of a local date: none on holidays, own spans on extra working days, else the weekday's.
    fn spans_on(&self, date: NaiveDate) -> &[Span] {
        let c = &self.inner.compiled;
        if c.holidays.contains(&date) {
            return &[];
        }
        if let Some(spans) = c.extra.get(&date) {
            return spans;
        }
        &c.weekly[date.weekday().num_days_from_monday() as usize]
    }

    /// The non-empty working intervals of a local date, in order.
    fn intervals_on(&self, date: NaiveDate) -> impl Iterator<Item = (DateTime<Utc>, DateTime<Utc>)> + '_ {
        self.spans_on(date).iter().filter_map(move |span| {
            let start = self.instant(date, span.start)?;
            let end = self.instant(date, span.end)?;
            (start < end).then_some((start, end))
        })
    }

    /// The instant of `minutes` past the local midnight starting `date` (1440 = the next midnight).
    fn instant(&self, date: NaiveDate, minutes: u32) -> Option<DateTime<Utc>> {
        let (date, minutes) =
            if minutes >= MINUTES_PER_DAY { (date.succ_opt()?, minutes - MINUTES_PER_DAY) } else { (date, minutes) };
        Some(self.resolve(date.and_hms_opt(minutes / 60, minutes % 60, 0)?))
    }

    /// Local wall-clock time to instant: ambiguous → earlier; nonexistent → the earliest instant
    /// whose local time is after it (the moment of the change).
    fn resolve(&self, local: NaiveDateTime) -> DateTime<Utc> {
        match self.inner.compiled.zone.from_local_datetime(&local) {
            MappedLocalTime::Single(t) => t.with_timezone(&Utc),
            MappedLocalTime::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
            MappedLocalTime::None => self.end_of_gap(local),
        }
    }

    /// The first instant whose local time is at or after `local`, which lies in a gap. Binary
    /// search over whole seconds: offsets are within ±26 h and change on whole seconds.
    fn end_of_gap(&self, local: NaiveDateTime) -> DateTime<Utc> {
        let naive = local.and_utc();
        let margin = Duration::hours(26);
        let (Some(mut lo), Some(mut hi)) = (naive.checked_sub_signed(margin), naive.checked_add_signed(margin)) else {
            return naive;
        };
        let local_of = |t: DateTime<Utc>| t.with_timezone(&self.inner.compiled.zone).naive_local();
        // Invariant: local_of(lo) < local <= local_of(hi).
        while hi - lo > Duration::seconds(1) {
            let mid = lo + Duration::seconds((hi - lo).num_seconds() / 2);
            if local_of(mid) >= local {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    }

    /// The local date of an instant.
    fn local_date(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.inner.compiled.zone).date_naive()
    }

    /// The first date whose intervals may reach `t`: the day before its local date, since a
    /// fall-back change at midnight lets a day's periods begin before its local date does.
    fn first_date(&self, t: DateTime<Utc>) -> NaiveDate {
        let date = self.local_date(t);
        date.pred_opt().unwrap_or(date)
    }

    fn elapsed(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        let mut total = Duration::zero();
        if to <= from {
            return total;
        }
        let last = self.local_date(to);
        let last = last.succ_opt().unwrap_or(last);
        for date in self.first_date(from).iter_days().take_while(|d| *d <= last) {
            for (start, end) in self.intervals_on(date) {
                let (start, end) = (start.max(from), end.min(to));
                if start < end {
                    total += end - start;
                }
            }
        }
        total
    }

    fn add(&self, from: DateTime<Utc>, work: Duration) -> Option<DateTime<Utc>> {
        if work <= Duration::zero() {
            return Some(from);
        }
        let mut remaining = work;
        for date in self.first_date(from).iter_days().take(ADD_HORIZON_DAYS) {
            for (start, end) in self.intervals_on(date) {
                let start = start.max(from);
                if end <= start {
                    continue;
                }
                let available = end - start;
                if remaining <= available {
                    return Some(start + remaining);
                }
                remaining -= available;
            }
        }
        None
    }

    fn is_working(&self, t: DateTime<Utc>) -> bool {
        let date = self.local_date(t);
        [date.pred_opt(), Some(date), date.succ_opt()]
            .into_iter()
            .flatten()
            .any(|d| self.intervals_on(d).any(|(start, end)| start <= t && t < end))
    }
}

/// How an SLA clock counts time.
#[derive(Debug, Clone)]
pub enum Clock {
    /// Every second counts (24×7).
    Calendar,
    /// Only working time of this calendar counts.
    Business(BusinessCalendar),
}

impl Clock {
    /// Working time in [from, to); zero when to <= from.
    pub fn elapsed(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        match self {
            Clock::Calendar => (to - from).max(Duration::zero()),
            Clock::Business(calendar) => calendar.elapsed(from, to),
        }
    }

    /// The earliest instant t >= from such that elapsed(from, t) == work. For work <= 0 returns `from`.
    /// For a Business clock the result is always inside (or at the end of) a working period: adding 2 h at Friday 17:00
    /// with working hours 09–18 gives Monday 10:00. Returns None only if no such instant exists within 20 years.
    ///
    /// A Calendar clock returns `from + work`, None only if that is beyond chrono's range.
    pub fn add(&self, from: DateTime<Utc>, work: Duration) -> Option<DateTime<Utc>> {
        if work <= Duration::zero() {
            return Some(from);
        }
        match self {
            Clock::Calendar => from.checked_add_signed(work),
            Clock::Business(calendar) => calendar.add(from, work),
        }
    }

    /// Whether `t` is working time (always, for a Calendar clock).
    pub fn is_working(&self, t: DateTime<Utc>) -> bool {
        match self {
            Clock::Calendar => true,
            Clock::Business(calendar) => calendar.is_working(t),
        }
    }
}

/// A pause of an SLA clock: [from, until); until = None means still paused.
///
/// A closed pause with `until <= from` pauses nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pause {
    /// When the clock stopped.
    pub from: DateTime<Utc>,
    /// When it started again; None while still paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

/// The pauses from `start` on as disjoint intervals in order: clipped to start at `start` or
/// later, empty ones dropped, overlapping or touching ones merged (an open pause swallows every
/// later one).
fn paused_intervals(pauses: &[Pause], start: DateTime<Utc>) -> Vec<Pause> {
    let mut clipped: Vec<Pause> = pauses
        .iter()
        .filter(|p| p.until.is_none_or(|until| until > start && until > p.from))
        .map(|p| Pause { from: p.from.max(start), until: p.until })
        .collect();
    clipped.sort_by_key(|p| p.from);
    let mut merged: Vec<Pause> = Vec::with_capacity(clipped.len());
    for pause in clipped {
        match merged.last_mut() {
            Some(last) if last.until.is_none_or(|until| pause.from <= until) => {
                last.until = match (last.until, pause.until) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
            _ => merged.push(pause),
        }
    }
    merged
}

/// Working time from `start` to `now`, not counting paused intervals (pauses may overlap each other or lie outside
/// [start, now]; count each instant at most once).
pub fn active_elapsed(clock: &Clock, start: DateTime<Utc>, now: DateTime<Utc>, pauses: &[Pause]) -> Duration {
    let mut total = Duration::zero();
    if now <= start {
        return total;
    }
    let mut cursor = start;
    for pause in paused_intervals(pauses, start) {
        if pause.from >= now {
            break;
        }
        total += clock.elapsed(cursor, pause.from);
        match pause.until {
            Some(until) if until < now => cursor = until,
            _ => return total,
        }
    }
    total + clock.elapsed(cursor, now)
}

/// When `target` working time will have passed since `start`, not counting pauses. None while a pause is open
/// (until = None) and the target had not been reached before that pause began (the deadline is unknown while paused);
/// if the target was already reached before the open pause began, return that (past) deadline.
///
/// The result is the earliest instant at which [`active_elapsed`] reaches `target` (`start` when
/// `target <= 0`); it is also None if [`Clock::add`] finds nothing within its horizon.
pub fn deadline(clock: &Clock, start: DateTime<Utc>, target: Duration, pauses: &[Pause]) -> Option<DateTime<Utc>> {
    if target <= Duration::zero() {
        return Some(start);
    }
    let mut cursor = start;
    let mut remaining = target;
    for pause in paused_intervals(pauses, start) {
        let before = clock.elapsed(cursor, pause.from);
        if remaining <= before {
            return clock.add(cursor, remaining);
        }
        remaining -= before;
        cursor = pause.until?;
    }
    clock.add(cursor, remaining)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn tod(raw: &str) -> TimeOfDay {
        TimeOfDay::parse("t", raw).unwrap()
    }

    fn period(start: &str, end: &str) -> WorkingPeriod {
        WorkingPeriod { start: tod(start), end: tod(end) }
    }

    fn day(periods: &[(&str, &str)]) -> WorkingDay {
        WorkingDay { periods: periods.iter().map(|(s, e)| period(s, e)).collect() }
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    /// A local wall-clock time in `zone` as an instant (earlier one if ambiguous).
    fn at(zone: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        zone.with_ymd_and_hms(y, mo, d, h, mi, 0).earliest().unwrap().with_timezone(&Utc)
    }

    fn sh(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        at(chrono_tz::Asia::Shanghai, y, mo, d, h, mi)
    }

    fn business(def: &CalendarDefinition) -> Clock {
        Clock::Business(BusinessCalendar::new(def).unwrap())
    }

    fn standard() -> Clock {
        business(&CalendarDefinition::standard())
    }

    /// Standard calendar plus China's 2024 National Day and 2025 Spring Festival with their 调休 days.
    fn china() -> CalendarDefinition {
        let office = vec![period("09:00", "12:00"), period("13:00", "18:00")];
        let holiday = |d: NaiveDate| Holiday { date: d, name: None };
        let extra = |d: NaiveDate, name: &str| ExtraWorkingDay {
            date: d,
            name: Some(name.to_string()),
            periods: office.clone(),
        };
        let mut def = CalendarDefinition::standard();
        def.holidays = (1..=7).map(|d| holiday(date(2024, 10, d))).collect();
        def.holidays.extend(date(2025, 1, 28).iter_days().take(8).map(holiday));
        def.extra_working_days = vec![
            extra(date(2024, 9, 29), "国庆节调休"),
            extra(date(2024, 10, 12), "国庆节调休"),
            extra(date(2025, 1, 26), "春节调休"),
            extra(date(2025, 2, 8), "春节调休"),
        ];
        def
    }

    fn invalid_field(def: &CalendarDefinition) -> String {
        match def.validate() {
            Err(DomainError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    fn closed(from: DateTime<Utc>, until: DateTime<Utc>) -> Pause {
        Pause { from, until: Some(until) }
    }

    fn open(from: DateTime<Utc>) -> Pause {
        Pause { from, until: None }
    }

    #[test]
    fn friday_afternoon_rolls_over_the_weekend() {
        let clock = standard();
        assert_eq!(clock.add(sh(2024, 9, 6, 17, 0), Duration::hours(2)), Some(sh(2024, 9, 9, 10, 0)));
        assert_eq!(clock.elapsed(sh(2024, 9, 6, 17, 0), sh(2024, 9, 9, 10, 0)), Duration::hours(2));
        assert_eq!(deadline(&clock, sh(2024, 9, 6, 17, 0), Duration::hours(2), &[]), Some(sh(2024, 9, 9, 10, 0)));
    }

    #[test]
    fn lunch_break_is_skipped() {
        let clock = standard();
        assert_eq!(clock.add(sh(2024, 9, 9, 11, 0), Duration::hours(2)), Some(sh(2024, 9, 9, 14, 0)));
        assert_eq!(clock.elapsed(sh(2024, 9, 9, 11, 30), sh(2024, 9, 9, 13, 30)), Duration::hours(1));
        assert!(!clock.is_working(sh(2024, 9, 9, 12, 30)));
        assert!(clock.is_working(sh(2024, 9, 9, 13, 0)));
        assert!(!clock.is_working(sh(2024, 9, 9, 12, 0)));
    }

    #[test]
    fn work_ending_with_a_period_ends_there_not_at_the_next_opening() {
        let clock = standard();
        assert_eq!(clock.add(sh(2024, 9, 9, 11, 0), Duration::hours(1)), Some(sh(2024, 9, 9, 12, 0)));
        assert_eq!(clock.add(sh(2024, 9, 9, 9, 0), Duration::hours(8)), Some(sh(2024, 9, 9, 18, 0)));
    }

    #[test]
    fn filed_outside_hours_counts_from_the_next_opening() {
        let clock = standard();
        assert_eq!(clock.add(sh(2024, 9, 9, 7, 0), Duration::hours(1)), Some(sh(2024, 9, 9, 10, 0)));
        assert_eq!(clock.add(sh(2024, 9, 9, 12, 30), Duration::hours(1)), Some(sh(2024, 9, 9, 14, 0)));
        assert_eq!(clock.add(sh(2024, 9, 9, 20, 0), Duration::hours(1)), Some(sh(2024, 9, 10, 10, 0)));
        assert_eq!(clock.add(sh(2024, 9, 7, 10, 0), Duration::hours(1)), Some(sh(2024, 9, 9, 10, 0)));
        assert_eq!(clock.elapsed(sh(2024, 9, 7, 0, 0), sh(2024, 9, 9, 9, 0)), Duration::zero());
    }

    #[test]
    fn national_day_holidays_and_extra_working_days() {
        let clock = business(&china());
        assert_eq!(clock.add(sh(2024, 9, 30, 17, 0), Duration::hours(2)), Some(sh(2024, 10, 8, 10, 0)));
        assert_eq!(clock.add(sh(2024, 9, 28, 10, 0), Duration::hours(2)), Some(sh(2024, 9, 29, 11, 0)));
        assert_eq!(clock.add(sh(2024, 10, 11, 17, 0), Duration::hours(2)), Some(sh(2024, 10, 12, 10, 0)));
        assert!(clock.is_working(sh(2024, 9, 29, 10, 0)), "Sunday 29 September is worked");
        assert!(!clock.is_working(sh(2024, 10, 1, 10, 0)), "1 October is a holiday");
        assert_eq!(clock.elapsed(sh(2024, 9, 30, 0, 0), sh(2024, 10, 8, 0, 0)), Duration::hours(8));
    }

    #[test]
    fn calendar_clock_counts_every_second() {
        let clock = Clock::Calendar;
        let filed = sh(2024, 9, 6, 17, 0);
        assert_eq!(clock.add(filed, Duration::hours(48)), Some(filed + Duration::hours(48)));
        assert_eq!(clock.elapsed(filed, filed + Duration::hours(48)), Duration::hours(48));
        assert_eq!(clock.elapsed(filed + Duration::hours(1), filed), Duration::zero());
        assert!(clock.is_working(sh(2024, 9, 7, 3, 0)));
    }

    #[test]
    fn non_positive_work_is_due_at_once() {
        let filed = sh(2024, 9, 7, 3, 0);
        for clock in [Clock::Calendar, standard()] {
            assert_eq!(clock.add(filed, Duration::zero()), Some(filed));
            assert_eq!(clock.add(filed, Duration::hours(-1)), Some(filed));
            assert_eq!(deadline(&clock, filed, Duration::zero(), &[open(filed)]), Some(filed));
        }
    }

    #[test]
    fn sub_second_precision_is_kept() {
        let clock = standard();
        let from = sh(2024, 9, 9, 11, 59) + Duration::nanoseconds(123_456_789);
        let work = Duration::seconds(90) + Duration::microseconds(250);
        let due = clock.add(from, work).unwrap();
        // 59.876543211 s before noon, the rest from 13:00.
        let rest = work - (sh(2024, 9, 9, 12, 0) - from);
        assert_eq!(due, sh(2024, 9, 9, 13, 0) + rest);
        assert_eq!(clock.elapsed(from, due), work);
        assert_eq!(clock.elapsed(from, from + Duration::nanoseconds(1)), Duration::nanoseconds(1));
    }

    #[test]
    fn a_working_hour_paused_moves_the_deadline_by_a_working_hour() {
        let clock = standard();
        let filed = sh(2024, 9, 9, 9, 0);
        let target = Duration::hours(4);
        assert_eq!(deadline(&clock, filed, target, &[]), Some(sh(2024, 9, 9, 14, 0)));
        let pause = closed(sh(2024, 9, 9, 10, 0), sh(2024, 9, 9, 11, 0));
        assert_eq!(deadline(&clock, filed, target, &[pause]), Some(sh(2024, 9, 9, 15, 0)));
        // Across lunch only the working half hours count: 11:30–12:00 and 13:00–13:30.
        let over_lunch = closed(sh(2024, 9, 9, 11, 30), sh(2024, 9, 9, 13, 30));
        assert_eq!(deadline(&clock, filed, target, &[over_lunch]), Some(sh(2024, 9, 9, 15, 0)));
        // Late on Monday, the extra hour lands on Tuesday.
        let late = closed(sh(2024, 9, 9, 16, 0), sh(2024, 9, 9, 17, 0));
        assert_eq!(deadline(&clock, filed, Duration::hours(8), &[late]), Some(sh(2024, 9, 10, 10, 0)));
    }

    #[test]
    fn a_pause_outside_working_hours_changes_nothing() {
        let clock = standard();
        let filed = sh(2024, 9, 6, 17, 0);
        let evening = closed(sh(2024, 9, 6, 19, 0), sh(2024, 9, 8, 23, 0));
        assert_eq!(deadline(&clock, filed, Duration::hours(2), &[evening]), Some(sh(2024, 9, 9, 10, 0)));
        let now = sh(2024, 9, 9, 9, 30);
        assert_eq!(active_elapsed(&clock, filed, now, &[evening]), Duration::minutes(90));
    }

    #[test]
    fn an_open_pause_makes_the_deadline_unknown_unless_already_reached() {
        let clock = standard();
        let filed = sh(2024, 9, 9, 9, 0);
        let target = Duration::hours(4);
        assert_eq!(deadline(&clock, filed, target, &[open(sh(2024, 9, 9, 10, 0))]), None);
        assert_eq!(deadline(&clock, filed, target, &[open(sh(2024, 9, 9, 15, 0))]), Some(sh(2024, 9, 9, 14, 0)));
        // Reached exactly when the pause began.
        assert_eq!(deadline(&clock, filed, target, &[open(sh(2024, 9, 9, 14, 0))]), Some(sh(2024, 9, 9, 14, 0)));
        // An open pause before the start pauses from the start.
        assert_eq!(deadline(&clock, filed, target, &[open(sh(2024, 9, 8, 10, 0))]), None);
    }

    #[test]
    fn active_elapsed_counts_each_paused_instant_once() {
        let clock = standard();
        let filed = sh(2024, 9, 9, 9, 0);
        let now = sh(2024, 9, 9, 18, 0);
        let pauses = [
            closed(sh(2024, 9, 9, 10, 0), sh(2024, 9, 9, 11, 0)),
            closed(sh(2024, 9, 9, 10, 30), sh(2024, 9, 9, 11, 30)), // overlaps the first
            closed(sh(2024, 9, 9, 10, 15), sh(2024, 9, 9, 10, 45)), // inside both
            closed(sh(2024, 9, 8, 10, 0), sh(2024, 9, 9, 9, 30)),   // starts before `start`
            closed(sh(2024, 9, 10, 10, 0), sh(2024, 9, 10, 11, 0)), // after `now`
            closed(sh(2024, 9, 9, 16, 0), sh(2024, 9, 9, 15, 0)),   // empty
        ];
        assert_eq!(active_elapsed(&clock, filed, now, &pauses), Duration::hours(6));
        assert_eq!(active_elapsed(&clock, filed, now, &[open(sh(2024, 9, 9, 17, 0))]), Duration::hours(7));
        assert_eq!(active_elapsed(&clock, now, filed, &[]), Duration::zero());
        assert_eq!(active_elapsed(&Clock::Calendar, filed, now, &pauses), Duration::hours(7));
    }

    /// Berlin, every day 09:00–17:00 plus a Sunday night shift, to look at DST days.
    fn berlin(sunday: &[(&str, &str)]) -> Clock {
        let mut weekly = vec![day(&[("09:00", "17:00")]); 6];
        weekly.push(day(sunday));
        business(&CalendarDefinition {
            time_zone: "Europe/Berlin".to_string(),
            weekly,
            holidays: vec![],
            extra_working_days: vec![],
        })
    }

    fn berlin_at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        at(chrono_tz::Europe::Berlin, y, mo, d, h, mi)
    }

    #[test]
    fn dst_change_days_keep_their_working_hours() {
        let clock = berlin(&[("09:00", "17:00")]);
        for (y, m, d) in [(2024, 3, 30), (2024, 3, 31), (2024, 4, 1), (2024, 10, 26), (2024, 10, 27), (2024, 10, 28)] {
            let day_start = berlin_at(y, m, d, 0, 0);
            let next = date(y, m, d).succ_opt().unwrap();
            let day_end = berlin_at(next.year(), next.month(), next.day(), 0, 0);
            assert_eq!(clock.elapsed(day_start, day_end), Duration::hours(8), "{y}-{m}-{d}");
            assert_eq!(clock.add(day_start, Duration::hours(8)), Some(berlin_at(y, m, d, 17, 0)), "{y}-{m}-{d}");
        }
        assert_eq!(berlin_at(2024, 3, 31, 17, 0) - berlin_at(2024, 3, 31, 0, 0), Duration::hours(16));
        assert_eq!(berlin_at(2024, 10, 27, 17, 0) - berlin_at(2024, 10, 27, 0, 0), Duration::hours(18));
    }

    #[test]
    fn nonexistent_local_times_start_at_the_change() {
        // 2024-03-31 02:00 CET jumps to 03:00 CEST (01:00 UTC); 02:30 does not exist.
        let clock = berlin(&[("02:30", "05:00")]);
        let utc = |h: u32, mi: u32| Utc.with_ymd_and_hms(2024, 3, 31, h, mi, 0).unwrap();
        assert_eq!(clock.elapsed(utc(0, 0), utc(6, 0)), Duration::hours(2));
        assert!(!clock.is_working(utc(1, 0) - Duration::nanoseconds(1)));
        assert!(clock.is_working(utc(1, 0)));
        assert_eq!(clock.add(utc(0, 0), Duration::minutes(30)), Some(utc(1, 30)));
        // A period spanning the change is as long as the wall clock says: 01:00–04:00 is 2 h.
        let spanning = berlin(&[("01:00", "04:00")]);
        assert_eq!(spanning.elapsed(utc(0, 0), utc(6, 0)), Duration::hours(2));
        // A normal Sunday for comparison.
        assert_eq!(clock.elapsed(berlin_at(2024, 3, 24, 0, 0), berlin_at(2024, 3, 25, 0, 0)), Duration::minutes(150));
    }

    #[test]
    fn ambiguous_local_times_take_the_earlier_instant() {
        // 2024-10-27 03:00 CEST falls back to 02:00 CET (01:00 UTC); 02:30 happens twice.
        let clock = berlin(&[("02:30", "03:30")]);
        let utc = |h: u32, mi: u32| Utc.with_ymd_and_hms(2024, 10, 27, h, mi, 0).unwrap();
        // From 02:30 CEST (00:30 UTC) to 03:30 CET (02:30 UTC).
        assert_eq!(clock.elapsed(utc(0, 0), utc(6, 0)), Duration::hours(2));
        assert!(clock.is_working(utc(0, 30)));
        assert!(!clock.is_working(utc(0, 29)));
        assert!(!clock.is_working(utc(2, 30)));
    }

    #[test]
    fn a_period_may_run_to_midnight() {
        let mut def = CalendarDefinition::standard();
        def.weekly = vec![day(&[("22:00", "00:00")]); 7];
        def.weekly[6] = day(&[("00:00", "00:00")]);
        let clock = business(&def);
        assert_eq!(clock.elapsed(sh(2024, 9, 9, 0, 0), sh(2024, 9, 10, 0, 0)), Duration::hours(2));
        assert!(clock.is_working(sh(2024, 9, 10, 0, 0) - Duration::nanoseconds(1)));
        assert!(!clock.is_working(sh(2024, 9, 10, 0, 0)));
        assert_eq!(clock.add(sh(2024, 9, 9, 23, 0), Duration::hours(2)), Some(sh(2024, 9, 10, 23, 0)));
        // Sunday 2024-09-15 is worked all day, joining Saturday night's shift.
        assert_eq!(clock.elapsed(sh(2024, 9, 14, 0, 0), sh(2024, 9, 16, 0, 0)), Duration::hours(26));
        assert_eq!(clock.add(sh(2024, 9, 14, 23, 0), Duration::hours(2)), Some(sh(2024, 9, 15, 1, 0)));
    }

    #[test]
    fn add_gives_up_after_twenty_years() {
        let mut def = CalendarDefinition::standard();
        def.weekly = vec![WorkingDay::default(); 7];
        def.weekly[0] = day(&[("09:00", "10:00")]);
        def.holidays =
            date(2024, 9, 9).iter_days().step_by(7).take(21 * 53).map(|d| Holiday { date: d, name: None }).collect();
        let clock = business(&def);
        assert_eq!(clock.add(sh(2024, 9, 9, 0, 0), Duration::minutes(1)), None);
        assert_eq!(deadline(&clock, sh(2024, 9, 9, 0, 0), Duration::minutes(1), &[]), None);
    }

    #[test]
    fn the_standard_calendar_is_valid() {
        let def = CalendarDefinition::standard();
        assert_eq!(def.validate(), Ok(()));
        assert_eq!(BusinessCalendar::new(&def).unwrap().definition(), &def);
        assert_eq!(BusinessCalendar::new(&def).unwrap().zone(), chrono_tz::Asia::Shanghai);
        assert_eq!(china().validate(), Ok(()));
    }

    #[test]
    fn validate_names_the_offending_field() {
        let mut def = CalendarDefinition::standard();
        def.time_zone = "Asia/Beijing".to_string();
        assert_eq!(invalid_field(&def), "timeZone");

        let mut def = CalendarDefinition::standard();
        def.weekly.pop();
        assert_eq!(invalid_field(&def), "weekly");

        let mut def = CalendarDefinition::standard();
        def.weekly[2].periods[1] = period("18:00", "13:00");
        assert_eq!(invalid_field(&def), "weekly[2].periods[1]");

        let mut def = CalendarDefinition::standard();
        def.weekly[2].periods[1] = period("13:00", "13:00");
        assert_eq!(invalid_field(&def), "weekly[2].periods[1]");

        let mut def = CalendarDefinition::standard();
        def.weekly[2].periods[1] = period("11:00", "18:00");
        assert_eq!(invalid_field(&def), "weekly[2].periods[1]");

        let mut def = CalendarDefinition::standard();
        def.weekly[4].periods.reverse();
        assert_eq!(invalid_field(&def), "weekly[4].periods[1]");

        let mut def = CalendarDefinition::standard();
        def.weekly[0].periods[0].end = TimeOfDay(NaiveTime::from_hms_opt(12, 0, 30).unwrap());
        assert_eq!(invalid_field(&def), "weekly[0].periods[0].end");

        let mut def = china();
        def.holidays.push(Holiday { date: date(2024, 10, 12), name: None });
        assert_eq!(invalid_field(&def), "extraWorkingDays[1].date");

        let mut def = china();
        def.holidays.push(Holiday { date: date(2024, 10, 1), name: None });
        assert_eq!(invalid_field(&def), "holidays[15].date");

        let mut def = china();
        def.extra_working_days[0].periods.clear();
        assert_eq!(invalid_field(&def), "extraWorkingDays[0].periods");

        let mut def = china();
        def.extra_working_days[3].periods.push(period("17:00", "19:00"));
        assert_eq!(invalid_field(&def), "extraWorkingDays[3].periods[2]");

        let mut def = china();
        def.weekly = vec![WorkingDay::default(); 7];
        assert_eq!(invalid_field(&def), "weekly");

        let def = CalendarDefinition::standard();
        assert!(BusinessCalendar::new(&CalendarDefinition { time_zone: "nowhere".into(), ..def }).is_err());
    }

    #[test]
    fn time_of_day_parses_and_prints_hh_mm() {
        assert_eq!(tod("09:00").to_string(), "09:00");
        assert_eq!(tod(" 9:05 ").to_string(), "09:05");
        assert_eq!(tod("23:59").to_string(), "23:59");
        assert_eq!(tod("00:00").0, NaiveTime::MIN);
        for bad in ["24:00", "23:60", "9", "9:5", "09:00:00", "ab:cd", "", "-1:00", "+9:00", "123:00"] {
            let err = TimeOfDay::parse("weekly[0].periods[0].start", bad).unwrap_err();
            assert!(
                matches!(&err, DomainError::Invalid { field, .. } if field == "weekly[0].periods[0].start"),
                "{bad}: {err:?}"
            );
        }
        assert_eq!(serde_json::to_value(tod("09:00")).unwrap(), json!("09:00"));
        assert_eq!(serde_json::from_value::<TimeOfDay>(json!("18:30")).unwrap(), tod("18:30"));
        assert!(serde_json::from_value::<TimeOfDay>(json!("24:00")).is_err());
    }

    #[test]
    fn calendar_definitions_round_trip_through_json() {
        let standard = CalendarDefinition::standard();
        let office = json!({ "periods": [{ "start": "09:00", "end": "12:00" }, { "start": "13:00", "end": "18:00" }] });
        let off = json!({ "periods": [] });
        assert_eq!(
            serde_json::to_value(&standard).unwrap(),
            json!({
                "timeZone": "Asia/Shanghai",
                "weekly": [office, office, office, office, office, off, off],
                "holidays": [],
                "extraWorkingDays": [],
            })
        );
        let def = china();
        let value = serde_json::to_value(&def).unwrap();
        assert_eq!(value["holidays"][0], json!({ "date": "2024-10-01" }));
        assert_eq!(value["extraWorkingDays"][0]["date"], json!("2024-09-29"));
        assert_eq!(value["extraWorkingDays"][0]["name"], json!("国庆节调休"));
        assert_eq!(serde_json::from_value::<CalendarDefinition>(value).unwrap(), def);
        // Lists may be left out.
        let minimal =
            json!({ "timeZone": "Asia/Shanghai", "weekly": [office, office, office, office, office, {}, {}] });
        assert_eq!(serde_json::from_value::<CalendarDefinition>(minimal).unwrap(), standard);
    }

    #[test]
    fn pauses_round_trip_through_json() {
        let pause = open(sh(2024, 9, 9, 10, 0));
        let value = serde_json::to_value(pause).unwrap();
        assert_eq!(value, json!({ "from": "2024-09-09T02:00:00Z" }));
        assert_eq!(serde_json::from_value::<Pause>(value).unwrap(), pause);
        let pause = closed(sh(2024, 9, 9, 10, 0), sh(2024, 9, 9, 11, 0));
        let value = serde_json::to_value(pause).unwrap();
        assert_eq!(serde_json::from_value::<Pause>(value).unwrap(), pause);
    }

    #[test]
    fn months_of_work_are_quick() {
        let clock = business(&china());
        let from = sh(2024, 1, 1, 0, 0);
        let started = std::time::Instant::now();
        let due = clock.add(from, Duration::hours(8 * 250)).unwrap();
        assert_eq!(clock.elapsed(from, due), Duration::hours(8 * 250));
        assert!(due > sh(2024, 12, 1, 0, 0) && due < sh(2025, 2, 1, 0, 0), "{due}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    // ---- properties ------------------------------------------------------------------------

    /// 2023-01-01T00:00:00Z.
    const BASE: i64 = 1_672_531_200;
    /// About four years, in seconds.
    const SPAN: i64 = 4 * 365 * 86_400;

    fn clocks() -> [Clock; 2] {
        [Clock::Calendar, business(&china())]
    }

    /// Instants in 2023–2026: arbitrary to the microsecond, or on whole quarter hours (to hit
    /// period boundaries).
    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        prop_oneof![
            (0..SPAN, 0..1_000_000u32).prop_map(|(s, us)| DateTime::from_timestamp(BASE + s, us * 1000).unwrap()),
            (0..SPAN / 900).prop_map(|q| DateTime::from_timestamp(BASE + q * 900, 0).unwrap()),
        ]
    }

    /// Working durations from nothing to 400 h, to the microsecond or in whole quarter hours.
    fn work() -> impl Strategy<Value = Duration> {
        prop_oneof![1 => Just(Duration::zero()), 3 => positive_work()]
    }

    /// Working durations above zero, up to 400 h.
    fn positive_work() -> impl Strategy<Value = Duration> {
        prop_oneof![
            (1..3_600_000_000i64).prop_map(Duration::microseconds),
            (1..400 * 3_600_000_000i64).prop_map(Duration::microseconds),
            (1..1600i64).prop_map(|q| Duration::minutes(15 * q)),
        ]
    }

    /// Pauses near `start`: (offset from start in minutes, length in minutes, open?).
    fn pause_specs() -> impl Strategy<Value = Vec<(i64, i64, bool)>> {
        prop::collection::vec((-3000i64..60_000, 0i64..6000, prop::bool::weighted(0.1)), 0..5)
    }

    fn pauses_from(start: DateTime<Utc>, specs: &[(i64, i64, bool)], allow_open: bool) -> Vec<Pause> {
        specs
            .iter()
            .map(|&(offset, length, is_open)| {
                let from = start + Duration::minutes(offset);
                Pause { from, until: (!(allow_open && is_open)).then(|| from + Duration::minutes(length)) }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn elapsed_is_additive(a in instant(), b in instant(), c in instant()) {
            let mut v = [a, b, c];
            v.sort();
            let [a, b, c] = v;
            for clock in clocks() {
                prop_assert_eq!(clock.elapsed(a, b) + clock.elapsed(b, c), clock.elapsed(a, c));
            }
        }

        #[test]
        fn elapsed_is_bounded_by_wall_time(a in instant(), b in instant()) {
            let (a, b) = if a <= b { (a, b) } else { (b, a) };
            let [calendar, business] = clocks();
            prop_assert_eq!(calendar.elapsed(a, b), b - a);
            prop_assert!(business.elapsed(a, b) <= b - a);
            prop_assert!(business.elapsed(a, b) >= Duration::zero());
            prop_assert_eq!(business.elapsed(b, a), Duration::zero());
        }

        #[test]
        fn add_inverts_elapsed_and_is_monotone(from in instant(), d1 in work(), d2 in work()) {
            let (d1, d2) = if d1 <= d2 { (d1, d2) } else { (d2, d1) };
            for clock in clocks() {
                let t1 = clock.add(from, d1).unwrap();
                let t2 = clock.add(from, d2).unwrap();
                prop_assert_eq!(clock.elapsed(from, t1), d1);
                prop_assert_eq!(clock.elapsed(from, t2), d2);
                prop_assert!(from <= t1 && t1 <= t2);
                if d1 > Duration::zero() {
                    // Earliest such instant, and inside (or at the end of) a working period.
                    let just_before = t1 - Duration::nanoseconds(1);
                    prop_assert!(clock.elapsed(from, just_before) < d1);
                    prop_assert!(clock.is_working(just_before));
                }
            }
        }

        #[test]
        fn is_working_agrees_with_elapsed(t in instant()) {
            for clock in clocks() {
                let tick = Duration::nanoseconds(1);
                prop_assert_eq!(clock.is_working(t), clock.elapsed(t, t + tick) == tick);
            }
        }

        #[test]
        fn pauses_never_add_time(
            start in instant(),
            minutes in 0i64..100_000,
            target in work(),
            specs in pause_specs(),
        ) {
            let now = start + Duration::minutes(minutes);
            for clock in clocks() {
                let with_open = pauses_from(start, &specs, true);
                let closed_only = pauses_from(start, &specs, false);
                let plain = active_elapsed(&clock, start, now, &[]);
                prop_assert_eq!(plain, clock.elapsed(start, now));
                prop_assert!(active_elapsed(&clock, start, now, &with_open) <= plain);
                prop_assert!(active_elapsed(&clock, start, now, &with_open) >= Duration::zero());
                prop_assert!(active_elapsed(&clock, start, now, &closed_only) <= plain);

                let unpaused = deadline(&clock, start, target, &[]).unwrap();
                prop_assert_eq!(unpaused, clock.add(start, target).unwrap());
                let paused = deadline(&clock, start, target, &closed_only).unwrap();
                prop_assert!(paused >= unpaused);
                prop_assert_eq!(active_elapsed(&clock, start, paused, &closed_only), target);
                if target > Duration::zero() {
                    let just_before = paused - Duration::nanoseconds(1);
                    prop_assert!(active_elapsed(&clock, start, just_before, &closed_only) < target);
                }

                // With open pauses: unknown, or reached no later than the first open pause began.
                let first_open = with_open.iter().filter(|p| p.until.is_none()).map(|p| p.from.max(start)).min();
                match deadline(&clock, start, target, &with_open) {
                    None => prop_assert!(first_open.is_some()),
                    Some(due) => {
                        prop_assert!(first_open.is_none_or(|f| due <= f));
                        prop_assert_eq!(active_elapsed(&clock, start, due, &with_open), target.max(Duration::zero()));
                    }
                }
            }
        }

        #[test]
        fn nested_duplicated_or_reordered_pauses_change_nothing(
            start in instant(),
            minutes in 0i64..100_000,
            target in work(),
            specs in pause_specs(),
            cut in (0i64..6000, 0i64..6000),
        ) {
            let now = start + Duration::minutes(minutes);
            for clock in clocks() {
                let pauses = pauses_from(start, &specs, true);
                let mut more = pauses.clone();
                more.reverse();
                more.extend(pauses.iter().copied());
                if let Some(first) = pauses.first() {
                    // A pause lying inside the first one.
                    let from = first.from + Duration::minutes(cut.0.min(cut.1));
                    let until = first.from + Duration::minutes(cut.0.max(cut.1));
                    if first.until.is_none_or(|u| until <= u) {
                        more.push(closed(from, until));
                    }
                }
                prop_assert_eq!(
                    active_elapsed(&clock, start, now, &more),
                    active_elapsed(&clock, start, now, &pauses)
                );
                prop_assert_eq!(deadline(&clock, start, target, &more), deadline(&clock, start, target, &pauses));
            }
        }

        #[test]
        fn a_pause_inside_a_working_period_delays_by_its_length(
            start in instant(),
            target in positive_work(),
            permille in 0i32..1000,
            pause_us in 1i64..7_200_000_000,
        ) {
            let p = Duration::microseconds(pause_us);
            for clock in clocks() {
                let original = deadline(&clock, start, target, &[]).unwrap();
                let somewhere = start + (original - start) * permille / 1000;
                // The first working instant at or after `somewhere`, which is before `original`.
                let pause_from = clock.add(somewhere, Duration::nanoseconds(1)).unwrap() - Duration::nanoseconds(1);
                prop_assert!(pause_from < original);
                let pause_until = pause_from + p;
                if clock.elapsed(pause_from, pause_until) != p {
                    continue; // not inside one working period
                }
                let delayed = deadline(&clock, start, target, &[closed(pause_from, pause_until)]).unwrap();
                prop_assert_eq!(Some(delayed), clock.add(original, p));
                prop_assert_eq!(clock.elapsed(original, delayed), p);
            }
        }
    }
}
