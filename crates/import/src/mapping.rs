//! How the columns of another system's export become kefu's facts: a JSON document, so a
//! new source needs a mapping file, not code. kefu ships `cfpb` (see `mappings/cfpb.json`).

use std::{collections::BTreeMap, path::Path};

use chrono_tz::Tz;
use kefu_domain::vocab::{Channel, CompensationKind, Priority, RequestType};
use serde::Deserialize;

/// A mapping that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("mapping {name}: {message}")]
pub struct MappingError {
    /// The mapping's name or file.
    pub name: String,
    /// What is wrong.
    pub message: String,
}

/// Which source columns carry what. Column names are matched exactly (after trimming).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Columns {
    /// The record's id in the source (required, unique): the key of idempotent re-runs.
    pub id: String,
    /// When the request was received (required): the filing time.
    pub received_at: String,
    /// How it came in (required; values mapped by `channels`).
    pub channel: String,
    /// Columns joined with " / " into the category (empty ones skipped; at least one needed).
    pub category: Vec<String>,
    /// Columns tried in order for the subject (the first non-empty wins).
    pub subject: Vec<String>,
    /// Free-text description.
    #[serde(default)]
    pub description: Option<String>,
    /// Responsible department.
    #[serde(default)]
    pub department: Option<String>,
    /// When it was handed to the responsible department (recorded as an assignment).
    #[serde(default)]
    pub forwarded_at: Option<String>,
    /// The source's outcome (values mapped by `outcomes`).
    #[serde(default)]
    pub outcome: Option<String>,
    /// The source's public statement about the cause (values mapped by `rootCauses`).
    #[serde(default)]
    pub public_response: Option<String>,
    /// The source's own verdict on timeliness (kept as a tag, compared in the report).
    #[serde(default)]
    pub timely: Option<String>,
    /// Whether the customer disputed the outcome (values mapped by `satisfied`).
    #[serde(default)]
    pub disputed: Option<String>,
    /// Customer's region or state.
    #[serde(default)]
    pub region: Option<String>,
    /// Customer's postal code.
    #[serde(default)]
    pub postal_code: Option<String>,
    /// Comma-separated tags.
    #[serde(default)]
    pub tags: Option<String>,
}

/// What a source outcome means.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutcomeSpec {
    /// Resolved (and closed at the source) or still open.
    pub resolved: bool,
    /// A make-good given: MONETARY or NON_MONETARY.
    #[serde(default)]
    pub compensation: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Document {
    name: String,
    #[serde(default)]
    description: String,
    source: String,
    columns: Columns,
    date_formats: Vec<String>,
    time_zone: String,
    request_type: String,
    #[serde(default = "normal")]
    priority: String,
    #[serde(default)]
    country: Option<String>,
    customer_name: String,
    channels: BTreeMap<String, String>,
    #[serde(default)]
    outcomes: BTreeMap<String, OutcomeSpec>,
    #[serde(default)]
    root_causes: BTreeMap<String, String>,
    default_root_cause: String,
    #[serde(default)]
    satisfied: BTreeMap<String, bool>,
}

fn normal() -> String {
    "NORMAL".into()
}

/// A checked mapping.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// The source system's short name: prefixes external references and seeds the ids.
    pub source: String,
    /// Columns.
    pub columns: Columns,
    /// Accepted date formats (chrono `strftime` syntax); full RFC 3339 times are always accepted.
    pub date_formats: Vec<String>,
    /// The zone in which dates without a time are local midnight.
    pub time_zone: Tz,
    /// The type of every imported request.
    pub request_type: RequestType,
    /// The priority of every imported request.
    pub priority: Priority,
    /// Country (ISO 3166 alpha-2) of the customers' addresses.
    pub country: Option<String>,
    /// The customer's name; `{id}` is replaced by the record id.
    pub customer_name: String,
    /// Source channel (case-insensitive) → kefu channel.
    pub channels: BTreeMap<String, Channel>,
    /// Source outcome (case-insensitive) → what it means.
    pub outcomes: BTreeMap<String, (bool, Option<CompensationKind>)>,
    /// Source public response (case-insensitive) → root-cause code.
    pub root_causes: BTreeMap<String, String>,
    /// The root cause when the public response says nothing mapped.
    pub default_root_cause: String,
    /// Source dispute value (case-insensitive) → customer satisfied.
    pub satisfied: BTreeMap<String, bool>,
}

impl Mapping {
    /// The mapping for the CFPB consumer complaint export.
    pub fn cfpb() -> Mapping {
        #[allow(clippy::expect_used)] // checked by the `built_in_mapping_is_valid` test
        Mapping::from_json("cfpb", include_str!("../mappings/cfpb.json")).expect("the built-in CFPB mapping is valid")
    }

    /// A built-in mapping by name, or a JSON mapping file.
    pub fn load(name_or_path: &str) -> Result<Mapping, MappingError> {
        match name_or_path {
            "cfpb" => Ok(Mapping::cfpb()),
            path => {
                let text = std::fs::read_to_string(Path::new(path)).map_err(|e| MappingError {
                    name: path.to_string(),
                    message: format!("cannot read it ({e}); built-in mappings: cfpb"),
                })?;
                Mapping::from_json(path, &text)
            }
        }
    }

    /// Parses and checks a mapping document.
    pub fn from_json(name: &str, json: &str) -> Result<Mapping, MappingError> {
        let fail = |message: String| MappingError { name: name.to_string(), message };
        let doc: Document = serde_json::from_str(json).map_err(|e| fail(e.to_string()))?;
        let time_zone: Tz =
            doc.time_zone.parse().map_err(|_| fail(format!("`{}` is not an IANA time zone", doc.time_zone)))?;
        let request_type: RequestType = doc.request_type.parse().map_err(|e| fail(format!("requestType: {e}")))?;
        let priority: Priority = doc.priority.parse().map_err(|e| fail(format!("priority: {e}")))?;
        let mut channels = BTreeMap::new();
        for (source, target) in &doc.channels {
            let channel: Channel = target.parse().map_err(|e| fail(format!("channels.{source}: {e}")))?;
            channels.insert(source.trim().to_lowercase(), channel);
        }
        let mut outcomes = BTreeMap::new();
        for (source, spec) in &doc.outcomes {
            let compensation = spec
                .compensation
                .as_deref()
                .map(|c| {
                    c.parse::<CompensationKind>().map_err(|e| fail(format!("outcomes.{source}.compensation: {e}")))
                })
                .transpose()?;
            if compensation.is_some() && !spec.resolved {
                return Err(fail(format!("outcomes.{source}: a compensation needs `resolved: true`")));
            }
            outcomes.insert(source.trim().to_lowercase(), (spec.resolved, compensation));
        }
        if doc.columns.category.is_empty() {
            return Err(fail("columns.category names no column".into()));
        }
        if doc.columns.subject.is_empty() {
            return Err(fail("columns.subject names no column".into()));
        }
        if doc.date_formats.is_empty() {
            return Err(fail("dateFormats is empty".into()));
        }
        if doc.columns.outcome.is_some() && outcomes.is_empty() {
            return Err(fail("columns.outcome is set but `outcomes` maps no value".into()));
        }
        if !doc.customer_name.contains("{id}") {
            return Err(fail("customerName must contain {id}, or every customer would have the same name".into()));
        }
        Ok(Mapping {
            name: doc.name,
            description: doc.description,
            source: doc.source,
            columns: doc.columns,
            date_formats: doc.date_formats,
            time_zone,
            request_type,
            priority,
            country: doc.country,
            customer_name: doc.customer_name,
            channels,
            outcomes,
            root_causes: doc.root_causes.into_iter().map(|(k, v)| (k.trim().to_lowercase(), v)).collect(),
            default_root_cause: doc.default_root_cause,
            satisfied: doc.satisfied.into_iter().map(|(k, v)| (k.trim().to_lowercase(), v)).collect(),
        })
    }

    /// Every column the mapping reads.
    pub fn required_columns(&self) -> Vec<&str> {
        let c = &self.columns;
        let mut out = vec![c.id.as_str(), c.received_at.as_str(), c.channel.as_str()];
        out.extend(c.category.iter().map(String::as_str));
        out.extend(c.subject.iter().map(String::as_str));
        let optional = [
            &c.description,
            &c.department,
            &c.forwarded_at,
            &c.outcome,
            &c.public_response,
            &c.timely,
            &c.disputed,
            &c.region,
            &c.postal_code,
            &c.tags,
        ];
        out.extend(optional.into_iter().flatten().map(String::as_str));
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_mapping_is_valid() {
        let m = Mapping::load("cfpb").unwrap();
        assert_eq!(m.source, "CFPB");
        assert_eq!(m.channels["web"], Channel::Web);
        assert_eq!(m.outcomes["closed with monetary relief"], (true, Some(CompensationKind::Monetary)));
        assert_eq!(m.outcomes["in progress"], (false, None));
        assert_eq!(m.required_columns().len(), 16, "of the 18 columns, Sub-product and consent are not read");
    }

    #[test]
    fn a_bad_mapping_says_what_is_wrong() {
        let base = include_str!("../mappings/cfpb.json");
        let err = Mapping::from_json("x", &base.replace("\"WEB\"", "\"WEBSITE\"")).unwrap_err();
        assert!(err.to_string().contains("channels.Web"), "{err}");
        assert!(err.to_string().contains("WEB_CHAT"), "lists the known channels: {err}");
        let err = Mapping::from_json("x", &base.replace("America/New_York", "America/Gotham")).unwrap_err();
        assert!(err.to_string().contains("America/Gotham"), "{err}");
        let err = Mapping::from_json("x", &base.replace("\"source\"", "\"sauce\"")).unwrap_err();
        assert!(err.to_string().contains("sauce"), "{err}");
        let err = Mapping::load("/nonexistent/mapping.json").unwrap_err();
        assert!(err.to_string().contains("built-in mappings: cfpb"), "{err}");
    }
}
