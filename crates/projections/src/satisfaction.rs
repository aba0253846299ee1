//! Satisfaction as people read it: surveys and their answers, templates with their indicator
//! leaves, follow-ups, alerts — and the indices over any grouping (department, agent,
//! channel, request type and category, customer tier and segment, template, day/week/month).
//!
//! Rows keep the raw answers of the response that counts (a superseding response replaces
//! them), so indices are computed at query time: SQL counts how often each value was given
//! to each question per group, and [`kefu_domain::satisfaction::indices`] does the arithmetic
//! (one definition for every caller, tested against hand-computed figures).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kefu_app::RecordedEvent;
use kefu_domain::{
    satisfaction::{Indices, ItemStats, indices},
    vocab::QuestionKind,
};
use serde_json::Value;
use sqlx::{PgConnection, Row, types::Json};
use uuid::Uuid;

use crate::{Projection, ProjectionError};

mod rows;

/// The projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Satisfaction;

/// Its name.
pub const NAME: &str = "satisfaction";

const SCHEMA: &str = r#"
CREATE TABLE templates (
    template_id  uuid        NOT NULL,
    version      integer     NOT NULL,
    name         text        NOT NULL,
    audience     text        NOT NULL,
    published    boolean     NOT NULL DEFAULT false,
    content      jsonb       NOT NULL,
    defined_at   timestamptz NOT NULL,
    PRIMARY KEY (template_id, version)
);

CREATE TABLE template_items (
    template_id    uuid             NOT NULL,
    version        integer          NOT NULL,
    question       text             NOT NULL,
    position       integer          NOT NULL,
    kind           text             NOT NULL,
    dimension      text,
    expectation    boolean          NOT NULL,
    leaf_weight    double precision,
    indicator      text,
    indicator_path text,
    department     text,
    PRIMARY KEY (template_id, version, question)
);

CREATE TABLE surveys (
    survey_id            uuid        PRIMARY KEY,
    template_id          uuid        NOT NULL,
    template_version     integer     NOT NULL,
    audience             text        NOT NULL,
    customer_id          uuid        NOT NULL,
    request_id           uuid,
    request_type         text,
    category             text,
    request_channel      text,
    agent_id             text,
    agent_name           text,
    department           text,
    customer_tier        text,
    customer_segment     text,
    trigger              text        NOT NULL,
    campaign             text,
    policy_id            uuid,
    channel              text        NOT NULL,
    sent_at              timestamptz NOT NULL,
    expires_at           timestamptz NOT NULL,
    reminders            jsonb       NOT NULL,
    reminders_sent       integer     NOT NULL DEFAULT 0,
    next_reminder_at     timestamptz,
    state                text        NOT NULL,
    responded_at         timestamptz,
    complete             boolean     NOT NULL DEFAULT false,
    response_count       integer     NOT NULL DEFAULT 0,
    response_channel     text,
    expired_at           timestamptz,
    follow_up            jsonb,
    follow_up_state      text        NOT NULL DEFAULT 'NONE',
    follow_up_due_at     timestamptz,
    follow_up_department text,
    follow_up_assignee   text,
    follow_up_request_id uuid,
    follow_up_done       jsonb,
    version              bigint      NOT NULL,
    last_position        bigint      NOT NULL
);
CREATE INDEX surveys_responded ON surveys (audience, responded_at);
CREATE INDEX surveys_sent ON surveys (audience, sent_at);
CREATE INDEX surveys_by_customer ON surveys (customer_id, sent_at DESC);
CREATE INDEX surveys_by_request ON surveys (request_id);
CREATE INDEX surveys_open ON surveys (expires_at, next_reminder_at) WHERE state IN ('SENT', 'PARTIAL');
CREATE INDEX surveys_follow_ups ON surveys (follow_up_state, follow_up_due_at) WHERE follow_up_state <> 'NONE';

CREATE TABLE answers (
    survey_id  uuid    NOT NULL,
    question   text    NOT NULL,
    value      integer,
    text       text,
    PRIMARY KEY (survey_id, question)
);

CREATE TABLE reviews (
    rule_id    uuid        NOT NULL,
    label      text        NOT NULL,
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL,
    groups     integer     NOT NULL,
    alerts     integer     NOT NULL,
    at         timestamptz NOT NULL,
    PRIMARY KEY (rule_id, label)
);

CREATE TABLE alerts (
    rule_id             uuid        NOT NULL,
    label               text        NOT NULL,
    department          text        NOT NULL,
    index_kind          text        NOT NULL,
    period              text        NOT NULL,
    previous_hundredths bigint      NOT NULL,
    current_hundredths  bigint      NOT NULL,
    previous_responses  integer     NOT NULL,
    current_responses   integer     NOT NULL,
    raised_at           timestamptz NOT NULL,
    PRIMARY KEY (rule_id, label, department)
);
"#;

const TABLES: &[&str] = &["templates", "template_items", "surveys", "answers", "reviews", "alerts"];

impl Projection for Satisfaction {
    fn name(&self) -> &'static str {
        NAME
    }

    fn schema(&self) -> &'static str {
        SCHEMA
    }

    fn tables(&self) -> &'static [&'static str] {
        TABLES
    }

    fn reads(&self, stream_type: &str, _: &str) -> bool {
        matches!(stream_type, "survey_template" | "survey" | "satisfaction_monitor")
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move { rows::apply_many(conn, &[event]).await })
    }

    fn apply_all<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [&'a RecordedEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(rows::apply_many(conn, events))
    }

    fn bulk(&self) -> Option<Box<dyn crate::bulk::BulkFold>> {
        Some(Box::<rows::BulkSatisfaction>::default())
    }
}

// ---------------------------------------------------------------------------------------------
// Indices

/// Which responses an index covers. Every given field must match (lists: any of).
#[derive(Debug, Clone, Default)]
pub struct IndexFilter {
    /// `EXTERNAL` (default) or `INTERNAL`; never mixed.
    pub audience: String,
    /// Responses (or, for the response rate, surveys sent) at or after.
    pub from: Option<DateTime<Utc>>,
    /// … and before.
    pub to: Option<DateTime<Utc>>,
    /// Departments evaluated.
    pub departments: Vec<String>,
    /// Agents.
    pub agents: Vec<String>,
    /// Channels the requests came in through.
    pub channels: Vec<String>,
    /// Request types.
    pub request_types: Vec<String>,
    /// Category prefix, case-insensitive.
    pub category_prefix: Option<String>,
    /// Customer tiers.
    pub customer_tiers: Vec<String>,
    /// Customer segments.
    pub customer_segments: Vec<String>,
    /// One template.
    pub template_id: Option<Uuid>,
    /// One customer.
    pub customer_id: Option<Uuid>,
}

/// What indices can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexDimension {
    /// The department evaluated.
    Department,
    /// The agent who served.
    Agent,
    /// The channel the request came in through.
    Channel,
    /// The channel the survey was answered through (else sent through).
    SurveyChannel,
    /// Request type.
    RequestType,
    /// Category.
    Category,
    /// Customer value tier.
    CustomerTier,
    /// Customer lifecycle segment.
    CustomerSegment,
    /// Template.
    Template,
    /// Calendar day (of the response; of sending for the response rate).
    Day,
    /// ISO week.
    Week,
    /// Month.
    Month,
}

impl IndexDimension {
    /// Its name in results.
    pub fn key(self) -> &'static str {
        match self {
            IndexDimension::Department => "department",
            IndexDimension::Agent => "agent",
            IndexDimension::Channel => "channel",
            IndexDimension::SurveyChannel => "surveyChannel",
            IndexDimension::RequestType => "requestType",
            IndexDimension::Category => "category",
            IndexDimension::CustomerTier => "customerTier",
            IndexDimension::CustomerSegment => "customerSegment",
            IndexDimension::Template => "template",
            IndexDimension::Day => "day",
            IndexDimension::Week => "week",
            IndexDimension::Month => "month",
        }
    }

    /// Whether it is a period.
    pub fn is_period(self) -> bool {
        matches!(self, IndexDimension::Day | IndexDimension::Week | IndexDimension::Month)
    }

    fn sql(self, time: &str) -> String {
        match self {
            IndexDimension::Department => "coalesce(s.department, '')".into(),
            IndexDimension::Agent => "coalesce(s.agent_id, '')".into(),
            IndexDimension::Channel => "coalesce(s.request_channel, '')".into(),
            IndexDimension::SurveyChannel => "coalesce(s.response_channel, s.channel)".into(),
            IndexDimension::RequestType => "coalesce(s.request_type, '')".into(),
            IndexDimension::Category => "coalesce(s.category, '')".into(),
            IndexDimension::CustomerTier => "coalesce(s.customer_tier, '')".into(),
            IndexDimension::CustomerSegment => "coalesce(s.customer_segment, '')".into(),
            IndexDimension::Template => "s.template_id::text".into(),
            IndexDimension::Day => format!("to_char(date_trunc('day', {time} AT TIME ZONE $1), 'YYYY-MM-DD')"),
            IndexDimension::Week => format!("to_char(date_trunc('week', {time} AT TIME ZONE $1), 'IYYY-\"W\"IW')"),
            IndexDimension::Month => format!("to_char(date_trunc('month', {time} AT TIME ZONE $1), 'YYYY-MM')"),
        }
    }
}

/// One group's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexGroup {
    /// The group's values, one per requested dimension, in order.
    pub keys: Vec<(String, String)>,
    /// The indices of its responses.
    pub indices: Indices,
    /// Surveys sent in the range (by sending time).
    pub surveys_sent: i64,
    /// Of which answered (partially or completely).
    pub surveys_answered: i64,
}

impl IndexGroup {
    /// Answered / sent, in percent.
    pub fn response_rate(&self) -> Option<f64> {
        (self.surveys_sent > 0).then(|| self.surveys_answered as f64 * 100.0 / self.surveys_sent as f64)
    }
}

struct Where {
    text: String,
    binds: Vec<Bind>,
}

enum Bind {
    Text(String),
    Texts(Vec<String>),
    Time(DateTime<Utc>),
    Uuid(Uuid),
}

fn where_clause(filter: &IndexFilter, time: &str) -> Where {
    // $1 is the time zone.
    let mut w = Where { text: String::new(), binds: Vec::new() };
    let push = |w: &mut Where, cond: String, b: Bind| {
        w.binds.push(b);
        let n = w.binds.len() + 1;
        w.text += &format!(" AND {}", cond.replace("{}", &format!("${n}")));
    };
    let audience = if filter.audience.is_empty() { "EXTERNAL".to_string() } else { filter.audience.clone() };
    push(&mut w, "s.audience = {}".into(), Bind::Text(audience));
    if let Some(from) = filter.from {
        push(&mut w, format!("{time} >= {{}}"), Bind::Time(from));
    }
    if let Some(to) = filter.to {
        push(&mut w, format!("{time} < {{}}"), Bind::Time(to));
    }
    for (column, values) in [
        ("s.department", &filter.departments),
        ("s.agent_id", &filter.agents),
        ("s.request_channel", &filter.channels),
        ("s.request_type", &filter.request_types),
        ("s.customer_tier", &filter.customer_tiers),
        ("s.customer_segment", &filter.customer_segments),
    ] {
        if !values.is_empty() {
            push(&mut w, format!("{column} = ANY({{}})"), Bind::Texts(values.clone()));
        }
    }
    if let Some(prefix) = &filter.category_prefix {
        push(
            &mut w,
            "lower(s.category) LIKE {}".into(),
            Bind::Text(format!("{}%", prefix.to_lowercase().replace('%', "\\%").replace('_', "\\_"))),
        );
    }
    if let Some(t) = filter.template_id {
        push(&mut w, "s.template_id = {}".into(), Bind::Uuid(t));
    }
    if let Some(c) = filter.customer_id {
        push(&mut w, "s.customer_id = {}".into(), Bind::Uuid(c));
    }
    w
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    binds: Vec<Bind>,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    for b in binds {
        q = match b {
            Bind::Text(v) => q.bind(v),
            Bind::Texts(v) => q.bind(v),
            Bind::Time(v) => q.bind(v),
            Bind::Uuid(v) => q.bind(v),
        };
    }
    q
}

/// How a template version's questions count.
#[derive(Debug, Clone)]
struct ItemInfo {
    kind: QuestionKind,
    dimension: Option<String>,
    expectation: bool,
    leaf_weight: Option<f64>,
}

async fn item_infos(conn: &mut PgConnection) -> Result<HashMap<(Uuid, i32, String), ItemInfo>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT template_id, version, question, kind, dimension, expectation, leaf_weight FROM template_items",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = HashMap::new();
    for r in rows {
        let kind: String = r.try_get("kind")?;
        let Ok(kind) = kind.parse::<QuestionKind>() else { continue };
        out.insert(
            (r.try_get("template_id")?, r.try_get("version")?, r.try_get("question")?),
            ItemInfo {
                kind,
                dimension: r.try_get("dimension")?,
                expectation: r.try_get("expectation")?,
                leaf_weight: r.try_get("leaf_weight")?,
            },
        );
    }
    Ok(out)
}

/// A group's values, one per dimension: (dimension, value).
type GroupKey = Vec<(String, String)>;

fn keys_of(row: &sqlx::postgres::PgRow, group_by: &[IndexDimension]) -> Result<Vec<(String, String)>, sqlx::Error> {
    group_by
        .iter()
        .enumerate()
        .map(|(i, d)| Ok((d.key().to_string(), row.try_get(format!("k{i}").as_str())?)))
        .collect()
}

/// Satisfaction indices per group. Period dimensions are calendar periods in `time_zone`
/// (of the response; of sending for the response rate).
pub async fn satisfaction_index(
    conn: &mut PgConnection,
    filter: &IndexFilter,
    group_by: &[IndexDimension],
    time_zone: &str,
) -> Result<Vec<IndexGroup>, ProjectionError> {
    let infos = item_infos(conn).await?;
    let keys_sql = |time: &str| -> (String, String) {
        let select: Vec<String> =
            group_by.iter().enumerate().map(|(i, d)| format!("{} AS k{i}", d.sql(time))).collect();
        let names: Vec<String> = (0..group_by.len()).map(|i| format!("k{i}")).collect();
        (select.iter().map(|s| format!("{s}, ")).collect(), names.iter().map(|s| format!("{s}, ")).collect())
    };

    // How often each value was given to each question, per group.
    let (select, names) = keys_sql("s.responded_at");
    let w = where_clause(filter, "s.responded_at");
    let rows = bind_all(
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {select}s.template_id, s.template_version, a.question, a.value, count(*) AS n \
             FROM answers a JOIN surveys s USING (survey_id) \
             WHERE s.responded_at IS NOT NULL AND a.value IS NOT NULL AND $1::text IS NOT NULL{} \
             GROUP BY {names}s.template_id, s.template_version, a.question, a.value",
            w.text
        )))
        .bind(time_zone),
        w.binds,
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut items: BTreeMap<GroupKey, BTreeMap<(Uuid, i32, String), ItemStats>> = BTreeMap::new();
    for r in &rows {
        let keys = keys_of(r, group_by)?;
        let template: Uuid = r.try_get("template_id")?;
        let version: i32 = r.try_get("template_version")?;
        let question: String = r.try_get("question")?;
        let Some(info) = infos.get(&(template, version, question.clone())) else { continue };
        let value: i32 = r.try_get("value")?;
        let n: i64 = r.try_get("n")?;
        let entry =
            items.entry(keys).or_default().entry((template, version, question.clone())).or_insert_with(|| ItemStats {
                template: (template, version as u32),
                question,
                kind: info.kind,
                dimension: info.dimension.clone(),
                expectation: info.expectation,
                leaf_weight: info.leaf_weight,
                counts: BTreeMap::new(),
            });
        *entry.counts.entry(value).or_default() += n as u64;
    }

    // Responses per template version, per group.
    let w = where_clause(filter, "s.responded_at");
    let rows = bind_all(
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {select}s.template_id, s.template_version, count(*) AS n FROM surveys s \
             WHERE s.responded_at IS NOT NULL AND $1::text IS NOT NULL{} \
             GROUP BY {names}s.template_id, s.template_version",
            w.text
        )))
        .bind(time_zone),
        w.binds,
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut responses: BTreeMap<GroupKey, BTreeMap<(Uuid, u32), u64>> = BTreeMap::new();
    for r in &rows {
        let template: Uuid = r.try_get("template_id")?;
        let version: i32 = r.try_get("template_version")?;
        let n: i64 = r.try_get("n")?;
        responses.entry(keys_of(r, group_by)?).or_default().insert((template, version as u32), n as u64);
    }

    // Surveys sent and answered, by sending time.
    let (select_sent, names_sent) = keys_sql("s.sent_at");
    let w = where_clause(filter, "s.sent_at");
    let rows = bind_all(
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {select_sent}count(*) AS sent, count(*) FILTER (WHERE s.response_count > 0) AS answered \
             FROM surveys s WHERE $1::text IS NOT NULL{}{}",
            w.text,
            if group_by.is_empty() {
                String::new()
            } else {
                format!(" GROUP BY {}", names_sent.trim_end_matches(", "))
            }
        )))
        .bind(time_zone),
        w.binds,
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut sent: BTreeMap<Vec<(String, String)>, (i64, i64)> = BTreeMap::new();
    for r in &rows {
        sent.insert(keys_of(r, group_by)?, (r.try_get("sent")?, r.try_get("answered")?));
    }

    let mut groups: Vec<Vec<(String, String)>> =
        items.keys().chain(responses.keys()).chain(sent.keys()).cloned().collect();
    groups.sort();
    groups.dedup();
    Ok(groups
        .into_iter()
        .map(|keys| {
            let stats: Vec<ItemStats> = items.get(&keys).map(|m| m.values().cloned().collect()).unwrap_or_default();
            let r = responses.get(&keys).cloned().unwrap_or_default();
            let (surveys_sent, surveys_answered) = sent.get(&keys).copied().unwrap_or((0, 0));
            IndexGroup { indices: indices(&stats, &r), keys, surveys_sent, surveys_answered }
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Surveys, follow-ups, reports

/// An answer that counts: (question, value, text).
pub type Answer = (String, Option<i32>, Option<String>);

/// A survey as people look at it.
#[derive(Debug, Clone)]
pub struct SurveyView {
    /// Columns.
    pub row: HashMap<&'static str, Value>,
    /// Id.
    pub survey_id: Uuid,
    /// Template and version.
    pub template: (Uuid, i32),
    /// Who was asked.
    pub customer_id: Uuid,
    /// The request.
    pub request_id: Option<Uuid>,
    /// SENT, PARTIAL, COMPLETED or EXPIRED.
    pub state: String,
    /// When sent.
    pub sent_at: DateTime<Utc>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// The latest response's time.
    pub responded_at: Option<DateTime<Utc>>,
    /// Responses recorded.
    pub response_count: i32,
    /// Reminders sent.
    pub reminders_sent: i32,
    /// The follow-up (the opening event's payload).
    pub follow_up: Option<Value>,
    /// Its completion.
    pub follow_up_done: Option<Value>,
    /// NONE, OPEN or DONE.
    pub follow_up_state: String,
    /// The answers that count, in question order: (question, value, text).
    pub answers: Vec<Answer>,
    /// Version of the survey stream.
    pub version: i64,
}

const SURVEY_COLUMNS: &[&str] = &[
    "audience",
    "request_type",
    "category",
    "request_channel",
    "agent_id",
    "agent_name",
    "department",
    "customer_tier",
    "customer_segment",
    "trigger",
    "campaign",
    "channel",
    "response_channel",
];

async fn survey_rows(
    conn: &mut PgConnection,
    condition: &str,
    bind: Uuid,
    limit: i64,
) -> Result<Vec<SurveyView>, ProjectionError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT s.*, to_jsonb(s) AS j FROM surveys s WHERE {condition} ORDER BY s.sent_at DESC, s.survey_id LIMIT $2"
    )))
    .bind(bind)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    surveys_from(conn, rows).await
}

/// Survey rows with their answers (one query for the answers of all of them).
async fn surveys_from(
    conn: &mut PgConnection,
    rows: Vec<sqlx::postgres::PgRow>,
) -> Result<Vec<SurveyView>, ProjectionError> {
    if rows.is_empty() {
        return Ok(vec![]);
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.try_get("survey_id")).collect::<Result<_, _>>()?;
    let mut answers: HashMap<Uuid, Vec<Answer>> = HashMap::new();
    for a in sqlx::query(
        "SELECT a.survey_id, a.question, a.value, a.text FROM answers a \
         JOIN surveys s ON s.survey_id = a.survey_id \
         LEFT JOIN template_items i ON i.template_id = s.template_id AND i.version = s.template_version \
              AND i.question = a.question \
         WHERE a.survey_id = ANY($1) ORDER BY a.survey_id, i.position NULLS LAST, a.question",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?
    {
        answers.entry(a.try_get("survey_id")?).or_default().push((
            a.try_get("question")?,
            a.try_get("value")?,
            a.try_get("text")?,
        ));
    }
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let j: Value = r.try_get("j")?;
        let survey_id: Uuid = r.try_get("survey_id")?;
        let template: (Uuid, i32) = (r.try_get("template_id")?, r.try_get("template_version")?);
        let row = SURVEY_COLUMNS.iter().map(|c| (*c, j.get(*c).cloned().unwrap_or(Value::Null))).collect();
        out.push(SurveyView {
            row,
            survey_id,
            template,
            customer_id: r.try_get("customer_id")?,
            request_id: r.try_get("request_id")?,
            state: r.try_get("state")?,
            sent_at: r.try_get("sent_at")?,
            expires_at: r.try_get("expires_at")?,
            responded_at: r.try_get("responded_at")?,
            response_count: r.try_get("response_count")?,
            reminders_sent: r.try_get("reminders_sent")?,
            follow_up: r.try_get::<Option<Json<Value>>, _>("follow_up")?.map(|x| x.0),
            follow_up_done: r.try_get::<Option<Json<Value>>, _>("follow_up_done")?.map(|x| x.0),
            follow_up_state: r.try_get("follow_up_state")?,
            answers: answers.remove(&survey_id).unwrap_or_default(),
            version: r.try_get("version")?,
        });
    }
    Ok(out)
}

/// The survey about each of these requests that has one (for batching).
pub async fn surveys_of_requests(
    conn: &mut PgConnection,
    request_ids: &[Uuid],
) -> Result<Vec<SurveyView>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT DISTINCT ON (s.request_id) s.*, to_jsonb(s) AS j FROM surveys s WHERE s.request_id = ANY($1) \
         ORDER BY s.request_id, s.sent_at DESC, s.survey_id",
    )
    .bind(request_ids)
    .fetch_all(&mut *conn)
    .await?;
    surveys_from(conn, rows).await
}

/// Template versions by (id, version) (for batching).
pub async fn templates_by_key(
    conn: &mut PgConnection,
    keys: &[(Uuid, i32)],
) -> Result<Vec<TemplateRow>, ProjectionError> {
    let (ids, versions): (Vec<Uuid>, Vec<i32>) = keys.iter().copied().unzip();
    let rows = sqlx::query(
        "SELECT t.template_id, t.version, t.published, t.content FROM templates t \
         JOIN UNNEST($1::uuid[], $2::int[]) AS k(template_id, version) USING (template_id, version)",
    )
    .bind(&ids)
    .bind(&versions)
    .fetch_all(conn)
    .await?;
    rows.iter().map(template_row).collect()
}

/// One survey.
pub async fn survey(conn: &mut PgConnection, id: Uuid) -> Result<Option<SurveyView>, ProjectionError> {
    Ok(survey_rows(conn, "s.survey_id = $1", id, 1).await?.pop())
}

/// The survey about a request, if any.
pub async fn survey_of_request(
    conn: &mut PgConnection,
    request_id: Uuid,
) -> Result<Option<SurveyView>, ProjectionError> {
    Ok(survey_rows(conn, "s.request_id = $1", request_id, 1).await?.pop())
}

/// The newest surveys of each of many customers, newest first, in one statement.
pub async fn surveys_of_customers(
    conn: &mut PgConnection,
    customer_ids: &[Uuid],
    limit: i64,
) -> Result<HashMap<Uuid, Vec<SurveyView>>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT s.* FROM unnest($1::uuid[]) AS c(customer_id) \
         CROSS JOIN LATERAL (SELECT q.*, to_jsonb(q) AS j FROM surveys q WHERE q.customer_id = c.customer_id \
                             ORDER BY q.sent_at DESC, q.survey_id LIMIT $2) s",
    )
    .bind(customer_ids)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut out: HashMap<Uuid, Vec<SurveyView>> = customer_ids.iter().map(|id| (*id, Vec::new())).collect();
    for view in surveys_from(conn, rows).await? {
        out.entry(view.customer_id).or_default().push(view);
    }
    Ok(out)
}

/// One point of a customer's satisfaction over time.
#[derive(Debug, Clone, PartialEq)]
pub struct TrajectoryPoint {
    /// The survey.
    pub survey_id: Uuid,
    /// The request it was about.
    pub request_id: Option<Uuid>,
    /// When answered.
    pub responded_at: DateTime<Utc>,
    /// The indices of this one response.
    pub indices: Indices,
}

/// A customer's answered surveys, oldest first, each with its own indices.
pub async fn customer_trajectory(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<Vec<TrajectoryPoint>, ProjectionError> {
    Ok(customer_trajectories(conn, &[customer_id]).await?.remove(&customer_id).unwrap_or_default())
}

/// [`customer_trajectory`] of many customers in one statement: the answered surveys with their
/// answers and the template items that score them.
pub async fn customer_trajectories(
    conn: &mut PgConnection,
    customer_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<TrajectoryPoint>>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT s.customer_id, s.survey_id, s.request_id, s.responded_at, s.template_id, s.template_version, \
                a.question, a.value, i.kind, i.dimension, i.expectation, i.leaf_weight \
         FROM surveys s \
         LEFT JOIN answers a ON a.survey_id = s.survey_id AND a.value IS NOT NULL \
         LEFT JOIN template_items i \
           ON i.template_id = s.template_id AND i.version = s.template_version AND i.question = a.question \
         WHERE s.customer_id = ANY($1) AND s.responded_at IS NOT NULL \
         ORDER BY s.customer_id, s.responded_at, s.survey_id",
    )
    .bind(customer_ids)
    .fetch_all(&mut *conn)
    .await?;
    /// One answered survey while its rows are read.
    struct Open {
        customer_id: Uuid,
        survey_id: Uuid,
        request_id: Option<Uuid>,
        responded_at: DateTime<Utc>,
        template: (Uuid, u32),
        stats: Vec<ItemStats>,
    }
    fn close(open: Open, out: &mut HashMap<Uuid, Vec<TrajectoryPoint>>) {
        let responses: BTreeMap<(Uuid, u32), u64> = [(open.template, 1)].into_iter().collect();
        out.entry(open.customer_id).or_default().push(TrajectoryPoint {
            survey_id: open.survey_id,
            request_id: open.request_id,
            responded_at: open.responded_at,
            indices: indices(&open.stats, &responses),
        });
    }
    let mut out: HashMap<Uuid, Vec<TrajectoryPoint>> = customer_ids.iter().map(|id| (*id, Vec::new())).collect();
    let mut open: Option<Open> = None;
    for r in rows {
        let survey_id: Uuid = r.try_get("survey_id")?;
        if open.as_ref().is_none_or(|o| o.survey_id != survey_id) {
            if let Some(done) = open.take() {
                close(done, &mut out);
            }
            open = Some(Open {
                customer_id: r.try_get("customer_id")?,
                survey_id,
                request_id: r.try_get("request_id")?,
                responded_at: r.try_get("responded_at")?,
                // A survey without answers scores against no template.
                template: (Uuid::nil(), 0),
                stats: Vec::new(),
            });
        }
        let Some(o) = open.as_mut() else { continue };
        let Some(question) = r.try_get::<Option<String>, _>("question")? else { continue };
        o.template = (r.try_get("template_id")?, r.try_get::<i32, _>("template_version")? as u32);
        let Some(kind) = r.try_get::<Option<String>, _>("kind")?.and_then(|k| k.parse::<QuestionKind>().ok()) else {
            continue;
        };
        o.stats.push(ItemStats {
            template: o.template,
            question,
            kind,
            dimension: r.try_get("dimension")?,
            expectation: r.try_get("expectation")?,
            leaf_weight: r.try_get("leaf_weight")?,
            counts: [(r.try_get::<i32, _>("value")?, 1)].into_iter().collect(),
        });
    }
    if let Some(done) = open.take() {
        close(done, &mut out);
    }
    Ok(out)
}

/// Which follow-ups to list.
#[derive(Debug, Clone, Default)]
pub struct FollowUpFilter {
    /// Only open ones.
    pub open_only: bool,
    /// Only overdue ones at this time.
    pub overdue_at: Option<DateTime<Utc>>,
    /// Department.
    pub department: Option<String>,
    /// Assignee.
    pub assignee: Option<String>,
}

/// Surveys with a follow-up, the most urgent first.
pub async fn follow_ups(
    conn: &mut PgConnection,
    filter: &FollowUpFilter,
    limit: i64,
) -> Result<Vec<SurveyView>, ProjectionError> {
    let mut ids_sql = String::from("SELECT survey_id FROM surveys WHERE follow_up_state <> 'NONE'");
    if filter.open_only || filter.overdue_at.is_some() {
        ids_sql += " AND follow_up_state = 'OPEN'";
    }
    if filter.overdue_at.is_some() {
        ids_sql += " AND follow_up_due_at < $1";
    } else {
        ids_sql += " AND $1::timestamptz IS NULL";
    }
    ids_sql += " AND ($2::text IS NULL OR follow_up_department = $2) AND ($3::text IS NULL OR follow_up_assignee = $3) \
                ORDER BY follow_up_state DESC, follow_up_due_at, survey_id LIMIT $4";
    let ids: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(ids_sql))
        .bind(filter.overdue_at)
        .bind(&filter.department)
        .bind(&filter.assignee)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(s) = survey(conn, id).await? {
            out.push(s);
        }
    }
    Ok(out)
}

/// Follow-up counts in a range (by opening time): opened, done, open and overdue at `now`.
pub async fn follow_up_counts(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(i64, i64, i64), ProjectionError> {
    let row = sqlx::query(
        "SELECT count(*) AS opened, count(*) FILTER (WHERE follow_up_state = 'DONE') AS done, \
           count(*) FILTER (WHERE follow_up_state = 'OPEN' AND follow_up_due_at < $3) AS overdue \
         FROM surveys WHERE follow_up_state <> 'NONE' \
           AND (follow_up ->> 'at')::timestamptz >= $1 AND (follow_up ->> 'at')::timestamptz < $2",
    )
    .bind(from)
    .bind(to)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    Ok((row.try_get("opened")?, row.try_get("done")?, row.try_get("overdue")?))
}

/// An indicator with dissatisfied answers.
#[derive(Debug, Clone, PartialEq)]
pub struct DissatisfactionReason {
    /// The indicator's path (process / step / touchpoint).
    pub indicator: String,
    /// The responsible department.
    pub department: String,
    /// Dissatisfied answers (1–2 of 5, 0–6 of 10, 1–2 of 7, no).
    pub dissatisfied: i64,
    /// All its answers.
    pub answers: i64,
}

/// The indicators most often answered with dissatisfaction in a range, with the departments
/// responsible.
pub async fn top_dissatisfaction(
    conn: &mut PgConnection,
    audience: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<DissatisfactionReason>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT i.indicator_path, i.department, \
           count(*) FILTER (WHERE (i.kind = 'LIKERT_5' AND a.value <= 2) OR (i.kind = 'NPS_0_10' AND a.value <= 6) \
             OR (i.kind = 'CES_1_7' AND a.value <= 2) OR (i.kind = 'YES_NO' AND a.value = 0)) AS bad, \
           count(*) AS n \
         FROM answers a JOIN surveys s USING (survey_id) \
         JOIN template_items i ON i.template_id = s.template_id AND i.version = s.template_version AND i.question = a.question \
         WHERE s.audience = $1 AND s.responded_at >= $2 AND s.responded_at < $3 AND i.indicator IS NOT NULL \
           AND a.value IS NOT NULL \
         GROUP BY i.indicator_path, i.department HAVING count(*) FILTER (WHERE (i.kind = 'LIKERT_5' AND a.value <= 2) \
             OR (i.kind = 'NPS_0_10' AND a.value <= 6) OR (i.kind = 'CES_1_7' AND a.value <= 2) \
             OR (i.kind = 'YES_NO' AND a.value = 0)) > 0 \
         ORDER BY bad DESC, i.indicator_path LIMIT $4",
    )
    .bind(audience)
    .bind(from)
    .bind(to)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(DissatisfactionReason {
                indicator: r.try_get("indicator_path")?,
                department: r.try_get("department")?,
                dissatisfied: r.try_get("bad")?,
                answers: r.try_get("n")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// Surveys that need a reminder or have expired by `now` (for the scheduler).
pub async fn surveys_due(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Uuid>, ProjectionError> {
    Ok(sqlx::query_scalar(
        "SELECT survey_id FROM surveys WHERE state IN ('SENT', 'PARTIAL') AND expired_at IS NULL \
           AND (expires_at <= $1 OR next_reminder_at <= $1) \
         ORDER BY least(expires_at, coalesce(next_reminder_at, expires_at)) LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// An alert as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertView {
    /// The rule.
    pub rule_id: Uuid,
    /// The period.
    pub label: String,
    /// The department ("" for the whole company).
    pub department: String,
    /// The index.
    pub index: String,
    /// Before and now, in hundredths.
    pub previous_hundredths: i64,
    /// …
    pub current_hundredths: i64,
    /// Responses before and now.
    pub previous_responses: i32,
    /// …
    pub current_responses: i32,
    /// When raised.
    pub raised_at: DateTime<Utc>,
}

/// Alerts raised in a range, newest first.
pub async fn alerts(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<AlertView>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT * FROM alerts WHERE raised_at >= $1 AND raised_at < $2 ORDER BY raised_at DESC, label, department",
    )
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AlertView {
                rule_id: r.try_get("rule_id")?,
                label: r.try_get("label")?,
                department: r.try_get("department")?,
                index: r.try_get("index_kind")?,
                previous_hundredths: r.try_get("previous_hundredths")?,
                current_hundredths: r.try_get("current_hundredths")?,
                previous_responses: r.try_get("previous_responses")?,
                current_responses: r.try_get("current_responses")?,
                raised_at: r.try_get("raised_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// A template version as stored.
#[derive(Debug, Clone)]
pub struct TemplateRow {
    /// Id.
    pub template_id: Uuid,
    /// Version.
    pub version: i32,
    /// Published.
    pub published: bool,
    /// Content.
    pub content: kefu_domain::survey_template::SurveyTemplateContent,
}

fn template_row(r: &sqlx::postgres::PgRow) -> Result<TemplateRow, ProjectionError> {
    let Json(content): Json<kefu_domain::survey_template::SurveyTemplateContent> = r.try_get("content")?;
    Ok(TemplateRow {
        template_id: r.try_get("template_id")?,
        version: r.try_get("version")?,
        published: r.try_get("published")?,
        content,
    })
}

/// One template version.
pub async fn template(conn: &mut PgConnection, id: Uuid, version: i32) -> Result<Option<TemplateRow>, ProjectionError> {
    let row = sqlx::query(
        "SELECT template_id, version, published, content FROM templates WHERE template_id = $1 AND version = $2",
    )
    .bind(id)
    .bind(version)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(template_row).transpose()
}

/// Every template's newest version, by name.
pub async fn templates(conn: &mut PgConnection) -> Result<Vec<TemplateRow>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT DISTINCT ON (template_id) template_id, version, published, content FROM templates \
         ORDER BY template_id, version DESC",
    )
    .fetch_all(conn)
    .await?;
    let mut out: Vec<TemplateRow> = rows.iter().map(template_row).collect::<Result<_, _>>()?;
    out.sort_by(|a, b| a.content.name.as_str().cmp(b.content.name.as_str()));
    Ok(out)
}
