//! The customer 360 view: profile, classification, contacts, account manager, consents, the
//! interaction timeline, counts by channel, last contact and first-contact resolution.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kefu_app::RecordedEvent;
use kefu_domain::{
    customer::{CustomerEvent, CustomerRegistered, apply_profile_update},
    interaction::{InteractionEvent, InteractionLogged},
};
use serde_json::json;
use sqlx::{PgConnection, Row, postgres::PgRow, types::Json};
use uuid::Uuid;

use crate::{
    Projection, ProjectionError,
    bulk::BulkFold,
    copy::{AsJson, CopyRows, Streamed},
};

/// The projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Customer360;

/// Its name.
pub const NAME: &str = "customer360";

const SCHEMA: &str = r#"
CREATE TABLE customers (
    customer_id               uuid        PRIMARY KEY,
    kind                      text        NOT NULL,
    name                      text        NOT NULL,
    phone                     text,
    backup_phone              text,
    email                     text,
    department_code           text,
    profile                   jsonb       NOT NULL,
    industry                  text,
    scale                     text,
    tenure                    text,
    value_tier                text,
    lifecycle_segment         text,
    key_account               boolean     NOT NULL DEFAULT false,
    grade                     text,
    account_manager_id        text,
    account_manager_name      text,
    consents                  jsonb       NOT NULL DEFAULT '{}',
    registered_at             timestamptz NOT NULL,
    updated_at                timestamptz NOT NULL,
    version                   bigint      NOT NULL,
    last_position             bigint      NOT NULL,
    interaction_count         integer     NOT NULL DEFAULT 0,
    resolved_first_contact    integer     NOT NULL DEFAULT 0,
    last_contact_at           timestamptz,
    last_contact_channel      text
);
CREATE INDEX customers_by_name ON customers (lower(name), customer_id);
CREATE INDEX customers_by_registration ON customers (registered_at, customer_id);
CREATE INDEX customers_by_manager ON customers (account_manager_id);

CREATE TABLE interactions (
    interaction_id            uuid        PRIMARY KEY,
    customer_id               uuid        NOT NULL,
    occurred_at               timestamptz NOT NULL,
    recorded_at               timestamptz NOT NULL,
    channel                   text        NOT NULL,
    direction                 text        NOT NULL,
    initiator                 text        NOT NULL,
    mode                      text        NOT NULL,
    handled_by_id             text,
    handled_by_name           text,
    summary                   text        NOT NULL,
    tasks_handed_over         jsonb       NOT NULL,
    follow_up_actions         jsonb       NOT NULL,
    resolved_at_first_contact boolean     NOT NULL,
    duration_seconds          integer,
    service_request_id        uuid,
    recorded_by               text        NOT NULL,
    global_position           bigint      NOT NULL
);
CREATE INDEX interactions_timeline ON interactions (customer_id, occurred_at DESC, interaction_id DESC);

CREATE TABLE channel_counts (
    customer_id uuid    NOT NULL,
    channel     text    NOT NULL,
    contacts    integer NOT NULL,
    PRIMARY KEY (customer_id, channel)
);
"#;

const TABLES: &[&str] = &["customers", "interactions", "channel_counts"];

impl Projection for Customer360 {
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
        matches!(stream_type, "customer" | "interaction")
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move { apply_many(conn, &[event]).await })
    }

    fn apply_all<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [&'a RecordedEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(apply_many(conn, events))
    }

    fn bulk(&self) -> Option<Box<dyn BulkFold>> {
        Some(Box::new(BulkCustomers {
            views: BTreeMap::new(),
            counts: BTreeMap::new(),
            interactions: CopyRows::new("interactions"),
        }))
    }
}

/// An event this read model reads, decoded once.
enum Decoded {
    Customer(CustomerEvent),
    Interaction(InteractionLogged),
    Other,
}

fn decode(e: &RecordedEvent) -> Result<Decoded, ProjectionError> {
    Ok(match e.stream_type.as_str() {
        "customer" => Decoded::Customer(e.decode()?),
        "interaction" => {
            let InteractionEvent::InteractionLogged(i) = e.decode()?;
            Decoded::Interaction(i)
        }
        _ => Decoded::Other,
    })
}

/// The live projection is the fold ([`fold_onto`]) applied in bulk: the customers a run of
/// events touches are read in one query, every event is folded onto them in memory, and each
/// table is written with one statement (changed customers upserted, interactions inserted,
/// channel counts added).
async fn apply_many(conn: &mut PgConnection, events: &[&RecordedEvent]) -> Result<(), ProjectionError> {
    let decoded: Vec<Decoded> = events.iter().map(|e| decode(e)).collect::<Result<_, _>>()?;
    let mut ids: Vec<Uuid> = events
        .iter()
        .zip(&decoded)
        .filter_map(|(e, d)| match d {
            Decoded::Customer(_) => Some(e.stream_id),
            Decoded::Interaction(i) => Some(i.customer_id),
            Decoded::Other => None,
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut views: BTreeMap<Uuid, Option<CustomerView>> = ids.iter().map(|id| (*id, None)).collect();
    if !ids.is_empty() {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE customer_id = ANY($1) ORDER BY customer_id FOR UPDATE"
        )))
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        for row in &rows {
            let view = customer_from_row(row)?;
            views.insert(view.customer_id, Some(view));
        }
    }
    let mut changed: BTreeSet<Uuid> = BTreeSet::new();
    let mut interactions: Vec<InteractionRow> = Vec::new();
    let mut counts: BTreeMap<(Uuid, &'static str), i32> = BTreeMap::new();
    for (e, d) in events.iter().zip(&decoded) {
        match d {
            Decoded::Customer(event) => {
                let view = views.entry(e.stream_id).or_default();
                fold_customer(view, e, event)?;
                changed.insert(e.stream_id);
            }
            Decoded::Interaction(i) => {
                // The interaction and its channel count are kept even for a customer the view
                // does not know (yet); the customer's figures only when it does.
                interactions.push(InteractionRow { view: interaction_view(e, i), global_position: e.global_position });
                *counts.entry((i.customer_id, i.channel.as_str())).or_default() += 1;
                if let Some(view) = views.get_mut(&i.customer_id).and_then(Option::as_mut) {
                    fold_interaction(view, e, i);
                    changed.insert(i.customer_id);
                }
            }
            Decoded::Other => {}
        }
    }

    let rows: Vec<CustomerRow<'_>> =
        changed.iter().filter_map(|id| views.get(id).and_then(Option::as_ref)).map(CustomerRow::of).collect();
    CopyRows::new("customers").upsert(conn, rows.iter(), CUSTOMERS_CONFLICT).await?;
    CopyRows::new("interactions").upsert(conn, interactions.iter(), "ORDER BY interaction_id").await?;
    if !counts.is_empty() {
        let (mut customers, mut channels, mut contacts) = (Vec::new(), Vec::new(), Vec::new());
        for ((customer, channel), n) in &counts {
            customers.push(*customer);
            channels.push(*channel);
            contacts.push(*n);
        }
        sqlx::query(
            "INSERT INTO channel_counts (customer_id, channel, contacts) \
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[]) \
             ON CONFLICT (customer_id, channel) DO UPDATE SET contacts = channel_counts.contacts + EXCLUDED.contacts",
        )
        .bind(&customers)
        .bind(&channels)
        .bind(&contacts)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A rebuild's fold: every customer in memory and the channel counts; the interactions are
/// streamed out as they come (they never change), the customers and counts written at the end.
struct BulkCustomers {
    views: BTreeMap<Uuid, Option<CustomerView>>,
    counts: BTreeMap<(Uuid, &'static str), i32>,
    interactions: CopyRows,
}

impl BulkFold for BulkCustomers {
    fn fold(&mut self, e: &RecordedEvent) -> Result<(), ProjectionError> {
        match decode(e)? {
            Decoded::Customer(event) => fold_customer(self.views.entry(e.stream_id).or_default(), e, &event),
            Decoded::Interaction(i) => {
                // As a batch does it: the interaction and its count even for a customer not
                // known (yet), the customer's figures only when it is.
                self.interactions
                    .push(&InteractionRow { view: interaction_view(e, &i), global_position: e.global_position })?;
                *self.counts.entry((i.customer_id, i.channel.as_str())).or_default() += 1;
                if let Some(view) = self.views.get_mut(&i.customer_id).and_then(Option::as_mut) {
                    fold_interaction(view, e, &i);
                }
                Ok(())
            }
            Decoded::Other => Ok(()),
        }
    }

    fn streamed(&mut self) -> Vec<Streamed> {
        self.interactions.take().into_iter().collect()
    }

    fn write<'a>(&'a mut self, conn: &'a mut PgConnection) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            self.interactions.send(conn).await?;
            let rows: Vec<CustomerRow<'_>> = self.views.values().flatten().map(CustomerRow::of).collect();
            CopyRows::new("customers").write_all(conn, rows.iter()).await?;
            #[derive(serde::Serialize)]
            struct CountRow {
                customer_id: Uuid,
                channel: &'static str,
                contacts: i32,
            }
            let counts: Vec<CountRow> = self
                .counts
                .iter()
                .map(|((customer_id, channel), contacts)| CountRow {
                    customer_id: *customer_id,
                    channel,
                    contacts: *contacts,
                })
                .collect();
            CopyRows::new("channel_counts").write_all(conn, counts.iter()).await
        })
    }
}

/// A changed customer replaces every column but its id.
const CUSTOMERS_CONFLICT: &str = "ON CONFLICT (customer_id) DO UPDATE SET kind = EXCLUDED.kind, name = EXCLUDED.name, phone = EXCLUDED.phone, \
    backup_phone = EXCLUDED.backup_phone, email = EXCLUDED.email, department_code = EXCLUDED.department_code, \
    profile = EXCLUDED.profile, industry = EXCLUDED.industry, scale = EXCLUDED.scale, tenure = EXCLUDED.tenure, \
    value_tier = EXCLUDED.value_tier, lifecycle_segment = EXCLUDED.lifecycle_segment, \
    key_account = EXCLUDED.key_account, grade = EXCLUDED.grade, account_manager_id = EXCLUDED.account_manager_id, \
    account_manager_name = EXCLUDED.account_manager_name, consents = EXCLUDED.consents, \
    registered_at = EXCLUDED.registered_at, updated_at = EXCLUDED.updated_at, version = EXCLUDED.version, \
    last_position = EXCLUDED.last_position, interaction_count = EXCLUDED.interaction_count, \
    resolved_first_contact = EXCLUDED.resolved_first_contact, last_contact_at = EXCLUDED.last_contact_at, \
    last_contact_channel = EXCLUDED.last_contact_channel";

/// A `customers` row, named as its columns (for `COPY`).
#[derive(serde::Serialize)]
struct CustomerRow<'a> {
    customer_id: Uuid,
    kind: &'static str,
    name: &'a str,
    phone: Option<&'a str>,
    backup_phone: Option<&'a str>,
    email: Option<&'a str>,
    department_code: Option<&'a str>,
    profile: AsJson<&'a CustomerRegistered>,
    industry: &'a Option<String>,
    scale: &'a Option<String>,
    tenure: &'a Option<String>,
    value_tier: &'a Option<String>,
    lifecycle_segment: &'a Option<String>,
    key_account: bool,
    grade: &'a Option<String>,
    account_manager_id: &'a Option<String>,
    account_manager_name: &'a Option<String>,
    consents: AsJson<&'a serde_json::Value>,
    registered_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
    last_position: i64,
    interaction_count: i32,
    resolved_first_contact: i32,
    last_contact_at: Option<DateTime<Utc>>,
    last_contact_channel: &'a Option<String>,
}

impl<'a> CustomerRow<'a> {
    fn of(v: &'a CustomerView) -> Self {
        let p = &v.profile;
        CustomerRow {
            customer_id: v.customer_id,
            kind: p.kind.as_str(),
            name: p.name.as_str(),
            phone: p.contacts.phone.as_ref().map(|x| x.as_str()),
            backup_phone: p.contacts.backup_phone.as_ref().map(|x| x.as_str()),
            email: p.contacts.email.as_ref().map(|x| x.as_str()),
            department_code: p.department_code.as_ref().map(|x| x.as_str()),
            profile: AsJson(p),
            industry: &v.industry,
            scale: &v.scale,
            tenure: &v.tenure,
            value_tier: &v.value_tier,
            lifecycle_segment: &v.lifecycle_segment,
            key_account: v.key_account,
            grade: &v.grade,
            account_manager_id: &v.account_manager_id,
            account_manager_name: &v.account_manager_name,
            consents: AsJson(&v.consents),
            registered_at: v.registered_at,
            updated_at: v.updated_at,
            version: v.version,
            last_position: v.last_position,
            interaction_count: v.interaction_count,
            resolved_first_contact: v.resolved_first_contact,
            last_contact_at: v.last_contact_at,
            last_contact_channel: &v.last_contact_channel,
        }
    }
}

/// An `interactions` row: the timeline entry and the position it was recorded at.
#[derive(serde::Serialize)]
struct InteractionRow {
    #[serde(flatten)]
    view: InteractionView,
    global_position: i64,
}

// -------------------------------------------------------------------------------------------
// Reading

/// A customer as the 360 view has them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CustomerView {
    /// Id.
    pub customer_id: Uuid,
    /// The profile (registration with every later change applied).
    pub profile: CustomerRegistered,
    /// 行业.
    pub industry: Option<String>,
    /// 规模.
    pub scale: Option<String>,
    /// 新/老/忠诚.
    pub tenure: Option<String>,
    /// 重要/一般/潜在.
    pub value_tier: Option<String>,
    /// 潜在/优势/睡眠/逃跑.
    pub lifecycle_segment: Option<String>,
    /// 大客户.
    pub key_account: bool,
    /// 级别.
    pub grade: Option<String>,
    /// Account manager id.
    pub account_manager_id: Option<String>,
    /// Account manager name.
    pub account_manager_name: Option<String>,
    /// Consents by purpose: `{"SURVEYS": {"granted": true, "at": …}}`.
    pub consents: serde_json::Value,
    /// Business time of registration.
    pub registered_at: DateTime<Utc>,
    /// Business time of the last change to the file.
    pub updated_at: DateTime<Utc>,
    /// Customer stream version.
    pub version: i64,
    /// Last global position reflected.
    pub last_position: i64,
    /// Contacts so far.
    pub interaction_count: i32,
    /// Contacts resolved at first contact.
    pub resolved_first_contact: i32,
    /// Latest contact (business time).
    pub last_contact_at: Option<DateTime<Utc>>,
    /// Its channel.
    pub last_contact_channel: Option<String>,
}

impl CustomerView {
    /// Share of contacts resolved at first contact, `None` without contacts.
    pub fn first_contact_resolution(&self) -> Option<f64> {
        (self.interaction_count > 0).then(|| f64::from(self.resolved_first_contact) / f64::from(self.interaction_count))
    }
}

const CUSTOMER_COLUMNS: &str = "customer_id, profile, industry, scale, tenure, value_tier, lifecycle_segment, key_account, \
    grade, account_manager_id, account_manager_name, consents, registered_at, updated_at, version, last_position, \
    interaction_count, resolved_first_contact, last_contact_at, last_contact_channel, name";

fn customer_from_row(row: &PgRow) -> Result<CustomerView, sqlx::Error> {
    let Json(profile): Json<CustomerRegistered> = row.try_get("profile")?;
    Ok(CustomerView {
        customer_id: row.try_get("customer_id")?,
        profile,
        industry: row.try_get("industry")?,
        scale: row.try_get("scale")?,
        tenure: row.try_get("tenure")?,
        value_tier: row.try_get("value_tier")?,
        lifecycle_segment: row.try_get("lifecycle_segment")?,
        key_account: row.try_get("key_account")?,
        grade: row.try_get("grade")?,
        account_manager_id: row.try_get("account_manager_id")?,
        account_manager_name: row.try_get("account_manager_name")?,
        consents: row.try_get("consents")?,
        registered_at: row.try_get("registered_at")?,
        updated_at: row.try_get("updated_at")?,
        version: row.try_get("version")?,
        last_position: row.try_get("last_position")?,
        interaction_count: row.try_get("interaction_count")?,
        resolved_first_contact: row.try_get("resolved_first_contact")?,
        last_contact_at: row.try_get("last_contact_at")?,
        last_contact_channel: row.try_get("last_contact_channel")?,
    })
}

/// A customer's 360 view from their events (their customer stream and their interactions, in
/// log order), as the projection would show it after the last one: what `customer(asOf:)`
/// returns. `None` before registration.
pub fn fold_view(events: &[RecordedEvent]) -> Result<Option<CustomerView>, ProjectionError> {
    fold_onto(None, events)
}

/// [`fold_view`] continued from the view after earlier events (a snapshot):
/// `fold_onto(fold_view(a), b) == fold_view(a ++ b)`.
pub fn fold_onto(
    start: Option<CustomerView>,
    events: &[RecordedEvent],
) -> Result<Option<CustomerView>, ProjectionError> {
    let mut view = start;
    for e in events {
        match decode(e)? {
            Decoded::Customer(event) => fold_customer(&mut view, e, &event)?,
            Decoded::Interaction(i) => {
                if let Some(v) = view.as_mut() {
                    fold_interaction(v, e, &i);
                }
            }
            Decoded::Other => {}
        }
    }
    Ok(view)
}

/// One event of the customer's own stream.
fn fold_customer(
    view: &mut Option<CustomerView>,
    e: &RecordedEvent,
    event: &CustomerEvent,
) -> Result<(), ProjectionError> {
    if let CustomerEvent::CustomerRegistered(r) = event {
        *view = Some(CustomerView {
            customer_id: e.stream_id,
            profile: r.clone(),
            industry: None,
            scale: None,
            tenure: None,
            value_tier: None,
            lifecycle_segment: None,
            key_account: false,
            grade: None,
            account_manager_id: None,
            account_manager_name: None,
            consents: json!({}),
            registered_at: e.occurred_at,
            updated_at: e.occurred_at,
            version: e.stream_version,
            last_position: e.global_position,
            interaction_count: 0,
            resolved_first_contact: 0,
            last_contact_at: None,
            last_contact_channel: None,
        });
        return Ok(());
    }
    let v = view.as_mut().ok_or_else(|| {
        ProjectionError::Poison(format!(
            "{} for unknown customer {} (before its registration)",
            e.event_type, e.stream_id
        ))
    })?;
    match event {
        CustomerEvent::CustomerRegistered(_) => {}
        CustomerEvent::CustomerProfileUpdated(u) => apply_profile_update(&mut v.profile, u),
        CustomerEvent::CustomerClassified(c) => {
            let c = &c.classification;
            v.industry = c.industry.map(|x| x.as_str().to_string());
            v.scale = c.scale.map(|x| x.as_str().to_string());
            v.tenure = c.tenure.map(|x| x.as_str().to_string());
            v.value_tier = c.value_tier.map(|x| x.as_str().to_string());
            v.lifecycle_segment = c.lifecycle_segment.map(|x| x.as_str().to_string());
            v.key_account = c.key_account;
            v.grade = c.grade.as_ref().map(|g| g.as_str().to_string());
        }
        CustomerEvent::AccountManagerAssigned(a) => {
            v.account_manager_id = Some(a.manager.id.as_str().to_string());
            v.account_manager_name = a.manager.name.as_ref().map(|n| n.as_str().to_string());
        }
        CustomerEvent::ConsentGranted(c) => {
            v.consents[c.purpose.as_str()] = consent_value(e, true, c.channel.map(|x| x.as_str()));
        }
        CustomerEvent::ConsentWithdrawn(c) => {
            v.consents[c.purpose.as_str()] = consent_value(e, false, c.channel.map(|x| x.as_str()));
        }
    }
    v.version = e.stream_version;
    v.last_position = v.last_position.max(e.global_position);
    v.updated_at = v.updated_at.max(e.occurred_at);
    Ok(())
}

/// A contact with the customer.
fn fold_interaction(v: &mut CustomerView, e: &RecordedEvent, i: &InteractionLogged) {
    v.interaction_count += 1;
    v.resolved_first_contact += i32::from(i.resolved_at_first_contact);
    if v.last_contact_at.is_none_or(|t| e.occurred_at >= t) {
        v.last_contact_channel = Some(i.channel.as_str().to_string());
        v.last_contact_at = Some(e.occurred_at);
    }
    v.last_position = v.last_position.max(e.global_position);
}

fn consent_value(e: &RecordedEvent, granted: bool, channel: Option<&str>) -> serde_json::Value {
    json!({"granted": granted, "at": e.occurred_at, "channel": channel, "recordedBy": e.actor.id})
}

/// One customer.
pub async fn customer(conn: &mut PgConnection, id: Uuid) -> Result<Option<CustomerView>, ProjectionError> {
    let row =
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE customer_id = $1")))
            .bind(id)
            .fetch_optional(conn)
            .await?;
    Ok(row.as_ref().map(customer_from_row).transpose()?)
}

/// Many customers by id (for batching).
pub async fn customers_by_id(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<CustomerView>, ProjectionError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE customer_id = ANY($1)"
    )))
    .bind(ids)
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(customer_from_row).collect::<Result<_, _>>()?)
}

/// Filters for listing customers; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct CustomerFilter {
    /// Part of the name, phone or e-mail (case-insensitive).
    pub search: Option<String>,
    /// Kind (short name).
    pub kind: Option<String>,
    /// Value tier.
    pub value_tier: Option<String>,
    /// Lifecycle segment.
    pub lifecycle_segment: Option<String>,
    /// Industry.
    pub industry: Option<String>,
    /// Key accounts only / none.
    pub key_account: Option<bool>,
    /// Account manager id.
    pub account_manager_id: Option<String>,
}

/// Sort order of customer lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CustomerOrder {
    /// By name, A→Z.
    #[default]
    Name,
    /// Most recently registered first.
    NewestFirst,
}

/// Where a page starts: after this (sort key, id).
#[derive(Debug, Clone, PartialEq)]
pub enum CustomerCursor {
    /// After this lower-cased name.
    Name(String, Uuid),
    /// After this registration time.
    Registered(DateTime<Utc>, Uuid),
}

/// A page of customers plus whether more follow.
pub async fn list_customers(
    conn: &mut PgConnection,
    filter: &CustomerFilter,
    order: CustomerOrder,
    first: i64,
    after: Option<&CustomerCursor>,
) -> Result<(Vec<CustomerView>, bool), ProjectionError> {
    let mut sql = format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE true");
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    let search =
        filter.search.as_ref().map(|s| format!("%{}%", s.to_lowercase().replace('%', "\\%").replace('_', "\\_")));
    if search.is_some() {
        let i = next();
        sql += &format!(" AND (lower(name) LIKE ${i} OR phone LIKE ${i} OR lower(email) LIKE ${i})");
    }
    let eq: [(&str, &Option<String>); 5] = [
        ("kind", &filter.kind),
        ("value_tier", &filter.value_tier),
        ("lifecycle_segment", &filter.lifecycle_segment),
        ("industry", &filter.industry),
        ("account_manager_id", &filter.account_manager_id),
    ];
    let mut binds: Vec<String> = Vec::new();
    for (column, value) in eq.iter() {
        if let Some(v) = value {
            sql += &format!(" AND {column} = ${}", next());
            binds.push(v.clone());
        }
    }
    if filter.key_account.is_some() {
        sql += &format!(" AND key_account = ${}", next());
    }
    match (order, after) {
        (CustomerOrder::Name, Some(CustomerCursor::Name(..))) => {
            let (a, b) = (next(), next());
            sql += &format!(" AND (lower(name), customer_id) > (${a}, ${b})");
        }
        (CustomerOrder::NewestFirst, Some(CustomerCursor::Registered(..))) => {
            let (a, b) = (next(), next());
            sql += &format!(" AND (registered_at, customer_id) < (${a}, ${b})");
        }
        _ => {}
    }
    sql += match order {
        CustomerOrder::Name => " ORDER BY lower(name), customer_id",
        CustomerOrder::NewestFirst => " ORDER BY registered_at DESC, customer_id DESC",
    };
    sql += &format!(" LIMIT ${}", next());

    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    if let Some(s) = &search {
        q = q.bind(s.clone());
    }
    for b in binds {
        q = q.bind(b);
    }
    if let Some(k) = filter.key_account {
        q = q.bind(k);
    }
    match (order, after) {
        (CustomerOrder::Name, Some(CustomerCursor::Name(name, id))) => q = q.bind(name.clone()).bind(*id),
        (CustomerOrder::NewestFirst, Some(CustomerCursor::Registered(at, id))) => q = q.bind(*at).bind(*id),
        _ => {}
    }
    q = q.bind(first + 1);
    let rows = q.fetch_all(conn).await?;
    let mut out: Vec<CustomerView> = rows.iter().map(customer_from_row).collect::<Result<_, _>>()?;
    let more = out.len() as i64 > first;
    out.truncate(first as usize);
    Ok((out, more))
}

/// An interaction as the timeline shows it (serialised with its column names).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InteractionView {
    /// Id.
    pub interaction_id: Uuid,
    /// Customer.
    pub customer_id: Uuid,
    /// Business time.
    pub occurred_at: DateTime<Utc>,
    /// System time.
    pub recorded_at: DateTime<Utc>,
    /// Channel (short name).
    pub channel: String,
    /// Direction.
    pub direction: String,
    /// Initiator.
    pub initiator: String,
    /// Staff or self-service.
    pub mode: String,
    /// Who handled it.
    pub handled_by_id: Option<String>,
    /// Their name.
    pub handled_by_name: Option<String>,
    /// Summary.
    pub summary: String,
    /// Tasks handed over.
    pub tasks_handed_over: Vec<String>,
    /// Follow-up actions.
    pub follow_up_actions: Vec<kefu_domain::interaction::FollowUpAction>,
    /// First-contact resolution.
    pub resolved_at_first_contact: bool,
    /// Length.
    pub duration_seconds: Option<i32>,
    /// Related request.
    pub service_request_id: Option<Uuid>,
    /// Who recorded it.
    pub recorded_by: String,
}

const INTERACTION_COLUMNS: &str = "interaction_id, customer_id, occurred_at, recorded_at, channel, direction, initiator, mode, \
    handled_by_id, handled_by_name, summary, tasks_handed_over, follow_up_actions, resolved_at_first_contact, \
    duration_seconds, service_request_id, recorded_by";

fn interaction_from_row(row: &PgRow) -> Result<InteractionView, sqlx::Error> {
    let Json(tasks): Json<Vec<String>> = row.try_get("tasks_handed_over")?;
    let Json(follow_ups): Json<Vec<kefu_domain::interaction::FollowUpAction>> = row.try_get("follow_up_actions")?;
    Ok(InteractionView {
        interaction_id: row.try_get("interaction_id")?,
        customer_id: row.try_get("customer_id")?,
        occurred_at: row.try_get("occurred_at")?,
        recorded_at: row.try_get("recorded_at")?,
        channel: row.try_get("channel")?,
        direction: row.try_get("direction")?,
        initiator: row.try_get("initiator")?,
        mode: row.try_get("mode")?,
        handled_by_id: row.try_get("handled_by_id")?,
        handled_by_name: row.try_get("handled_by_name")?,
        summary: row.try_get("summary")?,
        tasks_handed_over: tasks,
        follow_up_actions: follow_ups,
        resolved_at_first_contact: row.try_get("resolved_at_first_contact")?,
        duration_seconds: row.try_get("duration_seconds")?,
        service_request_id: row.try_get("service_request_id")?,
        recorded_by: row.try_get("recorded_by")?,
    })
}

/// An interaction as the timeline shows it, from its event (what the projection stores and
/// what `customer(asOf:) { interactions }` folds).
pub fn interaction_view(e: &RecordedEvent, i: &kefu_domain::interaction::InteractionLogged) -> InteractionView {
    InteractionView {
        interaction_id: i.interaction_id,
        customer_id: i.customer_id,
        occurred_at: e.occurred_at,
        recorded_at: e.recorded_at,
        channel: i.channel.as_str().to_string(),
        direction: i.direction.as_str().to_string(),
        initiator: i.initiator.as_str().to_string(),
        mode: i.mode.as_str().to_string(),
        handled_by_id: i.handled_by.as_ref().map(|s| s.id.as_str().to_string()),
        handled_by_name: i.handled_by.as_ref().and_then(|s| s.name.as_ref()).map(|n| n.as_str().to_string()),
        summary: i.summary.as_str().to_string(),
        tasks_handed_over: i.tasks_handed_over.iter().map(|t| t.as_str().to_string()).collect(),
        follow_up_actions: i.follow_up_actions.clone(),
        resolved_at_first_contact: i.resolved_at_first_contact,
        duration_seconds: i.duration_seconds.map(|d| d as i32),
        service_request_id: i.service_request_id,
        recorded_by: e.actor.id.clone(),
    }
}

/// One interaction.
pub async fn interaction(conn: &mut PgConnection, id: Uuid) -> Result<Option<InteractionView>, ProjectionError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {INTERACTION_COLUMNS} FROM interactions WHERE interaction_id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(interaction_from_row).transpose()?)
}

/// A customer's timeline, newest first: a page after `(occurred_at, id)` plus whether more
/// follow.
pub async fn timeline(
    conn: &mut PgConnection,
    customer_id: Uuid,
    first: i64,
    after: Option<(DateTime<Utc>, Uuid)>,
) -> Result<(Vec<InteractionView>, bool), ProjectionError> {
    let rows = match after {
        Some((at, id)) => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {INTERACTION_COLUMNS} FROM interactions WHERE customer_id = $1 \
                 AND (occurred_at, interaction_id) < ($2, $3) ORDER BY occurred_at DESC, interaction_id DESC LIMIT $4"
            )))
            .bind(customer_id)
            .bind(at)
            .bind(id)
            .bind(first + 1)
            .fetch_all(conn)
            .await?
        }
        None => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {INTERACTION_COLUMNS} FROM interactions WHERE customer_id = $1 \
                 ORDER BY occurred_at DESC, interaction_id DESC LIMIT $2"
            )))
            .bind(customer_id)
            .bind(first + 1)
            .fetch_all(conn)
            .await?
        }
    };
    let mut out: Vec<InteractionView> = rows.iter().map(interaction_from_row).collect::<Result<_, _>>()?;
    let more = out.len() as i64 > first;
    out.truncate(first as usize);
    Ok((out, more))
}

/// Contacts per channel, most used first.
pub async fn channel_counts(conn: &mut PgConnection, customer_id: Uuid) -> Result<Vec<(String, i32)>, ProjectionError> {
    Ok(channel_counts_of(conn, &[customer_id]).await?.remove(&customer_id).unwrap_or_default())
}

/// [`channel_counts`] of many customers in one statement (for batching under a list).
pub async fn channel_counts_of(
    conn: &mut PgConnection,
    customer_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<(String, i32)>>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT customer_id, channel, contacts FROM channel_counts WHERE customer_id = ANY($1) \
         ORDER BY customer_id, contacts DESC, channel",
    )
    .bind(customer_ids)
    .fetch_all(conn)
    .await?;
    let mut out: HashMap<Uuid, Vec<(String, i32)>> = customer_ids.iter().map(|id| (*id, Vec::new())).collect();
    for r in &rows {
        out.entry(r.try_get("customer_id")?).or_default().push((r.try_get("channel")?, r.try_get("contacts")?));
    }
    Ok(out)
}

/// The first page of many customers' timelines, newest first, in one statement (for batching
/// under a list): each customer's first `first` interactions and whether more follow.
pub async fn timelines(
    conn: &mut PgConnection,
    customer_ids: &[Uuid],
    first: i64,
) -> Result<HashMap<Uuid, (Vec<InteractionView>, bool)>, ProjectionError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT i.* FROM unnest($1::uuid[]) AS c(customer_id) \
         CROSS JOIN LATERAL (SELECT {INTERACTION_COLUMNS} FROM interactions q WHERE q.customer_id = c.customer_id \
                             ORDER BY occurred_at DESC, interaction_id DESC LIMIT $2) i"
    )))
    .bind(customer_ids)
    .bind(first + 1)
    .fetch_all(conn)
    .await?;
    let mut out: HashMap<Uuid, (Vec<InteractionView>, bool)> =
        customer_ids.iter().map(|id| (*id, (Vec::new(), false))).collect();
    for row in &rows {
        let i = interaction_from_row(row)?;
        out.entry(i.customer_id).or_default().0.push(i);
    }
    for (page, more) in out.values_mut() {
        *more = page.len() as i64 > first;
        page.truncate(first as usize);
    }
    Ok(out)
}
