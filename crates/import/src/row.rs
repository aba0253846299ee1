//! One source row, checked and mapped: every value kefu will record, or the reason the row is
//! rejected (with its line number and the column at fault).

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use kefu_domain::{
    values::{Address, Category, Label, Subject, Text},
    vocab::{Channel, CompensationKind},
};
use serde_json::{Map, Value};

use crate::mapping::Mapping;

/// A rejected row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Line in the file where the row starts (1 = the header).
    pub line: u64,
    /// The row's id, when it could be read.
    pub id: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.id {
            Some(id) => write!(f, "line {} (id {id}): {}", self.line, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

/// Where each mapped column is in the file.
#[derive(Debug, Clone)]
pub struct Headers {
    index: HashMap<String, usize>,
    width: usize,
}

impl Headers {
    /// Checks that the header row has every column the mapping reads.
    pub fn new(mapping: &Mapping, header: &csv::StringRecord) -> Result<Headers, String> {
        let index: HashMap<String, usize> = header
            .iter()
            .enumerate()
            .map(|(i, name)| (name.trim().trim_start_matches('\u{feff}').to_string(), i))
            .collect();
        let missing: Vec<&str> =
            mapping.required_columns().into_iter().filter(|c| !index.contains_key(c.trim())).collect();
        if !missing.is_empty() {
            return Err(format!(
                "the header row lacks column(s) the `{}` mapping reads: {}",
                mapping.name,
                missing.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(Headers { index, width: header.len() })
    }
}

/// What the source says happened to the request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Still being handled.
    Open,
    /// Solved and closed at the source.
    Resolved {
        /// What was done (the source's outcome and public statement).
        resolution: Text,
        /// The root-cause code.
        root_cause: Label,
        /// A make-good, if any.
        compensation: Option<CompensationKind>,
        /// The customer's verdict, when the source has one.
        satisfied: Option<bool>,
        /// The source's outcome, as written.
        source_outcome: String,
    },
}

/// A row mapped to kefu's values.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    /// Line where the row starts.
    pub line: u64,
    /// The source's id.
    pub id: String,
    /// The id as kept on the request and customer: `<source>-<id>`.
    pub external_ref: Label,
    /// Filing time.
    pub received_at: DateTime<Utc>,
    /// Channel.
    pub channel: Channel,
    /// Category.
    pub category: Category,
    /// Subject.
    pub subject: Subject,
    /// Description.
    pub description: Option<Text>,
    /// Responsible department.
    pub department: Option<Label>,
    /// When the department got it.
    pub forwarded_at: Option<DateTime<Utc>>,
    /// Outcome.
    pub outcome: Outcome,
    /// The source's timeliness verdict.
    pub timely: Option<bool>,
    /// The customer's address.
    pub address: Option<Address>,
    /// Tags.
    pub tags: Vec<Label>,
    /// Every mapped column's raw value: the content that makes a re-run a retry.
    pub content: Value,
}

struct Row<'a> {
    record: &'a csv::StringRecord,
    headers: &'a Headers,
}

impl Row<'_> {
    fn get(&self, column: &str) -> &str {
        self.headers.index.get(column.trim()).and_then(|i| self.record.get(*i)).map(str::trim).unwrap_or("")
    }

    fn optional(&self, column: &Option<String>) -> Option<&str> {
        column.as_deref().map(|c| self.get(c)).filter(|v| !v.is_empty())
    }
}

fn column_error(column: &str, message: impl std::fmt::Display) -> String {
    format!("column `{column}`: {message}")
}

/// Reads a date or time: RFC 3339, or one of the mapping's formats (a date alone is local
/// midnight in the mapping's zone).
pub fn parse_time(mapping: &Mapping, column: &str, raw: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    let local = mapping.date_formats.iter().find_map(|f| {
        NaiveDateTime::parse_from_str(raw, f)
            .ok()
            .or_else(|| NaiveDate::parse_from_str(raw, f).ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
    });
    let Some(local) = local else {
        return Err(column_error(
            column,
            format!("`{raw}` is not a date (expected {} or an RFC 3339 time)", mapping.date_formats.join(" or ")),
        ));
    };
    mapping
        .time_zone
        .from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| column_error(column, format!("`{raw}` does not exist in {}", mapping.time_zone)))
}

fn yes_no(raw: &str) -> Option<bool> {
    match raw.to_ascii_lowercase().as_str() {
        "yes" | "y" | "true" | "1" => Some(true),
        "no" | "n" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// Maps one row; `now` bounds the dates (nothing is filed in the future).
pub fn map_row(
    mapping: &Mapping,
    headers: &Headers,
    line: u64,
    record: &csv::StringRecord,
    now: DateTime<Utc>,
) -> Result<SourceRecord, RowError> {
    let row = Row { record, headers };
    let c = &mapping.columns;
    let id = row.get(&c.id).to_string();
    let fail = |message: String| RowError { line, id: (!id.is_empty()).then(|| id.clone()), message };
    if record.len() != headers.width {
        return Err(fail(format!("{} fields where the header has {}", record.len(), headers.width)));
    }
    if id.is_empty() {
        return Err(fail(column_error(&c.id, "empty; every row needs its id")));
    }
    let external_ref = Label::parse(&c.id, &format!("{}-{id}", mapping.source))
        .map_err(|e| fail(column_error(&c.id, format!("`{id}` is too long for an id ({e})"))))?;

    let received_raw = row.get(&c.received_at);
    if received_raw.is_empty() {
        return Err(fail(column_error(&c.received_at, "empty; the filing date is required")));
    }
    let received_at = parse_time(mapping, &c.received_at, received_raw).map_err(&fail)?;
    if received_at > now {
        return Err(fail(column_error(&c.received_at, format!("`{received_raw}` is in the future"))));
    }
    let forwarded_at = match row.optional(&c.forwarded_at) {
        None => None,
        Some(raw) => {
            let column = c.forwarded_at.as_deref().unwrap_or_default();
            let t = parse_time(mapping, column, raw).map_err(&fail)?;
            if t < received_at {
                return Err(fail(column_error(
                    column,
                    format!("`{raw}` is before the received date `{received_raw}`"),
                )));
            }
            if t > now {
                return Err(fail(column_error(column, format!("`{raw}` is in the future"))));
            }
            Some(t)
        }
    };

    let channel_raw = row.get(&c.channel);
    let channel = *mapping.channels.get(&channel_raw.to_lowercase()).ok_or_else(|| {
        let known: Vec<&str> = mapping.channels.keys().map(String::as_str).collect();
        fail(column_error(
            &c.channel,
            format!("`{channel_raw}` is not a channel the mapping knows ({})", known.join(", ")),
        ))
    })?;

    let parts: Vec<&str> = c.category.iter().map(|col| row.get(col)).filter(|v| !v.is_empty()).collect();
    if parts.is_empty() {
        return Err(fail(format!("no category: {} empty", c.category.join(" and "))));
    }
    let category =
        Category::parse("category", &parts.join(" / ")).map_err(|e| fail(column_error(&c.category.join(" / "), e)))?;
    let subject_raw = c.subject.iter().map(|col| row.get(col)).find(|v| !v.is_empty());
    let Some(subject_raw) = subject_raw else {
        return Err(fail(format!("no subject: {} empty", c.subject.join(" and "))));
    };
    let subject = Subject::parse("subject", subject_raw).map_err(|e| fail(column_error(&c.subject.join(" or "), e)))?;
    let description = row
        .optional(&c.description)
        .map(|d| Text::parse("description", d))
        .transpose()
        .map_err(|e| fail(column_error(c.description.as_deref().unwrap_or_default(), e)))?;
    let department = row
        .optional(&c.department)
        .map(|d| Label::parse("department", d))
        .transpose()
        .map_err(|e| fail(column_error(c.department.as_deref().unwrap_or_default(), e)))?;

    let outcome = match &c.outcome {
        None => Outcome::Open,
        Some(column) => {
            let raw = row.get(column);
            let Some((resolved, compensation)) = mapping.outcomes.get(&raw.to_lowercase()) else {
                let known: Vec<&str> = mapping.outcomes.keys().map(String::as_str).collect();
                return Err(fail(column_error(
                    column,
                    format!("`{raw}` is not an outcome the mapping knows ({})", known.join(", ")),
                )));
            };
            if *resolved {
                let public = row.optional(&c.public_response);
                let code = public
                    .and_then(|p| mapping.root_causes.get(&p.to_lowercase()))
                    .unwrap_or(&mapping.default_root_cause);
                let root_cause = Label::parse("rootCause", code).map_err(|e| fail(e.to_string()))?;
                let text = match public {
                    Some(p) => format!("{raw}. {p}"),
                    None => raw.to_string(),
                };
                let resolution = Text::parse("resolution", &text).map_err(|e| fail(column_error(column, e)))?;
                let satisfied =
                    row.optional(&c.disputed).and_then(|d| mapping.satisfied.get(&d.to_lowercase()).copied());
                Outcome::Resolved {
                    resolution,
                    root_cause,
                    compensation: *compensation,
                    satisfied,
                    source_outcome: raw.to_string(),
                }
            } else {
                Outcome::Open
            }
        }
    };

    let timely = row.optional(&c.timely).and_then(yes_no);
    let region = row.optional(&c.region);
    let postal_code = row.optional(&c.postal_code);
    let address = if region.is_some() || postal_code.is_some() {
        Some(
            Address::parse("address", None, None, region, postal_code, mapping.country.as_deref())
                .map_err(|e| fail(e.to_string()))?,
        )
    } else {
        None
    };
    let mut tags = Vec::new();
    if let Some(raw) = row.optional(&c.tags) {
        for tag in raw.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            tags.push(
                Label::parse("tags", tag).map_err(|e| fail(column_error(c.tags.as_deref().unwrap_or_default(), e)))?,
            );
        }
    }

    let mut content = Map::new();
    for column in mapping.required_columns() {
        content.insert(column.to_string(), Value::String(row.get(column).to_string()));
    }
    Ok(SourceRecord {
        line,
        id,
        external_ref,
        received_at,
        channel,
        category,
        subject,
        description,
        department,
        forwarded_at,
        outcome,
        timely,
        address,
        tags,
        content: Value::Object(content),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "Date received,Product,Sub-product,Issue,Sub-issue,Consumer complaint narrative,\
        Company public response,Company,State,ZIP code,Tags,Consumer consent provided?,Submitted via,\
        Date sent to company,Company response to consumer,Timely response?,Consumer disputed?,Complaint ID";

    fn parse(line: &str) -> Result<SourceRecord, RowError> {
        let text = format!("{HEADER}\n{line}\n");
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
        let mapping = Mapping::cfpb();
        let headers = Headers::new(&mapping, reader.headers().unwrap()).unwrap();
        let record = reader.records().next().unwrap().unwrap();
        map_row(&mapping, &headers, 2, &record, "2026-01-01T00:00:00Z".parse().unwrap())
    }

    #[test]
    fn a_closed_cfpb_complaint_maps_to_its_facts() {
        let r = parse(
            "2023-08-25,Credit card,General-purpose credit card,Fees or interest,Unexpected fee,\"Charged twice.\nPlease help.\",\
             Company believes complaint is the result of a misunderstanding,\"BANK, N.A.\",FL,330XX,\"Older American, Servicemember\",\
             Consent provided,Phone,2023-08-28,Closed with monetary relief,Yes,No,7523056",
        )
        .unwrap();
        assert_eq!(r.id, "7523056");
        // Midnight in New York (EDT, UTC-4).
        assert_eq!(r.received_at.to_rfc3339(), "2023-08-25T04:00:00+00:00");
        assert_eq!(r.forwarded_at.unwrap().to_rfc3339(), "2023-08-28T04:00:00+00:00");
        assert_eq!(r.channel, Channel::Phone);
        assert_eq!(r.category.as_str(), "Credit card / Fees or interest");
        assert_eq!(r.subject.as_str(), "Unexpected fee");
        assert_eq!(r.description.unwrap().as_str(), "Charged twice.\nPlease help.");
        assert_eq!(r.department.unwrap().as_str(), "BANK, N.A.");
        assert_eq!(r.timely, Some(true));
        let a = r.address.unwrap();
        assert_eq!(
            (a.region.as_deref(), a.postal_code.as_deref(), a.country.as_deref()),
            (Some("FL"), Some("330XX"), Some("US"))
        );
        let tags: Vec<&str> = r.tags.iter().map(|t| t.as_str()).collect();
        assert_eq!(tags, ["Older American", "Servicemember"]);
        match r.outcome {
            Outcome::Resolved { root_cause, compensation, satisfied, resolution, .. } => {
                assert_eq!(root_cause.as_str(), "customer_misunderstanding");
                assert_eq!(compensation, Some(CompensationKind::Monetary));
                assert_eq!(satisfied, Some(true), "not disputed");
                assert!(resolution.as_str().starts_with("Closed with monetary relief. Company believes"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_open_one_stays_open_and_the_subject_falls_back_to_the_issue() {
        let r = parse("2012-01-13,Mortgage,,Loan servicing,,,,ACME,,,,,Web,2012-01-13,In progress,Yes,N/A,42").unwrap();
        assert_eq!(r.outcome, Outcome::Open);
        assert_eq!(r.subject.as_str(), "Loan servicing");
        assert_eq!(r.address, None);
        assert_eq!(r.received_at.to_rfc3339(), "2012-01-13T05:00:00+00:00", "EST in winter");
    }

    #[test]
    fn bad_rows_say_which_column_and_value() {
        let cases = [
            (
                "2023-13-45,P,,I,,,,C,,,,,Web,2023-08-25,In progress,Yes,N/A,1",
                "`Date received`: `2023-13-45` is not a date",
            ),
            (
                "2023-08-25,P,,I,,,,C,,,,,Carrier pigeon,2023-08-25,In progress,Yes,N/A,2",
                "`Carrier pigeon` is not a channel",
            ),
            (
                "2023-08-25,P,,I,,,,C,,,,,Web,2023-08-25,Lost in the mail,Yes,N/A,3",
                "`Lost in the mail` is not an outcome",
            ),
            ("2023-08-25,P,,I,,,,C,,,,,Web,2023-08-20,In progress,Yes,N/A,4", "before the received date"),
            ("2027-08-25,P,,I,,,,C,,,,,Web,2027-08-25,In progress,Yes,N/A,5", "in the future"),
            ("2023-08-25,P,,I,,,,C,,,,,Web,2023-08-25,In progress,Yes,N/A,", "`Complaint ID`: empty"),
            ("2023-08-25,,,,,,,C,,,,,Web,2023-08-25,In progress,Yes,N/A,7", "no category"),
            ("2023-08-25,P,,I,,,,C,,,,,Web,2023-08-25,In progress,Yes,8", "17 fields where the header has 18"),
            (",P,,I,,,,C,,,,,Web,2023-08-25,In progress,Yes,N/A,9", "filing date is required"),
        ];
        for (line, expected) in cases {
            let err = parse(line).unwrap_err();
            assert_eq!(err.line, 2);
            assert!(err.to_string().contains(expected), "{line}: {err}");
        }
        let long = "x".repeat(8001);
        let err = parse(&format!("2023-08-25,P,,I,,{long},,C,,,,,Web,2023-08-25,In progress,Yes,N/A,10")).unwrap_err();
        assert!(err.to_string().contains("Consumer complaint narrative"), "{err}");
    }

    #[test]
    fn a_header_without_a_mapped_column_is_refused_whole() {
        let mapping = Mapping::cfpb();
        let header = csv::StringRecord::from(vec!["Date received", "Product"]);
        let err = Headers::new(&mapping, &header).unwrap_err();
        assert!(err.contains("`Complaint ID`") && err.contains("`Submitted via`"), "{err}");
    }
}
